/*
 * mime.c - building the messages that pigeon send and pigeon sendmail submit.
 *
 * A message here is a list of header fields, kept byte for byte as the user
 * wrote them (so nothing the user wrote is rewritten behind their back), a
 * body with CRLF line endings, and the files to attach.  The commands add
 * the fields a message must have (Date, Message-ID, From) when they are
 * missing, and mime_render() turns the whole into what goes on the wire.
 *
 * Attachments make the message multipart/mixed (RFC 2046 §5.1.3): the text
 * first, then one base64 part per file (RFC 2045 §6.8).  The boundary is
 * random and checked against every part that is not base64; base64 cannot
 * contain it anyway, since it starts with "=_" (RFC 2045 §6.7 uses the same
 * trick for quoted-printable).  Non-ASCII subjects and file names become
 * RFC 2047 encoded-words.
 *
 * Also here, because sendmail -t needs it: a parser for RFC 5322 address
 * lists, which is where display names, comments and groups live.
 *
 * This is hand-written rather than a library (GMime, for instance) because
 * it is small, the commands need little of MIME, and the output must be
 * exactly predictable for the tests that check it byte for byte.
 */
#include "cli/cli.h"
#include "smtp/address.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#define LINE_SOFT_MAX 78 /* RFC 5322 §2.1.1: SHOULD be no more than 78 characters */
#define WORD_LINE_MAX 76 /* RFC 2047 §2: a line with encoded-words is at most 76 */

/* ---- small pieces -------------------------------------------------------- */

/* mime_is_ascii - only 7-bit octets? */
bool mime_is_ascii(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (p[i] & 0x80)
            return false;
    }
    return true;
}

/* is_ftext - a character allowed in a field name (RFC 5322 §3.6.8) */
static bool is_ftext(uint8_t c)
{
    return c >= 33 && c <= 126 && c != ':';
}

/* random_text - n random letters and digits */
static void random_text(char *out, size_t n)
{
    static const char alphabet[] = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    uint8_t r[64];
    size_t got = 0;
    if (n > sizeof(r))
        n = sizeof(r);
    while (got < n) {
        ssize_t k = getrandom(r + got, n - got, 0);
        if (k < 0) {
            if (errno == EINTR)
                continue;
            /* No entropy to be had: the time and the process still make it unique. */
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            uint64_t x =
                (uint64_t)ts.tv_nsec ^ (uint64_t)ts.tv_sec << 24 ^ (uint64_t)getpid() << 44;
            for (size_t i = got; i < n; i++) {
                x = x * 6364136223846793005u + 1442695040888963407u; /* an LCG step */
                r[i] = (uint8_t)(x >> 56);
            }
            break;
        }
        got += (size_t)k;
    }
    for (size_t i = 0; i < n; i++)
        out[i] = alphabet[r[i] % 62];
    out[n] = '\0';
}

/*
 * append_crlf_text - p[0..n) with every line ending made CRLF (a bare LF
 * and a bare CR are line endings too, as the client engine treats them on
 * the wire), and a last one added.
 */
static int append_crlf_text(struct buf *out, const uint8_t *p, size_t n)
{
    size_t start = 0;
    for (size_t i = 0; i < n; i++) {
        if (p[i] != '\n' && p[i] != '\r')
            continue;
        if (buf_append(out, p + start, i - start) < 0 || buf_append(out, "\r\n", 2) < 0)
            return -1;
        if (p[i] == '\r' && i + 1 < n && p[i + 1] == '\n')
            i++; /* CRLF: one line ending */
        start = i + 1;
    }
    if (start < n) {
        if (buf_append(out, p + start, n - start) < 0 || buf_append(out, "\r\n", 2) < 0)
            return -1;
    }
    return 0;
}

/* ---- the message --------------------------------------------------------- */

/* mime_init - an empty message */
void mime_init(struct mime_message *m)
{
    memset(m, 0, sizeof(*m));
    buf_init(&m->body, CLI_INPUT_MAX);
}

/* field_free - release one field's memory */
static void field_free(struct mime_field *f)
{
    free(f->name);
    free(f->raw);
}

/* mime_free - release everything */
void mime_free(struct mime_message *m)
{
    for (size_t i = 0; i < m->nfields; i++)
        field_free(&m->fields[i]);
    free(m->fields);
    for (size_t i = 0; i < m->natt; i++) {
        free(m->att[i].filename);
        free(m->att[i].data);
    }
    free(m->att);
    buf_free(&m->body);
    memset(m, 0, sizeof(*m));
}

