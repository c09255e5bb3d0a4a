/*
 * parse.y - the grammar of pigeond.conf (described in pigeond.conf(5)).
 *
 * Only the shape of each statement is checked here.  What the words mean
 * (is "35M" a size, is "::1" an address, does <users> exist) is decided by
 * the config_parse_*() function in config.c that each rule calls; those
 * take over the strings and objects passed to them (see config_internal.h),
 * so a rule never frees after a call.  The first error stops the parse:
 * YYABORT, with the message already recorded as "file:line: ...".
 *
 * Lists in braces may span lines: items are separated by commas, ends of
 * lines, or both, and a trailing comma is allowed.  A keyword written bare
 * is also accepted wherever a string is expected ("table users ...").
 *
 * Pure (no global state): config_load() calls config_yyparse() with its own
 * scanner and struct config_parse.
 */

%define api.pure full
%define api.prefix {config_yy}
%define api.token.prefix {TOK_}
%define parse.error custom
%define parse.lac full
%locations
%param {void *scanner}
%parse-param {struct config_parse *p}

%code requires {
#include "config_internal.h"
}

%code {
#include <stdlib.h>
#include <string.h>

#include "lex.h"
#include "lib/buf.h"

static void config_yyerror(CONFIG_YYLTYPE *loc, void *scanner, struct config_parse *p,
                           const char *msg);

/* Stop at the first error; the called function has recorded the message. */
#define CHECK(call)                                                                   \
    do {                                                                              \
        if ((call) < 0)                                                               \
            YYABORT;                                                                  \
    } while (0)

/* The line a rule's first symbol is on. */
#define LINE(loc) ((loc).first_line)
}

%union {
    char *string;
    const char *keyword;
    struct table *table;
    struct action *action;
    struct config_match_part part;
}

%token <string> STRING "string"
%token <string> TABLEREF "<table>"
%token NL "end of line"
%token <keyword> ACTION "action" ALIASES "aliases" ANY "any" DOMAIN "domain" FILE "file"
%token <keyword> FOR "for" FROM "from" HOSTNAME "hostname" LIMIT "limit" LISTEN "listen"
%token <keyword> MAILDIR "maildir" MATCH "match" ON "on" PORT "port" QUEUE "queue"
%token <keyword> REJECT "reject" RELAY "relay" SRC "src" SYNC "sync" TABLE "table"
%token <keyword> TIMEOUT "timeout" TRUSTED "trusted" USER "user" USERS "users"
%token <keyword> WORKERS "workers"

%type <string> string sync_opt port_opt
%type <keyword> keyword
%type <table> list items
%type <action> maildir_opts
%type <part> match_from match_for match_then

%destructor { free($$); } <string>
%destructor { table_free($$); } <table>
%destructor { config_action_free($$); } <action>
%destructor { free($$.name); } <part>

%%

config          : %empty
                | config line
                ;

line            : NL
                | statement NL
                ;

statement       : hostname
                | user
                | queue
                | workers
                | trusted
                | listen
                | table
                | action
                | match
                | limit
                | timeout
                | unknown
                ;

hostname        : HOSTNAME string {
                    CHECK(config_parse_hostname(p, LINE(@1), $2));
                }
                ;

user            : USER string {
                    CHECK(config_parse_user(p, LINE(@1), $2));
                }
                ;

queue           : QUEUE string sync_opt {
                    CHECK(config_parse_queue(p, LINE(@1), $2, $3));
                }
                ;

sync_opt        : %empty        { $$ = NULL; }
                | SYNC string   { $$ = $2; }
                ;

workers         : WORKERS string {
                    CHECK(config_parse_workers(p, LINE(@1), $2));
                }
                ;

trusted         : TRUSTED list {
                    CHECK(config_parse_trusted_list(p, LINE(@1), $2));
                }
                | TRUSTED TABLEREF {
                    CHECK(config_parse_trusted_table(p, LINE(@1), $2));
                }
                ;

listen          : LISTEN ON string port_opt {
                    CHECK(config_parse_listen(p, LINE(@1), $3, $4));
                }
                ;

