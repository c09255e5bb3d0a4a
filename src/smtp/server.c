/*
 * server.c - the SMTP server engine (see server.h for how it is driven).
 *
 * The engine is in one of five states:
 *
 *   COMMAND  reading command lines; each complete line is dispatched
 *            through the command table below
 *   DATA     after 354: message lines, dot-unstuffed, until the end mark
 *   CHUNK    inside a BDAT chunk: exactly chunk_left more octets
 *   WAITING  the host answers an operation later (smtp_server_resume)
 *   CLOSED   QUIT, 421 or a refused connection: nothing more is read
 *
 * Apart from the state, a session remembers its greeting (none, HELO, EHLO:
 * EHLO switches on extensions and enhanced status codes) and its mail
 * transaction (none, MAIL given, at least one RCPT accepted).
 *
 * Message data is scanned once, in place: spans of the client's bytes go to
 * the host's data_write() without being copied, except where a stuffed dot
 * is dropped or a trusted client's bare LF becomes CRLF.  The scanner keeps
 * its position across calls, so a message may arrive in any split.
 */
#include "server.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "smtp/reply.h"

/* Replies beyond this are not produced until the host has sent the output:
 * a client that pipelines without reading stalls itself, not our memory. */
#define OUTPUT_HIGH_WATER 4096
#define OUTPUT_LIMIT      (64 * 1024)

/*
 * MAIL and RCPT lines may be longer than other commands by what their
 * parameters need: SIZE (RFC 1870), BODY, RET and ENVID (100 octets,
 * RFC 3461 §4.4), SMTPUTF8, NOTIFY and ORCPT (500 octets, §4.2).
 */
#define PARAMETER_ALLOWANCE 600

enum smtp_state {
    STATE_COMMAND,
    STATE_DATA,
    STATE_CHUNK,
    STATE_WAITING,
    STATE_CLOSED,
};

enum smtp_greeting {
    GREETING_NONE,
    GREETING_HELO,
    GREETING_EHLO,
};

enum smtp_txn {
    TXN_NONE,
    TXN_MAIL, /* MAIL accepted, no recipient yet */
    TXN_RCPT, /* at least one recipient accepted */
};

/* What a WAITING engine waits for. */
enum smtp_pending {
    PENDING_NONE,
    PENDING_MAIL,
    PENDING_RCPT,
    PENDING_DATA_END,
};

/* Why the engine refuses a message it received in full. */
enum smtp_msg_fault {
    FAULT_TOO_BIG = 1 << 0,
    FAULT_BARE_LF = 1 << 1,
    FAULT_BARE_CR = 1 << 2,
    FAULT_LONG_LINE = 1 << 3,
};

/* Position of the message scanner between calls. */
struct text_scan {
    bool bol;    /* at the start of a line */
    bool dot;    /* DATA: the line began with a '.', which was dropped */
    bool dot_cr; /* DATA: the line began with ".\r" */
    bool cr;     /* the last octet passed on was a CR */
    size_t line; /* octets in the current line as stored, CRLF included */
};

struct smtp_server {
    const struct smtp_server_settings *set;
    const struct smtp_server_ops *ops;
    void *ctx;
    bool lf_ok; /* a trusted client: a bare LF ends a line */

    enum smtp_state state;
    enum smtp_pending pending;
    enum smtp_greeting greeting;
    unsigned errors;
    bool not_an_error; /* the next reply, though 4xx/5xx, does not count as an error */

    /* The mail transaction. */
    enum smtp_txn txn;
    bool rcpt_tried; /* some RCPT was given, accepted or not */
    size_t nrcpt;
    enum smtp_body body;
    bool smtputf8; /* MAIL said SMTPUTF8 */
    bool chunking; /* this message arrives in BDAT chunks */

    /* The message being received. */
    uint64_t msg_size;
    unsigned msg_faults; /* enum smtp_msg_fault */
    bool write_failed;   /* the host could not store; it reports that at data_end */
    struct text_scan scan;

    /* The current BDAT chunk. */
    uint64_t chunk_left;
    uint64_t chunk_size;
    bool chunk_last;
    /* Set: the chunk is read and thrown away, then this is the reply. */
    unsigned chunk_refusal_code;
    const char *chunk_refusal_enh;
    const char *chunk_refusal_text; /* static text, or chunk_refusal_copy */
    char *chunk_refusal_copy;       /* a host's text, kept while the chunk is read */

    struct buf line;    /* a command line that arrived in pieces */
    bool line_too_long; /* skipping to the end of an over-long line */
    struct buf out;
};

/* ---- replies --------------------------------------------------------------- */

/* enhanced - the enhanced status code to show, or NULL when not in use */
static const char *enhanced(const struct smtp_server *s, unsigned code, const char *enh)
{
    /* RFC 2034 §4: after EHLO, every 2xx, 4xx and 5xx reply carries one;
     * the greeting and the replies to HELO and EHLO do not. */
    if (s->greeting != GREETING_EHLO || !(s->set->extensions & SMTP_EXT_ENHANCEDSTATUSCODES))
        return NULL;
    if (code / 100 == 3)
        return NULL;
    if (enh != NULL)
        return enh;
    switch (code / 100) {
    case 2:
        return "2.0.0";
    case 4:
        return "4.0.0";
    default:
        return "5.0.0";
    }
}

static void close_session(struct smtp_server *s);

