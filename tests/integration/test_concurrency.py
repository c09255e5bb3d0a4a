"""Many clients at once: every message acknowledged, delivered exactly once,
and the queue's group commit sharing one sync among many messages."""

import re
import socket
import threading
import time

import pytest

from conftest import SmtpConn

SENDERS = 200
PIPELINED_CLIENTS = 50
PIPELINED_MESSAGES = 3

COMMITTED = re.compile(r"queue: (\d+) messages committed in (\d+) syncs")
SUBJECT = re.compile(rb"\r\nSubject: (\S+)\r\n")


def run_threads(target, n):
    """Run target(i) in n threads; the exceptions they raised, by index."""
    errors = {}

    def wrap(i):
        try:
            target(i)
        except BaseException as e:  # reported by the test, not lost in a thread
            errors[i] = e

    threads = [threading.Thread(target=wrap, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not any(t.is_alive() for t in threads), "clients still running after 60 s"
    return errors


def content_of(key):
    """The message a client sends, recognisable by its Subject and Message-Id."""
    return (b"Subject: %s\r\nMessage-Id: <%s@concurrency.test>\r\n\r\n" % (key, key)
            + b"body of %s\r\n.dot line, stuffed on the wire\r\n" % key)


def split_at_subject(msg):
    """(the trace pigeond wrote, the message as sent): the message starts with Subject:."""
    i = msg.index(b"\r\nSubject: ") + 2
    assert msg.startswith(b"Return-Path: <") and msg[:i].count(b"Received: ") == 1, msg[:i]
    return msg[:i], msg[i:]


def collect(d, users, expected, timeout=20):
    """Every message in the users' Maildirs, by Subject, once expected have arrived."""
    deadline = time.time() + timeout
    while True:
        msgs = {u: d.messages(u) for u in users}
        if sum(len(m) for m in msgs.values()) >= expected or time.time() > deadline:
            break
        time.sleep(0.05)
    time.sleep(0.2)  # anything extra (a duplicate) would show up now
    by_subject = {}
    for u in users:
        for msg in d.messages(u):
            m = SUBJECT.search(msg)
            assert m, msg[:300]
            by_subject.setdefault(m[1], []).append((u, msg))
    return by_subject


@pytest.mark.parametrize("sync", ["syncfs", "fsync"])
def test_200_concurrent_sessions_are_all_acknowledged_and_delivered_once(make_pigeond, sync):
    d = make_pigeond(sync=sync)
    users = ["user%d" % k for k in range(10)]
    barrier = threading.Barrier(SENDERS, timeout=30)
    replies = {}

    def sender(i):
        key = b"concurrent-%03d" % i
        try:
            with SmtpConn(d.port, timeout=30) as c:
                assert c.reply()[0] == 220
                assert c.cmd(b"EHLO sender%d.test\r\n" % i)[0] == 250
                assert c.cmd(b"MAIL FROM:<s%d@example.org>\r\n" % i)[0] == 250
                assert c.cmd(b"RCPT TO:<%s@localhost>\r\n" % users[i % 10].encode())[0] == 250
                assert c.cmd(b"DATA\r\n")[0] == 354
                c.send(content_of(key).replace(b"\r\n.", b"\r\n.."))
                barrier.wait()  # every end of data at the same moment
                c.send(b".\r\n")
                replies[i] = c.reply()
                assert c.cmd(b"QUIT\r\n")[0] == 221
        except BaseException:
            barrier.abort()
            raise

    errors = run_threads(sender, SENDERS)
    assert not errors, errors
    assert sorted(replies) == list(range(SENDERS))
    ids = []
    for i, (code, lines) in replies.items():
        assert code == 250 and lines[-1].startswith(b"250 2.0.0 Ok: queued as "), (i, lines)
        ids.append(lines[-1].split()[-1])
    assert len(set(ids)) == SENDERS

    by_subject = collect(d, users, SENDERS)
    assert sorted(by_subject) == sorted(b"concurrent-%03d" % i for i in range(SENDERS))
    for i in range(SENDERS):
        key = b"concurrent-%03d" % i
        copies = by_subject[key]
        assert len(copies) == 1, (key, len(copies))
        user, msg = copies[0]
        assert user == users[i % 10]
        trace, content = split_at_subject(msg)
        assert b"\r\n\tfor <%s@localhost>;\r\n" % user.encode() in trace
        assert content == content_of(key)

    assert d.stop() == 0
    m = COMMITTED.search(d.log())
    assert m, d.log()[-2000:]
    committed, syncs = int(m[1]), int(m[2])
    print("group commit: %d messages in %d syncs" % (committed, syncs))
    assert committed == SENDERS
    assert 0 < syncs < committed  # group commit: some sync made several messages durable


def test_many_clients_pipelining_whole_sessions_get_every_reply_in_order(make_pigeond):
    # Each client writes all its transactions and QUIT at once, message text
    # included: more than RFC 2920 lets a client do (it should wait for the
    # 354), so a server must cope with it; every reply comes, in order.
    d = make_pigeond()
    users = ["pipe%d" % k for k in range(5)]
    barrier = threading.Barrier(PIPELINED_CLIENTS, timeout=30)
    replies = {}

    def client(i):
        try:
            with SmtpConn(d.port, timeout=30) as c:
                assert c.reply()[0] == 220
                code, lines = c.cmd(b"EHLO pipeliner%d.test\r\n" % i)
                assert code == 250 and b"250-PIPELINING" in lines
                burst = b""
                for k in range(PIPELINED_MESSAGES):
                    key = b"pipelined-%02d-%d" % (i, k)
                    burst += (b"MAIL FROM:<p%d@example.org>\r\n" % i
                              + b"RCPT TO:<%s@localhost>\r\n" % users[i % 5].encode()
                              + b"RCPT TO:<%s@localhost>\r\n" % users[(i + 1) % 5].encode()
                              + b"DATA\r\n"
                              + content_of(key).replace(b"\r\n.", b"\r\n..") + b".\r\n")
                burst += b"QUIT\r\n"
                barrier.wait()
                c.send(burst)  # everything in one write, replies read afterwards
                got = []
                while True:
                    code, lines = c.reply()
                    got.append((code, lines))
                    if code == 221:
                        break
                replies[i] = got
                assert c.closed()
        except BaseException:
            barrier.abort()
            raise

    errors = run_threads(client, PIPELINED_CLIENTS)
    assert not errors, errors
    for i in range(PIPELINED_CLIENTS):
        codes = [code for code, _ in replies[i]]
        assert codes == [250, 250, 250, 354, 250] * PIPELINED_MESSAGES + [221], (i, replies[i])
        queued = [lines[-1] for code, lines in replies[i][4::5][:PIPELINED_MESSAGES]]
        assert all(q.startswith(b"250 2.0.0 Ok: queued as ") for q in queued), queued

    total = PIPELINED_CLIENTS * PIPELINED_MESSAGES
    by_subject = collect(d, users, 2 * total)
    assert len(by_subject) == total
    for i in range(PIPELINED_CLIENTS):
        for k in range(PIPELINED_MESSAGES):
            key = b"pipelined-%02d-%d" % (i, k)
            copies = by_subject[key]
            assert sorted(u for u, _ in copies) == sorted([users[i % 5], users[(i + 1) % 5]])
            for _, msg in copies:
                trace, content = split_at_subject(msg)
                assert content == content_of(key)
                assert b"\tfor <" not in trace  # two recipients


def test_client_that_half_closes_after_pipelining_gets_every_reply(make_pigeond):
    d = make_pigeond()
    with SmtpConn(d.port) as c:
        assert c.reply()[0] == 220
        burst = b"EHLO halfclose.test\r\n"
        for k in range(2):
            burst += (b"MAIL FROM:<h@example.org>\r\nRCPT TO:<half@localhost>\r\nDATA\r\n"
                      + content_of(b"half-closed-%d" % k).replace(b"\r\n.", b"\r\n..")
                      + b".\r\n")
        c.send(burst)
        c.sock.shutdown(socket.SHUT_WR)  # no QUIT: the end of input says it all
        codes = [c.reply()[0] for _ in range(1 + 2 * 4)]
        assert codes == [250] + [250, 250, 354, 250] * 2
        assert c.closed()
    by_subject = collect(d, ["half"], 2)
    assert sorted(by_subject) == [b"half-closed-0", b"half-closed-1"]
    for key, copies in by_subject.items():
        assert len(copies) == 1 and split_at_subject(copies[0][1])[1] == content_of(key)
