/*
 * queue.c - the queue manager thread (see queue.h for the model).
 *
 * Three threads meet here, and they only ever exchange messages:
 *
 *   event loop  --chunks, commits, aborts-->  queue thread  --jobs-->  workers
 *   event loop  <--written, committed------   queue thread  <--results-- workers
 *
 * The queue thread sleeps on its inbox.  Each time it wakes it takes the
 * whole inbox: it writes the content chunks, prepares every commit (content
 * file complete, envelope framed into the journal batch), then writes the
 * batch with one write() and makes everything durable with one sync.  The
 * commits that arrived while the previous sync was running are exactly the
 * ones that share this one: group commit needs no timer.
 *
 * The loop is woken through an eventfd only when its list goes from empty to
 * non-empty, so a burst of completions costs one wakeup.
 */
#include "queue.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "deliver/deliver.h"
#include "deliver/maildir.h"
#include "lib/log.h"
#include "queue/journal.h"

#define CHUNK_SIZE            (128 * 1024) /* content handed to the queue thread at a time */
#define CHUNKS_IN_FLIGHT      2            /* per message, before the session stops reading */
#define ROTATE_MIN            (8u << 20)   /* journal octets before a new segment */
#define RETRY_FIRST           60           /* seconds before the first retry */
#define RETRY_MAX             3600         /* longest wait between retries */
#define STATS_INTERVAL        60           /* seconds between group-commit log lines */
#define DELIVERY_SYNC_WAIT_MS 2            /* a delivery waits this long for a commit's sync */

enum item_kind {
    ITEM_CHUNK,     /* loop -> queue: content; back: written */
    ITEM_COMMIT,    /* loop -> queue: last content and envelope; back: committed */
    ITEM_ABORT,     /* loop -> queue: forget the message; back: free it */
    ITEM_DELIVERED, /* workers -> queue: a batch of jobs done */
    ITEM_STOP,      /* loop -> queue: finish up */
};

struct qmsg;

struct item {
    enum item_kind kind;
    struct item *next;
    struct queue_msg *m;
    struct buf data;
    struct envelope *env;
    struct qmsg *qm;
    struct deliver_job *jobs;
    int error;
};

/* A message being received.  Fields above the line belong to the loop,
 * below it to the queue thread; the item lists carry the hand-over. */
struct queue_msg {
    struct queue *q;
    char id[QUEUE_ID_LEN + 1];
    queue_msg_cb cb;
    void *arg;
    struct buf stage;  /* content not yet handed over */
    unsigned inflight; /* chunks handed over, not yet written */
    bool failed;       /* a chunk could not be written */
    bool finished;     /* commit or abort was asked for */
    bool detached;     /* no more callbacks */
    /* ---- queue thread ---- */
    int fd; /* the content file, once created */
    uint64_t written;
    int error;
};

enum qmsg_state {
    QMSG_IDLE,       /* nothing to do now (remote recipients wait for outbound) */
    QMSG_DELIVERING, /* its job is with the workers */
    QMSG_DEFERRED,   /* in the retry heap */
};

/* A message in the queue, as the queue thread knows it. */
struct qmsg {
    struct envelope *env;
    struct deliver_job job;
    enum qmsg_state state;
    time_t next_try; /* monotonic seconds */
    unsigned attempts;
    size_t encoded_len;
    struct qmsg *prev, *next; /* the live list */
    bool gone;                /* recovery: finished before the crash */
    bool has_content;         /* recovery: msg/<id> is there */
};

struct queue {
    struct queue_settings set;
    char *dir;
    char *hostname;
    int spool_fd;
    int msg_dirfd;
    int quarantine_fd;
    struct journal *journal;
    struct deliverer *deliverer;
    pthread_t thread;
    bool thread_started;

    /* The queue thread's inbox. */
    pthread_mutex_t lock;
    pthread_cond_t cond;
    struct item *in_head, *in_tail;

    /* The loop's inbox, and how the loop is woken. */
    pthread_mutex_t out_lock;
    struct item *out_head, *out_tail;
    int wake_fd;
    struct event *wake_ev;

    /* Loop thread: queue ids. */
    uint64_t id_last_us;
    unsigned id_seq;

    /* Queue thread. */
    struct deliver_job *unsynced; /* delivered, waiting for the next sync */
    struct deliver_job **unsynced_tail;
    struct timespec unsynced_since; /* when the first of them arrived */
    struct qmsg *live;
    size_t live_bytes;
    struct qmsg **retry; /* min-heap on next_try */
    size_t nretry, retry_cap;
    time_t last_stats;
    uint64_t logged_committed;

    /* Any thread. */
    atomic_uint_fast64_t committed, syncs, delivered, queued;
};

/* ---- small helpers ---------------------------------------------------------- */

/* now_mono - monotonic seconds, for retry times */
static time_t now_mono(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec;
}

static const char base32[] = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/* id_time - the microsecond time in a queue id, or 0 if it is not one */
static uint64_t id_time(const char *id, size_t n)
{
    if (n != QUEUE_ID_LEN)
        return 0;
    uint64_t v = 0;
    for (size_t i = 0; i < QUEUE_ID_LEN; i++) {
        const char *c = memchr(base32, id[i], 32);
        if (c == NULL || id[i] == '\0')
            return 0;
        if (i < 11)
            v = v << 5 | (uint64_t)(c - base32);
    }
    return v;
}

/* queue_new_id - 11 base32 digits of microseconds, then 3 of a sequence number */
void queue_new_id(struct queue *q, char id[QUEUE_ID_LEN + 1])
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t us = (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
    if (us <= q->id_last_us) {
        /* Same microsecond, or the clock went back: count on from the last id. */
        us = q->id_last_us;
        if (++q->id_seq >= 32768) {
            us++;
            q->id_seq = 0;
        }
    } else {
        q->id_seq = 0;
    }
    q->id_last_us = us;
    for (int i = 10; i >= 0; i--) {
        id[i] = base32[us & 31];
        us >>= 5;
    }
    unsigned seq = q->id_seq;
    for (int i = 13; i >= 11; i--) {
        id[i] = base32[seq & 31];
        seq >>= 5;
    }
    id[QUEUE_ID_LEN] = '\0';
}

