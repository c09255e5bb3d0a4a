/*
 * fuzz_esmtp.c - the ESMTP parameter parsers of MAIL FROM and RCPT TO
 * (src/smtp/esmtp.c).
 *
 * The input is what follows the path on the command line (" SIZE=100
 * BODY=8BITMIME").  Both parsers get it under several sets of offered
 * extensions, with and without SMTPUTF8.  Whatever they accept must hold up:
 *   - a parameter is only accepted when its extension is offered;
 *   - values are within their RFC limits, NUL-terminated, and well-formed
 *     (ENVID is xtext, ORCPT is addr-type ";" text, NOTIFY=NEVER stands
 *     alone);
 *   - offering more extensions never refuses what fewer accepted, nor
 *     changes what was parsed;
 * and a refusal is a 5xx reply with a valid enhanced code of its class.
 */
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "fuzz.h"
#include "smtp/esmtp.h"
#include "smtp/reply.h"

#define ALL_EXT 0x3ff

/* The offered sets tried, from nothing to everything. */
static const unsigned offers[] = {
    0,
    SMTP_EXT_SIZE,
    SMTP_EXT_8BITMIME,
    SMTP_EXT_DSN,
    SMTP_EXT_8BITMIME | SMTP_EXT_CHUNKING | SMTP_EXT_BINARYMIME,
    SMTP_EXT_SIZE | SMTP_EXT_8BITMIME | SMTP_EXT_SMTPUTF8,
    ALL_EXT & ~(unsigned)SMTP_EXT_SMTPUTF8,
    ALL_EXT,
};
#define NOFFERS (sizeof(offers) / sizeof(offers[0]))

/* check_error - a refusal is a well-formed 5xx reply */
static void check_error(const struct smtp_param_error *err)
{
    FUZZ_CHECK(err->code >= 500 && err->code <= 559, "refusal code %u", err->code);
    FUZZ_CHECK(err->enh != NULL && smtp_enhanced_valid(err->enh, strlen(err->enh)) &&
                   err->enh[0] == '5',
               "enhanced code \"%s\" for %u", err->enh ? err->enh : "(null)", err->code);
    FUZZ_CHECK(err->text != NULL && err->text[0] != '\0' && strchr(err->text, '\r') == NULL,
               "refusal text");
}

/* check_mail - what the MAIL parser accepted */
static void check_mail(const struct smtp_mail_params *m, unsigned offered)
{
    FUZZ_CHECK(!m->size_given || (offered & SMTP_EXT_SIZE), "SIZE not offered");
    FUZZ_CHECK(m->size_given || m->size == 0, "size without SIZE");
    FUZZ_CHECK(m->body <= SMTP_BODY_BINARYMIME, "body %d", (int)m->body);
    FUZZ_CHECK(m->body == SMTP_BODY_UNSPECIFIED || (offered & SMTP_EXT_8BITMIME),
               "BODY without 8BITMIME");
    FUZZ_CHECK(m->body != SMTP_BODY_BINARYMIME || (offered & SMTP_EXT_BINARYMIME),
               "BINARYMIME not offered");
    FUZZ_CHECK(!m->smtputf8 || (offered & SMTP_EXT_SMTPUTF8), "SMTPUTF8 not offered");
    FUZZ_CHECK(m->ret <= SMTP_RET_HDRS, "ret %d", (int)m->ret);
    FUZZ_CHECK((m->ret == SMTP_RET_UNSPECIFIED && m->envid_len == 0) || (offered & SMTP_EXT_DSN),
               "RET or ENVID without DSN");
    FUZZ_CHECK(m->envid_len <= SMTP_ENVID_MAX && m->envid[m->envid_len] == '\0' &&
                   strlen(m->envid) == m->envid_len,
               "ENVID length");
    FUZZ_CHECK(smtp_xtext_valid(m->envid, m->envid_len), "ENVID \"%s\" is not xtext", m->envid);
}

