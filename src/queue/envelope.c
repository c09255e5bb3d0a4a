/*
 * envelope.c - encoding and decoding envelopes (see envelope.h).
 *
 * Fields, in the order the encoder writes them:
 *
 *   ID, SENDER, CLIENT, HELO, [ENVID], ARRIVAL, SIZE, TRACE, BODY, RET, UTF8,
 *   then per recipient: RCPT (starts it), [ORIG], [ORCPT], NOTIFY, ROUTE,
 *   [MAILDIR], STATE
 *
 * The decoder takes fields in any order except that recipient fields belong
 * to the last RCPT before them.  Unknown tags are an error: a newer Pigeon
 * must not have its queue half-understood by an older one.
 */
#include "envelope.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum envelope_tag {
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

/* put_field - append one tag, length and value */
static int put_field(struct buf *out, uint8_t tag, const void *p, size_t n)
{
    uint8_t head[5] = {tag, (uint8_t)n, (uint8_t)(n >> 8), (uint8_t)(n >> 16), (uint8_t)(n >> 24)};
    if (n > UINT32_MAX)
        return -1;
    if (buf_append(out, head, sizeof(head)) < 0 || buf_append(out, p, n) < 0)
        return -1;
    return 0;
}

/* put_string - a NUL-terminated string of ours (never NULL) */
static int put_string(struct buf *out, uint8_t tag, const char *s)
{
    return put_field(out, tag, s, strlen(s));
}

/* put_u64 - an integer, 8 octets little-endian */
static int put_u64(struct buf *out, uint8_t tag, uint64_t v)
{
    uint8_t b[8];
    for (int i = 0; i < 8; i++)
        b[i] = (uint8_t)(v >> (8 * i));
    return put_field(out, tag, b, sizeof(b));
}

/* put_u8 - a small integer, one octet */
static int put_u8(struct buf *out, uint8_t tag, uint8_t v)
{
    return put_field(out, tag, &v, 1);
}

/* envelope_encode - append the encoded envelope to out */
int envelope_encode(const struct envelope *e, struct buf *out)
{
    size_t start = out->len;
    int r = 0;
    r |= put_field(out, TAG_ID, e->id, QUEUE_ID_LEN);
    r |= put_string(out, TAG_SENDER, e->sender);
    r |= put_string(out, TAG_CLIENT, e->client);
    r |= put_string(out, TAG_HELO, e->helo);
    if (e->envid)
        r |= put_string(out, TAG_ENVID, e->envid);
    r |= put_u64(out, TAG_ARRIVAL, (uint64_t)e->arrival);
    r |= put_u64(out, TAG_SIZE, e->size);
    r |= put_u64(out, TAG_TRACE, e->trace_len);
    r |= put_u8(out, TAG_BODY, e->body);
    r |= put_u8(out, TAG_RET, e->ret);
    r |= put_u8(out, TAG_UTF8, e->smtputf8);
    for (size_t i = 0; i < e->nrcpt && r == 0; i++) {
        const struct envelope_rcpt *rc = &e->rcpt[i];
        r |= put_string(out, TAG_RCPT, rc->address);
        if (rc->orig)
            r |= put_string(out, TAG_RCPT_ORIG, rc->orig);
        if (rc->orcpt)
            r |= put_string(out, TAG_RCPT_ORCPT, rc->orcpt);
        r |= put_u8(out, TAG_RCPT_NOTIFY, (uint8_t)rc->notify);
        r |= put_u8(out, TAG_RCPT_ROUTE, (uint8_t)rc->route);
        if (rc->maildir)
            r |= put_string(out, TAG_RCPT_MAILDIR, rc->maildir);
        r |= put_u8(out, TAG_RCPT_STATE, (uint8_t)rc->state);
    }
    if (r != 0) {
        out->len = start;
        return -1;
    }
    return 0;
}

