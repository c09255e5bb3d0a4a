/*
 * cli.h - the pigeon command: what its subcommand files share.
 *
 * One program, four jobs, one file each:
 *
 *   send.c      pigeon send: compose a message and submit it with libpigeon
 *   talk.c      pigeon talk: an interactive SMTP terminal
 *   sendmail.c  pigeon sendmail (or invoked as "sendmail"): the traditional
 *               interface programs use to hand mail to the local MTA
 *   queue.c     pigeon queue (or "mailq"): list pigeond's queue, read-only
 *
 * mime.c builds messages for send and sendmail (header fields, MIME
 * attachments, RFC 2047 words, address lists); main.c dispatches and holds
 * the helpers below.  Every subcommand returns a sysexits.h status.
 */
#ifndef PIGEON_CLI_H
#define PIGEON_CLI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <time.h>

#include "lib/buf.h"

/* Where send and sendmail submit when neither --server nor $PIGEON_SERVER says. */
#define CLI_DEFAULT_SERVER "127.0.0.1:2525"

/* The largest message, file or attachment the command reads into memory. */
#define CLI_INPUT_MAX (256u * 1024 * 1024)

/* ---- subcommands (argv[0] is the subcommand's name) ---------------------- */

int cli_send(int argc, char **argv);
int cli_talk(int argc, char **argv);
int cli_sendmail(int argc, char **argv);
int cli_queue(int argc, char **argv);

void cli_send_usage(FILE *out);
void cli_talk_usage(FILE *out);
void cli_sendmail_usage(FILE *out);
void cli_queue_usage(FILE *out);

/* ---- helpers (main.c) ---------------------------------------------------- */

/* A server as HOST[:PORT]: "mail.example.org", "127.0.0.1:2525", "[::1]:2525". */
struct cli_server {
    char host[256];
    char port[32];
};

/* cli_server_parse - split spec into host and port (default_port if none); -1 if malformed */
int cli_server_parse(const char *spec, const char *default_port, struct cli_server *out);

/* cli_server_default - $PIGEON_SERVER if set, else CLI_DEFAULT_SERVER */
const char *cli_server_default(void);

/* cli_connect - a connected TCP socket, trying each address in turn; -1 with a message in err */
int cli_connect(const struct cli_server *s, char *err, size_t errsize);

/* cli_read_fd - everything fd holds, up to CLI_INPUT_MAX; -1 with errno (EFBIG if too big) */
int cli_read_fd(int fd, struct buf *out);

/* cli_read_path - a whole file ("-" is standard input); -1 with errno */
int cli_read_path(const char *path, struct buf *out);

/* cli_write_all - write n bytes to fd, riding out EINTR and short writes; -1 with errno */
int cli_write_all(int fd, const void *p, size_t n);

/* cli_escape - printable text for a terminal: \r, \n, \t, \\ and \xNN for other controls */
void cli_escape(struct buf *out, const void *p, size_t n);

/* cli_hostname - this host's name, for Message-IDs and default senders */
const char *cli_hostname(void);

/* cli_username - the invoking user's login name */
const char *cli_username(void);

/* A growing list of strings (recipients, repeated options). */
struct cli_list {
    char **v;
    size_t n;
};

/* cli_list_add - append a copy of s; -1 if out of memory */
int cli_list_add(struct cli_list *l, const char *s);

/*
 * cli_list_add_addresses - the addresses of an RFC 5322 address list
 * ("Name <a@b>, c@d"), each once; a bare name is a local user and becomes
 * name@localhost.  Returns how many were found (0: none), MIME_BAD_ADDRESS
 * for a list with something in it that is not an address, or -1.
 */
int cli_list_add_addresses(struct cli_list *l, const char *address_list);

/* cli_list_free - release the list */
void cli_list_free(struct cli_list *l);

/* cli_warn - "pigeon: ..." on standard error */
void cli_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* ---- submission (send.c), shared with sendmail --------------------------- */

struct cli_submission {
    struct cli_server server;
    const char *from; /* envelope sender; "" is the null sender */
    const char *const *rcpt;
    size_t nrcpt;
    unsigned notify;   /* DSN NOTIFY bits for every recipient (enum pigeon_notify), 0: none */
    int dsn_ret;       /* -1 no RET, 0 HDRS, 1 FULL */
    const char *envid; /* DSN ENVID or NULL */
    const uint8_t *content;
    size_t len;
    const char *helo;       /* the EHLO name, or NULL for this host's */
    unsigned timeout_secs;  /* 0: the RFC 5321 timeouts */
    bool verbose;           /* print the transaction ("C: " / "S: ") on standard output */
    FILE *summary;          /* one line per recipient here, or NULL */
    FILE *summary_on_error; /* ... or here, only when not everything was accepted */
};

