"""The crash test: SIGKILL in the middle of heavy traffic loses no
acknowledged message and delivers nothing twice.

Twenty clients send 1,000 messages, each recognisable by its Subject and
Message-Id.  Every message's progress is recorded on the client side just
before each step, so after the kill it is known exactly what pigeond may
have seen.  pigeond is killed with SIGKILL once about 300 messages have
their 250 (at a moment when some messages are half sent), restarted on the same directory, and left to deliver.  Then:

  - a message that got 250 is delivered exactly once;
  - a message whose final "." went out but whose reply never came is
    "in doubt" (RFC 1047): delivered once or not at all;
  - a message whose data was incomplete, or that was never sent, or that
    got a refusal, is not delivered.

Afterwards the clients send every message not delivered, as a real client
would retry, and all 1,000 are then in the mailboxes exactly once.
"""

import functools
import random
import re
import threading
import time

from conftest import SmtpConn

SENDERS = 20
PER_SENDER = 50
KILL_AFTER = 300
PER_SESSION = 5  # messages before a client reconnects

SUBJECT = re.compile(rb"\r\nSubject: (crash-[0-9]{2}-[0-9]{3})\r\n")
TRACE_ID = re.compile(rb"\r\n\tby pigeon\.test \(Pigeon\) with ESMTP id ([0-9A-Z]{14})\r\n")

# Client-side states of a message, in the order they are reached.
UNSENT = "unsent"          # no DATA yet
INCOMPLETE = "incomplete"  # DATA sent, the final "." not yet
IN_DOUBT = "in doubt"      # the final "." sent, no reply read
ACKED = "acked"            # 250
REFUSED = "refused"        # any other reply to the end of data


def key_of(sender, n):
    return b"crash-%02d-%03d" % (sender, n)


def user_of(sender):
    return "crash%02d" % sender


@functools.lru_cache(maxsize=None)
def content_of(key):
    """The message for key: a few lines, every tenth one over 130 KB (several queue chunks)."""
    rng = random.Random(key)
    nlines = 2000 if key.endswith(b"0") else 5
    alphabet = b"abcdefghijklmnopqrstuvwxyz ."  # some lines start with a dot
    text = rng.randbytes(60 * nlines).translate(bytes(alphabet[i % len(alphabet)]
                                                      for i in range(256)))
    lines = [b"Subject: " + key, b"Message-Id: <" + key + b"@crash.test>", b""]
    lines += [text[i:i + 60] for i in range(0, len(text), 60)]
    return b"\r\n".join(lines) + b"\r\n"


def stuffed(content):
    return content.replace(b"\r\n.", b"\r\n..")


class Sender:
    """One client sending its messages in sessions of PER_SESSION, recording each step."""

    def __init__(self, port, index, keys, state, qids, lock, killed):
        self.port, self.index, self.keys = port, index, keys
        self.state, self.qids, self.lock = state, qids, lock
        self.killed = killed

    def mark(self, key, state):
        with self.lock:
            self.state[key] = state

    def run(self):
        for start in range(0, len(self.keys), PER_SESSION):
            if self.killed.is_set():
                return  # after the kill the port is free: another program may take it
            with SmtpConn(self.port, timeout=20) as c:
                assert c.reply()[0] == 220
                assert c.cmd(b"EHLO crash%02d.test\r\n" % self.index)[0] == 250
                for key in self.keys[start:start + PER_SESSION]:
                    self.send_one(c, key)
                assert c.cmd(b"QUIT\r\n")[0] == 221

    def send_one(self, c, key):
        assert c.cmd(b"MAIL FROM:<%s@sender.test>\r\n" % key)[0] == 250
        assert c.cmd(b"RCPT TO:<%s@localhost>\r\n" % user_of(self.index).encode())[0] == 250
        self.mark(key, INCOMPLETE)
        assert c.cmd(b"DATA\r\n")[0] == 354
        wire = stuffed(content_of(key))
        half = len(wire) // 2
        c.send(wire[:half])
        # Odd-numbered clients are slow writers: a kill finds some data incomplete.
        time.sleep(0.01 if self.index % 2 else 0.001)
        c.send(wire[half:])
        if self.killed.is_set():  # keep the record exact: no end of data after the kill
            raise EOFError("pigeond was killed")
        self.mark(key, IN_DOUBT)
        c.send(b".\r\n")
        code, lines = c.reply()
        if code == 250:
            with self.lock:
                self.qids[key] = lines[-1].split()[-1]
            self.mark(key, ACKED)
        else:
            self.mark(key, REFUSED)


