/*
 * send.c - pigeon send: compose a message on the command line and submit it,
 * in the manner of swaks and msmtp; and cli_submit(), the submission that
 * pigeon sendmail shares.
 *
 *   pigeon send --to somebody@localhost --subject hello --body "Hi."
 *   pigeon send --server [::1]:2525 --from me@example.org --to you@example.org \
 *       --file letter.txt --attach report.pdf -v
 *
 * The message is built by mime.c; it goes out with libpigeon's pigeon_send(),
 * whose trace callback gives the -v transcript.
 *
 * The exit status (sysexits.h) answers "should I try again?":
 *
 *   0               every recipient accepted
 *   EX_TEMPFAIL 75  a temporary failure (4xx, timeout, connection lost)
 *   EX_NOUSER 67    a recipient was refused (5xx), or only some were accepted
 *   EX_UNAVAILABLE 69  any other permanent failure (sender or message refused,
 *                   an extension the message needs is missing)
 *   EX_PROTOCOL 76  the server broke the protocol
 *   EX_NOHOST 68    the server's name is unknown, or it could not be reached
 *   EX_USAGE 64     bad arguments, malformed addresses
 *   EX_NOINPUT 66   a file could not be read
 */
#include "cli/cli.h"

#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>
#include <unistd.h>

#include "pigeon/pigeon.h"

#define TRACE_LINE_MAX 4096 /* a longer line is shown in pieces */

/* ---- the transcript (-v) ------------------------------------------------- */

struct tracer {
    FILE *out;
    struct buf line[2]; /* a partial line from the client [0] and the server [1] */
};

/* trace_line - one line of the transcript */
static void trace_line(struct tracer *t, char dir, const uint8_t *p, size_t n)
{
    if (n > 0 && p[n - 1] == '\n')
        n--;
    if (n > 0 && p[n - 1] == '\r')
        n--;
    struct buf esc;
    buf_init(&esc, 4 * TRACE_LINE_MAX + 16);
    cli_escape(&esc, p, n);
    fprintf(t->out, "%c: %.*s\n", dir, (int)esc.len, esc.data ? (const char *)esc.data : "");
    buf_free(&esc);
}

/* trace_cb - libpigeon's trace callback: split what passed into lines */
static void trace_cb(void *ctx, char direction, const char *data, size_t len)
{
    struct tracer *t = ctx;
    char dir = direction == 'S' ? 'S' : 'C';
    struct buf *b = &t->line[dir == 'S'];
    const uint8_t *p = (const uint8_t *)data;
    while (len > 0) {
        const uint8_t *lf = memchr(p, '\n', len);
        size_t take = lf ? (size_t)(lf - p) + 1 : len;
        if (b->len + take > TRACE_LINE_MAX) {
            take = TRACE_LINE_MAX - b->len;
            lf = NULL;
        }
        buf_append(b, p, take);
        if (lf != NULL || b->len >= TRACE_LINE_MAX) {
            trace_line(t, dir, b->data, b->len);
            buf_clear(b);
        }
        p += take;
        len -= take;
    }
    fflush(t->out);
}

/* trace_finish - show what is left of unfinished lines */
static void trace_finish(struct tracer *t)
{
    for (int i = 0; i < 2; i++) {
        if (t->line[i].len > 0)
            trace_line(t, i ? 'S' : 'C', t->line[i].data, t->line[i].len);
        buf_free(&t->line[i]);
    }
}

/* ---- submission ---------------------------------------------------------- */

/* print_reply - "code enh first-line" of a reply */
static void print_reply(FILE *out, unsigned code, const char *enh, const char *text)
{
    const char *t = text ? text : "";
    size_t n = strcspn(t, "\n");
    struct buf esc;
    buf_init(&esc, 4 * n + 16);
    cli_escape(&esc, t, n);
    /* Print the enhanced code whether or not the library left it in the text. */
    size_t enh_len = enh ? strlen(enh) : 0;
    bool enh_in_text = enh_len > 0 && strncmp(t, enh, enh_len) == 0;
    if (enh_len > 0 && !enh_in_text)
        fprintf(out, "%u %s %.*s\n", code, enh, (int)esc.len, esc.data ? (char *)esc.data : "");
    else
        fprintf(out, "%u %.*s\n", code, (int)esc.len, esc.data ? (char *)esc.data : "");
    buf_free(&esc);
}

