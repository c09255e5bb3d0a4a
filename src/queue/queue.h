/*
 * queue.h - the mail queue: where a message lives from the 250 after DATA
 * until its last recipient is delivered.
 *
 * A message is two things on disk below the spool directory:
 *
 *   msg/<id>                 the content, exactly as a mailbox receives it
 *                            (Return-Path:, Received:, then the message)
 *   journal/<seq>.journal    records of envelopes and of delivery progress
 *                            (journal.h), shared by all messages
 *
 * One thread, the queue manager, owns both.  Sessions on the event loop hand
 * it content in chunks and, at the end of DATA, the envelope; it creates the
 * content files, appends the envelopes to the journal and makes a whole
 * batch durable with one sync (group commit: every message that finished
 * while the previous sync ran shares the next one).  Only then does it tell
 * each session, through the event loop, to send its 250.  It then hands the
 * messages to the delivery workers (src/deliver) and records what they did.
 *
 * On start the journal is replayed, content files are checked against it,
 * anything damaged is moved to quarantine/ and logged, and every message
 * that was acknowledged and not yet delivered is delivered.
 *
 * Thread rules: queue_open/queue_close and every queue_msg_* function run on
 * the event loop thread; callbacks arrive there too.
 */
#ifndef PIGEON_QUEUE_H
#define PIGEON_QUEUE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config/config.h"
#include "queue/envelope.h"

struct event_base;
struct queue;
struct queue_msg;

struct queue_settings {
    const char *dir;       /* the spool directory, absolute */
    enum queue_sync sync;  /* how a batch is made durable */
    unsigned workers;      /* delivery threads */
    uint64_t max_messages; /* refuse new mail beyond this many queued; 0 = no limit */
    const char *hostname;  /* for Maildir file names */
};

enum queue_msg_event {
    QUEUE_MSG_WRITTEN,   /* a chunk reached the file: the session may send more */
    QUEUE_MSG_COMMITTED, /* error 0: durable, send 250; else the errno that stopped it */
};

typedef void (*queue_msg_cb)(void *arg, enum queue_msg_event ev, int error);

/* queue_open - recover the queue in dir and start the queue and delivery threads */
struct queue *queue_open(const struct queue_settings *settings, struct event_base *base, char *err,
                         size_t errsize);

/* queue_close - finish what is in progress and stop the threads */
void queue_close(struct queue *q);

/* queue_full - the queue holds max_messages already */
bool queue_full(const struct queue *q);

/* queue_new_id - a new unique, time-sortable queue id (QUEUE_ID_LEN characters) */
void queue_new_id(struct queue *q, char id[QUEUE_ID_LEN + 1]);

/* queue_msg_new - a message about to be received, with the id from queue_new_id() */
struct queue_msg *queue_msg_new(struct queue *q, const char *id, queue_msg_cb cb, void *arg);

/* queue_msg_write - content bytes; -1 once writing has failed (the commit will say why) */
int queue_msg_write(struct queue_msg *m, const void *p, size_t n);

/* queue_msg_congested - enough is waiting to be written: stop reading the client */
bool queue_msg_congested(const struct queue_msg *m);

/* queue_msg_commit - the message is complete: make it durable (QUEUE_MSG_COMMITTED
 * follows).  The queue takes env (allocated with malloc) and its contents. */
void queue_msg_commit(struct queue_msg *m, struct envelope *env);

/* queue_msg_abort - forget the message; no more callbacks */
void queue_msg_abort(struct queue_msg *m);

/* queue_msg_detach - the session is gone: the commit goes on, with no callback */
void queue_msg_detach(struct queue_msg *m);

#endif
