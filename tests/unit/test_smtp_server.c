/*
 * test_smtp_server.c - unit tests for src/smtp/server.c, the sans-I/O SMTP
 * server engine.
 *
 * Each test drives the engine as pigeond does: bytes in, replies out.  A
 * small test host stands in for the session: its callbacks write one line
 * per event into a log ("MAIL <a@example.org>", "DATA", "END 12", "RESET"),
 * its data sink keeps every byte handed to data_write(), and its verdicts
 * are set per test (refused addresses, SMTP_SERVER_ASYNC, a failing sink).
 * Replies are compared byte for byte, so a test shows exactly what a client
 * would read: the code, whether an enhanced status code is there, and every
 * line of a multi-line reply.
 *
 * The host's fixed verdicts, by the local part of the address:
 *   MAIL FROM:<refused@...>   550 5.7.1 Sender refused
 *   RCPT TO:<unknown@...>     550 5.1.1 User unknown
 *   RCPT TO:<later@...>       450 with no enhanced code (the engine picks one)
 *   RCPT TO:<nobody@...>      550 with no enhanced code
 * Everything else is accepted with the engine's default reply.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "smtp/server.h"

#define UNTRUSTED false
#define TRUSTED   true

#define ALL_EXTENSIONS                                                                             \
    (SMTP_EXT_PIPELINING | SMTP_EXT_SIZE | SMTP_EXT_8BITMIME | SMTP_EXT_SMTPUTF8 |                 \
     SMTP_EXT_CHUNKING | SMTP_EXT_BINARYMIME | SMTP_EXT_DSN | SMTP_EXT_ENHANCEDSTATUSCODES)

/* What a client reads. */
#define GREETING "220 mx.example.org ESMTP Pigeon\r\n"
#define EHLO_REPLY                                                                                 \
    "250-mx.example.org\r\n"                                                                       \
    "250-PIPELINING\r\n"                                                                           \
    "250-SIZE 10485760\r\n"                                                                        \
    "250-8BITMIME\r\n"                                                                             \
    "250-SMTPUTF8\r\n"                                                                             \
    "250-CHUNKING\r\n"                                                                             \
    "250-BINARYMIME\r\n"                                                                           \
    "250-DSN\r\n"                                                                                  \
    "250 ENHANCEDSTATUSCODES\r\n"
#define OK             "250 2.0.0 Ok\r\n"
#define MAIL_OK        "250 2.1.0 Ok\r\n"
#define RCPT_OK        "250 2.1.5 Ok\r\n"
#define GO_AHEAD       "354 End data with <CR><LF>.<CR><LF>\r\n"
#define QUEUED         "250 2.0.0 Ok: queued\r\n"
#define BYE            "221 2.0.0 Bye\r\n"
#define NEED_MAIL      "503 5.5.1 Error: need MAIL command\r\n"
#define NEED_RCPT      "503 5.5.1 Error: need RCPT command\r\n"
#define NO_VALID_RCPT  "554 5.5.1 Error: no valid recipients\r\n"
#define UNKNOWN_USER   "550 5.1.1 User unknown\r\n"
#define NOT_RECOGNIZED "500 5.5.1 Error: command not recognized\r\n"
#define LINE_TOO_LONG  "500 5.5.2 Error: line too long (limit 512 octets)\r\n"
#define BARE_LF_CMD    "500 5.5.2 Error: bare LF received; SMTP command lines end with CRLF\r\n"
#define BARE_CR_CMD    "500 5.5.2 Error: bare CR received; SMTP command lines end with CRLF\r\n"
#define BARE_LF_DATA                                                                               \
    "550 5.5.2 Error: bare LF in message data; lines must end with CRLF (RFC 5321 2.3.8)\r\n"
#define BARE_CR_DATA                                                                               \
    "550 5.5.2 Error: bare CR in message data; lines must end with CRLF (RFC 5321 2.3.8)\r\n"
#define LONG_TEXT_LINE "550 5.6.0 Error: message has a line longer than 1000 octets\r\n"
#define BAD_BDAT       "501 5.5.4 Syntax: BDAT size [LAST]; closing connection\r\n"

/* What a client sends to open a transaction. */
#define EHLO        "EHLO client.example\r\n"
#define MAIL        "MAIL FROM:<sender@example.org>\r\n"
#define RCPT        "RCPT TO:<rcpt@example.org>\r\n"
#define MAIL_EVENTS "MAIL <sender@example.org>\nRCPT <rcpt@example.org>\n"

/* ---- the test host ----------------------------------------------------------- */

struct host {
    struct smtp_server_settings settings;
    struct smtp_server *s;

    struct buf out;     /* every reply the client has read */
    struct buf message; /* every byte given to data_write() */
    struct buf events;  /* one line per call from the engine */
    size_t message_start;

    /* Verdicts. */
    bool mail_async, rcpt_async, data_end_async;
    bool refuse_data_begin;
    struct smtp_reply data_begin_reply; /* when refused */
    struct smtp_reply data_end_reply;   /* code 0: the engine's default */
    long writes_allowed;                /* data_write() calls that succeed; -1: all */
    unsigned writes;

    /* What the last MAIL and RCPT carried. */
    struct smtp_mail_params mail_params;
    struct smtp_rcpt_params rcpt_params;
};

