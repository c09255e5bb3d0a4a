/*
 * test_libpigeon.c - unit tests for libpigeon's public API
 * (include/pigeon/pigeon.h, src/client/): what a message accepts, and whole
 * sends over a real socket to a small scripted SMTP server running in a
 * thread of the test.
 *
 * The engine's protocol logic has its own tests (test_smtp_client.c); here
 * the subject is the layer around it: address checks, content scanning
 * (BODY=, SIZE=, SMTPUTF8), connecting, the poll loop and its deadlines,
 * body pieces, the trace, and the results handed back.  Only the exported
 * pigeon_* functions are used, as a program linking the library would.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "pigeon/pigeon.h"

/* ---- a scripted SMTP server ------------------------------------------------------ */

#define RECEIVED_MAX (4u * 1024 * 1024)

/* One server, for one connection. */
struct fake {
    int listen_fd;
    char port[16];
    const char *greeting; /* NULL: never say anything */
    const char *ehlo;     /* the EHLO reply; NULL: refuse EHLO with 500 */
    bool close_at_once;   /* close right after accepting */
    pthread_t thread;

    int fd;
    uint8_t in[65536];
    size_t in_start, in_end;
    char *received; /* every octet the client sent */
    size_t received_len;
    char *data; /* the message as it arrived after DATA (dot-stuffed) or in BDAT chunks */
    size_t data_len;
    char sent[16384]; /* every octet the server sent */
    size_t sent_len;
};

static struct fake fk;

/* fake_getc - the next octet from the client; -1 at EOF */
static int fake_getc(struct fake *f)
{
    if (f->in_start == f->in_end) {
        ssize_t n = read(f->fd, f->in, sizeof(f->in));
        if (n <= 0)
            return -1;
        if (f->received_len + (size_t)n <= RECEIVED_MAX) {
            memcpy(f->received + f->received_len, f->in, (size_t)n);
            f->received_len += (size_t)n;
        }
        f->in_start = 0;
        f->in_end = (size_t)n;
    }
    return f->in[f->in_start++];
}

/* fake_line - one line, CRLF included, NUL-terminated; its length, 0 at EOF */
static size_t fake_line(struct fake *f, char *line, size_t cap)
{
    size_t n = 0;
    int c;
    while (n + 1 < cap && (c = fake_getc(f)) >= 0) {
        line[n++] = (char)c;
        if (c == '\n')
            break;
    }
    line[n] = '\0';
    return n;
}

/* fake_say - send text to the client and keep a copy */
static void fake_say(struct fake *f, const char *text)
{
    size_t n = strlen(text);
    if (f->sent_len + n < sizeof(f->sent)) {
        memcpy(f->sent + f->sent_len, text, n);
        f->sent_len += n;
    }
    /* The client may have hung up already (it gives up on some replies):
     * that must not kill the test program with SIGPIPE. */
    if (send(f->fd, text, n, MSG_NOSIGNAL) < 0)
        return;
}

/* fake_keep - add octets to the message as received */
static void fake_keep(struct fake *f, const char *p, size_t n)
{
    if (f->data_len + n <= RECEIVED_MAX) {
        memcpy(f->data + f->data_len, p, n);
        f->data_len += n;
    }
}

/* fake_rcpt_reply - the reply to RCPT: <bad...> is unknown, <later...> is busy */
static const char *fake_rcpt_reply(const char *line)
{
    if (strncmp(line, "RCPT TO:<bad", 12) == 0)
        return "550 5.1.1 No such user\r\n";
    if (strncmp(line, "RCPT TO:<later", 14) == 0)
        return "451 4.2.1 Try later\r\n";
    return "250 2.1.5 Ok\r\n";
}

