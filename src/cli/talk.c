/*
 * talk.c - pigeon talk: an interactive SMTP terminal.
 *
 *   $ pigeon talk localhost:2525
 *   220 pigeon.test ESMTP Pigeon
 *   smtp> HELO oleg
 *   250 pigeon.test
 *   ...
 *   smtp> DATA
 *   354 End data with <CR><LF>.<CR><LF>
 *   data> Subject: hello
 *   data> .
 *   250 2.0.0 Ok: queued as 0NDUQ6J8AMH2000
 *
 * What the user types is sent with CRLF.  After a 354 reply the lines typed
 * are message data: dot-stuffed (RFC 5321 §4.5.2) until a line holding a
 * single ".", which ends the message.  Replies are read with the defensive
 * reader of src/smtp/reply.c, shown whole when their last line arrives, in
 * colour by class on a terminal, with control characters made visible so a
 * server cannot drive the user's terminal.
 *
 * On a terminal, lines are edited with libedit through its readline
 * callback interface, and one poll() watches the keyboard and the socket,
 * so replies appear while the user types.  From a pipe it runs a script
 * instead: each command waits for its reply before the next is sent (data
 * lines after 354 do not: they have none), and it ends after QUIT's reply,
 * when the server closes, or when the input runs out.
 *
 * Exit status: 0 when the conversation ended normally; EX_NOHOST when the
 * server could not be reached; EX_PROTOCOL when the connection dropped in
 * the middle of a reply or with a reply still owed; EX_TEMPFAIL when the
 * server stayed silent for the RFC 5321 five minutes; EX_DATAERR when the
 * input ended inside message data; EX_IOERR on a socket error.
 */
#include "cli/cli.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <locale.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sysexits.h>
#include <unistd.h>

#include <editline/readline.h>

#include "smtp/reply.h"

#define REPLY_WAIT_MS   (5 * 60 * 1000) /* RFC 5321 §4.5.3.2: five minutes is the usual wait */
#define REPLY_LINE_MAX  8192            /* lenient: this is a tool for looking at servers */
#define REPLY_LINES_MAX 1000
#define INPUT_LINE_MAX  (1024 * 1024)
#define HISTORY_MAX     1000

#define PROMPT_COMMAND "smtp> "
#define PROMPT_DATA    "data> "

enum talk_mode {
    TALK_COMMAND, /* lines are commands, each answered by a reply */
    TALK_DATA,    /* after 354: lines are message data, until "." */
};

struct talk {
    int fd;
    bool tty;       /* standard input is a terminal: libedit, prompts */
    bool colour;    /* replies in colour */
    bool verbose;   /* -v: raw bytes both ways */
    bool editing;   /* libedit's callback handler is installed */
    bool line_done; /* libedit handed over a line (reinstall the handler) */
    bool in_line;   /* inside the line callback: the prompt is not on screen */
    enum talk_mode mode;
    unsigned waiting; /* replies owed by the server */
    bool quit_sent;
    bool closing;    /* the server said 421: it is going away, send nothing more */
    bool finished;   /* QUIT answered, the server gone, or the user done */
    bool input_done; /* end of standard input */
    int status;
    struct smtp_reply_reader reader;
    struct buf raw; /* the bytes of the reply being read, to show as they came */
    struct buf in;  /* pipe mode: input not yet cut into lines */
    char history[4096];
};

/* libedit's line callback has no context argument. */
static struct talk *talk_active;

static volatile sig_atomic_t talk_interrupted;
static volatile sig_atomic_t talk_resized;

/* on_sigint - Ctrl-C: leave cleanly (the terminal must be restored) */
static void on_sigint(int sig)
{
    (void)sig;
    talk_interrupted = 1;
}

/* on_sigwinch - the terminal changed size */
static void on_sigwinch(int sig)
{
    (void)sig;
    talk_resized = 1;
}

