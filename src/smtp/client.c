/*
 * client.c - the SMTP client engine (see client.h for how it is driven).
 *
 * States, in the order a session goes through them:
 *
 *   GREETING  waiting for the server's 220
 *   EHLO      EHLO sent; a 5xx falls back to HELO
 *   HELO      HELO sent
 *             (STARTTLS and AUTH will sit here, between the greeting and MAIL)
 *   ENVELOPE  MAIL, RCPT and perhaps DATA sent, their replies awaited
 *   BODY      the host hands over the message, piece by piece
 *   END       the final "." or BDAT LAST sent, its reply awaited
 *   QUIT      QUIT sent
 *   DONE      finished; the result says how
 *
 * Replies are matched to what was sent through a queue of expectations, so
 * PIPELINING is simply "send several, expect several".  Every reply goes
 * through the defensive reader in reply.c; any protocol violation ends the
 * session with SMTP_CLIENT_PROTOCOL.
 */
#include "client.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "smtp/reply.h"

/* RFC 5321 §4.5.3.2, in seconds. */
#define TIMEOUT_GREETING 300
#define TIMEOUT_MAIL     300
#define TIMEOUT_RCPT     300
#define TIMEOUT_DATA     120
#define TIMEOUT_BLOCK    180
#define TIMEOUT_END      600

#define OUTPUT_LIMIT     (64u * 1024 * 1024)
#define CHUNKS_IN_FLIGHT 8 /* BDAT chunks sent ahead of their replies */

enum client_state {
    ST_GREETING,
    ST_EHLO,
    ST_HELO,
    ST_ENVELOPE,
    ST_BODY,
    ST_END,
    ST_QUIT,
    ST_DONE,
};

/* What a reply that has yet to come will answer. */
enum expect {
    EXPECT_MAIL,
    EXPECT_RCPT,
    EXPECT_DATA,
    EXPECT_CHUNK,   /* a BDAT chunk that is not the last */
    EXPECT_END,     /* "." or BDAT LAST: the message's fate */
    EXPECT_DISCARD, /* "." after a 354 that came with no recipient accepted */
};

struct expectation {
    enum expect what;
    size_t rcpt; /* EXPECT_RCPT: which recipient */
};

struct smtp_client {
    const struct smtp_client_settings *set;
    const struct smtp_client_message *msg;
    enum client_state state;
    struct smtp_reply_reader reader;
    struct buf out;
    struct buf scratch; /* a BDAT chunk being converted */

    unsigned ext;      /* what the server offered */
    uint64_t max_size; /* its SIZE limit, 0 if none */
    bool use_bdat;

    struct expectation *expect; /* a ring */
    size_t expect_cap, expect_head, expect_len;
    size_t next_rcpt;     /* without PIPELINING: the next RCPT to send */
    size_t accepted;      /* recipients the server took at RCPT */
    bool envelope_failed; /* MAIL or DATA refused: the message will not go */
    unsigned chunks_out;  /* BDAT chunks awaiting replies */

    /* Conversion of the body into SMTP text. */
    bool at_line_start;
    bool cr_pending;

    /* Commands sent that await a reply, and replies taken, counted from
     * EHLO on: a reply may only answer a command the server can have seen. */
    uint64_t commands;
    uint64_t answered;
    uint64_t commands_before_feed; /* commands when smtp_client_feed() began */

    struct smtp_client_result result;
    bool protocol_error;
    bool unsuitable;
};

/* ---- results ------------------------------------------------------------------- */

/* set_reply - copy a reply into a result slot */
static void set_reply(struct smtp_client_reply *slot, unsigned code, const char *enh,
                      const char *text)
{
    free(slot->text);
    slot->code = code;
    snprintf(slot->enh, sizeof(slot->enh), "%s", enh ? enh : "");
    slot->text = text ? strdup(text) : NULL;
}

/* set_error - the result's explanation, in words (the first one stays) */
static void set_error(struct smtp_client *c, const char *text)
{
    if (c->result.error[0] == '\0')
        snprintf(c->result.error, sizeof(c->result.error), "%s", text);
}