/* fake_serve - the server's side of one session */
static void *fake_serve(void *arg)
{
    struct fake *f = arg;
    char line[1024];
    f->fd = accept(f->listen_fd, NULL, NULL);
    if (f->fd < 0)
        return NULL;
    if (f->close_at_once)
        goto done;
    if (f->greeting == NULL) {
        while (fake_line(f, line, sizeof(line)) > 0)
            ;
        goto done;
    }
    fake_say(f, f->greeting);
    while (fake_line(f, line, sizeof(line)) > 0) {
        if (strncmp(line, "EHLO ", 5) == 0) {
            fake_say(f, f->ehlo != NULL ? f->ehlo : "500 5.5.1 What?\r\n");
        } else if (strncmp(line, "HELO ", 5) == 0) {
            fake_say(f, "250 fake.example\r\n");
        } else if (strncmp(line, "MAIL FROM:", 10) == 0) {
            fake_say(f, "250 2.1.0 Ok\r\n");
        } else if (strncmp(line, "RCPT TO:", 8) == 0) {
            fake_say(f, fake_rcpt_reply(line));
        } else if (strcmp(line, "DATA\r\n") == 0) {
            fake_say(f, "354 Go ahead\r\n");
            size_t n;
            while ((n = fake_line(f, line, sizeof(line))) > 0 && strcmp(line, ".\r\n") != 0)
                fake_keep(f, line, n);
            fake_say(f, "250 2.0.0 Queued as DATA1\r\n");
        } else if (strncmp(line, "BDAT ", 5) == 0) {
            unsigned long n = strtoul(line + 5, NULL, 10);
            for (unsigned long i = 0; i < n; i++) {
                int c = fake_getc(f);
                if (c < 0)
                    break;
                char ch = (char)c;
                fake_keep(f, &ch, 1);
            }
            fake_say(f, strstr(line, "LAST") ? "250 2.0.0 Queued as BDAT1\r\n"
                                             : "250 2.0.0 Chunk ok\r\n");
        } else if (strcmp(line, "QUIT\r\n") == 0) {
            fake_say(f, "221 2.0.0 Bye\r\n");
            break;
        } else {
            fake_say(f, "500 5.5.2 Unknown command\r\n");
        }
    }
done:
    close(f->fd);
    return NULL;
}

#define EHLO_FULL                                                                                  \
    "250-fake.example\r\n250-PIPELINING\r\n250-SIZE 10000000\r\n250-8BITMIME\r\n"                  \
    "250-SMTPUTF8\r\n250-DSN\r\n250 ENHANCEDSTATUSCODES\r\n"
#define EHLO_CHUNKING "250-fake.example\r\n250-PIPELINING\r\n250-8BITMIME\r\n250 CHUNKING\r\n"