/* post_in - hand an item to the queue thread */
static void post_in(struct queue *q, struct item *it)
{
    it->next = NULL;
    pthread_mutex_lock(&q->lock);
    if (q->in_tail)
        q->in_tail->next = it;
    else
        q->in_head = it;
    q->in_tail = it;
    pthread_cond_signal(&q->cond);
    pthread_mutex_unlock(&q->lock);
}

/* post_out - hand an item back to the loop, waking it if its list was empty */
static void post_out(struct queue *q, struct item *it)
{
    it->next = NULL;
    pthread_mutex_lock(&q->out_lock);
    bool was_empty = q->out_head == NULL;
    if (q->out_tail)
        q->out_tail->next = it;
    else
        q->out_head = it;
    q->out_tail = it;
    pthread_mutex_unlock(&q->out_lock);
    if (was_empty) {
        uint64_t one = 1;
        if (write(q->wake_fd, &one, sizeof(one)) < 0 && errno != EAGAIN)
            log_err("queue: cannot wake the event loop: %s", strerror(errno));
    }
}

/* item_new - a zeroed item */
static struct item *item_new(enum item_kind kind, struct queue_msg *m)
{
    struct item *it = calloc(1, sizeof(*it));
    if (it != NULL) {
        it->kind = kind;
        it->m = m;
        buf_init(&it->data, CHUNK_SIZE);
    }
    return it;
}

/* item_free - an item and what it still holds */
static void item_free(struct item *it)
{
    buf_free(&it->data);
    if (it->env) {
        envelope_free(it->env);
        free(it->env);
    }
    free(it);
}

/* qmsg_free - a message record and its envelope */
static void qmsg_free(struct qmsg *qm)
{
    if (qm->env) {
        envelope_free(qm->env);
        free(qm->env);
    }
    free(qm->job.outcome);
    free(qm);
}

/* qmsg_new - a record for env (taken) */
static struct qmsg *qmsg_new(struct envelope *env)
{
    struct qmsg *qm = calloc(1, sizeof(*qm));
    if (qm == NULL)
        return NULL;
    qm->job.outcome = calloc(env->nrcpt, 1);
    if (qm->job.outcome == NULL) {
        free(qm);
        return NULL;
    }
    qm->env = env;
    qm->job.env = env;
    qm->job.owner = qm;
    return qm;
}

/* live_add - put a message on the live list */
static void live_add(struct queue *q, struct qmsg *qm)
{
    qm->prev = NULL;
    qm->next = q->live;
    if (q->live)
        q->live->prev = qm;
    q->live = qm;
    q->live_bytes += qm->encoded_len;
    atomic_fetch_add(&q->queued, 1);
}

/* live_remove - take a message off the live list */
static void live_remove(struct queue *q, struct qmsg *qm)
{
    if (qm->prev)
        qm->prev->next = qm->next;
    else
        q->live = qm->next;
    if (qm->next)
        qm->next->prev = qm->prev;
    q->live_bytes -= qm->encoded_len < q->live_bytes ? qm->encoded_len : q->live_bytes;
    atomic_fetch_sub(&q->queued, 1);
}

/* ---- the retry heap ------------------------------------------------------------- */

/* retry_push - schedule a deferred message */
static void retry_push(struct queue *q, struct qmsg *qm)
{
    if (q->nretry == q->retry_cap) {
        size_t cap = q->retry_cap ? q->retry_cap * 2 : 64;
        struct qmsg **r = realloc(q->retry, cap * sizeof(*r));
        if (r == NULL) {
            log_err("%s: out of memory scheduling a retry; it waits for a restart", qm->env->id);
            qm->state = QMSG_IDLE;
            return;
        }
        q->retry = r;
        q->retry_cap = cap;
    }
    size_t i = q->nretry++;
    while (i > 0 && q->retry[(i - 1) / 2]->next_try > qm->next_try) {
        q->retry[i] = q->retry[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    q->retry[i] = qm;
    qm->state = QMSG_DEFERRED;
}

/* retry_pop - the message due first */
static struct qmsg *retry_pop(struct queue *q)
{
    struct qmsg *top = q->retry[0];
    struct qmsg *last = q->retry[--q->nretry];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= q->nretry)
            break;
        if (c + 1 < q->nretry && q->retry[c + 1]->next_try < q->retry[c]->next_try)
            c++;
        if (last->next_try <= q->retry[c]->next_try)
            break;
        q->retry[i] = q->retry[c];
        i = c;
    }
    if (q->nretry > 0)
        q->retry[i] = last;
    return top;
}

/* ---- delivery ------------------------------------------------------------------ */

/* has_pending - a pending recipient with this route */
static bool has_pending(const struct envelope *env, enum envelope_route route)
{
    for (size_t i = 0; i < env->nrcpt; i++)
        if (env->rcpt[i].state == ENVELOPE_PENDING && env->rcpt[i].route == route)
            return true;
    return false;
}

static void collect_results(struct queue *q, struct deliver_job *jobs);

/*
 * dispatch - deliver the message's pending local recipients.  Hard links,
 * the common case, are made here at once (their sync is the next commit's);
 * anything that needs a copy goes to the delivery workers.
 */