/* reply_text - put one reply into the output, counting errors */
static void reply_text(struct smtp_server *s, unsigned code, const char *enh, const char *text)
{
    /* A closing reply (the session is over already) is not a client error. */
    bool count = s->state != STATE_CLOSED && !s->not_an_error;
    s->not_an_error = false;
    if (smtp_reply_format(&s->out, code, enhanced(s, code, enh), text) < 0) {
        /* Unreachable while OUTPUT_HIGH_WATER is far below OUTPUT_LIMIT;
         * if it ever happens, ending the session is the only safe course. */
        s->state = STATE_CLOSED;
        return;
    }
    if (code == 421) {
        close_session(s);
        return;
    }
    if (count && code >= 400 && ++s->errors >= s->set->max_errors) {
        char text421[128];
        snprintf(text421, sizeof(text421), "%s Error: too many errors", s->set->hostname);
        smtp_reply_format(&s->out, 421, enhanced(s, 421, "4.7.0"), text421);
        close_session(s);
    }
}

/* reply - format and put one reply into the output */
static void reply(struct smtp_server *s, unsigned code, const char *enh, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void reply(struct smtp_server *s, unsigned code, const char *enh, const char *fmt, ...)
{
    char text[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    reply_text(s, code, enh, text);
}

/* reply_host - the host's reply, or the default when the host left code 0 */
static void reply_host(struct smtp_server *s, const struct smtp_reply *r, unsigned code,
                       const char *enh, const char *text)
{
    if (r->code >= 200 && r->code <= 599)
        reply_text(s, r->code, r->enh, r->text);
    else if (r->code == 0)
        reply_text(s, code, enh, text);
    else
        reply_text(s, 451, "4.3.0", "Error: internal error, try again later");
}

/* host_accepts - did the host's reply accept (2xx, or 0 for the default)? */
static bool host_accepts(const struct smtp_reply *r)
{
    return r->code == 0 || (r->code >= 200 && r->code <= 299);
}

/* ---- transaction ------------------------------------------------------------ */

/* txn_clear - forget the transaction without telling the host */
static void txn_clear(struct smtp_server *s)
{
    s->txn = TXN_NONE;
    s->rcpt_tried = false;
    s->nrcpt = 0;
    s->body = SMTP_BODY_UNSPECIFIED;
    s->smtputf8 = false;
    s->chunking = false;
    s->msg_size = 0;
    s->msg_faults = 0;
    s->write_failed = false;
}

/* txn_reset - end the transaction and tell the host to forget it */
static void txn_reset(struct smtp_server *s)
{
    if (s->txn != TXN_NONE)
        s->ops->reset(s->ctx);
    txn_clear(s);
}

/* close_session - nothing more is read; the host closes once output is sent */
static void close_session(struct smtp_server *s)
{
    if (s->state != STATE_WAITING)
        txn_reset(s);
    s->state = STATE_CLOSED;
}

/* ---- message data ----------------------------------------------------------- */

/* message_start - prepare to receive a message */
static void message_start(struct smtp_server *s)
{
    s->msg_size = 0;
    s->msg_faults = 0;
    s->write_failed = false;
    s->scan = (struct text_scan){.bol = true};
}

/*
 * A run of message bytes to pass on in one piece: the lines of a message
 * follow each other in the input, so they go to the host together, and a
 * piece ends only where the stored form differs from what came (a dropped
 * dot, a bare LF made CRLF) or at the end of the input.
 */
struct span {
    const uint8_t *p;
    size_t n;
};

/* span_flush - pass the pending run to the host, unless the message is lost already */
static void span_flush(struct smtp_server *s, struct span *sp)
{
    if (sp->n > 0 && !s->msg_faults && !s->write_failed &&
        s->ops->data_write(s->ctx, sp->p, sp->n) < 0)
        s->write_failed = true;
    sp->n = 0;
}

/*
 * span_fault - the message is refused: what came before the fault is
 * passed on first, nothing after it.  So what the host sees never depends
 * on where the network happened to cut the data.
 */
static void span_fault(struct smtp_server *s, struct span *sp, unsigned fault)
{
    span_flush(s, sp);
    s->msg_faults |= fault;
}

/* span_add - count p[0..n) (stored form) against the size limit and add it to the run */
static void span_add(struct smtp_server *s, struct span *sp, const void *p, size_t n)
{
    /* Every octet counts, refused message or not. */
    if (n > s->set->max_message_size - s->msg_size) {
        s->msg_size = s->set->max_message_size;
        span_fault(s, sp, FAULT_TOO_BIG);
        return;
    }
    s->msg_size += n;
    if (sp->n > 0 && sp->p + sp->n == (const uint8_t *)p) {
        sp->n += n;
        return;
    }
    span_flush(s, sp);
    sp->p = p;
    sp->n = n;
}

/* line_add - count octets of the current line against the text line limit */
static void line_add(struct smtp_server *s, struct span *sp, size_t n)
{
    s->scan.line += n;
    if (s->scan.line > s->set->max_text_line)
        span_fault(s, sp, FAULT_LONG_LINE);
}

/*
 * scan_text - pass message text p[0..n) to the host.  With dots (DATA), a
 * leading dot is dropped (RFC 5321 §4.5.2) and the end of data is found:
 * CRLF "." CRLF, or for a trusted client also with bare LFs.  Without dots
 * (BDAT), only line endings are checked.  Returns the octets consumed; *end
 * is set when the end of data was consumed.
 */
static size_t scan_text(struct smtp_server *s, const uint8_t *p, size_t n, bool dots, bool *end)
{
    struct text_scan *t = &s->scan;
    struct span sp = {NULL, 0};
    size_t i = 0;

    while (i < n) {
        if (t->dot_cr) {
            t->dot_cr = false;
            if (p[i] == '\n') {
                span_flush(s, &sp);
                *end = true;
                return i + 1;
            }
            /* ".\r" and then not LF: the dot was stuffing, the CR is bare. */
            if (!s->lf_ok)
                span_fault(s, &sp, FAULT_BARE_CR);
            span_add(s, &sp, "\r", 1);
            line_add(s, &sp, 1);
            continue;
        }
        if (t->dot) {
            t->dot = false;
            if (p[i] == '\r') {
                t->dot_cr = true;
                i++;
                continue;
            }
            if (p[i] == '\n') {
                if (s->lf_ok) {
                    span_flush(s, &sp);
                    *end = true;
                    return i + 1;
                }
                /* For everyone else ".\n" is neither an end nor a line end. */
                span_fault(s, &sp, FAULT_BARE_LF);
                line_add(s, &sp, 1);
                i++;
                continue;
            }
        }
        if (t->bol) {
            t->bol = false;
            t->line = 0;
            if (dots && p[i] == '.') {
                t->dot = true;
                i++;
                continue;
            }
        }

        /* Inside a line: everything up to the next LF at once. */
        const uint8_t *lf = memchr(p + i, '\n', n - i);
        size_t stop = lf ? (size_t)(lf - p) : n;
        size_t seg = stop - i;
        bool carried_cr = t->cr;
        if (!s->lf_ok) {
            /* A CR is bare unless an LF follows it at once (RFC 5321 §2.3.8). */
            if ((carried_cr && seg > 0) || (seg > 1 && memchr(p + i, '\r', seg - 1) != NULL))
                span_fault(s, &sp, FAULT_BARE_CR);
        }
        t->cr = seg > 0 ? p[stop - 1] == '\r' : carried_cr;
        line_add(s, &sp, seg);
        if (lf == NULL) {
            span_add(s, &sp, p + i, seg);
            span_flush(s, &sp);
            return n;
        }
        if (t->cr) {
            span_add(s, &sp, p + i, seg + 1);
            line_add(s, &sp, 1);
            t->bol = true;
        } else if (s->lf_ok) {
            /* A trusted client's bare LF is a line end, stored as CRLF. */
            span_add(s, &sp, p + i, seg);
            span_add(s, &sp, "\r\n", 2);
            line_add(s, &sp, 2);
            t->bol = true;
        } else {
            /* Not a line end: only CRLF "." CRLF may end this client's data.
             * The octets before it still count (the message is refused; see span_add). */
            span_fault(s, &sp, FAULT_BARE_LF);
            span_add(s, &sp, p + i, seg);
            line_add(s, &sp, 1);
        }
        t->cr = false;
        i = stop + 1;
    }
    span_flush(s, &sp);
    return i;
}

/* refuse_message - the reply for a message the engine will not pass on */
static void refuse_message(struct smtp_server *s)
{
    unsigned faults = s->msg_faults;
    if (faults & FAULT_TOO_BIG)
        reply(s, 552, "5.3.4", "Error: message size exceeds the limit of %llu octets",
              (unsigned long long)s->set->max_message_size);
    else if (faults & FAULT_BARE_LF)
        reply(s, 550, "5.5.2",
              "Error: bare LF in message data; lines must end with CRLF (RFC 5321 2.3.8)");
    else if (faults & FAULT_BARE_CR)
        reply(s, 550, "5.5.2",
              "Error: bare CR in message data; lines must end with CRLF (RFC 5321 2.3.8)");
    else
        reply(s, 550, "5.6.0", "Error: message has a line longer than %zu octets",
              s->set->max_text_line);
    txn_reset(s);
}

/* finish_data_end - the host has answered data_end: the transaction is over */
static void finish_data_end(struct smtp_server *s, const struct smtp_reply *r)
{
    txn_clear(s); /* data_end ended the host's transaction whatever its reply */
    if (s->state != STATE_CLOSED)
        s->state = STATE_COMMAND;
    reply_host(s, r, 250, "2.0.0", "Ok: queued");
}

/* message_complete - all of the message is in: refuse it or hand it over */
static void message_complete(struct smtp_server *s)
{
    s->state = STATE_COMMAND;
    if (s->msg_faults) {
        refuse_message(s);
        return;
    }
    struct smtp_reply r = {0};
    if (s->ops->data_end(s->ctx, &r) == SMTP_SERVER_ASYNC) {
        s->state = STATE_WAITING;
        s->pending = PENDING_DATA_END;
        return;
    }
    finish_data_end(s, &r);
}

/* feed_data - message lines after DATA */
static size_t feed_data(struct smtp_server *s, const uint8_t *p, size_t n)
{
    bool end = false;
    size_t used = scan_text(s, p, n, true, &end);
    if (end)
        message_complete(s);
    return used;
}

/* chunk_complete - the last octet of a BDAT chunk is in */
static void chunk_complete(struct smtp_server *s)
{
    s->state = STATE_COMMAND;
    if (s->chunk_refusal_text != NULL) {
        reply_text(s, s->chunk_refusal_code, s->chunk_refusal_enh, s->chunk_refusal_text);
        s->chunk_refusal_text = NULL;
        free(s->chunk_refusal_copy);
        s->chunk_refusal_copy = NULL;
        return;
    }
    if (s->chunk_last && s->body != SMTP_BODY_BINARYMIME && s->scan.cr && !s->lf_ok)
        s->msg_faults |= FAULT_BARE_CR; /* the message ended in a CR */
    if (s->msg_faults) {
        /* RFC 3030 §2: once a chunk fails, the transaction is over. */
        refuse_message(s);
        return;
    }
    if (s->chunk_last)
        message_complete(s);
    else
        reply(s, 250, "2.0.0", "Ok: %llu octets received", (unsigned long long)s->chunk_size);
}

/* feed_chunk - the octets of a BDAT chunk */
static size_t feed_chunk(struct smtp_server *s, const uint8_t *p, size_t n)
{
    size_t take = n < s->chunk_left ? n : (size_t)s->chunk_left;
    if (s->chunk_refusal_text == NULL) {
        if (s->body == SMTP_BODY_BINARYMIME) {
            struct span sp = {NULL, 0}; /* RFC 3030 §3: binary, passed on untouched */
            span_add(s, &sp, p, take);
            span_flush(s, &sp);
        } else {
            bool end = false;
            scan_text(s, p, take, false, &end);
        }
    }
    s->chunk_left -= take;
    if (s->chunk_left == 0)
        chunk_complete(s);
    return take;
}

/* ---- commands ------------------------------------------------------------- */

/* skip_spaces - advance past spaces */
static void skip_spaces(const char **arg, size_t *len)
{
    while (*len > 0 && **arg == ' ') {
        (*arg)++;
        (*len)--;
    }
}

/* trim_spaces - drop trailing spaces */
static void trim_spaces(const char *arg, size_t *len)
{
    while (*len > 0 && arg[*len - 1] == ' ')
        (*len)--;
}

/* helo_name_valid - a HELO/EHLO argument we are willing to put in a Received: header */
static bool helo_name_valid(const char *arg, size_t len)
{
    if (len == 0 || len > SMTP_DOMAIN_MAX)
        return false;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)arg[i];
        if (c <= ' ' || c >= 0x7f)
            return false;
    }
    return true;
}

