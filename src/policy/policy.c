/*
 * policy.c - the decision on one RCPT TO: local mailbox, relay, or refusal
 * (see policy.h for the interface).
 *
 * What it owns: the walk over the configuration's match rules, the checks
 * on local parts (no routing through a local part, no mailbox name that
 * could leave the mail root), alias expansion and the Maildir path template.
 * It reads the configuration and never changes it; it does no I/O and
 * allocates nothing: the caller's struct policy_targets holds the result,
 * and the expansion state lives on the stack, bounded by POLICY_MAX_DEPTH.
 *
 * Who calls it: the server's RCPT TO handler (src/server) with the client
 * it is talking to; the unit tests in tests/unit/test_policy.c.
 *
 * The shape of a decision:
 *
 *   policy_rcpt()
 *     -> policy_route()            first match rule that fits client and domain
 *     -> policy_expand_local()     for an action "maildir":
 *          aliases -> policy_expand_value() -> policy_expand_local() ...
 *          a mailbox -> policy_deliver_mailbox() -> one Maildir target
 *
 * Refusals quote the recipient as the client wrote it (canonical form)
 * between angle brackets, as Postfix does: "<a@b>: Relay access denied".
 * A refusal caused by something an alias led to is the administrator's
 * mistake, not the sender's, so it is a temporary 451 4.3.0: the mail waits
 * in the sending queue while the configuration is fixed.
 */
#include "policy/policy.h"

#include <idn2.h>

#include <stdio.h>
#include <string.h>

/*
 * Work done for one recipient, counted in alias values looked at.  Depth and
 * the number of distinct targets are limited by policy.h; this bounds the
 * rest (an alias listing the same name a million times, or a wide tree of
 * aliases that all end in the same few mailboxes).
 */
#define POLICY_MAX_VISITS (POLICY_MAX_TARGETS * (POLICY_MAX_DEPTH + 1) * 4)

/* NAME_MAX of the common filesystems: a path component is at most 255 octets. */
#define POLICY_NAME_MAX 255

/* One name on the current alias path: what is being expanded, and where. */
struct policy_frame {
    const struct action *action;
    char local[SMTP_LOCAL_MAX + 1]; /* lower-cased (ASCII) */
    size_t local_len;
    char domain[SMTP_DOMAIN_MAX + 1]; /* lower-cased (ASCII) */
    size_t domain_len;
};

/* Everything one policy_rcpt() call works with. */
struct policy_run {
    const struct config *cfg;
    const struct policy_client *client;
    const struct smtp_path *rcpt;
    struct policy_targets *out;
    struct smtp_reply *reply;
    struct policy_frame frames[POLICY_MAX_DEPTH + 1]; /* frames[0] is the recipient */
    unsigned visits;
};

/* ---- small helpers ------------------------------------------------------- */

/* policy_lower - lower-case an ASCII letter, leave every other byte alone */
static char policy_lower(char c)
{
    return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
}

/* policy_lower_copy - copy src[0..n) lower-cased (ASCII only) into dst and terminate it */
static void policy_lower_copy(char *dst, const char *src, size_t n)
{
    for (size_t i = 0; i < n; i++)
        dst[i] = policy_lower(src[i]);
    dst[n] = '\0';
}

/* policy_same_name - are a[0..an) and b[0..bn) equal, ignoring ASCII case? */
static bool policy_same_name(const char *a, size_t an, const char *b, size_t bn)
{
    if (an != bn)
        return false;
    for (size_t i = 0; i < an; i++)
        if (policy_lower(a[i]) != policy_lower(b[i]))
            return false;
    return true;
}

/*
 * policy_refuse - fill the reply: "<recipient>: why".  Returns false so a
 * caller can write "return policy_refuse(...)".
 */
