/*
 * config.c - loading pigeond.conf: reading the file, running the parser,
 * giving each statement its meaning, and the checks that need the whole
 * file in view.
 *
 * config_load() reads the file (or takes the built-in default text), runs
 * the grammar of parse.y over it, and the grammar calls one
 * config_parse_*() function per statement.  Those check what a statement
 * says on its own (is "35M" a size, is "::1" an address, is the limit above
 * the RFC's minimum) and store it in the struct config being built; a table
 * file is read as soon as its statement is.  Names of tables and actions
 * are only recorded while parsing, because a statement may refer to a table
 * declared further down; once the file is read they are resolved in the
 * order they appear, and each table is checked for the way it is used.
 *
 * The first error ends the load: config_load() returns NULL and the caller
 * gets "file:line: message".  Nothing here exits or logs errors itself:
 * pigeond -n, pigeond at start-up and the tests all want the message.
 *
 * Called by pigeond's start-up (src/server) and by the unit tests.
 */
#include "config_internal.h"

#include "parse.h"
#include "lex.h"

#include "lib/buf.h"
#include "lib/log.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* A configuration file is read whole into memory; this bounds it. */
#define CONFIG_FILE_MAX (1024 * 1024)

/* What the error messages call the built-in default. */
#define CONFIG_BUILTIN_NAME "(built-in)"

#define CONFIG_DEFAULT_MAILDIR "./var/mail/%{user}/Maildir"
#define CONFIG_DEFAULT_PORT    25
#define CONFIG_WORKERS_MAX     64

/* ---- errors and files ------------------------------------------------------- */

/* config_error_at - write "file:line: message" (or "file: message" if line is 0) into err */
void config_error_at(char *err, size_t errsize, const char *file, int line, const char *fmt, ...)
{
    va_list ap;
    int n;

    if (errsize == 0)
        return;
    if (line > 0)
        n = snprintf(err, errsize, "%s:%d: ", file, line);
    else
        n = snprintf(err, errsize, "%s: ", file);
    if (n < 0 || (size_t)n >= errsize)
        return;
    va_start(ap, fmt);
    vsnprintf(err + n, errsize - (size_t)n, fmt, ap);
    va_end(ap);
}

/* config_parse_error - record the first error of a parse; later ones are dropped */
void config_parse_error(struct config_parse *p, int line, const char *fmt, ...)
{
    va_list ap;
    char msg[1024];

    if (p->failed)
        return;
    p->failed = true;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    config_error_at(p->err, p->errsize, p->file, line, "%s", msg);
}

/* config_read_file - read a whole file of at most limit bytes into out; -1 with errno set */
int config_read_file(const char *path, size_t limit, struct buf *out)
{
    char chunk[16384];
    int fd = open(path, O_RDONLY | O_CLOEXEC);

    if (fd < 0)
        return -1;
    for (;;) {
        ssize_t n = read(fd, chunk, sizeof(chunk));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            int saved = errno;
            close(fd);
            errno = saved;
            return -1;
        }
        if (n == 0)
            break;
        if (buf_append(out, chunk, (size_t)n) < 0) {
            close(fd);
            errno = out->len + (size_t)n > limit ? EFBIG : ENOMEM;
            return -1;
        }
    }
    close(fd);
    return 0;
}

/* ---- checking words ---------------------------------------------------------- */

/* config_table_name_valid - may s be the name of a declared table? */
bool config_table_name_valid(const char *s)
{
    if (*s == '\0')
        return false;
    for (; *s != '\0'; s++) {
        unsigned char c = (unsigned char)*s;
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '-' || c == '_'))
            return false;
    }
    return true;
}

/* config_domain_valid - a domain name: letters, digits and '-' in labels joined by '.' */
static bool config_domain_valid(const char *s)
{
    size_t n = strlen(s);

    if (n == 0 || n > 255 || s[0] == '.' || s[n - 1] == '.')
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-')
            continue;
        if (c == '.' && s[i + 1] != '.')
            continue;
        return false;
    }
    return true;
}

/*
 * config_hostname_valid - a domain, or an address literal such as
 * [192.0.2.1] or [IPv6:2001:db8::1] (RFC 5321 §4.1.3).  The hostname goes
 * into greetings and Received: headers, so nothing else may pass.
 */
static bool config_hostname_valid(const char *s)
{
    size_t n = strlen(s);
    char inside[64];
    unsigned char addr[16];

    if (n < 2 || s[0] != '[' || s[n - 1] != ']')
        return config_domain_valid(s);
    if (n - 2 >= sizeof(inside))
        return false;
    memcpy(inside, s + 1, n - 2);
    inside[n - 2] = '\0';
    if (strncasecmp(inside, "IPv6:", 5) == 0)
        return inet_pton(AF_INET6, inside + 5, addr) == 1;
    return inet_pton(AF_INET, inside, addr) == 1;
}