/* greet - common part of HELO and EHLO (RFC 5321 §4.1.4: both reset the transaction) */
static bool greet(struct smtp_server *s, const char *verb, const char *arg, size_t len,
                  enum smtp_greeting kind)
{
    trim_spaces(arg, &len);
    if (!helo_name_valid(arg, len)) {
        reply(s, 501, "5.5.4", "Syntax: %s hostname", verb);
        return false;
    }
    txn_reset(s);
    s->greeting = kind;
    if (s->ops->helo)
        s->ops->helo(s->ctx, arg, len, kind == GREETING_EHLO);
    return true;
}

/* cmd_ehlo - EHLO: greet and list the extensions */
static void cmd_ehlo(struct smtp_server *s, const char *arg, size_t len)
{
    if (!greet(s, "EHLO", arg, len, GREETING_EHLO))
        return;
    static const struct {
        unsigned ext;
        const char *keyword; /* NULL: SIZE, which carries the limit */
    } keywords[] = {
        {SMTP_EXT_PIPELINING, "PIPELINING"},
        {SMTP_EXT_SIZE, NULL},
        {SMTP_EXT_8BITMIME, "8BITMIME"},
        {SMTP_EXT_SMTPUTF8, "SMTPUTF8"},
        {SMTP_EXT_CHUNKING, "CHUNKING"},
        {SMTP_EXT_BINARYMIME, "BINARYMIME"},
        {SMTP_EXT_DSN, "DSN"},
        {SMTP_EXT_ENHANCEDSTATUSCODES, "ENHANCEDSTATUSCODES"},
    };
    unsigned ext = s->set->extensions;
    if (!(ext & SMTP_EXT_CHUNKING))
        ext &= ~(unsigned)SMTP_EXT_BINARYMIME;
    struct buf text;
    buf_init(&text, 1024);
    int r = buf_printf(&text, "%s", s->set->hostname);
    for (size_t i = 0; i < sizeof(keywords) / sizeof(keywords[0]) && r == 0; i++) {
        if (!(ext & keywords[i].ext))
            continue;
        if (keywords[i].keyword != NULL)
            r = buf_printf(&text, "\n%s", keywords[i].keyword);
        else
            r = buf_printf(&text, "\nSIZE %llu", (unsigned long long)s->set->max_message_size);
    }
    r |= buf_append_byte(&text, '\0');
    /* The EHLO reply itself carries no enhanced code (RFC 2034 §4). */
    if (r != 0 || smtp_reply_format(&s->out, 250, NULL, (const char *)text.data) < 0)
        s->state = STATE_CLOSED;
    buf_free(&text);
}

