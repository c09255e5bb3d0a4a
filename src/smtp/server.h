/*
 * server.h - the SMTP server engine: RFC 5321 and its extensions as a pure
 * state machine.
 *
 * The engine takes the bytes a client sent and produces the bytes to send
 * back, calling its host for every decision and for every byte of message
 * data.  It never touches a socket, a file or the clock, and allocates only
 * within the limits of its settings.  pigeond (src/server/session.c), the
 * unit tests and the fuzzers all drive it the same way:
 *
 *     s = smtp_server_new(&settings, &ops, ctx);
 *     smtp_server_greet(s);                         // 220 into the output
 *     loop:
 *         used = smtp_server_feed(s, bytes, n);     // replies into the output
 *         send smtp_server_output(s), then smtp_server_output_sent(s)
 *         keep bytes[used..n) for the next feed
 *
 * smtp_server_feed() consumes input until it runs out, until it must wait
 * for the host (an operation returned SMTP_SERVER_ASYNC: the host calls
 * smtp_server_resume() when it knows the answer), until enough replies are
 * waiting to be sent (so a client that pipelines without reading cannot make
 * the output grow), or until the session is over.
 *
 * Line endings: CRLF always; a bare LF only from a client the host marked
 * lf_ok (trusted networks), and a bare CR never.  From every other client
 * only CRLF "." CRLF ends DATA, and a bare LF or CR gets its command or its
 * message refused with 5.5.2: no byte sequence can end a message early and
 * smuggle in a second one (CVE-2023-51764 and its kind).
 */
#ifndef PIGEON_SMTP_SERVER_H
#define PIGEON_SMTP_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/buf.h"
#include "smtp/address.h"
#include "smtp/esmtp.h"

struct smtp_server;

struct smtp_server_settings {
    const char *hostname;      /* in the greeting and the EHLO reply */
    unsigned extensions;       /* enum smtp_ext: what EHLO offers */
    size_t max_command_line;   /* octets, CRLF included (RFC 5321 §4.5.3.1.4) */
    size_t max_text_line;      /* octets of a message line, CRLF included (§4.5.3.1.6) */
    size_t max_recipients;     /* per message */
    uint64_t max_message_size; /* octets, as stored */
    unsigned max_errors;       /* error replies before 421 and close */
};

/* A reply the host chooses.  code 0 means "the engine's default". */
struct smtp_reply {
    unsigned code;
    const char *enh; /* "5.1.1", or NULL for the engine's choice from code */
    char text[400];
};

enum smtp_server_result {
    SMTP_SERVER_DONE = 0,  /* the reply is filled in (or left at code 0) */
    SMTP_SERVER_ASYNC = 1, /* the host will call smtp_server_resume() */
};

/*
 * What the engine asks of its host.  ctx is the pointer given to
 * smtp_server_new().  An operation that returns SMTP_SERVER_DONE with
 * reply->code 0 gets the engine's success reply.
 */
struct smtp_server_ops {
    /* HELO or EHLO was accepted; name is what the client gave. */
    void (*helo)(void *ctx, const char *name, size_t len, bool esmtp);
    /* MAIL FROM with a valid path and parameters. */
    enum smtp_server_result (*mail)(void *ctx, const struct smtp_path *from,
                                    const struct smtp_mail_params *params,
                                    struct smtp_reply *reply);
    /* RCPT TO with a valid path and parameters; the host decides. */
    enum smtp_server_result (*rcpt)(void *ctx, const struct smtp_path *to,
                                    const struct smtp_rcpt_params *params,
                                    struct smtp_reply *reply);
    /* A message is about to start (DATA, or the first BDAT chunk).  Return
     * false, with a reply filled in, to refuse it (452 queue full, say). */
    bool (*data_begin)(void *ctx, struct smtp_reply *reply);
    /*
     * Message bytes, dot-unstuffed, with CRLF line endings.  A return of -1
     * means the host could not store them: the engine sends no more and
     * still calls data_end, where the host reports the failure.
     */
    int (*data_write)(void *ctx, const uint8_t *p, size_t n);
    /* The message is complete and acceptable to the engine: commit it. */
    enum smtp_server_result (*data_end)(void *ctx, struct smtp_reply *reply);
    /* The transaction is over without a message (RSET, EHLO, a refused
     * message, the end of the session): forget sender and recipients. */
    void (*reset)(void *ctx);
};

/* smtp_server_new - an engine for one session; NULL if out of memory */
struct smtp_server *smtp_server_new(const struct smtp_server_settings *settings,
                                    const struct smtp_server_ops *ops, void *ctx, bool lf_ok);

/* smtp_server_free - release the engine (calls ops->reset if a transaction is open) */
void smtp_server_free(struct smtp_server *s);

/* smtp_server_greet - put the 220 greeting into the output */
void smtp_server_greet(struct smtp_server *s);

/* smtp_server_refuse - put a closing reply (421 busy, 554 refused) and end the session */
void smtp_server_refuse(struct smtp_server *s, unsigned code, const char *enh, const char *text);

/* smtp_server_feed - process client bytes; returns how many were consumed */
size_t smtp_server_feed(struct smtp_server *s, const uint8_t *p, size_t n);

/* smtp_server_resume - the answer to an operation that returned SMTP_SERVER_ASYNC */
void smtp_server_resume(struct smtp_server *s, const struct smtp_reply *reply);

/* smtp_server_timeout - the client was silent too long: 421 and end */
void smtp_server_timeout(struct smtp_server *s);

/* smtp_server_output - the bytes waiting to be sent to the client */
struct buf *smtp_server_output(struct smtp_server *s);

/* smtp_server_output_sent - the host has taken the whole output */
void smtp_server_output_sent(struct smtp_server *s);

/* smtp_server_closing - the session is over once the output is sent */
bool smtp_server_closing(const struct smtp_server *s);

/* smtp_server_waiting - an operation is waiting for smtp_server_resume() */
bool smtp_server_waiting(const struct smtp_server *s);

/* smtp_server_in_message - receiving message data (for the data timeout) */
bool smtp_server_in_message(const struct smtp_server *s);

/* smtp_server_partial_line - part of a command line is buffered, waiting for its end */
bool smtp_server_partial_line(const struct smtp_server *s);

#endif
