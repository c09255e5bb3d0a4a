"""Delivery byte for byte: what a client sends is what the mailbox holds.

Every stored message is the trace (a Return-Path: line and a Received:
header, RFC 5321 §4.4) followed by the message exactly as received: CRLF
line endings, dot-unstuffed for DATA (§4.5.2), untouched for BDAT
(RFC 3030).  The tests compare whole files, not excerpts.
"""

import hashlib
import os
import pathlib
import random
import re
import socket
import subprocess
import tempfile
import time

import pytest

from conftest import TRACE, SmtpConn, config_text, free_port

# The trace pigeond writes before the message.  Groups: sender, helo,
# proto, id, rcpt (only with exactly one recipient).
# A Maildir file name: <time>.Q<id>R<n>.<host>,S=<size>
MAILDIR_NAME = re.compile(r"^(?P<time>[0-9]+)\.Q(?P<id>[0-9A-Z]{14})R(?P<rcpt>[0-9]+)"
                          r"\.pigeon\.test,S=(?P<size>[0-9]+)$")


def split_trace(msg):
    """(trace match, the message after the trace); fails if the trace is malformed."""
    m = TRACE.match(msg)
    assert m, "no well-formed trace at the start of %r" % msg[:400]
    return m, msg[m.end():]


def maildir_files(d, user):
    """(name, bytes) of every file in user's new/, by name."""
    new = d.maildir(user) / "new"
    if not new.is_dir():
        return []
    return [(p.name, p.read_bytes()) for p in sorted(new.iterdir())]


def session(port, greeting=b"EHLO client.test"):
    """A connection past the greeting and EHLO (or HELO)."""
    c = SmtpConn(port)
    assert c.reply()[0] == 220
    code, lines = c.cmd(greeting + b"\r\n")
    assert code == 250, lines
    return c


def envelope(c, sender, rcpts, params=b""):
    """MAIL FROM and RCPT TOs, each expected to get 250."""
    code, lines = c.cmd(b"MAIL FROM:<" + sender + b">" + params + b"\r\n")
    assert code == 250, lines
    for r in rcpts:
        code, lines = c.cmd(b"RCPT TO:<" + r + b">\r\n")
        assert code == 250, (r, lines)


def queued_id(code, lines):
    """The queue id of a '250 2.0.0 Ok: queued as ID' reply (no 2.0.0 after HELO)."""
    m = re.fullmatch(rb"250 (?:2\.0\.0 )?Ok: queued as ([0-9A-Z]{14})", lines[-1])
    assert code == 250 and len(lines) == 1 and m, lines
    return m[1].decode()


def send_data(c, wire):
    """DATA, then wire (already dot-stuffed, with the end mark); the final reply."""
    code, lines = c.cmd(b"DATA\r\n")
    assert code == 354, lines
    c.send(wire)
    return c.reply()


def dot_stuff(content):
    """content (CRLF lines) as DATA sends it: leading dots doubled, end mark added."""
    assert content == b"" or content.endswith(b"\r\n")
    lines = content.split(b"\r\n")[:-1] if content else []
    out = b"".join((b"." + l if l.startswith(b".") else l) + b"\r\n" for l in lines)
    return out + b".\r\n"


def deliver_one(d, content, sender=b"sender@example.org", rcpt=b"bob@localhost", params=b""):
    """Send content with DATA in a session of its own; (queue id, stored file bytes)."""
    with session(d.port) as c:
        envelope(c, sender, [rcpt], params)
        qid = queued_id(*send_data(c, dot_stuff(content)))
        assert c.cmd(b"QUIT\r\n")[0] == 221
    user = rcpt.split(b"@")[0].decode()
    msgs = d.wait_for_messages(user, 1)
    assert len(msgs) == 1, d.log()
    return qid, msgs[0]


def check_stored(stored, content, qid, sender=b"sender@example.org", rcpt=b"bob@localhost",
                 proto=b"ESMTP"):
    """The stored file is the expected trace followed by exactly content."""
    m, rest = split_trace(stored)
    assert m["sender"] == sender
    assert m["helo"] == b"client.test"
    assert m["proto"] == proto
    assert m["id"] == qid.encode()
    assert m["rcpt"] == rcpt
    assert rest == content


# ---- DATA: dot-unstuffing and line lengths --------------------------------------------