/* cmd_helo - HELO: greet without extensions */
static void cmd_helo(struct smtp_server *s, const char *arg, size_t len)
{
    if (!greet(s, "HELO", arg, len, GREETING_HELO))
        return;
    if (smtp_reply_format(&s->out, 250, NULL, s->set->hostname) < 0)
        s->state = STATE_CLOSED;
}

/* offered - the extensions in force: none without EHLO */
static unsigned offered(const struct smtp_server *s)
{
    return s->greeting == GREETING_EHLO ? s->set->extensions : 0;
}

/* take_keyword - strip "FROM:" or "TO:" (any case) and the spaces after it */
static bool take_keyword(const char **arg, size_t *len, const char *keyword)
{
    size_t k = strlen(keyword);
    if (*len < k || strncasecmp(*arg, keyword, k) != 0)
        return false;
    *arg += k;
    *len -= k;
    skip_spaces(arg, len); /* "MAIL FROM: <a@b>" and the bare legacy form */
    return true;
}

/* path_error - reply for an unparseable path */
static void path_error(struct smtp_server *s, enum smtp_path_error e, bool sender)
{
    const char *enh = sender ? "5.1.7" : "5.1.3";
    const char *who = sender ? "sender" : "recipient";
    switch (e) {
    case SMTP_PATH_TOO_LONG:
        reply(s, 501, enh, "Error: %s address too long", who);
        break;
    case SMTP_PATH_NEED_UTF8:
        reply(s, 553, "5.6.7", "Error: non-ASCII %s address needs SMTPUTF8", who);
        break;
    default:
        reply(s, 501, enh, "Error: bad %s address syntax", who);
        break;
    }
}

