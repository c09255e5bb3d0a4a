"""SMTP smuggling (CVE-2023-51764 and its relatives) and line endings.

RFC 5321 §2.3.8: lines end with CRLF, and only CRLF "." CRLF ends the data
(§4.1.1.4).  A server that also takes LF "." LF, or CR "." CR, as the end
lets a sender hide a second message inside the first: the first server
relays one message, the next one sees two, the second with a forged sender.

pigeond's rule:
  * an untrusted client's data ends only at CRLF "." CRLF; a bare LF or
    bare CR anywhere in it makes the whole message refused (550 5.5.2) at
    that real end, and nothing of it is stored;
  * a trusted client (the loopback in the default configuration) may end
    lines with a bare LF, stored as CRLF, so ".\\n" ends its data;
  * a bare CR is never a line ending, for anybody;
  * in a command line, a bare LF (untrusted) or a bare CR (anybody) gets
    500 5.5.2 for that line, and the line is not executed.

Each payload below is the message data after the 354, up to (not
including) the client's real end of data CRLF "." CRLF.
"""

import re
import socket
import time

import pytest

from conftest import TRACE

UNTRUSTED = "192.0.2.0/24"  # loopback is not in it

OK = (250, [b"250 2.0.0 Ok"])
MAIL_OK = (250, [b"250 2.1.0 Ok"])
RCPT_OK = (250, [b"250 2.1.5 Ok"])
GO_AHEAD = (354, [b"354 End data with <CR><LF>.<CR><LF>"])
BYE = (221, [b"221 2.0.0 Bye"])
UNKNOWN = (500, [b"500 5.5.1 Error: command not recognized"])
NEED_MAIL = (503, [b"503 5.5.1 Error: need MAIL command"])
BARE_LF_DATA = (550, [b"550 5.5.2 Error: bare LF in message data; lines must end with CRLF "
                      b"(RFC 5321 2.3.8)"])
BARE_CR_DATA = (550, [b"550 5.5.2 Error: bare CR in message data; lines must end with CRLF "
                      b"(RFC 5321 2.3.8)"])
BARE_LF_CMD = (500, [b"500 5.5.2 Error: bare LF received; SMTP command lines end with CRLF"])
BARE_CR_CMD = (500, [b"500 5.5.2 Error: bare CR received; SMTP command lines end with CRLF"])
QUEUED = "queued"  # stands for "250 2.0.0 Ok: queued as <id>" in expected reply lists

# The second transaction an attacker hides after a fake end of data.
INJECTED = (b"MAIL FROM:<ceo@victim.example>\r\n"
            b"RCPT TO:<victim@localhost>\r\n"
            b"DATA\r\n"
            b"From: ceo@victim.example\r\n"
            b"Subject: smuggled\r\n"
            b"\r\n"
            b"pay the invoice")

HEAD = b"From: a@b.example\r\nSubject: first\r\n\r\n"

# name, payload, reply from untrusted, (replies, stored content) from trusted
PAYLOADS = [
    ("lf-dot-lf", HEAD + b"hello\n.\nworld",
     BARE_LF_DATA,
     ([QUEUED, UNKNOWN, UNKNOWN], HEAD + b"hello\r\n")),
    ("lf-dot-crlf", HEAD + b"hello\n.\r\nworld",
     BARE_LF_DATA,
     ([QUEUED, UNKNOWN, UNKNOWN], HEAD + b"hello\r\n")),
    ("cr-dot-crlf", HEAD + b"hello\r.\r\nworld",
     BARE_CR_DATA,
     ([QUEUED], HEAD + b"hello\r.\r\nworld\r\n")),
    ("crlf-dot-lf", HEAD + b"hello\r\n.\nworld",
     BARE_LF_DATA,
     ([QUEUED, UNKNOWN, UNKNOWN], HEAD + b"hello\r\n")),
    # ".\r" then text: the dot is stuffing (RFC 5321 §4.5.2), the CR is bare.
    ("crlf-dot-cr-text", HEAD + b"hello\r\n.\rworld",
     BARE_CR_DATA,
     ([QUEUED], HEAD + b"hello\r\n\rworld\r\n")),
    ("cr-dot-cr", HEAD + b"hello\r.\rworld",
     BARE_CR_DATA,
     ([QUEUED], HEAD + b"hello\r.\rworld\r\n")),
    ("lf-dot-cr-lf", HEAD + b"hello\n.\r\r\nworld",
     BARE_LF_DATA,
     ([QUEUED], HEAD + b"hello\r\n\r\r\nworld\r\n")),
    ("bare-cr-in-header", b"From: a@b.example\r\nSubject: x\rBcc: victim@localhost\r\n\r\nhi",
     BARE_CR_DATA,
     ([QUEUED], b"From: a@b.example\r\nSubject: x\rBcc: victim@localhost\r\n\r\nhi\r\n")),
    ("bare-lf-in-header", b"From: a@b.example\nSubject: x\r\n\r\nhi",
     BARE_LF_DATA,
     ([QUEUED], b"From: a@b.example\r\nSubject: x\r\n\r\nhi\r\n")),
    ("message-ends-in-cr", HEAD + b"hello\r",
     BARE_CR_DATA,
     ([QUEUED], HEAD + b"hello\r\r\n")),
]


