/*
 * gen_corpus.c - writes the seed corpora of the fuzz harnesses.
 *
 *     build-fuzz/tests/fuzz/gen_corpus tests/fuzz/corpus
 *
 * The seeds are committed; this program is how they were made, so that a
 * change of format (an envelope field, the journal framing, the header of
 * the server harness's inputs) can be followed by regenerating them.  The
 * envelopes and journal segments are made by the real encoder and journal
 * code, not written by hand.  The config seeds are plain files kept in
 * tests/fuzz/corpus/config/ and not generated here.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "queue/envelope.h"
#include "queue/journal.h"
#include "smtp/esmtp.h"

static const char *outdir;

/* die - report and stop */
static void die(const char *what)
{
    fprintf(stderr, "gen_corpus: %s: %s\n", what, strerror(errno));
    exit(1);
}

/* put - write outdir/harness/name holding p[0..n) */
static void put(const char *harness, const char *name, const void *p, size_t n)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s", outdir, harness);
    if (mkdir(path, 0755) < 0 && errno != EEXIST)
        die(path);
    snprintf(path, sizeof(path), "%s/%s/%s", outdir, harness, name);
    FILE *f = fopen(path, "wb");
    if (f == NULL || (n > 0 && fwrite(p, 1, n, f) != n) || fclose(f) != 0)
        die(path);
}

/* put_text - a seed that is a C string */
static void put_text(const char *harness, const char *name, const char *text)
{
    put(harness, name, text, strlen(text));
}

/* ---- the server engine ------------------------------------------------------------- */

/* Mode bits of fuzz_smtp_server.c's header. */
#define LF_OK     0x01
#define SMALL     0x02
#define REFUSE    0x04
#define TIMEOUT   0x08
#define WRITE(n)  ((n) << 4)
#define CUT(n)    ((n) << 6)
#define ALL_EXT   0xff
#define NO_CHUNKS (0xff & ~(SMTP_EXT_CHUNKING | SMTP_EXT_BINARYMIME))

/* Verdicts: accept at once, accept later, refuse, defer later, accept with a text. */
static const uint8_t accept_now[4] = {0, 0, 0, 0};
static const uint8_t accept_later[4] = {1, 1, 1, 1};
static const uint8_t mixed[4] = {0x01, 0x04, 0x07, 0x02};
static const uint8_t closing[4] = {0x00, 0x00, 0x0e, 0x00};

/* server - a session seed: header, then n octets from the client */
static void server(const char *name, uint8_t mode, uint8_t ext, const uint8_t verdicts[4],
                   const char *client, size_t n)
{
    uint8_t seed[8192];
    if (n + 8 > sizeof(seed)) {
        fprintf(stderr, "gen_corpus: seed %s too long\n", name);
        exit(1);
    }
    seed[0] = mode;
    seed[1] = ext;
    memcpy(seed + 2, verdicts, 4);
    seed[6] = 0x5a;
    seed[7] = (uint8_t)n;
    memcpy(seed + 8, client, n);
    put("smtp_server", name, seed, n + 8);
}

#define SERVER(name, mode, ext, verdicts, text)                                                    \
    server(name, mode, ext, verdicts, text, sizeof(text) - 1)

/* The session of the original SMTP tutorial, as nc sends it: bare LF. */
#define TUTORIAL                                                                                   \
    "HELO oleg\n"                                                                                  \
    "MAIL FROM: oleg@vbip.com\n"                                                                   \
    "RCPT TO: somebody@localhost\n"                                                                \
    "DATA\n"                                                                                       \
    "Subject: My first e-mail message.\n"                                                          \
    "\n"                                                                                           \
    " First line of a message.\n"                                                                  \
    ".\n"                                                                                          \
    "QUIT\n"

