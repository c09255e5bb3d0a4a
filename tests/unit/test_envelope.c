/*
 * test_envelope.c - unit tests for src/queue/envelope.c: the typed,
 * length-prefixed encoding of what the queue knows about a message.
 *
 * Two kinds of test.  Round trips build a struct envelope, encode it and
 * decode it again, and check that every field comes back byte for byte,
 * including addresses with CR, LF and quotes in them, which must stay
 * inside their field (OpenSMTPD's CVE-2020-8794 was a newline that started
 * a new line, and so a new field, in a text envelope).  Refusals build
 * encodings by hand, field by field, with the helpers below, and check
 * that the decoder says no to everything a damaged file could hold.
 *
 * Every decode reads from a heap copy of exactly the encoded size, so
 * AddressSanitizer catches a read past the end.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "queue/envelope.h"

/* The field tags of envelope.c, spelled out here as a reader of the file would see them. */
enum {
    TAG_ID = 1,
    TAG_SENDER = 2,
    TAG_CLIENT = 3,
    TAG_HELO = 4,
    TAG_ENVID = 5,
    TAG_ARRIVAL = 6,
    TAG_SIZE = 7,
    TAG_TRACE = 8,
    TAG_BODY = 9,
    TAG_RET = 10,
    TAG_UTF8 = 11,
    TAG_RCPT = 32,
    TAG_RCPT_ORIG = 33,
    TAG_RCPT_ORCPT = 34,
    TAG_RCPT_NOTIFY = 35,
    TAG_RCPT_ROUTE = 36,
    TAG_RCPT_MAILDIR = 37,
    TAG_RCPT_STATE = 38,
};

#define TEST_ID    "0NDUQ6J8AMH200"
#define OUT_LIMIT  (64u * 1024 * 1024)
#define FIELD_HEAD 5

/* ---- building envelopes ---------------------------------------------------- */

/* copy_string - a heap copy of s (envelope_free() releases it) */
static char *copy_string(const char *s)
{
    char *p = strdup(s);
    assert_non_null(p);
    return p;
}

