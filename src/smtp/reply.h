/*
 * reply.h - SMTP replies: three digits, an optional enhanced status code
 * (RFC 3463, announced with ENHANCEDSTATUSCODES, RFC 2034) and text, over
 * one or more lines (RFC 5321 §4.2.1).
 *
 * The server engine formats replies here; the client engine (and anything
 * else reading a server's replies) parses them here.
 */
#ifndef PIGEON_SMTP_REPLY_H
#define PIGEON_SMTP_REPLY_H

#include <stdbool.h>
#include <stddef.h>

#include "lib/buf.h"

/* RFC 5321 §4.5.3.1.5: a reply line is at most 512 octets, CRLF included. */
#define SMTP_REPLY_LINE_MAX 512

/*
 * smtp_reply_format - append a reply to out.  text may hold several lines
 * separated by '\n'; each becomes "code-enh line" and the last "code enh
 * line".  enh (like "2.0.0") is left out when NULL.  Control characters in
 * text are replaced by '?', so text that quotes a client cannot inject a
 * line; lines are cut to fit SMTP_REPLY_LINE_MAX.  Returns 0, or -1 if out
 * is full.
 */
int smtp_reply_format(struct buf *out, unsigned code, const char *enh, const char *text);

/* smtp_enhanced_valid - is s[0..n) an enhanced status code class.subject.detail? */
bool smtp_enhanced_valid(const char *s, size_t n);

/* ---- reading replies (the client side) ---------------------------------- */

#define SMTP_REPLY_LINES_MAX 100 /* lines in one reply before it is refused */

/*
 * An incremental reply reader.  Server replies are parsed as defensively
 * as client commands (OpenSMTPD's CVE-2020-8794 was in its client): a line
 * past the limit, a code that is not [2-5][0-5][0-9], a line that is neither
 * "ddd-", "ddd " nor "ddd", lines with different codes in one reply, control
 * characters, too many lines: each is an error, after which the reader
 * refuses everything (the connection should be dropped).  A line may end in
 * CRLF or, leniently, a bare LF.
 */
struct smtp_reply_reader {
    size_t line_max;  /* octets per line, CRLF included */
    size_t lines_max; /* lines per reply */
    struct buf line;  /* a line that arrived in pieces */
    struct buf text;  /* the reply so far: each line's text, joined by '\n' */
    unsigned code;    /* of the reply being read; 0 before its first line */
    size_t nlines;
    const char *error; /* set once the reader has refused its input */
};

/* A whole reply, valid until the next call on its reader. */
struct smtp_reply_read {
    unsigned code;
    char enh[12];     /* "5.1.1" when the first line starts with one of the code's class */
    const char *text; /* lines joined by '\n', enhanced code left in; NUL-terminated */
    size_t text_len;
    size_t nlines;
};

enum smtp_reply_status {
    SMTP_REPLY_MORE,  /* all input used, no whole reply yet */
    SMTP_REPLY_DONE,  /* *out holds a reply; *used says how much input it took */
    SMTP_REPLY_ERROR, /* reader->error says why */
};

/* smtp_reply_reader_init - a reader with the RFC's limits (or bigger ones) */
void smtp_reply_reader_init(struct smtp_reply_reader *r, size_t line_max, size_t lines_max);

/* smtp_reply_reader_free - release its buffers */
void smtp_reply_reader_free(struct smtp_reply_reader *r);

/* smtp_reply_read - take input until one reply is complete */
enum smtp_reply_status smtp_reply_read(struct smtp_reply_reader *r, const uint8_t *in, size_t n,
                                       size_t *used, struct smtp_reply_read *out);

/* smtp_reply_reader_partial - a reply has begun and not ended */
bool smtp_reply_reader_partial(const struct smtp_reply_reader *r);

#endif