/* cli_talk_usage - the options of pigeon talk */
void cli_talk_usage(FILE *out)
{
    fprintf(out, "usage: pigeon talk [-v] HOST[:PORT]\n"
                 "  -v   show the raw bytes both ways (\\r and \\n made visible)\n"
                 "Type SMTP commands; after a 354 reply, type the message and end it with a\n"
                 "line holding a single \".\".  Ctrl-D leaves.  From a pipe, each command waits\n"
                 "for its reply before the next is sent.\n");
}

/* ---- output -------------------------------------------------------------- */

/* output_begin - make room above the line being edited */
static void output_begin(struct talk *t)
{
    if (t->editing && !t->in_line && isatty(STDOUT_FILENO))
        fputs("\r\033[K", stdout); /* back to the start of the prompt line, and clear it */
}

/* output_end - draw the prompt and the half-typed line again */
static void output_end(struct talk *t)
{
    fflush(stdout);
    if (t->editing && !t->in_line && isatty(STDOUT_FILENO))
        rl_forced_update_display();
}

/* colour_for - the escape sequence for a reply class */
static const char *colour_for(unsigned code)
{
    switch (code / 100) {
    case 2:
        return "\033[32m"; /* green */
    case 3:
        return "\033[36m"; /* cyan */
    case 4:
        return "\033[33m"; /* yellow */
    default:
        return "\033[31m"; /* red: 5xx, and replies that are not replies */
    }
}

/* show_lines - bytes as lines, each escaped, prefixed, maybe coloured */
static void show_lines(struct talk *t, const char *prefix, const uint8_t *p, size_t n,
                       unsigned code)
{
    size_t start = 0;
    while (start < n) {
        const uint8_t *lf = memchr(p + start, '\n', n - start);
        size_t end = lf ? (size_t)(lf - p) + 1 : n;
        size_t len = end - start;
        if (!t->verbose) { /* the line ending is not part of what the user reads */
            if (len > 0 && p[start + len - 1] == '\n')
                len--;
            if (len > 0 && p[start + len - 1] == '\r')
                len--;
        }
        struct buf esc;
        buf_init(&esc, 4 * len + 16);
        cli_escape(&esc, p + start, len);
        const char *on = t->colour && code != 0 ? colour_for(code) : "";
        const char *off = on[0] ? "\033[0m" : "";
        printf("%s%s%.*s%s\n", on, prefix, (int)esc.len, esc.data ? (char *)esc.data : "", off);
        buf_free(&esc);
        start = end;
    }
}

/* show_reply - a whole reply, as it came */
static void show_reply(struct talk *t, unsigned code)
{
    output_begin(t);
    show_lines(t, t->verbose ? "S: " : "", t->raw.data, t->raw.len, code ? code : 500);
    output_end(t);
    buf_clear(&t->raw);
}