/* envelope_add_rcpt - a new zeroed recipient at the end */
struct envelope_rcpt *envelope_add_rcpt(struct envelope *e)
{
    if (e->nrcpt >= ENVELOPE_RCPT_MAX)
        return NULL;
    /* The array doubles when its count reaches a power of two (4, 8, 16, ...). */
    size_t n = e->nrcpt;
    if (n == 0 || (n >= 4 && (n & (n - 1)) == 0)) {
        size_t cap = n == 0 ? 4 : 2 * n;
        struct envelope_rcpt *r = realloc(e->rcpt, cap * sizeof(*r));
        if (r == NULL)
            return NULL;
        e->rcpt = r;
    }
    memset(&e->rcpt[n], 0, sizeof(e->rcpt[n]));
    e->nrcpt++;
    return &e->rcpt[n];
}

/* take_string - a field value as a new C string; NULL if it holds a NUL or is too long */
static char *take_string(const uint8_t *p, size_t n)
{
    if (n > ENVELOPE_STRING_MAX || memchr(p, '\0', n) != NULL)
        return NULL;
    char *s = malloc(n + 1);
    if (s == NULL)
        return NULL;
    memcpy(s, p, n);
    s[n] = '\0';
    return s;
}

/* take_u64 - an 8-octet integer field */
static bool take_u64(const uint8_t *p, size_t n, uint64_t *v)
{
    if (n != 8)
        return false;
    *v = 0;
    for (int i = 7; i >= 0; i--)
        *v = (*v << 8) | p[i];
    return true;
}

/* set_string - store a string field once; false if repeated or bad */
static bool set_string(char **slot, const uint8_t *p, size_t n)
{
    if (*slot != NULL)
        return false;
    *slot = take_string(p, n);
    return *slot != NULL;
}

