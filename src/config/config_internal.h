/*
 * config_internal.h - what the files of src/config share with each other and
 * with nobody else.
 *
 * How the pieces fit:
 *
 *   lex.l     turns the text into tokens (words, quoted strings, <table>
 *             references, braces, commas, ends of lines).
 *   parse.y   the grammar; each statement it recognises is handed to one of
 *             the config_parse_*() functions below.
 *   config.c  those functions: check one statement, store it in the struct
 *             config being built.  Then, once the whole file is read,
 *             config_load() resolves names, loads file tables and checks
 *             what can only be checked with the whole file in view.
 *   table.c   struct table: building, sorting, lookups, loading table
 *             files, and the checks that depend on how a table is used
 *             (as networks, as aliases).
 *
 * Ownership rule for the config_parse_*() functions: every malloc'd string
 * or object passed in belongs to the callee from then on, on success and on
 * failure alike, so the grammar's actions never free after a call.  On
 * failure they return -1 (or NULL) with the message already recorded.
 */
#ifndef PIGEON_CONFIG_INTERNAL_H
#define PIGEON_CONFIG_INTERNAL_H

#include "config.h"
#include "lib/buf.h"

#include <stdbool.h>
#include <stddef.h>

/* Settings that may be given once; a second statement is an error. */
enum config_setting {
    CONFIG_SETTING_HOSTNAME,
    CONFIG_SETTING_USER,
    CONFIG_SETTING_QUEUE,
    CONFIG_SETTING_WORKERS,
    CONFIG_SETTING_TRUSTED,
    CONFIG_SETTING_LIMIT_COMMAND_LINE,
    CONFIG_SETTING_LIMIT_TEXT_LINE,
    CONFIG_SETTING_LIMIT_RECIPIENTS,
    CONFIG_SETTING_LIMIT_MESSAGE_SIZE,
    CONFIG_SETTING_LIMIT_ERRORS,
    CONFIG_SETTING_LIMIT_SESSIONS,
    CONFIG_SETTING_LIMIT_SESSIONS_PER_CLIENT,
    CONFIG_SETTING_LIMIT_CONNECTIONS_PER_MINUTE,
    CONFIG_SETTING_LIMIT_CONNECTIONS_PER_MINUTE_TOTAL,
    CONFIG_SETTING_LIMIT_QUEUE_SIZE,
    CONFIG_SETTING_TIMEOUT_COMMAND,
    CONFIG_SETTING_TIMEOUT_DATA,
    CONFIG_SETTING_COUNT
};

/* How a table is used decides what its keys and values must look like. */
enum config_table_use {
    CONFIG_TABLE_USE_KEYS,     /* users, domain <T>: keys are looked up, nothing more */
    CONFIG_TABLE_USE_NETWORKS, /* trusted, from src <T>: every key is an address or CIDR */
    CONFIG_TABLE_USE_ALIASES,  /* aliases <T>: every value is a local name or an address */
};

/*
 * A name used before it can be checked: tables and actions may be declared
 * after the statement that refers to them.  Exactly one of table and action
 * is set: the place to store what the name resolves to.
 */
struct config_ref {
    char *name;
    int line;
    struct table **table;
    enum config_table_use use;
    struct action **action;
    struct config_ref *next;
};

/* The parts of a match rule, as the grammar sees them. */
enum config_match_kind {
    CONFIG_MATCH_FROM_ANY,
    CONFIG_MATCH_FROM_TRUSTED,
    CONFIG_MATCH_FROM_SRC, /* name: a table */
    CONFIG_MATCH_FOR_ANY,
    CONFIG_MATCH_FOR_DOMAIN_TABLE, /* name: a table */
    CONFIG_MATCH_FOR_DOMAIN_NAME,  /* name: the domain itself */
    CONFIG_MATCH_ACTION,           /* name: an action */
    CONFIG_MATCH_REJECT,
};

struct config_match_part {
    enum config_match_kind kind;
    char *name; /* NULL for the kinds without a name */
    int line;
};

