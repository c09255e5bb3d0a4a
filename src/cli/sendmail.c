/*
 * sendmail.c - the sendmail interface: how cron, mail(1), PHP's mail() and
 * every other Unix program hand a message to the local MTA.
 *
 *   ln -s /usr/bin/pigeon /usr/sbin/sendmail
 *   printf 'Subject: hi\n\nbody\n' | sendmail somebody@localhost
 *   sendmail -t -i < message           (recipients from To:, Cc:, Bcc:)
 *
 * The message is submitted over SMTP to the local pigeond ($PIGEON_SERVER,
 * else 127.0.0.1:2525), which owns the queue: this program keeps nothing
 * and runs with the caller's privileges only.  So the one promise it must
 * keep on its own is the old one: a message it has read is never lost.
 * Exit 0 means pigeond has queued it; on any other outcome the message is
 * appended to ~/dead.letter (mbox format), or a new file in /tmp when that
 * cannot be written, and the place is printed on standard error.
 *
 * Options follow Sendmail and Postfix: -t, -i / -oi, -f, -F, -bs (SMTP on
 * standard input and output, relayed byte for byte), -bp (the queue), the
 * DSN options -N, -R, -V, and the usual no-ops (-oXXX, -odi, -em, -v, ...).
 */
#include "cli/cli.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <poll.h>
#include <pwd.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sysexits.h>
#include <unistd.h>

#include "pigeon/pigeon.h"

/* Everything the command line said. */
struct sendmail_args {
    const char *server;
    const char *sender;   /* -f */
    const char *fullname; /* -F */
    const char *config;   /* -C, for -bp */
    char mode;            /* the letter after -b: 'm' deliver (default), 's', 'p' */
    bool from_headers;    /* -t */
    bool ignore_dots;     /* -i, -oi */
    bool queue_run;       /* -q */
    unsigned notify;      /* -N */
    int ret;              /* -R: -1 none, 0 hdrs, 1 full */
    const char *envid;    /* -V */
};

/* cli_sendmail_usage - the options this sendmail understands */
void cli_sendmail_usage(FILE *out)
{
    fprintf(
        out,
        "usage: sendmail [options] [ADDRESS]...  (or: pigeon sendmail ...)\n"
        "  -t               recipients from the To:, Cc: and Bcc: fields as well\n"
        "  -i, -oi          a line with a single \".\" does not end the message\n"
        "  -f ADDRESS       the envelope sender (default: you@this host)\n"
        "  -F 'Full Name'   your name, for a From: field when the message has none\n"
        "  -N never|success,failure,delay   DSN notifications\n"
        "  -R full|hdrs     DSN: what a bounce returns\n"
        "  -V ENVID         DSN envelope id\n"
        "  -bs              speak SMTP on standard input and output\n"
        "  -bp              list the queue (as pigeon queue; -C FILE names pigeond.conf)\n"
        "  --server HOST[:PORT]  where pigeond listens (default $PIGEON_SERVER or %s)\n"
        "Ignored for compatibility: -oXXX, -odi, -odb, -em, -v, -m, -n, -U, -B, -h, -L, -X, -q\n",
        CLI_DEFAULT_SERVER);
}

/* parse_notify - "never" or a list of success, failure, delay (RFC 3461 §4.1) */
static int parse_notify(const char *s, unsigned *out)
{
    char copy[128];
    snprintf(copy, sizeof(copy), "%s", s);
    *out = 0;
    char *save = NULL;
    for (char *w = strtok_r(copy, ",", &save); w != NULL; w = strtok_r(NULL, ",", &save)) {
        if (strcasecmp(w, "never") == 0)
            *out |= PIGEON_NOTIFY_NEVER;
        else if (strcasecmp(w, "success") == 0)
            *out |= PIGEON_NOTIFY_SUCCESS;
        else if (strcasecmp(w, "failure") == 0)
            *out |= PIGEON_NOTIFY_FAILURE;
        else if (strcasecmp(w, "delay") == 0)
            *out |= PIGEON_NOTIFY_DELAY;
        else
            return -1;
    }
    if (*out == 0 || ((*out & PIGEON_NOTIFY_NEVER) && *out != PIGEON_NOTIFY_NEVER))
        return -1;
    return 0;
}

