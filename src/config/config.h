/*
 * config.h - pigeond's configuration: what the file says, after checking.
 *
 * One file, in the model of OpenSMTPD's smtpd.conf: settings, listeners,
 * tables, actions and match rules evaluated in order.  An absent file means
 * the built-in default, which is examples/pigeond.conf compiled in: the
 * example and the default cannot drift apart.
 *
 * The parser (parse.y, lex.l) fills a struct config; config_load() then
 * resolves names (table and action references), loads file tables and checks
 * everything, so a config that loads is one the daemon can run.  Errors name
 * the file and line: "pigeond.conf:12: unknown table <users>".
 *
 * Who uses it: src/server (listeners, limits, timeouts), src/policy (tables,
 * actions, match rules), src/queue (queue directory), src/deliver (actions).
 */
#ifndef PIGEON_CONFIG_H
#define PIGEON_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/* ---- tables ---------------------------------------------------------- */

/*
 * A table is a named set of keys, each with zero or more values:
 *   domains:  { localhost, example.org }            keys only
 *   users:    file "/etc/pigeon/users"               one key per line
 *   aliases:  file "/etc/aliases"                    aliases(5): key: v1, v2
 *   networks: { 127.0.0.0/8, ::1 }                   keys parsed as CIDR on use
 * Keys are compared case-insensitively (ASCII), as mail domains and
 * Postfix-style user lookups are.
 */
struct table_entry {
    char *key;     /* lower-cased */
    char **values; /* may be empty */
    size_t nvalues;
    int line; /* line in the table's source, for error messages */
};

struct table_network {
    int family; /* AF_INET or AF_INET6 */
    uint8_t addr[16];
    unsigned prefix; /* bits */
};

struct table {
    char *name;
    char *source;                /* file path, or NULL for an inline table */
    int line;                    /* where the table was declared in the config */
    struct table_entry *entries; /* sorted by key for bsearch */
    size_t nentries;
    struct table_network *networks; /* filled by config_load for tables used as networks */
    size_t nnetworks;
    struct table *next;
};

/* table_lookup - the entry for key (any case), or NULL */
const struct table_entry *table_lookup(const struct table *t, const char *key, size_t keylen);

/* table_match_address - does the socket address fall in one of the table's networks? */
bool table_match_address(const struct table *t, const struct sockaddr *sa);

/* ---- listeners ------------------------------------------------------- */

struct listener_config {
    char *address; /* numeric IPv4 or IPv6 address, as written */
    uint16_t port;
    int line;
    /* TLS mode and AUTH will be added here by the TLS/AUTH work. */
    struct listener_config *next;
};

/* ---- actions ----------------------------------------------------------- */

enum action_type {
    ACTION_MAILDIR, /* deliver into a Maildir below a path template */
    ACTION_RELAY,   /* keep in the queue for outbound delivery (MX or smarthost, later) */
    /* ACTION_LMTP and ACTION_MDA come with their issues. */
};

struct action {
    char *name;
    enum action_type type;
    /*
     * ACTION_MAILDIR: the Maildir path, with %{user} replaced by the
     * mailbox name (the local part, lower-cased, after alias expansion)
     * and %{domain} by the recipient's domain.  Relative paths are
     * relative to the directory pigeond was started in.
     */
    char *maildir;
    struct table *users;   /* NULL: every safe local part is a user */
    struct table *aliases; /* NULL: no aliases */
    int line;
    struct action *next;
};

/* ---- match rules ------------------------------------------------------- */

enum match_from {
    MATCH_FROM_ANY,
    MATCH_FROM_TRUSTED, /* the client's address is in the trusted networks */
    MATCH_FROM_SRC,     /* the client's address is in from_table */
};

enum match_for {
    MATCH_FOR_ANY,
    MATCH_FOR_DOMAIN, /* the recipient's domain is a key of for_table */
};

struct match_rule {
    enum match_from from;
    struct table *from_table; /* MATCH_FROM_SRC */
    enum match_for for_;
    struct table *for_table; /* MATCH_FOR_DOMAIN */
    struct action *action;   /* NULL: reject */
    int line;
    struct match_rule *next;
};

/* ---- limits and timeouts ----------------------------------------------- */

struct config_limits {
    size_t command_line;   /* "limit command-line", default 512 (RFC 5321 §4.5.3.1.4) */
    size_t text_line;      /* "limit text-line", default 1000 (§4.5.3.1.6) */
    size_t recipients;     /* "limit recipients", default 1000 (§4.5.3.1.8 asks >= 100) */
    uint64_t message_size; /* "limit message-size", default 35M */
    unsigned errors;       /* "limit errors", default 20, then 421 and close */
    /* Abuse limits (hardening issue); 0 means no limit. */
    unsigned sessions;               /* "limit sessions", all clients together */
    unsigned sessions_per_client;    /* "limit sessions-per-client" */
    unsigned connections_per_minute; /* "limit connections-per-minute", per client address */
    uint64_t queue_size;             /* "limit queue-size": messages in the queue */
    /* "limit connections-per-minute-total": all untrusted clients together */
    unsigned connections_per_minute_total;
};

struct config_timeouts {
    /* Seconds; RFC 5321 §4.5.3.2.7: a server waits at least 5 minutes for a command. */
    unsigned command; /* "timeout command", default 300 */
    unsigned data;    /* "timeout data": between data blocks, default 300 */
};

enum queue_sync {
    QUEUE_SYNC_SYNCFS, /* one syncfs() per batch: file data, inode and directory entries */
    QUEUE_SYNC_FSYNC,  /* fdatasync() each file, fsync() each directory, per batch */
};

/* ---- the whole configuration --------------------------------------------- */

struct config {
    char *path;      /* the file it came from, or NULL for the built-in default */
    char *hostname;  /* "hostname": greeting, Received: headers; default from gethostname() */
    char *user;      /* "user": run as this user after binding, default "pigeon" */
    char *queue_dir; /* "queue": default "./var/spool" */
    enum queue_sync queue_sync; /* "queue ... sync syncfs|fsync", default syncfs */
    unsigned delivery_workers;  /* "workers", default 2 */

    struct table *trusted; /* "trusted": networks that may relay and use bare LF */

    struct listener_config *listeners;
    struct table *tables;
    struct action *actions;
    struct match_rule *rules;

    struct config_limits limits;
    struct config_timeouts timeouts;
};

/*
 * config_load - read path (or the built-in default if path is NULL) into a
 * new struct config.  On error returns NULL and writes "file:line: message"
 * into err (at most errsize bytes).
 */
struct config *config_load(const char *path, char *err, size_t errsize);

/* config_free - release everything config_load() allocated */
void config_free(struct config *cfg);

/* config_default_text - the built-in default configuration (examples/pigeond.conf) */
extern const char config_default_text[];

#endif