/* finish_mail - the host has answered MAIL */
static void finish_mail(struct smtp_server *s, const struct smtp_reply *r)
{
    if (host_accepts(r))
        s->txn = TXN_MAIL;
    reply_host(s, r, 250, "2.1.0", "Ok");
}

/* cmd_mail - MAIL FROM:<reverse-path> [parameters] */
static void cmd_mail(struct smtp_server *s, const char *arg, size_t len)
{
    if (s->txn != TXN_NONE) {
        reply(s, 503, "5.5.1", "Error: nested MAIL command");
        return;
    }
    if (!take_keyword(&arg, &len, "FROM:")) {
        reply(s, 501, "5.5.4", "Syntax: MAIL FROM:<address>");
        return;
    }
    struct smtp_path path;
    size_t used;
    enum smtp_path_error e = smtp_path_parse(
        arg, len, SMTP_PATH_ALLOW_NULL | SMTP_PATH_ALLOW_UTF8 | SMTP_PATH_ALLOW_BARE, &path, &used);
    if (e != SMTP_PATH_OK) {
        path_error(s, e, true);
        return;
    }
    struct smtp_mail_params params;
    struct smtp_param_error perr;
    if (smtp_mail_params_parse(arg + used, len - used, offered(s), &params, &perr) < 0) {
        reply(s, perr.code, perr.enh, "%s", perr.text);
        return;
    }
    if (path.utf8 && !params.smtputf8) {
        path_error(s, SMTP_PATH_NEED_UTF8, true);
        return;
    }
    if (params.size_given && params.size > s->set->max_message_size) {
        reply(s, 552, "5.3.4", "Error: message size exceeds the limit of %llu octets",
              (unsigned long long)s->set->max_message_size);
        return;
    }
    s->body = params.body;
    s->smtputf8 = params.smtputf8;
    struct smtp_reply r = {0};
    if (s->ops->mail(s->ctx, &path, &params, &r) == SMTP_SERVER_ASYNC) {
        s->state = STATE_WAITING;
        s->pending = PENDING_MAIL;
        return;
    }
    finish_mail(s, &r);
}

/* finish_rcpt - the host has answered RCPT */
static void finish_rcpt(struct smtp_server *s, const struct smtp_reply *r)
{
    if (host_accepts(r)) {
        s->txn = TXN_RCPT;
        s->nrcpt++;
    }
    reply_host(s, r, 250, "2.1.5", "Ok");
}

/* cmd_rcpt - RCPT TO:<forward-path> [parameters] */
static void cmd_rcpt(struct smtp_server *s, const char *arg, size_t len)
{
    if (s->txn == TXN_NONE) {
        reply(s, 503, "5.5.1", "Error: need MAIL command");
        return;
    }
    if (s->chunking) {
        /* RFC 3030 §2: the recipients come before the first BDAT. */
        reply(s, 503, "5.5.1", "Error: RCPT after BDAT");
        return;
    }
    s->rcpt_tried = true;
    if (!take_keyword(&arg, &len, "TO:")) {
        reply(s, 501, "5.5.4", "Syntax: RCPT TO:<address>");
        return;
    }
    struct smtp_path path;
    size_t used;
    enum smtp_path_error e = smtp_path_parse(
        arg, len, SMTP_PATH_ALLOW_POSTMASTER | SMTP_PATH_ALLOW_UTF8 | SMTP_PATH_ALLOW_BARE, &path,
        &used);
    if (e != SMTP_PATH_OK) {
        path_error(s, e, false);
        return;
    }
    if (path.utf8 && !s->smtputf8) {
        path_error(s, SMTP_PATH_NEED_UTF8, false);
        return;
    }
    /* With SMTPUTF8 declared on MAIL, ORCPT may carry UTF-8 too (RFC 6533). */
    struct smtp_rcpt_params params;
    struct smtp_param_error perr;
    if (smtp_rcpt_params_parse(arg + used, len - used, offered(s), s->smtputf8, &params, &perr) <
        0) {
        reply(s, perr.code, perr.enh, "%s", perr.text);
        return;
    }
    if (s->nrcpt >= s->set->max_recipients) {
        /* RFC 5321 §4.5.3.1.10: 452, and the client sends the rest later.
         * The client did nothing wrong, so this is not counted as an error. */
        s->not_an_error = true;
        reply(s, 452, "4.5.3", "Error: too many recipients");
        return;
    }
    struct smtp_reply r = {0};
    if (s->ops->rcpt(s->ctx, &path, &params, &r) == SMTP_SERVER_ASYNC) {
        s->state = STATE_WAITING;
        s->pending = PENDING_RCPT;
        return;
    }
    finish_rcpt(s, &r);
}