#define PIPELINED                                                                                  \
    "EHLO client.example.org\r\n"                                                                  \
    "MAIL FROM:<alice@example.org> SIZE=180 BODY=8BITMIME RET=HDRS ENVID=QQ314159\r\n"             \
    "RCPT TO:<bob@example.net> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;bob@example.net\r\n"            \
    "RCPT TO:<\"carol smith\"@example.net>\r\n"                                                    \
    "RCPT TO:<nobody@[192.0.2.1]>\r\n"                                                             \
    "DATA\r\n"                                                                                     \
    "From: alice@example.org\r\n"                                                                  \
    "Subject: pipelined\r\n"                                                                       \
    "\r\n"                                                                                         \
    "..a line that starts with a dot\r\n"                                                          \
    ".\r\n"                                                                                        \
    "MAIL FROM:<>\r\n"                                                                             \
    "RCPT TO:<Postmaster>\r\n"                                                                     \
    "DATA\r\n"                                                                                     \
    "bounce\r\n"                                                                                   \
    ".\r\n"                                                                                        \
    "RSET\r\n"                                                                                     \
    "NOOP\r\n"                                                                                     \
    "QUIT\r\n"

#define BDAT_SESSION                                                                               \
    "EHLO client.example.org\r\n"                                                                  \
    "MAIL FROM:<a@b.example>\r\n"                                                                  \
    "RCPT TO:<c@d.example>\r\n"                                                                    \
    "BDAT 12\r\n"                                                                                  \
    "line one\r\n\r\n"                                                                             \
    "BDAT 10 LAST\r\n"                                                                             \
    "line two\r\n"                                                                                 \
    "MAIL FROM:<a@b.example> BODY=BINARYMIME\r\n"                                                  \
    "RCPT TO:<c@d.example>\r\n"                                                                    \
    "BDAT 5\r\n"                                                                                   \
    "ab\0\nc"                                                                                      \
    "RCPT TO:<e@d.example>\r\n"                                                                    \
    "BDAT 3 LAST\r\n"                                                                              \
    "x\ry"                                                                                         \
    "MAIL FROM:<a@b.example>\r\n"                                                                  \
    "RCPT TO:<c@d.example>\r\n"                                                                    \
    "BDAT 0 LAST\r\n"                                                                              \
    "BDAT 4\r\n"                                                                                   \
    "lostDATA\r\n"                                                                                 \
    "BDAT x\r\n"                                                                                   \
    "QUIT\r\n"

/* SMTP smuggling: an end of data that only some servers see, then a second message. */
#define SMUGGLE(end)                                                                               \
    "EHLO client.example.org\r\n"                                                                  \
    "MAIL FROM:<alice@example.org>\r\n"                                                            \
    "RCPT TO:<bob@example.net>\r\n"                                                                \
    "DATA\r\n"                                                                                     \
    "Subject: innocent\r\n"                                                                        \
    "\r\n"                                                                                         \
    "hello" end "MAIL FROM:<admin@example.net>\r\n"                                                \
    "RCPT TO:<victim@example.net>\r\n"                                                             \
    "DATA\r\n"                                                                                     \
    "Subject: smuggled\r\n"                                                                        \
    "\r\n"                                                                                         \
    "gotcha\r\n"                                                                                   \
    ".\r\n"                                                                                        \
    "\r\n.\r\n"                                                                                    \
    "QUIT\r\n"

#define ODD_COMMANDS                                                                               \
    "ehlo client.example.org  \r\n"                                                                \
    "HELP\r\n"                                                                                     \
    "VRFY root\r\n"                                                                                \
    "VRFY\r\n"                                                                                     \
    "EXPN staff\r\n"                                                                               \
    "STARTTLS\r\n"                                                                                 \
    "AUTH PLAIN AGFsaWNlAHNlY3JldA==\r\n"                                                          \
    "MAIL FROM:alice@example.org\r\n"                                                              \
    "MAIL FROM:<bob@example.org>\r\n"                                                              \
    "RCPT TO:<δοκιμή@παράδειγμα.δοκιμή>\r\n"                                 \
    "RCPT TO:<x@example.org> FOO=BAR\r\n"                                                          \
    "DATA extra\r\n"                                                                               \
    "NOOP\0\r\n"                                                                                   \
    "FROB\r\n"                                                                                     \
    "RSET\rNOOP\r\n"                                                                               \
    "HELO\r\n"                                                                                     \
    "HELO a\x01"                                                                                   \
    "b\r\n"                                                                                        \
    "GET / HTTP/1.1\r\n"                                                                           \
    "Host: example.org\r\n"                                                                        \
    "\r\n"