/* config_maildir_valid - are the only placeholders in a maildir path %{user} and %{domain}? */
static bool config_maildir_valid(const char *path)
{
    for (const char *s = strchr(path, '%'); s != NULL; s = strchr(s + 1, '%')) {
        if (strncmp(s, "%{user}", 7) != 0 && strncmp(s, "%{domain}", 9) != 0)
            return false;
    }
    return path[0] != '\0';
}

/* How a number may be written: plain, or with a unit suffix. */
enum config_value_kind {
    CONFIG_VALUE_NUMBER, /* digits */
    CONFIG_VALUE_SIZE,   /* digits, then K, M or G (or k, m, g): powers of 1024 */
    CONFIG_VALUE_TIME,   /* digits, then s, m, h or d; seconds if none */
};

enum config_scan_result {
    CONFIG_SCAN_OK,
    CONFIG_SCAN_SYNTAX, /* not written as this kind of value */
    CONFIG_SCAN_RANGE,  /* larger than the maximum */
};

/* config_unit_scale - what a unit letter multiplies by for this kind of value; 0 if none */
static uint64_t config_unit_scale(enum config_value_kind kind, char unit)
{
    if (kind == CONFIG_VALUE_SIZE) {
        switch (unit) {
        case 'K':
        case 'k':
            return 1024;
        case 'M':
        case 'm':
            return 1024 * 1024;
        case 'G':
        case 'g':
            return 1024 * 1024 * 1024;
        default:
            return 0;
        }
    }
    if (kind == CONFIG_VALUE_TIME) {
        switch (unit) {
        case 's':
            return 1;
        case 'm':
            return 60;
        case 'h':
            return 60 * 60;
        case 'd':
            return 24 * 60 * 60;
        default:
            return 0;
        }
    }
    return 0;
}

/* config_scan_value - read a number of the given kind, at most max */
static enum config_scan_result config_scan_value(const char *s, enum config_value_kind kind,
                                                 uint64_t max, uint64_t *out)
{
    uint64_t v = 0, scale = 1;
    size_t i = 0;

    for (; s[i] >= '0' && s[i] <= '9'; i++) {
        unsigned d = (unsigned)(s[i] - '0');
        if (v > (UINT64_MAX - d) / 10)
            return CONFIG_SCAN_RANGE;
        v = v * 10 + d;
    }
    if (i == 0)
        return CONFIG_SCAN_SYNTAX;
    if (s[i] != '\0') {
        scale = s[i + 1] == '\0' ? config_unit_scale(kind, s[i]) : 0;
        if (scale == 0)
            return CONFIG_SCAN_SYNTAX;
    }
    if (v > max / scale)
        return CONFIG_SCAN_RANGE;
    *out = v * scale;
    return CONFIG_SCAN_OK;
}

/* config_value - read value as kind for setting "what", within [min, max]; -1 after an error */
static int config_value(struct config_parse *p, int line, const char *what, const char *value,
                        enum config_value_kind kind, uint64_t min, uint64_t max,
                        const char *min_text, uint64_t *out)
{
    static const char *const forms[] = {
        [CONFIG_VALUE_NUMBER] = "a number",
        [CONFIG_VALUE_SIZE] = "a size: a number, optionally followed by K, M or G",
        [CONFIG_VALUE_TIME] = "a time: a number, optionally followed by s, m, h or d",
    };

    switch (config_scan_value(value, kind, max, out)) {
    case CONFIG_SCAN_OK:
        break;
    case CONFIG_SCAN_SYNTAX:
        config_parse_error(p, line, "invalid %s \"%s\" (%s)", what, value, forms[kind]);
        return -1;
    case CONFIG_SCAN_RANGE:
        config_parse_error(p, line, "%s \"%s\" is too large", what, value);
        return -1;
    }
    if (*out < min) {
        config_parse_error(p, line, "%s must be at least %s", what, min_text);
        return -1;
    }
    return 0;
}

/* config_once - note a setting that may be given once; -1 if it was given before */
static int config_once(struct config_parse *p, enum config_setting setting, int line,
                       const char *what)
{
    if (p->seen[setting] != 0) {
        config_parse_error(p, line, "duplicate %s statement (first on line %d)", what,
                           p->seen[setting]);
        return -1;
    }
    p->seen[setting] = line;
    return 0;
}

/*
 * config_ref_add - remember a table or action name to resolve when the file
 * is read.  name may be NULL, from a failed strdup(): out of memory.
 */
static int config_ref_add(struct config_parse *p, int line, char *name, struct table **table,
                          enum config_table_use use, struct action **action)
{
    struct config_ref *r = name != NULL ? calloc(1, sizeof(*r)) : NULL;

    if (r == NULL) {
        free(name);
        config_parse_error(p, line, "out of memory");
        return -1;
    }
    *r = (struct config_ref){
        .name = name, .line = line, .table = table, .use = use, .action = action};
    *p->refs_tail = r;
    p->refs_tail = &r->next;
    return 0;
}