/* dup_bytes - a heap copy of s[0..n) as a C string */
static char *dup_bytes(const char *s, size_t n)
{
    char *p = malloc(n + 1);
    assert_non_null(p);
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

/* fill_standard - a message from alice to one local and one remote recipient */
static void fill_standard(struct envelope *e)
{
    memset(e, 0, sizeof(*e));
    memcpy(e->id, TEST_ID, QUEUE_ID_LEN + 1);
    e->sender = copy_string("alice@example.net");
    e->client = copy_string("[192.0.2.7]");
    e->helo = copy_string("mail.example.net");
    e->envid = copy_string("QQ314159");
    e->arrival = 1795942550;
    e->size = 1234;
    e->trace_len = 40;
    e->body = 2;
    e->ret = 1;
    e->smtputf8 = true;

    struct envelope_rcpt *r = envelope_add_rcpt(e);
    assert_non_null(r);
    r->address = copy_string("bob@example.org");
    r->orig = copy_string("postmaster@example.org");
    r->orcpt = copy_string("rfc822;postmaster@example.org");
    r->notify = 7;
    r->route = ENVELOPE_ROUTE_MAILDIR;
    r->maildir = copy_string("/var/mail/example.org/bob/Maildir");
    r->state = ENVELOPE_DELIVERED;

    r = envelope_add_rcpt(e);
    assert_non_null(r);
    r->address = copy_string("carol@example.com");
    r->notify = 0;
    r->route = ENVELOPE_ROUTE_RELAY;
    r->state = ENVELOPE_PENDING;
}

/* ---- encoding and decoding --------------------------------------------------- */

/* encode - e encoded into a fresh buffer (buf_free() it) */
static struct buf encode(const struct envelope *e)
{
    struct buf out;
    buf_init(&out, OUT_LIMIT);
    assert_int_equal(envelope_encode(e, &out), 0);
    return out;
}

/* decode - decode p[0..n) from an exact-size heap copy into a zeroed *e */
static int decode(const uint8_t *p, size_t n, struct envelope *e, char *err, size_t errsize)
{
    uint8_t *copy = malloc(n ? n : 1);
    assert_non_null(copy);
    if (n > 0)
        memcpy(copy, p, n);
    memset(e, 0, sizeof(*e));
    err[0] = '\0';
    int r = envelope_decode(copy, n, e, err, errsize);
    free(copy);
    return r;
}

/* round_trip - encode e and decode it into *back, which must succeed */
static void round_trip(const struct envelope *e, struct envelope *back)
{
    struct buf out = encode(e);
    char err[256];
    int r = decode(out.data, out.len, back, err, sizeof(err));
    if (r != 0)
        print_error("decode failed: %s\n", err);
    assert_int_equal(r, 0);
    buf_free(&out);
}

/* assert_same_string - both NULL, or equal */
static void assert_same_string(const char *a, const char *b)
{
    if (a == NULL || b == NULL) {
        assert_null(a);
        assert_null(b);
        return;
    }
    assert_int_equal(strlen(a), strlen(b));
    assert_memory_equal(a, b, strlen(a));
}

/* assert_same_envelope - every field of a equals the one in b */
static void assert_same_envelope(const struct envelope *a, const struct envelope *b)
{
    assert_string_equal(a->id, b->id);
    assert_same_string(a->sender, b->sender);
    assert_same_string(a->client, b->client);
    assert_same_string(a->helo, b->helo);
    assert_same_string(a->envid, b->envid);
    assert_true(a->arrival == b->arrival);
    assert_true(a->size == b->size);
    assert_int_equal(a->trace_len, b->trace_len);
    assert_int_equal(a->body, b->body);
    assert_int_equal(a->ret, b->ret);
    assert_int_equal(a->smtputf8, b->smtputf8);
    assert_int_equal(a->nrcpt, b->nrcpt);
    for (size_t i = 0; i < a->nrcpt; i++) {
        const struct envelope_rcpt *x = &a->rcpt[i], *y = &b->rcpt[i];
        assert_same_string(x->address, y->address);
        assert_same_string(x->orig, y->orig);
        assert_same_string(x->orcpt, y->orcpt);
        assert_int_equal(x->notify, y->notify);
        assert_int_equal(x->route, y->route);
        assert_same_string(x->maildir, y->maildir);
        assert_int_equal(x->state, y->state);
    }
}

/* ---- building encodings by hand ------------------------------------------------ */

/* put_lying - one field: tag, a length that may lie, then n octets of value */
static void put_lying(struct buf *b, uint8_t tag, uint32_t claimed, const void *p, size_t n)
{
    uint8_t head[FIELD_HEAD] = {tag, (uint8_t)claimed, (uint8_t)(claimed >> 8),
                                (uint8_t)(claimed >> 16), (uint8_t)(claimed >> 24)};
    assert_int_equal(buf_append(b, head, sizeof(head)), 0);
    assert_int_equal(buf_append(b, p, n), 0);
}

/* put - one honest field */
static void put(struct buf *b, uint8_t tag, const void *p, size_t n)
{
    put_lying(b, tag, (uint32_t)n, p, n);
}

/* put_str - a string field */
static void put_str(struct buf *b, uint8_t tag, const char *s)
{
    put(b, tag, s, strlen(s));
}

/* put_u64 - an 8-octet little-endian integer field */
static void put_u64(struct buf *b, uint8_t tag, uint64_t v)
{
    uint8_t o[8];
    for (int i = 0; i < 8; i++)
        o[i] = (uint8_t)(v >> (8 * i));
    put(b, tag, o, sizeof(o));
}

/* put_u8 - a one-octet field */
static void put_u8(struct buf *b, uint8_t tag, uint8_t v)
{
    put(b, tag, &v, 1);
}

/* Which parts of the minimal message to leave out. */
enum {
    OMIT_ID = 1 << 0,
    OMIT_SENDER = 1 << 1,
    OMIT_CLIENT = 1 << 2,
    OMIT_HELO = 1 << 3,
    OMIT_SIZE = 1 << 4,
    OMIT_RCPT = 1 << 5,
};

/* put_message_fields - the required message fields (size 100), less those in omit */
static void put_message_fields(struct buf *b, unsigned omit)
{
    if (!(omit & OMIT_ID))
        put(b, TAG_ID, TEST_ID, QUEUE_ID_LEN);
    if (!(omit & OMIT_SENDER))
        put_str(b, TAG_SENDER, "alice@example.net");
    if (!(omit & OMIT_CLIENT))
        put_str(b, TAG_CLIENT, "[192.0.2.7]");
    if (!(omit & OMIT_HELO))
        put_str(b, TAG_HELO, "mail.example.net");
    if (!(omit & OMIT_SIZE))
        put_u64(b, TAG_SIZE, 100);
}

/* put_relay_rcpt - a recipient with the fields it needs */
static void put_relay_rcpt(struct buf *b, const char *address)
{
    put_str(b, TAG_RCPT, address);
    put_u8(b, TAG_RCPT_ROUTE, ENVELOPE_ROUTE_RELAY);
}

/* minimal - a fresh buffer holding the smallest envelope the decoder accepts, less omit */
static struct buf minimal(unsigned omit)
{
    struct buf b;
    buf_init(&b, OUT_LIMIT);
    put_message_fields(&b, omit);
    if (!(omit & OMIT_RCPT))
        put_relay_rcpt(&b, "bob@example.org");
    return b;
}

/* expect_refused - decoding b fails with a reason, and envelope_free() cleans up */
static void expect_refused(struct buf *b)
{
    struct envelope e;
    char err[256];
    assert_int_equal(decode(b->data, b->len, &e, err, sizeof(err)), -1);
    assert_true(err[0] != '\0');
    envelope_free(&e);
    buf_free(b);
}

/* expect_accepted - decoding b succeeds; the envelope is returned in *e (envelope_free() it) */
static void expect_accepted(struct buf *b, struct envelope *e)
{
    char err[256];
    int r = decode(b->data, b->len, e, err, sizeof(err));
    if (r != 0)
        print_error("decode failed: %s\n", err);
    assert_int_equal(r, 0);
    buf_free(b);
}

/* ---- round trips ------------------------------------------------------------- */

static void test_round_trip_keeps_every_field(void **state)
{
    (void)state;
    struct envelope e, back;
    fill_standard(&e);
    round_trip(&e, &back);
    assert_same_envelope(&e, &back);
    assert_string_equal(back.rcpt[0].maildir, "/var/mail/example.org/bob/Maildir");
    assert_int_equal(back.rcpt[1].route, ENVELOPE_ROUTE_RELAY);
    envelope_free(&e);
    envelope_free(&back);
}

static void test_absent_optional_fields_come_back_absent(void **state)
{
    (void)state;
    struct envelope e, back;
    fill_standard(&e);
    free(e.envid);
    e.envid = NULL;
    free(e.rcpt[0].orig);
    e.rcpt[0].orig = NULL;
    free(e.rcpt[0].orcpt);
    e.rcpt[0].orcpt = NULL;
    round_trip(&e, &back);
    assert_same_envelope(&e, &back);
    assert_null(back.envid);
    assert_null(back.rcpt[0].orig);
    assert_null(back.rcpt[0].orcpt);
    assert_null(back.rcpt[1].maildir);
    envelope_free(&e);
    envelope_free(&back);
}

static void test_null_sender_and_empty_helo_round_trip_as_empty_strings(void **state)
{
    (void)state;
    struct envelope e, back;
    fill_standard(&e);
    e.sender[0] = '\0';
    e.helo[0] = '\0';
    e.envid[0] = '\0';
    round_trip(&e, &back);
    assert_string_equal(back.sender, "");
    assert_string_equal(back.helo, "");
    assert_non_null(back.envid);
    assert_string_equal(back.envid, "");
    envelope_free(&e);
    envelope_free(&back);
}

static void test_extreme_integers_round_trip(void **state)
{
    (void)state;
    struct envelope e, back;
    fill_standard(&e);
    e.arrival = INT64_MIN;
    e.size = UINT64_MAX;
    e.trace_len = UINT32_MAX;
    e.body = 3;
    e.ret = 2;
    e.smtputf8 = false;
    e.rcpt[0].notify = 15;
    e.rcpt[1].state = ENVELOPE_FAILED;
    round_trip(&e, &back);
    assert_same_envelope(&e, &back);

    envelope_free(&back);
    e.arrival = -1;
    e.size = 0;
    e.trace_len = 0;
    round_trip(&e, &back);
    assert_same_envelope(&e, &back);
    envelope_free(&e);
    envelope_free(&back);
}

static void test_many_recipients_round_trip_in_order(void **state)
{
    (void)state;
    struct envelope e, back;
    fill_standard(&e);
    for (size_t i = 0; i < 5000; i++) {
        struct envelope_rcpt *r = envelope_add_rcpt(&e);
        assert_non_null(r);
        char a[64];
        snprintf(a, sizeof(a), "user%zu@example.org", i);
        r->address = copy_string(a);
        r->notify = (unsigned)(i % 16);
        r->state = (enum envelope_state)(i % 3);
        if (i % 2) {
            r->route = ENVELOPE_ROUTE_MAILDIR;
            snprintf(a, sizeof(a), "/var/mail/%zu/Maildir", i);
            r->maildir = copy_string(a);
        } else {
            r->route = ENVELOPE_ROUTE_RELAY;
        }
    }
    round_trip(&e, &back);
    assert_int_equal(back.nrcpt, 5002);
    assert_same_envelope(&e, &back);
    assert_string_equal(back.rcpt[5001].address, "user4999@example.org");
    envelope_free(&e);
    envelope_free(&back);
}

/*
 * CVE-2020-8794 class: an address with CR, LF, quotes and text that looks
 * like another field must come back as exactly that address, and must not
 * add a recipient, change the sender or set any other field.
 */
static void test_newlines_and_quotes_in_addresses_survive_and_create_no_field(void **state)
{
    (void)state;
    static const char evil_rcpt[] = "\"x\nrcpt: root@localhost\r\n\"@example.org";
    static const char evil_sender[] = "a\r\nsender: root\n\"\\\"\r@example.net";
    static const char evil_helo[] = "helo\nid: AAAAAAAAAAAAAA\r\nsize: 0";
    /* Octets that spell the start of a RCPT field and a ROUTE field (no NUL can appear). */
    static const char fake_field[] = "\x20\x07\x01\x01\x01root@\x24\x01\x01\x01\x01\x02";
    struct envelope e, back;

    fill_standard(&e);
    free(e.sender);
    e.sender = copy_string(evil_sender);
    free(e.helo);
    e.helo = copy_string(evil_helo);
    free(e.rcpt[0].address);
    e.rcpt[0].address = copy_string(evil_rcpt);
    free(e.rcpt[0].orig);
    e.rcpt[0].orig = dup_bytes(fake_field, sizeof(fake_field) - 1);
    free(e.rcpt[1].address);
    e.rcpt[1].address = copy_string("\n\n\r\r\"\"");

    round_trip(&e, &back);
    assert_int_equal(back.nrcpt, 2);
    assert_memory_equal(back.sender, evil_sender, sizeof(evil_sender));
    assert_memory_equal(back.helo, evil_helo, sizeof(evil_helo));
    assert_memory_equal(back.rcpt[0].address, evil_rcpt, sizeof(evil_rcpt));
    assert_memory_equal(back.rcpt[0].orig, fake_field, sizeof(fake_field));
    assert_string_equal(back.rcpt[1].address, "\n\n\r\r\"\"");
    assert_string_equal(back.id, TEST_ID);
    assert_true(back.size == 1234);
    assert_same_envelope(&e, &back);
    envelope_free(&e);
    envelope_free(&back);
}

static void test_encoding_that_does_not_fit_leaves_the_buffer_unchanged(void **state)
{
    (void)state;
    struct envelope e;
    fill_standard(&e);
    struct buf full = encode(&e);
    size_t need = full.len;
    buf_free(&full);

    struct buf out;
    buf_init(&out, need + 3 - 1);
    assert_int_equal(buf_append(&out, "abc", 3), 0);
    assert_int_equal(envelope_encode(&e, &out), -1);
    assert_int_equal(out.len, 3);
    assert_memory_equal(out.data, "abc", 3);

    buf_free(&out);
    buf_init(&out, need + 3);
    assert_int_equal(buf_append(&out, "abc", 3), 0);
    assert_int_equal(envelope_encode(&e, &out), 0);
    assert_int_equal(out.len, need + 3);
    buf_free(&out);
    envelope_free(&e);
}

static void test_minimal_hand_built_envelope_is_accepted_with_defaults(void **state)
{
    (void)state;
    struct buf b = minimal(0);
    struct envelope e;
    expect_accepted(&b, &e);
    assert_string_equal(e.id, TEST_ID);
    assert_string_equal(e.sender, "alice@example.net");
    assert_null(e.envid);
    assert_true(e.arrival == 0);
    assert_true(e.size == 100);
    assert_int_equal(e.trace_len, 0);
    assert_int_equal(e.nrcpt, 1);
    assert_int_equal(e.rcpt[0].state, ENVELOPE_PENDING);
    assert_null(e.rcpt[0].maildir);
    envelope_free(&e);
}

static void test_fields_may_come_in_any_order_before_the_recipients(void **state)
{
    (void)state;
    struct buf b;
    buf_init(&b, OUT_LIMIT);
    put_u64(&b, TAG_SIZE, 100);
    put_str(&b, TAG_HELO, "h");
    put_relay_rcpt(&b, "bob@example.org");
    put_str(&b, TAG_CLIENT, "c");
    put_str(&b, TAG_SENDER, "s");
    put(&b, TAG_ID, TEST_ID, QUEUE_ID_LEN);
    struct envelope e;
    expect_accepted(&b, &e);
    assert_string_equal(e.sender, "s");
    assert_int_equal(e.nrcpt, 1);
    envelope_free(&e);
}

/* ---- refusals: framing ----------------------------------------------------------- */

static void test_empty_input_is_refused(void **state)
{
    (void)state;
    struct buf b;
    buf_init(&b, OUT_LIMIT);
    expect_refused(&b);
}

static void test_truncated_field_header_is_refused(void **state)
{
    (void)state;
    for (size_t extra = 1; extra < FIELD_HEAD; extra++) {
        struct buf b = minimal(0);
        static const uint8_t partial[FIELD_HEAD - 1] = {TAG_RCPT, 3, 0, 0};
        assert_int_equal(buf_append(&b, partial, extra), 0);
        expect_refused(&b);
    }
}

static void test_length_past_the_end_is_refused(void **state)
{
    (void)state;
    struct buf b = minimal(0);
    put_lying(&b, TAG_RCPT, 100, "abc", 3);
    expect_refused(&b);

    b = minimal(0);
    put_lying(&b, TAG_RCPT, UINT32_MAX, "abc", 3);
    expect_refused(&b);

    b = minimal(0);
    put_lying(&b, TAG_RCPT, 4, "abc", 3);
    expect_refused(&b);
}

/* Every cut of a real encoding inside a field (not at a boundary) must be refused. */
static void test_every_cut_inside_a_field_is_refused(void **state)
{
    (void)state;
    struct envelope e;
    fill_standard(&e);
    struct buf out = encode(&e);
    envelope_free(&e);

    size_t boundary = 0;
    for (size_t cut = 1; cut < out.len; cut++) {
        while (boundary < cut) {
            size_t len = (size_t)out.data[boundary + 1] | (size_t)out.data[boundary + 2] << 8 |
                         (size_t)out.data[boundary + 3] << 16 |
                         (size_t)out.data[boundary + 4] << 24;
            boundary += FIELD_HEAD + len;
        }
        if (cut == boundary)
            continue;
        struct envelope back;
        char err[256];
        if (decode(out.data, cut, &back, err, sizeof(err)) != -1)
            fail_msg("a cut at %zu of %zu octets was accepted", cut, out.len);
        envelope_free(&back);
    }
    assert_int_equal(boundary, out.len);
    buf_free(&out);
}

static void test_unknown_tag_is_refused(void **state)
{
    (void)state;
    static const uint8_t unknown[] = {0, 12, 31, 39, 200, 255};
    for (size_t i = 0; i < sizeof(unknown); i++) {
        /* After a recipient, so recipient-range tags are judged as tags. */
        struct buf b = minimal(0);
        put_u8(&b, unknown[i], 0);
        expect_refused(&b);

        b = minimal(0);
        put(&b, unknown[i], "", 0);
        expect_refused(&b);
    }
}

/* ---- refusals: repeated fields ---------------------------------------------------- */

static void test_repeated_id_is_refused(void **state)
{
    (void)state;
    struct buf b = minimal(0);
    put(&b, TAG_ID, "AAAAAAAAAAAAAA", QUEUE_ID_LEN);
    expect_refused(&b);
}

static void test_repeated_string_fields_are_refused(void **state)
{
    (void)state;
    static const uint8_t message_tags[] = {TAG_SENDER, TAG_CLIENT, TAG_HELO};
    for (size_t i = 0; i < sizeof(message_tags); i++) {
        struct buf b = minimal(0);
        put_str(&b, message_tags[i], "again");
        expect_refused(&b);
    }

    struct buf b = minimal(0);
    put_str(&b, TAG_ENVID, "one");
    put_str(&b, TAG_ENVID, "two");
    expect_refused(&b);

    static const uint8_t rcpt_tags[] = {TAG_RCPT_ORIG, TAG_RCPT_ORCPT, TAG_RCPT_MAILDIR};
    for (size_t i = 0; i < sizeof(rcpt_tags); i++) {
        b = minimal(0);
        put_str(&b, rcpt_tags[i], "one");
        put_str(&b, rcpt_tags[i], "two");
        expect_refused(&b);
    }
}

static void test_same_optional_field_on_two_recipients_is_accepted(void **state)
{
    (void)state;
    struct buf b = minimal(OMIT_RCPT);
    put_relay_rcpt(&b, "a@example.org");
    put_str(&b, TAG_RCPT_ORIG, "one");
    put_relay_rcpt(&b, "b@example.org");
    put_str(&b, TAG_RCPT_ORIG, "two");
    struct envelope e;
    expect_accepted(&b, &e);
    assert_int_equal(e.nrcpt, 2);
    assert_string_equal(e.rcpt[0].orig, "one");
    assert_string_equal(e.rcpt[1].orig, "two");
    envelope_free(&e);
}

/*
 * A repeated integer field is as much a sign of a damaged file as a
 * repeated string, and "last one wins" could turn a DELIVERED recipient
 * back into a PENDING one or change the size after the trace check.
 */
static void test_repeated_integer_fields_are_refused(void **state)
{
    (void)state;
    static const struct {
        uint8_t tag;
        bool wide;
        uint8_t value;
    } repeated[] = {
        {TAG_ARRIVAL, true, 5},      {TAG_SIZE, true, 50},
        {TAG_TRACE, true, 1},        {TAG_BODY, false, 1},
        {TAG_RET, false, 1},         {TAG_UTF8, false, 1},
        {TAG_RCPT_NOTIFY, false, 1}, {TAG_RCPT_ROUTE, false, ENVELOPE_ROUTE_RELAY},
        {TAG_RCPT_STATE, false, 1},
    };
    size_t accepted = 0;
    for (size_t i = 0; i < sizeof(repeated) / sizeof(repeated[0]); i++) {
        struct buf b = minimal(0);
        for (int twice = 0; twice < 2; twice++) {
            if (repeated[i].wide)
                put_u64(&b, repeated[i].tag, repeated[i].value);
            else
                put_u8(&b, repeated[i].tag, repeated[i].value);
        }
        struct envelope e;
        char err[256];
        if (decode(b.data, b.len, &e, err, sizeof(err)) == 0) {
            print_message("repeated field %u was accepted\n", repeated[i].tag);
            accepted++;
        }
        envelope_free(&e);
        buf_free(&b);
    }
    /* A second STATE must not undo a delivery, nor any field change another. */
    assert_int_equal(accepted, 0);
}

/* ---- refusals: bad values ----------------------------------------------------------- */

static void test_nul_in_a_string_is_refused(void **state)
{
    (void)state;
    static const uint8_t tags[] = {TAG_SENDER, TAG_CLIENT, TAG_HELO, TAG_ENVID};
    for (size_t i = 0; i < sizeof(tags); i++) {
        struct buf b;
        buf_init(&b, OUT_LIMIT);
        if (tags[i] != TAG_ENVID)
            put(&b, tags[i], "ab\0cd", 5);
        put_message_fields(&b, tags[i] == TAG_SENDER   ? OMIT_SENDER
                               : tags[i] == TAG_CLIENT ? OMIT_CLIENT
                               : tags[i] == TAG_HELO   ? OMIT_HELO
                                                       : 0);
        if (tags[i] == TAG_ENVID)
            put(&b, TAG_ENVID, "\0", 1);
        put_relay_rcpt(&b, "bob@example.org");
        expect_refused(&b);
    }

    struct buf b = minimal(OMIT_RCPT);
    put(&b, TAG_RCPT, "bob@example.org\0root", 20);
    put_u8(&b, TAG_RCPT_ROUTE, ENVELOPE_ROUTE_RELAY);
    expect_refused(&b);

    static const uint8_t rcpt_tags[] = {TAG_RCPT_ORIG, TAG_RCPT_ORCPT, TAG_RCPT_MAILDIR};
    for (size_t i = 0; i < sizeof(rcpt_tags); i++) {
        b = minimal(0);
        put(&b, rcpt_tags[i], "x\0", 2);
        expect_refused(&b);
    }

    b = minimal(OMIT_ID);
    put(&b, TAG_ID, "0NDUQ6J8\0MH200", QUEUE_ID_LEN);
    expect_refused(&b);
}

static void test_id_of_the_wrong_length_is_refused(void **state)
{
    (void)state;
    struct buf b = minimal(OMIT_ID);
    put(&b, TAG_ID, TEST_ID, QUEUE_ID_LEN - 1);
    expect_refused(&b);

    b = minimal(OMIT_ID);
    put(&b, TAG_ID, TEST_ID "X", QUEUE_ID_LEN + 1);
    expect_refused(&b);
}

static void test_integer_fields_of_the_wrong_width_are_refused(void **state)
{
    (void)state;
    static const uint8_t wide[] = {TAG_ARRIVAL, TAG_SIZE, TAG_TRACE};
    for (size_t i = 0; i < sizeof(wide); i++) {
        struct buf b = minimal(wide[i] == TAG_SIZE ? OMIT_SIZE : 0);
        put(&b, wide[i], "\x01\x00\x00\x00", 4);
        expect_refused(&b);
        b = minimal(wide[i] == TAG_SIZE ? OMIT_SIZE : 0);
        put(&b, wide[i], "\x01\x00\x00\x00\x00\x00\x00\x00\x00", 9);
        expect_refused(&b);
    }
    static const uint8_t narrow[] = {TAG_BODY, TAG_RET, TAG_UTF8, TAG_RCPT_NOTIFY, TAG_RCPT_STATE};
    for (size_t i = 0; i < sizeof(narrow); i++) {
        struct buf b = minimal(0);
        put(&b, narrow[i], "", 0);
        expect_refused(&b);
        b = minimal(0);
        put(&b, narrow[i], "\x00\x00", 2);
        expect_refused(&b);
    }
}

static void test_out_of_range_small_values_are_refused(void **state)
{
    (void)state;
    static const struct {
        uint8_t tag;
        uint8_t first_bad;
    } limits[] = {
        {TAG_BODY, 4}, {TAG_RET, 3}, {TAG_UTF8, 2}, {TAG_RCPT_NOTIFY, 16}, {TAG_RCPT_STATE, 3},
    };
    for (size_t i = 0; i < sizeof(limits) / sizeof(limits[0]); i++) {
        struct buf b = minimal(0);
        put_u8(&b, limits[i].tag, (uint8_t)(limits[i].first_bad - 1));
        struct envelope e;
        expect_accepted(&b, &e);
        envelope_free(&e);

        b = minimal(0);
        put_u8(&b, limits[i].tag, limits[i].first_bad);
        expect_refused(&b);
        b = minimal(0);
        put_u8(&b, limits[i].tag, 255);
        expect_refused(&b);
    }
}

static void test_bad_route_is_refused(void **state)
{
    (void)state;
    static const uint8_t bad[] = {0, 3, 255};
    for (size_t i = 0; i < sizeof(bad); i++) {
        struct buf b = minimal(OMIT_RCPT);
        put_str(&b, TAG_RCPT, "bob@example.org");
        put_u8(&b, TAG_RCPT_ROUTE, bad[i]);
        expect_refused(&b);
    }
}

static void test_recipient_without_a_route_is_refused(void **state)
{
    (void)state;
    struct buf b = minimal(0);
    put_str(&b, TAG_RCPT, "carol@example.org");
    expect_refused(&b);
}

static void test_maildir_route_without_a_maildir_is_refused(void **state)
{
    (void)state;
    struct buf b = minimal(OMIT_RCPT);
    put_str(&b, TAG_RCPT, "bob@example.org");
    put_u8(&b, TAG_RCPT_ROUTE, ENVELOPE_ROUTE_MAILDIR);
    expect_refused(&b);

    b = minimal(OMIT_RCPT);
    put_str(&b, TAG_RCPT, "bob@example.org");
    put_u8(&b, TAG_RCPT_ROUTE, ENVELOPE_ROUTE_MAILDIR);
    put_str(&b, TAG_RCPT_MAILDIR, "/var/mail/bob");
    struct envelope e;
    expect_accepted(&b, &e);
    assert_string_equal(e.rcpt[0].maildir, "/var/mail/bob");
    envelope_free(&e);
}

/* A MAILDIR field belongs to the recipient before it, not to a later one. */
static void test_maildir_of_an_earlier_recipient_does_not_serve_a_later_one(void **state)
{
    (void)state;
    struct buf b = minimal(OMIT_RCPT);
    put_str(&b, TAG_RCPT, "a@example.org");
    put_u8(&b, TAG_RCPT_ROUTE, ENVELOPE_ROUTE_MAILDIR);
    put_str(&b, TAG_RCPT_MAILDIR, "/var/mail/a");
    put_str(&b, TAG_RCPT, "b@example.org");
    put_u8(&b, TAG_RCPT_ROUTE, ENVELOPE_ROUTE_MAILDIR);
    expect_refused(&b);
}

static void test_recipient_field_before_any_rcpt_is_refused(void **state)
{
    (void)state;
    static const uint8_t tags[] = {TAG_RCPT_ORIG,  TAG_RCPT_ORCPT,   TAG_RCPT_NOTIFY,
                                   TAG_RCPT_ROUTE, TAG_RCPT_MAILDIR, TAG_RCPT_STATE};
    for (size_t i = 0; i < sizeof(tags); i++) {
        struct buf b;
        buf_init(&b, OUT_LIMIT);
        put_message_fields(&b, 0);
        if (tags[i] == TAG_RCPT_ORIG || tags[i] == TAG_RCPT_ORCPT || tags[i] == TAG_RCPT_MAILDIR)
            put_str(&b, tags[i], "x");
        else
            put_u8(&b, tags[i], 1);
        put_relay_rcpt(&b, "bob@example.org");
        expect_refused(&b);
    }
}

static void test_missing_required_fields_are_refused(void **state)
{
    (void)state;
    static const unsigned omit[] = {OMIT_ID,   OMIT_SENDER, OMIT_CLIENT,
                                    OMIT_HELO, OMIT_SIZE,   OMIT_RCPT};
    for (size_t i = 0; i < sizeof(omit) / sizeof(omit[0]); i++) {
        struct buf b = minimal(omit[i]);
        expect_refused(&b);
    }
}

static void test_trace_longer_than_the_message_is_refused(void **state)
{
    (void)state;
    struct buf b = minimal(0);
    put_u64(&b, TAG_TRACE, 101);
    expect_refused(&b);

    b = minimal(0);
    put_u64(&b, TAG_TRACE, (uint64_t)UINT32_MAX + 1);
    expect_refused(&b);

    b = minimal(0);
    put_u64(&b, TAG_TRACE, 100);
    struct envelope e;
    expect_accepted(&b, &e);
    assert_int_equal(e.trace_len, 100);
    envelope_free(&e);
}

static void test_oversize_strings_are_refused(void **state)
{
    (void)state;
    char *s = malloc(ENVELOPE_STRING_MAX + 1);
    assert_non_null(s);
    memset(s, 'a', ENVELOPE_STRING_MAX + 1);

    /* The longest string allowed, in every string field at once. */
    struct buf b = minimal(OMIT_SENDER | OMIT_RCPT);
    put(&b, TAG_SENDER, s, ENVELOPE_STRING_MAX);
    put(&b, TAG_ENVID, s, ENVELOPE_STRING_MAX);
    put(&b, TAG_RCPT, s, ENVELOPE_STRING_MAX);
    put(&b, TAG_RCPT_ORIG, s, ENVELOPE_STRING_MAX);
    put(&b, TAG_RCPT_ORCPT, s, ENVELOPE_STRING_MAX);
    put_u8(&b, TAG_RCPT_ROUTE, ENVELOPE_ROUTE_MAILDIR);
    put(&b, TAG_RCPT_MAILDIR, s, ENVELOPE_STRING_MAX);
    struct envelope e;
    expect_accepted(&b, &e);
    assert_int_equal(strlen(e.rcpt[0].maildir), ENVELOPE_STRING_MAX);
    envelope_free(&e);

    /* One octet more, in each in turn. */
    static const uint8_t tags[] = {TAG_SENDER,    TAG_CLIENT,     TAG_HELO,        TAG_ENVID,
                                   TAG_RCPT_ORIG, TAG_RCPT_ORCPT, TAG_RCPT_MAILDIR};
    for (size_t i = 0; i < sizeof(tags); i++) {
        b = minimal(tags[i] == TAG_SENDER   ? OMIT_SENDER
                    : tags[i] == TAG_CLIENT ? OMIT_CLIENT
                    : tags[i] == TAG_HELO   ? OMIT_HELO
                                            : 0);
        put(&b, tags[i], s, ENVELOPE_STRING_MAX + 1);
        expect_refused(&b);
    }
    b = minimal(OMIT_RCPT);
    put(&b, TAG_RCPT, s, ENVELOPE_STRING_MAX + 1);
    put_u8(&b, TAG_RCPT_ROUTE, ENVELOPE_ROUTE_RELAY);
    expect_refused(&b);
    free(s);
}

static void test_more_recipients_than_the_limit_are_refused(void **state)
{
    (void)state;
    struct buf b = minimal(OMIT_RCPT);
    for (size_t i = 0; i < ENVELOPE_RCPT_MAX; i++)
        put_relay_rcpt(&b, "r");
    struct buf at_limit;
    buf_init(&at_limit, OUT_LIMIT);
    assert_int_equal(buf_append(&at_limit, b.data, b.len), 0);
    struct envelope e;
    expect_accepted(&at_limit, &e);
    assert_int_equal(e.nrcpt, ENVELOPE_RCPT_MAX);
    envelope_free(&e);

    put_relay_rcpt(&b, "r");
    expect_refused(&b);
}

/* ---- envelope_add_rcpt and envelope_pending ------------------------------------------ */

static void test_added_recipient_is_zeroed_and_counted(void **state)
{
    (void)state;
    struct envelope e;
    memset(&e, 0, sizeof(e));
    struct envelope_rcpt *r = envelope_add_rcpt(&e);
    assert_non_null(r);
    assert_int_equal(e.nrcpt, 1);
    assert_null(r->address);
    assert_null(r->maildir);
    assert_int_equal(r->route, 0);
    assert_int_equal(r->state, ENVELOPE_PENDING);
    envelope_free(&e);
    assert_int_equal(e.nrcpt, 0);
    assert_null(e.rcpt);
}

static void test_pending_counts_recipients_neither_delivered_nor_failed(void **state)
{
    (void)state;
    struct envelope e;
    memset(&e, 0, sizeof(e));
    assert_int_equal(envelope_pending(&e), 0);

    static const enum envelope_state states[] = {
        ENVELOPE_PENDING, ENVELOPE_DELIVERED, ENVELOPE_PENDING, ENVELOPE_FAILED, ENVELOPE_PENDING};
    for (size_t i = 0; i < 5; i++)
        envelope_add_rcpt(&e)->state = states[i];
    assert_int_equal(envelope_pending(&e), 3);

    for (size_t i = 0; i < e.nrcpt; i++)
        e.rcpt[i].state = i % 2 ? ENVELOPE_FAILED : ENVELOPE_DELIVERED;
    assert_int_equal(envelope_pending(&e), 0);
    envelope_free(&e);
}

static void test_pending_survives_a_round_trip(void **state)
{
    (void)state;
    struct envelope e, back;
    fill_standard(&e);
    round_trip(&e, &back);
    assert_int_equal(envelope_pending(&back), 1);
    envelope_free(&e);
    envelope_free(&back);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip_keeps_every_field),
        cmocka_unit_test(test_absent_optional_fields_come_back_absent),
        cmocka_unit_test(test_null_sender_and_empty_helo_round_trip_as_empty_strings),
        cmocka_unit_test(test_extreme_integers_round_trip),
        cmocka_unit_test(test_many_recipients_round_trip_in_order),
        cmocka_unit_test(test_newlines_and_quotes_in_addresses_survive_and_create_no_field),
        cmocka_unit_test(test_encoding_that_does_not_fit_leaves_the_buffer_unchanged),
        cmocka_unit_test(test_minimal_hand_built_envelope_is_accepted_with_defaults),
        cmocka_unit_test(test_fields_may_come_in_any_order_before_the_recipients),
        cmocka_unit_test(test_empty_input_is_refused),
        cmocka_unit_test(test_truncated_field_header_is_refused),
        cmocka_unit_test(test_length_past_the_end_is_refused),
        cmocka_unit_test(test_every_cut_inside_a_field_is_refused),
        cmocka_unit_test(test_unknown_tag_is_refused),
        cmocka_unit_test(test_repeated_id_is_refused),
        cmocka_unit_test(test_repeated_string_fields_are_refused),
        cmocka_unit_test(test_same_optional_field_on_two_recipients_is_accepted),
        cmocka_unit_test(test_repeated_integer_fields_are_refused),
        cmocka_unit_test(test_nul_in_a_string_is_refused),
        cmocka_unit_test(test_id_of_the_wrong_length_is_refused),
        cmocka_unit_test(test_integer_fields_of_the_wrong_width_are_refused),
        cmocka_unit_test(test_out_of_range_small_values_are_refused),
        cmocka_unit_test(test_bad_route_is_refused),
        cmocka_unit_test(test_recipient_without_a_route_is_refused),
        cmocka_unit_test(test_maildir_route_without_a_maildir_is_refused),
        cmocka_unit_test(test_maildir_of_an_earlier_recipient_does_not_serve_a_later_one),
        cmocka_unit_test(test_recipient_field_before_any_rcpt_is_refused),
        cmocka_unit_test(test_missing_required_fields_are_refused),
        cmocka_unit_test(test_trace_longer_than_the_message_is_refused),
        cmocka_unit_test(test_oversize_strings_are_refused),
        cmocka_unit_test(test_more_recipients_than_the_limit_are_refused),
        cmocka_unit_test(test_added_recipient_is_zeroed_and_counted),
        cmocka_unit_test(test_pending_counts_recipients_neither_delivered_nor_failed),
        cmocka_unit_test(test_pending_survives_a_round_trip),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
