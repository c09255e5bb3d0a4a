/*
 * fuzz_address.c - the RFC 5321 path parser (src/smtp/address.c).
 *
 * The input is what a client wrote after "MAIL FROM:" or "RCPT TO:".  It is
 * parsed under every combination of the four flags, and whatever parses
 * must hold up:
 *   - the result stays within the RFC's limits and is NUL-free text;
 *   - each fact reported is one the flags allowed (null path, postmaster,
 *     UTF-8, the bare legacy form);
 *   - the domain passes the domain (or address literal) check on its own;
 *   - the canonical mailbox, put back in <>, parses again to the same local
 *     part, domain and mailbox: what we store and log is what we checked;
 *   - allowing more never refuses what fewer flags accepted.
 * The helper checks (domain, literal, UTF-8, dot-string) also get the raw
 * input, with their own small invariants.
 */
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "fuzz.h"
#include "smtp/address.h"

#define ALL_FLAGS                                                                                  \
    (SMTP_PATH_ALLOW_NULL | SMTP_PATH_ALLOW_POSTMASTER | SMTP_PATH_ALLOW_UTF8 |                    \
     SMTP_PATH_ALLOW_BARE)

/* text_ok - s[0..n) is free of NUL and other control octets */
static bool text_ok(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c == 0x7f)
            return false;
    }
    return true;
}

/* ascii_only - no octet of s[0..n) is 0x80 or above */
static bool ascii_only(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] >= 0x80)
            return false;
    return true;
}

/* utf8_valid - s[0..n) is ASCII and valid UTF-8 sequences */
static bool utf8_valid(const char *s, size_t n)
{
    const unsigned char *u = (const unsigned char *)s;
    for (size_t i = 0; i < n;) {
        if (u[i] < 0x80) {
            i++;
            continue;
        }
        size_t len = smtp_utf8_seq(u + i, n - i);
        if (len == 0)
            return false;
        i += len;
    }
    return true;
}

/* same_path - the parts a reparse must reproduce */
static bool same_path(const struct smtp_path *a, const struct smtp_path *b)
{
    return a->local_len == b->local_len && memcmp(a->local, b->local, a->local_len) == 0 &&
           a->domain_len == b->domain_len && memcmp(a->domain, b->domain, a->domain_len) == 0 &&
           a->mailbox_len == b->mailbox_len &&
           memcmp(a->mailbox, b->mailbox, a->mailbox_len) == 0 && a->is_null == b->is_null &&
           a->is_postmaster == b->is_postmaster && a->domain_literal == b->domain_literal &&
           a->utf8 == b->utf8;
}

/* check_ok - invariants of one successful parse */
static void check_ok(const char *in, size_t n, unsigned flags, const struct smtp_path *p,
                     size_t used)
{
    FUZZ_CHECK(used > 0 && used <= n, "used %zu of %zu octets", used, n);
    FUZZ_CHECK(used <= SMTP_PATH_MAX, "path of %zu octets accepted", used);
    FUZZ_CHECK(p->local_len <= SMTP_LOCAL_MAX && p->local[p->local_len] == '\0', "local part");
    FUZZ_CHECK(p->domain_len <= SMTP_DOMAIN_MAX && p->domain[p->domain_len] == '\0', "domain");
    FUZZ_CHECK(p->mailbox_len <= SMTP_PATH_MAX && p->mailbox[p->mailbox_len] == '\0', "mailbox");
    FUZZ_CHECK(strlen(p->mailbox) == p->mailbox_len && strlen(p->domain) == p->domain_len &&
                   strlen(p->local) == p->local_len,
               "NUL inside a parsed path");
    FUZZ_CHECK(text_ok(p->mailbox, p->mailbox_len), "control octet in mailbox \"%s\"", p->mailbox);
    FUZZ_CHECK(p->bracketed == (in[0] == '<'), "bracketed flag");
    FUZZ_CHECK(p->bracketed || (flags & SMTP_PATH_ALLOW_BARE), "bare path without the flag");
    if (p->bracketed)
        FUZZ_CHECK(in[used - 1] == '>', "bracketed path does not end at '>'");
    if (p->utf8 || !ascii_only(p->mailbox, p->mailbox_len))
        FUZZ_CHECK(flags & SMTP_PATH_ALLOW_UTF8, "UTF-8 path without SMTPUTF8");
    FUZZ_CHECK(p->utf8 == !ascii_only(p->mailbox, p->mailbox_len), "utf8 flag vs mailbox");
    FUZZ_CHECK(utf8_valid(p->mailbox, p->mailbox_len), "invalid UTF-8 in mailbox");

    if (p->is_null) {
        FUZZ_CHECK(flags & SMTP_PATH_ALLOW_NULL, "null path without the flag");
        FUZZ_CHECK(p->mailbox_len == 0 && used == 2, "null path with content");
        return;
    }
    if (p->is_postmaster) {
        FUZZ_CHECK(flags & SMTP_PATH_ALLOW_POSTMASTER, "postmaster without the flag");
        FUZZ_CHECK(strcmp(p->mailbox, "postmaster") == 0, "postmaster mailbox \"%s\"", p->mailbox);
        return;
    }
    FUZZ_CHECK(p->domain_len > 0, "empty domain");
    FUZZ_CHECK(p->local_len > 0 || p->quoted, "empty local part, not quoted");
    if (p->domain_literal)
        FUZZ_CHECK(smtp_address_literal_valid(p->domain, p->domain_len), "literal \"%s\"",
                   p->domain);
    else
        FUZZ_CHECK(smtp_domain_valid(p->domain, p->domain_len, flags & SMTP_PATH_ALLOW_UTF8),
                   "domain \"%s\"", p->domain);
    /* The mailbox is the local part (quoted when it must be) "@" the domain. */
    FUZZ_CHECK(p->mailbox_len > p->domain_len + 1 &&
                   p->mailbox[p->mailbox_len - p->domain_len - 1] == '@' &&
                   memcmp(p->mailbox + p->mailbox_len - p->domain_len, p->domain, p->domain_len) ==
                       0,
               "mailbox \"%s\" does not end in @domain", p->mailbox);
}