/* add_field_raw - append a field from its name and raw bytes (CRLF-terminated) */
static int add_field_raw(struct mime_message *m, const char *name, size_t name_len,
                         const uint8_t *raw, size_t raw_len)
{
    struct mime_field *more = realloc(m->fields, (m->nfields + 1) * sizeof(*more));
    if (more == NULL)
        return -1;
    m->fields = more;
    struct mime_field *f = &m->fields[m->nfields];
    f->name = strndup(name, name_len);
    f->raw = malloc(raw_len ? raw_len : 1);
    if (f->name == NULL || f->raw == NULL) {
        field_free(f);
        return -1;
    }
    memcpy(f->raw, raw, raw_len);
    f->raw_len = raw_len;
    m->nfields++;
    return 0;
}

/* field_name_length - if line starts a header field, the length of its name, else 0 */
static size_t field_name_length(const uint8_t *line, size_t n, size_t *colon)
{
    size_t i = 0;
    while (i < n && is_ftext(line[i]))
        i++;
    size_t name_len = i;
    /* RFC 5322 §4.5.1 (obsolete syntax): white space may precede the colon. */
    while (i < n && (line[i] == ' ' || line[i] == '\t'))
        i++;
    if (name_len == 0 || i >= n || line[i] != ':')
        return 0;
    *colon = i;
    return name_len;
}

/* mime_parse - header fields (if the content starts with one) and body */
int mime_parse(struct mime_message *m, const uint8_t *p, size_t n)
{
    struct buf text;
    buf_init(&text, CLI_INPUT_MAX);
    if (append_crlf_text(&text, p, n) < 0) {
        buf_free(&text);
        return -1;
    }
    const uint8_t *t = text.data;
    size_t len = text.len, pos = 0, colon;
    int rc = 0;

    /* Each pass takes one field and its continuation lines. */
    while (pos < len) {
        const uint8_t *line = t + pos;
        const uint8_t *end = memchr(line, '\n', len - pos); /* always there: text ends in CRLF */
        size_t line_len = (size_t)(end - line) + 1;
        if (line_len == 2) { /* the blank line between header and body */
            pos += 2;
            break;
        }
        size_t name_len = field_name_length(line, line_len, &colon);
        if (name_len == 0)
            break; /* not a field: the body starts here */
        size_t field_len = line_len;
        while (pos + field_len < len && (t[pos + field_len] == ' ' || t[pos + field_len] == '\t')) {
            const uint8_t *next = t + pos + field_len;
            const uint8_t *next_end = memchr(next, '\n', len - pos - field_len);
            field_len += (size_t)(next_end - next) + 1;
        }
        if (add_field_raw(m, (const char *)line, name_len, line, field_len) < 0) {
            rc = -1;
            break;
        }
        pos += field_len;
    }
    if (rc == 0 && len > pos && buf_append(&m->body, t + pos, len - pos) < 0)
        rc = -1;
    buf_free(&text);
    return rc;
}

/* mime_set_body - the body is exactly this text */
int mime_set_body(struct mime_message *m, const uint8_t *p, size_t n)
{
    buf_clear(&m->body);
    return append_crlf_text(&m->body, p, n);
}

/* mime_has - is there a field with this name? */
bool mime_has(const struct mime_message *m, const char *name)
{
    for (size_t i = 0; i < m->nfields; i++) {
        if (strcasecmp(m->fields[i].name, name) == 0)
            return true;
    }
    return false;
}

/* mime_remove - drop every field with this name */
size_t mime_remove(struct mime_message *m, const char *name)
{
    size_t kept = 0, removed = 0;
    for (size_t i = 0; i < m->nfields; i++) {
        if (strcasecmp(m->fields[i].name, name) == 0) {
            field_free(&m->fields[i]);
            removed++;
        } else {
            m->fields[kept++] = m->fields[i];
        }
    }
    m->nfields = kept;
    return removed;
}

/* mime_take_fields - move src's fields to the end of dst's */
int mime_take_fields(struct mime_message *dst, struct mime_message *src)
{
    if (src->nfields == 0)
        return 0;
    struct mime_field *more = realloc(dst->fields, (dst->nfields + src->nfields) * sizeof(*more));
    if (more == NULL)
        return -1;
    dst->fields = more;
    memcpy(dst->fields + dst->nfields, src->fields, src->nfields * sizeof(*more));
    dst->nfields += src->nfields;
    free(src->fields);
    src->fields = NULL;
    src->nfields = 0;
    return 0;
}

