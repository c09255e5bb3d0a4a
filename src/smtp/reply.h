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

#endif
