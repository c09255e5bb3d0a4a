/*
 * log.h - one line per event, to stderr (pigeond -d, the tools) or syslog.
 *
 * Mail logs are read by people hunting one message, so every line about a
 * message starts with its queue id, the way Postfix does it:
 *
 *     0NDUQ6J8AMH2000: from=<oleg@vbip.com>, size=112, nrcpt=2
 *
 * Safe to call from any thread: each line (or each batch, see log_buffered)
 * is written with a single write().
 * Text from the network reaches a log line only after a parser has refused
 * control characters in it (HELO names, addresses), so a client cannot forge
 * log lines with CR or LF.
 */
#ifndef PIGEON_LIB_LOG_H
#define PIGEON_LIB_LOG_H

#include <stdbool.h>
#include <stddef.h>

enum log_level {
    LOG_LEVEL_DEBUG,
    LOG_LEVEL_INFO,
    LOG_LEVEL_WARN,
    LOG_LEVEL_ERR,
};

/* log_open - set the program name and where lines go */
void log_open(const char *ident, bool to_stderr, enum log_level min_level);

/* log_forked - after fork()/daemon(): the pid in each line changed */
void log_forked(void);

/*
 * log_buffered - gather the calling thread's info and debug lines until
 * log_flush(), so a busy thread writes a batch at a time (warnings and
 * errors are written at once, after what was gathered).  A thread that
 * turns this on must call log_flush() at its points of rest.
 */
void log_buffered(bool on);

/* log_flush - write the calling thread's gathered lines */
void log_flush(void);

void log_debug(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_err(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* fatal - log and exit(1); only for start-up errors and broken invariants */
_Noreturn void fatal(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