static void dispatch(struct queue *q, struct qmsg *qm)
{
    if (!has_pending(qm->env, ENVELOPE_ROUTE_MAILDIR)) {
        qm->state = QMSG_IDLE;
        return;
    }
    struct envelope *env = qm->env;
    struct deliver_job *job = &qm->job;
    bool needs_worker = false;
    qm->state = QMSG_DELIVERING;
    memset(job->outcome, 0, env->nrcpt);
    for (size_t i = 0; i < env->nrcpt; i++) {
        if (env->rcpt[i].state != ENVELOPE_PENDING || env->rcpt[i].route != ENVELOPE_ROUTE_MAILDIR)
            continue;
        char why[300] = "";
        enum deliver_outcome o =
            maildir_deliver(env, i, q->msg_dirfd, q->hostname, false, why, sizeof(why));
        if (o == DELIVER_NOT_TRIED) {
            needs_worker = true;
            continue;
        }
        job->outcome[i] = (uint8_t)o;
        if (o != DELIVER_OK)
            deliver_log(env, i, o, why);
    }
    if (needs_worker) {
        deliverer_submit(q->deliverer, job);
    } else {
        job->next = NULL;
        collect_results(q, job);
    }
}

/* log_waiting_relay - remote recipients wait for the outbound-delivery work */
static void log_waiting_relay(const struct envelope *env)
{
    for (size_t i = 0; i < env->nrcpt; i++) {
        const struct envelope_rcpt *r = &env->rcpt[i];
        if (r->state == ENVELOPE_PENDING && r->route == ENVELOPE_ROUTE_RELAY)
            log_info("%s: to=<%s>, relay=none, status=deferred (kept in the queue: this pigeond "
                     "does not deliver to other servers yet)",
                     env->id, r->address);
    }
}

/* add_id_record - a DONE or GONE record */
static void add_id_record(struct queue *q, enum journal_type type, const char *id, uint32_t rcpt,
                          uint8_t state)
{
    uint8_t p[QUEUE_ID_LEN + 5];
    size_t n = QUEUE_ID_LEN;
    memcpy(p, id, QUEUE_ID_LEN);
    if (type == JOURNAL_DONE) {
        p[n++] = (uint8_t)rcpt;
        p[n++] = (uint8_t)(rcpt >> 8);
        p[n++] = (uint8_t)(rcpt >> 16);
        p[n++] = (uint8_t)(rcpt >> 24);
        p[n++] = state;
    }
    if (journal_add(q->journal, type, p, n) < 0)
        log_err("%s: cannot record delivery progress in the journal", id);
}

/* retry_delay - seconds to wait after the n-th failed attempt */
static time_t retry_delay(unsigned attempts)
{
    time_t d = RETRY_FIRST;
    for (unsigned i = 1; i < attempts && d < RETRY_MAX; i++)
        d *= 2;
    return d < RETRY_MAX ? d : RETRY_MAX;
}

/*
 * finalize_job - record what a delivery did, once it is durable: states,
 * log lines, journal records; a finished message loses its content file
 * and leaves the queue.
 */
static void finalize_job(struct queue *q, struct deliver_job *job)
{
    struct qmsg *qm = job->owner;
    struct envelope *env = qm->env;
    bool deferred = false;
    for (size_t i = 0; i < env->nrcpt; i++) {
        switch ((enum deliver_outcome)job->outcome[i]) {
        case DELIVER_OK:
            env->rcpt[i].state = ENVELOPE_DELIVERED;
            atomic_fetch_add(&q->delivered, 1);
            deliver_log(env, i, DELIVER_OK, NULL);
            break;
        case DELIVER_FAIL:
            /* Bounces come with outbound delivery; until then the log says it. */
            env->rcpt[i].state = ENVELOPE_FAILED;
            log_warn("%s: to=<%s>: delivery failed for good; no bounce is sent yet", env->id,
                     env->rcpt[i].address);
            break;
        case DELIVER_DEFER:
            deferred = true;
            break;
        case DELIVER_NOT_TRIED:
            break;
        }
    }
    if (envelope_pending(env) == 0) {
        /* Content goes before the GONE record: see recover() for why that order. */
        if (unlinkat(q->msg_dirfd, env->id, 0) < 0 && errno != ENOENT)
            log_warn("%s: cannot remove the content file: %s", env->id, strerror(errno));
        add_id_record(q, JOURNAL_GONE, env->id, 0, 0);
        log_info("%s: removed", env->id);
        live_remove(q, qm);
        qmsg_free(qm);
        return;
    }
    for (size_t i = 0; i < env->nrcpt; i++)
        if (job->outcome[i] == DELIVER_OK || job->outcome[i] == DELIVER_FAIL)
            add_id_record(q, JOURNAL_DONE, env->id, (uint32_t)i, env->rcpt[i].state);
    if (deferred) {
        qm->attempts++;
        qm->next_try = now_mono() + retry_delay(qm->attempts);
        retry_push(q, qm);
    } else {
        qm->state = QMSG_IDLE;
    }
}

/* job_linked - did the job put anything into a mailbox that still needs a sync? */
static bool job_linked(const struct deliver_job *job)
{
    for (size_t i = 0; i < job->env->nrcpt; i++)
        if (job->outcome[i] == DELIVER_OK)
            return true;
    return false;
}

/* collect_results - jobs back from the workers: those with deliveries wait for the sync */
static void collect_results(struct queue *q, struct deliver_job *jobs)
{
    while (jobs != NULL) {
        struct deliver_job *job = jobs;
        jobs = job->next;
        job->next = NULL;
        if (job_linked(job)) {
            if (q->unsynced == NULL)
                clock_gettime(CLOCK_MONOTONIC, &q->unsynced_since);
            *q->unsynced_tail = job;
            q->unsynced_tail = &job->next;
        } else {
            finalize_job(q, job);
        }
    }
}

/* finalize_unsynced - the sync is done (or failed): settle the delivered jobs */
static void finalize_unsynced(struct queue *q, int sync_error)
{
    struct deliver_job *job = q->unsynced;
    q->unsynced = NULL;
    q->unsynced_tail = &q->unsynced;
    while (job != NULL) {
        struct deliver_job *next = job->next;
        if (sync_error) {
            /* Not known to be durable: try again; the retry finds the links in
             * place (EEXIST) and counts them delivered then. */
            char why[128];
            snprintf(why, sizeof(why), "sync after delivery failed: %s", strerror(sync_error));
            for (size_t i = 0; i < job->env->nrcpt; i++) {
                if (job->outcome[i] == DELIVER_OK) {
                    job->outcome[i] = DELIVER_DEFER;
                    deliver_log(job->env, i, DELIVER_DEFER, why);
                }
            }
        }
        finalize_job(q, job);
        job = next;
    }
}