@pytest.fixture
def sessions(sessions):
    """open(port) -> a session past the greeting and EHLO."""
    return lambda port: sessions(port, ehlo=b"client.example")


def split_trace(msg):
    m = TRACE.match(msg)
    assert m, "no well-formed trace at the start of %r" % msg[:400]
    return m, msg[m.end():]


def stored_files(d):
    """Every file below var/mail: a message anywhere, for anyone."""
    root = d.dir / "var" / "mail"
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


def queued_files(d):
    """Message files in the queue (the journal aside)."""
    spool = d.dir / "var" / "spool"
    return sorted(p for p in spool.rglob("*")
                  if p.is_file() and "journal" not in p.relative_to(spool).parts)


def matches(reply, expected):
    if expected == QUEUED:
        code, lines = reply
        return code == 250 and len(lines) == 1 and \
            re.match(rb"^250 2\.0\.0 Ok: queued as [0-9A-Z]{14}$", lines[0]) is not None
    return reply == expected


def start_data(s):
    assert s.cmd(b"MAIL FROM:<a@b.example>\r\n") == MAIL_OK
    assert s.cmd(b"RCPT TO:<u@localhost>\r\n") == RCPT_OK
    assert s.cmd(b"DATA\r\n") == GO_AHEAD


def assert_nothing_stored(d):
    # Session 1 is the fixture's check that pigeond listens; ours is session 2.
    assert d.wait_for_log("session 2: disconnect from 127.0.0.1, 0 messages queued"), d.log()
    assert stored_files(d) == []
    assert queued_files(d) == []


# ---- message data from an untrusted client -------------------------------------------------------


@pytest.mark.parametrize("payload,refusal", [(p[1], p[2]) for p in PAYLOADS],
                         ids=[p[0] for p in PAYLOADS])
@pytest.mark.parametrize("split", ["whole", "bytewise"])
def test_untrusted_payload_is_refused_at_the_real_end(make_pigeond, sessions, payload, refusal,
                                                      split):
    d = make_pigeond(trusted=UNTRUSTED)
    s = sessions(d.port)
    start_data(s)
    if split == "whole":
        s.send(payload)
    else:
        # One octet per segment: the scanner must keep its state across reads.
        s.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for i in range(len(payload)):
            s.send(payload[i:i + 1])
            time.sleep(0.001)
    assert s.silent(0.2), "a reply before the real end of data"
    s.send(b"\r\n.\r\n")
    assert s.reply() == refusal
    # The transaction is over, the session goes on.
    assert s.cmd(b"RCPT TO:<u@localhost>\r\n") == NEED_MAIL
    assert s.cmd(b"QUIT\r\n") == BYE
    assert s.closed()
    assert_nothing_stored(d)


@pytest.mark.parametrize("fake_end", [b"\n.\n", b"\n.\r\n", b"\r.\r\n", b"\r\n.\n", b"\r.\r",
                                      b"\r\n.\r"], ids=repr)
def test_untrusted_injected_transaction_never_happens(make_pigeond, sessions, fake_end):
    d = make_pigeond(trusted=UNTRUSTED)
    s = sessions(d.port)
    start_data(s)
    s.send(HEAD + b"hello" + fake_end + INJECTED + b"\r\n.\r\n")
    # One reply for the whole thing: the refusal.  No 250 for the hidden MAIL.
    bare_lf = re.search(rb"(?<!\r)\n", fake_end) is not None
    assert s.reply() == (BARE_LF_DATA if bare_lf else BARE_CR_DATA)
    assert s.silent(0.2)
    assert s.cmd(b"QUIT\r\n") == BYE
    assert_nothing_stored(d)
    assert not (d.dir / "var" / "mail" / "victim").exists()
    assert "victim" not in d.log()


def test_untrusted_clean_message_after_a_refused_one_is_delivered(make_pigeond, sessions):
    d = make_pigeond(trusted=UNTRUSTED)
    s = sessions(d.port)
    start_data(s)
    assert s.cmd(HEAD + b"bad\n.\n" + INJECTED + b"\r\n.\r\n") == BARE_LF_DATA
    start_data(s)
    code, lines = s.cmd(HEAD + b"good\r\n.\r\n")
    assert code == 250, lines
    assert s.cmd(b"QUIT\r\n") == BYE
    msgs = d.wait_for_messages("u", 1)
    assert [split_trace(m)[1] for m in msgs] == [HEAD + b"good\r\n"]
    assert d.wait_for_log("disconnect from 127.0.0.1, 1 message queued")
    assert not (d.dir / "var" / "mail" / "victim").exists()


