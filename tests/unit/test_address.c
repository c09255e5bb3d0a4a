/*
 * test_address.c - unit tests for src/smtp/address.c, the RFC 5321 §4.1.2
 * path parser: the grammar rule by rule, the §4.5.3.1 size limits, the null
 * path and <Postmaster>, source routes, quoted local parts, address
 * literals, UTF-8 (RFC 6531), the legacy bare form, and the canonical
 * mailbox the parser builds.
 *
 * Paths are written as a client sends them, after "MAIL FROM:" or "RCPT TO:".
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "smtp/address.h"

#define MAIL_FLAGS (SMTP_PATH_ALLOW_NULL | SMTP_PATH_ALLOW_BARE)
#define RCPT_FLAGS (SMTP_PATH_ALLOW_POSTMASTER | SMTP_PATH_ALLOW_BARE)
#define UTF8       SMTP_PATH_ALLOW_UTF8

/* The result of the last parse(). */
static struct smtp_path path;
static size_t used;

/* parse - smtp_path_parse() on the C string text */
static enum smtp_path_error parse(const char *text, unsigned flags)
{
    used = 0;
    return smtp_path_parse(text, strlen(text), flags, &path, &used);
}

/* repeat - a string of n copies of c in a static buffer */
static const char *repeat(char c, size_t n)
{
    static char s[128];
    assert_true(n < sizeof(s));
    memset(s, c, n);
    s[n] = '\0';
    return s;
}

/* assert_accepted - text parses with flags to mailbox, using all of text */
static void assert_accepted(const char *text, unsigned flags, const char *mailbox)
{
    assert_int_equal(parse(text, flags), SMTP_PATH_OK);
    assert_string_equal(path.mailbox, mailbox);
    assert_int_equal(path.mailbox_len, strlen(mailbox));
    assert_int_equal(used, strlen(text));
}

/* assert_refused - text does not parse with flags, for the reason given */
static void assert_refused(const char *text, unsigned flags, enum smtp_path_error why)
{
    assert_int_equal(parse(text, flags), why);
}

/* ---- the basic path --------------------------------------------------------- */

static void test_plain_path_is_split_into_local_part_and_domain(void **state)
{
    (void)state;
    assert_int_equal(parse("<user@example.org>", RCPT_FLAGS), SMTP_PATH_OK);
    assert_string_equal(path.local, "user");
    assert_int_equal(path.local_len, 4);
    assert_string_equal(path.domain, "example.org");
    assert_int_equal(path.domain_len, 11);
    assert_string_equal(path.mailbox, "user@example.org");
    assert_int_equal(used, 18);
    assert_true(path.bracketed);
    assert_false(path.is_null);
    assert_false(path.is_postmaster);
    assert_false(path.domain_literal);
    assert_false(path.quoted);
    assert_false(path.utf8);
    assert_false(path.routed);
}

static void test_path_ends_at_the_closing_bracket(void **state)
{
    (void)state;
    assert_int_equal(parse("<user@example.org> SIZE=100", MAIL_FLAGS), SMTP_PATH_OK);
    assert_int_equal(used, 18);
}

static void test_empty_input_is_not_a_path(void **state)
{
    (void)state;
    assert_refused("", MAIL_FLAGS | RCPT_FLAGS | UTF8, SMTP_PATH_SYNTAX);
}

static void test_unclosed_bracket_is_refused(void **state)
{
    (void)state;
    assert_refused("<user@example.org", RCPT_FLAGS, SMTP_PATH_SYNTAX);
    assert_refused("<user@example.org SIZE=1", RCPT_FLAGS, SMTP_PATH_SYNTAX);
}

static void test_mailbox_without_at_sign_is_refused(void **state)
{
    (void)state;
    assert_refused("<user>", RCPT_FLAGS, SMTP_PATH_SYNTAX);
    assert_refused("<user@>", RCPT_FLAGS, SMTP_PATH_SYNTAX);
    assert_refused("<@example.org>", RCPT_FLAGS, SMTP_PATH_SYNTAX);
    assert_refused("<user@example.org@example.net>", RCPT_FLAGS, SMTP_PATH_SYNTAX);
}

/* ---- Dot-string local parts ---------------------------------------------- */