/* parse_args - sendmail's options; EX_OK or EX_USAGE; recipients start at *first */
static int parse_args(int argc, char **argv, struct sendmail_args *a, int *first)
{
    static const struct option options[] = {
        {"server", required_argument, NULL, 's'},
        {"help", no_argument, NULL, 256},
        {NULL, 0, NULL, 0},
    };
    a->mode = 'm';
    a->ret = -1;
    optind = 1;
    opterr = 1;
    int c;
    while ((c = getopt_long(argc, argv, "B:b:C:e:F:f:Gh:iL:mN:nO:o:q::R:r:tUV:vX:", options,
                            NULL)) != -1) {
        switch (c) {
        case 's':
            a->server = optarg;
            break;
        case 256:
            cli_sendmail_usage(stdout);
            exit(EX_OK);
        case 'b':
            if (strcmp(optarg, "m") != 0 && strcmp(optarg, "s") != 0 && strcmp(optarg, "p") != 0) {
                cli_warn("sendmail -b%s is not supported (only -bm, -bs and -bp)", optarg);
                return EX_USAGE;
            }
            a->mode = optarg[0];
            break;
        case 'C':
            a->config = optarg;
            break;
        case 'F':
            a->fullname = optarg;
            break;
        case 'f':
        case 'r': /* the old name of -f */
            a->sender = optarg;
            break;
        case 'i':
            a->ignore_dots = true;
            break;
        case 'o':
            if (strcmp(optarg, "i") == 0)
                a->ignore_dots = true;
            break; /* every other -oXXX: a Sendmail setting with no meaning here */
        case 't':
            a->from_headers = true;
            break;
        case 'q':
            a->queue_run = true;
            break;
        case 'N':
            if (parse_notify(optarg, &a->notify) < 0) {
                cli_warn("-N wants never, or some of success,failure,delay");
                return EX_USAGE;
            }
            break;
        case 'R':
            if (strcasecmp(optarg, "full") == 0)
                a->ret = 1;
            else if (strcasecmp(optarg, "hdrs") == 0)
                a->ret = 0;
            else {
                cli_warn("-R wants full or hdrs");
                return EX_USAGE;
            }
            break;
        case 'V':
            a->envid = optarg;
            break;
        case 'B': /* body type: the content is looked at instead */
        case 'e': /* error reporting mode */
        case 'G': /* gateway submission */
        case 'h': /* hop count */
        case 'L': /* syslog tag */
        case 'm': /* send to me too */
        case 'n': /* no aliasing */
        case 'O': /* a long-form Sendmail setting */
        case 'U': /* initial user submission */
        case 'v': /* verbose */
        case 'X': /* traffic log */
            break;
        default:
            cli_sendmail_usage(stderr);
            return EX_USAGE;
        }
    }
    *first = optind;
    return EX_OK;
}

/* ---- -bs: SMTP on standard input and output ------------------------------ */

