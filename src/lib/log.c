/*
 * log.c - logging to stderr or syslog (see log.h).
 *
 * stderr lines carry a UTC timestamp with milliseconds, the program name and
 * pid, so a test or an administrator can line them up with a client's view.
 */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

static const char *log_ident = "pigeon";
static bool log_to_stderr = true;
static enum log_level log_min = LOG_LEVEL_INFO;
static long log_pid;

/*
 * Each thread may gather its lines and write them in one go at a point of
 * its choosing (log_flush), so a busy daemon makes one write(2) per batch
 * of events, not one per line.  Warnings and errors never wait.
 */
#define LOG_BUFFER 8192
static __thread struct {
    bool on;
    size_t len;
    char data[LOG_BUFFER];
    time_t second; /* the second stamp[] shows */
    char stamp[24];
} log_tls;

/* log_open - set the program name and where lines go */
void log_open(const char *ident, bool to_stderr, enum log_level min_level)
{
    log_ident = ident;
    log_to_stderr = to_stderr;
    log_min = min_level;
    log_pid = (long)getpid();
    if (!to_stderr)
        openlog(ident, LOG_PID | LOG_NDELAY, LOG_MAIL);
}

/* log_forked - the process is a new one (after daemon()): its pid changed */
void log_forked(void)
{
    log_pid = (long)getpid();
}

/* log_flush - write the lines this thread gathered */
void log_flush(void)
{
    size_t done = 0;
    while (done < log_tls.len) {
        ssize_t w = write(STDERR_FILENO, log_tls.data + done, log_tls.len - done);
        if (w <= 0)
            break; /* nowhere to report a failed log write: the daemon goes on */
        done += (size_t)w;
    }
    log_tls.len = 0;
}

/* log_buffered - gather this thread's lines until log_flush() (or not) */
void log_buffered(bool on)
{
    if (!on)
        log_flush();
    log_tls.on = on;
}

/* log_line - format one line: into the thread's batch, or straight out */
static void log_line(enum log_level level, const char *fmt, va_list ap)
    __attribute__((format(printf, 2, 0)));
static void log_line(enum log_level level, const char *fmt, va_list ap)
{
    static const char *const names[] = {"debug", "info", "warning", "error"};
    static const int priorities[] = {LOG_DEBUG, LOG_INFO, LOG_WARNING, LOG_ERR};
    char msg[2048];

    if (level < log_min)
        return;
    vsnprintf(msg, sizeof(msg), fmt, ap);
    if (!log_to_stderr) {
        syslog(priorities[level], "%s%s%s", level == LOG_LEVEL_INFO ? "" : names[level],
               level == LOG_LEVEL_INFO ? "" : ": ", msg);
        return;
    }

    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    if (ts.tv_sec != log_tls.second || log_tls.stamp[0] == '\0') {
        struct tm tm;
        gmtime_r(&ts.tv_sec, &tm);
        strftime(log_tls.stamp, sizeof(log_tls.stamp), "%Y-%m-%dT%H:%M:%S", &tm);
        log_tls.second = ts.tv_sec;
    }
    char line[2300];
    int n = snprintf(line, sizeof(line), "%s.%03ldZ %s[%ld]: %s%s%s\n", log_tls.stamp,
                     ts.tv_nsec / 1000000, log_ident, log_pid ? log_pid : (long)getpid(),
                     level == LOG_LEVEL_INFO ? "" : names[level],
                     level == LOG_LEVEL_INFO ? "" : ": ", msg);
    if (n < 0)
        return;
    if ((size_t)n >= sizeof(line)) {
        n = sizeof(line) - 1;
        line[n - 1] = '\n';
    }
    if (log_tls.on && level < LOG_LEVEL_WARN) {
        if (log_tls.len + (size_t)n > sizeof(log_tls.data))
            log_flush();
        memcpy(log_tls.data + log_tls.len, line, (size_t)n);
        log_tls.len += (size_t)n;
        return;
    }
    log_flush(); /* keep the order */
    ssize_t w = write(STDERR_FILENO, line, (size_t)n);
    (void)w;
}

#define LOG_FUNCTION(name, level)                                                                  \
    void name(const char *fmt, ...)                                                                \
    {                                                                                              \
        va_list ap;                                                                                \
        va_start(ap, fmt);                                                                         \
        log_line(level, fmt, ap);                                                                  \
        va_end(ap);                                                                                \
    }

LOG_FUNCTION(log_debug, LOG_LEVEL_DEBUG)
LOG_FUNCTION(log_info, LOG_LEVEL_INFO)
LOG_FUNCTION(log_warn, LOG_LEVEL_WARN)
LOG_FUNCTION(log_err, LOG_LEVEL_ERR)

/* fatal - log and exit(1); only for start-up errors and broken invariants */
void fatal(const char *fmt, ...)
{
    log_flush();
    va_list ap;
    va_start(ap, fmt);
    log_line(LOG_LEVEL_ERR, fmt, ap);
    va_end(ap);
    exit(1);
}
