/*
 * pigeon.h - libpigeon: send mail over SMTP from a C program.
 *
 * Two ways to use it.  The blocking way, for simple programs:
 *
 *     struct pigeon_message *m = pigeon_message_new();
 *     pigeon_message_set_from(m, "me@example.org");
 *     pigeon_message_add_rcpt(m, "you@example.org");
 *     pigeon_message_set_content(m, text, strlen(text));  // headers, blank line, body
 *
 *     struct pigeon_options o = PIGEON_OPTIONS_INIT;
 *     o.host = "mail.example.org";
 *     o.port = "25";
 *     struct pigeon_result *r = NULL;
 *     int status = pigeon_send(&o, m, &r);      // PIGEON_SENT, PIGEON_TEMPFAIL, ...
 *     for (size_t i = 0; i < pigeon_result_rcpt_count(r); i++) ...
 *     pigeon_result_free(r);
 *     pigeon_message_free(m);
 *
 * The non-blocking way, for programs with their own event loop: make a
 * struct pigeon_session, watch pigeon_session_fd() for the events
 * pigeon_session_events() asks for, for at most pigeon_session_timeout_ms(),
 * and call pigeon_session_step() whenever something happened (or the time
 * ran out) until it returns PIGEON_STEP_DONE.  pigeon_send() is exactly that
 * loop around poll(2).
 *
 * What a session does: connect (IPv4 or IPv6), EHLO (HELO for old
 * servers), PIPELINING when offered, SIZE, BODY=8BITMIME or BINARYMIME and
 * SMTPUTF8 when the content needs them (a clear error when the server lacks
 * one), BDAT when CHUNKING is offered, DSN parameters, dot-stuffing, one
 * reply per recipient with its enhanced status code, and the RFC 5321
 * §4.5.3.2 timeouts.  STARTTLS and AUTH are not there yet.
 *
 * Thread safety: objects are not shared; different threads may use
 * different objects freely.  Every function returns an error rather than
 * aborting; strings passed in are copied.
 */
#ifndef PIGEON_PIGEON_H
#define PIGEON_PIGEON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define PIGEON_VERSION_MAJOR 0
#define PIGEON_VERSION_MINOR 1

/* How a send went.  The numbers are stable. */
enum pigeon_status {
    PIGEON_SENT = 0,       /* accepted for every recipient */
    PIGEON_PARTIAL = 1,    /* accepted for some recipients, refused for others */
    PIGEON_TEMPFAIL = 2,   /* not sent; trying again later may work (4xx, timeout, network) */
    PIGEON_PERMFAIL = 3,   /* not sent; the server refused it for good (5xx) */
    PIGEON_PROTOCOL = 4,   /* the server broke the SMTP protocol */
    PIGEON_UNSUITABLE = 5, /* the server lacks an extension the message needs */
    PIGEON_CONNECT = 6,    /* could not connect (name unknown, refused, unreachable) */
    PIGEON_INVALID = 7,    /* bad arguments: no sender, no recipient, a bad address */
};

/* ---- the message ------------------------------------------------------ */

struct pigeon_message;

/* pigeon_message_new - an empty message; NULL if out of memory */
struct pigeon_message *pigeon_message_new(void);

/* pigeon_message_free - release it */
void pigeon_message_free(struct pigeon_message *m);

/* pigeon_message_set_from - the envelope sender; "" for the null sender <>.  0 or -1 */
int pigeon_message_set_from(struct pigeon_message *m, const char *address);

/* pigeon_message_add_rcpt - one more envelope recipient.  0 or -1 (bad address) */
int pigeon_message_add_rcpt(struct pigeon_message *m, const char *address);

/* DSN (RFC 3461) requests: NOTIFY bits for the last recipient added, and RET/ENVID. */
enum pigeon_notify {
    PIGEON_NOTIFY_NEVER = 1,
    PIGEON_NOTIFY_SUCCESS = 2,
    PIGEON_NOTIFY_FAILURE = 4,
    PIGEON_NOTIFY_DELAY = 8,
};
int pigeon_message_set_notify(struct pigeon_message *m, unsigned notify, const char *orcpt);
int pigeon_message_set_dsn(struct pigeon_message *m, bool return_full, const char *envid);

