"""Recovery: what pigeond finds in its queue directory when it starts.

Mail that was acknowledged and not yet delivered is delivered after a
restart; a journal damaged in the middle is copied to quarantine, logged,
and the good records around the damage still used; a torn tail (a write a
crash cut short) is ignored quietly; a content file whose size disagrees
with its envelope is moved to quarantine; a content file without an
envelope (a message never acknowledged) is removed.  Also: the -n check
and a clean SIGTERM shutdown.

To leave mail in the queue, delivery is made to defer: var/mail is made
unreadable for the unprivileged user pigeond runs as, so every Maildir
delivery fails with EACCES and waits for a retry a minute later.  The test
stops pigeond before that, changes what it wants on disk, and restarts.
"""

import os
import pathlib
import pwd
import re
import subprocess
import time

import pytest

from conftest import PIGEOND, SmtpConn

# Journal format (src/queue/journal.h): a 16-octet segment header, then
# records  "PJ" | u8 type | u8 0 | u32 length | payload | u32 crc32c.
SEGMENT_HEADER = 16
RECORD_OVERHEAD = 12
JOURNAL_MSG = 1


def send(d, rcpts, key, sender=b"sender@example.org"):
    """One message (Subject: key) to rcpts; (queue id, the message as sent)."""
    content = b"Subject: %s\r\nMessage-Id: <%s@recovery.test>\r\n\r\nbody of %s\r\n" % (
        key, key, key)
    with SmtpConn(d.port) as c:
        assert c.reply()[0] == 220
        assert c.cmd(b"EHLO recovery.test\r\n")[0] == 250
        assert c.cmd(b"MAIL FROM:<" + sender + b">\r\n")[0] == 250
        for r in rcpts:
            assert c.cmd(b"RCPT TO:<" + r + b">\r\n")[0] == 250
        assert c.cmd(b"DATA\r\n")[0] == 354
        code, lines = c.cmd(content + b".\r\n")
        assert code == 250, lines
        assert c.cmd(b"QUIT\r\n")[0] == 221
    return lines[-1].split()[-1].decode(), content


def spool(d, *parts):
    return d.dir.joinpath("var", "spool", *parts)


def mailroot(d):
    return d.dir / "var" / "mail"


def block_delivery(d):
    """Make every Maildir delivery fail: pigeond's user cannot enter var/mail."""
    os.chmod(mailroot(d), 0o000)


def allow_delivery(d):
    os.chmod(mailroot(d), 0o700)


def queue_undelivered(d, count, rcpts=(b"bob@localhost",)):
    """Send count messages that stay in the queue, then stop pigeond; [(id, content)]."""
    block_delivery(d)
    sent = [send(d, list(rcpts), b"queued-%d" % i) for i in range(count)]
    for qid, _ in sent:
        for r in rcpts:
            wait_outcome(d, qid, r.split(b"@")[0].decode(), "deferred")
    assert d.stop() == 0
    assert sorted(p.name for p in spool(d, "msg").iterdir()) == sorted(q for q, _ in sent)
    return sent


def wait_outcome(d, qid, user, status, timeout=10):
    """Wait for the log line of a delivery attempt: status "sent" or "deferred"."""
    line = re.compile(r"%s: to=<%s@localhost>, relay=maildir, delay=\d+, status=%s "
                      % (qid, user, status))
    deadline = time.time() + timeout
    while not line.search(d.log()):
        assert time.time() < deadline, "no %r in:\n%s" % (line.pattern, d.log())
        time.sleep(0.02)


def wait_delivered(d, user, count, timeout=10):
    msgs = d.wait_for_messages(user, count, timeout)
    assert len(msgs) >= count, d.log()
    time.sleep(0.2)  # a duplicate would show up now
    return d.messages(user)


def body(msg):
    """The message after pigeond's trace (Return-Path: and a 3- or 4-line Received:)."""
    assert msg.startswith(b"Return-Path: <") and b"\r\nReceived: from " in msg[:200], msg[:200]
    i = msg.index(b"\r\nSubject: ") + 2
    return msg[i:]