static bool policy_refuse(struct policy_run *run, unsigned code, const char *enh, const char *why)
{
    const struct smtp_path *rcpt = run->rcpt;

    run->reply->code = code;
    run->reply->enh = enh;
    snprintf(run->reply->text, sizeof(run->reply->text), "<%.*s>: %s", (int)rcpt->mailbox_len,
             rcpt->mailbox, why);
    return false;
}

/*
 * policy_refuse_at - refuse for a name at alias depth depth: the recipient's
 * own name (depth 0) gets code/enh/why; a name an alias led to makes the
 * alias broken, a temporary failure until the administrator fixes it.
 */
static bool policy_refuse_at(struct policy_run *run, unsigned depth, unsigned code, const char *enh,
                             const char *why)
{
    if (depth > 0)
        return policy_refuse(run, 451, "4.3.0", "alias expansion failed");
    return policy_refuse(run, code, enh, why);
}

/* policy_too_much - the refusal for expansions that go too deep, too wide or in a loop */
static bool policy_too_much(struct policy_run *run)
{
    return policy_refuse(run, 451, "4.3.0", "alias expansion too deep or too wide");
}

/* ---- match rules ----------------------------------------------------------- */

/* policy_from_fits - does the rule's "from" fit the client? */
static bool policy_from_fits(const struct match_rule *rule, const struct policy_client *client)
{
    switch (rule->from) {
    case MATCH_FROM_ANY:
        return true;
    case MATCH_FROM_TRUSTED:
        return client->trusted;
    case MATCH_FROM_SRC:
        return table_match_address(rule->from_table, client->addr);
    }
    return false;
}

/* policy_idn_form - the domain's other IDN spelling worth a lookup, or false */
static bool policy_idn_form(const char *d, size_t n, char *out, size_t outsize)
{
    bool non_ascii = false, a_label = false;
    for (size_t i = 0; i < n; i++) {
        non_ascii |= (unsigned char)d[i] >= 0x80;
        if (i + 4 <= n && (i == 0 || d[i - 1] == '.') && memcmp(d + i, "xn--", 4) == 0)
            a_label = true;
    }
    if ((!non_ascii && !a_label) || n > SMTP_DOMAIN_MAX)
        return false;
    char in[SMTP_DOMAIN_MAX + 1];
    memcpy(in, d, n);
    in[n] = '\0';
    char *conv = NULL;
    /* UTS #46 processing (as browsers and curl do): the U-label form is
     * normalised and lower-cased on the way to the A-label form. */
    int r = non_ascii ? idn2_to_ascii_8z(in, &conv, IDN2_NONTRANSITIONAL | IDN2_NFC_INPUT)
                      : idn2_to_unicode_8z8z(in, &conv, 0);
    bool ok = r == IDN2_OK && conv != NULL && strlen(conv) < outsize;
    if (ok)
        policy_lower_copy(out, conv, strlen(conv));
    idn2_free(conv);
    return ok;
}

/*
 * policy_domain_in - is the (lower-cased) domain d[0..n) a key of t, in
 * either IDN spelling?  A table may list "bücher.example" or its A-label
 * "xn--bcher-kva.example"; mail may come addressed with either.
 */
static bool policy_domain_in(const struct table *t, const char *d, size_t n)
{
    if (table_lookup(t, d, n) != NULL)
        return true;
    char other[SMTP_DOMAIN_MAX * 4 + 1];
    if (!policy_idn_form(d, n, other, sizeof(other)))
        return false;
    if (table_lookup(t, other, strlen(other)) != NULL)
        return true;
    /* A U-label given in another normalisation: go through the A-label. */
    char third[SMTP_DOMAIN_MAX * 4 + 1];
    return policy_idn_form(other, strlen(other), third, sizeof(third)) &&
           table_lookup(t, third, strlen(third)) != NULL;
}

/* policy_for_fits - does the rule's "for" fit the (lower-cased) domain d[0..n)? */
static bool policy_for_fits(const struct match_rule *rule, const char *d, size_t n)
{
    switch (rule->for_) {
    case MATCH_FOR_ANY:
        return true;
    case MATCH_FOR_DOMAIN:
        return policy_domain_in(rule->for_table, d, n);
    }
    return false;
}

