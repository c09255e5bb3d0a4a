/*
 * test_smtp_client.c - unit tests for src/smtp/client.c, the sans-I/O SMTP
 * client engine, and for the reply reader of src/smtp/reply.c that it reads
 * every server reply through.
 *
 * Each test plays the server: it feeds the engine scripted replies and
 * checks the exact bytes the engine sends back.  Covered: the flow with and
 * without PIPELINING (RFC 2920), CHUNKING and BINARYMIME (RFC 3030),
 * 8BITMIME (RFC 6152), SMTPUTF8 (RFC 6531), DSN (RFC 3461) and SIZE (RFC
 * 1870); the fallback to HELO; the body made SMTP text (RFC 5321 §4.5.2
 * dot-stuffing, CRLF line endings); BDAT framing; the fate of each
 * recipient; 421 at any point; every kind of malformed reply; servers that
 * cannot carry the message; and the RFC 5321 §4.5.3.2 timeouts.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "smtp/client.h"
#include "smtp/reply.h"

#define HELO_NAME "client.example"

/* One engine and the message it sends. */
struct fixture {
    struct smtp_client_settings settings;
    struct smtp_client_rcpt rcpt[8];
    struct smtp_client_message msg;
    struct smtp_client *c;
    char *last; /* what sent() returned last */
    size_t last_len;
};

static struct fixture fx;

/* setup - a fresh fixture: a 7-bit message from a@b to c@d */
static int setup(void **state)
{
    (void)state;
    memset(&fx, 0, sizeof(fx));
    fx.settings.helo_name = HELO_NAME;
    fx.rcpt[0].address = "c@d";
    fx.msg.from = "a@b";
    fx.msg.rcpt = fx.rcpt;
    fx.msg.nrcpt = 1;
    fx.msg.body = SMTP_BODY_7BIT;
    return 0;
}

/* teardown - release the engine */
static int teardown(void **state)
{
    (void)state;
    smtp_client_free(fx.c);
    free(fx.last);
    fx.c = NULL;
    fx.last = NULL;
    return 0;
}

/* start - create the engine for fx.msg */
static void start(void)
{
    fx.c = smtp_client_new(&fx.settings, &fx.msg);
    assert_non_null(fx.c);
}

/* server_n - the server sends p[0..n) in one piece; all of it must be taken */
static void server_n(const void *p, size_t n)
{
    size_t used = smtp_client_feed(fx.c, p, n);
    if (smtp_client_want(fx.c) != SMTP_CLIENT_DONE)
        assert_int_equal(used, n);
}

/* server - the server sends the C string text in one piece */
static void server(const char *text)
{
    server_n(text, strlen(text));
}

/* sent - what the client has sent since the last call (NUL-terminated); marks it sent */
static const char *sent(void)
{
    struct buf *o = smtp_client_output(fx.c);
    free(fx.last);
    fx.last = malloc(o->len + 1);
    assert_non_null(fx.last);
    if (o->len > 0)
        memcpy(fx.last, o->data, o->len);
    fx.last[o->len] = '\0';
    fx.last_len = o->len;
    smtp_client_output_sent(fx.c);
    return fx.last;
}

/* body - hand over a piece of the message (the engine must be asking for it) */
static void body(const char *text, bool last)
{
    assert_int_equal(smtp_client_want(fx.c), SMTP_CLIENT_WANT_BODY);
    smtp_client_body(fx.c, (const uint8_t *)text, strlen(text), last);
}

/* result - the engine's result (it must be done) */
static const struct smtp_client_result *result(void)
{
    assert_int_equal(smtp_client_want(fx.c), SMTP_CLIENT_DONE);
    return smtp_client_result(fx.c);
}

/* greet - the greeting and EHLO exchange, ending with the server's EHLO reply */
static void greet(const char *ehlo_reply)
{
    start();
    assert_string_equal(sent(), "");
    assert_int_equal(smtp_client_want(fx.c), SMTP_CLIENT_WANT_READ);
    server("220 mx.example ESMTP\r\n");
    assert_string_equal(sent(), "EHLO " HELO_NAME "\r\n");
    server(ehlo_reply);
}

/* finish_quit - the client says QUIT and the server answers */
static void finish_quit(void)
{
    assert_string_equal(sent(), "QUIT\r\n");
    assert_int_equal(smtp_client_want(fx.c), SMTP_CLIENT_WANT_READ);
    server("221 2.0.0 Bye\r\n");
    assert_int_equal(smtp_client_want(fx.c), SMTP_CLIENT_DONE);
}

/* expect_protocol - the session ended as a protocol error whose text mentions what */
static void expect_protocol(const char *what)
{
    const struct smtp_client_result *r = result();
    assert_int_equal(r->status, SMTP_CLIENT_PROTOCOL);
    if (strstr(r->error, what) == NULL)
        fail_msg("error \"%s\" does not mention \"%s\"", r->error, what);
}

#define EHLO_PLAIN "250 mx.example\r\n"
#define EHLO_PIPE  "250-mx.example\r\n250 PIPELINING\r\n"
#define EHLO_ALL                                                                                   \
    "250-mx.example\r\n250-PIPELINING\r\n250-SIZE 10000\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n"       \
    "250-CHUNKING\r\n250-BINARYMIME\r\n250-DSN\r\n250 ENHANCEDSTATUSCODES\r\n"

/* ---- the normal flow ------------------------------------------------------------ */

static void test_plain_server_gets_one_command_at_a_time(void **state)
{
    (void)state;
    greet(EHLO_PLAIN);
    assert_string_equal(sent(), "MAIL FROM:<a@b>\r\n");
    server("250 2.1.0 Ok\r\n");
    assert_string_equal(sent(), "RCPT TO:<c@d>\r\n");
    server("250 2.1.5 Ok\r\n");
    assert_string_equal(sent(), "DATA\r\n");
    server("354 Go ahead\r\n");
    body("Subject: hi\r\n\r\nhello\r\n", true);
    assert_string_equal(sent(), "Subject: hi\r\n\r\nhello\r\n.\r\n");
    assert_int_equal(smtp_client_want(fx.c), SMTP_CLIENT_WANT_READ);
    server("250 2.0.0 Queued as 1234\r\n");
    finish_quit();

    const struct smtp_client_result *r = result();
    assert_int_equal(r->status, SMTP_CLIENT_SENT);
    assert_int_equal(r->final.code, 250);
    assert_string_equal(r->final.enh, "2.0.0");
    assert_string_equal(r->final.text, "2.0.0 Queued as 1234");
    assert_int_equal(r->rcpt[0].code, 250);
    assert_string_equal(r->rcpt[0].text, "2.0.0 Queued as 1234");
    assert_int_equal(r->extensions, 0);
}

static void test_pipelining_sends_mail_rcpt_and_data_in_one_write(void **state)
{
    (void)state;
    fx.msg.size = 123;
    fx.msg.body = SMTP_BODY_8BITMIME;
    greet("250-mx.example\r\n250-PIPELINING\r\n250-SIZE 1000\r\n250 8BITMIME\r\n");
    assert_string_equal(sent(),
                        "MAIL FROM:<a@b> SIZE=123 BODY=8BITMIME\r\nRCPT TO:<c@d>\r\nDATA\r\n");
    assert_int_equal(smtp_client_want(fx.c), SMTP_CLIENT_WANT_READ);
    server("250 Ok\r\n250 Ok\r\n354 Go\r\n");
    body("caf\xc3\xa9\n", true);
    assert_string_equal(sent(), "caf\xc3\xa9\r\n.\r\n");
    server("250 Ok\r\n");
    finish_quit();
    assert_int_equal(result()->status, SMTP_CLIENT_SENT);
    assert_int_equal(result()->extensions, SMTP_EXT_PIPELINING | SMTP_EXT_SIZE | SMTP_EXT_8BITMIME);
}