/* retry_due - dispatch the deferred messages whose time has come */
static void retry_due(struct queue *q)
{
    time_t now = now_mono();
    while (q->nretry > 0 && q->retry[0]->next_try <= now)
        dispatch(q, retry_pop(q));
}

/* deliver_done - a worker finished a batch (worker thread) */
static void deliver_done(void *ctx, struct deliver_job *jobs)
{
    struct queue *q = ctx;
    struct item *it = item_new(ITEM_DELIVERED, NULL);
    if (it == NULL)
        fatal("queue: out of memory reporting deliveries");
    it->jobs = jobs;
    post_in(q, it);
}

/* ---- writing and committing ------------------------------------------------------ */

/* write_content - append a chunk to the message's content file */
static void write_content(struct queue *q, struct queue_msg *m, const struct buf *data)
{
    if (m->error)
        return;
    if (m->fd < 0) {
        m->fd = openat(q->msg_dirfd, m->id, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        if (m->fd < 0) {
            m->error = errno;
            return;
        }
    }
    size_t done = 0;
    while (done < data->len) {
        ssize_t w = write(m->fd, data->data + done, data->len - done);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            m->error = w < 0 ? errno : EIO;
            return;
        }
        done += (size_t)w;
    }
    m->written += data->len;
}

/* discard_content - close and remove a message's content file */
static void discard_content(struct queue *q, struct queue_msg *m)
{
    if (m->fd >= 0) {
        close(m->fd);
        m->fd = -1;
        if (unlinkat(q->msg_dirfd, m->id, 0) < 0 && errno != ENOENT)
            log_err("%s: cannot remove an unfinished message: %s", m->id, strerror(errno));
    }
}

/* prepare_commit - finish the content file and frame the envelope; -1 with it->error */
static int prepare_commit(struct queue *q, struct item *it)
{
    struct queue_msg *m = it->m;
    write_content(q, m, &it->data);
    buf_free(&it->data);
    if (m->error == 0 && m->fd < 0)
        m->error = EINVAL; /* no content at all: a session bug */
    if (m->error == 0) {
        it->env->size = m->written;
        it->qm = qmsg_new(it->env);
        if (it->qm == NULL)
            m->error = ENOMEM;
        else
            it->env = NULL;
    }
    if (m->error == 0 && journal_add_envelope(q->journal, it->qm->env, &it->qm->encoded_len) < 0)
        m->error = ENOMEM;
    if (m->error != 0) {
        discard_content(q, m);
        if (it->qm) {
            qmsg_free(it->qm);
            it->qm = NULL;
        }
        it->error = m->error;
        return -1;
    }
    if (q->set.sync == QUEUE_SYNC_SYNCFS) {
        close(m->fd);
        m->fd = -1;
    }
    return 0;
}

/* sync_maildirs - fsync mode: each new/ directory the unsynced deliveries linked into */
static int sync_maildirs(struct queue *q)
{
    const char *done[64];
    size_t ndone = 0;
    for (struct deliver_job *job = q->unsynced; job != NULL; job = job->next) {
        for (size_t i = 0; i < job->env->nrcpt; i++) {
            const char *maildir = job->env->rcpt[i].maildir;
            if (job->outcome[i] != DELIVER_OK || maildir == NULL)
                continue;
            bool seen = false;
            for (size_t k = 0; k < ndone && !seen; k++)
                seen = strcmp(done[k], maildir) == 0;
            if (seen)
                continue;
            char path[4096];
            snprintf(path, sizeof(path), "%s/new", maildir);
            int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
            if (fd < 0 || fsync(fd) < 0) {
                int e = errno;
                if (fd >= 0)
                    close(fd);
                errno = e;
                return -1;
            }
            close(fd);
            if (ndone < sizeof(done) / sizeof(done[0]))
                done[ndone++] = maildir;
        }
    }
    return 0;
}

/*
 * sync_batch - make durable, at once: the commits' content files and
 * directory entries, the journal batch, and the Maildir links of the
 * deliveries waiting for it.  -1 with errno.
 */
static int sync_batch(struct queue *q, struct item *commits)
{
    if (q->set.sync == QUEUE_SYNC_SYNCFS)
        return syncfs(q->spool_fd); /* the Maildirs share the spool's filesystem: links */
    for (struct item *it = commits; it != NULL; it = it->next)
        if (it->m->fd >= 0 && fdatasync(it->m->fd) < 0)
            return -1;
    if (commits != NULL && fsync(q->msg_dirfd) < 0)
        return -1;
    if (sync_maildirs(q) < 0)
        return -1;
    return journal_datasync(q->journal);
}

/*
 * commit_batch - one write, one sync; then a 250 for every message of the
 * batch, and the deliveries that waited for the sync are settled.
 */
static void commit_batch(struct queue *q, struct item *commits)
{
    int err = 0;
    size_t n = 0;
    if (journal_write(q->journal) < 0 || sync_batch(q, commits) < 0)
        err = errno ? errno : EIO;
    else
        atomic_fetch_add(&q->syncs, 1);
    finalize_unsynced(q, err);

    while (commits != NULL) {
        struct item *it = commits;
        commits = it->next;
        struct queue_msg *m = it->m;
        if (m->fd >= 0) {
            close(m->fd);
            m->fd = -1;
        }
        if (err) {
            /* The client gets a 4xx and will send again: forget this copy. */
            if (unlinkat(q->msg_dirfd, m->id, 0) < 0 && errno != ENOENT)
                log_err("%s: cannot remove: %s", m->id, strerror(errno));
            add_id_record(q, JOURNAL_GONE, m->id, 0, 0);
            qmsg_free(it->qm);
            it->qm = NULL;
            it->error = err;
            log_err("%s: cannot make the message durable: %s", m->id, strerror(err));
            post_out(q, it);
            continue;
        }
        struct qmsg *qm = it->qm;
        it->qm = NULL;
        n++;
        live_add(q, qm);
        log_info("%s: size=%llu, nrcpt=%zu (queued)", qm->env->id,
                 (unsigned long long)qm->env->size, qm->env->nrcpt);
        post_out(q, it);
        log_waiting_relay(qm->env);
        dispatch(q, qm);
    }
    atomic_fetch_add(&q->committed, n);
}

