/*
 * main.c - the pigeon command: choose the subcommand, and the small helpers
 * every subcommand uses (server names, connecting, reading files, escaping
 * what a server sends before it reaches a terminal).
 *
 *   pigeon send ...        compose and submit a message (send.c)
 *   pigeon talk HOST       an interactive SMTP terminal (talk.c)
 *   pigeon sendmail ...    the sendmail interface (sendmail.c); also when
 *                          the program is called "sendmail" (a symlink)
 *   pigeon queue           list pigeond's queue (queue.c); also as "mailq"
 *
 * Exit statuses are those of sysexits.h, so scripts and other mail
 * programs can tell "try again later" from "this will never work".
 */
#include "cli/cli.h"

#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sysexits.h>
#include <fcntl.h>
#include <unistd.h>

#ifndef PIGEON_VERSION
#define PIGEON_VERSION "unknown"
#endif

#define CONNECT_TIMEOUT_MS 30000 /* per address tried */

/* cli_warn - "pigeon: ..." on standard error */
void cli_warn(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("pigeon: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

/* cli_server_default - $PIGEON_SERVER, else the local pigeond */
const char *cli_server_default(void)
{
    const char *s = getenv("PIGEON_SERVER");
    return s != NULL && s[0] != '\0' ? s : CLI_DEFAULT_SERVER;
}

/* copy_part - copy n bytes of s into out (size outsize) as a string; -1 if it does not fit */
static int copy_part(char *out, size_t outsize, const char *s, size_t n)
{
    if (n == 0 || n >= outsize)
        return -1;
    memcpy(out, s, n);
    out[n] = '\0';
    return 0;
}

/* cli_server_parse - HOST, HOST:PORT, [V6], [V6]:PORT, or a bare IPv6 address */
int cli_server_parse(const char *spec, const char *default_port, struct cli_server *out)
{
    const char *host = spec, *port = NULL;
    size_t host_len;
    if (spec[0] == '[') {
        const char *close = strchr(spec, ']');
        if (close == NULL || (close[1] != '\0' && close[1] != ':'))
            return -1;
        host = spec + 1;
        host_len = (size_t)(close - host);
        if (close[1] == ':')
            port = close + 2;
    } else {
        const char *colon = strchr(spec, ':');
        if (colon != NULL && strchr(colon + 1, ':') != NULL) {
            host_len = strlen(spec); /* two colons or more: an IPv6 address, no port */
        } else if (colon != NULL) {
            host_len = (size_t)(colon - spec);
            port = colon + 1;
        } else {
            host_len = strlen(spec);
        }
    }
    if (port == NULL)
        port = default_port;
    if (copy_part(out->host, sizeof(out->host), host, host_len) < 0 ||
        copy_part(out->port, sizeof(out->port), port, strlen(port)) < 0)
        return -1;
    for (const char *p = out->host; *p != '\0'; p++) {
        if ((unsigned char)*p <= ' ' || *p == '/' || *p == '[' || *p == ']')
            return -1;
    }
    for (const char *p = out->port; *p != '\0'; p++) {
        if ((unsigned char)*p <= ' ' || *p == ':')
            return -1;
    }
    return 0;
}

/* connect_one - connect to one address, waiting at most CONNECT_TIMEOUT_MS */
static int connect_one(const struct addrinfo *ai)
{
    int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, ai->ai_protocol);
    if (fd < 0)
        return -1;
    if (connect(fd, ai->ai_addr, ai->ai_addrlen) < 0) {
        if (errno != EINPROGRESS) {
            int e = errno;
            close(fd);
            errno = e;
            return -1;
        }
        struct pollfd p = {.fd = fd, .events = POLLOUT};
        int r;
        do {
            r = poll(&p, 1, CONNECT_TIMEOUT_MS);
        } while (r < 0 && errno == EINTR);
        int so_error = ETIMEDOUT;
        socklen_t len = sizeof(so_error);
        if (r > 0)
            getsockopt(fd, SOL_SOCKET, SO_ERROR, &so_error, &len);
        if (so_error != 0) {
            close(fd);
            errno = so_error;
            return -1;
        }
    }
    /* The callers use blocking I/O with poll(). */
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
    return fd;
}

/* cli_connect - a connected TCP socket */
int cli_connect(const struct cli_server *s, char *err, size_t errsize)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    struct addrinfo *res = NULL;
    int rc = getaddrinfo(s->host, s->port, &hints, &res);
    if (rc != 0) {
        snprintf(err, errsize, "%s port %s: %s", s->host, s->port, gai_strerror(rc));
        return -1;
    }
    int fd = -1, last = 0;
    for (struct addrinfo *ai = res; ai != NULL && fd < 0; ai = ai->ai_next) {
        fd = connect_one(ai);
        if (fd < 0)
            last = errno;
    }
    freeaddrinfo(res);
    if (fd < 0)
        snprintf(err, errsize, "cannot connect to %s port %s: %s", s->host, s->port,
                 strerror(last));
    return fd;
}