/*
 * refused_at_rcpt - was recipient i turned down by its own RCPT reply?
 * libpigeon gives each recipient its RCPT reply when that refused it, and
 * the final reply (the message's fate) otherwise.
 */
static bool refused_at_rcpt(const struct pigeon_result *r, size_t i, unsigned *code,
                            const char **enh, const char **text)
{
    unsigned fcode = 0;
    const char *fenh = "", *ftext = NULL, *addr;
    pigeon_result_final(r, &fcode, &fenh, &ftext);
    if (pigeon_result_rcpt(r, i, &addr, code, enh, text) < 0 || *code < 400)
        return false;
    return *code != fcode || *text == NULL || ftext == NULL || strcmp(*text, ftext) != 0;
}

/* print_summary - one line per recipient: the reply that decided its fate */
static void print_summary(FILE *out, const struct pigeon_result *r)
{
    unsigned fcode = 0;
    const char *fenh = "", *ftext = NULL;
    pigeon_result_final(r, &fcode, &fenh, &ftext);
    for (size_t i = 0; i < pigeon_result_rcpt_count(r); i++) {
        const char *addr = "", *enh = "", *text = NULL;
        unsigned code = 0;
        if (pigeon_result_rcpt(r, i, &addr, &code, &enh, &text) < 0)
            continue;
        fprintf(out, "%s: ", addr);
        if (refused_at_rcpt(r, i, &code, &enh, &text)) {
            fputs(code >= 500 ? "refused: " : "deferred: ", out);
            print_reply(out, code, enh, text);
        } else if (fcode >= 200 && fcode < 300) {
            print_reply(out, fcode, fenh, ftext); /* accepted: the reply to the message */
        } else if (fcode >= 400) {
            fputs(fcode >= 500 ? "failed: " : "deferred: ", out);
            print_reply(out, fcode, fenh, ftext);
        } else {
            fprintf(out, "not sent: %s\n", pigeon_result_error(r));
        }
    }
}

/* any_refused - was some recipient refused for good (5xx) by its RCPT reply? */
static bool any_refused(const struct pigeon_result *r)
{
    for (size_t i = 0; i < pigeon_result_rcpt_count(r); i++) {
        const char *enh, *text;
        unsigned code = 0;
        if (refused_at_rcpt(r, i, &code, &enh, &text) && code >= 500)
            return true;
    }
    return false;
}

/* any_reply - did any recipient get a reply at all? */
static bool any_reply(const struct pigeon_result *r)
{
    for (size_t i = 0; i < pigeon_result_rcpt_count(r); i++) {
        const char *addr, *enh, *text;
        unsigned code = 0;
        if (pigeon_result_rcpt(r, i, &addr, &code, &enh, &text) == 0 && code != 0)
            return true;
    }
    return false;
}

/* exit_status - the sysexits.h status for how the send went (see the top of the file) */
static int exit_status(int status, const struct pigeon_result *r)
{
    switch (status) {
    case PIGEON_SENT:
        return EX_OK;
    case PIGEON_PARTIAL:
        return EX_NOUSER;
    case PIGEON_TEMPFAIL:
        return EX_TEMPFAIL;
    case PIGEON_PERMFAIL:
        return r != NULL && any_refused(r) ? EX_NOUSER : EX_UNAVAILABLE;
    case PIGEON_PROTOCOL:
        return EX_PROTOCOL;
    case PIGEON_UNSUITABLE:
        return EX_UNAVAILABLE;
    case PIGEON_CONNECT:
        return EX_NOHOST;
    case PIGEON_INVALID:
        return EX_USAGE;
    default:
        return EX_SOFTWARE;
    }
}

