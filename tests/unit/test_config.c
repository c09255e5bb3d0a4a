/*
 * test_config.c - unit tests for src/config: pigeond.conf, its tables and
 * its error messages.
 *
 * Each test that needs files gets a fresh temporary directory (made with
 * mkdtemp, removed afterwards) and writes its pigeond.conf and table files
 * there; error messages are compared whole, "file:line: message", because
 * the file and line are what an administrator acts on.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "config/config.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>
#include <unistd.h>

/* What one test works with: its directory, the config file in it, the result. */
struct fixture {
    char dir[64];
    char conf[128];
    char err[1024];
    char expected[2048];
    struct config *cfg;
};

/* setup - a fresh temporary directory for the test's files */
static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));

    if (f == NULL)
        return -1;
    snprintf(f->dir, sizeof(f->dir), "/tmp/pigeon-test-config-XXXXXX");
    if (mkdtemp(f->dir) == NULL) {
        free(f);
        return -1;
    }
    snprintf(f->conf, sizeof(f->conf), "%s/pigeond.conf", f->dir);
    *state = f;
    return 0;
}

/* teardown - free the config, remove the directory and everything in it */
static int teardown(void **state)
{
    struct fixture *f = *state;
    DIR *d = opendir(f->dir);
    struct dirent *e;
    char path[PATH_MAX + 300];

    config_free(f->cfg);
    while (d != NULL && (e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        snprintf(path, sizeof(path), "%s/%s", f->dir, e->d_name);
        unlink(path);
    }
    if (d != NULL)
        closedir(d);
    rmdir(f->dir);
    free(f);
    return 0;
}

/* write_file - create name in the test directory holding text */
static void write_file(struct fixture *f, const char *name, const char *text)
{
    char path[PATH_MAX];
    FILE *fp;

    snprintf(path, sizeof(path), "%s/%s", f->dir, name);
    fp = fopen(path, "w");
    assert_non_null(fp);
    assert_int_equal(fwrite(text, 1, strlen(text), fp), strlen(text));
    assert_int_equal(fclose(fp), 0);
}

/* load - write text as the test's pigeond.conf and load it; NULL on error (see f->err) */
static struct config *load(struct fixture *f, const char *text)
{
    config_free(f->cfg);
    write_file(f, "pigeond.conf", text);
    f->cfg = config_load(f->conf, f->err, sizeof(f->err));
    return f->cfg;
}

/* load_ok - load text and insist that it loads */
static struct config *load_ok(struct fixture *f, const char *text)
{
    struct config *cfg = load(f, text);

    if (cfg == NULL)
        fail_msg("config did not load: %s", f->err);
    return cfg;
}

/* assert_load_error - text must fail with "pigeond.conf-path:line: message" */
static void assert_load_error(struct fixture *f, const char *text, int line, const char *message)
{
    assert_null(load(f, text));
    if (line > 0)
        snprintf(f->expected, sizeof(f->expected), "%s:%d: %s", f->conf, line, message);
    else
        snprintf(f->expected, sizeof(f->expected), "%s: %s", f->conf, message);
    assert_string_equal(f->err, f->expected);
}

/* assert_table_file_error - text must fail with "dir/file:line: message" */
static void assert_table_file_error(struct fixture *f, const char *text, const char *file, int line,
                                    const char *message)
{
    assert_null(load(f, text));
    snprintf(f->expected, sizeof(f->expected), "%s/%s:%d: %s", f->dir, file, line, message);
    assert_string_equal(f->err, f->expected);
}

/* find_table - the table of that name in cfg, or NULL */
static const struct table *find_table(const struct config *cfg, const char *name)
{
    for (const struct table *t = cfg->tables; t != NULL; t = t->next) {
        if (strcmp(t->name, name) == 0)
            return t;
    }
    return NULL;
}

/* has_key - does t have key (a C string, looked up with its length)? */
static bool has_key(const struct table *t, const char *key)
{
    return table_lookup(t, key, strlen(key)) != NULL;
}

/* matches - does the numeric address fall in the table's networks? */
static bool matches(const struct table *t, const char *address)
{
    struct sockaddr_in sin;
    struct sockaddr_in6 sin6;

    memset(&sin, 0, sizeof(sin));
    memset(&sin6, 0, sizeof(sin6));
    if (inet_pton(AF_INET, address, &sin.sin_addr) == 1) {
        sin.sin_family = AF_INET;
        return table_match_address(t, (const struct sockaddr *)&sin);
    }
    assert_int_equal(inet_pton(AF_INET6, address, &sin6.sin6_addr), 1);
    sin6.sin6_family = AF_INET6;
    return table_match_address(t, (const struct sockaddr *)&sin6);
}

/* A config needs a listener; most tests start with this line. */
#define LISTEN "listen on 127.0.0.1\n"

/* ---- the built-in default ------------------------------------------------- */

static void test_default_config_listens_on_127_0_0_1_port_2525(void **state)
{
    struct fixture *f = *state;

    f->cfg = config_load(NULL, f->err, sizeof(f->err));
    assert_non_null(f->cfg);
    assert_null(f->cfg->path);
    assert_non_null(f->cfg->listeners);
    assert_string_equal(f->cfg->listeners->address, "127.0.0.1");
    assert_int_equal(f->cfg->listeners->port, 2525);
    assert_null(f->cfg->listeners->next);
}

static void test_default_config_trusts_loopback_only(void **state)
{
    struct fixture *f = *state;

    f->cfg = config_load(NULL, f->err, sizeof(f->err));
    assert_non_null(f->cfg);
    assert_non_null(f->cfg->trusted);
    assert_string_equal(f->cfg->trusted->name, "trusted");
    assert_int_equal(f->cfg->trusted->nnetworks, 2);
    assert_true(matches(f->cfg->trusted, "127.0.0.1"));
    assert_true(matches(f->cfg->trusted, "127.255.0.9"));
    assert_true(matches(f->cfg->trusted, "::1"));
    assert_true(matches(f->cfg->trusted, "::ffff:127.0.0.1"));
    assert_false(matches(f->cfg->trusted, "10.0.0.1"));
    assert_false(matches(f->cfg->trusted, "128.0.0.1"));
    assert_false(matches(f->cfg->trusted, "::2"));
}

static void test_default_config_receives_for_localhost(void **state)
{
    struct fixture *f = *state;
    const struct table *domains;

    f->cfg = config_load(NULL, f->err, sizeof(f->err));
    assert_non_null(f->cfg);
    domains = find_table(f->cfg, "domains");
    assert_non_null(domains);
    assert_int_equal(domains->nentries, 1);
    assert_true(has_key(domains, "localhost"));
    assert_true(has_key(domains, "LocalHost"));
    assert_false(has_key(domains, "example.org"));
}

static void test_default_config_has_local_maildir_and_outbound_relay(void **state)
{
    struct fixture *f = *state;
    const struct action *a;

    f->cfg = config_load(NULL, f->err, sizeof(f->err));
    assert_non_null(f->cfg);
    a = f->cfg->actions;
    assert_non_null(a);
    assert_string_equal(a->name, "local");
    assert_int_equal(a->type, ACTION_MAILDIR);
    assert_string_equal(a->maildir, "./var/mail/%{user}/Maildir");
    assert_null(a->users);
    assert_null(a->aliases);
    a = a->next;
    assert_non_null(a);
    assert_string_equal(a->name, "outbound");
    assert_int_equal(a->type, ACTION_RELAY);
    assert_null(a->next);
}

static void test_default_config_rules_deliver_local_then_relay_for_trusted(void **state)
{
    struct fixture *f = *state;
    const struct match_rule *r;

    f->cfg = config_load(NULL, f->err, sizeof(f->err));
    assert_non_null(f->cfg);
    r = f->cfg->rules;
    assert_non_null(r);
    assert_int_equal(r->from, MATCH_FROM_ANY);
    assert_int_equal(r->for_, MATCH_FOR_DOMAIN);
    assert_ptr_equal(r->for_table, find_table(f->cfg, "domains"));
    assert_ptr_equal(r->action, f->cfg->actions);
    r = r->next;
    assert_non_null(r);
    assert_int_equal(r->from, MATCH_FROM_TRUSTED);
    assert_int_equal(r->for_, MATCH_FOR_ANY);
    assert_ptr_equal(r->action, f->cfg->actions->next);
    assert_null(r->next);
}

static void test_default_config_settings_limits_and_timeouts(void **state)
{
    struct fixture *f = *state;
    char host[256] = "";

    f->cfg = config_load(NULL, f->err, sizeof(f->err));
    assert_non_null(f->cfg);
    gethostname(host, sizeof(host) - 1);
    assert_string_equal(f->cfg->hostname, host[0] != '\0' ? host : "localhost");
    assert_string_equal(f->cfg->user, "pigeon");
    assert_string_equal(f->cfg->queue_dir, "./var/spool");
    assert_int_equal(f->cfg->queue_sync, QUEUE_SYNC_SYNCFS);
    assert_int_equal(f->cfg->delivery_workers, 2);
    assert_int_equal(f->cfg->limits.command_line, 512);
    assert_int_equal(f->cfg->limits.text_line, 1000);
    assert_int_equal(f->cfg->limits.recipients, 1000);
    assert_int_equal(f->cfg->limits.message_size, 36700160);
    assert_int_equal(f->cfg->limits.errors, 20);
    assert_int_equal(f->cfg->limits.sessions, 16384);
    assert_int_equal(f->cfg->limits.sessions_per_client, 50);
    assert_int_equal(f->cfg->limits.connections_per_minute, 300);
    assert_int_equal(f->cfg->limits.connections_per_minute_total, 60000);
    assert_int_equal(f->cfg->limits.queue_size, 100000);
    assert_int_equal(f->cfg->timeouts.command, 300);
    assert_int_equal(f->cfg->timeouts.data, 300);
}

static void test_default_text_is_the_example_file(void **state)
{
    (void)state;
    assert_non_null(strstr(config_default_text, "# pigeond.conf - "));
    assert_non_null(strstr(config_default_text, "listen on 127.0.0.1 port 2525\n"));
}

/* ---- defaults and every statement ------------------------------------------- */

static void test_file_with_only_a_listener_gets_every_default(void **state)
{
    struct fixture *f = *state;
    struct config *cfg = load_ok(f, LISTEN);

    assert_string_equal(cfg->path, f->conf);
    assert_non_null(cfg->hostname);
    assert_string_equal(cfg->user, "pigeon");
    assert_string_equal(cfg->queue_dir, "./var/spool");
    assert_int_equal(cfg->queue_sync, QUEUE_SYNC_SYNCFS);
    assert_int_equal(cfg->delivery_workers, 2);
    assert_null(cfg->trusted);
    assert_int_equal(cfg->listeners->port, 25);
    assert_null(cfg->tables);
    assert_null(cfg->actions);
    assert_null(cfg->rules);
    assert_int_equal(cfg->limits.command_line, 512);
    assert_int_equal(cfg->limits.text_line, 1000);
    assert_int_equal(cfg->limits.recipients, 1000);
    assert_int_equal(cfg->limits.message_size, 35 * 1024 * 1024);
    assert_int_equal(cfg->limits.errors, 20);
    assert_int_equal(cfg->limits.sessions, 16384);
    assert_int_equal(cfg->limits.sessions_per_client, 50);
    assert_int_equal(cfg->limits.connections_per_minute, 300);
    assert_int_equal(cfg->limits.connections_per_minute_total, 60000);
    assert_int_equal(cfg->limits.queue_size, 100000);
    assert_int_equal(cfg->timeouts.command, 300);
    assert_int_equal(cfg->timeouts.data, 300);
}

static void test_hostname_user_queue_and_workers_are_stored(void **state)
{
    struct fixture *f = *state;
    struct config *cfg = load_ok(f, "hostname mail.example.org\n"
                                    "user \"mailer\"\n"
                                    "queue /var/spool/pigeon sync fsync\n"
                                    "workers 64\n" LISTEN);

    assert_string_equal(cfg->hostname, "mail.example.org");
    assert_string_equal(cfg->user, "mailer");
    assert_string_equal(cfg->queue_dir, "/var/spool/pigeon");
    assert_int_equal(cfg->queue_sync, QUEUE_SYNC_FSYNC);
    assert_int_equal(cfg->delivery_workers, 64);
}

static void test_queue_without_sync_is_syncfs(void **state)
{
    struct fixture *f = *state;

    assert_int_equal(load_ok(f, "queue spool\n" LISTEN)->queue_sync, QUEUE_SYNC_SYNCFS);
    assert_int_equal(load_ok(f, "queue spool sync syncfs\n" LISTEN)->queue_sync, QUEUE_SYNC_SYNCFS);
}

static void test_unknown_queue_sync_is_rejected(void **state)
{
    assert_load_error(*state, LISTEN "queue spool sync never\n", 2,
                      "unknown queue sync \"never\" (syncfs or fsync)");
}

static void test_hostname_may_be_an_address_literal(void **state)
{
    struct fixture *f = *state;

    assert_string_equal(load_ok(f, "hostname \"[192.0.2.1]\"\n" LISTEN)->hostname, "[192.0.2.1]");
    assert_string_equal(load_ok(f, "hostname \"[IPv6:2001:db8::1]\"\n" LISTEN)->hostname,
                        "[IPv6:2001:db8::1]");
}

static void test_hostname_that_could_inject_header_text_is_rejected(void **state)
{
    assert_load_error(*state, LISTEN "hostname \"mail.example.org extra\"\n", 2,
                      "invalid hostname \"mail.example.org extra\" (a domain name, or an "
                      "address literal such as [192.0.2.1])");
}

static void test_workers_must_be_1_to_64(void **state)
{
    struct fixture *f = *state;

    assert_load_error(f, LISTEN "workers 0\n", 2, "workers must be at least 1");
    assert_load_error(f, LISTEN "workers 65\n", 2, "workers must be at most 64");
    assert_load_error(f, LISTEN "workers two\n", 2, "invalid workers \"two\" (a number)");
}

static void test_listen_on_ipv6_and_several_listeners_keep_their_order(void **state)
{
    struct fixture *f = *state;
    struct config *cfg = load_ok(f, "listen on ::1 port 2525\n"
                                    "listen on 0.0.0.0\n"
                                    "listen on 2001:db8::25 port 587\n");
    const struct listener_config *l = cfg->listeners;

    assert_string_equal(l->address, "::1");
    assert_int_equal(l->port, 2525);
    assert_int_equal(l->line, 1);
    l = l->next;
    assert_string_equal(l->address, "0.0.0.0");
    assert_int_equal(l->port, 25);
    l = l->next;
    assert_string_equal(l->address, "2001:db8::25");
    assert_int_equal(l->port, 587);
    assert_int_equal(l->line, 3);
    assert_null(l->next);
}

static void test_listen_on_a_host_name_is_rejected(void **state)
{
    assert_load_error(*state, "listen on localhost\n", 1,
                      "listen on \"localhost\": not a numeric IPv4 or IPv6 address (such as "
                      "127.0.0.1 or ::1)");
}

static void test_listen_port_must_be_1_to_65535(void **state)
{
    struct fixture *f = *state;

    assert_load_error(f, "listen on 127.0.0.1 port 0\n", 1, "port must be at least 1");
    assert_load_error(f, "listen on 127.0.0.1 port 65536\n", 1, "port \"65536\" is too large");
    assert_load_error(f, "listen on 127.0.0.1 port smtp\n", 1, "invalid port \"smtp\" (a number)");
}

static void test_the_same_listener_twice_is_rejected(void **state)
{
    assert_load_error(*state, "listen on ::1 port 25\nlisten on 0:0::1\n", 2,
                      "duplicate listen on 0:0::1 port 25 (first on line 1)");
}

static void test_no_listen_statement_is_an_error(void **state)
{
    struct fixture *f = *state;

    assert_load_error(f, "# nothing\nworkers 2\n", 0,
                      "no listen statement (pigeond needs at least one listener)");
    assert_load_error(f, "", 0, "no listen statement (pigeond needs at least one listener)");
}

static void test_trusted_may_name_a_table_declared_later(void **state)
{
    struct fixture *f = *state;
    struct config *cfg = load_ok(f, LISTEN "trusted <nets>\n"
                                           "table nets { 192.0.2.0/24, 2001:db8::/32 }\n");

    assert_ptr_equal(cfg->trusted, find_table(cfg, "nets"));
    assert_true(matches(cfg->trusted, "192.0.2.200"));
    assert_true(matches(cfg->trusted, "2001:db8:1::1"));
    assert_false(matches(cfg->trusted, "192.0.3.1"));
}

static void test_trusted_twice_is_rejected(void **state)
{
    assert_load_error(*state, LISTEN "trusted { ::1 }\ntrusted { 127.0.0.1 }\n", 3,
                      "duplicate trusted statement (first on line 2)");
}

static void test_action_maildir_options_come_in_any_order(void **state)
{
    struct fixture *f = *state;
    struct config *cfg =
        load_ok(f, LISTEN "table u { alice }\n"
                          "table a { postmaster }\n"
                          "action one maildir aliases <a> \"/m/%{domain}/%{user}\" "
                          "users <u>\n"
                          "action two maildir users <u>\n"
                          "action \"three\" relay\n");
    const struct action *a = cfg->actions;

    assert_string_equal(a->name, "one");
    assert_string_equal(a->maildir, "/m/%{domain}/%{user}");
    assert_ptr_equal(a->users, find_table(cfg, "u"));
    assert_ptr_equal(a->aliases, find_table(cfg, "a"));
    assert_int_equal(a->line, 4);
    a = a->next;
    assert_string_equal(a->name, "two");
    assert_string_equal(a->maildir, "./var/mail/%{user}/Maildir");
    assert_ptr_equal(a->users, find_table(cfg, "u"));
    assert_null(a->aliases);
    a = a->next;
    assert_string_equal(a->name, "three");
    assert_int_equal(a->type, ACTION_RELAY);
}

static void test_maildir_option_given_twice_is_rejected(void **state)
{
    struct fixture *f = *state;

    assert_load_error(f, LISTEN "table u { a }\naction x maildir users <u> users <u>\n", 3,
                      "users given twice");
    assert_load_error(f, LISTEN "action x maildir /a /b\n", 2,
                      "maildir path given twice (\"/a\" and \"/b\")");
}

static void test_maildir_path_with_unknown_placeholder_is_rejected(void **state)
{
    assert_load_error(*state, LISTEN "action x maildir \"/m/%{mailbox}\"\n", 2,
                      "invalid maildir path \"/m/%{mailbox}\" (not empty; %{user} and %{domain} "
                      "are the only placeholders)");
}

static void test_match_from_src_for_domain_table_and_reject(void **state)
{
    struct fixture *f = *state;
    struct config *cfg = load_ok(f, LISTEN "match from src <nets> for domain <doms> reject\n"
                                           "table nets { 10.0.0.0/8 }\n"
                                           "table doms { example.org }\n");
    const struct match_rule *r = cfg->rules;

    assert_int_equal(r->from, MATCH_FROM_SRC);
    assert_ptr_equal(r->from_table, find_table(cfg, "nets"));
    assert_int_equal(r->from_table->nnetworks, 1);
    assert_int_equal(r->for_, MATCH_FOR_DOMAIN);
    assert_ptr_equal(r->for_table, find_table(cfg, "doms"));
    assert_null(r->action);
    assert_int_equal(r->line, 2);
}

static void test_match_for_domain_string_makes_a_one_key_table(void **state)
{
    struct fixture *f = *state;
    struct config *cfg = load_ok(f, LISTEN "action local maildir\n"
                                           "match from any for domain Example.ORG action local\n");
    const struct match_rule *r = cfg->rules;

    assert_int_equal(r->for_, MATCH_FOR_DOMAIN);
    assert_non_null(r->for_table);
    assert_int_equal(r->for_table->nentries, 1);
    assert_true(has_key(r->for_table, "example.org"));
    assert_false(has_key(r->for_table, "example.net"));
    assert_ptr_equal(r->action, cfg->actions);
}

static void test_match_rules_keep_their_order(void **state)
{
    struct fixture *f = *state;
    struct config *cfg = load_ok(f, LISTEN "match from any for domain a.example reject\n"
                                           "match from trusted for any reject\n"
                                           "match from any for any reject\n");

    assert_int_equal(cfg->rules->line, 2);
    assert_int_equal(cfg->rules->next->line, 3);
    assert_int_equal(cfg->rules->next->from, MATCH_FROM_TRUSTED);
    assert_int_equal(cfg->rules->next->next->line, 4);
    assert_null(cfg->rules->next->next->next);
}

static void test_match_without_for_is_a_syntax_error(void **state)
{
    assert_load_error(*state, LISTEN "match from any action \"local\"\n", 2,
                      "syntax error: unexpected \"action\", expecting \"for\"");
}

static void test_match_without_from_is_a_syntax_error(void **state)
{
    assert_load_error(*state, LISTEN "match for any reject\n", 2,
                      "syntax error: unexpected \"for\", expecting \"from\"");
}

static void test_match_for_an_invalid_domain_is_rejected(void **state)
{
    assert_load_error(*state, LISTEN "match from any for domain \"a b\" reject\n", 2,
                      "invalid domain \"a b\"");
}

static void test_every_limit_and_timeout_is_stored(void **state)
{
    struct fixture *f = *state;
    struct config *cfg = load_ok(f, LISTEN "limit command-line 2048\n"
                                           "limit text-line 4000\n"
                                           "limit recipients 100\n"
                                           "limit message-size 64K\n"
                                           "limit errors 1\n"
                                           "limit sessions 500\n"
                                           "limit sessions-per-client 10\n"
                                           "limit connections-per-minute 60\n"
                                           "limit connections-per-minute-total 600\n"
                                           "limit queue-size 100000\n"
                                           "timeout command 1s\n"
                                           "timeout data 10m\n");

    assert_int_equal(cfg->limits.command_line, 2048);
    assert_int_equal(cfg->limits.text_line, 4000);
    assert_int_equal(cfg->limits.recipients, 100);
    assert_int_equal(cfg->limits.message_size, 65536);
    assert_int_equal(cfg->limits.errors, 1);
    assert_int_equal(cfg->limits.sessions, 500);
    assert_int_equal(cfg->limits.sessions_per_client, 10);
    assert_int_equal(cfg->limits.connections_per_minute, 60);
    assert_int_equal(cfg->limits.connections_per_minute_total, 600);
    assert_int_equal(cfg->limits.queue_size, 100000);
    assert_int_equal(cfg->timeouts.command, 1);
    assert_int_equal(cfg->timeouts.data, 600);
}

static void test_size_suffixes_are_powers_of_1024(void **state)
{
    struct fixture *f = *state;

    assert_int_equal(load_ok(f, LISTEN "limit message-size 35M\n")->limits.message_size, 36700160);
    assert_int_equal(load_ok(f, LISTEN "limit message-size 100K\n")->limits.message_size, 102400);
    assert_int_equal(load_ok(f, LISTEN "limit message-size 2G\n")->limits.message_size,
                     2147483648ull);
    assert_int_equal(load_ok(f, LISTEN "limit message-size 10m\n")->limits.message_size, 10485760);
    assert_int_equal(load_ok(f, LISTEN "limit message-size 70000\n")->limits.message_size, 70000);
}

static void test_time_suffixes_and_plain_seconds(void **state)
{
    struct fixture *f = *state;

    assert_int_equal(load_ok(f, LISTEN "timeout command 5m\n")->timeouts.command, 300);
    assert_int_equal(load_ok(f, LISTEN "timeout command 45\n")->timeouts.command, 45);
    assert_int_equal(load_ok(f, LISTEN "timeout command 30s\n")->timeouts.command, 30);
    assert_int_equal(load_ok(f, LISTEN "timeout data 2h\n")->timeouts.data, 7200);
    assert_int_equal(load_ok(f, LISTEN "timeout data 1d\n")->timeouts.data, 86400);
}

static void test_badly_written_sizes_and_times_are_rejected(void **state)
{
    struct fixture *f = *state;

    assert_load_error(f, LISTEN "limit message-size 10X\n", 2,
                      "invalid limit message-size \"10X\" (a size: a number, optionally "
                      "followed by K, M or G)");
    assert_load_error(f, LISTEN "limit message-size M\n", 2,
                      "invalid limit message-size \"M\" (a size: a number, optionally followed "
                      "by K, M or G)");
    assert_load_error(f, LISTEN "limit message-size 10MB\n", 2,
                      "invalid limit message-size \"10MB\" (a size: a number, optionally "
                      "followed by K, M or G)");
    assert_load_error(f, LISTEN "timeout data 5M\n", 2,
                      "invalid timeout data \"5M\" (a time: a number, optionally followed by s, "
                      "m, h or d)");
    assert_load_error(f, LISTEN "timeout data -1\n", 2,
                      "invalid timeout data \"-1\" (a time: a number, optionally followed by s, "
                      "m, h or d)");
    assert_load_error(f, LISTEN "limit errors 5K\n", 2, "invalid limit errors \"5K\" (a number)");
}

static void test_values_that_do_not_fit_are_rejected(void **state)
{
    struct fixture *f = *state;

    assert_load_error(f, LISTEN "limit errors 4294967296\n", 2,
                      "limit errors \"4294967296\" is too large");
    assert_load_error(f, LISTEN "limit message-size 99999999999999999999\n", 2,
                      "limit message-size \"99999999999999999999\" is too large");
    assert_load_error(f, LISTEN "limit message-size 17179869184G\n", 2,
                      "limit message-size \"17179869184G\" is too large");
    assert_load_error(f, LISTEN "timeout data 49711d\n", 2, "timeout data \"49711d\" is too large");
}

static void test_limits_below_the_rfc_minimums_are_rejected(void **state)
{
    struct fixture *f = *state;

    assert_load_error(f, LISTEN "limit command-line 511\n", 2,
                      "limit command-line must be at least 512 (RFC 5321 §4.5.3.1.4)");
    assert_load_error(f, LISTEN "limit text-line 999\n", 2,
                      "limit text-line must be at least 1000 (RFC 5321 §4.5.3.1.6)");
    assert_load_error(f, LISTEN "limit recipients 99\n", 2,
                      "limit recipients must be at least 100 (RFC 5321 §4.5.3.1.8)");
    assert_load_error(f, LISTEN "limit message-size 65535\n", 2,
                      "limit message-size must be at least 64K");
    assert_load_error(f, LISTEN "limit errors 0\n", 2, "limit errors must be at least 1");
    assert_load_error(f, LISTEN "timeout command 0\n", 2, "timeout command must be at least 1s");
    assert_load_error(f, LISTEN "timeout data 0m\n", 2, "timeout data must be at least 1s");
}

static void test_unknown_limit_and_timeout_are_rejected(void **state)
{
    struct fixture *f = *state;

    assert_load_error(f, LISTEN "limit bananas 5\n", 2,
                      "unknown limit \"bananas\" (known: command-line, text-line, recipients, "
                      "message-size, errors, sessions, sessions-per-client, "
                      "connections-per-minute, connections-per-minute-total, queue-size)");
    assert_load_error(f, LISTEN "timeout helo 5\n", 2,
                      "unknown timeout \"helo\" (known: command, data)");
}

static void test_a_setting_given_twice_is_rejected(void **state)
{
    struct fixture *f = *state;

    assert_load_error(f, LISTEN "limit errors 5\n\nlimit errors 6\n", 4,
                      "duplicate limit errors statement (first on line 2)");
    assert_load_error(f, "hostname a.example\n" LISTEN "hostname b.example\n", 3,
                      "duplicate hostname statement (first on line 1)");
}

/* ---- the language: words, strings, lines, lists ----------------------------- */

static void test_lists_span_lines_with_commas_newlines_and_a_trailing_comma(void **state)
{
    struct fixture *f = *state;
    struct config *cfg = load_ok(f, LISTEN "table d {\n"
                                           "    a.example,\n"
                                           "    b.example\n"
                                           "\n"
                                           "    c.example, d.example  # a comment\n"
                                           "    , e.example,\n"
                                           "}\n"
                                           "table one { x }\n");
    const struct table *d = find_table(cfg, "d");

    assert_int_equal(d->nentries, 5);
    assert_true(has_key(d, "a.example"));
    assert_true(has_key(d, "e.example"));
    assert_int_equal(table_lookup(d, "c.example", 9)->line, 6);
    assert_int_equal(find_table(cfg, "one")->nentries, 1);
}

static void test_list_items_need_a_separator(void **state)
{
    assert_load_error(*state, LISTEN "table d { a b }\n", 2,
                      "syntax error: unexpected \"b\", expecting end of line, '}' or ','");
}

static void test_list_with_two_commas_in_a_row_is_a_syntax_error(void **state)
{
    assert_load_error(*state, LISTEN "table d { a,, b }\n", 2,
                      "syntax error: unexpected \",\", expecting a string, end of line or '}'");
}

static void test_keywords_are_strings_where_a_string_is_expected(void **state)
{
    struct fixture *f = *state;
    struct config *cfg = load_ok(f, LISTEN "table users { relay, match }\n"
                                           "table aliases { users }\n"
                                           "action action maildir\n"
                                           "match from any for domain <users> action action\n"
                                           "match from any for domain relay reject\n");

    assert_true(has_key(find_table(cfg, "users"), "relay"));
    assert_true(has_key(find_table(cfg, "aliases"), "users"));
    assert_string_equal(cfg->actions->name, "action");
    assert_ptr_equal(cfg->rules->for_table, find_table(cfg, "users"));
    assert_true(has_key(cfg->rules->next->for_table, "relay"));
}

static void test_words_hold_addresses_paths_and_addresses(void **state)
{
    struct fixture *f = *state;
    struct config *cfg = load_ok(f, LISTEN "table w { 127.0.0.0/8, ::1, user@example.org, "
                                           "/var/x_y-z, a+b%c:d }\n");
    const struct table *w = find_table(cfg, "w");

    assert_int_equal(w->nentries, 5);
    assert_true(has_key(w, "::1"));
    assert_true(has_key(w, "127.0.0.0/8"));
    assert_true(has_key(w, "user@example.org"));
    assert_true(has_key(w, "/var/x_y-z"));
    assert_true(has_key(w, "a+b%c:d"));
}

static void test_quoted_strings_take_escaped_quote_and_backslash(void **state)
{
    struct fixture *f = *state;
    struct config *cfg = load_ok(f, LISTEN "user \"a \\\"b\\\" \\\\c # not a comment\"\n");

    assert_string_equal(cfg->user, "a \"b\" \\c # not a comment");
}

static void test_unknown_escape_in_string_is_rejected(void **state)
{
    assert_load_error(*state, LISTEN "user \"a\\nb\"\n", 2,
                      "unknown escape in quoted string (only \\\" and \\\\ are known)");
}

static void test_unterminated_string_is_rejected(void **state)
{
    assert_load_error(*state, LISTEN "user \"pigeon\nworkers 2\n", 2, "unterminated quoted string");
}

static void test_control_character_in_string_is_rejected(void **state)
{
    assert_load_error(*state, LISTEN "user \"pig\teon\"\n", 2,
                      "control character in quoted string");
}

static void test_unexpected_character_is_rejected(void **state)
{
    struct fixture *f = *state;

    assert_load_error(f, LISTEN "user pig;eon\n", 2,
                      "unexpected character ';' (quote strings that contain it)");
    assert_load_error(f, LISTEN "user \xc3\xa9\n", 2, "unexpected byte 0xc3");
}

static void test_nul_byte_is_rejected_with_its_line(void **state)
{
    struct fixture *f = *state;
    FILE *fp = fopen(f->conf, "w");

    assert_non_null(fp);
    fwrite(LISTEN "user a\0b\n", 1, sizeof(LISTEN) - 1 + 9, fp);
    fclose(fp);
    f->cfg = config_load(f->conf, f->err, sizeof(f->err));
    assert_null(f->cfg);
    snprintf(f->expected, sizeof(f->expected), "%s:2: NUL byte in configuration file", f->conf);
    assert_string_equal(f->err, f->expected);
}

static void test_backslash_at_end_of_line_continues_the_statement(void **state)
{
    struct fixture *f = *state;
    struct config *cfg = load_ok(f, LISTEN "action local maildir \\\n"
                                           "    \"/m/%{user}\"\n"
                                           "match from any \\\n"
                                           "      for any \\\n"
                                           "      action local\n"
                                           "limit errors 7\n");

    assert_string_equal(cfg->actions->maildir, "/m/%{user}");
    assert_int_equal(cfg->rules->line, 4);
    assert_int_equal(cfg->limits.errors, 7);
}

static void test_line_numbers_count_continued_lines(void **state)
{
    assert_load_error(*state, LISTEN "workers \\\n 2\nlimit errors 0\n", 4,
                      "limit errors must be at least 1");
}

static void test_comments_and_blank_lines_are_ignored(void **state)
{
    struct fixture *f = *state;
    struct config *cfg = load_ok(f, "# a comment\n"
                                    "\n"
                                    "   \t\n" LISTEN "workers 3 # three\n"
                                    "#workers 4\n");

    assert_int_equal(cfg->delivery_workers, 3);
}

static void test_last_line_needs_no_newline(void **state)
{
    struct fixture *f = *state;

    assert_int_equal(load_ok(f, LISTEN "workers 5")->delivery_workers, 5);
    assert_load_error(f, LISTEN "workers", 2,
                      "syntax error: unexpected end of line, expecting a string");
}

static void test_crlf_line_ends_are_accepted(void **state)
{
    struct fixture *f = *state;

    assert_int_equal(load_ok(f, "listen on 127.0.0.1\r\nworkers 4\r\n")->delivery_workers, 4);
}

static void test_unknown_statement_names_its_word(void **state)
{
    assert_load_error(*state, LISTEN "smarthost mx.example.org\n", 2,
                      "unknown statement \"smarthost\"");
}

static void test_statement_with_a_missing_value_is_a_syntax_error(void **state)
{
    struct fixture *f = *state;

    assert_load_error(f, LISTEN "\n\nhostname\n", 4,
                      "syntax error: unexpected end of line, expecting a string");
    assert_load_error(f, "listen on 127.0.0.1 port 25 25\n", 1,
                      "syntax error: unexpected \"25\", expecting end of line");
    assert_load_error(f, LISTEN "match from any for any\n", 2,
                      "syntax error: unexpected end of line, expecting \"action\" or \"reject\"");
}

static void test_syntax_errors_in_the_middle_of_a_statement(void **state)
{
    struct fixture *f = *state;

    /* Each leaves half-built strings, lists and actions behind for the parser to free. */
    assert_load_error(f, LISTEN "action x maildir users <u> \"/m\" {\n", 2,
                      "syntax error: unexpected \"{\", expecting a string or end of line");
    assert_load_error(f, LISTEN "table d { a, b\n\n", 4,
                      "syntax error: unexpected end of file, expecting a string, end of line, "
                      "'}' or ','");
    assert_load_error(f, LISTEN "match from src <n> for domain example.org action\n", 2,
                      "syntax error: unexpected end of line, expecting a string");
    assert_load_error(f, LISTEN "queue \"/q\" sync fsync fsync\n", 2,
                      "syntax error: unexpected \"fsync\", expecting end of line");
}

/* ---- names: tables and actions ---------------------------------------------- */

static void test_unknown_table_error_names_file_and_line(void **state)
{
    assert_load_error(*state, LISTEN "\naction x maildir users <nobody>\n", 3,
                      "unknown table <nobody>");
}

static void test_unknown_action_error_names_file_and_line(void **state)
{
    assert_load_error(*state, LISTEN "action local maildir\nmatch from any for any action lcoal\n",
                      3, "unknown action \"lcoal\"");
}

static void test_tables_and_actions_may_be_used_before_they_are_declared(void **state)
{
    struct fixture *f = *state;
    struct config *cfg = load_ok(f, "match from src <nets> for domain <doms> action deliver\n"
                                    "action deliver maildir users <people>\n"
                                    "table doms { example.org }\n"
                                    "table people { alice }\n"
                                    "table nets { 192.0.2.0/24 }\n" LISTEN);

    assert_ptr_equal(cfg->rules->action, cfg->actions);
    assert_ptr_equal(cfg->actions->users, find_table(cfg, "people"));
    assert_true(matches(cfg->rules->from_table, "192.0.2.1"));
}

static void test_duplicate_table_error_names_the_second_line(void **state)
{
    assert_load_error(*state, LISTEN "table d { a }\n\ntable d { b }\n", 4,
                      "duplicate table <d> (first on line 2)");
}

static void test_inline_trusted_table_clashes_with_a_table_called_trusted(void **state)
{
    assert_load_error(*state, LISTEN "trusted { ::1 }\ntable trusted { 10.0.0.1 }\n", 3,
                      "duplicate table <trusted> (first on line 2)");
}

static void test_duplicate_action_error_names_the_second_line(void **state)
{
    assert_load_error(*state, LISTEN "action a relay\naction a maildir\n", 3,
                      "duplicate action \"a\" (first on line 2)");
}

static void test_invalid_table_names_are_rejected(void **state)
{
    struct fixture *f = *state;

    assert_load_error(f, LISTEN "table \"my table\" { a }\n", 2,
                      "invalid table name \"my table\" (letters, digits, '.', '-' and '_')");
    assert_load_error(f, LISTEN "trusted <a:b>\n", 2,
                      "invalid table reference <a:b> (names are letters, digits, '.', '-' and "
                      "'_')");
    assert_load_error(f, LISTEN "trusted <nets\n", 2,
                      "unterminated table reference (\"<name>\" with no spaces)");
}

static void test_duplicate_keys_in_a_list_are_rejected(void **state)
{
    assert_load_error(*state, LISTEN "table d {\n a,\n B,\n b\n}\n", 5,
                      "duplicate key \"b\" in table <d> (first on line 4)");
}

/* ---- table files ------------------------------------------------------------- */

static void test_table_file_entries_comments_continuations_and_case(void **state)
{
    struct fixture *f = *state;
    const struct table *t;
    const struct table_entry *e;

    write_file(f, "aliases",
               "# aliases for example.org\n"
               "\n"
               "Postmaster: root\n"
               "root: alice, bob@example.org,   # the admins\n"
               "      carol\n"
               "\tdave\n"
               "   # an indented comment\n"
               "\n"
               "      erin\n"
               "abuse:root\n"
               "list:\n"
               "  a,\n"
               "  b\n"
               "Solo\n");
    t = find_table(load_ok(f, LISTEN "table aliases file \"aliases\"\n"), "aliases");
    assert_non_null(t);
    assert_int_equal(t->line, 2);
    assert_int_equal(t->nentries, 5);

    e = table_lookup(t, "POSTMASTER", 10);
    assert_non_null(e);
    assert_string_equal(e->key, "postmaster");
    assert_int_equal(e->nvalues, 1);
    assert_string_equal(e->values[0], "root");
    assert_int_equal(e->line, 3);

    e = table_lookup(t, "root", 4);
    assert_non_null(e);
    assert_int_equal(e->nvalues, 5);
    assert_string_equal(e->values[0], "alice");
    assert_string_equal(e->values[1], "bob@example.org");
    assert_string_equal(e->values[2], "carol");
    assert_string_equal(e->values[3], "dave");
    assert_string_equal(e->values[4], "erin");

    e = table_lookup(t, "abuse", 5);
    assert_non_null(e);
    assert_string_equal(e->values[0], "root");

    e = table_lookup(t, "list", 4);
    assert_non_null(e);
    assert_int_equal(e->nvalues, 2);

    e = table_lookup(t, "solo", 4);
    assert_non_null(e);
    assert_int_equal(e->nvalues, 0);
    assert_int_equal(e->line, 14);
}

static void test_table_file_path_is_relative_to_the_config_directory(void **state)
{
    struct fixture *f = *state;
    char cwd[PATH_MAX];
    char wanted[PATH_MAX + 16];
    const struct table *t;

    /* Run from elsewhere, so a path relative to the cwd would not be found. */
    assert_non_null(getcwd(cwd, sizeof(cwd)));
    assert_int_equal(chdir("/"), 0);
    write_file(f, "users", "alice\nbob\n");
    t = find_table(load_ok(f, LISTEN "table users file users\n"), "users");
    assert_int_equal(chdir(cwd), 0);
    snprintf(wanted, sizeof(wanted), "%s/users", f->dir);
    assert_string_equal(t->source, wanted);
    assert_true(has_key(t, "bob"));
}

static void test_table_file_with_an_absolute_path(void **state)
{
    struct fixture *f = *state;
    char text[PATH_MAX + 100];

    write_file(f, "users", "alice\n");
    snprintf(text, sizeof(text), LISTEN "table u file \"%s/users\"\n", f->dir);
    assert_true(has_key(find_table(load_ok(f, text), "u"), "alice"));
}

static void test_missing_table_file_names_it(void **state)
{
    struct fixture *f = *state;

    assert_null(load(f, LISTEN "table u file nothere\n"));
    snprintf(f->expected, sizeof(f->expected),
             "%s/nothere: cannot read table <u>: No such file or directory", f->dir);
    assert_string_equal(f->err, f->expected);
}

static void test_table_file_line_in_neither_form_names_file_and_line(void **state)
{
    struct fixture *f = *state;

    write_file(f, "users", "alice\nbob smith\n");
    assert_table_file_error(f, LISTEN "table u file users\n", "users", 2,
                            "expected \"key\" or \"key: value, ...\"");
    write_file(f, "users", "# x\n: alice\n");
    assert_table_file_error(f, LISTEN "table u file users\n", "users", 2,
                            "expected \"key\" or \"key: value, ...\"");
}

static void test_table_file_continuation_needs_an_entry_to_continue(void **state)
{
    struct fixture *f = *state;

    write_file(f, "aliases", "  alice\n");
    assert_table_file_error(f, LISTEN "table a file aliases\n", "aliases", 1,
                            "continuation line, but no \"key:\" line above to continue");
    write_file(f, "aliases", "alice\n  bob\n");
    assert_table_file_error(f, LISTEN "table a file aliases\n", "aliases", 2,
                            "continuation line, but no \"key:\" line above to continue");
}

static void test_table_file_empty_values_are_rejected(void **state)
{
    struct fixture *f = *state;

    write_file(f, "aliases", "root: a,, b\n");
    assert_table_file_error(f, LISTEN "table a file aliases\n", "aliases", 1,
                            "empty value for \"root\"");
    write_file(f, "aliases", "x: y\nroot:\n\nother: z\n");
    assert_table_file_error(f, LISTEN "table a file aliases\n", "aliases", 2,
                            "no values after \"root:\" (write the key alone for a key without "
                            "values)");
    write_file(f, "aliases", "root:   # nothing\n");
    assert_table_file_error(f, LISTEN "table a file aliases\n", "aliases", 1,
                            "no values after \"root:\" (write the key alone for a key without "
                            "values)");
}

static void test_table_file_duplicate_keys_are_rejected_in_any_case(void **state)
{
    struct fixture *f = *state;

    write_file(f, "aliases", "root: a\nx: y\nROOT: b\n");
    assert_table_file_error(f, LISTEN "table a file aliases\n", "aliases", 3,
                            "duplicate key \"root\" in table <a> (first on line 1)");
}

static void test_table_file_control_characters_are_rejected(void **state)
{
    struct fixture *f = *state;

    write_file(f, "users", "alice\nb\x1b[2Job\n");
    assert_table_file_error(f, LISTEN "table u file users\n", "users", 2,
                            "control character (0x1b)");
}

static void test_table_file_crlf_and_missing_final_newline(void **state)
{
    struct fixture *f = *state;
    const struct table_entry *e;

    write_file(f, "aliases", "root: alice\r\n  bob\r\nlast: carol");
    e = table_lookup(find_table(load_ok(f, LISTEN "table a file aliases\n"), "a"), "root", 4);
    assert_non_null(e);
    assert_int_equal(e->nvalues, 2);
    assert_string_equal(e->values[1], "bob");
    assert_non_null(table_lookup(find_table(f->cfg, "a"), "last", 4));
}

static void test_empty_table_file_is_an_empty_table(void **state)
{
    struct fixture *f = *state;

    write_file(f, "users", "# nobody yet\n");
    assert_int_equal(find_table(load_ok(f, LISTEN "table u file users\n"), "u")->nentries, 0);
}

static void test_table_file_of_networks_takes_ipv6_keys(void **state)
{
    struct fixture *f = *state;
    const struct table *t;

    write_file(f, "nets",
               "# our networks\n192.0.2.0/24\n::1\n2001:db8::/32\n::ffff:10.0.0.0/104\n");
    t = load_ok(f, LISTEN "trusted <nets>\ntable nets file nets\n")->trusted;
    assert_int_equal(t->nnetworks, 4);
    assert_true(matches(t, "192.0.2.9"));
    assert_true(matches(t, "::1"));
    assert_true(matches(t, "2001:db8:ffff::1"));
    assert_true(matches(t, "::ffff:10.1.2.3"));
    assert_false(matches(t, "10.1.2.3")); /* an IPv6 network does not match plain IPv4 */
}

static void test_table_file_bad_network_names_the_table_file_line(void **state)
{
    struct fixture *f = *state;

    write_file(f, "nets", "192.0.2.0/24\n\nmail.example.org\n");
    assert_table_file_error(
        f, LISTEN "match from src <nets> for any reject\ntable nets file nets\n", "nets", 3,
        "\"mail.example.org\" in table <nets> is not an address or network; "
        "a table of networks holds addresses and CIDR blocks such as "
        "192.0.2.0/24 or 2001:db8::/32");
}

/* ---- aliases ------------------------------------------------------------------ */

static void test_aliases_accept_local_names_and_addresses(void **state)
{
    struct fixture *f = *state;
    const struct action *a;

    write_file(f, "aliases",
               "postmaster: root\n"
               "root: alice, bob.smith, c_d-e+f=g, someone@example.org\n"
               "mailer-daemon: postmaster\n");
    a = load_ok(f, LISTEN "action local maildir aliases <aliases>\n"
                          "table aliases file aliases\n")
            ->actions;
    assert_ptr_equal(a->aliases, find_table(f->cfg, "aliases"));
    assert_int_equal(a->aliases->nentries, 3);
}

static void test_alias_to_a_command_is_refused(void **state)
{
    struct fixture *f = *state;

    write_file(f, "aliases", "root: alice\nvacation: |/usr/bin/vacation alice\n");
    assert_table_file_error(f, LISTEN "action l maildir aliases <a>\ntable a file aliases\n",
                            "aliases", 2,
                            "alias target \"|/usr/bin/vacation alice\" not supported (delivery "
                            "to commands and files is not available)");
}

static void test_quoted_alias_to_a_command_is_refused(void **state)
{
    struct fixture *f = *state;

    write_file(f, "aliases", "root: alice,\n  \"|exec /bin/sh\"\n");
    assert_table_file_error(f, LISTEN "action l maildir aliases <a>\ntable a file aliases\n",
                            "aliases", 1,
                            "alias target \"\"|exec /bin/sh\"\" not supported (delivery to "
                            "commands and files is not available)");
}

static void test_alias_to_a_file_is_refused(void **state)
{
    struct fixture *f = *state;

    write_file(f, "aliases", "devnull: /dev/null\n");
    assert_table_file_error(f, LISTEN "action l maildir aliases <a>\ntable a file aliases\n",
                            "aliases", 1,
                            "alias target \"/dev/null\" not supported (delivery to commands and "
                            "files is not available)");
}

static void test_alias_to_an_include_file_is_refused(void **state)
{
    struct fixture *f = *state;

    write_file(f, "aliases", "\n\nstaff: :include:/etc/staff\n");
    assert_table_file_error(f, LISTEN "action l maildir aliases <a>\ntable a file aliases\n",
                            "aliases", 3,
                            "alias target \":include:/etc/staff\" not supported (delivery to "
                            "commands and files is not available)");
}

static void test_alias_targets_that_are_not_names_or_addresses_are_rejected(void **state)
{
    struct fixture *f = *state;

    write_file(f, "aliases", "root: .hidden\n");
    assert_table_file_error(f, LISTEN "action l maildir aliases <a>\ntable a file aliases\n",
                            "aliases", 1,
                            "alias target \".hidden\" is neither a local name nor an address "
                            "local@domain");
    write_file(f, "aliases", "root: alice@\n");
    assert_table_file_error(f, LISTEN "action l maildir aliases <a>\ntable a file aliases\n",
                            "aliases", 1,
                            "alias target \"alice@\" is neither a local name nor an address "
                            "local@domain");
    write_file(f, "aliases", "root: two words\n");
    assert_table_file_error(f, LISTEN "action l maildir aliases <a>\ntable a file aliases\n",
                            "aliases", 1,
                            "alias target \"two words\" is neither a local name nor an address "
                            "local@domain");
}

static void test_alias_names_must_be_local_names(void **state)
{
    struct fixture *f = *state;

    write_file(f, "aliases", "root@example.org: alice\n");
    assert_table_file_error(f, LISTEN "action l maildir aliases <a>\ntable a file aliases\n",
                            "aliases", 1,
                            "alias name \"root@example.org\" in table <a> is not a local name "
                            "(letters, digits and . - _ + =)");
}

static void test_same_table_unchecked_when_not_used_as_aliases(void **state)
{
    struct fixture *f = *state;

    write_file(f, "map", "root: |/bin/true\n");
    assert_non_null(load_ok(f, LISTEN "table map file map\n"));
}

/* ---- networks ------------------------------------------------------------------ */

static void test_networks_match_ipv4_cidr_blocks(void **state)
{
    struct fixture *f = *state;
    const struct table *t = load_ok(f, LISTEN "trusted { 10.0.0.0/8, 192.0.2.128/25, "
                                              "198.51.100.7 }\n")
                                ->trusted;

    assert_true(matches(t, "10.0.0.0"));
    assert_true(matches(t, "10.255.255.255"));
    assert_false(matches(t, "11.0.0.0"));
    assert_true(matches(t, "192.0.2.128"));
    assert_true(matches(t, "192.0.2.255"));
    assert_false(matches(t, "192.0.2.127"));
    assert_true(matches(t, "198.51.100.7"));
    assert_false(matches(t, "198.51.100.8"));
    assert_false(matches(t, "::1"));
}

static void test_networks_match_ipv6_cidr_blocks(void **state)
{
    struct fixture *f = *state;
    const struct table *t =
        load_ok(f, LISTEN "trusted { 2001:DB8::/32, fe80::/10, ::1 }\n")->trusted;

    assert_true(matches(t, "2001:db8::1"));
    assert_true(matches(t, "2001:db8:ffff:ffff::"));
    assert_false(matches(t, "2001:db9::1"));
    assert_true(matches(t, "febf::1"));
    assert_false(matches(t, "fec0::1"));
    assert_true(matches(t, "::1"));
    assert_false(matches(t, "127.0.0.1"));
}

static void test_ipv4_mapped_ipv6_address_matches_ipv4_networks(void **state)
{
    struct fixture *f = *state;
    const struct table *t = load_ok(f, LISTEN "trusted { 127.0.0.0/8 }\n")->trusted;

    assert_true(matches(t, "::ffff:127.0.0.1"));
    assert_false(matches(t, "::ffff:128.0.0.1"));
    assert_false(matches(t, "::127.0.0.1")); /* IPv4-compatible, not mapped */
}

static void test_slash_0_matches_every_address_of_its_family(void **state)
{
    struct fixture *f = *state;
    const struct table *t = load_ok(f, LISTEN "trusted { 0.0.0.0/0 }\n")->trusted;

    assert_true(matches(t, "1.2.3.4"));
    assert_true(matches(t, "255.255.255.255"));
    assert_true(matches(t, "::ffff:8.8.8.8"));
    assert_false(matches(t, "2001:db8::1"));

    t = load_ok(f, LISTEN "trusted { ::/0 }\n")->trusted;
    assert_true(matches(t, "2001:db8::1"));
    assert_true(matches(t, "::"));
    assert_false(matches(t, "1.2.3.4"));
}

static void test_slash_32_and_slash_128_match_one_address(void **state)
{
    struct fixture *f = *state;
    const struct table *t =
        load_ok(f, LISTEN "trusted { 192.0.2.1/32, 2001:db8::1/128 }\n")->trusted;

    assert_true(matches(t, "192.0.2.1"));
    assert_false(matches(t, "192.0.2.0"));
    assert_false(matches(t, "192.0.2.2"));
    assert_true(matches(t, "2001:db8::1"));
    assert_false(matches(t, "2001:db8::"));
    assert_false(matches(t, "2001:db8::2"));
}

static void test_host_bits_beyond_the_prefix_are_ignored(void **state)
{
    struct fixture *f = *state;
    const struct table *t = load_ok(f, LISTEN "trusted { 10.1.2.3/8, 2001:db8::1/33 }\n")->trusted;

    assert_true(matches(t, "10.9.9.9"));
    assert_true(matches(t, "2001:db8:7fff::"));
    assert_false(matches(t, "2001:db8:8000::"));
}

static void test_bad_prefix_lengths_are_rejected(void **state)
{
    struct fixture *f = *state;

    assert_load_error(f, LISTEN "trusted { 10.0.0.0/33 }\n", 2,
                      "\"10.0.0.0/33\" in table <trusted> has a bad prefix length (IPv4: /0 to "
                      "/32); a table of networks holds addresses and CIDR blocks such as "
                      "192.0.2.0/24 or 2001:db8::/32");
    assert_load_error(f, LISTEN "trusted { ::/129 }\n", 2,
                      "\"::/129\" in table <trusted> has a bad prefix length (IPv6: /0 to /128); "
                      "a table of networks holds addresses and CIDR blocks such as 192.0.2.0/24 "
                      "or 2001:db8::/32");
    assert_load_error(f, LISTEN "trusted { 10.0.0.0/ }\n", 2,
                      "\"10.0.0.0/\" in table <trusted> has a bad prefix length (IPv4: /0 to "
                      "/32); a table of networks holds addresses and CIDR blocks such as "
                      "192.0.2.0/24 or 2001:db8::/32");
    assert_load_error(f, LISTEN "trusted { 10.0.0.0/8/8 }\n", 2,
                      "\"10.0.0.0/8/8\" in table <trusted> has a bad prefix length (IPv4: /0 "
                      "to /32); a table of networks holds addresses and CIDR blocks such as "
                      "192.0.2.0/24 or 2001:db8::/32");
    assert_load_error(f, LISTEN "trusted { 10.0.0.0/00008 }\n", 2,
                      "\"10.0.0.0/00008\" in table <trusted> has a bad prefix length (IPv4: /0 "
                      "to /32); a table of networks holds addresses and CIDR blocks such as "
                      "192.0.2.0/24 or 2001:db8::/32");
}

static void test_a_key_that_is_not_an_address_is_rejected_in_a_network_table(void **state)
{
    struct fixture *f = *state;

    assert_load_error(f, LISTEN "table d { localhost }\nmatch from src <d> for any reject\n", 2,
                      "\"localhost\" in table <d> is not an address or network; a table of "
                      "networks holds addresses and CIDR blocks such as 192.0.2.0/24 or "
                      "2001:db8::/32");
    assert_load_error(f, LISTEN "trusted { 10.0.0 }\n", 2,
                      "\"10.0.0\" in table <trusted> is not an address or network; a table of "
                      "networks holds addresses and CIDR blocks such as 192.0.2.0/24 or "
                      "2001:db8::/32");
}

static void test_a_table_used_as_networks_twice_is_parsed_once(void **state)
{
    struct fixture *f = *state;
    struct config *cfg = load_ok(f, LISTEN "trusted <n>\n"
                                           "table n { 10.0.0.0/8 }\n"
                                           "match from src <n> for any reject\n");

    assert_ptr_equal(cfg->trusted, cfg->rules->from_table);
    assert_int_equal(cfg->trusted->nnetworks, 1);
}

static void test_match_address_of_null_table_or_other_family_is_false(void **state)
{
    struct fixture *f = *state;
    struct sockaddr_un sun;

    memset(&sun, 0, sizeof(sun));
    sun.sun_family = AF_UNIX;
    assert_false(table_match_address(NULL, NULL));
    load_ok(f, LISTEN "trusted { 0.0.0.0/0, ::/0 }\n");
    assert_false(table_match_address(f->cfg->trusted, (const struct sockaddr *)&sun));
    assert_false(table_match_address(f->cfg->trusted, NULL));
}

/* ---- lookups ------------------------------------------------------------------- */

static void test_lookup_uses_the_key_length_not_a_nul(void **state)
{
    struct fixture *f = *state;
    const struct table *t =
        find_table(load_ok(f, LISTEN "table d { example.org, example }\n"), "d");
    const char wire[] = {'E', 'x', 'a', 'm', 'p', 'l', 'e', '.', 'O', 'R', 'G', '>', 'x'};

    assert_non_null(table_lookup(t, wire, 11));
    assert_string_equal(table_lookup(t, wire, 11)->key, "example.org");
    assert_string_equal(table_lookup(t, wire, 7)->key, "example");
    assert_null(table_lookup(t, wire, 8));
    assert_null(table_lookup(t, wire, 12));
    assert_null(table_lookup(t, "exam", 4));
    assert_null(table_lookup(t, "", 0));
    assert_null(table_lookup(t, "example\0org", 11));
    assert_null(table_lookup(NULL, "example", 7));
}

static void test_lookup_finds_every_key_of_a_large_table(void **state)
{
    struct fixture *f = *state;
    char text[20000] = "";
    char key[32];
    const struct table *t;

    /* Written in an order that is not sorted, in mixed case. */
    for (int i = 0; i < 1000; i++) {
        int n = (i * 7919) % 1000;
        snprintf(key, sizeof(key), "User%03d\n", n);
        strcat(text, key);
    }
    write_file(f, "users", text);
    t = find_table(load_ok(f, LISTEN "table users file users\n"), "users");
    assert_int_equal(t->nentries, 1000);
    for (int i = 0; i < 1000; i++) {
        snprintf(key, sizeof(key), "USER%03d", i);
        assert_non_null(table_lookup(t, key, strlen(key)));
    }
    assert_null(table_lookup(t, "user1000", 8));
    assert_null(table_lookup(t, "user", 4));
}

/* ---- loading ------------------------------------------------------------------- */

static void test_missing_config_file_is_an_error_naming_it(void **state)
{
    struct fixture *f = *state;
    char path[128];

    snprintf(path, sizeof(path), "%s/none.conf", f->dir);
    assert_null(config_load(path, f->err, sizeof(f->err)));
    snprintf(f->expected, sizeof(f->expected), "%s: No such file or directory", path);
    assert_string_equal(f->err, f->expected);
}

static void test_error_message_is_cut_to_the_buffer(void **state)
{
    struct fixture *f = *state;
    char small[12];

    write_file(f, "pigeond.conf", "workers 0\n" LISTEN);
    assert_null(config_load(f->conf, small, sizeof(small)));
    assert_int_equal(strlen(small), sizeof(small) - 1);
    assert_memory_equal(small, f->conf, sizeof(small) - 1);
}

static void test_config_load_can_run_many_times_in_one_process(void **state)
{
    struct fixture *f = *state;
    struct config *a, *b;

    a = config_load(NULL, f->err, sizeof(f->err));
    assert_non_null(a);
    assert_load_error(f, LISTEN "\n\nworkers 99\n", 4, "workers must be at most 64");
    assert_load_error(f, LISTEN "table x { \"unterminated\n", 2, "unterminated quoted string");
    /* A failed parse leaves nothing behind: line numbers start again at 1. */
    assert_load_error(f, "workers 0\n", 1, "workers must be at least 1");
    b = config_load(NULL, f->err, sizeof(f->err));
    assert_non_null(b);
    assert_ptr_not_equal(a, b);
    assert_int_equal(b->listeners->port, 2525);
    assert_int_equal(a->listeners->port, 2525);
    config_free(a);
    config_free(b);
    assert_int_equal(load_ok(f, "listen on ::1 port 26\n")->listeners->port, 26);
}

static void test_config_free_accepts_null(void **state)
{
    (void)state;
    config_free(NULL);
}

#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_default_config_listens_on_127_0_0_1_port_2525),
        T(test_default_config_trusts_loopback_only),
        T(test_default_config_receives_for_localhost),
        T(test_default_config_has_local_maildir_and_outbound_relay),
        T(test_default_config_rules_deliver_local_then_relay_for_trusted),
        T(test_default_config_settings_limits_and_timeouts),
        T(test_default_text_is_the_example_file),
        T(test_file_with_only_a_listener_gets_every_default),
        T(test_hostname_user_queue_and_workers_are_stored),
        T(test_queue_without_sync_is_syncfs),
        T(test_unknown_queue_sync_is_rejected),
        T(test_hostname_may_be_an_address_literal),
        T(test_hostname_that_could_inject_header_text_is_rejected),
        T(test_workers_must_be_1_to_64),
        T(test_listen_on_ipv6_and_several_listeners_keep_their_order),
        T(test_listen_on_a_host_name_is_rejected),
        T(test_listen_port_must_be_1_to_65535),
        T(test_the_same_listener_twice_is_rejected),
        T(test_no_listen_statement_is_an_error),
        T(test_trusted_may_name_a_table_declared_later),
        T(test_trusted_twice_is_rejected),
        T(test_action_maildir_options_come_in_any_order),
        T(test_maildir_option_given_twice_is_rejected),
        T(test_maildir_path_with_unknown_placeholder_is_rejected),
        T(test_match_from_src_for_domain_table_and_reject),
        T(test_match_for_domain_string_makes_a_one_key_table),
        T(test_match_rules_keep_their_order),
        T(test_match_without_for_is_a_syntax_error),
        T(test_match_without_from_is_a_syntax_error),
        T(test_match_for_an_invalid_domain_is_rejected),
        T(test_every_limit_and_timeout_is_stored),
        T(test_size_suffixes_are_powers_of_1024),
        T(test_time_suffixes_and_plain_seconds),
        T(test_badly_written_sizes_and_times_are_rejected),
        T(test_values_that_do_not_fit_are_rejected),
        T(test_limits_below_the_rfc_minimums_are_rejected),
        T(test_unknown_limit_and_timeout_are_rejected),
        T(test_a_setting_given_twice_is_rejected),
        T(test_lists_span_lines_with_commas_newlines_and_a_trailing_comma),
        T(test_list_items_need_a_separator),
        T(test_list_with_two_commas_in_a_row_is_a_syntax_error),
        T(test_keywords_are_strings_where_a_string_is_expected),
        T(test_words_hold_addresses_paths_and_addresses),
        T(test_quoted_strings_take_escaped_quote_and_backslash),
        T(test_unknown_escape_in_string_is_rejected),
        T(test_unterminated_string_is_rejected),
        T(test_control_character_in_string_is_rejected),
        T(test_unexpected_character_is_rejected),
        T(test_nul_byte_is_rejected_with_its_line),
        T(test_backslash_at_end_of_line_continues_the_statement),
        T(test_line_numbers_count_continued_lines),
        T(test_comments_and_blank_lines_are_ignored),
        T(test_last_line_needs_no_newline),
        T(test_crlf_line_ends_are_accepted),
        T(test_unknown_statement_names_its_word),
        T(test_statement_with_a_missing_value_is_a_syntax_error),
        T(test_syntax_errors_in_the_middle_of_a_statement),
        T(test_unknown_table_error_names_file_and_line),
        T(test_unknown_action_error_names_file_and_line),
        T(test_tables_and_actions_may_be_used_before_they_are_declared),
        T(test_duplicate_table_error_names_the_second_line),
        T(test_inline_trusted_table_clashes_with_a_table_called_trusted),
        T(test_duplicate_action_error_names_the_second_line),
        T(test_invalid_table_names_are_rejected),
        T(test_duplicate_keys_in_a_list_are_rejected),
        T(test_table_file_entries_comments_continuations_and_case),
        T(test_table_file_path_is_relative_to_the_config_directory),
        T(test_table_file_with_an_absolute_path),
        T(test_missing_table_file_names_it),
        T(test_table_file_line_in_neither_form_names_file_and_line),
        T(test_table_file_continuation_needs_an_entry_to_continue),
        T(test_table_file_empty_values_are_rejected),
        T(test_table_file_duplicate_keys_are_rejected_in_any_case),
        T(test_table_file_control_characters_are_rejected),
        T(test_table_file_crlf_and_missing_final_newline),
        T(test_empty_table_file_is_an_empty_table),
        T(test_table_file_of_networks_takes_ipv6_keys),
        T(test_table_file_bad_network_names_the_table_file_line),
        T(test_aliases_accept_local_names_and_addresses),
        T(test_alias_to_a_command_is_refused),
        T(test_quoted_alias_to_a_command_is_refused),
        T(test_alias_to_a_file_is_refused),
        T(test_alias_to_an_include_file_is_refused),
        T(test_alias_targets_that_are_not_names_or_addresses_are_rejected),
        T(test_alias_names_must_be_local_names),
        T(test_same_table_unchecked_when_not_used_as_aliases),
        T(test_networks_match_ipv4_cidr_blocks),
        T(test_networks_match_ipv6_cidr_blocks),
        T(test_ipv4_mapped_ipv6_address_matches_ipv4_networks),
        T(test_slash_0_matches_every_address_of_its_family),
        T(test_slash_32_and_slash_128_match_one_address),
        T(test_host_bits_beyond_the_prefix_are_ignored),
        T(test_bad_prefix_lengths_are_rejected),
        T(test_a_key_that_is_not_an_address_is_rejected_in_a_network_table),
        T(test_a_table_used_as_networks_twice_is_parsed_once),
        T(test_match_address_of_null_table_or_other_family_is_false),
        T(test_lookup_uses_the_key_length_not_a_nul),
        T(test_lookup_finds_every_key_of_a_large_table),
        T(test_missing_config_file_is_an_error_naming_it),
        T(test_error_message_is_cut_to_the_buffer),
        T(test_config_load_can_run_many_times_in_one_process),
        T(test_config_free_accepts_null),
    };

    return cmocka_run_group_tests_name("config", tests, NULL, NULL);
}
