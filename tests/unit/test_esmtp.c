/*
 * test_esmtp.c - unit tests for src/smtp/esmtp.c: the parameters of MAIL
 * FROM (SIZE, BODY, SMTPUTF8, RET, ENVID) and RCPT TO (NOTIFY, ORCPT).
 *
 * The input of each parse is what follows the path on the command line,
 * starting with the space that separates it (RFC 5321 §4.1.2).  The replies
 * checked are the ones the server sends: 501 for a parameter given twice or
 * malformed, 504 for a BODY type not offered, 555 for a parameter that is
 * unknown or belongs to an extension the session did not offer.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "smtp/esmtp.h"

#define ALL_EXTENSIONS                                                                             \
    (SMTP_EXT_PIPELINING | SMTP_EXT_SIZE | SMTP_EXT_8BITMIME | SMTP_EXT_SMTPUTF8 |                 \
     SMTP_EXT_CHUNKING | SMTP_EXT_BINARYMIME | SMTP_EXT_DSN | SMTP_EXT_ENHANCEDSTATUSCODES)

/* The result of the last parse. */
static struct smtp_mail_params mail;
static struct smtp_rcpt_params rcpt;
static struct smtp_param_error err;

/* parse_mail - smtp_mail_params_parse() on the C string text */
static int parse_mail(const char *text, unsigned offered)
{
    memset(&err, 0, sizeof(err));
    return smtp_mail_params_parse(text, strlen(text), offered, &mail, &err);
}

/* parse_rcpt - smtp_rcpt_params_parse() on the C string text */
static int parse_rcpt(const char *text, unsigned offered, bool utf8)
{
    memset(&err, 0, sizeof(err));
    return smtp_rcpt_params_parse(text, strlen(text), offered, utf8, &rcpt, &err);
}

/* assert_refused_with - the last parse failed with this code and enhanced code */
static void assert_refused_with(int result, unsigned code, const char *enh)
{
    assert_int_equal(result, -1);
    assert_int_equal(err.code, code);
    assert_string_equal(err.enh, enh);
    assert_non_null(err.text);
}

/* ---- the parameter list --------------------------------------------------- */

static void test_no_parameters_leave_everything_unset(void **state)
{
    (void)state;
    assert_int_equal(parse_mail("", ALL_EXTENSIONS), 0);
    assert_false(mail.size_given);
    assert_int_equal(mail.body, SMTP_BODY_UNSPECIFIED);
    assert_false(mail.smtputf8);
    assert_int_equal(mail.ret, SMTP_RET_UNSPECIFIED);
    assert_int_equal(mail.envid_len, 0);
    assert_string_equal(mail.envid, "");

    assert_int_equal(parse_rcpt("", ALL_EXTENSIONS, false), 0);
    assert_int_equal(rcpt.notify, 0);
    assert_int_equal(rcpt.orcpt_len, 0);
    assert_string_equal(rcpt.orcpt, "");
}

static void test_trailing_and_repeated_spaces_are_tolerated(void **state)
{
    (void)state;
    assert_int_equal(parse_mail("   ", ALL_EXTENSIONS), 0);
    assert_int_equal(parse_mail("  SIZE=10   BODY=8BITMIME  ", ALL_EXTENSIONS), 0);
    assert_int_equal(mail.size, 10);
    assert_int_equal(mail.body, SMTP_BODY_8BITMIME);
}

static void test_every_mail_parameter_together(void **state)
{
    (void)state;
    assert_int_equal(
        parse_mail(" SIZE=1000 BODY=8BITMIME SMTPUTF8 RET=HDRS ENVID=QQ314159", ALL_EXTENSIONS), 0);
    assert_true(mail.size_given);
    assert_int_equal(mail.size, 1000);
    assert_int_equal(mail.body, SMTP_BODY_8BITMIME);
    assert_true(mail.smtputf8);
    assert_int_equal(mail.ret, SMTP_RET_HDRS);
    assert_string_equal(mail.envid, "QQ314159");
    assert_int_equal(mail.envid_len, 8);
}