def test_untrusted_bdat_chunk_is_data_not_commands(make_pigeond, sessions):
    # RFC 3030: a chunk has a size; a dot line inside it ends nothing.
    d = make_pigeond(trusted=UNTRUSTED)
    s = sessions(d.port)
    assert s.cmd(b"MAIL FROM:<a@b.example>\r\n") == MAIL_OK
    assert s.cmd(b"RCPT TO:<u@localhost>\r\n") == RCPT_OK
    chunk = HEAD + b"hello\r\n.\r\n" + INJECTED + b"\r\n.\r\n"
    code, lines = s.cmd(b"BDAT %d LAST\r\n" % len(chunk) + chunk)
    assert code == 250, lines
    assert s.cmd(b"QUIT\r\n") == BYE
    msgs = d.wait_for_messages("u", 1)
    assert [split_trace(m)[1] for m in msgs] == [chunk]
    assert d.wait_for_log("disconnect from 127.0.0.1, 1 message queued")
    assert not (d.dir / "var" / "mail" / "victim").exists()


def bdat(chunk, last=False):
    return b"BDAT %d%s\r\n%s" % (len(chunk), b" LAST" if last else b"", chunk)


def octets(n):
    return (250, [b"250 2.0.0 Ok: %d octets received" % n])


BDAT_CASES = [
    ("bare-lf", [(bdat(HEAD + b"hello\n.\nworld\r\n"), BARE_LF_DATA),
                 (bdat(b"", last=True), NEED_MAIL)]),
    ("bare-cr", [(bdat(HEAD + b"hello\r.\rworld\r\n"), BARE_CR_DATA),
                 (bdat(b"", last=True), NEED_MAIL)]),
    ("cr-then-text-in-next-chunk", [(bdat(HEAD + b"hello\r"), octets(len(HEAD) + 6)),
                                    (bdat(b"world\r\n", last=True), BARE_CR_DATA)]),
    ("message-ends-in-cr", [(bdat(HEAD + b"hello\r"), octets(len(HEAD) + 6)),
                            (bdat(b"", last=True), BARE_CR_DATA)]),
]


@pytest.mark.parametrize("steps", [c[1] for c in BDAT_CASES], ids=[c[0] for c in BDAT_CASES])
def test_untrusted_bdat_with_bare_line_endings_is_refused(make_pigeond, sessions, steps):
    # RFC 3030 §2: a chunk that fails ends the transaction.
    d = make_pigeond(trusted=UNTRUSTED)
    s = sessions(d.port)
    assert s.cmd(b"MAIL FROM:<a@b.example>\r\n") == MAIL_OK
    assert s.cmd(b"RCPT TO:<u@localhost>\r\n") == RCPT_OK
    for data, expected in steps:
        assert s.cmd(data) == expected
    assert s.cmd(b"QUIT\r\n") == BYE
    assert_nothing_stored(d)


def test_untrusted_bdat_crlf_split_across_chunks_is_fine(make_pigeond, sessions):
    d = make_pigeond(trusted=UNTRUSTED)
    s = sessions(d.port)
    assert s.cmd(b"MAIL FROM:<a@b.example>\r\n") == MAIL_OK
    assert s.cmd(b"RCPT TO:<u@localhost>\r\n") == RCPT_OK
    assert s.cmd(bdat(HEAD + b"hello\r")) == octets(len(HEAD) + 6)
    assert matches(s.cmd(bdat(b"\n", last=True)), QUEUED)
    assert [split_trace(m)[1] for m in d.wait_for_messages("u", 1)] == [HEAD + b"hello\r\n"]


# ---- message data from a trusted client ----------------------------------------------------------


@pytest.mark.parametrize("payload,expected", [(p[1], p[3]) for p in PAYLOADS],
                         ids=[p[0] for p in PAYLOADS])
def test_trusted_payload(pigeond, sessions, payload, expected):
    replies, content = expected
    s = sessions(pigeond.port)
    start_data(s)
    s.send(payload + b"\r\n.\r\n")
    got = s.replies(len(replies))
    assert all(matches(r, e) for r, e in zip(got, replies)), got
    assert s.silent(0.2)
    assert s.cmd(b"QUIT\r\n") == BYE
    msgs = pigeond.wait_for_messages("u", 1)
    assert [split_trace(m)[1] for m in msgs] == [content]
    assert pigeond.wait_for_log("disconnect from 127.0.0.1, 1 message queued")
    assert len(stored_files(pigeond)) == 1


