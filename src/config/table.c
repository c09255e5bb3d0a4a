/*
 * table.c - tables: named sets of keys with values, as pigeond.conf declares
 * them, and the lookups the rest of pigeond makes in them.
 *
 * A table comes from a list in the config ("table domains { localhost }")
 * or from a file ("table aliases file "/etc/pigeon/aliases"").  Either way
 * its entries end up sorted by key, so table_lookup() is a binary search;
 * keys are stored lower-cased and looked up without regard to ASCII case.
 *
 * A table file holds one entry per line, in one of two forms:
 *
 *     key
 *     key: value, value, ...
 *
 * the second as in aliases(5): a line that starts with white space goes on
 * with the values of the entry above it, '#' starts a comment, blank lines
 * are ignored.  Nothing else is accepted: a file that says something we do
 * not understand is an error naming its line, not a guess.
 *
 * How a table is used decides what else its entries must be: the keys of a
 * table of networks are addresses or CIDR blocks (table_use_networks()), the
 * values of an aliases table are local names or addresses, never commands or
 * files (table_check_aliases()).
 *
 * Called by config.c while loading; table_lookup() and table_match_address()
 * are called by src/policy and src/deliver at run time, on network data.
 */
#include "config_internal.h"

#include "lib/buf.h"
#include "lib/log.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

/* A table file is read whole into memory; this bounds it. */
#define TABLE_FILE_MAX (64 * 1024 * 1024)

/* ascii_lower - lower-case an ASCII letter, leave every other byte alone */
static unsigned char ascii_lower(unsigned char c)
{
    return c >= 'A' && c <= 'Z' ? (unsigned char)(c - 'A' + 'a') : c;
}

/* is_blank - space or tab, the white space of table files */
static bool is_blank(unsigned char c)
{
    return c == ' ' || c == '\t';
}

/* ---- building ---------------------------------------------------------- */

/*
 * table_array_grow - make room for element n of an array that holds n elements.
 *
 * The capacity is not stored: it is 8 while n <= 8 and the next power of
 * two after that, so the array only needs to grow when n is 0 or a power of
 * two of at least 8.  This keeps struct table and struct table_entry free
 * of bookkeeping fields that their readers do not need.
 */
static int table_array_grow(void *arrayp, size_t n, size_t size)
{
    void **array = arrayp;

    if (n != 0 && (n < 8 || (n & (n - 1)) != 0))
        return 0;
    size_t cap = n == 0 ? 8 : n * 2;
    void *p = reallocarray(*array, cap, size);
    if (p == NULL)
        return -1;
    *array = p;
    return 0;
}

/* table_new - an empty table; name and source (may be NULL) are copied */
struct table *table_new(const char *name, const char *source, int line)
{
    struct table *t = calloc(1, sizeof(*t));

    if (t == NULL)
        return NULL;
    if ((name != NULL && (t->name = strdup(name)) == NULL) ||
        (source != NULL && (t->source = strdup(source)) == NULL)) {
        table_free(t);
        return NULL;
    }
    t->line = line;
    return t;
}

/* table_free - release one table (not the rest of the list) */
void table_free(struct table *t)
{
    if (t == NULL)
        return;
    for (size_t i = 0; i < t->nentries; i++) {
        for (size_t j = 0; j < t->entries[i].nvalues; j++)
            free(t->entries[i].values[j]);
        free(t->entries[i].values);
        free(t->entries[i].key);
    }
    free(t->entries);
    free(t->networks);
    free(t->source);
    free(t->name);
    free(t);
}

/* table_add_key - add an entry for key (taken over, lower-cased); -1 if out of memory */
int table_add_key(struct table *t, char *key, int line)
{
    if (table_array_grow(&t->entries, t->nentries, sizeof(*t->entries)) < 0) {
        free(key);
        return -1;
    }
    for (char *c = key; *c != '\0'; c++)
        *c = (char)ascii_lower((unsigned char)*c);
    t->entries[t->nentries++] = (struct table_entry){.key = key, .line = line};
    return 0;
}