/* speak_smtp - relay bytes between stdio and the server until the server closes */
static int speak_smtp(const struct cli_server *server)
{
    char err[512];
    int fd = cli_connect(server, err, sizeof(err));
    if (fd < 0) {
        /* The client on stdin speaks SMTP: tell it in SMTP, and the human on stderr. */
        char reply[600];
        int n = snprintf(reply, sizeof(reply), "421 4.4.1 pigeon: %s\r\n", err);
        for (int i = 0; i < n - 2; i++) {
            if (reply[i] == '\r' || reply[i] == '\n')
                reply[i] = ' ';
        }
        cli_write_all(STDOUT_FILENO, reply, (size_t)n);
        cli_warn("%s", err);
        return EX_NOHOST;
    }
    bool stdin_open = true;
    uint8_t buf[16384];
    for (;;) {
        struct pollfd p[2] = {{.fd = fd, .events = POLLIN},
                              {.fd = stdin_open ? STDIN_FILENO : -1, .events = POLLIN}};
        if (poll(p, 2, -1) < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        if (p[0].revents) {
            ssize_t r = read(fd, buf, sizeof(buf));
            if (r < 0 && errno == EINTR)
                continue;
            if (r <= 0) {
                close(fd);
                return r == 0 ? EX_OK : EX_IOERR;
            }
            if (cli_write_all(STDOUT_FILENO, buf, (size_t)r) < 0)
                break;
        }
        if (p[1].revents) {
            ssize_t r = read(STDIN_FILENO, buf, sizeof(buf));
            if (r < 0 && errno == EINTR)
                continue;
            if (r <= 0) {
                /* The client is done talking; the server may still have things to say. */
                stdin_open = false;
                shutdown(fd, SHUT_WR);
            } else if (cli_write_all(fd, buf, (size_t)r) < 0) {
                break;
            }
        }
    }
    close(fd);
    return EX_IOERR;
}

/* ---- reading the message ------------------------------------------------- */

/*
 * read_message - standard input, to its end, or (without -i) to a line
 * holding a single "." as traditional sendmail does.  0, or -1 with errno.
 */
static int read_message(bool ignore_dots, struct buf *out)
{
    if (ignore_dots)
        return cli_read_fd(STDIN_FILENO, out);
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    int rc = 0;
    while ((n = getline(&line, &cap, stdin)) > 0) {
        if ((n == 2 && memcmp(line, ".\n", 2) == 0) || (n == 3 && memcmp(line, ".\r\n", 3) == 0))
            break;
        if (buf_append(out, line, (size_t)n) < 0) {
            errno = EFBIG;
            rc = -1;
            break;
        }
    }
    if (rc == 0 && ferror(stdin))
        rc = -1;
    free(line);
    return rc;
}

/* ---- dead.letter --------------------------------------------------------- */

/* mbox_append - the message as an mbox entry (mboxrd: ">From " quoting), LF line endings */
static int mbox_format(struct buf *out, const char *sender, const uint8_t *p, size_t n)
{
    time_t now = time(NULL);
    struct tm tm;
    char date[64] = "Thu Jan  1 00:00:00 1970";
    if (localtime_r(&now, &tm) != NULL)
        strftime(date, sizeof(date), "%a %b %e %H:%M:%S %Y", &tm);
    if (buf_printf(out, "From %s %s\n", sender[0] ? sender : "MAILER-DAEMON", date) < 0)
        return -1;
    size_t start = 0;
    while (start < n) {
        const uint8_t *lf = memchr(p + start, '\n', n - start);
        size_t end = lf ? (size_t)(lf - p) : n;
        size_t len = end - start;
        if (len > 0 && p[start + len - 1] == '\r')
            len--;
        size_t k = 0;
        while (k < len && p[start + k] == '>')
            k++;
        if (len - k >= 5 && memcmp(p + start + k, "From ", 5) == 0 && buf_append_byte(out, '>') < 0)
            return -1;
        if (buf_append(out, p + start, len) < 0 || buf_append_byte(out, '\n') < 0)
            return -1;
        start = end + 1;
    }
    return buf_append_byte(out, '\n'); /* an empty line ends the entry */
}

/* append_to - append data to path under an fcntl lock; -1 with errno */
static int append_to(const char *path, int flags, const struct buf *data)
{
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | flags, 0600);
    if (fd < 0)
        return -1;
    struct flock lk = {.l_type = F_WRLCK, .l_whence = SEEK_SET};
    fcntl(fd, F_SETLKW, &lk); /* mbox readers use fcntl locks; without one, still write */
    int rc = cli_write_all(fd, data->data, data->len);
    if (rc == 0)
        rc = fsync(fd);
    int e = errno;
    if (close(fd) < 0 && rc == 0) {
        rc = -1;
        e = errno;
    }
    errno = e;
    return rc;
}