static void test_pipelining_replies_may_arrive_one_at_a_time(void **state)
{
    (void)state;
    fx.rcpt[1].address = "e@f";
    fx.msg.nrcpt = 2;
    greet(EHLO_PIPE);
    assert_string_equal(sent(), "MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nRCPT TO:<e@f>\r\nDATA\r\n");
    server("250 Ok\r\n");
    assert_string_equal(sent(), "");
    server("250 Ok\r");
    server("\n25");
    server("0 Ok\r\n354 ");
    assert_int_equal(smtp_client_want(fx.c), SMTP_CLIENT_WANT_READ);
    server("Go\r\n");
    body("x\n", true);
    assert_string_equal(sent(), "x\r\n.\r\n");
    server("250 Ok\r\n");
    finish_quit();
    assert_int_equal(result()->status, SMTP_CLIENT_SENT);
}

static void test_extensions_are_not_used_unless_the_message_needs_them(void **state)
{
    (void)state;
    /* A 7-bit message of unknown size to a server offering everything. */
    fx.msg.size = 0;
    greet(EHLO_ALL);
    assert_string_equal(sent(), "MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\n");
    server("250 Ok\r\n250 Ok\r\n");
    body("hi\n", true);
    assert_string_equal(sent(), "BDAT 4 LAST\r\nhi\r\n");
}

static void test_null_sender_is_sent_as_empty_brackets(void **state)
{
    (void)state;
    fx.msg.from = "";
    greet(EHLO_PLAIN);
    assert_string_equal(sent(), "MAIL FROM:<>\r\n");
}

static void test_ehlo_keywords_are_case_insensitive_and_size_is_read(void **state)
{
    (void)state;
    fx.msg.size = 2000;
    greet("250-mx.example says hello\r\n250-pipelining\r\n250-size 1000\r\n250 8bitmime\r\n");
    assert_string_equal(sent(), "QUIT\r\n");
    server("221 Bye\r\n");
    const struct smtp_client_result *r = result();
    assert_int_equal(r->status, SMTP_CLIENT_UNSUITABLE);
    assert_int_equal(r->extensions, SMTP_EXT_PIPELINING | SMTP_EXT_SIZE | SMTP_EXT_8BITMIME);
}

static void test_smtputf8_is_declared_when_the_message_needs_it(void **state)
{
    (void)state;
    fx.msg.from = "jos\xc3\xa9@example.org";
    fx.msg.smtputf8 = true;
    fx.msg.body = SMTP_BODY_8BITMIME;
    greet("250-mx.example\r\n250-8BITMIME\r\n250 SMTPUTF8\r\n");
    assert_string_equal(sent(), "MAIL FROM:<jos\xc3\xa9@example.org> BODY=8BITMIME SMTPUTF8\r\n");
}

static void test_dsn_parameters_go_out_when_dsn_is_offered(void **state)
{
    (void)state;
    fx.msg.ret = SMTP_RET_HDRS;
    fx.msg.envid = "QQ314159";
    fx.rcpt[0].notify = SMTP_NOTIFY_SUCCESS | SMTP_NOTIFY_FAILURE | SMTP_NOTIFY_DELAY;
    fx.rcpt[0].orcpt = "rfc822;c@d";
    fx.rcpt[1].address = "e@f";
    fx.rcpt[1].notify = SMTP_NOTIFY_NEVER;
    fx.msg.nrcpt = 2;
    greet("250-mx.example\r\n250-PIPELINING\r\n250 DSN\r\n");
    assert_string_equal(sent(), "MAIL FROM:<a@b> RET=HDRS ENVID=QQ314159\r\n"
                                "RCPT TO:<c@d> NOTIFY=SUCCESS,FAILURE,DELAY ORCPT=rfc822;c@d\r\n"
                                "RCPT TO:<e@f> NOTIFY=NEVER\r\n"
                                "DATA\r\n");
}

static void test_dsn_parameters_are_left_out_without_dsn(void **state)
{
    (void)state;
    fx.msg.ret = SMTP_RET_FULL;
    fx.msg.envid = "QQ314159";
    fx.rcpt[0].notify = SMTP_NOTIFY_FAILURE;
    fx.rcpt[0].orcpt = "rfc822;c@d";
    greet(EHLO_PIPE);
    assert_string_equal(sent(), "MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n");
}

static void test_size_is_left_out_when_not_offered(void **state)
{
    (void)state;
    fx.msg.size = 5000;
    greet(EHLO_PIPE);
    assert_string_equal(sent(), "MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n");
}

static void test_size_zero_in_ehlo_means_no_limit(void **state)
{
    (void)state;
    fx.msg.size = 99999999;
    greet("250-mx.example\r\n250 SIZE 0\r\n");
    assert_string_equal(sent(), "MAIL FROM:<a@b> SIZE=99999999\r\n");
}

/* ---- EHLO refused ---------------------------------------------------------------- */

static void test_ehlo_refused_falls_back_to_helo(void **state)
{
    (void)state;
    greet("500 5.5.1 What?\r\n");
    assert_string_equal(sent(), "HELO " HELO_NAME "\r\n");
    server("250 mx.example\r\n");
    assert_string_equal(sent(), "MAIL FROM:<a@b>\r\n");
    server("250 Ok\r\n");
    assert_string_equal(sent(), "RCPT TO:<c@d>\r\n");
    server("250 Ok\r\n");
    assert_string_equal(sent(), "DATA\r\n");
    server("354 Go\r\n");
    body("a", true);
    assert_string_equal(sent(), "a\r\n.\r\n");
    server("250 Ok\r\n");
    finish_quit();
    assert_int_equal(result()->status, SMTP_CLIENT_SENT);
}

static void test_helo_refused_ends_the_session(void **state)
{
    (void)state;
    greet("502 No\r\n");
    assert_string_equal(sent(), "HELO " HELO_NAME "\r\n");
    server("550 Go away\r\n");
    finish_quit();
    const struct smtp_client_result *r = result();
    assert_int_equal(r->status, SMTP_CLIENT_PERMFAIL);
    assert_int_equal(r->final.code, 550);
    assert_int_equal(r->rcpt[0].code, 550);
}

static void test_ehlo_temporary_failure_is_tempfail(void **state)
{
    (void)state;
    greet("451 Try later\r\n");
    finish_quit();
    assert_int_equal(result()->status, SMTP_CLIENT_TEMPFAIL);
    assert_int_equal(result()->final.code, 451);
}

/* ---- servers that cannot carry the message --------------------------------------- */

static void test_8bit_body_without_8bitmime_is_unsuitable_and_only_quit_follows(void **state)
{
    (void)state;
    fx.msg.body = SMTP_BODY_8BITMIME;
    greet(EHLO_PIPE);
    assert_string_equal(sent(), "QUIT\r\n");
    server("221 Bye\r\n");
    const struct smtp_client_result *r = result();
    assert_int_equal(r->status, SMTP_CLIENT_UNSUITABLE);
    assert_non_null(strstr(r->error, "8BITMIME"));
    assert_int_equal(r->rcpt[0].code, 0);
    assert_null(r->rcpt[0].text);
}

static void test_8bit_body_to_a_helo_server_is_unsuitable(void **state)
{
    (void)state;
    fx.msg.body = SMTP_BODY_8BITMIME;
    greet("500 No EHLO here\r\n");
    assert_string_equal(sent(), "HELO " HELO_NAME "\r\n");
    server("250 Ok\r\n");
    finish_quit();
    assert_int_equal(result()->status, SMTP_CLIENT_UNSUITABLE);
}

