/*
 * client.h - the SMTP client engine: one message to one server, as a pure
 * state machine.
 *
 * The counterpart of server.h.  The engine takes the bytes the server sent
 * and produces the bytes to send back.  It never touches a socket or a
 * clock.  libpigeon drives it for `pigeon send` and sendmail, and outbound
 * delivery will drive it for mail to other servers:
 *
 *     c = smtp_client_new(&settings, &message);
 *     loop:
 *         send smtp_client_output(c), then smtp_client_output_sent(c)
 *         switch smtp_client_want(c):
 *         SMTP_CLIENT_WANT_READ:  read with smtp_client_timeout(c) seconds;
 *                                 smtp_client_feed() what came (or _eof, _timed_out)
 *         SMTP_CLIENT_WANT_BODY:  smtp_client_body(c, piece, n, last)
 *         SMTP_CLIENT_DONE:       smtp_client_result(c) says what happened
 *
 * What it does: waits for 220, EHLO (HELO if EHLO is refused), MAIL FROM
 * with SIZE, BODY, SMTPUTF8, RET and ENVID as the message and the server
 * call for, one RCPT TO per recipient with NOTIFY and ORCPT, then DATA
 * (dot-stuffed, line endings made CRLF) or BDAT chunks when the server
 * offers CHUNKING, then QUIT.  With PIPELINING, MAIL, every RCPT and DATA
 * go out in one write (RFC 2920).  Content the server cannot take (8-bit
 * without 8BITMIME, binary without BINARYMIME, UTF-8 addresses without
 * SMTPUTF8, a size over its SIZE limit) is a clear local error before any
 * mail is sent.
 *
 * STARTTLS and AUTH belong between EHLO and MAIL; the TLS/AUTH work adds
 * them there (see the state list in client.c).
 */
#ifndef PIGEON_SMTP_CLIENT_H
#define PIGEON_SMTP_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/buf.h"
#include "smtp/esmtp.h"

struct smtp_client;

struct smtp_client_settings {
    const char *helo_name; /* what we call ourselves in EHLO/HELO */
};

struct smtp_client_rcpt {
    const char *address; /* local@domain, without brackets */
    unsigned notify;     /* DSN NOTIFY bits (enum smtp_notify), 0: none */
    const char *orcpt;   /* DSN ORCPT "type;xtext", or NULL */
};

struct smtp_client_message {
    const char *from; /* the reverse-path without brackets; "" for <> */
    const struct smtp_client_rcpt *rcpt;
    size_t nrcpt;
    uint64_t size;       /* octets of the body, for SIZE=; 0 if not known */
    enum smtp_body body; /* 7BIT, 8BITMIME or BINARYMIME (see smtp_client_body_type) */
    bool smtputf8;       /* addresses or headers need SMTPUTF8 */
    enum smtp_ret ret;   /* DSN RET, or SMTP_RET_UNSPECIFIED */
    const char *envid;   /* DSN ENVID (xtext), or NULL */
};

enum smtp_client_want {
    SMTP_CLIENT_WANT_READ, /* waiting for the server */
    SMTP_CLIENT_WANT_BODY, /* give the next piece of the message */
    SMTP_CLIENT_DONE,      /* finished: see the result */
};

/* How a recipient, or the whole message, fared. */
struct smtp_client_reply {
    unsigned code; /* 0: no reply (never sent, or the connection failed first) */
    char enh[12];  /* enhanced status code, or "" */
    char *text;    /* the whole reply text, lines joined by '\n'; NULL if none */
};

enum smtp_client_status {
    SMTP_CLIENT_SENT,       /* the server took the message for every recipient */
    SMTP_CLIENT_PARTIAL,    /* taken for some recipients, refused for others */
    SMTP_CLIENT_TEMPFAIL,   /* nothing taken; a 4xx, a timeout, a lost connection */
    SMTP_CLIENT_PERMFAIL,   /* nothing taken; the server said 5xx */
    SMTP_CLIENT_PROTOCOL,   /* the server broke the protocol (a bad reply) */
    SMTP_CLIENT_UNSUITABLE, /* the server lacks an extension the message needs */
};

struct smtp_client_result {
    enum smtp_client_status status;
    struct smtp_client_reply *rcpt; /* one per recipient: its RCPT reply, or the final one */
    struct smtp_client_reply final; /* the reply that ended the message (or the failure) */
    char error[256];                /* in words, when status is not SENT */
    unsigned extensions;            /* enum smtp_ext the server offered */
};

/* smtp_client_new - an engine for one message; the message must outlive it */
struct smtp_client *smtp_client_new(const struct smtp_client_settings *settings,
                                    const struct smtp_client_message *msg);

/* smtp_client_free - release the engine and its result */
void smtp_client_free(struct smtp_client *c);

/* smtp_client_feed - bytes from the server; returns how many were used */
size_t smtp_client_feed(struct smtp_client *c, const uint8_t *p, size_t n);

/* smtp_client_eof - the server closed the connection */
void smtp_client_eof(struct smtp_client *c);

/* smtp_client_timed_out - no reply within smtp_client_timeout() seconds */
void smtp_client_timed_out(struct smtp_client *c);

/* smtp_client_fail - the transport failed (connect, read or write error) */
void smtp_client_fail(struct smtp_client *c, const char *why);

/*
 * smtp_client_body - the next piece of the message (when WANT_BODY); last
 * marks the end.  For DATA the engine dot-stuffs and makes every line end
 * in CRLF; for BDAT (not BINARYMIME) it makes line endings CRLF too.
 * Pieces of any size; output grows by about the piece's size.
 */
void smtp_client_body(struct smtp_client *c, const uint8_t *p, size_t n, bool last);

/* smtp_client_output - bytes to send to the server */
struct buf *smtp_client_output(struct smtp_client *c);

/* smtp_client_output_sent - the caller has sent all of the output */
void smtp_client_output_sent(struct smtp_client *c);

/* smtp_client_want - what the engine needs next */
enum smtp_client_want smtp_client_want(const struct smtp_client *c);

/* smtp_client_timeout - seconds to wait for the server now (RFC 5321 §4.5.3.2) */
unsigned smtp_client_timeout(const struct smtp_client *c);

/* smtp_client_result - how it went (complete once smtp_client_want() is DONE) */
const struct smtp_client_result *smtp_client_result(const struct smtp_client *c);

/*
 * smtp_client_body_type - the weakest BODY= that can carry p[0..n): 7BIT
 * for 7-bit text with lines of at most 998 octets, 8BITMIME for 8-bit text,
 * BINARYMIME for anything else (NUL octets, over-long lines).
 */
enum smtp_body smtp_client_body_type(const uint8_t *p, size_t n);

#endif