/* fake_start - listen on 127.0.0.1, a free port, and serve one connection in a thread */
static void fake_start(const char *greeting, const char *ehlo)
{
    memset(&fk, 0, sizeof(fk));
    fk.greeting = greeting;
    fk.ehlo = ehlo;
    fk.received = malloc(RECEIVED_MAX + 1);
    fk.data = malloc(RECEIVED_MAX + 1);
    assert_non_null(fk.received);
    assert_non_null(fk.data);
    fk.listen_fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fk.listen_fd >= 0);
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(sin);
    assert_int_equal(bind(fk.listen_fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
    assert_int_equal(listen(fk.listen_fd, 1), 0);
    assert_int_equal(getsockname(fk.listen_fd, (struct sockaddr *)&sin, &len), 0);
    snprintf(fk.port, sizeof(fk.port), "%u", ntohs(sin.sin_port));
    assert_int_equal(pthread_create(&fk.thread, NULL, fake_serve, &fk), 0);
}

/* fake_stop - wait for the session's end; received and data become C strings */
static void fake_stop(void)
{
    pthread_join(fk.thread, NULL);
    close(fk.listen_fd);
    fk.received[fk.received_len] = '\0';
    fk.data[fk.data_len] = '\0';
    fk.sent[fk.sent_len] = '\0';
}

/* fake_free - release the server's buffers */
static int fake_free(void **state)
{
    (void)state;
    free(fk.received);
    free(fk.data);
    fk.received = fk.data = NULL;
    return 0;
}

/* ---- helpers ------------------------------------------------------------------- */

/* message - a message from a@example.org to the comma-separated list to, with content text */
static struct pigeon_message *message(const char *to, const char *text)
{
    struct pigeon_message *m = pigeon_message_new();
    assert_non_null(m);
    assert_int_equal(pigeon_message_set_from(m, "a@example.org"), 0);
    char list[512];
    snprintf(list, sizeof(list), "%s", to);
    for (char *save = NULL, *r = strtok_r(list, ",", &save); r; r = strtok_r(NULL, ",", &save))
        assert_int_equal(pigeon_message_add_rcpt(m, r), 0);
    assert_int_equal(pigeon_message_set_content(m, text, strlen(text)), 0);
    return m;
}

/* options - to the fake server, with a fixed EHLO name */
static struct pigeon_options options(void)
{
    struct pigeon_options o = PIGEON_OPTIONS_INIT;
    o.host = "127.0.0.1";
    o.port = fk.port;
    o.helo = "client.example";
    o.timeout_secs = 10;
    return o;
}

/* A trace, as two transcripts. */
struct transcript {
    char c[65536], s[65536];
    size_t c_len, s_len;
    int calls_with_content_mark;
};

/* record - the trace callback: append to the transcript of its direction */
static void record(void *ctx, char direction, const char *data, size_t len)
{
    struct transcript *t = ctx;
    char *to = direction == 'C' ? t->c : t->s;
    size_t *n = direction == 'C' ? &t->c_len : &t->s_len;
    assert_true(direction == 'C' || direction == 'S');
    assert_true(*n + len < sizeof(t->c));
    memcpy(to + *n, data, len);
    *n += len;
    to[*n] = '\0';
    if (direction == 'C' && len > 0 && data[0] == '[')
        t->calls_with_content_mark++;
}

/* ---- the message ------------------------------------------------------------------ */

static void test_null_sender_is_accepted(void **state)
{
    (void)state;
    struct pigeon_message *m = pigeon_message_new();
    assert_int_equal(pigeon_message_set_from(m, ""), 0);
    assert_int_equal(pigeon_message_set_from(m, "a@example.org"), 0);
    pigeon_message_free(m);
}

static void test_bad_addresses_are_refused(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "a",
        "a@",
        "@example.org",
        "a b@example.org",
        "a@example..org",
        "a.@example.org",
        "<a@example.org>",
        "a@example.org>",
        "a@example.org> SIZE=1",
        "a@example.org\r\nRCPT TO:<evil@example.org>",
        "a@example.org\n",
        "@relay.example:a@example.org",
        "\xff@example.org",
        "a@exa\xc3mple.org",
        "\"unterminated@example.org",
    };
    struct pigeon_message *m = pigeon_message_new();
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (pigeon_message_set_from(m, bad[i]) == 0)
            fail_msg("sender \"%s\" accepted", bad[i]);
        if (pigeon_message_add_rcpt(m, bad[i]) == 0)
            fail_msg("recipient \"%s\" accepted", bad[i]);
    }
    assert_int_equal(pigeon_message_add_rcpt(m, ""), -1);
    char longer[300];
    memset(longer, 'a', sizeof(longer));
    memcpy(longer + 250, "@example.org", 13);
    assert_int_equal(pigeon_message_add_rcpt(m, longer), -1);
    assert_int_equal(pigeon_message_set_from(m, NULL), -1);
    assert_int_equal(pigeon_message_add_rcpt(NULL, "a@example.org"), -1);
    pigeon_message_free(m);
}

static void test_good_addresses_are_accepted(void **state)
{
    (void)state;
    static const char *const good[] = {
        "a@example.org", "first.last+tag@sub.example.org", "\"john doe\"@example.org",
        "a@[192.0.2.1]", "a@[IPv6:2001:db8::1]",           "jos\xc3\xa9@exampl\xc3\xa9.org",
    };
    struct pigeon_message *m = pigeon_message_new();
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        if (pigeon_message_add_rcpt(m, good[i]) != 0)
            fail_msg("recipient \"%s\" refused", good[i]);
        if (pigeon_message_set_from(m, good[i]) != 0)
            fail_msg("sender \"%s\" refused", good[i]);
    }
    assert_int_equal(pigeon_message_add_rcpt(m, "Postmaster"), 0);
    assert_int_equal(pigeon_message_set_from(m, "Postmaster"), -1);
    pigeon_message_free(m);
}

