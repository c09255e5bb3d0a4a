/*
 * test_journal.c - unit tests for src/queue/journal.c (segment files of
 * checksummed records) and src/lib/crc32c.c (the checksum).
 *
 * The first half feeds journal_parse_segment() hand-built segments: good
 * records, a record cut short at every possible length (a crash in the
 * middle of a write: ignored), and bad octets with good records after them
 * (damage: counted, and the good records still handed over in order).
 *
 * The second half runs the whole journal against a temporary spool
 * directory (spool/journal and spool/quarantine, as queue.c makes them):
 * records written come back on the next open, a damaged segment is copied
 * to quarantine, and rotation followed by journal_drop_old() leaves only
 * the current segment.  Each test removes its spool when it ends.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/crc32c.h"
#include "lib/log.h"
#include "queue/envelope.h"
#include "queue/journal.h"

#define SEGMENT_HEADER_SIZE 16
#define MAX_SEEN            64
#define NAME_SIZE           256

/* ---- a reader that remembers what it was handed --------------------------------- */

struct seen_record {
    enum journal_type type;
    uint8_t *payload;
    size_t n;
};

struct seen {
    struct seen_record rec[MAX_SEEN];
    size_t nrec;
    size_t ndamaged;
    char segment[256];
    char quarantine[4096];
    size_t bad_octets;
};

/* seen_record - the journal_reader record callback */
static void seen_record(void *ctx, enum journal_type type, const uint8_t *payload, size_t n)
{
    struct seen *s = ctx;
    assert_true(s->nrec < MAX_SEEN);
    struct seen_record *r = &s->rec[s->nrec++];
    r->type = type;
    r->n = n;
    r->payload = malloc(n ? n : 1);
    assert_non_null(r->payload);
    if (n > 0)
        memcpy(r->payload, payload, n);
}

/* seen_damaged - the journal_reader damaged callback */
static void seen_damaged(void *ctx, const char *segment, const char *quarantine_path,
                         size_t bad_octets)
{
    struct seen *s = ctx;
    s->ndamaged++;
    snprintf(s->segment, sizeof(s->segment), "%s", segment);
    snprintf(s->quarantine, sizeof(s->quarantine), "%s", quarantine_path);
    s->bad_octets = bad_octets;
}

/* seen_reset - forget everything seen */
static void seen_reset(struct seen *s)
{
    for (size_t i = 0; i < s->nrec; i++)
        free(s->rec[i].payload);
    memset(s, 0, sizeof(*s));
}

/* reader_for - a journal_reader that fills s */
static struct journal_reader reader_for(struct seen *s)
{
    struct journal_reader r = {s, seen_record, seen_damaged};
    return r;
}

/* assert_seen - record i has this type and payload */
static void assert_seen(const struct seen *s, size_t i, enum journal_type type, const char *payload)
{
    assert_true(i < s->nrec);
    assert_int_equal(s->rec[i].type, type);
    assert_int_equal(s->rec[i].n, strlen(payload));
    if (s->rec[i].n > 0)
        assert_memory_equal(s->rec[i].payload, payload, s->rec[i].n);
}

/* ---- building segments by hand --------------------------------------------------- */

/* put_u32 - little-endian */
static void put_u32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

/* add_header - the 16-octet segment header: "PIGEONJ1" and a sequence number */
static void add_header(struct buf *b, uint64_t seq)
{
    uint8_t h[SEGMENT_HEADER_SIZE];
    memcpy(h, "PIGEONJ1", 8);
    for (int i = 0; i < 8; i++)
        h[8 + i] = (uint8_t)(seq >> (8 * i));
    assert_int_equal(buf_append(b, h, sizeof(h)), 0);
}

/* add_raw_record - a record with every octet of the frame given; returns its size */
static size_t add_raw_record(struct buf *b, uint8_t type, uint8_t reserved, const void *payload,
                             size_t n)
{
    size_t start = b->len;
    uint8_t head[8] = {'P', 'J', type, reserved};
    put_u32(head + 4, (uint32_t)n);
    assert_int_equal(buf_append(b, head, sizeof(head)), 0);
    assert_int_equal(buf_append(b, payload, n), 0);
    uint8_t crc[4];
    put_u32(crc, crc32c(0, b->data + start, sizeof(head) + n));
    assert_int_equal(buf_append(b, crc, sizeof(crc)), 0);
    return b->len - start;
}

/* add_record - a good record with a text payload; returns its size */
static size_t add_record(struct buf *b, enum journal_type type, const char *payload)
{
    return add_raw_record(b, (uint8_t)type, 0, payload, strlen(payload));
}

/* add_bytes - arbitrary octets */
static void add_bytes(struct buf *b, const void *p, size_t n)
{
    assert_int_equal(buf_append(b, p, n), 0);
}

/* parse - run journal_parse_segment() over an exact-size heap copy of p[0..n) */
static size_t parse(const uint8_t *p, size_t n, struct seen *s, size_t *torn)
{
    uint8_t *copy = malloc(n ? n : 1);
    assert_non_null(copy);
    if (n > 0)
        memcpy(copy, p, n);
    struct journal_reader r = reader_for(s);
    *torn = 12345;
    size_t damage = journal_parse_segment(copy, n, &r, torn);
    free(copy);
    return damage;
}