/*
 * save_dead_letter - keep the message the user could not send: in
 * $HOME/dead.letter, else a new /tmp/dead.letter.<uid>.<time>.  Prints
 * where it went (or that it could not be kept); 0 or -1.
 */
static int save_dead_letter(const char *sender, const uint8_t *p, size_t n)
{
    struct buf entry;
    buf_init(&entry, CLI_INPUT_MAX * 2);
    if (mbox_format(&entry, sender, p, n) < 0) {
        cli_warn("out of memory: the message could not be saved");
        buf_free(&entry);
        return -1;
    }
    char path[4096];
    const char *home = getenv("HOME");
    int rc = -1;
    if (home != NULL && home[0] == '/') {
        snprintf(path, sizeof(path), "%s/dead.letter", home);
        rc = append_to(path, 0, &entry);
        if (rc < 0)
            cli_warn("%s: %s", path, strerror(errno));
    }
    for (int attempt = 0; rc < 0 && attempt < 100; attempt++) {
        if (attempt == 0)
            snprintf(path, sizeof(path), "/tmp/dead.letter.%lu.%lld", (unsigned long)getuid(),
                     (long long)time(NULL));
        else
            snprintf(path, sizeof(path), "/tmp/dead.letter.%lu.%lld.%d", (unsigned long)getuid(),
                     (long long)time(NULL), attempt);
        /* A new file only: in /tmp somebody else may have put a symlink there. */
        rc = append_to(path, O_EXCL | O_NOFOLLOW, &entry);
        if (rc < 0 && errno != EEXIST) {
            cli_warn("%s: %s", path, strerror(errno));
            break;
        }
    }
    if (rc == 0)
        fprintf(stderr, "pigeon: the message was saved in %s\n", path);
    else
        cli_warn("the message could not be saved anywhere; it is lost unless you still have it");
    buf_free(&entry);
    return rc;
}

/* ---- building the message ------------------------------------------------ */

/* recipients_from_headers - -t: every address in To:, Cc: and Bcc: */
static int recipients_from_headers(const struct mime_message *m, struct cli_list *rcpt)
{
    for (size_t i = 0; i < m->nfields; i++) {
        const char *name = m->fields[i].name;
        if (strcasecmp(name, "To") != 0 && strcasecmp(name, "Cc") != 0 &&
            strcasecmp(name, "Bcc") != 0)
            continue;
        struct buf v;
        buf_init(&v, CLI_INPUT_MAX);
        int rc = mime_field_value(&m->fields[i], &v);
        if (rc == 0) {
            int found = cli_list_add_addresses(rcpt, (const char *)v.data);
            rc = found < 0 ? found : 0;
        }
        buf_free(&v);
        if (rc < 0)
            return rc;
    }
    return 0;
}

/* gecos_name - the user's full name from the password file, or NULL */
static const char *gecos_name(void)
{
    static char name[256];
    struct passwd *pw = getpwuid(getuid());
    if (pw == NULL || pw->pw_gecos == NULL || pw->pw_gecos[0] == '\0')
        return NULL;
    snprintf(name, sizeof(name), "%.*s", (int)strcspn(pw->pw_gecos, ","), pw->pw_gecos);
    return name[0] ? name : NULL;
}

/* complete - add the fields a message must have, drop Bcc:, render */
static int complete(struct mime_message *m, const struct sendmail_args *a, const char *sender,
                    struct buf *out)
{
    int rc = 0;
    /* RFC 5322 §3.6.3: Bcc: is removed, so blind copies stay blind. */
    mime_remove(m, "Bcc");
    if (!mime_has(m, "From") && sender[0] != '\0') /* a null sender has no From: to give */
        rc |= mime_add_mailbox(m, "From", a->fullname ? a->fullname : gecos_name(), sender);
    if (!mime_has(m, "Date"))
        rc |= mime_add_date(m, time(NULL));
    if (!mime_has(m, "Message-ID"))
        rc |= mime_add_message_id(m, cli_hostname());
    if (rc == 0)
        rc = mime_render(m, out);
    return rc;
}