/* check_rcpt - what the RCPT parser accepted */
static void check_rcpt(const struct smtp_rcpt_params *r, unsigned offered, bool utf8)
{
    FUZZ_CHECK((r->notify == 0 && r->orcpt_len == 0) || (offered & SMTP_EXT_DSN),
               "NOTIFY or ORCPT without DSN");
    FUZZ_CHECK((r->notify & ~15u) == 0, "notify bits %#x", r->notify);
    FUZZ_CHECK(!(r->notify & SMTP_NOTIFY_NEVER) || r->notify == SMTP_NOTIFY_NEVER,
               "NOTIFY=NEVER with others");
    FUZZ_CHECK(r->orcpt_len <= SMTP_ORCPT_MAX && r->orcpt[r->orcpt_len] == '\0' &&
                   strlen(r->orcpt) == r->orcpt_len,
               "ORCPT length");
    if (r->orcpt_len == 0)
        return;
    const char *semi = memchr(r->orcpt, ';', r->orcpt_len);
    FUZZ_CHECK(semi != NULL && semi > r->orcpt && semi < r->orcpt + r->orcpt_len - 1,
               "ORCPT \"%s\" is not type;address", r->orcpt);
    const char *x = semi + 1;
    size_t xn = r->orcpt_len - (size_t)(x - r->orcpt);
    for (size_t i = 0; i < xn; i++)
        FUZZ_CHECK((unsigned char)x[i] > ' ' && x[i] != 0x7f && x[i] != '=',
                   "ORCPT address octet 0x%02x", (unsigned char)x[i]);
    if (!utf8)
        FUZZ_CHECK(smtp_xtext_valid(x, xn), "ORCPT \"%s\" is not xtext", r->orcpt);
}

/* same_mail - two parses of MAIL parameters agree */
static bool same_mail(const struct smtp_mail_params *a, const struct smtp_mail_params *b)
{
    return a->size_given == b->size_given && a->size == b->size && a->body == b->body &&
           a->smtputf8 == b->smtputf8 && a->ret == b->ret && a->envid_len == b->envid_len &&
           memcmp(a->envid, b->envid, a->envid_len) == 0;
}

/* same_rcpt - two parses of RCPT parameters agree */
static bool same_rcpt(const struct smtp_rcpt_params *a, const struct smtp_rcpt_params *b)
{
    return a->notify == b->notify && a->orcpt_len == b->orcpt_len &&
           memcmp(a->orcpt, b->orcpt, a->orcpt_len) == 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *in = (const char *)data;
    struct smtp_mail_params mail[NOFFERS];
    int mail_rc[NOFFERS];
    struct smtp_rcpt_params rcpt[NOFFERS][2];
    int rcpt_rc[NOFFERS][2];
    struct smtp_param_error err;

    for (size_t k = 0; k < NOFFERS; k++) {
        err = (struct smtp_param_error){0};
        mail_rc[k] = smtp_mail_params_parse(in, size, offers[k], &mail[k], &err);
        FUZZ_CHECK(mail_rc[k] == 0 || mail_rc[k] == -1, "MAIL parser returned %d", mail_rc[k]);
        if (mail_rc[k] == 0)
            check_mail(&mail[k], offers[k]);
        else
            check_error(&err);
        for (int utf8 = 0; utf8 < 2; utf8++) {
            err = (struct smtp_param_error){0};
            rcpt_rc[k][utf8] =
                smtp_rcpt_params_parse(in, size, offers[k], utf8, &rcpt[k][utf8], &err);
            if (rcpt_rc[k][utf8] == 0)
                check_rcpt(&rcpt[k][utf8], offers[k], utf8);
            else
                check_error(&err);
        }
    }
    /* More extensions (or UTF-8) never refuse what fewer accepted. */
    for (size_t a = 0; a < NOFFERS; a++) {
        for (size_t b = 0; b < NOFFERS; b++) {
            if ((offers[a] & offers[b]) != offers[a])
                continue;
            if (mail_rc[a] == 0)
                FUZZ_CHECK(mail_rc[b] == 0 && same_mail(&mail[a], &mail[b]),
                           "MAIL parameters accepted with %#x, not with %#x", offers[a], offers[b]);
            for (int u = 0; u < 2; u++) {
                for (int v = u; v < 2; v++) {
                    if (rcpt_rc[a][u] == 0)
                        FUZZ_CHECK(rcpt_rc[b][v] == 0 && same_rcpt(&rcpt[a][u], &rcpt[b][v]),
                                   "RCPT parameters accepted with %#x/%d, not with %#x/%d",
                                   offers[a], u, offers[b], v);
                }
            }
        }
    }
    FUZZ_CHECK(!smtp_xtext_valid(in, size) || memchr(in, '=', size) == NULL, "xtext with '='");
    return 0;
}