/* three_records - header, then MSG "first", DONE "second", GONE "" (an empty payload) */
static struct buf three_records(void)
{
    struct buf b;
    buf_init(&b, 1u << 20);
    add_header(&b, 1);
    add_record(&b, JOURNAL_MSG, "first");
    add_record(&b, JOURNAL_DONE, "second");
    add_record(&b, JOURNAL_GONE, "");
    return b;
}

/* ---- CRC-32C ------------------------------------------------------------------------ */

static void test_crc32c_matches_the_known_answers(void **state)
{
    (void)state;
    assert_int_equal(crc32c(0, "123456789", 9), 0xE3069283u);
    assert_int_equal(crc32c(0, "", 0), 0);

    /* RFC 3720 (iSCSI) appendix B.4. */
    uint8_t b[32];
    memset(b, 0, sizeof(b));
    assert_int_equal(crc32c(0, b, sizeof(b)), 0x8A9136AAu);
    memset(b, 0xff, sizeof(b));
    assert_int_equal(crc32c(0, b, sizeof(b)), 0x62A8AB43u);
    for (int i = 0; i < 32; i++)
        b[i] = (uint8_t)i;
    assert_int_equal(crc32c(0, b, sizeof(b)), 0x46DD794Eu);
    for (int i = 0; i < 32; i++)
        b[i] = (uint8_t)(31 - i);
    assert_int_equal(crc32c(0, b, sizeof(b)), 0x113FDB5Cu);
}

static void test_crc32c_can_be_continued_piece_by_piece(void **state)
{
    (void)state;
    uint32_t c = crc32c(0, "1234", 4);
    c = crc32c(c, "", 0);
    c = crc32c(c, "56789", 5);
    assert_int_equal(c, 0xE3069283u);
}

/* ---- journal_parse_segment ------------------------------------------------------------ */

static void test_good_records_are_delivered_in_order(void **state)
{
    (void)state;
    struct seen s = {0};
    struct buf b = three_records();
    size_t torn;
    assert_int_equal(parse(b.data, b.len, &s, &torn), 0);
    assert_int_equal(torn, 0);
    assert_int_equal(s.nrec, 3);
    assert_seen(&s, 0, JOURNAL_MSG, "first");
    assert_seen(&s, 1, JOURNAL_DONE, "second");
    assert_seen(&s, 2, JOURNAL_GONE, "");
    assert_int_equal(s.ndamaged, 0);
    seen_reset(&s);
    buf_free(&b);
}

static void test_header_alone_is_an_empty_segment(void **state)
{
    (void)state;
    struct seen s = {0};
    struct buf b;
    buf_init(&b, 1024);
    add_header(&b, 7);
    size_t torn;
    assert_int_equal(parse(b.data, b.len, &s, &torn), 0);
    assert_int_equal(torn, 0);
    assert_int_equal(s.nrec, 0);
    buf_free(&b);
}

static void test_file_shorter_than_a_header_is_a_torn_tail(void **state)
{
    (void)state;
    struct buf b;
    buf_init(&b, 1024);
    add_header(&b, 1);
    for (size_t n = 0; n < SEGMENT_HEADER_SIZE; n++) {
        struct seen s = {0};
        size_t torn;
        assert_int_equal(parse(b.data, n, &s, &torn), 0);
        assert_int_equal(torn, n);
        assert_int_equal(s.nrec, 0);
    }
    buf_free(&b);
}

static void test_torn_tail_of_every_length_is_ignored_not_quarantined(void **state)
{
    (void)state;
    struct buf b = three_records();
    size_t whole = b.len;
    size_t last = add_record(&b, JOURNAL_DONE, "the record a crash cut short");
    for (size_t k = 1; k < last; k++) {
        struct seen s = {0};
        size_t torn;
        assert_int_equal(parse(b.data, whole + k, &s, &torn), 0);
        assert_int_equal(torn, k);
        assert_int_equal(s.nrec, 3);
        assert_seen(&s, 2, JOURNAL_GONE, "");
        seen_reset(&s);
    }
    /* And the whole record is a record. */
    struct seen s = {0};
    size_t torn;
    assert_int_equal(parse(b.data, b.len, &s, &torn), 0);
    assert_int_equal(torn, 0);
    assert_int_equal(s.nrec, 4);
    seen_reset(&s);
    buf_free(&b);
}

static void test_bad_crc_on_the_last_record_is_a_torn_tail(void **state)
{
    (void)state;
    struct buf b = three_records();
    size_t before = b.len;
    size_t last = add_record(&b, JOURNAL_MSG, "written, but not all of it reached the disk");
    b.data[before + 8 + 3] ^= 0x40; /* a payload octet */
    struct seen s = {0};
    size_t torn;
    assert_int_equal(parse(b.data, b.len, &s, &torn), 0);
    assert_int_equal(torn, last);
    assert_int_equal(s.nrec, 3);
    seen_reset(&s);

    b.data[before + 8 + 3] ^= 0x40;
    b.data[b.len - 1] ^= 0x01; /* the checksum itself */
    assert_int_equal(parse(b.data, b.len, &s, &torn), 0);
    assert_int_equal(torn, last);
    assert_int_equal(s.nrec, 3);
    seen_reset(&s);
    buf_free(&b);
}

