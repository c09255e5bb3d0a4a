/*
 * reply.c - formatting (and, for the client engine, parsing) SMTP replies.
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
        if (enh != NULL)
            hn = snprintf(head, sizeof(head), "%03u%c%s ", code, nl ? '-' : ' ', enh);
        else
            hn = snprintf(head, sizeof(head), "%03u%c", code, nl ? '-' : ' ');
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
