/*
 * deliver.h - the delivery workers: threads that put queued messages into
 * mailboxes.
 *
 * The queue manager hands over jobs (one message each); a worker takes every
 * job waiting, up to a batch, delivers each pending local recipient and
 * hands the jobs back with an outcome per recipient.  Making the deliveries
 * durable, logging them and removing finished content files is the queue
 * manager's part (queue.c), so they share its syncs.  Remote recipients are
 * left pending for outbound delivery.
 */
#ifndef PIGEON_DELIVER_H
#define PIGEON_DELIVER_H

#include <stdbool.h>
#include <stdint.h>

#include "config/config.h"
#include "queue/envelope.h"

enum deliver_outcome {
    DELIVER_NOT_TRIED = 0,
    DELIVER_OK,
    DELIVER_DEFER, /* try again later */
    DELIVER_FAIL,  /* give up */
};

struct deliver_job {
    const struct envelope *env; /* read-only while the job is out */
    uint8_t *outcome;           /* per recipient, enum deliver_outcome */
    void *owner;                /* the queue's record of the message */
    struct deliver_job *next;
};

struct deliver_settings {
    int msg_dirfd;        /* spool/msg */
    const char *hostname; /* in Maildir file names */
    unsigned workers;
};

struct deliverer;

/* deliverer_start - start the workers; done() gets each finished batch, on a worker thread */
struct deliverer *deliverer_start(const struct deliver_settings *settings,
                                  void (*done)(void *ctx, struct deliver_job *jobs), void *ctx);

/* deliverer_submit - queue a job for the workers */
void deliverer_submit(struct deliverer *d, struct deliver_job *job);

/* deliverer_stop - finish the jobs in hand, then stop */
void deliverer_stop(struct deliverer *d);

/* deliver_log - the log line for one recipient's delivery */
void deliver_log(const struct envelope *env, size_t rcpt, enum deliver_outcome outcome,
                 const char *why);

#endif