static void test_garbage_after_the_header_is_a_torn_tail(void **state)
{
    (void)state;
    struct buf b;
    buf_init(&b, 1024);
    add_header(&b, 1);
    uint8_t junk[100];
    for (size_t i = 0; i < sizeof(junk); i++)
        junk[i] = (uint8_t)(i * 37 + 11);
    add_bytes(&b, junk, sizeof(junk));
    struct seen s = {0};
    size_t torn;
    assert_int_equal(parse(b.data, b.len, &s, &torn), 0);
    assert_int_equal(torn, sizeof(junk));
    assert_int_equal(s.nrec, 0);
    buf_free(&b);
}

static void test_garbage_without_a_header_is_a_torn_tail(void **state)
{
    (void)state;
    uint8_t junk[200];
    memset(junk, 'P', sizeof(junk));
    struct seen s = {0};
    size_t torn;
    assert_int_equal(parse(junk, sizeof(junk), &s, &torn), 0);
    assert_int_equal(torn, sizeof(junk));
    assert_int_equal(s.nrec, 0);
}

static void test_damage_in_the_middle_is_counted_and_later_records_still_delivered(void **state)
{
    (void)state;
    struct buf b;
    buf_init(&b, 1u << 20);
    add_header(&b, 1);
    add_record(&b, JOURNAL_MSG, "before");
    add_bytes(&b, "\x00\xffPJ\x01\x00zz", 8);
    add_record(&b, JOURNAL_DONE, "after one");
    add_record(&b, JOURNAL_GONE, "after two");
    struct seen s = {0};
    size_t torn;
    assert_int_equal(parse(b.data, b.len, &s, &torn), 8);
    assert_int_equal(torn, 0);
    assert_int_equal(s.nrec, 3);
    assert_seen(&s, 0, JOURNAL_MSG, "before");
    assert_seen(&s, 1, JOURNAL_DONE, "after one");
    assert_seen(&s, 2, JOURNAL_GONE, "after two");
    seen_reset(&s);
    buf_free(&b);
}

static void test_bad_crc_in_the_middle_is_damage_of_exactly_that_record(void **state)
{
    (void)state;
    struct buf b;
    buf_init(&b, 1u << 20);
    add_header(&b, 1);
    add_record(&b, JOURNAL_MSG, "one");
    size_t at = b.len;
    size_t bad = add_record(&b, JOURNAL_DONE, "two, with a flipped bit");
    add_record(&b, JOURNAL_GONE, "three");
    b.data[at + 8 + 5] ^= 0x08;
    struct seen s = {0};
    size_t torn;
    assert_int_equal(parse(b.data, b.len, &s, &torn), bad);
    assert_int_equal(torn, 0);
    assert_int_equal(s.nrec, 2);
    assert_seen(&s, 0, JOURNAL_MSG, "one");
    assert_seen(&s, 1, JOURNAL_GONE, "three");
    seen_reset(&s);
    buf_free(&b);
}

static void test_two_damaged_places_are_added_up(void **state)
{
    (void)state;
    struct buf b;
    buf_init(&b, 1u << 20);
    add_header(&b, 1);
    add_bytes(&b, "xxx", 3);
    add_record(&b, JOURNAL_MSG, "one");
    add_bytes(&b, "yyyyy", 5);
    add_record(&b, JOURNAL_MSG, "two");
    struct seen s = {0};
    size_t torn;
    assert_int_equal(parse(b.data, b.len, &s, &torn), 8);
    assert_int_equal(torn, 0);
    assert_int_equal(s.nrec, 2);
    assert_seen(&s, 1, JOURNAL_MSG, "two");
    seen_reset(&s);
    buf_free(&b);
}

static void test_damage_and_a_torn_tail_in_one_segment_are_told_apart(void **state)
{
    (void)state;
    struct buf b;
    buf_init(&b, 1u << 20);
    add_header(&b, 1);
    add_record(&b, JOURNAL_MSG, "one");
    add_bytes(&b, "damage", 6);
    add_record(&b, JOURNAL_MSG, "two");
    size_t cut = b.len + 10;
    add_record(&b, JOURNAL_MSG, "three, cut short");
    struct seen s = {0};
    size_t torn;
    assert_int_equal(parse(b.data, cut, &s, &torn), 6);
    assert_int_equal(torn, 10);
    assert_int_equal(s.nrec, 2);
    assert_seen(&s, 1, JOURNAL_MSG, "two");
    seen_reset(&s);
    buf_free(&b);
}