/* maybe_rotate - start a new journal segment holding only the live envelopes */
static void maybe_rotate(struct queue *q, bool force)
{
    uint64_t limit = ROTATE_MIN > 2 * q->live_bytes ? ROTATE_MIN : 2 * q->live_bytes;
    if (!force && journal_size(q->journal) < limit)
        return;
    if (journal_pending(q->journal) > 0 && journal_write(q->journal) < 0) {
        log_err("queue: journal write failed: %s", strerror(errno));
        return;
    }
    if (journal_rotate(q->journal) < 0) {
        log_err("queue: cannot start a new journal segment: %s", strerror(errno));
        return;
    }
    size_t bytes = 0;
    for (struct qmsg *qm = q->live; qm != NULL; qm = qm->next) {
        if (journal_add_envelope(q->journal, qm->env, &qm->encoded_len) < 0) {
            log_err("queue: cannot copy %s into the new journal segment", qm->env->id);
            return; /* the old segments stay: nothing is lost */
        }
        bytes += qm->encoded_len;
    }
    q->live_bytes = bytes;
    if (journal_write(q->journal) < 0 ||
        (q->set.sync == QUEUE_SYNC_SYNCFS ? syncfs(q->spool_fd) : journal_datasync(q->journal)) <
            0) {
        log_err("queue: cannot make the new journal segment durable: %s", strerror(errno));
        return;
    }
    journal_drop_old(q->journal);
}

/* maybe_log_stats - the group commit figures, once a minute while busy */
static void maybe_log_stats(struct queue *q, bool now)
{
    time_t t = now_mono();
    uint64_t committed = atomic_load(&q->committed);
    if (!now && (t - q->last_stats < STATS_INTERVAL || committed == q->logged_committed))
        return;
    q->last_stats = t;
    q->logged_committed = committed;
    uint64_t syncs = atomic_load(&q->syncs);
    log_info("queue: %llu messages committed in %llu syncs (%.2f messages per sync), "
             "%llu recipients delivered, %llu messages in the queue",
             (unsigned long long)committed, (unsigned long long)syncs,
             syncs ? (double)committed / (double)syncs : 0.0,
             (unsigned long long)atomic_load(&q->delivered),
             (unsigned long long)atomic_load(&q->queued));
}

/* unsynced_age_ms - how long the oldest delivery has waited for a sync */
static long unsynced_age_ms(const struct queue *q)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (now.tv_sec - q->unsynced_since.tv_sec) * 1000L +
           (now.tv_nsec - q->unsynced_since.tv_nsec) / 1000000L;
}

/* deadline_in - a CLOCK_REALTIME deadline for pthread_cond_timedwait, ms from now */
static struct timespec deadline_in(long ms)
{
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    t.tv_sec += ms / 1000;
    t.tv_nsec += (ms % 1000) * 1000000L;
    if (t.tv_nsec >= 1000000000L) {
        t.tv_sec++;
        t.tv_nsec -= 1000000000L;
    }
    return t;
}

/*
 * take_inbox - wait for work and take all of it.  Deliveries waiting for a
 * sync wait DELIVERY_SYNC_WAIT_MS at most for the next commit's sync to
 * carry them, so under load delivering costs no sync of its own; a retry
 * that comes due also ends the wait.
 */
static struct item *take_inbox(struct queue *q)
{
    pthread_mutex_lock(&q->lock);
    while (q->in_head == NULL) {
        struct timespec deadline;
        if (q->unsynced != NULL) {
            long left = DELIVERY_SYNC_WAIT_MS - unsynced_age_ms(q);
            if (left <= 0)
                break;
            deadline = deadline_in(left);
        } else if (q->nretry > 0) {
            time_t wait = q->retry[0]->next_try - now_mono();
            if (wait <= 0)
                break;
            deadline = deadline_in(1000L * (wait > STATS_INTERVAL ? STATS_INTERVAL : wait));
        } else {
            pthread_cond_wait(&q->cond, &q->lock);
            continue;
        }
        if (pthread_cond_timedwait(&q->cond, &q->lock, &deadline) == ETIMEDOUT)
            break;
    }
    struct item *items = q->in_head;
    q->in_head = q->in_tail = NULL;
    pthread_mutex_unlock(&q->lock);
    return items;
}

/* handle_items - one round of work (final: the last one, at shutdown);
 * returns true when told to stop */
static bool handle_items(struct queue *q, struct item *items, bool final)
{
    struct item *commits = NULL, **ctail = &commits;
    bool stop = false;

    while (items != NULL) {
        struct item *it = items;
        items = it->next;
        it->next = NULL;
        switch (it->kind) {
        case ITEM_CHUNK:
            write_content(q, it->m, &it->data);
            it->error = it->m->error;
            buf_free(&it->data);
            post_out(q, it);
            break;
        case ITEM_COMMIT:
            if (prepare_commit(q, it) == 0) {
                *ctail = it;
                ctail = &it->next;
            } else {
                post_out(q, it);
            }
            break;
        case ITEM_ABORT:
            discard_content(q, it->m);
            post_out(q, it);
            break;
        case ITEM_DELIVERED:
            collect_results(q, it->jobs);
            item_free(it);
            break;
        case ITEM_STOP:
            stop = true;
            item_free(it);
            break;
        }
    }
    /* Deliveries ride on a commit's sync; alone, only once they have waited
     * long enough for one (or when stopping). */
    if (commits != NULL ||
        (q->unsynced != NULL && (stop || final || unsynced_age_ms(q) >= DELIVERY_SYNC_WAIT_MS)))
        commit_batch(q, commits);
    /* Records made since (delivery progress) go to the file now, unsynced:
     * a later sync covers them, and until then redelivery is idempotent. */
    if (journal_pending(q->journal) > 0 && journal_write(q->journal) < 0)
        log_err("queue: journal write failed: %s", strerror(errno));
    return stop;
}

