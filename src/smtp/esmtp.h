/*
 * esmtp.h - SMTP service extensions: which ones a session offers, and the
 * parameters they add to MAIL FROM and RCPT TO.
 *
 *   SIZE=n            RFC 1870          MAIL
 *   BODY=7BIT|8BITMIME|BINARYMIME       RFC 6152, RFC 3030   MAIL
 *   SMTPUTF8          RFC 6531          MAIL
 *   RET=FULL|HDRS, ENVID=xtext          RFC 3461 (DSN)       MAIL
 *   NOTIFY=..., ORCPT=type;xtext        RFC 3461 (DSN)       RCPT
 *
 * A parameter of an extension the session did not offer is refused as
 * unknown (555, RFC 5321 §4.1.1.11), as is a parameter given twice (501).
 */
#ifndef PIGEON_SMTP_ESMTP_H
#define PIGEON_SMTP_ESMTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Extensions, as bits of a session's "offered" set. */
enum smtp_ext {
    SMTP_EXT_PIPELINING = 1 << 0,          /* RFC 2920 */
    SMTP_EXT_SIZE = 1 << 1,                /* RFC 1870 */
    SMTP_EXT_8BITMIME = 1 << 2,            /* RFC 6152 */
    SMTP_EXT_SMTPUTF8 = 1 << 3,            /* RFC 6531 */
    SMTP_EXT_CHUNKING = 1 << 4,            /* RFC 3030 */
    SMTP_EXT_BINARYMIME = 1 << 5,          /* RFC 3030, needs CHUNKING */
    SMTP_EXT_DSN = 1 << 6,                 /* RFC 3461 */
    SMTP_EXT_ENHANCEDSTATUSCODES = 1 << 7, /* RFC 2034 */
    SMTP_EXT_STARTTLS = 1 << 8,            /* RFC 3207: the TLS work will offer it */
    SMTP_EXT_AUTH = 1 << 9,                /* RFC 4954: the AUTH work will offer it */
};

enum smtp_body {
    SMTP_BODY_UNSPECIFIED = 0,
    SMTP_BODY_7BIT,
    SMTP_BODY_8BITMIME,
    SMTP_BODY_BINARYMIME,
};

enum smtp_ret {
    SMTP_RET_UNSPECIFIED = 0,
    SMTP_RET_FULL,
    SMTP_RET_HDRS,
};

enum smtp_notify {
    SMTP_NOTIFY_NEVER = 1 << 0,
    SMTP_NOTIFY_SUCCESS = 1 << 1,
    SMTP_NOTIFY_FAILURE = 1 << 2,
    SMTP_NOTIFY_DELAY = 1 << 3,
};

#define SMTP_ENVID_MAX 100 /* RFC 3461 §4.4 */
#define SMTP_ORCPT_MAX 500 /* RFC 3461 §4.2 */

struct smtp_mail_params {
    bool size_given;
    uint64_t size;
    enum smtp_body body;
    bool smtputf8;
    enum smtp_ret ret;
    char envid[SMTP_ENVID_MAX + 1]; /* xtext as sent; "" if none */
    size_t envid_len;
};

struct smtp_rcpt_params {
    unsigned notify;                /* enum smtp_notify bits; 0 if not given */
    char orcpt[SMTP_ORCPT_MAX + 1]; /* "addr-type;xtext" as sent; "" if none */
    size_t orcpt_len;
};

/* What to reply when parameters are refused. */
struct smtp_param_error {
    unsigned code;
    const char *enh;
    const char *text;
};

/*
 * smtp_mail_params_parse - the parameters after the reverse-path, p[0..n)
 * (starting with the space that separates them, or empty).  offered is the
 * session's set of enum smtp_ext.  0 on success; -1 with *err filled.
 */
int smtp_mail_params_parse(const char *p, size_t n, unsigned offered, struct smtp_mail_params *out,
                           struct smtp_param_error *err);

/* smtp_rcpt_params_parse - the same for RCPT TO */
int smtp_rcpt_params_parse(const char *p, size_t n, unsigned offered, bool utf8,
                           struct smtp_rcpt_params *out, struct smtp_param_error *err);

/* smtp_xtext_valid - RFC 3461 §4 xtext (hexchar "+" HEX HEX, or "!".."~" but "+" and "=") */
bool smtp_xtext_valid(const char *p, size_t n);

#endif