static void test_unknown_type_or_nonzero_reserved_octet_makes_a_record_bad(void **state)
{
    (void)state;
    static const struct {
        uint8_t type, reserved;
    } bad[] = {{0, 0}, {4, 0}, {255, 0}, {JOURNAL_MSG, 1}, {JOURNAL_DONE, 0x80}};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct buf b;
        buf_init(&b, 1u << 20);
        add_header(&b, 1);
        size_t n = add_raw_record(&b, bad[i].type, bad[i].reserved, "checksum is right", 17);
        add_record(&b, JOURNAL_GONE, "good");
        struct seen s = {0};
        size_t torn;
        assert_int_equal(parse(b.data, b.len, &s, &torn), n);
        assert_int_equal(s.nrec, 1);
        assert_seen(&s, 0, JOURNAL_GONE, "good");
        seen_reset(&s);
        buf_free(&b);
    }
}

static void test_length_past_the_end_is_a_torn_tail(void **state)
{
    (void)state;
    struct buf b = three_records();
    uint8_t head[8] = {'P', 'J', JOURNAL_MSG, 0};
    put_u32(head + 4, 1000);
    add_bytes(&b, head, sizeof(head));
    add_bytes(&b, "only some of it", 15);
    struct seen s = {0};
    size_t torn;
    assert_int_equal(parse(b.data, b.len, &s, &torn), 0);
    assert_int_equal(torn, 23);
    assert_int_equal(s.nrec, 3);
    seen_reset(&s);

    b.len -= 15;
    put_u32(b.data + b.len - 4, UINT32_MAX);
    assert_int_equal(parse(b.data, b.len, &s, &torn), 0);
    assert_int_equal(torn, 8);
    assert_int_equal(s.nrec, 3);
    seen_reset(&s);
    buf_free(&b);
}

static void test_damaged_header_is_damage_before_the_first_record(void **state)
{
    (void)state;
    struct buf b = three_records();
    b.data[3] = 'X'; /* "PIGXONJ1" */
    struct seen s = {0};
    size_t torn;
    assert_int_equal(parse(b.data, b.len, &s, &torn), SEGMENT_HEADER_SIZE);
    assert_int_equal(torn, 0);
    assert_int_equal(s.nrec, 3);
    assert_seen(&s, 0, JOURNAL_MSG, "first");
    seen_reset(&s);
    buf_free(&b);
}

static void test_records_without_a_segment_header_are_still_read(void **state)
{
    (void)state;
    struct buf b;
    buf_init(&b, 1u << 20);
    add_record(&b, JOURNAL_MSG, "no header before me");
    add_record(&b, JOURNAL_GONE, "nor me");
    struct seen s = {0};
    size_t torn;
    assert_int_equal(parse(b.data, b.len, &s, &torn), 0);
    assert_int_equal(torn, 0);
    assert_int_equal(s.nrec, 2);
    assert_seen(&s, 0, JOURNAL_MSG, "no header before me");
    seen_reset(&s);
    buf_free(&b);
}

/* ---- the journal on disk ------------------------------------------------------------ */

struct spool {
    char dir[64];
    char journal[128];
    char quarantine[128];
};

/* remove_one - nftw callback: remove a file or an (emptied) directory */
static int remove_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

/* spool_setup - a fresh spool with journal/ and quarantine/ */
static int spool_setup(void **state)
{
    struct spool *sp = calloc(1, sizeof(*sp));
    assert_non_null(sp);
    snprintf(sp->dir, sizeof(sp->dir), "/tmp/pigeon-test-journal-XXXXXX");
    assert_non_null(mkdtemp(sp->dir));
    snprintf(sp->journal, sizeof(sp->journal), "%s/journal", sp->dir);
    snprintf(sp->quarantine, sizeof(sp->quarantine), "%s/quarantine", sp->dir);
    assert_int_equal(mkdir(sp->journal, 0700), 0);
    assert_int_equal(mkdir(sp->quarantine, 0700), 0);
    *state = sp;
    return 0;
}

/* spool_teardown - remove the spool and everything in it */
static int spool_teardown(void **state)
{
    struct spool *sp = *state;
    int r = nftw(sp->dir, remove_one, 16, FTW_DEPTH | FTW_PHYS);
    free(sp);
    return r;
}

/* name_order - qsort order of the names of list_dir() */
static int name_order(const void *a, const void *b)
{
    return strcmp(a, b);
}

/* list_dir - the names in dir (without . and ..), sorted; returns how many */
static size_t list_dir(const char *dir, char names[][NAME_SIZE], size_t max)
{
    DIR *d = opendir(dir);
    assert_non_null(d);
    size_t n = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        assert_true(n < max);
        snprintf(names[n++], NAME_SIZE, "%s", de->d_name);
    }
    closedir(d);
    qsort(names, n, NAME_SIZE, name_order);
    return n;
}

/* read_whole - a file's contents into b */
static void read_whole(const char *path, struct buf *b)
{
    int fd = open(path, O_RDONLY);
    assert_true(fd >= 0);
    uint8_t chunk[4096];
    ssize_t r;
    while ((r = read(fd, chunk, sizeof(chunk))) > 0)
        assert_int_equal(buf_append(b, chunk, (size_t)r), 0);
    assert_true(r == 0);
    close(fd);
}

/* write_whole - replace a file's contents with p[0..n) */
static void write_whole(const char *path, const void *p, size_t n)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, p, n), (ssize_t)n);
    close(fd);
}

