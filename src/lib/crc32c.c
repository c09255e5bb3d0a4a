/*
 * crc32c.c - CRC-32C, reflected polynomial 0x82F63B78, one table lookup per
 * octet.  Journal records are a few hundred octets, so this is not hot.
 */
#include "crc32c.h"

#include <pthread.h>

static uint32_t crc_table[256];
static pthread_once_t crc_once = PTHREAD_ONCE_INIT;

/* crc_init - fill the table once */
static void crc_init(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++)
            c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
        crc_table[i] = c;
    }
}

/* crc32c - continue a CRC-32C over p[0..n); start with crc = 0 */
uint32_t crc32c(uint32_t crc, const void *p, size_t n)
{
    const uint8_t *s = p;
    pthread_once(&crc_once, crc_init);
    crc = ~crc;
    for (size_t i = 0; i < n; i++)
        crc = crc_table[(crc ^ s[i]) & 0xff] ^ (crc >> 8);
    return ~crc;
}