/* policy_route - the first match rule that fits the client and domain d[0..n), or NULL */
static const struct match_rule *
policy_route(const struct config *cfg, const struct policy_client *client, const char *d, size_t n)
{
    for (const struct match_rule *rule = cfg->rules; rule != NULL; rule = rule->next)
        if (policy_from_fits(rule, client) && policy_for_fits(rule, d, n))
            return rule;
    return NULL;
}

/* ---- targets ------------------------------------------------------------------ */

/*
 * policy_add_target - add t to the result unless an equal target is there
 * (same Maildir, or same relay address).  False when the result is full.
 */
static bool policy_add_target(struct policy_targets *out, const struct policy_target *t)
{
    for (size_t i = 0; i < out->n; i++) {
        const struct policy_target *o = &out->t[i];
        if (o->route != t->route)
            continue;
        if (t->route == POLICY_ROUTE_MAILDIR && strcmp(o->maildir, t->maildir) == 0)
            return true;
        if (t->route == POLICY_ROUTE_RELAY && strcmp(o->address, t->address) == 0)
            return true;
    }
    if (out->n >= POLICY_MAX_TARGETS)
        return false;
    out->t[out->n++] = *t;
    return true;
}

/*
 * policy_format_address - local@domain into out (cap bytes with the NUL),
 * the local part quoted where RFC 5321 §4.1.2 needs it, so the address can
 * be parsed again.  False if it does not fit.
 */
static bool policy_format_address(char *out, size_t cap, const char *local, size_t llen,
                                  const char *domain, size_t dlen)
{
    size_t k = 0;

    if (smtp_local_is_dot_string(local, llen, true)) {
        if (llen >= cap)
            return false;
        memcpy(out, local, llen);
        k = llen;
    } else {
        out[k++] = '"';
        for (size_t i = 0; i < llen; i++) {
            if (k + 3 >= cap)
                return false;
            if (local[i] == '"' || local[i] == '\\')
                out[k++] = '\\';
            out[k++] = local[i];
        }
        out[k++] = '"';
    }
    if (k + 1 + dlen >= cap)
        return false;
    out[k++] = '@';
    memcpy(out + k, domain, dlen);
    k += dlen;
    out[k] = '\0';
    return true;
}

/*
 * policy_maildir_path - the action's Maildir template with every "%{user}"
 * replaced by user[0..ulen) and every "%{domain}" by domain[0..dlen), into
 * out (POLICY_PATH_MAX bytes).  False if the result does not fit.
 */
static bool policy_maildir_path(char *out, const char *template, const char *user, size_t ulen,
                                const char *domain, size_t dlen)
{
    static const char user_tag[] = "%{user}";
    static const char domain_tag[] = "%{domain}";
    size_t k = 0;

    for (const char *p = template; *p != '\0';) {
        const char *add = p;
        size_t addlen = 1, skip = 1;
        if (strncmp(p, user_tag, sizeof(user_tag) - 1) == 0) {
            add = user;
            addlen = ulen;
            skip = sizeof(user_tag) - 1;
        } else if (strncmp(p, domain_tag, sizeof(domain_tag) - 1) == 0) {
            add = domain;
            addlen = dlen;
            skip = sizeof(domain_tag) - 1;
        }
        if (addlen > POLICY_PATH_MAX - 1 - k)
            return false;
        memcpy(out + k, add, addlen);
        k += addlen;
        p += skip;
    }
    out[k] = '\0';
    return true;
}

/* ---- local delivery ------------------------------------------------------------ */

/*
 * policy_deliver_mailbox - the name in frames[depth] is a mailbox (not an
 * alias, or an alias naming itself): check it and add its Maildir target.
 */