def queue_ids(msgs):
    return [re.search(rb" id ([0-9A-Z]{14})", m)[1].decode() for m in msgs]


def segments(d):
    """The journal segment files, oldest first."""
    return sorted(spool(d, "journal").iterdir())


def records(data):
    """[(offset, type, total length)] of the records in a segment's bytes."""
    assert data[:8] == b"PIGEONJ1"
    out, pos = [], SEGMENT_HEADER
    while pos < len(data):
        assert data[pos:pos + 2] == b"PJ" and data[pos + 3] == 0, (pos, data[pos:pos + 8])
        length = RECORD_OVERHEAD + int.from_bytes(data[pos + 4:pos + 8], "little")
        out.append((pos, data[pos + 2], length))
        pos += length
    assert pos == len(data)
    return out


def segment_with_messages(d, count):
    """The one segment holding count MSG records: (path, bytes, their records)."""
    found = []
    for path in segments(d):
        data = path.read_bytes()
        msgs = [r for r in records(data) if r[1] == JOURNAL_MSG]
        if msgs:
            found.append((path, data, msgs))
    assert len(found) == 1 and len(found[0][2]) == count, [(p, len(m)) for p, _, m in found]
    return found[0]


# ---- restart with mail in the queue -------------------------------------------------------

def test_queued_mail_is_delivered_after_a_restart(make_pigeond):
    d = make_pigeond()
    sent = queue_undelivered(d, 3)
    assert d.messages("bob") == []
    allow_delivery(d)
    d.start()
    msgs = wait_delivered(d, "bob", 3)
    assert len(msgs) == 3
    assert sorted(queue_ids(msgs)) == sorted(q for q, _ in sent)  # the ids of the 250s
    assert sorted(body(m) for m in msgs) == sorted(c for _, c in sent)
    assert "queue: recovered 3 messages" in d.log()
    deadline = time.time() + 5
    while any(spool(d, "msg").iterdir()) and time.time() < deadline:
        time.sleep(0.02)
    assert list(spool(d, "msg").iterdir()) == []  # content removed once delivered


def test_recipient_delivered_before_a_restart_is_not_delivered_again(make_pigeond):
    d = make_pigeond()
    # carol's directory belongs to root: pigeond cannot deliver there, but can to bob.
    os.mkdir(mailroot(d) / "carol", 0o700)
    qid, content = send(d, [b"bob@localhost", b"carol@localhost"], b"half")
    wait_outcome(d, qid, "carol", "deferred")
    wait_outcome(d, qid, "bob", "sent")
    assert len(d.messages("bob")) == 1
    assert d.stop() == 0
    pigeon = pwd.getpwnam("pigeon")
    os.chown(mailroot(d) / "carol", pigeon.pw_uid, pigeon.pw_gid)
    d.start()
    carol = wait_delivered(d, "carol", 1)
    assert [body(m) for m in carol] == [content] and queue_ids(carol) == [qid]
    assert [body(m) for m in d.messages("bob")] == [content]  # once, not twice
    assert d.log().count(qid + ": to=<bob@localhost>, relay=maildir, delay=") == 1


def test_queue_survives_several_restarts_without_delivering_twice(make_pigeond):
    d = make_pigeond()
    os.mkdir(mailroot(d) / "carol", 0o700)  # root's: deliveries to carol defer
    qid, content = send(d, [b"bob@localhost", b"carol@localhost"], b"restarts")
    wait_outcome(d, qid, "carol", "deferred")
    wait_outcome(d, qid, "bob", "sent")

    def carol_attempts():
        return d.log().count(qid + ": to=<carol@localhost>, relay=maildir")

    for _ in range(2):  # each start rewrites the journal with what is still queued
        assert d.stop() == 0
        attempts = carol_attempts()
        d.start()
        assert d.wait_for_log("queue: recovered 1 messages")
        deadline = time.time() + 5
        while carol_attempts() == attempts and time.time() < deadline:
            time.sleep(0.02)
        assert carol_attempts() == attempts + 1, d.log()
    assert d.stop() == 0
    pigeon = pwd.getpwnam("pigeon")
    os.chown(mailroot(d) / "carol", pigeon.pw_uid, pigeon.pw_gid)
    d.start()
    assert [body(m) for m in wait_delivered(d, "carol", 1)] == [content]
    assert [body(m) for m in d.messages("bob")] == [content]
    assert d.log().count(qid + ": to=<bob@localhost>, relay=maildir") == 1  # never again