/* config_table_add - append a table to the config; a second table of the same name is an error */
static int config_table_add(struct config_parse *p, struct table *t)
{
    for (struct table *o = p->cfg->tables; o != NULL; o = o->next) {
        if (strcmp(o->name, t->name) == 0) {
            config_parse_error(p, t->line, "duplicate table <%s> (first on line %d)", t->name,
                               o->line);
            table_free(t);
            return -1;
        }
    }
    *p->tables_tail = t;
    p->tables_tail = &t->next;
    return 0;
}

/* ---- the statements ------------------------------------------------------------ */

/* config_parse_hostname - "hostname NAME" */
int config_parse_hostname(struct config_parse *p, int line, char *name)
{
    if (config_once(p, CONFIG_SETTING_HOSTNAME, line, "hostname") < 0)
        goto fail;
    if (!config_hostname_valid(name)) {
        config_parse_error(p, line,
                           "invalid hostname \"%s\" (a domain name, or an address literal such "
                           "as [192.0.2.1])",
                           name);
        goto fail;
    }
    p->cfg->hostname = name;
    return 0;
fail:
    free(name);
    return -1;
}

/* config_parse_user - "user NAME" */
int config_parse_user(struct config_parse *p, int line, char *user)
{
    if (config_once(p, CONFIG_SETTING_USER, line, "user") < 0)
        goto fail;
    if (user[0] == '\0') {
        config_parse_error(p, line, "empty user name");
        goto fail;
    }
    free(p->cfg->user);
    p->cfg->user = user;
    return 0;
fail:
    free(user);
    return -1;
}

/* config_parse_queue - "queue DIR [sync syncfs|fsync]" */
int config_parse_queue(struct config_parse *p, int line, char *dir, char *sync)
{
    if (config_once(p, CONFIG_SETTING_QUEUE, line, "queue") < 0)
        goto fail;
    if (dir[0] == '\0') {
        config_parse_error(p, line, "empty queue directory");
        goto fail;
    }
    if (sync == NULL || strcmp(sync, "syncfs") == 0) {
        p->cfg->queue_sync = QUEUE_SYNC_SYNCFS;
    } else if (strcmp(sync, "fsync") == 0) {
        p->cfg->queue_sync = QUEUE_SYNC_FSYNC;
    } else {
        config_parse_error(p, line, "unknown queue sync \"%s\" (syncfs or fsync)", sync);
        goto fail;
    }
    free(sync);
    free(p->cfg->queue_dir);
    p->cfg->queue_dir = dir;
    return 0;
fail:
    free(dir);
    free(sync);
    return -1;
}

/* config_parse_workers - "workers N" */
int config_parse_workers(struct config_parse *p, int line, char *count)
{
    uint64_t n;
    int rc = -1;

    if (config_once(p, CONFIG_SETTING_WORKERS, line, "workers") < 0 ||
        config_value(p, line, "workers", count, CONFIG_VALUE_NUMBER, 1, UINT64_MAX, "1", &n) < 0)
        goto out;
    if (n > CONFIG_WORKERS_MAX) {
        config_parse_error(p, line, "workers must be at most %d", CONFIG_WORKERS_MAX);
        goto out;
    }
    p->cfg->delivery_workers = (unsigned)n;
    rc = 0;
out:
    free(count);
    return rc;
}

/* config_list_add - name an inline table, sort it and append it to the config */
static int config_list_add(struct config_parse *p, int line, char *name, struct table *list)
{
    if (name == NULL) {
        config_parse_error(p, line, "out of memory");
        table_free(list);
        return -1;
    }
    list->name = name;
    list->line = line;
    if (table_finish(list, p->file, p->err, p->errsize) < 0) {
        p->failed = true;
        table_free(list);
        return -1;
    }
    return config_table_add(p, list);
}

/* config_parse_trusted_list - "trusted { NETWORK, ... }": an inline table named "trusted" */
int config_parse_trusted_list(struct config_parse *p, int line, struct table *list)
{
    if (config_once(p, CONFIG_SETTING_TRUSTED, line, "trusted") < 0) {
        table_free(list);
        return -1;
    }
    if (config_list_add(p, line, strdup("trusted"), list) < 0)
        return -1;
    return config_ref_add(p, line, strdup("trusted"), &p->cfg->trusted, CONFIG_TABLE_USE_NETWORKS,
                          NULL);
}

/* config_parse_trusted_table - "trusted <TABLE>" */
int config_parse_trusted_table(struct config_parse *p, int line, char *table)
{
    if (config_once(p, CONFIG_SETTING_TRUSTED, line, "trusted") < 0) {
        free(table);
        return -1;
    }
    return config_ref_add(p, line, table, &p->cfg->trusted, CONFIG_TABLE_USE_NETWORKS, NULL);
}