/* finish - compute the status and stop */
static void finish(struct smtp_client *c)
{
    struct smtp_client_result *r = &c->result;
    c->state = ST_DONE;
    if (c->protocol_error) {
        r->status = SMTP_CLIENT_PROTOCOL;
        return;
    }
    if (c->unsuitable) {
        r->status = SMTP_CLIENT_UNSUITABLE;
        return;
    }
    if (r->final.code / 100 == 2 && c->accepted > 0) {
        r->status = c->accepted == c->msg->nrcpt ? SMTP_CLIENT_SENT : SMTP_CLIENT_PARTIAL;
        if (r->status == SMTP_CLIENT_PARTIAL)
            set_error(c, "some recipients were refused");
        return;
    }
    /* Nothing went.  Permanent only if every answer was a 5xx: a 4xx, a
     * recipient never answered or a lost connection is worth another try. */
    bool temporary = r->final.code / 100 != 5;
    for (size_t i = 0; i < c->msg->nrcpt; i++)
        if (r->rcpt[i].code / 100 != 5)
            temporary = true;
    r->status = temporary ? SMTP_CLIENT_TEMPFAIL : SMTP_CLIENT_PERMFAIL;
    set_error(c, "the message was not accepted");
}

/* fail_final - the message ends with this reply (or a local reason) for every recipient left */
static void fail_final(struct smtp_client *c, unsigned code, const char *enh, const char *text)
{
    set_reply(&c->result.final, code, enh, text);
    for (size_t i = 0; i < c->msg->nrcpt; i++)
        if (c->result.rcpt[i].code / 100 == 2 || c->result.rcpt[i].code == 0)
            set_reply(&c->result.rcpt[i], code, enh, text);
    c->accepted = 0;
}

/*
 * protocol_error - the server broke the protocol: stop.  Once QUIT is out
 * the message's fate is already known, and a server that garbles its
 * goodbye changes nothing about it (fix: a broken reply to QUIT used to turn
 * a delivered message into SMTP_CLIENT_PROTOCOL, inviting a duplicate).
 */
static void protocol_error(struct smtp_client *c, const char *why)
{
    if (c->state != ST_QUIT) {
        c->protocol_error = true;
        set_error(c, why);
    }
    finish(c);
}

/* ---- output ---------------------------------------------------------------------- */

/* put - append to the output (the limit is far above anything we send) */
static void put(struct smtp_client *c, const void *p, size_t n)
{
    if (buf_append(&c->out, p, n) < 0 && !c->protocol_error) {
        c->protocol_error = true;
        set_error(c, "out of memory for output");
    }
}