def test_content_file_missing_is_taken_as_delivered(make_pigeond):
    d = make_pigeond()
    sent = queue_undelivered(d, 2)
    spool(d, "msg", sent[0][0]).unlink()
    allow_delivery(d)
    d.start()
    assert [body(m) for m in wait_delivered(d, "bob", 1)] == [sent[1][1]]
    # Content is removed only after delivery: the message counts as delivered, and says so.
    assert d.wait_for_log(sent[0][0] + ": content file ")
    time.sleep(0.2)
    assert len(d.messages("bob")) == 1
    assert "queue: recovered 1 messages" in d.log()


# ---- the journal --------------------------------------------------------------------------

@pytest.mark.parametrize("damage", ["inserted", "overwritten"])
def test_damaged_journal_segment_is_quarantined_and_its_good_records_used(make_pigeond, damage):
    d = make_pigeond()
    sent = queue_undelivered(d, 3)
    path, data, msgs = segment_with_messages(d, 3)
    garbage = b"\xde\xad\xbe\xef garbage in the middle of the journal \x00\xff" * 3
    second = msgs[1]
    if damage == "inserted":  # between the first and the second record: all three survive
        damaged = data[:second[0]] + garbage + data[second[0]:]
        survivors = sent
    else:  # over the second record's envelope: it is lost, the third survives
        start = second[0] + 20
        damaged = data[:start] + garbage + data[start + len(garbage):]
        assert start + len(garbage) < second[0] + second[2]
        survivors = [sent[0], sent[2]]
    path.write_bytes(damaged)

    allow_delivery(d)
    d.start()
    msgs_bob = wait_delivered(d, "bob", len(survivors))
    assert sorted(body(m) for m in msgs_bob) == sorted(c for _, c in survivors)

    log = d.log()
    m = re.search(r"queue: journal %s is damaged \((\d+) bad octets\); a copy is in (\S+); "
                  % re.escape(path.name), log)
    assert m, log
    copy = pathlib.Path(m[2])
    assert copy.parent == spool(d, "quarantine") and copy.name.startswith(path.name)
    assert copy.read_bytes() == damaged
    if damage == "inserted":
        assert int(m[1]) == len(garbage)
        assert sorted(p.name for p in spool(d, "quarantine").iterdir()) == [copy.name]
    else:
        lost = sent[1][0]
        assert int(m[1]) == second[2]
        # Its content cannot be matched to an envelope: kept for a human, not deleted.
        assert (spool(d, "quarantine") / lost).read_bytes().endswith(sent[1][1])
        assert lost + ": content without a readable envelope" in log

    # The daemon keeps running and takes new mail.
    qid, content = send(d, [b"carol@localhost"], b"after-damage")
    assert [body(m) for m in wait_delivered(d, "carol", 1)] == [content]


