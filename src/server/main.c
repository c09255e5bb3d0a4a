/*
 * main.c - pigeond: start-up, privileges, signals and shutdown.
 *
 *   pigeond [-d] [-v] [-f file]    run (-d: foreground, log to stderr)
 *   pigeond -n [-f file]           check the configuration and exit
 *
 * Start-up order matters: read the configuration, bind the listeners (the
 * only step that may need root), prepare the directories the unprivileged
 * user will write, give up root for good, then recover the queue and start
 * the threads, and only then accept connections.
 */
#include <errno.h>
#include <grp.h>
#include <limits.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <event2/event.h>

#include "config/config.h"
#include "lib/log.h"
#include "policy/limits.h"
#include "queue/queue.h"
#include "server/server.h"

#ifndef PIGEON_VERSION
#define PIGEON_VERSION "0.1.0"
#endif

/* usage - how to call pigeond */
static void usage(FILE *out)
{
    fprintf(out, "usage: pigeond [-d] [-v] [-n] [-f file]\n"
                 "  -f file  use this configuration file (default: the built-in one)\n"
                 "  -n       check the configuration, print any error and exit\n"
                 "  -d       stay in the foreground and log to stderr\n"
                 "  -v       log debugging detail too\n"
                 "  -h       show this help\n");
}

/* absolute - path made absolute against cwd (a new string) */
static char *absolute(const char *cwd, const char *path)
{
    char *out;
    if (path[0] == '/')
        return strdup(path);
    while (path[0] == '.' && path[1] == '/')
        path += 2;
    if (asprintf(&out, "%s/%s", cwd, path) < 0)
        return NULL;
    return out;
}

/* make_paths_absolute - pigeond may change directory; its paths must not */
static void make_paths_absolute(struct config *cfg)
{
    char cwd[PATH_MAX];
    if (getcwd(cwd, sizeof(cwd)) == NULL)
        fatal("cannot find the current directory: %s", strerror(errno));
    char *q = absolute(cwd, cfg->queue_dir);
    if (q == NULL)
        fatal("out of memory");
    free(cfg->queue_dir);
    cfg->queue_dir = q;
    for (struct action *a = cfg->actions; a != NULL; a = a->next) {
        if (a->type != ACTION_MAILDIR)
            continue;
        char *m = absolute(cwd, a->maildir);
        if (m == NULL)
            fatal("out of memory");
        free(a->maildir);
        a->maildir = m;
    }
}

/*
 * make_owned_dir - mkdir -p path; the last component, if created now (or
 * always, with force), is handed to uid/gid.
 */
static void make_owned_dir(const char *path, uid_t uid, gid_t gid, bool force)
{
    char p[PATH_MAX];
    size_t n = strlen(path);
    if (n == 0 || n >= sizeof(p))
        fatal("%s: path too long", path);
    memcpy(p, path, n + 1);
    while (n > 1 && p[n - 1] == '/')
        p[--n] = '\0';
    for (size_t i = 1; i < n; i++) {
        if (p[i] != '/')
            continue;
        p[i] = '\0';
        if (mkdir(p, 0755) < 0 && errno != EEXIST)
            fatal("cannot create %s: %s", p, strerror(errno));
        p[i] = '/';
    }
    bool created = mkdir(p, 0700) == 0;
    if (!created && errno != EEXIST)
        fatal("cannot create %s: %s", p, strerror(errno));
    if ((created || force) && chown(p, uid, gid) < 0)
        fatal("cannot give %s to the pigeond user: %s", p, strerror(errno));
}

/* maildir_root - the part of a Maildir template before the first %{...} */
static void maildir_root(const char *template, char *out, size_t outsize)
{
    const char *var = strstr(template, "%{");
    size_t n = var ? (size_t)(var - template) : strlen(template);
    while (n > 0 && template[n - 1] != '/')
        n--; /* back to a whole directory */
    if (n >= outsize)
        n = outsize - 1;
    memcpy(out, template, n);
    out[n] = '\0';
}

/* drop_privileges - as root: prepare our directories, then become cfg->user for good */
static void drop_privileges(const struct config *cfg)
{
    if (geteuid() != 0) {
        log_info("not started as root: running as uid %ld", (long)geteuid());
        return;
    }
    struct passwd *pw = getpwnam(cfg->user);
    if (pw == NULL)
        fatal("user \"%s\" does not exist: create it (useradd --system %s) or set \"user\" in "
              "the configuration",
              cfg->user, cfg->user);
    if (pw->pw_uid == 0)
        fatal("user \"%s\" is root: pigeond does not keep running as root", cfg->user);

    make_owned_dir(cfg->queue_dir, pw->pw_uid, pw->pw_gid, true);
    for (const struct action *a = cfg->actions; a != NULL; a = a->next) {
        char root[PATH_MAX];
        if (a->type != ACTION_MAILDIR)
            continue;
        maildir_root(a->maildir, root, sizeof(root));
        if (root[0] != '\0')
            make_owned_dir(root, pw->pw_uid, pw->pw_gid, false);
    }

    if (setgroups(1, &pw->pw_gid) < 0 || setgid(pw->pw_gid) < 0 || setuid(pw->pw_uid) < 0)
        fatal("cannot become user %s: %s", cfg->user, strerror(errno));
    if (setuid(0) == 0 || geteuid() == 0)
        fatal("still root after giving it up: refusing to run");
    log_info("running as user %s (uid %ld)", cfg->user, (long)pw->pw_uid);
}

