/*
 * fuzz_smtp_client.c - the SMTP client engine (src/smtp/client.c) and its
 * reply reader (src/smtp/reply.c) against an arbitrary server.
 *
 * The input is what a hostile or broken server sends, after three octets
 * that choose the session:
 *
 *   input[0]  the message: bit 0 8-bit content, bit 1 binary content,
 *             bit 2 a UTF-8 recipient, bit 3 DSN requests, bit 4 a second
 *             recipient, bit 5 start with a canned greeting and EHLO reply
 *             (so the fuzzer reaches MAIL, RCPT and the body at once), bit 6
 *             end with a timeout rather than EOF, bit 7 a SIZE
 *   input[1]  with bit 5: the extensions the canned EHLO reply offers
 *   input[2]  seed for where the server's octets and the body are cut
 *   the rest  the server's octets, fed in pieces of 1 to 64 octets
 *
 * The harness drives the engine as libpigeon does: it takes the output
 * after every call (so no reply can answer a command not yet "sent"), and
 * gives the body in small pieces when asked.  Whatever the server says:
 *   - the engine ends, in a defined state, once EOF or a timeout comes;
 *   - what it sends outside the body is whole command lines (CRLF, no
 *     other CR or LF, at most 512 octets) of the commands it knows, nothing
 *     after QUIT, MAIL only after EHLO or HELO;
 *   - the body as sent is exactly the message: with DATA, CRLF lines,
 *     dot-stuffed, ending in "."; with BDAT, chunks of exactly the octets
 *     announced;
 *   - MAIL goes out only to a server that can carry the message (8BITMIME,
 *     SMTPUTF8, BINARYMIME+CHUNKING as needed);
 *   - SENT or PARTIAL only after the whole message went out, and the
 *     per-recipient replies agree with the status.
 */
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "fuzz.h"
#include "smtp/client.h"

#define HELO_NAME "fuzz.example"
#define WIRE_MAX  4096 /* far more than the fixed message's session can send */

static const char body_7bit[] = "Subject: fuzz\n\n.line one\r\nline two\r.\n..\nend";
static const char body_8bit[] = "Subject: caf\xc3\xa9\n\n.body\n";
static const char body_binary[] = "a\0b\r\n.\nc\r";

/* What the client has sent, split by kind. */
struct wire {
    char body[WIRE_MAX]; /* everything smtp_client_body() produced */
    size_t body_len;
    bool ehlo_seen, mail_seen, quit_seen, last_seen;
};

/* xorshift - the next pseudo-random number for cuts */
static uint32_t xorshift(uint32_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 17;
    *s ^= *s << 5;
    return *s;
}

/* check_commands - output made by feed() or new(): whole command lines we know */
static void check_commands(struct wire *w, const uint8_t *p, size_t n)
{
    size_t start = 0;
    while (start < n) {
        const uint8_t *lf = memchr(p + start, '\n', n - start);
        FUZZ_CHECK(lf != NULL, "a command without its line end");
        size_t len = (size_t)(lf - (p + start)) + 1;
        const char *line = (const char *)p + start;
        FUZZ_CHECK(len >= 2 && line[len - 2] == '\r', "a command line not ending in CRLF");
        FUZZ_CHECK(len <= 512, "a command line of %zu octets", len);
        FUZZ_CHECK(memchr(line, '\r', len - 2) == NULL, "a CR inside a command line");
        FUZZ_CHECK(!w->quit_seen, "a command after QUIT");
        if (len == 2 + strlen("EHLO " HELO_NAME) && memcmp(line, "EHLO " HELO_NAME, len - 2) == 0) {
            FUZZ_CHECK(!w->ehlo_seen, "EHLO twice");
            w->ehlo_seen = true;
        } else if (len == 2 + strlen("HELO " HELO_NAME) &&
                   memcmp(line, "HELO " HELO_NAME, len - 2) == 0) {
            FUZZ_CHECK(w->ehlo_seen, "HELO before EHLO");
        } else if (len > 12 && memcmp(line, "MAIL FROM:<", 11) == 0) {
            FUZZ_CHECK(w->ehlo_seen && !w->mail_seen, "MAIL out of place");
            w->mail_seen = true;
        } else if (len > 10 && memcmp(line, "RCPT TO:<", 9) == 0) {
            FUZZ_CHECK(w->mail_seen, "RCPT before MAIL");
        } else if (len == 6 && memcmp(line, "DATA", 4) == 0) {
            FUZZ_CHECK(w->mail_seen, "DATA before MAIL");
        } else if (len == 3 && line[0] == '.') {
            FUZZ_CHECK(w->mail_seen, "a lone dot before MAIL"); /* RFC 2920 §3.1 resync */
        } else if (len == 6 && memcmp(line, "QUIT", 4) == 0) {
            w->quit_seen = true;
        } else {
            FUZZ_CHECK(false, "unknown command \"%.*s\"", (int)len - 2, line);
        }
        start += len;
    }
}

