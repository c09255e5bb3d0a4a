/*
 * fuzz_journal.c - reading queue journal segments (journal_parse_segment()
 * in src/queue/journal.c), as recovery does after a crash.
 *
 * The input is a segment file.  It is parsed twice: as it is, and after a
 * "repair" that gives every plausible record header its right checksum, so
 * that the fuzzer gets past CRC-32C and into the records themselves (a MSG
 * payload is then decoded as an envelope, as recovery does).  Every parse must account for each
 * octet exactly once: segment header, records (12 octets of framing each), damage, and a torn tail;
 * every record handed to the reader lies inside the segment, after the previous one, with a valid
 * type and a checksum that matches.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "lib/crc32c.h"
#include "queue/envelope.h"
#include "queue/journal.h"

#define SEGMENT_MAGIC       "PIGEONJ1"
#define SEGMENT_HEADER_SIZE 16

/* What the reader has seen of one parse. */
struct seen {
    const uint8_t *seg;
    size_t n;
    const uint8_t *next; /* records come in order: none may start before this */
    size_t records;
    size_t octets; /* framing and payload of the records */
};

/* get_u32 - little-endian */
static uint32_t get_u32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* put_u32 - little-endian */
static void put_u32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

/*
 * decode_payload - what recovery makes of a record's payload.  Only MSG has
 * a decoder outside queue.c; DONE and GONE (an id, and for DONE a recipient
 * index and a state) are read by a static function of queue.c.
 */
static void decode_payload(enum journal_type type, const uint8_t *p, size_t n)
{
    if (type != JOURNAL_MSG)
        return;
    struct envelope e = {0};
    char err[200];
    if (envelope_decode(p, n, &e, err, sizeof(err)) == 0)
        FUZZ_CHECK(e.nrcpt > 0 && e.sender != NULL, "decoded envelope");
    envelope_free(&e);
}

static void on_record(void *ctx, enum journal_type type, const uint8_t *payload, size_t n)
{
    struct seen *s = ctx;
    const uint8_t *end = s->seg + s->n;

    FUZZ_CHECK(type >= JOURNAL_MSG && type <= JOURNAL_GONE, "record type %d", (int)type);
    FUZZ_CHECK(n <= JOURNAL_PAYLOAD_MAX, "payload of %zu octets", n);
    /* The framing around the payload lies inside the segment, after the last record. */
    FUZZ_CHECK(payload >= s->seg + 8 && payload - 8 >= s->next, "record starts too early");
    FUZZ_CHECK(payload <= end && n <= (size_t)(end - payload) && (size_t)(end - payload) - n >= 4,
               "record of %zu octets runs past the end of the segment", n);
    const uint8_t *rec = payload - 8;
    FUZZ_CHECK(rec[0] == 'P' && rec[1] == 'J' && rec[2] == type && rec[3] == 0, "record magic");
    FUZZ_CHECK(get_u32(rec + 4) == n, "record length field");
    FUZZ_CHECK(crc32c(0, rec, 8 + n) == get_u32(payload + n), "record checksum");
    s->next = payload + n + 4;
    s->records++;
    s->octets += JOURNAL_RECORD_OVERHEAD + n;
    decode_payload(type, payload, n);
}

static void on_damaged(void *ctx, const char *segment, const char *quarantine_path, size_t bad)
{
    (void)ctx;
    (void)segment;
    (void)quarantine_path;
    (void)bad;
    FUZZ_CHECK(false, "journal_parse_segment() must not report damage itself");
}

/* parse - one parse of p[0..n), accounting for every octet */
static void parse(const uint8_t *p, size_t n)
{
    struct seen s = {.seg = p, .n = n, .next = p};
    struct journal_reader reader = {.ctx = &s, .record = on_record, .damaged = on_damaged};
    size_t torn = SIZE_MAX;
    size_t damage = journal_parse_segment(p, n, &reader, &torn);
    size_t header =
        n >= SEGMENT_HEADER_SIZE && memcmp(p, SEGMENT_MAGIC, 8) == 0 ? SEGMENT_HEADER_SIZE : 0;
    FUZZ_CHECK(torn <= n && damage <= n, "torn %zu damage %zu of %zu", torn, damage, n);
    if (n < SEGMENT_HEADER_SIZE) {
        FUZZ_CHECK(torn == n && damage == 0 && s.records == 0, "short segment");
        return;
    }
    FUZZ_CHECK(header + s.octets + damage + torn == n,
               "header %zu + records %zu + damage %zu + torn %zu != %zu octets", header, s.octets,
               damage, torn, n);
}

/* repair - give every record header that fits the right checksum, front to back */
static void repair(uint8_t *p, size_t n)
{
    size_t pos =
        n >= SEGMENT_HEADER_SIZE && memcmp(p, SEGMENT_MAGIC, 8) == 0 ? SEGMENT_HEADER_SIZE : 0;
    while (pos + JOURNAL_RECORD_OVERHEAD <= n) {
        uint8_t *r = p + pos;
        uint32_t len = get_u32(r + 4);
        if (r[0] == 'P' && r[1] == 'J' && r[2] >= JOURNAL_MSG && r[2] <= JOURNAL_GONE &&
            r[3] == 0 && len <= n - pos - JOURNAL_RECORD_OVERHEAD) {
            put_u32(r + 8 + len, crc32c(0, r, 8 + (size_t)len));
            pos += JOURNAL_RECORD_OVERHEAD + len;
        } else {
            pos++;
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    parse(data, size);

    uint8_t *copy = malloc(size ? size : 1);
    if (copy == NULL)
        abort();
    memcpy(copy, data, size);
    repair(copy, size);
    parse(copy, size);
    free(copy);
    return 0;
}