/* table_add_value - append a copy of the n bytes at s to an entry's values */
static int table_add_value(struct table_entry *e, const char *s, size_t n)
{
    char *value = strndup(s, n);

    if (value == NULL || table_array_grow(&e->values, e->nvalues, sizeof(*e->values)) < 0) {
        free(value);
        return -1;
    }
    e->values[e->nvalues++] = value;
    return 0;
}

/* table_entry_order - qsort order: by key, then by line so duplicates report the later one */
static int table_entry_order(const void *a, const void *b)
{
    const struct table_entry *x = a, *y = b;
    int c = strcmp(x->key, y->key);

    if (c != 0)
        return c;
    return (x->line > y->line) - (x->line < y->line);
}

/* table_finish - sort the entries for table_lookup(); duplicate keys are an error */
int table_finish(struct table *t, const char *file, char *err, size_t errsize)
{
    const char *where = t->source != NULL ? t->source : file;

    if (t->nentries > 1)
        qsort(t->entries, t->nentries, sizeof(*t->entries), table_entry_order);
    for (size_t i = 1; i < t->nentries; i++) {
        if (strcmp(t->entries[i - 1].key, t->entries[i].key) == 0) {
            config_error_at(err, errsize, where, t->entries[i].line,
                            "duplicate key \"%s\" in table <%s> (first on line %d)",
                            t->entries[i].key, t->name, t->entries[i - 1].line);
            return -1;
        }
    }
    return 0;
}

/* ---- networks -------------------------------------------------------------- */

/* table_parse_network - "address" or "address/prefix" into n; NULL or what is wrong */
static const char *table_parse_network(const char *key, struct table_network *n)
{
    char addr[INET6_ADDRSTRLEN];
    const char *slash = strchr(key, '/');
    size_t alen = slash != NULL ? (size_t)(slash - key) : strlen(key);
    unsigned max;

    if (alen == 0 || alen >= sizeof(addr))
        return "is not an address or network";
    memcpy(addr, key, alen);
    addr[alen] = '\0';
    memset(n, 0, sizeof(*n));
    if (inet_pton(AF_INET, addr, n->addr) == 1) {
        n->family = AF_INET;
        max = 32;
    } else if (inet_pton(AF_INET6, addr, n->addr) == 1) {
        n->family = AF_INET6;
        max = 128;
    } else {
        return "is not an address or network";
    }
    n->prefix = max;
    if (slash != NULL) {
        const char *d = slash + 1;
        unsigned prefix = 0;
        size_t digits = 0;
        for (; d[digits] >= '0' && d[digits] <= '9' && digits < 3; digits++)
            prefix = prefix * 10 + (unsigned)(d[digits] - '0');
        if (digits == 0 || d[digits] != '\0' || prefix > max)
            return max == 32 ? "has a bad prefix length (IPv4: /0 to /32)"
                             : "has a bad prefix length (IPv6: /0 to /128)";
        n->prefix = prefix;
    }
    /* Keep only the network part, so 127.0.0.1/8 means 127.0.0.0/8. */
    for (unsigned bit = n->prefix; bit < max; bit++)
        n->addr[bit / 8] &= (uint8_t) ~(0x80 >> (bit % 8));
    return NULL;
}

/* table_network_contains - is the address (4 or 16 bytes, by family) inside n? */
static bool table_network_contains(const struct table_network *n, int family, const uint8_t *addr)
{
    unsigned whole = n->prefix / 8, rest = n->prefix % 8;

    if (n->family != family)
        return false;
    if (memcmp(n->addr, addr, whole) != 0)
        return false;
    if (rest == 0)
        return true;
    uint8_t mask = (uint8_t)(0xff << (8 - rest));
    return (n->addr[whole] & mask) == (addr[whole] & mask);
}