static void test_dsn_requests_are_checked(void **state)
{
    (void)state;
    struct pigeon_message *m = pigeon_message_new();
    assert_int_equal(pigeon_message_set_notify(m, PIGEON_NOTIFY_FAILURE, NULL), -1); /* no rcpt */
    assert_int_equal(pigeon_message_add_rcpt(m, "a@example.org"), 0);
    assert_int_equal(pigeon_message_set_notify(m, PIGEON_NOTIFY_FAILURE | PIGEON_NOTIFY_DELAY,
                                               "rfc822;a@example.org"),
                     0);
    assert_int_equal(pigeon_message_set_notify(m, PIGEON_NOTIFY_NEVER, NULL), 0);
    assert_int_equal(
        pigeon_message_set_notify(m, PIGEON_NOTIFY_NEVER | PIGEON_NOTIFY_SUCCESS, NULL), -1);
    assert_int_equal(pigeon_message_set_notify(m, 16, NULL), -1);
    assert_int_equal(pigeon_message_set_notify(m, 0, "bad type;a@example.org"), -1);
    assert_int_equal(pigeon_message_set_notify(m, 0, "rfc822;"), -1);
    assert_int_equal(pigeon_message_set_dsn(m, true, "envelope-1"), 0);
    assert_int_equal(pigeon_message_set_dsn(m, false, NULL), 0);
    char envid[101];
    memset(envid, 'x', 100);
    envid[100] = '\0';
    assert_int_equal(pigeon_message_set_dsn(m, true, envid), 0);
    envid[99] = '+'; /* "+2B": now 102 octets of xtext, past RFC 3461's 100 */
    assert_int_equal(pigeon_message_set_dsn(m, true, envid), -1);
    pigeon_message_free(m);
}

static void test_send_without_sender_or_recipient_is_invalid(void **state)
{
    (void)state;
    struct pigeon_options o = PIGEON_OPTIONS_INIT;
    o.host = "127.0.0.1";
    o.port = "1";
    struct pigeon_result *r = NULL;
    struct pigeon_message *m = pigeon_message_new();
    assert_int_equal(pigeon_message_add_rcpt(m, "b@example.org"), 0);
    assert_int_equal(pigeon_send(&o, m, &r), PIGEON_INVALID);
    assert_int_equal(pigeon_result_status(r), PIGEON_INVALID);
    assert_non_null(strstr(pigeon_result_error(r), "sender"));
    assert_int_equal(pigeon_result_rcpt_count(r), 1);
    pigeon_result_free(r);
    pigeon_message_free(m);

    m = pigeon_message_new();
    assert_int_equal(pigeon_message_set_from(m, ""), 0);
    assert_int_equal(pigeon_send(&o, m, &r), PIGEON_INVALID);
    assert_non_null(strstr(pigeon_result_error(r), "recipient"));
    pigeon_result_free(r);

    assert_int_equal(pigeon_message_add_rcpt(m, "b@example.org"), 0);
    o.host = NULL;
    assert_int_equal(pigeon_send(&o, m, NULL), PIGEON_INVALID);
    o.host = "127.0.0.1";
    o.helo = "bad name\r\nMAIL FROM:<x@y>";
    assert_int_equal(pigeon_send(&o, m, NULL), PIGEON_INVALID);
    int status = -1;
    assert_null(pigeon_session_new(&o, m, &status));
    assert_int_equal(status, PIGEON_INVALID);
    assert_int_equal(pigeon_send(NULL, m, NULL), PIGEON_INVALID);
    pigeon_message_free(m);
}

static void test_results_tolerate_null(void **state)
{
    (void)state;
    assert_int_equal(pigeon_result_status(NULL), PIGEON_INVALID);
    assert_int_equal(pigeon_result_rcpt_count(NULL), 0);
    assert_int_equal(pigeon_result_rcpt(NULL, 0, NULL, NULL, NULL, NULL), -1);
    assert_int_equal(pigeon_result_final(NULL, NULL, NULL, NULL), -1);
    pigeon_result_free(NULL);
    pigeon_message_free(NULL);
    pigeon_session_free(NULL);
}

/* ---- sending ------------------------------------------------------------------------ */

