/*
 * buf.h - the one byte buffer of Pigeon.
 *
 * Every piece of network data in Pigeon lives in a struct buf: bytes with a
 * length, and a hard limit that the buffer never grows past.  The limit is
 * how a setting ("512-octet command lines", "64 KB staging per session")
 * turns into a bound on memory: an append that would pass it fails, and the
 * caller turns that failure into an SMTP reply.
 *
 * Memory is allocated on first use and can be given back with buf_free(), so
 * an idle session holds no buffer memory at all.
 */
#ifndef PIGEON_LIB_BUF_H
#define PIGEON_LIB_BUF_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

struct buf {
    uint8_t *data; /* NULL until the first append */
    size_t len;    /* bytes in use */
    size_t cap;    /* bytes allocated */
    size_t limit;  /* hard capacity: len never exceeds it */
};

/* buf_init - an empty buffer that may hold at most limit bytes */
void buf_init(struct buf *b, size_t limit);

/* buf_free - release the memory; the buffer stays usable (empty) */
void buf_free(struct buf *b);

/* buf_clear - forget the contents, keep the memory */
void buf_clear(struct buf *b);

/* buf_reserve - make room for n more bytes; -1 if past the limit or no memory */
int buf_reserve(struct buf *b, size_t n);

/* buf_append - add n bytes; -1 (and no change) if past the limit or no memory */
int buf_append(struct buf *b, const void *p, size_t n);

/* buf_append_str - add a NUL-terminated string of our own (never network data) */
int buf_append_str(struct buf *b, const char *s);

/* buf_append_byte - add one byte */
int buf_append_byte(struct buf *b, uint8_t c);

/* buf_printf - append formatted text; -1 (and no change) if it does not fit */
int buf_printf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int buf_vprintf(struct buf *b, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));

/* buf_consume - drop the first n bytes */
void buf_consume(struct buf *b, size_t n);

/* buf_space - bytes that can still be appended before the limit */
size_t buf_space(const struct buf *b);

#endif
