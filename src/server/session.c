/*
 * session.c - one SMTP client connection: the glue between a libevent
 * bufferevent, the protocol engine (src/smtp/server.c), the recipient
 * policy (src/policy) and the queue (src/queue).
 *
 * Bytes from the socket go to smtp_server_feed() straight out of the
 * bufferevent's input buffer; the engine's replies go to its output buffer.
 * The engine asks for decisions through the ops below: MAIL opens an
 * envelope and gets a queue id, RCPT asks the policy, DATA opens a queue
 * message and writes the trace headers, the message bytes stream into the
 * queue, and the end of DATA commits it.  The 250 is sent only when the
 * queue reports the message durable (session_committed).
 *
 * Reading stops whenever the session must wait: for the queue to write, for
 * the commit, or for a slow client to take its replies.  So memory per
 * session stays bounded however the client behaves.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "lib/log.h"
#include "policy/limits.h"
#include "policy/policy.h"
#include "queue/queue.h"
#include "server/server.h"

/* Input handed to the engine at a time, and replies waiting before we stop
 * reading a client that does not read them. */
#define FEED_MAX     (64 * 1024)
#define OUTPUT_PAUSE (64 * 1024)
/* Input libevent may read ahead of us (it stops reading beyond this). */
#define INPUT_LIMIT (256 * 1024)
/* Message data that must arrive per `timeout data` (see slow_data). */
#define DATA_PROGRESS 1024

struct session {
    struct server *srv;
    uint64_t id;
    struct bufferevent *bev;
    struct smtp_server *smtp;
    struct sockaddr_storage addr;
    char addr_text[INET6_ADDRSTRLEN];
    bool trusted;
    bool counted;       /* in the per-address limits (untrusted clients) */
    bool eof;           /* the client will send nothing more */
    bool timeout_set;   /* the timeouts in force were set (see set_timeout) */
    bool timeout_data;  /* and are those for message data */
    time_t line_since;  /* when the command line now being received began */
    time_t data_since;  /* when the current window of message data began */
    size_t data_octets; /* octets of message data in that window */
    size_t data_seen;   /* input already counted by slow_data */
    bool closing;       /* waiting for the last replies to go out */
    char helo[SMTP_DOMAIN_MAX + 1];
    bool esmtp;

    /* The transaction. */
    char qid[QUEUE_ID_LEN + 1];
    struct envelope *env;
    char *first_rcpt; /* the one RCPT as given, for "for <...>" */
    size_t rcpts_accepted;
    struct queue_msg *msg;         /* while DATA or BDAT is being received */
    bool committing;               /* msg is with the queue, waiting for durability */
    char msg_id[QUEUE_ID_LEN + 1]; /* the queue id of msg */
    unsigned messages;             /* queued in this session */

    struct session *prev, *next;
};

static void session_process(struct session *s);
static void session_free(struct session *s);

/* policy_scratch - the target list policy_rcpt() fills: large, so one for the loop thread */
static struct policy_targets policy_scratch;

/* ---- the transaction ------------------------------------------------------------- */

/* txn_free - forget the envelope being built */
static void txn_free(struct session *s)
{
    if (s->env) {
        envelope_free(s->env);
        free(s->env);
        s->env = NULL;
    }
    free(s->first_rcpt);
    s->first_rcpt = NULL;
    s->rcpts_accepted = 0;
    s->qid[0] = '\0';
}

/* op_helo - remember the name for the Received: header */
static void op_helo(void *ctx, const char *name, size_t len, bool esmtp)
{
    struct session *s = ctx;
    memcpy(s->helo, name, len);
    s->helo[len] = '\0';
    s->esmtp = esmtp;
    log_info("session %llu: %s %s", (unsigned long long)s->id, esmtp ? "ehlo" : "helo", s->helo);
}

