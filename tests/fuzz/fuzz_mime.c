/*
 * fuzz_mime.c - the message and address-list parsers of `pigeon send` and
 * `sendmail -t` (src/cli/mime.c).
 *
 * sendmail -t reads its recipients out of the To, Cc and Bcc fields of a
 * message a program handed it, so those parsers read untrusted text and
 * their output goes straight into RCPT TO commands.  The first input octet
 * chooses the target:
 *   even: mime_parse of the rest, then mime_render; every field keeps its
 *         CRLF, the body has no bare CR or LF, and the rendered message
 *         ends in CRLF;
 *   odd:  mime_addresses of the rest (as a C string); every address found
 *         is non-empty, shorter than a path may be, and free of control
 *         characters, spaces outside quotes and angle brackets: nothing
 *         that could break out of "RCPT TO:<...>".
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "fuzz.h"

/* no_bare_line_ends - every CR in p[0..n) is followed by LF and every LF preceded by CR */
static bool no_bare_line_ends(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (p[i] == '\r' && (i + 1 >= n || p[i + 1] != '\n'))
            return false;
        if (p[i] == '\n' && (i == 0 || p[i - 1] != '\r'))
            return false;
    }
    return true;
}

/* check_address - one address mime_addresses found */
static int check_address(void *ctx, const char *addr)
{
    size_t *count = ctx;
    size_t n = strlen(addr);
    FUZZ_CHECK(n > 0 && n < 1024, "address of length %zu", n);
    bool quoted = false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)addr[i];
        FUZZ_CHECK(c >= 0x20 && c != 0x7f, "control octet 0x%02x in an address", c);
        if (quoted && c == '\\' && i + 1 < n) {
            i++; /* a quoted pair: the next octet is literal */
            continue;
        }
        if (c == '"')
            quoted = !quoted;
        FUZZ_CHECK(quoted || (c != '<' && c != '>'), "angle bracket in an address");
    }
    (*count)++;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    const uint8_t *p = data + 1;
    size_t n = size - 1;
    if ((data[0] & 1) == 0) {
        struct mime_message m;
        mime_init(&m);
        if (mime_parse(&m, p, n) == 0) {
            for (size_t i = 0; i < m.nfields; i++) {
                const struct mime_field *f = &m.fields[i];
                FUZZ_CHECK(f->raw_len >= 2 && f->raw[f->raw_len - 2] == '\r' &&
                               f->raw[f->raw_len - 1] == '\n',
                           "field %zu does not end in CRLF", i);
                FUZZ_CHECK(no_bare_line_ends(f->raw, f->raw_len), "bare CR or LF in a field");
            }
            FUZZ_CHECK(no_bare_line_ends(m.body.data, m.body.len), "bare CR or LF in the body");
            struct buf out;
            buf_init(&out, 64u * 1024 * 1024);
            if (mime_render(&m, &out) == 0 && out.len > 0)
                FUZZ_CHECK(out.len >= 2 && out.data[out.len - 2] == '\r' &&
                               out.data[out.len - 1] == '\n',
                           "rendered message does not end in CRLF");
            buf_free(&out);
        }
        mime_free(&m);
        return 0;
    }
    char *text = malloc(n + 1);
    if (text == NULL)
        return 0;
    memcpy(text, p, n);
    text[n] = '\0';
    size_t count = 0;
    mime_addresses(text, check_address, &count);
    free(text);
    return 0;
}
