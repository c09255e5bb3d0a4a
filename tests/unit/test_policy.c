/*
 * test_policy.c - unit tests for src/policy: which recipients are local,
 * which are relayed, which are refused and with what reply.
 *
 * The configurations are built by hand (struct table, struct action,
 * struct match_rule) rather than parsed, so these tests say what the policy
 * does with a configuration, whatever the grammar looks like.  Recipients
 * are parsed with smtp_path_parse() from the text a client would send.
 *
 * Most tests use the standard world below, the shape of the built-in
 * default configuration:
 *
 *   trusted { 127.0.0.0/8, ::1 }
 *   table domains { localhost, example.org }
 *   action "local" maildir "/var/mail/%{domain}/%{user}/Maildir"
 *   action "outbound" relay
 *   match from any for domain <domains> action "local"
 *   match from trusted for any action "outbound"
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "policy/policy.h"

/* ---- building configurations by hand -------------------------------------- */

/* Everything a test allocates, released by teardown(). */
#define ARENA_MAX 16384
static void *arena[ARENA_MAX];
static size_t arena_n;

/* keep - remember p for teardown() and return it */
static void *keep(void *p)
{
    assert_non_null(p);
    assert_true(arena_n < ARENA_MAX);
    arena[arena_n++] = p;
    return p;
}

/* zalloc - zeroed memory released at teardown */
static void *zalloc(size_t n)
{
    return keep(calloc(1, n));
}