static void test_keywords_and_values_are_case_insensitive(void **state)
{
    (void)state;
    assert_int_equal(parse_mail(" size=5 body=8bitmime smtputf8 ret=full", ALL_EXTENSIONS), 0);
    assert_int_equal(mail.size, 5);
    assert_int_equal(mail.body, SMTP_BODY_8BITMIME);
    assert_true(mail.smtputf8);
    assert_int_equal(mail.ret, SMTP_RET_FULL);
    assert_int_equal(parse_rcpt(" notify=success,Delay", ALL_EXTENSIONS, false), 0);
    assert_int_equal(rcpt.notify, SMTP_NOTIFY_SUCCESS | SMTP_NOTIFY_DELAY);
}

static void test_malformed_parameter_lists_get_501(void **state)
{
    (void)state;
    const char *bad[] = {
        "SIZE=10",     /* no space after the path */
        " -SIZE=10",   /* a keyword starts with a letter or digit */
        " SI_ZE=10",   /* keyword characters */
        " SIZE=",      /* esmtp-value is 1*char */
        " SIZE=1=2",   /* '=' is not a value character */
        " SIZE:10",    /* not keyword[=value] */
        " SIZE=1\t",   /* control character */
        " X=a\x7f",    /* DEL */
        " X=\xc3\xbc", /* UTF-8 while SMTPUTF8 is not offered */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_refused_with(parse_mail(bad[i], ALL_EXTENSIONS & ~SMTP_EXT_SMTPUTF8), 501, "5.5.4");
}

static void test_utf8_values_are_allowed_once_smtputf8_is_offered(void **state)
{
    (void)state;
    /* Well formed, so the keyword decides: unknown. */
    assert_refused_with(parse_mail(" X-TAG=\xc3\xbc", ALL_EXTENSIONS), 555, "5.5.4");
    /* Invalid UTF-8 is a syntax error still. */
    assert_refused_with(parse_mail(" X-TAG=\xc0\xaf", ALL_EXTENSIONS), 501, "5.5.4");
}

static void test_unknown_parameters_get_555(void **state)
{
    (void)state;
    assert_refused_with(parse_mail(" FOO=bar", ALL_EXTENSIONS), 555, "5.5.4");
    assert_refused_with(parse_mail(" SIZE=10 FOO", ALL_EXTENSIONS), 555, "5.5.4");
    assert_refused_with(parse_mail(" AUTH=<>", ALL_EXTENSIONS), 555, "5.5.4");
    assert_refused_with(parse_rcpt(" FOO=bar", ALL_EXTENSIONS, false), 555, "5.5.4");
    /* A MAIL parameter is unknown to RCPT and the other way round. */
    assert_refused_with(parse_rcpt(" SIZE=10", ALL_EXTENSIONS, false), 555, "5.5.4");
    assert_refused_with(parse_mail(" NOTIFY=NEVER", ALL_EXTENSIONS), 555, "5.5.4");
}

static void test_parameters_of_extensions_not_offered_get_555(void **state)
{
    (void)state;
    assert_refused_with(parse_mail(" SIZE=10", ALL_EXTENSIONS & ~SMTP_EXT_SIZE), 555, "5.5.4");
    assert_refused_with(parse_mail(" BODY=8BITMIME", ALL_EXTENSIONS & ~SMTP_EXT_8BITMIME), 555,
                        "5.5.4");
    assert_refused_with(parse_mail(" SMTPUTF8", ALL_EXTENSIONS & ~SMTP_EXT_SMTPUTF8), 555, "5.5.4");
    assert_refused_with(parse_mail(" RET=FULL", ALL_EXTENSIONS & ~SMTP_EXT_DSN), 555, "5.5.4");
    assert_refused_with(parse_mail(" ENVID=x", ALL_EXTENSIONS & ~SMTP_EXT_DSN), 555, "5.5.4");
    assert_refused_with(parse_rcpt(" NOTIFY=NEVER", ALL_EXTENSIONS & ~SMTP_EXT_DSN, false), 555,
                        "5.5.4");
    assert_refused_with(parse_rcpt(" ORCPT=rfc822;a@b", ALL_EXTENSIONS & ~SMTP_EXT_DSN, false), 555,
                        "5.5.4");
    /* Before EHLO nothing is offered. */
    assert_refused_with(parse_mail(" SIZE=10", 0), 555, "5.5.4");
}

static void test_first_bad_parameter_decides_the_reply(void **state)
{
    (void)state;
    assert_refused_with(parse_mail(" FOO SIZE=x", ALL_EXTENSIONS), 555, "5.5.4");
    assert_refused_with(parse_mail(" SIZE=x FOO", ALL_EXTENSIONS), 501, "5.5.4");
}

/* ---- SIZE (RFC 1870) ------------------------------------------------------ */

static void test_size_is_parsed(void **state)
{
    (void)state;
    assert_int_equal(parse_mail(" SIZE=0", ALL_EXTENSIONS), 0);
    assert_true(mail.size_given);
    assert_int_equal(mail.size, 0);
    assert_int_equal(parse_mail(" SIZE=18446744073709551615", ALL_EXTENSIONS), 0);
    assert_true(mail.size == UINT64_MAX);
}

static void test_size_past_uint64_saturates(void **state)
{
    (void)state;
    /* Twenty digits is the RFC 1870 limit; any such size is too big anyway. */
    assert_int_equal(parse_mail(" SIZE=99999999999999999999", ALL_EXTENSIONS), 0);
    assert_true(mail.size == UINT64_MAX);
    assert_int_equal(parse_mail(" SIZE=18446744073709551616", ALL_EXTENSIONS), 0);
    assert_true(mail.size == UINT64_MAX);
}

static void test_bad_sizes_get_501(void **state)
{
    (void)state;
    assert_refused_with(parse_mail(" SIZE=100000000000000000000", ALL_EXTENSIONS), 501, "5.5.4");
    assert_refused_with(parse_mail(" SIZE=12a", ALL_EXTENSIONS), 501, "5.5.4");
    assert_refused_with(parse_mail(" SIZE=-1", ALL_EXTENSIONS), 501, "5.5.4");
    assert_refused_with(parse_mail(" SIZE", ALL_EXTENSIONS), 501, "5.5.4");
    assert_refused_with(parse_mail(" SIZE=1 SIZE=1", ALL_EXTENSIONS), 501, "5.5.4");
}

/* ---- BODY (RFC 6152, RFC 3030) -------------------------------------------- */

static void test_body_types_are_parsed(void **state)
{
    (void)state;
    assert_int_equal(parse_mail(" BODY=7BIT", ALL_EXTENSIONS), 0);
    assert_int_equal(mail.body, SMTP_BODY_7BIT);
    assert_int_equal(parse_mail(" BODY=8BITMIME", ALL_EXTENSIONS), 0);
    assert_int_equal(mail.body, SMTP_BODY_8BITMIME);
    assert_int_equal(parse_mail(" BODY=BINARYMIME", ALL_EXTENSIONS), 0);
    assert_int_equal(mail.body, SMTP_BODY_BINARYMIME);
}

static void test_unsupported_body_type_gets_504(void **state)
{
    (void)state;
    assert_refused_with(parse_mail(" BODY=9BIT", ALL_EXTENSIONS), 504, "5.5.4");
    assert_refused_with(parse_mail(" BODY=BINARYMIME", ALL_EXTENSIONS & ~SMTP_EXT_BINARYMIME), 504,
                        "5.5.4");
}

static void test_binarymime_without_chunking_is_not_offered(void **state)
{
    (void)state;
    /* EHLO lists BINARYMIME only with CHUNKING (RFC 3030 §3), and binary
     * content can only travel in BDAT chunks. */
    assert_refused_with(parse_mail(" BODY=BINARYMIME", ALL_EXTENSIONS & ~SMTP_EXT_CHUNKING), 504,
                        "5.5.4");
}

static void test_bad_body_parameters_get_501(void **state)
{
    (void)state;
    assert_refused_with(parse_mail(" BODY", ALL_EXTENSIONS), 501, "5.5.4");
    assert_refused_with(parse_mail(" BODY=7BIT BODY=7BIT", ALL_EXTENSIONS), 501, "5.5.4");
    assert_refused_with(parse_mail(" BODY=7BIT BODY=8BITMIME", ALL_EXTENSIONS), 501, "5.5.4");
}

/* ---- SMTPUTF8 (RFC 6531) -------------------------------------------------- */

static void test_smtputf8_takes_no_value_and_comes_once(void **state)
{
    (void)state;
    assert_int_equal(parse_mail(" SMTPUTF8", ALL_EXTENSIONS), 0);
    assert_true(mail.smtputf8);
    assert_refused_with(parse_mail(" SMTPUTF8=yes", ALL_EXTENSIONS), 501, "5.5.4");
    assert_refused_with(parse_mail(" SMTPUTF8 SMTPUTF8", ALL_EXTENSIONS), 501, "5.5.4");
}

/* ---- RET and ENVID (RFC 3461) ------------------------------------------- */

static void test_ret_is_full_or_hdrs(void **state)
{
    (void)state;
    assert_int_equal(parse_mail(" RET=FULL", ALL_EXTENSIONS), 0);
    assert_int_equal(mail.ret, SMTP_RET_FULL);
    assert_int_equal(parse_mail(" RET=HDRS", ALL_EXTENSIONS), 0);
    assert_int_equal(mail.ret, SMTP_RET_HDRS);
    assert_refused_with(parse_mail(" RET=BODY", ALL_EXTENSIONS), 501, "5.5.4");
    assert_refused_with(parse_mail(" RET", ALL_EXTENSIONS), 501, "5.5.4");
    assert_refused_with(parse_mail(" RET=FULL RET=HDRS", ALL_EXTENSIONS), 501, "5.5.4");
}

static void test_envid_is_kept_as_sent(void **state)
{
    (void)state;
    assert_int_equal(parse_mail(" ENVID=a+2Bb+3Dc", ALL_EXTENSIONS), 0);
    assert_string_equal(mail.envid, "a+2Bb+3Dc");
    assert_int_equal(mail.envid_len, 9);
}

static void test_envid_of_100_octets_is_accepted_and_101_refused(void **state)
{
    (void)state;
    char text[200];
    char value[102];
    memset(value, 'e', sizeof(value));

    value[100] = '\0';
    snprintf(text, sizeof(text), " ENVID=%s", value);
    assert_int_equal(parse_mail(text, ALL_EXTENSIONS), 0);
    assert_int_equal(mail.envid_len, 100);

    value[100] = 'e';
    value[101] = '\0';
    snprintf(text, sizeof(text), " ENVID=%s", value);
    assert_refused_with(parse_mail(text, ALL_EXTENSIONS), 501, "5.5.4");
}

static void test_bad_envids_get_501(void **state)
{
    (void)state;
    assert_refused_with(parse_mail(" ENVID=a+2b", ALL_EXTENSIONS), 501, "5.5.4");
    assert_refused_with(parse_mail(" ENVID=a+2", ALL_EXTENSIONS), 501, "5.5.4");
    assert_refused_with(parse_mail(" ENVID=a+", ALL_EXTENSIONS), 501, "5.5.4");
    assert_refused_with(parse_mail(" ENVID=\xc3\xbc", ALL_EXTENSIONS), 501, "5.5.4");
    assert_refused_with(parse_mail(" ENVID", ALL_EXTENSIONS), 501, "5.5.4");
    assert_refused_with(parse_mail(" ENVID=a ENVID=b", ALL_EXTENSIONS), 501, "5.5.4");
}

static void test_xtext_is_hexchar_or_printable_ascii(void **state)
{
    (void)state;
    assert_true(smtp_xtext_valid("", 0));
    assert_true(smtp_xtext_valid("abc!~", 5));
    assert_true(smtp_xtext_valid("+2B+3D+00+FF", 12));
    assert_false(smtp_xtext_valid("+2b", 3)); /* upper-case hex only */
    assert_false(smtp_xtext_valid("+G0", 3));
    assert_false(smtp_xtext_valid("+2", 2));
    assert_false(smtp_xtext_valid("+", 1));
    assert_false(smtp_xtext_valid("a=b", 3));
    assert_false(smtp_xtext_valid("a b", 3));
    assert_false(smtp_xtext_valid("a\x7f", 2));
    assert_false(smtp_xtext_valid("\xc3\xbc", 2));
}

/* ---- NOTIFY (RFC 3461 §4.1) --------------------------------------------- */

static void test_notify_values_are_parsed(void **state)
{
    (void)state;
    struct {
        const char *text;
        unsigned bits;
    } good[] = {
        {" NOTIFY=NEVER", SMTP_NOTIFY_NEVER},
        {" NOTIFY=SUCCESS", SMTP_NOTIFY_SUCCESS},
        {" NOTIFY=FAILURE", SMTP_NOTIFY_FAILURE},
        {" NOTIFY=DELAY", SMTP_NOTIFY_DELAY},
        {" NOTIFY=FAILURE,DELAY", SMTP_NOTIFY_FAILURE | SMTP_NOTIFY_DELAY},
        {" NOTIFY=DELAY,SUCCESS,FAILURE",
         SMTP_NOTIFY_SUCCESS | SMTP_NOTIFY_FAILURE | SMTP_NOTIFY_DELAY},
    };
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        assert_int_equal(parse_rcpt(good[i].text, ALL_EXTENSIONS, false), 0);
        assert_int_equal(rcpt.notify, good[i].bits);
    }
}

