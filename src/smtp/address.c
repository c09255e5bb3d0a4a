/*
 * address.c - RFC 5321 §4.1.2 path parser (see address.h).
 *
 * The grammar, with the RFC 6531 extensions that SMTPUTF8 switches on:
 *
 *   Path          = "<" [ A-d-l ":" ] Mailbox ">"
 *   A-d-l         = At-domain *( "," At-domain )      ; source route, ignored
 *   Mailbox       = Local-part "@" ( Domain / address-literal )
 *   Local-part    = Dot-string / Quoted-string
 *   Dot-string    = Atom *( "." Atom )
 *   Quoted-string = DQUOTE *( qtextSMTP / quoted-pairSMTP ) DQUOTE
 *   Domain        = sub-domain *( "." sub-domain )
 *   sub-domain    = Let-dig [ Ldh-str ]                ; or a U-label
 *
 * Everything is checked byte by byte with explicit lengths; nothing here
 * relies on NUL termination of the input.
 */
#include "address.h"

#include <arpa/inet.h>
#include <string.h>

/* is_alnum - ASCII letter or digit, independent of the locale */
static bool is_alnum(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

/* is_atext - RFC 5322 atext: the characters an unquoted local part may use */
static bool is_atext(unsigned char c)
{
    return is_alnum(c) || (c != '\0' && strchr("!#$%&'*+-/=?^_`{|}~", c) != NULL);
}

/* smtp_utf8_seq - length of the valid UTF-8 sequence at p (0 if invalid or ASCII) */
size_t smtp_utf8_seq(const unsigned char *p, size_t n)
{
    if (n == 0 || p[0] < 0x80)
        return 0;
    unsigned char c = p[0];
    size_t len;
    unsigned char lo = 0x80, hi = 0xbf; /* bounds of the second byte (RFC 3629 §4) */
    if (c >= 0xc2 && c <= 0xdf) {
        len = 2;
    } else if (c >= 0xe0 && c <= 0xef) {
        len = 3;
        if (c == 0xe0)
            lo = 0xa0; /* no overlong forms */
        else if (c == 0xed)
            hi = 0x9f; /* no surrogates */
    } else if (c >= 0xf0 && c <= 0xf4) {
        len = 4;
        if (c == 0xf0)
            lo = 0x90;
        else if (c == 0xf4)
            hi = 0x8f; /* nothing past U+10FFFF */
    } else {
        return 0;
    }
    if (n < len || p[1] < lo || p[1] > hi)
        return 0;
    for (size_t i = 2; i < len; i++)
        if (p[i] < 0x80 || p[i] > 0xbf)
            return 0;
    return len;
}

/* smtp_domain_valid - is d[0..n) a domain (RFC 5321 Domain, optionally with U-labels)? */
bool smtp_domain_valid(const char *d, size_t n, bool allow_utf8)
{
    const unsigned char *s = (const unsigned char *)d;
    size_t label = 0; /* octets in the current label */
    bool last_hyphen = false;

    if (n == 0 || n > SMTP_DOMAIN_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = s[i];
        if (c == '.') {
            if (label == 0 || last_hyphen)
                return false;
            label = 0;
            continue;
        }
        if (c == '-') {
            if (label == 0)
                return false; /* a label starts with a letter or digit */
            last_hyphen = true;
        } else if (is_alnum(c)) {
            last_hyphen = false;
        } else if (c >= 0x80 && allow_utf8) {
            size_t len = smtp_utf8_seq(s + i, n - i);
            if (len == 0)
                return false;
            i += len - 1;
            label += len - 1;
            last_hyphen = false;
        } else {
            return false;
        }
        if (++label > 63)
            return false;
    }
    return label > 0 && !last_hyphen;
}

/* ipv4_literal_valid - four decimal octets 0..255 separated by dots */
static bool ipv4_literal_valid(const char *s, size_t n)
{
    size_t i = 0;
    for (int part = 0; part < 4; part++) {
        if (part > 0) {
            if (i >= n || s[i] != '.')
                return false;
            i++;
        }
        unsigned value = 0;
        size_t digits = 0;
        while (i < n && s[i] >= '0' && s[i] <= '9' && digits < 4) {
            value = value * 10 + (unsigned)(s[i] - '0');
            i++;
            digits++;
        }
        if (digits == 0 || digits > 3 || value > 255)
            return false;
    }
    return i == n;
}

/* smtp_address_literal_valid - is d[0..n) an address literal, brackets included? */
bool smtp_address_literal_valid(const char *d, size_t n)
{
    if (n < 3 || d[0] != '[' || d[n - 1] != ']')
        return false;
    const char *s = d + 1;
    size_t len = n - 2;
    if (len > 5 && strncasecmp(s, "IPv6:", 5) == 0) {
        char text[INET6_ADDRSTRLEN + 1];
        unsigned char addr[16];
        if (len - 5 >= sizeof(text))
            return false;
        /* inet_pton() stops at a NUL: "[IPv6:::1\0junk]" must not pass as "::1". */
        if (memchr(s + 5, '\0', len - 5) != NULL)
            return false;
        memcpy(text, s + 5, len - 5);
        text[len - 5] = '\0';
        return inet_pton(AF_INET6, text, addr) == 1;
    }
    /* RFC 5321 §4.1.3 also allows General-address-literal with a registered
     * tag; IPv6 is the only tag ever registered, so anything else is refused. */
    return ipv4_literal_valid(s, len);
}

/* smtp_local_is_dot_string - could local[0..n) be written without quotes? */
bool smtp_local_is_dot_string(const char *local, size_t n, bool allow_utf8)
{
    const unsigned char *s = (const unsigned char *)local;
    if (n == 0 || s[0] == '.' || s[n - 1] == '.')
        return false;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '.') {
            if (s[i + 1] == '.')
                return false;
        } else if (s[i] >= 0x80 && allow_utf8) {
            size_t len = smtp_utf8_seq(s + i, n - i);
            if (len == 0)
                return false;
            i += len - 1;
        } else if (!is_atext(s[i])) {
            return false;
        }
    }
    return true;
}