/* check_reparse - <mailbox> parses to the same path */
static void check_reparse(unsigned flags, const struct smtp_path *p)
{
    char again[SMTP_PATH_MAX + 3];
    struct smtp_path q;
    size_t used = 0;

    again[0] = '<';
    memcpy(again + 1, p->mailbox, p->mailbox_len);
    again[p->mailbox_len + 1] = '>';
    size_t n = p->mailbox_len + 2;
    enum smtp_path_error e = smtp_path_parse(again, n, flags, &q, &used);
    FUZZ_CHECK(e == SMTP_PATH_OK, "canonical <%s> does not parse (error %d, flags %u)", p->mailbox,
               (int)e, flags);
    FUZZ_CHECK(used == n, "canonical <%s> parsed only %zu of %zu octets", p->mailbox, used, n);
    FUZZ_CHECK(same_path(p, &q), "canonical <%s> parses to <%s> (flags %u)", p->mailbox, q.mailbox,
               flags);
}

/* check_helpers - the exported helper checks on the raw input */
static void check_helpers(const char *in, size_t n)
{
    const unsigned char *u = (const unsigned char *)in;
    for (size_t i = 0; i < n; i++) {
        size_t len = smtp_utf8_seq(u + i, n - i);
        FUZZ_CHECK(len <= 4 && len <= n - i, "utf8 sequence of %zu octets", len);
        FUZZ_CHECK(len == 0 || u[i] >= 0xc2, "utf8 sequence from a bad lead octet");
    }
    if (smtp_domain_valid(in, n, false))
        FUZZ_CHECK(smtp_domain_valid(in, n, true) && ascii_only(in, n) && n <= SMTP_DOMAIN_MAX,
                   "ASCII domain check");
    if (smtp_local_is_dot_string(in, n, false))
        FUZZ_CHECK(smtp_local_is_dot_string(in, n, true) && ascii_only(in, n), "dot-string check");
    if (smtp_address_literal_valid(in, n))
        FUZZ_CHECK(n >= 3 && in[0] == '[' && in[n - 1] == ']' && text_ok(in, n),
                   "address literal check");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *in = (const char *)data;
    struct smtp_path paths[ALL_FLAGS + 1];
    enum smtp_path_error errors[ALL_FLAGS + 1];
    size_t used[ALL_FLAGS + 1];

    for (unsigned flags = 0; flags <= ALL_FLAGS; flags++) {
        used[flags] = 0;
        errors[flags] = smtp_path_parse(in, size, flags, &paths[flags], &used[flags]);
        FUZZ_CHECK(errors[flags] <= SMTP_PATH_NEED_UTF8, "unknown error %d", (int)errors[flags]);
        if (errors[flags] == SMTP_PATH_NEED_UTF8)
            FUZZ_CHECK(!(flags & SMTP_PATH_ALLOW_UTF8), "NEED_UTF8 with SMTPUTF8 allowed");
        if (errors[flags] != SMTP_PATH_OK)
            continue;
        check_ok(in, size, flags, &paths[flags], used[flags]);
        check_reparse(flags, &paths[flags]);
    }
    /* Allowing more never refuses what fewer flags accepted, nor changes it. */
    for (unsigned f = 0; f <= ALL_FLAGS; f++) {
        if (errors[f] != SMTP_PATH_OK)
            continue;
        for (unsigned g = f; g <= ALL_FLAGS; g++) {
            if ((g & f) != f)
                continue;
            FUZZ_CHECK(errors[g] == SMTP_PATH_OK, "accepted with flags %u, refused with %u", f, g);
            FUZZ_CHECK(used[g] == used[f] && same_path(&paths[f], &paths[g]),
                       "flags %u and %u parse differently", f, g);
        }
    }
    check_helpers(in, size);
    return 0;
}
