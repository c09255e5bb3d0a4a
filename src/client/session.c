/*
 * session.c - struct pigeon_session: one message to one server over a
 * non-blocking socket, and pigeon_send(), the blocking loop around it.
 *
 * The SMTP conversation itself is the engine's (src/smtp/client.c); this
 * file gives it a transport:
 *
 *   CONNECTING  getaddrinfo() gave a list of addresses, IPv4 and IPv6; each
 *               is tried in turn (socket(SOCK_NONBLOCK), connect(), wait for
 *               POLLOUT, SO_ERROR) until one answers
 *   RUNNING     the engine's output is written when the socket takes it,
 *               what the server sends is fed to the engine, and the
 *               message goes in 64 KB pieces when the engine asks for them
 *   DONE        the result is ready; the socket is closed
 *
 * Each step never blocks: it reads, writes and hands over pieces until the
 * socket would block (or a fixed number of rounds, so a fast server cannot
 * keep the caller's event loop to itself).  The server is read whenever
 * the session is connected, even while output waits, so a server that
 * replies early (a 421, a refused BDAT chunk) is heard at once and two
 * pipelining peers cannot both block on full buffers (RFC 2920 §3.1).
 *
 * Time: every wait has a deadline on CLOCK_MONOTONIC of the engine's RFC
 * 5321 §4.5.3.2 timeout for what it waits for (or options.timeout_secs).
 * The deadline starts again when octets are written and when a whole reply
 * line arrives, so a server that trickles one octet at a time cannot hold a
 * session open past a line's worth of timeouts.
 *
 * Tracing: the trace callback sees every octet received, and every octet
 * sent except the message's content, which shows as one line
 * "[N octets of message content]" (N as sent: CRLF, dot-stuffed) for a
 * DATA body, or for each BDAT chunk.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "client/internal.h"
#include "smtp/address.h"

#define CONNECT_TIMEOUT 30 /* seconds per address when timeout_secs is 0 */
#define BODY_PIECE      (64 * 1024)
#define READ_SIZE       16384
#define STEP_ROUNDS     64 /* reads, writes and pieces in one step at most */

enum session_state {
    SESSION_CONNECTING,
    SESSION_RUNNING,
    SESSION_DONE,
};

/* What one attempt at reading or writing came to. */
enum io {
    IO_IDLE,     /* nothing to do */
    IO_BLOCKED,  /* the socket would block */
    IO_PROGRESS, /* something happened (octets moved, or the engine learnt of a failure) */
};

struct pigeon_session {
    const struct pigeon_message *msg;
    char host[SMTP_DOMAIN_MAX + 1];
    char port[32];
    char helo[SMTP_DOMAIN_MAX + 1]; /* "" until known */
    unsigned timeout_secs;
    void (*trace)(void *ctx, char direction, const char *data, size_t len);
    void *trace_ctx;

    enum session_state state;
    struct addrinfo *addrs, *next_addr;
    int fd;
    char peer[INET6_ADDRSTRLEN + 8]; /* the address being tried, for errors */
    char connect_error[200];         /* why the last address failed */
    unsigned tried;                  /* addresses tried */
    struct timespec deadline;

    struct smtp_client_settings settings;
    struct smtp_client_rcpt *rcpt;
    struct smtp_client_message engine_msg;
    struct smtp_client *engine;

    size_t out_pos;            /* octets of the engine's output already written */
    size_t content_start;      /* the message content within that output ... */
    size_t content_end;        /* ... as [start, end) */
    bool content_closes;       /* the range ends a BDAT chunk or the DATA body */
    uint64_t content_untraced; /* content written, not yet marked in the trace */
    size_t body_pos;           /* octets of the message given to the engine */

    int status;
    struct pigeon_result *result;
};

/* ---- errors ------------------------------------------------------------------------ */

/* Room for a strerror_r() text. */
#define ERRTEXT_MAX 128

/* error_text - errno err in words; strerror_r, as strerror(3) is not thread-safe */
static const char *error_text(int err, char *buf)
{
    return strerror_r(err, buf, ERRTEXT_MAX); /* the GNU one: _GNU_SOURCE */
}

/* ---- time ------------------------------------------------------------------------- */

/* set_deadline - the current wait ends secs seconds from now */
static void set_deadline(struct pigeon_session *s, unsigned secs)
{
    clock_gettime(CLOCK_MONOTONIC, &s->deadline);
    s->deadline.tv_sec += (time_t)secs;
}