/* op_mail - a new envelope and its queue id */
static enum smtp_server_result op_mail(void *ctx, const struct smtp_path *from,
                                       const struct smtp_mail_params *params,
                                       struct smtp_reply *reply)
{
    struct session *s = ctx;
    txn_free(s);
    s->env = calloc(1, sizeof(*s->env));
    if (s->env == NULL || (s->env->sender = strdup(from->mailbox)) == NULL ||
        (params->envid_len > 0 && (s->env->envid = strdup(params->envid)) == NULL)) {
        txn_free(s);
        reply->code = 451;
        reply->enh = "4.3.0";
        snprintf(reply->text, sizeof(reply->text), "Error: out of memory, try again later");
        return SMTP_SERVER_DONE;
    }
    s->env->body = (uint8_t)params->body;
    s->env->ret = (uint8_t)params->ret;
    s->env->smtputf8 = params->smtputf8;
    queue_new_id(s->srv->queue, s->qid);
    memcpy(s->env->id, s->qid, sizeof(s->qid));
    log_info("%s: client=%s, session=%llu, from=<%s>", s->qid, s->addr_text,
             (unsigned long long)s->id, from->mailbox);
    return SMTP_SERVER_DONE;
}

/* same_target - is the target already one of the envelope's recipients? */
static bool same_target(const struct envelope *env, const struct policy_target *t)
{
    for (size_t i = 0; i < env->nrcpt; i++) {
        const struct envelope_rcpt *r = &env->rcpt[i];
        if (t->route == POLICY_ROUTE_MAILDIR && r->route == ENVELOPE_ROUTE_MAILDIR &&
            strcmp(r->maildir, t->maildir) == 0)
            return true;
        if (t->route == POLICY_ROUTE_RELAY && r->route == ENVELOPE_ROUTE_RELAY &&
            strcmp(r->address, t->address) == 0)
            return true;
    }
    return false;
}

/* add_target - one accepted target into the envelope; -1 if out of memory */
static int add_target(struct session *s, const struct smtp_path *to,
                      const struct smtp_rcpt_params *params, const struct policy_target *t)
{
    if (same_target(s->env, t))
        return 0; /* two addresses for one mailbox: one delivery */
    struct envelope_rcpt *r = envelope_add_rcpt(s->env);
    if (r == NULL)
        return -1;
    r->route = t->route == POLICY_ROUTE_MAILDIR ? ENVELOPE_ROUTE_MAILDIR : ENVELOPE_ROUTE_RELAY;
    r->notify = params->notify;
    r->address = strdup(t->address);
    if (r->address == NULL)
        return -1;
    if (strcmp(t->address, to->mailbox) != 0 && (r->orig = strdup(to->mailbox)) == NULL)
        return -1;
    if (params->orcpt_len > 0 && (r->orcpt = strdup(params->orcpt)) == NULL)
        return -1;
    if (t->route == POLICY_ROUTE_MAILDIR && (r->maildir = strdup(t->maildir)) == NULL)
        return -1;
    return 0;
}

/* op_rcpt - ask the policy, and add what it accepts to the envelope */
static enum smtp_server_result op_rcpt(void *ctx, const struct smtp_path *to,
                                       const struct smtp_rcpt_params *params,
                                       struct smtp_reply *reply)
{
    struct session *s = ctx;
    struct policy_client client = {(const struct sockaddr *)&s->addr, s->trusted};
    struct policy_targets *targets = &policy_scratch;

    if (!policy_rcpt(s->srv->cfg, &client, to, targets, reply)) {
        log_info("%s: reject: RCPT from %s: %u %s %s; from=<%s> to=<%s>", s->qid, s->addr_text,
                 reply->code, reply->enh ? reply->enh : "", reply->text,
                 s->env ? s->env->sender : "", to->mailbox);
        return SMTP_SERVER_DONE;
    }
    for (size_t i = 0; i < targets->n; i++) {
        if (add_target(s, to, params, &targets->t[i]) < 0) {
            reply->code = 451;
            reply->enh = "4.3.0";
            snprintf(reply->text, sizeof(reply->text), "Error: out of memory, try again later");
            return SMTP_SERVER_DONE;
        }
    }
    if (s->rcpts_accepted++ == 0)
        s->first_rcpt = strdup(to->mailbox);
    log_info("%s: to=<%s> accepted", s->qid, to->mailbox);
    return SMTP_SERVER_DONE;
}

