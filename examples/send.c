/*
 * send.c - the smallest useful libpigeon program: send one message.
 *
 *     send [-v] HOST PORT FROM TO[,TO...] [FILE]
 *
 * Reads the message (headers, a blank line, the body; LF or CRLF line
 * endings) from FILE, or from standard input, sends it to the SMTP server
 * at HOST:PORT from FROM to each TO, and prints one line per recipient:
 *
 *     you@example.org 250 2.0.0 Ok: queued as 7F3A
 *     nobody@example.org 550 5.1.1 No such user
 *
 * then, if the message did not go to everyone, one line on standard error
 * saying why.  -v prints the SMTP conversation on standard error ("C: "
 * what we sent, "S: " what the server said; the message itself is shown as
 * its size).  FROM may be "" for the null sender.  The exit status is the
 * enum pigeon_status: 0 sent, 1 partial, 2 temporary failure, and so on.
 *
 * Build against an installed libpigeon with
 *
 *     cc send.c $(pkg-config --cflags --libs libpigeon) -o send
 */
#include <pigeon/pigeon.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* trace - print the conversation, one "C: " or "S: " line per line */
static void trace(void *ctx, char direction, const char *data, size_t len)
{
    static int at_line_start[2] = {1, 1};
    int *start = &at_line_start[direction == 'S'];
    (void)ctx;
    for (size_t i = 0; i < len; i++) {
        if (*start)
            fprintf(stderr, "%c: ", direction);
        *start = data[i] == '\n';
        if (data[i] != '\r')
            fputc(data[i], stderr);
    }
}

/* read_all - the whole of f in a malloc'd buffer; NULL on failure */
static char *read_all(FILE *f, size_t *len)
{
    size_t cap = 65536, n = 0;
    char *p = malloc(cap);
    while (p != NULL) {
        n += fread(p + n, 1, cap - n, f);
        if (n < cap)
            break;
        char *q = realloc(p, cap * 2);
        if (q == NULL) {
            free(p);
            return NULL;
        }
        p = q;
        cap *= 2;
    }
    if (p == NULL || ferror(f)) {
        free(p);
        return NULL;
    }
    *len = n;
    return p;
}

/* usage - how to call it */
static int usage(void)
{
    fprintf(stderr, "usage: send [-v] HOST PORT FROM TO[,TO...] [FILE]\n");
    return PIGEON_INVALID;
}

int main(int argc, char **argv)
{
    struct pigeon_options o = PIGEON_OPTIONS_INIT;
    int arg = 1;
    if (arg < argc && strcmp(argv[arg], "-v") == 0) {
        o.trace = trace;
        arg++;
    }
    if (argc - arg != 4 && argc - arg != 5)
        return usage();
    o.host = argv[arg];
    o.port = argv[arg + 1];
    const char *from = argv[arg + 2];
    char *to = argv[arg + 3];
    const char *file = argc - arg == 5 ? argv[arg + 4] : NULL;

    FILE *f = file != NULL ? fopen(file, "rb") : stdin;
    if (f == NULL) {
        perror(file);
        return PIGEON_INVALID;
    }
    size_t len = 0;
    char *text = read_all(f, &len);
    if (f != stdin)
        fclose(f);
    if (text == NULL) {
        fprintf(stderr, "send: cannot read the message\n");
        return PIGEON_INVALID;
    }

    struct pigeon_message *m = pigeon_message_new();
    if (m == NULL || pigeon_message_set_from(m, from) < 0) {
        fprintf(stderr, "send: bad sender \"%s\"\n", from);
        return PIGEON_INVALID;
    }
    /* TO is a list: cut it at each comma. */
    for (char *rcpt = to, *next; rcpt != NULL; rcpt = next) {
        next = strchr(rcpt, ',');
        if (next != NULL)
            *next++ = '\0';
        if (pigeon_message_add_rcpt(m, rcpt) < 0) {
            fprintf(stderr, "send: bad recipient \"%s\"\n", rcpt);
            return PIGEON_INVALID;
        }
    }
    pigeon_message_set_content(m, text, len);
    free(text);

    struct pigeon_result *r = NULL;
    int status = pigeon_send(&o, m, &r);
    for (size_t i = 0; i < pigeon_result_rcpt_count(r); i++) {
        const char *address, *reply;
        unsigned code;
        pigeon_result_rcpt(r, i, &address, &code, NULL, &reply);
        if (code == 0) {
            printf("%s - no reply\n", address);
        } else {
            /* The first line of the reply is enough here. */
            int first = (int)strcspn(reply, "\n");
            printf("%s %u %.*s\n", address, code, first, reply);
        }
    }
    if (status != PIGEON_SENT)
        fprintf(stderr, "send: %s\n", pigeon_result_error(r));
    pigeon_result_free(r);
    pigeon_message_free(m);
    return status;
}