def test_leading_dots_are_unstuffed_once_and_everything_else_kept(pigeond):
    wire = (b"Subject: dots\r\n"
            b"\r\n"
            b"..leading dot\r\n"
            b"...two leading dots\r\n"
            b"..\r\n"
            b"...\r\n"
            b".single dot was not doubled\r\n"
            b". \r\n"
            b"middle . dot and trailing dot.\r\n"
            b" .space first\r\n"
            b".\r\n")
    content = (b"Subject: dots\r\n"
               b"\r\n"
               b".leading dot\r\n"
               b"..two leading dots\r\n"
               b".\r\n"
               b"..\r\n"
               b"single dot was not doubled\r\n"  # RFC 5321 §4.5.2: the first dot goes
               b" \r\n"
               b"middle . dot and trailing dot.\r\n"
               b" .space first\r\n")
    with session(pigeond.port) as c:
        envelope(c, b"sender@example.org", [b"bob@localhost"])
        qid = queued_id(*send_data(c, wire))
    msgs = pigeond.wait_for_messages("bob", 1)
    assert len(msgs) == 1, pigeond.log()
    check_stored(msgs[0], content, qid)


def test_end_of_data_mark_split_at_every_position_is_still_found(pigeond):
    content = b"Subject: split\r\n\r\nbody\r\n"
    wire = dot_stuff(content)
    mark = len(wire) - len(b"\r\n.\r\n")
    ids = []
    with session(pigeond.port) as c:
        for cut in range(mark, len(wire)):
            envelope(c, b"sender@example.org", [b"bob@localhost"])
            assert c.cmd(b"DATA\r\n")[0] == 354
            c.send(wire[:cut])
            time.sleep(0.05)  # two reads on the server side
            c.send(wire[cut:])
            ids.append(queued_id(*c.reply()))
    msgs = pigeond.wait_for_messages("bob", len(ids))
    assert len(msgs) == len(ids), pigeond.log()
    for qid, stored in zip(ids, msgs):  # names sort by arrival, then by id
        check_stored(stored, content, qid)


def test_message_sent_one_octet_at_a_time_is_stored_exactly(pigeond):
    content = b"Subject: trickle\r\n\r\n..dot\r\nline\r\n.\r\n"[:-3] + b"x\r\n"
    wire = dot_stuff(content)
    with session(pigeond.port) as c:
        envelope(c, b"sender@example.org", [b"bob@localhost"])
        assert c.cmd(b"DATA\r\n")[0] == 354
        for i in range(len(wire)):
            c.send(wire[i:i + 1])
            if i % 7 == 0:
                time.sleep(0.002)
        qid = queued_id(*c.reply())
    msgs = pigeond.wait_for_messages("bob", 1)
    assert len(msgs) == 1, pigeond.log()
    check_stored(msgs[0], content, qid)


def test_line_of_998_octets_is_accepted_and_stored_intact(pigeond):
    long_line = bytes(random.Random(1).choice(b"abcdefghij ") for _ in range(998))
    dotted_line = b"." + b"d" * 997  # 998 octets stored, 999 on the wire after stuffing
    content = b"Subject: long\r\n\r\n" + long_line + b"\r\n" + dotted_line + b"\r\nend\r\n"
    qid, stored = deliver_one(pigeond, content)
    check_stored(stored, content, qid)
    assert long_line + b"\r\n" in stored and dotted_line + b"\r\n" in stored


def test_line_of_998_octets_split_across_bdat_chunks_is_accepted(pigeond):
    content = b"Subject: long\r\n\r\n" + b"w" * 998 + b"\r\nend\r\n"
    with session(pigeond.port) as c:
        envelope(c, b"sender@example.org", [b"bob@localhost"])
        assert c.cmd(b"BDAT 500\r\n" + content[:500])[0] == 250
        qid = queued_id(*c.cmd(b"BDAT %d LAST\r\n" % (len(content) - 500) + content[500:]))
    msgs = pigeond.wait_for_messages("bob", 1)
    assert len(msgs) == 1, pigeond.log()
    check_stored(msgs[0], content, qid)