/* config_parse_listen - "listen on ADDRESS [port N]" */
int config_parse_listen(struct config_parse *p, int line, char *address, char *port)
{
    unsigned char bin[16], other[16];
    int family = AF_INET;
    uint64_t portnum = CONFIG_DEFAULT_PORT;
    struct listener_config *l;

    if (inet_pton(AF_INET, address, bin) != 1) {
        family = AF_INET6;
        if (inet_pton(AF_INET6, address, bin) != 1) {
            config_parse_error(p, line,
                               "listen on \"%s\": not a numeric IPv4 or IPv6 address (such as "
                               "127.0.0.1 or ::1)",
                               address);
            goto fail;
        }
    }
    if (port != NULL &&
        config_value(p, line, "port", port, CONFIG_VALUE_NUMBER, 1, UINT16_MAX, "1", &portnum) < 0)
        goto fail;
    for (l = p->cfg->listeners; l != NULL; l = l->next) {
        if (l->port == portnum && inet_pton(family, l->address, other) == 1 &&
            memcmp(bin, other, family == AF_INET ? 4 : 16) == 0) {
            config_parse_error(p, line, "duplicate listen on %s port %u (first on line %d)",
                               address, (unsigned)portnum, l->line);
            goto fail;
        }
    }
    l = calloc(1, sizeof(*l));
    if (l == NULL) {
        config_parse_error(p, line, "out of memory");
        goto fail;
    }
    l->address = address;
    l->port = (uint16_t)portnum;
    l->line = line;
    *p->listeners_tail = l;
    p->listeners_tail = &l->next;
    free(port);
    return 0;
fail:
    free(address);
    free(port);
    return -1;
}

/* config_parse_table_list - "table NAME { ITEM, ... }" */
int config_parse_table_list(struct config_parse *p, int line, char *name, struct table *list)
{
    if (!config_table_name_valid(name)) {
        config_parse_error(p, line, "invalid table name \"%s\" (letters, digits, '.', '-' and '_')",
                           name);
        free(name);
        table_free(list);
        return -1;
    }
    return config_list_add(p, line, name, list);
}

/* config_parse_table_file - "table NAME file PATH": read now, relative to the config's directory */
int config_parse_table_file(struct config_parse *p, int line, char *name, char *path)
{
    struct buf full;
    struct table *t = NULL;

    buf_init(&full, PATH_MAX);
    if (!config_table_name_valid(name)) {
        config_parse_error(p, line, "invalid table name \"%s\" (letters, digits, '.', '-' and '_')",
                           name);
        goto fail;
    }
    if (path[0] == '\0') {
        config_parse_error(p, line, "empty file name for table <%s>", name);
        goto fail;
    }
    if ((path[0] != '/' && buf_append_str(&full, p->dir) < 0) || buf_append_str(&full, path) < 0 ||
        buf_append_byte(&full, '\0') < 0) {
        config_parse_error(p, line, "file name of table <%s> too long", name);
        goto fail;
    }
    t = table_new(name, (const char *)full.data, line);
    if (t == NULL) {
        config_parse_error(p, line, "out of memory");
        goto fail;
    }
    if (table_load_file(t, p->err, p->errsize) < 0) {
        p->failed = true;
        goto fail;
    }
    buf_free(&full);
    free(name);
    free(path);
    return config_table_add(p, t);
fail:
    table_free(t);
    buf_free(&full);
    free(name);
    free(path);
    return -1;
}

/* config_parse_maildir_new - the action that "maildir ..." options are collected into */
struct action *config_parse_maildir_new(struct config_parse *p, int line)
{
    struct action *a = calloc(1, sizeof(*a));

    if (a == NULL) {
        config_parse_error(p, line, "out of memory");
        return NULL;
    }
    a->type = ACTION_MAILDIR;
    a->line = line;
    return a;
}

/* config_parse_maildir_path - the PATH of "maildir [PATH]" */
int config_parse_maildir_path(struct config_parse *p, int line, struct action *a, char *path)
{
    if (a->maildir != NULL) {
        config_parse_error(p, line, "maildir path given twice (\"%s\" and \"%s\")", a->maildir,
                           path);
        free(path);
        return -1;
    }
    if (!config_maildir_valid(path)) {
        config_parse_error(p, line,
                           "invalid maildir path \"%s\" (not empty; %%{user} and %%{domain} are "
                           "the only placeholders)",
                           path);
        free(path);
        return -1;
    }
    a->maildir = path;
    return 0;
}

/* config_parse_maildir_table - "users <TABLE>" or "aliases <TABLE>" of a maildir action */
int config_parse_maildir_table(struct config_parse *p, int line, struct action *a,
                               enum config_table_use use, char *table)
{
    struct table **slot = use == CONFIG_TABLE_USE_ALIASES ? &a->aliases : &a->users;

    for (struct config_ref *r = p->refs; r != NULL; r = r->next) {
        if (r->table == slot) {
            config_parse_error(p, line, "%s given twice",
                               use == CONFIG_TABLE_USE_ALIASES ? "aliases" : "users");
            free(table);
            return -1;
        }
    }
    return config_ref_add(p, line, table, slot, use, NULL);
}