/* putf - formatted output */
static void putf(struct smtp_client *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void putf(struct smtp_client *c, const char *fmt, ...)
{
    char line[1200];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    if (n > 0)
        put(c, line, (size_t)n < sizeof(line) ? (size_t)n : sizeof(line) - 1);
}

/* expect - one more reply to wait for */
static void expect(struct smtp_client *c, enum expect what, size_t rcpt)
{
    if (c->expect_len == c->expect_cap) {
        size_t cap = c->expect_cap * 2;
        struct expectation *e = calloc(cap, sizeof(*e));
        if (e == NULL) {
            c->protocol_error = true;
            set_error(c, "out of memory");
            return;
        }
        for (size_t i = 0; i < c->expect_len; i++)
            e[i] = c->expect[(c->expect_head + i) % c->expect_cap];
        free(c->expect);
        c->expect = e;
        c->expect_cap = cap;
        c->expect_head = 0;
    }
    c->expect[(c->expect_head + c->expect_len) % c->expect_cap] = (struct expectation){what, rcpt};
    c->expect_len++;
    c->commands++;
}

/* quit - say goodbye and wait for the answer */
static void quit(struct smtp_client *c)
{
    putf(c, "QUIT\r\n");
    c->commands++;
    c->state = ST_QUIT;
}

/* ---- the envelope ------------------------------------------------------------------- */

/* send_rcpt - RCPT TO for recipient i */
static void send_rcpt(struct smtp_client *c, size_t i)
{
    const struct smtp_client_rcpt *r = &c->msg->rcpt[i];
    putf(c, "RCPT TO:<%s>", r->address);
    if ((c->ext & SMTP_EXT_DSN) && r->notify) {
        if (r->notify & SMTP_NOTIFY_NEVER) {
            putf(c, " NOTIFY=NEVER");
        } else {
            const char *sep = "";
            putf(c, " NOTIFY=");
            if (r->notify & SMTP_NOTIFY_SUCCESS) {
                putf(c, "SUCCESS");
                sep = ",";
            }
            if (r->notify & SMTP_NOTIFY_FAILURE) {
                putf(c, "%sFAILURE", sep);
                sep = ",";
            }
            if (r->notify & SMTP_NOTIFY_DELAY)
                putf(c, "%sDELAY", sep);
        }
    }
    if ((c->ext & SMTP_EXT_DSN) && r->orcpt)
        putf(c, " ORCPT=%s", r->orcpt);
    putf(c, "\r\n");
    expect(c, EXPECT_RCPT, i);
}

/* suitable - can this server carry this message?  Sets the error if not */
static bool suitable(struct smtp_client *c)
{
    const struct smtp_client_message *m = c->msg;
    const char *why = NULL;
    if (m->smtputf8 && !(c->ext & SMTP_EXT_SMTPUTF8))
        why = "the message needs SMTPUTF8 (UTF-8 addresses or headers) and the server does not "
              "offer it";
    else if (m->body == SMTP_BODY_8BITMIME && !(c->ext & SMTP_EXT_8BITMIME))
        why = "the message has 8-bit content and the server does not offer 8BITMIME";
    else if (m->body == SMTP_BODY_BINARYMIME &&
             (c->ext & (SMTP_EXT_BINARYMIME | SMTP_EXT_CHUNKING)) !=
                 (SMTP_EXT_BINARYMIME | SMTP_EXT_CHUNKING))
        why = "the message is binary and the server does not offer BINARYMIME with CHUNKING";
    if (why != NULL) {
        c->unsuitable = true;
        set_error(c, why);
        return false;
    }
    if (c->max_size > 0 && m->size > c->max_size) {
        char text[160];
        snprintf(text, sizeof(text), "the message is %llu octets and the server takes at most %llu",
                 (unsigned long long)m->size, (unsigned long long)c->max_size);
        c->unsuitable = true;
        set_error(c, text);
        return false;
    }
    return true;
}

/* start_transaction - MAIL, then RCPTs (and DATA), pipelined when offered */
static void start_transaction(struct smtp_client *c)
{
    const struct smtp_client_message *m = c->msg;
    if (!suitable(c)) {
        quit(c);
        return;
    }
    c->use_bdat = (c->ext & SMTP_EXT_CHUNKING) != 0;
    putf(c, "MAIL FROM:<%s>", m->from);
    if ((c->ext & SMTP_EXT_SIZE) && m->size > 0)
        putf(c, " SIZE=%llu", (unsigned long long)m->size);
    if (m->body == SMTP_BODY_8BITMIME)
        putf(c, " BODY=8BITMIME");
    else if (m->body == SMTP_BODY_BINARYMIME)
        putf(c, " BODY=BINARYMIME");
    if (m->smtputf8)
        putf(c, " SMTPUTF8");
    if ((c->ext & SMTP_EXT_DSN) && m->ret != SMTP_RET_UNSPECIFIED)
        putf(c, " RET=%s", m->ret == SMTP_RET_FULL ? "FULL" : "HDRS");
    if ((c->ext & SMTP_EXT_DSN) && m->envid)
        putf(c, " ENVID=%s", m->envid);
    putf(c, "\r\n");
    expect(c, EXPECT_MAIL, 0);
    c->state = ST_ENVELOPE;
    if (c->ext & SMTP_EXT_PIPELINING) {
        /* RFC 2920: the whole envelope in one go; DATA last of the group. */
        for (size_t i = 0; i < m->nrcpt; i++)
            send_rcpt(c, i);
        c->next_rcpt = m->nrcpt;
        if (!c->use_bdat) {
            putf(c, "DATA\r\n");
            expect(c, EXPECT_DATA, 0);
        }
    }
}

/* envelope_done - every MAIL/RCPT reply is in (the non-pipelined and BDAT paths) */
static void envelope_done(struct smtp_client *c)
{
    if (c->envelope_failed || c->accepted == 0) {
        if (c->result.final.code == 0 && !c->envelope_failed)
            set_reply(&c->result.final, 554, "5.5.1", "no recipient was accepted");
        quit(c);
        return;
    }
    if (c->use_bdat) {
        c->state = ST_BODY;
        c->at_line_start = true;
        c->cr_pending = false;
        return;
    }
    putf(c, "DATA\r\n");
    expect(c, EXPECT_DATA, 0);
}

/* ---- replies ------------------------------------------------------------------------ */

/* parse_ehlo - the extensions in an EHLO reply (first line is the server's name) */
static void parse_ehlo(struct smtp_client *c, const char *text)
{
    static const struct {
        const char *keyword;
        unsigned ext;
    } known[] = {
        {"PIPELINING", SMTP_EXT_PIPELINING},
        {"SIZE", SMTP_EXT_SIZE},
        {"8BITMIME", SMTP_EXT_8BITMIME},
        {"SMTPUTF8", SMTP_EXT_SMTPUTF8},
        {"CHUNKING", SMTP_EXT_CHUNKING},
        {"BINARYMIME", SMTP_EXT_BINARYMIME},
        {"DSN", SMTP_EXT_DSN},
        {"ENHANCEDSTATUSCODES", SMTP_EXT_ENHANCEDSTATUSCODES},
        {"STARTTLS", SMTP_EXT_STARTTLS},
        {"AUTH", SMTP_EXT_AUTH},
    };
    c->ext = 0;
    c->max_size = 0;
    const char *line = strchr(text, '\n');
    while (line != NULL) {
        line++;
        const char *end = strchr(line, '\n');
        size_t len = end ? (size_t)(end - line) : strlen(line);
        size_t klen = 0;
        while (klen < len && line[klen] != ' ')
            klen++;
        for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++) {
            if (strlen(known[i].keyword) == klen && strncasecmp(line, known[i].keyword, klen) == 0)
                c->ext |= known[i].ext;
        }
        if (klen == 4 && strncasecmp(line, "SIZE", 4) == 0 && klen < len) {
            uint64_t v = 0;
            for (size_t k = klen + 1; k < len && line[k] >= '0' && line[k] <= '9'; k++)
                v = v < UINT64_MAX / 10 ? v * 10 + (uint64_t)(line[k] - '0') : UINT64_MAX;
            c->max_size = v;
        }
        line = end;
    }
    c->result.extensions = c->ext;
}