/* take_output - validate and clear what the engine wants sent; body says who made it */
static void take_output(struct smtp_client *c, struct wire *w, bool body)
{
    struct buf *out = smtp_client_output(c);
    if (body) {
        FUZZ_CHECK(!w->quit_seen || out->len == 0, "body after QUIT");
        FUZZ_CHECK(w->body_len + out->len <= WIRE_MAX, "body output too long");
        if (out->len > 0)
            memcpy(w->body + w->body_len, out->data, out->len);
        w->body_len += out->len;
    } else {
        check_commands(w, out->data, out->len);
    }
    smtp_client_output_sent(c);
}

/* normalise - the message as SMTP text: every line ending CRLF (what the engine must send) */
static size_t normalise(const uint8_t *p, size_t n, uint8_t *out)
{
    size_t k = 0;
    bool line_start = true;
    for (size_t i = 0; i < n; i++) {
        if (p[i] == '\r' || p[i] == '\n') {
            if (p[i] == '\r' && i + 1 < n && p[i + 1] == '\n')
                i++;
            out[k++] = '\r';
            out[k++] = '\n';
            line_start = true;
        } else {
            out[k++] = p[i];
            line_start = false;
        }
    }
    if (!line_start) {
        out[k++] = '\r';
        out[k++] = '\n';
    }
    return k;
}

/* check_data_body - DATA: dot-stuffed CRLF text that unstuffs to the message, then "." */
static void check_data_body(const struct wire *w, const uint8_t *want, size_t want_len)
{
    uint8_t plain[WIRE_MAX];
    size_t k = 0, i = 0;
    const uint8_t *b = (const uint8_t *)w->body;
    size_t n = w->body_len;
    FUZZ_CHECK(n >= 3 && memcmp(b + n - 3, ".\r\n", 3) == 0, "DATA body without the final dot");
    n -= 3;
    while (i < n) {
        if (b[i] == '.') {
            FUZZ_CHECK(i + 1 < n && b[i + 1] == '.', "a line starting with an unstuffed dot");
            i++;
        }
        while (i < n && b[i] != '\n')
            plain[k++] = b[i++];
        FUZZ_CHECK(i < n, "a DATA line without its end");
        FUZZ_CHECK(k > 0 && plain[k - 1] == '\r', "a bare LF in the DATA body");
        plain[k++] = b[i++];
    }
    for (size_t j = 0; j < k; j++)
        FUZZ_CHECK(plain[j] != '\r' || (j + 1 < k && plain[j + 1] == '\n'),
                   "a bare CR in the DATA body");
    FUZZ_CHECK(k == want_len && memcmp(plain, want, k) == 0, "the DATA body is not the message");
}

/* check_bdat_body - BDAT: chunks of exactly the size announced, the last one LAST */
static void check_bdat_body(const struct wire *w, const uint8_t *want, size_t want_len)
{
    uint8_t joined[WIRE_MAX];
    size_t k = 0, i = 0;
    bool last = false;
    while (i < w->body_len) {
        FUZZ_CHECK(!last, "a chunk after BDAT LAST");
        const char *line = w->body + i;
        const char *lf = memchr(line, '\n', w->body_len - i);
        FUZZ_CHECK(lf != NULL && lf > line && lf[-1] == '\r', "a BDAT line without CRLF");
        size_t len = (size_t)(lf - line) + 1;
        FUZZ_CHECK(len > 7 && memcmp(line, "BDAT ", 5) == 0, "a chunk without BDAT");
        size_t size = 0, j = 5;
        for (; j < len && line[j] >= '0' && line[j] <= '9'; j++)
            size = size * 10 + (size_t)(line[j] - '0');
        FUZZ_CHECK(j > 5, "BDAT without a size");
        if (len - j == 7 && memcmp(line + j, " LAST\r\n", 7) == 0)
            last = true;
        else
            FUZZ_CHECK(len - j == 2, "junk after the BDAT size");
        i += len;
        FUZZ_CHECK(size <= w->body_len - i, "BDAT announces more than it sends");
        memcpy(joined + k, w->body + i, size);
        k += size;
        i += size;
    }
    FUZZ_CHECK(last, "no BDAT LAST");
    FUZZ_CHECK(k == want_len && memcmp(joined, want, k) == 0, "the chunks are not the message");
}

