/*
 * journal.h - the queue's append-only journal of envelopes.
 *
 * Message content lives in one file per message (spool/msg/<id>), so it can
 * be hard-linked straight into a Maildir.  Everything else the queue must
 * remember goes into the journal, one segment file at a time
 * (spool/journal/<seq>.journal), as records:
 *
 *     u16 magic "PJ" | u8 type | u8 0 | u32 length | payload | u32 crc32c
 *
 *   MSG   an envelope (envelope.h) of a message now in the queue
 *   DONE  a recipient delivered or failed: id, recipient index, state
 *   GONE  a message finished and its content file removed: id
 *
 * Records are appended by the queue thread only; many messages' records go
 * out in one write() and one sync (group commit, queue.c).  On start every
 * segment is read in order and its records handed to the caller; a record
 * that fails its checksum at the very end of a segment is a write cut short
 * by a crash (it was never acknowledged) and is ignored; damage followed by
 * good records is a damaged file: it is copied to spool/quarantine, logged,
 * and the good records around the damage are still used.
 */
#ifndef PIGEON_QUEUE_JOURNAL_H
#define PIGEON_QUEUE_JOURNAL_H

#include <stddef.h>
#include <stdint.h>

#include "lib/buf.h"

enum journal_type {
    JOURNAL_MSG = 1,
    JOURNAL_DONE = 2,
    JOURNAL_GONE = 3,
};

#define JOURNAL_RECORD_OVERHEAD 12
#define JOURNAL_PAYLOAD_MAX     (16u * 1024 * 1024)

struct journal;

/* What recovery hands back, record by record, in the order written. */
struct journal_reader {
    void *ctx;
    void (*record)(void *ctx, enum journal_type type, const uint8_t *payload, size_t n);
    /* A damaged segment was found and copied to quarantine_path. */
    void (*damaged)(void *ctx, const char *segment, const char *quarantine_path, size_t bad_octets);
};

/*
 * journal_open - read every segment below spool_dir/journal (calling the
 * reader) and start a new segment after them.  NULL on error, with err set.
 */
struct journal *journal_open(const char *spool_dir, const struct journal_reader *reader, char *err,
                             size_t errsize);

/* journal_close - close the current segment (nothing is deleted) */
void journal_close(struct journal *j);

/* journal_add - frame one record into the pending batch (in memory) */
int journal_add(struct journal *j, enum journal_type type, const void *payload, size_t n);

/* journal_add_envelope - encode and frame an envelope as a MSG record */
struct envelope;
int journal_add_envelope(struct journal *j, const struct envelope *e, size_t *encoded_len);

/* journal_pending - octets waiting in the batch */
size_t journal_pending(const struct journal *j);

/* journal_write - write the pending batch to the current segment; -1 with errno */
int journal_write(struct journal *j);

/* journal_datasync - fdatasync the current segment; -1 with errno */
int journal_datasync(struct journal *j);

/* journal_size - octets in the current segment */
uint64_t journal_size(const struct journal *j);

/*
 * journal_rotate - start a new segment; the old ones stay until
 * journal_drop_old() (after the new one's contents are durable).
 */
int journal_rotate(struct journal *j);

/* journal_drop_old - delete every segment but the current one */
void journal_drop_old(struct journal *j);

/* journal_parse_segment - parse one segment's bytes (used by recovery and the fuzzer);
 * returns the octets of damage found (0 if none or only a torn tail) */
size_t journal_parse_segment(const uint8_t *p, size_t n, const struct journal_reader *reader,
                             size_t *torn_tail);

#endif