/* on_envelope_reply - a reply to MAIL, RCPT, DATA or a BDAT chunk */
static void on_envelope_reply(struct smtp_client *c, struct expectation e,
                              const struct smtp_reply_read *r)
{
    bool ok = r->code / 100 == 2;
    switch (e.what) {
    case EXPECT_MAIL:
        if (!ok) {
            c->envelope_failed = true;
            fail_final(c, r->code, r->enh, r->text);
            set_error(c, "the server refused the sender");
        }
        break;
    case EXPECT_RCPT:
        /* Fix: after a refused MAIL the pipelined RCPTs' replies ("503 need
         * MAIL") say nothing new; keep the sender's refusal as their reason. */
        if (c->envelope_failed)
            break;
        set_reply(&c->result.rcpt[e.rcpt], r->code, r->enh, r->text);
        if (ok)
            c->accepted++;
        break;
    case EXPECT_DATA:
        if (r->code == 354 && !c->envelope_failed && c->accepted > 0) {
            c->state = ST_BODY;
            c->at_line_start = true;
            c->cr_pending = false;
            return;
        }
        if (r->code == 354) {
            /* RFC 2920 §3.1: go through with an empty message to get back in step. */
            putf(c, ".\r\n");
            expect(c, EXPECT_DISCARD, 0);
            return;
        }
        if (!c->envelope_failed)
            fail_final(c, r->code, r->enh, r->text);
        c->envelope_failed = true;
        break;
    case EXPECT_CHUNK:
        c->chunks_out--;
        if (!ok && !c->envelope_failed) {
            c->envelope_failed = true;
            fail_final(c, r->code, r->enh, r->text);
        }
        /* Fix: RFC 3030 §2 sends no more chunks after a refused one; once
         * those in flight are answered, QUIT (the engine used to wait here
         * until the timeout, then report a 5xx refusal as TEMPFAIL). */
        if (c->envelope_failed && c->expect_len == 0)
            quit(c);
        return;
    case EXPECT_END:
        c->chunks_out = 0;
        if (c->envelope_failed)
            break; /* the failure was recorded already */
        set_reply(&c->result.final, r->code, r->enh, r->text);
        if (ok) {
            for (size_t i = 0; i < c->msg->nrcpt; i++)
                if (c->result.rcpt[i].code / 100 == 2)
                    set_reply(&c->result.rcpt[i], r->code, r->enh, r->text);
        } else {
            fail_final(c, r->code, r->enh, r->text);
        }
        break;
    case EXPECT_DISCARD:
        break;
    }
    if (c->expect_len > 0 || c->state == ST_BODY)
        return;
    /* Nothing more in flight. */
    if (c->state == ST_END || c->envelope_failed) {
        quit(c);
        return;
    }
    if (!(c->ext & SMTP_EXT_PIPELINING) && c->next_rcpt < c->msg->nrcpt) {
        send_rcpt(c, c->next_rcpt++);
        return;
    }
    envelope_done(c);
}