@pytest.mark.parametrize("how", ["DATA", "BDAT", "BDAT split"])
def test_line_of_999_octets_is_refused_550_5_6_0_and_the_session_goes_on(pigeond, how):
    content = b"Subject: too long\r\n\r\n" + b"y" * 999 + b"\r\nend\r\n"
    with session(pigeond.port) as c:
        envelope(c, b"sender@example.org", [b"bob@localhost"])
        if how == "DATA":
            code, lines = send_data(c, dot_stuff(content))
        elif how == "BDAT":
            code, lines = c.cmd(b"BDAT %d LAST\r\n" % len(content) + content)
        else:  # the line's first half in one chunk, its end in the next
            assert c.cmd(b"BDAT 500\r\n" + content[:500])[0] == 250
            code, lines = c.cmd(b"BDAT %d\r\n" % (len(content) - 500) + content[500:])
        assert code == 550 and lines[-1].startswith(b"550 5.6.0 "), lines
        # The transaction is over; the next one is accepted and is the only delivery.
        assert c.cmd(b"RCPT TO:<bob@localhost>\r\n")[0] == 503
        good = b"Subject: fine\r\n\r\nshort\r\n"
        envelope(c, b"sender@example.org", [b"bob@localhost"])
        qid = queued_id(*send_data(c, dot_stuff(good)))
    msgs = pigeond.wait_for_messages("bob", 1)
    time.sleep(0.2)
    assert len(pigeond.messages("bob")) == 1
    check_stored(msgs[0], good, qid)


# ---- 8-bit, UTF-8, binary ----------------------------------------------------------------

def test_8bit_body_declared_with_body_8bitmime_is_stored_untouched(pigeond):
    high = bytes(range(0x80, 0x100))
    controls = bytes(b for b in range(1, 0x20) if b not in (0x0A, 0x0D)) + b"\x7f"
    content = (b"Subject: 8bit\r\nContent-Type: text/plain; charset=iso-8859-1\r\n"
               b"Content-Transfer-Encoding: 8bit\r\n\r\n"
               b"Gr\xfc\xdfe aus K\xf6ln\r\n" + high + b"\r\n" + controls + b"\r\n")
    qid, stored = deliver_one(pigeond, content, params=b" BODY=8BITMIME")
    check_stored(stored, content, qid)


def test_smtputf8_addresses_and_headers_are_delivered_to_a_utf8_mailbox(pigeond):
    sender = "jürgen@bücher.example".encode()
    rcpt = "ñandú@localhost".encode()
    content = ("From: Jürgen <jürgen@bücher.example>\r\n"
               "To: Ñandú <ñandú@localhost>\r\n"
               "Subject: Grüße aus Köln 🐦\r\n"
               "\r\n"
               "Здравствуйте, 世界\r\n").encode()
    with session(pigeond.port) as c:
        envelope(c, sender, [rcpt], b" SMTPUTF8 BODY=8BITMIME")
        qid = queued_id(*send_data(c, dot_stuff(content)))
    mailroot = pigeond.dir / "var" / "mail"
    msgs = pigeond.wait_for_messages("ñandú", 1)
    assert len(msgs) == 1, pigeond.log()
    assert "ñandú" in os.listdir(mailroot)
    check_stored(msgs[0], content, qid, sender=sender, rcpt=rcpt, proto=b"UTF8SMTP")


def test_utf8_addresses_without_smtputf8_are_refused_553_5_6_7(pigeond):
    with session(pigeond.port) as c:
        code, lines = c.cmd("MAIL FROM:<jürgen@example.org>\r\n".encode())
        assert code == 553 and lines[-1].startswith(b"553 5.6.7 "), lines
        assert c.cmd(b"MAIL FROM:<ascii@example.org>\r\n")[0] == 250
        code, lines = c.cmd("RCPT TO:<ñandú@localhost>\r\n".encode())
        assert code == 553 and lines[-1].startswith(b"553 5.6.7 "), lines
    assert not (pigeond.dir / "var" / "mail" / "ñandú").exists()