/* remaining_ms - milliseconds left before the deadline, rounded up; 0 if past */
static int remaining_ms(const struct pigeon_session *s)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    long long ms = (long long)(s->deadline.tv_sec - now.tv_sec) * 1000 +
                   (s->deadline.tv_nsec - now.tv_nsec + 999999) / 1000000;
    if (ms <= 0)
        return 0;
    return ms > 0x7fffffff ? 0x7fffffff : (int)ms;
}

/* wait_secs - how long the engine may wait for the server now */
static unsigned wait_secs(const struct pigeon_session *s)
{
    if (s->timeout_secs != 0)
        return s->timeout_secs;
    return s->engine != NULL ? smtp_client_timeout(s->engine) : CONNECT_TIMEOUT;
}

/* ---- tracing ---------------------------------------------------------------------- */

/* trace - pass octets to the caller's trace callback, if any */
static void trace(const struct pigeon_session *s, char direction, const void *p, size_t n)
{
    if (s->trace != NULL && n > 0)
        s->trace(s->trace_ctx, direction, p, n);
}

/* trace_content_mark - say where the message content went, if some was written */
static void trace_content_mark(struct pigeon_session *s)
{
    if (s->content_untraced == 0)
        return;
    char line[64];
    int n = snprintf(line, sizeof(line), "[%llu octets of message content]\r\n",
                     (unsigned long long)s->content_untraced);
    s->content_untraced = 0;
    if (n > 0 && (size_t)n < sizeof(line))
        trace(s, 'C', line, (size_t)n);
}

/* trace_written - trace output octets [from, to) just written, content left out */
static void trace_written(struct pigeon_session *s, const uint8_t *out, size_t from, size_t to)
{
    size_t a = from;
    if (a < to && a < s->content_start) {
        size_t e = to < s->content_start ? to : s->content_start;
        trace_content_mark(s);
        trace(s, 'C', out + a, e - a);
        a = e;
    }
    if (a < to && a < s->content_end) {
        size_t e = to < s->content_end ? to : s->content_end;
        s->content_untraced += e - a;
        a = e;
        if (a == s->content_end && s->content_closes)
            trace_content_mark(s);
    }
    if (a < to) {
        trace_content_mark(s);
        trace(s, 'C', out + a, to - a);
    }
}

/* ---- the end ---------------------------------------------------------------------- */

/* close_socket - drop the connection and the address list */
static void close_socket(struct pigeon_session *s)
{
    if (s->fd >= 0)
        close(s->fd);
    s->fd = -1;
    if (s->addrs != NULL)
        freeaddrinfo(s->addrs);
    s->addrs = s->next_addr = NULL;
}

/* finish_failure - done without an engine result: status and why */
static void finish_failure(struct pigeon_session *s, int status, const char *why)
{
    close_socket(s);
    s->status = status;
    s->result = libpigeon_result_failure(s->msg, status, why);
    s->state = SESSION_DONE;
}

/* finish_engine - done: the engine's result becomes the session's */
static void finish_engine(struct pigeon_session *s)
{
    trace_content_mark(s);
    close_socket(s);
    const struct smtp_client_result *r = smtp_client_result(s->engine);
    s->result = libpigeon_result_from_engine(s->msg, r);
    s->status = s->result != NULL ? s->result->status : PIGEON_TEMPFAIL;
    smtp_client_free(s->engine);
    s->engine = NULL;
    s->state = SESSION_DONE;
}

/* ---- connecting ------------------------------------------------------------------- */

/* helo_from_socket - RFC 5321 §4.1.4: without a usable host name, our address as a literal */
static void helo_from_socket(struct pigeon_session *s)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    char ip[INET6_ADDRSTRLEN];
    memset(&ss, 0, sizeof(ss));
    snprintf(s->helo, sizeof(s->helo), "localhost");
    if (getsockname(s->fd, (struct sockaddr *)&ss, &len) < 0)
        return;
    if (ss.ss_family == AF_INET &&
        inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, ip, sizeof(ip)) != NULL)
        snprintf(s->helo, sizeof(s->helo), "[%s]", ip);
    else if (ss.ss_family == AF_INET6 &&
             inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&ss)->sin6_addr, ip, sizeof(ip)) != NULL)
        snprintf(s->helo, sizeof(s->helo), "[IPv6:%s]", ip);
}