/* table_match_address - does the socket address fall in one of the table's networks? */
bool table_match_address(const struct table *t, const struct sockaddr *sa)
{
    uint8_t v4[4];
    uint8_t v6[16];
    bool have_v4 = false, have_v6 = false;

    if (t == NULL || sa == NULL)
        return false;
    if (sa->sa_family == AF_INET) {
        struct sockaddr_in sin;
        memcpy(&sin, sa, sizeof(sin));
        memcpy(v4, &sin.sin_addr, sizeof(v4));
        have_v4 = true;
    } else if (sa->sa_family == AF_INET6) {
        struct sockaddr_in6 sin6;
        memcpy(&sin6, sa, sizeof(sin6));
        memcpy(v6, &sin6.sin6_addr, sizeof(v6));
        have_v6 = true;
        /* A dual-stack socket shows IPv4 clients as ::ffff:a.b.c.d. */
        if (IN6_IS_ADDR_V4MAPPED(&sin6.sin6_addr)) {
            memcpy(v4, v6 + 12, sizeof(v4));
            have_v4 = true;
        }
    } else {
        return false;
    }
    for (size_t i = 0; i < t->nnetworks; i++) {
        if (have_v4 && table_network_contains(&t->networks[i], AF_INET, v4))
            return true;
        if (have_v6 && table_network_contains(&t->networks[i], AF_INET6, v6))
            return true;
    }
    return false;
}

/* table_use_networks - parse every key as an address or CIDR into t->networks */
int table_use_networks(struct table *t, const char *file, char *err, size_t errsize)
{
    const char *where = t->source != NULL ? t->source : file;

    if (t->networks != NULL || t->nentries == 0)
        return 0; /* already done for an earlier use */
    t->networks = calloc(t->nentries, sizeof(*t->networks));
    if (t->networks == NULL) {
        config_error_at(err, errsize, file, t->line, "out of memory");
        return -1;
    }
    for (size_t i = 0; i < t->nentries; i++) {
        const char *why = table_parse_network(t->entries[i].key, &t->networks[i]);
        if (why != NULL) {
            config_error_at(err, errsize, where, t->entries[i].line,
                            "\"%s\" in table <%s> %s; a table of networks holds addresses "
                            "and CIDR blocks such as 192.0.2.0/24 or 2001:db8::/32",
                            t->entries[i].key, t->name, why);
            free(t->networks);
            t->networks = NULL;
            return -1;
        }
    }
    t->nnetworks = t->nentries;
    return 0;
}

/* ---- table files --------------------------------------------------------- */

/*
 * table_parse_values - the comma-separated values in s[0..n) (trimmed, not
 * empty) added to entry e.  An empty piece is allowed only at the end, after
 * a comma, for lists that go on on the next line ("root: alice,").
 */
static int table_parse_values(struct table *t, size_t e, const char *s, size_t n, int line,
                              char *err, size_t errsize)
{
    size_t pos = 0;

    while (pos < n) {
        const char *comma = memchr(s + pos, ',', n - pos);
        size_t end = comma != NULL ? (size_t)(comma - s) : n;
        size_t a = pos, b = end;

        while (a < b && is_blank((unsigned char)s[a]))
            a++;
        while (b > a && is_blank((unsigned char)s[b - 1]))
            b--;
        if (a == b) {
            config_error_at(err, errsize, t->source, line, "empty value for \"%s\"",
                            t->entries[e].key);
            return -1;
        }
        if (table_add_value(&t->entries[e], s + a, b - a) < 0) {
            config_error_at(err, errsize, t->source, line, "out of memory");
            return -1;
        }
        if (comma == NULL)
            break;
        pos = end + 1;
        /* A trailing comma: the list goes on on the next line. */
        while (pos < n && is_blank((unsigned char)s[pos]))
            pos++;
    }
    return 0;
}

/* table_check_colon_entry - an entry written "key:" must have got values by its end */
static int table_check_colon_entry(const struct table *t, size_t e, char *err, size_t errsize)
{
    if (t->entries[e].nvalues > 0)
        return 0;
    config_error_at(err, errsize, t->source, t->entries[e].line,
                    "no values after \"%s:\" (write the key alone for a key without values)",
                    t->entries[e].key);
    return -1;
}