/* queue_main - the queue manager thread */
static void *queue_main(void *arg)
{
    struct queue *q = arg;
    bool stop = false;
    log_buffered(true);
    while (!stop) {
        log_flush(); /* before sleeping in take_inbox */
        stop = handle_items(q, take_inbox(q), false);
        if (!stop)
            retry_due(q);
        maybe_rotate(q, false);
        maybe_log_stats(q, false);
    }
    /* Let the workers finish what they hold and record it. */
    deliverer_stop(q->deliverer);
    q->deliverer = NULL;
    pthread_mutex_lock(&q->lock);
    struct item *rest = q->in_head;
    q->in_head = q->in_tail = NULL;
    pthread_mutex_unlock(&q->lock);
    handle_items(q, rest, true); /* no waiting for a next commit now */
    maybe_log_stats(q, true);
    log_buffered(false);
    return NULL;
}

/* ---- the event loop side ------------------------------------------------------------ */

/* msg_free - release a finished message handle (loop thread) */
static void msg_free(struct queue_msg *m)
{
    buf_free(&m->stage);
    free(m);
}

/* on_wake - the queue thread has news for the loop */
static void on_wake(evutil_socket_t fd, short what, void *arg)
{
    struct queue *q = arg;
    uint64_t v;
    (void)what;
    if (read(fd, &v, sizeof(v)) < 0 && errno != EAGAIN)
        log_err("queue: eventfd read: %s", strerror(errno));

    pthread_mutex_lock(&q->out_lock);
    struct item *items = q->out_head;
    q->out_head = q->out_tail = NULL;
    pthread_mutex_unlock(&q->out_lock);

    while (items != NULL) {
        struct item *it = items;
        items = it->next;
        struct queue_msg *m = it->m;
        switch (it->kind) {
        case ITEM_CHUNK:
            m->inflight--;
            if (it->error)
                m->failed = true;
            if (!m->detached && !m->finished)
                m->cb(m->arg, QUEUE_MSG_WRITTEN, it->error);
            break;
        case ITEM_COMMIT:
            if (!m->detached)
                m->cb(m->arg, QUEUE_MSG_COMMITTED, it->error);
            msg_free(m);
            break;
        case ITEM_ABORT:
            msg_free(m);
            break;
        case ITEM_DELIVERED:
        case ITEM_STOP:
            break;
        }
        item_free(it);
    }
}

/* queue_msg_new - a message about to be received */
struct queue_msg *queue_msg_new(struct queue *q, const char *id, queue_msg_cb cb, void *arg)
{
    struct queue_msg *m = calloc(1, sizeof(*m));
    if (m == NULL)
        return NULL;
    m->q = q;
    memcpy(m->id, id, QUEUE_ID_LEN + 1);
    m->cb = cb;
    m->arg = arg;
    m->fd = -1;
    buf_init(&m->stage, CHUNK_SIZE);
    return m;
}

/* send_chunk - hand the full stage to the queue thread */
static void send_chunk(struct queue_msg *m)
{
    struct item *it = item_new(ITEM_CHUNK, m);
    if (it == NULL) {
        m->failed = true;
        return;
    }
    it->data = m->stage;
    buf_init(&m->stage, CHUNK_SIZE);
    m->inflight++;
    post_in(m->q, it);
}

/* queue_msg_write - content bytes */
int queue_msg_write(struct queue_msg *m, const void *p, size_t n)
{
    const uint8_t *s = p;
    while (n > 0 && !m->failed) {
        size_t room = CHUNK_SIZE - m->stage.len;
        size_t k = n < room ? n : room;
        if (buf_append(&m->stage, s, k) < 0) {
            m->failed = true;
            break;
        }
        s += k;
        n -= k;
        if (m->stage.len == CHUNK_SIZE)
            send_chunk(m);
    }
    return m->failed ? -1 : 0;
}

/* queue_msg_congested - enough is waiting to be written */
bool queue_msg_congested(const struct queue_msg *m)
{
    return m->inflight >= CHUNKS_IN_FLIGHT;
}

/* queue_msg_commit - make the message durable */
void queue_msg_commit(struct queue_msg *m, struct envelope *env)
{
    struct item *it = item_new(ITEM_COMMIT, m);
    if (it == NULL) {
        /* Cannot even ask: report it the way the queue thread would. */
        envelope_free(env);
        free(env);
        m->finished = true;
        if (!m->detached)
            m->cb(m->arg, QUEUE_MSG_COMMITTED, ENOMEM);
        m->detached = true;
        queue_msg_abort(m);
        return;
    }
    it->data = m->stage;
    buf_init(&m->stage, CHUNK_SIZE);
    it->env = env;
    m->finished = true;
    post_in(m->q, it);
}

/* queue_msg_abort - forget the message */
void queue_msg_abort(struct queue_msg *m)
{
    m->finished = true;
    m->detached = true;
    buf_free(&m->stage);
    struct item *it = item_new(ITEM_ABORT, m);
    if (it == NULL) {
        /* Leave it to the recovery: an unfinished content file is removed on start. */
        log_err("%s: out of memory abandoning a message", m->id);
        return;
    }
    post_in(m->q, it);
}

/* queue_msg_detach - the session is gone */
void queue_msg_detach(struct queue_msg *m)
{
    m->detached = true;
}

/* queue_full - the queue holds max_messages already */
bool queue_full(const struct queue *q)
{
    return q->set.max_messages > 0 && atomic_load(&q->queued) >= q->set.max_messages;
}