/* connected - the connection is up: start the engine */
static void connected(struct pigeon_session *s)
{
    if (s->helo[0] == '\0')
        helo_from_socket(s);
    s->settings.helo_name = s->helo;
    s->engine = smtp_client_new(&s->settings, &s->engine_msg);
    if (s->engine == NULL) {
        finish_failure(s, PIGEON_TEMPFAIL, "out of memory");
        return;
    }
    if (s->addrs != NULL)
        freeaddrinfo(s->addrs);
    s->addrs = s->next_addr = NULL;
    s->state = SESSION_RUNNING;
    set_deadline(s, wait_secs(s));
}

/* note_connect_error - remember why the address being tried failed */
static void note_connect_error(struct pigeon_session *s, const char *why)
{
    snprintf(s->connect_error, sizeof(s->connect_error), "%s: %s", s->peer, why);
}

/* connect_next - start on the next address; false when none is left */
static bool connect_next(struct pigeon_session *s)
{
    char errbuf[ERRTEXT_MAX];
    while (s->next_addr != NULL) {
        struct addrinfo *ai = s->next_addr;
        s->next_addr = ai->ai_next;
        char host[INET6_ADDRSTRLEN], serv[16];
        if (getnameinfo(ai->ai_addr, ai->ai_addrlen, host, sizeof(host), serv, sizeof(serv),
                        NI_NUMERICHOST | NI_NUMERICSERV) != 0)
            snprintf(host, sizeof(host), "?");
        snprintf(s->peer, sizeof(s->peer), "%s", host);
        s->tried++;

        int fd =
            socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
        if (fd < 0) {
            note_connect_error(s, error_text(errno, errbuf));
            continue;
        }
        int rc;
        do
            rc = connect(fd, ai->ai_addr, ai->ai_addrlen);
        while (rc < 0 && errno == EINTR);
        if (rc == 0 || errno == EINPROGRESS) {
            s->fd = fd;
            if (rc == 0) {
                connected(s);
            } else {
                s->state = SESSION_CONNECTING;
                set_deadline(s, wait_secs(s));
            }
            return true;
        }
        note_connect_error(s, error_text(errno, errbuf));
        close(fd);
    }
    return false;
}

/* Room for connect_give_up()'s text. */
#define CONNECT_TEXT_MAX (SMTP_DOMAIN_MAX + 200 + 64)

/* connect_give_up - no address answered: say so in text (CONNECT_TEXT_MAX octets) */
static const char *connect_give_up(const struct pigeon_session *s, char *text)
{
    snprintf(text, CONNECT_TEXT_MAX, "could not connect to %s (%u address%s tried): %s", s->host,
             s->tried, s->tried == 1 ? "" : "es", s->connect_error);
    return text;
}

/* connect_failed - this address failed: try the next, or give up */
static void connect_failed(struct pigeon_session *s, const char *why)
{
    note_connect_error(s, why);
    close(s->fd);
    s->fd = -1;
    if (connect_next(s))
        return;
    char text[CONNECT_TEXT_MAX];
    finish_failure(s, PIGEON_CONNECT, connect_give_up(s, text));
}

