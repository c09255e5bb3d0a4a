"""The SMTP conversation, reply by reply (RFC 5321, and the ESMTP extensions).

Every reply is compared whole: code, enhanced status code (present after
EHLO, absent after HELO and before any greeting, RFC 2034 §4) and text.  The
limits are checked at their edges: the largest accepted input and the
smallest refused one.
"""

import re

import pytest

from conftest import TRACE

EHLO_REPLY = [
    b"250-pigeon.test",
    b"250-PIPELINING",
    b"250-SIZE 36700160",
    b"250-8BITMIME",
    b"250-SMTPUTF8",
    b"250-CHUNKING",
    b"250-BINARYMIME",
    b"250-DSN",
    b"250 ENHANCEDSTATUSCODES",
]
HELP_REPLY = [
    b"214-2.0.0 Commands: HELO EHLO MAIL RCPT DATA BDAT RSET NOOP QUIT VRFY HELP",
    b"214 2.0.0 See RFC 5321; this server is Pigeon",
]
OK = (250, [b"250 2.0.0 Ok"])
MAIL_OK = (250, [b"250 2.1.0 Ok"])
RCPT_OK = (250, [b"250 2.1.5 Ok"])
GO_AHEAD = (354, [b"354 End data with <CR><LF>.<CR><LF>"])
BYE = (221, [b"221 2.0.0 Bye"])
NEED_MAIL = (503, [b"503 5.5.1 Error: need MAIL command"])
UNKNOWN = (500, [b"500 5.5.1 Error: command not recognized"])
TOO_MANY_ERRORS = [b"421 4.7.0 pigeon.test Error: too many errors"]
QUEUED = re.compile(rb"^250 2\.0\.0 Ok: queued as ([0-9A-Z]{14})$")

# The trace pigeond writes before the message (RFC 5321 §4.4).



def ehlo_reply(size):
    """EHLO_REPLY with the SIZE of another message-size limit."""
    return [b"250-SIZE %d" % size if l.startswith(b"250-SIZE") else l for l in EHLO_REPLY]


def ehlo(s, size=36700160):
    assert s.cmd(b"EHLO client.example\r\n") == (250, ehlo_reply(size))


def split_trace(msg):
    """(trace match, the message after the trace)."""
    m = TRACE.match(msg)
    assert m, "no well-formed trace at the start of %r" % msg[:400]
    return m, msg[m.end():]


def queued(reply):
    """The queue id from a '250 2.0.0 Ok: queued as ID' reply."""
    code, lines = reply
    m = QUEUED.match(lines[-1]) if code == 250 and len(lines) == 1 else None
    assert m, reply
    return m.group(1).decode()


def send_message(s, sender, rcpts, data):
    """A whole transaction, each step expected to succeed; returns the queue id."""
    assert s.cmd(b"MAIL FROM:<%s>\r\n" % sender) == MAIL_OK
    for r in rcpts:
        assert s.cmd(b"RCPT TO:<%s>\r\n" % r) == RCPT_OK
    assert s.cmd(b"DATA\r\n") == GO_AHEAD
    return queued(s.cmd(data + b".\r\n"))


def log_says_nothing_queued(d):
    # Session 1 is the fixture's check that pigeond listens; ours is session 2.
    return d.wait_for_log("session 2: disconnect from 127.0.0.1, 0 messages queued")


# ---- greeting, EHLO and HELO ------------------------------------------------------------


def test_greeting_is_220_with_hostname_and_no_enhanced_code(pigeond, sessions):
    s = sessions(pigeond.port)  # the fixture checks the exact greeting
    assert s.cmd(b"QUIT\r\n") == (221, [b"221 Bye"])
    assert s.closed()


def test_ehlo_lists_exactly_the_offered_extensions(pigeond, sessions):
    s = sessions(pigeond.port)
    assert s.cmd(b"EHLO client.example\r\n") == (250, EHLO_REPLY)
    # A second EHLO gets the same list (RFC 5321 §4.1.4).
    assert s.cmd(b"ehlo other.example\r\n") == (250, EHLO_REPLY)


def test_helo_reply_is_one_line_without_extensions(pigeond, sessions):
    s = sessions(pigeond.port)
    assert s.cmd(b"HELO client.example\r\n") == (250, [b"250 pigeon.test"])