/* config_action_add - name an action and append it; a second action of the same name is an error */
static int config_action_add(struct config_parse *p, int line, char *name, struct action *a)
{
    a->name = name;
    a->line = line;
    if (name[0] == '\0') {
        config_parse_error(p, line, "empty action name");
        config_action_free(a);
        return -1;
    }
    for (struct action *o = p->cfg->actions; o != NULL; o = o->next) {
        if (strcmp(o->name, name) == 0) {
            config_parse_error(p, line, "duplicate action \"%s\" (first on line %d)", name,
                               o->line);
            config_action_free(a);
            return -1;
        }
    }
    *p->actions_tail = a;
    p->actions_tail = &a->next;
    return 0;
}

/* config_parse_action - "action NAME maildir ...", with the options collected in a */
int config_parse_action(struct config_parse *p, int line, char *name, struct action *a)
{
    if (a->maildir == NULL && (a->maildir = strdup(CONFIG_DEFAULT_MAILDIR)) == NULL) {
        config_parse_error(p, line, "out of memory");
        free(name);
        config_action_free(a);
        return -1;
    }
    return config_action_add(p, line, name, a);
}

/* config_parse_action_relay - "action NAME relay" */
int config_parse_action_relay(struct config_parse *p, int line, char *name)
{
    struct action *a = calloc(1, sizeof(*a));

    if (a == NULL) {
        config_parse_error(p, line, "out of memory");
        free(name);
        return -1;
    }
    a->type = ACTION_RELAY;
    return config_action_add(p, line, name, a);
}

/*
 * config_domain_table - the anonymous one-key table of "for domain NAME".
 * Its name has a ':', which no declared table's name can have, so it can
 * neither clash with one nor be referred to.
 */
static struct table *config_domain_table(struct config_parse *p, int line, const char *domain)
{
    struct table *t;
    struct buf name;
    char *key = strdup(domain);

    buf_init(&name, 300);
    if (buf_printf(&name, "domain:%s", domain) < 0 || buf_append_byte(&name, '\0') < 0 ||
        key == NULL || (t = table_new((const char *)name.data, NULL, line)) == NULL) {
        config_parse_error(p, line, "out of memory");
        free(key);
        buf_free(&name);
        return NULL;
    }
    buf_free(&name);
    if (table_add_key(t, key, line) < 0) {
        config_parse_error(p, line, "out of memory");
        table_free(t);
        return NULL;
    }
    *p->tables_tail = t;
    p->tables_tail = &t->next;
    return t;
}

/* config_parse_match - "match from ... for ... (action NAME | reject)" */
int config_parse_match(struct config_parse *p, int line, struct config_match_part from,
                       struct config_match_part for_, struct config_match_part then)
{
    struct match_rule *r = calloc(1, sizeof(*r));
    int rc = 0;

    if (r == NULL) {
        config_parse_error(p, line, "out of memory");
        free(from.name);
        free(for_.name);
        free(then.name);
        return -1;
    }
    r->line = line;
    /* The rule is appended first, so the references below point into the config. */
    *p->rules_tail = r;
    p->rules_tail = &r->next;

    r->from = from.kind == CONFIG_MATCH_FROM_SRC       ? MATCH_FROM_SRC
              : from.kind == CONFIG_MATCH_FROM_TRUSTED ? MATCH_FROM_TRUSTED
                                                       : MATCH_FROM_ANY;
    if (from.kind == CONFIG_MATCH_FROM_SRC)
        rc = config_ref_add(p, from.line, from.name, &r->from_table, CONFIG_TABLE_USE_NETWORKS,
                            NULL);

    r->for_ = for_.kind == CONFIG_MATCH_FOR_ANY ? MATCH_FOR_ANY : MATCH_FOR_DOMAIN;
    if (rc == 0 && for_.kind == CONFIG_MATCH_FOR_DOMAIN_TABLE) {
        rc = config_ref_add(p, for_.line, for_.name, &r->for_table, CONFIG_TABLE_USE_KEYS, NULL);
        for_.name = NULL;
    } else if (rc == 0 && for_.kind == CONFIG_MATCH_FOR_DOMAIN_NAME) {
        if (!config_domain_valid(for_.name)) {
            config_parse_error(p, for_.line, "invalid domain \"%s\"", for_.name);
            rc = -1;
        } else if ((r->for_table = config_domain_table(p, for_.line, for_.name)) == NULL) {
            rc = -1;
        }
    }

    if (rc == 0 && then.kind == CONFIG_MATCH_ACTION) {
        rc = config_ref_add(p, then.line, then.name, NULL, CONFIG_TABLE_USE_KEYS, &r->action);
        then.name = NULL;
    }

    /* from.name was taken over by config_ref_add(), or there was none. */
    free(for_.name);
    free(then.name);
    return rc;
}

/* A "limit" or "timeout" setting: how it is written, its minimum (and why), its maximum. */
struct config_limit_spec {
    const char *name;
    enum config_setting setting;
    enum config_value_kind kind;
    uint64_t min;
    const char *min_text;
    uint64_t max;
};