/* event - add one line to the host's log */
static void event(struct host *h, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void event(struct host *h, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    assert_int_equal(buf_vprintf(&h->events, fmt, ap), 0);
    va_end(ap);
    assert_int_equal(buf_append_byte(&h->events, '\n'), 0);
}

/* local_is - is the local part of path exactly word? */
static bool local_is(const struct smtp_path *path, const char *word)
{
    return strcmp(path->local, word) == 0;
}

static void host_helo(void *ctx, const char *name, size_t len, bool esmtp)
{
    event(ctx, "%s %.*s", esmtp ? "EHLO" : "HELO", (int)len, name);
}

static enum smtp_server_result host_mail(void *ctx, const struct smtp_path *from,
                                         const struct smtp_mail_params *params,
                                         struct smtp_reply *reply)
{
    struct host *h = ctx;
    event(h, "MAIL <%s>", from->mailbox);
    h->mail_params = *params;
    if (h->mail_async)
        return SMTP_SERVER_ASYNC;
    if (local_is(from, "refused"))
        *reply = (struct smtp_reply){550, "5.7.1", "Sender refused"};
    return SMTP_SERVER_DONE;
}

static enum smtp_server_result host_rcpt(void *ctx, const struct smtp_path *to,
                                         const struct smtp_rcpt_params *params,
                                         struct smtp_reply *reply)
{
    struct host *h = ctx;
    event(h, "RCPT <%s>", to->mailbox);
    h->rcpt_params = *params;
    if (h->rcpt_async)
        return SMTP_SERVER_ASYNC;
    if (local_is(to, "unknown"))
        *reply = (struct smtp_reply){550, "5.1.1", "User unknown"};
    else if (local_is(to, "later"))
        *reply = (struct smtp_reply){450, NULL, "Try again later"};
    else if (local_is(to, "nobody"))
        *reply = (struct smtp_reply){550, NULL, "No such user"};
    return SMTP_SERVER_DONE;
}

static bool host_data_begin(void *ctx, struct smtp_reply *reply)
{
    struct host *h = ctx;
    event(h, "DATA");
    h->message_start = h->message.len;
    if (h->refuse_data_begin) {
        *reply = h->data_begin_reply;
        return false;
    }
    return true;
}

static int host_data_write(void *ctx, const uint8_t *p, size_t n)
{
    struct host *h = ctx;
    h->writes++;
    if (h->writes_allowed >= 0 && h->writes > (unsigned long)h->writes_allowed)
        return -1;
    assert_int_equal(buf_append(&h->message, p, n), 0);
    return 0;
}

static enum smtp_server_result host_data_end(void *ctx, struct smtp_reply *reply)
{
    struct host *h = ctx;
    event(h, "END %zu", h->message.len - h->message_start);
    if (h->data_end_async)
        return SMTP_SERVER_ASYNC;
    *reply = h->data_end_reply;
    return SMTP_SERVER_DONE;
}

static void host_reset(void *ctx)
{
    event(ctx, "RESET");
}

static const struct smtp_server_ops host_ops = {
    .helo = host_helo,
    .mail = host_mail,
    .rcpt = host_rcpt,
    .data_begin = host_data_begin,
    .data_write = host_data_write,
    .data_end = host_data_end,
    .reset = host_reset,
};

/* host_init - a host with the default settings and no engine yet */
static void host_init(struct host *h)
{
    memset(h, 0, sizeof(*h));
    h->settings = (struct smtp_server_settings){
        .hostname = "mx.example.org",
        .extensions = ALL_EXTENSIONS,
        .max_command_line = 512,
        .max_text_line = 1000,
        .max_recipients = 100,
        .max_message_size = 10485760,
        .max_errors = 20,
    };
    buf_init(&h->out, 1 << 24);
    buf_init(&h->message, 1 << 24);
    buf_init(&h->events, 1 << 20);
    h->writes_allowed = -1;
}

/* host_free - end the engine (if any) and release the buffers */
static void host_free(struct host *h)
{
    smtp_server_free(h->s);
    h->s = NULL;
    buf_free(&h->out);
    buf_free(&h->message);
    buf_free(&h->events);
}

/* take_output - read the engine's replies as a client would */
static void take_output(struct host *h)
{
    struct buf *out = smtp_server_output(h->s);
    assert_int_equal(buf_append(&h->out, out->data, out->len), 0);
    smtp_server_output_sent(h->s);
}

/* text_of - the contents of b as a C string (b must hold no NUL) */
static const char *text_of(struct buf *b)
{
    assert_int_equal(buf_reserve(b, 1), 0);
    b->data[b->len] = '\0';
    assert_int_equal(strlen((const char *)b->data), b->len);
    return (const char *)b->data;
}

/* expect_replies - the client has read exactly this since the last check */
static void expect_replies(struct host *h, const char *replies)
{
    assert_string_equal(text_of(&h->out), replies);
    buf_clear(&h->out);
}

/* expect_events - the host has seen exactly this since the last check */
static void expect_events(struct host *h, const char *events)
{
    assert_string_equal(text_of(&h->events), events);
    buf_clear(&h->events);
}

/* expect_message_bytes - data_write() was given exactly p[0..n) since the last check */
static void expect_message_bytes(struct host *h, const void *p, size_t n)
{
    assert_int_equal(h->message.len, n);
    if (n > 0)
        assert_memory_equal(h->message.data, p, n);
    buf_clear(&h->message);
    h->message_start = 0;
}

/* expect_message - the same for a message of text */
static void expect_message(struct host *h, const char *text)
{
    expect_message_bytes(h, text, strlen(text));
}

/*
 * send_bytes - the client sends p[0..n): feed it, reading replies whenever
 * the engine stops for them, until it is all consumed or the engine waits
 * for the host or closes.  Returns the octets consumed.
 */
static size_t send_bytes(struct host *h, const void *p, size_t n)
{
    const uint8_t *bytes = p;
    size_t used = 0;
    for (;;) {
        size_t k = smtp_server_feed(h->s, bytes + used, n - used);
        used += k;
        take_output(h);
        if (used == n || smtp_server_waiting(h->s) || smtp_server_closing(h->s))
            return used;
        assert_true(k > 0); /* with the output taken, the engine must make progress */
    }
}

/* send_text - the client sends a C string; all of it must be consumed */
static void send_text(struct host *h, const char *text)
{
    assert_int_equal(send_bytes(h, text, strlen(text)), strlen(text));
}

/* start - a session with the client (greeted, no EHLO yet) */
static void start(struct host *h, bool lf_ok)
{
    h->s = smtp_server_new(&h->settings, &host_ops, h, lf_ok);
    assert_non_null(h->s);
    smtp_server_greet(h->s);
    take_output(h);
    expect_replies(h, GREETING);
}

/* start_ehlo - a session after EHLO, replies and events cleared */
static void start_ehlo(struct host *h, bool lf_ok)
{
    start(h, lf_ok);
    send_text(h, EHLO);
    buf_clear(&h->out); /* the EHLO reply depends on the settings; tested on its own */
    expect_events(h, "EHLO client.example\n");
}

/* start_transaction - after EHLO, MAIL and RCPT */
static void start_transaction(struct host *h, bool lf_ok)
{
    start_ehlo(h, lf_ok);
    send_text(h, MAIL RCPT);
    expect_replies(h, MAIL_OK RCPT_OK);
    expect_events(h, MAIL_EVENTS);
}

static int setup(void **state)
{
    struct host *h = malloc(sizeof(*h));
    if (h == NULL)
        return -1;
    host_init(h);
    *state = h;
    return 0;
}

static int teardown(void **state)
{
    host_free(*state);
    free(*state);
    return 0;
}

/* ---- greeting, EHLO, HELO ---------------------------------------------------- */

static void test_greeting_has_no_enhanced_code(void **state)
{
    struct host *h = *state;
    h->s = smtp_server_new(&h->settings, &host_ops, h, UNTRUSTED);
    smtp_server_greet(h->s);
    take_output(h);
    expect_replies(h, "220 mx.example.org ESMTP Pigeon\r\n");
    assert_false(smtp_server_closing(h->s));
}

static void test_ehlo_lists_the_extensions_without_an_enhanced_code(void **state)
{
    struct host *h = *state;
    start(h, UNTRUSTED);
    send_text(h, "EHLO client.example\r\n");
    expect_replies(h, EHLO_REPLY);
    expect_events(h, "EHLO client.example\n");
}

static void test_ehlo_lists_only_the_extensions_in_the_settings(void **state)
{
    struct host *h = *state;
    h->settings.extensions = SMTP_EXT_PIPELINING | SMTP_EXT_SIZE | SMTP_EXT_BINARYMIME;
    h->settings.max_message_size = 1000;
    start(h, UNTRUSTED);
    send_text(h, EHLO);
    /* BINARYMIME is never offered without CHUNKING (RFC 3030 §3). */
    expect_replies(h, "250-mx.example.org\r\n"
                      "250-PIPELINING\r\n"
                      "250 SIZE 1000\r\n");
}

static void test_helo_gets_one_line_and_no_extensions(void **state)
{
    struct host *h = *state;
    start(h, UNTRUSTED);
    send_text(h, "HELO client.example\r\n");
    expect_replies(h, "250 mx.example.org\r\n");
    expect_events(h, "HELO client.example\n");
}

static void test_helo_name_is_trimmed_and_checked(void **state)
{
    struct host *h = *state;
    start(h, UNTRUSTED);
    send_text(h, "EHLO client.example   \r\n");
    expect_events(h, "EHLO client.example\n");
    buf_clear(&h->out);
    send_text(h, "EHLO\r\nEHLO \r\nEHLO two words\r\nHELO\r\n");
    /* Still after EHLO: the refusals carry enhanced codes. */
    expect_replies(h, "501 5.5.4 Syntax: EHLO hostname\r\n"
                      "501 5.5.4 Syntax: EHLO hostname\r\n"
                      "501 5.5.4 Syntax: EHLO hostname\r\n"
                      "501 5.5.4 Syntax: HELO hostname\r\n");
    expect_events(h, "");
}

static void test_ehlo_refusal_before_any_greeting_has_no_enhanced_code(void **state)
{
    struct host *h = *state;
    start(h, UNTRUSTED);
    send_text(h, "EHLO\r\n");
    expect_replies(h, "501 Syntax: EHLO hostname\r\n");
}

/* ---- enhanced status codes (RFC 2034) ---------------------------------------- */

static void test_replies_after_ehlo_carry_enhanced_codes(void **state)
{
    struct host *h = *state;
    start_ehlo(h, UNTRUSTED);
    send_text(h, "NOOP\r\nFOO\r\n" MAIL RCPT "DATA\r\n.\r\nQUIT\r\n");
    expect_replies(h, OK NOT_RECOGNIZED MAIL_OK RCPT_OK GO_AHEAD QUEUED BYE);
}

static void test_replies_before_any_greeting_have_no_enhanced_codes(void **state)
{
    struct host *h = *state;
    start(h, UNTRUSTED);
    send_text(h, "NOOP\r\nFOO\r\n" MAIL RCPT "DATA\r\n.\r\nQUIT\r\n");
    expect_replies(h, "250 Ok\r\n"
                      "500 Error: command not recognized\r\n"
                      "250 Ok\r\n"
                      "250 Ok\r\n" GO_AHEAD "250 Ok: queued\r\n"
                      "221 Bye\r\n");
}

static void test_replies_after_helo_have_no_enhanced_codes(void **state)
{
    struct host *h = *state;
    start(h, UNTRUSTED);
    send_text(h, "EHLO client.example\r\nHELO client.example\r\nNOOP\r\n");
    expect_replies(h, EHLO_REPLY "250 mx.example.org\r\n"
                                 "250 Ok\r\n");
}

static void test_enhanced_codes_need_the_extension(void **state)
{
    struct host *h = *state;
    h->settings.extensions = SMTP_EXT_PIPELINING;
    start(h, UNTRUSTED);
    send_text(h, EHLO "NOOP\r\nRCPT TO:<a@example.org>\r\n");
    expect_replies(h, "250-mx.example.org\r\n"
                      "250 PIPELINING\r\n"
                      "250 Ok\r\n"
                      "503 Error: need MAIL command\r\n");
}

static void test_354_never_carries_an_enhanced_code(void **state)
{
    struct host *h = *state;
    start_transaction(h, UNTRUSTED);
    send_text(h, "DATA\r\n");
    expect_replies(h, "354 End data with <CR><LF>.<CR><LF>\r\n");
    assert_true(smtp_server_in_message(h->s));
}

/* ---- simple commands --------------------------------------------------------- */

static void test_noop_takes_an_optional_argument(void **state)
{
    struct host *h = *state;
    start_ehlo(h, UNTRUSTED);
    send_text(h, "NOOP\r\nNOOP anything at all\r\nnoop\r\n");
    expect_replies(h, OK OK OK);
}

static void test_vrfy_never_confirms_a_user(void **state)
{
    struct host *h = *state;
    start_ehlo(h, UNTRUSTED);
    send_text(h, "VRFY postmaster\r\nVRFY\r\n");
    expect_replies(h, "252 2.0.0 Cannot verify users; send mail and delivery will be attempted\r\n"
                      "501 5.5.4 Syntax: VRFY address\r\n");
    expect_events(h, "");
}

static void test_help_is_a_multi_line_reply(void **state)
{
    struct host *h = *state;
    start_ehlo(h, UNTRUSTED);
    send_text(h, "HELP\r\n");
    expect_replies(h,
                   "214-2.0.0 Commands: HELO EHLO MAIL RCPT DATA BDAT RSET NOOP QUIT VRFY HELP\r\n"
                   "214 2.0.0 See RFC 5321; this server is Pigeon\r\n");
}

static void test_known_but_unoffered_commands_get_502(void **state)
{
    struct host *h = *state;
    start_ehlo(h, UNTRUSTED);
    send_text(h, "EXPN staff\r\nSTARTTLS\r\nAUTH PLAIN\r\nETRN example.org\r\nTURN\r\nATRN\r\n");
    const char *r = "502 5.5.1 Error: command not implemented\r\n";
    char expected[512];
    snprintf(expected, sizeof(expected), "%s%s%s%s%s%s", r, r, r, r, r, r);
    expect_replies(h, expected);
}

static void test_unknown_commands_get_500(void **state)
{
    struct host *h = *state;
    start_ehlo(h, UNTRUSTED);
    send_text(h, "FOO\r\nNOOPX\r\n NOOP\r\n\r\nMAILFROM:<a@example.org>\r\n");
    expect_replies(h, NOT_RECOGNIZED NOT_RECOGNIZED NOT_RECOGNIZED NOT_RECOGNIZED NOT_RECOGNIZED);
}

static void test_commands_are_case_insensitive(void **state)
{
    struct host *h = *state;
    start(h, UNTRUSTED);
    send_text(h, "ehlo client.example\r\nmail from:<sender@example.org>\r\n"
                 "Rcpt To:<rcpt@example.org>\r\ndata\r\n.\r\nquit\r\n");
    expect_replies(h, EHLO_REPLY MAIL_OK RCPT_OK GO_AHEAD QUEUED BYE);
}

static void test_nul_in_a_command_is_refused(void **state)
{
    struct host *h = *state;
    start_ehlo(h, UNTRUSTED);
    static const char line[] = "MAIL FROM:<a@example.org>\0\r\n";
    assert_int_equal(send_bytes(h, line, sizeof(line) - 1), sizeof(line) - 1);
    expect_replies(h, "500 5.5.2 Error: NUL octet in command\r\n");
    expect_events(h, "");
}

static void test_quit_closes_and_stops_reading(void **state)
{
    struct host *h = *state;
    start_ehlo(h, UNTRUSTED);
    const char *input = "QUIT\r\nNOOP\r\n";
    assert_int_equal(send_bytes(h, input, strlen(input)), 6);
    expect_replies(h, BYE);
    assert_true(smtp_server_closing(h->s));
    assert_int_equal(smtp_server_feed(h->s, (const uint8_t *)"NOOP\r\n", 6), 0);
}

static void test_http_verbs_close_the_session(void **state)
{
    (void)state;
    const char *verbs[] = {"GET",     "POST",    "HEAD",  "PUT",  "DELETE",
                           "OPTIONS", "CONNECT", "TRACE", "PATCH"};
    for (size_t i = 0; i < sizeof(verbs) / sizeof(verbs[0]); i++) {
        struct host h;
        char request[128];
        host_init(&h);
        start(&h, UNTRUSTED);
        snprintf(request, sizeof(request), "%s / HTTP/1.1\r\nHost: mx.example.org\r\n\r\n",
                 verbs[i]);
        assert_int_equal(send_bytes(&h, request, strlen(request)),
                         strlen(verbs[i]) + strlen(" / HTTP/1.1\r\n"));
        expect_replies(&h, "221 Error: this is an SMTP server, not HTTP; closing\r\n");
        assert_true(smtp_server_closing(h.s));
        host_free(&h);
    }
}

/* ---- the mail transaction ---------------------------------------------------- */

static void test_message_is_stored_with_crlf_and_queued(void **state)
{
    struct host *h = *state;
    start_ehlo(h, UNTRUSTED);
    send_text(h, "MAIL FROM:<sender@example.org>\r\n");
    send_text(h, "RCPT TO:<one@example.org>\r\n");
    send_text(h, "RCPT TO:<two@example.org>\r\n");
    send_text(h, "DATA\r\n");
    send_text(h, "Subject: test\r\n\r\nHello.\r\n.\r\n");
    expect_replies(h, MAIL_OK RCPT_OK RCPT_OK GO_AHEAD QUEUED);
    expect_events(h, "MAIL <sender@example.org>\n"
                     "RCPT <one@example.org>\n"
                     "RCPT <two@example.org>\n"
                     "DATA\n"
                     "END 25\n");
    expect_message(h, "Subject: test\r\n\r\nHello.\r\n");
    assert_false(smtp_server_in_message(h->s));
}

static void test_pipelined_transaction_in_one_feed_is_answered_in_order(void **state)
{
    struct host *h = *state;
    start(h, UNTRUSTED);
    send_text(h, "EHLO client.example\r\n"
                 "MAIL FROM:<sender@example.org>\r\n"
                 "RCPT TO:<one@example.org>\r\n"
                 "RCPT TO:<unknown@example.org>\r\n"
                 "RCPT TO:<two@example.org>\r\n"
                 "DATA\r\n"
                 "Hello.\r\n"
                 ".\r\n"
                 "MAIL FROM:<>\r\n"
                 "RCPT TO:<Postmaster>\r\n"
                 "DATA\r\n"
                 "Bounce.\r\n"
                 ".\r\n"
                 "QUIT\r\n");
    expect_replies(h, EHLO_REPLY MAIL_OK RCPT_OK UNKNOWN_USER RCPT_OK GO_AHEAD QUEUED MAIL_OK
                          RCPT_OK GO_AHEAD QUEUED BYE);
    expect_events(h, "EHLO client.example\n"
                     "MAIL <sender@example.org>\n"
                     "RCPT <one@example.org>\n"
                     "RCPT <unknown@example.org>\n"
                     "RCPT <two@example.org>\n"
                     "DATA\n"
                     "END 8\n"
                     "MAIL <>\n"
                     "RCPT <postmaster>\n"
                     "DATA\n"
                     "END 9\n");
    expect_message(h, "Hello.\r\nBounce.\r\n");
}

static void test_mail_without_helo_is_accepted(void **state)
{
    struct host *h = *state;
    start(h, UNTRUSTED);
    send_text(h, MAIL RCPT "DATA\r\nHi\r\n.\r\n");
    expect_replies(h, "250 Ok\r\n250 Ok\r\n" GO_AHEAD "250 Ok: queued\r\n");
    expect_events(h, MAIL_EVENTS "DATA\nEND 4\n");
}

static void test_mail_parameters_need_ehlo(void **state)
{
    struct host *h = *state;
    start(h, UNTRUSTED);
    send_text(h, "HELO client.example\r\nMAIL FROM:<sender@example.org> SIZE=10\r\n");
    expect_replies(h, "250 mx.example.org\r\n"
                      "555 Unsupported MAIL parameter\r\n");
    expect_events(h, "HELO client.example\n");
}

static void test_legacy_paths_without_brackets_are_accepted(void **state)
{
    struct host *h = *state;
    start_ehlo(h, UNTRUSTED);
    send_text(h, "MAIL FROM: sender@example.org SIZE=10\r\nRCPT TO: rcpt@example.org\r\n");
    expect_replies(h, MAIL_OK RCPT_OK);
    expect_events(h, MAIL_EVENTS);
    assert_true(h->mail_params.size_given);
    assert_int_equal(h->mail_params.size, 10);
}

static void test_space_after_the_colon_is_accepted(void **state)
{
    struct host *h = *state;
    start_ehlo(h, UNTRUSTED);
    send_text(h, "MAIL FROM: <sender@example.org>\r\nRCPT TO:  <rcpt@example.org>\r\n");
    expect_replies(h, MAIL_OK RCPT_OK);
    expect_events(h, MAIL_EVENTS);
}

static void test_source_routes_and_quoted_local_parts_reach_the_host_canonical(void **state)
{
    struct host *h = *state;
    start_ehlo(h, UNTRUSTED);
    send_text(h, "MAIL FROM:<@relay.example:\"sender\"@example.org>\r\n"
                 "RCPT TO:<\"john doe\"@[192.0.2.1]>\r\n"
                 "RCPT TO:<postmaster>\r\n");
    expect_replies(h, MAIL_OK RCPT_OK RCPT_OK);
    expect_events(h, "MAIL <sender@example.org>\n"
                     "RCPT <\"john doe\"@[192.0.2.1]>\n"
                     "RCPT <postmaster>\n");
}

static void test_bad_paths_are_refused_with_501(void **state)
{
    struct host *h = *state;
    start_ehlo(h, UNTRUSTED);
    send_text(h, "MAIL <sender@example.org>\r\n"
                 "MAIL FROM:\r\n"
                 "MAIL FROM:<sender@>\r\n"
                 "MAIL FROM:<Postmaster>\r\n" MAIL "RCPT <rcpt@example.org>\r\n"
                 "RCPT TO:<>\r\n"
                 "RCPT TO:<rcpt@example..org>\r\n");
    expect_replies(h, "501 5.5.4 Syntax: MAIL FROM:<address>\r\n"
                      "501 5.1.7 Error: bad sender address syntax\r\n"
                      "501 5.1.7 Error: bad sender address syntax\r\n"
                      "501 5.1.7 Error: bad sender address syntax\r\n" MAIL_OK
                      "501 5.5.4 Syntax: RCPT TO:<address>\r\n"
                      "501 5.1.3 Error: bad recipient address syntax\r\n"
                      "501 5.1.3 Error: bad recipient address syntax\r\n");
    expect_events(h, "MAIL <sender@example.org>\n");
}

static void test_over_long_paths_are_refused_with_501(void **state)
{
    struct host *h = *state;
    char line[600];
    start_ehlo(h, UNTRUSTED);
    char local[66];
    memset(local, 'l', 65);
    local[65] = '\0';
    snprintf(line, sizeof(line), "MAIL FROM:<%s@example.org>\r\n", local);
    send_text(h, line);
    send_text(h, MAIL);
    snprintf(line, sizeof(line), "RCPT TO:<%s@example.org>\r\n", local);
    send_text(h, line);
    expect_replies(h, "501 5.1.7 Error: sender address too long\r\n" MAIL_OK
                      "501 5.1.3 Error: recipient address too long\r\n");
}

static void test_utf8_addresses_need_smtputf8(void **state)
{
    struct host *h = *state;
    start_ehlo(h, UNTRUSTED);
    send_text(h,
              "MAIL FROM:<j\xc3\xb6rg@example.org>\r\n" MAIL "RCPT TO:<j\xc3\xb6rg@example.org>\r\n"
              "RSET\r\n"
              "MAIL FROM:<j\xc3\xb6rg@example.org> SMTPUTF8\r\n"
              "RCPT TO:<j\xc3\xb6rg@b\xc3\xbc"
              "cher.example>\r\n");
    expect_replies(
        h, "553 5.6.7 Error: non-ASCII sender address needs SMTPUTF8\r\n" MAIL_OK
           "553 5.6.7 Error: non-ASCII recipient address needs SMTPUTF8\r\n" OK MAIL_OK RCPT_OK);
    expect_events(h, "MAIL <sender@example.org>\n"
                     "RESET\n"
                     "MAIL <j\xc3\xb6rg@example.org>\n"
                     "RCPT <j\xc3\xb6rg@b\xc3\xbc"
                     "cher.example>\n");
    assert_true(h->mail_params.smtputf8);
}

static void test_unknown_and_duplicate_parameters_are_refused(void **state)
{
    struct host *h = *state;
    start_ehlo(h, UNTRUSTED);
    send_text(h, "MAIL FROM:<sender@example.org> FOO=bar\r\n"
                 "MAIL FROM:<sender@example.org> SIZE=1 SIZE=2\r\n"
                 "MAIL FROM:<sender@example.org> BODY=9BIT\r\n" MAIL
                 "RCPT TO:<rcpt@example.org> FOO\r\n"
                 "RCPT TO:<rcpt@example.org> NOTIFY=NEVER,DELAY\r\n");
    expect_replies(h, "555 5.5.4 Unsupported MAIL parameter\r\n"
                      "501 5.5.4 Syntax error in SIZE parameter\r\n"
                      "504 5.5.4 BODY type not supported\r\n" MAIL_OK
                      "555 5.5.4 Unsupported RCPT parameter\r\n"
                      "501 5.5.4 Syntax error in NOTIFY parameter\r\n");
    expect_events(h, "MAIL <sender@example.org>\n");
}

static void test_dsn_parameters_reach_the_host(void **state)
{
    struct host *h = *state;
    start_ehlo(h, UNTRUSTED);
    send_text(
        h, "MAIL FROM:<sender@example.org> RET=HDRS ENVID=QQ314159 BODY=8BITMIME\r\n"
           "RCPT TO:<rcpt@example.org> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;rcpt+40example.org\r\n");
    expect_replies(h, MAIL_OK RCPT_OK);
    assert_int_equal(h->mail_params.ret, SMTP_RET_HDRS);
    assert_string_equal(h->mail_params.envid, "QQ314159");
    assert_int_equal(h->mail_params.body, SMTP_BODY_8BITMIME);
    assert_int_equal(h->rcpt_params.notify, SMTP_NOTIFY_SUCCESS | SMTP_NOTIFY_FAILURE);
    assert_string_equal(h->rcpt_params.orcpt, "rfc822;rcpt+40example.org");
}

static void test_size_over_the_limit_is_refused_at_mail_with_552(void **state)
{
    struct host *h = *state;
    h->settings.max_message_size = 1000;
    start_ehlo(h, UNTRUSTED);
    send_text(h, "MAIL FROM:<sender@example.org> SIZE=1001\r\n"
                 "MAIL FROM:<sender@example.org> SIZE=1000\r\n");
    expect_replies(h, "552 5.3.4 Error: message size exceeds the limit of 1000 octets\r\n" MAIL_OK);
    expect_events(h, "MAIL <sender@example.org>\n");
}

static void test_nested_mail_gets_503(void **state)
{
    struct host *h = *state;
    start_transaction(h, UNTRUSTED);
    send_text(h, "MAIL FROM:<other@example.org>\r\n");
    expect_replies(h, "503 5.5.1 Error: nested MAIL command\r\n");
    expect_events(h, "");
}

static void test_rcpt_without_mail_gets_503(void **state)
{
    struct host *h = *state;
    start_ehlo(h, UNTRUSTED);
    send_text(h, RCPT);
    expect_replies(h, NEED_MAIL);
    expect_events(h, "");
}

static void test_data_without_mail_or_rcpt_gets_503(void **state)
{
    struct host *h = *state;
    start_ehlo(h, UNTRUSTED);
    send_text(h, "DATA\r\n" MAIL "DATA\r\n");
    expect_replies(h, NEED_MAIL MAIL_OK NEED_RCPT);
    assert_false(smtp_server_in_message(h->s));
}

static void test_data_after_only_failed_rcpts_gets_554(void **state)
{
    struct host *h = *state;
    start_ehlo(h, UNTRUSTED);
    /* RFC 2920 §3.1: the client pipelined DATA behind recipients that all failed. */
    send_text(h, MAIL "RCPT TO:<unknown@example.org>\r\nRCPT TO:<bad@>\r\nDATA\r\n");
    expect_replies(h, MAIL_OK UNKNOWN_USER
                   "501 5.1.3 Error: bad recipient address syntax\r\n" NO_VALID_RCPT);
}

static void test_data_with_an_argument_gets_501(void **state)
{
    struct host *h = *state;
    start_transaction(h, UNTRUSTED);
    send_text(h, "DATA now\r\n");
    expect_replies(h, "501 5.5.4 Syntax: DATA\r\n");
}

static void test_host_refusing_the_sender_leaves_no_transaction(void **state)
{
    struct host *h = *state;
    start_ehlo(h, UNTRUSTED);
    send_text(h, "MAIL FROM:<refused@example.org>\r\n" RCPT MAIL);
    expect_replies(h, "550 5.7.1 Sender refused\r\n" NEED_MAIL MAIL_OK);
}

static void test_host_reply_without_enhanced_code_gets_one_by_class(void **state)
{
    struct host *h = *state;
    h->data_end_reply = (struct smtp_reply){250, NULL, "Ok: queued as 42"};
    start_ehlo(h, UNTRUSTED);
    send_text(h, MAIL "RCPT TO:<later@example.org>\r\nRCPT TO:<nobody@example.org>\r\n" RCPT
                      "DATA\r\n.\r\n");
    expect_replies(h, MAIL_OK "450 4.0.0 Try again later\r\n"
                              "550 5.0.0 No such user\r\n" RCPT_OK GO_AHEAD
                              "250 2.0.0 Ok: queued as 42\r\n");
}

static void test_host_reply_is_not_given_an_enhanced_code_after_helo(void **state)
{
    struct host *h = *state;
    start(h, UNTRUSTED);
    send_text(h, "HELO client.example\r\n" MAIL "RCPT TO:<unknown@example.org>\r\n");
    expect_replies(h, "250 mx.example.org\r\n250 Ok\r\n550 User unknown\r\n");
}

static void test_too_many_recipients_get_452(void **state)
{
    struct host *h = *state;
    h->settings.max_recipients = 2;
    start_ehlo(h, UNTRUSTED);
    send_text(h, MAIL "RCPT TO:<one@example.org>\r\nRCPT TO:<unknown@example.org>\r\n"
                      "RCPT TO:<two@example.org>\r\nRCPT TO:<three@example.org>\r\n"
                      "DATA\r\nHi\r\n.\r\n");
    /* RFC 5321 §4.5.3.1.10: the client sends the rest in another transaction. */
    expect_replies(h, MAIL_OK RCPT_OK UNKNOWN_USER RCPT_OK
                   "452 4.5.3 Error: too many recipients\r\n" GO_AHEAD QUEUED);
    expect_events(h, "MAIL <sender@example.org>\n"
                     "RCPT <one@example.org>\n"
                     "RCPT <unknown@example.org>\n"
                     "RCPT <two@example.org>\n"
                     "DATA\n"
                     "END 4\n");
}

static void test_rset_forgets_the_transaction_and_keeps_the_greeting(void **state)
{
    struct host *h = *state;
    start_transaction(h, UNTRUSTED);
    send_text(h, "RSET\r\nDATA\r\nRCPT TO:<rcpt@example.org>\r\n"
                 "MAIL FROM:<sender@example.org> SIZE=10\r\n");
    expect_replies(h, OK NEED_MAIL NEED_MAIL MAIL_OK);
    expect_events(h, "RESET\nMAIL <sender@example.org>\n");
}

static void test_rset_without_a_transaction_tells_the_host_nothing(void **state)
{
    struct host *h = *state;
    start_ehlo(h, UNTRUSTED);
    send_text(h, "RSET\r\nRSET\r\n");
    expect_replies(h, OK OK);
    expect_events(h, "");
}

static void test_ehlo_in_a_transaction_resets_it(void **state)
{
    struct host *h = *state;
    start_transaction(h, UNTRUSTED);
    send_text(h, "EHLO client.example\r\nDATA\r\n");
    expect_replies(h, EHLO_REPLY NEED_MAIL);
    expect_events(h, "RESET\nEHLO client.example\n");
}

static void test_next_transaction_needs_no_rset(void **state)
{
    struct host *h = *state;
    start_transaction(h, UNTRUSTED);
    send_text(h, "DATA\r\nOne\r\n.\r\n" MAIL RCPT "DATA\r\nTwo\r\n.\r\n");
    expect_replies(h, GO_AHEAD QUEUED MAIL_OK RCPT_OK GO_AHEAD QUEUED);
    expect_events(h, "DATA\nEND 5\n" MAIL_EVENTS "DATA\nEND 5\n");
    expect_message(h, "One\r\nTwo\r\n");
}

static void test_quit_in_a_transaction_resets_it(void **state)
{
    struct host *h = *state;
    start_transaction(h, UNTRUSTED);
    send_text(h, "QUIT\r\n");
    expect_replies(h, BYE);
    expect_events(h, "RESET\n");
}

static void test_freeing_the_engine_in_a_transaction_resets_it(void **state)
{
    struct host *h = *state;
    start_transaction(h, UNTRUSTED);
    send_text(h, "DATA\r\npartial");
    smtp_server_free(h->s);
    h->s = NULL;
    expect_events(h, "DATA\nRESET\n");
}

static void test_data_begin_refusal_is_sent_and_the_transaction_kept(void **state)
{
    struct host *h = *state;
    h->refuse_data_begin = true;
    h->data_begin_reply = (struct smtp_reply){452, "4.3.1", "Insufficient system storage"};
    start_transaction(h, UNTRUSTED);
    send_text(h, "DATA\r\n");
    expect_replies(h, "452 4.3.1 Insufficient system storage\r\n");
    assert_false(smtp_server_in_message(h->s));
    /* Arguable: the transaction stays open (BDAT ends it); DATA may be retried. */
    h->refuse_data_begin = false;
    send_text(h, "DATA\r\nHi\r\n.\r\n");
    expect_replies(h, GO_AHEAD QUEUED);
    expect_events(h, "DATA\nDATA\nEND 4\n");
}

static void test_data_begin_refusal_without_a_reply_gets_451(void **state)
{
    struct host *h = *state;
    h->refuse_data_begin = true;
    start_transaction(h, UNTRUSTED);
    send_text(h, "DATA\r\n");
    expect_replies(h, "451 4.3.0 Error: try again later\r\n");
}

static void test_host_reply_to_the_message_is_sent(void **state)
{
    struct host *h = *state;
    h->data_end_reply = (struct smtp_reply){554, "5.7.1", "Message refused by policy"};
    start_transaction(h, UNTRUSTED);
    send_text(h, "DATA\r\nspam\r\n.\r\n" MAIL);
    expect_replies(h, GO_AHEAD "554 5.7.1 Message refused by policy\r\n" MAIL_OK);
    /* data_end ended the host's transaction; no reset follows. */
    expect_events(h, "DATA\nEND 6\nMAIL <sender@example.org>\n");
}

/* ---- message data ------------------------------------------------------------ */

static void test_dot_stuffing_is_removed(void **state)
{
    struct host *h = *state;
    start_transaction(h, UNTRUSTED);
    /* RFC 5321 §4.5.2: a leading period is doubled by the client. */
    send_text(h, "DATA\r\n..a\r\n...\r\n. \r\n.x\r\na.b\r\n..\r\n.\r\n");
    expect_replies(h, GO_AHEAD QUEUED);
    expect_message(h, ".a\r\n..\r\n \r\nx\r\na.b\r\n.\r\n");
}

static void test_empty_message_is_queued(void **state)
{
    struct host *h = *state;
    start_transaction(h, UNTRUSTED);
    send_text(h, "DATA\r\n.\r\n");
    expect_replies(h, GO_AHEAD QUEUED);
    expect_events(h, "DATA\nEND 0\n");
    expect_message(h, "");
}

static void test_commands_inside_data_are_message_text(void **state)
{
    struct host *h = *state;
    start_transaction(h, UNTRUSTED);
    send_text(h, "DATA\r\nQUIT\r\nRSET\r\n.\r\n");
    expect_replies(h, GO_AHEAD QUEUED);
    expect_message(h, "QUIT\r\nRSET\r\n");
    assert_false(smtp_server_closing(h->s));
}

static void test_eight_bit_and_nul_octets_are_passed_on(void **state)
{
    struct host *h = *state;
    start_transaction(h, UNTRUSTED);
    send_text(h, "DATA\r\n");
    static const char data[] = "caf\xc3\xa9 \xff\x00\x01\r\n.\r\n";
    assert_int_equal(send_bytes(h, data, sizeof(data) - 1), sizeof(data) - 1);
    expect_replies(h, GO_AHEAD QUEUED);
    expect_message_bytes(h, "caf\xc3\xa9 \xff\x00\x01\r\n", 11);
}

/* text_line - a message line of n octets of 'a' (plus a prefix) and an ending */
static void text_line(char *out, size_t size, const char *prefix, size_t n, const char *end)
{
    size_t p = strlen(prefix), e = strlen(end);
    assert_true(p + n + e < size);
    memcpy(out, prefix, p);
    memset(out + p, 'a', n);
    memcpy(out + p + n, end, e + 1);
}

static void test_text_line_of_998_octets_is_accepted(void **state)
{
    struct host *h = *state;
    char line[1200];
    start_transaction(h, UNTRUSTED);
    text_line(line, sizeof(line), "", 998, "\r\n");
    send_text(h, "DATA\r\n");
    send_text(h, line);
    send_text(h, ".\r\n");
    expect_replies(h, GO_AHEAD QUEUED);
    expect_message(h, line);
}

static void test_text_line_of_999_octets_is_refused(void **state)
{
    struct host *h = *state;
    char line[1200];
    start_transaction(h, UNTRUSTED);
    text_line(line, sizeof(line), "", 999, "\r\n");
    send_text(h, "DATA\r\nshort\r\n");
    send_text(h, line);
    send_text(h, "short\r\n.\r\n");
    /* RFC 5321 §4.5.3.1.6: 1000 octets with CRLF; refused at the end of data. */
    expect_replies(h, GO_AHEAD LONG_TEXT_LINE);
    expect_events(h, "DATA\nRESET\n");
}

static void test_stuffed_dot_does_not_count_toward_the_line_limit(void **state)
{
    struct host *h = *state;
    char line[1200], stored[1200];
    start_transaction(h, UNTRUSTED);
    text_line(line, sizeof(line), "..", 997, "\r\n");    /* 1001 octets sent */
    text_line(stored, sizeof(stored), ".", 997, "\r\n"); /* 1000 stored */
    send_text(h, "DATA\r\n");
    send_text(h, line);
    send_text(h, ".\r\n");
    expect_replies(h, GO_AHEAD QUEUED);
    expect_message(h, stored);
}

static void test_trusted_lf_line_limit_counts_the_stored_crlf(void **state)
{
    struct host *h = *state;
    char line[1200], stored[1200];
    start_transaction(h, TRUSTED);
    text_line(line, sizeof(line), "", 998, "\n");
    text_line(stored, sizeof(stored), "", 998, "\r\n");
    send_text(h, "DATA\n");
    send_text(h, line);
    send_text(h, ".\n");
    expect_replies(h, GO_AHEAD QUEUED);
    expect_message(h, stored);

    text_line(line, sizeof(line), "", 999, "\n");
    send_text(h, MAIL RCPT "DATA\n");
    send_text(h, line);
    send_text(h, ".\n");
    expect_replies(h, MAIL_OK RCPT_OK GO_AHEAD LONG_TEXT_LINE);
}

static void test_message_of_exactly_the_maximum_size_is_accepted(void **state)
{
    struct host *h = *state;
    char line[200];
    h->settings.max_message_size = 100;
    start_transaction(h, UNTRUSTED);
    text_line(line, sizeof(line), "", 98, "\r\n");
    send_text(h, "DATA\r\n");
    send_text(h, line);
    send_text(h, ".\r\n");
    expect_replies(h, GO_AHEAD QUEUED);
    expect_events(h, "DATA\nEND 100\n");
}

static void test_message_over_the_maximum_size_is_refused_at_the_end_of_data(void **state)
{
    struct host *h = *state;
    char line[200];
    h->settings.max_message_size = 100;
    start_transaction(h, UNTRUSTED);
    text_line(line, sizeof(line), "", 99, "\r\n");
    send_text(h, "DATA\r\n");
    send_text(h, line);
    send_text(h, "more\r\n");
    expect_replies(h, GO_AHEAD);
    send_text(h, ".\r\nNOOP\r\n");
    expect_replies(h, "552 5.3.4 Error: message size exceeds the limit of 100 octets\r\n" OK);
    expect_events(h, "DATA\nRESET\n");
    /* Nothing past the limit reached the host. */
    assert_true(h->message.len <= 100);
}

static void test_data_write_failure_is_reported_at_data_end(void **state)
{
    struct host *h = *state;
    h->writes_allowed = 0;
    h->data_end_reply = (struct smtp_reply){451, "4.3.0", "Error: could not store the message"};
    start_transaction(h, UNTRUSTED);
    send_text(h, "DATA\r\nline one\r\nline two\r\nline three\r\n.\r\nNOOP\r\n");
    expect_replies(h, GO_AHEAD "451 4.3.0 Error: could not store the message\r\n" OK);
    expect_events(h, "DATA\nEND 0\n");
    /* After the failure the engine sends no more. */
    assert_int_equal(h->writes, 1);
}

/* ---- line endings: commands -------------------------------------------------- */

static void test_bare_lf_in_a_command_from_untrusted_is_rejected(void **state)
{
    struct host *h = *state;
    start_ehlo(h, UNTRUSTED);
    send_text(h, "NOOP\nMAIL FROM:<sender@example.org>\n");
    expect_replies(h, BARE_LF_CMD BARE_LF_CMD);
    expect_events(h, "");
}

static void test_bare_lf_in_a_command_from_trusted_ends_the_line(void **state)
{
    struct host *h = *state;
    start(h, TRUSTED);
    send_text(h, "EHLO client.example\nMAIL FROM:<sender@example.org>\nNOOP\r\n");
    expect_replies(h, EHLO_REPLY MAIL_OK OK);
}

static void test_bare_cr_in_a_command_is_rejected_even_from_trusted(void **state)
{
    struct host *h = *state;
    start_ehlo(h, TRUSTED);
    send_text(h, "NOOP\rRSET\r\nNOOP\r\r\nQUIT\r\n");
    expect_replies(h, BARE_CR_CMD BARE_CR_CMD BYE);
}

static void test_quit_with_a_bare_line_ending_is_honoured(void **state)
{
    struct host *h = *state;
    start_ehlo(h, UNTRUSTED);
    send_text(h, "QUIT\n");
    expect_replies(h, BYE);
    assert_true(smtp_server_closing(h->s));
}

static void test_quit_run_into_more_text_by_a_bare_cr_is_not_a_quit(void **state)
{
    struct host *h = *state;
    start_ehlo(h, UNTRUSTED);
    send_text(h, "QUIT\rNOOP\n");
    expect_replies(h, BARE_CR_CMD);
    assert_false(smtp_server_closing(h->s));
}

/* ---- line endings: message data ---------------------------------------------- */

static void test_bare_lf_in_data_from_untrusted_refuses_the_message(void **state)
{
    struct host *h = *state;
    start_transaction(h, UNTRUSTED);
    send_text(h, "DATA\r\nline one\nline two\r\n");
    expect_replies(h, GO_AHEAD);
    assert_true(smtp_server_in_message(h->s));
    /* Refused at the real end of data, not before. */
    send_text(h, ".\r\nNOOP\r\n");
    expect_replies(h, BARE_LF_DATA OK);
    expect_events(h, "DATA\nRESET\n");
}

static void test_bare_cr_in_data_from_untrusted_refuses_the_message(void **state)
{
    struct host *h = *state;
    start_transaction(h, UNTRUSTED);
    send_text(h, "DATA\r\na\rb\r\n.\r\n" MAIL RCPT "DATA\r\nabc\r\r\n.\r\n");
    expect_replies(h, GO_AHEAD BARE_CR_DATA MAIL_OK RCPT_OK GO_AHEAD BARE_CR_DATA);
    expect_events(h, "DATA\nRESET\n" MAIL_EVENTS "DATA\nRESET\n");
}

static void test_trusted_bare_lf_lines_are_stored_as_crlf(void **state)
{
    struct host *h = *state;
    start_transaction(h, TRUSTED);
    send_text(h, "DATA\nline one\nline two\r\n\n..dot\n.\n");
    expect_replies(h, GO_AHEAD QUEUED);
    expect_message(h, "line one\r\nline two\r\n\r\n.dot\r\n");
}

static void test_trusted_bare_cr_is_kept_as_data(void **state)
{
    struct host *h = *state;
    start_transaction(h, TRUSTED);
    send_text(h, "DATA\na\rb\nc\r\r\n.\r.\r\n.\n");
    expect_replies(h, GO_AHEAD QUEUED);
    expect_message(h, "a\rb\r\nc\r\r\n\r.\r\n");
}

/*
 * SMTP smuggling (CVE-2023-51764 and its kind): an end-of-data that some
 * server might accept, followed by a second transaction.  Each variant is
 * put between "first" and the smuggled commands.
 */
static const char *const smuggling_variants[] = {
    "\n.\n", "\n.\r\n", "\r.\r\n", "\r\n.\n", "\r\n.\r\r\n",
};

#define SMUGGLED_TAIL                                                                              \
    "MAIL FROM:<evil@example.net>\r\n"                                                             \
    "RCPT TO:<victim@example.org>\r\n"                                                             \
    "DATA\r\n"                                                                                     \
    "smuggled\r\n"                                                                                 \
    ".\r\n"                                                                                        \
    "QUIT\r\n"

/* smuggling_input - the DATA part of a smuggling attempt with variant v */
static void smuggling_input(char *out, size_t size, const char *v)
{
    snprintf(out, size, "DATA\r\nSubject: hi\r\n\r\nfirst%s" SMUGGLED_TAIL, v);
}

static void test_smuggling_variants_from_untrusted_never_end_data(void **state)
{
    (void)state;
    /* The refusal names the first fault the scanner met. */
    const char *refusals[] = {BARE_LF_DATA, BARE_LF_DATA, BARE_CR_DATA, BARE_LF_DATA, BARE_CR_DATA};
    char expected[512];
    for (size_t i = 0; i < sizeof(smuggling_variants) / sizeof(smuggling_variants[0]); i++) {
        for (int bytewise = 0; bytewise < 2; bytewise++) {
            struct host h;
            char input[512];
            host_init(&h);
            start_transaction(&h, UNTRUSTED);
            smuggling_input(input, sizeof(input), smuggling_variants[i]);
            if (bytewise) {
                for (size_t k = 0; input[k] != '\0'; k++)
                    assert_int_equal(send_bytes(&h, input + k, 1), 1);
            } else {
                send_text(&h, input);
            }
            /* One transaction, refused at the real end; the "second" never happens. */
            snprintf(expected, sizeof(expected), "%s%s%s", GO_AHEAD, refusals[i], BYE);
            expect_replies(&h, expected);
            expect_events(&h, "DATA\nRESET\n");
            assert_null(memmem(h.message.data, h.message.len, "smuggled", 8));
            assert_null(memmem(h.message.data, h.message.len, "MAIL FROM", 9));
            host_free(&h);
        }
    }
}

static void test_smuggling_variants_from_trusted_end_data_only_at_a_line_end(void **state)
{
    (void)state;
    /* For a trusted client LF is a line end, so "\n.\n" is an end of data and
     * what follows is its next transaction; a bare CR is never a line end. */
    struct {
        const char *variant;
        const char *replies;
        const char *events;
        const char *message;
    } cases[] = {
        {"\n.\n", GO_AHEAD QUEUED MAIL_OK RCPT_OK GO_AHEAD QUEUED BYE,
         "DATA\nEND 22\nMAIL <evil@example.net>\nRCPT <victim@example.org>\nDATA\nEND 10\n",
         "Subject: hi\r\n\r\nfirst\r\nsmuggled\r\n"},
        {"\n.\r\n", GO_AHEAD QUEUED MAIL_OK RCPT_OK GO_AHEAD QUEUED BYE,
         "DATA\nEND 22\nMAIL <evil@example.net>\nRCPT <victim@example.org>\nDATA\nEND 10\n",
         "Subject: hi\r\n\r\nfirst\r\nsmuggled\r\n"},
        {"\r.\r\n", GO_AHEAD QUEUED BYE, "DATA\nEND 100\n",
         "Subject: hi\r\n\r\nfirst\r.\r\n"
         "MAIL FROM:<evil@example.net>\r\nRCPT TO:<victim@example.org>\r\nDATA\r\nsmuggled\r\n"},
        {"\r\n.\n", GO_AHEAD QUEUED MAIL_OK RCPT_OK GO_AHEAD QUEUED BYE,
         "DATA\nEND 22\nMAIL <evil@example.net>\nRCPT <victim@example.org>\nDATA\nEND 10\n",
         "Subject: hi\r\n\r\nfirst\r\nsmuggled\r\n"},
        {"\r\n.\r\r\n", GO_AHEAD QUEUED BYE, "DATA\nEND 101\n",
         "Subject: hi\r\n\r\nfirst\r\n\r\r\n"
         "MAIL FROM:<evil@example.net>\r\nRCPT TO:<victim@example.org>\r\nDATA\r\nsmuggled\r\n"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        for (int bytewise = 0; bytewise < 2; bytewise++) {
            struct host h;
            char input[512];
            host_init(&h);
            start_transaction(&h, TRUSTED);
            smuggling_input(input, sizeof(input), cases[i].variant);
            if (bytewise) {
                for (size_t k = 0; input[k] != '\0'; k++)
                    assert_int_equal(send_bytes(&h, input + k, 1), 1);
            } else {
                send_text(&h, input);
            }
            expect_replies(&h, cases[i].replies);
            expect_events(&h, cases[i].events);
            expect_message(&h, cases[i].message);
            host_free(&h);
        }
    }
}

/* ---- command line limits ----------------------------------------------------- */

/* command_line - verb, padding spaces, a tail, CRLF: n octets in all */
static void command_line(char *out, size_t size, const char *verb, const char *tail, size_t n)
{
    size_t v = strlen(verb), t = strlen(tail);
    assert_true(n < size && v + t + 2 <= n);
    memcpy(out, verb, v);
    memset(out + v, ' ', n - v - t - 2);
    memcpy(out + n - t - 2, tail, t);
    memcpy(out + n - 2, "\r\n", 3);
}

static void test_command_line_of_512_octets_is_accepted_and_513_refused(void **state)
{
    struct host *h = *state;
    char line[2000];
    start_ehlo(h, UNTRUSTED);
    command_line(line, sizeof(line), "NOOP", "x", 512);
    send_text(h, line);
    command_line(line, sizeof(line), "NOOP", "x", 513);
    send_text(h, line);
    send_text(h, "NOOP\r\n");
    expect_replies(h, OK LINE_TOO_LONG OK);
}

static void test_mail_and_rcpt_after_ehlo_may_be_600_octets_longer(void **state)
{
    struct host *h = *state;
    char line[2000];
    start_ehlo(h, UNTRUSTED);
    command_line(line, sizeof(line), "MAIL FROM:<sender@example.org>", "SIZE=10", 1112);
    send_text(h, line);
    command_line(line, sizeof(line), "RCPT TO:<rcpt@example.org>", "NOTIFY=NEVER", 1113);
    send_text(h, line);
    command_line(line, sizeof(line), "RCPT TO:<rcpt@example.org>", "NOTIFY=NEVER", 1112);
    send_text(h, line);
    expect_replies(h, MAIL_OK LINE_TOO_LONG RCPT_OK);
}

static void test_mail_after_helo_gets_no_parameter_allowance(void **state)
{
    struct host *h = *state;
    char line[2000];
    start(h, UNTRUSTED);
    send_text(h, "HELO client.example\r\n");
    command_line(line, sizeof(line), "MAIL FROM:<sender@example.org>", "", 513);
    send_text(h, line);
    command_line(line, sizeof(line), "MAIL FROM:<sender@example.org>", "", 512);
    send_text(h, line);
    expect_replies(h, "250 mx.example.org\r\n"
                      "500 Error: line too long (limit 512 octets)\r\n"
                      "250 Ok\r\n");
}

static void test_over_long_line_in_pieces_gets_one_reply(void **state)
{
    struct host *h = *state;
    char line[5000];
    start_ehlo(h, UNTRUSTED);
    command_line(line, sizeof(line), "NOOP", "x", 4000);
    for (size_t i = 0; i < 4000; i += 700) {
        size_t n = 4000 - i < 700 ? 4000 - i : 700;
        assert_int_equal(send_bytes(h, line + i, n), n);
    }
    send_text(h, "NOOP\r\n");
    expect_replies(h, LINE_TOO_LONG OK);
}

static void test_over_long_line_in_one_piece_gets_one_reply(void **state)
{
    struct host *h = *state;
    char line[5000];
    start_ehlo(h, UNTRUSTED);
    command_line(line, sizeof(line), "MAIL", "FROM:<sender@example.org>", 4000);
    send_text(h, line);
    send_text(h, "NOOP\r\n");
    expect_replies(h, LINE_TOO_LONG OK);
    expect_events(h, "");
}

static void test_tail_of_an_over_long_line_is_not_a_command(void **state)
{
    struct host *h = *state;
    char line[3000];
    start_ehlo(h, UNTRUSTED);
    command_line(line, sizeof(line), "NOOP", "x", 2002);
    line[2000] = '\0'; /* the line without its CRLF */
    send_text(h, line);
    send_text(h, "QUIT\r\nNOOP\r\n");
    expect_replies(h, LINE_TOO_LONG OK);
    assert_false(smtp_server_closing(h->s));
}

/* ---- error limit and timeouts ------------------------------------------------ */

static void test_error_limit_closes_with_421(void **state)
{
    struct host *h = *state;
    h->settings.max_errors = 3;
    start_ehlo(h, UNTRUSTED);
    /* 4xx and 5xx count alike, the host's as well as the engine's. */
    const char *input = "FOO\r\n" MAIL "RCPT TO:<later@example.org>\r\nBAR\r\nNOOP\r\n";
    size_t used = send_bytes(h, input, strlen(input));
    assert_int_equal(used, strlen(input) - strlen("NOOP\r\n"));
    expect_replies(h, NOT_RECOGNIZED MAIL_OK "450 4.0.0 Try again later\r\n" NOT_RECOGNIZED
                                             "421 4.7.0 mx.example.org Error: too many errors\r\n");
    expect_events(h, "MAIL <sender@example.org>\nRCPT <later@example.org>\nRESET\n");
    assert_true(smtp_server_closing(h->s));
}

static void test_timeout_closes_with_421(void **state)
{
    struct host *h = *state;
    start(h, UNTRUSTED);
    smtp_server_timeout(h->s);
    take_output(h);
    expect_replies(h, "421 mx.example.org Error: timeout exceeded\r\n");
    assert_true(smtp_server_closing(h->s));
    /* Once closed, a second timeout says nothing. */
    smtp_server_timeout(h->s);
    take_output(h);
    expect_replies(h, "");
}

static void test_timeout_in_data_closes_with_421_4_4_2_and_resets(void **state)
{
    struct host *h = *state;
    start_transaction(h, UNTRUSTED);
    send_text(h, "DATA\r\nhalf a mess");
    smtp_server_timeout(h->s);
    take_output(h);
    expect_replies(h, GO_AHEAD "421 4.4.2 mx.example.org Error: timeout exceeded\r\n");
    expect_events(h, "DATA\nRESET\n");
    assert_true(smtp_server_closing(h->s));
}

static void test_refuse_sends_the_reply_and_closes(void **state)
{
    struct host *h = *state;
    h->s = smtp_server_new(&h->settings, &host_ops, h, UNTRUSTED);
    smtp_server_refuse(h->s, 554, "5.7.1", "Access denied");
    take_output(h);
    expect_replies(h, "554 Access denied\r\n");
    assert_true(smtp_server_closing(h->s));
    assert_int_equal(smtp_server_feed(h->s, (const uint8_t *)"EHLO x\r\n", 8), 0);
}

/* ---- output back-pressure ---------------------------------------------------- */

static void test_feed_stops_when_replies_are_not_taken(void **state)
{
    struct host *h = *state;
    enum { NOOPS = 2000 };
    static char input[NOOPS * 6];
    for (size_t i = 0; i < NOOPS; i++)
        memcpy(input + 6 * i, "NOOP\r\n", 6);
    start_ehlo(h, UNTRUSTED);

    /* A client that pipelines without reading stalls itself. */
    const uint8_t *p = (const uint8_t *)input;
    size_t used = smtp_server_feed(h->s, p, sizeof(input));
    struct buf *out = smtp_server_output(h->s);
    assert_true(used < sizeof(input));
    assert_int_equal(used % 6, 0);
    assert_int_equal(out->len, (used / 6) * strlen(OK));
    assert_true(out->len >= 4096);
    assert_true(out->len < 4096 + strlen(OK));
    assert_int_equal(smtp_server_feed(h->s, p + used, sizeof(input) - used), 0);

    /* Once the client reads, the rest is answered. */
    while (used < sizeof(input)) {
        take_output(h);
        size_t k = smtp_server_feed(h->s, p + used, sizeof(input) - used);
        assert_true(k > 0);
        used += k;
    }
    take_output(h);
    assert_int_equal(h->out.len, NOOPS * strlen(OK));
}

/* ---- waiting for the host (SMTP_SERVER_ASYNC) ---------------------------------- */

static void test_async_mail_waits_for_resume(void **state)
{
    struct host *h = *state;
    h->mail_async = true;
    start_ehlo(h, UNTRUSTED);
    const char *input = MAIL RCPT;
    size_t used = send_bytes(h, input, strlen(input));
    assert_int_equal(used, strlen(MAIL));
    assert_true(smtp_server_waiting(h->s));
    expect_replies(h, "");
    expect_events(h, "MAIL <sender@example.org>\n");
    assert_int_equal(smtp_server_feed(h->s, (const uint8_t *)input + used, strlen(RCPT)), 0);

    smtp_server_resume(h->s, &(struct smtp_reply){0});
    take_output(h);
    assert_false(smtp_server_waiting(h->s));
    expect_replies(h, MAIL_OK);
    send_text(h, input + used);
    expect_replies(h, RCPT_OK);
}

static void test_async_mail_refusal_leaves_no_transaction(void **state)
{
    struct host *h = *state;
    h->mail_async = true;
    start_ehlo(h, UNTRUSTED);
    send_text(h, MAIL);
    smtp_server_resume(h->s, &(struct smtp_reply){451, "4.3.0", "Try again"});
    take_output(h);
    send_text(h, RCPT);
    expect_replies(h, "451 4.3.0 Try again\r\n" NEED_MAIL);
}

static void test_async_rcpt_answers_in_order(void **state)
{
    struct host *h = *state;
    h->rcpt_async = true;
    start_ehlo(h, UNTRUSTED);
    const char *input = MAIL "RCPT TO:<one@example.org>\r\nRCPT TO:<two@example.org>\r\nDATA\r\n";
    size_t used = send_bytes(h, input, strlen(input));
    smtp_server_resume(h->s, &(struct smtp_reply){550, "5.1.1", "User unknown"});
    take_output(h);
    used += send_bytes(h, input + used, strlen(input) - used);
    smtp_server_resume(h->s, &(struct smtp_reply){0});
    take_output(h);
    used += send_bytes(h, input + used, strlen(input) - used);
    assert_int_equal(used, strlen(input));
    expect_replies(h, MAIL_OK UNKNOWN_USER RCPT_OK GO_AHEAD);
}

static void test_async_data_end_holds_the_commands_after_it(void **state)
{
    struct host *h = *state;
    h->data_end_async = true;
    start_transaction(h, UNTRUSTED);
    const char *input = "DATA\r\nHello\r\n.\r\nQUIT\r\n";
    size_t used = send_bytes(h, input, strlen(input));
    assert_int_equal(used, strlen(input) - strlen("QUIT\r\n"));
    assert_true(smtp_server_waiting(h->s));
    assert_false(smtp_server_in_message(h->s));
    expect_replies(h, GO_AHEAD);
    expect_events(h, "DATA\nEND 7\n");

    smtp_server_resume(h->s, &(struct smtp_reply){250, "2.0.0", "Ok: queued as 42"});
    take_output(h);
    send_text(h, input + used);
    expect_replies(h, "250 2.0.0 Ok: queued as 42\r\n" BYE);
    /* data_end ended the host's transaction: QUIT resets nothing. */
    expect_events(h, "");
}

static void test_resume_when_not_waiting_is_ignored(void **state)
{
    struct host *h = *state;
    start_ehlo(h, UNTRUSTED);
    smtp_server_resume(h->s, &(struct smtp_reply){250, "2.0.0", "Surprise"});
    take_output(h);
    expect_replies(h, "");
    send_text(h, RCPT);
    expect_replies(h, NEED_MAIL);
}

/* ---- BDAT (RFC 3030) ----------------------------------------------------------- */

static void test_bdat_chunks_are_stored_as_sent(void **state)
{
    struct host *h = *state;
    start_transaction(h, UNTRUSTED);
    send_text(h, "BDAT 12\r\nSubject: a\r\n");
    assert_false(smtp_server_in_message(h->s));
    /* No dot-stuffing in chunks: "\r\n.\r\n" is just text. */
    send_text(h, "BDAT 15 LAST\r\n\r\n.\r\n..\r\nbody\r\n");
    expect_replies(h, "250 2.0.0 Ok: 12 octets received\r\n" QUEUED);
    expect_events(h, "DATA\nEND 27\n");
    expect_message(h, "Subject: a\r\n\r\n.\r\n..\r\nbody\r\n");
}

static void test_bdat_chunk_split_across_feeds(void **state)
{
    struct host *h = *state;
    start_transaction(h, UNTRUSTED);
    send_text(h, "BDAT 14 LA");
    send_text(h, "ST\r\nhel");
    assert_true(smtp_server_in_message(h->s));
    send_text(h, "lo\r");
    send_text(h, "\nworld\r");
    send_text(h, "\nNOOP\r\n");
    expect_replies(h, QUEUED OK);
    expect_message(h, "hello\r\nworld\r\n");
}

static void test_bdat_crlf_split_across_chunks_is_a_line_end(void **state)
{
    struct host *h = *state;
    start_transaction(h, UNTRUSTED);
    send_text(h, "BDAT 4\r\nabc\rBDAT 1 LAST\r\n\n");
    expect_replies(h, "250 2.0.0 Ok: 4 octets received\r\n" QUEUED);
    expect_message(h, "abc\r\n");
}

static void test_bdat_zero_last_ends_the_message(void **state)
{
    struct host *h = *state;
    start_transaction(h, UNTRUSTED);
    send_text(h, "BDAT 5\r\nabc\r\nBDAT 0\r\nBDAT 0 LAST\r\n");
    expect_replies(h, "250 2.0.0 Ok: 5 octets received\r\n"
                      "250 2.0.0 Ok: 0 octets received\r\n" QUEUED);
    expect_events(h, "DATA\nEND 5\n");
}

static void test_bdat_zero_last_alone_is_an_empty_message(void **state)
{
    struct host *h = *state;
    start_transaction(h, UNTRUSTED);
    send_text(h, "bdat 0 last\r\n");
    expect_replies(h, QUEUED);
    expect_events(h, "DATA\nEND 0\n");
}

static void test_binarymime_chunks_are_passed_on_raw(void **state)
{
    struct host *h = *state;
    char chunk[1500];
    start_ehlo(h, UNTRUSTED);
    send_text(h, "MAIL FROM:<sender@example.org> BODY=BINARYMIME\r\n" RCPT);
    /* Bare LF and CR, NUL, a lone dot line, a line far past 1000 octets. */
    static const char head[] = "\x00\n.\n\r.\r\r\n\x80\xff";
    memcpy(chunk, head, sizeof(head) - 1);
    memset(chunk + sizeof(head) - 1, 'x', sizeof(chunk) - (sizeof(head) - 1));
    char cmd[64];
    snprintf(cmd, sizeof(cmd), "BDAT %zu LAST\r\n", sizeof(chunk));
    send_text(h, cmd);
    assert_int_equal(send_bytes(h, chunk, sizeof(chunk)), sizeof(chunk));
    expect_replies(h, MAIL_OK RCPT_OK QUEUED);
    expect_message_bytes(h, chunk, sizeof(chunk));
}

static void test_binarymime_with_data_gets_503(void **state)
{
    struct host *h = *state;
    start_ehlo(h, UNTRUSTED);
    send_text(h, "MAIL FROM:<sender@example.org> BODY=BINARYMIME\r\n" RCPT "DATA\r\n");
    expect_replies(h, MAIL_OK RCPT_OK "503 5.5.1 Error: BODY=BINARYMIME needs BDAT\r\n");
}

static void test_bdat_without_mail_consumes_the_chunk_then_503(void **state)
{
    struct host *h = *state;
    start_ehlo(h, UNTRUSTED);
    send_text(h, "BDAT 6\r\nQUIT\r\nNOOP\r\n");
    /* The QUIT was chunk data, not a command. */
    expect_replies(h, NEED_MAIL OK);
    assert_false(smtp_server_closing(h->s));
    expect_events(h, "");
}

static void test_bdat_without_rcpt_gets_503_and_after_failed_rcpts_554(void **state)
{
    struct host *h = *state;
    start_ehlo(h, UNTRUSTED);
    send_text(h, MAIL "BDAT 3\r\nabcRCPT TO:<unknown@example.org>\r\nBDAT 3 LAST\r\nabc");
    expect_replies(h, MAIL_OK NEED_RCPT UNKNOWN_USER NO_VALID_RCPT);
}

static void test_bdat_without_chunking_is_read_then_refused(void **state)
{
    struct host *h = *state;
    start(h, UNTRUSTED);
    send_text(h, "HELO client.example\r\n" MAIL RCPT "BDAT 6 LAST\r\nQUIT\r\n");
    expect_replies(h, "250 mx.example.org\r\n250 Ok\r\n250 Ok\r\n"
                      "503 Error: BDAT without EHLO and CHUNKING\r\n");
    assert_false(smtp_server_closing(h->s));
}

static void test_malformed_bdat_closes_the_session(void **state)
{
    (void)state;
    const char *bad[] = {
        "BDAT\r\n",         "BDAT x\r\n",  "BDAT 5 FIRST\r\n", "BDAT -1\r\n",
        "BDAT 5 LAST \r\n", "BDAT  5\r\n", "BDAT 5LAST\r\n",   "BDAT 99999999999999999999999\r\n",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct host h;
        char input[128];
        host_init(&h);
        start_transaction(&h, UNTRUSTED);
        snprintf(input, sizeof(input), "%sNOOP\r\n", bad[i]);
        /* Without a size no byte after the line can be trusted to be a command. */
        assert_int_equal(send_bytes(&h, input, strlen(input)), strlen(bad[i]));
        expect_replies(&h, BAD_BDAT);
        expect_events(&h, "RESET\n");
        assert_true(smtp_server_closing(h.s));
        host_free(&h);
    }
}

static void test_data_in_a_bdat_transaction_gets_503(void **state)
{
    struct host *h = *state;
    start_transaction(h, UNTRUSTED);
    send_text(h, "BDAT 3\r\nabcDATA\r\nBDAT 2 LAST\r\nde");
    expect_replies(h, "250 2.0.0 Ok: 3 octets received\r\n"
                      "503 5.5.1 Error: DATA in a BDAT transaction\r\n" QUEUED);
    expect_message(h, "abcde");
}

static void test_bare_lf_in_a_bdat_chunk_from_untrusted_ends_the_transaction(void **state)
{
    struct host *h = *state;
    start_transaction(h, UNTRUSTED);
    /* RFC 3030 §2: once a chunk fails, the transaction is over. */
    send_text(h, "BDAT 5\r\na\nb\r\nBDAT 0 LAST\r\n");
    expect_replies(h, BARE_LF_DATA NEED_MAIL);
    expect_events(h, "DATA\nRESET\n");
}

static void test_bare_lf_in_a_bdat_chunk_from_trusted_is_stored_as_crlf(void **state)
{
    struct host *h = *state;
    start_transaction(h, TRUSTED);
    send_text(h, "BDAT 4 LAST\na\nb\n");
    expect_replies(h, QUEUED);
    expect_message(h, "a\r\nb\r\n");
}

static void test_bdat_message_ending_in_a_bare_cr_is_refused(void **state)
{
    struct host *h = *state;
    start_transaction(h, UNTRUSTED);
    send_text(h, "BDAT 4 LAST\r\nabc\r");
    expect_replies(h, BARE_CR_DATA);
    expect_events(h, "DATA\nRESET\n");
}

static void test_bdat_message_is_stored_without_an_added_final_crlf(void **state)
{
    struct host *h = *state;
    start_transaction(h, UNTRUSTED);
    /* Arguable: unlike DATA, a chunked text message may end inside a line,
     * and it is stored as sent. */
    send_text(h, "BDAT 3 LAST\r\nabc");
    expect_replies(h, QUEUED);
    expect_message(h, "abc");
}

static void test_bdat_over_the_maximum_size_is_refused_at_the_chunk_end(void **state)
{
    struct host *h = *state;
    h->settings.max_message_size = 10;
    start_transaction(h, UNTRUSTED);
    send_text(h, "BDAT 8\r\n12345678BDAT 8 LAST\r\n12345678");
    expect_replies(h, "250 2.0.0 Ok: 8 octets received\r\n"
                      "552 5.3.4 Error: message size exceeds the limit of 10 octets\r\n");
    expect_events(h, "DATA\nRESET\n");
}

static void test_bdat_refused_by_data_begin_reads_the_chunk_then_replies(void **state)
{
    struct host *h = *state;
    h->refuse_data_begin = true;
    h->data_begin_reply = (struct smtp_reply){452, "4.3.1", "Insufficient system storage"};
    start_transaction(h, UNTRUSTED);
    send_text(h, "BDAT 6\r\nQUIT\r\nBDAT 0 LAST\r\n");
    expect_replies(h, "452 4.3.1 Insufficient system storage\r\n" NEED_MAIL);
    expect_events(h, "DATA\nRESET\n");
    assert_false(smtp_server_closing(h->s));
}

/* ---- any split of the input gives the same session ----------------------------- */

/* session_text - a session that exercises commands, DATA, BDAT and refusals */
static size_t session_text(char *out, size_t size)
{
    int n = snprintf(out, size, "%s",
                     "EHLO client.example\r\n"
                     "MAIL FROM:<sender@example.org> SIZE=300 BODY=8BITMIME\r\n"
                     "RCPT TO:<one@example.org>\r\n"
                     "RCPT TO:<unknown@example.org>\r\n"
                     "RCPT TO:<two@example.org> NOTIFY=SUCCESS,FAILURE\r\n"
                     "DATA\r\n"
                     "Subject: split\r\n"
                     "\r\n"
                     "..stuffed\r\n"
                     ".\r\n"
                     "MAIL FROM:<>\r\n"
                     "RCPT TO:<Postmaster>\r\n"
                     "BDAT 20\r\n"
                     "chunk one\r\n.\r\n\r\n..\r\n"
                     "BDAT 10 LAST\r\n"
                     "two\r\n\r\n.\r\n"
                     "MAIL FROM:<sender@example.org>\r\n"
                     "RCPT TO:<three@example.org>\r\n"
                     "DATA\r\n"
                     "evil\r\n.\nMAIL FROM:<x@example.net>\r\n.\r\r\n"
                     "real end\r\n"
                     ".\r\n"
                     "RSET\r\n"
                     "NOOP\n"
                     "VRFY someone\r\n"
                     "QUIT\r\n"
                     "NOOP\r\n");
    assert_true(n > 0 && (size_t)n < size);
    return (size_t)n;
}

/* run_split - a fresh session fed input cut at cuts[0..ncuts), ascending */
static void run_split(struct host *h, bool lf_ok, const char *input, size_t n, const size_t *cuts,
                      size_t ncuts)
{
    host_init(h);
    start(h, lf_ok);
    size_t from = 0;
    for (size_t i = 0; i <= ncuts; i++) {
        size_t to = i < ncuts ? cuts[i] : n;
        size_t used = send_bytes(h, input + from, to - from);
        from += used;
        if (smtp_server_closing(h->s))
            break;
        assert_int_equal(from, to);
    }
}

/* assert_same_session - h saw and stored exactly what ref did */
static void assert_same_session(struct host *ref, struct host *h)
{
    assert_int_equal(h->out.len, ref->out.len);
    assert_memory_equal(h->out.data, ref->out.data, ref->out.len);
    assert_int_equal(h->events.len, ref->events.len);
    assert_memory_equal(h->events.data, ref->events.data, ref->events.len);
    assert_int_equal(h->message.len, ref->message.len);
    if (ref->message.len > 0)
        assert_memory_equal(h->message.data, ref->message.data, ref->message.len);
}

static void test_full_session_unsplit(void **state)
{
    struct host *h = *state;
    char input[2048];
    size_t n = session_text(input, sizeof(input));
    run_split(h, UNTRUSTED, input, n, NULL, 0);
    expect_replies(
        h, EHLO_REPLY MAIL_OK RCPT_OK UNKNOWN_USER RCPT_OK GO_AHEAD QUEUED MAIL_OK RCPT_OK
        "250 2.0.0 Ok: 20 octets received\r\n" QUEUED MAIL_OK RCPT_OK GO_AHEAD BARE_LF_DATA OK
            BARE_LF_CMD
        "252 2.0.0 Cannot verify users; send mail and delivery will be attempted\r\n" BYE);
    expect_events(h, "EHLO client.example\n"
                     "MAIL <sender@example.org>\n"
                     "RCPT <one@example.org>\n"
                     "RCPT <unknown@example.org>\n"
                     "RCPT <two@example.org>\n"
                     "DATA\n"
                     "END 28\n"
                     "MAIL <>\n"
                     "RCPT <postmaster>\n"
                     "DATA\n"
                     "END 30\n"
                     "MAIL <sender@example.org>\n"
                     "RCPT <three@example.org>\n"
                     "DATA\n"
                     "RESET\n");
    /* The first two messages; nothing of the third past its bare LF. */
    static const char stored[] = "Subject: split\r\n\r\n.stuffed\r\n"
                                 "chunk one\r\n.\r\n\r\n..\r\ntwo\r\n\r\n.\r\n";
    assert_true(h->message.len >= sizeof(stored) - 1);
    assert_memory_equal(h->message.data, stored, sizeof(stored) - 1);
    assert_null(memmem(h->message.data, h->message.len, "MAIL FROM", 9));
}

static void test_full_session_trusted_unsplit(void **state)
{
    struct host *h = *state;
    char input[2048];
    size_t n = session_text(input, sizeof(input));
    run_split(h, TRUSTED, input, n, NULL, 0);
    /* ".\n" ends the third message; the next line is a command. */
    expect_replies(
        h, EHLO_REPLY MAIL_OK RCPT_OK UNKNOWN_USER RCPT_OK GO_AHEAD QUEUED MAIL_OK RCPT_OK
        "250 2.0.0 Ok: 20 octets received\r\n" QUEUED MAIL_OK RCPT_OK GO_AHEAD QUEUED MAIL_OK
            BARE_CR_CMD NOT_RECOGNIZED NOT_RECOGNIZED OK OK
        "252 2.0.0 Cannot verify users; send mail and delivery will be attempted\r\n" BYE);
}

static void test_any_two_way_split_gives_the_same_session(void **state)
{
    (void)state;
    char input[2048];
    size_t n = session_text(input, sizeof(input));
    for (int trusted = 0; trusted < 2; trusted++) {
        struct host ref;
        run_split(&ref, trusted, input, n, NULL, 0);
        for (size_t cut = 0; cut <= n; cut++) {
            struct host h;
            run_split(&h, trusted, input, n, &cut, 1);
            assert_same_session(&ref, &h);
            host_free(&h);
        }
        host_free(&ref);
    }
}

static void test_one_byte_at_a_time_gives_the_same_session(void **state)
{
    (void)state;
    char input[2048];
    static size_t cuts[2048];
    size_t n = session_text(input, sizeof(input));
    for (size_t i = 0; i < n; i++)
        cuts[i] = i + 1;
    for (int trusted = 0; trusted < 2; trusted++) {
        struct host ref, h;
        run_split(&ref, trusted, input, n, NULL, 0);
        run_split(&h, trusted, input, n, cuts, n - 1);
        assert_same_session(&ref, &h);
        host_free(&h);
        host_free(&ref);
    }
}

static void test_random_splits_give_the_same_session(void **state)
{
    (void)state;
    char input[2048];
    size_t n = session_text(input, sizeof(input));
    uint32_t seed = 12345;
    for (int trusted = 0; trusted < 2; trusted++) {
        struct host ref;
        run_split(&ref, trusted, input, n, NULL, 0);
        for (int round = 0; round < 500; round++) {
            size_t cuts[16], ncuts = 0, at = 0;
            while (ncuts < 16) {
                seed = seed * 1103515245u + 12345u; /* a fixed sequence: failures repeat */
                at += 1 + (seed >> 16) % 40;
                if (at >= n)
                    break;
                cuts[ncuts++] = at;
            }
            struct host h;
            run_split(&h, trusted, input, n, cuts, ncuts);
            assert_same_session(&ref, &h);
            host_free(&h);
        }
        host_free(&ref);
    }
}

#define TEST(name) cmocka_unit_test_setup_teardown(name, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        TEST(test_greeting_has_no_enhanced_code),
        TEST(test_ehlo_lists_the_extensions_without_an_enhanced_code),
        TEST(test_ehlo_lists_only_the_extensions_in_the_settings),
        TEST(test_helo_gets_one_line_and_no_extensions),
        TEST(test_helo_name_is_trimmed_and_checked),
        TEST(test_ehlo_refusal_before_any_greeting_has_no_enhanced_code),
        TEST(test_replies_after_ehlo_carry_enhanced_codes),
        TEST(test_replies_before_any_greeting_have_no_enhanced_codes),
        TEST(test_replies_after_helo_have_no_enhanced_codes),
        TEST(test_enhanced_codes_need_the_extension),
        TEST(test_354_never_carries_an_enhanced_code),
        TEST(test_noop_takes_an_optional_argument),
        TEST(test_vrfy_never_confirms_a_user),
        TEST(test_help_is_a_multi_line_reply),
        TEST(test_known_but_unoffered_commands_get_502),
        TEST(test_unknown_commands_get_500),
        TEST(test_commands_are_case_insensitive),
        TEST(test_nul_in_a_command_is_refused),
        TEST(test_quit_closes_and_stops_reading),
        TEST(test_http_verbs_close_the_session),
        TEST(test_message_is_stored_with_crlf_and_queued),
        TEST(test_pipelined_transaction_in_one_feed_is_answered_in_order),
        TEST(test_mail_without_helo_is_accepted),
        TEST(test_mail_parameters_need_ehlo),
        TEST(test_legacy_paths_without_brackets_are_accepted),
        TEST(test_space_after_the_colon_is_accepted),
        TEST(test_source_routes_and_quoted_local_parts_reach_the_host_canonical),
        TEST(test_bad_paths_are_refused_with_501),
        TEST(test_over_long_paths_are_refused_with_501),
        TEST(test_utf8_addresses_need_smtputf8),
        TEST(test_unknown_and_duplicate_parameters_are_refused),
        TEST(test_dsn_parameters_reach_the_host),
        TEST(test_size_over_the_limit_is_refused_at_mail_with_552),
        TEST(test_nested_mail_gets_503),
        TEST(test_rcpt_without_mail_gets_503),
        TEST(test_data_without_mail_or_rcpt_gets_503),
        TEST(test_data_after_only_failed_rcpts_gets_554),
        TEST(test_data_with_an_argument_gets_501),
        TEST(test_host_refusing_the_sender_leaves_no_transaction),
        TEST(test_host_reply_without_enhanced_code_gets_one_by_class),
        TEST(test_host_reply_is_not_given_an_enhanced_code_after_helo),
        TEST(test_too_many_recipients_get_452),
        TEST(test_rset_forgets_the_transaction_and_keeps_the_greeting),
        TEST(test_rset_without_a_transaction_tells_the_host_nothing),
        TEST(test_ehlo_in_a_transaction_resets_it),
        TEST(test_next_transaction_needs_no_rset),
        TEST(test_quit_in_a_transaction_resets_it),
        TEST(test_freeing_the_engine_in_a_transaction_resets_it),
        TEST(test_data_begin_refusal_is_sent_and_the_transaction_kept),
        TEST(test_data_begin_refusal_without_a_reply_gets_451),
        TEST(test_host_reply_to_the_message_is_sent),
        TEST(test_dot_stuffing_is_removed),
        TEST(test_empty_message_is_queued),
        TEST(test_commands_inside_data_are_message_text),
        TEST(test_eight_bit_and_nul_octets_are_passed_on),
        TEST(test_text_line_of_998_octets_is_accepted),
        TEST(test_text_line_of_999_octets_is_refused),
        TEST(test_stuffed_dot_does_not_count_toward_the_line_limit),
        TEST(test_trusted_lf_line_limit_counts_the_stored_crlf),
        TEST(test_message_of_exactly_the_maximum_size_is_accepted),
        TEST(test_message_over_the_maximum_size_is_refused_at_the_end_of_data),
        TEST(test_data_write_failure_is_reported_at_data_end),
        TEST(test_bare_lf_in_a_command_from_untrusted_is_rejected),
        TEST(test_bare_lf_in_a_command_from_trusted_ends_the_line),
        TEST(test_bare_cr_in_a_command_is_rejected_even_from_trusted),
        TEST(test_quit_with_a_bare_line_ending_is_honoured),
        TEST(test_quit_run_into_more_text_by_a_bare_cr_is_not_a_quit),
        TEST(test_bare_lf_in_data_from_untrusted_refuses_the_message),
        TEST(test_bare_cr_in_data_from_untrusted_refuses_the_message),
        TEST(test_trusted_bare_lf_lines_are_stored_as_crlf),
        TEST(test_trusted_bare_cr_is_kept_as_data),
        TEST(test_smuggling_variants_from_untrusted_never_end_data),
        TEST(test_smuggling_variants_from_trusted_end_data_only_at_a_line_end),
        TEST(test_command_line_of_512_octets_is_accepted_and_513_refused),
        TEST(test_mail_and_rcpt_after_ehlo_may_be_600_octets_longer),
        TEST(test_mail_after_helo_gets_no_parameter_allowance),
        TEST(test_over_long_line_in_pieces_gets_one_reply),
        TEST(test_over_long_line_in_one_piece_gets_one_reply),
        TEST(test_tail_of_an_over_long_line_is_not_a_command),
        TEST(test_error_limit_closes_with_421),
        TEST(test_timeout_closes_with_421),
        TEST(test_timeout_in_data_closes_with_421_4_4_2_and_resets),
        TEST(test_refuse_sends_the_reply_and_closes),
        TEST(test_feed_stops_when_replies_are_not_taken),
        TEST(test_async_mail_waits_for_resume),
        TEST(test_async_mail_refusal_leaves_no_transaction),
        TEST(test_async_rcpt_answers_in_order),
        TEST(test_async_data_end_holds_the_commands_after_it),
        TEST(test_resume_when_not_waiting_is_ignored),
        TEST(test_bdat_chunks_are_stored_as_sent),
        TEST(test_bdat_chunk_split_across_feeds),
        TEST(test_bdat_crlf_split_across_chunks_is_a_line_end),
        TEST(test_bdat_zero_last_ends_the_message),
        TEST(test_bdat_zero_last_alone_is_an_empty_message),
        TEST(test_binarymime_chunks_are_passed_on_raw),
        TEST(test_binarymime_with_data_gets_503),
        TEST(test_bdat_without_mail_consumes_the_chunk_then_503),
        TEST(test_bdat_without_rcpt_gets_503_and_after_failed_rcpts_554),
        TEST(test_bdat_without_chunking_is_read_then_refused),
        TEST(test_malformed_bdat_closes_the_session),
        TEST(test_data_in_a_bdat_transaction_gets_503),
        TEST(test_bare_lf_in_a_bdat_chunk_from_untrusted_ends_the_transaction),
        TEST(test_bare_lf_in_a_bdat_chunk_from_trusted_is_stored_as_crlf),
        TEST(test_bdat_message_ending_in_a_bare_cr_is_refused),
        TEST(test_bdat_message_is_stored_without_an_added_final_crlf),
        TEST(test_bdat_over_the_maximum_size_is_refused_at_the_chunk_end),
        TEST(test_bdat_refused_by_data_begin_reads_the_chunk_then_replies),
        TEST(test_full_session_unsplit),
        TEST(test_full_session_trusted_unsplit),
        TEST(test_any_two_way_split_gives_the_same_session),
        TEST(test_one_byte_at_a_time_gives_the_same_session),
        TEST(test_random_splits_give_the_same_session),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