/* copy_text - a copy of s[0..n) released at teardown */
static char *copy_text(const char *s, size_t n)
{
    char *p = keep(malloc(n + 1));
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

/* trim - s[*a..*b) without leading and trailing spaces */
static void trim(const char *s, size_t *a, size_t *b)
{
    while (*a < *b && s[*a] == ' ')
        (*a)++;
    while (*b > *a && s[*b - 1] == ' ')
        (*b)--;
}

/* entry_order - table entries by key, as table_lookup() expects them */
static int entry_order(const void *a, const void *b)
{
    return strcmp(((const struct table_entry *)a)->key, ((const struct table_entry *)b)->key);
}

/*
 * make_table - a table from lines "key" or "key: value, value", as an
 * aliases file would say them; keys lower-cased, entries sorted by key.
 */
static struct table *make_table(const char *name, const char *const *lines, size_t n)
{
    struct table *t = zalloc(sizeof(*t));

    t->name = copy_text(name, strlen(name));
    t->entries = zalloc((n > 0 ? n : 1) * sizeof(*t->entries));
    for (size_t i = 0; i < n; i++) {
        const char *line = lines[i];
        const char *colon = strchr(line, ':');
        size_t a = 0, b = colon != NULL ? (size_t)(colon - line) : strlen(line);
        struct table_entry *e = &t->entries[i];

        trim(line, &a, &b);
        e->key = copy_text(line + a, b - a);
        for (char *k = e->key; *k != '\0'; k++)
            if (*k >= 'A' && *k <= 'Z')
                *k = (char)(*k - 'A' + 'a');
        e->line = (int)i + 1;
        if (colon == NULL)
            continue;
        size_t count = 1;
        for (const char *p = colon + 1; *p != '\0'; p++)
            count += *p == ',';
        e->values = zalloc(count * sizeof(*e->values));
        const char *p = colon + 1;
        for (;;) {
            const char *comma = strchr(p, ',');
            size_t va = 0, vb = comma != NULL ? (size_t)(comma - p) : strlen(p);
            trim(p, &va, &vb);
            e->values[e->nvalues++] = copy_text(p + va, vb - va);
            if (comma == NULL)
                break;
            p = comma + 1;
        }
    }
    t->nentries = n;
    qsort(t->entries, n, sizeof(*t->entries), entry_order);
    return t;
}

#define TABLE(name, ...)                                                                           \
    make_table(name, (const char *const[]){__VA_ARGS__},                                           \
               sizeof((const char *const[]){__VA_ARGS__}) / sizeof(const char *))

/* make_networks - a table of networks from "address" or "address/prefix" strings */
static struct table *make_networks(const char *name, const char *const *cidrs, size_t n)
{
    struct table *t = zalloc(sizeof(*t));

    t->name = copy_text(name, strlen(name));
    t->networks = zalloc(n * sizeof(*t->networks));
    for (size_t i = 0; i < n; i++) {
        char addr[INET6_ADDRSTRLEN];
        const char *slash = strchr(cidrs[i], '/');
        size_t alen = slash != NULL ? (size_t)(slash - cidrs[i]) : strlen(cidrs[i]);
        struct table_network *net = &t->networks[i];

        assert_true(alen < sizeof(addr));
        memcpy(addr, cidrs[i], alen);
        addr[alen] = '\0';
        if (inet_pton(AF_INET, addr, net->addr) == 1) {
            net->family = AF_INET;
            net->prefix = 32;
        } else {
            assert_int_equal(inet_pton(AF_INET6, addr, net->addr), 1);
            net->family = AF_INET6;
            net->prefix = 128;
        }
        if (slash != NULL)
            net->prefix = (unsigned)atoi(slash + 1);
    }
    t->nnetworks = n;
    return t;
}

#define NETWORKS(name, ...)                                                                        \
    make_networks(name, (const char *const[]){__VA_ARGS__},                                        \
                  sizeof((const char *const[]){__VA_ARGS__}) / sizeof(const char *))

/* make_maildir - an action "maildir" with a template, users and aliases (may be NULL) */
static struct action *make_maildir(const char *template, struct table *users, struct table *aliases)
{
    struct action *a = zalloc(sizeof(*a));

    a->name = copy_text("local", 5);
    a->type = ACTION_MAILDIR;
    a->maildir = copy_text(template, strlen(template));
    a->users = users;
    a->aliases = aliases;
    return a;
}

/* make_relay - an action "relay" */
static struct action *make_relay(void)
{
    struct action *a = zalloc(sizeof(*a));

    a->name = copy_text("outbound", 8);
    a->type = ACTION_RELAY;
    return a;
}

/* add_rule - append a match rule to cfg; action NULL means reject */
static struct match_rule *add_rule(struct config *cfg, enum match_from from,
                                   struct table *from_table, enum match_for for_,
                                   struct table *for_table, struct action *action)
{
    struct match_rule *r = zalloc(sizeof(*r)), **tail = &cfg->rules;

    r->from = from;
    r->from_table = from_table;
    r->for_ = for_;
    r->for_table = for_table;
    r->action = action;
    while (*tail != NULL)
        tail = &(*tail)->next;
    *tail = r;
    return r;
}

/* ---- the standard world ------------------------------------------------------- */

static struct config *cfg;
static struct table *domains;
static struct action *local;
static struct action *outbound;

/* the result of the last rcpt() call; about 40 KB, so not on the stack */
static struct policy_targets targets;
static struct smtp_reply reply;

static struct sockaddr_in untrusted_addr;
static struct sockaddr_in trusted_addr;

/* standard_world - the configuration described at the top of this file */
static void standard_world(const char *template, struct table *users, struct table *aliases)
{
    cfg->trusted = NETWORKS("trusted", "127.0.0.0/8", "::1");
    domains = TABLE("domains", "localhost", "example.org");
    local = make_maildir(template, users, aliases);
    outbound = make_relay();
    add_rule(cfg, MATCH_FROM_ANY, NULL, MATCH_FOR_DOMAIN, domains, local);
    add_rule(cfg, MATCH_FROM_TRUSTED, NULL, MATCH_FOR_ANY, NULL, outbound);
}

/* setup - an empty configuration and the two clients */
static int setup(void **state)
{
    (void)state;
    while (arena_n > 0)
        free(arena[--arena_n]);
    cfg = zalloc(sizeof(*cfg));
    memset(&targets, 0, sizeof(targets));
    memset(&reply, 0, sizeof(reply));

    memset(&untrusted_addr, 0, sizeof(untrusted_addr));
    untrusted_addr.sin_family = AF_INET;
    inet_pton(AF_INET, "192.0.2.55", &untrusted_addr.sin_addr);
    memset(&trusted_addr, 0, sizeof(trusted_addr));
    trusted_addr.sin_family = AF_INET;
    inet_pton(AF_INET, "127.0.0.1", &trusted_addr.sin_addr);
    return 0;
}

/* setup_standard - setup() and the standard world without users or aliases */
static int setup_standard(void **state)
{
    setup(state);
    standard_world("/var/mail/%{domain}/%{user}/Maildir", NULL, NULL);
    return 0;
}

/* teardown - free everything the test allocated */
static int teardown(void **state)
{
    (void)state;
    while (arena_n > 0)
        free(arena[--arena_n]);
    return 0;
}

/* rcpt_from - parse text as RCPT TO would (SMTPUTF8 on) and ask the policy */
static bool rcpt_from(const char *text, const struct sockaddr_in *from, bool trusted)
{
    struct smtp_path path;
    size_t used;
    struct policy_client client = {.addr = (const struct sockaddr *)from, .trusted = trusted};

    assert_int_equal(smtp_path_parse(text, strlen(text),
                                     SMTP_PATH_ALLOW_POSTMASTER | SMTP_PATH_ALLOW_UTF8, &path,
                                     &used),
                     SMTP_PATH_OK);
    memset(&reply, 0, sizeof(reply));
    bool ok = policy_rcpt(cfg, &client, &path, &targets, &reply);
    if (!ok)
        assert_int_equal(targets.n, 0);
    return ok;
}

/* rcpt_untrusted - RCPT TO from a client outside the trusted networks */
static bool rcpt_untrusted(const char *text)
{
    return rcpt_from(text, &untrusted_addr, false);
}

/* rcpt_trusted - RCPT TO from a client in the trusted networks */
static bool rcpt_trusted(const char *text)
{
    return rcpt_from(text, &trusted_addr, true);
}

/* assert_refused - the last rcpt() was refused with this code, enhanced code and text */
static void assert_refused(unsigned code, const char *enh, const char *text)
{
    assert_int_equal(reply.code, code);
    assert_non_null(reply.enh);
    assert_string_equal(reply.enh, enh);
    assert_string_equal(reply.text, text);
    assert_int_equal(targets.n, 0);
}

/* find_maildir - the index of the Maildir target with this path, or -1 */
static int find_maildir(const char *maildir)
{
    for (size_t i = 0; i < targets.n; i++)
        if (targets.t[i].route == POLICY_ROUTE_MAILDIR &&
            strcmp(targets.t[i].maildir, maildir) == 0)
            return (int)i;
    return -1;
}

/* find_relay - the index of the relay target for this address, or -1 */
static int find_relay(const char *address)
{
    for (size_t i = 0; i < targets.n; i++)
        if (targets.t[i].route == POLICY_ROUTE_RELAY && strcmp(targets.t[i].address, address) == 0)
            return (int)i;
    return -1;
}

/* assert_one_maildir - the last rcpt() was accepted as exactly one local mailbox */
static void assert_one_maildir(const char *address, const char *maildir)
{
    assert_int_equal(targets.n, 1);
    assert_int_equal(targets.t[0].route, POLICY_ROUTE_MAILDIR);
    assert_string_equal(targets.t[0].address, address);
    assert_string_equal(targets.t[0].maildir, maildir);
}

/* assert_one_relay - the last rcpt() was accepted as exactly one relay target */
static void assert_one_relay(const char *address)
{
    assert_int_equal(targets.n, 1);
    assert_int_equal(targets.t[0].route, POLICY_ROUTE_RELAY);
    assert_string_equal(targets.t[0].address, address);
}

/* ---- trusted clients ------------------------------------------------------------ */

static void test_without_trusted_table_nobody_is_trusted(void **state)
{
    (void)state;
    cfg->trusted = NULL;
    assert_false(policy_client_trusted(cfg, (const struct sockaddr *)&trusted_addr));
}

static void test_client_in_trusted_network_is_trusted(void **state)
{
    struct sockaddr_in6 v6, mapped;

    (void)state;
    assert_true(policy_client_trusted(cfg, (const struct sockaddr *)&trusted_addr));

    memset(&v6, 0, sizeof(v6));
    v6.sin6_family = AF_INET6;
    inet_pton(AF_INET6, "::1", &v6.sin6_addr);
    assert_true(policy_client_trusted(cfg, (const struct sockaddr *)&v6));

    /* A dual-stack listener sees 127.0.0.1 as ::ffff:127.0.0.1. */
    memset(&mapped, 0, sizeof(mapped));
    mapped.sin6_family = AF_INET6;
    inet_pton(AF_INET6, "::ffff:127.0.0.9", &mapped.sin6_addr);
    assert_true(policy_client_trusted(cfg, (const struct sockaddr *)&mapped));
}

static void test_client_outside_trusted_networks_is_not_trusted(void **state)
{
    struct sockaddr_in6 v6;

    (void)state;
    assert_false(policy_client_trusted(cfg, (const struct sockaddr *)&untrusted_addr));
    memset(&v6, 0, sizeof(v6));
    v6.sin6_family = AF_INET6;
    inet_pton(AF_INET6, "2001:db8::1", &v6.sin6_addr);
    assert_false(policy_client_trusted(cfg, (const struct sockaddr *)&v6));
}

/* ---- local delivery ------------------------------------------------------------- */

static void test_local_user_is_delivered_to_its_maildir(void **state)
{
    (void)state;
    assert_true(rcpt_untrusted("<alice@localhost>"));
    assert_one_maildir("alice@localhost", "/var/mail/localhost/alice/Maildir");
}

static void test_upper_case_local_recipient_is_local_and_lower_cased(void **state)
{
    (void)state;
    assert_true(rcpt_untrusted("<USER@LOCALHOST>"));
    assert_one_maildir("user@localhost", "/var/mail/localhost/user/Maildir");
}

static void test_second_local_domain_is_local(void **state)
{
    (void)state;
    assert_true(rcpt_untrusted("<Bob@Example.ORG>"));
    assert_one_maildir("bob@example.org", "/var/mail/example.org/bob/Maildir");
}

static void test_utf8_local_part_keeps_non_ascii_bytes(void **state)
{
    (void)state;
    /* Only ASCII is lower-cased: "Ü" stays as it was sent. */
    assert_true(rcpt_untrusted("<J\xc3\x9crgen@localhost>"));
    assert_one_maildir("j\xc3\x9crgen@localhost", "/var/mail/localhost/j\xc3\x9crgen/Maildir");
}

static void test_maildir_template_replaces_every_user_and_domain(void **state)
{
    (void)state;
    standard_world("/m/%{domain}/%{user}/%{user}-%{domain}/%{nothing}%", NULL, NULL);
    assert_true(rcpt_untrusted("<Ann@Example.org>"));
    assert_one_maildir("ann@example.org", "/m/example.org/ann/ann-example.org/%{nothing}%");
}

static void test_relative_maildir_template_stays_relative(void **state)
{
    (void)state;
    standard_world("./var/mail/%{user}/Maildir", NULL, NULL);
    assert_true(rcpt_untrusted("<ann@localhost>"));
    assert_one_maildir("ann@localhost", "./var/mail/ann/Maildir");
}

static void test_maildir_path_too_long_is_553_5_1_3(void **state)
{
    /* "/%{user}xxx...": the result is the template's length - 7 + 1 for user "a". */
    char template[POLICY_PATH_MAX + 16];
    size_t fits = POLICY_PATH_MAX - 1 + 6;

    (void)state;
    memset(template, 'x', sizeof(template));
    memcpy(template, "/%{user}", 8);
    template[fits + 1] = '\0';
    standard_world(template, NULL, NULL);
    assert_false(rcpt_untrusted("<a@localhost>"));
    assert_refused(553, "5.1.3", "<a@localhost>: mailbox name not allowed");

    /* One byte shorter fits exactly. */
    template[fits] = '\0';
    local->maildir = copy_text(template, fits);
    assert_true(rcpt_untrusted("<a@localhost>"));
    assert_int_equal(strlen(targets.t[0].maildir), POLICY_PATH_MAX - 1);
}

static void test_quoted_local_part_address_is_requoted(void **state)
{
    (void)state;
    assert_true(rcpt_untrusted("<\"John Doe\"@localhost>"));
    assert_one_maildir("\"john doe\"@localhost", "/var/mail/localhost/john doe/Maildir");
}

/* ---- the open-relay matrix ----------------------------------------------------------- */

static void test_percent_hack_from_untrusted_is_relay_denied(void **state)
{
    (void)state;
    assert_false(rcpt_untrusted("<user%other.org@localhost>"));
    assert_refused(554, "5.7.1", "<user%other.org@localhost>: Relay access denied");
}

static void test_percent_hack_from_trusted_is_relay_denied(void **state)
{
    (void)state;
    assert_false(rcpt_trusted("<user%other.org@localhost>"));
    assert_refused(554, "5.7.1", "<user%other.org@localhost>: Relay access denied");
}

static void test_source_route_to_remote_from_untrusted_is_relay_denied(void **state)
{
    (void)state;
    assert_false(rcpt_untrusted("<@localhost:user@other.org>"));
    assert_refused(554, "5.7.1", "<user@other.org>: Relay access denied");
}

static void test_quoted_at_in_local_part_is_relay_denied(void **state)
{
    (void)state;
    assert_false(rcpt_untrusted("<\"user@other.org\"@localhost>"));
    assert_refused(554, "5.7.1", "<\"user@other.org\"@localhost>: Relay access denied");
    assert_false(rcpt_trusted("<\"user@other.org\"@localhost>"));
    assert_refused(554, "5.7.1", "<\"user@other.org\"@localhost>: Relay access denied");
}

static void test_bang_path_is_relay_denied(void **state)
{
    (void)state;
    assert_false(rcpt_untrusted("<other!user@localhost>"));
    assert_refused(554, "5.7.1", "<other!user@localhost>: Relay access denied");
    assert_false(rcpt_trusted("<other!user@localhost>"));
    assert_refused(554, "5.7.1", "<other!user@localhost>: Relay access denied");
}

static void test_remote_domain_from_untrusted_is_relay_denied(void **state)
{
    (void)state;
    assert_false(rcpt_untrusted("<user@other.org>"));
    assert_refused(554, "5.7.1", "<user@other.org>: Relay access denied");
}

static void test_subdomain_of_local_domain_from_untrusted_is_relay_denied(void **state)
{
    (void)state;
    assert_false(rcpt_untrusted("<user@mail.localhost>"));
    assert_refused(554, "5.7.1", "<user@mail.localhost>: Relay access denied");
}

static void test_address_literal_from_untrusted_is_relay_denied(void **state)
{
    (void)state;
    assert_false(rcpt_untrusted("<user@[192.0.2.1]>"));
    assert_refused(554, "5.7.1", "<user@[192.0.2.1]>: Relay access denied");
    assert_false(rcpt_untrusted("<user@[IPv6:2001:db8::1]>"));
    assert_refused(554, "5.7.1", "<user@[IPv6:2001:db8::1]>: Relay access denied");
}

static void test_utf8_domain_not_in_table_is_relay_denied(void **state)
{
    (void)state;
    assert_false(rcpt_untrusted("<user@b\xc3\xbc"
                                "cher.example>"));
    assert_refused(554, "5.7.1",
                   "<user@b\xc3\xbc"
                   "cher.example>: Relay access denied");
    /* "localhost" with a Cyrillic "о" is another domain. */
    assert_false(rcpt_untrusted("<user@l\xd0\xbe"
                                "calhost>"));
    assert_refused(554, "5.7.1",
                   "<user@l\xd0\xbe"
                   "calhost>: Relay access denied");
}

/* idn_world - the standard world with one internationalised local domain, as listed */
static void idn_world(const char *listed)
{
    const char *const keys[] = {listed};
    struct table *idn = make_table("idn", keys, 1);
    add_rule(cfg, MATCH_FROM_ANY, NULL, MATCH_FOR_DOMAIN, idn, local);
}

static void test_local_idn_domain_matches_in_both_spellings(void **state)
{
    (void)state;
    const char *const listings[] = {"b\xc3\xbc"
                                    "cher.example",
                                    "xn--bcher-kva.example"};
    for (size_t i = 0; i < 2; i++) {
        setup(state);
        standard_world("/var/mail/%{domain}/%{user}/Maildir", NULL, NULL);
        idn_world(listings[i]);
        /* Either spelling, and upper case in the U-label, is the one local domain,
         * delivered under its A-label. */
        const char *const rcpts[] = {"<k@xn--bcher-kva.example>",
                                     "<k@b\xc3\xbc"
                                     "cher.example>",
                                     "<k@B\xc3\x9c"
                                     "CHER.example>"};
        for (size_t k = 0; k < 3; k++) {
            assert_true(rcpt_untrusted(rcpts[k]));
            assert_int_equal(targets.n, 1);
            assert_int_equal(targets.t[0].route, POLICY_ROUTE_MAILDIR);
            assert_string_equal(targets.t[0].maildir, "/var/mail/xn--bcher-kva.example/k/Maildir");
        }
        /* A different name that merely looks alike is not local. */
        assert_false(rcpt_untrusted("<k@xn--bcher-kvb.example>"));
        assert_refused(554, "5.7.1", "<k@xn--bcher-kvb.example>: Relay access denied");
    }
}

static void test_remote_domain_from_trusted_is_relay_target(void **state)
{
    (void)state;
    assert_true(rcpt_trusted("<User@Other.org>"));
    assert_one_relay("User@Other.org");
}

static void test_address_literal_from_trusted_is_relay_target(void **state)
{
    (void)state;
    assert_true(rcpt_trusted("<user@[192.0.2.1]>"));
    assert_one_relay("user@[192.0.2.1]");
}

static void test_source_route_from_trusted_relays_to_the_mailbox(void **state)
{
    (void)state;
    assert_true(rcpt_trusted("<@relay.example:user@other.org>"));
    assert_one_relay("user@other.org");
}

static void test_utf8_domain_from_trusted_is_relay_target(void **state)
{
    (void)state;
    assert_true(rcpt_trusted("<user@b\xc3\xbc"
                             "cher.example>"));
    assert_one_relay("user@b\xc3\xbc"
                     "cher.example");
}

static void test_local_domain_from_trusted_is_still_local(void **state)
{
    (void)state;
    assert_true(rcpt_trusted("<alice@localhost>"));
    assert_one_maildir("alice@localhost", "/var/mail/localhost/alice/Maildir");
}

/* ---- match rules ------------------------------------------------------------------- */

static void test_no_rules_is_relay_denied(void **state)
{
    (void)state;
    assert_false(rcpt_trusted("<alice@localhost>"));
    assert_refused(554, "5.7.1", "<alice@localhost>: Relay access denied");
}

static void test_reject_rule_gets_550_5_7_1(void **state)
{
    (void)state;
    add_rule(cfg, MATCH_FROM_ANY, NULL, MATCH_FOR_DOMAIN, TABLE("closed", "closed.example"), NULL);
    standard_world("/var/mail/%{user}", NULL, NULL);
    assert_false(rcpt_trusted("<a@closed.example>"));
    assert_refused(550, "5.7.1", "<a@closed.example>: Recipient address rejected: access denied");
}

static void test_first_fitting_rule_decides(void **state)
{
    (void)state;
    /* A reject rule for clients from a network, before the local rule. */
    add_rule(cfg, MATCH_FROM_SRC, NETWORKS("bad", "192.0.2.0/24"), MATCH_FOR_ANY, NULL, NULL);
    standard_world("/var/mail/%{user}", NULL, NULL);
    assert_false(rcpt_untrusted("<alice@localhost>"));
    assert_refused(550, "5.7.1", "<alice@localhost>: Recipient address rejected: access denied");
    /* Another client skips it. */
    assert_true(rcpt_trusted("<alice@localhost>"));
    assert_one_maildir("alice@localhost", "/var/mail/alice");
}

static void test_from_src_rule_fits_only_clients_in_its_table(void **state)
{
    (void)state;
    add_rule(cfg, MATCH_FROM_SRC, NETWORKS("lan", "192.0.2.0/25"), MATCH_FOR_ANY, NULL,
             make_relay());
    assert_true(rcpt_untrusted("<user@other.org>")); /* 192.0.2.55 is in the LAN */
    assert_one_relay("user@other.org");

    untrusted_addr.sin_addr.s_addr = htonl(0xc0000281); /* 192.0.2.129 */
    assert_false(rcpt_untrusted("<user@other.org>"));
    assert_refused(554, "5.7.1", "<user@other.org>: Relay access denied");
}

static void test_from_trusted_rule_needs_a_trusted_client(void **state)
{
    (void)state;
    /* The decision is the caller's flag, not the address: */
    assert_false(rcpt_from("<user@other.org>", &trusted_addr, false));
    assert_refused(554, "5.7.1", "<user@other.org>: Relay access denied");
}

static void test_for_any_maildir_rule_takes_every_domain(void **state)
{
    (void)state;
    add_rule(cfg, MATCH_FROM_ANY, NULL, MATCH_FOR_ANY, NULL,
             make_maildir("/srv/%{domain}/%{user}", NULL, NULL));
    assert_true(rcpt_untrusted("<X@Anything.Example>"));
    assert_one_maildir("x@anything.example", "/srv/anything.example/x");
    assert_true(rcpt_untrusted("<x@[192.0.2.1]>"));
    assert_one_maildir("x@[192.0.2.1]", "/srv/[192.0.2.1]/x");
}

/* ---- mailbox names that could leave the mail root ------------------------------------ */

static void test_dot_dot_slash_local_part_is_553_5_1_3(void **state)
{
    (void)state;
    assert_false(rcpt_untrusted("<\"../etc\"@localhost>"));
    assert_refused(553, "5.1.3", "<\"../etc\"@localhost>: mailbox name not allowed");
}

static void test_dot_dot_local_part_is_553_5_1_3(void **state)
{
    (void)state;
    assert_false(rcpt_untrusted("<\"..\"@localhost>"));
    assert_refused(553, "5.1.3", "<\"..\"@localhost>: mailbox name not allowed");
    assert_false(rcpt_untrusted("<\".\"@localhost>"));
    assert_refused(553, "5.1.3", "<\".\"@localhost>: mailbox name not allowed");
}

static void test_slash_in_local_part_is_553_5_1_3(void **state)
{
    (void)state;
    assert_false(rcpt_untrusted("<\"a/b\"@localhost>"));
    assert_refused(553, "5.1.3", "<a/b@localhost>: mailbox name not allowed");
    /* '/' is atext, so it needs no quotes at all: */
    assert_false(rcpt_trusted("<x/y@localhost>"));
    assert_refused(553, "5.1.3", "<x/y@localhost>: mailbox name not allowed");
}

static void test_leading_dot_local_part_is_553_5_1_3(void **state)
{
    (void)state;
    assert_false(rcpt_untrusted("<\".hidden\"@localhost>"));
    assert_refused(553, "5.1.3", "<\".hidden\"@localhost>: mailbox name not allowed");
}

static void test_mailbox_name_safe_accepts_ordinary_names(void **state)
{
    char longest[255];

    (void)state;
    assert_true(policy_mailbox_name_safe("alice", 5));
    assert_true(policy_mailbox_name_safe("a.b-c_d+e=f", 11));
    assert_true(policy_mailbox_name_safe("john doe", 8));
    assert_true(policy_mailbox_name_safe("j\xc3\xbcrgen", 7));
    assert_true(policy_mailbox_name_safe("a..", 3));
    memset(longest, 'a', sizeof(longest));
    assert_true(policy_mailbox_name_safe(longest, sizeof(longest)));
}

static void test_mailbox_name_safe_refuses_paths_and_control_bytes(void **state)
{
    char too_long[256];

    (void)state;
    assert_false(policy_mailbox_name_safe("", 0));
    assert_false(policy_mailbox_name_safe(".", 1));
    assert_false(policy_mailbox_name_safe("..", 2));
    assert_false(policy_mailbox_name_safe(".hidden", 7));
    assert_false(policy_mailbox_name_safe("a/b", 3));
    assert_false(policy_mailbox_name_safe("/", 1));
    assert_false(policy_mailbox_name_safe("a\0b", 3));
    assert_false(policy_mailbox_name_safe("a\nb", 3));
    assert_false(policy_mailbox_name_safe("a\tb", 3));
    assert_false(policy_mailbox_name_safe("a\x7f", 2));
    assert_false(policy_mailbox_name_safe("a\x1f", 2));
    memset(too_long, 'a', sizeof(too_long));
    assert_false(policy_mailbox_name_safe(too_long, sizeof(too_long)));
}

static void test_mailbox_name_safe_refuses_invalid_utf8(void **state)
{
    (void)state;
    assert_false(policy_mailbox_name_safe("a\xff", 2));
    assert_false(policy_mailbox_name_safe("a\xc3", 2));        /* cut short */
    assert_false(policy_mailbox_name_safe("\xc0\xaf", 2));     /* overlong '/' */
    assert_false(policy_mailbox_name_safe("\xe0\x80\xaf", 3)); /* overlong '/' */
    assert_false(policy_mailbox_name_safe("\xed\xa0\x80", 3)); /* a surrogate */
    assert_false(policy_mailbox_name_safe("\x80"
                                          "abc",
                                          4));                    /* a lone continuation */
    assert_true(policy_mailbox_name_safe("\xf0\x9f\x93\xa7", 4)); /* U+1F4E7 */
}

/* ---- users ----------------------------------------------------------------------------- */

static int setup_users(void **state)
{
    setup(state);
    standard_world("/var/mail/%{user}", TABLE("users", "alice", "Bob"), NULL);
    return 0;
}

static void test_unknown_user_with_users_table_gets_550_5_1_1(void **state)
{
    (void)state;
    assert_false(rcpt_untrusted("<mallory@localhost>"));
    assert_refused(550, "5.1.1", "<mallory@localhost>: Recipient address rejected: User unknown");
}

static void test_known_user_is_found_in_any_case(void **state)
{
    (void)state;
    assert_true(rcpt_untrusted("<ALICE@localhost>"));
    assert_one_maildir("alice@localhost", "/var/mail/alice");
    assert_true(rcpt_untrusted("<bob@localhost>"));
    assert_one_maildir("bob@localhost", "/var/mail/bob");
}

static void test_postmaster_at_local_domain_is_accepted_without_users_entry(void **state)
{
    (void)state;
    assert_true(rcpt_untrusted("<PostMaster@localhost>"));
    assert_one_maildir("postmaster@localhost", "/var/mail/postmaster");
}

static void test_postmaster_at_remote_domain_from_untrusted_is_relay_denied(void **state)
{
    (void)state;
    assert_false(rcpt_untrusted("<postmaster@other.org>"));
    assert_refused(554, "5.7.1", "<postmaster@other.org>: Relay access denied");
}

static void test_unsafe_name_is_refused_even_if_users_lists_it(void **state)
{
    (void)state;
    standard_world("/var/mail/%{user}", TABLE("users", ".profile"), NULL);
    assert_false(rcpt_untrusted("<\".profile\"@localhost>"));
    assert_refused(553, "5.1.3", "<\".profile\"@localhost>: mailbox name not allowed");
}

/* ---- postmaster without a domain ----------------------------------------------------- */

static void test_bare_postmaster_from_untrusted_is_accepted(void **state)
{
    (void)state;
    /* The first key of the rule's table, in table order. */
    assert_true(rcpt_untrusted("<Postmaster>"));
    assert_one_maildir("postmaster@example.org", "/var/mail/example.org/postmaster/Maildir");
}

static void test_bare_postmaster_with_for_any_rule_uses_localhost(void **state)
{
    (void)state;
    add_rule(cfg, MATCH_FROM_TRUSTED, NULL, MATCH_FOR_ANY, NULL, make_relay());
    add_rule(cfg, MATCH_FROM_ANY, NULL, MATCH_FOR_ANY, NULL,
             make_maildir("/var/mail/%{domain}/%{user}", TABLE("users", "alice"), NULL));
    assert_true(rcpt_untrusted("<postmaster>"));
    assert_one_maildir("postmaster@localhost", "/var/mail/localhost/postmaster");
}

static void test_bare_postmaster_skips_rules_of_other_actions(void **state)
{
    (void)state;
    add_rule(cfg, MATCH_FROM_ANY, NULL, MATCH_FOR_DOMAIN, TABLE("closed", "closed.example"), NULL);
    standard_world("/var/mail/%{domain}/%{user}", NULL, NULL);
    assert_true(rcpt_untrusted("<postmaster>"));
    assert_one_maildir("postmaster@example.org", "/var/mail/example.org/postmaster");
}

static void test_bare_postmaster_follows_aliases(void **state)
{
    (void)state;
    standard_world("/var/mail/%{user}", TABLE("users", "root"),
                   TABLE("aliases", "postmaster: root"));
    assert_true(rcpt_untrusted("<postmaster>"));
    assert_one_maildir("root@example.org", "/var/mail/root");
}

static void test_bare_postmaster_without_local_delivery_is_refused(void **state)
{
    (void)state;
    add_rule(cfg, MATCH_FROM_ANY, NULL, MATCH_FOR_ANY, NULL, make_relay());
    assert_false(rcpt_untrusted("<postmaster>"));
    assert_refused(550, "5.1.1", "<postmaster>: Recipient address rejected: User unknown");
}

/* ---- aliases ------------------------------------------------------------------------------ */

static void test_alias_expands_to_its_mailboxes(void **state)
{
    (void)state;
    standard_world("/var/mail/%{user}", NULL, TABLE("aliases", "team: alice, Bob"));
    assert_true(rcpt_untrusted("<Team@localhost>"));
    assert_int_equal(targets.n, 2);
    assert_int_equal(find_maildir("/var/mail/alice"), 0);
    assert_int_equal(find_maildir("/var/mail/bob"), 1);
    assert_string_equal(targets.t[0].address, "alice@localhost");
    assert_string_equal(targets.t[1].address, "bob@localhost");
}

static void test_alias_chain_is_followed(void **state)
{
    (void)state;
    standard_world("/var/mail/%{user}", NULL,
                   TABLE("aliases", "postmaster: root", "root: admins", "admins: carol, dave"));
    assert_true(rcpt_untrusted("<postmaster@localhost>"));
    assert_int_equal(targets.n, 2);
    assert_true(find_maildir("/var/mail/carol") >= 0);
    assert_true(find_maildir("/var/mail/dave") >= 0);
}

static void test_alias_keeps_the_recipient_domain(void **state)
{
    (void)state;
    standard_world("/var/mail/%{domain}/%{user}", NULL, TABLE("aliases", "info: ann"));
    assert_true(rcpt_untrusted("<info@example.org>"));
    assert_one_maildir("ann@example.org", "/var/mail/example.org/ann");
}

static void test_self_alias_keeps_the_mailbox(void **state)
{
    (void)state;
    standard_world("/var/mail/%{user}", NULL, TABLE("aliases", "root: Root, alice"));
    assert_true(rcpt_untrusted("<root@localhost>"));
    assert_int_equal(targets.n, 2);
    assert_true(find_maildir("/var/mail/root") >= 0);
    assert_true(find_maildir("/var/mail/alice") >= 0);
}

static void test_self_alias_as_address_keeps_the_mailbox(void **state)
{
    (void)state;
    standard_world("/var/mail/%{user}", NULL, TABLE("aliases", "root: root@LOCALHOST, alice"));
    assert_true(rcpt_untrusted("<root@localhost>"));
    assert_int_equal(targets.n, 2);
    assert_true(find_maildir("/var/mail/root") >= 0);
    assert_true(find_maildir("/var/mail/alice") >= 0);
}

static void test_self_alias_is_checked_against_users(void **state)
{
    (void)state;
    standard_world("/var/mail/%{user}", TABLE("users", "alice"),
                   TABLE("aliases", "root: root, alice", "ops: root"));
    /* root itself is not a user: the recipient's own name is unknown... */
    assert_false(rcpt_untrusted("<root@localhost>"));
    assert_refused(550, "5.1.1", "<root@localhost>: Recipient address rejected: User unknown");
    /* ...and through another alias it is a broken alias. */
    assert_false(rcpt_untrusted("<ops@localhost>"));
    assert_refused(451, "4.3.0", "<ops@localhost>: alias expansion failed");
}

static void test_alias_loop_is_451_4_3_0(void **state)
{
    (void)state;
    standard_world("/var/mail/%{user}", NULL, TABLE("aliases", "a: b", "b: a"));
    assert_false(rcpt_untrusted("<a@localhost>"));
    assert_refused(451, "4.3.0", "<a@localhost>: alias expansion too deep or too wide");
}

static void test_alias_loop_through_addresses_is_451_4_3_0(void **state)
{
    (void)state;
    standard_world("/var/mail/%{user}", NULL,
                   TABLE("aliases", "a: b@example.org", "b: c", "c: a@localhost"));
    assert_false(rcpt_untrusted("<a@localhost>"));
    assert_refused(451, "4.3.0", "<a@localhost>: alias expansion too deep or too wide");
}

static void test_alias_chain_of_max_depth_is_accepted(void **state)
{
    (void)state;
    /* a0 -> a1 -> ... -> a8: eight levels of aliases. */
    standard_world("/var/mail/%{user}", NULL,
                   TABLE("aliases", "a0: a1", "a1: a2", "a2: a3", "a3: a4", "a4: a5", "a5: a6",
                         "a6: a7", "a7: a8"));
    assert_int_equal(POLICY_MAX_DEPTH, 8);
    assert_true(rcpt_untrusted("<a0@localhost>"));
    assert_one_maildir("a8@localhost", "/var/mail/a8");
}

static void test_alias_chain_deeper_than_max_depth_is_451_4_3_0(void **state)
{
    (void)state;
    standard_world("/var/mail/%{user}", NULL,
                   TABLE("aliases", "a0: a1", "a1: a2", "a2: a3", "a3: a4", "a4: a5", "a5: a6",
                         "a6: a7", "a7: a8", "a8: a9"));
    assert_false(rcpt_untrusted("<a0@localhost>"));
    assert_refused(451, "4.3.0", "<a0@localhost>: alias expansion too deep or too wide");
    /* One level in, the chain is short enough. */
    assert_true(rcpt_untrusted("<a1@localhost>"));
    assert_one_maildir("a9@localhost", "/var/mail/a9");
}

/* wide_alias - an aliases line "name: prefix0, prefix1, ..." with n values */
static const char *wide_alias(const char *name, const char *prefix, size_t n)
{
    size_t cap = 64 + n * 16, k;
    char *line = zalloc(cap);

    k = (size_t)snprintf(line, cap, "%s: ", name);
    for (size_t i = 0; i < n; i++)
        k += (size_t)snprintf(line + k, cap - k, "%s%s%zu", i > 0 ? ", " : "", prefix, i);
    return line;
}

static void test_alias_fan_out_of_max_targets_is_accepted(void **state)
{
    (void)state;
    standard_world("/var/mail/%{user}", NULL,
                   make_table("aliases",
                              (const char *const[]){wide_alias("all", "u", POLICY_MAX_TARGETS)},
                              1));
    assert_true(rcpt_untrusted("<all@localhost>"));
    assert_int_equal(targets.n, POLICY_MAX_TARGETS);
}

static void test_alias_fan_out_over_max_targets_is_451_4_3_0(void **state)
{
    (void)state;
    standard_world("/var/mail/%{user}", NULL,
                   make_table("aliases",
                              (const char *const[]){wide_alias("all", "u", POLICY_MAX_TARGETS + 1)},
                              1));
    assert_false(rcpt_untrusted("<all@localhost>"));
    assert_refused(451, "4.3.0", "<all@localhost>: alias expansion too deep or too wide");
}

static void test_alias_fan_out_through_nested_aliases_is_451_4_3_0(void **state)
{
    (void)state;
    /* 6 x 6 = 36 mailboxes through two levels. */
    standard_world("/var/mail/%{user}", NULL,
                   TABLE("aliases", "all: g0, g1, g2, g3, g4, g5", "g0: a0, a1, a2, a3, a4, a5",
                         "g1: b0, b1, b2, b3, b4, b5", "g2: c0, c1, c2, c3, c4, c5",
                         "g3: d0, d1, d2, d3, d4, d5", "g4: e0, e1, e2, e3, e4, e5",
                         "g5: f0, f1, f2, f3, f4, f5"));
    assert_false(rcpt_untrusted("<all@localhost>"));
    assert_refused(451, "4.3.0", "<all@localhost>: alias expansion too deep or too wide");
    assert_true(rcpt_untrusted("<g3@localhost>"));
    assert_int_equal(targets.n, 6);
}

static void test_alias_repeating_a_name_endlessly_is_bounded(void **state)
{
    char *line;
    size_t n = 2000, k;

    (void)state;
    /* "x: y, y, y, ..." with y itself "y: z, z, z, ...": a lot of work for one mailbox. */
    line = zalloc(8 + n * 3);
    k = (size_t)snprintf(line, 8, "x: ");
    for (size_t i = 0; i < n; i++)
        k += (size_t)snprintf(line + k, 8 + n * 3 - k, "%sy", i > 0 ? ", " : "");
    char *line2 = copy_text(line, strlen(line));
    line2[0] = 'y';
    for (char *p = line2 + 1; *p != '\0'; p++)
        if (*p == 'y')
            *p = 'z';
    standard_world("/var/mail/%{user}", NULL,
                   make_table("aliases", (const char *const[]){line, line2}, 2));
    assert_false(rcpt_untrusted("<x@localhost>"));
    assert_refused(451, "4.3.0", "<x@localhost>: alias expansion too deep or too wide");
}

static void test_duplicate_targets_are_removed(void **state)
{
    (void)state;
    standard_world("/var/mail/%{user}", NULL,
                   TABLE("aliases", "team: alice, bob, Alice, devs, alice@localhost",
                         "devs: bob, alice", "ext: x@other.org, x@other.org, team"));
    assert_true(rcpt_untrusted("<team@localhost>"));
    assert_int_equal(targets.n, 2);
    assert_true(find_maildir("/var/mail/alice") >= 0);
    assert_true(find_maildir("/var/mail/bob") >= 0);

    assert_true(rcpt_untrusted("<ext@localhost>"));
    assert_int_equal(targets.n, 3);
    assert_true(find_relay("x@other.org") >= 0);
}

static void test_same_maildir_from_two_domains_is_one_target(void **state)
{
    (void)state;
    /* The template has no %{domain}: alice@localhost and alice@example.org share it. */
    standard_world("/var/mail/%{user}", NULL, TABLE("aliases", "both: alice@example.org, alice"));
    assert_true(rcpt_untrusted("<both@localhost>"));
    assert_one_maildir("alice@example.org", "/var/mail/alice");
}

static void test_alias_to_remote_address_is_relay_target_even_from_untrusted(void **state)
{
    (void)state;
    standard_world("/var/mail/%{user}", NULL, TABLE("aliases", "fwd: Ann@Other.org, alice"));
    assert_true(rcpt_untrusted("<fwd@localhost>"));
    assert_int_equal(targets.n, 2);
    assert_int_equal(find_relay("Ann@Other.org"), 0);
    assert_int_equal(find_maildir("/var/mail/alice"), 1);
}

static void test_alias_to_address_in_other_local_domain_uses_that_domain(void **state)
{
    (void)state;
    standard_world("/var/mail/%{domain}/%{user}", NULL,
                   TABLE("aliases", "info: sales@example.org", "sales: ann"));
    assert_true(rcpt_untrusted("<info@localhost>"));
    assert_one_maildir("ann@example.org", "/var/mail/example.org/ann");
}

static void test_alias_to_unroutable_address_is_451_4_3_0(void **state)
{
    (void)state;
    /* No relay rule at all. */
    struct table *aliases = TABLE("aliases", "fwd: ann@other.org");
    add_rule(cfg, MATCH_FROM_ANY, NULL, MATCH_FOR_DOMAIN, TABLE("domains", "localhost"),
             make_maildir("/var/mail/%{user}", NULL, aliases));
    assert_false(rcpt_untrusted("<fwd@localhost>"));
    assert_refused(451, "4.3.0", "<fwd@localhost>: alias expansion failed");
}

static void test_alias_to_rejected_domain_is_451_4_3_0(void **state)
{
    (void)state;
    add_rule(cfg, MATCH_FROM_ANY, NULL, MATCH_FOR_DOMAIN, TABLE("closed", "closed.example"), NULL);
    standard_world("/var/mail/%{user}", NULL, TABLE("aliases", "fwd: ann@closed.example"));
    assert_false(rcpt_untrusted("<fwd@localhost>"));
    assert_refused(451, "4.3.0", "<fwd@localhost>: alias expansion failed");
}

static void test_alias_to_unknown_user_is_451_4_3_0(void **state)
{
    (void)state;
    standard_world("/var/mail/%{user}", TABLE("users", "alice"),
                   TABLE("aliases", "team: alice, ghost"));
    assert_false(rcpt_untrusted("<team@localhost>"));
    assert_refused(451, "4.3.0", "<team@localhost>: alias expansion failed");
}

static void test_alias_is_found_before_the_users_table(void **state)
{
    (void)state;
    standard_world("/var/mail/%{user}", TABLE("users", "alice"), TABLE("aliases", "team: alice"));
    assert_true(rcpt_untrusted("<team@localhost>"));
    assert_one_maildir("alice@localhost", "/var/mail/alice");
}

static void test_alias_to_routing_or_unsafe_name_is_451_4_3_0(void **state)
{
    (void)state;
    standard_world("/var/mail/%{user}", NULL,
                   TABLE("aliases", "a: b%other.org", "c: ../etc", "d: not an address@", "e: x!y"));
    assert_false(rcpt_untrusted("<a@localhost>"));
    assert_refused(451, "4.3.0", "<a@localhost>: alias expansion failed");
    assert_false(rcpt_untrusted("<c@localhost>"));
    assert_refused(451, "4.3.0", "<c@localhost>: alias expansion failed");
    assert_false(rcpt_untrusted("<d@localhost>"));
    assert_refused(451, "4.3.0", "<d@localhost>: alias expansion failed");
    assert_false(rcpt_untrusted("<e@localhost>"));
    assert_refused(451, "4.3.0", "<e@localhost>: alias expansion failed");
}

static void test_alias_of_another_action_is_not_used(void **state)
{
    (void)state;
    /* example.org has its own action and aliases; localhost's aliases do not apply there. */
    add_rule(cfg, MATCH_FROM_ANY, NULL, MATCH_FOR_DOMAIN, TABLE("d1", "localhost"),
             make_maildir("/a/%{user}", NULL, TABLE("aliases", "team: alice")));
    add_rule(cfg, MATCH_FROM_ANY, NULL, MATCH_FOR_DOMAIN, TABLE("d2", "example.org"),
             make_maildir("/b/%{user}", NULL, NULL));
    assert_true(rcpt_untrusted("<team@example.org>"));
    assert_one_maildir("team@example.org", "/b/team");
    assert_true(rcpt_untrusted("<team@localhost>"));
    assert_one_maildir("alice@localhost", "/a/alice");
}

/* ---- refusals ------------------------------------------------------------------------------ */

static void test_refusal_leaves_no_targets_behind(void **state)
{
    (void)state;
    /* The first value is accepted before the second breaks the alias. */
    standard_world("/var/mail/%{user}", TABLE("users", "alice"),
                   TABLE("aliases", "team: alice, ghost"));
    assert_false(rcpt_untrusted("<team@localhost>"));
    assert_int_equal(targets.n, 0);
}

int main(void)
{
#define T(name) cmocka_unit_test_setup_teardown(name, setup_standard, teardown)
#define U(name) cmocka_unit_test_setup_teardown(name, setup_users, teardown)
#define E(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
    const struct CMUnitTest tests[] = {
        E(test_without_trusted_table_nobody_is_trusted),
        T(test_client_in_trusted_network_is_trusted),
        T(test_client_outside_trusted_networks_is_not_trusted),

        T(test_local_user_is_delivered_to_its_maildir),
        T(test_upper_case_local_recipient_is_local_and_lower_cased),
        T(test_second_local_domain_is_local),
        T(test_utf8_local_part_keeps_non_ascii_bytes),
        E(test_maildir_template_replaces_every_user_and_domain),
        E(test_relative_maildir_template_stays_relative),
        E(test_maildir_path_too_long_is_553_5_1_3),
        T(test_quoted_local_part_address_is_requoted),

        T(test_percent_hack_from_untrusted_is_relay_denied),
        T(test_percent_hack_from_trusted_is_relay_denied),
        T(test_source_route_to_remote_from_untrusted_is_relay_denied),
        T(test_quoted_at_in_local_part_is_relay_denied),
        T(test_bang_path_is_relay_denied),
        T(test_remote_domain_from_untrusted_is_relay_denied),
        T(test_subdomain_of_local_domain_from_untrusted_is_relay_denied),
        T(test_address_literal_from_untrusted_is_relay_denied),
        T(test_utf8_domain_not_in_table_is_relay_denied),
        T(test_local_idn_domain_matches_in_both_spellings),
        T(test_remote_domain_from_trusted_is_relay_target),
        T(test_address_literal_from_trusted_is_relay_target),
        T(test_source_route_from_trusted_relays_to_the_mailbox),
        T(test_utf8_domain_from_trusted_is_relay_target),
        T(test_local_domain_from_trusted_is_still_local),

        E(test_no_rules_is_relay_denied),
        E(test_reject_rule_gets_550_5_7_1),
        E(test_first_fitting_rule_decides),
        E(test_from_src_rule_fits_only_clients_in_its_table),
        T(test_from_trusted_rule_needs_a_trusted_client),
        E(test_for_any_maildir_rule_takes_every_domain),

        T(test_dot_dot_slash_local_part_is_553_5_1_3),
        T(test_dot_dot_local_part_is_553_5_1_3),
        T(test_slash_in_local_part_is_553_5_1_3),
        T(test_leading_dot_local_part_is_553_5_1_3),
        E(test_mailbox_name_safe_accepts_ordinary_names),
        E(test_mailbox_name_safe_refuses_paths_and_control_bytes),
        E(test_mailbox_name_safe_refuses_invalid_utf8),

        U(test_unknown_user_with_users_table_gets_550_5_1_1),
        U(test_known_user_is_found_in_any_case),
        U(test_postmaster_at_local_domain_is_accepted_without_users_entry),
        U(test_postmaster_at_remote_domain_from_untrusted_is_relay_denied),
        E(test_unsafe_name_is_refused_even_if_users_lists_it),

        T(test_bare_postmaster_from_untrusted_is_accepted),
        E(test_bare_postmaster_with_for_any_rule_uses_localhost),
        E(test_bare_postmaster_skips_rules_of_other_actions),
        E(test_bare_postmaster_follows_aliases),
        E(test_bare_postmaster_without_local_delivery_is_refused),

        E(test_alias_expands_to_its_mailboxes),
        E(test_alias_chain_is_followed),
        E(test_alias_keeps_the_recipient_domain),
        E(test_self_alias_keeps_the_mailbox),
        E(test_self_alias_as_address_keeps_the_mailbox),
        E(test_self_alias_is_checked_against_users),
        E(test_alias_loop_is_451_4_3_0),
        E(test_alias_loop_through_addresses_is_451_4_3_0),
        E(test_alias_chain_of_max_depth_is_accepted),
        E(test_alias_chain_deeper_than_max_depth_is_451_4_3_0),
        E(test_alias_fan_out_of_max_targets_is_accepted),
        E(test_alias_fan_out_over_max_targets_is_451_4_3_0),
        E(test_alias_fan_out_through_nested_aliases_is_451_4_3_0),
        E(test_alias_repeating_a_name_endlessly_is_bounded),
        E(test_duplicate_targets_are_removed),
        E(test_same_maildir_from_two_domains_is_one_target),
        E(test_alias_to_remote_address_is_relay_target_even_from_untrusted),
        E(test_alias_to_address_in_other_local_domain_uses_that_domain),
        E(test_alias_to_unroutable_address_is_451_4_3_0),
        E(test_alias_to_rejected_domain_is_451_4_3_0),
        E(test_alias_to_unknown_user_is_451_4_3_0),
        E(test_alias_is_found_before_the_users_table),
        E(test_alias_to_routing_or_unsafe_name_is_451_4_3_0),
        E(test_alias_of_another_action_is_not_used),

        E(test_refusal_leaves_no_targets_behind),
    };
#undef T
#undef U
#undef E
    return cmocka_run_group_tests(tests, NULL, NULL);
}