/*
 * cli_submit - send the message with libpigeon and print the summary.
 * Returns the sysexits status (see the mapping in send.c); EX_USAGE when
 * an address is malformed, before anything is sent.
 */
int cli_submit(const struct cli_submission *s);

/* ---- messages (mime.c), built by send and sendmail ----------------------- */

/* One header field, kept as written: "Name: value\r\n" plus any continuation lines. */
struct mime_field {
    char *name; /* NUL-terminated, without the colon */
    uint8_t *raw;
    size_t raw_len;
};

struct mime_attachment {
    char *filename;   /* the name the recipient sees (a base name) */
    const char *type; /* Content-Type, from the extension table */
    uint8_t *data;
    size_t len;
};

struct mime_message {
    struct mime_field *fields;
    size_t nfields;
    struct buf body; /* CRLF line endings */
    struct mime_attachment *att;
    size_t natt;
};

/* mime_init - an empty message */
void mime_init(struct mime_message *m);

/* mime_free - release everything */
void mime_free(struct mime_message *m);

/*
 * mime_parse - split content into header fields and body, line endings
 * made CRLF.  The content has a header section only if its first line is
 * a header field ("Name: value"); otherwise, or after a blank first line,
 * all of it is body.  Appends to the fields m already has.  0 or -1.
 */
int mime_parse(struct mime_message *m, const uint8_t *p, size_t n);

/* mime_set_body - the body is exactly this text (CRLF made, a last newline added) */
int mime_set_body(struct mime_message *m, const uint8_t *p, size_t n);

/* mime_has - is there a field with this name (any case)? */
bool mime_has(const struct mime_message *m, const char *name);

/* mime_remove - drop every field with this name; how many there were */
size_t mime_remove(struct mime_message *m, const char *name);

/* mime_take_fields - move src's fields to the end of dst's */
int mime_take_fields(struct mime_message *dst, struct mime_message *src);

/* mime_add - append "name: value"; value is one line of ASCII or UTF-8 text.  0 or -1 */
int mime_add(struct mime_message *m, const char *name, const char *value);

/* mime_add_line - append a field given as "Name: value" (--header); -1 if malformed */
int mime_add_line(struct mime_message *m, const char *line);

/* mime_add_text - an unstructured field (Subject): folded, RFC 2047 words if not ASCII */
int mime_add_text(struct mime_message *m, const char *name, const char *text);

/* mime_add_mailbox - a From-style field: "Display Name <address>", the name quoted or encoded */
int mime_add_mailbox(struct mime_message *m, const char *name, const char *display,
                     const char *address);

/* mime_add_date - a Date: field for the time t (RFC 5322 §3.3) */
int mime_add_date(struct mime_message *m, time_t t);

/* mime_add_message_id - a Message-ID: <random@host> (RFC 5322 §3.6.4) */
int mime_add_message_id(struct mime_message *m, const char *host);

/* mime_attach - add a file; its Content-Type comes from the extension of name.  0 or -1 */
int mime_attach(struct mime_message *m, const char *name, const uint8_t *data, size_t len);

/* mime_render - the whole message as it goes on the wire (multipart when there are files) */
int mime_render(const struct mime_message *m, struct buf *out);

/* mime_field_value - field f's value, unfolded and NUL-terminated, into out */
int mime_field_value(const struct mime_field *f, struct buf *out);

/*
 * mime_addresses - the addr-specs in an RFC 5322 address-list (To, Cc,
 * Bcc): display names, comments, quoted strings, obsolete routes and
 * groups ("undisclosed-recipients:;") are understood.  Calls found() for
 * each one; stops and returns its value if it is not 0.  Returns
 * MIME_BAD_ADDRESS if the list holds something that is not an address by
 * RFC 5321's rules (nothing reaches found() after it), -1 if out of memory.
 */
#define MIME_BAD_ADDRESS (-2)
int mime_addresses(const char *value, int (*found)(void *ctx, const char *addr), void *ctx);

/* mime_base64 - RFC 2045 §6.8 base64 in lines of 76 characters (each ending CRLF) */
int mime_base64(struct buf *out, const uint8_t *p, size_t n);

/* mime_type_for - Content-Type by file name extension, else application/octet-stream */
const char *mime_type_for(const char *name);

/* mime_is_ascii - only 7-bit octets? */
bool mime_is_ascii(const uint8_t *p, size_t n);

#endif