/* cli_submit - send with libpigeon, print the summary, map the outcome */
int cli_submit(const struct cli_submission *s)
{
    struct pigeon_message *m = pigeon_message_new();
    if (m == NULL) {
        cli_warn("out of memory");
        return EX_OSERR;
    }
    if (pigeon_message_set_from(m, s->from) < 0) {
        cli_warn("the sender address <%s> is not valid", s->from);
        pigeon_message_free(m);
        return EX_USAGE;
    }
    for (size_t i = 0; i < s->nrcpt; i++) {
        if (pigeon_message_add_rcpt(m, s->rcpt[i]) < 0) {
            cli_warn("the recipient address <%s> is not valid", s->rcpt[i]);
            pigeon_message_free(m);
            return EX_USAGE;
        }
        if (s->notify != 0)
            pigeon_message_set_notify(m, s->notify, NULL);
    }
    if ((s->dsn_ret >= 0 || s->envid != NULL) &&
        pigeon_message_set_dsn(m, s->dsn_ret > 0, s->envid) < 0) {
        cli_warn("the DSN envelope id is not valid");
        pigeon_message_free(m);
        return EX_USAGE;
    }
    if (pigeon_message_set_content(m, s->content, s->len) < 0) {
        cli_warn("the message cannot be sent (out of memory?)");
        pigeon_message_free(m);
        return EX_SOFTWARE;
    }

    struct tracer tracer = {.out = stdout};
    buf_init(&tracer.line[0], TRACE_LINE_MAX);
    buf_init(&tracer.line[1], TRACE_LINE_MAX);
    struct pigeon_options o = PIGEON_OPTIONS_INIT;
    o.host = s->server.host;
    o.port = s->server.port;
    o.helo = s->helo;
    o.timeout_secs = s->timeout_secs;
    if (s->verbose) {
        o.trace = trace_cb;
        o.trace_ctx = &tracer;
    }
    struct pigeon_result *r = NULL;
    int status = pigeon_send(&o, m, &r);
    trace_finish(&tracer);
    fflush(stdout);

    int rc = exit_status(status, r);
    FILE *out = s->summary ? s->summary : rc != EX_OK ? s->summary_on_error : NULL;
    if (r != NULL && out != NULL && any_reply(r)) {
        print_summary(out, r);
        fflush(out);
    }
    if (rc != EX_OK) {
        const char *why = r != NULL ? pigeon_result_error(r) : "";
        cli_warn("%s", why != NULL && why[0] != '\0' ? why : "the message was not sent");
    }
    pigeon_result_free(r);
    pigeon_message_free(m);
    return rc;
}

/* ---- pigeon send --------------------------------------------------------- */

/* cli_send_usage - the options of pigeon send */
void cli_send_usage(FILE *out)
{
    fprintf(out,
            "usage: pigeon send [options] --to ADDRESS [--to ADDRESS]...\n"
            "  -s, --server HOST[:PORT]  where to send (default $PIGEON_SERVER or %s)\n"
            "  -f, --from ADDRESS        envelope sender (default: the From: field, or you)\n"
            "  -t, --to ADDRESS          a recipient, also named in To: (repeatable)\n"
            "  -c, --cc ADDRESS          a recipient named in Cc: (repeatable)\n"
            "  -b, --bcc ADDRESS         a recipient named nowhere (repeatable)\n"
            "  -S, --subject TEXT        the Subject: field\n"
            "  -H, --header 'Name: value'  another header field (repeatable)\n"
            "  -B, --body TEXT           the body text\n"
            "  -F, --file PATH           the message (fields and body) or the body, from a file\n"
            "                            (\"-\" or neither option: standard input)\n"
            "  -a, --attach FILE         attach a file (repeatable)\n"
            "      --helo NAME           the name to give in EHLO\n"
            "      --timeout SECONDS     give up on a silent server after this long\n"
            "  -n, --dry-run             print the envelope and the message, send nothing\n"
            "  -v, --verbose             print the SMTP transaction\n",
            CLI_DEFAULT_SERVER);
}

/* join - the values, separated by ", " (for a To: or Cc: field) */
static char *join(const struct cli_list *s)
{
    struct buf b;
    buf_init(&b, CLI_INPUT_MAX);
    for (size_t i = 0; i < s->n; i++) {
        if ((i > 0 && buf_append_str(&b, ", ") < 0) || buf_append_str(&b, s->v[i]) < 0) {
            buf_free(&b);
            return NULL;
        }
    }
    buf_append_byte(&b, '\0');
    return (char *)b.data;
}