static const struct config_limit_spec config_limit_specs[] = {
    {"command-line", CONFIG_SETTING_LIMIT_COMMAND_LINE, CONFIG_VALUE_NUMBER, 512,
     "512 (RFC 5321 §4.5.3.1.4)", SIZE_MAX},
    {"text-line", CONFIG_SETTING_LIMIT_TEXT_LINE, CONFIG_VALUE_NUMBER, 1000,
     "1000 (RFC 5321 §4.5.3.1.6)", SIZE_MAX},
    {"recipients", CONFIG_SETTING_LIMIT_RECIPIENTS, CONFIG_VALUE_NUMBER, 100,
     "100 (RFC 5321 §4.5.3.1.8)", SIZE_MAX},
    {"message-size", CONFIG_SETTING_LIMIT_MESSAGE_SIZE, CONFIG_VALUE_SIZE, 64 * 1024, "64K",
     UINT64_MAX},
    {"errors", CONFIG_SETTING_LIMIT_ERRORS, CONFIG_VALUE_NUMBER, 1, "1", UINT_MAX},
    {"sessions", CONFIG_SETTING_LIMIT_SESSIONS, CONFIG_VALUE_NUMBER, 0, "0", UINT_MAX},
    {"sessions-per-client", CONFIG_SETTING_LIMIT_SESSIONS_PER_CLIENT, CONFIG_VALUE_NUMBER, 0, "0",
     UINT_MAX},
    {"connections-per-minute", CONFIG_SETTING_LIMIT_CONNECTIONS_PER_MINUTE, CONFIG_VALUE_NUMBER, 0,
     "0", UINT_MAX},
    {"connections-per-minute-total", CONFIG_SETTING_LIMIT_CONNECTIONS_PER_MINUTE_TOTAL,
     CONFIG_VALUE_NUMBER, 0, "0", UINT_MAX},
    {"queue-size", CONFIG_SETTING_LIMIT_QUEUE_SIZE, CONFIG_VALUE_NUMBER, 0, "0", UINT64_MAX},
};

/* RFC 5321 §4.5.3.2.7 wants minutes; a second is the least that can be written. */
static const struct config_limit_spec config_timeout_specs[] = {
    {"command", CONFIG_SETTING_TIMEOUT_COMMAND, CONFIG_VALUE_TIME, 1, "1s", UINT_MAX},
    {"data", CONFIG_SETTING_TIMEOUT_DATA, CONFIG_VALUE_TIME, 1, "1s", UINT_MAX},
};

#define COUNT(array) (sizeof(array) / sizeof((array)[0]))

/* config_store - put a checked value into the field its setting names */
static void config_store(struct config *cfg, enum config_setting setting, uint64_t v)
{
    switch (setting) {
    case CONFIG_SETTING_LIMIT_COMMAND_LINE:
        cfg->limits.command_line = (size_t)v;
        break;
    case CONFIG_SETTING_LIMIT_TEXT_LINE:
        cfg->limits.text_line = (size_t)v;
        break;
    case CONFIG_SETTING_LIMIT_RECIPIENTS:
        cfg->limits.recipients = (size_t)v;
        break;
    case CONFIG_SETTING_LIMIT_MESSAGE_SIZE:
        cfg->limits.message_size = v;
        break;
    case CONFIG_SETTING_LIMIT_ERRORS:
        cfg->limits.errors = (unsigned)v;
        break;
    case CONFIG_SETTING_LIMIT_SESSIONS:
        cfg->limits.sessions = (unsigned)v;
        break;
    case CONFIG_SETTING_LIMIT_SESSIONS_PER_CLIENT:
        cfg->limits.sessions_per_client = (unsigned)v;
        break;
    case CONFIG_SETTING_LIMIT_CONNECTIONS_PER_MINUTE:
        cfg->limits.connections_per_minute = (unsigned)v;
        break;
    case CONFIG_SETTING_LIMIT_CONNECTIONS_PER_MINUTE_TOTAL:
        cfg->limits.connections_per_minute_total = (unsigned)v;
        break;
    case CONFIG_SETTING_LIMIT_QUEUE_SIZE:
        cfg->limits.queue_size = v;
        break;
    case CONFIG_SETTING_TIMEOUT_COMMAND:
        cfg->timeouts.command = (unsigned)v;
        break;
    case CONFIG_SETTING_TIMEOUT_DATA:
        cfg->timeouts.data = (unsigned)v;
        break;
    default:
        fatal("config_store: setting %d is not a limit or timeout", (int)setting);
    }
}

/* config_setting_parse - "limit NAME VALUE" or "timeout NAME VALUE", with their specs */
static int config_setting_parse(struct config_parse *p, int line, const char *statement,
                                const struct config_limit_spec *specs, size_t nspecs, char *name,
                                char *value)
{
    const struct config_limit_spec *spec = NULL;
    char what[64];
    uint64_t v;
    int rc = -1;

    for (size_t i = 0; i < nspecs; i++) {
        if (strcmp(specs[i].name, name) == 0)
            spec = &specs[i];
    }
    if (spec == NULL) {
        struct buf known;
        buf_init(&known, 256);
        for (size_t i = 0; i < nspecs; i++)
            buf_printf(&known, "%s%s", i == 0 ? "" : ", ", specs[i].name);
        buf_append_byte(&known, '\0');
        config_parse_error(p, line, "unknown %s \"%s\" (known: %s)", statement, name,
                           known.data != NULL ? (const char *)known.data : "");
        buf_free(&known);
        goto out;
    }
    snprintf(what, sizeof(what), "%s %s", statement, spec->name);
    if (config_once(p, spec->setting, line, what) < 0 ||
        config_value(p, line, what, value, spec->kind, spec->min, spec->max, spec->min_text, &v) <
            0)
        goto out;
    config_store(p->cfg, spec->setting, v);
    rc = 0;
out:
    free(name);
    free(value);
    return rc;
}