/*
 * reply_fits - could the server answer what was sent with this code?  Fix:
 * a reply of the wrong kind (a 354 to MAIL, a 250 to DATA, a 250
 * greeting) used to be taken as a refusal and reported as each recipient's
 * fate; RFC 5321 §4.3.2 lists what each command may get.
 */
static bool reply_fits(const struct smtp_client *c, unsigned code)
{
    unsigned class = code / 100;
    if (class == 4 || class == 5)
        return true;
    switch (c->state) {
    case ST_GREETING:
        return code == 220; /* §4.3.1: 220, or 554 and the like */
    case ST_EHLO:
    case ST_HELO:
        return class == 2;
    case ST_ENVELOPE:
    case ST_BODY:
    case ST_END:
        if (c->expect_len == 0)
            return true; /* nothing asked: on_reply says so */
        if (c->expect[c->expect_head].what == EXPECT_DATA)
            return code == 354;
        return class == 2;
    default:
        return true;
    }
}

/* on_reply - one complete reply from the server */
static void on_reply(struct smtp_client *c, const struct smtp_reply_read *r)
{
    if (c->state == ST_QUIT) {
        /* Whatever the answer to QUIT, even 421, the session is over and the
         * message's fate known (fix: a 421 here used to fail a delivered message). */
        finish(c);
        return;
    }
    if (c->state != ST_GREETING) {
        /* Fix: match the reply to a command the server has had a chance to
         * see.  Replies fed in one call arrived before anything the engine
         * produced during that call was sent. */
        c->answered++;
        if (c->answered > c->commands && r->code != 421) {
            protocol_error(c, "a reply the client did not ask for");
            return;
        }
        if (c->answered > c->commands_before_feed && r->code != 421) {
            protocol_error(c, "a reply to a command not yet sent");
            return;
        }
    }
    if (r->code == 421) {
        /* The server is closing the connection (RFC 5321 §3.8). */
        fail_final(c, r->code, r->enh, r->text);
        set_error(c, "the server closed the session (421)");
        finish(c);
        return;
    }
    if (!reply_fits(c, r->code)) {
        char why[64];
        snprintf(why, sizeof(why), "an unexpected %u reply", r->code);
        protocol_error(c, why);
        return;
    }
    switch (c->state) {
    case ST_GREETING:
        if (r->code != 220) {
            fail_final(c, r->code, r->enh, r->text);
            set_error(c, "the server refused the connection");
            quit(c);
            return;
        }
        putf(c, "EHLO %s\r\n", c->set->helo_name);
        c->commands++;
        c->state = ST_EHLO;
        return;
    case ST_EHLO:
        if (r->code / 100 == 2) {
            parse_ehlo(c, r->text);
            start_transaction(c);
        } else if (r->code / 100 == 5) {
            /* An old server: HELO, and no extensions. */
            putf(c, "HELO %s\r\n", c->set->helo_name);
            c->commands++;
            c->state = ST_HELO;
        } else {
            fail_final(c, r->code, r->enh, r->text);
            quit(c);
        }
        return;
    case ST_HELO:
        if (r->code / 100 == 2) {
            c->ext = 0;
            start_transaction(c);
        } else {
            fail_final(c, r->code, r->enh, r->text);
            set_error(c, "the server refused HELO");
            quit(c);
        }
        return;
    case ST_ENVELOPE:
    case ST_BODY:
    case ST_END: {
        if (c->expect_len == 0) {
            c->protocol_error = true;
            set_error(c, "a reply the client did not ask for");
            finish(c);
            return;
        }
        struct expectation e = c->expect[c->expect_head];
        c->expect_head = (c->expect_head + 1) % c->expect_cap;
        c->expect_len--;
        on_envelope_reply(c, e, r);
        return;
    }
    case ST_QUIT:
    case ST_DONE:
        return;
    }
}