static void test_send_over_data_is_dot_stuffed_and_crlf(void **state)
{
    (void)state;
    fake_start("220 fake.example ESMTP\r\n", EHLO_FULL);
    struct pigeon_message *m = message("b@example.org", "Subject: x\n\n.hello\nbye");
    struct pigeon_options o = options();
    struct pigeon_result *r = NULL;
    assert_int_equal(pigeon_send(&o, m, &r), PIGEON_SENT);
    fake_stop();
    assert_string_equal(fk.received, "EHLO client.example\r\n"
                                     "MAIL FROM:<a@example.org> SIZE=27\r\n"
                                     "RCPT TO:<b@example.org>\r\n"
                                     "DATA\r\n"
                                     "Subject: x\r\n\r\n..hello\r\nbye\r\n.\r\n"
                                     "QUIT\r\n");
    assert_string_equal(pigeon_result_error(r), "");
    assert_int_equal(pigeon_result_rcpt_count(r), 1);
    const char *address, *enh, *text;
    unsigned code;
    assert_int_equal(pigeon_result_rcpt(r, 0, &address, &code, &enh, &text), 0);
    assert_string_equal(address, "b@example.org");
    assert_int_equal(code, 250);
    assert_string_equal(enh, "2.0.0");
    assert_string_equal(text, "2.0.0 Queued as DATA1");
    assert_int_equal(pigeon_result_rcpt(r, 1, &address, &code, &enh, &text), -1);
    assert_int_equal(pigeon_result_final(r, &code, NULL, &text), 0);
    assert_int_equal(code, 250);
    pigeon_result_free(r);
    pigeon_message_free(m);
}

static void test_message_without_content_is_sent_empty(void **state)
{
    (void)state;
    fake_start("220 fake.example ESMTP\r\n", EHLO_FULL);
    struct pigeon_message *m = pigeon_message_new();
    assert_int_equal(pigeon_message_set_from(m, ""), 0);
    assert_int_equal(pigeon_message_add_rcpt(m, "b@example.org"), 0);
    struct pigeon_options o = options();
    assert_int_equal(pigeon_send(&o, m, NULL), PIGEON_SENT);
    fake_stop();
    assert_string_equal(fk.received, "EHLO client.example\r\n"
                                     "MAIL FROM:<>\r\n"
                                     "RCPT TO:<b@example.org>\r\n"
                                     "DATA\r\n"
                                     ".\r\n"
                                     "QUIT\r\n");
    pigeon_message_free(m);
}

static void test_send_with_chunking_uses_bdat(void **state)
{
    (void)state;
    fake_start("220 fake.example ESMTP\r\n", EHLO_CHUNKING);
    struct pigeon_message *m = message("b@example.org", "Subject: x\n\n.hello\n");
    struct pigeon_options o = options();
    struct pigeon_result *r = NULL;
    assert_int_equal(pigeon_send(&o, m, &r), PIGEON_SENT);
    fake_stop();
    assert_string_equal(fk.data, "Subject: x\r\n\r\n.hello\r\n");
    assert_non_null(strstr(fk.received, "BDAT 22 LAST\r\n"));
    unsigned code;
    const char *text;
    pigeon_result_final(r, &code, NULL, &text);
    assert_string_equal(text, "2.0.0 Queued as BDAT1");
    pigeon_result_free(r);
    pigeon_message_free(m);
}

static void test_large_message_goes_in_pieces_intact(void **state)
{
    (void)state;
    /* 1 MB of lines, some starting with a dot, with LF endings. */
    size_t n = 1024 * 1024;
    char *text = malloc(n + 1);
    assert_non_null(text);
    for (size_t i = 0; i < n; i++)
        text[i] = i % 61 == 60 ? '\n' : (i % 61 == 0 && i % 7 == 0) ? '.' : (char)('a' + i % 26);
    text[n] = '\0';
    for (int chunking = 0; chunking < 2; chunking++) {
        fake_start("220 fake.example ESMTP\r\n", chunking ? EHLO_CHUNKING : EHLO_FULL);
        struct pigeon_message *m = message("b@example.org", text);
        struct pigeon_options o = options();
        assert_int_equal(pigeon_send(&o, m, NULL), PIGEON_SENT);
        fake_stop();
        /* What arrived, with CRLF made LF again (and dots unstuffed for DATA), is the text. */
        size_t k = 0;
        bool line_start = true;
        for (size_t i = 0; i < fk.data_len; i++) {
            char c = fk.data[i];
            if (c == '\r')
                continue;
            if (!chunking && line_start && c == '.') {
                line_start = false;
                continue;
            }
            line_start = c == '\n';
            assert_true(k < n + 1);
            fk.data[k++] = c;
        }
        assert_int_equal(k, n + 1); /* the last line got its line end */
        assert_memory_equal(fk.data, text, n);
        fake_free(NULL);
        pigeon_message_free(m);
    }
    free(text);
}