/* config_parse_limit - "limit NAME VALUE" */
int config_parse_limit(struct config_parse *p, int line, char *name, char *value)
{
    return config_setting_parse(p, line, "limit", config_limit_specs, COUNT(config_limit_specs),
                                name, value);
}

/* config_parse_timeout - "timeout NAME TIME" */
int config_parse_timeout(struct config_parse *p, int line, char *name, char *value)
{
    return config_setting_parse(p, line, "timeout", config_timeout_specs,
                                COUNT(config_timeout_specs), name, value);
}

/* config_parse_list_start - a new inline table { ... } holding item */
struct table *config_parse_list_start(struct config_parse *p, int line, char *item)
{
    struct table *t = table_new(NULL, NULL, line);

    if (t == NULL) {
        config_parse_error(p, line, "out of memory");
        free(item);
        return NULL;
    }
    if (config_parse_list_add(p, t, line, item) < 0) {
        table_free(t);
        return NULL;
    }
    return t;
}

/* config_parse_list_add - add item to an inline table; on failure the table is left as it was */
int config_parse_list_add(struct config_parse *p, struct table *list, int line, char *item)
{
    if (item[0] == '\0') {
        config_parse_error(p, line, "empty item in list");
        free(item);
        return -1;
    }
    if (table_add_key(list, item, line) < 0) {
        config_parse_error(p, line, "out of memory");
        return -1;
    }
    return 0;
}

/* config_action_free - release one action (not the tables it refers to) */
void config_action_free(struct action *a)
{
    if (a == NULL)
        return;
    free(a->name);
    free(a->maildir);
    free(a);
}

/* ---- after the parse ------------------------------------------------------------- */

/* config_resolve - give every recorded name its table or action, in file order */
static int config_resolve(struct config_parse *p)
{
    for (struct config_ref *r = p->refs; r != NULL; r = r->next) {
        if (r->action != NULL) {
            struct action *a = p->cfg->actions;
            while (a != NULL && strcmp(a->name, r->name) != 0)
                a = a->next;
            if (a == NULL) {
                config_parse_error(p, r->line, "unknown action \"%s\"", r->name);
                return -1;
            }
            *r->action = a;
            continue;
        }
        struct table *t = p->cfg->tables;
        while (t != NULL && strcmp(t->name, r->name) != 0)
            t = t->next;
        if (t == NULL) {
            config_parse_error(p, r->line, "unknown table <%s>", r->name);
            return -1;
        }
        int rc = 0;
        if (r->use == CONFIG_TABLE_USE_NETWORKS)
            rc = table_use_networks(t, p->file, p->err, p->errsize);
        else if (r->use == CONFIG_TABLE_USE_ALIASES)
            rc = table_check_aliases(t, p->file, p->err, p->errsize);
        if (rc < 0) {
            p->failed = true;
            return -1;
        }
        *r->table = t;
    }
    return 0;
}

/* config_default_hostname - this machine's name, as "hostname" defaults to */
static char *config_default_hostname(void)
{
    char name[HOST_NAME_MAX + 1];

    if (gethostname(name, sizeof(name)) < 0 || name[0] == '\0') {
        log_warn("cannot get this machine's host name (%s); using \"localhost\"", strerror(errno));
        return strdup("localhost");
    }
    name[sizeof(name) - 1] = '\0';
    return strdup(name);
}

/* config_new - a config holding the defaults of every setting */
static struct config *config_new(void)
{
    struct config *cfg = calloc(1, sizeof(*cfg));

    if (cfg == NULL)
        return NULL;
    cfg->user = strdup("pigeon");
    cfg->queue_dir = strdup("./var/spool");
    cfg->queue_sync = QUEUE_SYNC_SYNCFS;
    cfg->delivery_workers = 2;
    cfg->limits = (struct config_limits){
        .command_line = 512,
        .text_line = 1000,
        .recipients = 1000,
        .message_size = 35 * 1024 * 1024,
        .errors = 20,
        .sessions = 16384,
        .sessions_per_client = 50,
        .connections_per_minute = 300,
        .connections_per_minute_total = 60000,
        .queue_size = 100000,
    };
    cfg->timeouts = (struct config_timeouts){.command = 300, .data = 300};
    if (cfg->user == NULL || cfg->queue_dir == NULL) {
        config_free(cfg);
        return NULL;
    }
    return cfg;
}