def test_trusted_bare_lf_ends_data_and_what_follows_is_its_own_next_command(pigeond, sessions):
    # For a trusted client "\n.\n" is a real end of data: the MAIL after it is
    # that client's own second transaction, not a smuggled one.
    s = sessions(pigeond.port)
    start_data(s)
    s.send(HEAD + b"hello\n.\n" + INJECTED + b"\r\n.\r\n")
    got = s.replies(5)
    assert matches(got[0], QUEUED)
    assert got[1:4] == [MAIL_OK, RCPT_OK, GO_AHEAD]
    assert matches(got[4], QUEUED)
    assert [split_trace(m)[1] for m in pigeond.wait_for_messages("u", 1)] == [HEAD + b"hello\r\n"]
    victim = pigeond.wait_for_messages("victim", 1)
    assert [split_trace(m)[1] for m in victim] == [INJECTED.split(b"DATA\r\n")[1] + b"\r\n"]


def test_trusted_lf_only_session_is_stored_with_crlf(pigeond, sessions):
    s = sessions(pigeond.port)
    for line, code in [(b"MAIL FROM:<a@b.example>\n", 250), (b"RCPT TO:<u@localhost>\n", 250),
                       (b"DATA\n", 354)]:
        assert s.cmd(line)[0] == code
    assert matches(s.cmd(b"Subject: lf\n\n..dot\nline\n.\n"), QUEUED)
    assert s.cmd(b"QUIT\n") == BYE
    assert [split_trace(m)[1] for m in pigeond.wait_for_messages("u", 1)] == [
        b"Subject: lf\r\n\r\n.dot\r\nline\r\n"]


# ---- command lines -------------------------------------------------------------------------------


def test_untrusted_bare_lf_in_command_is_refused_and_not_executed(make_pigeond, sessions):
    d = make_pigeond(trusted=UNTRUSTED)
    s = sessions(d.port)
    # The LF ends the line for framing only: the MAIL is refused, the RCPT after it
    # is a command of its own and finds no transaction.
    s.send(b"MAIL FROM:<a@b.example>\nRCPT TO:<u@localhost>\r\n")
    assert s.replies(2) == [BARE_LF_CMD, NEED_MAIL]
    assert s.cmd(b"NOOP\n") == BARE_LF_CMD
    assert s.cmd(b"NOOP\r\n") == OK
    # QUIT is honoured however it ends: ending the session cannot be abused.
    assert s.cmd(b"QUIT\n") == BYE
    assert s.closed()


@pytest.mark.parametrize("trusted", [UNTRUSTED, "127.0.0.0/8"], ids=["untrusted", "trusted"])
def test_bare_cr_in_command_is_refused_and_not_executed(make_pigeond, sessions, trusted):
    d = make_pigeond(trusted=trusted)
    s = sessions(d.port)
    assert s.cmd(b"MAIL FROM:<a@b.example>\rRCPT TO:<u@localhost>\r\n") == BARE_CR_CMD
    assert s.cmd(b"RCPT TO:<u@localhost>\r\n") == NEED_MAIL
    assert s.cmd(b"MAIL FROM:<a@b.example>\r\n") == MAIL_OK
    assert s.cmd(b"RCPT TO:<u@localhost>\rDATA\r\n") == BARE_CR_CMD
    assert s.cmd(b"DATA\r\n") == (503, [b"503 5.5.1 Error: need RCPT command"])
    assert s.cmd(b"NOOP\r\r\n") == BARE_CR_CMD
    assert s.cmd(b"QUIT\r\n") == BYE
    assert_nothing_stored(d)


def test_untrusted_bare_lf_data_command_does_not_start_data(make_pigeond, sessions):
    d = make_pigeond(trusted=UNTRUSTED)
    s = sessions(d.port)
    assert s.cmd(b"MAIL FROM:<a@b.example>\r\n") == MAIL_OK
    assert s.cmd(b"RCPT TO:<u@localhost>\r\n") == RCPT_OK
    assert s.cmd(b"DATA\n") == BARE_LF_CMD
    # The "message" that follows is read as commands, one refusal each.
    s.send(b"Subject: x\r\n\r\n.\r\n")
    assert s.replies(3) == [UNKNOWN, UNKNOWN, UNKNOWN]
    assert s.cmd(b"QUIT\r\n") == BYE
    assert_nothing_stored(d)


def test_trusted_bare_lf_command_is_accepted(pigeond, sessions):
    s = sessions(pigeond.port)
    assert s.cmd(b"MAIL FROM:<a@b.example>\n") == MAIL_OK
    assert s.cmd(b"RCPT TO:<u@localhost>\n") == RCPT_OK
    assert s.cmd(b"RSET\n") == OK