/*
 * pigeon_message_set_content - the message itself: headers, a blank line,
 * the body.  Line endings may be LF or CRLF (they are sent as CRLF).  The
 * content is copied and scanned: 8-bit content is sent with BODY=8BITMIME,
 * NUL octets or lines over 998 octets with BODY=BINARYMIME.
 */
int pigeon_message_set_content(struct pigeon_message *m, const void *data, size_t len);

/* ---- options ----------------------------------------------------------- */

struct pigeon_options {
    const char *host;      /* name or numeric address; required */
    const char *port;      /* service or number; NULL means "25" */
    const char *helo;      /* name for EHLO; NULL means this host's name */
    unsigned timeout_secs; /* 0: the RFC 5321 timeouts; otherwise this for every wait */
    /* Called with every byte exchanged (direction 'C' client, 'S' server;
     * message content is not traced), for a -v style transcript. */
    void (*trace)(void *ctx, char direction, const char *data, size_t len);
    void *trace_ctx;
};

#define PIGEON_OPTIONS_INIT                                                                        \
    {                                                                                              \
        NULL, NULL, NULL, 0, NULL, NULL                                                            \
    }

/* ---- results ----------------------------------------------------------- */

struct pigeon_result;

/* pigeon_result_status - enum pigeon_status */
int pigeon_result_status(const struct pigeon_result *r);

/* pigeon_result_error - what went wrong, in words ("" when sent) */
const char *pigeon_result_error(const struct pigeon_result *r);

/* pigeon_result_rcpt_count - as many as pigeon_message_add_rcpt() calls */
size_t pigeon_result_rcpt_count(const struct pigeon_result *r);

/*
 * pigeon_result_rcpt - recipient i: its address, and the server's reply
 * (code 0 and text NULL if none came: the connection failed first).  The
 * text is the whole reply, lines joined by '\n'; enh is the enhanced status
 * code ("5.1.1") or "".  Pointers stay valid until pigeon_result_free().
 */
int pigeon_result_rcpt(const struct pigeon_result *r, size_t i, const char **address,
                       unsigned *code, const char **enh, const char **text);

/* pigeon_result_final - the reply that ended the message (after DATA, or the failure) */
int pigeon_result_final(const struct pigeon_result *r, unsigned *code, const char **enh,
                        const char **text);

/* pigeon_result_free - release it */
void pigeon_result_free(struct pigeon_result *r);

/* ---- the blocking API ---------------------------------------------------- */

/*
 * pigeon_send - connect, send the message, quit.  Returns enum
 * pigeon_status; *result (if result is not NULL) receives the details,
 * which the caller frees with pigeon_result_free().
 */
int pigeon_send(const struct pigeon_options *o, const struct pigeon_message *m,
                struct pigeon_result **result);

/* ---- the non-blocking API -------------------------------------------------- */

struct pigeon_session;

enum pigeon_step {
    PIGEON_STEP_AGAIN = 0, /* call again when pigeon_session_events() happen */
    PIGEON_STEP_DONE = 1,  /* finished: take the result */
};

/*
 * pigeon_session_new - start sending m (which must outlive the session).
 * The host name is resolved here (getaddrinfo, which may block); pass a
 * numeric address to avoid that.  NULL, with *status set, on failure.
 */
struct pigeon_session *pigeon_session_new(const struct pigeon_options *o,
                                          const struct pigeon_message *m, int *status);

/* pigeon_session_fd - the socket to watch */
int pigeon_session_fd(const struct pigeon_session *s);

/* pigeon_session_events - POLLIN and/or POLLOUT, as for poll(2) */
short pigeon_session_events(const struct pigeon_session *s);

/* pigeon_session_timeout_ms - the longest to wait before calling step anyway */
int pigeon_session_timeout_ms(const struct pigeon_session *s);

/* pigeon_session_step - make progress (never blocks) */
enum pigeon_step pigeon_session_step(struct pigeon_session *s);

/* pigeon_session_result - the result, once DONE; ownership passes to the caller */
struct pigeon_result *pigeon_session_result(struct pigeon_session *s);

/* pigeon_session_free - close and release (any time) */
void pigeon_session_free(struct pigeon_session *s);

#ifdef __cplusplus
}
#endif

#endif