/* Everything the command line said. */
struct send_args {
    const char *server, *from, *subject, *body, *file, *helo;
    struct cli_list to, cc, bcc, headers, attach;
    unsigned timeout;
    bool verbose, dry_run;
};

/* parse_args - getopt_long over pigeon send's options; EX_OK or EX_USAGE */
static int parse_args(int argc, char **argv, struct send_args *a)
{
    enum { OPT_HELO = 256, OPT_TIMEOUT };
    static const struct option options[] = {
        {"server", required_argument, NULL, 's'},
        {"from", required_argument, NULL, 'f'},
        {"to", required_argument, NULL, 't'},
        {"cc", required_argument, NULL, 'c'},
        {"bcc", required_argument, NULL, 'b'},
        {"subject", required_argument, NULL, 'S'},
        {"header", required_argument, NULL, 'H'},
        {"body", required_argument, NULL, 'B'},
        {"file", required_argument, NULL, 'F'},
        {"attach", required_argument, NULL, 'a'},
        {"helo", required_argument, NULL, OPT_HELO},
        {"timeout", required_argument, NULL, OPT_TIMEOUT},
        {"dry-run", no_argument, NULL, 'n'},
        {"verbose", no_argument, NULL, 'v'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "s:f:t:c:b:S:H:B:F:a:nvh", options, NULL)) != -1) {
        int rc = 0;
        char *end;
        switch (c) {
        case 's':
            a->server = optarg;
            break;
        case 'f':
            a->from = optarg;
            break;
        case 't':
            rc = cli_list_add(&a->to, optarg);
            break;
        case 'c':
            rc = cli_list_add(&a->cc, optarg);
            break;
        case 'b':
            rc = cli_list_add(&a->bcc, optarg);
            break;
        case 'S':
            a->subject = optarg;
            break;
        case 'H':
            rc = cli_list_add(&a->headers, optarg);
            break;
        case 'B':
            a->body = optarg;
            break;
        case 'F':
            a->file = optarg;
            break;
        case 'a':
            rc = cli_list_add(&a->attach, optarg);
            break;
        case OPT_HELO:
            a->helo = optarg;
            break;
        case OPT_TIMEOUT:
            errno = 0;
            unsigned long t = strtoul(optarg, &end, 10);
            if (errno != 0 || *end != '\0' || end == optarg || t == 0 || t > 86400) {
                cli_warn("--timeout wants a number of seconds, 1 to 86400");
                return EX_USAGE;
            }
            a->timeout = (unsigned)t;
            break;
        case 'n':
            a->dry_run = true;
            break;
        case 'v':
            a->verbose = true;
            break;
        case 'h':
            cli_send_usage(stdout);
            exit(EX_OK);
        default:
            cli_send_usage(stderr);
            return EX_USAGE;
        }
        if (rc < 0)
            return EX_OSERR;
    }
    if (optind < argc) {
        cli_warn("unexpected argument \"%s\" (recipients go after --to)", argv[optind]);
        return EX_USAGE;
    }
    if (a->body != NULL && a->file != NULL) {
        cli_warn("--body and --file both give the body; choose one");
        return EX_USAGE;
    }
    return EX_OK;
}

/* read_content - the message from --body, --file or standard input into m */
static int read_content(const struct send_args *a, struct mime_message *m)
{
    if (a->body != NULL) {
        if (mime_set_body(m, (const uint8_t *)a->body, strlen(a->body)) < 0)
            return EX_OSERR;
        return EX_OK;
    }
    const char *path = a->file ? a->file : "-";
    if (strcmp(path, "-") == 0 && isatty(STDIN_FILENO))
        fputs("pigeon: reading the message from the terminal; end it with Ctrl-D\n", stderr);
    struct buf in;
    buf_init(&in, CLI_INPUT_MAX);
    if (cli_read_path(path, &in) < 0) {
        int e = errno;
        cli_warn("%s: %s", strcmp(path, "-") == 0 ? "standard input" : path, strerror(e));
        buf_free(&in);
        return e == EFBIG ? EX_DATAERR : EX_NOINPUT;
    }
    int rc = mime_parse(m, in.data, in.len) < 0 ? EX_OSERR : EX_OK;
    buf_free(&in);
    return rc;
}