/* need_recipients - the reply when a message cannot start; false if one was sent */
static bool need_recipients(struct smtp_server *s)
{
    if (s->txn == TXN_NONE) {
        reply(s, 503, "5.5.1", "Error: need MAIL command");
        return false;
    }
    if (s->txn == TXN_MAIL) {
        /* RFC 2920 §3.1: after pipelined recipients that all failed, 554. */
        if (s->rcpt_tried)
            reply(s, 554, "5.5.1", "Error: no valid recipients");
        else
            reply(s, 503, "5.5.1", "Error: need RCPT command");
        return false;
    }
    return true;
}

/* cmd_data - DATA: the message follows, ended by CRLF "." CRLF */
static void cmd_data(struct smtp_server *s, const char *arg, size_t len)
{
    (void)arg;
    if (len > 0) {
        reply(s, 501, "5.5.4", "Syntax: DATA");
        return;
    }
    if (!need_recipients(s))
        return;
    if (s->chunking) {
        reply(s, 503, "5.5.1", "Error: DATA in a BDAT transaction");
        return;
    }
    if (s->body == SMTP_BODY_BINARYMIME) {
        /* RFC 3030 §3: binary content only ever travels in BDAT chunks. */
        reply(s, 503, "5.5.1", "Error: BODY=BINARYMIME needs BDAT");
        return;
    }
    struct smtp_reply r = {0};
    if (!s->ops->data_begin(s->ctx, &r)) {
        reply_host(s, &r, 451, "4.3.0", "Error: try again later");
        return;
    }
    message_start(s);
    s->state = STATE_DATA;
    reply(s, 354, NULL, "End data with <CR><LF>.<CR><LF>");
}

/* parse_bdat - "size [LAST]" */
static bool parse_bdat(const char *arg, size_t len, uint64_t *size, bool *last)
{
    size_t i = 0;
    uint64_t v = 0;
    while (i < len && arg[i] >= '0' && arg[i] <= '9') {
        unsigned d = (unsigned)(arg[i] - '0');
        if (v > (UINT64_MAX - d) / 10)
            return false;
        v = v * 10 + d;
        i++;
    }
    if (i == 0)
        return false;
    *size = v;
    *last = false;
    if (i == len)
        return true;
    if (len - i == 5 && strncasecmp(arg + i, " LAST", 5) == 0) {
        *last = true;
        return true;
    }
    return false;
}

/* refuse_chunk - read the coming chunk and throw it away, then reply */
static void refuse_chunk(struct smtp_server *s, unsigned code, const char *enh, const char *text)
{
    s->chunk_refusal_code = code;
    s->chunk_refusal_enh = enh;
    s->chunk_refusal_text = text;
}

/* cmd_bdat - BDAT size [LAST] (RFC 3030): exactly size octets follow */
static void cmd_bdat(struct smtp_server *s, const char *arg, size_t len)
{
    uint64_t size;
    bool last;
    if (!parse_bdat(arg, len, &size, &last)) {
        /* Without a size we cannot know where the chunk ends, so no byte
         * after this line can be trusted to be a command. */
        close_session(s);
        reply(s, 501, "5.5.4", "Syntax: BDAT size [LAST]; closing connection");
        return;
    }
    s->chunk_left = size;
    s->chunk_size = size;
    s->chunk_last = last;
    s->chunk_refusal_text = NULL;
    s->state = STATE_CHUNK;

    /* Whatever the verdict, the chunk's octets are read (RFC 3030 §2). */
    if (!(offered(s) & SMTP_EXT_CHUNKING)) {
        refuse_chunk(s, 503, "5.5.1", "Error: BDAT without EHLO and CHUNKING");
    } else if (s->txn == TXN_NONE) {
        refuse_chunk(s, 503, "5.5.1", "Error: need MAIL command");
    } else if (s->txn == TXN_MAIL) {
        refuse_chunk(s, s->rcpt_tried ? 554 : 503, "5.5.1",
                     s->rcpt_tried ? "Error: no valid recipients" : "Error: need RCPT command");
    } else if (!s->chunking) {
        struct smtp_reply r = {0};
        if (!s->ops->data_begin(s->ctx, &r)) {
            /* Refused before it began: read the chunk, then end the transaction. */
            txn_reset(s);
            s->chunk_refusal_copy = strdup(r.text);
            refuse_chunk(s, r.code ? r.code : 451, r.code ? r.enh : "4.3.0",
                         s->chunk_refusal_copy && r.code ? s->chunk_refusal_copy
                                                         : "Error: try again later");
        } else {
            s->chunking = true;
            message_start(s);
        }
    }
    if (size == 0)
        chunk_complete(s);
}

/* cmd_rset - RSET: abandon the transaction */
static void cmd_rset(struct smtp_server *s, const char *arg, size_t len)
{
    (void)arg;
    (void)len;
    txn_reset(s);
    reply(s, 250, "2.0.0", "Ok");
}

/* cmd_noop - NOOP (RFC 5321 §4.1.1.9: an argument is allowed and ignored) */
static void cmd_noop(struct smtp_server *s, const char *arg, size_t len)
{
    (void)arg;
    (void)len;
    reply(s, 250, "2.0.0", "Ok");
}

/* cmd_quit - QUIT: 221 and close */
static void cmd_quit(struct smtp_server *s, const char *arg, size_t len)
{
    (void)arg;
    (void)len;
    reply(s, 221, "2.0.0", "Bye");
    close_session(s);
}