static void test_utf8_address_without_smtputf8_is_unsuitable(void **state)
{
    (void)state;
    fx.rcpt[0].address = "\xc3\xa9@d";
    fx.msg.smtputf8 = true;
    greet("250-mx.example\r\n250 8BITMIME\r\n");
    finish_quit();
    assert_int_equal(result()->status, SMTP_CLIENT_UNSUITABLE);
    assert_non_null(strstr(result()->error, "SMTPUTF8"));
}

static void test_binary_body_needs_binarymime_and_chunking(void **state)
{
    (void)state;
    fx.msg.body = SMTP_BODY_BINARYMIME;
    greet("250-mx.example\r\n250-8BITMIME\r\n250 BINARYMIME\r\n"); /* no CHUNKING */
    finish_quit();
    assert_int_equal(result()->status, SMTP_CLIENT_UNSUITABLE);
    assert_non_null(strstr(result()->error, "BINARYMIME"));
}

static void test_size_over_the_servers_limit_is_unsuitable(void **state)
{
    (void)state;
    fx.msg.size = 10001;
    greet(EHLO_ALL);
    finish_quit();
    const struct smtp_client_result *r = result();
    assert_int_equal(r->status, SMTP_CLIENT_UNSUITABLE);
    assert_non_null(strstr(r->error, "10001"));
    assert_non_null(strstr(r->error, "10000"));
}

static void test_size_at_the_servers_limit_is_sent(void **state)
{
    (void)state;
    fx.msg.size = 10000;
    greet(EHLO_ALL);
    assert_string_equal(sent(), "MAIL FROM:<a@b> SIZE=10000\r\nRCPT TO:<c@d>\r\n");
}

/* ---- the body as SMTP text (DATA) ---------------------------------------------------- */

/* data_body - go through a plain DATA session up to the 354 */
static void data_body(void)
{
    greet(EHLO_PIPE);
    assert_string_equal(sent(), "MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n");
    server("250 Ok\r\n250 Ok\r\n354 Go\r\n");
}

static void test_body_bare_lf_becomes_crlf(void **state)
{
    (void)state;
    data_body();
    body("one\ntwo\r\nthree\n", true);
    assert_string_equal(sent(), "one\r\ntwo\r\nthree\r\n.\r\n");
}

static void test_body_bare_cr_becomes_crlf(void **state)
{
    (void)state;
    data_body();
    body("one\rtwo\r\r\nthree\r", true);
    assert_string_equal(sent(), "one\r\ntwo\r\n\r\nthree\r\n.\r\n");
}

static void test_body_leading_dots_are_doubled(void **state)
{
    (void)state;
    /* RFC 5321 §4.5.2 */
    data_body();
    body(".\n..x\nmid.dle\r\n.\r.end", true);
    assert_string_equal(sent(), "..\r\n...x\r\nmid.dle\r\n..\r\n..end\r\n.\r\n");
}

static void test_body_lone_dot_line_cannot_end_the_message_early(void **state)
{
    (void)state;
    data_body();
    body("a\r\n.\r\nMAIL FROM:<evil@x>\r\n", true);
    assert_string_equal(sent(), "a\r\n..\r\nMAIL FROM:<evil@x>\r\n.\r\n");
}

static void test_body_without_a_final_line_end_gets_one(void **state)
{
    (void)state;
    data_body();
    body("no newline", true);
    assert_string_equal(sent(), "no newline\r\n.\r\n");
}

static void test_empty_body_is_just_the_dot(void **state)
{
    (void)state;
    data_body();
    body("", true);
    assert_string_equal(sent(), ".\r\n");
}

static void test_body_in_pieces_converts_like_one_piece(void **state)
{
    (void)state;
    static const char text[] = ".a\r\n.\r\rb\n\r.\n.c\r";
    static const char want[] = "..a\r\n..\r\n\r\nb\r\n\r\n..\r\n..c\r\n.\r\n";
    /* Split at every point, and byte by byte. */
    for (size_t cut = 0; cut <= sizeof(text) - 1; cut++) {
        teardown(NULL);
        setup(NULL);
        data_body();
        smtp_client_body(fx.c, (const uint8_t *)text, cut, false);
        smtp_client_body(fx.c, (const uint8_t *)text + cut, sizeof(text) - 1 - cut, true);
        assert_string_equal(sent(), want);
    }
    teardown(NULL);
    setup(NULL);
    data_body();
    for (size_t i = 0; i < sizeof(text) - 1; i++) {
        assert_int_equal(smtp_client_want(fx.c), SMTP_CLIENT_WANT_BODY);
        smtp_client_body(fx.c, (const uint8_t *)text + i, 1, false);
    }
    smtp_client_body(fx.c, NULL, 0, true);
    assert_string_equal(sent(), want);
}

static void test_body_may_come_with_many_pieces_before_it_is_sent(void **state)
{
    (void)state;
    data_body();
    body("a\n", false);
    body("b\n", false);
    assert_string_equal(sent(), "a\r\nb\r\n");
    body("c", true);
    assert_string_equal(sent(), "c\r\n.\r\n");
    assert_int_equal(smtp_client_want(fx.c), SMTP_CLIENT_WANT_READ);
}

static void test_body_piece_too_big_for_the_output_ends_the_session_unsent(void **state)
{
    (void)state;
    /* Past the engine's 64 MB output limit: the message must not go out cut
     * short with a terminating dot after it. */
    size_t n = 65u * 1024 * 1024;
    uint8_t *big = malloc(n);
    assert_non_null(big);
    memset(big, 'a', n);
    for (size_t i = 99; i < n; i += 100)
        big[i] = '\n';
    data_body();
    assert_int_equal(smtp_client_want(fx.c), SMTP_CLIENT_WANT_BODY);
    smtp_client_body(fx.c, big, n, true);
    free(big);
    const struct smtp_client_result *r = result();
    assert_int_equal(r->status, SMTP_CLIENT_TEMPFAIL);
    assert_int_equal(smtp_client_output(fx.c)->len, 0);
    assert_true(r->error[0] != '\0');
}

/* ---- BDAT (RFC 3030) ------------------------------------------------------------------ */

static void test_bdat_frames_each_chunk_with_its_exact_size(void **state)
{
    (void)state;
    greet("250-mx.example\r\n250-PIPELINING\r\n250 CHUNKING\r\n");
    assert_string_equal(sent(), "MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\n");
    server("250 Ok\r\n250 Ok\r\n");
    body("hello\n", false);
    assert_string_equal(sent(), "BDAT 7\r\nhello\r\n");
    /* With PIPELINING the next chunk goes before the first one's reply. */
    body(".world", false);
    assert_string_equal(sent(), "BDAT 6\r\n.world");
    body("", true);
    assert_string_equal(sent(), "BDAT 2 LAST\r\n\r\n");
    server("250 2.0.0 chunk\r\n250 2.0.0 chunk\r\n");
    assert_string_equal(sent(), "");
    server("250 2.0.0 Queued\r\n");
    finish_quit();
    assert_int_equal(result()->status, SMTP_CLIENT_SENT);
    assert_string_equal(result()->rcpt[0].text, "2.0.0 Queued");
}

static void test_bdat_converts_line_endings_but_does_not_stuff_dots(void **state)
{
    (void)state;
    greet("250-mx.example\r\n250 CHUNKING\r\n");
    assert_string_equal(sent(), "MAIL FROM:<a@b>\r\n");
    server("250 Ok\r\n");
    assert_string_equal(sent(), "RCPT TO:<c@d>\r\n");
    server("250 Ok\r\n");
    assert_string_equal(sent(), "");
    body(".\nx\ry", true);
    assert_string_equal(sent(), "BDAT 9 LAST\r\n.\r\nx\r\ny\r\n");
}

