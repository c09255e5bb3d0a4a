/*
 * envelope.h - what the queue knows about a message besides its content:
 * the sender, the recipients (each with its route and its delivery state),
 * the DSN parameters, and where it came from.
 *
 * On disk an envelope is a sequence of typed, length-prefixed fields
 *
 *     u8 tag | u32 length (little-endian) | length octets
 *
 * so no value can ever be mistaken for a field boundary: an address with a
 * newline in it is just an address with a newline in it (compare OpenSMTPD's
 * CVE-2020-8794, a newline injected into a text envelope).  The decoder
 * checks every length and refuses strings with NUL octets, unknown
 * mandatory fields and missing ones.  The journal (journal.h) frames and
 * checksums the encoded envelope.
 */
#ifndef PIGEON_QUEUE_ENVELOPE_H
#define PIGEON_QUEUE_ENVELOPE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/buf.h"

#define QUEUE_ID_LEN 14 /* characters of a queue id */

/* Bounds the decoder enforces (a damaged file must not make us allocate wildly). */
#define ENVELOPE_STRING_MAX 4096
#define ENVELOPE_RCPT_MAX   100000

enum envelope_route {
    ENVELOPE_ROUTE_MAILDIR = 1, /* rcpt.maildir is the Maildir directory */
    ENVELOPE_ROUTE_RELAY = 2,   /* outbound SMTP to rcpt.address */
};

enum envelope_state {
    ENVELOPE_PENDING = 0,   /* not yet delivered */
    ENVELOPE_DELIVERED = 1, /* in the mailbox, or accepted by the next server */
    ENVELOPE_FAILED = 2,    /* given up (a bounce is due) */
};

struct envelope_rcpt {
    char *address;   /* what we deliver to: local@domain after alias expansion */
    char *orig;      /* the RCPT TO address when it differs (aliases), or NULL */
    char *orcpt;     /* DSN ORCPT "type;xtext", or NULL */
    unsigned notify; /* DSN NOTIFY bits (enum smtp_notify) */
    enum envelope_route route;
    char *maildir; /* ENVELOPE_ROUTE_MAILDIR */
    enum envelope_state state;
};

struct envelope {
    char id[QUEUE_ID_LEN + 1];
    char *sender;       /* "" for the null reverse-path <> */
    char *client;       /* the client's address, for logs and bounces */
    char *helo;         /* what it said in HELO/EHLO, or "" */
    char *envid;        /* DSN ENVID, or NULL */
    int64_t arrival;    /* seconds since the epoch */
    uint64_t size;      /* octets in the content file */
    uint32_t trace_len; /* octets of the Return-Path: line that starts the content */
    uint8_t body;       /* enum smtp_body */
    uint8_t ret;        /* enum smtp_ret */
    bool smtputf8;
    size_t nrcpt;
    struct envelope_rcpt *rcpt;
};

/* envelope_add_rcpt - a new zeroed recipient at the end; NULL if out of memory */
struct envelope_rcpt *envelope_add_rcpt(struct envelope *e);

/* envelope_encode - append the encoded envelope to out; -1 if out is full */
int envelope_encode(const struct envelope *e, struct buf *out);

/*
 * envelope_decode - parse p[0..n) into e (which must be zeroed).  Returns
 * 0, or -1 with a reason in err; in both cases envelope_free(e) releases
 * what was allocated.
 */
int envelope_decode(const uint8_t *p, size_t n, struct envelope *e, char *err, size_t errsize);

/* envelope_free - release the strings and recipients (not e itself) */
void envelope_free(struct envelope *e);

/* envelope_pending - recipients not yet delivered or failed */
size_t envelope_pending(const struct envelope *e);

#endif