/* first_address - the first addr-spec in a field's value */
static int first_address(void *ctx, const char *addr)
{
    char **out = ctx;
    *out = strdup(addr);
    return 1; /* stop */
}

/* default_sender - the From: field's address, or login@hostname */
static char *default_sender(const struct mime_message *m)
{
    for (size_t i = 0; i < m->nfields; i++) {
        if (strcasecmp(m->fields[i].name, "From") != 0)
            continue;
        struct buf v;
        buf_init(&v, 64 * 1024);
        char *addr = NULL;
        if (mime_field_value(&m->fields[i], &v) == 0)
            mime_addresses((const char *)v.data, first_address, &addr);
        buf_free(&v);
        if (addr != NULL)
            return addr;
    }
    char *s = NULL;
    if (asprintf(&s, "%s@%s", cli_username(), cli_hostname()) < 0)
        return NULL;
    return s;
}

/* build - the message to send: generated fields, --header fields, then the file's */
static int build(const struct send_args *a, struct mime_message *file, const char *from,
                 struct buf *out)
{
    struct mime_message head, extra;
    mime_init(&head);
    mime_init(&extra);
    int rc = EX_OK;
    for (size_t i = 0; i < a->headers.n && rc == EX_OK; i++) {
        if (mime_add_line(&extra, a->headers.v[i]) < 0) {
            cli_warn("--header \"%s\" is not \"Name: value\" on one line", a->headers.v[i]);
            rc = EX_USAGE;
        }
    }
    /* The command line wins over the file. */
    for (size_t i = 0; i < extra.nfields && rc == EX_OK; i++)
        mime_remove(file, extra.fields[i].name);
    if (a->subject != NULL)
        mime_remove(file, "Subject");
    /* RFC 5322 §3.6.3: Bcc: may be removed; it is, so blind copies stay blind. */
    mime_remove(file, "Bcc");

#define MISSING(name) (!mime_has(file, name) && !mime_has(&extra, name))
    char *list = NULL;
    if (rc == EX_OK && from[0] != '\0' && MISSING("From") && mime_add(&head, "From", from) < 0)
        rc = EX_OSERR;
    if (rc == EX_OK && a->to.n > 0 && MISSING("To") &&
        ((list = join(&a->to)) == NULL || mime_add(&head, "To", list) < 0))
        rc = EX_OSERR;
    free(list);
    list = NULL;
    if (rc == EX_OK && a->cc.n > 0 && MISSING("Cc") &&
        ((list = join(&a->cc)) == NULL || mime_add(&head, "Cc", list) < 0))
        rc = EX_OSERR;
    free(list);
    if (rc == EX_OK && a->subject != NULL && mime_add_text(&head, "Subject", a->subject) < 0)
        rc = EX_OSERR;
    if (rc == EX_OK && MISSING("Date") && mime_add_date(&head, time(NULL)) < 0)
        rc = EX_OSERR;
    if (rc == EX_OK && MISSING("Message-ID") && mime_add_message_id(&head, cli_hostname()) < 0)
        rc = EX_OSERR;
#undef MISSING

    if (rc == EX_OK && (mime_take_fields(&head, &extra) < 0 || mime_take_fields(&head, file) < 0))
        rc = EX_OSERR;
    if (rc == EX_OK) {
        /* The body and attachments move over as well. */
        head.body = file->body;
        buf_init(&file->body, CLI_INPUT_MAX);
        head.att = file->att;
        head.natt = file->natt;
        file->att = NULL;
        file->natt = 0;
        if (mime_render(&head, out) < 0) {
            cli_warn("the message is too large");
            rc = EX_DATAERR;
        }
    }
    mime_free(&head);
    mime_free(&extra);
    return rc;
}

