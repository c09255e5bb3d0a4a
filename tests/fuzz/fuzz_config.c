/*
 * fuzz_config.c - the pigeond.conf parser (src/config: lex.l, parse.y,
 * config.c, table.c).
 *
 * config_load() reads a file and there is no entry point that parses text
 * from memory, so each input is written to pigeond.conf in a private
 * directory (/tmp/pigeon-fuzz-config.<pid>/), loaded, and the directory is
 * removed when the fuzzer exits.  The directory also holds two table files,
 * "users" and "aliases", so that configurations naming them by a relative
 * path load real tables.
 *
 * A configuration either loads or fails with "file:line: message"; one that
 * loads is one the daemon can run: it has a listener and a host name, every
 * table reference and action reference resolves, and every table answers
 * lookups (by key, any case, and by network address) without trouble.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config/config.h"
#include "fuzz.h"

static char dir[64];
static char conf_path[96];

/* write_file - create path holding p[0..n); aborts on failure (the harness cannot go on) */
static void write_file(const char *path, const void *p, size_t n)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        perror(path);
        abort();
    }
    const uint8_t *b = p;
    while (n > 0) {
        ssize_t w = write(fd, b, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            perror(path);
            abort();
        }
        b += w;
        n -= (size_t)w;
    }
    close(fd);
}

/* remove_dir - the private directory and what the harness put in it */
static void remove_dir(void)
{
    static const char *const names[] = {"pigeond.conf", "users", "aliases"};
    char path[128];
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
        unlink(path);
    }
    rmdir(dir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    static const char users[] = "alice\nbob\n# a comment\n\ncarol\n";
    static const char aliases[] = "postmaster: alice\nabuse: alice, bob\n"
                                  "team: alice, bob, carol@example.org\n";
    char path[128];

    (void)argc;
    (void)argv;
    snprintf(dir, sizeof(dir), "/tmp/pigeon-fuzz-config.%ld", (long)getpid());
    snprintf(conf_path, sizeof(conf_path), "%s/pigeond.conf", dir);
    if (mkdir(dir, 0700) < 0 && errno != EEXIST) {
        perror(dir);
        abort();
    }
    atexit(remove_dir);
    snprintf(path, sizeof(path), "%s/users", dir);
    write_file(path, users, sizeof(users) - 1);
    snprintf(path, sizeof(path), "%s/aliases", dir);
    write_file(path, aliases, sizeof(aliases) - 1);
    return 0;
}

/* check_table - a loaded table is sorted, lower-cased and answers lookups */
static void check_table(const struct table *t)
{
    FUZZ_CHECK(t->name != NULL, "table without a name");
    for (size_t i = 0; i < t->nentries; i++) {
        const struct table_entry *e = &t->entries[i];
        FUZZ_CHECK(e->key != NULL, "table <%s>: entry without a key", t->name);
        size_t len = strlen(e->key);
        for (size_t k = 0; k < len; k++)
            FUZZ_CHECK(e->key[k] < 'A' || e->key[k] > 'Z', "table <%s>: key \"%s\" not lower-case",
                       t->name, e->key);
        if (i > 0)
            FUZZ_CHECK(strcmp(t->entries[i - 1].key, e->key) < 0,
                       "table <%s>: keys not sorted or repeated", t->name);
        FUZZ_CHECK(table_lookup(t, e->key, len) == e, "table <%s>: \"%s\" not found", t->name,
                   e->key);
        /* Lookups take network data: bytes with a length, any case. */
        char upper[512];
        if (len < sizeof(upper)) {
            for (size_t k = 0; k < len; k++)
                upper[k] =
                    (e->key[k] >= 'a' && e->key[k] <= 'z') ? (char)(e->key[k] - 32) : e->key[k];
            FUZZ_CHECK(table_lookup(t, upper, len) == e, "table <%s>: \"%s\" case", t->name,
                       e->key);
            if (len > 0)
                FUZZ_CHECK(table_lookup(t, upper, len - 1) != e, "table <%s>: prefix", t->name);
        }
        for (size_t v = 0; v < e->nvalues; v++)
            FUZZ_CHECK(e->values[v] != NULL, "table <%s>: NULL value", t->name);
    }
    FUZZ_CHECK(table_lookup(t, "\0", 1) == NULL, "table <%s>: NUL key found", t->name);

    struct sockaddr_in v4 = {.sin_family = AF_INET};
    struct sockaddr_in6 v6 = {.sin6_family = AF_INET6};
    inet_pton(AF_INET, "127.0.0.1", &v4.sin_addr);
    inet_pton(AF_INET6, "::1", &v6.sin6_addr);
    (void)table_match_address(t, (const struct sockaddr *)&v4);
    (void)table_match_address(t, (const struct sockaddr *)&v6);
    for (size_t i = 0; i < t->nnetworks; i++) {
        const struct table_network *n = &t->networks[i];
        FUZZ_CHECK((n->family == AF_INET && n->prefix <= 32) ||
                       (n->family == AF_INET6 && n->prefix <= 128),
                   "table <%s>: network /%u of family %d", t->name, n->prefix, n->family);
    }
}

/* check_config - what a configuration that loads must look like */
static void check_config(const struct config *cfg)
{
    FUZZ_CHECK(cfg->listeners != NULL, "loaded without a listener");
    FUZZ_CHECK(cfg->hostname != NULL && cfg->user != NULL && cfg->queue_dir != NULL,
               "a setting without a value");
    for (const struct listener_config *l = cfg->listeners; l; l = l->next)
        FUZZ_CHECK(l->address != NULL, "listener without an address");
    for (const struct table *t = cfg->tables; t; t = t->next)
        check_table(t);
    if (cfg->trusted)
        check_table(cfg->trusted);
    for (const struct action *a = cfg->actions; a; a = a->next) {
        FUZZ_CHECK(a->name != NULL, "action without a name");
        FUZZ_CHECK(a->type != ACTION_MAILDIR || a->maildir != NULL, "maildir action without path");
    }
    for (const struct match_rule *r = cfg->rules; r; r = r->next) {
        FUZZ_CHECK(r->from != MATCH_FROM_SRC || r->from_table != NULL, "from src without table");
        FUZZ_CHECK(r->for_ != MATCH_FOR_DOMAIN || r->for_table != NULL, "for domain w/o table");
    }
    FUZZ_CHECK(cfg->limits.command_line > 0 && cfg->limits.text_line > 0, "zero line limit");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[512];

    write_file(conf_path, data, size);
    memset(err, 'x', sizeof(err));
    struct config *cfg = config_load(conf_path, err, sizeof(err));
    FUZZ_CHECK(memchr(err, '\0', sizeof(err)) != NULL, "error message not terminated");
    if (cfg == NULL) {
        FUZZ_CHECK(err[0] != '\0', "refused without a message");
        /* "file:line: message", or "file: message"; the file may be a table's. */
        FUZZ_CHECK(strstr(err, ": ") != NULL, "message does not name a file: \"%s\"", err);
    } else {
        check_config(cfg);
        config_free(cfg);
    }
    unlink(conf_path);
    return 0;
}