def test_enhanced_codes_follow_ehlo_and_not_helo(pigeond, sessions):
    s = sessions(pigeond.port)
    # Before any greeting: plain replies.
    assert s.cmd(b"NOOP\r\n") == (250, [b"250 Ok"])
    assert s.cmd(b"HELO client.example\r\n") == (250, [b"250 pigeon.test"])
    assert s.cmd(b"NOOP\r\n") == (250, [b"250 Ok"])
    assert s.cmd(b"RSET\r\n") == (250, [b"250 Ok"])
    assert s.cmd(b"VRFY someone\r\n") == (
        252, [b"252 Cannot verify users; send mail and delivery will be attempted"])
    assert s.cmd(b"HELP\r\n") == (214, [l[:4] + l[10:] for l in HELP_REPLY])
    assert s.cmd(b"BOGUS\r\n") == (500, [b"500 Error: command not recognized"])
    assert s.cmd(b"RCPT TO:<u@localhost>\r\n") == (503, [b"503 Error: need MAIL command"])
    assert s.cmd(b"MAIL FROM:<a@b.example>\r\n") == (250, [b"250 Ok"])
    assert s.cmd(b"RCPT TO:<u@localhost>\r\n") == (250, [b"250 Ok"])
    assert s.cmd(b"DATA\r\n") == GO_AHEAD
    assert s.cmd(b"Subject: helo\r\n\r\nx\r\n.\r\n")[1][0].startswith(b"250 Ok: queued as ")

    # EHLO switches them on, for every 2xx, 4xx and 5xx reply but not itself.
    ehlo(s)
    assert s.cmd(b"NOOP\r\n") == OK
    assert s.cmd(b"BOGUS\r\n") == UNKNOWN
    assert s.cmd(b"HELP\r\n") == (214, HELP_REPLY)

    # A later HELO switches them off again.
    assert s.cmd(b"HELO client.example\r\n") == (250, [b"250 pigeon.test"])
    assert s.cmd(b"NOOP\r\n") == (250, [b"250 Ok"])
    assert s.cmd(b"QUIT\r\n") == (221, [b"221 Bye"])


def test_ehlo_and_helo_need_a_hostname(pigeond, sessions):
    s = sessions(pigeond.port)
    assert s.cmd(b"EHLO\r\n") == (501, [b"501 Syntax: EHLO hostname"])
    assert s.cmd(b"HELO   \r\n") == (501, [b"501 Syntax: HELO hostname"])
    ehlo(s)
    assert s.cmd(b"EHLO\r\n") == (501, [b"501 5.5.4 Syntax: EHLO hostname"])
    assert s.cmd(b"HELO\r\n") == (501, [b"501 5.5.4 Syntax: HELO hostname"])
    # A refused EHLO keeps the earlier greeting: codes stay on.
    assert s.cmd(b"NOOP\r\n") == OK


# ---- the simple commands --------------------------------------------------------------------

SIMPLE_COMMANDS = [
    (b"NOOP", OK),
    (b"NOOP with an argument", OK),  # RFC 5321 §4.1.1.9
    (b"noop", OK),  # verbs are case-insensitive (§2.4)
    (b"RSET", OK),
    (b"VRFY postmaster", (252, [b"252 2.0.0 Cannot verify users; send mail and delivery will "
                                b"be attempted"])),
    (b"VRFY <u@localhost>", (252, [b"252 2.0.0 Cannot verify users; send mail and delivery "
                                   b"will be attempted"])),
    (b"VRFY", (501, [b"501 5.5.4 Syntax: VRFY address"])),
    (b"HELP", (214, HELP_REPLY)),
    (b"HELP MAIL", (214, HELP_REPLY)),
    (b"EXPN staff", (502, [b"502 5.5.1 Error: command not implemented"])),
    (b"STARTTLS", (502, [b"502 5.5.1 Error: command not implemented"])),
    (b"AUTH PLAIN", (502, [b"502 5.5.1 Error: command not implemented"])),
    (b"ETRN localhost", (502, [b"502 5.5.1 Error: command not implemented"])),
    (b"TURN", (502, [b"502 5.5.1 Error: command not implemented"])),
    (b"XYZZY", UNKNOWN),
    (b"MAILFROM:<a@b.example>", UNKNOWN),
    (b"", UNKNOWN),
    (b"NOOP\x00", (500, [b"500 5.5.2 Error: NUL octet in command"])),
]


@pytest.mark.parametrize("line,expected", SIMPLE_COMMANDS, ids=[c[0].decode(errors="replace")
                                                               or "empty" for c in
                                                               SIMPLE_COMMANDS])
def test_reply_to_command(pigeond, sessions, line, expected):
    s = sessions(pigeond.port)
    ehlo(s)
    assert s.cmd(line + b"\r\n") == expected
    assert s.cmd(b"NOOP\r\n") == OK  # the session goes on


def test_quit_replies_221_and_closes(pigeond, sessions):
    s = sessions(pigeond.port)
    ehlo(s)
    assert s.cmd(b"QUIT\r\n") == BYE
    assert s.closed()


# ---- sequence errors --------------------------------------------------------------------------

