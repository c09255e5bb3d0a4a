/*
 * message.c - struct pigeon_message: what libpigeon sends.
 *
 * The message holds the envelope (sender, recipients, DSN requests) and the
 * content.  Everything the caller gives is checked and copied here, so a
 * session never meets a bad address or an unencoded DSN value:
 *
 *   - addresses go through smtp_path_parse(), the parser the server uses,
 *     wrapped in <> with UTF-8 allowed; what RCPT TO and MAIL FROM send is
 *     the parser's canonical mailbox, so no octet of the caller's string
 *     reaches the wire unchecked.  A non-ASCII address makes the message
 *     need SMTPUTF8 (RFC 6531).  UTF-8 in the headers alone does not: it is
 *     8-bit content, sent with BODY=8BITMIME;
 *   - ORCPT and ENVID are given as plain text and xtext-encoded here (RFC
 *     3461 §4);
 *   - the content is scanned once for the BODY= it needs and its size as
 *     sent (line endings made CRLF), for SIZE= (RFC 1870).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client/internal.h"
#include "smtp/address.h"

_Static_assert((int)PIGEON_NOTIFY_NEVER == (int)SMTP_NOTIFY_NEVER &&
                   (int)PIGEON_NOTIFY_SUCCESS == (int)SMTP_NOTIFY_SUCCESS &&
                   (int)PIGEON_NOTIFY_FAILURE == (int)SMTP_NOTIFY_FAILURE &&
                   (int)PIGEON_NOTIFY_DELAY == (int)SMTP_NOTIFY_DELAY,
               "the public NOTIFY bits are the engine's");

#define ADDR_TYPE_MAX 32 /* longest ORCPT addr-type we take ("rfc822", "utf-8", "x400") */

/* pigeon_message_new - an empty message; NULL if out of memory */
PIGEON_EXPORT struct pigeon_message *pigeon_message_new(void)
{
    struct pigeon_message *m = calloc(1, sizeof(*m));
    if (m == NULL)
        return NULL;
    m->body = SMTP_BODY_7BIT;
    m->ret = SMTP_RET_UNSPECIFIED;
    return m;
}

/* rcpt_free - release one recipient's strings */
static void rcpt_free(struct libpigeon_rcpt *r)
{
    free(r->given);
    free(r->mailbox);
    free(r->orcpt);
}

/* pigeon_message_free - release it */
PIGEON_EXPORT void pigeon_message_free(struct pigeon_message *m)
{
    if (m == NULL)
        return;
    free(m->from);
    for (size_t i = 0; i < m->nrcpt; i++)
        rcpt_free(&m->rcpt[i]);
    free(m->rcpt);
    free(m->envid);
    free(m->content);
    free(m);
}

/*
 * check_address - parse address as the path <address>; the canonical
 * mailbox goes to mailbox (SMTP_PATH_MAX + 1 octets).  False if it is not
 * one whole, unrouted RFC 5321 mailbox (or <> when null_ok).
 */
static bool check_address(const char *address, bool null_ok, char *mailbox, bool *utf8)
{
    char path[SMTP_PATH_MAX + 1];
    size_t len = strlen(address);
    if (len + 2 > SMTP_PATH_MAX)
        return false;
    path[0] = '<';
    memcpy(path + 1, address, len);
    path[len + 1] = '>';

    unsigned flags = SMTP_PATH_ALLOW_UTF8 | (null_ok ? SMTP_PATH_ALLOW_NULL : 0) |
                     (null_ok ? 0 : SMTP_PATH_ALLOW_POSTMASTER);
    struct smtp_path p;
    size_t used = 0;
    if (smtp_path_parse(path, len + 2, flags, &p, &used) != SMTP_PATH_OK || used != len + 2 ||
        p.routed)
        return false;
    memcpy(mailbox, p.mailbox, p.mailbox_len + 1);
    *utf8 = p.utf8;
    return true;
}

/* pigeon_message_set_from - the envelope sender; "" for the null sender <> */
PIGEON_EXPORT int pigeon_message_set_from(struct pigeon_message *m, const char *address)
{
    char mailbox[SMTP_PATH_MAX + 1];
    bool utf8 = false;
    if (m == NULL || address == NULL || !check_address(address, true, mailbox, &utf8))
        return -1;
    char *copy = strdup(mailbox);
    if (copy == NULL)
        return -1;
    free(m->from);
    m->from = copy;
    m->from_utf8 = utf8;
    m->from_set = true;
    return 0;
}

/* pigeon_message_add_rcpt - one more envelope recipient */
PIGEON_EXPORT int pigeon_message_add_rcpt(struct pigeon_message *m, const char *address)
{
    char mailbox[SMTP_PATH_MAX + 1];
    bool utf8 = false;
    if (m == NULL || address == NULL || !check_address(address, false, mailbox, &utf8))
        return -1;
    if (m->nrcpt == m->rcpt_cap) {
        size_t cap = m->rcpt_cap ? m->rcpt_cap * 2 : 4;
        struct libpigeon_rcpt *r = realloc(m->rcpt, cap * sizeof(*r));
        if (r == NULL)
            return -1;
        m->rcpt = r;
        m->rcpt_cap = cap;
    }
    struct libpigeon_rcpt r = {strdup(address), strdup(mailbox), 0, NULL};
    if (r.given == NULL || r.mailbox == NULL) {
        rcpt_free(&r);
        return -1;
    }
    m->rcpt[m->nrcpt++] = r;
    if (utf8)
        m->utf8_rcpts++;
    return 0;
}