/* smtp_settings - the engine's settings from the configuration */
static struct smtp_server_settings smtp_settings(const struct config *cfg)
{
    return (struct smtp_server_settings){
        .hostname = cfg->hostname,
        .extensions = SMTP_EXT_PIPELINING | SMTP_EXT_SIZE | SMTP_EXT_8BITMIME | SMTP_EXT_SMTPUTF8 |
                      SMTP_EXT_CHUNKING | SMTP_EXT_BINARYMIME | SMTP_EXT_DSN |
                      SMTP_EXT_ENHANCEDSTATUSCODES,
        .max_command_line = cfg->limits.command_line,
        .max_text_line = cfg->limits.text_line,
        .max_recipients = cfg->limits.recipients,
        .max_message_size = cfg->limits.message_size,
        .max_errors = cfg->limits.errors,
    };
}

/* raise_fd_limit - as many descriptors as we may have: every session is one */
static void raise_fd_limit(const struct config *cfg)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
        return;
    rl.rlim_cur = rl.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
        log_warn("cannot raise the descriptor limit: %s", strerror(errno));
    if (cfg->limits.sessions == 0 || (rlim_t)cfg->limits.sessions + 64 > rl.rlim_cur)
        log_info("descriptor limit %llu; sessions beyond it are refused by accept()",
                 (unsigned long long)rl.rlim_cur);
}

/* on_signal - SIGTERM or SIGINT: stop accepting, end sessions, leave the loop */
static void on_signal(evutil_socket_t sig, short what, void *arg)
{
    struct server *srv = arg;
    (void)what;
    log_info("signal %d: shutting down", (int)sig);
    server_stop(srv);
    event_base_loopbreak(srv->base);
}

int main(int argc, char **argv)
{
    const char *path = NULL;
    bool foreground = false, check = false, verbose = false;
    int c;

    while ((c = getopt(argc, argv, "df:hnv")) != -1) {
        switch (c) {
        case 'd':
            foreground = true;
            break;
        case 'f':
            path = optarg;
            break;
        case 'n':
            check = true;
            break;
        case 'v':
            verbose = true;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind != argc) {
        usage(stderr);
        return 2;
    }

    char err[1024];
    struct config *cfg = config_load(path, err, sizeof(err));
    if (check) {
        if (cfg == NULL) {
            fprintf(stderr, "%s\n", err);
            return 1;
        }
        printf("%s: configuration OK\n", path ? path : "(built-in)");
        config_free(cfg);
        return 0;
    }
    log_open("pigeond", foreground, verbose ? LOG_LEVEL_DEBUG : LOG_LEVEL_INFO);
    if (cfg == NULL)
        fatal("%s", err);
    make_paths_absolute(cfg);
    signal(SIGPIPE, SIG_IGN);

    struct server srv = {.cfg = cfg};
    srv.base = event_base_new();
    if (srv.base == NULL)
        fatal("cannot create the event loop");
    srv.smtp = smtp_settings(cfg);
    srv.clients =
        client_limits_new(cfg->limits.sessions_per_client, cfg->limits.connections_per_minute,
                          cfg->limits.connections_per_minute_total);
    if (srv.clients == NULL)
        fatal("out of memory");
    raise_fd_limit(cfg);
    if (server_listen(&srv, err, sizeof(err)) < 0)
        fatal("%s", err);
    drop_privileges(cfg);

    if (!foreground) {
        if (daemon(0, 0) < 0)
            fatal("cannot run in the background: %s", strerror(errno));
        log_forked();
        event_reinit(srv.base);
    }

    struct queue_settings qs = {
        .dir = cfg->queue_dir,
        .sync = cfg->queue_sync,
        .workers = cfg->delivery_workers,
        .max_messages = cfg->limits.queue_size,
        .hostname = cfg->hostname,
    };
    srv.queue = queue_open(&qs, srv.base, err, sizeof(err));
    if (srv.queue == NULL)
        fatal("queue: %s", err);

    struct event *sigterm = evsignal_new(srv.base, SIGTERM, on_signal, &srv);
    struct event *sigint = evsignal_new(srv.base, SIGINT, on_signal, &srv);
    if (sigterm == NULL || sigint == NULL || event_add(sigterm, NULL) < 0 ||
        event_add(sigint, NULL) < 0)
        fatal("cannot watch signals");

    server_start(&srv);
    log_info("pigeond %s ready: configuration %s, queue %s", PIGEON_VERSION,
             cfg->path ? cfg->path : "(built-in)", cfg->queue_dir);
    /* One round of events at a time, so the log lines of a round go out
     * in one write. */
    log_buffered(true);
    while (!srv.stopping && event_base_loop(srv.base, EVLOOP_ONCE) == 0)
        log_flush();
    log_buffered(false);

    if (!srv.stopping)
        server_stop(&srv);
    queue_close(srv.queue);
    event_free(sigterm);
    event_free(sigint);
    event_base_free(srv.base);
    client_limits_free(srv.clients);
    config_free(cfg);
    log_info("pigeond stopped");
    return 0;
}