/* cli_read_fd - everything fd holds */
int cli_read_fd(int fd, struct buf *out)
{
    for (;;) {
        if (buf_space(out) == 0) {
            errno = EFBIG;
            return -1;
        }
        size_t want = buf_space(out) < 65536 ? buf_space(out) : 65536;
        if (buf_reserve(out, want) < 0) {
            errno = ENOMEM;
            return -1;
        }
        ssize_t r = read(fd, out->data + out->len, want);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return -1;
        if (r == 0)
            return 0;
        out->len += (size_t)r;
    }
}

/* cli_read_path - a whole file, "-" being standard input */
int cli_read_path(const char *path, struct buf *out)
{
    if (strcmp(path, "-") == 0)
        return cli_read_fd(STDIN_FILENO, out);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    struct stat st;
    if (fstat(fd, &st) == 0 && S_ISDIR(st.st_mode)) {
        close(fd);
        errno = EISDIR;
        return -1;
    }
    int rc = cli_read_fd(fd, out);
    int e = errno;
    close(fd);
    errno = e;
    return rc;
}

/* cli_write_all - write everything */
int cli_write_all(int fd, const void *p, size_t n)
{
    const uint8_t *b = p;
    while (n > 0) {
        ssize_t w = write(fd, b, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return -1;
        b += w;
        n -= (size_t)w;
    }
    return 0;
}

/* cli_escape - printable text: what a server sends must not drive our terminal */
void cli_escape(struct buf *out, const void *p, size_t n)
{
    const uint8_t *s = p;
    for (size_t i = 0; i < n; i++) {
        uint8_t c = s[i];
        if (c == '\r')
            buf_append_str(out, "\\r");
        else if (c == '\n')
            buf_append_str(out, "\\n");
        else if (c == '\t')
            buf_append_str(out, "\\t");
        else if (c == '\\')
            buf_append_str(out, "\\\\");
        else if (c < 0x20 || c == 0x7f)
            buf_printf(out, "\\x%02x", c);
        else
            buf_append_byte(out, c); /* UTF-8 passes: the terminal shows it as text */
    }
}

/* cli_list_add - append a copy */
int cli_list_add(struct cli_list *l, const char *s)
{
    char **more = realloc(l->v, (l->n + 1) * sizeof(*more));
    if (more == NULL)
        return -1;
    l->v = more;
    if ((l->v[l->n] = strdup(s)) == NULL)
        return -1;
    l->n++;
    return 0;
}

/* cli_list_free - release the list */
void cli_list_free(struct cli_list *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->v[i]);
    free(l->v);
    l->v = NULL;
    l->n = 0;
}

struct address_sink {
    struct cli_list *l;
    int found;
};

/* add_address - mime_addresses callback: one recipient, qualified, not twice */
static int add_address(void *ctx, const char *addr)
{
    struct address_sink *sink = ctx;
    char q[1024];
    /* A bare name is a local user, as for mail(1): user@localhost. */
    if (strchr(addr, '@') == NULL) {
        snprintf(q, sizeof(q), "%s@localhost", addr);
        addr = q;
    }
    sink->found++;
    for (size_t i = 0; i < sink->l->n; i++) {
        if (strcmp(sink->l->v[i], addr) == 0)
            return 0;
    }
    return cli_list_add(sink->l, addr);
}