/* add_formatted - append a field whose raw text (without the final CRLF) is in b */
static int add_formatted(struct mime_message *m, const char *name, struct buf *b)
{
    int rc = buf_append(b, "\r\n", 2);
    if (rc == 0)
        rc = add_field_raw(m, name, strlen(name), b->data, b->len);
    buf_free(b);
    return rc;
}

/* mime_add - append "name: value" */
int mime_add(struct mime_message *m, const char *name, const char *value)
{
    struct buf b;
    buf_init(&b, 4096 + strlen(value));
    if (buf_printf(&b, "%s: %s", name, value) < 0) {
        buf_free(&b);
        return -1;
    }
    return add_formatted(m, name, &b);
}

/* mime_add_line - a field given as "Name: value" */
int mime_add_line(struct mime_message *m, const char *line)
{
    size_t n = strlen(line), colon;
    size_t name_len = field_name_length((const uint8_t *)line, n, &colon);
    if (name_len == 0 || n > 998)
        return -1;
    for (size_t i = 0; i < n; i++) {
        if (line[i] == '\r' || line[i] == '\n' || line[i] == '\0')
            return -1; /* one line only: no field smuggled in after it */
    }
    struct buf b;
    buf_init(&b, n + 3);
    if (buf_append(&b, line, n) < 0 || buf_append(&b, "\r\n", 2) < 0 ||
        add_field_raw(m, line, name_len, b.data, b.len) < 0) {
        buf_free(&b);
        return -1;
    }
    buf_free(&b);
    return 0;
}

/* ---- RFC 2047 encoded-words ---------------------------------------------- */

/* base64_group - encode up to 3 octets as 4 characters */
static void base64_group(const uint8_t *p, size_t n, char out[4])
{
    static const char alphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    uint32_t v = (uint32_t)p[0] << 16;
    if (n > 1)
        v |= (uint32_t)p[1] << 8;
    if (n > 2)
        v |= p[2];
    out[0] = alphabet[(v >> 18) & 63];
    out[1] = alphabet[(v >> 12) & 63];
    out[2] = n > 1 ? alphabet[(v >> 6) & 63] : '=';
    out[3] = n > 2 ? alphabet[v & 63] : '=';
}

/* append_base64_raw - base64 without line breaks */
static int append_base64_raw(struct buf *out, const uint8_t *p, size_t n)
{
    if (buf_reserve(out, (n + 2) / 3 * 4) < 0)
        return -1;
    for (size_t i = 0; i < n; i += 3) {
        char g[4];
        base64_group(p + i, n - i < 3 ? n - i : 3, g);
        buf_append(out, g, 4);
    }
    return 0;
}

/* mime_base64 - base64 in lines of 76 characters */
int mime_base64(struct buf *out, const uint8_t *p, size_t n)
{
    /* RFC 2045 §6.8: "encoded lines must be no more than 76 characters long". */
    const size_t per_line = 57; /* octets that make 76 characters */
    if (buf_reserve(out, (n + 2) / 3 * 4 + (n / per_line + 1) * 2) < 0)
        return -1;
    for (size_t i = 0; i < n; i += per_line) {
        size_t k = n - i < per_line ? n - i : per_line;
        append_base64_raw(out, p + i, k);
        buf_append(out, "\r\n", 2);
    }
    return 0;
}

/* utf8_cut - the longest prefix of p[0..n) of at most max octets that ends on a character */
static size_t utf8_cut(const uint8_t *p, size_t n, size_t max)
{
    if (n <= max)
        return n;
    size_t k = max;
    while (k > 0 && (p[k] & 0xc0) == 0x80)
        k--;
    return k > 0 ? k : max; /* not UTF-8 after all: cut anywhere */
}

/*
 * append_encoded_words - text as B-encoded words (RFC 2047 §4.1), each
 * holding whole UTF-8 characters (§5).  With fold, words are separated by
 * CRLF SP so that no line passes 76 characters, starting at column col;
 * without, by a space (inside a quoted parameter value).
 */
static int append_encoded_words(struct buf *out, const uint8_t *p, size_t n, size_t col, bool fold)
{
    static const char open[] = "=?UTF-8?B?";
    size_t pos = 0;
    do {
        size_t room = WORD_LINE_MAX > col + 12 ? WORD_LINE_MAX - col - 12 : 4;
        size_t max = fold ? room / 4 * 3 : 45;
        if (max < 3)
            max = 3;
        size_t k = utf8_cut(p + pos, n - pos, max);
        if (pos > 0 && buf_append_str(out, fold ? "\r\n " : " ") < 0)
            return -1;
        if (buf_append_str(out, open) < 0 || append_base64_raw(out, p + pos, k) < 0 ||
            buf_append_str(out, "?=") < 0)
            return -1;
        pos += k;
        col = 1;
    } while (pos < n);
    return 0;
}

