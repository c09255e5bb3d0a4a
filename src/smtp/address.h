/*
 * address.h - RFC 5321 paths: the <...> after MAIL FROM: and RCPT TO:.
 *
 * The parser turns the bytes of a path into a decoded local part and a
 * domain, and says what it saw (null path, postmaster, source route, quoted
 * local part, UTF-8).  It never allocates: results live in fixed arrays sized
 * by the RFC's own limits (§4.5.3.1).
 *
 * Both engines use it: the server for MAIL and RCPT, the client to check the
 * addresses it is asked to send.  Policy decisions (is this domain ours? is
 * "a%b" a relay trick?) are not made here; the parser only reports facts.
 */
#ifndef PIGEON_SMTP_ADDRESS_H
#define PIGEON_SMTP_ADDRESS_H

#include <stdbool.h>
#include <stddef.h>

#define SMTP_LOCAL_MAX  64  /* RFC 5321 §4.5.3.1.1 */
#define SMTP_DOMAIN_MAX 255 /* RFC 5321 §4.5.3.1.2 */
#define SMTP_PATH_MAX   256 /* RFC 5321 §4.5.3.1.3, brackets included */

/* What a caller allows; see smtp_path_parse(). */
enum smtp_path_flag {
    SMTP_PATH_ALLOW_NULL = 1 << 0,       /* "<>" (MAIL FROM) */
    SMTP_PATH_ALLOW_POSTMASTER = 1 << 1, /* "<Postmaster>" without a domain (RCPT TO) */
    SMTP_PATH_ALLOW_UTF8 = 1 << 2,       /* RFC 6531: the client said SMTPUTF8 */
    SMTP_PATH_ALLOW_BARE = 1 << 3,       /* legacy "MAIL FROM: user@host", no brackets */
};

enum smtp_path_error {
    SMTP_PATH_OK = 0,
    SMTP_PATH_SYNTAX,    /* not a path */
    SMTP_PATH_TOO_LONG,  /* past one of the §4.5.3.1 limits */
    SMTP_PATH_NEED_UTF8, /* non-ASCII without SMTPUTF8 (RFC 6531 §3.4: 553 5.6.7) */
};

struct smtp_path {
    /* The local part decoded: quotes and quoting backslashes removed. */
    char local[SMTP_LOCAL_MAX + 1];
    size_t local_len;
    /* The domain as written, or an address literal with its brackets. */
    char domain[SMTP_DOMAIN_MAX + 1];
    size_t domain_len;
    /*
     * The mailbox in canonical form, local@domain, with the local part quoted
     * only where RFC 5321 §4.1.2 needs it.  Empty for the null path and
     * "postmaster" for a bare <Postmaster>.
     */
    char mailbox[SMTP_PATH_MAX + 1];
    size_t mailbox_len;
    bool is_null;        /* <> */
    bool is_postmaster;  /* <Postmaster> with no domain */
    bool domain_literal; /* [192.0.2.1], [IPv6:...] or a general literal */
    bool quoted;         /* the local part was a quoted string */
    bool utf8;           /* non-ASCII octets somewhere */
    bool routed;         /* a source route was given (and ignored, §4.1.2) */
    bool bracketed;      /* false for the legacy bare form */
};

/*
 * smtp_path_parse - parse the path that starts at p[0] (leading spaces
 * already skipped).  On success *used is the number of bytes the path took
 * (through the '>' or to the end of a bare address) and SMTP_PATH_OK is
 * returned; out is filled.  On error out is unspecified.
 */
enum smtp_path_error smtp_path_parse(const char *p, size_t n, unsigned flags, struct smtp_path *out,
                                     size_t *used);

/* smtp_domain_valid - is d[0..n) a domain (RFC 5321 Domain, optionally with U-labels)? */
bool smtp_domain_valid(const char *d, size_t n, bool allow_utf8);

/* smtp_address_literal_valid - is d[0..n) an address literal, brackets included? */
bool smtp_address_literal_valid(const char *d, size_t n);

/* smtp_utf8_seq - length of the valid UTF-8 sequence at p (0 if invalid or ASCII) */
size_t smtp_utf8_seq(const unsigned char *p, size_t n);

/* smtp_local_is_dot_string - could local[0..n) be written without quotes? */
bool smtp_local_is_dot_string(const char *local, size_t n, bool allow_utf8);

#endif