static void test_notify_never_must_stand_alone(void **state)
{
    (void)state;
    assert_refused_with(parse_rcpt(" NOTIFY=NEVER,SUCCESS", ALL_EXTENSIONS, false), 501, "5.5.4");
    assert_refused_with(parse_rcpt(" NOTIFY=FAILURE,NEVER", ALL_EXTENSIONS, false), 501, "5.5.4");
}

static void test_bad_notify_lists_get_501(void **state)
{
    (void)state;
    const char *bad[] = {
        " NOTIFY",
        " NOTIFY=SOMETIMES",
        " NOTIFY=SUCCESS,",
        " NOTIFY=,SUCCESS",
        " NOTIFY=SUCCESS,,DELAY",
        " NOTIFY=SUCCESS,SUCCESS",
        " NOTIFY=NEVER,NEVER",
        " NOTIFY=SUCCESS NOTIFY=DELAY",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_refused_with(parse_rcpt(bad[i], ALL_EXTENSIONS, false), 501, "5.5.4");
}

/* ---- ORCPT (RFC 3461 §4.2) ---------------------------------------------- */

static void test_orcpt_is_kept_as_sent(void **state)
{
    (void)state;
    assert_int_equal(
        parse_rcpt(" NOTIFY=FAILURE ORCPT=rfc822;user+40example.org", ALL_EXTENSIONS, false), 0);
    assert_string_equal(rcpt.orcpt, "rfc822;user+40example.org");
    assert_int_equal(rcpt.orcpt_len, 25);
    assert_int_equal(rcpt.notify, SMTP_NOTIFY_FAILURE);
}

static void test_bad_orcpt_gets_501(void **state)
{
    (void)state;
    const char *bad[] = {
        " ORCPT",
        " ORCPT=rfc822",          /* no ";" */
        " ORCPT=;user@example",   /* no address type */
        " ORCPT=rfc822;",         /* no address */
        " ORCPT=rfc822;a+4",      /* a truncated hexchar */
        " ORCPT=rfc822;a+4z",     /* not hex */
        " ORCPT=rfc<822;a",       /* the address type is an atom: no specials */
        " ORCPT=rfc822;\xc3\xbc", /* UTF-8 without SMTPUTF8 */
        " ORCPT=rfc822;a ORCPT=rfc822;b",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_refused_with(parse_rcpt(bad[i], ALL_EXTENSIONS, false), 501, "5.5.4");
}

static void test_orcpt_of_500_octets_is_accepted_and_501_refused(void **state)
{
    (void)state;
    char text[600];
    char value[502];
    memcpy(value, "rfc822;", 7);
    memset(value + 7, 'o', sizeof(value) - 7);

    value[500] = '\0';
    snprintf(text, sizeof(text), " ORCPT=%s", value);
    assert_int_equal(parse_rcpt(text, ALL_EXTENSIONS, false), 0);
    assert_int_equal(rcpt.orcpt_len, 500);

    value[500] = 'o';
    value[501] = '\0';
    snprintf(text, sizeof(text), " ORCPT=%s", value);
    assert_refused_with(parse_rcpt(text, ALL_EXTENSIONS, false), 501, "5.5.4");
}

static void test_orcpt_may_carry_utf8_with_smtputf8(void **state)
{
    (void)state;
    /* RFC 6533 utf-8-addr-xtext */
    assert_int_equal(parse_rcpt(" ORCPT=utf-8;j\xc3\xb6rg@example.org", ALL_EXTENSIONS, true), 0);
    assert_string_equal(rcpt.orcpt, "utf-8;j\xc3\xb6rg@example.org");
    assert_refused_with(parse_rcpt(" ORCPT=utf-8;j\xc0\xaf@example.org", ALL_EXTENSIONS, true), 501,
                        "5.5.4");
    assert_refused_with(parse_rcpt(" ORCPT=utf-8;a=b", ALL_EXTENSIONS, true), 501, "5.5.4");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_no_parameters_leave_everything_unset),
        cmocka_unit_test(test_trailing_and_repeated_spaces_are_tolerated),
        cmocka_unit_test(test_every_mail_parameter_together),
        cmocka_unit_test(test_keywords_and_values_are_case_insensitive),
        cmocka_unit_test(test_malformed_parameter_lists_get_501),
        cmocka_unit_test(test_utf8_values_are_allowed_once_smtputf8_is_offered),
        cmocka_unit_test(test_unknown_parameters_get_555),
        cmocka_unit_test(test_parameters_of_extensions_not_offered_get_555),
        cmocka_unit_test(test_first_bad_parameter_decides_the_reply),
        cmocka_unit_test(test_size_is_parsed),
        cmocka_unit_test(test_size_past_uint64_saturates),
        cmocka_unit_test(test_bad_sizes_get_501),
        cmocka_unit_test(test_body_types_are_parsed),
        cmocka_unit_test(test_unsupported_body_type_gets_504),
        cmocka_unit_test(test_binarymime_without_chunking_is_not_offered),
        cmocka_unit_test(test_bad_body_parameters_get_501),
        cmocka_unit_test(test_smtputf8_takes_no_value_and_comes_once),
        cmocka_unit_test(test_ret_is_full_or_hdrs),
        cmocka_unit_test(test_envid_is_kept_as_sent),
        cmocka_unit_test(test_envid_of_100_octets_is_accepted_and_101_refused),
        cmocka_unit_test(test_bad_envids_get_501),
        cmocka_unit_test(test_xtext_is_hexchar_or_printable_ascii),
        cmocka_unit_test(test_notify_values_are_parsed),
        cmocka_unit_test(test_notify_never_must_stand_alone),
        cmocka_unit_test(test_bad_notify_lists_get_501),
        cmocka_unit_test(test_orcpt_is_kept_as_sent),
        cmocka_unit_test(test_bad_orcpt_gets_501),
        cmocka_unit_test(test_orcpt_of_500_octets_is_accepted_and_501_refused),
        cmocka_unit_test(test_orcpt_may_carry_utf8_with_smtputf8),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