SEQUENCES = [
    ("rcpt-before-mail", [b"RCPT TO:<u@localhost>\r\n"], NEED_MAIL),
    ("data-before-mail", [b"DATA\r\n"], NEED_MAIL),
    ("bdat-before-mail", [b"BDAT 3 LAST\r\nabc"], NEED_MAIL),
    ("data-before-rcpt", [b"MAIL FROM:<a@b.example>\r\n", b"DATA\r\n"],
     (503, [b"503 5.5.1 Error: need RCPT command"])),
    ("bdat-before-rcpt", [b"MAIL FROM:<a@b.example>\r\n", b"BDAT 3 LAST\r\nabc"],
     (503, [b"503 5.5.1 Error: need RCPT command"])),
    ("nested-mail", [b"MAIL FROM:<a@b.example>\r\n", b"MAIL FROM:<c@b.example>\r\n"],
     (503, [b"503 5.5.1 Error: nested MAIL command"])),
    # RFC 2920 §3.1: DATA after recipients that all failed.
    ("data-after-failed-rcpts", [b"MAIL FROM:<a@b.example>\r\n", b"RCPT TO:<>\r\n",
                                 b"DATA\r\n"],
     (554, [b"554 5.5.1 Error: no valid recipients"])),
    ("data-after-rset", [b"MAIL FROM:<a@b.example>\r\n", b"RCPT TO:<u@localhost>\r\n",
                         b"RSET\r\n", b"DATA\r\n"], NEED_MAIL),
    # RFC 5321 §4.1.4: EHLO ends the transaction like RSET.
    ("data-after-ehlo", [b"MAIL FROM:<a@b.example>\r\n", b"RCPT TO:<u@localhost>\r\n",
                         b"EHLO client.example\r\n", b"DATA\r\n"], NEED_MAIL),
    ("binarymime-with-data", [b"MAIL FROM:<a@b.example> BODY=BINARYMIME\r\n",
                              b"RCPT TO:<u@localhost>\r\n", b"DATA\r\n"],
     (503, [b"503 5.5.1 Error: BODY=BINARYMIME needs BDAT"])),
    ("data-in-bdat-transaction", [b"MAIL FROM:<a@b.example>\r\n", b"RCPT TO:<u@localhost>\r\n",
                                  b"BDAT 3\r\nabc", b"DATA\r\n"],
     (503, [b"503 5.5.1 Error: DATA in a BDAT transaction"])),
]


@pytest.mark.parametrize("steps,expected", [c[1:] for c in SEQUENCES],
                         ids=[c[0] for c in SEQUENCES])
def test_sequence_error(pigeond, sessions, steps, expected):
    s = sessions(pigeond.port)
    ehlo(s)
    for step in steps[:-1]:
        code, lines = s.cmd(step)
        assert code == 250 or (code == 501 and step == b"RCPT TO:<>\r\n"), (step, lines)
    assert s.cmd(steps[-1]) == expected
    assert s.cmd(b"NOOP\r\n") == OK
    pigeond.stop()
    assert pigeond.messages("u") == []


# ---- syntax errors ---------------------------------------------------------------------------

MAIL_SYNTAX = (501, [b"501 5.5.4 Syntax: MAIL FROM:<address>"])
BAD_SENDER = (501, [b"501 5.1.7 Error: bad sender address syntax"])
SYNTAX = [
    ("mail-to", b"MAIL TO:<a@b.example>", MAIL_SYNTAX),
    ("mail-no-colon", b"MAIL FROM <a@b.example>", MAIL_SYNTAX),
    ("mail-unclosed", b"MAIL FROM:<a@b.example", BAD_SENDER),
    ("mail-empty-label", b"MAIL FROM:<a@b..example>", BAD_SENDER),
    ("mail-no-domain", b"MAIL FROM:<a>", BAD_SENDER),
    ("mail-utf8-without-smtputf8", b"MAIL FROM:<j\xc3\xb6rg@b.example>",
     (553, [b"553 5.6.7 Error: non-ASCII sender address needs SMTPUTF8"])),
    ("mail-size-not-a-number", b"MAIL FROM:<a@b.example> SIZE=abc",
     (501, [b"501 5.5.4 Syntax error in SIZE parameter"])),
    ("mail-size-twice", b"MAIL FROM:<a@b.example> SIZE=1 SIZE=2",
     (501, [b"501 5.5.4 Syntax error in SIZE parameter"])),
    ("mail-body-unknown", b"MAIL FROM:<a@b.example> BODY=9BIT",
     (504, [b"504 5.5.4 BODY type not supported"])),
    ("mail-unknown-parameter", b"MAIL FROM:<a@b.example> XFORWARD=1",
     (555, [b"555 5.5.4 Unsupported MAIL parameter"])),
    ("mail-ret-bad", b"MAIL FROM:<a@b.example> RET=ALL",
     (501, [b"501 5.5.4 RET must be FULL or HDRS"])),
    ("mail-envid-not-xtext", b"MAIL FROM:<a@b.example> ENVID=a+zz",
     (501, [b"501 5.5.4 Syntax error in ENVID parameter"])),
    ("mail-smtputf8-with-value", b"MAIL FROM:<a@b.example> SMTPUTF8=yes",
     (501, [b"501 5.5.4 Syntax error in SMTPUTF8 parameter"])),
    ("rcpt-from", b"RCPT FROM:<u@localhost>", (501, [b"501 5.5.4 Syntax: RCPT TO:<address>"])),
    ("rcpt-null", b"RCPT TO:<>", (501, [b"501 5.1.3 Error: bad recipient address syntax"])),
    ("rcpt-notify-never-and-more", b"RCPT TO:<u@localhost> NOTIFY=NEVER,SUCCESS",
     (501, [b"501 5.5.4 Syntax error in NOTIFY parameter"])),
    ("rcpt-orcpt-no-type", b"RCPT TO:<u@localhost> ORCPT=u@localhost",
     (501, [b"501 5.5.4 Syntax error in ORCPT parameter"])),
    ("rcpt-unknown-parameter", b"RCPT TO:<u@localhost> FOO",
     (555, [b"555 5.5.4 Unsupported RCPT parameter"])),
    ("rcpt-utf8-without-smtputf8", b"RCPT TO:<j\xc3\xb6rg@localhost>",
     (553, [b"553 5.6.7 Error: non-ASCII recipient address needs SMTPUTF8"])),
    ("data-argument", b"DATA now", (501, [b"501 5.5.4 Syntax: DATA"])),
]