def test_bdat_chunks_including_one_ending_between_cr_and_lf_are_joined_exactly(pigeond):
    chunks = [b"Subject: chunks\r",
              b"\n\r\n..dots are not stuffing in BDAT\r\n.\r\nline two\r",
              b"\n",
              b"line three\r\n"]
    content = b"".join(chunks)
    with session(pigeond.port) as c:
        envelope(c, b"sender@example.org", [b"bob@localhost"])
        # The first command and its octets in separate writes, the rest pipelined.
        c.send(b"BDAT %d\r\n" % len(chunks[0]))
        time.sleep(0.05)
        c.send(chunks[0])
        code, lines = c.reply()
        assert lines == [b"250 2.0.0 Ok: %d octets received" % len(chunks[0])]
        for chunk in chunks[1:-1]:
            code, lines = c.cmd(b"BDAT %d\r\n" % len(chunk) + chunk)
            assert lines == [b"250 2.0.0 Ok: %d octets received" % len(chunk)]
        qid = queued_id(*c.cmd(b"BDAT %d LAST\r\n" % len(chunks[-1]) + chunks[-1]))
    msgs = pigeond.wait_for_messages("bob", 1)
    assert len(msgs) == 1, pigeond.log()
    check_stored(msgs[0], content, qid)


def test_binarymime_content_is_stored_untouched(pigeond):
    rng = random.Random(7)
    content = (bytes(range(256)) * 3 + b"bare\nLF\rbare CR\0NUL\r\n.\r\n..\n.\n"
               + bytes(rng.randrange(256) for _ in range(100000)))
    cuts = [0, 300, 301, 70000, len(content)]
    with session(pigeond.port) as c:
        envelope(c, b"sender@example.org", [b"bob@localhost"], b" BODY=BINARYMIME")
        code, lines = c.cmd(b"DATA\r\n")  # RFC 3030 §3: binary travels in BDAT only
        assert code == 503 and lines[-1].startswith(b"503 5.5.1 "), lines
        for a, b in zip(cuts, cuts[1:]):
            code, lines = c.cmd(b"BDAT %d\r\n" % (b - a) + content[a:b])
            assert code == 250 and b"octets received" in lines[-1], lines
        qid = queued_id(*c.cmd(b"BDAT 0 LAST\r\n"))
    msgs = pigeond.wait_for_messages("bob", 1)
    assert len(msgs) == 1, pigeond.log()
    check_stored(msgs[0], content, qid)


@pytest.mark.parametrize("how", ["DATA", "BDAT"])
def test_message_of_zero_octets_is_stored_as_the_trace_alone(pigeond, how):
    with session(pigeond.port) as c:
        envelope(c, b"sender@example.org", [b"bob@localhost"])
        if how == "DATA":
            qid = queued_id(*send_data(c, b".\r\n"))
        else:
            qid = queued_id(*c.cmd(b"BDAT 0 LAST\r\n"))
    files = []
    deadline = time.time() + 10
    while not files and time.time() < deadline:
        files = maildir_files(pigeond, "bob")
        time.sleep(0.02)
    assert len(files) == 1, pigeond.log()
    name, stored = files[0]
    check_stored(stored, b"", qid)
    m = MAILDIR_NAME.match(name)
    assert m and m["id"] == qid and int(m["size"]) == len(stored), name


@pytest.mark.parametrize("how", ["DATA", "BDAT"])
def test_message_of_5_mb_is_stored_intact(pigeond, how):
    rng = random.Random(5)
    alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/. "
    text = rng.randbytes(5 * 1024 * 1024).translate(bytes(alphabet[i % len(alphabet)]
                                                          for i in range(256)))
    lines = [b"Subject: big", b""]
    pos = 0
    while pos < len(text):
        n = rng.randrange(0, 200)
        line = text[pos:pos + n]
        pos += n
        lines.append(b"." + line if rng.random() < 0.05 else line)  # some to be stuffed
    content = b"\r\n".join(lines) + b"\r\n"
    with session(pigeond.port) as c:
        envelope(c, b"sender@example.org", [b"bob@localhost"], b" SIZE=%d" % len(content))
        if how == "DATA":
            qid = queued_id(*send_data(c, dot_stuff(content)))
        else:
            c.send(b"BDAT %d LAST\r\n" % len(content))
            c.send(content)
            qid = queued_id(*c.reply())
    files = []
    deadline = time.time() + 20
    while not files and time.time() < deadline:
        files = maildir_files(pigeond, "bob")
        time.sleep(0.05)
    assert len(files) == 1, pigeond.log()
    name, stored = files[0]
    m, rest = split_trace(stored)
    assert m["id"] == qid.encode()
    assert len(rest) == len(content)
    assert hashlib.sha256(rest).hexdigest() == hashlib.sha256(content).hexdigest()
    assert MAILDIR_NAME.match(name)["size"] == str(len(stored))