/* open_journal - journal_open() that must succeed */
static struct journal *open_journal(const struct spool *sp, struct seen *s)
{
    char err[512] = "";
    struct journal_reader r = reader_for(s);
    struct journal *j = journal_open(sp->dir, &r, err, sizeof(err));
    if (j == NULL)
        fail_msg("journal_open: %s", err);
    return j;
}

/* segment_file - the path of segment seq */
static void segment_file(const struct spool *sp, uint64_t seq, char *out, size_t outsize)
{
    snprintf(out, outsize, "%s/%016llx.journal", sp->journal, (unsigned long long)seq);
}

static void test_new_journal_starts_a_segment_with_a_header(void **state)
{
    struct spool *sp = *state;
    struct seen s = {0};
    struct journal *j = open_journal(sp, &s);
    assert_int_equal(s.nrec, 0);
    assert_int_equal(journal_size(j), SEGMENT_HEADER_SIZE);
    assert_int_equal(journal_pending(j), 0);
    journal_close(j);

    char path[256];
    segment_file(sp, 1, path, sizeof(path));
    struct buf b;
    buf_init(&b, 1024);
    read_whole(path, &b);
    assert_int_equal(b.len, SEGMENT_HEADER_SIZE);
    assert_memory_equal(b.data, "PIGEONJ1\x01\x00\x00\x00\x00\x00\x00\x00", 16);
    buf_free(&b);
}

static void test_records_written_are_read_back_in_order_on_reopen(void **state)
{
    struct spool *sp = *state;
    struct seen s = {0};
    struct journal *j = open_journal(sp, &s);
    assert_int_equal(journal_add(j, JOURNAL_MSG, "first", 5), 0);
    assert_int_equal(journal_add(j, JOURNAL_DONE, "second", 6), 0);
    assert_int_equal(journal_pending(j), 2 * JOURNAL_RECORD_OVERHEAD + 11);
    assert_int_equal(journal_size(j), SEGMENT_HEADER_SIZE);
    assert_int_equal(journal_write(j), 0);
    assert_int_equal(journal_pending(j), 0);
    assert_int_equal(journal_size(j), SEGMENT_HEADER_SIZE + 2 * JOURNAL_RECORD_OVERHEAD + 11);
    assert_int_equal(journal_add(j, JOURNAL_GONE, "", 0), 0);
    assert_int_equal(journal_write(j), 0);
    assert_int_equal(journal_datasync(j), 0);
    journal_close(j);

    j = open_journal(sp, &s);
    assert_int_equal(s.nrec, 3);
    assert_seen(&s, 0, JOURNAL_MSG, "first");
    assert_seen(&s, 1, JOURNAL_DONE, "second");
    assert_seen(&s, 2, JOURNAL_GONE, "");
    assert_int_equal(s.ndamaged, 0);
    journal_close(j);
    seen_reset(&s);
}

static void test_envelope_record_decodes_to_the_envelope_written(void **state)
{
    struct spool *sp = *state;
    struct envelope e;
    memset(&e, 0, sizeof(e));
    memcpy(e.id, "0NDUQ6J8AMH200", QUEUE_ID_LEN + 1);
    e.sender = strdup("alice@example.net\r\nX: y");
    e.client = strdup("[192.0.2.7]");
    e.helo = strdup("mail.example.net");
    e.size = 99;
    struct envelope_rcpt *r = envelope_add_rcpt(&e);
    assert_non_null(r);
    r->address = strdup("bob@example.org");
    r->route = ENVELOPE_ROUTE_MAILDIR;
    r->maildir = strdup("/var/mail/bob");

    struct seen s = {0};
    struct journal *j = open_journal(sp, &s);
    size_t framed = 0;
    assert_int_equal(journal_add_envelope(j, &e, &framed), 0);
    assert_int_equal(framed, journal_pending(j));
    assert_int_equal(journal_write(j), 0);
    journal_close(j);

    j = open_journal(sp, &s);
    assert_int_equal(s.nrec, 1);
    assert_int_equal(s.rec[0].type, JOURNAL_MSG);
    assert_int_equal(s.rec[0].n + JOURNAL_RECORD_OVERHEAD, framed);
    struct envelope back;
    memset(&back, 0, sizeof(back));
    char err[256];
    assert_int_equal(envelope_decode(s.rec[0].payload, s.rec[0].n, &back, err, sizeof(err)), 0);
    assert_string_equal(back.sender, "alice@example.net\r\nX: y");
    assert_string_equal(back.rcpt[0].maildir, "/var/mail/bob");
    envelope_free(&back);
    envelope_free(&e);
    journal_close(j);
    seen_reset(&s);
}

static void test_oversize_record_is_refused_and_the_batch_left_alone(void **state)
{
    struct spool *sp = *state;
    struct seen s = {0};
    struct journal *j = open_journal(sp, &s);
    assert_int_equal(journal_add(j, JOURNAL_MSG, "kept", 4), 0);
    size_t before = journal_pending(j);
    uint8_t *big = calloc(1, JOURNAL_PAYLOAD_MAX + 1);
    assert_non_null(big);
    assert_int_equal(journal_add(j, JOURNAL_MSG, big, JOURNAL_PAYLOAD_MAX + 1), -1);
    free(big);
    assert_int_equal(journal_pending(j), before);
    journal_close(j);
}

