/*
 * fuzz_smtp_server.c - the SMTP server engine (src/smtp/server.c) driven by a
 * test host and fed arbitrary client bytes in arbitrary splits.
 *
 * An input is a small header and then what the client sends:
 *
 *   [0]     mode bits (enum fuzz_mode): trusted client (lf_ok), small limits,
 *           refuse instead of greeting, time out at the end, when the host's
 *           data_write() fails, and how the second run cuts the input
 *   [1]     the extensions offered (enum smtp_ext, low eight bits)
 *   [2..5]  the host's verdicts, taken in turn by every mail, rcpt,
 *           data_begin and data_end call: accept, accept with a text of its
 *           own, refuse, defer or 421; at once or asynchronously (the host
 *           calls smtp_server_resume() later)
 *   [6..7]  the seed of the second run's cuts
 *   [8..]   the client's bytes
 *
 * The session runs twice: once with the client's bytes fed in one piece and
 * once cut into pieces (one byte at a time, or at pseudo-random places), the
 * second time also trying to feed more while the host keeps an operation
 * waiting.  Both runs must give the same replies, the same host calls and
 * the same messages, byte for byte: TCP may cut a stream anywhere, and the
 * engine must not care.
 *
 * Along the way, whatever the input:
 *   - the output is always whole reply lines: CRLF-terminated, three digits,
 *     a multi-line reply ending in its last line, no control characters,
 *     at most 512 octets (RFC 5321 §4.2, §4.5.3.1.5);
 *   - the host's calls come in an order its contract allows (no RCPT before
 *     an accepted MAIL, no data before data_begin, no data_write after one
 *     failed, every open transaction ended by data_end or reset);
 *   - a message handed to data_end is CRLF text: no bare LF, and no bare CR
 *     unless the client is trusted; no line longer than the limit; a DATA
 *     message ends with CRLF (BINARYMIME is exempt: it is binary);
 *   - when the client sends one byte at a time, DATA ends exactly at the
 *     first CRLF "." CRLF after the DATA line (for a trusted client, at the
 *     first LF "." LF or LF "." CRLF), and the message stored is exactly the
 *     dot-unstuffed text before it: no byte sequence can end a message early
 *     or smuggle a second one (CVE-2023-51764);
 *   - once the session is closed, nothing more is read or answered.
 */
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "smtp/server.h"

#define HEADER_SIZE 8

enum fuzz_mode {
    MODE_LF_OK = 1 << 0,        /* the client is on a trusted network */
    MODE_SMALL_LIMITS = 1 << 1, /* limits a fuzzer can reach with a few KB */
    MODE_REFUSE = 1 << 2,       /* smtp_server_refuse() instead of the greeting */
    MODE_TIMEOUT = 1 << 3,      /* smtp_server_timeout() after the last byte */
    MODE_WRITE_SHIFT = 4,       /* 2 bits: when data_write() fails */
    MODE_CUT_SHIFT = 6,         /* 2 bits: enum cut for the second run */
};

/* How the second run cuts the client's bytes. */
enum cut {
    CUT_BYTES = 0, /* one byte at a time: also checks where DATA ends */
    CUT_SMALL = 1, /* pieces of 1..16 octets */
    CUT_LARGE = 2, /* pieces of 1..512 octets */
    CUT_TINY = 3,  /* pieces of 1..3 octets */
    CUT_NONE,      /* the first run: everything at once */
};

/* What the host answers, from bits 1-2 of a verdict byte. */
enum verdict {
    VERDICT_ACCEPT = 0,      /* code 0: the engine's own success reply */
    VERDICT_ACCEPT_TEXT = 1, /* 250 with a text of the host's (several lines) */
    VERDICT_REFUSE = 2,      /* 550 */
    VERDICT_DEFER = 3,       /* 451, or 421 (closing) with bit 3 */
};

#define VERDICT_ASYNC  0x01 /* answer through smtp_server_resume() */
#define VERDICT_421    0x08 /* VERDICT_DEFER: 421 instead of 451 */
#define VERDICT_NO_ENH 0x10 /* leave the enhanced code to the engine */

/* A growing byte string (harness memory; the engine's is bounded by buf). */
struct bytes {
    uint8_t *p;
    size_t len, cap;
};