@pytest.mark.parametrize("line,expected", [c[1:] for c in SYNTAX], ids=[c[0] for c in SYNTAX])
def test_syntax_error(pigeond, sessions, line, expected):
    s = sessions(pigeond.port)
    ehlo(s)
    if not line.startswith(b"MAIL"):
        assert s.cmd(b"MAIL FROM:<a@b.example>\r\n") == MAIL_OK
    if line.startswith(b"DATA"):
        assert s.cmd(b"RCPT TO:<u@localhost>\r\n") == RCPT_OK
    assert s.cmd(line + b"\r\n") == expected
    assert s.cmd(b"NOOP\r\n") == OK


def test_bdat_without_a_size_closes_the_session(pigeond, sessions):
    # Without a size nobody knows where the chunk ends: nothing after it is a command.
    s = sessions(pigeond.port)
    ehlo(s)
    s.send(b"BDAT LAST\r\nMAIL FROM:<a@b.example>\r\n")
    assert s.reply() == (501, [b"501 5.5.4 Syntax: BDAT size [LAST]; closing connection"])
    assert s.closed()


def test_esmtp_parameters_are_refused_after_helo(pigeond, sessions):
    s = sessions(pigeond.port)
    assert s.cmd(b"HELO client.example\r\n") == (250, [b"250 pigeon.test"])
    assert s.cmd(b"MAIL FROM:<a@b.example> SIZE=10\r\n") == (
        555, [b"555 Unsupported MAIL parameter"])
    assert s.cmd(b"MAIL FROM:<a@b.example> BODY=8BITMIME\r\n") == (
        555, [b"555 Unsupported MAIL parameter"])
    # BDAT is not offered either; its chunk is read and thrown away.
    assert s.cmd(b"MAIL FROM:<a@b.example>\r\n") == (250, [b"250 Ok"])
    assert s.cmd(b"RCPT TO:<u@localhost>\r\n") == (250, [b"250 Ok"])
    assert s.cmd(b"BDAT 6 LAST\r\nNOOP\r\n") == (
        503, [b"503 Error: BDAT without EHLO and CHUNKING"])
    assert s.cmd(b"QUIT\r\n") == (221, [b"221 Bye"])
    pigeond.stop()
    assert pigeond.messages("u") == []


# ---- mail transactions -------------------------------------------------------------------------


def test_mail_without_helo_is_accepted(pigeond, sessions):
    s = sessions(pigeond.port)
    assert s.cmd(b"MAIL FROM:<a@b.example>\r\n") == (250, [b"250 Ok"])
    assert s.cmd(b"RCPT TO:<u@localhost>\r\n") == (250, [b"250 Ok"])
    assert s.cmd(b"DATA\r\n") == GO_AHEAD
    code, lines = s.cmd(b"Subject: no greeting\r\n\r\nhello\r\n.\r\n")
    assert code == 250 and re.match(rb"^250 Ok: queued as [0-9A-Z]{14}$", lines[0]), lines
    msgs = pigeond.wait_for_messages("u", 1)
    assert len(msgs) == 1
    m, rest = split_trace(msgs[0])
    # No HELO name: the Received: line names the client by its address literal.
    assert (m["helo"], m["proto"], m["sender"]) == (b"[127.0.0.1]", b"SMTP", b"a@b.example")
    assert rest == b"Subject: no greeting\r\n\r\nhello\r\n"


def test_legacy_mail_from_without_brackets(pigeond, sessions):
    s = sessions(pigeond.port)
    ehlo(s)
    assert s.cmd(b"MAIL FROM: user@host.example\r\n") == MAIL_OK
    assert s.cmd(b"RCPT TO: u@localhost\r\n") == RCPT_OK
    assert s.cmd(b"DATA\r\n") == GO_AHEAD
    queued(s.cmd(b"Subject: legacy\r\n\r\nx\r\n.\r\n"))
    msgs = pigeond.wait_for_messages("u", 1)
    m, rest = split_trace(msgs[0])
    assert (m["sender"], m["rcpt"]) == (b"user@host.example", b"u@localhost")
    assert rest == b"Subject: legacy\r\n\r\nx\r\n"


def test_null_sender_is_accepted(pigeond, sessions):
    s = sessions(pigeond.port)
    ehlo(s)
    send_message(s, b"", [b"u@localhost"], b"Subject: bounce\r\n\r\nx\r\n")
    m, _ = split_trace(pigeond.wait_for_messages("u", 1)[0])
    assert m["sender"] == b""