def test_damaged_delivery_record_does_not_make_a_second_copy(make_pigeond):
    d = make_pigeond()
    os.mkdir(mailroot(d) / "carol", 0o700)  # root's: deliveries to carol defer
    qid, content = send(d, [b"bob@localhost", b"carol@localhost"], b"done-record")
    wait_outcome(d, qid, "bob", "sent")
    wait_outcome(d, qid, "carol", "deferred")
    later, later_content = send(d, [b"carol@localhost"], b"after-done")  # a record after it
    assert d.wait_for_log(later + ": to=<carol@localhost>")
    assert d.stop() == 0
    path, data, _ = segment_with_messages(d, 2)
    done = [r for r in records(data) if r[1] == 2]  # JOURNAL_DONE: bob delivered
    assert len(done) == 1
    pos = done[0][0] + 8  # inside the payload: the record fails its checksum
    path.write_bytes(data[:pos] + b"\xff" * 4 + data[pos + 4:])

    pigeon = pwd.getpwnam("pigeon")
    os.chown(mailroot(d) / "carol", pigeon.pw_uid, pigeon.pw_gid)
    d.start()
    carol = wait_delivered(d, "carol", 2)
    assert sorted(body(m) for m in carol) == sorted([content, later_content])
    assert d.wait_for_log("queue: journal %s is damaged" % path.name)
    # bob is delivered again, as far as the queue knows, onto the same file name: one copy.
    time.sleep(0.2)
    assert [body(m) for m in d.messages("bob")] == [content]