static void test_bdat_without_pipelining_waits_for_each_chunk(void **state)
{
    (void)state;
    greet("250-mx.example\r\n250 CHUNKING\r\n");
    sent();
    server("250 Ok\r\n");
    sent();
    server("250 Ok\r\n");
    body("abc\r\n", false);
    assert_string_equal(sent(), "BDAT 5\r\nabc\r\n");
    assert_int_equal(smtp_client_want(fx.c), SMTP_CLIENT_WANT_READ);
    assert_int_equal(smtp_client_timeout(fx.c), 180);
    server("250 Ok\r\n");
    body("def\r\n", true);
    assert_string_equal(sent(), "BDAT 5 LAST\r\ndef\r\n");
    assert_int_equal(smtp_client_timeout(fx.c), 600);
    server("250 Ok\r\n");
    finish_quit();
    assert_int_equal(result()->status, SMTP_CLIENT_SENT);
}

static void test_bdat_pipelining_keeps_a_bounded_number_of_chunks_in_flight(void **state)
{
    (void)state;
    greet("250-mx.example\r\n250-PIPELINING\r\n250 CHUNKING\r\n");
    sent();
    server("250 Ok\r\n250 Ok\r\n");
    int chunks = 0;
    while (smtp_client_want(fx.c) == SMTP_CLIENT_WANT_BODY) {
        body("x\r\n", false);
        chunks++;
        assert_true(chunks < 100);
    }
    assert_int_equal(chunks, 8);
    server("250 Ok\r\n");
    assert_int_equal(smtp_client_want(fx.c), SMTP_CLIENT_WANT_BODY);
}

static void test_binarymime_body_is_sent_unchanged(void **state)
{
    (void)state;
    fx.msg.body = SMTP_BODY_BINARYMIME;
    fx.msg.size = 7;
    greet(EHLO_ALL);
    assert_string_equal(sent(), "MAIL FROM:<a@b> SIZE=7 BODY=BINARYMIME\r\nRCPT TO:<c@d>\r\n");
    server("250 Ok\r\n250 Ok\r\n");
    assert_int_equal(smtp_client_want(fx.c), SMTP_CLIENT_WANT_BODY);
    smtp_client_body(fx.c, (const uint8_t *)"a\0\n.\r\rb", 7, true);
    sent();
    assert_int_equal(fx.last_len, 13 + 7);
    assert_memory_equal(fx.last, "BDAT 7 LAST\r\na\0\n.\r\rb", 13 + 7);
}

static void test_bdat_chunk_refused_ends_the_message_with_quit(void **state)
{
    (void)state;
    greet("250-mx.example\r\n250-PIPELINING\r\n250 CHUNKING\r\n");
    sent();
    server("250 Ok\r\n250 Ok\r\n");
    body("one\r\n", false);
    body("two\r\n", false);
    sent();
    server("554 5.6.0 Rejected\r\n");
    /* RFC 3030 §2: no more chunks after a failed one; the one in flight is answered. */
    assert_int_equal(smtp_client_want(fx.c), SMTP_CLIENT_WANT_READ);
    assert_string_equal(sent(), "");
    server("503 5.5.1 No transaction\r\n");
    finish_quit();
    const struct smtp_client_result *r = result();
    assert_int_equal(r->status, SMTP_CLIENT_PERMFAIL);
    assert_int_equal(r->final.code, 554);
    assert_int_equal(r->rcpt[0].code, 554);
}

/* ---- the fate of each recipient -------------------------------------------------------- */

/* three_rcpts - a pipelined session to c@d, e@f and g@h up to the RCPT replies */
static void three_rcpts(void)
{
    fx.rcpt[1].address = "e@f";
    fx.rcpt[2].address = "g@h";
    fx.msg.nrcpt = 3;
    greet(EHLO_PIPE);
    assert_string_equal(sent(), "MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nRCPT TO:<e@f>\r\n"
                                "RCPT TO:<g@h>\r\nDATA\r\n");
}

static void test_mixed_recipient_replies_are_partial(void **state)
{
    (void)state;
    three_rcpts();
    server("250 Ok\r\n250 2.1.5 Ok\r\n550 5.1.1 No such user\r\n450 4.2.1 Busy\r\n354 Go\r\n");
    body("x\n", true);
    assert_string_equal(sent(), "x\r\n.\r\n");
    server("250 2.0.0 Queued\r\n");
    finish_quit();
    const struct smtp_client_result *r = result();
    assert_int_equal(r->status, SMTP_CLIENT_PARTIAL);
    assert_int_equal(r->rcpt[0].code, 250);
    assert_string_equal(r->rcpt[0].enh, "2.0.0");
    assert_int_equal(r->rcpt[1].code, 550);
    assert_string_equal(r->rcpt[1].enh, "5.1.1");
    assert_string_equal(r->rcpt[1].text, "5.1.1 No such user");
    assert_int_equal(r->rcpt[2].code, 450);
    assert_string_equal(r->rcpt[2].enh, "4.2.1");
}

static void test_every_recipient_refused_permanently_is_permfail(void **state)
{
    (void)state;
    three_rcpts();
    /* RFC 2920 §3.1: the 354 came anyway; an empty message gets back in step. */
    server("250 Ok\r\n550 No\r\n551 No\r\n553 No\r\n354 Go\r\n");
    assert_string_equal(sent(), ".\r\n");
    assert_int_equal(smtp_client_want(fx.c), SMTP_CLIENT_WANT_READ);
    server("554 No valid recipients\r\n");
    finish_quit();
    const struct smtp_client_result *r = result();
    assert_int_equal(r->status, SMTP_CLIENT_PERMFAIL);
    assert_int_equal(r->rcpt[0].code, 550);
    assert_int_equal(r->rcpt[1].code, 551);
    assert_int_equal(r->rcpt[2].code, 553);
}

static void test_any_temporary_refusal_makes_the_whole_tempfail(void **state)
{
    (void)state;
    three_rcpts();
    server("250 Ok\r\n550 No\r\n450 Later\r\n550 No\r\n554 No valid recipients\r\n");
    finish_quit();
    assert_int_equal(result()->status, SMTP_CLIENT_TEMPFAIL);
}

static void test_refused_recipients_without_pipelining_skip_data(void **state)
{
    (void)state;
    fx.rcpt[1].address = "e@f";
    fx.msg.nrcpt = 2;
    greet(EHLO_PLAIN);
    assert_string_equal(sent(), "MAIL FROM:<a@b>\r\n");
    server("250 Ok\r\n");
    assert_string_equal(sent(), "RCPT TO:<c@d>\r\n");
    server("550 No\r\n");
    assert_string_equal(sent(), "RCPT TO:<e@f>\r\n");
    server("550 No\r\n");
    finish_quit();
    assert_int_equal(result()->status, SMTP_CLIENT_PERMFAIL);
}

static void test_sender_refused_is_the_reason_given_for_every_recipient(void **state)
{
    (void)state;
    fx.rcpt[1].address = "e@f";
    fx.msg.nrcpt = 2;
    greet(EHLO_PIPE);
    sent();
    server("553 5.1.8 Bad sender\r\n503 5.5.1 Need MAIL\r\n503 5.5.1 Need MAIL\r\n"
           "503 5.5.1 Need MAIL\r\n");
    finish_quit();
    const struct smtp_client_result *r = result();
    assert_int_equal(r->status, SMTP_CLIENT_PERMFAIL);
    assert_int_equal(r->final.code, 553);
    assert_int_equal(r->rcpt[0].code, 553);
    assert_string_equal(r->rcpt[0].text, "5.1.8 Bad sender");
    assert_int_equal(r->rcpt[1].code, 553);
    assert_non_null(strstr(r->error, "sender"));
}

static void test_data_refused_fails_every_accepted_recipient(void **state)
{
    (void)state;
    greet(EHLO_PIPE);
    sent();
    server("250 Ok\r\n250 Ok\r\n554 5.3.0 No DATA today\r\n");
    finish_quit();
    const struct smtp_client_result *r = result();
    assert_int_equal(r->status, SMTP_CLIENT_PERMFAIL);
    assert_int_equal(r->rcpt[0].code, 554);
    assert_int_equal(r->final.code, 554);
}