static bool policy_deliver_mailbox(struct policy_run *run, unsigned depth)
{
    const struct policy_frame *f = &run->frames[depth];
    const struct action *action = f->action;
    struct policy_target t;

    /* RFC 5321 §4.5.1: postmaster is accepted even where users are listed. */
    bool postmaster = f->local_len == 10 && memcmp(f->local, "postmaster", 10) == 0;
    if (action->users != NULL && !postmaster &&
        table_lookup(action->users, f->local, f->local_len) == NULL)
        return policy_refuse_at(run, depth, 550, "5.1.1",
                                "Recipient address rejected: User unknown");

    /* Both names become path components below the mail root. */
    if (!policy_mailbox_name_safe(f->local, f->local_len) ||
        !policy_mailbox_name_safe(f->domain, f->domain_len))
        return policy_refuse_at(run, depth, 553, "5.1.3", "mailbox name not allowed");

    memset(&t, 0, sizeof(t));
    t.route = POLICY_ROUTE_MAILDIR;
    if (action->maildir == NULL ||
        !policy_format_address(t.address, sizeof(t.address), f->local, f->local_len, f->domain,
                               f->domain_len) ||
        !policy_maildir_path(t.maildir, action->maildir, f->local, f->local_len, f->domain,
                             f->domain_len))
        return policy_refuse_at(run, depth, 553, "5.1.3", "mailbox name not allowed");

    if (!policy_add_target(run->out, &t))
        return policy_too_much(run);
    return true;
}

/* policy_expand_local - below: aliases and addresses recurse through it */
static bool policy_expand_local(struct policy_run *run, const struct action *action,
                                const char *local, size_t llen, const char *domain, size_t dlen,
                                unsigned depth);

/*
 * policy_expand_address - an alias value that is an address (it has an
 * '@'): route it as if a trusted client had sent it.  A local domain is
 * expanded further; a remote one becomes a relay target.
 */
static bool policy_expand_address(struct policy_run *run, unsigned depth, const char *v,
                                  size_t vlen)
{
    const struct policy_frame *f = &run->frames[depth];
    char text[SMTP_PATH_MAX + 1];
    struct smtp_path path;
    size_t used;

    if (vlen + 2 > SMTP_PATH_MAX)
        return policy_refuse(run, 451, "4.3.0", "alias expansion failed");
    text[0] = '<';
    memcpy(text + 1, v, vlen);
    text[vlen + 1] = '>';
    if (smtp_path_parse(text, vlen + 2, SMTP_PATH_ALLOW_UTF8, &path, &used) != SMTP_PATH_OK ||
        used != vlen + 2 || path.domain_len == 0)
        return policy_refuse(run, 451, "4.3.0", "alias expansion failed");
    policy_lower_copy(path.domain, path.domain, path.domain_len);

    /* The administrator wrote the alias: route it as a trusted client would be. */
    struct policy_client trusted = {.addr = run->client->addr, .trusted = true};
    const struct match_rule *rule = policy_route(run->cfg, &trusted, path.domain, path.domain_len);
    if (rule == NULL || rule->action == NULL)
        return policy_refuse(run, 451, "4.3.0", "alias expansion failed");

    if (rule->action->type == ACTION_RELAY) {
        struct policy_target t;
        memset(&t, 0, sizeof(t));
        t.route = POLICY_ROUTE_RELAY;
        memcpy(t.address, path.mailbox, path.mailbox_len + 1);
        if (!policy_add_target(run->out, &t))
            return policy_too_much(run);
        return true;
    }

    /* "root: root@localhost" names the mailbox being expanded, like "root: root". */
    if (rule->action == f->action &&
        policy_same_name(path.local, path.local_len, f->local, f->local_len) &&
        policy_same_name(path.domain, path.domain_len, f->domain, f->domain_len))
        return policy_deliver_mailbox(run, depth);
    return policy_expand_local(run, rule->action, path.local, path.local_len, path.domain,
                               path.domain_len, depth + 1);
}

