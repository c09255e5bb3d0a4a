/*
 * esmtp.c - parsing the ESMTP parameters of MAIL FROM and RCPT TO.
 *
 * RFC 5321 §4.1.2:
 *   Mail-parameters  = esmtp-param *(SP esmtp-param)
 *   esmtp-param      = esmtp-keyword ["=" esmtp-value]
 *   esmtp-keyword    = (ALPHA / DIGIT) *(ALPHA / DIGIT / "-")
 *   esmtp-value      = 1*(%d33-60 / %d62-126)
 * RFC 6531 §3.3 lets esmtp-value carry UTF-8 once SMTPUTF8 is in use.
 */
#include "esmtp.h"

#include <string.h>
#include <strings.h>

#include "address.h"

struct param {
    const char *key;
    size_t key_len;
    const char *value; /* NULL if there was no "=" */
    size_t value_len;
};

/* key_is - case-insensitive comparison of a parameter keyword */
static bool key_is(const struct param *p, const char *name)
{
    size_t len = strlen(name);
    return p->key_len == len && strncasecmp(p->key, name, len) == 0;
}

/* value_is - case-insensitive comparison of a parameter value */
static bool value_is(const char *v, size_t n, const char *name)
{
    size_t len = strlen(name);
    return n == len && strncasecmp(v, name, len) == 0;
}

/* is_alnum - ASCII letter or digit */
static bool is_alnum(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

/* set_error - fill *err and return -1 */
static int set_error(struct smtp_param_error *err, unsigned code, const char *enh, const char *text)
{
    err->code = code;
    err->enh = enh;
    err->text = text;
    return -1;
}

/*
 * next_param - split the next "keyword[=value]" off p[*pos..n).  Returns 1
 * with *out filled, 0 at the end, -1 on a syntax error.
 */
static int next_param(const char *p, size_t n, size_t *pos, bool utf8, struct param *out)
{
    size_t i = *pos;
    if (i >= n)
        return 0;
    if (p[i] != ' ')
        return -1;
    while (i < n && p[i] == ' ')
        i++; /* be lenient about several spaces, as Postfix is */
    if (i >= n) {
        *pos = i;
        return 0;
    }
    size_t start = i;
    if (!is_alnum((unsigned char)p[i]))
        return -1;
    while (i < n && (is_alnum((unsigned char)p[i]) || p[i] == '-'))
        i++;
    out->key = p + start;
    out->key_len = i - start;
    out->value = NULL;
    out->value_len = 0;
    if (i < n && p[i] == '=') {
        size_t vstart = ++i;
        while (i < n && p[i] != ' ') {
            unsigned char c = (unsigned char)p[i];
            if (c >= 33 && c <= 126 && c != '=') {
                i++;
            } else if (c >= 0x80 && utf8) {
                size_t len = smtp_utf8_seq((const unsigned char *)p + i, n - i);
                if (len == 0)
                    return -1;
                i += len;
            } else {
                return -1;
            }
        }
        if (i == vstart)
            return -1; /* esmtp-value is 1*char */
        out->value = p + vstart;
        out->value_len = i - vstart;
    }
    if (i < n && p[i] != ' ')
        return -1;
    *pos = i;
    return 1;
}

/* smtp_xtext_valid - RFC 3461 §4 xtext */
bool smtp_xtext_valid(const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        if (c == '+') {
            /* hexchar = "+" 2(%x30-39 / %x41-46): upper-case hex only */
            for (int k = 1; k <= 2; k++) {
                if (i + (size_t)k >= n)
                    return false;
                unsigned char h = (unsigned char)p[i + (size_t)k];
                if (!((h >= '0' && h <= '9') || (h >= 'A' && h <= 'F')))
                    return false;
            }
            i += 2;
        } else if (c < 33 || c > 126 || c == '=') {
            return false;
        }
    }
    return true;
}