def run_senders(port, keys_by_sender, state, qids, killed):
    """Run one thread per sender; the errors raised while pigeond was alive."""
    lock = threading.Lock()
    errors = []

    def run(i):
        try:
            Sender(port, i, keys_by_sender[i], state, qids, lock, killed).run()
        except BaseException as e:
            if not killed.is_set():  # after the kill, failing is what clients do
                errors.append((i, repr(e)))

    threads = [threading.Thread(target=run, args=(i,)) for i in keys_by_sender]
    for t in threads:
        t.start()
    return threads, errors


def delivered(d):
    """key -> list of (stored message) over every sender's Maildir."""
    out = {}
    for i in range(SENDERS):
        for msg in d.messages(user_of(i)):
            m = SUBJECT.search(msg)
            assert m, msg[:300]
            out.setdefault(m[1], []).append(msg)
    return out


def check_stored(key, msg, qid=None):
    """A delivered copy is the trace plus exactly the message sent."""
    assert msg.startswith(b"Return-Path: <" + key + b"@sender.test>\r\nReceived: from crash")
    body = content_of(key)
    assert msg.endswith(b"\r\n" + body) and msg.count(b"Received: ") == 1, key
    if qid is not None:
        m = TRACE_ID.search(msg)
        assert m and m[1] == qid, (key, qid, msg[:300])


def test_sigkill_under_load_loses_no_acknowledged_message_and_duplicates_none(make_pigeond):
    d = make_pigeond()
    keys_by_sender = {i: [key_of(i, n) for n in range(PER_SENDER)] for i in range(SENDERS)}
    all_keys = [k for keys in keys_by_sender.values() for k in keys]
    state = {k: UNSENT for k in all_keys}
    qids = {}
    killed = threading.Event()

    # Phase 1: load, and SIGKILL once KILL_AFTER messages are acknowledged.
    started = time.time()
    threads, errors = run_senders(d.port, keys_by_sender, state, qids, killed)
    while True:
        now = list(state.values())
        acked, incomplete = now.count(ACKED), now.count(INCOMPLETE)
        # Past KILL_AFTER, aim for a moment when some messages are half sent.
        if acked >= KILL_AFTER and (incomplete >= 2 or acked >= KILL_AFTER + 200):
            break
        assert time.time() - started < 30, "too slow: %d acknowledged" % acked
        assert any(t.is_alive() for t in threads), errors
        time.sleep(0.0005)
    killed.set()
    d.kill9()
    for t in threads:
        t.join(30)
    assert not any(t.is_alive() for t in threads)
    assert not errors, errors
    at_kill = dict(state)
    counts = {s: sum(v == s for v in at_kill.values())
              for s in (UNSENT, INCOMPLETE, IN_DOUBT, ACKED, REFUSED)}

    # Phase 2: restart on the same directory and let the queue deliver.
    d.start()
    assert d.wait_spool_empty(20), d.log()[-3000:]
    got = delivered(d)
    assert set(got) <= set(all_keys)
    in_doubt_delivered = 0
    for key, s in at_kill.items():
        copies = got.get(key, [])
        if s == ACKED:
            assert len(copies) == 1, (key, s, len(copies))
            check_stored(key, copies[0], qids[key])
        elif s == IN_DOUBT:
            assert len(copies) <= 1, (key, s, len(copies))
            in_doubt_delivered += len(copies)
            for msg in copies:
                check_stored(key, msg)
        else:
            assert copies == [], (key, s)  # data incomplete, never sent, or refused
    print("\nat SIGKILL: %s; in doubt and delivered after all: %d of %d"
          % (", ".join("%s %d" % kv for kv in counts.items()), in_doubt_delivered,
             counts[IN_DOUBT]))
    quarantine = d.dir / "var" / "spool" / "quarantine"
    assert list(quarantine.iterdir()) == [], "a crash is not damage"
    assert "damaged" not in d.log()
    assert counts[ACKED] >= KILL_AFTER

    # Phase 3: the clients retry everything not delivered; then all 1,000 are there once.
    retry = {i: [k for k in keys if k not in got] for i, keys in keys_by_sender.items()}
    threads, errors = run_senders(d.port, {i: ks for i, ks in retry.items() if ks}, state, qids,
                                  threading.Event())
    for t in threads:
        t.join(30)
    assert not any(t.is_alive() for t in threads)
    assert not errors, errors
    assert all(state[k] == ACKED for ks in retry.values() for k in ks)
    assert d.wait_spool_empty(20), d.log()[-3000:]
    got = delivered(d)
    assert sorted(got) == sorted(all_keys)
    for key, copies in got.items():
        assert len(copies) == 1, (key, len(copies))
        check_stored(key, copies[0], qids.get(key))
    assert d.stop() == 0
    print("total time %.1f s" % (time.time() - started))