static void test_recipient_results_come_back_one_by_one(void **state)
{
    (void)state;
    fake_start("220 fake.example ESMTP\r\n", EHLO_FULL);
    struct pigeon_message *m =
        message("b@example.org,bad@example.org,later@example.org", "Subject: x\n\nhi\n");
    struct pigeon_options o = options();
    struct pigeon_result *r = NULL;
    assert_int_equal(pigeon_send(&o, m, &r), PIGEON_PARTIAL);
    fake_stop();
    assert_int_equal(pigeon_result_status(r), PIGEON_PARTIAL);
    assert_int_equal(pigeon_result_rcpt_count(r), 3);
    unsigned code[3];
    const char *enh[3], *address;
    for (size_t i = 0; i < 3; i++)
        assert_int_equal(pigeon_result_rcpt(r, i, &address, &code[i], &enh[i], NULL), 0);
    assert_int_equal(code[0], 250);
    assert_int_equal(code[1], 550);
    assert_string_equal(enh[1], "5.1.1");
    assert_int_equal(code[2], 451);
    assert_string_equal(address, "later@example.org");
    assert_string_not_equal(pigeon_result_error(r), "");
    pigeon_result_free(r);
    pigeon_message_free(m);
}

static void test_every_recipient_refused_is_permfail(void **state)
{
    (void)state;
    fake_start("220 fake.example ESMTP\r\n", EHLO_FULL);
    struct pigeon_message *m = message("bad1@example.org,bad2@example.org", "hi\n");
    struct pigeon_options o = options();
    assert_int_equal(pigeon_send(&o, m, NULL), PIGEON_PERMFAIL);
    fake_stop();
    pigeon_message_free(m);
}

static void test_helo_server_gets_helo(void **state)
{
    (void)state;
    fake_start("220 old.example\r\n", NULL);
    struct pigeon_message *m = message("b@example.org", "hi\n");
    struct pigeon_options o = options();
    assert_int_equal(pigeon_send(&o, m, NULL), PIGEON_SENT);
    fake_stop();
    assert_non_null(strstr(fk.received, "EHLO client.example\r\nHELO client.example\r\n"));
    pigeon_message_free(m);
}

static void test_8bit_content_without_8bitmime_is_unsuitable(void **state)
{
    (void)state;
    fake_start("220 fake.example\r\n", "250-fake.example\r\n250 PIPELINING\r\n");
    struct pigeon_message *m = message("b@example.org", "Subject: caf\xc3\xa9\n\nhi\n");
    struct pigeon_options o = options();
    struct pigeon_result *r = NULL;
    assert_int_equal(pigeon_send(&o, m, &r), PIGEON_UNSUITABLE);
    fake_stop();
    assert_string_equal(fk.received, "EHLO client.example\r\nQUIT\r\n");
    assert_non_null(strstr(pigeon_result_error(r), "8BITMIME"));
    pigeon_result_free(r);
    pigeon_message_free(m);
}

static void test_body_and_smtputf8_follow_the_content_and_addresses(void **state)
{
    (void)state;
    /* UTF-8 in a header is 8-bit content, not SMTPUTF8. */
    fake_start("220 fake.example\r\n", EHLO_FULL);
    struct pigeon_message *m = message("b@example.org", "Subject: caf\xc3\xa9\n\nhi\n");
    struct pigeon_options o = options();
    assert_int_equal(pigeon_send(&o, m, NULL), PIGEON_SENT);
    fake_stop();
    assert_non_null(strstr(fk.received, "MAIL FROM:<a@example.org> SIZE=22 BODY=8BITMIME\r\n"));
    fake_free(NULL);
    pigeon_message_free(m);

    /* A UTF-8 address is. */
    fake_start("220 fake.example\r\n", EHLO_FULL);
    m = message("jos\xc3\xa9@example.org", "hi\n");
    assert_int_equal(pigeon_send(&o, m, NULL), PIGEON_SENT);
    fake_stop();
    assert_non_null(strstr(fk.received, "MAIL FROM:<a@example.org> SIZE=4 SMTPUTF8\r\n"
                                        "RCPT TO:<jos\xc3\xa9@example.org>\r\n"));
    pigeon_message_free(m);
}