/* parse_size - RFC 1870 size-value = 1*20DIGIT */
static bool parse_size(const char *v, size_t n, uint64_t *out)
{
    uint64_t value = 0;
    if (n == 0 || n > 20)
        return false;
    for (size_t i = 0; i < n; i++) {
        if (v[i] < '0' || v[i] > '9')
            return false;
        unsigned digit = (unsigned)(v[i] - '0');
        if (value > (UINT64_MAX - digit) / 10)
            value = UINT64_MAX; /* saturate: any such size is too big anyway */
        else
            value = value * 10 + digit;
    }
    *out = value;
    return true;
}

/* smtp_mail_params_parse - parameters of MAIL FROM (see esmtp.h) */
int smtp_mail_params_parse(const char *p, size_t n, unsigned offered, struct smtp_mail_params *out,
                           struct smtp_param_error *err)
{
    size_t pos = 0;
    struct param prm;
    bool seen_body = false, seen_ret = false, seen_envid = false;
    int r;

    memset(out, 0, sizeof(*out));
    while ((r = next_param(p, n, &pos, (offered & SMTP_EXT_SMTPUTF8) != 0, &prm)) == 1) {
        if (key_is(&prm, "SIZE") && (offered & SMTP_EXT_SIZE)) {
            if (out->size_given || !prm.value || !parse_size(prm.value, prm.value_len, &out->size))
                return set_error(err, 501, "5.5.4", "Syntax error in SIZE parameter");
            out->size_given = true;
        } else if (key_is(&prm, "BODY") && (offered & SMTP_EXT_8BITMIME)) {
            if (seen_body || !prm.value)
                return set_error(err, 501, "5.5.4", "Syntax error in BODY parameter");
            seen_body = true;
            if (value_is(prm.value, prm.value_len, "7BIT"))
                out->body = SMTP_BODY_7BIT;
            else if (value_is(prm.value, prm.value_len, "8BITMIME"))
                out->body = SMTP_BODY_8BITMIME;
            /* EHLO lists BINARYMIME only beside CHUNKING: binary content
             * travels in BDAT chunks only (RFC 3030 §3). */
            else if (value_is(prm.value, prm.value_len, "BINARYMIME") &&
                     (offered & SMTP_EXT_BINARYMIME) && (offered & SMTP_EXT_CHUNKING))
                out->body = SMTP_BODY_BINARYMIME;
            else
                return set_error(err, 504, "5.5.4", "BODY type not supported");
        } else if (key_is(&prm, "SMTPUTF8") && (offered & SMTP_EXT_SMTPUTF8)) {
            if (out->smtputf8 || prm.value)
                return set_error(err, 501, "5.5.4", "Syntax error in SMTPUTF8 parameter");
            out->smtputf8 = true;
        } else if (key_is(&prm, "RET") && (offered & SMTP_EXT_DSN)) {
            if (seen_ret || !prm.value)
                return set_error(err, 501, "5.5.4", "Syntax error in RET parameter");
            seen_ret = true;
            if (value_is(prm.value, prm.value_len, "FULL"))
                out->ret = SMTP_RET_FULL;
            else if (value_is(prm.value, prm.value_len, "HDRS"))
                out->ret = SMTP_RET_HDRS;
            else
                return set_error(err, 501, "5.5.4", "RET must be FULL or HDRS");
        } else if (key_is(&prm, "ENVID") && (offered & SMTP_EXT_DSN)) {
            if (seen_envid || !prm.value || prm.value_len > SMTP_ENVID_MAX ||
                !smtp_xtext_valid(prm.value, prm.value_len))
                return set_error(err, 501, "5.5.4", "Syntax error in ENVID parameter");
            seen_envid = true;
            memcpy(out->envid, prm.value, prm.value_len);
            out->envid[prm.value_len] = '\0';
            out->envid_len = prm.value_len;
        } else {
            return set_error(err, 555, "5.5.4", "Unsupported MAIL parameter");
        }
    }
    if (r < 0)
        return set_error(err, 501, "5.5.4", "Syntax error in MAIL parameters");
    return 0;
}