/* dry_run - print the envelope and the message (with local line endings) */
static void dry_run(const struct cli_server *server, const char *from, const struct cli_list *rcpt,
                    const struct buf *msg)
{
    printf("server: %s port %s\n", server->host, server->port);
    printf("envelope sender: <%s>\n", from);
    for (size_t i = 0; i < rcpt->n; i++)
        printf("envelope recipient: <%s>\n", rcpt->v[i]);
    putchar('\n');
    for (size_t i = 0; i < msg->len; i++) {
        if (msg->data[i] == '\r' && i + 1 < msg->len && msg->data[i + 1] == '\n')
            continue;
        putchar(msg->data[i]);
    }
    fflush(stdout);
}

/* cli_send - pigeon send */
int cli_send(int argc, char **argv)
{
    struct send_args a = {0};
    struct mime_message file;
    struct cli_list rcpt = {0};
    struct buf msg;
    char *from = NULL;
    mime_init(&file);
    buf_init(&msg, CLI_INPUT_MAX * 2);

    int rc = parse_args(argc, argv, &a);
    struct cli_submission s = {.dsn_ret = -1};
    if (rc == EX_OK &&
        cli_server_parse(a.server ? a.server : cli_server_default(), "25", &s.server) < 0) {
        cli_warn("\"%s\" is not HOST[:PORT]", a.server ? a.server : cli_server_default());
        rc = EX_USAGE;
    }
    const struct cli_list *lists[] = {&a.to, &a.cc, &a.bcc};
    for (size_t l = 0; l < 3 && rc == EX_OK; l++) {
        for (size_t i = 0; i < lists[l]->n && rc == EX_OK; i++) {
            int found = cli_list_add_addresses(&rcpt, lists[l]->v[i]);
            if (found == MIME_BAD_ADDRESS) {
                cli_warn("not a valid address: \"%s\"", lists[l]->v[i]);
                rc = EX_USAGE;
            } else if (found < 0) {
                rc = EX_OSERR;
            } else if (found == 0) {
                cli_warn("no address in \"%s\"", lists[l]->v[i]);
                rc = EX_USAGE;
            }
        }
    }
    if (rc == EX_OK && rcpt.n == 0) {
        cli_warn("no recipients: name them with --to, --cc or --bcc");
        cli_send_usage(stderr);
        rc = EX_USAGE;
    }
    /* Attachments first: a missing file should not cost the user their typed message. */
    for (size_t i = 0; i < a.attach.n && rc == EX_OK; i++) {
        struct buf data;
        buf_init(&data, CLI_INPUT_MAX);
        if (cli_read_path(a.attach.v[i], &data) < 0) {
            cli_warn("%s: %s", a.attach.v[i], strerror(errno));
            rc = errno == EFBIG ? EX_DATAERR : EX_NOINPUT;
        } else if (mime_attach(&file, a.attach.v[i], data.data, data.len) < 0) {
            rc = EX_OSERR;
        }
        buf_free(&data);
    }
    if (rc == EX_OK)
        rc = read_content(&a, &file);
    if (rc == EX_OK) {
        from = a.from ? strdup(a.from) : default_sender(&file);
        if (from == NULL)
            rc = EX_OSERR;
    }
    if (rc == EX_OK)
        rc = build(&a, &file, from, &msg);

    if (rc == EX_OK && a.dry_run) {
        dry_run(&s.server, from, &rcpt, &msg);
    } else if (rc == EX_OK) {
        s.from = from;
        s.rcpt = (const char *const *)rcpt.v;
        s.nrcpt = rcpt.n;
        s.content = msg.data;
        s.len = msg.len;
        s.timeout_secs = a.timeout;
        s.verbose = a.verbose;
        s.summary = stdout;
        s.helo = a.helo;
        rc = cli_submit(&s);
    } else if (rc == EX_OSERR) {
        cli_warn("out of memory");
    }

    free(from);
    buf_free(&msg);
    mime_free(&file);
    cli_list_free(&rcpt);
    cli_list_free(&a.to);
    cli_list_free(&a.cc);
    cli_list_free(&a.bcc);
    cli_list_free(&a.headers);
    cli_list_free(&a.attach);
    return rc;
}