#define UTF8_SESSION                                                                               \
    "EHLO client.example.org\r\n"                                                                  \
    "MAIL FROM:<δοκιμή@παράδειγμα.δοκιμή> SMTPUTF8 BODY=8BITMIME\r\n"        \
    "RCPT TO:<用户@例子.广告> ORCPT=utf-8;用户@例子.广告\r\n"                          \
    "DATA\r\n"                                                                                     \
    "Subject: =?UTF-8?B?zrTOv866zrnOvM6u?=\r\n"                                                    \
    "\r\n"                                                                                         \
    "\xce\xb4\r\n"                                                                                 \
    ".\r\n"                                                                                        \
    "QUIT\r\n"

#define LIMITS_SESSION                                                                             \
    "EHLO client.example.org\r\n"                                                                  \
    "NOOP 0123456789012345678901234567890123456789012345678901234567890123456789\r\n"              \
    "MAIL FROM:<a@b.example> SIZE=100000\r\n"                                                      \
    "MAIL FROM:<a@b.example> SIZE=100\r\n"                                                         \
    "RCPT TO:<r1@d.example>\r\n"                                                                   \
    "RCPT TO:<r2@d.example>\r\n"                                                                   \
    "RCPT TO:<r3@d.example>\r\n"                                                                   \
    "RCPT TO:<r4@d.example>\r\n"                                                                   \
    "DATA\r\n"                                                                                     \
    "a line that is longer than eighty octets, which the small limits of the harness "             \
    "refuse\r\n"                                                                                   \
    ".\r\n"                                                                                        \
    "MAIL FROM:<a@b.example>\r\n"                                                                  \
    "RCPT TO:<r1@d.example>\r\n"                                                                   \
    "DATA\r\n"                                                                                     \
    "0123456789012345678901234567890123456789012345678901234567890123456789\r\n"                   \
    "0123456789012345678901234567890123456789012345678901234567890123456789\r\n"                   \
    "0123456789012345678901234567890123456789012345678901234567890123456789\r\n"                   \
    "0123456789012345678901234567890123456789012345678901234567890123456789\r\n"                   \
    "0123456789012345678901234567890123456789012345678901234567890123456789\r\n"                   \
    ".\r\n"                                                                                        \
    "QUIT\r\n"

/* long_lines - command lines past every limit, whole and in pieces */
static void long_lines(void)
{
    char text[4096];
    size_t n = 0;
    n += (size_t)snprintf(text + n, sizeof(text) - n, "EHLO client.example.org\r\nNOOP ");
    memset(text + n, 'x', 1500);
    n += 1500;
    n += (size_t)snprintf(text + n, sizeof(text) - n, "\r\nMAIL FROM:<a@b.example> ENVID=");
    memset(text + n, 'e', 620);
    n += 620;
    n += (size_t)snprintf(text + n, sizeof(text) - n, "\r\nNOOP\r\nQUIT\r\n");
    server("long-lines", CUT(1), ALL_EXT, accept_now, text, n);
    server("long-lines-small", SMALL | CUT(2), ALL_EXT, accept_now, text, n);
}

/* flood - a client that pipelines far more replies than it reads */
static void flood(void)
{
    char text[4096];
    size_t n = 0;
    n += (size_t)snprintf(text + n, sizeof(text) - n, "EHLO client.example.org\r\n");
    for (int i = 0; i < 60; i++)
        n += (size_t)snprintf(text + n, sizeof(text) - n, "HELP\r\nNOOP\r\n");
    n += (size_t)snprintf(text + n, sizeof(text) - n, "QUIT\r\n");
    server("pipelined-flood", CUT(2), ALL_EXT, accept_now, text, n);
}