/* policy_expand_value - one value of the alias being expanded in frames[depth] */
static bool policy_expand_value(struct policy_run *run, unsigned depth, const char *v)
{
    const struct policy_frame *f = &run->frames[depth];
    size_t vlen = strlen(v); /* configuration text, not network data */

    if (++run->visits > POLICY_MAX_VISITS)
        return policy_too_much(run);
    if (memchr(v, '@', vlen) != NULL)
        return policy_expand_address(run, depth, v, vlen);
    /* aliases(5): "root: root, other" keeps a copy in root's own mailbox. */
    if (policy_same_name(v, vlen, f->local, f->local_len))
        return policy_deliver_mailbox(run, depth);
    if (vlen > SMTP_LOCAL_MAX)
        return policy_refuse(run, 451, "4.3.0", "alias expansion failed");
    return policy_expand_local(run, f->action, v, vlen, f->domain, f->domain_len, depth + 1);
}

/*
 * policy_expand_local - local part local[0..llen) at domain[0..dlen) for a
 * maildir action, reached through depth levels of aliases: its aliases
 * expanded, or the mailbox itself.
 */
static bool policy_expand_local(struct policy_run *run, const struct action *action,
                                const char *local, size_t llen, const char *domain, size_t dlen,
                                unsigned depth)
{
    if (depth > POLICY_MAX_DEPTH)
        return policy_too_much(run);
    if (llen > SMTP_LOCAL_MAX || dlen > SMTP_DOMAIN_MAX)
        return policy_refuse_at(run, depth, 553, "5.1.3", "mailbox name not allowed");

    /*
     * Routing through a local part is never accepted, from anybody: the
     * percent hack (user%other@here), bang paths (other!user@here) and a
     * quoted "user@other"@here would all make this server a relay for
     * whatever the part names.
     */
    if (memchr(local, '%', llen) != NULL || memchr(local, '!', llen) != NULL ||
        memchr(local, '@', llen) != NULL)
        return policy_refuse_at(run, depth, 554, "5.7.1", "Relay access denied");

    struct policy_frame *f = &run->frames[depth];
    f->action = action;
    policy_lower_copy(f->local, local, llen);
    f->local_len = llen;
    policy_lower_copy(f->domain, domain, dlen);
    f->domain_len = dlen;

    /* A name already on the alias path is a loop (a -> b -> a). */
    for (unsigned i = 0; i < depth; i++) {
        const struct policy_frame *g = &run->frames[i];
        if (g->action == action && g->local_len == llen && g->domain_len == dlen &&
            memcmp(g->local, f->local, llen) == 0 && memcmp(g->domain, f->domain, dlen) == 0)
            return policy_too_much(run);
    }

    const struct table_entry *alias = table_lookup(action->aliases, f->local, f->local_len);
    if (alias == NULL || alias->nvalues == 0)
        return policy_deliver_mailbox(run, depth);
    for (size_t i = 0; i < alias->nvalues; i++)
        if (!policy_expand_value(run, depth, alias->values[i]))
            return false;
    return true;
}

/*
 * policy_postmaster - a bare <Postmaster>, which RFC 5321 §4.5.1 says every
 * server accepts: the mailbox "postmaster" of the first local action, at the
 * first domain of its rule (or "localhost" for a rule "for any").
 */
static bool policy_postmaster(struct policy_run *run)
{
    for (const struct match_rule *rule = run->cfg->rules; rule != NULL; rule = rule->next) {
        if (rule->action == NULL || rule->action->type != ACTION_MAILDIR)
            continue;
        const char *domain = "localhost";
        if (rule->for_ == MATCH_FOR_DOMAIN && rule->for_table != NULL &&
            rule->for_table->nentries > 0)
            domain = rule->for_table->entries[0].key;
        size_t dlen = strlen(domain); /* configuration text */
        return policy_expand_local(run, rule->action, "postmaster", 10, domain, dlen, 0);
    }
    /* No local delivery at all: nowhere to put it. */
    return policy_refuse(run, 550, "5.1.1", "Recipient address rejected: User unknown");
}