port_opt        : %empty        { $$ = NULL; }
                | PORT string   { $$ = $2; }
                ;

table           : TABLE string list {
                    CHECK(config_parse_table_list(p, LINE(@1), $2, $3));
                }
                | TABLE string FILE string {
                    CHECK(config_parse_table_file(p, LINE(@1), $2, $4));
                }
                ;

action          : ACTION string MAILDIR maildir_opts {
                    CHECK(config_parse_action(p, LINE(@1), $2, $4));
                }
                | ACTION string RELAY {
                    CHECK(config_parse_action_relay(p, LINE(@1), $2));
                }
                ;

/* The maildir path and the tables, in any order, each at most once. */
maildir_opts    : %empty {
                    $$ = config_parse_maildir_new(p, LINE(@$));
                    if ($$ == NULL)
                        YYABORT;
                }
                | maildir_opts string {
                    $$ = $1;
                    if (config_parse_maildir_path(p, LINE(@2), $1, $2) < 0) {
                        config_action_free($1);
                        YYABORT;
                    }
                }
                | maildir_opts USERS TABLEREF {
                    $$ = $1;
                    if (config_parse_maildir_table(p, LINE(@2), $1, CONFIG_TABLE_USE_KEYS,
                                                   $3) < 0) {
                        config_action_free($1);
                        YYABORT;
                    }
                }
                | maildir_opts ALIASES TABLEREF {
                    $$ = $1;
                    if (config_parse_maildir_table(p, LINE(@2), $1, CONFIG_TABLE_USE_ALIASES,
                                                   $3) < 0) {
                        config_action_free($1);
                        YYABORT;
                    }
                }
                ;

match           : MATCH FROM match_from FOR match_for match_then {
                    CHECK(config_parse_match(p, LINE(@1), $3, $5, $6));
                }
                ;

match_from      : ANY {
                    $$ = (struct config_match_part){CONFIG_MATCH_FROM_ANY, NULL, LINE(@1)};
                }
                | TRUSTED {
                    $$ = (struct config_match_part){CONFIG_MATCH_FROM_TRUSTED, NULL, LINE(@1)};
                }
                | SRC TABLEREF {
                    $$ = (struct config_match_part){CONFIG_MATCH_FROM_SRC, $2, LINE(@2)};
                }
                ;

match_for       : ANY {
                    $$ = (struct config_match_part){CONFIG_MATCH_FOR_ANY, NULL, LINE(@1)};
                }
                | DOMAIN TABLEREF {
                    $$ = (struct config_match_part){CONFIG_MATCH_FOR_DOMAIN_TABLE, $2, LINE(@2)};
                }
                | DOMAIN string {
                    $$ = (struct config_match_part){CONFIG_MATCH_FOR_DOMAIN_NAME, $2, LINE(@2)};
                }
                ;

match_then      : ACTION string {
                    $$ = (struct config_match_part){CONFIG_MATCH_ACTION, $2, LINE(@2)};
                }
                | REJECT {
                    $$ = (struct config_match_part){CONFIG_MATCH_REJECT, NULL, LINE(@1)};
                }
                ;

limit           : LIMIT string string {
                    CHECK(config_parse_limit(p, LINE(@1), $2, $3));
                }
                ;

timeout         : TIMEOUT string string {
                    CHECK(config_parse_timeout(p, LINE(@1), $2, $3));
                }
                ;

/* A line that starts with a word that is no statement: say so plainly. */
unknown         : STRING {
                    config_parse_error(p, LINE(@1), "unknown statement \"%s\"", $1);
                    free($1);
                    YYABORT;
                }
                ;

/* { item, item
 *   item }                       commas, ends of lines, or both */
list            : '{' nls_opt items sep_opt '}' { $$ = $3; }
                ;

items           : string {
                    $$ = config_parse_list_start(p, LINE(@1), $1);
                    if ($$ == NULL)
                        YYABORT;
                }
                | items sep string {
                    $$ = $1;
                    if (config_parse_list_add(p, $1, LINE(@3), $3) < 0) {
                        table_free($1);
                        YYABORT;
                    }
                }
                ;