static void server_seeds(void)
{
    long_lines();
    flood();
    SERVER("tutorial-lf-trusted", LF_OK | CUT(0), NO_CHUNKS, accept_now, TUTORIAL);
    SERVER("tutorial-lf-untrusted", CUT(1), NO_CHUNKS, accept_now, TUTORIAL);
    SERVER("pipelined-crlf", CUT(0), ALL_EXT, accept_now, PIPELINED);
    SERVER("pipelined-crlf-async", CUT(1), ALL_EXT, accept_later, PIPELINED);
    SERVER("pipelined-crlf-mixed", CUT(3), ALL_EXT, mixed, PIPELINED);
    SERVER("pipelined-crlf-421", CUT(2), ALL_EXT, closing, PIPELINED);
    SERVER("pipelined-write-fails", WRITE(1) | CUT(0), ALL_EXT, accept_now, PIPELINED);
    SERVER("pipelined-helo-only", CUT(0), 0, accept_now, PIPELINED);
    SERVER("bdat", CUT(0), ALL_EXT, accept_now, BDAT_SESSION);
    SERVER("bdat-async", CUT(1), ALL_EXT, accept_later, BDAT_SESSION);
    SERVER("bdat-trusted", LF_OK | CUT(3), ALL_EXT, mixed, BDAT_SESSION);
    SERVER("bdat-not-offered", CUT(0), NO_CHUNKS, accept_now, BDAT_SESSION);
    SERVER("smuggle-lf-dot-lf", CUT(0), ALL_EXT, accept_now, SMUGGLE("\n.\n"));
    SERVER("smuggle-lf-dot-crlf", CUT(0), ALL_EXT, accept_now, SMUGGLE("\n.\r\n"));
    SERVER("smuggle-cr-dot-crlf", CUT(0), ALL_EXT, accept_now, SMUGGLE("\r.\r\n"));
    SERVER("smuggle-crlf-dot-lf", CUT(0), ALL_EXT, accept_now, SMUGGLE("\r\n.\n"));
    SERVER("smuggle-lf-dot-lf-trusted", LF_OK | CUT(0), ALL_EXT, accept_now, SMUGGLE("\n.\n"));
    SERVER("smuggle-lf-dot-crlf-trusted", LF_OK | CUT(0), ALL_EXT, accept_now, SMUGGLE("\n.\r\n"));
    SERVER("smuggle-cr-dot-crlf-trusted", LF_OK | CUT(0), ALL_EXT, accept_now, SMUGGLE("\r.\r\n"));
    SERVER("odd-commands", CUT(0), ALL_EXT, accept_now, ODD_COMMANDS);
    SERVER("utf8", CUT(0), ALL_EXT, accept_now, UTF8_SESSION);
    SERVER("small-limits", SMALL | CUT(0), ALL_EXT, accept_now, LIMITS_SESSION);
    SERVER("small-limits-write-fails", SMALL | WRITE(3) | CUT(3), ALL_EXT, mixed, LIMITS_SESSION);
    SERVER("refused", REFUSE | CUT(0), ALL_EXT, accept_now, "EHLO client.example.org\r\n");
    SERVER("timeout-in-data", TIMEOUT | CUT(1), ALL_EXT, accept_now,
           "EHLO c.example\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\nDATA\r\n"
           "unfinished");
}

/* ---- addresses and parameters ------------------------------------------------------ */

static void address_seeds(void)
{
    static const char *const seeds[][2] = {
        {"simple", "<alice@example.org>"},
        {"null", "<>"},
        {"postmaster", "<Postmaster>"},
        {"postmaster-bare", "postmaster"},
        {"bare", "alice@example.org SIZE=100"},
        {"params", "<alice@example.org> SIZE=100 BODY=8BITMIME"},
        {"route", "<@relay.example,@b.example:user@example.org>"},
        {"quoted", "<\"john q. public\"@example.org>"},
        {"quoted-escapes", "<\"a\\\"b\\\\c>d\"@[192.0.2.1]>"},
        {"quoted-empty", "<\"\"@example.org>"},
        {"ipv6", "<user@[IPv6:2001:db8::1]>"},
        {"utf8", "<δοκιμή@παράδειγμα.δοκιμή>"},
        {"utf8-quoted", "<\"用户 名\"@例子.广告>"},
        {"percent-hack", "<user%other.example@relay.example>"},
        {"bad-domain", "<user@-bad-.example>"},
        {"unterminated", "<user@example.org"},
        {"local-64",
         "<abcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwxyzabcdefghijkl@e.example>"},
        {"dots", "<a.b.c@sub.example.co.uk>"},
    };
    for (size_t i = 0; i < sizeof(seeds) / sizeof(seeds[0]); i++)
        put_text("address", seeds[i][0], seeds[i][1]);
}