/* envelope_decode - parse p[0..n) into e */
int envelope_decode(const uint8_t *p, size_t n, struct envelope *e, char *err, size_t errsize)
{
    size_t i = 0;
    bool have_id = false, have_size = false;
    struct envelope_rcpt *rc = NULL;
    uint64_t v = 0;
    /* Every field may appear once: per envelope, or per recipient for
     * recipient fields (a second STATE must not undo a delivery). */
    uint64_t seen = 0, rcpt_seen = 0;

    while (i < n) {
        if (n - i < 5) {
            snprintf(err, errsize, "truncated field header at offset %zu", i);
            return -1;
        }
        uint8_t tag = p[i];
        size_t len = (size_t)p[i + 1] | (size_t)p[i + 2] << 8 | (size_t)p[i + 3] << 16 |
                     (size_t)p[i + 4] << 24;
        i += 5;
        if (len > n - i) {
            snprintf(err, errsize, "field %u runs past the end", tag);
            return -1;
        }
        const uint8_t *f = p + i;
        i += len;
        bool ok = true;
        if (tag == TAG_RCPT)
            rcpt_seen = 0;
        uint64_t *seen_set = tag >= TAG_RCPT ? &rcpt_seen : &seen;
        uint64_t bit = (uint64_t)1 << (tag & 63);
        if (*seen_set & bit) {
            snprintf(err, errsize, "repeated field %u", tag);
            return -1;
        }
        *seen_set |= bit;
        if (tag >= TAG_RCPT && tag != TAG_RCPT && rc == NULL) {
            snprintf(err, errsize, "recipient field %u before any recipient", tag);
            return -1;
        }
        switch (tag) {
        case TAG_ID:
            ok = len == QUEUE_ID_LEN && !have_id && memchr(f, '\0', len) == NULL;
            if (ok) {
                memcpy(e->id, f, QUEUE_ID_LEN);
                e->id[QUEUE_ID_LEN] = '\0';
                have_id = true;
            }
            break;
        case TAG_SENDER:
            ok = set_string(&e->sender, f, len);
            break;
        case TAG_CLIENT:
            ok = set_string(&e->client, f, len);
            break;
        case TAG_HELO:
            ok = set_string(&e->helo, f, len);
            break;
        case TAG_ENVID:
            ok = set_string(&e->envid, f, len);
            break;
        case TAG_ARRIVAL:
            ok = take_u64(f, len, &v);
            e->arrival = (int64_t)v;
            break;
        case TAG_SIZE:
            ok = take_u64(f, len, &e->size);
            have_size = ok;
            break;
        case TAG_TRACE:
            ok = take_u64(f, len, &v) && v <= UINT32_MAX;
            e->trace_len = (uint32_t)v;
            break;
        case TAG_BODY:
            ok = len == 1 && f[0] <= 3;
            e->body = ok ? f[0] : 0;
            break;
        case TAG_RET:
            ok = len == 1 && f[0] <= 2;
            e->ret = ok ? f[0] : 0;
            break;
        case TAG_UTF8:
            ok = len == 1 && f[0] <= 1;
            e->smtputf8 = ok && f[0];
            break;
        case TAG_RCPT:
            rc = envelope_add_rcpt(e);
            ok = rc != NULL && set_string(&rc->address, f, len);
            break;
        case TAG_RCPT_ORIG:
            ok = set_string(&rc->orig, f, len);
            break;
        case TAG_RCPT_ORCPT:
            ok = set_string(&rc->orcpt, f, len);
            break;
        case TAG_RCPT_NOTIFY:
            ok = len == 1 && f[0] <= 15;
            rc->notify = ok ? f[0] : 0;
            break;
        case TAG_RCPT_ROUTE:
            ok = len == 1 && (f[0] == ENVELOPE_ROUTE_MAILDIR || f[0] == ENVELOPE_ROUTE_RELAY);
            rc->route = ok ? (enum envelope_route)f[0] : 0;
            break;
        case TAG_RCPT_MAILDIR:
            ok = set_string(&rc->maildir, f, len);
            break;
        case TAG_RCPT_STATE:
            ok = len == 1 && f[0] <= ENVELOPE_FAILED;
            rc->state = ok ? (enum envelope_state)f[0] : ENVELOPE_PENDING;
            break;
        default:
            snprintf(err, errsize, "unknown field %u", tag);
            return -1;
        }
        if (!ok) {
            snprintf(err, errsize, "bad or repeated field %u", tag);
            return -1;
        }
    }
    if (!have_id || !have_size || e->sender == NULL || e->client == NULL || e->helo == NULL ||
        e->nrcpt == 0) {
        snprintf(err, errsize, "a required field is missing");
        return -1;
    }
    for (size_t k = 0; k < e->nrcpt; k++) {
        const struct envelope_rcpt *r = &e->rcpt[k];
        if (r->route == 0 || (r->route == ENVELOPE_ROUTE_MAILDIR && r->maildir == NULL)) {
            snprintf(err, errsize, "recipient %zu has no route", k);
            return -1;
        }
    }
    if (e->trace_len > e->size) {
        snprintf(err, errsize, "trace header longer than the message");
        return -1;
    }
    return 0;
}

/* envelope_free - release the strings and recipients */
void envelope_free(struct envelope *e)
{
    free(e->sender);
    free(e->client);
    free(e->helo);
    free(e->envid);
    for (size_t i = 0; i < e->nrcpt; i++) {
        free(e->rcpt[i].address);
        free(e->rcpt[i].orig);
        free(e->rcpt[i].orcpt);
        free(e->rcpt[i].maildir);
    }
    free(e->rcpt);
    e->sender = e->client = e->helo = e->envid = NULL;
    e->rcpt = NULL;
    e->nrcpt = 0;
}

/* envelope_pending - recipients not yet delivered or failed */
size_t envelope_pending(const struct envelope *e)
{
    size_t n = 0;
    for (size_t i = 0; i < e->nrcpt; i++)
        if (e->rcpt[i].state == ENVELOPE_PENDING)
            n++;
    return n;
}