static void test_dsn_values_are_xtext_encoded(void **state)
{
    (void)state;
    fake_start("220 fake.example\r\n", EHLO_FULL);
    struct pigeon_message *m = message("b@example.org", "hi\n");
    assert_int_equal(pigeon_message_set_notify(m, PIGEON_NOTIFY_FAILURE, "b+x=y@example.org"), 0);
    assert_int_equal(pigeon_message_set_dsn(m, false, "id 1"), 0);
    struct pigeon_options o = options();
    assert_int_equal(pigeon_send(&o, m, NULL), PIGEON_SENT);
    fake_stop();
    assert_non_null(strstr(fk.received, "MAIL FROM:<a@example.org> SIZE=4 RET=HDRS ENVID=id+201\r\n"
                                        "RCPT TO:<b@example.org> NOTIFY=FAILURE "
                                        "ORCPT=rfc822;b+2Bx+3Dy@example.org\r\n"));
    pigeon_message_free(m);
}

static void test_trace_shows_commands_and_replies_but_not_the_content(void **state)
{
    (void)state;
    for (int chunking = 0; chunking < 2; chunking++) {
        fake_start("220 fake.example ESMTP\r\n", chunking ? EHLO_CHUNKING : EHLO_FULL);
        struct pigeon_message *m = message("b@example.org", "Subject: SECRET\n\nSECRET\n");
        struct pigeon_options o = options();
        static struct transcript t;
        memset(&t, 0, sizeof(t));
        o.trace = record;
        o.trace_ctx = &t;
        assert_int_equal(pigeon_send(&o, m, NULL), PIGEON_SENT);
        fake_stop();
        assert_string_equal(t.s, fk.sent);
        assert_null(strstr(t.c, "SECRET"));
        assert_int_equal(t.calls_with_content_mark, 1);
        if (chunking)
            assert_non_null(strstr(t.c, "RCPT TO:<b@example.org>\r\n"
                                        "BDAT 27 LAST\r\n[27 octets of message content]\r\n"
                                        "QUIT\r\n"));
        else
            assert_non_null(strstr(t.c, "DATA\r\n[27 octets of message content]\r\n.\r\n"
                                        "QUIT\r\n"));
        fake_free(NULL);
        pigeon_message_free(m);
    }
}

static void test_silent_server_times_out(void **state)
{
    (void)state;
    fake_start(NULL, NULL);
    struct pigeon_message *m = message("b@example.org", "hi\n");
    struct pigeon_options o = options();
    o.timeout_secs = 1;
    struct pigeon_result *r = NULL;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    assert_int_equal(pigeon_send(&o, m, &r), PIGEON_TEMPFAIL);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    fake_stop();
    double secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    assert_true(secs >= 0.99 && secs < 5);
    assert_non_null(strstr(pigeon_result_error(r), "in time"));
    unsigned code = 1;
    const char *text = "";
    pigeon_result_rcpt(r, 0, NULL, &code, NULL, &text);
    assert_int_equal(code, 0);
    assert_null(text);
    pigeon_result_free(r);
    pigeon_message_free(m);
}

static void test_server_that_hangs_up_at_once_is_tempfail(void **state)
{
    (void)state;
    fake_start("220 x\r\n", EHLO_FULL);
    fk.close_at_once = true;
    struct pigeon_message *m = message("b@example.org", "hi\n");
    struct pigeon_options o = options();
    assert_int_equal(pigeon_send(&o, m, NULL), PIGEON_TEMPFAIL);
    fake_stop();
    pigeon_message_free(m);
}

static void test_connection_refused_is_connect(void **state)
{
    (void)state;
    /* A port that was free a moment ago. */
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(sin);
    assert_int_equal(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sin, &len), 0);
    char port[16];
    snprintf(port, sizeof(port), "%u", ntohs(sin.sin_port));
    close(fd);

    struct pigeon_message *m = message("b@example.org", "hi\n");
    struct pigeon_options o = PIGEON_OPTIONS_INIT;
    o.host = "127.0.0.1";
    o.port = port;
    struct pigeon_result *r = NULL;
    assert_int_equal(pigeon_send(&o, m, &r), PIGEON_CONNECT);
    assert_non_null(strstr(pigeon_result_error(r), "refused"));
    pigeon_result_free(r);
    pigeon_message_free(m);
}

