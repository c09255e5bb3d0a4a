/*
 * crc32c.h - CRC-32C (Castagnoli), the checksum on every queue journal
 * record.  Twenty lines of table code rather than a dependency: zlib's
 * crc32 would do, but nothing else in Pigeon needs zlib.
 */
#ifndef PIGEON_LIB_CRC32C_H
#define PIGEON_LIB_CRC32C_H

#include <stddef.h>
#include <stdint.h>

/* crc32c - continue a CRC-32C over p[0..n); start with crc = 0 */
uint32_t crc32c(uint32_t crc, const void *p, size_t n);

#endif