@pytest.mark.parametrize("how", ["DATA", "BDAT"])
def test_message_of_exactly_the_size_limit_is_accepted_and_one_octet_more_refused(make_pigeond,
                                                                                  how):
    d = make_pigeond(limits={"message-size": "64K"})
    limit = 64 * 1024

    def content(size):  # lines of 100 octets, a dot at the start of each (stuffed for DATA)
        line = b"." + b"s" * 97 + b"\r\n"
        return (line * size)[:size - 2] + b"\r\n"

    def send(c, data):
        if how == "DATA":
            return send_data(c, dot_stuff(data))
        return c.cmd(b"BDAT %d LAST\r\n" % len(data) + data)

    with session(d.port) as c:
        envelope(c, b"sender@example.org", [b"bob@localhost"])
        code, lines = send(c, content(limit + 1))
        assert code == 552 and lines[-1].startswith(b"552 5.3.4 "), lines
        envelope(c, b"sender@example.org", [b"bob@localhost"])
        qid = queued_id(*send(c, content(limit)))
    msgs = d.wait_for_messages("bob", 1)
    time.sleep(0.2)
    assert len(d.messages("bob")) == 1, d.log()
    check_stored(msgs[0], content(limit), qid)


def test_maildir_on_another_filesystem_gets_an_exact_copy(make_pigeond):
    shm = pathlib.Path("/dev/shm")
    if not shm.is_dir() or shm.stat().st_dev == pathlib.Path(tempfile.gettempdir()).stat().st_dev:
        pytest.skip("no second filesystem at /dev/shm")
    root = pathlib.Path(tempfile.mkdtemp(prefix="pigeon-test-", dir=shm))
    try:
        os.chmod(root, 0o755)
        # pigeond creates <root>/mail for its user; root itself belongs to root.
        d = make_pigeond(local_action='action "local" maildir "%s/mail/%%{user}/Maildir"' % root)
        rng = random.Random(3)
        content = (b"Subject: across filesystems\r\n\r\n"
                   + b"".join(rng.randbytes(60).hex().encode() + b"\r\n" for _ in range(3000)))
        with session(d.port) as c:
            envelope(c, b"sender@example.org", [b"bob@localhost", b"carol@localhost"])
            qid = queued_id(*send_data(c, dot_stuff(content)))
        for user in ("bob", "carol"):
            new = root / "mail" / user / "Maildir" / "new"
            deadline = time.time() + 10
            while not (new.is_dir() and any(new.iterdir())) and time.time() < deadline:
                time.sleep(0.02)
            files = sorted(new.iterdir())
            assert len(files) == 1, d.log()
            check_stored(files[0].read_bytes(), content, qid, rcpt=None)
            assert list((root / "mail" / user / "Maildir" / "tmp").iterdir()) == []
        assert d.stop() == 0
    finally:
        subprocess.run(["rm", "-rf", str(root)], check=False)


# ---- messages that are not finished ---------------------------------------------------

def test_bdat_transaction_abandoned_with_rset_is_not_delivered(pigeond):
    with session(pigeond.port) as c:
        envelope(c, b"sender@example.org", [b"carol@localhost"])
        for chunk in (b"Subject: abandoned\r\n\r\n", (b"a" * 98 + b"\r\n") * 1000):
            assert c.cmd(b"BDAT %d\r\n" % len(chunk) + chunk)[0] == 250
        assert c.cmd(b"RSET\r\n")[0] == 250
        code, lines = c.cmd(b"BDAT 5 LAST\r\nlater")
        assert code == 503 and lines[-1].startswith(b"503 5.5.1 "), lines
        content = b"Subject: kept\r\n\r\nthis one\r\n"
        envelope(c, b"sender@example.org", [b"bob@localhost"])
        qid = queued_id(*c.cmd(b"BDAT %d LAST\r\n" % len(content) + content))
    msgs = pigeond.wait_for_messages("bob", 1)
    assert len(msgs) == 1, pigeond.log()
    check_stored(msgs[0], content, qid)
    time.sleep(0.2)
    assert pigeond.messages("carol") == []
    assert list((pigeond.dir / "var" / "spool" / "msg").iterdir()) == []