static void test_message_refused_after_the_dot(void **state)
{
    (void)state;
    data_body();
    body("spam\n", true);
    sent();
    server("550 5.7.1 Spam\r\n");
    finish_quit();
    assert_int_equal(result()->status, SMTP_CLIENT_PERMFAIL);
    assert_int_equal(result()->rcpt[0].code, 550);

    teardown(NULL);
    setup(NULL);
    data_body();
    body("x\n", true);
    sent();
    server("452 4.3.1 Disk full\r\n");
    finish_quit();
    assert_int_equal(result()->status, SMTP_CLIENT_TEMPFAIL);
    assert_int_equal(result()->final.code, 452);
}

static void test_greeting_refused_is_permfail(void **state)
{
    (void)state;
    start();
    server("554 5.3.2 No service\r\n");
    finish_quit();
    const struct smtp_client_result *r = result();
    assert_int_equal(r->status, SMTP_CLIENT_PERMFAIL);
    assert_int_equal(r->final.code, 554);
}

static void test_greeting_that_is_multi_line_is_fine(void **state)
{
    (void)state;
    start();
    server("220-mx.example ESMTP\r\n220-welcome\r\n220 really\r\n");
    assert_string_equal(sent(), "EHLO " HELO_NAME "\r\n");
}

/* ---- 421: the server is closing ---------------------------------------------------------- */

/* expect_421 - the session ended at once, nothing sent, every recipient 421 */
static void expect_421(void)
{
    assert_string_equal(sent(), "");
    const struct smtp_client_result *r = result();
    assert_int_equal(r->status, SMTP_CLIENT_TEMPFAIL);
    assert_int_equal(r->final.code, 421);
    for (size_t i = 0; i < fx.msg.nrcpt; i++)
        assert_int_equal(r->rcpt[i].code, 421);
    assert_non_null(strstr(r->error, "421"));
}

static void test_421_as_greeting(void **state)
{
    (void)state;
    start();
    server("421 4.3.2 Too busy\r\n");
    expect_421();
}

static void test_421_to_ehlo(void **state)
{
    (void)state;
    greet("421 4.3.2 Shutting down\r\n");
    expect_421();
}

static void test_421_to_mail_and_in_a_pipelined_group(void **state)
{
    (void)state;
    greet(EHLO_PLAIN);
    sent();
    server("421 Bye\r\n");
    expect_421();

    teardown(NULL);
    setup(NULL);
    fx.rcpt[1].address = "e@f";
    fx.msg.nrcpt = 2;
    greet(EHLO_PIPE);
    sent();
    server("250 Ok\r\n250 Ok\r\n421 Bye\r\n");
    expect_421();
}

static void test_421_during_the_body(void **state)
{
    (void)state;
    greet("250-mx.example\r\n250-PIPELINING\r\n250 CHUNKING\r\n");
    sent();
    server("250 Ok\r\n250 Ok\r\n");
    body("x\r\n", false);
    sent();
    server("421 Timeout\r\n");
    expect_421();
}

static void test_421_after_the_dot(void **state)
{
    (void)state;
    data_body();
    body("x\n", true);
    sent();
    server("421 4.4.2 Lost\r\n");
    expect_421();
}

static void test_421_to_quit_after_the_message_was_taken_is_still_sent(void **state)
{
    (void)state;
    data_body();
    body("x\n", true);
    sent();
    server("250 Ok\r\n");
    assert_string_equal(sent(), "QUIT\r\n");
    server("421 4.3.0 Closing anyway\r\n");
    const struct smtp_client_result *r = result();
    assert_int_equal(r->status, SMTP_CLIENT_SENT);
    assert_int_equal(r->rcpt[0].code, 250);
}

/* ---- malformed replies ------------------------------------------------------------------- */

static void test_reply_line_of_513_octets_is_refused(void **state)
{
    (void)state;
    char line[600];
    memset(line, 'x', sizeof(line));
    memcpy(line, "220 ", 4);
    memcpy(line + 511, "\r\n", 3); /* 513 octets with the CRLF */
    start();
    server(line);
    expect_protocol("too long");
    assert_string_equal(sent(), "");
}

static void test_reply_line_of_512_octets_is_fine(void **state)
{
    (void)state;
    char line[600];
    memset(line, 'x', sizeof(line));
    memcpy(line, "220 ", 4);
    memcpy(line + 510, "\r\n", 3);
    start();
    server(line);
    assert_string_equal(sent(), "EHLO " HELO_NAME "\r\n");
}

static void test_endless_line_is_refused_before_its_end(void **state)
{
    (void)state;
    char chunk[100];
    memset(chunk, 'x', sizeof(chunk));
    start();
    for (int i = 0; i < 10 && smtp_client_want(fx.c) != SMTP_CLIENT_DONE; i++)
        smtp_client_feed(fx.c, (const uint8_t *)chunk, sizeof(chunk));
    /* "xxx" is no code either, but the length is what must stop it. */
    assert_int_equal(smtp_client_want(fx.c), SMTP_CLIENT_DONE);
    assert_int_equal(result()->status, SMTP_CLIENT_PROTOCOL);
}

static void test_reply_codes_out_of_range_are_refused(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "600 Nope\r\n", "199 Nope\r\n", "2x0 Nope\r\n", "25\r\n",
        "260 Nope\r\n", "-250 x\r\n",   " 250 x\r\n",   "\r\n",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        teardown(NULL);
        setup(NULL);
        start();
        server(bad[i]);
        expect_protocol("bad reply");
        assert_string_equal(sent(), "");
    }
}

static void test_code_must_be_followed_by_space_or_hyphen(void **state)
{
    (void)state;
    start();
    server("220x mx\r\n");
    expect_protocol("space or a hyphen");
}

static void test_bare_code_is_a_whole_reply(void **state)
{
    (void)state;
    start();
    server("220\r\n");
    assert_string_equal(sent(), "EHLO " HELO_NAME "\r\n");
}

static void test_mixed_codes_in_a_multi_line_reply_are_refused(void **state)
{
    (void)state;
    greet("250-mx.example\r\n251 PIPELINING\r\n");
    expect_protocol("different codes");
    assert_string_equal(sent(), "");
}

static void test_missing_final_line_then_eof_is_a_protocol_error(void **state)
{
    (void)state;
    greet("250-mx.example\r\n250-PIPELINING\r\n");
    assert_int_equal(smtp_client_want(fx.c), SMTP_CLIENT_WANT_READ);
    smtp_client_eof(fx.c);
    expect_protocol("middle of a reply");
}

static void test_half_a_line_then_eof_is_a_protocol_error(void **state)
{
    (void)state;
    start();
    server("220 mx.exa");
    smtp_client_eof(fx.c);
    expect_protocol("middle of a reply");
}

static void test_garbage_is_refused(void **state)
{
    (void)state;
    start();
    server("HTTP/1.1 400 Bad Request\r\n");
    expect_protocol("bad reply");

    teardown(NULL);
    setup(NULL);
    start();
    server_n("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\n", 12);
    expect_protocol("bad reply");
}

static void test_control_characters_in_a_reply_are_refused(void **state)
{
    (void)state;
    static const char *const bad[] = {"220 mx\x01\r\n", "220 mx\x7f\r\n", "220 a\rb\r\n",
                                      "220 mx\x1b[2J\r\n"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        teardown(NULL);
        setup(NULL);
        start();
        server(bad[i]);
        expect_protocol("control character");
    }
    teardown(NULL);
    setup(NULL);
    start();
    server_n("220 mx\0evil\r\n", 13);
    expect_protocol("control character");
}