static void test_damaged_segment_is_copied_to_quarantine(void **state)
{
    struct spool *sp = *state;
    struct seen s = {0};
    struct journal *j = open_journal(sp, &s);
    assert_int_equal(journal_add(j, JOURNAL_MSG, "one", 3), 0);
    assert_int_equal(journal_add(j, JOURNAL_DONE, "two", 3), 0);
    assert_int_equal(journal_add(j, JOURNAL_GONE, "three", 5), 0);
    assert_int_equal(journal_write(j), 0);
    journal_close(j);

    /* Flip a payload octet of the middle record. */
    char path[256];
    segment_file(sp, 1, path, sizeof(path));
    struct buf b;
    buf_init(&b, 1u << 20);
    read_whole(path, &b);
    b.data[SEGMENT_HEADER_SIZE + JOURNAL_RECORD_OVERHEAD + 3 + 8 + 1] ^= 0x20;
    write_whole(path, b.data, b.len);

    j = open_journal(sp, &s);
    assert_int_equal(s.ndamaged, 1);
    assert_string_equal(s.segment, "0000000000000001.journal");
    assert_int_equal(s.bad_octets, JOURNAL_RECORD_OVERHEAD + 3);
    assert_int_equal(s.nrec, 2);
    assert_seen(&s, 0, JOURNAL_MSG, "one");
    assert_seen(&s, 1, JOURNAL_GONE, "three");

    /* The copy is in quarantine/, named after the segment, and is the damaged file. */
    char prefix[256];
    snprintf(prefix, sizeof(prefix), "%s/0000000000000001.journal.", sp->quarantine);
    assert_int_equal(strncmp(s.quarantine, prefix, strlen(prefix)), 0);
    char names[4][NAME_SIZE];
    assert_int_equal(list_dir(sp->quarantine, names, 4), 1);
    struct buf copy;
    buf_init(&copy, 1u << 20);
    read_whole(s.quarantine, &copy);
    assert_int_equal(copy.len, b.len);
    assert_memory_equal(copy.data, b.data, b.len);
    buf_free(&copy);
    buf_free(&b);
    journal_close(j);
    seen_reset(&s);
}

static void test_torn_tail_on_disk_is_ignored_not_quarantined(void **state)
{
    struct spool *sp = *state;
    struct seen s = {0};
    struct journal *j = open_journal(sp, &s);
    assert_int_equal(journal_add(j, JOURNAL_MSG, "kept", 4), 0);
    assert_int_equal(journal_write(j), 0);
    journal_close(j);

    char path[256];
    segment_file(sp, 1, path, sizeof(path));
    struct buf b;
    buf_init(&b, 1u << 20);
    read_whole(path, &b);
    add_record(&b, JOURNAL_DONE, "cut short by a crash");
    write_whole(path, b.data, b.len - 7);
    buf_free(&b);

    j = open_journal(sp, &s);
    assert_int_equal(s.ndamaged, 0);
    assert_int_equal(s.nrec, 1);
    assert_seen(&s, 0, JOURNAL_MSG, "kept");
    char names[4][NAME_SIZE];
    assert_int_equal(list_dir(sp->quarantine, names, 4), 0);
    journal_close(j);
    seen_reset(&s);
}

static void test_damage_is_reported_even_when_the_quarantine_copy_fails(void **state)
{
    struct spool *sp = *state;
    struct buf b;
    buf_init(&b, 1u << 20);
    add_header(&b, 1);
    add_bytes(&b, "junk", 4);
    add_record(&b, JOURNAL_MSG, "good");
    char path[256];
    segment_file(sp, 1, path, sizeof(path));
    write_whole(path, b.data, b.len);
    buf_free(&b);
    assert_int_equal(rmdir(sp->quarantine), 0);

    struct seen s = {0};
    struct journal *j = open_journal(sp, &s);
    assert_int_equal(s.ndamaged, 1);
    assert_int_equal(s.bad_octets, 4);
    assert_non_null(strstr(s.quarantine, "copy failed"));
    assert_int_equal(s.nrec, 1);
    journal_close(j);
    seen_reset(&s);
}

static void test_open_without_a_journal_directory_fails_with_a_reason(void **state)
{
    struct spool *sp = *state;
    assert_int_equal(rmdir(sp->journal), 0);
    struct seen s = {0};
    struct journal_reader r = reader_for(&s);
    char err[512] = "";
    assert_null(journal_open(sp->dir, &r, err, sizeof(err)));
    assert_non_null(strstr(err, sp->journal));
}