/* cli_list_add_addresses - the addresses of an address list */
int cli_list_add_addresses(struct cli_list *l, const char *address_list)
{
    struct address_sink sink = {l, 0};
    int rc = mime_addresses(address_list, add_address, &sink);
    if (rc != 0)
        return rc == MIME_BAD_ADDRESS ? MIME_BAD_ADDRESS : -1;
    return sink.found;
}

/* cli_hostname - this host's name */
const char *cli_hostname(void)
{
    static char name[256];
    if (name[0] == '\0') {
        if (gethostname(name, sizeof(name) - 1) < 0 || name[0] == '\0')
            snprintf(name, sizeof(name), "localhost");
        name[sizeof(name) - 1] = '\0';
    }
    return name;
}

/* cli_username - the invoking user's login name (from the user id, not the environment) */
const char *cli_username(void)
{
    static char name[256];
    if (name[0] == '\0') {
        struct passwd *pw = getpwuid(getuid());
        if (pw != NULL && pw->pw_name != NULL && pw->pw_name[0] != '\0')
            snprintf(name, sizeof(name), "%s", pw->pw_name);
        else
            snprintf(name, sizeof(name), "uid%lu", (unsigned long)getuid());
    }
    return name;
}

/* usage - the overview */
static void usage(FILE *out)
{
    fprintf(out, "usage: pigeon send [options] [--to ADDRESS]...   compose and send a message\n"
                 "       pigeon talk [-v] HOST[:PORT]               an interactive SMTP session\n"
                 "       pigeon sendmail [options] [ADDRESS]...     the sendmail interface\n"
                 "       pigeon queue [-f pigeond.conf]             list pigeond's queue\n"
                 "       pigeon help [COMMAND]\n"
                 "       pigeon --version\n"
                 "See pigeon(1).\n");
}

/* help - pigeon help [COMMAND] */
static int help(int argc, char **argv)
{
    if (argc < 2) {
        usage(stdout);
        return EX_OK;
    }
    if (strcmp(argv[1], "send") == 0)
        cli_send_usage(stdout);
    else if (strcmp(argv[1], "talk") == 0)
        cli_talk_usage(stdout);
    else if (strcmp(argv[1], "sendmail") == 0)
        cli_sendmail_usage(stdout);
    else if (strcmp(argv[1], "queue") == 0)
        cli_queue_usage(stdout);
    else {
        cli_warn("no command \"%s\"", argv[1]);
        usage(stderr);
        return EX_USAGE;
    }
    return EX_OK;
}

/* main - sendmail or mailq by name, else the subcommand in argv[1] */
int main(int argc, char **argv)
{
    const char *name = argc > 0 && argv[0] != NULL ? argv[0] : "pigeon";
    /* A server or reader that goes away is an error to report, not a reason to die. */
    signal(SIGPIPE, SIG_IGN);
    const char *base = strrchr(name, '/');
    base = base ? base + 1 : name;

    /* Installed as /usr/sbin/sendmail or /usr/bin/mailq (symlinks), act the part. */
    if (strcmp(base, "sendmail") == 0)
        return cli_sendmail(argc, argv);
    if (strcmp(base, "mailq") == 0)
        return cli_queue(argc, argv);

    if (argc < 2) {
        usage(stderr);
        return EX_USAGE;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "send") == 0)
        return cli_send(argc - 1, argv + 1);
    if (strcmp(cmd, "talk") == 0)
        return cli_talk(argc - 1, argv + 1);
    if (strcmp(cmd, "sendmail") == 0)
        return cli_sendmail(argc - 1, argv + 1);
    if (strcmp(cmd, "queue") == 0 || strcmp(cmd, "mailq") == 0)
        return cli_queue(argc - 1, argv + 1);
    if (strcmp(cmd, "help") == 0 || strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0)
        return help(argc - 1, argv + 1);
    if (strcmp(cmd, "--version") == 0 || strcmp(cmd, "-V") == 0) {
        printf("pigeon %s\n", PIGEON_VERSION);
        return EX_OK;
    }
    cli_warn("unknown command \"%s\"", cmd);
    usage(stderr);
    return EX_USAGE;
}