/* parse_notify - NOTIFY=NEVER, or a comma list of SUCCESS, FAILURE, DELAY */
static bool parse_notify(const char *v, size_t n, unsigned *out)
{
    unsigned bits = 0;
    size_t i = 0;
    while (i <= n) {
        size_t start = i;
        while (i < n && v[i] != ',')
            i++;
        const char *word = v + start;
        size_t len = i - start;
        unsigned bit;
        if (value_is(word, len, "NEVER"))
            bit = SMTP_NOTIFY_NEVER;
        else if (value_is(word, len, "SUCCESS"))
            bit = SMTP_NOTIFY_SUCCESS;
        else if (value_is(word, len, "FAILURE"))
            bit = SMTP_NOTIFY_FAILURE;
        else if (value_is(word, len, "DELAY"))
            bit = SMTP_NOTIFY_DELAY;
        else
            return false;
        if (bits & bit)
            return false;
        bits |= bit;
        i++; /* past the comma, or past the end to stop */
    }
    /* RFC 3461 §4.1: NEVER must appear alone. */
    if ((bits & SMTP_NOTIFY_NEVER) && bits != SMTP_NOTIFY_NEVER)
        return false;
    *out = bits;
    return true;
}

/* orcpt_valid - RFC 3461 §4.2 ORCPT = addr-type ";" xtext, addr-type an atom */
static bool orcpt_valid(const char *v, size_t n, bool utf8)
{
    size_t i = 0;
    while (i < n && v[i] != ';') {
        unsigned char c = (unsigned char)v[i];
        if (!(is_alnum(c) || c == '-' || c == '_' || c == '.'))
            return false;
        i++;
    }
    if (i == 0 || i >= n)
        return false;
    const char *x = v + i + 1;
    size_t xn = n - i - 1;
    if (xn == 0)
        return false;
    /* RFC 6533 utf-8-addr-xtext: with SMTPUTF8 the address may be UTF-8. */
    if (utf8) {
        for (size_t k = 0; k < xn; k++) {
            if ((unsigned char)x[k] >= 0x80) {
                size_t len = smtp_utf8_seq((const unsigned char *)x + k, xn - k);
                if (len == 0)
                    return false;
                k += len - 1;
            } else if (x[k] < 33 || x[k] > 126 || x[k] == '=') {
                return false;
            }
        }
        return true;
    }
    return smtp_xtext_valid(x, xn);
}

/* smtp_rcpt_params_parse - parameters of RCPT TO (see esmtp.h) */
int smtp_rcpt_params_parse(const char *p, size_t n, unsigned offered, bool utf8,
                           struct smtp_rcpt_params *out, struct smtp_param_error *err)
{
    size_t pos = 0;
    struct param prm;
    bool seen_notify = false;
    int r;

    memset(out, 0, sizeof(*out));
    while ((r = next_param(p, n, &pos, utf8, &prm)) == 1) {
        if (key_is(&prm, "NOTIFY") && (offered & SMTP_EXT_DSN)) {
            if (seen_notify || !prm.value || !parse_notify(prm.value, prm.value_len, &out->notify))
                return set_error(err, 501, "5.5.4", "Syntax error in NOTIFY parameter");
            seen_notify = true;
        } else if (key_is(&prm, "ORCPT") && (offered & SMTP_EXT_DSN)) {
            if (out->orcpt_len > 0 || !prm.value || prm.value_len > SMTP_ORCPT_MAX ||
                !orcpt_valid(prm.value, prm.value_len, utf8))
                return set_error(err, 501, "5.5.4", "Syntax error in ORCPT parameter");
            memcpy(out->orcpt, prm.value, prm.value_len);
            out->orcpt[prm.value_len] = '\0';
            out->orcpt_len = prm.value_len;
        } else {
            return set_error(err, 555, "5.5.4", "Unsupported RCPT parameter");
        }
    }
    if (r < 0)
        return set_error(err, 501, "5.5.4", "Syntax error in RCPT parameters");
    return 0;
}