static void test_segments_are_read_in_sequence_order_and_strangers_ignored(void **state)
{
    struct spool *sp = *state;
    static const uint64_t seqs[] = {0x10, 0x2, 0xa};
    for (size_t i = 0; i < 3; i++) {
        struct buf b;
        buf_init(&b, 1024);
        add_header(&b, seqs[i]);
        char payload[32];
        snprintf(payload, sizeof(payload), "segment %llx", (unsigned long long)seqs[i]);
        add_record(&b, JOURNAL_MSG, payload);
        char path[256];
        segment_file(sp, seqs[i], path, sizeof(path));
        write_whole(path, b.data, b.len);
        buf_free(&b);
    }
    /* Not segment names: read by nobody. */
    char path[256];
    snprintf(path, sizeof(path), "%s/0000000000000001.journal.tmp", sp->journal);
    write_whole(path, "x", 1);
    snprintf(path, sizeof(path), "%s/000000000000000g.journal", sp->journal);
    write_whole(path, "x", 1);
    snprintf(path, sizeof(path), "%s/notes.txt", sp->journal);
    write_whole(path, "x", 1);

    struct seen s = {0};
    struct journal *j = open_journal(sp, &s);
    assert_int_equal(s.nrec, 3);
    assert_seen(&s, 0, JOURNAL_MSG, "segment 2");
    assert_seen(&s, 1, JOURNAL_MSG, "segment a");
    assert_seen(&s, 2, JOURNAL_MSG, "segment 10");
    assert_int_equal(s.ndamaged, 0);
    journal_close(j);

    /* The new segment comes after the highest. */
    segment_file(sp, 0x11, path, sizeof(path));
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    seen_reset(&s);
}

/* A write the filesystem refuses half-way must not leave half a record for the next to follow. */
static void test_failed_write_leaves_no_half_record_behind(void **state)
{
    struct spool *sp = *state;
    struct seen s = {0};
    struct journal *j = open_journal(sp, &s);
    assert_int_equal(journal_add(j, JOURNAL_MSG, "before", 6), 0);
    assert_int_equal(journal_write(j), 0);
    uint64_t size = journal_size(j);

    /* RLIMIT_FSIZE stops the segment 20 octets on: the write below gets half-way, then EFBIG. */
    char payload[100];
    memset(payload, 'z', sizeof(payload));
    assert_int_equal(journal_add(j, JOURNAL_MSG, payload, sizeof(payload)), 0);
    struct rlimit old, small = {(rlim_t)size + 20, (rlim_t)size + 20};
    assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
    small.rlim_max = old.rlim_max;
    void (*was)(int) = signal(SIGXFSZ, SIG_IGN);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &small), 0);
    errno = 0;
    int r = journal_write(j);
    int e = errno;
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
    signal(SIGXFSZ, was);
    assert_int_equal(r, -1);
    assert_int_equal(e, EFBIG);
    assert_int_equal(journal_pending(j), 0);
    assert_true(journal_size(j) == size);

    char path[256];
    segment_file(sp, 1, path, sizeof(path));
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_true((uint64_t)st.st_size == size);

    assert_int_equal(journal_add(j, JOURNAL_GONE, "after", 5), 0);
    assert_int_equal(journal_write(j), 0);
    journal_close(j);

    j = open_journal(sp, &s);
    assert_int_equal(s.ndamaged, 0);
    assert_int_equal(s.nrec, 2);
    assert_seen(&s, 0, JOURNAL_MSG, "before");
    assert_seen(&s, 1, JOURNAL_GONE, "after");
    journal_close(j);
    seen_reset(&s);
}

/*
 * Names that strtoull() reads as a number but that the journal never
 * writes ("0x...", upper-case hex, a sign) belong to somebody else and
 * must be left alone like any other stranger.
 */
static void test_names_the_journal_never_writes_are_strangers(void **state)
{
    struct spool *sp = *state;
    static const char *const strangers[] = {
        "000000000000000A.journal",
        "0x00000000000001.journal",
        "+000000000000001.journal",
        " 000000000000001.journal",
    };
    for (size_t i = 0; i < sizeof(strangers) / sizeof(strangers[0]); i++) {
        char path[256];
        snprintf(path, sizeof(path), "%s/%s", sp->journal, strangers[i]);
        write_whole(path, "x", 1);
    }
    struct buf b;
    buf_init(&b, 1024);
    add_header(&b, 1);
    add_record(&b, JOURNAL_MSG, "the one real record");
    char path[256];
    segment_file(sp, 1, path, sizeof(path));
    write_whole(path, b.data, b.len);
    buf_free(&b);

    struct seen s = {0};
    struct journal_reader r = reader_for(&s);
    char err[512] = "";
    struct journal *j = journal_open(sp->dir, &r, err, sizeof(err));
    if (j == NULL)
        print_message("journal_open: %s\n", err);
    assert_non_null(j);
    assert_int_equal(s.nrec, 1);
    assert_seen(&s, 0, JOURNAL_MSG, "the one real record");
    journal_close(j);
    seen_reset(&s);
}