/* format_date - RFC 5322 date-time of now, in local time */
static void format_date(char *out, size_t outsize, time_t t)
{
    struct tm tm;
    static const char *const days[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
    static const char *const months[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                         "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    localtime_r(&t, &tm);
    long off = tm.tm_gmtoff / 60;
    char sign = off < 0 ? '-' : '+';
    if (off < 0)
        off = -off;
    snprintf(out, outsize, "%s, %d %s %d %02d:%02d:%02d %c%02ld%02ld", days[tm.tm_wday], tm.tm_mday,
             months[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec, sign, off / 60,
             off % 60);
}

/* client_literal - the client's address as an RFC 5321 address literal */
static void client_literal(const struct session *s, char *out, size_t outsize)
{
    if (s->addr.ss_family == AF_INET6)
        snprintf(out, outsize, "[IPv6:%s]", s->addr_text);
    else
        snprintf(out, outsize, "[%s]", s->addr_text);
}

/*
 * write_trace - the Return-Path: and Received: headers that start the
 * stored message (RFC 5321 §4.4).  Return-Path is only for final delivery;
 * outbound delivery skips it (envelope trace_len).
 */
static int write_trace(struct session *s)
{
    char literal[INET6_ADDRSTRLEN + 8], date[64];
    char head[2048];
    const char *proto = !s->esmtp ? "SMTP" : s->env->smtputf8 ? "UTF8SMTP" : "ESMTP";
    time_t now = time(NULL);

    client_literal(s, literal, sizeof(literal));
    format_date(date, sizeof(date), now);
    int rp = snprintf(head, sizeof(head), "Return-Path: <%s>\r\n", s->env->sender);
    if (rp < 0 || (size_t)rp >= sizeof(head))
        return -1;
    int n = snprintf(head + rp, sizeof(head) - (size_t)rp,
                     "Received: from %s (%s)\r\n\tby %s (Pigeon) with %s id %s%s%s%s;\r\n\t%s\r\n",
                     s->helo[0] ? s->helo : literal, literal, s->srv->cfg->hostname, proto, s->qid,
                     s->rcpts_accepted == 1 ? "\r\n\tfor <" : "",
                     s->rcpts_accepted == 1 && s->first_rcpt ? s->first_rcpt : "",
                     s->rcpts_accepted == 1 ? ">" : "", date);
    if (n < 0 || (size_t)(rp + n) >= sizeof(head))
        return -1;
    s->env->trace_len = (uint32_t)rp;
    s->env->arrival = now;
    return queue_msg_write(s->msg, head, (size_t)(rp + n));
}

/* session_queue_event - the queue has written a chunk or committed the message */
static void session_queue_event(void *arg, enum queue_msg_event ev, int error);

/* op_data_begin - open a queue message and write the trace headers */
static bool op_data_begin(void *ctx, struct smtp_reply *reply)
{
    struct session *s = ctx;
    if (s->env == NULL || queue_full(s->srv->queue)) {
        reply->code = 452;
        reply->enh = "4.3.1";
        snprintf(reply->text, sizeof(reply->text), "Error: insufficient system storage");
        return false;
    }
    s->msg = queue_msg_new(s->srv->queue, s->qid, session_queue_event, s);
    if (s->msg == NULL || write_trace(s) < 0) {
        if (s->msg)
            queue_msg_abort(s->msg);
        s->msg = NULL;
        reply->code = 451;
        reply->enh = "4.3.0";
        snprintf(reply->text, sizeof(reply->text), "Error: cannot start a message now");
        return false;
    }
    return true;
}

/* op_data_write - message bytes into the queue */
static int op_data_write(void *ctx, const uint8_t *p, size_t n)
{
    struct session *s = ctx;
    return queue_msg_write(s->msg, p, n);
}

/* op_data_end - commit; the reply waits for the queue */
static enum smtp_server_result op_data_end(void *ctx, struct smtp_reply *reply)
{
    struct session *s = ctx;
    (void)reply;
    s->env->client = strdup(s->addr_text);
    s->env->helo = strdup(s->helo);
    if (s->env->client == NULL || s->env->helo == NULL) {
        queue_msg_abort(s->msg);
        s->msg = NULL;
        txn_free(s);
        reply->code = 451;
        reply->enh = "4.3.0";
        snprintf(reply->text, sizeof(reply->text), "Error: out of memory, try again later");
        return SMTP_SERVER_DONE;
    }
    struct envelope *env = s->env;
    s->env = NULL;
    memcpy(s->msg_id, s->qid, sizeof(s->msg_id));
    txn_free(s);
    s->committing = true;
    queue_msg_commit(s->msg, env);
    return SMTP_SERVER_ASYNC;
}

/* op_reset - the transaction is over without a message */
static void op_reset(void *ctx)
{
    struct session *s = ctx;
    if (s->msg != NULL && !s->committing) {
        queue_msg_abort(s->msg);
        s->msg = NULL;
    }
    txn_free(s);
}

static const struct smtp_server_ops session_ops = {
    .helo = op_helo,
    .mail = op_mail,
    .rcpt = op_rcpt,
    .data_begin = op_data_begin,
    .data_write = op_data_write,
    .data_end = op_data_end,
    .reset = op_reset,
};

/* session_queue_event - the queue has written a chunk or committed the message */
static void session_queue_event(void *arg, enum queue_msg_event ev, int error)
{
    struct session *s = arg;
    if (ev == QUEUE_MSG_WRITTEN) {
        session_process(s); /* it may have been waiting for room */
        return;
    }
    s->msg = NULL;
    s->committing = false;
    struct smtp_reply r = {0};
    if (error == 0) {
        s->messages++;
        r.code = 250;
        r.enh = "2.0.0";
        snprintf(r.text, sizeof(r.text), "Ok: queued as %s", s->msg_id);
    } else if (error == ENOSPC || error == EDQUOT) {
        r.code = 452;
        r.enh = "4.3.1";
        snprintf(r.text, sizeof(r.text), "Error: insufficient system storage");
    } else {
        r.code = 451;
        r.enh = "4.3.0";
        snprintf(r.text, sizeof(r.text), "Error: queue write failed, try again later");
    }
    if (error != 0)
        log_err("%s: message from %s not stored: %s; replied %u %s", s->msg_id, s->addr_text,
                strerror(error), r.code, r.enh);
    smtp_server_resume(s->smtp, &r);
    session_process(s);
}

/* ---- the connection ----------------------------------------------------------------- */

/* set_timeout - the read timeout for what the engine waits for now (set on a change only) */
static void set_timeout(struct session *s)
{
    const struct config_timeouts *t = &s->srv->cfg->timeouts;
    bool data = smtp_server_in_message(s->smtp);
    if (s->timeout_set && s->timeout_data == data)
        return;
    struct timeval rtv = {data ? t->data : t->command, 0};
    struct timeval wtv = {t->command, 0}; /* a client that stops reading our replies */
    bufferevent_set_timeouts(s->bev, &rtv, &wtv);
    s->timeout_set = true;
    s->timeout_data = data;
}

/*
 * flush_output - send the engine's replies.  When nothing is queued on the
 * socket yet, they go straight to it; the bufferevent (and its write
 * event) is only for what the socket would not take at once.
 */
static void flush_output(struct session *s)
{
    struct buf *out = smtp_server_output(s->smtp);
    if (out->len == 0)
        return;
    size_t done = 0;
    if (evbuffer_get_length(bufferevent_get_output(s->bev)) == 0) {
        ssize_t w =
            send(bufferevent_getfd(s->bev), out->data, out->len, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w > 0)
            done = (size_t)w;
    }
    if (done < out->len && bufferevent_write(s->bev, out->data + done, out->len - done) < 0)
        log_err("session %llu: cannot queue output", (unsigned long long)s->id);
    smtp_server_output_sent(s->smtp);
}

/* session_finish - stop reading; free the session once its replies are out */
static void session_finish(struct session *s)
{
    s->closing = true;
    bufferevent_disable(s->bev, EV_READ);
    if (evbuffer_get_length(bufferevent_get_output(s->bev)) == 0)
        session_free(s);
    /* else the write callback frees it when the output has drained */
}

/*
 * slow_line - a command line must arrive whole within the command timeout,
 * not merely a byte within each timeout: a client dribbling one byte a
 * second (slowloris) is cut off like a silent one.  True if it was.
 */
static bool slow_line(struct session *s)
{
    if (!smtp_server_partial_line(s->smtp)) {
        s->line_since = 0;
        return false;
    }
    time_t now = time(NULL);
    if (s->line_since == 0) {
        s->line_since = now;
        return false;
    }
    if (now - s->line_since < (time_t)s->srv->cfg->timeouts.command)
        return false;
    log_info("session %llu: command line from %s not finished in %u seconds; closing",
             (unsigned long long)s->id, s->addr_text, s->srv->cfg->timeouts.command);
    smtp_server_timeout(s->smtp);
    flush_output(s);
    session_finish(s);
    return true;
}

/*
 * slow_data - message data must keep coming: within each `timeout data`
 * window at least DATA_PROGRESS octets (or the end of the message) must
 * arrive.  A client sending a byte a second is cut off like a silent one;
 * any real link, however slow, sends far more than 1 KB in five minutes.
 * Returns true if the session was cut off.
 */
static bool slow_data(struct session *s, size_t arrived)
{
    if (!smtp_server_in_message(s->smtp)) {
        s->data_since = 0;
        return false;
    }
    time_t now = time(NULL);
    if (s->data_since == 0 || s->data_octets >= DATA_PROGRESS) {
        s->data_since = now;
        s->data_octets = 0;
    }
    s->data_octets += arrived;
    if (now - s->data_since < (time_t)s->srv->cfg->timeouts.data)
        return false;
    log_info("session %llu: message data from %s slower than %u octets in %u seconds; closing",
             (unsigned long long)s->id, s->addr_text, DATA_PROGRESS, s->srv->cfg->timeouts.data);
    smtp_server_timeout(s->smtp);
    flush_output(s);
    session_finish(s);
    return true;
}

/* session_process - feed what the client sent to the engine, as far as we may */
static void session_process(struct session *s)
{
    struct evbuffer *in = bufferevent_get_input(s->bev);
    struct evbuffer *out = bufferevent_get_output(s->bev);

    if (s->closing)
        return;
    if (slow_line(s) || slow_data(s, evbuffer_get_length(in) - s->data_seen))
        return;
    for (;;) {
        if (smtp_server_waiting(s->smtp) || smtp_server_closing(s->smtp))
            break;
        if (s->msg != NULL && queue_msg_congested(s->msg))
            break; /* resumed by QUEUE_MSG_WRITTEN */
        if (evbuffer_get_length(out) >= OUTPUT_PAUSE)
            break; /* resumed by the write callback */
        struct evbuffer_iovec v;
        if (evbuffer_peek(in, -1, NULL, &v, 1) < 1 || v.iov_len == 0)
            break;
        size_t n = v.iov_len < FEED_MAX ? v.iov_len : FEED_MAX;
        size_t used = smtp_server_feed(s->smtp, v.iov_base, n);
        evbuffer_drain(in, used);
        size_t pending = smtp_server_output(s->smtp)->len;
        flush_output(s);
        if (used == 0 && pending == 0)
            break;
    }
    flush_output(s);
    s->data_seen = evbuffer_get_length(in); /* what is left was counted by slow_data */
    if (!smtp_server_partial_line(s->smtp))
        s->line_since = 0;
    else if (s->line_since == 0)
        s->line_since = time(NULL);

    /* At the end of the client's input (all of it processed), a message not
     * yet complete is abandoned (session_free aborts it); only one being
     * committed is waited for. */
    if (smtp_server_closing(s->smtp) || (s->eof && evbuffer_get_length(in) == 0 &&
                                         !smtp_server_waiting(s->smtp) && !s->committing)) {
        session_finish(s);
        return;
    }
    /* Read again only when the engine can take more; the callbacks above
     * re-enable reading when whatever blocked it is over. */
    bool can_read = !smtp_server_waiting(s->smtp) && !s->eof &&
                    !(s->msg != NULL && queue_msg_congested(s->msg)) &&
                    evbuffer_get_length(out) < OUTPUT_PAUSE;
    if (can_read) {
        set_timeout(s);
        bufferevent_enable(s->bev, EV_READ);
    } else {
        bufferevent_disable(s->bev, EV_READ);
    }
}

/* on_read - the client sent something */
static void on_read(struct bufferevent *bev, void *arg)
{
    (void)bev;
    session_process(arg);
}

/* on_write - output drained to the low-water mark */
static void on_write(struct bufferevent *bev, void *arg)
{
    struct session *s = arg;
    (void)bev;
    if (s->closing)
        session_free(s);
    else
        session_process(s); /* it may have stopped reading for a slow reader */
}

/* on_event - end of file, errors and timeouts */
static void on_event(struct bufferevent *bev, short what, void *arg)
{
    struct session *s = arg;
    (void)bev;
    if (what & BEV_EVENT_TIMEOUT) {
        if ((what & BEV_EVENT_WRITING) || s->closing) {
            log_info("session %llu: %s does not read its replies; closing",
                     (unsigned long long)s->id, s->addr_text);
            session_free(s);
            return;
        }
        if (smtp_server_waiting(s->smtp))
            return; /* our own wait, not the client's: reading resumes after it */
        log_info("session %llu: timeout after %s from %s", (unsigned long long)s->id,
                 smtp_server_in_message(s->smtp) ? "DATA" : "a command", s->addr_text);
        smtp_server_timeout(s->smtp);
        flush_output(s);
        session_finish(s);
        return;
    }
    if (what & BEV_EVENT_EOF) {
        s->eof = true;
        session_process(s); /* answer what it sent before closing */
        return;
    }
    if (what & BEV_EVENT_ERROR) {
        log_info("session %llu: connection error from %s: %s", (unsigned long long)s->id,
                 s->addr_text, strerror(EVUTIL_SOCKET_ERROR()));
        session_free(s);
    }
}

/* session_free - close the connection and release everything */
static void session_free(struct session *s)
{
    struct server *srv = s->srv;
    if (s->msg != NULL) {
        if (s->committing) {
            /* The commit goes on: the message will be delivered, though the
             * client may not have seen the 250 (RFC 1047's window). */
            queue_msg_detach(s->msg);
        } else {
            queue_msg_abort(s->msg);
        }
        s->msg = NULL;
    }
    smtp_server_free(s->smtp); /* calls op_reset for an open transaction */
    txn_free(s);
    bufferevent_free(s->bev);
    if (s->prev)
        s->prev->next = s->next;
    else
        srv->sessions = s->next;
    if (s->next)
        s->next->prev = s->prev;
    srv->nsessions--;
    if (s->counted)
        client_limits_disconnect(srv->clients, (const struct sockaddr *)&s->addr);
    log_info("session %llu: disconnect from %s, %u message%s queued", (unsigned long long)s->id,
             s->addr_text, s->messages, s->messages == 1 ? "" : "s");
    free(s);
}

/* refuse_connection - 421 straight onto the socket, and close it */
static void refuse_connection(int fd, const char *text)
{
    char line[256];
    int n = snprintf(line, sizeof(line), "421 4.7.0 %s\r\n", text);
    if (n > 0 && write(fd, line, (size_t)n) < 0)
        log_debug("could not send 421: %s", strerror(errno));
    evutil_closesocket(fd);
}

/* admit - may this connection have a session?  Refuses it (421) if not */
static bool admit(struct server *srv, int fd, const struct sockaddr *addr, const char *text,
                  bool trusted, bool *counted)
{
    const struct config_limits *lim = &srv->cfg->limits;
    *counted = false;
    if (lim->sessions != 0 && srv->nsessions >= lim->sessions) {
        log_warn("refused a connection from %s: %u sessions open (limit sessions)", text,
                 srv->nsessions);
        refuse_connection(fd, "Too many connections, try again later");
        return false;
    }
    if (trusted)
        return true; /* the per-address limits are for the outside world */
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    double now = (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
    switch (client_limits_connect(srv->clients, addr, now)) {
    case CLIENT_OK:
        *counted = true;
        return true;
    case CLIENT_TOO_MANY_SESSIONS:
        log_warn("refused a connection from %s: limit sessions-per-client", text);
        refuse_connection(fd, "Too many connections from your address, try again later");
        return false;
    case CLIENT_TOO_FAST:
        log_warn("refused a connection from %s: limit connections-per-minute", text);
        refuse_connection(fd, "Too many connections per minute from your address, slow down");
        return false;
    case CLIENT_ALL_TOO_FAST:
        log_warn("refused a connection from %s: limit connections-per-minute-total", text);
        refuse_connection(fd, "Too many connections, try again later");
        return false;
    case CLIENT_TOO_MANY_CLIENTS:
        log_warn("refused a connection from %s: too many client addresses tracked", text);
        refuse_connection(fd, "Too busy, try again later");
        return false;
    }
    return false;
}

/* session_open - a new client connection, accepted on fd */
void session_open(struct server *srv, int fd, const struct sockaddr *addr, socklen_t addrlen)
{
    char text[INET6_ADDRSTRLEN] = "?";
    uint16_t port = 0;
    if (addr->sa_family == AF_INET6) {
        const struct sockaddr_in6 *a6 = (const struct sockaddr_in6 *)addr;
        inet_ntop(AF_INET6, &a6->sin6_addr, text, sizeof(text));
        port = ntohs(a6->sin6_port);
    } else if (addr->sa_family == AF_INET) {
        const struct sockaddr_in *a4 = (const struct sockaddr_in *)addr;
        inet_ntop(AF_INET, &a4->sin_addr, text, sizeof(text));
        port = ntohs(a4->sin_port);
    }
    bool trusted = policy_client_trusted(srv->cfg, addr);
    bool counted;
    if (!admit(srv, fd, addr, text, trusted, &counted))
        return;

    struct session *s = calloc(1, sizeof(*s));
    if (s != NULL) {
        s->bev = bufferevent_socket_new(srv->base, fd, BEV_OPT_CLOSE_ON_FREE);
        s->smtp = smtp_server_new(&srv->smtp, &session_ops, s, trusted);
    }
    if (s == NULL || s->bev == NULL || s->smtp == NULL) {
        log_err("refused a connection from %s: out of memory", text);
        if (s != NULL && s->bev != NULL)
            bufferevent_free(s->bev);
        else
            evutil_closesocket(fd);
        if (s != NULL)
            smtp_server_free(s->smtp);
        free(s);
        if (counted)
            client_limits_disconnect(srv->clients, addr);
        return;
    }
    s->srv = srv;
    s->id = ++srv->next_session_id;
    memcpy(&s->addr, addr, addrlen < sizeof(s->addr) ? addrlen : sizeof(s->addr));
    memcpy(s->addr_text, text, sizeof(s->addr_text));
    s->trusted = trusted;
    s->counted = counted;
    s->next = srv->sessions;
    if (srv->sessions)
        srv->sessions->prev = s;
    srv->sessions = s;
    srv->nsessions++;

    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    log_info("session %llu: connect from %s port %u%s", (unsigned long long)s->id, s->addr_text,
             port, s->trusted ? " (trusted)" : "");
    bufferevent_setcb(s->bev, on_read, on_write, on_event, s);
    bufferevent_setwatermark(s->bev, EV_READ, 0, INPUT_LIMIT);
    /* Message data comes in big reads: fewer rounds through the loop. */
    bufferevent_set_max_single_read(s->bev, INPUT_LIMIT);
    smtp_server_greet(s->smtp);
    flush_output(s);
    set_timeout(s);
    bufferevent_enable(s->bev, EV_READ);
}

/* session_close_all - end every session with 421 (shutdown) */
void session_close_all(struct server *srv)
{
    struct session *next;
    for (struct session *s = srv->sessions; s != NULL; s = next) {
        next = s->next;
        if (!s->closing && !smtp_server_closing(s->smtp) && !smtp_server_waiting(s->smtp)) {
            smtp_server_refuse(s->smtp, 421, "4.3.2", "Service shutting down, try again later");
            struct buf *out = smtp_server_output(s->smtp);
            /* Best effort: the process is about to exit. */
            if (out->len > 0 && write(bufferevent_getfd(s->bev), out->data, out->len) < 0)
                log_debug("session %llu: 421 not sent", (unsigned long long)s->id);
        }
        session_free(s);
    }
}