def test_two_messages_in_one_session(pigeond, sessions):
    s = sessions(pigeond.port)
    ehlo(s)
    first = send_message(s, b"a@b.example", [b"u@localhost"], b"Subject: one\r\n\r\nfirst\r\n")
    second = send_message(s, b"c@d.example", [b"u@localhost", b"v@localhost"],
                          b"Subject: two\r\n\r\nsecond\r\n")
    assert first != second
    assert s.cmd(b"QUIT\r\n") == BYE
    msgs = pigeond.wait_for_messages("u", 2)
    assert len(msgs) == 2
    by_id = {m["id"].decode(): (m, rest) for m, rest in (split_trace(x) for x in msgs)}
    assert set(by_id) == {first, second}
    m1, rest1 = by_id[first]
    m2, rest2 = by_id[second]
    assert (m1["sender"], m1["rcpt"], rest1) == (b"a@b.example", b"u@localhost",
                                                 b"Subject: one\r\n\r\nfirst\r\n")
    # Two recipients: no "for <...>" clause (RFC 5321 §7.2).
    assert (m2["sender"], m2["rcpt"], rest2) == (b"c@d.example", None,
                                                 b"Subject: two\r\n\r\nsecond\r\n")
    assert [split_trace(m)[1] for m in pigeond.wait_for_messages("v", 1)] == [rest2]


def test_dot_stuffing_is_undone(pigeond, sessions):
    s = sessions(pigeond.port)
    ehlo(s)
    send_message(s, b"a@b.example", [b"u@localhost"],
                 b"Subject: dots\r\n\r\n..\r\n...two\r\n.one\r\nend.\r\n")
    _, rest = split_trace(pigeond.wait_for_messages("u", 1)[0])
    assert rest == b"Subject: dots\r\n\r\n.\r\n..two\r\none\r\nend.\r\n"


def test_dsn_parameters_are_accepted(pigeond, sessions):
    s = sessions(pigeond.port)
    ehlo(s)
    assert s.cmd(b"MAIL FROM:<a@b.example> RET=HDRS ENVID=QQ314159+2Bx\r\n") == MAIL_OK
    assert s.cmd(b"RCPT TO:<u@localhost> NOTIFY=SUCCESS,FAILURE,DELAY "
                 b"ORCPT=rfc822;u+40localhost\r\n") == RCPT_OK
    assert s.cmd(b"RCPT TO:<v@localhost> NOTIFY=NEVER\r\n") == RCPT_OK
    assert s.cmd(b"DATA\r\n") == GO_AHEAD
    queued(s.cmd(b"Subject: dsn\r\n\r\nx\r\n.\r\n"))
    assert split_trace(pigeond.wait_for_messages("u", 1)[0])[1] == b"Subject: dsn\r\n\r\nx\r\n"


def test_8bitmime_content_is_stored_unchanged(pigeond, sessions):
    s = sessions(pigeond.port)
    ehlo(s)
    body = b"Subject: 8bit\r\nContent-Transfer-Encoding: 8bit\r\n\r\n\xe9t\xe9 \xff\x80\x01\r\n"
    assert s.cmd(b"MAIL FROM:<a@b.example> BODY=8BITMIME SIZE=%d\r\n" % len(body)) == MAIL_OK
    assert s.cmd(b"RCPT TO:<u@localhost>\r\n") == RCPT_OK
    assert s.cmd(b"DATA\r\n") == GO_AHEAD
    queued(s.cmd(body + b".\r\n"))
    assert split_trace(pigeond.wait_for_messages("u", 1)[0])[1] == body


def test_smtputf8_addresses_are_accepted_and_delivered(pigeond, sessions):
    s = sessions(pigeond.port)
    ehlo(s)
    body = "Subject: Grüße\r\nFrom: Jörg <jörg@bücher.example>\r\n\r\nÄpfel\r\n".encode()
    assert s.cmd("MAIL FROM:<jörg@bücher.example> SMTPUTF8 BODY=8BITMIME\r\n".encode()) == MAIL_OK
    assert s.cmd("RCPT TO:<zoë@localhost>\r\n".encode()) == RCPT_OK
    assert s.cmd(b"DATA\r\n") == GO_AHEAD
    queued(s.cmd(body + b".\r\n"))
    msgs = pigeond.wait_for_messages("zoë", 1)
    assert len(msgs) == 1
    m, rest = split_trace(msgs[0])
    assert (m["sender"], m["proto"], rest) == ("jörg@bücher.example".encode(), b"UTF8SMTP", body)


# ---- CHUNKING and BINARYMIME (RFC 3030) ---------------------------------------------------------


def test_bdat_chunks_make_one_message(pigeond, sessions):
    s = sessions(pigeond.port)
    ehlo(s)
    assert s.cmd(b"MAIL FROM:<a@b.example>\r\n") == MAIL_OK
    assert s.cmd(b"RCPT TO:<u@localhost>\r\n") == RCPT_OK
    assert s.cmd(b"BDAT 17\r\nSubject: c\r\n\r\nhel") == (
        250, [b"250 2.0.0 Ok: 17 octets received"])
    # A chunk's octets are data even when they look like a dot line or a command.
    chunk = b"lo\r\n.\r\nQUIT\r\n"
    queued(s.cmd(b"BDAT %d LAST\r\n%s" % (len(chunk), chunk)))
    assert s.cmd(b"NOOP\r\n") == OK
    rest = split_trace(pigeond.wait_for_messages("u", 1)[0])[1]
    assert rest == b"Subject: c\r\n\r\nhello\r\n.\r\nQUIT\r\n"