/* ---- the interface ------------------------------------------------------------- */

/* policy_client_trusted - is the address in the configuration's trusted networks? */
bool policy_client_trusted(const struct config *cfg, const struct sockaddr *addr)
{
    if (cfg == NULL || cfg->trusted == NULL)
        return false;
    return table_match_address(cfg->trusted, addr);
}

/* policy_rcpt - decide on one recipient (see policy.h) */
bool policy_rcpt(const struct config *cfg, const struct policy_client *client,
                 const struct smtp_path *rcpt, struct policy_targets *out, struct smtp_reply *reply)
{
    struct policy_run run = {
        .cfg = cfg, .client = client, .rcpt = rcpt, .out = out, .reply = reply};
    char domain[SMTP_DOMAIN_MAX + 1];

    out->n = 0;
    if (rcpt->is_postmaster) {
        if (policy_postmaster(&run))
            return true;
        out->n = 0;
        return false;
    }
    if (rcpt->domain_len == 0 || rcpt->domain_len > SMTP_DOMAIN_MAX)
        return policy_refuse(&run, 553, "5.1.3", "Recipient address rejected: bad address");

    policy_lower_copy(domain, rcpt->domain, rcpt->domain_len);
    const struct match_rule *rule = policy_route(cfg, client, domain, rcpt->domain_len);
    if (rule == NULL)
        return policy_refuse(&run, 554, "5.7.1", "Relay access denied");
    if (rule->action == NULL)
        return policy_refuse(&run, 550, "5.7.1", "Recipient address rejected: access denied");

    if (rule->action->type == ACTION_RELAY) {
        struct policy_target t;
        memset(&t, 0, sizeof(t));
        t.route = POLICY_ROUTE_RELAY;
        if (rcpt->mailbox_len > SMTP_PATH_MAX)
            return policy_refuse(&run, 553, "5.1.3", "Recipient address rejected: bad address");
        memcpy(t.address, rcpt->mailbox, rcpt->mailbox_len);
        t.address[rcpt->mailbox_len] = '\0';
        policy_add_target(out, &t);
        return true;
    }
    /* One mailbox per domain, however it was spelled: a U-label domain is
     * delivered under its A-label ("xn--bcher-kva.example" for %{domain}). */
    size_t dlen = rcpt->domain_len;
    char ascii[SMTP_DOMAIN_MAX * 4 + 1];
    bool non_ascii = false;
    for (size_t i = 0; i < dlen; i++)
        non_ascii |= (unsigned char)domain[i] >= 0x80;
    if (non_ascii && policy_idn_form(domain, dlen, ascii, sizeof(ascii)) &&
        strlen(ascii) <= SMTP_DOMAIN_MAX) {
        dlen = strlen(ascii);
        memcpy(domain, ascii, dlen + 1);
    }
    if (!policy_expand_local(&run, rule->action, rcpt->local, rcpt->local_len, domain, dlen, 0)) {
        out->n = 0;
        return false;
    }
    return true;
}

/* policy_mailbox_name_safe - may name[0..n) be one path component below the mail root? */
bool policy_mailbox_name_safe(const char *name, size_t n)
{
    const unsigned char *s = (const unsigned char *)name;

    /* A leading '.' also rules out "." and "..", and Maildir's own .Folders. */
    if (n == 0 || n > POLICY_NAME_MAX || s[0] == '.')
        return false;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '/' || s[i] < 0x20 || s[i] == 0x7f)
            return false;
        if (s[i] >= 0x80) {
            size_t len = smtp_utf8_seq(s + i, n - i);
            if (len == 0)
                return false;
            i += len - 1;
        }
    }
    return true;
}