/* append_folded - ASCII text, folded at spaces to keep lines near 78 characters */
static int append_folded(struct buf *out, const char *text, size_t col)
{
    const char *p = text;
    while (*p != '\0') {
        /* The next word with the spaces before it. */
        const char *w = p;
        while (*w == ' ' || *w == '\t')
            w++;
        const char *e = w;
        while (*e != '\0' && *e != ' ' && *e != '\t')
            e++;
        size_t len = (size_t)(e - p);
        if (col + len > LINE_SOFT_MAX && p != text && w != p) {
            /* RFC 5322 §2.2.3: fold by putting CRLF before white space. */
            if (buf_append(out, "\r\n", 2) < 0)
                return -1;
            col = 0;
        }
        if (buf_append(out, p, len) < 0)
            return -1;
        col += len;
        p = e;
    }
    return 0;
}

/* mime_add_text - an unstructured field, folded or encoded */
int mime_add_text(struct mime_message *m, const char *name, const char *text)
{
    size_t n = strlen(text);
    struct buf b;
    buf_init(&b, 4096 + 4 * n);
    int rc = buf_printf(&b, "%s: ", name);
    bool plain = mime_is_ascii((const uint8_t *)text, n);
    for (size_t i = 0; plain && i < n; i++) {
        if ((uint8_t)text[i] < 0x20 && text[i] != '\t')
            plain = false; /* a control character (a newline, say) is encoded, not sent raw */
    }
    if (rc == 0 && n > 0) {
        if (plain)
            rc = append_folded(&b, text, b.len);
        else
            rc = append_encoded_words(&b, (const uint8_t *)text, n, b.len, true);
    }
    if (rc < 0) {
        buf_free(&b);
        return -1;
    }
    return add_formatted(m, name, &b);
}

/* is_atext - RFC 5322 §3.2.3 atext, plus 8-bit octets (RFC 6532 UTF-8) */
static bool is_atext(uint8_t c)
{
    if (c >= 0x80)
        return true;
    if (c >= 'a' && c <= 'z')
        return true;
    if (c >= 'A' && c <= 'Z')
        return true;
    if (c >= '0' && c <= '9')
        return true;
    return c != '\0' && strchr("!#$%&'*+-/=?^_`{|}~", c) != NULL;
}

/* append_phrase - a display name as atoms, a quoted string or encoded-words */
static int append_phrase(struct buf *out, const char *name)
{
    size_t n = strlen(name);
    const uint8_t *p = (const uint8_t *)name;
    bool atoms = true, quotable = true;
    for (size_t i = 0; i < n; i++) {
        if (p[i] >= 0x80 || p[i] < 0x20 || p[i] == 0x7f)
            quotable = atoms = false;
        else if (!is_atext(p[i]) && p[i] != ' ')
            atoms = false;
    }
    if (!quotable)
        return append_encoded_words(out, p, n, out->len, false);
    if (atoms && n > 0 && name[0] != ' ' && name[n - 1] != ' ')
        return buf_append(out, name, n);
    if (buf_append_byte(out, '"') < 0)
        return -1;
    for (size_t i = 0; i < n; i++) {
        if ((p[i] == '"' || p[i] == '\\') && buf_append_byte(out, '\\') < 0)
            return -1;
        if (buf_append_byte(out, p[i]) < 0)
            return -1;
    }
    return buf_append_byte(out, '"');
}

/* mime_add_mailbox - "Display Name <address>" */
int mime_add_mailbox(struct mime_message *m, const char *name, const char *display,
                     const char *address)
{
    struct buf b;
    buf_init(&b, 8192);
    int rc = buf_printf(&b, "%s: ", name);
    if (rc == 0 && display != NULL && display[0] != '\0') {
        rc = append_phrase(&b, display);
        if (rc == 0)
            rc = buf_printf(&b, " <%s>", address);
    } else if (rc == 0) {
        rc = buf_append_str(&b, address);
    }
    if (rc < 0) {
        buf_free(&b);
        return -1;
    }
    return add_formatted(m, name, &b);
}

