/*
 * policy.h - who may send what to whom: the match rules of the
 * configuration applied to one client and one recipient.
 *
 * The server calls policy_rcpt() for every RCPT TO.  It walks the match
 * rules in order; the first rule that fits the client and the recipient's
 * domain decides:
 *
 *   - an action "maildir": the recipient is local.  Its local part is
 *     checked (no routing tricks: '%', '!', '@'; never a path that could
 *     leave the mail root), looked up in the action's aliases (expanded,
 *     recursively, with loops cut) and users tables, and turned into one
 *     or more Maildir targets;
 *   - an action "relay": the recipient is remote and kept for outbound
 *     delivery;
 *   - "reject", or no rule at all: refused (no rule: 554 5.7.1, no open
 *     relay).
 *
 * Pure: no I/O, no allocation beyond the caller's target list (bounded).
 */
#ifndef PIGEON_POLICY_H
#define PIGEON_POLICY_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

#include "config/config.h"
#include "smtp/address.h"
#include "smtp/server.h"

/* Alias expansion limits: a recipient becomes at most this many targets,
 * through at most this many levels of aliases. */
#define POLICY_MAX_TARGETS 32
#define POLICY_MAX_DEPTH   8

/* The longest Maildir path a template may produce. */
#define POLICY_PATH_MAX 1024

struct policy_client {
    const struct sockaddr *addr; /* the client's address */
    bool trusted;                /* in the configuration's trusted networks */
};

enum policy_route {
    POLICY_ROUTE_MAILDIR, /* deliver into the Maildir at target->maildir */
    POLICY_ROUTE_RELAY,   /* send to target->address over SMTP (outbound work) */
};

struct policy_target {
    enum policy_route route;
    /* The address this target delivers for: local-part@domain after alias
     * expansion (lower-cased local part for local mailboxes). */
    char address[SMTP_PATH_MAX + 1];
    /* POLICY_ROUTE_MAILDIR: the Maildir directory, the action's template
     * with %{user} and %{domain} filled in (relative if the template is). */
    char maildir[POLICY_PATH_MAX];
};

struct policy_targets {
    struct policy_target t[POLICY_MAX_TARGETS];
    size_t n;
};

/* policy_client_trusted - is the address in the configuration's trusted networks? */
bool policy_client_trusted(const struct config *cfg, const struct sockaddr *addr);

/*
 * policy_rcpt - decide on one recipient.  out is large (about 40 KB): keep
 * one per thread rather than on the stack.  Returns true with out filled
 * (duplicates removed) when it is accepted; false with reply filled (code,
 * enhanced code, text naming the address) when it is refused.
 */
bool policy_rcpt(const struct config *cfg, const struct policy_client *client,
                 const struct smtp_path *rcpt, struct policy_targets *out,
                 struct smtp_reply *reply);

/*
 * policy_mailbox_name_safe - may name[0..n) be used as one path component
 * below the mail root?  Not empty, not "." or "..", no '/', no leading '.',
 * no control characters, no NUL, valid UTF-8.
 */
bool policy_mailbox_name_safe(const char *name, size_t n);

#endif