/* cmd_vrfy - VRFY: never confirms or denies a user (RFC 5321 §3.5.3) */
static void cmd_vrfy(struct smtp_server *s, const char *arg, size_t len)
{
    (void)arg;
    if (len == 0) {
        reply(s, 501, "5.5.4", "Syntax: VRFY address");
        return;
    }
    reply(s, 252, "2.0.0", "Cannot verify users; send mail and delivery will be attempted");
}

/* cmd_help - HELP */
static void cmd_help(struct smtp_server *s, const char *arg, size_t len)
{
    (void)arg;
    (void)len;
    reply(s, 214, "2.0.0",
          "Commands: HELO EHLO MAIL RCPT DATA BDAT RSET NOOP QUIT VRFY HELP\n"
          "See RFC 5321; this server is Pigeon");
}

/* cmd_not_implemented - commands we know of and do not offer */
static void cmd_not_implemented(struct smtp_server *s, const char *arg, size_t len)
{
    (void)arg;
    (void)len;
    /* STARTTLS and AUTH will move out of this list with the TLS/AUTH work. */
    reply(s, 502, "5.5.1", "Error: command not implemented");
}

/* cmd_http - a web client on the SMTP port: end the session (cross-protocol attacks) */
static void cmd_http(struct smtp_server *s, const char *arg, size_t len)
{
    (void)arg;
    (void)len;
    reply(s, 221, "2.7.0", "Error: this is an SMTP server, not HTTP; closing");
    close_session(s);
}

struct command {
    const char *verb;
    bool long_line; /* may carry ESMTP parameters past the command line limit */
    void (*run)(struct smtp_server *s, const char *arg, size_t len);
};

static const struct command commands[] = {
    {"EHLO", false, cmd_ehlo},
    {"HELO", false, cmd_helo},
    {"MAIL", true, cmd_mail},
    {"RCPT", true, cmd_rcpt},
    {"DATA", false, cmd_data},
    {"BDAT", false, cmd_bdat},
    {"RSET", false, cmd_rset},
    {"NOOP", false, cmd_noop},
    {"QUIT", false, cmd_quit},
    {"VRFY", false, cmd_vrfy},
    {"HELP", false, cmd_help},
    {"EXPN", false, cmd_not_implemented},
    {"STARTTLS", false, cmd_not_implemented},
    {"AUTH", false, cmd_not_implemented},
    {"ETRN", false, cmd_not_implemented},
    {"TURN", false, cmd_not_implemented},
    {"ATRN", false, cmd_not_implemented},
    /* HTTP request methods: nothing speaking them belongs here. */
    {"GET", false, cmd_http},
    {"POST", false, cmd_http},
    {"HEAD", false, cmd_http},
    {"PUT", false, cmd_http},
    {"DELETE", false, cmd_http},
    {"OPTIONS", false, cmd_http},
    {"CONNECT", false, cmd_http},
    {"TRACE", false, cmd_http},
    {"PATCH", false, cmd_http},
};

/* find_command - the table entry for verb[0..len), any case */
static const struct command *find_command(const char *verb, size_t len)
{
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
        if (strlen(commands[i].verb) == len && strncasecmp(commands[i].verb, verb, len) == 0)
            return &commands[i];
    }
    return NULL;
}

/* is_quit - "QUIT" with nothing but spaces after it */
static bool is_quit(const char *line, size_t n)
{
    trim_spaces(line, &n);
    return n == 4 && strncasecmp(line, "QUIT", 4) == 0;
}

/* command_limit - the longest acceptable line for a command, CRLF included */
static size_t command_limit(const struct smtp_server *s, const struct command *c)
{
    if (c != NULL && c->long_line && s->greeting == GREETING_EHLO)
        return s->set->max_command_line + PARAMETER_ALLOWANCE;
    return s->set->max_command_line;
}

/* line_too_long - reply for a command line past the limit */
static void line_too_long(struct smtp_server *s)
{
    reply(s, 500, "5.5.2", "Error: line too long (limit %zu octets)", s->set->max_command_line);
}

/* process_line - one command line, LF included */
static void process_line(struct smtp_server *s, const char *line, size_t len)
{
    size_t n = len - 1; /* without the LF */
    bool crlf = n > 0 && line[n - 1] == '\r';
    if (crlf)
        n--;

    bool bare_cr = memchr(line, '\r', n) != NULL;
    if ((!crlf && !s->lf_ok) || bare_cr) {
        /* RFC 5321 §2.3.8: lines end with CRLF.  Honour a QUIT anyway:
         * ending the session cannot be abused. */
        if (is_quit(line, n)) {
            cmd_quit(s, NULL, 0);
            return;
        }
        reply(s, 500, "5.5.2", "Error: bare %s received; SMTP command lines end with CRLF",
              bare_cr ? "CR" : "LF");
        return;
    }
    if (memchr(line, '\0', n) != NULL) {
        reply(s, 500, "5.5.2", "Error: NUL octet in command");
        return;
    }

    size_t vlen = 0;
    while (vlen < n && line[vlen] != ' ')
        vlen++;
    const struct command *c = find_command(line, vlen);
    if (len > command_limit(s, c)) {
        line_too_long(s);
        return;
    }
    if (c == NULL) {
        reply(s, 500, "5.5.1", "Error: command not recognized");
        return;
    }
    const char *arg = line + vlen;
    size_t alen = n - vlen;
    if (alen > 0) { /* the one space after the verb */
        arg++;
        alen--;
    }
    c->run(s, arg, alen);
}