@pytest.mark.parametrize("where", ["inside DATA", "inside a BDAT chunk", "between BDAT chunks"])
def test_client_that_disconnects_mid_message_leaves_nothing_behind(pigeond, where):
    big = (b"b" * 98 + b"\r\n") * 1500  # more than two queue chunks: a content file exists
    c = session(pigeond.port)
    envelope(c, b"sender@example.org", [b"carol@localhost"])
    if where == "inside DATA":
        assert c.cmd(b"DATA\r\n")[0] == 354
        c.send(b"Subject: cut off\r\n\r\n" + big)
    elif where == "inside a BDAT chunk":
        c.send(b"BDAT %d LAST\r\n" % (2 * len(big)) + big)
    else:
        assert c.cmd(b"BDAT %d\r\n" % len(big) + big)[0] == 250
    msgdir = pigeond.dir / "var" / "spool" / "msg"
    deadline = time.time() + 5
    while not any(msgdir.iterdir()) and time.time() < deadline:
        time.sleep(0.02)
    assert any(msgdir.iterdir())  # the message is being stored
    c.sock.shutdown(socket.SHUT_RDWR)
    c.file.close()
    c.close()

    assert pigeond.wait_for_log("session 2: disconnect from 127.0.0.1, 0 messages queued",
                                timeout=2), pigeond.log()
    # The queue thread removes the unfinished content file just after.
    deadline = time.time() + 2
    while any(msgdir.iterdir()) and time.time() < deadline:
        time.sleep(0.02)
    assert list(msgdir.iterdir()) == []
    assert pigeond.messages("carol") == []


# ---- the trace headers and queue ids -------------------------------------------------

def test_null_sender_gets_an_empty_return_path(pigeond):
    content = b"Subject: bounce\r\n\r\nundeliverable\r\n"
    qid, stored = deliver_one(pigeond, content, sender=b"")
    assert stored.startswith(b"Return-Path: <>\r\nReceived: ")
    check_stored(stored, content, qid, sender=b"")


def test_received_names_the_recipient_only_when_there_is_exactly_one(pigeond):
    content = b"Subject: for\r\n\r\nwho\r\n"
    with session(pigeond.port) as c:
        # One accepted recipient (a refused one does not count): "for <bob@localhost>".
        envelope(c, b"sender@example.org", [b"bob@localhost"])
        assert c.cmd(b"RCPT TO:<@>\r\n")[0] == 501
        one = queued_id(*send_data(c, dot_stuff(content)))
        # Two recipients: no "for" clause, which would tell each about the other.
        envelope(c, b"sender@example.org", [b"bob@localhost", b"carol@localhost"])
        two = queued_id(*send_data(c, dot_stuff(content)))
    bob = pigeond.wait_for_messages("bob", 2)
    carol = pigeond.wait_for_messages("carol", 1)
    assert len(bob) == 2 and len(carol) == 1, pigeond.log()
    check_stored(bob[0], content, one, rcpt=b"bob@localhost")
    check_stored(bob[1], content, two, rcpt=None)
    assert b"for <" not in bob[1]
    assert carol[0] == bob[1]


def test_received_says_smtp_after_helo_and_esmtp_after_ehlo(pigeond):
    content = b"Subject: proto\r\n\r\nx\r\n"
    with session(pigeond.port, b"HELO old.client") as c:
        envelope(c, b"sender@example.org", [b"bob@localhost"])
        qid = queued_id(*send_data(c, dot_stuff(content)))
    msgs = pigeond.wait_for_messages("bob", 1)
    assert len(msgs) == 1, pigeond.log()
    m, rest = split_trace(msgs[0])
    assert (m["helo"], m["proto"], m["id"], rest) == (b"old.client", b"SMTP", qid.encode(),
                                                      content)


def test_received_names_an_ipv6_client_without_helo_by_its_address_literal(make_pigeond):
    d = make_pigeond(listen=["127.0.0.1", "::1"])
    content = b"Subject: v6\r\n\r\nno greeting at all\r\n"
    with SmtpConn(d.port, host="::1") as c:
        assert c.reply()[0] == 220
        envelope(c, b"sender@example.org", [b"bob@localhost"])
        qid = queued_id(*send_data(c, dot_stuff(content)))
    msgs = d.wait_for_messages("bob", 1)
    assert len(msgs) == 1, d.log()
    assert msgs[0].startswith(b"Return-Path: <sender@example.org>\r\n"
                              b"Received: from [IPv6:::1] ([IPv6:::1])\r\n"
                              b"\tby pigeon.test (Pigeon) with SMTP id %s\r\n"
                              b"\tfor <bob@localhost>;\r\n\t" % qid.encode())
    assert msgs[0].endswith(b"\r\n" + content) and msgs[0].count(b"\r\n\t") == 3