static void test_tab_and_8bit_text_in_a_reply_are_allowed(void **state)
{
    (void)state;
    start();
    server("220 mx\tbienvenue \xc3\xa0 vous\r\n");
    assert_string_equal(sent(), "EHLO " HELO_NAME "\r\n");
}

static void test_too_many_lines_in_a_reply_are_refused(void **state)
{
    (void)state;
    start();
    server("220 mx\r\n");
    sent();
    for (int i = 0; i < SMTP_REPLY_LINES_MAX; i++)
        server("250-EXT\r\n");
    assert_int_equal(smtp_client_want(fx.c), SMTP_CLIENT_WANT_READ);
    server("250 ONE TOO MANY\r\n");
    expect_protocol("too many lines");
}

static void test_a_reply_of_exactly_the_line_limit_is_fine(void **state)
{
    (void)state;
    start();
    server("220 mx\r\n");
    sent();
    for (int i = 0; i < SMTP_REPLY_LINES_MAX - 1; i++)
        server("250-EXT\r\n");
    server("250 LAST\r\n");
    assert_string_equal(sent(), "MAIL FROM:<a@b>\r\n");
}

static void test_reply_nobody_asked_for_during_the_body_is_refused(void **state)
{
    (void)state;
    data_body();
    assert_int_equal(smtp_client_want(fx.c), SMTP_CLIENT_WANT_BODY);
    server("250 Surprise\r\n");
    expect_protocol("did not ask for");
}

static void test_reply_nobody_asked_for_with_bdat_is_refused(void **state)
{
    (void)state;
    greet("250-mx.example\r\n250-PIPELINING\r\n250 CHUNKING\r\n");
    sent();
    server("250 Ok\r\n250 Ok\r\n250 Extra\r\n");
    expect_protocol("did not ask for");
}

static void test_reply_to_a_command_not_yet_sent_is_refused(void **state)
{
    (void)state;
    /* The server answers EHLO in the same breath as its greeting. */
    start();
    server("220 mx\r\n250 mx\r\n");
    expect_protocol("not yet sent");

    /* It answers RCPT and DATA that a non-pipelining client has not sent. */
    teardown(NULL);
    setup(NULL);
    greet(EHLO_PLAIN);
    assert_string_equal(sent(), "MAIL FROM:<a@b>\r\n");
    server("250 Ok\r\n250 Ok\r\n354 Go\r\n");
    expect_protocol("not yet sent");
}

static void test_reply_of_the_wrong_kind_is_refused(void **state)
{
    (void)state;
    /* 354 to MAIL (RFC 5321 §4.3.2 allows 250, 4xx and 5xx only). */
    greet(EHLO_PLAIN);
    sent();
    server("354 Go\r\n");
    expect_protocol("354");

    /* 250 to DATA, which must be 354 or a refusal. */
    teardown(NULL);
    setup(NULL);
    greet(EHLO_PIPE);
    sent();
    server("250 Ok\r\n250 Ok\r\n250 Ok\r\n");
    expect_protocol("250");

    /* 354 to EHLO. */
    teardown(NULL);
    setup(NULL);
    greet("354 What\r\n");
    expect_protocol("354");

    /* A 2xx greeting that is not 220. */
    teardown(NULL);
    setup(NULL);
    start();
    server("250 mx\r\n");
    expect_protocol("250");
}

static void test_after_an_error_nothing_more_is_read(void **state)
{
    (void)state;
    start();
    server("999 x\r\n");
    expect_protocol("bad reply");
    assert_int_equal(smtp_client_feed(fx.c, (const uint8_t *)"220 ok\r\n", 8), 0);
    smtp_client_eof(fx.c);
    smtp_client_timed_out(fx.c);
    smtp_client_fail(fx.c, "late");
    smtp_client_body(fx.c, (const uint8_t *)"x", 1, true);
    assert_string_equal(sent(), "");
    expect_protocol("bad reply");
}

static void test_lf_alone_ends_a_reply_line(void **state)
{
    (void)state;
    start();
    server("220 mx\n");
    assert_string_equal(sent(), "EHLO " HELO_NAME "\r\n");
    server("250-mx\n250 PIPELINING\n");
    assert_string_equal(sent(), "MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n");
}

/* ---- the connection ends --------------------------------------------------------------- */

static void test_eof_before_the_greeting_is_tempfail(void **state)
{
    (void)state;
    start();
    smtp_client_eof(fx.c);
    const struct smtp_client_result *r = result();
    assert_int_equal(r->status, SMTP_CLIENT_TEMPFAIL);
    assert_int_equal(r->rcpt[0].code, 0);
    assert_null(r->rcpt[0].text);
    assert_non_null(strstr(r->error, "closed"));
}

static void test_eof_after_the_dot_is_tempfail(void **state)
{
    (void)state;
    data_body();
    body("x\n", true);
    sent();
    smtp_client_eof(fx.c);
    assert_int_equal(result()->status, SMTP_CLIENT_TEMPFAIL);
    assert_int_equal(result()->rcpt[0].code, 0);
}

static void test_eof_instead_of_the_quit_reply_is_harmless(void **state)
{
    (void)state;
    data_body();
    body("x\n", true);
    sent();
    server("250 Ok\r\n");
    assert_string_equal(sent(), "QUIT\r\n");
    smtp_client_eof(fx.c);
    assert_int_equal(result()->status, SMTP_CLIENT_SENT);
}

static void test_broken_quit_reply_does_not_undo_a_delivered_message(void **state)
{
    (void)state;
    /* Half a reply to QUIT, then EOF. */
    data_body();
    body("x\n", true);
    sent();
    server("250 Ok\r\n");
    assert_string_equal(sent(), "QUIT\r\n");
    server("221 By");
    smtp_client_eof(fx.c);
    assert_int_equal(result()->status, SMTP_CLIENT_SENT);

    /* Garbage in answer to QUIT. */
    teardown(NULL);
    setup(NULL);
    data_body();
    body("x\n", true);
    sent();
    server("250 Ok\r\n");
    assert_string_equal(sent(), "QUIT\r\n");
    server("\x01\x02garbage\r\n");
    assert_int_equal(result()->status, SMTP_CLIENT_SENT);
    assert_int_equal(result()->rcpt[0].code, 250);
}

static void test_transport_failure_is_tempfail(void **state)
{
    (void)state;
    greet(EHLO_PIPE);
    sent();
    smtp_client_fail(fx.c, "connection reset by peer");
    const struct smtp_client_result *r = result();
    assert_int_equal(r->status, SMTP_CLIENT_TEMPFAIL);
    assert_string_equal(r->error, "connection reset by peer");
}

/* ---- timeouts (RFC 5321 §4.5.3.2) ------------------------------------------------------- */

static void test_timeouts_follow_the_state(void **state)
{
    (void)state;
    start();
    assert_int_equal(smtp_client_timeout(fx.c), 300); /* greeting */
    server("220 mx\r\n");
    sent();
    assert_int_equal(smtp_client_timeout(fx.c), 300); /* EHLO */
    server(EHLO_PLAIN);
    sent();
    assert_int_equal(smtp_client_timeout(fx.c), 300); /* MAIL */
    server("250 Ok\r\n");
    sent();
    assert_int_equal(smtp_client_timeout(fx.c), 300); /* RCPT */
    server("250 Ok\r\n");
    sent();
    assert_int_equal(smtp_client_timeout(fx.c), 120); /* DATA initiation */
    server("354 Go\r\n");
    assert_int_equal(smtp_client_timeout(fx.c), 180); /* data block */
    body("x\n", true);
    sent();
    assert_int_equal(smtp_client_timeout(fx.c), 600); /* DATA termination */
    server("250 Ok\r\n");
    sent();
    assert_int_equal(smtp_client_timeout(fx.c), 300); /* QUIT */
}