/* feed_command - take one command line (or part of one) from p[0..n) */
static size_t feed_command(struct smtp_server *s, const uint8_t *p, size_t n)
{
    const uint8_t *lf = memchr(p, '\n', n);
    size_t take = lf ? (size_t)(lf - p) + 1 : n;
    size_t limit = s->set->max_command_line + PARAMETER_ALLOWANCE;

    if (s->line_too_long) {
        /* Skip the rest of an over-long line; answer once at its end. */
        if (lf) {
            s->line_too_long = false;
            line_too_long(s);
        }
        return take;
    }
    if (s->line.len == 0 && lf != NULL) {
        /* The usual case: the whole line is here; parse it in place. */
        if (take > limit)
            line_too_long(s);
        else
            process_line(s, (const char *)p, take);
        return take;
    }
    if (take > limit - s->line.len || buf_append(&s->line, p, take) < 0) {
        buf_free(&s->line);
        if (lf)
            line_too_long(s);
        else
            s->line_too_long = true;
        return take;
    }
    if (lf) {
        process_line(s, (const char *)s->line.data, s->line.len);
        buf_free(&s->line);
    }
    return take;
}

/* ---- the public interface ------------------------------------------------------- */

/* smtp_server_new - an engine for one session */
struct smtp_server *smtp_server_new(const struct smtp_server_settings *settings,
                                    const struct smtp_server_ops *ops, void *ctx, bool lf_ok)
{
    struct smtp_server *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return NULL;
    s->set = settings;
    s->ops = ops;
    s->ctx = ctx;
    s->lf_ok = lf_ok;
    s->state = STATE_COMMAND;
    buf_init(&s->line, settings->max_command_line + PARAMETER_ALLOWANCE);
    buf_init(&s->out, OUTPUT_LIMIT);
    return s;
}

/* smtp_server_free - release the engine */
void smtp_server_free(struct smtp_server *s)
{
    if (s == NULL)
        return;
    if (s->state != STATE_WAITING)
        txn_reset(s);
    free(s->chunk_refusal_copy);
    buf_free(&s->line);
    buf_free(&s->out);
    free(s);
}

/* smtp_server_greet - the 220 greeting */
void smtp_server_greet(struct smtp_server *s)
{
    reply(s, 220, NULL, "%s ESMTP Pigeon", s->set->hostname);
}

/* smtp_server_refuse - a closing reply instead of a session */
void smtp_server_refuse(struct smtp_server *s, unsigned code, const char *enh, const char *text)
{
    close_session(s);
    reply_text(s, code, enh, text);
}

/* smtp_server_feed - process client bytes; returns how many were consumed */
size_t smtp_server_feed(struct smtp_server *s, const uint8_t *p, size_t n)
{
    size_t used = 0;
    while (used < n) {
        switch (s->state) {
        case STATE_COMMAND:
            if (s->out.len >= OUTPUT_HIGH_WATER)
                return used;
            used += feed_command(s, p + used, n - used);
            break;
        case STATE_DATA:
            used += feed_data(s, p + used, n - used);
            break;
        case STATE_CHUNK:
            used += feed_chunk(s, p + used, n - used);
            break;
        case STATE_WAITING:
        case STATE_CLOSED:
            return used;
        }
    }
    return used;
}

/* smtp_server_resume - the answer to an operation that returned SMTP_SERVER_ASYNC */
void smtp_server_resume(struct smtp_server *s, const struct smtp_reply *reply)
{
    if (s->state != STATE_WAITING)
        return;
    enum smtp_pending pending = s->pending;
    s->pending = PENDING_NONE;
    s->state = STATE_COMMAND;
    switch (pending) {
    case PENDING_MAIL:
        finish_mail(s, reply);
        break;
    case PENDING_RCPT:
        finish_rcpt(s, reply);
        break;
    case PENDING_DATA_END:
        finish_data_end(s, reply);
        break;
    case PENDING_NONE:
        break;
    }
}

/* smtp_server_timeout - the client was silent too long */
void smtp_server_timeout(struct smtp_server *s)
{
    if (s->state == STATE_CLOSED)
        return;
    reply(s, 421, "4.4.2", "%s Error: timeout exceeded", s->set->hostname);
    close_session(s);
}

/* smtp_server_output - the bytes waiting to be sent */
struct buf *smtp_server_output(struct smtp_server *s)
{
    return &s->out;
}

/* smtp_server_output_sent - the host took the whole output */
void smtp_server_output_sent(struct smtp_server *s)
{
    /* Keep a small buffer for the next replies; give a big one back. */
    if (s->out.cap > 1024)
        buf_free(&s->out);
    else
        buf_clear(&s->out);
}

/* smtp_server_closing - the session is over once the output is sent */
bool smtp_server_closing(const struct smtp_server *s)
{
    return s->state == STATE_CLOSED;
}

/* smtp_server_waiting - an operation waits for smtp_server_resume() */
bool smtp_server_waiting(const struct smtp_server *s)
{
    return s->state == STATE_WAITING;
}

/* smtp_server_in_message - receiving message data */
bool smtp_server_in_message(const struct smtp_server *s)
{
    return s->state == STATE_DATA || s->state == STATE_CHUNK;
}

/* smtp_server_partial_line - part of a command line is buffered */
bool smtp_server_partial_line(const struct smtp_server *s)
{
    return s->state == STATE_COMMAND && (s->line.len > 0 || s->line_too_long);
}