/* The host's view of the mail transaction. */
enum host_txn {
    HOST_IDLE,
    HOST_MAIL,    /* MAIL accepted */
    HOST_RCPT,    /* a recipient accepted */
    HOST_MESSAGE, /* data_begin said yes */
};

struct host {
    struct smtp_server *engine;
    const struct smtp_server_settings *set;
    bool lf_ok;
    const uint8_t *verdicts; /* four bytes, used in turn */
    unsigned nverdicts;      /* verdicts taken so far */
    size_t write_limit;      /* octets of a message data_write() takes before failing */

    /* Where the client's bytes are: set while the driver feeds one byte. */
    const uint8_t *in;
    size_t in_len;
    bool feeding_byte;
    size_t feed_pos;

    enum host_txn txn;
    enum smtp_body body;
    size_t mark;       /* stream offset of the first reply after data_begin */
    size_t data_start; /* CUT_BYTES: input offset of the first message octet */
    bool write_failed;
    struct bytes message;

    bool async;
    struct smtp_reply async_reply;

    struct bytes transcript; /* every octet of output, in order */
    struct bytes calls;      /* host calls and accepted messages, in order */
    size_t consumed;         /* client octets the engine took */
};

/* bytes_add - append n octets (aborts if out of memory: a harness bug) */
FUZZ_NO_COVERAGE static void bytes_add(struct bytes *b, const void *p, size_t n)
{
    if (n == 0)
        return;
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n)
            cap *= 2;
        uint8_t *q = realloc(b->p, cap);
        if (q == NULL)
            abort();
        b->p = q;
        b->cap = cap;
    }
    memcpy(b->p + b->len, p, n);
    b->len += n;
}

