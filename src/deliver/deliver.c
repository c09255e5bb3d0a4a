/*
 * deliver.c - the delivery worker threads (see deliver.h).
 *
 * A worker takes every job waiting (up to DELIVER_BATCH), so under load one
 * sync covers many deliveries, the same group commit the queue uses for
 * accepting mail.  Deliveries are logged only after that sync: a "sent" in
 * the log means the message is on stable storage in the mailbox.
 */
#include "deliver.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "deliver/maildir.h"
#include "lib/log.h"

#define DELIVER_BATCH 128

struct deliverer {
    struct deliver_settings set;
    char *hostname;
    void (*done)(void *ctx, struct deliver_job *jobs);
    void *ctx;

    pthread_mutex_t lock;
    pthread_cond_t cond;
    struct deliver_job *head, *tail;
    bool stopping;

    pthread_t *threads;
    unsigned nthreads;
};

/* log_outcome - one line per recipient, Postfix style */
static void log_outcome(const struct envelope *env, size_t i, enum deliver_outcome outcome,
                        const char *why)
{
    const struct envelope_rcpt *r = &env->rcpt[i];
    long long delay = (long long)time(NULL) - env->arrival;
    char orig[600] = "";
    if (r->orig != NULL)
        snprintf(orig, sizeof(orig), ", orig_to=<%s>", r->orig);
    if (outcome == DELIVER_OK)
        log_info("%s: to=<%s>%s, relay=maildir, delay=%lld, status=sent (delivered to %s)", env->id,
                 r->address, orig, delay < 0 ? 0 : delay, r->maildir);
    else
        log_info("%s: to=<%s>%s, relay=maildir, delay=%lld, status=%s (%s)", env->id, r->address,
                 orig, delay < 0 ? 0 : delay, outcome == DELIVER_FAIL ? "bounced" : "deferred",
                 why);
}

/* job_finished - no recipient of the job's message is left to deliver */
static bool job_finished(const struct deliver_job *job)
{
    const struct envelope *env = job->env;
    for (size_t i = 0; i < env->nrcpt; i++) {
        if (env->rcpt[i].state != ENVELOPE_PENDING)
            continue;
        if (job->outcome[i] != DELIVER_OK && job->outcome[i] != DELIVER_FAIL)
            return false;
    }
    return true;
}

/* sync_batch - make the batch's links durable; -1 with errno */
static int sync_batch(struct deliverer *d, struct deliver_job *jobs)
{
    if (d->set.sync == QUEUE_SYNC_SYNCFS)
        return syncfs(d->set.spool_fd);

    /* fsync mode: each new/ directory that got a link, once. */
    const char *done[DELIVER_BATCH];
    size_t ndone = 0;
    for (struct deliver_job *job = jobs; job != NULL; job = job->next) {
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
            if (ndone < DELIVER_BATCH)
                done[ndone++] = maildir;
        }
    }
    return 0;
}

/* deliver_batch - deliver every pending local recipient of every job */
static void deliver_batch(struct deliverer *d, struct deliver_job *jobs)
{
    bool any_linked = false;

    for (struct deliver_job *job = jobs; job != NULL; job = job->next) {
        const struct envelope *env = job->env;
        for (size_t i = 0; i < env->nrcpt; i++) {
            const struct envelope_rcpt *r = &env->rcpt[i];
            if (r->state != ENVELOPE_PENDING || r->route != ENVELOPE_ROUTE_MAILDIR)
                continue;
            char why[300] = "";
            bool linked = false;
            job->outcome[i] =
                maildir_deliver(env, i, d->set.msg_dirfd, d->hostname, &linked, why, sizeof(why));
            any_linked |= linked;
            if (job->outcome[i] != DELIVER_OK)
                log_outcome(env, i, job->outcome[i], why);
        }
    }

    if (any_linked && sync_batch(d, jobs) < 0) {
        /* Not known to be durable: try again later.  The retry finds the
         * links in place and counts them delivered then. */
        int e = errno;
        for (struct deliver_job *job = jobs; job != NULL; job = job->next) {
            for (size_t i = 0; i < job->env->nrcpt; i++) {
                if (job->outcome[i] == DELIVER_OK) {
                    job->outcome[i] = DELIVER_DEFER;
                    char why[128];
                    snprintf(why, sizeof(why), "sync after delivery failed: %s", strerror(e));
                    log_outcome(job->env, i, DELIVER_DEFER, why);
                }
            }
        }
    }

    for (struct deliver_job *job = jobs; job != NULL; job = job->next) {
        for (size_t i = 0; i < job->env->nrcpt; i++)
            if (job->outcome[i] == DELIVER_OK)
                log_outcome(job->env, i, DELIVER_OK, NULL);
        if (job_finished(job)) {
            if (unlinkat(d->set.msg_dirfd, job->env->id, 0) == 0 || errno == ENOENT)
                job->content_removed = true;
            else
                log_warn("%s: cannot remove the content file: %s", job->env->id, strerror(errno));
        }
    }
}