static void test_timeout_in_each_state_is_tempfail(void **state)
{
    (void)state;
    /* The server's side of a session, one reply per step; stop after k of them. */
    static const char *const script[] = {"220 mx\r\n", EHLO_PLAIN, "250 Ok\r\n", "250 Ok\r\n",
                                         "354 Go\r\n"};
    for (size_t k = 0; k <= 5; k++) {
        teardown(NULL);
        setup(NULL);
        start();
        for (size_t i = 0; i < k; i++) {
            sent();
            server(script[i]);
        }
        if (k == 5)
            body("x\n", true);
        sent();
        smtp_client_timed_out(fx.c);
        const struct smtp_client_result *r = result();
        assert_int_equal(r->status, SMTP_CLIENT_TEMPFAIL);
        assert_non_null(strstr(r->error, "in time"));
        assert_int_equal(r->rcpt[0].code, 0);
    }
}

static void test_timeout_waiting_for_the_quit_reply_keeps_the_result(void **state)
{
    (void)state;
    data_body();
    body("x\n", true);
    sent();
    server("250 Ok\r\n");
    assert_string_equal(sent(), "QUIT\r\n");
    smtp_client_timed_out(fx.c);
    assert_int_equal(result()->status, SMTP_CLIENT_SENT);
}

/* ---- feeding in pieces -------------------------------------------------------------------- */

/* run_script - a whole pipelined session whose server bytes come in pieces of size step */
static void run_script(size_t step, char *transcript, size_t cap)
{
    static const char *const replies[] = {
        "220-mx.example\r\n220 ESMTP\r\n",
        "250-mx.example\r\n250-PIPELINING\r\n250 8BITMIME\r\n",
        "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n550 5.1.1 Unknown\r\n354 Go\r\n",
        "250 2.0.0 Queued\r\n",
        "221 2.0.0 Bye\r\n",
    };
    size_t k = 0;
    transcript[0] = '\0';
    start();
    for (size_t i = 0; i < sizeof(replies) / sizeof(replies[0]); i++) {
        const char *p = replies[i];
        size_t n = strlen(p);
        for (size_t off = 0; off < n; off += step)
            smtp_client_feed(fx.c, (const uint8_t *)p + off, n - off < step ? n - off : step);
        if (smtp_client_want(fx.c) == SMTP_CLIENT_WANT_BODY)
            body("body\n", true);
        k += (size_t)snprintf(transcript + k, cap - k, "%s|", sent());
    }
}

static void test_replies_fed_byte_by_byte_give_the_same_session(void **state)
{
    (void)state;
    char whole[1024], bytes[1024], threes[1024];
    fx.rcpt[1].address = "e@f";
    fx.msg.nrcpt = 2;
    run_script(10000, whole, sizeof(whole));
    const struct smtp_client_result *r = result();
    assert_int_equal(r->status, SMTP_CLIENT_PARTIAL);
    teardown(NULL);
    setup(NULL);
    fx.rcpt[1].address = "e@f";
    fx.msg.nrcpt = 2;
    run_script(1, bytes, sizeof(bytes));
    assert_int_equal(result()->status, SMTP_CLIENT_PARTIAL);
    assert_string_equal(result()->rcpt[1].text, "5.1.1 Unknown");
    teardown(NULL);
    setup(NULL);
    fx.rcpt[1].address = "e@f";
    fx.msg.nrcpt = 2;
    run_script(3, threes, sizeof(threes));
    assert_string_equal(whole, bytes);
    assert_string_equal(whole, threes);
    assert_string_equal(whole, "EHLO " HELO_NAME "\r\n|"
                               "MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nRCPT TO:<e@f>\r\nDATA\r\n|"
                               "body\r\n.\r\n|QUIT\r\n||");
}

static void test_no_recipients_is_refused_at_once(void **state)
{
    (void)state;
    fx.msg.nrcpt = 0;
    start();
    assert_string_equal(sent(), "");
    assert_int_equal(result()->status, SMTP_CLIENT_UNSUITABLE);
}

/* ---- smtp_client_body_type ------------------------------------------------------------- */

static void test_body_type_is_the_weakest_that_fits(void **state)
{
    (void)state;
    char line[1100];
    assert_int_equal(smtp_client_body_type((const uint8_t *)"a\r\nb\n", 5), SMTP_BODY_7BIT);
    assert_int_equal(smtp_client_body_type((const uint8_t *)"", 0), SMTP_BODY_7BIT);
    assert_int_equal(smtp_client_body_type((const uint8_t *)"caf\xc3\xa9", 5), SMTP_BODY_8BITMIME);
    assert_int_equal(smtp_client_body_type((const uint8_t *)"a\0b", 3), SMTP_BODY_BINARYMIME);
    memset(line, 'x', sizeof(line));
    assert_int_equal(smtp_client_body_type((const uint8_t *)line, 998), SMTP_BODY_7BIT);
    assert_int_equal(smtp_client_body_type((const uint8_t *)line, 999), SMTP_BODY_BINARYMIME);
    line[998] = '\r';
    line[999] = '\n';
    assert_int_equal(smtp_client_body_type((const uint8_t *)line, 1000), SMTP_BODY_7BIT);
}

/* ---- the reply reader alone ------------------------------------------------------------ */

/*
 * read_all - feed a fresh reader p[0..n) in pieces of size step; the replies
 * go to out as "code:enh:text:lines|".  True if the reader refused the input.
 */
static bool read_all(const char *p, size_t n, size_t step, char *out, size_t cap)
{
    struct smtp_reply_reader rd;
    enum smtp_reply_status st = SMTP_REPLY_MORE;
    size_t k = 0;
    smtp_reply_reader_init(&rd, SMTP_REPLY_LINE_MAX, SMTP_REPLY_LINES_MAX);
    out[0] = '\0';
    for (size_t off = 0; off < n && st != SMTP_REPLY_ERROR; off += step) {
        size_t len = n - off < step ? n - off : step, pos = 0;
        while (pos < len) {
            size_t used;
            struct smtp_reply_read r;
            st = smtp_reply_read(&rd, (const uint8_t *)p + off + pos, len - pos, &used, &r);
            assert_true(used <= len - pos);
            pos += used;
            if (st == SMTP_REPLY_DONE) {
                assert_int_equal(strlen(r.text), r.text_len);
                k += (size_t)snprintf(out + k, cap - k, "%u:%s:%s:%zu|", r.code, r.enh, r.text,
                                      r.nlines);
            } else {
                break;
            }
        }
    }
    if (st != SMTP_REPLY_ERROR && smtp_reply_reader_partial(&rd))
        k += (size_t)snprintf(out + k, cap - k, "partial");
    smtp_reply_reader_free(&rd);
    return st == SMTP_REPLY_ERROR;
}

static void test_reader_byte_at_a_time_gives_the_same_replies(void **state)
{
    (void)state;
    static const char *const inputs[] = {
        "220 mx.example ESMTP\r\n",
        "250-mx.example\r\n250-PIPELINING\r\n250 8BITMIME\r\n550 5.1.1 No\r\n",
        "250 2.0.0 Ok\n354\r\n451-4.3.0 a\r\n451 4.3.0 b\r\n221 Bye\r\n",
        "250 2.0.0 Ok\r\n250-part",
        "250 ok\r\n600 bad\r\n",
        "250-a\r\n251 b\r\n",
        "250 ok\r\n250 a\x01\r\n",
    };
    for (size_t i = 0; i < sizeof(inputs) / sizeof(inputs[0]); i++) {
        char whole[2048], bytes[2048], twos[2048];
        size_t n = strlen(inputs[i]);
        bool a = read_all(inputs[i], n, n, whole, sizeof(whole));
        bool b = read_all(inputs[i], n, 1, bytes, sizeof(bytes));
        bool c = read_all(inputs[i], n, 2, twos, sizeof(twos));
        assert_int_equal(a, b);
        assert_int_equal(a, c);
        assert_string_equal(whole, bytes);
        assert_string_equal(whole, twos);
    }
}