/* table_line_is_ipv6 - is the line s[0..n) an IPv6 address or network, colons and all? */
static bool table_line_is_ipv6(const char *s, size_t n)
{
    char copy[INET6_ADDRSTRLEN + sizeof("/128")];
    struct table_network net;

    if (n == 0 || n >= sizeof(copy))
        return false;
    memcpy(copy, s, n);
    copy[n] = '\0';
    return table_parse_network(copy, &net) == NULL && net.family == AF_INET6;
}

/* table_parse_text - fill t from the text of its file (format at the top of this file) */
static int table_parse_text(struct table *t, const char *text, size_t len, char *err,
                            size_t errsize)
{
    const char *source = t->source;
    size_t pos = 0;
    int lineno = 0;
    bool have_entry = false; /* the last entry was written "key:" and may be continued */

    while (pos < len) {
        const char *line = text + pos;
        const char *nl = memchr(line, '\n', len - pos);
        size_t n = nl != NULL ? (size_t)(nl - line) : len - pos;

        pos += n + (nl != NULL);
        lineno++;
        if (n > 0 && line[n - 1] == '\r')
            n--;
        for (size_t i = 0; i < n; i++) {
            unsigned char c = (unsigned char)line[i];
            if ((c < ' ' && c != '\t') || c == 0x7f) {
                config_error_at(err, errsize, source, lineno, "control character (0x%02x)", c);
                return -1;
            }
        }
        const char *hash = memchr(line, '#', n);
        if (hash != NULL)
            n = (size_t)(hash - line);
        while (n > 0 && is_blank((unsigned char)line[n - 1]))
            n--;
        if (n == 0)
            continue; /* blank or comment */

        if (is_blank((unsigned char)line[0])) {
            /* aliases(5): white space first continues the entry above. */
            if (!have_entry) {
                config_error_at(err, errsize, source, lineno,
                                "continuation line, but no \"key:\" line above to continue");
                return -1;
            }
            size_t start = 0;
            while (is_blank((unsigned char)line[start]))
                start++;
            if (table_parse_values(t, t->nentries - 1, line + start, n - start, lineno, err,
                                   errsize) < 0)
                return -1;
            continue;
        }

        if (have_entry && table_check_colon_entry(t, t->nentries - 1, err, errsize) < 0)
            return -1;
        /* "::1" and "2001:db8::/32" are keys alone: their colons separate nothing. */
        const char *colon = table_line_is_ipv6(line, n) ? NULL : memchr(line, ':', n);
        size_t keylen = colon != NULL ? (size_t)(colon - line) : n;
        while (keylen > 0 && is_blank((unsigned char)line[keylen - 1]))
            keylen--;
        bool blank_in_key = false;
        for (size_t i = 0; i < keylen; i++)
            blank_in_key |= is_blank((unsigned char)line[i]);
        if (keylen == 0 || blank_in_key) {
            config_error_at(err, errsize, source, lineno,
                            "expected \"key\" or \"key: value, ...\"");
            return -1;
        }
        char *key = strndup(line, keylen);
        if (key == NULL || table_add_key(t, key, lineno) < 0) {
            config_error_at(err, errsize, source, lineno, "out of memory");
            return -1;
        }
        have_entry = colon != NULL;
        if (colon != NULL) {
            size_t vpos = (size_t)(colon - line) + 1;
            if (table_parse_values(t, t->nentries - 1, line + vpos, n - vpos, lineno, err,
                                   errsize) < 0)
                return -1;
        }
    }
    if (have_entry && table_check_colon_entry(t, t->nentries - 1, err, errsize) < 0)
        return -1;
    return 0;
}

/* table_load_file - fill t from the file t->source; errors name that file and line */
int table_load_file(struct table *t, char *err, size_t errsize)
{
    struct buf text;
    int rc;

    buf_init(&text, TABLE_FILE_MAX);
    if (config_read_file(t->source, TABLE_FILE_MAX, &text) < 0) {
        if (errno == EFBIG)
            config_error_at(err, errsize, t->source, 0, "table file larger than %d bytes",
                            TABLE_FILE_MAX);
        else
            config_error_at(err, errsize, t->source, 0, "cannot read table <%s>: %s", t->name,
                            strerror(errno));
        buf_free(&text);
        return -1;
    }
    rc = table_parse_text(t, (const char *)text.data, text.len, err, errsize);
    buf_free(&text);
    if (rc == 0)
        rc = table_finish(t, t->source, err, errsize);
    if (rc == 0)
        log_debug("table <%s>: %zu entries from %s", t->name, t->nentries, t->source);
    return rc;
}

