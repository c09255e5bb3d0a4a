/*
 * internal.h - what the files of libpigeon share, and nothing outside sees.
 *
 * libpigeon is the public face of the SMTP client engine (src/smtp/client.c):
 *
 *   message.c  struct pigeon_message: envelope, DSN requests, content,
 *              every address checked by the same parser the server uses
 *   result.c   struct pigeon_result: how a send went, per recipient
 *   session.c  struct pigeon_session: sockets, poll, deadlines, tracing;
 *              drives the engine, and pigeon_send() loops around it
 *
 * The library is built with hidden symbol visibility; only functions
 * marked PIGEON_EXPORT (the pigeon_* of include/pigeon/pigeon.h) leave the
 * shared object.  Internal functions shared between these files are named
 * libpigeon_* so they cannot be mistaken for the public API.
 */
#ifndef PIGEON_CLIENT_INTERNAL_H
#define PIGEON_CLIENT_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "pigeon/pigeon.h"
#include "smtp/client.h"
#include "smtp/esmtp.h"

#define PIGEON_EXPORT __attribute__((visibility("default")))

/* One envelope recipient. */
struct libpigeon_rcpt {
    char *given;     /* as the caller wrote it: what the result shows */
    char *mailbox;   /* canonical local@domain: what RCPT TO sends */
    unsigned notify; /* enum smtp_notify bits, 0 for none */
    char *orcpt;     /* "addr-type;xtext", or NULL */
};

struct pigeon_message {
    bool from_set;
    char *from; /* canonical reverse-path without brackets; "" for <> */
    bool from_utf8;
    struct libpigeon_rcpt *rcpt;
    size_t nrcpt, rcpt_cap;
    size_t utf8_rcpts; /* recipients with non-ASCII addresses */
    enum smtp_ret ret;
    char *envid; /* xtext, or NULL */
    uint8_t *content;
    size_t content_len;
    enum smtp_body body; /* what the content needs (smtp_client_body_type) */
    uint64_t size;       /* octets on the wire, for SIZE= (RFC 1870) */
};

/* A server reply, owned by the result. */
struct libpigeon_reply {
    unsigned code; /* 0: none came */
    char enh[12];
    char *text; /* NULL when code is 0 */
};

struct pigeon_result {
    int status; /* enum pigeon_status */
    char error[256];
    size_t nrcpt;
    char **address;               /* nrcpt addresses, as given */
    struct libpigeon_reply *rcpt; /* nrcpt replies */
    struct libpigeon_reply final;
};

/* libpigeon_message_smtputf8 - does the envelope need SMTPUTF8? */
bool libpigeon_message_smtputf8(const struct pigeon_message *m);

/* libpigeon_result_failure - a result with no replies: status and why (m may be NULL) */
struct pigeon_result *libpigeon_result_failure(const struct pigeon_message *m, int status,
                                               const char *error);

/* libpigeon_result_from_engine - the engine's result, copied */
struct pigeon_result *libpigeon_result_from_engine(const struct pigeon_message *m,
                                                   const struct smtp_client_result *r);

#endif