sep             : nls_opt ',' nls_opt
                | nls
                ;

sep_opt         : %empty
                | sep
                ;

nls             : NL
                | nls NL
                ;

nls_opt         : %empty
                | nls
                ;

string          : STRING
                | keyword {
                    $$ = strdup($1);
                    if ($$ == NULL) {
                        config_parse_error(p, LINE(@1), "out of memory");
                        YYABORT;
                    }
                }
                ;

keyword         : ACTION | ALIASES | ANY | DOMAIN | FILE | FOR | FROM | HOSTNAME | LIMIT
                | LISTEN | MAILDIR | MATCH | ON | PORT | QUEUE | REJECT | RELAY | SRC | SYNC
                | TABLE | TIMEOUT | TRUSTED | USER | USERS | WORKERS
                ;

%%

/* config_token_name - how a syntax error message names a kind of token */
static const char *config_token_name(yysymbol_kind_t kind)
{
    switch (kind) {
    case YYSYMBOL_YYEOF:
        return "end of file";
    case YYSYMBOL_NL:
        return "end of line";
    case YYSYMBOL_STRING:
        return "a string";
    case YYSYMBOL_TABLEREF:
        return "a <table>";
    default:
        return yysymbol_name(kind); /* a keyword, or punctuation such as '{' */
    }
}

/* config_token_is_keyword - is kind one of the keywords, which are also strings? */
static bool config_token_is_keyword(yysymbol_kind_t kind)
{
    return kind >= YYSYMBOL_ACTION && kind <= YYSYMBOL_WORKERS;
}

/*
 * yyreport_syntax_error - "syntax error: unexpected "b", expecting ',' or '}'".
 * The unexpected token is shown as written when it has text of its own.
 * Where a string is expected, any keyword is too: only "a string" is said.
 */
static int yyreport_syntax_error(const yypcontext_t *ctx, void *scanner, struct config_parse *p)
{
    enum { LISTED_MAX = 6 };
    yysymbol_kind_t expected[YYNTOKENS];
    yysymbol_kind_t got = yypcontext_token(ctx);
    int n = yypcontext_expected_tokens(ctx, expected, YYNTOKENS);
    bool string_expected = false;
    int listed = 0;
    struct buf msg;

    (void)scanner;
    for (int i = 0; i < n; i++)
        string_expected |= expected[i] == YYSYMBOL_STRING;
    for (int i = 0; i < n; i++) {
        if (!(string_expected && config_token_is_keyword(expected[i])))
            expected[listed++] = expected[i];
    }

    buf_init(&msg, 400);
    buf_append_str(&msg, "syntax error: unexpected ");
    if (got == YYSYMBOL_YYEOF || got == YYSYMBOL_NL || got == YYSYMBOL_YYUNDEF)
        buf_append_str(&msg, config_token_name(got));
    else if (p->token_text[0] == '"')
        buf_append_str(&msg, p->token_text);
    else
        buf_printf(&msg, "\"%s\"", p->token_text);
    /* Past a handful of choices a list helps nobody: the man page does. */
    for (int i = 0; listed <= LISTED_MAX && i < listed; i++)
        buf_printf(&msg, config_token_is_keyword(expected[i]) ? "%s\"%s\"" : "%s%s",
                   i == 0 ? ", expecting " : i == listed - 1 ? " or " : ", ",
                   config_token_name(expected[i]));
    buf_append_byte(&msg, '\0');
    config_parse_error(p, yypcontext_location(ctx)->first_line, "%s",
                       msg.data != NULL ? (const char *)msg.data : "syntax error");
    buf_free(&msg);
    return 0;
}

/* config_yyerror - a syntax error from the parser, as "file:line: message" */
static void config_yyerror(CONFIG_YYLTYPE *loc, void *scanner, struct config_parse *p,
                           const char *msg)
{
    (void)scanner;
    config_parse_error(p, loc->first_line, "%s", msg);
}
