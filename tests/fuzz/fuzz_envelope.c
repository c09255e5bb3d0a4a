/*
 * fuzz_envelope.c - decoding queue envelopes (src/queue/envelope.c).
 *
 * The input is an encoded envelope as the journal stores it: a damaged or
 * hostile file must be refused, never misread.  What decodes must hold up:
 *   - every required field is there, strings are NUL-free and bounded,
 *     each recipient has a route (and a Maildir for the Maildir route);
 *   - encoding it and decoding the result gives the same envelope, and
 *     encoding that again gives the same bytes (the encoding is canonical);
 *   - an encoding that does not fit its buffer fails and leaves the buffer
 *     as it was.
 */
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "fuzz.h"
#include "queue/envelope.h"

/* same_string - both NULL, or equal */
static bool same_string(const char *a, const char *b)
{
    if (a == NULL || b == NULL)
        return a == b;
    return strcmp(a, b) == 0;
}

/* same_envelope - field by field */
static bool same_envelope(const struct envelope *a, const struct envelope *b)
{
    if (strcmp(a->id, b->id) != 0 || !same_string(a->sender, b->sender) ||
        !same_string(a->client, b->client) || !same_string(a->helo, b->helo) ||
        !same_string(a->envid, b->envid) || a->arrival != b->arrival || a->size != b->size ||
        a->trace_len != b->trace_len || a->body != b->body || a->ret != b->ret ||
        a->smtputf8 != b->smtputf8 || a->nrcpt != b->nrcpt)
        return false;
    for (size_t i = 0; i < a->nrcpt; i++) {
        const struct envelope_rcpt *x = &a->rcpt[i], *y = &b->rcpt[i];
        if (!same_string(x->address, y->address) || !same_string(x->orig, y->orig) ||
            !same_string(x->orcpt, y->orcpt) || x->notify != y->notify || x->route != y->route ||
            !same_string(x->maildir, y->maildir) || x->state != y->state)
            return false;
    }
    return true;
}

/* check_string - a decoded string is bounded */
static void check_string(const char *s, const char *what)
{
    if (s != NULL)
        FUZZ_CHECK(strlen(s) <= ENVELOPE_STRING_MAX, "%s of %zu octets", what, strlen(s));
}

/* check_decoded - what envelope_decode() promises on success */
static void check_decoded(const struct envelope *e)
{
    FUZZ_CHECK(strlen(e->id) == QUEUE_ID_LEN, "id of %zu octets", strlen(e->id));
    FUZZ_CHECK(e->sender != NULL && e->client != NULL && e->helo != NULL, "required string");
    check_string(e->sender, "sender");
    check_string(e->client, "client");
    check_string(e->helo, "helo");
    check_string(e->envid, "envid");
    FUZZ_CHECK(e->nrcpt > 0 && e->nrcpt <= ENVELOPE_RCPT_MAX, "%zu recipients", e->nrcpt);
    FUZZ_CHECK(e->trace_len <= e->size, "trace %u past size %llu", e->trace_len,
               (unsigned long long)e->size);
    FUZZ_CHECK(e->body <= 3 && e->ret <= 2, "body %u ret %u", e->body, e->ret);
    size_t pending = 0;
    for (size_t i = 0; i < e->nrcpt; i++) {
        const struct envelope_rcpt *r = &e->rcpt[i];
        FUZZ_CHECK(r->address != NULL, "recipient %zu without an address", i);
        check_string(r->address, "address");
        check_string(r->orig, "orig");
        check_string(r->orcpt, "orcpt");
        check_string(r->maildir, "maildir");
        FUZZ_CHECK(r->route == ENVELOPE_ROUTE_MAILDIR || r->route == ENVELOPE_ROUTE_RELAY,
                   "recipient %zu route %d", i, (int)r->route);
        FUZZ_CHECK(r->route != ENVELOPE_ROUTE_MAILDIR || r->maildir != NULL,
                   "Maildir recipient %zu without a Maildir", i);
        FUZZ_CHECK(r->state <= ENVELOPE_FAILED, "recipient %zu state %d", i, (int)r->state);
        FUZZ_CHECK(r->notify <= 15, "recipient %zu notify %u", i, r->notify);
        pending += r->state == ENVELOPE_PENDING;
    }
    FUZZ_CHECK(envelope_pending(e) == pending, "envelope_pending");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct envelope e = {0};
    char err[256];

    err[0] = '\0';
    if (envelope_decode(data, size, &e, err, sizeof(err)) < 0) {
        FUZZ_CHECK(err[0] != '\0', "refused without a reason");
        envelope_free(&e);
        FUZZ_CHECK(e.sender == NULL && e.rcpt == NULL && e.nrcpt == 0, "envelope_free");
        return 0;
    }
    check_decoded(&e);

    struct buf first, second;
    buf_init(&first, 64u * 1024 * 1024);
    buf_init(&second, 64u * 1024 * 1024);
    FUZZ_CHECK(envelope_encode(&e, &first) == 0, "a decoded envelope does not encode");

    struct envelope again = {0};
    FUZZ_CHECK(envelope_decode(first.data, first.len, &again, err, sizeof(err)) == 0,
               "re-encoded envelope does not decode: %s", err);
    FUZZ_CHECK(same_envelope(&e, &again), "decode(encode(e)) differs from e");
    FUZZ_CHECK(envelope_encode(&again, &second) == 0, "second encoding");
    FUZZ_CHECK(second.len == first.len && memcmp(first.data, second.data, first.len) == 0,
               "encoding is not canonical");

    /* Too small a buffer: the encoding fails and the buffer is as it was. */
    struct buf small;
    buf_init(&small, first.len + 2);
    FUZZ_CHECK(buf_append(&small, "abc", 3) == 0, "buf_append");
    FUZZ_CHECK(envelope_encode(&e, &small) < 0, "encoding past the buffer's limit");
    FUZZ_CHECK(small.len == 3 && memcmp(small.data, "abc", 3) == 0,
               "a failed encoding changed the buffer");

    buf_free(&small);
    buf_free(&first);
    buf_free(&second);
    envelope_free(&again);
    envelope_free(&e);
    return 0;
}