/*
 * xtext_encode - prefix followed by s as RFC 3461 §4 xtext: "+", "=" and
 * every octet outside "!".."~" become "+XX".  NULL if the result would be
 * longer than max octets (or no memory).
 */
static char *xtext_encode(const char *prefix, size_t prefix_len, const char *s, size_t max)
{
    static const char hex[] = "0123456789ABCDEF";
    if (prefix_len > max)
        return NULL;
    char *out = malloc(max + 1);
    if (out == NULL)
        return NULL;
    size_t k = prefix_len;
    memcpy(out, prefix, prefix_len);
    for (const unsigned char *p = (const unsigned char *)s; *p != '\0'; p++) {
        bool plain = *p >= '!' && *p <= '~' && *p != '+' && *p != '=';
        size_t need = plain ? 1 : 3;
        if (k + need > max) {
            free(out);
            return NULL;
        }
        if (plain) {
            out[k++] = (char)*p;
        } else {
            out[k++] = '+';
            out[k++] = hex[*p >> 4];
            out[k++] = hex[*p & 15];
        }
    }
    out[k] = '\0';
    return out;
}

/*
 * pigeon_message_set_notify - DSN NOTIFY and ORCPT for the last recipient
 * added.  notify is 0 (no NOTIFY), NEVER alone, or any of SUCCESS, FAILURE
 * and DELAY.  orcpt is "addr-type;address" or a plain address (taken as
 * rfc822), unencoded; NULL for none.
 */
PIGEON_EXPORT int pigeon_message_set_notify(struct pigeon_message *m, unsigned notify,
                                            const char *orcpt)
{
    if (m == NULL || m->nrcpt == 0 || (notify & ~15u) != 0 ||
        ((notify & PIGEON_NOTIFY_NEVER) && notify != PIGEON_NOTIFY_NEVER))
        return -1;
    char *encoded = NULL;
    if (orcpt != NULL) {
        const char *semi = strchr(orcpt, ';');
        char type[ADDR_TYPE_MAX + 2] = "rfc822;";
        size_t tlen = 7;
        const char *address = orcpt;
        if (semi != NULL) {
            /* RFC 3461 §4.2: addr-type is an atom; we take letters, digits and '-'. */
            tlen = (size_t)(semi - orcpt);
            if (tlen == 0 || tlen > ADDR_TYPE_MAX)
                return -1;
            for (size_t i = 0; i < tlen; i++) {
                char c = orcpt[i];
                if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                      c == '-'))
                    return -1;
            }
            memcpy(type, orcpt, tlen + 1);
            tlen++;
            address = semi + 1;
        }
        if (address[0] == '\0')
            return -1;
        encoded = xtext_encode(type, tlen, address, SMTP_ORCPT_MAX);
        if (encoded == NULL)
            return -1;
    }
    struct libpigeon_rcpt *r = &m->rcpt[m->nrcpt - 1];
    free(r->orcpt);
    r->orcpt = encoded;
    r->notify = notify;
    return 0;
}

/*
 * pigeon_message_set_dsn - DSN RET (full message or headers only) and
 * ENVID, unencoded; envid NULL or "" for none.
 */
PIGEON_EXPORT int pigeon_message_set_dsn(struct pigeon_message *m, bool return_full,
                                         const char *envid)
{
    if (m == NULL)
        return -1;
    char *encoded = NULL;
    if (envid != NULL && envid[0] != '\0') {
        encoded = xtext_encode("", 0, envid, SMTP_ENVID_MAX); /* RFC 3461 §4.4 */
        if (encoded == NULL)
            return -1;
    }
    free(m->envid);
    m->envid = encoded;
    m->ret = return_full ? SMTP_RET_FULL : SMTP_RET_HDRS;
    return 0;
}

/*
 * wire_size - the octets p[0..n) takes as SMTP text: bare CR and bare LF
 * become CRLF and a last line without an end gets one, as the engine sends
 * it.  RFC 1870 §4 counts neither the dot-stuffing nor the final ".".
 */
static uint64_t wire_size(const uint8_t *p, size_t n)
{
    uint64_t size = 0;
    bool line_start = true;
    for (size_t i = 0; i < n; i++) {
        if (p[i] == '\r' || p[i] == '\n') {
            if (p[i] == '\r' && i + 1 < n && p[i + 1] == '\n')
                i++;
            size += 2;
            line_start = true;
        } else {
            size++;
            line_start = false;
        }
    }
    return line_start ? size : size + 2;
}

/* pigeon_message_set_content - headers, a blank line, the body; copied and scanned */
PIGEON_EXPORT int pigeon_message_set_content(struct pigeon_message *m, const void *data, size_t len)
{
    if (m == NULL || (data == NULL && len > 0))
        return -1;
    uint8_t *copy = malloc(len ? len : 1);
    if (copy == NULL)
        return -1;
    if (len > 0)
        memcpy(copy, data, len);
    free(m->content);
    m->content = copy;
    m->content_len = len;
    m->body = smtp_client_body_type(copy, len);
    /* BINARYMIME goes out in BDAT chunks exactly as it is (RFC 3030 §3). */
    m->size = m->body == SMTP_BODY_BINARYMIME ? len : wire_size(copy, len);
    return 0;
}

/* libpigeon_message_smtputf8 - does the envelope need SMTPUTF8? */
bool libpigeon_message_smtputf8(const struct pigeon_message *m)
{
    return m->from_utf8 || m->utf8_rcpts > 0;
}