/* ---- the body --------------------------------------------------------------------- */

/*
 * convert - p[0..n) as SMTP text into out: every line ending CRLF (bare
 * LF and bare CR become CRLF), and with dots, a leading dot doubled
 * (RFC 5321 §4.5.2).  False if out is full: then part of the text is
 * missing and none of it may be sent.
 */
static bool convert(struct smtp_client *c, struct buf *out, const uint8_t *p, size_t n, bool dots)
{
    bool ok = true;
    size_t start = 0;
    for (size_t i = 0; i < n; i++) {
        uint8_t ch = p[i];
        if (c->cr_pending) {
            c->cr_pending = false;
            if (ch == '\n') {
                /* CRLF: pass through as it is (flushed with the span below) */
                c->at_line_start = true;
                continue;
            }
            /* a bare CR: end the line before this octet */
            ok &= buf_append(out, p + start, i - start) == 0;
            ok &= buf_append(out, "\n", 1) == 0;
            start = i;
            c->at_line_start = true;
        }
        if (ch == '\r') {
            c->cr_pending = true;
            continue;
        }
        if (ch == '\n') {
            /* a bare LF */
            ok &= buf_append(out, p + start, i - start) == 0;
            ok &= buf_append(out, "\r\n", 2) == 0;
            start = i + 1;
            c->at_line_start = true;
            continue;
        }
        if (c->at_line_start && dots && ch == '.') {
            ok &= buf_append(out, p + start, i - start) == 0;
            ok &= buf_append(out, ".", 1) == 0;
            start = i;
        }
        c->at_line_start = false;
    }
    ok &= buf_append(out, p + start, n - start) == 0;
    return ok;
}

/* end_text - close the last line (a dangling CR, or text with no line end); false if out is full */
static bool end_text(struct smtp_client *c, struct buf *out)
{
    bool ok = true;
    if (c->cr_pending) {
        ok &= buf_append(out, "\n", 1) == 0;
        c->cr_pending = false;
        c->at_line_start = true;
    }
    if (!c->at_line_start)
        ok &= buf_append(out, "\r\n", 2) == 0;
    c->at_line_start = true;
    return ok;
}

/*
 * body_failed - a piece of the message did not fit in the output.  Fix:
 * the appends used to fail silently, and the message went out cut short
 * with its terminating dot after it.  Now nothing of it is sent: the
 * session ends and the caller drops the connection, which makes the server
 * discard the transaction.
 */
