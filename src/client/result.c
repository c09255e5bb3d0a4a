/*
 * result.c - struct pigeon_result: how a send went.
 *
 * A result is a copy, owned by the caller, of what the engine (or the
 * session, when no engine ran: bad arguments, no connection) concluded: a
 * status, an explanation, and the server's reply for each recipient and for
 * the message as a whole.  It does not point into the message or the
 * session, so either may be freed first.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client/internal.h"

/* result_new - an empty result for m's recipients (m may be NULL); NULL if out of memory */
static struct pigeon_result *result_new(const struct pigeon_message *m)
{
    struct pigeon_result *r = calloc(1, sizeof(*r));
    if (r == NULL)
        return NULL;
    size_t n = m != NULL ? m->nrcpt : 0;
    r->address = calloc(n ? n : 1, sizeof(*r->address));
    r->rcpt = calloc(n ? n : 1, sizeof(*r->rcpt));
    if (r->address == NULL || r->rcpt == NULL) {
        pigeon_result_free(r);
        return NULL;
    }
    r->nrcpt = n;
    for (size_t i = 0; i < n; i++) {
        r->address[i] = strdup(m->rcpt[i].given);
        if (r->address[i] == NULL) {
            pigeon_result_free(r);
            return NULL;
        }
    }
    return r;
}

/* copy_reply - an engine reply into a result slot; false if out of memory */
static bool copy_reply(struct libpigeon_reply *to, const struct smtp_client_reply *from)
{
    to->code = from->code;
    snprintf(to->enh, sizeof(to->enh), "%s", from->enh);
    to->text = NULL;
    if (from->code == 0 || from->text == NULL)
        return true;
    to->text = strdup(from->text);
    return to->text != NULL;
}

/* libpigeon_result_failure - a result with no replies: status and why */
struct pigeon_result *libpigeon_result_failure(const struct pigeon_message *m, int status,
                                               const char *error)
{
    struct pigeon_result *r = result_new(m);
    if (r == NULL)
        return NULL;
    r->status = status;
    snprintf(r->error, sizeof(r->error), "%s", error ? error : "");
    return r;
}

/* status_of - the public status for the engine's */
static int status_of(enum smtp_client_status s)
{
    switch (s) {
    case SMTP_CLIENT_SENT:
        return PIGEON_SENT;
    case SMTP_CLIENT_PARTIAL:
        return PIGEON_PARTIAL;
    case SMTP_CLIENT_TEMPFAIL:
        return PIGEON_TEMPFAIL;
    case SMTP_CLIENT_PERMFAIL:
        return PIGEON_PERMFAIL;
    case SMTP_CLIENT_PROTOCOL:
        return PIGEON_PROTOCOL;
    case SMTP_CLIENT_UNSUITABLE:
        return PIGEON_UNSUITABLE;
    }
    return PIGEON_TEMPFAIL;
}

/* libpigeon_result_from_engine - the engine's result, copied */
struct pigeon_result *libpigeon_result_from_engine(const struct pigeon_message *m,
                                                   const struct smtp_client_result *er)
{
    struct pigeon_result *r = result_new(m);
    if (r == NULL)
        return NULL;
    r->status = status_of(er->status);
    /* The engine may note a late hitch (no answer to QUIT) on a sent message. */
    if (r->status != PIGEON_SENT)
        snprintf(r->error, sizeof(r->error), "%s", er->error);
    bool ok = copy_reply(&r->final, &er->final);
    for (size_t i = 0; i < r->nrcpt; i++)
        ok &= copy_reply(&r->rcpt[i], &er->rcpt[i]);
    if (!ok) {
        pigeon_result_free(r);
        return NULL;
    }
    return r;
}

/* pigeon_result_status - enum pigeon_status (PIGEON_INVALID for no result) */
PIGEON_EXPORT int pigeon_result_status(const struct pigeon_result *r)
{
    return r != NULL ? r->status : PIGEON_INVALID;
}

/* pigeon_result_error - what went wrong, in words ("" when sent) */
PIGEON_EXPORT const char *pigeon_result_error(const struct pigeon_result *r)
{
    return r != NULL ? r->error : "no result";
}

/* pigeon_result_rcpt_count - as many as pigeon_message_add_rcpt() calls */
PIGEON_EXPORT size_t pigeon_result_rcpt_count(const struct pigeon_result *r)
{
    return r != NULL ? r->nrcpt : 0;
}

/* give_reply - hand out a reply through the pointers the caller passed (any may be NULL) */
static void give_reply(const struct libpigeon_reply *reply, unsigned *code, const char **enh,
                       const char **text)
{
    if (code != NULL)
        *code = reply->code;
    if (enh != NULL)
        *enh = reply->enh;
    if (text != NULL)
        *text = reply->text;
}

/* pigeon_result_rcpt - recipient i: its address and the server's reply; 0 or -1 */
PIGEON_EXPORT int pigeon_result_rcpt(const struct pigeon_result *r, size_t i, const char **address,
                                     unsigned *code, const char **enh, const char **text)
{
    if (r == NULL || i >= r->nrcpt)
        return -1;
    if (address != NULL)
        *address = r->address[i];
    give_reply(&r->rcpt[i], code, enh, text);
    return 0;
}

/* pigeon_result_final - the reply that ended the message; 0 or -1 */
PIGEON_EXPORT int pigeon_result_final(const struct pigeon_result *r, unsigned *code,
                                      const char **enh, const char **text)
{
    if (r == NULL)
        return -1;
    give_reply(&r->final, code, enh, text);
    return 0;
}

/* pigeon_result_free - release it */
PIGEON_EXPORT void pigeon_result_free(struct pigeon_result *r)
{
    if (r == NULL)
        return;
    for (size_t i = 0; i < r->nrcpt; i++) {
        free(r->address[i]);
        free(r->rcpt[i].text);
    }
    free(r->address);
    free(r->rcpt);
    free(r->final.text);
    free(r);
}