static void test_rotate_then_drop_old_leaves_one_segment(void **state)
{
    struct spool *sp = *state;
    struct seen s = {0};
    struct journal *j = open_journal(sp, &s);
    assert_int_equal(journal_add(j, JOURNAL_MSG, "old", 3), 0);
    assert_int_equal(journal_write(j), 0);
    assert_int_equal(journal_rotate(j), 0);
    assert_int_equal(journal_size(j), SEGMENT_HEADER_SIZE);
    assert_int_equal(journal_add(j, JOURNAL_MSG, "new", 3), 0);
    assert_int_equal(journal_write(j), 0);

    char names[8][NAME_SIZE];
    assert_int_equal(list_dir(sp->journal, names, 8), 2);
    journal_drop_old(j);
    assert_int_equal(list_dir(sp->journal, names, 8), 1);
    assert_string_equal(names[0], "0000000000000002.journal");
    journal_close(j);

    j = open_journal(sp, &s);
    assert_int_equal(s.nrec, 1);
    assert_seen(&s, 0, JOURNAL_MSG, "new");
    journal_close(j);
    seen_reset(&s);
}

static void test_segments_from_earlier_runs_are_dropped_too(void **state)
{
    struct spool *sp = *state;
    struct seen s = {0};
    for (int run = 0; run < 3; run++) {
        struct journal *j = open_journal(sp, &s);
        assert_int_equal(journal_add(j, JOURNAL_MSG, "x", 1), 0);
        assert_int_equal(journal_write(j), 0);
        journal_close(j);
    }
    char names[8][NAME_SIZE];
    assert_int_equal(list_dir(sp->journal, names, 8), 3);
    seen_reset(&s);

    struct journal *j = open_journal(sp, &s);
    assert_int_equal(s.nrec, 3);
    assert_int_equal(list_dir(sp->journal, names, 8), 4);
    journal_drop_old(j);
    assert_int_equal(list_dir(sp->journal, names, 8), 1);
    assert_string_equal(names[0], "0000000000000004.journal");
    /* A second drop has nothing left to do. */
    journal_drop_old(j);
    assert_int_equal(list_dir(sp->journal, names, 8), 1);
    journal_close(j);
    seen_reset(&s);
}

int main(void)
{
    log_open("test_journal", true, LOG_LEVEL_ERR);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_crc32c_matches_the_known_answers),
        cmocka_unit_test(test_crc32c_can_be_continued_piece_by_piece),
        cmocka_unit_test(test_good_records_are_delivered_in_order),
        cmocka_unit_test(test_header_alone_is_an_empty_segment),
        cmocka_unit_test(test_file_shorter_than_a_header_is_a_torn_tail),
        cmocka_unit_test(test_torn_tail_of_every_length_is_ignored_not_quarantined),
        cmocka_unit_test(test_bad_crc_on_the_last_record_is_a_torn_tail),
        cmocka_unit_test(test_garbage_after_the_header_is_a_torn_tail),
        cmocka_unit_test(test_garbage_without_a_header_is_a_torn_tail),
        cmocka_unit_test(test_damage_in_the_middle_is_counted_and_later_records_still_delivered),
        cmocka_unit_test(test_bad_crc_in_the_middle_is_damage_of_exactly_that_record),
        cmocka_unit_test(test_two_damaged_places_are_added_up),
        cmocka_unit_test(test_damage_and_a_torn_tail_in_one_segment_are_told_apart),
        cmocka_unit_test(test_unknown_type_or_nonzero_reserved_octet_makes_a_record_bad),
        cmocka_unit_test(test_length_past_the_end_is_a_torn_tail),
        cmocka_unit_test(test_damaged_header_is_damage_before_the_first_record),
        cmocka_unit_test(test_records_without_a_segment_header_are_still_read),
        cmocka_unit_test_setup_teardown(test_new_journal_starts_a_segment_with_a_header,
                                        spool_setup, spool_teardown),
        cmocka_unit_test_setup_teardown(test_records_written_are_read_back_in_order_on_reopen,
                                        spool_setup, spool_teardown),
        cmocka_unit_test_setup_teardown(test_envelope_record_decodes_to_the_envelope_written,
                                        spool_setup, spool_teardown),
        cmocka_unit_test_setup_teardown(test_oversize_record_is_refused_and_the_batch_left_alone,
                                        spool_setup, spool_teardown),
        cmocka_unit_test_setup_teardown(test_damaged_segment_is_copied_to_quarantine, spool_setup,
                                        spool_teardown),
        cmocka_unit_test_setup_teardown(test_torn_tail_on_disk_is_ignored_not_quarantined,
                                        spool_setup, spool_teardown),
        cmocka_unit_test_setup_teardown(test_damage_is_reported_even_when_the_quarantine_copy_fails,
                                        spool_setup, spool_teardown),
        cmocka_unit_test_setup_teardown(test_open_without_a_journal_directory_fails_with_a_reason,
                                        spool_setup, spool_teardown),
        cmocka_unit_test_setup_teardown(
            test_segments_are_read_in_sequence_order_and_strangers_ignored, spool_setup,
            spool_teardown),
        cmocka_unit_test_setup_teardown(test_failed_write_leaves_no_half_record_behind, spool_setup,
                                        spool_teardown),
        cmocka_unit_test_setup_teardown(test_names_the_journal_never_writes_are_strangers,
                                        spool_setup, spool_teardown),
        cmocka_unit_test_setup_teardown(test_rotate_then_drop_old_leaves_one_segment, spool_setup,
                                        spool_teardown),
        cmocka_unit_test_setup_teardown(test_segments_from_earlier_runs_are_dropped_too,
                                        spool_setup, spool_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
