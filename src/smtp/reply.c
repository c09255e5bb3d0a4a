/*
 * reply.c - formatting SMTP replies (the server side) and reading them (the
 * client side).
 *
 * RFC 5321 §4.2:
 *   Reply-line = *( Reply-code "-" [ textstring ] CRLF )
 *                   Reply-code [ SP textstring ] CRLF
 *   Reply-code = %x32-35 %x30-35 %x30-39
 */
#include "reply.h"

#include <stdio.h>
#include <string.h>

/* smtp_reply_format - append a reply to out (see reply.h) */
int smtp_reply_format(struct buf *out, unsigned code, const char *enh, const char *text)
{
    size_t start = out->len;
    const char *line = text;

    for (;;) {
        const char *nl = strchr(line, '\n');
        size_t len = nl ? (size_t)(nl - line) : strlen(line);
        char head[32];
        int hn;
        /* RFC 5321 §4.2: no space after the code (or enhanced code) without text. */
        if (enh != NULL)
            hn = snprintf(head, sizeof(head), "%03u%c%s%s", code, nl ? '-' : ' ', enh,
                          len > 0 ? " " : "");
        else if (len > 0 || nl)
            hn = snprintf(head, sizeof(head), "%03u%c", code, nl ? '-' : ' ');
        else
            hn = snprintf(head, sizeof(head), "%03u", code);
        if (hn < 0 || (size_t)hn >= sizeof(head))
            goto full;
        /* Room for the head, the text and CRLF within one reply line. */
        size_t room = SMTP_REPLY_LINE_MAX - 2 - (size_t)hn;
        if (len > room)
            len = room;
        if (buf_append(out, head, (size_t)hn) < 0 || buf_reserve(out, len + 2) < 0)
            goto full;
        for (size_t i = 0; i < len; i++) {
            unsigned char c = (unsigned char)line[i];
            out->data[out->len++] = (c < 0x20 || c == 0x7f) ? '?' : c;
        }
        out->data[out->len++] = '\r';
        out->data[out->len++] = '\n';
        if (nl == NULL)
            return 0;
        line = nl + 1;
    }
full:
    out->len = start;
    return -1;
}

/* smtp_enhanced_valid - is s[0..n) an enhanced status code class.subject.detail? */
bool smtp_enhanced_valid(const char *s, size_t n)
{
    /* RFC 3463 §2: class "." 1*3digit "." 1*3digit, class one of 2, 4, 5 */
    if (n < 5 || (s[0] != '2' && s[0] != '4' && s[0] != '5') || s[1] != '.')
        return false;
    size_t i = 2;
    for (int part = 0; part < 2; part++) {
        size_t digits = 0;
        while (i < n && s[i] >= '0' && s[i] <= '9') {
            i++;
            digits++;
        }
        if (digits < 1 || digits > 3)
            return false;
        if (part == 0) {
            if (i >= n || s[i] != '.')
                return false;
            i++;
        }
    }
    return i == n;
}

/* smtp_reply_reader_init - a reader with the given limits */
void smtp_reply_reader_init(struct smtp_reply_reader *r, size_t line_max, size_t lines_max)
{
    r->line_max = line_max;
    r->lines_max = lines_max;
    buf_init(&r->line, line_max);
    buf_init(&r->text, line_max * lines_max + 1);
    r->code = 0;
    r->nlines = 0;
    r->error = NULL;
}

/* smtp_reply_reader_free - release its buffers */
void smtp_reply_reader_free(struct smtp_reply_reader *r)
{
    buf_free(&r->line);
    buf_free(&r->text);
}

/* smtp_reply_reader_partial - a reply has begun and not ended */
bool smtp_reply_reader_partial(const struct smtp_reply_reader *r)
{
    return r->nlines > 0 || r->line.len > 0;
}

/* reader_fail - refuse from now on */
static enum smtp_reply_status reader_fail(struct smtp_reply_reader *r, const char *why)
{
    r->error = why;
    return SMTP_REPLY_ERROR;
}