static void test_reader_joins_lines_and_takes_the_enhanced_code(void **state)
{
    (void)state;
    char out[1024];
    const char *in = "250-2.1.5 first\r\n250-second\r\n250 2.1.5 third\r\n";
    assert_false(read_all(in, strlen(in), 1, out, sizeof(out)));
    assert_string_equal(out, "250:2.1.5:2.1.5 first\nsecond\n2.1.5 third:3|");

    /* An enhanced code of another class than the reply's is not one. */
    in = "550 2.1.5 confused\r\n451 4.3.0\r\n250 2.0.0x\r\n";
    read_all(in, strlen(in), 1, out, sizeof(out));
    assert_string_equal(out, "550::2.1.5 confused:1|451:4.3.0:4.3.0:1|250::2.0.0x:1|");
}

static void test_reader_refuses_everything_after_an_error(void **state)
{
    (void)state;
    struct smtp_reply_reader rd;
    struct smtp_reply_read r;
    size_t used;
    smtp_reply_reader_init(&rd, SMTP_REPLY_LINE_MAX, SMTP_REPLY_LINES_MAX);
    assert_int_equal(smtp_reply_read(&rd, (const uint8_t *)"99\r\n", 4, &used, &r),
                     SMTP_REPLY_ERROR);
    assert_non_null(rd.error);
    assert_int_equal(smtp_reply_read(&rd, (const uint8_t *)"250 ok\r\n", 8, &used, &r),
                     SMTP_REPLY_ERROR);
    assert_int_equal(used, 0);
    smtp_reply_reader_free(&rd);
}

static void test_reader_line_limit_counts_the_crlf(void **state)
{
    (void)state;
    char line[600], out[2048];
    memset(line, 'y', sizeof(line));
    memcpy(line, "250 ", 4);
    memcpy(line + 510, "\r\n", 2);
    assert_false(read_all(line, 512, 1, out, sizeof(out)));
    memcpy(line + 510, "y\r\n", 3);
    assert_true(read_all(line, 513, 1, out, sizeof(out)));
    assert_true(read_all(line, 513, 513, out, sizeof(out)));
    /* With a bare LF the limit is the same number of octets. */
    memcpy(line + 510, "y\n", 2);
    assert_false(read_all(line, 512, 7, out, sizeof(out)));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
        T(test_plain_server_gets_one_command_at_a_time),
        T(test_pipelining_sends_mail_rcpt_and_data_in_one_write),
        T(test_pipelining_replies_may_arrive_one_at_a_time),
        T(test_extensions_are_not_used_unless_the_message_needs_them),
        T(test_null_sender_is_sent_as_empty_brackets),
        T(test_ehlo_keywords_are_case_insensitive_and_size_is_read),
        T(test_smtputf8_is_declared_when_the_message_needs_it),
        T(test_dsn_parameters_go_out_when_dsn_is_offered),
        T(test_dsn_parameters_are_left_out_without_dsn),
        T(test_size_is_left_out_when_not_offered),
        T(test_size_zero_in_ehlo_means_no_limit),
        T(test_ehlo_refused_falls_back_to_helo),
        T(test_helo_refused_ends_the_session),
        T(test_ehlo_temporary_failure_is_tempfail),
        T(test_8bit_body_without_8bitmime_is_unsuitable_and_only_quit_follows),
        T(test_8bit_body_to_a_helo_server_is_unsuitable),
        T(test_utf8_address_without_smtputf8_is_unsuitable),
        T(test_binary_body_needs_binarymime_and_chunking),
        T(test_size_over_the_servers_limit_is_unsuitable),
        T(test_size_at_the_servers_limit_is_sent),
        T(test_body_bare_lf_becomes_crlf),
        T(test_body_bare_cr_becomes_crlf),
        T(test_body_leading_dots_are_doubled),
        T(test_body_lone_dot_line_cannot_end_the_message_early),
        T(test_body_without_a_final_line_end_gets_one),
        T(test_empty_body_is_just_the_dot),
        T(test_body_in_pieces_converts_like_one_piece),
        T(test_body_may_come_with_many_pieces_before_it_is_sent),
        T(test_body_piece_too_big_for_the_output_ends_the_session_unsent),
        T(test_bdat_frames_each_chunk_with_its_exact_size),
        T(test_bdat_converts_line_endings_but_does_not_stuff_dots),
        T(test_bdat_without_pipelining_waits_for_each_chunk),
        T(test_bdat_pipelining_keeps_a_bounded_number_of_chunks_in_flight),
        T(test_binarymime_body_is_sent_unchanged),
        T(test_bdat_chunk_refused_ends_the_message_with_quit),
        T(test_mixed_recipient_replies_are_partial),
        T(test_every_recipient_refused_permanently_is_permfail),
        T(test_any_temporary_refusal_makes_the_whole_tempfail),
        T(test_refused_recipients_without_pipelining_skip_data),
        T(test_sender_refused_is_the_reason_given_for_every_recipient),
        T(test_data_refused_fails_every_accepted_recipient),
        T(test_message_refused_after_the_dot),
        T(test_greeting_refused_is_permfail),
        T(test_greeting_that_is_multi_line_is_fine),
        T(test_421_as_greeting),
        T(test_421_to_ehlo),
        T(test_421_to_mail_and_in_a_pipelined_group),
        T(test_421_during_the_body),
        T(test_421_after_the_dot),
        T(test_421_to_quit_after_the_message_was_taken_is_still_sent),
        T(test_reply_line_of_513_octets_is_refused),
        T(test_reply_line_of_512_octets_is_fine),
        T(test_endless_line_is_refused_before_its_end),
        T(test_reply_codes_out_of_range_are_refused),
        T(test_code_must_be_followed_by_space_or_hyphen),
        T(test_bare_code_is_a_whole_reply),
        T(test_mixed_codes_in_a_multi_line_reply_are_refused),
        T(test_missing_final_line_then_eof_is_a_protocol_error),
        T(test_half_a_line_then_eof_is_a_protocol_error),
        T(test_garbage_is_refused),
        T(test_control_characters_in_a_reply_are_refused),
        T(test_tab_and_8bit_text_in_a_reply_are_allowed),
        T(test_too_many_lines_in_a_reply_are_refused),
        T(test_a_reply_of_exactly_the_line_limit_is_fine),
        T(test_reply_nobody_asked_for_during_the_body_is_refused),
        T(test_reply_nobody_asked_for_with_bdat_is_refused),
        T(test_reply_to_a_command_not_yet_sent_is_refused),
        T(test_reply_of_the_wrong_kind_is_refused),
        T(test_after_an_error_nothing_more_is_read),
        T(test_lf_alone_ends_a_reply_line),
        T(test_eof_before_the_greeting_is_tempfail),
        T(test_eof_after_the_dot_is_tempfail),
        T(test_eof_instead_of_the_quit_reply_is_harmless),
        T(test_broken_quit_reply_does_not_undo_a_delivered_message),
        T(test_transport_failure_is_tempfail),
        T(test_timeouts_follow_the_state),
        T(test_timeout_in_each_state_is_tempfail),
        T(test_timeout_waiting_for_the_quit_reply_keeps_the_result),
        T(test_replies_fed_byte_by_byte_give_the_same_session),
        T(test_no_recipients_is_refused_at_once),
        T(test_body_type_is_the_weakest_that_fits),
        T(test_reader_byte_at_a_time_gives_the_same_replies),
        T(test_reader_joins_lines_and_takes_the_enhanced_code),
        T(test_reader_refuses_everything_after_an_error),
        T(test_reader_line_limit_counts_the_crlf),
#undef T
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