def test_queue_ids_are_unique_and_increasing_across_sessions_and_restarts(pigeond):
    ids = []

    def send_batch(n):
        with session(pigeond.port) as c:
            for _ in range(n):
                envelope(c, b"sender@example.org", [b"bob@localhost"])
                ids.append(queued_id(*send_data(c, dot_stuff(b"Subject: %d\r\n" % len(ids)))))

    for _ in range(3):
        send_batch(10)
    assert pigeond.stop() == 0
    pigeond.start()
    send_batch(5)
    assert len(set(ids)) == len(ids) == 35
    assert ids == sorted(ids), ids
    files = []
    deadline = time.time() + 10
    while len(files) < 35 and time.time() < deadline:
        files = maildir_files(pigeond, "bob")
        time.sleep(0.02)
    assert len(files) == 35, pigeond.log()
    by_id = {}
    for name, stored in files:
        m = MAILDIR_NAME.match(name)
        assert m and int(m["size"]) == len(stored) and m["rcpt"] == "0", name
        assert split_trace(stored)[0]["id"] == m["id"].encode()
        by_id[m["id"]] = stored
    assert sorted(by_id) == ids
    for n, qid in enumerate(ids):
        assert split_trace(by_id[qid])[1] == b"Subject: %d\r\n" % n


# ---- aliases, users and postmaster ------------------------------------------------------

ALIASES = """\
# aliases(5)
team: alice, bob
all: team, carol,
     alice
postmaster: alice
broken: alice, nosuchuser
"""


@pytest.fixture
def aliased(make_pigeond, workdir):
    """pigeond with users alice, bob, carol and the ALIASES file."""
    (workdir / "aliases").write_text(ALIASES)
    port = free_port()
    action = ('table users { alice, bob, carol }\n'
              'table aliases file "aliases"\n'
              'action "local" maildir "./var/mail/%{user}/Maildir" users <users> '
              'aliases <aliases>')
    return make_pigeond(port=port, text=config_text(port, local_action=action))


def test_unknown_user_is_refused_550_5_1_1(aliased):
    content = b"Subject: known\r\n\r\nhello\r\n"
    with session(aliased.port) as c:
        assert c.cmd(b"MAIL FROM:<sender@example.org>\r\n")[0] == 250
        code, lines = c.cmd(b"RCPT TO:<nobody@localhost>\r\n")
        assert code == 550 and lines[-1].startswith(b"550 5.1.1 <nobody@localhost>: "), lines
        assert c.cmd(b"RCPT TO:<carol@localhost>\r\n")[0] == 250
        qid = queued_id(*send_data(c, dot_stuff(content)))
    msgs = aliased.wait_for_messages("carol", 1)
    assert len(msgs) == 1, aliased.log()
    check_stored(msgs[0], content, qid, rcpt=b"carol@localhost")
    assert not (aliased.dir / "var" / "mail" / "nobody").exists()


def test_alias_naming_an_unknown_user_is_a_temporary_failure(aliased):
    with session(aliased.port) as c:
        assert c.cmd(b"MAIL FROM:<sender@example.org>\r\n")[0] == 250
        code, lines = c.cmd(b"RCPT TO:<broken@localhost>\r\n")
        # The administrator's mistake, not the sender's: 451, retried later.
        assert code == 451 and lines[-1].startswith(b"451 4.3.0 <broken@localhost>: "), lines


def test_alias_fans_out_to_each_mailbox(aliased):
    content = b"Subject: to the team\r\n\r\nhello team\r\n"
    with session(aliased.port) as c:
        envelope(c, b"sender@example.org", [b"team@localhost"])
        qid = queued_id(*send_data(c, dot_stuff(content)))
    for user in ("alice", "bob"):
        msgs = aliased.wait_for_messages(user, 1)
        assert len(msgs) == 1, aliased.log()
        check_stored(msgs[0], content, qid, rcpt=b"team@localhost")
    names = [maildir_files(aliased, u)[0][0] for u in ("alice", "bob")]
    assert sorted(MAILDIR_NAME.match(n)["rcpt"] for n in names) == ["0", "1"]
    assert aliased.messages("carol") == []
    assert not (aliased.dir / "var" / "mail" / "team").exists()
    assert aliased.wait_for_log("orig_to=<team@localhost>")