static void esmtp_seeds(void)
{
    static const char *const seeds[][2] = {
        {"empty", ""},
        {"size", " SIZE=1000"},
        {"size-huge", " SIZE=99999999999999999999999"},
        {"body", " BODY=8BITMIME"},
        {"binarymime", " BODY=BINARYMIME SMTPUTF8"},
        {"dsn-mail", " RET=HDRS ENVID=QQ314159+2B2"},
        {"dsn-rcpt", " NOTIFY=SUCCESS,FAILURE,DELAY ORCPT=rfc822;bob+40example.net"},
        {"notify-never", " NOTIFY=NEVER"},
        {"orcpt-utf8", " ORCPT=utf-8;δοκιμή@παράδειγμα.δοκιμή"},
        {"unknown", " FOO=bar"},
        {"repeated", " SIZE=1 SIZE=2"},
        {"spaces", "   SIZE=1   BODY=7BIT  "},
        {"all-mail", " SIZE=100 BODY=8BITMIME SMTPUTF8 RET=FULL ENVID=abc"},
    };
    for (size_t i = 0; i < sizeof(seeds) / sizeof(seeds[0]); i++)
        put_text("esmtp", seeds[i][0], seeds[i][1]);
}

/* ---- envelopes and journal segments ---------------------------------------------------- */

/* rcpt - add a recipient (strings are the caller's; envelope_free is not used) */
static void rcpt(struct envelope *e, const char *address, enum envelope_route route,
                 const char *maildir, enum envelope_state state)
{
    struct envelope_rcpt *r = envelope_add_rcpt(e);
    if (r == NULL)
        die("envelope_add_rcpt");
    r->address = (char *)address;
    r->route = route;
    r->maildir = (char *)maildir;
    r->state = state;
}

/* sample_envelopes - a small one and one with every optional field */
static void sample_envelopes(struct envelope *small, struct envelope *full)
{
    *small = (struct envelope){
        .id = "1K1CV21KMBB000",
        .sender = "alice@example.org",
        .client = "192.0.2.7",
        .helo = "client.example.org",
        .arrival = 1700000000,
        .size = 512,
        .trace_len = 40,
    };
    rcpt(small, "bob@localhost", ENVELOPE_ROUTE_MAILDIR, "./var/mail/bob/Maildir",
         ENVELOPE_PENDING);

    *full = (struct envelope){
        .id = "1K1CV21KMBB001",
        .sender = "",
        .client = "2001:db8::7",
        .helo = "",
        .envid = "QQ314159",
        .arrival = 1700000123,
        .size = 4096,
        .trace_len = 0,
        .body = 2,
        .ret = 2,
        .smtputf8 = true,
    };
    rcpt(full, "δοκιμή@localhost", ENVELOPE_ROUTE_MAILDIR, "./var/mail/δοκιμή/Maildir",
         ENVELOPE_DELIVERED);
    full->rcpt[0].orig = "postmaster@localhost";
    rcpt(full, "carol@example.net", ENVELOPE_ROUTE_RELAY, NULL, ENVELOPE_FAILED);
    full->rcpt[1].orcpt = "rfc822;carol+40example.net";
    full->rcpt[1].notify = SMTP_NOTIFY_FAILURE | SMTP_NOTIFY_DELAY;
    rcpt(full, "dave@example.net", ENVELOPE_ROUTE_RELAY, NULL, ENVELOPE_PENDING);
}

static void envelope_seeds(const struct envelope *small, const struct envelope *full)
{
    struct buf b;
    buf_init(&b, 1 << 20);
    if (envelope_encode(small, &b) < 0)
        die("envelope_encode");
    put("envelope", "small", b.data, b.len);
    buf_clear(&b);
    if (envelope_encode(full, &b) < 0)
        die("envelope_encode");
    put("envelope", "full", b.data, b.len);
    /* Damaged: cut short, and a string field claiming to run past the end. */
    put("envelope", "truncated", b.data, b.len / 2);
    b.data[1] = 0xff;
    put("envelope", "bad-length", b.data, b.len);
    buf_free(&b);
}