/* check_result - the end: defined, and consistent with what was sent */
static void check_result(struct smtp_client *c, const struct smtp_client_message *m,
                         const struct wire *w)
{
    FUZZ_CHECK(smtp_client_want(c) == SMTP_CLIENT_DONE, "not done after EOF or timeout");
    const struct smtp_client_result *r = smtp_client_result(c);
    FUZZ_CHECK(r->status <= SMTP_CLIENT_UNSUITABLE, "status %d", (int)r->status);
    FUZZ_CHECK(r->status == SMTP_CLIENT_SENT || r->error[0] != '\0', "a failure without words");
    FUZZ_CHECK(memchr(r->error, '\0', sizeof(r->error)) != NULL, "error not terminated");
    size_t ok = 0, perm = 0;
    for (size_t i = 0; i < m->nrcpt; i++) {
        unsigned code = r->rcpt[i].code;
        FUZZ_CHECK(code == 0 || (code >= 200 && code <= 559), "rcpt code %u", code);
        FUZZ_CHECK(code != 0 || r->rcpt[i].text == NULL, "text without a reply");
        FUZZ_CHECK(memchr(r->rcpt[i].enh, '\0', sizeof(r->rcpt[i].enh)) != NULL, "enh");
        ok += code / 100 == 2;
        perm += code / 100 == 5;
    }
    bool sent_whole = w->last_seen && w->body_len > 0;
    switch (r->status) {
    case SMTP_CLIENT_SENT:
        FUZZ_CHECK(sent_whole && ok == m->nrcpt, "SENT, but not for everyone");
        FUZZ_CHECK(r->final.code / 100 == 2, "SENT with final %u", r->final.code);
        break;
    case SMTP_CLIENT_PARTIAL:
        FUZZ_CHECK(sent_whole && ok > 0 && ok < m->nrcpt, "PARTIAL is not partial");
        break;
    case SMTP_CLIENT_PERMFAIL:
        FUZZ_CHECK(perm == m->nrcpt, "PERMFAIL with a recipient not refused for good");
        break;
    default:
        break;
    }
    if (!w->mail_seen)
        return;
    /* MAIL went out: the server can carry the message. */
    FUZZ_CHECK(m->body != SMTP_BODY_8BITMIME || (r->extensions & SMTP_EXT_8BITMIME),
               "8-bit message to a server without 8BITMIME");
    FUZZ_CHECK(m->body != SMTP_BODY_BINARYMIME ||
                   (r->extensions & (SMTP_EXT_BINARYMIME | SMTP_EXT_CHUNKING)) ==
                       (SMTP_EXT_BINARYMIME | SMTP_EXT_CHUNKING),
               "binary message to a server without BINARYMIME");
    FUZZ_CHECK(!m->smtputf8 || (r->extensions & SMTP_EXT_SMTPUTF8),
               "UTF-8 address to a server without SMTPUTF8");
}