/* strip_angles - "<a@b>" is a@b; "<>" and "" are the null sender */
static char *strip_angles(const char *s)
{
    size_t n = strlen(s);
    if (n >= 2 && s[0] == '<' && s[n - 1] == '>')
        return strndup(s + 1, n - 2);
    return strdup(s);
}

/* cli_sendmail - the sendmail command */
int cli_sendmail(int argc, char **argv)
{
    struct sendmail_args a = {0};
    int first;
    int rc = parse_args(argc, argv, &a, &first);
    if (rc != EX_OK)
        return rc;

    if (a.mode == 'p') {
        char *qargv[] = {"queue", "-f", (char *)a.config, NULL};
        return cli_queue(a.config ? 3 : 1, qargv);
    }
    if (a.queue_run)
        return EX_OK; /* pigeond runs its queue itself */

    struct cli_submission s = {.dsn_ret = a.ret, .envid = a.envid, .notify = a.notify};
    const char *spec = a.server ? a.server : cli_server_default();
    if (cli_server_parse(spec, "25", &s.server) < 0) {
        cli_warn("\"%s\" is not HOST[:PORT]", spec);
        return EX_USAGE;
    }
    if (a.mode == 's')
        return speak_smtp(&s.server);

    struct cli_list rcpt = {0};
    for (int i = first; i < argc; i++) {
        int found = cli_list_add_addresses(&rcpt, argv[i]);
        if (found <= 0) {
            if (found == -1)
                cli_warn("out of memory");
            else
                cli_warn("not a valid address: \"%s\"", argv[i]);
            cli_list_free(&rcpt);
            return found == -1 ? EX_OSERR : EX_USAGE;
        }
    }
    if (rcpt.n == 0 && !a.from_headers) {
        /* Nothing read yet, so nothing to lose: the message is still the caller's. */
        cli_warn("no recipients: name them as arguments, or use -t");
        cli_list_free(&rcpt);
        return EX_USAGE;
    }

    char *sender = NULL;
    if (a.sender != NULL)
        sender = strip_angles(a.sender);
    else if (asprintf(&sender, "%s@%s", cli_username(), cli_hostname()) < 0)
        sender = NULL;

    struct buf input, msg;
    buf_init(&input, CLI_INPUT_MAX);
    buf_init(&msg, CLI_INPUT_MAX * 2);
    struct mime_message m;
    mime_init(&m);

    if (read_message(a.ignore_dots, &input) < 0) {
        rc = errno == EFBIG ? EX_DATAERR : EX_IOERR;
        cli_warn("reading the message: %s", strerror(errno));
    } else if (sender == NULL || mime_parse(&m, input.data, input.len) < 0) {
        rc = EX_OSERR;
        cli_warn("out of memory");
    } else if (a.from_headers && (rc = recipients_from_headers(&m, &rcpt)) < 0) {
        bool bad = rc == MIME_BAD_ADDRESS;
        rc = bad ? EX_DATAERR : EX_OSERR;
        cli_warn(bad ? "a To:, Cc: or Bcc: field holds something that is not an address"
                     : "out of memory");
    } else if (rcpt.n == 0) {
        rc = EX_USAGE;
        cli_warn("no recipients in the To:, Cc: or Bcc: fields");
    } else if (complete(&m, &a, sender, &msg) < 0) {
        rc = EX_DATAERR;
        cli_warn("the message is too large");
    } else {
        s.from = sender;
        s.rcpt = (const char *const *)rcpt.v;
        s.nrcpt = rcpt.n;
        s.content = msg.data;
        s.len = msg.len;
        s.summary_on_error = stderr;
        rc = cli_submit(&s);
    }
    /* Whatever went wrong, the message read is kept. */
    if (rc != EX_OK && input.len > 0) {
        fflush(stdout);
        save_dead_letter(sender ? sender : "", input.data, input.len);
    }

    mime_free(&m);
    buf_free(&msg);
    buf_free(&input);
    free(sender);
    cli_list_free(&rcpt);
    return rc;
}