/* worker_main - take batches of jobs until told to stop */
static void *worker_main(void *arg)
{
    struct deliverer *d = arg;
    for (;;) {
        pthread_mutex_lock(&d->lock);
        while (d->head == NULL && !d->stopping)
            pthread_cond_wait(&d->cond, &d->lock);
        if (d->head == NULL) {
            pthread_mutex_unlock(&d->lock);
            break;
        }
        struct deliver_job *jobs = d->head, *last = d->head;
        for (int n = 1; n < DELIVER_BATCH && last->next != NULL; n++)
            last = last->next;
        d->head = last->next;
        if (d->head == NULL)
            d->tail = NULL;
        last->next = NULL;
        pthread_mutex_unlock(&d->lock);

        deliver_batch(d, jobs);
        d->done(d->ctx, jobs);
    }
    return NULL;
}

/* deliverer_start - start the workers */
struct deliverer *deliverer_start(const struct deliver_settings *settings,
                                  void (*done)(void *ctx, struct deliver_job *jobs), void *ctx)
{
    struct deliverer *d = calloc(1, sizeof(*d));
    if (d == NULL)
        return NULL;
    d->set = *settings;
    d->hostname = strdup(settings->hostname);
    d->done = done;
    d->ctx = ctx;
    d->nthreads = settings->workers ? settings->workers : 1;
    d->threads = calloc(d->nthreads, sizeof(*d->threads));
    if (d->hostname == NULL || d->threads == NULL) {
        free(d->hostname);
        free(d->threads);
        free(d);
        return NULL;
    }
    pthread_mutex_init(&d->lock, NULL);
    pthread_cond_init(&d->cond, NULL);
    for (unsigned i = 0; i < d->nthreads; i++) {
        if (pthread_create(&d->threads[i], NULL, worker_main, d) != 0)
            fatal("cannot start a delivery thread: %s", strerror(errno));
    }
    return d;
}

/* deliverer_submit - queue a job for the workers */
void deliverer_submit(struct deliverer *d, struct deliver_job *job)
{
    job->next = NULL;
    pthread_mutex_lock(&d->lock);
    if (d->tail)
        d->tail->next = job;
    else
        d->head = job;
    d->tail = job;
    pthread_cond_signal(&d->cond);
    pthread_mutex_unlock(&d->lock);
}

/* deliverer_stop - finish the jobs in hand, then stop */
void deliverer_stop(struct deliverer *d)
{
    if (d == NULL)
        return;
    pthread_mutex_lock(&d->lock);
    d->stopping = true;
    pthread_cond_broadcast(&d->cond);
    pthread_mutex_unlock(&d->lock);
    for (unsigned i = 0; i < d->nthreads; i++)
        pthread_join(d->threads[i], NULL);
    pthread_mutex_destroy(&d->lock);
    pthread_cond_destroy(&d->cond);
    free(d->threads);
    free(d->hostname);
    free(d);
}
