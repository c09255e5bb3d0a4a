/*
 * deliver.c - the delivery worker threads (see deliver.h).
 *
 * A worker takes every job waiting (up to DELIVER_BATCH) and delivers them.
 * It does not sync: a Maildir link is made durable by the queue thread's
 * next sync, the same one that commits newly received mail, so accepting
 * and delivering share one sync per batch.  "sent" is logged only after it.
 */
#include "deliver.h"

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

/* deliver_log - one line per recipient, Postfix style */
void deliver_log(const struct envelope *env, size_t i, enum deliver_outcome outcome,
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

/* deliver_batch - deliver every pending local recipient of every job */
static void deliver_batch(struct deliverer *d, struct deliver_job *jobs)
{
    for (struct deliver_job *job = jobs; job != NULL; job = job->next) {
        const struct envelope *env = job->env;
        for (size_t i = 0; i < env->nrcpt; i++) {
            const struct envelope_rcpt *r = &env->rcpt[i];
            if (r->state != ENVELOPE_PENDING || r->route != ENVELOPE_ROUTE_MAILDIR ||
                job->outcome[i] != DELIVER_NOT_TRIED)
                continue; /* done already, by the queue thread's fast path */
            char why[300] = "";
            job->outcome[i] =
                maildir_deliver(env, i, d->set.msg_dirfd, d->hostname, true, why, sizeof(why));
            /* Successes are logged by the queue once they are durable. */
            if (job->outcome[i] != DELIVER_OK)
                deliver_log(env, i, job->outcome[i], why);
        }
    }
}

/* worker_main - take batches of jobs until told to stop */
static void *worker_main(void *arg)
{
    struct deliverer *d = arg;
    log_buffered(true);
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
        log_flush();
        d->done(d->ctx, jobs);
    }
    log_buffered(false);
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
            fatal("cannot start a delivery thread");
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