/* note - a remark of ours (not the server's), on standard error */
__attribute__((format(printf, 2, 3))) static void note(struct talk *t, const char *fmt, ...)
{
    va_list ap;
    output_begin(t);
    fflush(stdout);
    fputs("pigeon: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    output_end(t);
}

/* ---- the server's side --------------------------------------------------- */

/* set_prompt - the prompt for the current mode */
static void set_prompt(struct talk *t)
{
    if (t->editing)
        rl_set_prompt(t->mode == TALK_DATA ? PROMPT_DATA : PROMPT_COMMAND);
}

/* got_reply - a whole reply (code 0: a reply the reader refused) */
static void got_reply(struct talk *t, unsigned code)
{
    if (code == 354)
        t->mode = TALK_DATA; /* RFC 5321 §4.1.1.4: now send the message */
    if (code == 421)
        t->closing = true; /* RFC 5321 §3.8: the server closes after this */
    set_prompt(t);
    show_reply(t, code);
    if (t->waiting > 0)
        t->waiting--;
    if (t->quit_sent && t->waiting == 0)
        t->finished = true; /* QUIT answered: we are done, whether or not it closes */
}

/* feed - bytes from the server */
static void feed(struct talk *t, const uint8_t *p, size_t n)
{
    while (n > 0) {
        size_t used = 0;
        struct smtp_reply_read reply;
        enum smtp_reply_status st = smtp_reply_read(&t->reader, p, n, &used, &reply);
        buf_append(&t->raw, p, used);
        p += used;
        n -= used;
        if (st == SMTP_REPLY_DONE) {
            got_reply(t, reply.code);
        } else if (st == SMTP_REPLY_ERROR) {
            /* Show what came anyway, say what is wrong with it, and read on. */
            const char *why = t->reader.error;
            got_reply(t, 0);
            note(t, "that was not a valid SMTP reply: %s", why);
            smtp_reply_reader_free(&t->reader);
            smtp_reply_reader_init(&t->reader, REPLY_LINE_MAX, REPLY_LINES_MAX);
        } else {
            if (t->verbose && t->raw.len > 0) {
                /* -v shows bytes when they arrive, even half a reply. */
                show_lines(t, "S: ", t->raw.data, t->raw.len, 0);
                buf_clear(&t->raw);
            }
            break;
        }
    }
}

/* read_server - the socket is readable */
static void read_server(struct talk *t)
{
    uint8_t buf[16384];
    ssize_t r = read(t->fd, buf, sizeof(buf));
    if (r < 0 && errno == EINTR)
        return;
    if (r > 0) {
        feed(t, buf, (size_t)r);
        return;
    }
    t->finished = true;
    if (r < 0) {
        note(t, "connection lost: %s", strerror(errno));
        t->status = EX_IOERR;
        return;
    }
    if (t->raw.len > 0 || smtp_reply_reader_partial(&t->reader)) {
        if (t->raw.len > 0)
            show_reply(t, 0);
        note(t, "the server closed the connection in the middle of a reply");
        t->status = EX_PROTOCOL;
    } else if (t->waiting > 0 && !t->quit_sent && !t->closing) {
        note(t, "the server closed the connection without replying");
        t->status = EX_PROTOCOL;
    } else if (t->tty) {
        note(t, "the server closed the connection");
    }
}

/* ---- the user's side ----------------------------------------------------- */

/* send_bytes - to the server, shown with -v */
static int send_bytes(struct talk *t, const void *p, size_t n)
{
    if (t->verbose) {
        output_begin(t);
        show_lines(t, "C: ", p, n, 0);
        output_end(t);
    }
    if (cli_write_all(t->fd, p, n) < 0) {
        note(t, "cannot send: %s", strerror(errno));
        t->status = EX_IOERR;
        t->finished = true;
        return -1;
    }
    return 0;
}

/* is_verb - does the command line start with this verb? */
static bool is_verb(const char *line, size_t n, const char *verb)
{
    size_t k = strlen(verb);
    return n >= k && strncasecmp(line, verb, k) == 0 && (n == k || line[k] == ' ');
}

/* handle_line - one line the user typed (without its line ending) */
static void handle_line(struct talk *t, const char *line, size_t n)
{
    struct buf out;
    buf_init(&out, n + 4);
    if (t->mode == TALK_DATA) {
        if (n == 1 && line[0] == '.') {
            t->mode = TALK_COMMAND; /* the end of the data, answered by a reply */
            t->waiting++;
        } else if (n > 0 && line[0] == '.') {
            buf_append_byte(&out, '.'); /* RFC 5321 §4.5.2: a leading period is doubled */
        }
    } else {
        t->waiting++;
        if (is_verb(line, n, "QUIT"))
            t->quit_sent = true;
        /* History helps with commands; credentials have no place in a file. */
        if (t->editing && n > 0 && !is_verb(line, n, "AUTH"))
            add_history(line);
    }
    buf_append(&out, line, n);
    buf_append(&out, "\r\n", 2);
    set_prompt(t);
    send_bytes(t, out.data, out.len);
    buf_free(&out);
}

/* on_line - libedit's callback: a line, or NULL at end of input */
static void on_line(char *line)
{
    struct talk *t = talk_active;
    t->line_done = true;
    if (line == NULL) {
        t->input_done = true;
        return;
    }
    t->in_line = true;
    handle_line(t, line, strlen(line));
    t->in_line = false;
    free(line);
}

/* read_pipe - standard input is readable (pipe mode) */
static void read_pipe(struct talk *t)
{
    if (buf_reserve(&t->in, 16384) < 0) {
        t->input_done = true; /* a line longer than INPUT_LINE_MAX: take it as it is */
        return;
    }
    ssize_t r = read(STDIN_FILENO, t->in.data + t->in.len, 16384);
    if (r < 0 && errno == EINTR)
        return;
    if (r <= 0)
        t->input_done = true;
    else
        t->in.len += (size_t)r;
}

/* next_pipe_line - send the next line of the script if it may go now */
static bool next_pipe_line(struct talk *t)
{
    if (t->finished || t->closing || (t->waiting > 0 && t->mode == TALK_COMMAND) || t->in.len == 0)
        return false;
    const uint8_t *lf = memchr(t->in.data, '\n', t->in.len);
    if (lf == NULL && !t->input_done)
        return false;
    size_t take = lf ? (size_t)(lf - t->in.data) + 1 : t->in.len;
    size_t n = lf ? take - 1 : take;
    if (n > 0 && t->in.data[n - 1] == '\r')
        n--;
    char *line = strndup((const char *)t->in.data, n);
    if (line != NULL)
        handle_line(t, line, n);
    free(line);
    buf_consume(&t->in, take);
    return true;
}

/* ---- the terminal -------------------------------------------------------- */

/* history_open - ~/.pigeon_history, if there is a home to keep it in */
static void history_open(struct talk *t)
{
    const char *home = getenv("HOME");
    t->history[0] = '\0';
    using_history();
    stifle_history(HISTORY_MAX);
    if (home == NULL || home[0] != '/')
        return;
    snprintf(t->history, sizeof(t->history), "%s/.pigeon_history", home);
    read_history(t->history);
}

/* history_save - write it back, readable by the user only, when the file can be written */
static void history_save(struct talk *t)
{
    if (t->history[0] == '\0')
        return;
    int fd = open(t->history, O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0)
        return; /* not writable: no history, and no fuss */
    close(fd);
    write_history(t->history);
}

/* editing_start - libedit on the terminal */
static void editing_start(struct talk *t)
{
    setlocale(LC_CTYPE, ""); /* libedit decodes the user's multibyte input by the locale */
    rl_readline_name = "pigeon";
    rl_instream = stdin;
    rl_outstream = stdout;
    rl_catch_signals = 0; /* Ctrl-C is ours: we restore the terminal and leave */
    history_open(t);
    rl_callback_handler_install(PROMPT_COMMAND, on_line);
    t->editing = true;
}

/* editing_stop - give the terminal back as we found it */
static void editing_stop(struct talk *t)
{
    if (!t->editing)
        return;
    rl_callback_handler_remove();
    if (isatty(STDOUT_FILENO))
        fputs("\r\033[K", stdout); /* no prompt left behind */
    t->editing = false;
    history_save(t);
}

/* ---- the loop ------------------------------------------------------------ */

/* run - poll the socket and standard input until the conversation is over */
static void run(struct talk *t)
{
    for (;;) {
        while (!t->tty && next_pipe_line(t))
            ;
        if (t->finished)
            return;
        if (t->input_done && !t->closing && (t->tty || t->waiting == 0 || t->mode == TALK_DATA)) {
            if (t->mode == TALK_DATA && !t->tty) {
                note(t, "the input ended in the middle of the message; it was not sent");
                t->status = EX_DATAERR;
            }
            return;
        }
        bool want_input =
            !t->input_done && !t->closing && (t->tty || t->waiting == 0 || t->mode == TALK_DATA);
        struct pollfd p[2] = {
            {.fd = t->fd, .events = POLLIN},
            {.fd = want_input ? STDIN_FILENO : -1, .events = POLLIN},
        };
        int r = poll(p, 2, t->waiting > 0 || t->closing ? REPLY_WAIT_MS : -1);
        if (talk_interrupted) {
            t->status = 128 + SIGINT;
            return;
        }
        if (talk_resized) {
            talk_resized = 0;
            if (t->editing)
                rl_resize_terminal();
        }
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            note(t, "poll: %s", strerror(errno));
            t->status = EX_OSERR;
            return;
        }
        if (r == 0) {
            note(t, "no reply from the server in five minutes; giving up");
            t->status = EX_TEMPFAIL;
            return;
        }
        if (p[0].revents)
            read_server(t);
        if (!t->finished && p[1].revents) {
            if (t->tty) {
                rl_callback_read_char();
                if (t->line_done && !t->input_done && !t->finished) {
                    /* libedit leaves its unbuffered mode after a line; this restores it. */
                    t->line_done = false;
                    rl_callback_handler_install(t->mode == TALK_DATA ? PROMPT_DATA : PROMPT_COMMAND,
                                                on_line);
                }
            } else {
                read_pipe(t);
            }
        }
    }
}

