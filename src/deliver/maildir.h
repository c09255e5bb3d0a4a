/*
 * maildir.h - delivery into a Maildir (tmp/, new/, cur/), the format of
 * qmail, Dovecot and Courier.
 *
 * The queue's content file already is the message a mailbox should get
 * (Return-Path: and Received: included) and is already durable, so delivery
 * is one link(2) into new/ under a name made from the queue id and the
 * recipient's index.  The name being fixed makes delivery idempotent: if a
 * crash comes between the link and the queue's record of it, the retry
 * finds the file in place and does not deliver twice.  Across filesystems,
 * where link(2) cannot work, the content is copied through tmp/ and fsynced.
 */
#ifndef PIGEON_DELIVER_MAILDIR_H
#define PIGEON_DELIVER_MAILDIR_H

#include <stdbool.h>
#include <stddef.h>

#include "deliver/deliver.h"
#include "queue/envelope.h"

/*
 * maildir_deliver - deliver recipient rcpt of env, whose content is
 * msg_dirfd/<id>.  A hard link is made durable by the queue's next sync; a
 * copy (across filesystems) is fsynced before this returns, and is only
 * made if may_copy is set: otherwise such a recipient is DELIVER_NOT_TRIED,
 * for a delivery worker.  why gets the reason for a refusal or deferral.
 */
enum deliver_outcome maildir_deliver(const struct envelope *env, size_t rcpt, int msg_dirfd,
                                     const char *hostname, bool may_copy, char *why,
                                     size_t whysize);

/* maildir_file_name - the file name for recipient rcpt of env */
void maildir_file_name(const struct envelope *env, size_t rcpt, const char *hostname, char *out,
                       size_t outsize);

#endif