static void test_every_atext_character_is_allowed_unquoted(void **state)
{
    (void)state;
    assert_accepted("<!#$%&'*+-/=?^_`{|}~09azAZ@example.org>", RCPT_FLAGS,
                    "!#$%&'*+-/=?^_`{|}~09azAZ@example.org");
    assert_false(path.quoted);
}

static void test_dots_between_atoms_are_allowed(void **state)
{
    (void)state;
    assert_accepted("<first.middle.last@example.org>", RCPT_FLAGS, "first.middle.last@example.org");
}

static void test_leading_trailing_and_double_dots_are_refused(void **state)
{
    (void)state;
    assert_refused("<.user@example.org>", RCPT_FLAGS, SMTP_PATH_SYNTAX);
    assert_refused("<user.@example.org>", RCPT_FLAGS, SMTP_PATH_SYNTAX);
    assert_refused("<us..er@example.org>", RCPT_FLAGS, SMTP_PATH_SYNTAX);
    assert_refused("<.@example.org>", RCPT_FLAGS, SMTP_PATH_SYNTAX);
}

static void test_specials_outside_quotes_are_refused(void **state)
{
    (void)state;
    const char *bad[] = {
        "<us er@example.org>",  "<us(er@example.org>", "<us)er@example.org>",
        "<us,er@example.org>",  "<us;er@example.org>", "<us:er@example.org>",
        "<us[er@example.org>",  "<us]er@example.org>", "<us\\er@example.org>",
        "<us\"er@example.org>", "<us<er@example.org>", "<us\ter@example.org>",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_refused(bad[i], RCPT_FLAGS | UTF8, SMTP_PATH_SYNTAX);
}

/* ---- domains --------------------------------------------------------------- */

static void test_domain_labels_follow_the_ldh_rule(void **state)
{
    (void)state;
    assert_accepted("<u@a-b.c1.example>", RCPT_FLAGS, "u@a-b.c1.example");
    assert_accepted("<u@1.2.3.example>", RCPT_FLAGS, "u@1.2.3.example");
    assert_accepted("<u@localhost>", RCPT_FLAGS, "u@localhost");
    assert_accepted("<u@Example.ORG>", RCPT_FLAGS, "u@Example.ORG");
    assert_refused("<u@-a.example>", RCPT_FLAGS, SMTP_PATH_SYNTAX);
    assert_refused("<u@a-.example>", RCPT_FLAGS, SMTP_PATH_SYNTAX);
    assert_refused("<u@a..example>", RCPT_FLAGS, SMTP_PATH_SYNTAX);
    assert_refused("<u@.example>", RCPT_FLAGS, SMTP_PATH_SYNTAX);
    assert_refused("<u@example.>", RCPT_FLAGS, SMTP_PATH_SYNTAX);
    assert_refused("<u@a_b.example>", RCPT_FLAGS, SMTP_PATH_SYNTAX);
    assert_refused("<u@a b.example>", RCPT_FLAGS, SMTP_PATH_SYNTAX);
}

static void test_domain_valid_checks_labels_and_lengths(void **state)
{
    (void)state;
    char d[300];

    assert_true(smtp_domain_valid("example.org", 11, false));
    assert_false(smtp_domain_valid("", 0, false));
    assert_false(smtp_domain_valid("-", 1, false));

    /* RFC 1035: a label is at most 63 octets. */
    memset(d, 'a', 63);
    assert_true(smtp_domain_valid(d, 63, false));
    memset(d, 'a', 64);
    assert_false(smtp_domain_valid(d, 64, false));

    /* RFC 5321 §4.5.3.1.2: a domain is at most 255 octets. */
    for (size_t i = 0; i < sizeof(d); i++)
        d[i] = (i % 2) ? '.' : 'a';
    assert_true(smtp_domain_valid(d, 255, false));
    d[255] = 'b';
    assert_false(smtp_domain_valid(d, 256, false));
}

static void test_label_of_63_octets_is_accepted_and_64_refused(void **state)
{
    (void)state;
    char text[1024];
    snprintf(text, sizeof(text), "<u@%s.example>", repeat('a', 63));
    assert_int_equal(parse(text, RCPT_FLAGS), SMTP_PATH_OK);
    snprintf(text, sizeof(text), "<u@%s.example>", repeat('a', 64));
    assert_refused(text, RCPT_FLAGS, SMTP_PATH_SYNTAX);
}

/* ---- the §4.5.3.1 limits ---------------------------------------------------- */

static void test_local_part_of_64_octets_is_accepted_and_65_is_too_long(void **state)
{
    (void)state;
    char text[1024];
    snprintf(text, sizeof(text), "<%s@example.org>", repeat('l', 64));
    assert_int_equal(parse(text, RCPT_FLAGS), SMTP_PATH_OK);
    assert_int_equal(path.local_len, 64);
    snprintf(text, sizeof(text), "<%s@example.org>", repeat('l', 65));
    assert_refused(text, RCPT_FLAGS, SMTP_PATH_TOO_LONG);
}

static void test_quoted_local_part_limit_counts_the_quotes(void **state)
{
    (void)state;
    char text[1024];
    /* RFC 5321 §4.5.3.1.1 limits the local part as sent: quotes included. */
    snprintf(text, sizeof(text), "<\"%s\"@example.org>", repeat('q', 62));
    assert_int_equal(parse(text, RCPT_FLAGS), SMTP_PATH_OK);
    snprintf(text, sizeof(text), "<\"%s\"@example.org>", repeat('q', 63));
    assert_refused(text, RCPT_FLAGS, SMTP_PATH_TOO_LONG);
}

/* long_domain - a valid domain of exactly n octets (n >= 3) */
static const char *long_domain(size_t n)
{
    static char d[300];
    assert_true(n < sizeof(d));
    for (size_t i = 0; i < n; i++)
        d[i] = (i % 50 == 49) ? '.' : 'd';
    if (d[n - 1] == '.')
        d[n - 1] = 'd';
    d[n] = '\0';
    return d;
}

static void test_path_of_256_octets_is_accepted_and_257_is_too_long(void **state)
{
    (void)state;
    char text[1024];
    char local[65];
    memcpy(local, repeat('l', 64), 65);

    /* "<" + 64 + "@" + 189 + ">" = 256 */
    snprintf(text, sizeof(text), "<%s@%s>", local, long_domain(189));
    assert_int_equal(strlen(text), 256);
    assert_int_equal(parse(text, RCPT_FLAGS), SMTP_PATH_OK);
    assert_int_equal(path.mailbox_len, 254);

    snprintf(text, sizeof(text), "<%s@%s>", local, long_domain(190));
    assert_int_equal(strlen(text), 257);
    assert_refused(text, RCPT_FLAGS, SMTP_PATH_TOO_LONG);
}

static void test_source_route_counts_toward_the_path_limit(void **state)
{
    (void)state;
    char text[1024];
    /* A mailbox well within the limits, behind a route that is not. */
    snprintf(text, sizeof(text), "<@%s:u@example.org>", long_domain(250));
    assert_refused(text, RCPT_FLAGS, SMTP_PATH_TOO_LONG);
}

static void test_bare_path_limit_allows_for_the_missing_brackets(void **state)
{
    (void)state;
    char text[1024];
    snprintf(text, sizeof(text), "%s@%s", repeat('l', 64), long_domain(189));
    assert_int_equal(strlen(text), 254);
    assert_int_equal(parse(text, RCPT_FLAGS), SMTP_PATH_OK);
    snprintf(text, sizeof(text), "%s@%s", repeat('l', 64), long_domain(190));
    assert_refused(text, RCPT_FLAGS, SMTP_PATH_TOO_LONG);
}

/* ---- null path and Postmaster ----------------------------------------------- */

static void test_null_path_is_allowed_only_with_the_flag(void **state)
{
    (void)state;
    assert_int_equal(parse("<> SIZE=10", SMTP_PATH_ALLOW_NULL), SMTP_PATH_OK);
    assert_true(path.is_null);
    assert_int_equal(used, 2);
    assert_string_equal(path.mailbox, "");
    assert_int_equal(path.mailbox_len, 0);
    assert_int_equal(path.local_len, 0);
    assert_int_equal(path.domain_len, 0);
    assert_refused("<>", RCPT_FLAGS, SMTP_PATH_SYNTAX);
}

static void test_postmaster_without_domain_is_allowed_only_with_the_flag(void **state)
{
    (void)state;
    assert_accepted("<Postmaster>", SMTP_PATH_ALLOW_POSTMASTER, "postmaster");
    assert_true(path.is_postmaster);
    assert_string_equal(path.local, "postmaster");
    assert_int_equal(path.domain_len, 0);
    assert_accepted("<POSTMASTER>", SMTP_PATH_ALLOW_POSTMASTER, "postmaster");
    assert_accepted("<postmaster>", SMTP_PATH_ALLOW_POSTMASTER, "postmaster");
    assert_refused("<Postmaster>", MAIL_FLAGS, SMTP_PATH_SYNTAX);
    assert_refused("<Postmasters>", SMTP_PATH_ALLOW_POSTMASTER, SMTP_PATH_SYNTAX);
}

static void test_postmaster_with_domain_is_an_ordinary_mailbox(void **state)
{
    (void)state;
    assert_accepted("<Postmaster@example.org>", SMTP_PATH_ALLOW_POSTMASTER,
                    "Postmaster@example.org");
    assert_false(path.is_postmaster);
}

/* ---- source routes (RFC 5321 §4.1.2, accepted and ignored) ---------------- */

static void test_source_route_is_accepted_and_ignored(void **state)
{
    (void)state;
    assert_accepted("<@relay.example:user@example.org>", RCPT_FLAGS, "user@example.org");
    assert_true(path.routed);
    assert_accepted("<@a.example,@b.example,@c.example:user@example.org>", RCPT_FLAGS,
                    "user@example.org");
    assert_true(path.routed);
    assert_string_equal(path.domain, "example.org");
}

static void test_malformed_source_routes_are_refused(void **state)
{
    (void)state;
    const char *bad[] = {
        "<@relay.example>",
        "<@relay.example,user@example.org>",
        "<@:user@example.org>",
        "<@relay.example,:user@example.org>",
        "<@relay.example,relay2.example:user@example.org>",
        "<@relay.example;user@example.org>",
        "<@-relay.example:user@example.org>",
        "<@[192.0.2.1]:user@example.org>", /* At-domain takes a Domain only */
        "<@relay.example:>",
        "<@relay.example:@user@example.org>",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_refused(bad[i], RCPT_FLAGS | SMTP_PATH_ALLOW_NULL, SMTP_PATH_SYNTAX);
}

static void test_routed_postmaster_is_not_the_bare_postmaster(void **state)
{
    (void)state;
    assert_refused("<@relay.example:Postmaster>", RCPT_FLAGS, SMTP_PATH_SYNTAX);
}

/* ---- quoted local parts ------------------------------------------------------ */

static void test_quoted_local_part_is_decoded(void **state)
{
    (void)state;
    assert_accepted("<\"john doe\"@example.org>", RCPT_FLAGS, "\"john doe\"@example.org");
    assert_true(path.quoted);
    assert_string_equal(path.local, "john doe");
    assert_int_equal(path.local_len, 8);
}

static void test_quoted_pairs_are_decoded_and_reescaped_where_needed(void **state)
{
    (void)state;
    assert_accepted("<\"a\\\"b\\\\c\"@example.org>", RCPT_FLAGS, "\"a\\\"b\\\\c\"@example.org");
    assert_string_equal(path.local, "a\"b\\c");
    /* "\ " needs no backslash once quoted; "\x" needs no quotes at all. */
    assert_accepted("<\"john\\ doe\"@example.org>", RCPT_FLAGS, "\"john doe\"@example.org");
    assert_accepted("<\"\\j\\o\\e\"@example.org>", RCPT_FLAGS, "joe@example.org");
}

static void test_closing_bracket_inside_quotes_does_not_end_the_path(void **state)
{
    (void)state;
    assert_accepted("<\"a>b\"@example.org>", RCPT_FLAGS, "\"a>b\"@example.org");
    assert_string_equal(path.local, "a>b");
    assert_accepted("<\"a\\\">b\"@example.org>", RCPT_FLAGS, "\"a\\\">b\"@example.org");
}

static void test_unneeded_quotes_are_removed_from_the_mailbox(void **state)
{
    (void)state;
    assert_accepted("<\"user\"@example.org>", RCPT_FLAGS, "user@example.org");
    assert_true(path.quoted);
    assert_accepted("<\"first.last\"@example.org>", RCPT_FLAGS, "first.last@example.org");
    assert_accepted("<\"a+b=c\"@example.org>", RCPT_FLAGS, "a+b=c@example.org");
}

static void test_needed_quotes_are_kept_in_the_mailbox(void **state)
{
    (void)state;
    assert_accepted("<\"a..b\"@example.org>", RCPT_FLAGS, "\"a..b\"@example.org");
    assert_accepted("<\".a\"@example.org>", RCPT_FLAGS, "\".a\"@example.org");
    assert_accepted("<\"a.\"@example.org>", RCPT_FLAGS, "\"a.\"@example.org");
    assert_accepted("<\"a@b\"@example.org>", RCPT_FLAGS, "\"a@b\"@example.org");
    assert_accepted("<\"a,b\"@example.org>", RCPT_FLAGS, "\"a,b\"@example.org");
    assert_accepted("<\"a(b)\"@example.org>", RCPT_FLAGS, "\"a(b)\"@example.org");
}

static void test_empty_quoted_local_part_is_kept_quoted(void **state)
{
    (void)state;
    assert_accepted("<\"\"@example.org>", RCPT_FLAGS, "\"\"@example.org");
    assert_int_equal(path.local_len, 0);
}

static void test_control_characters_in_quotes_are_refused(void **state)
{
    (void)state;
    assert_refused("<\"a\tb\"@example.org>", RCPT_FLAGS, SMTP_PATH_SYNTAX);
    assert_refused("<\"a\\\tb\"@example.org>", RCPT_FLAGS, SMTP_PATH_SYNTAX);
    assert_refused("<\"a\x7f"
                   "b\"@example.org>",
                   RCPT_FLAGS, SMTP_PATH_SYNTAX);
    assert_refused("<\"a\rb\"@example.org>", RCPT_FLAGS, SMTP_PATH_SYNTAX);
}

static void test_unterminated_quoted_strings_are_refused(void **state)
{
    (void)state;
    assert_refused("<\"abc@example.org>", RCPT_FLAGS, SMTP_PATH_SYNTAX);
    assert_refused("<\"abc\\\"@example.org>", RCPT_FLAGS, SMTP_PATH_SYNTAX);
    assert_refused("<\"abc\\", RCPT_FLAGS, SMTP_PATH_SYNTAX);
    assert_refused("\"abc\\", RCPT_FLAGS, SMTP_PATH_SYNTAX);
    assert_refused("<\"abc\"def@example.org>", RCPT_FLAGS, SMTP_PATH_SYNTAX);
}

static void test_local_is_dot_string_says_when_quotes_are_needed(void **state)
{
    (void)state;
    assert_true(smtp_local_is_dot_string("a.b", 3, false));
    assert_false(smtp_local_is_dot_string("", 0, false));
    assert_false(smtp_local_is_dot_string(".a", 2, false));
    assert_false(smtp_local_is_dot_string("a.", 2, false));
    assert_false(smtp_local_is_dot_string("a..b", 4, false));
    assert_false(smtp_local_is_dot_string("a b", 3, false));
    assert_false(smtp_local_is_dot_string("\xc3\xbc", 2, false));
    assert_true(smtp_local_is_dot_string("\xc3\xbc", 2, true));
    assert_false(smtp_local_is_dot_string("\xc3", 1, true));
}

/* ---- address literals (RFC 5321 §4.1.3) ------------------------------------ */

static void test_ipv4_literal_is_accepted(void **state)
{
    (void)state;
    assert_accepted("<user@[192.0.2.1]>", RCPT_FLAGS, "user@[192.0.2.1]");
    assert_true(path.domain_literal);
    assert_string_equal(path.domain, "[192.0.2.1]");
    assert_accepted("<user@[0.0.0.0]>", RCPT_FLAGS, "user@[0.0.0.0]");
    assert_accepted("<user@[255.255.255.255]>", RCPT_FLAGS, "user@[255.255.255.255]");
}

static void test_ipv4_literal_octets_are_range_checked(void **state)
{
    (void)state;
    const char *bad[] = {
        "[256.0.0.1]", "[1.2.3.256]", "[1.2.3]",    "[1.2.3.4.5]", "[1.2.3.1234]", "[1..2.3]",
        "[ 1.2.3.4]",  "[1.2.3.4 ]",  "[1.2.3.-4]", "[]",          "[.1.2.3]",     "[1.2.3.]",
        "[a.b.c.d]",   "[1.2.3.4",    "1.2.3.4]",   "[[1.2.3.4]]",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char text[1024];
        assert_false(smtp_address_literal_valid(bad[i], strlen(bad[i])));
        snprintf(text, sizeof(text), "<user@%s>", bad[i]);
        assert_refused(text, RCPT_FLAGS, SMTP_PATH_SYNTAX);
    }
}

static void test_ipv6_literal_is_checked_by_inet_pton(void **state)
{
    (void)state;
    const char *good[] = {
        "[IPv6:2001:db8::1]",      "[IPv6:::1]", "[ipv6:::1]", "[IPv6:2001:db8:0:0:0:0:0:1]",
        "[IPv6:::ffff:192.0.2.1]",
    };
    const char *bad[] = {
        "[IPv6:2001:db8::g]",
        "[IPv6:1:2:3:4:5:6:7:8:9]",
        "[IPv6:]",
        "[IPv6:192.0.2.1]",
        "[IPv6:2001:db8:::1]",
        "[IPv6:2001:db8::1%eth0]",
        "[IPv6 ::1]",
        "[IPv6:1111:2222:3333:4444:5555:6666:7777:8888:9999:aaaa]",
    };
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        char text[1024];
        assert_true(smtp_address_literal_valid(good[i], strlen(good[i])));
        snprintf(text, sizeof(text), "<user@%s>", good[i]);
        assert_int_equal(parse(text, RCPT_FLAGS), SMTP_PATH_OK);
        assert_true(path.domain_literal);
    }
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_false(smtp_address_literal_valid(bad[i], strlen(bad[i])));
}

static void test_ipv6_literal_with_a_nul_octet_is_refused(void **state)
{
    (void)state;
    /* inet_pton() stops at the NUL; the literal must not pass on its prefix. */
    static const char literal[] = "[IPv6:::1\0junk]";
    assert_false(smtp_address_literal_valid(literal, sizeof(literal) - 1));
    static const char text[] = "<user@[IPv6:::1\0junk]>";
    assert_int_equal(smtp_path_parse(text, sizeof(text) - 1, RCPT_FLAGS, &path, &used),
                     SMTP_PATH_SYNTAX);
}

static void test_general_address_literals_are_refused(void **state)
{
    (void)state;
    /* Only the IPv6 tag was ever registered (RFC 5321 §4.1.3). */
    assert_false(smtp_address_literal_valid("[x400:c=gb]", 11));
    assert_refused("<user@[x400:c=gb]>", RCPT_FLAGS, SMTP_PATH_SYNTAX);
    assert_refused("<user@[tag:value]>", RCPT_FLAGS, SMTP_PATH_SYNTAX);
}

/* ---- UTF-8 (RFC 6531) --------------------------------------------------------- */

static void test_utf8_sequences_are_validated_per_rfc_3629(void **state)
{
    (void)state;
    struct {
        const char *bytes;
        size_t expect;
    } cases[] = {
        {"a", 0},                /* ASCII is not a sequence */
        {"\xc2\x80", 2},         /* U+0080, the first two-octet form */
        {"\xdf\xbf", 2},         /* U+07FF */
        {"\xc0\xaf", 0},         /* overlong '/' */
        {"\xc1\xbf", 0},         /* overlong */
        {"\xe0\xa0\x80", 3},     /* U+0800 */
        {"\xe0\x9f\xbf", 0},     /* overlong */
        {"\xe2\x82\xac", 3},     /* U+20AC euro sign */
        {"\xed\x9f\xbf", 3},     /* U+D7FF, just below the surrogates */
        {"\xed\xa0\x80", 0},     /* U+D800, a surrogate */
        {"\xed\xbf\xbf", 0},     /* U+DFFF, a surrogate */
        {"\xee\x80\x80", 3},     /* U+E000 */
        {"\xf0\x90\x80\x80", 4}, /* U+10000 */
        {"\xf0\x8f\xbf\xbf", 0}, /* overlong */
        {"\xf4\x8f\xbf\xbf", 4}, /* U+10FFFF, the last code point */
        {"\xf4\x90\x80\x80", 0}, /* past U+10FFFF */
        {"\xf5\x80\x80\x80", 0}, /* never valid */
        {"\xff", 0},             /* never valid */
        {"\x80", 0},             /* a lone continuation octet */
        {"\xe2\x82", 0},         /* truncated */
        {"\xe2\x28\xa1", 0},     /* a bad continuation octet */
        {"\xf0\x90\x80\x28", 0}, /* a bad last continuation octet */
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const unsigned char *b = (const unsigned char *)cases[i].bytes;
        assert_int_equal(smtp_utf8_seq(b, strlen(cases[i].bytes)), cases[i].expect);
    }
    assert_int_equal(smtp_utf8_seq((const unsigned char *)"", 0), 0);
}

static void test_utf8_address_is_accepted_with_smtputf8(void **state)
{
    (void)state;
    assert_accepted("<j\xc3\xb6rg@b\xc3\xbc"
                    "cher.example>",
                    RCPT_FLAGS | UTF8,
                    "j\xc3\xb6rg@b\xc3\xbc"
                    "cher.example");
    assert_true(path.utf8);
    assert_false(path.quoted);
}

static void test_utf8_in_the_domain_alone_sets_the_utf8_flag(void **state)
{
    (void)state;
    assert_accepted("<user@b\xc3\xbc"
                    "cher.example>",
                    RCPT_FLAGS | UTF8,
                    "user@b\xc3\xbc"
                    "cher.example");
    assert_true(path.utf8);
}

static void test_utf8_address_without_smtputf8_needs_utf8(void **state)
{
    (void)state;
    assert_refused("<j\xc3\xb6rg@example.org>", RCPT_FLAGS, SMTP_PATH_NEED_UTF8);
    assert_refused("<\"j\xc3\xb6rg\"@example.org>", RCPT_FLAGS, SMTP_PATH_NEED_UTF8);
    assert_refused("<user@b\xc3\xbc"
                   "cher.example>",
                   RCPT_FLAGS, SMTP_PATH_NEED_UTF8);
}

static void test_invalid_utf8_is_a_syntax_error_with_or_without_smtputf8(void **state)
{
    (void)state;
    const char *bad[] = {
        "<\xc0\xaf@example.org>",  "<\xed\xa0\x80@example.org>", "<\xf4\x90\x80\x80@x.org>",
        "<\x80@example.org>",      "<a\xe2\x82@example.org>",    "<\"\xc0\xaf\"@example.org>",
        "<user@\xc0\xaf.example>", "<user@a\xed\xa0\x80.org>",   "<user@\xff.example>",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_refused(bad[i], RCPT_FLAGS | UTF8, SMTP_PATH_SYNTAX);
        assert_refused(bad[i], RCPT_FLAGS, SMTP_PATH_SYNTAX);
    }
}

static void test_utf8_quoted_local_part_is_unquoted_when_it_can_be(void **state)
{
    (void)state;
    assert_accepted("<\"j\xc3\xb6rg\"@example.org>", RCPT_FLAGS | UTF8, "j\xc3\xb6rg@example.org");
    assert_accepted("<\"j\xc3\xb6 rg\"@example.org>", RCPT_FLAGS | UTF8,
                    "\"j\xc3\xb6 rg\"@example.org");
}

/* ---- the legacy bare form ("MAIL FROM: user@host") -------------------------- */

static void test_bare_address_is_accepted_only_with_the_flag(void **state)
{
    (void)state;
    assert_int_equal(parse("user@example.org SIZE=10", MAIL_FLAGS), SMTP_PATH_OK);
    assert_string_equal(path.mailbox, "user@example.org");
    assert_int_equal(used, 16);
    assert_false(path.bracketed);
    assert_refused("user@example.org", SMTP_PATH_ALLOW_NULL, SMTP_PATH_SYNTAX);
}

static void test_bare_address_with_quoted_space_ends_after_the_quotes(void **state)
{
    (void)state;
    assert_int_equal(parse("\"john doe\"@example.org NOTIFY=NEVER", RCPT_FLAGS), SMTP_PATH_OK);
    assert_string_equal(path.mailbox, "\"john doe\"@example.org");
    assert_int_equal(used, 22);
}

static void test_bare_postmaster_is_accepted(void **state)
{
    (void)state;
    assert_accepted("Postmaster", RCPT_FLAGS, "postmaster");
    assert_true(path.is_postmaster);
}

static void test_bare_forms_that_are_not_mailboxes_are_refused(void **state)
{
    (void)state;
    assert_refused("user", RCPT_FLAGS, SMTP_PATH_SYNTAX);
    assert_refused("@relay.example:user@example.org", RCPT_FLAGS, SMTP_PATH_SYNTAX);
    assert_refused("user@example.org>", RCPT_FLAGS, SMTP_PATH_SYNTAX);
    assert_refused(" user@example.org", RCPT_FLAGS, SMTP_PATH_SYNTAX);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_plain_path_is_split_into_local_part_and_domain),
        cmocka_unit_test(test_path_ends_at_the_closing_bracket),
        cmocka_unit_test(test_empty_input_is_not_a_path),
        cmocka_unit_test(test_unclosed_bracket_is_refused),
        cmocka_unit_test(test_mailbox_without_at_sign_is_refused),
        cmocka_unit_test(test_every_atext_character_is_allowed_unquoted),
        cmocka_unit_test(test_dots_between_atoms_are_allowed),
        cmocka_unit_test(test_leading_trailing_and_double_dots_are_refused),
        cmocka_unit_test(test_specials_outside_quotes_are_refused),
        cmocka_unit_test(test_domain_labels_follow_the_ldh_rule),
        cmocka_unit_test(test_domain_valid_checks_labels_and_lengths),
        cmocka_unit_test(test_label_of_63_octets_is_accepted_and_64_refused),
        cmocka_unit_test(test_local_part_of_64_octets_is_accepted_and_65_is_too_long),
        cmocka_unit_test(test_quoted_local_part_limit_counts_the_quotes),
        cmocka_unit_test(test_path_of_256_octets_is_accepted_and_257_is_too_long),
        cmocka_unit_test(test_source_route_counts_toward_the_path_limit),
        cmocka_unit_test(test_bare_path_limit_allows_for_the_missing_brackets),
        cmocka_unit_test(test_null_path_is_allowed_only_with_the_flag),
        cmocka_unit_test(test_postmaster_without_domain_is_allowed_only_with_the_flag),
        cmocka_unit_test(test_postmaster_with_domain_is_an_ordinary_mailbox),
        cmocka_unit_test(test_source_route_is_accepted_and_ignored),
        cmocka_unit_test(test_malformed_source_routes_are_refused),
        cmocka_unit_test(test_routed_postmaster_is_not_the_bare_postmaster),
        cmocka_unit_test(test_quoted_local_part_is_decoded),
        cmocka_unit_test(test_quoted_pairs_are_decoded_and_reescaped_where_needed),
        cmocka_unit_test(test_closing_bracket_inside_quotes_does_not_end_the_path),
        cmocka_unit_test(test_unneeded_quotes_are_removed_from_the_mailbox),
        cmocka_unit_test(test_needed_quotes_are_kept_in_the_mailbox),
        cmocka_unit_test(test_empty_quoted_local_part_is_kept_quoted),
        cmocka_unit_test(test_control_characters_in_quotes_are_refused),
        cmocka_unit_test(test_unterminated_quoted_strings_are_refused),
        cmocka_unit_test(test_local_is_dot_string_says_when_quotes_are_needed),
        cmocka_unit_test(test_ipv4_literal_is_accepted),
        cmocka_unit_test(test_ipv4_literal_octets_are_range_checked),
        cmocka_unit_test(test_ipv6_literal_is_checked_by_inet_pton),
        cmocka_unit_test(test_ipv6_literal_with_a_nul_octet_is_refused),
        cmocka_unit_test(test_general_address_literals_are_refused),
        cmocka_unit_test(test_utf8_sequences_are_validated_per_rfc_3629),
        cmocka_unit_test(test_utf8_address_is_accepted_with_smtputf8),
        cmocka_unit_test(test_utf8_in_the_domain_alone_sets_the_utf8_flag),
        cmocka_unit_test(test_utf8_address_without_smtputf8_needs_utf8),
        cmocka_unit_test(test_invalid_utf8_is_a_syntax_error_with_or_without_smtputf8),
        cmocka_unit_test(test_utf8_quoted_local_part_is_unquoted_when_it_can_be),
        cmocka_unit_test(test_bare_address_is_accepted_only_with_the_flag),
        cmocka_unit_test(test_bare_address_with_quoted_space_ends_after_the_quotes),
        cmocka_unit_test(test_bare_postmaster_is_accepted),
        cmocka_unit_test(test_bare_forms_that_are_not_mailboxes_are_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