static void test_every_address_of_a_name_is_tried(void **state)
{
    (void)state;
    /* "localhost" may give ::1 before 127.0.0.1; the server is only on the latter. */
    fake_start("220 fake.example\r\n", EHLO_FULL);
    struct pigeon_message *m = message("b@example.org", "hi\n");
    struct pigeon_options o = options();
    o.host = "localhost";
    assert_int_equal(pigeon_send(&o, m, NULL), PIGEON_SENT);
    fake_stop();
    pigeon_message_free(m);
}

static void test_non_blocking_session_in_a_callers_loop(void **state)
{
    (void)state;
    fake_start("220 fake.example\r\n", EHLO_FULL);
    struct pigeon_message *m = message("b@example.org", "hi\n");
    struct pigeon_options o = options();
    int status = -1;
    struct pigeon_session *s = pigeon_session_new(&o, m, &status);
    assert_non_null(s);
    assert_true(pigeon_session_fd(s) >= 0);
    assert_null(pigeon_session_result(s)); /* not yet */
    int steps = 0;
    while (pigeon_session_step(s) == PIGEON_STEP_AGAIN) {
        short events = pigeon_session_events(s);
        assert_true(events != 0);
        assert_true((events & ~(POLLIN | POLLOUT)) == 0);
        int timeout = pigeon_session_timeout_ms(s);
        assert_true(timeout > 0 && timeout <= 10000);
        struct pollfd p = {pigeon_session_fd(s), events, 0};
        assert_true(poll(&p, 1, timeout) >= 0);
        assert_true(++steps < 1000);
    }
    assert_int_equal(pigeon_session_events(s), 0);
    struct pigeon_result *r = pigeon_session_result(s);
    assert_non_null(r);
    assert_null(pigeon_session_result(s)); /* handed over once */
    assert_int_equal(pigeon_result_status(r), PIGEON_SENT);
    pigeon_session_free(s);
    fake_stop();
    pigeon_result_free(r);
    pigeon_message_free(m);
}

static void test_session_may_be_freed_midway(void **state)
{
    (void)state;
    fake_start("220 fake.example\r\n", EHLO_FULL);
    struct pigeon_message *m = message("b@example.org", "hi\n");
    struct pigeon_options o = options();
    struct pigeon_session *s = pigeon_session_new(&o, m, NULL);
    assert_non_null(s);
    pigeon_session_step(s);
    pigeon_session_free(s);
    fake_stop();
    pigeon_message_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_null_sender_is_accepted),
        cmocka_unit_test(test_bad_addresses_are_refused),
        cmocka_unit_test(test_good_addresses_are_accepted),
        cmocka_unit_test(test_dsn_requests_are_checked),
        cmocka_unit_test(test_send_without_sender_or_recipient_is_invalid),
        cmocka_unit_test(test_results_tolerate_null),
#define T(name) cmocka_unit_test_teardown(name, fake_free)
        T(test_send_over_data_is_dot_stuffed_and_crlf),
        T(test_message_without_content_is_sent_empty),
        T(test_send_with_chunking_uses_bdat),
        T(test_large_message_goes_in_pieces_intact),
        T(test_recipient_results_come_back_one_by_one),
        T(test_every_recipient_refused_is_permfail),
        T(test_helo_server_gets_helo),
        T(test_8bit_content_without_8bitmime_is_unsuitable),
        T(test_body_and_smtputf8_follow_the_content_and_addresses),
        T(test_dsn_values_are_xtext_encoded),
        T(test_trace_shows_commands_and_replies_but_not_the_content),
        T(test_silent_server_times_out),
        T(test_server_that_hangs_up_at_once_is_tempfail),
        T(test_connection_refused_is_connect),
        T(test_every_address_of_a_name_is_tried),
        T(test_non_blocking_session_in_a_callers_loop),
        T(test_session_may_be_freed_midway),
#undef T
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
