/*
 * journal.c - segment files of checksummed records (see journal.h).
 *
 * A segment starts with a 16-octet header, "PIGEONJ1" and its sequence
 * number, so a file is recognisable on its own.  Segments are named by
 * sequence number in hex, so a directory listing sorts them in order.
 */
#include "journal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "lib/crc32c.h"
#include "lib/log.h"
#include "queue/envelope.h"

#define SEGMENT_MAGIC       "PIGEONJ1"
#define SEGMENT_HEADER_SIZE 16
#define RECORD_MAGIC0       'P'
#define RECORD_MAGIC1       'J'

struct journal {
    char *dir;        /* spool/journal */
    char *quarantine; /* spool/quarantine */
    int fd;           /* the current segment */
    uint64_t seq;
    uint64_t size;
    struct buf batch;
    uint64_t *old; /* older segments still on disk */
    size_t nold;
};

/* put_u32 - little-endian */
static void put_u32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

/* get_u32 - little-endian */
static uint32_t get_u32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* record_at - is there a whole, intact record at p[pos..n)? Its payload length in *len */
static bool record_at(const uint8_t *p, size_t n, size_t pos, size_t *len)
{
    if (n - pos < JOURNAL_RECORD_OVERHEAD)
        return false;
    const uint8_t *r = p + pos;
    if (r[0] != RECORD_MAGIC0 || r[1] != RECORD_MAGIC1 || r[3] != 0)
        return false;
    if (r[2] < JOURNAL_MSG || r[2] > JOURNAL_GONE)
        return false;
    uint32_t l = get_u32(r + 4);
    if (l > JOURNAL_PAYLOAD_MAX || l > n - pos - JOURNAL_RECORD_OVERHEAD)
        return false;
    if (crc32c(0, r, 8 + (size_t)l) != get_u32(r + 8 + l))
        return false;
    *len = l;
    return true;
}

/* journal_parse_segment - parse one segment's bytes (see journal.h) */
size_t journal_parse_segment(const uint8_t *p, size_t n, const struct journal_reader *reader,
                             size_t *torn_tail)
{
    size_t pos = 0, damage = 0, len;

    *torn_tail = 0;
    if (n < SEGMENT_HEADER_SIZE) {
        /* A segment cut short while its header was written: nothing in it. */
        *torn_tail = n;
        return 0;
    }
    if (memcmp(p, SEGMENT_MAGIC, 8) == 0)
        pos = SEGMENT_HEADER_SIZE;
    while (pos < n) {
        if (record_at(p, n, pos, &len)) {
            reader->record(reader->ctx, (enum journal_type)p[pos + 2], p + pos + 8, len);
            pos += JOURNAL_RECORD_OVERHEAD + len;
            continue;
        }
        /* Bad octets here.  If a good record follows, this is damage; if
         * none does, it is the tail of a write that a crash cut short. */
        size_t next = pos + 1;
        while (next < n && !record_at(p, n, next, &len))
            next++;
        if (next >= n) {
            *torn_tail = n - pos;
            break;
        }
        damage += next - pos;
        pos = next;
    }
    return damage;
}

/* read_file - the whole file at path into a new buffer */
static uint8_t *read_file(const char *path, size_t *size)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return NULL;
    struct stat st;
    uint8_t *data = NULL;
    if (fstat(fd, &st) == 0 && st.st_size >= 0) {
        data = malloc((size_t)st.st_size + 1);
        size_t got = 0;
        while (data != NULL && got < (size_t)st.st_size) {
            ssize_t r = read(fd, data + got, (size_t)st.st_size - got);
            if (r <= 0)
                break;
            got += (size_t)r;
        }
        *size = got;
    }
    close(fd);
    return data;
}