static void body_failed(struct smtp_client *c)
{
    buf_free(&c->out);
    set_error(c, "a piece of the message is too big for the output buffer");
    fail_final(c, 0, NULL, NULL);
    finish(c);
}

/* smtp_client_body - the next piece of the message */
void smtp_client_body(struct smtp_client *c, const uint8_t *p, size_t n, bool last)
{
    if (c->state != ST_BODY)
        return;
    if (n == 0)
        p = (const uint8_t *)""; /* fix: an empty last piece may come as NULL (no NULL + 0) */
    if (!c->use_bdat) {
        if (!convert(c, &c->out, p, n, true) ||
            (last && (!end_text(c, &c->out) || buf_append(&c->out, ".\r\n", 3) < 0))) {
            body_failed(c);
            return;
        }
        if (last) {
            expect(c, EXPECT_END, 0);
            c->state = ST_END;
        }
        return;
    }
    const uint8_t *data = p;
    size_t len = n;
    if (c->msg->body != SMTP_BODY_BINARYMIME) {
        buf_clear(&c->scratch);
        if (!convert(c, &c->scratch, p, n, false) || (last && !end_text(c, &c->scratch))) {
            body_failed(c);
            return;
        }
        data = c->scratch.data;
        len = c->scratch.len;
    }
    if (buf_space(&c->out) < len + 40) { /* the chunk and its BDAT line */
        body_failed(c);
        return;
    }
    if (last) {
        putf(c, "BDAT %zu LAST\r\n", len);
        put(c, data, len);
        expect(c, EXPECT_END, 0);
        c->state = ST_END;
    } else if (len > 0) {
        putf(c, "BDAT %zu\r\n", len);
        put(c, data, len);
        expect(c, EXPECT_CHUNK, 0);
        c->chunks_out++;
    }
    if (c->scratch.cap > 1024 * 1024)
        buf_free(&c->scratch);
}

/* smtp_client_body_type - the weakest BODY= that can carry p[0..n) */
enum smtp_body smtp_client_body_type(const uint8_t *p, size_t n)
{
    enum smtp_body type = SMTP_BODY_7BIT;
    size_t line = 0;
    for (size_t i = 0; i < n; i++) {
        if (p[i] == '\n') {
            line = 0;
            continue;
        }
        /* Fix: the CR of a CRLF is the line's end, not one of its 998
         * octets (RFC 5321 §4.5.3.1.6); it used to make a line of exactly
         * 998 octets count as binary. */
        if (p[i] == '\r' && i + 1 < n && p[i + 1] == '\n')
            continue;
        if (p[i] == '\0' || ++line > 998)
            return SMTP_BODY_BINARYMIME;
        if (p[i] >= 0x80)
            type = SMTP_BODY_8BITMIME;
    }
    return type;
}

/* ---- the public interface ---------------------------------------------------------- */

/* smtp_client_new - an engine for one message */
struct smtp_client *smtp_client_new(const struct smtp_client_settings *settings,
                                    const struct smtp_client_message *msg)
{
    struct smtp_client *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return NULL;
    c->set = settings;
    c->msg = msg;
    c->state = ST_GREETING;
    c->expect_cap = 16;
    c->expect = calloc(c->expect_cap, sizeof(*c->expect));
    c->result.rcpt = calloc(msg->nrcpt ? msg->nrcpt : 1, sizeof(*c->result.rcpt));
    if (c->expect == NULL || c->result.rcpt == NULL) {
        free(c->expect);
        free(c->result.rcpt);
        free(c);
        return NULL;
    }
    smtp_reply_reader_init(&c->reader, SMTP_REPLY_LINE_MAX, SMTP_REPLY_LINES_MAX);
    buf_init(&c->out, OUTPUT_LIMIT);
    buf_init(&c->scratch, OUTPUT_LIMIT);
    if (msg->nrcpt == 0) {
        set_error(c, "no recipients");
        c->unsuitable = true;
        finish(c);
    }
    return c;
}