/* canned_ehlo - an EHLO reply offering the extensions chosen by bits */
static size_t canned_ehlo(uint8_t bits, char *out, size_t cap)
{
    static const char *const ext[] = {"PIPELINING", "SIZE 100",   "8BITMIME", "SMTPUTF8",
                                      "CHUNKING",   "BINARYMIME", "DSN",      "SIZE"};
    size_t k = (size_t)snprintf(out, cap, "250-fuzz.example\r\n");
    for (int i = 0; i < 8; i++)
        if (bits & (1u << i))
            k += (size_t)snprintf(out + k, cap - k, "250-%s\r\n", ext[i]);
    k += (size_t)snprintf(out + k, cap - k, "250 ENHANCEDSTATUSCODES\r\n");
    return k;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 3)
        return 0;
    uint8_t flags = data[0], ext = data[1];
    uint32_t seed = data[2] | 0x9e3779b9u;
    data += 3;
    size -= 3;

    const uint8_t *content = (const uint8_t *)body_7bit;
    size_t content_len = sizeof(body_7bit) - 1;
    if (flags & 2) {
        content = (const uint8_t *)body_binary;
        content_len = sizeof(body_binary) - 1;
    } else if (flags & 1) {
        content = (const uint8_t *)body_8bit;
        content_len = sizeof(body_8bit) - 1;
    }
    struct smtp_client_rcpt rcpt[2] = {
        {flags & 4 ? "j\xc3\xb6rg@example.org" : "b@example.org", 0, NULL},
        {"c@example.org", SMTP_NOTIFY_FAILURE | SMTP_NOTIFY_DELAY, "rfc822;c@example.org"},
    };
    if (flags & 8)
        rcpt[0].notify = SMTP_NOTIFY_NEVER;
    struct smtp_client_message m = {
        .from = "a@example.org",
        .rcpt = rcpt,
        .nrcpt = flags & 16 ? 2 : 1,
        .size = flags & 128 ? 150 : 0,
        .body = smtp_client_body_type(content, content_len),
        .smtputf8 = (flags & 4) != 0,
        .ret = flags & 8 ? SMTP_RET_HDRS : SMTP_RET_UNSPECIFIED,
        .envid = flags & 8 ? "fuzz+2Bid" : NULL,
    };
    struct smtp_client_settings settings = {HELO_NAME};
    struct smtp_client *c = smtp_client_new(&settings, &m);
    if (c == NULL)
        return 0;
    struct wire w = {0};
    size_t body_pos = 0;
    take_output(c, &w, false);

    char canned[512];
    const uint8_t *pieces[2] = {(const uint8_t *)"220 fuzz.example ESMTP\r\n", (uint8_t *)canned};
    size_t piece_len[2] = {24, 0};
    if (flags & 32)
        piece_len[1] = canned_ehlo(ext, canned, sizeof(canned));

    size_t pos = 0;
    for (int round = 0; smtp_client_want(c) != SMTP_CLIENT_DONE; round++) {
        /* The body, in small pieces, while the engine asks for it. */
        while (smtp_client_want(c) == SMTP_CLIENT_WANT_BODY) {
            size_t n = 1 + xorshift(&seed) % 7;
            if (n > content_len - body_pos)
                n = content_len - body_pos;
            bool last = body_pos + n == content_len;
            smtp_client_body(c, content + body_pos, n, last);
            body_pos += n;
            w.last_seen |= last && smtp_client_want(c) != SMTP_CLIENT_DONE;
            take_output(c, &w, true);
        }
        if (smtp_client_want(c) == SMTP_CLIENT_DONE)
            break;
        const uint8_t *p;
        size_t n;
        if ((flags & 32) && round < 2) {
            p = pieces[round];
            n = piece_len[round];
        } else {
            if (pos >= size)
                break;
            p = data + pos;
            n = 1 + xorshift(&seed) % 64;
            if (n > size - pos)
                n = size - pos;
            pos += n;
        }
        size_t used = smtp_client_feed(c, p, n);
        FUZZ_CHECK(used <= n, "feed used %zu of %zu", used, n);
        FUZZ_CHECK(used == n || smtp_client_want(c) == SMTP_CLIENT_DONE,
                   "feed left input while still running");
        take_output(c, &w, false);
        unsigned t = smtp_client_timeout(c);
        FUZZ_CHECK(t >= 120 && t <= 600, "timeout %u", t);
    }
    if (smtp_client_want(c) != SMTP_CLIENT_DONE) {
        if (flags & 64)
            smtp_client_timed_out(c);
        else
            smtp_client_eof(c);
    }
    take_output(c, &w, false);
    check_result(c, &m, &w);

    if (w.last_seen) {
        uint8_t want[WIRE_MAX];
        size_t want_len = content_len;
        bool bdat = w.body_len >= 5 && memcmp(w.body, "BDAT ", 5) == 0;
        if (m.body == SMTP_BODY_BINARYMIME)
            memcpy(want, content, content_len);
        else
            want_len = normalise(content, content_len, want);
        if (bdat)
            check_bdat_body(&w, want, want_len);
        else
            check_data_body(&w, want, want_len);
    }
    smtp_client_free(c);
    return 0;
}