/* ---- recovery ------------------------------------------------------------------------ */

/* A map from queue id to message, used only while the journal is replayed. */
struct recovery {
    struct qmsg **slots;
    size_t cap, used;
    bool damaged;
};

/* id_hash - FNV-1a of an id */
static size_t id_hash(const char *id)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < QUEUE_ID_LEN; i++)
        h = (h ^ (uint8_t)id[i]) * 1099511628211ull;
    return (size_t)h;
}

/* recovery_slot - where id is, or where it would go */
static struct qmsg **recovery_slot(struct recovery *r, const char *id)
{
    size_t i = id_hash(id) & (r->cap - 1);
    while (r->slots[i] != NULL && memcmp(r->slots[i]->env->id, id, QUEUE_ID_LEN) != 0)
        i = (i + 1) & (r->cap - 1);
    return &r->slots[i];
}

/* recovery_grow - keep the map at most half full */
static int recovery_grow(struct recovery *r)
{
    if (r->cap != 0 && (r->used + 1) * 2 <= r->cap)
        return 0;
    size_t cap = r->cap ? r->cap * 2 : 1024;
    struct qmsg **old = r->slots;
    size_t oldcap = r->cap;
    r->slots = calloc(cap, sizeof(*r->slots));
    if (r->slots == NULL) {
        r->slots = old;
        return -1;
    }
    r->cap = cap;
    for (size_t i = 0; i < oldcap; i++)
        if (old[i] != NULL)
            *recovery_slot(r, old[i]->env->id) = old[i];
    free(old);
    return 0;
}

/* recovery_record - one journal record, in order */
static void recovery_record(void *ctx, enum journal_type type, const uint8_t *p, size_t n)
{
    struct recovery *r = ctx;
    if (type == JOURNAL_MSG) {
        struct envelope *env = calloc(1, sizeof(*env));
        char err[200];
        if (env == NULL || envelope_decode(p, n, env, err, sizeof(err)) < 0) {
            log_err("queue: journal: an envelope cannot be read (%s); it is skipped",
                    env ? err : "out of memory");
            r->damaged = true;
            if (env) {
                envelope_free(env);
                free(env);
            }
            return;
        }
        struct qmsg *qm = qmsg_new(env);
        if (qm == NULL || recovery_grow(r) < 0)
            fatal("queue: out of memory during recovery");
        qm->encoded_len = n + JOURNAL_RECORD_OVERHEAD;
        struct qmsg **slot = recovery_slot(r, env->id);
        if (*slot != NULL) {
            qmsg_free(*slot); /* a later copy (written by a rotation) replaces it */
        } else {
            r->used++;
        }
        *slot = qm;
        return;
    }
    if (n < QUEUE_ID_LEN || r->cap == 0)
        return;
    struct qmsg *qm = *recovery_slot(r, (const char *)p);
    if (qm == NULL)
        return; /* its MSG record was in a segment already removed */
    if (type == JOURNAL_GONE) {
        qm->gone = true;
    } else if (type == JOURNAL_DONE && n == QUEUE_ID_LEN + 5) {
        uint32_t i =
            (uint32_t)p[14] | (uint32_t)p[15] << 8 | (uint32_t)p[16] << 16 | (uint32_t)p[17] << 24;
        if (i < qm->env->nrcpt && p[18] <= ENVELOPE_FAILED)
            qm->env->rcpt[i].state = (enum envelope_state)p[18];
    }
}

/* recovery_damaged - a journal segment had damage in the middle */
static void recovery_damaged(void *ctx, const char *segment, const char *copy, size_t bad)
{
    struct recovery *r = ctx;
    r->damaged = true;
    log_err("queue: journal %s is damaged (%zu bad octets); a copy is in %s; the records "
            "around the damage are used",
            segment, bad, copy);
}

/* quarantine - move msg/<id> into quarantine/ */
static void quarantine(struct queue *q, const char *id, const char *why)
{
    if (renameat(q->msg_dirfd, id, q->quarantine_fd, id) < 0)
        log_err("%s: %s; moving it to quarantine failed: %s", id, why, strerror(errno));
    else
        log_err("%s: %s; the content file is now in %s/quarantine/%s", id, why, q->dir, id);
}

/* scan_content - match msg/ against the journal */
static void scan_content(struct queue *q, struct recovery *r)
{
    int fd = dup(q->msg_dirfd);
    DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
    if (d == NULL) {
        if (fd >= 0)
            close(fd);
        fatal("queue: cannot list %s/msg: %s", q->dir, strerror(errno));
    }
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        const char *name = de->d_name;
        if (name[0] == '.')
            continue;
        size_t len = strlen(name);
        if (id_time(name, len) == 0) {
            log_warn("queue: %s/msg/%s is not a queue file; left alone", q->dir, name);
            continue;
        }
        uint64_t t = id_time(name, len);
        if (t > q->id_last_us)
            q->id_last_us = t;
        struct qmsg *qm = r->cap ? *recovery_slot(r, name) : NULL;
        if (qm == NULL || qm->gone) {
            if (r->damaged) {
                quarantine(q, name, "content without a readable envelope");
            } else {
                /* Never acknowledged: its envelope was not committed. */
                if (unlinkat(q->msg_dirfd, name, 0) == 0)
                    log_info("%s: removed an unfinished message", name);
            }
            continue;
        }
        struct stat st;
        if (fstatat(q->msg_dirfd, name, &st, 0) < 0 || (uint64_t)st.st_size != qm->env->size) {
            char why[128];
            snprintf(why, sizeof(why), "content is %lld octets, its envelope says %llu",
                     (long long)st.st_size, (unsigned long long)qm->env->size);
            quarantine(q, name, why);
            qm->gone = true;
            continue;
        }
        qm->has_content = true;
    }
    closedir(d);
}

