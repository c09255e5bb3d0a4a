/*
 * queue.c - pigeon queue (also "mailq", "sendmail -bp"): list the messages
 * in pigeond's queue, read-only.
 *
 * The queue's truth is its journal (src/queue/journal.h): MSG records carry
 * envelopes, DONE records mark recipients delivered or failed, GONE records
 * mark messages finished.  Replaying the segments in order, as pigeond does
 * when it starts, gives the messages still queued and their pending
 * recipients.  Nothing is written, locked or moved, so it is safe while
 * pigeond runs; a segment pigeond is appending to may end in half a record,
 * which the parser recognises as a torn tail and skips.
 *
 * The output follows Postfix's mailq:
 *
 *   -Queue ID-     --Size-- ----Arrival Time---- -Sender/Recipient-------
 *   0NDUQ6J8AMH2000     412 Tue Aug  1 12:34:56  oleg@vbip.com
 *                                                somebody@example.org
 *
 *   -- 1 Kbytes in 1 Request.
 */
#include "cli/cli.h"

#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>
#include <unistd.h>

#include "config/config.h"
#include "queue/envelope.h"
#include "queue/journal.h"

/* The messages found so far, in the order their MSG records came. */
struct queue_listing {
    struct envelope **msgs;
    size_t n;
    size_t bad_records;
};

/* cli_queue_usage - the options of pigeon queue */
void cli_queue_usage(FILE *out)
{
    fprintf(out, "usage: pigeon queue [-f pigeond.conf] [-d queue-directory]\n"
                 "  -f FILE  the configuration pigeond runs with (default: the built-in one)\n"
                 "  -d DIR   the queue directory itself (instead of the configuration's)\n"
                 "A relative queue directory is taken from the current directory, as\n"
                 "pigeond takes it from the directory it was started in.\n");
}

/* find - the message with this id, or NULL */
static struct envelope **find(struct queue_listing *l, const uint8_t *id)
{
    for (size_t i = l->n; i-- > 0;) {
        if (memcmp(l->msgs[i]->id, id, QUEUE_ID_LEN) == 0)
            return &l->msgs[i];
    }
    return NULL;
}

/* drop - release a message */
static void drop(struct envelope *e)
{
    envelope_free(e);
    free(e);
}

/* on_record - one journal record, replayed as pigeond's recovery does */
static void on_record(void *ctx, enum journal_type type, const uint8_t *p, size_t n)
{
    struct queue_listing *l = ctx;
    if (type == JOURNAL_MSG) {
        struct envelope *e = calloc(1, sizeof(*e));
        char err[200];
        if (e == NULL || envelope_decode(p, n, e, err, sizeof(err)) < 0) {
            l->bad_records++;
            if (e != NULL)
                drop(e);
            return;
        }
        struct envelope **old = find(l, (const uint8_t *)e->id);
        if (old != NULL) { /* a later copy, written when a segment was rotated */
            drop(*old);
            *old = e;
            return;
        }
        struct envelope **more = realloc(l->msgs, (l->n + 1) * sizeof(*more));
        if (more == NULL) {
            l->bad_records++;
            drop(e);
            return;
        }
        l->msgs = more;
        l->msgs[l->n++] = e;
        return;
    }
    if (n < QUEUE_ID_LEN)
        return;
    struct envelope **slot = find(l, p);
    if (slot == NULL)
        return; /* its MSG record was in a segment already removed */
    if (type == JOURNAL_GONE) {
        drop(*slot);
        *slot = l->msgs[--l->n];
    } else if (type == JOURNAL_DONE && n == QUEUE_ID_LEN + 5) {
        /* DONE: id, u32 recipient index (little-endian), u8 state. */
        uint32_t i =
            (uint32_t)p[14] | (uint32_t)p[15] << 8 | (uint32_t)p[16] << 16 | (uint32_t)p[17] << 24;
        if (i < (*slot)->nrcpt && p[18] <= ENVELOPE_FAILED)
            (*slot)->rcpt[i].state = (enum envelope_state)p[18];
    }
}

/* on_damage - journal_parse_segment only reports damage through its return value */
static void on_damage(void *ctx, const char *segment, const char *copy, size_t bad)
{
    (void)ctx;
    (void)segment;
    (void)copy;
    (void)bad;
}

/* is_segment - "<16 hex digits>.journal" */
static bool is_segment(const char *name)
{
    if (strlen(name) != 16 + strlen(".journal") || strcmp(name + 16, ".journal") != 0)
        return false;
    for (int i = 0; i < 16; i++) {
        if (strchr("0123456789abcdefABCDEF", name[i]) == NULL)
            return false;
    }
    return true;
}

/* compare_names - qsort: segment names sort by sequence (fixed-width hex) */
static int compare_names(const void *a, const void *b)
{
    return strcasecmp(*(char *const *)a, *(char *const *)b);
}