@pytest.mark.parametrize("tail", ["last record cut short", "half a record appended"])
def test_torn_journal_tail_is_ignored_without_quarantine(make_pigeond, tail):
    d = make_pigeond()
    sent = queue_undelivered(d, 3)
    path, data, msgs = segment_with_messages(d, 3)
    last = msgs[2]
    if tail == "last record cut short":
        torn = data[:last[0] + last[2] // 2]
        survivors = sent[:2]
    else:
        torn = data + data[last[0]:last[0] + last[2] // 2]
        survivors = sent
    path.write_bytes(torn)

    allow_delivery(d)
    d.start()
    msgs_bob = wait_delivered(d, "bob", len(survivors))
    assert sorted(body(m) for m in msgs_bob) == sorted(c for _, c in survivors)
    log = d.log()
    assert re.search(r"queue: journal %s: %d octets of an unfinished write at the end, ignored"
                     % (re.escape(path.name), last[2] // 2), log), log
    assert "damaged" not in log
    assert list(spool(d, "quarantine").iterdir()) == []
    if tail == "last record cut short":
        # Never durably committed, as far as the queue can tell: an unfinished message.
        assert sent[2][0] + ": removed an unfinished message" in log
        assert not (spool(d, "msg") / sent[2][0]).exists()


# ---- content files ------------------------------------------------------------------------

@pytest.mark.parametrize("change", ["truncated", "extended"])
def test_content_file_of_the_wrong_size_is_quarantined(make_pigeond, change):
    d = make_pigeond()
    sent = queue_undelivered(d, 2)
    bad_id = sent[0][0]
    content_file = spool(d, "msg", bad_id)
    original = content_file.read_bytes()
    changed = original[:len(original) // 2] if change == "truncated" else original + b"extra\r\n"
    content_file.write_bytes(changed)

    allow_delivery(d)
    d.start()
    msgs = wait_delivered(d, "bob", 1)
    assert [body(m) for m in msgs] == [sent[1][1]]
    assert d.wait_for_log("%s: content is %d octets, its envelope says %d; the content file is "
                          "now in %s" % (bad_id, len(changed), len(original),
                                         spool(d, "quarantine", bad_id)))
    assert spool(d, "quarantine", bad_id).read_bytes() == changed
    assert not content_file.exists()
    # Nothing else waits for it: a later restart neither delivers nor complains about it.
    assert d.stop() == 0
    d.start()
    time.sleep(0.3)
    assert [body(m) for m in d.messages("bob")] == [sent[1][1]]
    assert "queue: recovered 0 messages" in d.log().rsplit("ready:", 2)[-2]


def test_orphan_content_file_is_removed_and_a_foreign_file_left_alone(make_pigeond):
    d = make_pigeond()
    assert d.stop() == 0
    orphan_id = "1K1CV6R6RWT000"  # a well-formed queue id with no envelope anywhere
    orphan = spool(d, "msg", orphan_id)
    orphan.write_bytes(b"Return-Path: <x@example.org>\r\nSubject: orphan\r\n\r\nhalf a mess")
    foreign = spool(d, "msg", "notes.txt")
    foreign.write_bytes(b"not mail")
    d.start()
    log = d.log()
    assert orphan_id + ": removed an unfinished message" in log
    assert not orphan.exists()
    assert "notes.txt is not a queue file; left alone" in log
    assert foreign.read_bytes() == b"not mail"
    assert list(spool(d, "quarantine").iterdir()) == []
    time.sleep(0.2)
    assert not (mailroot(d) / "x").exists() and list(mailroot(d).iterdir()) == []


# ---- configuration check and shutdown -----------------------------------------------------

def test_config_check_accepts_a_good_file_with_exit_0(workdir):
    conf = workdir / "good.conf"
    (workdir / "aliases").write_text("team: alice, bob\n")
    conf.write_text('hostname "pigeon.test"\nlisten on 127.0.0.1 port 2525\n'
                    'table domains { localhost }\ntable users { alice, bob }\n'
                    'table aliases file "aliases"\n'
                    'action "local" maildir "./var/mail/%{user}/Maildir" users <users> '
                    'aliases <aliases>\nmatch from any for domain <domains> action "local"\n')
    r = subprocess.run([PIGEOND, "-n", "-f", str(conf)], capture_output=True, text=True,
                       timeout=10)
    assert (r.returncode, r.stdout, r.stderr) == (0, "%s: configuration OK\n" % conf, "")


@pytest.mark.parametrize("conf_text, aliases_text, where, message", [
    ('hostname "x"\nlisten on 127.0.0.1 port 2525\nfrobnicate yes\n', None,
     "bad.conf:3", 'unknown statement "frobnicate"'),
    ('hostname "x"\n\n\n\nlimit text-line 10\n', None,
     "bad.conf:5", "limit text-line must be at least 1000"),
    ('table aliases file "aliases"\n', "team: alice\n# fine so far\nnot an entry\n",
     "aliases:3", 'expected "key" or "key: value, ..."'),
])
def test_config_check_refuses_a_bad_file_with_exit_1_and_file_line(workdir, conf_text,
                                                                   aliases_text, where, message):
    conf = workdir / "bad.conf"
    conf.write_text(conf_text)
    if aliases_text is not None:
        (workdir / "aliases").write_text(aliases_text)
    r = subprocess.run([PIGEOND, "-n", "-f", str(conf)], capture_output=True, text=True,
                       timeout=10)
    assert r.returncode == 1
    assert r.stdout == ""
    assert r.stderr.startswith("%s/%s: %s" % (workdir, where, message)), r.stderr
    assert r.stderr.count("\n") == 1


def test_sigterm_ends_sessions_with_421_and_exits_0(make_pigeond):
    d = make_pigeond()
    qid, content = send(d, [b"bob@localhost"], b"before-shutdown")
    assert [body(m) for m in wait_delivered(d, "bob", 1)] == [content]

    idle = SmtpConn(d.port)
    assert idle.reply()[0] == 220
    assert idle.cmd(b"EHLO idle.test\r\n")[0] == 250
    mid = SmtpConn(d.port)
    assert mid.reply()[0] == 220
    assert mid.cmd(b"EHLO mid.test\r\n")[0] == 250
    assert mid.cmd(b"MAIL FROM:<a@example.org>\r\n")[0] == 250
    assert mid.cmd(b"RCPT TO:<carol@localhost>\r\n")[0] == 250
    assert mid.cmd(b"DATA\r\n")[0] == 354
    mid.send(b"Subject: never finished\r\n\r\nhalf a message\r\n")
    time.sleep(0.1)

    assert d.stop() == 0
    for c in (idle, mid):
        assert c.reply() == (421, [b"421 4.3.2 Service shutting down, try again later"])
        assert c.closed()
        c.close()
    log = d.log()
    assert "signal 15: shutting down" in log and log.rstrip().endswith("pigeond stopped")
    assert list(spool(d, "msg").iterdir()) == []

    d.start()
    time.sleep(0.3)
    assert d.messages("carol") == []
    assert [body(m) for m in d.messages("bob")] == [content]
    assert "queue: recovered 0 messages" in d.log()