/* recover - replay the journal and rebuild the live list */
static int recover(struct queue *q, char *err, size_t errsize)
{
    struct recovery r = {0};
    struct journal_reader reader = {&r, recovery_record, recovery_damaged};
    q->journal = journal_open(q->dir, &reader, err, errsize);
    if (q->journal == NULL) {
        free(r.slots);
        return -1;
    }
    scan_content(q, &r);

    size_t kept = 0;
    for (size_t i = 0; i < r.cap; i++) {
        struct qmsg *qm = r.slots[i];
        if (qm == NULL)
            continue;
        uint64_t t = id_time(qm->env->id, QUEUE_ID_LEN);
        if (t > q->id_last_us)
            q->id_last_us = t;
        if (qm->gone || envelope_pending(qm->env) == 0) {
            qmsg_free(qm);
            continue;
        }
        if (!qm->has_content) {
            /* Content is removed only after delivery, so this message was
             * delivered and the crash came before its GONE record. */
            log_info("%s: content file already removed: it was delivered before the restart",
                     qm->env->id);
            qmsg_free(qm);
            continue;
        }
        live_add(q, qm);
        kept++;
    }
    free(r.slots);
    /* A fresh segment with only what is still in the queue. */
    maybe_rotate(q, true);
    log_info("queue: recovered %zu messages from %s", kept, q->dir);
    return 0;
}

/* make_dir - create a spool directory if it is missing */
static int make_dir(const char *base, const char *sub, char *err, size_t errsize)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s%s%s", base, sub[0] ? "/" : "", sub);
    if (mkdir(path, 0700) < 0 && errno != EEXIST) {
        snprintf(err, errsize, "cannot create %s: %s", path, strerror(errno));
        return -1;
    }
    return 0;
}

/* queue_open - recover the queue and start its threads */
struct queue *queue_open(const struct queue_settings *settings, struct event_base *base, char *err,
                         size_t errsize)
{
    struct queue *q = calloc(1, sizeof(*q));
    if (q == NULL) {
        snprintf(err, errsize, "out of memory");
        return NULL;
    }
    q->set = *settings;
    q->dir = strdup(settings->dir);
    q->hostname = strdup(settings->hostname);
    q->set.dir = q->dir;
    q->set.hostname = q->hostname;
    q->spool_fd = q->msg_dirfd = q->quarantine_fd = q->wake_fd = -1;
    pthread_mutex_init(&q->lock, NULL);
    pthread_cond_init(&q->cond, NULL);
    pthread_mutex_init(&q->out_lock, NULL);
    q->unsynced_tail = &q->unsynced;
    q->last_stats = now_mono();

    if (q->dir == NULL || q->hostname == NULL) {
        snprintf(err, errsize, "out of memory");
        goto fail;
    }
    if (make_dir(q->dir, "", err, errsize) < 0 || make_dir(q->dir, "msg", err, errsize) < 0 ||
        make_dir(q->dir, "journal", err, errsize) < 0 ||
        make_dir(q->dir, "quarantine", err, errsize) < 0)
        goto fail;
    char path[4096];
    q->spool_fd = open(q->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    snprintf(path, sizeof(path), "%s/msg", q->dir);
    q->msg_dirfd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    snprintf(path, sizeof(path), "%s/quarantine", q->dir);
    q->quarantine_fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    q->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (q->spool_fd < 0 || q->msg_dirfd < 0 || q->quarantine_fd < 0 || q->wake_fd < 0) {
        snprintf(err, errsize, "cannot open the queue in %s: %s", q->dir, strerror(errno));
        goto fail;
    }
    if (recover(q, err, errsize) < 0)
        goto fail;

    struct deliver_settings ds = {
        .msg_dirfd = q->msg_dirfd,
        .hostname = q->hostname,
        .workers = q->set.workers,
    };
    q->deliverer = deliverer_start(&ds, deliver_done, q);
    q->wake_ev = event_new(base, q->wake_fd, EV_READ | EV_PERSIST, on_wake, q);
    if (q->deliverer == NULL || q->wake_ev == NULL || event_add(q->wake_ev, NULL) < 0) {
        snprintf(err, errsize, "cannot start the queue");
        goto fail;
    }
    for (struct qmsg *qm = q->live; qm != NULL; qm = qm->next)
        dispatch(q, qm);
    if (pthread_create(&q->thread, NULL, queue_main, q) != 0) {
        snprintf(err, errsize, "cannot start the queue thread: %s", strerror(errno));
        goto fail;
    }
    q->thread_started = true;
    return q;
fail:
    queue_close(q);
    return NULL;
}

/* queue_close - finish what is in progress and stop the threads */
void queue_close(struct queue *q)
{
    if (q == NULL)
        return;
    if (q->thread_started) {
        struct item *stop = item_new(ITEM_STOP, NULL);
        if (stop == NULL)
            fatal("queue: out of memory stopping");
        post_in(q, stop);
        pthread_join(q->thread, NULL);
    } else {
        deliverer_stop(q->deliverer);
    }
    /* Completions the loop will never see: free them and their handles. */
    struct item *it = q->out_head;
    while (it != NULL) {
        struct item *next = it->next;
        if (it->kind == ITEM_COMMIT || it->kind == ITEM_ABORT)
            msg_free(it->m);
        item_free(it);
        it = next;
    }
    while (q->live != NULL) {
        struct qmsg *qm = q->live;
        q->live = qm->next;
        qmsg_free(qm);
    }
    if (q->wake_ev)
        event_free(q->wake_ev);
    if (q->journal)
        journal_close(q->journal);
    int fds[] = {q->spool_fd, q->msg_dirfd, q->quarantine_fd, q->wake_fd};
    for (size_t i = 0; i < 4; i++)
        if (fds[i] >= 0)
            close(fds[i]);
    free(q->retry);
    free(q->dir);
    free(q->hostname);
    pthread_mutex_destroy(&q->lock);
    pthread_cond_destroy(&q->cond);
    pthread_mutex_destroy(&q->out_lock);
    free(q);
}