/* config_run_parser - run the grammar over text; 0 if it was accepted without error */
static int config_run_parser(struct config_parse *p, const char *text, size_t len)
{
    yyscan_t scanner;
    YY_BUFFER_STATE input;
    int rc;

    if (config_yylex_init_extra(p, &scanner) != 0) {
        config_parse_error(p, 0, "out of memory");
        return -1;
    }
    input = config_yy_scan_bytes(text, (int)len, scanner);
    /* flex's scan_bytes leaves the line count of the new buffer unset. */
    if (input != NULL)
        config_yyset_lineno(1, scanner);
    rc = input == NULL ? -1 : config_yyparse(scanner, p);
    if (input != NULL)
        config_yy_delete_buffer(input, scanner);
    config_yylex_destroy(scanner);
    if (rc != 0 && !p->failed)
        config_parse_error(p, 0, rc == 2 ? "out of memory" : "syntax error");
    return p->failed ? -1 : 0;
}

/* config_check_text - the text is read with C strings: refuse NUL bytes, naming the line */
static int config_check_text(struct config_parse *p, const char *text, size_t len)
{
    const char *nul = memchr(text, '\0', len);
    int line = 1;

    if (nul == NULL)
        return 0;
    for (const char *c = text; c < nul; c++)
        line += *c == '\n';
    config_parse_error(p, line, "NUL byte in configuration file");
    return -1;
}

/*
 * config_load - read path (or the built-in default if path is NULL) into a
 * new struct config.  On error returns NULL and writes "file:line: message"
 * into err (at most errsize bytes).
 */
struct config *config_load(const char *path, char *err, size_t errsize)
{
    struct config_parse p = {.err = err, .errsize = errsize};
    struct buf text;
    const char *data = config_default_text;
    size_t len;
    const char *slash;

    if (errsize > 0)
        err[0] = '\0';
    p.file = path != NULL ? path : CONFIG_BUILTIN_NAME;
    buf_init(&text, CONFIG_FILE_MAX);
    if (path != NULL) {
        if (config_read_file(path, CONFIG_FILE_MAX, &text) < 0) {
            if (errno == EFBIG)
                config_error_at(err, errsize, path, 0, "larger than %d bytes", CONFIG_FILE_MAX);
            else
                config_error_at(err, errsize, path, 0, "%s", strerror(errno));
            buf_free(&text);
            return NULL;
        }
        data = text.data != NULL ? (const char *)text.data : "";
    }
    len = path != NULL ? text.len : strlen(config_default_text);

    /* Table files named with relative paths are found next to the config file. */
    slash = path != NULL ? strrchr(path, '/') : NULL;
    p.dir = slash != NULL ? strndup(path, (size_t)(slash - path) + 1) : strdup("");
    p.cfg = config_new();
    if (p.dir == NULL || p.cfg == NULL) {
        config_parse_error(&p, 0, "out of memory");
        goto done;
    }
    if (path != NULL && (p.cfg->path = strdup(path)) == NULL) {
        config_parse_error(&p, 0, "out of memory");
        goto done;
    }
    p.refs_tail = &p.refs;
    p.listeners_tail = &p.cfg->listeners;
    p.tables_tail = &p.cfg->tables;
    p.actions_tail = &p.cfg->actions;
    p.rules_tail = &p.cfg->rules;

    if (config_check_text(&p, data, len) < 0 || config_run_parser(&p, data, len) < 0 ||
        config_resolve(&p) < 0)
        goto done;
    if (p.cfg->listeners == NULL) {
        config_parse_error(&p, 0, "no listen statement (pigeond needs at least one listener)");
        goto done;
    }
    if (p.cfg->hostname == NULL && (p.cfg->hostname = config_default_hostname()) == NULL)
        config_parse_error(&p, 0, "out of memory");

done:
    buf_free(&text);
    free(p.dir);
    while (p.refs != NULL) {
        struct config_ref *next = p.refs->next;
        free(p.refs->name);
        free(p.refs);
        p.refs = next;
    }
    if (p.failed) {
        config_free(p.cfg);
        return NULL;
    }
    return p.cfg;
}

/* config_free - release everything config_load() allocated */
void config_free(struct config *cfg)
{
    if (cfg == NULL)
        return;
    while (cfg->listeners != NULL) {
        struct listener_config *next = cfg->listeners->next;
        free(cfg->listeners->address);
        free(cfg->listeners);
        cfg->listeners = next;
    }
    while (cfg->tables != NULL) {
        struct table *next = cfg->tables->next;
        table_free(cfg->tables);
        cfg->tables = next;
    }
    while (cfg->actions != NULL) {
        struct action *next = cfg->actions->next;
        config_action_free(cfg->actions);
        cfg->actions = next;
    }
    while (cfg->rules != NULL) {
        struct match_rule *next = cfg->rules->next;
        free(cfg->rules);
        cfg->rules = next;
    }
    free(cfg->path);
    free(cfg->hostname);
    free(cfg->user);
    free(cfg->queue_dir);
    free(cfg);
}