def test_a_mailbox_reached_several_ways_gets_the_message_once(aliased):
    content = b"Subject: everyone\r\n\r\nhello all\r\n"
    with session(aliased.port) as c:
        # alice is in <team>, in <all> directly, named herself, and in another case.
        envelope(c, b"sender@example.org",
                 [b"all@localhost", b"alice@localhost", b"team@localhost", b"ALICE@LocalHost"])
        qid = queued_id(*send_data(c, dot_stuff(content)))
    for user in ("alice", "bob", "carol"):
        msgs = aliased.wait_for_messages(user, 1)
        assert len(msgs) == 1, aliased.log()
        check_stored(msgs[0], content, qid, rcpt=None)
    time.sleep(0.3)  # a second copy would have arrived by now
    assert [len(aliased.messages(u)) for u in ("alice", "bob", "carol")] == [1, 1, 1]


def test_postmaster_alias_is_delivered_through_the_alias(aliased):
    content = b"Subject: abuse report\r\n\r\nfyi\r\n"
    with session(aliased.port) as c:
        envelope(c, b"sender@example.org", [b"postmaster"])
        qid = queued_id(*send_data(c, dot_stuff(content)))
    msgs = aliased.wait_for_messages("alice", 1)
    assert len(msgs) == 1, aliased.log()
    check_stored(msgs[0], content, qid, rcpt=b"postmaster")
    assert not (aliased.dir / "var" / "mail" / "postmaster").exists()


def test_postmaster_without_domain_is_accepted_and_delivered(pigeond):
    content = b"Subject: to postmaster\r\n\r\nhello\r\n"
    with session(pigeond.port) as c:
        envelope(c, b"sender@example.org", [b"Postmaster"])
        qid = queued_id(*send_data(c, dot_stuff(content)))
        envelope(c, b"sender@example.org", [b"POSTMASTER@localhost"])
        qid2 = queued_id(*send_data(c, dot_stuff(content)))
    msgs = pigeond.wait_for_messages("postmaster", 2)
    assert len(msgs) == 2, pigeond.log()
    m, rest = split_trace(msgs[0])
    assert (m["id"], rest) == (qid.encode(), content)
    m, rest = split_trace(msgs[1])
    assert (m["id"], rest) == (qid2.encode(), content)


def test_postmaster_is_accepted_even_when_not_in_the_users_table(make_pigeond):
    port = free_port()
    action = ('table users { alice }\n'
              'action "local" maildir "./var/mail/%{user}/Maildir" users <users>')
    d = make_pigeond(port=port, text=config_text(port, local_action=action))
    content = b"Subject: rfc 5321 4.5.1\r\n\r\nhello\r\n"
    with session(d.port) as c:
        assert c.cmd(b"MAIL FROM:<sender@example.org>\r\n")[0] == 250
        assert c.cmd(b"RCPT TO:<bob@localhost>\r\n")[0] == 550
        assert c.cmd(b"RCPT TO:<postmaster@localhost>\r\n")[0] == 250
        qid = queued_id(*send_data(c, dot_stuff(content)))
    msgs = d.wait_for_messages("postmaster", 1)
    assert len(msgs) == 1, d.log()
    check_stored(msgs[0], content, qid, rcpt=b"postmaster@localhost")


# ---- sync modes -------------------------------------------------------------------------

def test_fsync_mode_delivers_too(make_pigeond):
    d = make_pigeond(sync="fsync")
    contents = [b"Subject: fsync %d\r\n\r\n" % i + b"z\r\n" * (i * 40000) for i in range(4)]
    ids = []
    with session(d.port) as c:
        for content in contents:
            envelope(c, b"sender@example.org", [b"bob@localhost"])
            ids.append(queued_id(*send_data(c, dot_stuff(content))))
    msgs = d.wait_for_messages("bob", 4)
    assert len(msgs) == 4, d.log()
    for qid, content, stored in zip(ids, contents, msgs):
        check_stored(stored, content, qid)
    assert d.stop() == 0
    assert "queue: 4 messages committed in " in d.log()