static void ignore_record(void *ctx, enum journal_type type, const uint8_t *p, size_t n)
{
    (void)ctx;
    (void)type;
    (void)p;
    (void)n;
}

static void ignore_damage(void *ctx, const char *segment, const char *quarantine, size_t bad)
{
    (void)ctx;
    (void)segment;
    (void)quarantine;
    (void)bad;
}

/* read_segment - the one segment file below dir into a malloc'd buffer */
static uint8_t *read_segment(const char *dir, size_t *n)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    char path[4096] = "";
    if (d == NULL)
        die(dir);
    while ((de = readdir(d)) != NULL)
        if (strstr(de->d_name, ".journal") != NULL)
            snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
    closedir(d);
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        die(path);
    uint8_t *data = malloc(1 << 20);
    if (data == NULL)
        die("malloc");
    *n = fread(data, 1, 1 << 20, f);
    fclose(f);
    unlink(path);
    return data;
}

static void journal_seeds(const struct envelope *small, const struct envelope *full)
{
    char spool[] = "/tmp/pigeon-gen-corpus.XXXXXX";
    char path[4096], err[256];
    struct journal_reader reader = {.record = ignore_record, .damaged = ignore_damage};

    if (mkdtemp(spool) == NULL)
        die("mkdtemp");
    snprintf(path, sizeof(path), "%s/journal", spool);
    if (mkdir(path, 0700) < 0)
        die(path);
    snprintf(path, sizeof(path), "%s/quarantine", spool);
    if (mkdir(path, 0700) < 0)
        die(path);

    /* An empty old segment to recover: journal_open() on an empty directory
     * calls qsort(NULL, 0, ...), which UBSan (this build) refuses. */
    snprintf(path, sizeof(path), "%s/journal/0000000000000001.journal", spool);
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);
    if (fd < 0)
        die(path);
    close(fd);

    struct journal *j = journal_open(spool, &reader, err, sizeof(err));
    if (j == NULL) {
        fprintf(stderr, "gen_corpus: %s\n", err);
        exit(1);
    }
    size_t encoded;
    uint8_t done[QUEUE_ID_LEN + 5];
    memcpy(done, full->id, QUEUE_ID_LEN);
    done[QUEUE_ID_LEN] = 2; /* recipient index 2, little-endian */
    done[QUEUE_ID_LEN + 1] = done[QUEUE_ID_LEN + 2] = done[QUEUE_ID_LEN + 3] = 0;
    done[QUEUE_ID_LEN + 4] = ENVELOPE_DELIVERED;
    if (journal_add_envelope(j, small, &encoded) < 0 ||
        journal_add_envelope(j, full, &encoded) < 0 ||
        journal_add(j, JOURNAL_DONE, done, sizeof(done)) < 0 ||
        journal_add(j, JOURNAL_GONE, small->id, QUEUE_ID_LEN) < 0 || journal_write(j) < 0)
        die("journal");
    journal_close(j);

    snprintf(path, sizeof(path), "%s/journal/0000000000000001.journal", spool);
    unlink(path);
    snprintf(path, sizeof(path), "%s/journal", spool);
    size_t n;
    uint8_t *seg = read_segment(path, &n);
    put("journal", "segment", seg, n);
    put("journal", "header-only", seg, 16);
    put("journal", "torn-tail", seg, n - 3);
    seg[16 + 20] ^= 0x40; /* damage inside the first record; the others are intact */
    put("journal", "damaged-first-record", seg, n);
    free(seg);

    rmdir(path);
    snprintf(path, sizeof(path), "%s/quarantine", spool);
    rmdir(path);
    rmdir(spool);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: gen_corpus CORPUS_DIR\n");
        return 2;
    }
    outdir = argv[1];
    if (mkdir(outdir, 0755) < 0 && errno != EEXIST)
        die(outdir);

    server_seeds();
    address_seeds();
    esmtp_seeds();

    struct envelope small, full;
    sample_envelopes(&small, &full);
    envelope_seeds(&small, &full);
    journal_seeds(&small, &full);
    free(small.rcpt);
    free(full.rcpt);
    return 0;
}