/* smtp_client_free - release the engine and its result */
void smtp_client_free(struct smtp_client *c)
{
    if (c == NULL)
        return;
    for (size_t i = 0; i < c->msg->nrcpt; i++)
        free(c->result.rcpt[i].text);
    free(c->result.rcpt);
    free(c->result.final.text);
    free(c->expect);
    smtp_reply_reader_free(&c->reader);
    buf_free(&c->out);
    buf_free(&c->scratch);
    free(c);
}

/* smtp_client_feed - bytes from the server */
size_t smtp_client_feed(struct smtp_client *c, const uint8_t *p, size_t n)
{
    size_t pos = 0;
    c->commands_before_feed = c->commands;
    while (pos < n && c->state != ST_DONE) {
        size_t used;
        struct smtp_reply_read r;
        enum smtp_reply_status st = smtp_reply_read(&c->reader, p + pos, n - pos, &used, &r);
        pos += used;
        if (st == SMTP_REPLY_ERROR) {
            char why[160];
            snprintf(why, sizeof(why), "bad reply from the server: %s", c->reader.error);
            protocol_error(c, why);
            break;
        }
        if (st == SMTP_REPLY_MORE)
            break;
        on_reply(c, &r);
    }
    return pos;
}

/* smtp_client_eof - the server closed the connection */
void smtp_client_eof(struct smtp_client *c)
{
    if (c->state == ST_DONE)
        return;
    if (c->state == ST_QUIT) {
        finish(c); /* closing without (fully) answering QUIT is rude, not harmful */
        return;
    }
    if (smtp_reply_reader_partial(&c->reader)) {
        c->protocol_error = true;
        set_error(c, "the connection closed in the middle of a reply");
    } else {
        set_error(c, "the server closed the connection");
    }
    fail_final(c, 0, NULL, NULL);
    finish(c);
}

/* smtp_client_timed_out - no reply in time */
void smtp_client_timed_out(struct smtp_client *c)
{
    smtp_client_fail(c, "the server did not answer in time");
}

/* smtp_client_fail - the transport failed */
void smtp_client_fail(struct smtp_client *c, const char *why)
{
    if (c->state == ST_DONE)
        return;
    set_error(c, why);
    if (c->state != ST_QUIT)
        fail_final(c, 0, NULL, NULL);
    finish(c);
}

/* smtp_client_output - bytes to send */
struct buf *smtp_client_output(struct smtp_client *c)
{
    return &c->out;
}

/* smtp_client_output_sent - the output is gone */
void smtp_client_output_sent(struct smtp_client *c)
{
    if (c->out.cap > 256 * 1024)
        buf_free(&c->out);
    else
        buf_clear(&c->out);
}

/* smtp_client_want - what the engine needs next */
enum smtp_client_want smtp_client_want(const struct smtp_client *c)
{
    if (c->state == ST_DONE)
        return SMTP_CLIENT_DONE;
    if (c->state == ST_BODY && c->chunks_out < CHUNKS_IN_FLIGHT &&
        !(c->use_bdat && c->chunks_out > 0 && !(c->ext & SMTP_EXT_PIPELINING)) &&
        !c->envelope_failed)
        return SMTP_CLIENT_WANT_BODY;
    return SMTP_CLIENT_WANT_READ;
}

/* smtp_client_timeout - seconds to wait for the server now */
unsigned smtp_client_timeout(const struct smtp_client *c)
{
    switch (c->state) {
    case ST_GREETING:
        return TIMEOUT_GREETING;
    case ST_ENVELOPE:
        if (c->expect_len > 0 && c->expect[c->expect_head].what == EXPECT_DATA)
            return TIMEOUT_DATA;
        return c->expect_len > 0 && c->expect[c->expect_head].what == EXPECT_RCPT ? TIMEOUT_RCPT
                                                                                  : TIMEOUT_MAIL;
    case ST_BODY:
        return TIMEOUT_BLOCK;
    case ST_END:
        return TIMEOUT_END;
    default:
        return TIMEOUT_MAIL;
    }
}

/* smtp_client_result - how it went */
const struct smtp_client_result *smtp_client_result(const struct smtp_client *c)
{
    return &c->result;
}