/* copy_to_quarantine - keep a damaged segment for a human to look at */
static int copy_to_quarantine(struct journal *j, const char *name, const uint8_t *p, size_t n,
                              char *out, size_t outsize)
{
    snprintf(out, outsize, "%s/%s.%lld", j->quarantine, name, (long long)time(NULL));
    int fd = open(out, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return -1;
    size_t done = 0;
    while (done < n) {
        ssize_t w = write(fd, p + done, n - done);
        if (w <= 0)
            break;
        done += (size_t)w;
    }
    int r = (done == n && fsync(fd) == 0) ? 0 : -1;
    close(fd);
    return r;
}

/* segment_seq - the sequence number in a segment file name (exactly as
 * segment_path writes it: 16 lower-case hex digits), or -1 */
static int segment_seq(const char *name, uint64_t *seq)
{
    uint64_t v = 0;
    if (strlen(name) != 16 + strlen(".journal") || strcmp(name + 16, ".journal") != 0)
        return -1;
    for (int i = 0; i < 16; i++) {
        char c = name[i];
        if (c >= '0' && c <= '9')
            v = v << 4 | (uint64_t)(c - '0');
        else if (c >= 'a' && c <= 'f')
            v = v << 4 | (uint64_t)(c - 'a' + 10);
        else
            return -1;
    }
    *seq = v;
    return 0;
}

/* compare_seq - qsort order of segment numbers */
static int compare_seq(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* segment_path - spool/journal/<seq>.journal */
static void segment_path(const struct journal *j, uint64_t seq, char *out, size_t outsize)
{
    snprintf(out, outsize, "%s/%016llx.journal", j->dir, (unsigned long long)seq);
}

/* sync_dir - fsync a directory by path: a new file's name is durable only then */
static int sync_dir(const char *path)
{
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    int r = fsync(fd);
    int e = errno;
    close(fd);
    errno = e;
    return r;
}

/* start_segment - create segment j->seq, write its header, make its name durable */
static int start_segment(struct journal *j)
{
    char path[4096];
    uint8_t header[SEGMENT_HEADER_SIZE];
    segment_path(j, j->seq, path, sizeof(path));
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_APPEND | O_CLOEXEC, 0600);
    if (fd < 0)
        return -1;
    memcpy(header, SEGMENT_MAGIC, 8);
    for (int i = 0; i < 8; i++)
        header[8 + i] = (uint8_t)(j->seq >> (8 * i));
    if (write(fd, header, sizeof(header)) != (ssize_t)sizeof(header) || fsync(fd) < 0 ||
        sync_dir(j->dir) < 0) {
        int e = errno;
        close(fd);
        unlink(path);
        errno = e ? e : EIO;
        return -1;
    }
    j->fd = fd;
    j->size = sizeof(header);
    return 0;
}

/* recover - read every existing segment in order */
static int recover(struct journal *j, const struct journal_reader *reader, char *err,
                   size_t errsize)
{
    DIR *d = opendir(j->dir);
    if (d == NULL) {
        snprintf(err, errsize, "%s: %s", j->dir, strerror(errno));
        return -1;
    }
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        uint64_t seq;
        if (segment_seq(de->d_name, &seq) < 0)
            continue;
        uint64_t *more = realloc(j->old, (j->nold + 1) * sizeof(*more));
        if (more == NULL) {
            closedir(d);
            snprintf(err, errsize, "out of memory");
            return -1;
        }
        j->old = more;
        j->old[j->nold++] = seq;
    }
    closedir(d);
    if (j->nold > 1)
        qsort(j->old, j->nold, sizeof(*j->old), compare_seq);

    for (size_t i = 0; i < j->nold; i++) {
        char path[4096], name[64], qpath[4096];
        size_t n = 0, torn = 0;
        segment_path(j, j->old[i], path, sizeof(path));
        snprintf(name, sizeof(name), "%016llx.journal", (unsigned long long)j->old[i]);
        uint8_t *data = read_file(path, &n);
        if (data == NULL) {
            snprintf(err, errsize, "%s: cannot read: %s", path, strerror(errno));
            return -1;
        }
        size_t damage = journal_parse_segment(data, n, reader, &torn);
        if (torn > 0)
            log_info("queue: journal %s: %zu octets of an unfinished write at the end, ignored",
                     name, torn);
        if (damage > 0) {
            if (copy_to_quarantine(j, name, data, n, qpath, sizeof(qpath)) < 0)
                snprintf(qpath, sizeof(qpath), "(copy failed: %s)", strerror(errno));
            reader->damaged(reader->ctx, name, qpath, damage);
        }
        free(data);
        if (j->old[i] >= j->seq)
            j->seq = j->old[i] + 1;
    }
    return 0;
}

/* journal_open - recover the segments and start a new one */
struct journal *journal_open(const char *spool_dir, const struct journal_reader *reader, char *err,
                             size_t errsize)
{
    struct journal *j = calloc(1, sizeof(*j));
    if (j == NULL) {
        snprintf(err, errsize, "out of memory");
        return NULL;
    }
    j->fd = -1;
    j->seq = 1;
    buf_init(&j->batch, 256u * 1024 * 1024);
    if (asprintf(&j->dir, "%s/journal", spool_dir) < 0 ||
        asprintf(&j->quarantine, "%s/quarantine", spool_dir) < 0) {
        snprintf(err, errsize, "out of memory");
        journal_close(j);
        return NULL;
    }
    if (recover(j, reader, err, errsize) < 0) {
        journal_close(j);
        return NULL;
    }
    if (start_segment(j) < 0) {
        snprintf(err, errsize, "%s: cannot create a journal segment: %s", j->dir, strerror(errno));
        journal_close(j);
        return NULL;
    }
    return j;
}