/* Everything the parser and scanner need; one per config_load() call. */
struct config_parse {
    struct config *cfg; /* being built */
    const char *file;   /* for messages: the path, or "(built-in)" */
    char *dir;          /* prefix for relative table paths: "" or "dir/" */
    char *err;          /* the caller's error buffer */
    size_t errsize;
    bool failed;         /* an error has been recorded; later ones are dropped */
    bool eof_newline;    /* scanner: the end of line that ends the last statement was sent */
    char token_text[48]; /* scanner: the last token as written (cut short), for syntax errors */
    int seen[CONFIG_SETTING_COUNT]; /* line of each once-only setting, 0 if not given */
    struct config_ref *refs;        /* in the order they appear in the file */
    struct config_ref **refs_tail;
    struct listener_config **listeners_tail;
    struct table **tables_tail;
    struct action **actions_tail;
    struct match_rule **rules_tail;
};

/* ---- config.c: errors and files ------------------------------------------ */

/* config_error_at - write "file:line: message" (or "file: message" if line is 0) into err */
void config_error_at(char *err, size_t errsize, const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

/* config_parse_error - record the first error of a parse; later ones are dropped */
void config_parse_error(struct config_parse *p, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* config_read_file - read a whole file of at most limit bytes into out; -1 with errno set */
int config_read_file(const char *path, size_t limit, struct buf *out);

/* ---- config.c: one function per statement, called by parse.y ------------- */

int config_parse_hostname(struct config_parse *p, int line, char *name);
int config_parse_user(struct config_parse *p, int line, char *user);
int config_parse_queue(struct config_parse *p, int line, char *dir, char *sync);
int config_parse_workers(struct config_parse *p, int line, char *count);
int config_parse_trusted_list(struct config_parse *p, int line, struct table *list);
int config_parse_trusted_table(struct config_parse *p, int line, char *table);
int config_parse_listen(struct config_parse *p, int line, char *address, char *port);
int config_parse_table_list(struct config_parse *p, int line, char *name, struct table *list);
int config_parse_table_file(struct config_parse *p, int line, char *name, char *path);
struct action *config_parse_maildir_new(struct config_parse *p, int line);
int config_parse_maildir_path(struct config_parse *p, int line, struct action *a, char *path);
int config_parse_maildir_table(struct config_parse *p, int line, struct action *a,
                               enum config_table_use use, char *table);
int config_parse_action(struct config_parse *p, int line, char *name, struct action *a);
int config_parse_action_relay(struct config_parse *p, int line, char *name);
int config_parse_match(struct config_parse *p, int line, struct config_match_part from,
                       struct config_match_part for_, struct config_match_part then);
int config_parse_limit(struct config_parse *p, int line, char *name, char *value);
int config_parse_timeout(struct config_parse *p, int line, char *name, char *value);

/* config_parse_list_start - a new inline table { ... } holding item */
struct table *config_parse_list_start(struct config_parse *p, int line, char *item);

/* config_parse_list_add - add item to an inline table; on failure the table is left as it was */
int config_parse_list_add(struct config_parse *p, struct table *list, int line, char *item);

/* config_action_free - release one action (not the tables it refers to) */
void config_action_free(struct action *a);

/* config_table_name_valid - may s be the name of a declared table? */
bool config_table_name_valid(const char *s);

/* ---- table.c ------------------------------------------------------------ */

/* table_new - an empty table; name and source (may be NULL) are copied */
struct table *table_new(const char *name, const char *source, int line);

/* table_free - release one table (not the rest of the list) */
void table_free(struct table *t);

/* table_add_key - add an entry for key (taken over, lower-cased); -1 if out of memory */
int table_add_key(struct table *t, char *key, int line);

/* table_finish - sort the entries for table_lookup(); duplicate keys are an error */
int table_finish(struct table *t, const char *file, char *err, size_t errsize);

/* table_load_file - fill t from the file t->source; errors name that file and line */
int table_load_file(struct table *t, char *err, size_t errsize);

/* table_use_networks - parse every key as an address or CIDR into t->networks */
int table_use_networks(struct table *t, const char *file, char *err, size_t errsize);

/* table_check_aliases - is every key a local name, and every value a local name or address? */
int table_check_aliases(const struct table *t, const char *file, char *err, size_t errsize);

#endif