/* local_append - add one decoded octet to the local part */
static bool local_append(struct smtp_path *out, const char *p, size_t len)
{
    if (out->local_len + len > SMTP_LOCAL_MAX)
        return false;
    memcpy(out->local + out->local_len, p, len);
    out->local_len += len;
    out->local[out->local_len] = '\0';
    return true;
}

/*
 * parse_local - the local part at s[0..n); sets *end to the index just past
 * it.  The decoded form goes into out->local.
 */
static enum smtp_path_error parse_local(const unsigned char *s, size_t n, unsigned flags,
                                        struct smtp_path *out, size_t *end)
{
    bool utf8_ok = flags & SMTP_PATH_ALLOW_UTF8;
    size_t i = 0;

    if (n > 0 && s[0] == '"') {
        out->quoted = true;
        for (i = 1;; i++) {
            if (i >= n)
                return SMTP_PATH_SYNTAX; /* unterminated quoted string */
            unsigned char c = s[i];
            if (c == '"')
                break;
            if (c == '\\') {
                /* quoted-pairSMTP = %d92 %d32-126 */
                if (i + 1 >= n || s[i + 1] < 32 || s[i + 1] > 126)
                    return SMTP_PATH_SYNTAX;
                i++;
                if (!local_append(out, (const char *)s + i, 1))
                    return SMTP_PATH_TOO_LONG;
            } else if (c >= 32 && c <= 126) {
                if (!local_append(out, (const char *)s + i, 1))
                    return SMTP_PATH_TOO_LONG;
            } else if (c >= 0x80) {
                size_t len = smtp_utf8_seq(s + i, n - i);
                if (len == 0)
                    return SMTP_PATH_SYNTAX;
                if (!utf8_ok)
                    return SMTP_PATH_NEED_UTF8;
                out->utf8 = true;
                if (!local_append(out, (const char *)s + i, len))
                    return SMTP_PATH_TOO_LONG;
                i += len - 1;
            } else {
                return SMTP_PATH_SYNTAX; /* control characters are never allowed */
            }
        }
        i++; /* the closing quote */
    } else {
        bool need_atom = true; /* at the start, or just after a dot */
        for (; i < n && s[i] != '@'; i++) {
            unsigned char c = s[i];
            if (c == '.') {
                if (need_atom)
                    return SMTP_PATH_SYNTAX;
                need_atom = true;
            } else if (is_atext(c)) {
                need_atom = false;
            } else if (c >= 0x80) {
                size_t len = smtp_utf8_seq(s + i, n - i);
                if (len == 0)
                    return SMTP_PATH_SYNTAX;
                if (!utf8_ok)
                    return SMTP_PATH_NEED_UTF8;
                out->utf8 = true;
                i += len - 1;
                need_atom = false;
            } else {
                return SMTP_PATH_SYNTAX;
            }
        }
        if (need_atom)
            return SMTP_PATH_SYNTAX; /* empty, or ends with a dot */
        if (!local_append(out, (const char *)s, i))
            return SMTP_PATH_TOO_LONG;
    }
    if (i > SMTP_LOCAL_MAX)
        return SMTP_PATH_TOO_LONG; /* the limit is on the local part as sent */
    *end = i;
    return SMTP_PATH_OK;
}