/* log_call - append a formatted line to the call log */
static void log_call(struct host *h, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void log_call(struct host *h, const char *fmt, ...)
{
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    if (n > 0)
        bytes_add(&h->calls, line, (size_t)n < sizeof(line) ? (size_t)n : sizeof(line) - 1);
}

/* ---- checks on the output ------------------------------------------------------- */

/* is_enhanced_code - does s[0..n) start with "d.d{1,3}.d{1,3} "? Its class in *cls */
FUZZ_NO_COVERAGE static bool is_enhanced_code(const uint8_t *s, size_t n, uint8_t *cls)
{
    size_t i = 0;
    if (n < 6 || s[0] < '0' || s[0] > '9' || s[1] != '.')
        return false;
    i = 2;
    for (int part = 0; part < 2; part++) {
        size_t digits = 0;
        while (i < n && s[i] >= '0' && s[i] <= '9' && digits < 4) {
            i++;
            digits++;
        }
        if (digits == 0 || digits > 3)
            return false;
        if (part == 0) {
            if (i >= n || s[i] != '.')
                return false;
            i++;
        }
    }
    *cls = s[0];
    return i < n && s[i] == ' ';
}

/* check_replies - p[0..n) is a sequence of whole replies */
FUZZ_NO_COVERAGE static void check_replies(const uint8_t *p, size_t n)
{
    if (n == 0)
        return;
    FUZZ_CHECK(n >= 2 && p[n - 2] == '\r' && p[n - 1] == '\n',
               "output does not end with CRLF (%zu octets)", n);
    size_t i = 0;
    bool continued = false;
    uint8_t code[3] = {0};
    while (i < n) {
        const uint8_t *line = p + i;
        size_t len = 0;
        while (i + len + 1 < n && !(line[len] == '\r' && line[len + 1] == '\n'))
            len++;
        FUZZ_CHECK(i + len + 1 < n, "reply line without CRLF at offset %zu", i);
        FUZZ_CHECK(len + 2 <= 512, "reply line of %zu octets", len + 2);
        FUZZ_CHECK(len >= 4, "reply line too short: \"%.*s\"", (int)len, line);
        FUZZ_CHECK(line[0] >= '2' && line[0] <= '5' && line[1] >= '0' && line[1] <= '9' &&
                       line[2] >= '0' && line[2] <= '9',
                   "bad reply code: \"%.*s\"", (int)len, line);
        FUZZ_CHECK(line[3] == ' ' || line[3] == '-', "bad separator: \"%.*s\"", (int)len, line);
        if (continued)
            FUZZ_CHECK(memcmp(code, line, 3) == 0, "code changes inside a reply: \"%.*s\"",
                       (int)len, line);
        memcpy(code, line, 3);
        for (size_t k = 0; k < len; k++)
            FUZZ_CHECK(line[k] >= 0x20 && line[k] != 0x7f,
                       "control octet 0x%02x in reply line \"%.*s\"", line[k], (int)len, line);
        uint8_t cls;
        if (is_enhanced_code(line + 4, len - 4, &cls))
            FUZZ_CHECK(cls == line[0], "enhanced code of another class: \"%.*s\"", (int)len, line);
        continued = line[3] == '-';
        i += len + 2;
    }
    FUZZ_CHECK(!continued, "output ends inside a multi-line reply");
}

/* stream_at - the octet at offset off of everything output so far (sent or not), or -1 */
FUZZ_NO_COVERAGE static int stream_at(const struct host *h, size_t off)
{
    if (off < h->transcript.len)
        return h->transcript.p[off];
    off -= h->transcript.len;
    const struct buf *out = smtp_server_output(h->engine);
    return off < out->len ? out->data[off] : -1;
}

/* message_is_data - did the message start with DATA (a 354 after data_begin)? */
FUZZ_NO_COVERAGE static bool message_is_data(const struct host *h)
{
    return stream_at(h, h->mark) == '3' && stream_at(h, h->mark + 1) == '5' &&
           stream_at(h, h->mark + 2) == '4';
}

/* ---- checks on messages ------------------------------------------------------------- */

/* check_message_text - the message about to be committed is CRLF text within the limits */
FUZZ_NO_COVERAGE static void check_message_text(const struct host *h, bool is_data)
{
    const uint8_t *m = h->message.p;
    size_t n = h->message.len;

    FUZZ_CHECK(n <= h->set->max_message_size, "message of %zu octets past the limit", n);
    if (h->body == SMTP_BODY_BINARYMIME) {
        FUZZ_CHECK(!is_data, "BINARYMIME message taken with DATA");
        return;
    }
    size_t line = 0;
    for (size_t i = 0; i < n; i++) {
        line++;
        if (m[i] == '\n') {
            FUZZ_CHECK(i > 0 && m[i - 1] == '\r', "bare LF at octet %zu of a stored message", i);
            FUZZ_CHECK(line <= h->set->max_text_line, "stored line of %zu octets", line);
            line = 0;
        } else if (m[i] == '\r' && !h->lf_ok) {
            FUZZ_CHECK(i + 1 < n && m[i + 1] == '\n',
                       "bare CR at octet %zu of a message from an untrusted client", i);
        }
    }
    FUZZ_CHECK(line <= h->set->max_text_line, "stored last line of %zu octets", line);
    if (is_data)
        FUZZ_CHECK(n == 0 || (n >= 2 && m[n - 2] == '\r' && m[n - 1] == '\n'),
                   "DATA message does not end with CRLF");
}

/*
 * data_end_offset - where DATA must end: the input offset of the last octet
 * of the first end mark after the DATA line, or SIZE_MAX if there is none.
 * *body_end is the offset just past the LF that precedes the ".".
 */
FUZZ_NO_COVERAGE static size_t data_end_offset(const struct host *h, size_t *body_end)
{
    const uint8_t *in = h->in;
    size_t n = h->in_len;
    for (size_t j = h->data_start - 1; j + 2 < n; j++) {
        if (in[j] != '\n' || in[j + 1] != '.')
            continue;
        if (h->lf_ok && in[j + 2] == '\n') {
            *body_end = j + 1;
            return j + 2;
        }
        if ((h->lf_ok || (j > 0 && in[j - 1] == '\r')) && in[j + 2] == '\r' && j + 3 < n &&
            in[j + 3] == '\n') {
            *body_end = j + 1;
            return j + 3;
        }
    }
    return SIZE_MAX;
}

/*
 * check_data_end - CUT_BYTES only: DATA ended (committed or refused) while
 * the octet at feed_pos was fed.  It must be the end of the first end mark,
 * and a committed message must be exactly the unstuffed text before it.
 */
FUZZ_NO_COVERAGE static void check_data_end(const struct host *h, bool committed)
{
    size_t body_end = 0;
    size_t end = data_end_offset(h, &body_end);
    FUZZ_CHECK(end == h->feed_pos,
               "DATA ended at input offset %zu; the first end mark ends at %zu (data from %zu)",
               h->feed_pos, end, h->data_start);
    if (!committed || h->write_failed)
        return;

    /* The reference: lines after the DATA line, a leading dot dropped
     * (RFC 5321 §4.5.2), a trusted client's bare LF stored as CRLF. */
    struct bytes want = {0};
    size_t i = h->data_start;
    while (i < body_end) {
        size_t lf = i;
        while (h->in[lf] != '\n')
            lf++;
        size_t start = i;
        if (h->in[start] == '.')
            start++;
        if (lf > start && h->in[lf - 1] == '\r') {
            bytes_add(&want, h->in + start, lf + 1 - start);
        } else {
            FUZZ_CHECK(h->lf_ok, "bare LF in a committed message from an untrusted client");
            bytes_add(&want, h->in + start, lf - start);
            bytes_add(&want, "\r\n", 2);
        }
        i = lf + 1;
    }
    FUZZ_CHECK(want.len == h->message.len &&
                   (want.len == 0 || memcmp(want.p, h->message.p, want.len) == 0),
               "stored message (%zu octets) differs from the unstuffed DATA text (%zu octets)",
               h->message.len, want.len);
    free(want.p);
}

/* ---- the host -------------------------------------------------------------------------- */

/* take_verdict - the next verdict byte; the four rotate a little each round */
static uint8_t take_verdict(struct host *h)
{
    unsigned k = h->nverdicts++;
    uint8_t v = h->verdicts[k % 4];
    unsigned r = (k / 4) % 8;
    return r ? (uint8_t)((v << r) | (v >> (8 - r))) : v;
}

/* verdict_reply - fill reply for verdict v; true if it accepts */
static bool verdict_reply(uint8_t v, struct smtp_reply *reply, const char *refusal_enh)
{
    bool no_enh = v & VERDICT_NO_ENH;
    switch ((enum verdict)((v >> 1) & 3)) {
    case VERDICT_ACCEPT:
        return true;
    case VERDICT_ACCEPT_TEXT:
        reply->code = 250;
        reply->enh = no_enh ? NULL : "2.0.0";
        /* Control characters must come out as '?', and '\n' as a new line. */
        snprintf(reply->text, sizeof(reply->text), "Ok, said the host\nsecond\r line\x01\x7f");
        return true;
    case VERDICT_REFUSE:
        reply->code = 550;
        reply->enh = no_enh ? NULL : refusal_enh;
        snprintf(reply->text, sizeof(reply->text), "Refused by the fuzz host");
        return false;
    case VERDICT_DEFER:
        break;
    }
    reply->code = (v & VERDICT_421) ? 421 : 451;
    reply->enh = no_enh ? NULL : "4.3.0";
    snprintf(reply->text, sizeof(reply->text), "Try again later");
    return false;
}

/* answer - return the reply at once or keep it for smtp_server_resume() */
static enum smtp_server_result answer(struct host *h, uint8_t v, const struct smtp_reply *r,
                                      struct smtp_reply *reply)
{
    FUZZ_CHECK(!h->async, "an operation while another waits for its answer");
    if (v & VERDICT_ASYNC) {
        h->async = true;
        h->async_reply = *r;
        return SMTP_SERVER_ASYNC;
    }
    *reply = *r;
    return SMTP_SERVER_DONE;
}

/* check_path - what the engine hands over is a parsed, printable path */
static void check_path(const struct smtp_path *p)
{
    FUZZ_CHECK(p->mailbox_len == strlen(p->mailbox), "mailbox length");
    FUZZ_CHECK(!p->is_null || p->mailbox_len == 0, "null path with a mailbox");
    for (size_t i = 0; i < p->mailbox_len; i++)
        FUZZ_CHECK((unsigned char)p->mailbox[i] >= 0x20 && p->mailbox[i] != 0x7f,
                   "control octet in a mailbox");
}

static void host_helo(void *ctx, const char *name, size_t len, bool esmtp)
{
    struct host *h = ctx;
    FUZZ_CHECK(h->txn == HOST_IDLE, "HELO/EHLO inside a transaction");
    FUZZ_CHECK(len > 0 && len <= 255, "HELO name of %zu octets", len);
    for (size_t i = 0; i < len; i++)
        FUZZ_CHECK(name[i] > ' ' && name[i] < 0x7f, "HELO name octet 0x%02x",
                   (unsigned char)name[i]);
    log_call(h, "%s %.*s\n", esmtp ? "EHLO" : "HELO", (int)len, name);
}

static enum smtp_server_result host_mail(void *ctx, const struct smtp_path *from,
                                         const struct smtp_mail_params *params,
                                         struct smtp_reply *reply)
{
    struct host *h = ctx;
    FUZZ_CHECK(h->txn == HOST_IDLE, "MAIL inside a transaction");
    check_path(from);
    FUZZ_CHECK(!params->size_given || params->size <= h->set->max_message_size,
               "MAIL with SIZE past the limit reached the host");
    FUZZ_CHECK(params->body != SMTP_BODY_BINARYMIME || (h->set->extensions & SMTP_EXT_BINARYMIME),
               "BODY=BINARYMIME without the extension");
    log_call(h, "MAIL <%s> body=%d utf8=%d\n", from->mailbox, (int)params->body,
             (int)params->smtputf8);
    uint8_t v = take_verdict(h);
    struct smtp_reply r = {0};
    if (verdict_reply(v, &r, "5.7.1")) {
        h->txn = HOST_MAIL;
        h->body = params->body;
    }
    return answer(h, v, &r, reply);
}

static enum smtp_server_result host_rcpt(void *ctx, const struct smtp_path *to,
                                         const struct smtp_rcpt_params *params,
                                         struct smtp_reply *reply)
{
    struct host *h = ctx;
    /* HOST_MESSAGE: RCPT between two BDAT chunks reaches the host. */
    FUZZ_CHECK(h->txn != HOST_IDLE, "RCPT without an accepted MAIL");
    check_path(to);
    log_call(h, "RCPT <%s> notify=%u\n", to->mailbox, params->notify);
    uint8_t v = take_verdict(h);
    struct smtp_reply r = {0};
    if (verdict_reply(v, &r, "5.1.1") && h->txn == HOST_MAIL)
        h->txn = HOST_RCPT;
    return answer(h, v, &r, reply);
}

static bool host_data_begin(void *ctx, struct smtp_reply *reply)
{
    struct host *h = ctx;
    FUZZ_CHECK(h->txn == HOST_RCPT, "data_begin without an accepted recipient (state %d)",
               (int)h->txn);
    log_call(h, "DATA-BEGIN\n");
    uint8_t v = take_verdict(h);
    if (!verdict_reply(v, reply, "5.3.0"))
        return false;
    h->txn = HOST_MESSAGE;
    h->message.len = 0;
    h->write_failed = false;
    h->mark = h->transcript.len + smtp_server_output(h->engine)->len;
    if (h->feeding_byte) {
        FUZZ_CHECK(h->in[h->feed_pos] == '\n', "a message began inside a command line");
        h->data_start = h->feed_pos + 1;
    }
    return true;
}

static int host_data_write(void *ctx, const uint8_t *p, size_t n)
{
    struct host *h = ctx;
    FUZZ_CHECK(h->txn == HOST_MESSAGE, "data_write outside a message");
    FUZZ_CHECK(!h->write_failed, "data_write after a failed one");
    FUZZ_CHECK(h->message.len + n <= h->set->max_message_size, "data_write past the size limit");
    if (h->message.len + n > h->write_limit) {
        h->write_failed = true;
        return -1;
    }
    bytes_add(&h->message, p, n);
    return 0;
}

static enum smtp_server_result host_data_end(void *ctx, struct smtp_reply *reply)
{
    struct host *h = ctx;
    FUZZ_CHECK(h->txn == HOST_MESSAGE, "data_end outside a message");
    bool is_data = message_is_data(h);
    if (!h->write_failed)
        check_message_text(h, is_data);
    if (is_data && h->feeding_byte)
        check_data_end(h, true);
    h->txn = HOST_IDLE;
    /* How much a failed message stored depends on the cuts: log only that it failed. */
    if (h->write_failed) {
        log_call(h, "DATA-END failed\n");
    } else {
        log_call(h, "DATA-END %zu\n", h->message.len);
        bytes_add(&h->calls, h->message.p, h->message.len);
        log_call(h, "\n");
    }
    uint8_t v = take_verdict(h);
    struct smtp_reply r = {0};
    if (h->write_failed) {
        r.code = 451;
        r.enh = "4.3.0";
        snprintf(r.text, sizeof(r.text), "Error: cannot store the message");
    } else {
        verdict_reply(v, &r, "5.6.0");
    }
    return answer(h, v, &r, reply);
}

static void host_reset(void *ctx)
{
    struct host *h = ctx;
    FUZZ_CHECK(h->txn != HOST_IDLE, "reset without a transaction");
    if (h->txn == HOST_MESSAGE && h->feeding_byte && message_is_data(h))
        check_data_end(h, false); /* a refused DATA message: it ends at the same place */
    h->txn = HOST_IDLE;
    log_call(h, "RESET\n");
}

static const struct smtp_server_ops host_ops = {
    .helo = host_helo,
    .mail = host_mail,
    .rcpt = host_rcpt,
    .data_begin = host_data_begin,
    .data_write = host_data_write,
    .data_end = host_data_end,
    .reset = host_reset,
};

/* ---- the driver ----------------------------------------------------------------------- */

/* flush - check the output, take it into the transcript, tell the engine it was sent */
FUZZ_NO_COVERAGE static void flush(struct host *h)
{
    struct buf *out = smtp_server_output(h->engine);
    check_replies(out->data, out->len);
    bytes_add(&h->transcript, out->data, out->len);
    smtp_server_output_sent(h->engine);
}

/* next_piece - how many of the remaining octets to feed next */
FUZZ_NO_COVERAGE static size_t next_piece(enum cut cut, uint32_t *seed, size_t left)
{
    size_t most;
    switch (cut) {
    case CUT_NONE:
        return left;
    case CUT_BYTES:
        return 1;
    case CUT_SMALL:
        most = 16;
        break;
    case CUT_LARGE:
        most = 512;
        break;
    case CUT_TINY:
    default:
        most = 3;
        break;
    }
    /* xorshift32: a fixed sequence for a given seed */
    *seed ^= *seed << 13;
    *seed ^= *seed >> 17;
    *seed ^= *seed << 5;
    size_t piece = 1 + *seed % most;
    return piece < left ? piece : left;
}

/* run_session - one whole session over in[0..n), cut as cut says */
static void run_session(struct host *h, unsigned mode, const uint8_t *in, size_t n, enum cut cut,
                        uint32_t seed)
{
    h->in = in;
    h->in_len = n;
    h->engine = smtp_server_new(h->set, &host_ops, h, h->lf_ok);
    if (h->engine == NULL)
        abort();
    if (mode & MODE_REFUSE)
        smtp_server_refuse(h->engine, 554, "5.3.2", "No SMTP service here");
    else
        smtp_server_greet(h->engine);
    flush(h);

    size_t pos = 0;
    while (pos < n && !smtp_server_closing(h->engine)) {
        size_t piece = next_piece(cut, &seed, n - pos);
        h->feeding_byte = cut == CUT_BYTES;
        h->feed_pos = pos;
        size_t used = smtp_server_feed(h->engine, in + pos, piece);
        h->feeding_byte = false;
        FUZZ_CHECK(used <= piece, "consumed %zu of %zu octets", used, piece);
        pos += used;
        flush(h);
        if (smtp_server_waiting(h->engine)) {
            FUZZ_CHECK(h->async, "waiting, but no operation answered SMTP_SERVER_ASYNC");
            if (cut != CUT_NONE && pos < n) {
                /* A host that keeps reading while it waits gets nothing consumed. */
                FUZZ_CHECK(smtp_server_feed(h->engine, in + pos, n - pos) == 0,
                           "input consumed while waiting for the host");
                FUZZ_CHECK(smtp_server_output(h->engine)->len == 0, "output while waiting");
            }
            h->async = false;
            smtp_server_resume(h->engine, &h->async_reply);
            FUZZ_CHECK(!smtp_server_waiting(h->engine), "still waiting after resume");
            flush(h);
            continue;
        }
        FUZZ_CHECK(!h->async, "an operation answered SMTP_SERVER_ASYNC, the engine did not wait");
        FUZZ_CHECK(used > 0 || smtp_server_closing(h->engine),
                   "no progress with an empty output and nothing to wait for");
    }
    h->consumed = pos;

    if (smtp_server_closing(h->engine)) {
        /* Closed: nothing more is read, answered or waited for. */
        if (pos < n)
            FUZZ_CHECK(smtp_server_feed(h->engine, in + pos, n - pos) == 0,
                       "input consumed after the session closed");
        struct smtp_reply late = {.code = 250};
        smtp_server_resume(h->engine, &late);
        smtp_server_timeout(h->engine);
        FUZZ_CHECK(smtp_server_output(h->engine)->len == 0, "output after the session closed");
    } else if (mode & MODE_TIMEOUT) {
        smtp_server_timeout(h->engine);
        const struct buf *out = smtp_server_output(h->engine);
        FUZZ_CHECK(out->len >= 4 && memcmp(out->data, "421", 3) == 0, "timeout without a 421");
        FUZZ_CHECK(smtp_server_closing(h->engine), "timeout did not close the session");
        flush(h);
    }
    smtp_server_free(h->engine);
    h->engine = NULL;
    FUZZ_CHECK(h->txn == HOST_IDLE, "engine freed with the host's transaction open");
}

/* host_free - release what a run allocated */
static void host_free(struct host *h)
{
    free(h->message.p);
    free(h->transcript.p);
    free(h->calls.p);
}

/* print_escaped - b[from..] for a human, at most 4000 octets */
FUZZ_NO_COVERAGE static void print_escaped(const char *label, const struct bytes *b, size_t from)
{
    fprintf(stderr, "%s: \"", label);
    for (size_t i = from; i < b->len && i < from + 4000; i++) {
        uint8_t c = b->p[i];
        if (c == '\r')
            fputs("\\r", stderr);
        else if (c == '\n')
            fputs("\\n\n", stderr);
        else if (c < 0x20 || c >= 0x7f)
            fprintf(stderr, "\\x%02x", c);
        else
            fputc(c, stderr);
    }
    fputs("\"\n", stderr);
}

/* same_bytes - compare two runs' records of one kind */
FUZZ_NO_COVERAGE static void same_bytes(const struct bytes *a, const struct bytes *b,
                                        const char *what)
{
    size_t i = 0;
    while (i < a->len && i < b->len && a->p[i] == b->p[i])
        i++;
    if (a->len != b->len || i != a->len) {
        size_t from = i > 200 ? i - 200 : 0;
        print_escaped("whole-input run", a, from);
        print_escaped("cut run", b, from);
    }
    FUZZ_CHECK(a->len == b->len && i == a->len,
               "%s differ between the whole-input run and the cut run at octet %zu "
               "(%zu vs %zu octets)",
               what, i, a->len, b->len);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < HEADER_SIZE)
        return 0;
    unsigned mode = data[0];
    bool small = mode & MODE_SMALL_LIMITS;
    const struct smtp_server_settings set = {
        .hostname = "fuzz.example",
        .extensions = data[1],
        .max_command_line = small ? 64 : 512,
        .max_text_line = small ? 80 : 1000,
        .max_recipients = small ? 3 : 100,
        .max_message_size = small ? 300 : 1024 * 1024,
        .max_errors = small ? 6 : 20,
    };
    static const size_t write_limits[4] = {SIZE_MAX, 64, 0, 1000};
    enum cut cut = (enum cut)((mode >> MODE_CUT_SHIFT) & 3);
    uint32_t seed = ((uint32_t)data[6] << 8 | data[7]) + 1;
    const uint8_t *in = data + HEADER_SIZE;
    size_t n = size - HEADER_SIZE;

    struct host whole = {
        .set = &set,
        .lf_ok = mode & MODE_LF_OK,
        .verdicts = data + 2,
        .write_limit = write_limits[(mode >> MODE_WRITE_SHIFT) & 3],
    };
    struct host cuts = whole;
    run_session(&whole, mode, in, n, CUT_NONE, 0);
    run_session(&cuts, mode, in, n, cut, seed);

    if (getenv("FUZZ_SMTP_SHOW") != NULL) {
        /* For writing seeds: FUZZ_SMTP_SHOW=1 fuzz_smtp_server seed shows the session. */
        print_escaped("replies", &whole.transcript, 0);
        print_escaped("host calls", &whole.calls, 0);
    }
    FUZZ_CHECK(whole.consumed == cuts.consumed, "consumed %zu octets in one piece, %zu in pieces",
               whole.consumed, cuts.consumed);
    same_bytes(&whole.transcript, &cuts.transcript, "replies");
    same_bytes(&whole.calls, &cuts.calls, "host calls and messages");
    host_free(&whole);
    host_free(&cuts);
    return 0;
}