def test_bdat_zero_last_ends_the_message(pigeond, sessions):
    s = sessions(pigeond.port)
    ehlo(s)
    assert s.cmd(b"MAIL FROM:<a@b.example>\r\n") == MAIL_OK
    assert s.cmd(b"RCPT TO:<u@localhost>\r\n") == RCPT_OK
    assert s.cmd(b"BDAT 5\r\nx\r\n\r\n")[0] == 250
    queued(s.cmd(b"BDAT 0 LAST\r\n"))
    assert split_trace(pigeond.wait_for_messages("u", 1)[0])[1] == b"x\r\n\r\n"


def test_binarymime_is_stored_byte_for_byte(pigeond, sessions):
    s = sessions(pigeond.port)
    ehlo(s)
    blob = b"Subject: bin\r\n\r\n" + bytes(range(256)) + b"\n\r\r\n.\r\n\x00"
    assert s.cmd(b"MAIL FROM:<a@b.example> BODY=BINARYMIME\r\n") == MAIL_OK
    assert s.cmd(b"RCPT TO:<u@localhost>\r\n") == RCPT_OK
    queued(s.cmd(b"BDAT %d LAST\r\n%s" % (len(blob), blob)))
    assert split_trace(pigeond.wait_for_messages("u", 1)[0])[1] == blob


# ---- limits --------------------------------------------------------------------------------------


def test_command_line_limit_is_512_octets_with_crlf(pigeond, sessions):
    s = sessions(pigeond.port)
    ehlo(s)
    longest = b"NOOP " + b"x" * 505 + b"\r\n"
    assert len(longest) == 512
    assert s.cmd(longest) == OK
    assert s.cmd(b"NOOP " + b"x" * 506 + b"\r\n") == (
        500, [b"500 5.5.2 Error: line too long (limit 512 octets)"])
    # A much longer line, arriving in pieces, gets one reply at its end.
    s.send(b"NOOP " + b"y" * 3000)
    assert s.silent(0.2)
    s.send(b"z" * 70000)
    s.send(b"\r\nNOOP\r\n")
    assert s.reply() == (500, [b"500 5.5.2 Error: line too long (limit 512 octets)"])
    assert s.reply() == OK
    assert s.cmd(b"QUIT\r\n") == BYE


def test_mail_line_may_be_longer_for_its_parameters_after_ehlo_only(pigeond, sessions):
    # RFC 5321 §4.5.3.1.4: the limit grows by what the extensions' parameters need.
    line = b"MAIL FROM:<a@b.example> RET=HDRS ENVID=" + b"e" * 100 + b" " * 400 + b"\r\n"
    assert len(line) > 512
    s = sessions(pigeond.port)
    ehlo(s)
    assert s.cmd(line) == MAIL_OK
    s2 = sessions(pigeond.port)
    assert s2.cmd(b"HELO client.example\r\n")[0] == 250
    assert s2.cmd(line) == (
        500, [b"500 Error: line too long (limit 512 octets)"])


def test_size_parameter_over_the_limit_is_refused_at_mail(make_pigeond, sessions):
    d = make_pigeond(limits={"message-size": "64K"})
    s = sessions(d.port)
    ehlo(s, 65536)
    too_big = (552, [b"552 5.3.4 Error: message size exceeds the limit of 65536 octets"])
    assert s.cmd(b"MAIL FROM:<a@b.example> SIZE=65537\r\n") == too_big
    assert s.cmd(b"MAIL FROM:<a@b.example> SIZE=99999999999999999999\r\n") == too_big
    assert s.cmd(b"MAIL FROM:<a@b.example> SIZE=65536\r\n") == MAIL_OK


def lines_of(size, head=b"Subject: size\r\n\r\n"):
    """A message of exactly size octets: head, then lines of at most 1000 octets."""
    msg = head
    while len(msg) < size:
        n = min(998, size - len(msg) - 2)
        assert n >= 0
        msg += b"x" * n + b"\r\n"
    assert len(msg) == size
    return msg


