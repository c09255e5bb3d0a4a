/*
 * limits.c - per-address and total session and connection-rate limits (see
 * limits.h).
 *
 * Open addressing with linear probing.  Entries are never deleted one by
 * one; when the table is half full, it is rebuilt without the addresses
 * that hold no session and whose bucket has refilled (nothing to remember
 * about them), which keeps probing short and memory bounded.
 */
#include "limits.h"

#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* A token bucket: a minute's worth of connections at once, then a steady refill. */
struct bucket {
    double tokens; /* connections allowed right now */
    double last;   /* when tokens was last brought up to date */
};

struct client_entry {
    uint8_t addr[16];
    bool used;
    unsigned sessions;
    struct bucket rate;
};

struct client_limits {
    unsigned per_client;
    unsigned per_minute;
    unsigned per_minute_total;
    struct bucket total; /* shared by every address */
    struct client_entry *slots;
    size_t cap; /* a power of two */
    size_t used;
};

/* key_of - the address as 16 octets (IPv4 as ::ffff:a.b.c.d); false if not IP */
static bool key_of(const struct sockaddr *sa, uint8_t key[16])
{
    if (sa->sa_family == AF_INET6) {
        memcpy(key, &((const struct sockaddr_in6 *)sa)->sin6_addr, 16);
        return true;
    }
    if (sa->sa_family == AF_INET) {
        memset(key, 0, 10);
        key[10] = key[11] = 0xff;
        memcpy(key + 12, &((const struct sockaddr_in *)sa)->sin_addr, 4);
        return true;
    }
    return false;
}

/* hash_key - FNV-1a over the 16 octets */
static size_t hash_key(const uint8_t key[16])
{
    uint64_t h = 1469598103934665603ull;
    for (int i = 0; i < 16; i++)
        h = (h ^ key[i]) * 1099511628211ull;
    return (size_t)h;
}

/* find - the entry for key, or the empty slot where it would go */
static struct client_entry *find(struct client_limits *l, const uint8_t key[16])
{
    size_t i = hash_key(key) & (l->cap - 1);
    while (l->slots[i].used && memcmp(l->slots[i].addr, key, 16) != 0)
        i = (i + 1) & (l->cap - 1);
    return &l->slots[i];
}

/* refill - bring a bucket of per_minute connections a minute up to now */
static void refill(struct bucket *b, unsigned per_minute, double now)
{
    if (per_minute == 0)
        return;
    double cap = (double)per_minute;
    if (now > b->last)
        b->tokens += (now - b->last) * cap / 60.0;
    if (b->tokens > cap)
        b->tokens = cap;
    b->last = now;
}

/* idle - nothing worth remembering about an entry */
static bool idle(const struct client_limits *l, struct client_entry *e, double now)
{
    refill(&e->rate, l->per_minute, now);
    return e->sessions == 0 && (l->per_minute == 0 || e->rate.tokens >= (double)l->per_minute);
}

/* rebuild - a table of size cap holding only the entries that matter */
static bool rebuild(struct client_limits *l, size_t cap, double now)
{
    struct client_entry *old = l->slots;
    size_t oldcap = l->cap;
    struct client_entry *slots = calloc(cap, sizeof(*slots));
    if (slots == NULL)
        return false;
    l->slots = slots;
    l->cap = cap;
    l->used = 0;
    for (size_t i = 0; i < oldcap; i++) {
        if (!old[i].used || idle(l, &old[i], now))
            continue;
        *find(l, old[i].addr) = old[i];
        l->used++;
    }
    free(old);
    return true;
}

/* make_room - keep the table at most half full, within the address bound */
static bool make_room(struct client_limits *l, double now)
{
    if ((l->used + 1) * 2 <= l->cap)
        return true;
    size_t live = 0;
    for (size_t i = 0; i < l->cap; i++)
        if (l->slots[i].used && !idle(l, &l->slots[i], now))
            live++;
    size_t cap = l->cap;
    while ((live + 1) * 2 > cap)
        cap *= 2;
    if (cap > 2 * CLIENT_LIMITS_MAX_ADDRESSES)
        return false;
    return rebuild(l, cap, now) && (l->used + 1) * 2 <= l->cap;
}

/* client_limits_new - a table */
struct client_limits *client_limits_new(unsigned sessions_per_client,
                                        unsigned connections_per_minute,
                                        unsigned connections_per_minute_total)
{
    struct client_limits *l = calloc(1, sizeof(*l));
    if (l == NULL)
        return NULL;
    l->per_client = sessions_per_client;
    l->per_minute = connections_per_minute;
    l->per_minute_total = connections_per_minute_total;
    l->total.tokens = (double)connections_per_minute_total; /* full, as for a new address */
    l->cap = 256;
    l->slots = calloc(l->cap, sizeof(*l->slots));
    if (l->slots == NULL) {
        free(l);
        return NULL;
    }
    return l;
}

/* client_limits_free - release the table */
void client_limits_free(struct client_limits *l)
{
    if (l == NULL)
        return;
    free(l->slots);
    free(l);
}

/* client_limits_connect - a connection from addr at time now */
enum client_verdict client_limits_connect(struct client_limits *l, const struct sockaddr *addr,
                                          double now)
{
    uint8_t key[16];
    if (!key_of(addr, key))
        return CLIENT_OK; /* not an IP client: nothing to count */
    struct client_entry *e = find(l, key);
    if (!e->used) {
        if (!make_room(l, now))
            return CLIENT_TOO_MANY_CLIENTS;
        e = find(l, key);
        memcpy(e->addr, key, 16);
        e->used = true;
        e->sessions = 0;
        e->rate.tokens = (double)l->per_minute;
        e->rate.last = now;
        l->used++;
    }
    refill(&e->rate, l->per_minute, now);
    if (l->per_client != 0 && e->sessions >= l->per_client)
        return CLIENT_TOO_MANY_SESSIONS;
    if (l->per_minute != 0 && e->rate.tokens < 1.0)
        return CLIENT_TOO_FAST;
    if (l->per_minute_total != 0) {
        refill(&l->total, l->per_minute_total, now);
        if (l->total.tokens < 1.0)
            return CLIENT_ALL_TOO_FAST;
        l->total.tokens -= 1.0;
    }
    if (l->per_minute != 0)
        e->rate.tokens -= 1.0;
    e->sessions++;
    return CLIENT_OK;
}

/* client_limits_disconnect - a counted session from addr has ended */
void client_limits_disconnect(struct client_limits *l, const struct sockaddr *addr)
{
    uint8_t key[16];
    if (!key_of(addr, key))
        return;
    struct client_entry *e = find(l, key);
    if (e->used && e->sessions > 0)
        e->sessions--;
}

/* client_limits_tracked - addresses in the table */
size_t client_limits_tracked(const struct client_limits *l)
{
    return l->used;
}