/* cli_talk - pigeon talk */
int cli_talk(int argc, char **argv)
{
    struct talk t = {.fd = -1, .status = EX_OK};
    int c;
    optind = 1;
    static const struct option options[] = {
        {"verbose", no_argument, NULL, 'v'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    while ((c = getopt_long(argc, argv, "vh", options, NULL)) != -1) {
        switch (c) {
        case 'v':
            t.verbose = true;
            break;
        case 'h':
            cli_talk_usage(stdout);
            return EX_OK;
        default:
            cli_talk_usage(stderr);
            return EX_USAGE;
        }
    }
    if (optind != argc - 1) {
        cli_talk_usage(stderr);
        return EX_USAGE;
    }
    struct cli_server server;
    if (cli_server_parse(argv[optind], "25", &server) < 0) {
        cli_warn("\"%s\" is not HOST[:PORT]", argv[optind]);
        return EX_USAGE;
    }
    char err[512];
    t.fd = cli_connect(&server, err, sizeof(err));
    if (t.fd < 0) {
        cli_warn("%s", err);
        return EX_NOHOST;
    }

    t.tty = isatty(STDIN_FILENO);
    const char *no_colour = getenv("NO_COLOR");
    t.colour = isatty(STDOUT_FILENO) && (no_colour == NULL || no_colour[0] == '\0');
    t.waiting = 1; /* the greeting */
    smtp_reply_reader_init(&t.reader, REPLY_LINE_MAX, REPLY_LINES_MAX);
    buf_init(&t.raw, REPLY_LINE_MAX * REPLY_LINES_MAX);
    buf_init(&t.in, INPUT_LINE_MAX);
    talk_active = &t;

    struct sigaction sa = {.sa_handler = on_sigint};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL); /* no SA_RESTART: poll() must wake up */
    sa.sa_handler = on_sigwinch;
    sigaction(SIGWINCH, &sa, NULL);

    if (t.tty) {
        printf("Connected to %s port %s.  Type SMTP commands; Ctrl-D leaves.\n", server.host,
               server.port);
        fflush(stdout);
        editing_start(&t);
    }
    run(&t);
    editing_stop(&t);
    if (t.tty && t.status == 128 + SIGINT)
        putchar('\n');
    fflush(stdout);

    close(t.fd);
    smtp_reply_reader_free(&t.reader);
    buf_free(&t.raw);
    buf_free(&t.in);
    talk_active = NULL;
    return t.status;
}