/* ---- lookups --------------------------------------------------------------- */

/*
 * table_key_compare - compare the keylen bytes of key, in any case, with a
 * stored (lower-case, NUL-terminated) key, in the order table_finish() sorted
 * them.  key is network data: it is read only up to keylen, never to a NUL.
 */
static int table_key_compare(const char *key, size_t keylen, const char *stored)
{
    for (size_t i = 0; i < keylen; i++) {
        unsigned char s = (unsigned char)stored[i];
        unsigned char k = ascii_lower((unsigned char)key[i]);
        if (s == '\0')
            return 1; /* stored is a prefix of key */
        if (k != s)
            return k < s ? -1 : 1;
    }
    return stored[keylen] == '\0' ? 0 : -1;
}

/* table_lookup - the entry for key (any case), or NULL */
const struct table_entry *table_lookup(const struct table *t, const char *key, size_t keylen)
{
    size_t lo = 0, hi;

    if (t == NULL || (key == NULL && keylen > 0))
        return NULL;
    hi = t->nentries;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = table_key_compare(key, keylen, t->entries[mid].key);
        if (c == 0)
            return &t->entries[mid];
        if (c < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return NULL;
}

/* ---- aliases ----------------------------------------------------------------- */

/* table_alias_local_valid - a mailbox name: letters, digits and . - _ + =, not starting with '.' */
static bool table_alias_local_valid(const char *s, size_t n)
{
    if (n == 0 || s[0] == '.')
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '.' || c == '-' || c == '_' || c == '+' || c == '=';
        if (!ok)
            return false;
    }
    return true;
}

/* table_alias_domain_valid - letters, digits, '-' and '.', in labels that are not empty */
static bool table_alias_domain_valid(const char *s, size_t n)
{
    if (n == 0 || s[0] == '.' || s[n - 1] == '.')
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '-' || (c == '.' && s[i + 1] != '.');
        if (!ok)
            return false;
    }
    return true;
}

/* table_alias_target_refused - is v a delivery to a command, a file or an include file? */
static bool table_alias_target_refused(const char *v)
{
    if (v[0] == '"')
        v++; /* sendmail allows these targets quoted: "|/usr/bin/vacation" */
    return v[0] == '|' || v[0] == '/' || strncasecmp(v, ":include:", 9) == 0;
}

/* table_check_aliases - is every key a local name, and every value a local name or address? */
int table_check_aliases(const struct table *t, const char *file, char *err, size_t errsize)
{
    const char *where = t->source != NULL ? t->source : file;

    for (size_t i = 0; i < t->nentries; i++) {
        const struct table_entry *e = &t->entries[i];
        if (!table_alias_local_valid(e->key, strlen(e->key))) {
            config_error_at(err, errsize, where, e->line,
                            "alias name \"%s\" in table <%s> is not a local name (letters, "
                            "digits and . - _ + =)",
                            e->key, t->name);
            return -1;
        }
        for (size_t j = 0; j < e->nvalues; j++) {
            const char *v = e->values[j];
            const char *at = strchr(v, '@');
            if (table_alias_target_refused(v)) {
                config_error_at(err, errsize, where, e->line,
                                "alias target \"%s\" not supported (delivery to commands and "
                                "files is not available)",
                                v);
                return -1;
            }
            bool ok = at == NULL ? table_alias_local_valid(v, strlen(v))
                                 : table_alias_local_valid(v, (size_t)(at - v)) &&
                                       table_alias_domain_valid(at + 1, strlen(at + 1));
            if (!ok) {
                config_error_at(err, errsize, where, e->line,
                                "alias target \"%s\" is neither a local name nor an address "
                                "local@domain",
                                v);
                return -1;
            }
        }
    }
    return 0;
}