/* mime_add_date - RFC 5322 §3.3 date-time, local time with its offset */
int mime_add_date(struct mime_message *m, time_t t)
{
    /* Names by hand: strftime's %a and %b follow the locale, and mail must not. */
    static const char days[7][4] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
    static const char months[12][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                       "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    struct tm tm;
    if (localtime_r(&t, &tm) == NULL)
        return -1;
    long off = tm.tm_gmtoff / 60;
    char sign = off < 0 ? '-' : '+';
    if (off < 0)
        off = -off;
    char value[64];
    snprintf(value, sizeof(value), "%s, %02d %s %04d %02d:%02d:%02d %c%02ld%02ld",
             days[tm.tm_wday % 7], tm.tm_mday, months[tm.tm_mon % 12], tm.tm_year + 1900,
             tm.tm_hour, tm.tm_min, tm.tm_sec, sign, off / 60, off % 60);
    return mime_add(m, "Date", value);
}

/* mime_add_message_id - <time.random@host> */
int mime_add_message_id(struct mime_message *m, const char *host)
{
    char rnd[21], value[400];
    random_text(rnd, 20);
    /* The right side must be a dot-atom: anything odd in the host name and we say localhost. */
    bool ok = host != NULL && host[0] != '\0' && strlen(host) < 255 && host[0] != '.';
    for (const char *h = host; ok && *h != '\0'; h++) {
        if (!is_atext((uint8_t)*h) && *h != '.')
            ok = false;
    }
    snprintf(value, sizeof(value), "<%lld.%s@%s>", (long long)time(NULL), rnd,
             ok ? host : "localhost");
    return mime_add(m, "Message-ID", value);
}

/* ---- attachments --------------------------------------------------------- */

/* A small table: the types people attach most.  Everything else is octets. */
static const struct {
    const char *ext;
    const char *type;
} mime_types[] = {
    {"txt", "text/plain"},
    {"text", "text/plain"},
    {"log", "text/plain"},
    {"md", "text/markdown"},
    {"csv", "text/csv"},
    {"html", "text/html"},
    {"htm", "text/html"},
    {"css", "text/css"},
    {"ics", "text/calendar"},
    {"xml", "application/xml"},
    {"json", "application/json"},
    {"pdf", "application/pdf"},
    {"zip", "application/zip"},
    {"gz", "application/gzip"},
    {"tgz", "application/gzip"},
    {"tar", "application/x-tar"},
    {"doc", "application/msword"},
    {"docx", "application/vnd.openxmlformats-officedocument.wordprocessingml.document"},
    {"xls", "application/vnd.ms-excel"},
    {"xlsx", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"},
    {"odt", "application/vnd.oasis.opendocument.text"},
    {"ods", "application/vnd.oasis.opendocument.spreadsheet"},
    {"png", "image/png"},
    {"jpg", "image/jpeg"},
    {"jpeg", "image/jpeg"},
    {"gif", "image/gif"},
    {"webp", "image/webp"},
    {"svg", "image/svg+xml"},
    {"mp3", "audio/mpeg"},
    {"ogg", "audio/ogg"},
    {"wav", "audio/wav"},
    {"mp4", "video/mp4"},
    {"webm", "video/webm"},
    /* Not message/rfc822 for .eml: RFC 2046 §5.2.1 forbids base64 for it. */
};

/* mime_type_for - Content-Type by extension */
const char *mime_type_for(const char *name)
{
    const char *dot = strrchr(name, '.');
    if (dot == NULL || dot == name || dot[1] == '\0')
        return "application/octet-stream";
    for (size_t i = 0; i < sizeof(mime_types) / sizeof(mime_types[0]); i++) {
        if (strcasecmp(dot + 1, mime_types[i].ext) == 0)
            return mime_types[i].type;
    }
    return "application/octet-stream";
}

/* mime_attach - add a file */
int mime_attach(struct mime_message *m, const char *name, const uint8_t *data, size_t len)
{
    const char *base = strrchr(name, '/');
    base = base ? base + 1 : name;
    if (base[0] == '\0')
        base = "attachment";
    struct mime_attachment *more = realloc(m->att, (m->natt + 1) * sizeof(*more));
    if (more == NULL)
        return -1;
    m->att = more;
    struct mime_attachment *a = &m->att[m->natt];
    a->filename = strdup(base);
    a->type = mime_type_for(base);
    a->data = malloc(len ? len : 1);
    if (a->filename == NULL || a->data == NULL) {
        free(a->filename);
        free(a->data);
        return -1;
    }
    memcpy(a->data, data, len);
    a->len = len;
    m->natt++;
    return 0;
}

/* filename_plain - can the name go in a quoted string as it is? */
static bool filename_plain(const char *name)
{
    for (const uint8_t *p = (const uint8_t *)name; *p != '\0'; p++) {
        if (*p < 0x20 || *p >= 0x7f)
            return false;
    }
    return strlen(name) <= 200;
}

/* append_filename_param - ; key="name" (quoted or encoded-words), and filename* for non-ASCII */
static int append_filename_param(struct buf *out, const char *key, const char *name,
                                 bool with_rfc2231)
{
    int rc = buf_printf(out, ";\r\n %s=\"", key);
    if (filename_plain(name)) {
        for (const char *p = name; rc == 0 && *p != '\0'; p++) {
            if (*p == '"' || *p == '\\')
                rc = buf_append_byte(out, '\\');
            if (rc == 0)
                rc = buf_append_byte(out, (uint8_t)*p);
        }
        return rc == 0 ? buf_append_byte(out, '"') : -1;
    }
    /* What most mail programs read (RFC 2047 words in the quoted value)... */
    if (rc == 0)
        rc = append_encoded_words(out, (const uint8_t *)name, strlen(name), 0, false);
    if (rc == 0)
        rc = buf_append_byte(out, '"');
    /* ...and what the standard says (RFC 2231 §4), which readers prefer when both are there. */
    if (rc == 0 && with_rfc2231) {
        rc = buf_printf(out, ";\r\n %s*=UTF-8''", key);
        for (const uint8_t *p = (const uint8_t *)name; rc == 0 && *p != '\0'; p++) {
            /* RFC 2231 §7 attribute-char: no tspecials, '*', '\'' or '%'. */
            if (*p < 0x80 && (*p == '.' || (is_atext(*p) && strchr("*'%/=?", *p) == NULL)))
                rc = buf_append_byte(out, *p);
            else
                rc = buf_printf(out, "%%%02X", *p);
        }
    }
    return rc;
}

/* is_content_field - a MIME field that describes the body (it moves into the first part) */
static bool is_content_field(const char *name)
{
    return strncasecmp(name, "Content-", 8) == 0;
}

/* contains - does hay hold needle? */
static bool contains(const uint8_t *hay, size_t n, const char *needle)
{
    size_t k = strlen(needle);
    return k <= n && memmem(hay, n, needle, k) != NULL;
}

/* choose_boundary - a random boundary that appears in no part we do not base64-encode */
static void choose_boundary(const struct mime_message *m, char *out, size_t outsize)
{
    for (;;) {
        char rnd[25];
        random_text(rnd, 24);
        snprintf(out, outsize, "=_pigeon_%s", rnd);
        bool clash = contains(m->body.data, m->body.len, out);
        for (size_t i = 0; !clash && i < m->nfields; i++)
            clash = contains(m->fields[i].raw, m->fields[i].raw_len, out);
        if (!clash) /* with 143 random bits, this loop ends the first time */
            return;
    }
}

/* render_text_part_type - the Content-Type and encoding of a body with none given */
static int render_default_type(struct buf *out, const struct buf *body)
{
    if (mime_is_ascii(body->data, body->len))
        return buf_append_str(out, "Content-Type: text/plain; charset=us-ascii\r\n"
                                   "Content-Transfer-Encoding: 7bit\r\n");
    return buf_append_str(out, "Content-Type: text/plain; charset=utf-8\r\n"
                               "Content-Transfer-Encoding: 8bit\r\n");
}

/* mime_render - the whole message */
int mime_render(const struct mime_message *m, struct buf *out)
{
    int rc = 0;
    bool has_content = false, has_version = false;
    for (size_t i = 0; i < m->nfields; i++) {
        if (is_content_field(m->fields[i].name))
            has_content = true;
        else if (strcasecmp(m->fields[i].name, "MIME-Version") == 0)
            has_version = true;
    }

    if (m->natt == 0) {
        for (size_t i = 0; rc == 0 && i < m->nfields; i++)
            rc = buf_append(out, m->fields[i].raw, m->fields[i].raw_len);
        /* 8-bit text with no MIME labels: say what it is (RFC 2045 §4, RFC 6152). */
        if (rc == 0 && !has_content && !has_version && !mime_is_ascii(m->body.data, m->body.len)) {
            rc = buf_append_str(out, "MIME-Version: 1.0\r\n");
            if (rc == 0)
                rc = render_default_type(out, &m->body);
        }
        if (rc == 0)
            rc = buf_append(out, "\r\n", 2);
        if (rc == 0)
            rc = buf_append(out, m->body.data, m->body.len);
        return rc;
    }

    char boundary[64];
    choose_boundary(m, boundary, sizeof(boundary));
    for (size_t i = 0; rc == 0 && i < m->nfields; i++) {
        const struct mime_field *f = &m->fields[i];
        if (!is_content_field(f->name) && strcasecmp(f->name, "MIME-Version") != 0)
            rc = buf_append(out, f->raw, f->raw_len);
    }
    if (rc == 0)
        rc = buf_printf(out,
                        "MIME-Version: 1.0\r\n"
                        "Content-Type: multipart/mixed;\r\n boundary=\"%s\"\r\n"
                        "\r\n"
                        "This is a multi-part message in MIME format.\r\n",
                        boundary);

    /* The text first, with the Content-* fields the message came with. */
    if (rc == 0 && (m->body.len > 0 || has_content)) {
        rc = buf_printf(out, "\r\n--%s\r\n", boundary);
        if (rc == 0 && has_content) {
            for (size_t i = 0; rc == 0 && i < m->nfields; i++) {
                if (is_content_field(m->fields[i].name))
                    rc = buf_append(out, m->fields[i].raw, m->fields[i].raw_len);
            }
        } else if (rc == 0) {
            rc = render_default_type(out, &m->body);
        }
        if (rc == 0)
            rc = buf_append(out, "\r\n", 2);
        if (rc == 0)
            rc = buf_append(out, m->body.data, m->body.len);
    }

    for (size_t i = 0; rc == 0 && i < m->natt; i++) {
        const struct mime_attachment *a = &m->att[i];
        rc = buf_printf(out, "\r\n--%s\r\nContent-Type: %s", boundary, a->type);
        if (rc == 0)
            rc = append_filename_param(out, "name", a->filename, false);
        if (rc == 0)
            rc = buf_append_str(out, "\r\nContent-Transfer-Encoding: base64\r\n"
                                     "Content-Disposition: attachment");
        if (rc == 0)
            rc = append_filename_param(out, "filename", a->filename, true);
        if (rc == 0)
            rc = buf_append_str(out, "\r\n\r\n");
        if (rc == 0)
            rc = mime_base64(out, a->data, a->len);
    }
    /* RFC 2046 §5.1.1: the close-delimiter. */
    if (rc == 0)
        rc = buf_printf(out, "\r\n--%s--\r\n", boundary);
    return rc;
}

/* ---- reading fields back ------------------------------------------------- */

/* mime_field_value - the value, unfolded (RFC 5322 §2.2.3: CRLF before WSP removed) */
int mime_field_value(const struct mime_field *f, struct buf *out)
{
    const uint8_t *p = f->raw;
    size_t n = f->raw_len, i = 0;
    while (i < n && p[i] != ':')
        i++;
    i++;
    while (i < n && (p[i] == ' ' || p[i] == '\t'))
        i++;
    for (; i < n; i++) {
        if (p[i] == '\r' || p[i] == '\n')
            continue;
        if (buf_append_byte(out, p[i] ? p[i] : ' ') < 0)
            return -1;
    }
    while (out->len > 0 && (out->data[out->len - 1] == ' ' || out->data[out->len - 1] == '\t'))
        out->len--;
    return buf_append_byte(out, '\0') < 0 ? -1 : 0;
}

/* ---- RFC 5322 §3.4 address lists ----------------------------------------- */

enum addr_token {
    ADDR_END,
    ADDR_WORD,    /* an atom, a quoted string or a domain literal, as written */
    ADDR_SPECIAL, /* one of < > : ; , @ . */
};

struct addr_lexer {
    const char *p;
    char special;
    const char *word;
    size_t word_len;
};

/* addr_next - the next token, skipping white space and (nested) comments */
static enum addr_token addr_next(struct addr_lexer *lx)
{
    for (;;) {
        while (*lx->p == ' ' || *lx->p == '\t' || *lx->p == '\r' || *lx->p == '\n')
            lx->p++;
        if (*lx->p != '(')
            break;
        /* RFC 5322 §3.2.2: comments nest, and a backslash quotes the next character. */
        int depth = 0;
        do {
            if (*lx->p == '\\' && lx->p[1] != '\0')
                lx->p++;
            else if (*lx->p == '(')
                depth++;
            else if (*lx->p == ')')
                depth--;
            lx->p++;
        } while (depth > 0 && *lx->p != '\0');
    }
    const char *s = lx->p;
    if (*s == '\0')
        return ADDR_END;
    if (strchr("<>:;,@.", *s) != NULL) {
        lx->special = *s;
        lx->p++;
        return ADDR_SPECIAL;
    }
    lx->word = s;
    if (*s == '"' || *s == '[') {
        char close = *s == '"' ? '"' : ']';
        s++;
        while (*s != '\0' && *s != close) {
            if (*s == '\\' && s[1] != '\0')
                s++;
            s++;
        }
        if (*s == close)
            s++;
    } else {
        while (*s != '\0' && strchr("<>:;,@.()\"[] \t\r\n", *s) == NULL)
            s++;
        if (s == lx->word) /* a stray ')' or ']' */
            s++;
    }
    lx->word_len = (size_t)(s - lx->word);
    lx->p = s;
    return ADDR_WORD;
}

/* One mailbox being collected. */
struct addr_state {
    struct buf plain; /* the tokens outside angle brackets, joined */
    struct buf angle; /* the tokens inside them */
    bool in_angle, had_angle;
    /* Two words in a row, with no "." or "@" between them: a phrase such as
     * a display name, which is not an address unless angle brackets follow. */
    bool plain_phrase, angle_phrase;
    bool after_word; /* the last token was a word */
    int (*found)(void *, const char *);
    void *ctx;
};

/* addr_valid - a mailbox (local@domain) or a bare local name, by RFC 5321 */
static bool addr_valid(const char *a, size_t n)
{
    if (memchr(a, '@', n) == NULL)
        return n <= SMTP_LOCAL_MAX && smtp_local_is_dot_string(a, n, true);
    struct smtp_path path;
    size_t used;
    return smtp_path_parse(a, n, SMTP_PATH_ALLOW_UTF8 | SMTP_PATH_ALLOW_BARE, &path, &used) ==
               SMTP_PATH_OK &&
           used == n && !path.is_null && !path.is_postmaster;
}

/* addr_emit - the mailbox collected so far, if any */
static int addr_emit(struct addr_state *st)
{
    struct buf *b = st->had_angle ? &st->angle : &st->plain;
    bool phrase = st->had_angle ? st->angle_phrase : st->plain_phrase;
    int rc = 0;
    /* What comes out goes into "RCPT TO:<...>", so it must be an address by
     * RFC 5321's rules (or a bare local name, which becomes name@localhost);
     * otherwise the whole list is refused rather than a recipient quietly
     * changed.  "John Smith" alone is a name, not the address JohnSmith. */
    if (b->len > 0 && (phrase || !addr_valid((const char *)b->data, b->len)))
        rc = MIME_BAD_ADDRESS;
    if (rc == 0 && b->len > 0) {
        if (buf_append_byte(b, '\0') < 0)
            rc = -1;
        else
            rc = st->found(st->ctx, (const char *)b->data);
    }
    buf_clear(&st->plain);
    buf_clear(&st->angle);
    st->in_angle = st->had_angle = false;
    st->plain_phrase = st->angle_phrase = false;
    return rc;
}

/* mime_addresses - the addr-specs of an address list */
int mime_addresses(const char *value, int (*found)(void *ctx, const char *addr), void *ctx)
{
    struct addr_lexer lx = {.p = value};
    struct addr_state st = {.found = found, .ctx = ctx};
    buf_init(&st.plain, 4096);
    buf_init(&st.angle, 4096);
    int rc = 0;
    enum addr_token t;
    while (rc == 0 && (t = addr_next(&lx)) != ADDR_END) {
        struct buf *cur = st.in_angle ? &st.angle : &st.plain;
        if (t == ADDR_WORD) {
            if (st.after_word)
                *(st.in_angle ? &st.angle_phrase : &st.plain_phrase) = true;
            st.after_word = true;
            if (buf_append(cur, lx.word, lx.word_len) < 0)
                rc = -1;
            continue;
        }
        st.after_word = false;
        switch (lx.special) {
        case '<':
            buf_clear(&st.angle);
            st.angle_phrase = false;
            st.in_angle = true;
            break;
        case '>':
            st.in_angle = false;
            st.had_angle = true;
            break;
        case ':':
            /* In angle brackets it ends an obsolete route (@a,@b:user@c, RFC 5322 §4.4);
             * outside, the words before it were a group's name. */
            if (st.in_angle) {
                buf_clear(&st.angle);
                st.angle_phrase = false;
            } else {
                buf_clear(&st.plain);
                st.plain_phrase = false;
            }
            break;
        case ',':
            if (!st.in_angle)
                rc = addr_emit(&st);
            break;
        case ';':
            if (!st.in_angle)
                rc = addr_emit(&st);
            break;
        default: /* '@' and '.' join the words of an addr-spec */
            if (buf_append_byte(cur, (uint8_t)lx.special) < 0)
                rc = -1;
            break;
        }
    }
    if (rc == 0)
        rc = addr_emit(&st);
    buf_free(&st.plain);
    buf_free(&st.angle);
    return rc;
}