/* has_non_ascii - any octet >= 0x80 in s[0..n)? */
static bool has_non_ascii(const unsigned char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s[i] >= 0x80)
            return true;
    return false;
}

/* build_mailbox - write the canonical local@domain into out->mailbox */
static enum smtp_path_error build_mailbox(struct smtp_path *out, bool utf8_ok)
{
    char *m = out->mailbox;
    size_t k = 0, cap = sizeof(out->mailbox) - 1;

    if (smtp_local_is_dot_string(out->local, out->local_len, utf8_ok)) {
        if (out->local_len > cap)
            return SMTP_PATH_TOO_LONG;
        memcpy(m, out->local, out->local_len);
        k = out->local_len;
    } else {
        m[k++] = '"';
        for (size_t i = 0; i < out->local_len; i++) {
            char c = out->local[i];
            if (k + 3 > cap)
                return SMTP_PATH_TOO_LONG;
            if (c == '"' || c == '\\')
                m[k++] = '\\';
            m[k++] = c;
        }
        m[k++] = '"';
    }
    if (k + 1 + out->domain_len > cap)
        return SMTP_PATH_TOO_LONG;
    m[k++] = '@';
    memcpy(m + k, out->domain, out->domain_len);
    k += out->domain_len;
    m[k] = '\0';
    out->mailbox_len = k;
    return SMTP_PATH_OK;
}

/* parse_mailbox - Local-part "@" ( Domain / address-literal ), exactly s[0..n) */
static enum smtp_path_error parse_mailbox(const unsigned char *s, size_t n, unsigned flags,
                                          struct smtp_path *out)
{
    bool utf8_ok = flags & SMTP_PATH_ALLOW_UTF8;
    size_t at;
    enum smtp_path_error e = parse_local(s, n, flags, out, &at);
    if (e != SMTP_PATH_OK)
        return e;
    if (at >= n || s[at] != '@')
        return SMTP_PATH_SYNTAX;
    const char *domain = (const char *)s + at + 1;
    size_t dlen = n - at - 1;
    if (dlen > SMTP_DOMAIN_MAX)
        return SMTP_PATH_TOO_LONG;
    if (dlen > 0 && domain[0] == '[') {
        if (!smtp_address_literal_valid(domain, dlen))
            return SMTP_PATH_SYNTAX;
        out->domain_literal = true;
    } else if (!smtp_domain_valid(domain, dlen, utf8_ok)) {
        if (!utf8_ok && has_non_ascii((const unsigned char *)domain, dlen) &&
            smtp_domain_valid(domain, dlen, true))
            return SMTP_PATH_NEED_UTF8;
        return SMTP_PATH_SYNTAX;
    } else if (has_non_ascii((const unsigned char *)domain, dlen)) {
        out->utf8 = true;
    }
    memcpy(out->domain, domain, dlen);
    out->domain[dlen] = '\0';
    out->domain_len = dlen;
    return build_mailbox(out, utf8_ok);
}