/* take_enhanced - the enhanced code at the start of text, if its class matches */
static void take_enhanced(unsigned code, const char *text, size_t n, char enh[12])
{
    size_t k = 0;
    enh[0] = '\0';
    while (k < n && k < 11 && text[k] != ' ')
        k++;
    if (k < 5 || k > 11 || !smtp_enhanced_valid(text, k) || (unsigned)(text[0] - '0') != code / 100)
        return;
    memcpy(enh, text, k);
    enh[k] = '\0';
}

/*
 * reader_line - one whole line (LF removed, a CR before it too); returns
 * DONE when it was the reply's last line.
 */
static enum smtp_reply_status reader_line(struct smtp_reply_reader *r, const uint8_t *p, size_t n,
                                          struct smtp_reply_read *out)
{
    if (n > 0 && p[n - 1] == '\r')
        n--;
    if (n < 3)
        return reader_fail(r, "reply line too short");
    for (size_t i = 0; i < n; i++) {
        if ((p[i] < 0x20 && p[i] != '\t') || p[i] == 0x7f)
            return reader_fail(r, "control character in a reply");
    }
    if (p[0] < '2' || p[0] > '5' || p[1] < '0' || p[1] > '5' || p[2] < '0' || p[2] > '9')
        return reader_fail(r, "reply without a valid three-digit code");
    unsigned code = (unsigned)((p[0] - '0') * 100 + (p[1] - '0') * 10 + (p[2] - '0'));
    bool last;
    if (n == 3 || p[3] == ' ')
        last = true;
    else if (p[3] == '-')
        last = false;
    else
        return reader_fail(r, "reply code not followed by a space or a hyphen");
    if (r->nlines > 0 && code != r->code)
        return reader_fail(r, "different codes in one multi-line reply");
    if (r->nlines >= r->lines_max)
        return reader_fail(r, "reply has too many lines");
    r->code = code;
    const uint8_t *text = n > 4 ? p + 4 : p + n;
    size_t tlen = n > 4 ? n - 4 : 0;
    if ((r->nlines > 0 && buf_append_byte(&r->text, '\n') < 0) ||
        buf_append(&r->text, text, tlen) < 0)
        return reader_fail(r, "reply too long");
    r->nlines++;
    if (!last)
        return SMTP_REPLY_MORE;

    if (buf_append_byte(&r->text, '\0') < 0)
        return reader_fail(r, "reply too long");
    r->text.len--; /* the NUL is there, outside the length */
    out->code = code;
    out->text = (const char *)r->text.data;
    out->text_len = r->text.len;
    out->nlines = r->nlines;
    take_enhanced(code, out->text, out->text_len, out->enh);
    return SMTP_REPLY_DONE;
}

/* smtp_reply_read - take input until one reply is complete */
enum smtp_reply_status smtp_reply_read(struct smtp_reply_reader *r, const uint8_t *in, size_t n,
                                       size_t *used, struct smtp_reply_read *out)
{
    size_t pos = 0;
    *used = 0;
    if (r->error != NULL)
        return SMTP_REPLY_ERROR;
    if (r->nlines == 0 && r->line.len == 0) {
        /* A new reply: forget the last one. */
        buf_clear(&r->text);
        r->code = 0;
    }
    while (pos < n) {
        const uint8_t *lf = memchr(in + pos, '\n', n - pos);
        size_t take = lf ? (size_t)(lf - (in + pos)) + 1 : n - pos;
        if (r->line.len + take > r->line_max) {
            *used = pos + take;
            return reader_fail(r, "reply line too long");
        }
        enum smtp_reply_status st;
        if (lf != NULL && r->line.len == 0) {
            st = reader_line(r, in + pos, take - 1, out);
        } else {
            if (buf_append(&r->line, in + pos, take) < 0) {
                *used = pos + take;
                return reader_fail(r, "out of memory");
            }
            if (lf == NULL) {
                pos += take;
                break;
            }
            st = reader_line(r, r->line.data, r->line.len - 1, out);
            buf_clear(&r->line);
        }
        pos += take;
        if (st != SMTP_REPLY_MORE) {
            *used = pos;
            if (st == SMTP_REPLY_DONE)
                r->nlines = 0; /* the next call starts a new reply */
            return st;
        }
    }
    *used = pos;
    return SMTP_REPLY_MORE;
}