/* connect_progress - has the connection attempt ended? */
static void connect_progress(struct pigeon_session *s)
{
    char errbuf[ERRTEXT_MAX];
    struct pollfd p = {s->fd, POLLOUT, 0};
    if (poll(&p, 1, 0) > 0) {
        int err = 0;
        socklen_t len = sizeof(err);
        if (getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
            err = errno;
        if (err == 0)
            connected(s);
        else
            connect_failed(s, error_text(err, errbuf));
        return;
    }
    if (remaining_ms(s) == 0)
        connect_failed(s, "connection timed out");
}

/* ---- talking ----------------------------------------------------------------------- */

/* give_body - the next piece of the message to the engine, noting where its content lies */
static void give_body(struct pigeon_session *s)
{
    const struct pigeon_message *m = s->msg;
    struct buf *out = smtp_client_output(s->engine);
    size_t before = out->len;
    size_t n = m->content_len - s->body_pos;
    if (n > BODY_PIECE)
        n = BODY_PIECE;
    bool last = s->body_pos + n == m->content_len;
    /* No content set: an empty message (and no arithmetic on a NULL pointer). */
    const uint8_t *piece = m->content != NULL ? m->content + s->body_pos : (const uint8_t *)"";
    smtp_client_body(s->engine, piece, n, last);
    s->body_pos += n;
    if (smtp_client_want(s->engine) == SMTP_CLIENT_DONE || out->len < before)
        return;
    /* BDAT: "BDAT n [LAST]" CRLF, then n octets of content.  DATA: content,
     * and after the last piece the terminating ".\r\n". */
    size_t start = before, end = out->len;
    bool bdat = smtp_client_result(s->engine)->extensions & SMTP_EXT_CHUNKING;
    if (bdat) {
        const uint8_t *lf = memchr(out->data + before, '\n', out->len - before);
        start = lf != NULL ? (size_t)(lf - out->data) + 1 : out->len;
    } else if (last && end - start >= 3) {
        end -= 3;
    }
    s->content_start = start;
    s->content_end = end;
    s->content_closes = bdat || last;
}

/* write_some - write what the engine has to say */
static enum io write_some(struct pigeon_session *s)
{
    struct buf *out = smtp_client_output(s->engine);
    if (s->out_pos >= out->len)
        return IO_IDLE;
    ssize_t n = send(s->fd, out->data + s->out_pos, out->len - s->out_pos, MSG_NOSIGNAL);
    if (n < 0) {
        if (errno == EINTR)
            return IO_PROGRESS;
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return IO_BLOCKED;
        char why[128], errbuf[ERRTEXT_MAX];
        snprintf(why, sizeof(why), "write to %s: %s", s->peer, error_text(errno, errbuf));
        smtp_client_fail(s->engine, why);
        return IO_PROGRESS;
    }
    trace_written(s, out->data, s->out_pos, s->out_pos + (size_t)n);
    s->out_pos += (size_t)n;
    if (s->out_pos == out->len) {
        smtp_client_output_sent(s->engine);
        s->out_pos = 0;
        s->content_start = s->content_end = 0;
        s->content_closes = false;
    }
    set_deadline(s, wait_secs(s));
    return IO_PROGRESS;
}

/* read_some - read what the server sent and feed it to the engine */
static enum io read_some(struct pigeon_session *s)
{
    uint8_t in[READ_SIZE];
    ssize_t n = recv(s->fd, in, sizeof(in), 0);
    if (n < 0) {
        if (errno == EINTR)
            return IO_PROGRESS;
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return IO_BLOCKED;
        char why[128], errbuf[ERRTEXT_MAX];
        snprintf(why, sizeof(why), "read from %s: %s", s->peer, error_text(errno, errbuf));
        smtp_client_fail(s->engine, why);
        return IO_PROGRESS;
    }
    if (n == 0) {
        smtp_client_eof(s->engine);
        return IO_PROGRESS;
    }
    trace(s, 'S', in, (size_t)n);
    smtp_client_feed(s->engine, in, (size_t)n);
    if (memchr(in, '\n', (size_t)n) != NULL)
        set_deadline(s, wait_secs(s)); /* a whole line: the server is alive */
    return IO_PROGRESS;
}

/* run - move octets until the socket would block, the engine is done or the round limit */
static void run(struct pigeon_session *s)
{
    for (int round = 0; round < STEP_ROUNDS; round++) {
        if (smtp_client_want(s->engine) == SMTP_CLIENT_DONE)
            break;
        if (write_some(s) == IO_PROGRESS)
            continue;
        if (s->out_pos == 0 && smtp_client_output(s->engine)->len == 0 &&
            smtp_client_want(s->engine) == SMTP_CLIENT_WANT_BODY) {
            give_body(s);
            continue;
        }
        if (read_some(s) == IO_PROGRESS)
            continue;
        if (remaining_ms(s) == 0)
            smtp_client_timed_out(s->engine);
        break;
    }
    if (smtp_client_want(s->engine) == SMTP_CLIENT_DONE)
        finish_engine(s);
}

/* ---- starting ---------------------------------------------------------------------- */

/* helo_valid - a name we may give in EHLO: a domain or an address literal */
static bool helo_valid(const char *name)
{
    size_t n = strlen(name);
    return n > 0 && n <= SMTP_DOMAIN_MAX &&
           (smtp_domain_valid(name, n, false) || smtp_address_literal_valid(name, n));
}

/* fail_start - session_start's failure: *status and why (cut to fit), and no session */
static struct pigeon_session *fail_start(struct pigeon_session *s, int *status, int code, char *why,
                                         size_t why_len, const char *text)
{
    if (status != NULL)
        *status = code;
    size_t n = strnlen(text, why_len - 1);
    memcpy(why, text, n);
    why[n] = '\0';
    if (s != NULL) {
        close_socket(s);
        free(s->rcpt);
        free(s);
    }
    return NULL;
}

/*
 * session_start - check the arguments, resolve the host and start
 * connecting.  NULL with *status and why set when it cannot even start.
 */
static struct pigeon_session *session_start(const struct pigeon_options *o,
                                            const struct pigeon_message *m, int *status, char *why,
                                            size_t why_len)
{
    if (o == NULL || m == NULL)
        return fail_start(NULL, status, PIGEON_INVALID, why, why_len, "no options or message");
    const char *port = o->port != NULL ? o->port : "25";
    if (o->host == NULL || o->host[0] == '\0' || strlen(o->host) > SMTP_DOMAIN_MAX ||
        port[0] == '\0' || strlen(port) >= 32)
        return fail_start(NULL, status, PIGEON_INVALID, why, why_len, "no usable host or port");
    if (!m->from_set)
        return fail_start(NULL, status, PIGEON_INVALID, why, why_len, "no sender");
    if (m->nrcpt == 0)
        return fail_start(NULL, status, PIGEON_INVALID, why, why_len, "no recipient");
    if (o->helo != NULL && !helo_valid(o->helo))
        return fail_start(NULL, status, PIGEON_INVALID, why, why_len,
                          "the EHLO name is neither a domain nor an address literal");

    struct pigeon_session *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return fail_start(NULL, status, PIGEON_TEMPFAIL, why, why_len, "out of memory");
    s->fd = -1;
    s->msg = m;
    snprintf(s->host, sizeof(s->host), "%s", o->host);
    snprintf(s->port, sizeof(s->port), "%s", port);
    s->timeout_secs = o->timeout_secs;
    s->trace = o->trace;
    s->trace_ctx = o->trace_ctx;
    if (o->helo != NULL) {
        snprintf(s->helo, sizeof(s->helo), "%s", o->helo);
    } else if (gethostname(s->helo, sizeof(s->helo)) < 0 || strchr(s->helo, '.') == NULL ||
               !helo_valid(s->helo)) {
        s->helo[0] = '\0'; /* not a fully qualified name: use our address (connected()) */
    }

    s->rcpt = calloc(m->nrcpt, sizeof(*s->rcpt));
    if (s->rcpt == NULL)
        return fail_start(s, status, PIGEON_TEMPFAIL, why, why_len, "out of memory");
    for (size_t i = 0; i < m->nrcpt; i++)
        s->rcpt[i] =
            (struct smtp_client_rcpt){m->rcpt[i].mailbox, m->rcpt[i].notify, m->rcpt[i].orcpt};
    s->engine_msg = (struct smtp_client_message){
        .from = m->from,
        .rcpt = s->rcpt,
        .nrcpt = m->nrcpt,
        .size = m->size,
        .body = m->body,
        .smtputf8 = libpigeon_message_smtputf8(m),
        .ret = m->ret,
        .envid = m->envid,
    };

    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    int rc = getaddrinfo(s->host, s->port, &hints, &s->addrs);
    if (rc != 0) {
        char text[sizeof(s->host) + 192], errbuf[ERRTEXT_MAX];
        snprintf(text, sizeof(text), "%s port %s: %s", s->host, s->port,
                 rc == EAI_SYSTEM ? error_text(errno, errbuf) : gai_strerror(rc));
        s->addrs = NULL;
        return fail_start(s, status, PIGEON_CONNECT, why, why_len, text);
    }
    s->next_addr = s->addrs;
    if (!connect_next(s)) {
        char text[CONNECT_TEXT_MAX];
        return fail_start(s, status, PIGEON_CONNECT, why, why_len, connect_give_up(s, text));
    }
    if (s->state == SESSION_DONE) { /* connected at once, and the engine could not start */
        int code = s->status;
        char text[256];
        snprintf(text, sizeof(text), "%s", pigeon_result_error(s->result));
        pigeon_result_free(s->result);
        s->result = NULL;
        return fail_start(s, status, code, why, why_len, text);
    }
    if (status != NULL)
        *status = PIGEON_SENT;
    return s;
}

/* ---- the public interface ------------------------------------------------------------- */

/* pigeon_session_new - start sending m; NULL, with *status set, on failure */
PIGEON_EXPORT struct pigeon_session *pigeon_session_new(const struct pigeon_options *o,
                                                        const struct pigeon_message *m, int *status)
{
    char why[256];
    return session_start(o, m, status, why, sizeof(why));
}

/* pigeon_session_fd - the socket to watch (-1 once done) */
PIGEON_EXPORT int pigeon_session_fd(const struct pigeon_session *s)
{
    return s != NULL ? s->fd : -1;
}

/* pigeon_session_events - POLLIN and/or POLLOUT, as for poll(2) */
PIGEON_EXPORT short pigeon_session_events(const struct pigeon_session *s)
{
    if (s == NULL || s->state == SESSION_DONE)
        return 0;
    if (s->state == SESSION_CONNECTING)
        return POLLOUT;
    short events = POLLIN;
    if (s->out_pos < smtp_client_output(s->engine)->len ||
        smtp_client_want(s->engine) == SMTP_CLIENT_WANT_BODY)
        events |= POLLOUT;
    return events;
}

/* pigeon_session_timeout_ms - the longest to wait before calling step anyway */
PIGEON_EXPORT int pigeon_session_timeout_ms(const struct pigeon_session *s)
{
    if (s == NULL || s->state == SESSION_DONE)
        return 0;
    return remaining_ms(s);
}

/* pigeon_session_step - make progress (never blocks) */
PIGEON_EXPORT enum pigeon_step pigeon_session_step(struct pigeon_session *s)
{
    if (s == NULL)
        return PIGEON_STEP_DONE;
    if (s->state == SESSION_CONNECTING)
        connect_progress(s);
    if (s->state == SESSION_RUNNING)
        run(s);
    return s->state == SESSION_DONE ? PIGEON_STEP_DONE : PIGEON_STEP_AGAIN;
}

/* pigeon_session_result - the result, once DONE; ownership passes to the caller */
PIGEON_EXPORT struct pigeon_result *pigeon_session_result(struct pigeon_session *s)
{
    if (s == NULL || s->state != SESSION_DONE)
        return NULL;
    struct pigeon_result *r = s->result;
    s->result = NULL;
    return r;
}

/* pigeon_session_free - close and release (any time) */
PIGEON_EXPORT void pigeon_session_free(struct pigeon_session *s)
{
    if (s == NULL)
        return;
    close_socket(s);
    smtp_client_free(s->engine);
    pigeon_result_free(s->result);
    free(s->rcpt);
    free(s);
}

/* session_abort - the caller's loop failed (poll): end the session with why */
static void session_abort(struct pigeon_session *s, const char *why)
{
    if (s->state == SESSION_RUNNING) {
        smtp_client_fail(s->engine, why);
        finish_engine(s);
    } else if (s->state == SESSION_CONNECTING) {
        finish_failure(s, PIGEON_CONNECT, why);
    }
}

/* pigeon_send - connect, send the message, quit: pigeon_session_step() around poll(2) */
PIGEON_EXPORT int pigeon_send(const struct pigeon_options *o, const struct pigeon_message *m,
                              struct pigeon_result **result)
{
    int status = PIGEON_INVALID;
    char why[256] = "";
    if (result != NULL)
        *result = NULL;
    struct pigeon_session *s = session_start(o, m, &status, why, sizeof(why));
    if (s == NULL) {
        if (result != NULL)
            *result = libpigeon_result_failure(m, status, why);
        return status;
    }
    while (pigeon_session_step(s) == PIGEON_STEP_AGAIN) {
        struct pollfd p = {pigeon_session_fd(s), pigeon_session_events(s), 0};
        if (poll(&p, 1, pigeon_session_timeout_ms(s)) < 0 && errno != EINTR) {
            char text[160], errbuf[ERRTEXT_MAX];
            snprintf(text, sizeof(text), "poll: %s", error_text(errno, errbuf));
            session_abort(s, text);
        }
    }
    status = s->status;
    if (result != NULL)
        *result = pigeon_session_result(s);
    pigeon_session_free(s);
    return status;
}
