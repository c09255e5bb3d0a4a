/*
 * buf.c - bounded byte buffers (see buf.h).
 *
 * Growth doubles the allocation up to the limit, so appending n bytes one
 * piece at a time costs O(n) copies in total.
 */
#include "buf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* buf_init - an empty buffer that may hold at most limit bytes */
void buf_init(struct buf *b, size_t limit)
{
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
    b->limit = limit;
}

/* buf_free - release the memory; the buffer stays usable (empty) */
void buf_free(struct buf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
}

/* buf_clear - forget the contents, keep the memory */
void buf_clear(struct buf *b)
{
    b->len = 0;
}

/* buf_reserve - make room for n more bytes; -1 if past the limit or no memory */
int buf_reserve(struct buf *b, size_t n)
{
    if (n > b->limit - b->len)
        return -1;
    size_t need = b->len + n;
    if (need <= b->cap)
        return 0;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < need)
        cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    if (cap > b->limit)
        cap = b->limit;
    uint8_t *p = realloc(b->data, cap);
    if (p == NULL)
        return -1;
    b->data = p;
    b->cap = cap;
    return 0;
}

/* buf_append - add n bytes; -1 (and no change) if past the limit or no memory */
int buf_append(struct buf *b, const void *p, size_t n)
{
    if (n == 0)
        return 0;
    if (buf_reserve(b, n) < 0)
        return -1;
    memcpy(b->data + b->len, p, n);
    b->len += n;
    return 0;
}

/* buf_append_str - add a NUL-terminated string of our own (never network data) */
int buf_append_str(struct buf *b, const char *s)
{
    return buf_append(b, s, strlen(s));
}

/* buf_append_byte - add one byte */
int buf_append_byte(struct buf *b, uint8_t c)
{
    return buf_append(b, &c, 1);
}

/* buf_vprintf - append formatted text; -1 (and no change) if it does not fit */
int buf_vprintf(struct buf *b, const char *fmt, va_list ap)
{
    va_list copy;
    va_copy(copy, ap);
    int n = vsnprintf(NULL, 0, fmt, copy);
    va_end(copy);
    if (n < 0)
        return -1;
    /* vsnprintf writes a terminating NUL: reserve it, then leave it outside len. */
    if (buf_reserve(b, (size_t)n + 1) < 0)
        return -1;
    vsnprintf((char *)b->data + b->len, (size_t)n + 1, fmt, ap);
    b->len += (size_t)n;
    return 0;
}

/* buf_printf - append formatted text; -1 (and no change) if it does not fit */
int buf_printf(struct buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int r = buf_vprintf(b, fmt, ap);
    va_end(ap);
    return r;
}

/* buf_consume - drop the first n bytes */
void buf_consume(struct buf *b, size_t n)
{
    if (n >= b->len) {
        b->len = 0;
        return;
    }
    memmove(b->data, b->data + n, b->len - n);
    b->len -= n;
}

/* buf_space - bytes that can still be appended before the limit */
size_t buf_space(const struct buf *b)
{
    return b->limit - b->len;
}