/* journal_close - close the current segment */
void journal_close(struct journal *j)
{
    if (j == NULL)
        return;
    if (j->fd >= 0)
        close(j->fd);
    buf_free(&j->batch);
    free(j->old);
    free(j->dir);
    free(j->quarantine);
    free(j);
}

/* journal_add - frame one record into the pending batch */
int journal_add(struct journal *j, enum journal_type type, const void *payload, size_t n)
{
    if (n > JOURNAL_PAYLOAD_MAX)
        return -1;
    size_t start = j->batch.len;
    uint8_t head[8] = {RECORD_MAGIC0, RECORD_MAGIC1, (uint8_t)type, 0};
    put_u32(head + 4, (uint32_t)n);
    if (buf_reserve(&j->batch, sizeof(head) + n + 4) < 0)
        return -1;
    buf_append(&j->batch, head, sizeof(head));
    buf_append(&j->batch, payload, n);
    uint8_t crc[4];
    put_u32(crc, crc32c(0, j->batch.data + start, sizeof(head) + n));
    buf_append(&j->batch, crc, sizeof(crc));
    return 0;
}

/* journal_add_envelope - encode and frame an envelope as a MSG record */
int journal_add_envelope(struct journal *j, const struct envelope *e, size_t *encoded_len)
{
    /* Encode in place after a gap for the header, then fill the header in. */
    size_t start = j->batch.len;
    uint8_t head[8] = {RECORD_MAGIC0, RECORD_MAGIC1, JOURNAL_MSG, 0};
    if (buf_append(&j->batch, head, sizeof(head)) < 0)
        return -1;
    if (envelope_encode(e, &j->batch) < 0) {
        j->batch.len = start;
        return -1;
    }
    size_t n = j->batch.len - start - sizeof(head);
    if (n > JOURNAL_PAYLOAD_MAX) {
        j->batch.len = start;
        return -1;
    }
    put_u32(j->batch.data + start + 4, (uint32_t)n);
    uint8_t crc[4];
    put_u32(crc, crc32c(0, j->batch.data + start, sizeof(head) + n));
    if (buf_append(&j->batch, crc, sizeof(crc)) < 0) {
        j->batch.len = start;
        return -1;
    }
    *encoded_len = j->batch.len - start;
    return 0;
}

/* journal_pending - octets waiting in the batch */
size_t journal_pending(const struct journal *j)
{
    return j->batch.len;
}

/* journal_write - write the pending batch to the current segment */
int journal_write(struct journal *j)
{
    size_t done = 0;
    while (done < j->batch.len) {
        ssize_t w = write(j->fd, j->batch.data + done, j->batch.len - done);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            int e = w < 0 ? errno : EIO;
            /* Leave no half record behind for the next batch to follow. */
            if (ftruncate(j->fd, (off_t)j->size) < 0)
                log_err("queue: journal: cannot undo a failed write: %s", strerror(errno));
            buf_clear(&j->batch);
            errno = e;
            return -1;
        }
        done += (size_t)w;
    }
    j->size += j->batch.len;
    buf_clear(&j->batch);
    if (j->batch.cap > 1024 * 1024)
        buf_free(&j->batch);
    return 0;
}

/* journal_datasync - fdatasync the current segment */
int journal_datasync(struct journal *j)
{
    return fdatasync(j->fd);
}

/* journal_size - octets in the current segment */
uint64_t journal_size(const struct journal *j)
{
    return j->size;
}

/* journal_rotate - start a new segment */
int journal_rotate(struct journal *j)
{
    uint64_t *more = realloc(j->old, (j->nold + 1) * sizeof(*more));
    if (more == NULL)
        return -1;
    j->old = more;
    int oldfd = j->fd;
    uint64_t oldseq = j->seq;
    j->seq++;
    if (start_segment(j) < 0) {
        j->seq = oldseq;
        j->fd = oldfd;
        return -1;
    }
    close(oldfd);
    j->old[j->nold++] = oldseq;
    return 0;
}

/* journal_drop_old - delete every segment but the current one */
void journal_drop_old(struct journal *j)
{
    for (size_t i = 0; i < j->nold; i++) {
        char path[4096];
        segment_path(j, j->old[i], path, sizeof(path));
        if (unlink(path) < 0 && errno != ENOENT)
            log_warn("queue: cannot remove old journal %s: %s", path, strerror(errno));
    }
    j->nold = 0;
}