/* replay - every segment below dir/journal, in order; EX_OK or an error status */
static int replay(const char *dir, struct queue_listing *l)
{
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/journal", dir);
    DIR *d = opendir(path);
    if (d == NULL) {
        int e = errno;
        const char *hint = "";
        if (e == EACCES)
            hint = " (run as root or as the user pigeond runs as)";
        else if (e == ENOENT && dir[0] != '/')
            hint = " (a relative queue directory is taken from the current directory; see -d)";
        cli_warn("cannot read the queue %s: %s%s", path, strerror(e), hint);
        return e == EACCES ? EX_NOPERM : EX_NOINPUT;
    }
    char **names = NULL;
    size_t count = 0;
    struct dirent *de;
    int rc = EX_OK;
    while ((de = readdir(d)) != NULL) {
        if (!is_segment(de->d_name))
            continue;
        char **more = realloc(names, (count + 1) * sizeof(*more));
        if (more == NULL || (more[count] = strdup(de->d_name)) == NULL) {
            names = more ? more : names;
            rc = EX_OSERR;
            break;
        }
        names = more;
        count++;
    }
    closedir(d);
    if (count > 1)
        qsort(names, count, sizeof(*names), compare_names);

    struct journal_reader reader = {l, on_record, on_damage};
    for (size_t i = 0; i < count && rc == EX_OK; i++) {
        snprintf(path, sizeof(path), "%s/journal/%s", dir, names[i]);
        struct buf data;
        buf_init(&data, SIZE_MAX); /* a segment is as large as the queue made it */
        if (cli_read_path(path, &data) < 0) {
            int e = errno;
            if (e != ENOENT) { /* pigeond may remove an old segment while we look */
                cli_warn("cannot read %s: %s%s", path, strerror(e),
                         e == EACCES ? " (run as root or as the user pigeond runs as)" : "");
                rc = e == EACCES ? EX_NOPERM : EX_IOERR;
            }
        } else {
            size_t torn = 0;
            size_t damage = journal_parse_segment(data.data, data.len, &reader, &torn);
            if (damage > 0)
                cli_warn("%s: %zu damaged octets skipped", path, damage);
        }
        buf_free(&data);
    }
    for (size_t i = 0; i < count; i++)
        free(names[i]);
    free(names);
    return rc;
}

/* compare_arrival - oldest first, then by id */
static int compare_arrival(const void *a, const void *b)
{
    const struct envelope *x = *(struct envelope *const *)a, *y = *(struct envelope *const *)b;
    if (x->arrival != y->arrival)
        return x->arrival < y->arrival ? -1 : 1;
    return strcmp(x->id, y->id);
}

/* print_safe - an address from the queue, control characters made visible */
static void print_safe(const char *s)
{
    struct buf esc;
    buf_init(&esc, 4 * strlen(s) + 16);
    cli_escape(&esc, s, strlen(s));
    fwrite(esc.data ? (const void *)esc.data : "", 1, esc.len, stdout);
    buf_free(&esc);
}

/* print_listing - mailq style */
static void print_listing(struct queue_listing *l)
{
    size_t shown = 0;
    uint64_t bytes = 0;
    if (l->n > 1)
        qsort(l->msgs, l->n, sizeof(*l->msgs), compare_arrival);
    for (size_t i = 0; i < l->n; i++) {
        const struct envelope *e = l->msgs[i];
        if (envelope_pending(e) == 0)
            continue; /* every recipient done; its GONE record is on its way */
        if (shown++ == 0)
            printf("-Queue ID-     --Size-- ----Arrival Time---- -Sender/Recipient-------\n");
        char when[64] = "?";
        time_t t = (time_t)e->arrival;
        struct tm tm;
        if (localtime_r(&t, &tm) != NULL)
            strftime(when, sizeof(when), "%a %b %e %H:%M:%S", &tm);
        printf("%-14s %8llu %-20s  ", e->id, (unsigned long long)e->size, when);
        print_safe(e->sender[0] ? e->sender : "MAILER-DAEMON");
        putchar('\n');
        for (size_t r = 0; r < e->nrcpt; r++) {
            if (e->rcpt[r].state != ENVELOPE_PENDING)
                continue;
            printf("%46s", "");
            print_safe(e->rcpt[r].address);
            putchar('\n');
        }
        putchar('\n');
        bytes += e->size;
    }
    if (shown == 0)
        printf("Mail queue is empty\n");
    else
        printf("-- %llu Kbytes in %zu Request%s.\n", (unsigned long long)(bytes + 1023) / 1024,
               shown, shown == 1 ? "" : "s");
}

/* cli_queue - pigeon queue */
int cli_queue(int argc, char **argv)
{
    const char *conf = NULL, *dir = NULL;
    int c;
    optind = 1;
    while ((c = getopt(argc, argv, "f:d:h")) != -1) {
        switch (c) {
        case 'f':
            conf = optarg;
            break;
        case 'd':
            dir = optarg;
            break;
        case 'h':
            cli_queue_usage(stdout);
            return EX_OK;
        default:
            cli_queue_usage(stderr);
            return EX_USAGE;
        }
    }
    if (optind != argc) {
        cli_queue_usage(stderr);
        return EX_USAGE;
    }

    struct config *cfg = NULL;
    if (dir == NULL) {
        char err[512];
        cfg = config_load(conf, err, sizeof(err));
        if (cfg == NULL) {
            cli_warn("%s", err);
            return EX_CONFIG;
        }
        dir = cfg->queue_dir;
    }
    struct queue_listing l = {0};
    int rc = replay(dir, &l);
    if (rc == EX_OK) {
        if (l.bad_records > 0)
            cli_warn("%zu envelopes in the journal could not be read", l.bad_records);
        print_listing(&l);
    }
    for (size_t i = 0; i < l.n; i++)
        drop(l.msgs[i]);
    free(l.msgs);
    config_free(cfg);
    return rc;
}
