/*
 * test_reply.c - unit tests for src/smtp/reply.c: how replies are written
 * (RFC 5321 §4.2.1 multi-line replies, RFC 2034 enhanced status codes), how
 * text quoting a client is kept from injecting lines, and the 512-octet
 * reply line limit (§4.5.3.1.5).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "smtp/reply.h"

/* text_of - the contents of b as a C string (b holds no NUL) */
static const char *text_of(struct buf *b)
{
    assert_int_equal(buf_reserve(b, 1), 0);
    b->data[b->len] = '\0';
    return (const char *)b->data;
}

/* format - smtp_reply_format() into a fresh buffer; returns its text */
static const char *format(struct buf *b, unsigned code, const char *enh, const char *text)
{
    buf_free(b);
    buf_init(b, 4096);
    assert_int_equal(smtp_reply_format(b, code, enh, text), 0);
    return text_of(b);
}

static void test_single_line_reply(void **state)
{
    (void)state;
    struct buf b = {0};
    assert_string_equal(format(&b, 250, NULL, "Ok"), "250 Ok\r\n");
    assert_string_equal(format(&b, 250, "2.1.0", "Ok"), "250 2.1.0 Ok\r\n");
    buf_free(&b);
}

static void test_reply_is_appended_after_earlier_replies(void **state)
{
    (void)state;
    struct buf b;
    buf_init(&b, 4096);
    assert_int_equal(smtp_reply_format(&b, 250, "2.1.0", "Ok"), 0);
    assert_int_equal(smtp_reply_format(&b, 550, "5.1.1", "User unknown"), 0);
    assert_string_equal(text_of(&b), "250 2.1.0 Ok\r\n550 5.1.1 User unknown\r\n");
    buf_free(&b);
}

static void test_multi_line_reply_uses_hyphens_until_the_last_line(void **state)
{
    (void)state;
    struct buf b = {0};
    assert_string_equal(format(&b, 250, NULL, "mx.example.org\nPIPELINING\nSIZE 1000"),
                        "250-mx.example.org\r\n250-PIPELINING\r\n250 SIZE 1000\r\n");
    assert_string_equal(format(&b, 214, "2.0.0", "one\ntwo"), "214-2.0.0 one\r\n214 2.0.0 two\r\n");
    buf_free(&b);
}

static void test_control_characters_cannot_inject_a_line(void **state)
{
    (void)state;
    struct buf b = {0};
    /* A CR, a tab and DEL become '?'; only '\n' separates lines. */
    assert_string_equal(format(&b, 501, "5.1.3",
                               "bad <a\rb\tc\x7f"
                               "d>"),
                        "501 5.1.3 bad <a?b?c?d>\r\n");
    assert_string_equal(format(&b, 501, NULL, "x\r\n250 fake"), "501-x?\r\n501 250 fake\r\n");
    buf_free(&b);
}

static void test_long_lines_are_cut_to_512_octets(void **state)
{
    (void)state;
    struct buf b = {0};
    char text[1200];
    memset(text, 'x', sizeof(text) - 1);
    text[sizeof(text) - 1] = '\0';

    const char *out = format(&b, 250, NULL, text);
    assert_int_equal(strlen(out), SMTP_REPLY_LINE_MAX);
    assert_memory_equal(out, "250 xxx", 7);
    assert_memory_equal(out + SMTP_REPLY_LINE_MAX - 3, "x\r\n", 3);

    out = format(&b, 250, "2.0.0", text);
    assert_int_equal(strlen(out), SMTP_REPLY_LINE_MAX);
    assert_memory_equal(out, "250 2.0.0 xxx", 13);

    /* Each line of a multi-line reply is cut on its own. */
    text[600] = '\n';
    out = format(&b, 250, NULL, text);
    assert_int_equal(strlen(out), 2 * SMTP_REPLY_LINE_MAX);
    assert_memory_equal(out + SMTP_REPLY_LINE_MAX, "250 xxx", 7);
    buf_free(&b);
}

static void test_full_buffer_fails_and_is_left_unchanged(void **state)
{
    (void)state;
    struct buf b;
    buf_init(&b, 20);
    assert_int_equal(smtp_reply_format(&b, 250, NULL, "Ok"), 0);
    assert_int_equal(smtp_reply_format(&b, 250, "2.0.0", "first\nsecond"), -1);
    assert_int_equal(b.len, 8);
    assert_memory_equal(b.data, "250 Ok\r\n", 8);
    buf_free(&b);
}

static void test_empty_text_has_no_space_after_the_code(void **state)
{
    (void)state;
    struct buf b = {0};
    /* RFC 5321 §4.2: Reply-code [ SP textstring ] CRLF */
    assert_string_equal(format(&b, 250, NULL, ""), "250\r\n");
    assert_string_equal(format(&b, 550, "5.1.1", ""), "550 5.1.1\r\n");
    buf_free(&b);
}

static void test_enhanced_codes_are_class_subject_detail(void **state)
{
    (void)state;
    const char *good[] = {"2.0.0", "4.7.1", "5.1.10", "5.999.999"};
    const char *bad[] = {"",         "2.0",      "3.0.0", "6.0.0",  "2.0.0.", "2..0",
                         "2.0000.0", "2.0.1000", "2.a.0", "20.0.0", "2.0.0 "};
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
        assert_true(smtp_enhanced_valid(good[i], strlen(good[i])));
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_false(smtp_enhanced_valid(bad[i], strlen(bad[i])));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_single_line_reply),
        cmocka_unit_test(test_reply_is_appended_after_earlier_replies),
        cmocka_unit_test(test_multi_line_reply_uses_hyphens_until_the_last_line),
        cmocka_unit_test(test_control_characters_cannot_inject_a_line),
        cmocka_unit_test(test_long_lines_are_cut_to_512_octets),
        cmocka_unit_test(test_full_buffer_fails_and_is_left_unchanged),
        cmocka_unit_test(test_empty_text_has_no_space_after_the_code),
        cmocka_unit_test(test_enhanced_codes_are_class_subject_detail),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