def test_message_size_limit(make_pigeond, sessions):
    d = make_pigeond(limits={"message-size": "64K"})
    s = sessions(d.port)
    ehlo(s, 65536)
    fits = lines_of(65536)
    queued_id = send_message(s, b"a@b.example", [b"u@localhost"], fits)
    assert s.cmd(b"MAIL FROM:<a@b.example>\r\n") == MAIL_OK
    assert s.cmd(b"RCPT TO:<u@localhost>\r\n") == RCPT_OK
    assert s.cmd(b"DATA\r\n") == GO_AHEAD
    s.send(lines_of(65537))
    assert s.silent(0.2)  # refused at the end of the data, not before
    assert s.cmd(b".\r\n") == (
        552, [b"552 5.3.4 Error: message size exceeds the limit of 65536 octets"])
    # The transaction is over; the session is not.
    assert s.cmd(b"RCPT TO:<u@localhost>\r\n") == NEED_MAIL
    assert s.cmd(b"QUIT\r\n") == BYE
    msgs = d.wait_for_messages("u", 1)
    assert d.wait_for_log("session 2: disconnect from 127.0.0.1, 1 message queued")
    assert len(d.messages("u")) == 1
    m, rest = split_trace(msgs[0])
    assert (m["id"].decode(), rest) == (queued_id, fits)


def test_message_size_limit_applies_to_bdat(make_pigeond, sessions):
    d = make_pigeond(limits={"message-size": "64K"})
    s = sessions(d.port)
    ehlo(s, 65536)
    assert s.cmd(b"MAIL FROM:<a@b.example>\r\n") == MAIL_OK
    assert s.cmd(b"RCPT TO:<u@localhost>\r\n") == RCPT_OK
    assert s.cmd(b"BDAT 65536\r\n" + lines_of(65536)) == (
        250, [b"250 2.0.0 Ok: 65536 octets received"])
    assert s.cmd(b"BDAT 1 LAST\r\nx") == (
        552, [b"552 5.3.4 Error: message size exceeds the limit of 65536 octets"])
    assert s.cmd(b"QUIT\r\n") == BYE
    assert log_says_nothing_queued(d)
    assert d.messages("u") == []


def test_message_size_counts_the_message_not_the_stuffing_dots(make_pigeond, sessions):
    # RFC 1870 §3: the size excludes the dots doubled for transparency.
    d = make_pigeond(limits={"message-size": "64K"})
    s = sessions(d.port)
    ehlo(s, 65536)
    msg = lines_of(65536, head=b"Subject: dots\r\n\r\n").replace(b"\r\nx", b"\r\n.")
    assert len(msg) == 65536 and msg.count(b"\r\n.") > 60
    assert s.cmd(b"MAIL FROM:<a@b.example> SIZE=65536\r\n") == MAIL_OK
    assert s.cmd(b"RCPT TO:<u@localhost>\r\n") == RCPT_OK
    assert s.cmd(b"DATA\r\n") == GO_AHEAD
    queued(s.cmd(msg.replace(b"\r\n.", b"\r\n..") + b".\r\n"))
    assert split_trace(d.wait_for_messages("u", 1)[0])[1] == msg


def test_text_line_limit_is_1000_octets_with_crlf(pigeond, sessions):
    s = sessions(pigeond.port)
    ehlo(s)
    fits = b"Subject: long\r\n\r\n" + b"y" * 998 + b"\r\n"
    send_message(s, b"a@b.example", [b"u@localhost"], fits)
    assert s.cmd(b"MAIL FROM:<a@b.example>\r\n") == MAIL_OK
    assert s.cmd(b"RCPT TO:<v@localhost>\r\n") == RCPT_OK
    assert s.cmd(b"DATA\r\n") == GO_AHEAD
    assert s.cmd(b"Subject: long\r\n\r\n" + b"y" * 999 + b"\r\n.\r\n") == (
        550, [b"550 5.6.0 Error: message has a line longer than 1000 octets"])
    assert s.cmd(b"QUIT\r\n") == BYE
    assert split_trace(pigeond.wait_for_messages("u", 1)[0])[1] == fits
    assert pigeond.wait_for_log("1 message queued")
    assert pigeond.messages("v") == []


def test_recipient_limit(make_pigeond, sessions):
    d = make_pigeond(limits={"recipients": 100})
    s = sessions(d.port)
    ehlo(s)
    assert s.cmd(b"MAIL FROM:<a@b.example>\r\n") == MAIL_OK
    s.send(b"".join(b"RCPT TO:<r%d@localhost>\r\n" % i for i in range(101)))
    for i in range(100):
        assert s.reply() == RCPT_OK, i
    # RFC 5321 §4.5.3.1.10: 452, so the client sends the rest in another transaction.
    assert s.reply() == (452, [b"452 4.5.3 Error: too many recipients"])
    assert s.cmd(b"DATA\r\n") == GO_AHEAD
    queued(s.cmd(b"Subject: many\r\n\r\nx\r\n.\r\n"))
    assert len(d.wait_for_messages("r99", 1)) == 1
    assert len(d.wait_for_messages("r0", 1)) == 1
    assert d.wait_for_log("nrcpt=100 ")
    assert not (d.dir / "var" / "mail" / "r100").exists()


def test_recipients_past_the_limit_do_not_end_the_session(make_pigeond, sessions):
    # RFC 5321 §4.5.3.1.10: the client is right to send them; it sends the rest
    # later.  The 452s are the server's limit, not the client's errors.
    d = make_pigeond(limits={"recipients": 100})
    s = sessions(d.port)
    ehlo(s)
    assert s.cmd(b"MAIL FROM:<a@b.example>\r\n") == MAIL_OK
    s.send(b"".join(b"RCPT TO:<r%d@localhost>\r\n" % i for i in range(130)) + b"DATA\r\n")
    for i in range(100):
        assert s.reply() == RCPT_OK, i
    for i in range(100, 130):
        assert s.reply() == (452, [b"452 4.5.3 Error: too many recipients"]), i
    assert s.reply() == GO_AHEAD
    queued(s.cmd(b"Subject: many\r\n\r\nx\r\n.\r\n"))
    assert len(d.wait_for_messages("r99", 1)) == 1