/* parse_route - A-d-l ":" at s[0..n); *end is just past the colon */
static enum smtp_path_error parse_route(const unsigned char *s, size_t n, size_t *end)
{
    size_t i = 0;
    for (;;) {
        if (i >= n || s[i] != '@')
            return SMTP_PATH_SYNTAX;
        size_t start = ++i;
        while (i < n && s[i] != ',' && s[i] != ':')
            i++;
        if (i >= n || !smtp_domain_valid((const char *)s + start, i - start, false))
            return SMTP_PATH_SYNTAX;
        if (s[i++] == ':')
            break;
    }
    *end = i;
    return SMTP_PATH_OK;
}

/* is_postmaster - the bare word "postmaster", any case */
static bool is_postmaster(const unsigned char *s, size_t n)
{
    return n == 10 && strncasecmp((const char *)s, "postmaster", 10) == 0;
}

/* set_postmaster - fill out for a domainless <Postmaster> */
static void set_postmaster(struct smtp_path *out)
{
    out->is_postmaster = true;
    memcpy(out->local, "postmaster", 11);
    out->local_len = 10;
    memcpy(out->mailbox, "postmaster", 11);
    out->mailbox_len = 10;
}

/*
 * find_unquoted - the index of the first c in s[start..n) outside a quoted
 * string (where a backslash quotes the next octet); n if there is none, and
 * n + 1 if the input ends in the middle of a quoted pair.
 */
static size_t find_unquoted(const unsigned char *s, size_t start, size_t n, unsigned char c)
{
    bool in_quotes = false;
    size_t i = start;
    for (; i < n; i++) {
        if (in_quotes && s[i] == '\\') {
            i++;
            continue;
        }
        if (s[i] == '"')
            in_quotes = !in_quotes;
        else if (s[i] == c && !in_quotes)
            break;
    }
    return i;
}

/* smtp_path_parse - parse the path that starts at p[0] (see address.h) */
enum smtp_path_error smtp_path_parse(const char *p, size_t n, unsigned flags, struct smtp_path *out,
                                     size_t *used)
{
    const unsigned char *s = (const unsigned char *)p;
    memset(out, 0, sizeof(*out));

    if (n == 0)
        return SMTP_PATH_SYNTAX;

    if (s[0] != '<') {
        /* Legacy form: "MAIL FROM: user@host" ends at the first space that
         * is not inside a quoted local part. */
        if (!(flags & SMTP_PATH_ALLOW_BARE))
            return SMTP_PATH_SYNTAX;
        size_t i = find_unquoted(s, 0, n, ' ');
        if (i > n)
            return SMTP_PATH_SYNTAX; /* a backslash at the very end */
        if (i + 2 > SMTP_PATH_MAX)
            return SMTP_PATH_TOO_LONG;
        *used = i;
        if ((flags & SMTP_PATH_ALLOW_POSTMASTER) && is_postmaster(s, i)) {
            set_postmaster(out);
            return SMTP_PATH_OK;
        }
        return parse_mailbox(s, i, flags, out);
    }

    /* Find the closing bracket; a '>' inside a quoted local part does not count. */
    size_t i = find_unquoted(s, 1, n, '>');
    if (i >= n)
        return SMTP_PATH_SYNTAX;
    if (i + 1 > SMTP_PATH_MAX)
        return SMTP_PATH_TOO_LONG;
    out->bracketed = true;
    *used = i + 1;

    const unsigned char *c = s + 1;
    size_t len = i - 1;
    if (len == 0) {
        if (!(flags & SMTP_PATH_ALLOW_NULL))
            return SMTP_PATH_SYNTAX;
        out->is_null = true;
        return SMTP_PATH_OK;
    }
    if (c[0] == '@') {
        size_t skip;
        enum smtp_path_error e = parse_route(c, len, &skip);
        if (e != SMTP_PATH_OK)
            return e;
        out->routed = true;
        c += skip;
        len -= skip;
    }
    if (!out->routed && (flags & SMTP_PATH_ALLOW_POSTMASTER) && is_postmaster(c, len)) {
        set_postmaster(out);
        return SMTP_PATH_OK;
    }
    return parse_mailbox(c, len, flags, out);
}