def test_twenty_errors_end_the_session_with_421(pigeond, sessions):
    s = sessions(pigeond.port)
    ehlo(s)
    for _ in range(19):
        assert s.cmd(b"BOGUS\r\n") == UNKNOWN
    assert s.cmd(b"NOOP\r\n") == OK  # successes do not reset the count
    assert s.cmd(b"MAIL FROM:<a@b.example>\r\n") == MAIL_OK
    s.send(b"RCPT TO:<>\r\n")
    assert s.reply() == (501, [b"501 5.1.3 Error: bad recipient address syntax"])
    assert s.reply() == (421, TOO_MANY_ERRORS)
    assert s.closed()


def test_error_limit_stops_a_pipelined_batch(pigeond, sessions):
    s = sessions(pigeond.port)
    ehlo(s)
    s.send(b"BOGUS\r\n" * 25 + b"MAIL FROM:<a@b.example>\r\nRCPT TO:<u@localhost>\r\n")
    for _ in range(20):
        assert s.reply() == UNKNOWN
    assert s.reply() == (421, TOO_MANY_ERRORS)
    assert s.closed()  # nothing after the 421 is answered


@pytest.mark.parametrize("request_", [
    b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
    b"POST /form HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 90\r\n\r\n"
    b"HELO x\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<u@localhost>\r\nDATA\r\nx\r\n.\r\n",
    b"CONNECT 127.0.0.1:25 HTTP/1.1\r\n\r\n",
], ids=["GET", "POST-with-smtp-body", "CONNECT"])
def test_http_request_ends_the_session(pigeond, sessions, request_):
    s = sessions(pigeond.port)
    s.send(request_)
    assert s.reply() == (221, [b"221 Error: this is an SMTP server, not HTTP; closing"])
    assert s.closed()
    assert log_says_nothing_queued(pigeond)
    assert pigeond.messages("u") == []


def test_http_request_after_ehlo_ends_the_session(pigeond, sessions):
    s = sessions(pigeond.port)
    ehlo(s)
    assert s.cmd(b"GET / HTTP/1.0\r\n") == (
        221, [b"221 2.7.0 Error: this is an SMTP server, not HTTP; closing"])
    assert s.closed()


# ---- PIPELINING (RFC 2920) -----------------------------------------------------------------------


def test_pipelined_transaction_gets_every_reply_in_order(pigeond, sessions):
    s = sessions(pigeond.port)
    ehlo(s)
    s.send(b"MAIL FROM:<a@b.example>\r\n"
           b"RCPT TO:<u@localhost>\r\n"
           b"RCPT TO:<bad address>\r\n"
           b"RCPT TO:<v@localhost>\r\n"
           b"DATA\r\n")
    assert s.reply() == MAIL_OK
    assert s.reply() == RCPT_OK
    assert s.reply() == (501, [b"501 5.1.3 Error: bad recipient address syntax"])
    assert s.reply() == RCPT_OK
    assert s.reply() == GO_AHEAD
    s.send(b"Subject: piped\r\n\r\nx\r\n.\r\nNOOP\r\nQUIT\r\n")
    queued(s.reply())
    assert s.reply() == OK
    assert s.reply() == BYE
    assert s.closed()
    for user in ("u", "v"):
        msgs = pigeond.wait_for_messages(user, 1)
        assert [split_trace(m)[1] for m in msgs] == [b"Subject: piped\r\n\r\nx\r\n"]


def test_whole_session_in_one_send_with_bdat(pigeond, sessions):
    # RFC 3030 §4.2: BDAT may be pipelined; so two messages travel in one write.
    s = sessions(pigeond.port)
    one, two = b"Subject: 1\r\n\r\none\r\n", b"Subject: 2\r\n\r\ntwo\r\n"
    s.send(b"EHLO client.example\r\n"
           b"MAIL FROM:<a@b.example>\r\nRCPT TO:<u@localhost>\r\nBDAT %d LAST\r\n%s"
           b"MAIL FROM:<c@b.example>\r\nRCPT TO:<u@localhost>\r\nBDAT %d LAST\r\n%s"
           b"QUIT\r\n" % (len(one), one, len(two), two))
    assert s.reply() == (250, EHLO_REPLY)
    ids = []
    for _ in range(2):
        assert s.reply() == MAIL_OK
        assert s.reply() == RCPT_OK
        ids.append(queued(s.reply()))
    assert s.reply() == BYE
    msgs = pigeond.wait_for_messages("u", 2)
    got = {split_trace(m)[0]["id"].decode(): split_trace(m)[1] for m in msgs}
    assert got == {ids[0]: one, ids[1]: two}
