"""Hardening: pigeond against clients that misbehave on purpose, and against
the machine failing under it.

  - abuse limits: sessions per client address, new connections per minute
    per address, and sessions overall; a client over a limit is told
    "421 4.7.0" and closed; one address's limits do not touch another's;
    trusted clients are exempt from the per-address limits only;
  - slowloris: a command line must arrive whole within "timeout command",
    however steadily its bytes trickle in; a thousand slow clients neither
    starve an ordinary one nor cost unbounded memory;
  - a client that pipelines megabytes of commands without reading a reply
    stalls itself (TCP back-pressure), not pigeond's memory;
  - SIGKILL at random moments, twenty times over, while clients send: an
    acknowledged message is delivered exactly once, a message whose end of
    data was never sent is not delivered;
  - a full disk: 452 4.3.1, never 250, nothing half-stored delivered, and
    mail flows again once there is room;
  - least privilege: started as root, pigeond runs as its own user and
    refuses to run as root.

Open relaying is tested in test_relay.py and damaged queue files in
test_recovery.py.  Every client here is on loopback; binding a client
socket to 127.0.0.2, 127.0.0.3, ... makes it look like another host.
"""

import errno
import os
import pathlib
import pwd
import random
import re
import resource
import select
import socket
import subprocess
import threading
import time

import pytest

from conftest import PIGEOND, SmtpConn, config_text, free_port

# "trusted" for the tests that need loopback clients treated as strangers.
NOBODY_TRUSTED = "192.0.2.0/24"

REFUSED = re.compile(rb"421 4\.7\.0 [^\r\n]*\r\n")


def everything_until_closed(sock, timeout=5):
    """All the bytes the server sends until it closes the connection."""
    sock.settimeout(timeout)
    data = b""
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            chunk = sock.recv(4096)
        except (ConnectionResetError, BrokenPipeError):
            break
        if not chunk:
            break
        data += chunk
    else:
        raise AssertionError("connection still open after %d s; got %r" % (timeout, data))
    return data


def greeted(port, source):
    """A session from source that got its 220 (asserted)."""
    c = SmtpConn(port, source=source)
    code, lines = c.reply()
    assert code == 220, lines
    return c


def assert_refused(port, source):
    """A connection from source is told exactly one "421 4.7.0 ..." line, then closed."""
    with socket.create_connection(("127.0.0.1", port), timeout=5,
                                  source_address=(source, 0)) as sock:
        data = everything_until_closed(sock)
    assert REFUSED.fullmatch(data), data
    return data


def admitted_soon(port, source, timeout=5):
    """A session from source once pigeond has noticed the ones closed before; None if none."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        c = SmtpConn(port, source=source)
        try:
            code, _ = c.reply()
        except EOFError:
            code = None
        if code == 220:
            return c
        c.close()
        time.sleep(0.1)
    return None


def wait_sessions_gone(d, timeout=5):
    """Wait until every session pigeond logged as opened has been logged as closed."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        log = d.log()
        if len(re.findall(r"session \d+: connect from", log)) == \
                len(re.findall(r"session \d+: disconnect from", log)):
            return True
        time.sleep(0.02)
    return False


def rss_kib(pid):
    """The resident set size of a process, in KiB."""
    for line in pathlib.Path("/proc/%d/status" % pid).read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS for pid %d" % pid)


def send_message(port, source, user, key, body=b"", timeout=10):
    """One whole message (Subject: key) from source to user@localhost; the reply to its end."""
    with SmtpConn(port, source=source, timeout=timeout) as c:
        assert c.reply()[0] == 220
        assert c.cmd(b"EHLO client.test\r\n")[0] == 250
        assert c.cmd(b"MAIL FROM:<sender@client.test>\r\n")[0] == 250
        assert c.cmd(b"RCPT TO:<%s@localhost>\r\n" % user.encode())[0] == 250
        code, lines = c.cmd(b"DATA\r\n")
        if code != 354:
            return code, lines
        content = b"Subject: %s\r\nMessage-Id: <%s@client.test>\r\n\r\n%s\r\n" % (key, key, body)
        code, lines = c.cmd(content + b".\r\n")
        c.cmd(b"QUIT\r\n")
    return code, lines


def raise_fd_limit(wanted):
    """Allow this process (and the pigeond it starts) wanted descriptors, or skip."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= wanted:
        return
    if hard != resource.RLIM_INFINITY and hard < wanted:
        if os.geteuid() != 0:
            pytest.skip("RLIMIT_NOFILE hard limit %d < %d and not root" % (hard, wanted))
        hard = wanted
    resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))


# ---- abuse limits ---------------------------------------------------------------------


def test_client_over_sessions_per_client_is_refused_and_others_are_not(make_pigeond):
    d = make_pigeond(trusted=NOBODY_TRUSTED, limits={"sessions-per-client": 3})
    # 127.0.0.3: not the address the harness probed pigeond from.
    mine = [greeted(d.port, "127.0.0.3") for _ in range(3)]
    assert_refused(d.port, "127.0.0.3")
    assert_refused(d.port, "127.0.0.3")
    # The open sessions are unharmed by the refusals.
    assert mine[0].cmd(b"NOOP\r\n")[0] == 250
    # Another address has a limit of its own.
    others = [greeted(d.port, "127.0.0.4") for _ in range(3)]
    assert_refused(d.port, "127.0.0.4")
    # One session ends: 127.0.0.3 may have one again, but not two.
    assert mine.pop().cmd(b"QUIT\r\n")[0] == 221
    again = admitted_soon(d.port, "127.0.0.3")
    assert again is not None, d.log()[-2000:]
    assert_refused(d.port, "127.0.0.3")
    for c in mine + others + [again]:
        c.close()
    assert d.log().count("limit sessions-per-client") == 4
    assert d.proc.poll() is None


def test_client_over_connections_per_minute_is_refused_until_its_bucket_refills(make_pigeond):
    # 20 a minute: a burst of 20, then one more every 3 seconds.
    d = make_pigeond(trusted=NOBODY_TRUSTED, limits={"connections-per-minute": 20})
    started = time.time()
    for _ in range(20):
        with greeted(d.port, "127.0.0.3") as c:
            assert c.cmd(b"QUIT\r\n")[0] == 221
    assert time.time() - started < 1.5, "the burst itself took too long to test the rate"
    data = assert_refused(d.port, "127.0.0.3")
    assert b"per minute" in data
    # Not another address's budget.
    with greeted(d.port, "127.0.0.4") as c:
        assert c.cmd(b"QUIT\r\n")[0] == 221
    # Refusals cost no tokens: after 3 s (one token) 127.0.0.3 gets in once more.
    assert_refused(d.port, "127.0.0.3")
    time.sleep(max(0.0, started + 3.3 - time.time()))
    c = admitted_soon(d.port, "127.0.0.3", timeout=2)
    assert c is not None, d.log()[-2000:]
    c.close()
    assert d.log().count("limit connections-per-minute") == 2


def test_connections_per_minute_total_is_shared_by_all_untrusted_addresses(make_pigeond):
    # 20 a minute from all untrusted addresses together: a burst of 20, then
    # one more every 3 seconds.  127.0.0.1 (the harness's probe) is trusted.
    d = make_pigeond(trusted="127.0.0.1/32", limits={"connections-per-minute-total": 20})
    started = time.time()
    for i in range(20):
        with greeted(d.port, "127.0.0.%d" % (10 + i)) as c:
            assert c.cmd(b"QUIT\r\n")[0] == 221
    assert time.time() - started < 2.5, "the burst itself took too long to test the rate"
    # Anybody else now, an address never seen before included.
    data = assert_refused(d.port, "127.0.0.50")
    assert data == b"421 4.7.0 Too many connections, try again later\r\n"
    assert_refused(d.port, "127.0.0.10")
    # Trusted clients are not counted, nor refused.
    with greeted(d.port, "127.0.0.1") as c:
        assert c.cmd(b"QUIT\r\n")[0] == 221
    # After 3 s (one token) one more untrusted session, whoever it is; refusals cost nothing.
    time.sleep(max(0.0, started + 3.3 - time.time()))
    c = admitted_soon(d.port, "127.0.0.51", timeout=2)
    assert c is not None, d.log()[-2000:]
    assert_refused(d.port, "127.0.0.52")
    c.close()
    assert d.log().count("limit connections-per-minute-total") == 3
    assert d.proc.poll() is None


def test_trusted_clients_are_exempt_from_per_client_limits_but_not_from_sessions(make_pigeond):
    # 127.0.0.1 trusted, 127.0.0.2 not; at most 6 sessions overall, 2 per client.
    d = make_pigeond(trusted="127.0.0.1/32",
                     limits={"sessions": 6, "sessions-per-client": 2,
                             "connections-per-minute": 3})
    assert wait_sessions_gone(d)  # the harness's readiness probe
    trusted = [greeted(d.port, "127.0.0.1") for _ in range(5)]  # past both per-client limits
    stranger = greeted(d.port, "127.0.0.2")
    # Six sessions: everyone is refused now, trusted or not, under their own limits or not.
    assert_refused(d.port, "127.0.0.2")
    assert_refused(d.port, "127.0.0.1")
    assert_refused(d.port, "127.0.0.5")
    assert d.log().count("(limit sessions)") == 3
    # A session ends: there is room for one more, from anybody.
    assert trusted.pop().cmd(b"QUIT\r\n")[0] == 221
    c = admitted_soon(d.port, "127.0.0.5")
    assert c is not None, d.log()[-2000:]
    trusted.append(c)
    assert_refused(d.port, "127.0.0.1")
    for c in trusted + [stranger]:
        c.close()
    # All gone: the limits hold nothing against anybody.
    assert wait_sessions_gone(d)
    again = [greeted(d.port, "127.0.0.1") for _ in range(5)] + [greeted(d.port, "127.0.0.2")]
    for c in again:
        assert c.cmd(b"QUIT\r\n")[0] == 221
        c.close()


# ---- slowloris ----------------------------------------------------------------------


def dribble(c, payload, interval, limit=12):
    """Send payload a byte every interval seconds until it is all sent, a
    reply line has come, the server hangs up or limit seconds pass; leaves
    the socket blocking again.  Returns (what came back, bytes sent, seconds)."""
    c.sock.setblocking(False)
    got = b""
    started = time.time()
    sent = 0
    while sent < len(payload) and b"\r\n" not in got and time.time() - started < limit:
        try:
            c.sock.send(payload[sent:sent + 1])
        except (BrokenPipeError, ConnectionResetError):
            break
        sent += 1
        readable, _, _ = select.select([c.sock], [], [], interval)
        if readable:
            try:
                chunk = c.sock.recv(4096)
            except ConnectionResetError:
                break
            if not chunk:
                break
            got += chunk
    c.sock.setblocking(True)
    return got, sent, time.time() - started


def test_command_line_dribbled_a_byte_a_second_is_cut_off_at_the_command_timeout(make_pigeond):
    d = make_pigeond(extra="timeout command 3s")
    c = SmtpConn(d.port)
    assert c.reply()[0] == 220
    assert c.cmd(b"EHLO slow.example\r\n")[0] == 250  # enhanced status codes from here on
    line = b"MAIL FROM:<" + b"a" * 40 + b"@slow.example>\r\n"  # a minute's worth of bytes
    try:
        # A byte a second: each byte comes well within any read timeout.
        got, sent, elapsed = dribble(c, line, 1.0)
        assert got.startswith(b"421 4.4.2 "), (got, sent)
        assert got.endswith(b"\r\n") and got.count(b"\r\n") == 1, got
        # Cut off by the line's age (whole seconds: 2 to 4 s), not by a silence.
        assert 1.5 <= elapsed <= 3 + 3, elapsed
        assert sent >= 2, sent
        assert c.closed(), "still open after 421"
    finally:
        c.close()
    assert d.wait_for_log("not finished in 3 seconds", timeout=2), d.log()
    print("\ncut off after %.1f s and %d bytes" % (elapsed, sent))


def test_message_data_dribbled_a_byte_a_second_is_cut_off_at_the_data_timeout(make_pigeond):
    d = make_pigeond(extra="timeout data 3s")
    c = SmtpConn(d.port)
    assert c.reply()[0] == 220
    assert c.cmd(b"EHLO slow.example\r\n")[0] == 250
    assert c.cmd(b"MAIL FROM:<a@slow.example>\r\n")[0] == 250
    assert c.cmd(b"RCPT TO:<somebody@localhost>\r\n")[0] == 250
    assert c.cmd(b"DATA\r\n")[0] == 354
    try:
        # Two bytes a second: every read is well within the timeout, but far
        # less than the kilobyte a data timeout's window asks for.
        got, sent, elapsed = dribble(c, b"x" * 100, 0.5)
        assert got.startswith(b"421 4.4.2 "), (got, sent)
        assert 2 <= elapsed <= 3 + 3, elapsed
        assert c.closed(), "still open after 421"
    finally:
        c.close()
    assert d.wait_for_log("slower than 1024 octets in 3 seconds", timeout=2), d.log()
    assert d.messages("somebody") == []
    print("\ncut off after %.1f s and %d bytes of data" % (elapsed, sent))


def test_slow_but_steady_message_data_is_not_cut_off(make_pigeond):
    d = make_pigeond(extra="timeout data 2s")
    c = SmtpConn(d.port)
    assert c.reply()[0] == 220
    for line, code in ((b"EHLO steady.example\r\n", 250), (b"MAIL FROM:<a@steady.example>\r\n", 250),
                       (b"RCPT TO:<somebody@localhost>\r\n", 250), (b"DATA\r\n", 354)):
        assert c.cmd(line)[0] == code
    # 5 s of data at 2 KB a second: slow, but more than a kilobyte per window.
    for _ in range(10):
        c.send((b"y" * 510 + b"\r\n") * 2)
        time.sleep(0.5)
    assert c.cmd(b".\r\n")[0] == 250
    c.close()
    assert len(d.wait_for_messages("somebody", 1)) == 1


# Under AddressSanitizer (scripts/test sets PIGEON_SANITIZED) freed memory
# sits in a quarantine before reuse, so resident memory says little about
# what pigeond holds: the limits are looser there, the behaviour the same.
MEMORY_SLACK = 4 if os.environ.get("PIGEON_SANITIZED") else 1

SLOW_CLIENTS = 1000


def test_a_thousand_slow_clients_neither_starve_another_nor_cost_unbounded_memory(make_pigeond):
    raise_fd_limit(4 * SLOW_CLIENTS)
    d = make_pigeond(trusted=NOBODY_TRUSTED,
                     limits={"sessions-per-client": 2 * SLOW_CLIENTS,
                             "connections-per-minute": 5 * SLOW_CLIENTS})
    before = rss_kib(d.proc.pid)
    slow = []
    stop = threading.Event()
    peak = [before]
    try:
        for _ in range(SLOW_CLIENTS):
            s = socket.create_connection(("127.0.0.1", d.port), timeout=10,
                                         source_address=("127.0.0.1", 0))
            slow.append(s)
            greeting = s.recv(512)
            assert greeting.startswith(b"220 "), greeting
        started = time.time()

        def dribble_all():
            """Every slow client sends one more byte of a command line each second."""
            text = b"EHLO slow.example\r\n"
            for second in range(6):
                if stop.is_set():
                    return
                for s in slow:
                    s.send(text[second:second + 1])
                peak[0] = max(peak[0], rss_kib(d.proc.pid))
                stop.wait(max(0.0, started + second + 1 - time.time()))

        t = threading.Thread(target=dribble_all)
        t.start()
        time.sleep(2.5)  # in the middle of the dribbling
        sent_at = time.time()
        code, lines = send_message(d.port, "127.0.0.2", "ordinary", b"ordinary-1")
        took = time.time() - sent_at
        t.join(15)
        assert not t.is_alive()
        assert code == 250, lines
        assert took < 2, "an ordinary client waited %.2f s" % took
        assert d.wait_for_messages("ordinary", 1)
        # They are all still there, half way through a line.
        peak[0] = max(peak[0], rss_kib(d.proc.pid))
        assert len(re.findall(r"session \d+: connect from 127\.0\.0\.1 ", d.log())) >= SLOW_CLIENTS
    finally:
        stop.set()
        for s in slow:
            s.close()
    growth = (peak[0] - before) / 1024
    print("\n%d slow clients: pigeond RSS %.1f MB before, %.1f MB at most (+%.1f MB, "
          "%.1f KB a session); the ordinary message took %.3f s"
          % (SLOW_CLIENTS, before / 1024, peak[0] / 1024, growth,
             (peak[0] - before) / SLOW_CLIENTS, took))
    # About 2 KB a session is what it takes; 20 KB would mean buffers held per byte.
    assert growth < 20 * MEMORY_SLACK, "pigeond grew by %.1f MB" % growth
    assert d.proc.poll() is None


# ---- pipelining without reading -----------------------------------------------------

PIPELINED = 48 << 20  # octets of NOOP commands offered


def test_pipelining_without_reading_stalls_the_client_not_pigeond_memory(make_pigeond):
    d = make_pigeond(extra="timeout command 10s")
    before = rss_kib(d.proc.pid)
    peak = before
    sock = socket.socket()
    # Small buffers on our side, so that it is pigeond's buffering that is measured.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 * 1024)
    sock.settimeout(5)
    sock.connect(("127.0.0.1", d.port))
    try:
        assert sock.recv(512).startswith(b"220 ")
        piece = b"NOOP\r\n" * (64 * 1024 // 6)
        sock.setblocking(False)
        sent = 0
        last_progress = time.time()
        stalled = False
        while sent < PIPELINED:
            try:
                n = sock.send(piece)
            except BlockingIOError:
                n = 0
            except (ConnectionResetError, BrokenPipeError):
                # pigeond dropped the client that never reads (its write
                # timeout came first on a slow machine): bounded all the same.
                stalled = True
                break
            if n:
                sent += n
                last_progress = time.time()
            else:
                select.select([], [sock], [], 0.1)
                if time.time() - last_progress > 2:
                    stalled = True
                    break
            peak = max(peak, rss_kib(d.proc.pid))
        assert stalled, "pigeond took all %d MB of pipelined commands" % (sent >> 20)
        # While that client is stuck, another is served at once.
        sent_at = time.time()
        code, lines = send_message(d.port, "127.0.0.2", "patient", b"patient-1")
        took = time.time() - sent_at
        assert code == 250, lines
        assert took < 2, took
        assert d.wait_for_messages("patient", 1)
        peak = max(peak, rss_kib(d.proc.pid))
        # And the client that never reads is dropped once no reply moves for the timeout.
        assert d.wait_for_log("does not read its replies", timeout=15), d.log()[-2000:]
    finally:
        sock.close()
    growth = (peak - before) / 1024
    print("\npipelined %.1f MB of NOOP before the client stalled; pigeond RSS %.1f MB before, "
          "%.1f MB at most (+%.1f MB)" % (sent / 2**20, before / 1024, peak / 1024, growth))
    assert growth < 20 * MEMORY_SLACK, "pigeond grew by %.1f MB" % growth
    assert d.proc.poll() is None


# ---- SIGKILL, again and again -------------------------------------------------------

KILL_ROUNDS = 20
KILL_SENDERS = 6
KILL_PER_SESSION = 3

UNSENT, INCOMPLETE, IN_DOUBT, ACKED, REFUSED_STATE = (
    "unsent", "incomplete", "in doubt", "acked", "refused")
KILL_SUBJECT = re.compile(rb"\r\nSubject: (kill-[0-9]{2}-[0-9]-[0-9]{4})\r\n")


def kill_user(sender):
    return "kill%d" % sender


def kill_content(key):
    """The message for key: one in five is 100 KB, so kills find data half sent."""
    rng = random.Random(key)
    nlines = 3000 if key.endswith((b"0", b"4")) else 3
    body = b"\r\n".join(b"%s line %d %08x" % (key, i, rng.getrandbits(32)) for i in range(nlines))
    return b"Subject: %s\r\nMessage-Id: <%s@kill.test>\r\n\r\n%s\r\n" % (key, key, body)


def kill_sender(port, rnd, index, state, lock, killed, errors):
    """Send messages until pigeond is killed, recording each one's state before each step."""

    def mark(key, s):
        with lock:
            state[key] = s

    n = 0
    try:
        while not killed.is_set():
            with SmtpConn(port, source="127.0.0.1", timeout=20) as c:
                assert c.reply()[0] == 220
                assert c.cmd(b"EHLO kill%d.test\r\n" % index)[0] == 250
                for _ in range(KILL_PER_SESSION):
                    key = b"kill-%02d-%d-%04d" % (rnd, index, n)
                    n += 1
                    mark(key, UNSENT)
                    assert c.cmd(b"MAIL FROM:<%s@kill.test>\r\n" % key)[0] == 250
                    rcpt = b"RCPT TO:<%s@localhost>\r\n" % kill_user(index).encode()
                    assert c.cmd(rcpt)[0] == 250
                    mark(key, INCOMPLETE)
                    assert c.cmd(b"DATA\r\n")[0] == 354
                    wire = kill_content(key)
                    c.send(wire[:len(wire) // 2])
                    time.sleep(0.005 if len(wire) > 50000 else 0)  # a wider window for the kill
                    c.send(wire[len(wire) // 2:])
                    if killed.is_set():  # no end of data after the kill: keep the record exact
                        return
                    mark(key, IN_DOUBT)
                    c.send(b".\r\n")
                    code, _ = c.reply()
                    mark(key, ACKED if code == 250 else REFUSED_STATE)
                assert c.cmd(b"QUIT\r\n")[0] == 221
    except (OSError, EOFError, AssertionError) as e:
        if not killed.is_set():  # after the kill, failing is what clients do
            errors.append((rnd, index, repr(e)))


def test_sigkill_at_random_moments_twenty_times_loses_and_duplicates_nothing(make_pigeond):
    d = make_pigeond()
    seed = int(os.environ.get("PIGEON_TEST_SEED", time.time()))  # to repeat a run
    rng = random.Random(seed)
    state = {}
    lock = threading.Lock()
    started = time.time()
    for rnd in range(KILL_ROUNDS):
        if rnd > 0:
            d.start()
        killed = threading.Event()
        errors = []
        threads = [threading.Thread(target=kill_sender,
                                    args=(d.port, rnd, i, state, lock, killed, errors))
                   for i in range(KILL_SENDERS)]
        for t in threads:
            t.start()
        time.sleep(rng.uniform(0.05, 1.0))
        killed.set()
        d.kill9()
        for t in threads:
            t.join(20)
        assert not any(t.is_alive() for t in threads)
        assert not errors, errors
        assert time.time() - started < 80, "too slow: round %d" % rnd

    # A last run without a kill: recovery, delivery of what is left, and ordinary mail.
    d.start()
    for i in range(KILL_SENDERS):
        send_final(d.port, i, state, lock)
    assert d.wait_spool_empty(), d.log()[-3000:]
    assert d.stop() == 0

    delivered = {}
    for i in range(KILL_SENDERS):
        for msg in d.messages(kill_user(i)):
            m = KILL_SUBJECT.search(msg)
            assert m, msg[:300]
            delivered.setdefault(m[1], []).append(msg)
    assert set(delivered) <= set(state), set(delivered) - set(state)
    counts = {s: 0 for s in (UNSENT, INCOMPLETE, IN_DOUBT, ACKED, REFUSED_STATE)}
    in_doubt_delivered = duplicates = 0
    problems = []
    for key, s in state.items():
        counts[s] += 1
        copies = delivered.get(key, [])
        if len(copies) > 1:
            duplicates += len(copies) - 1
        for msg in copies:
            if not msg.endswith(b"\r\n" + kill_content(key)):
                problems.append((key, "stored copy differs from the message sent"))
        if s == ACKED and len(copies) != 1:
            problems.append((key, s, "%d copies" % len(copies)))
        elif s == IN_DOUBT:
            in_doubt_delivered += len(copies) > 0
            if len(copies) > 1:
                problems.append((key, s, "%d copies" % len(copies)))
        elif s in (UNSENT, INCOMPLETE, REFUSED_STATE) and copies:
            problems.append((key, s, "delivered, though its end of data was never sent"
                             if s != REFUSED_STATE else "delivered, though refused"))
    print("\nseed %d; %d kills in %.1f s: %d messages acknowledged, "
          "%d in doubt (%d of them delivered), %d cut short before their end of data, "
          "%d never started, %d refused; "
          "%d delivered in all, %d duplicates"
          % (seed, KILL_ROUNDS, time.time() - started, counts[ACKED], counts[IN_DOUBT],
             in_doubt_delivered, counts[INCOMPLETE], counts[UNSENT], counts[REFUSED_STATE],
             sum(len(c) for c in delivered.values()), duplicates))
    assert not problems, problems[:20]
    assert counts[ACKED] >= 2 * KILL_ROUNDS, "too few messages got through to test anything"
    assert counts[INCOMPLETE] + counts[IN_DOUBT] > 0, "no kill hit a message in flight"
    quarantine = d.dir / "var" / "spool" / "quarantine"
    assert list(quarantine.iterdir()) == [], "a crash is not damage"
    assert "damaged" not in d.log()


def send_final(port, index, state, lock):
    """One ordinary message from sender index after the last restart: it must get its 250."""
    key = b"kill-%02d-%d-%04d" % (KILL_ROUNDS, index, 0)
    with SmtpConn(port, source="127.0.0.1") as c:
        assert c.reply()[0] == 220
        assert c.cmd(b"EHLO final.test\r\n")[0] == 250
        assert c.cmd(b"MAIL FROM:<%s@kill.test>\r\n" % key)[0] == 250
        assert c.cmd(b"RCPT TO:<%s@localhost>\r\n" % kill_user(index).encode())[0] == 250
        assert c.cmd(b"DATA\r\n")[0] == 354
        with lock:
            state[key] = IN_DOUBT
        code, lines = c.cmd(kill_content(key) + b".\r\n")
        assert code == 250, lines
        with lock:
            state[key] = ACKED


# ---- a full disk --------------------------------------------------------------------


@pytest.fixture
def pigeond_on_small_disk(workdir, make_pigeond):
    """pigeond whose spool and Maildirs are on a 3 MB tmpfs (root only)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    var = workdir / "var"
    var.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m,mode=0755", "tmpfs", str(var)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip("cannot mount a tmpfs: %s" % r.stderr.strip())
    d = None
    try:
        d = make_pigeond(start=False)
        d.start()
        yield d
    finally:
        try:
            if d is not None:
                d.stop()  # before the unmount: pigeond holds files there
        finally:
            if subprocess.run(["umount", str(var)]).returncode != 0:
                subprocess.run(["umount", "-l", str(var)])


def fill(path):
    """Append to path until the filesystem is full; its size then."""
    block = b"\0" * 65536
    with open(path, "ab", buffering=0) as f:
        while True:
            try:
                f.write(block)
            except OSError as e:
                if e.errno != errno.ENOSPC:
                    raise
                break
        # What is left is smaller than a block: take it too.
        for size in (16384, 4096, 1024, 1):
            while True:
                try:
                    f.write(block[:size])
                except OSError as e:
                    if e.errno != errno.ENOSPC:
                        raise
                    break
    return path.stat().st_size


def test_full_disk_gets_452_never_250_and_mail_flows_once_there_is_room(pigeond_on_small_disk):
    d = pigeond_on_small_disk
    filler = d.dir / "var" / "filler"
    msgdir = d.dir / "var" / "spool" / "msg"
    size = fill(filler)

    # Full to the last byte: even a small message cannot be stored.
    code, lines = send_message(d.port, "127.0.0.1", "disk", b"disk-small", b"small")
    assert code == 452 and lines[0].startswith(b"452 4.3.1 "), lines

    # Room for part of a message: the disk fills in the middle of it.
    os.truncate(filler, size - 256 * 1024)
    big = b"\r\n".join(b"line %06d of a message too big for the room left" % i
                       for i in range(20000))  # 1 MB
    code, lines = send_message(d.port, "127.0.0.1", "disk", b"disk-big", big)
    assert code == 452 and lines[0].startswith(b"452 4.3.1 "), lines

    time.sleep(0.5)  # a delivery that should not happen would have happened
    assert d.messages("disk") == []
    assert list(msgdir.iterdir()) == [], "a refused message left in the queue"
    assert d.proc.poll() is None

    # Room again: the next message is accepted and delivered, and only it.
    filler.unlink()
    code, lines = send_message(d.port, "127.0.0.1", "disk", b"disk-after", b"after")
    assert code == 250, lines
    assert d.wait_for_messages("disk", 1)
    time.sleep(0.3)  # nothing else is on its way
    msgs = d.messages("disk")
    assert len(msgs) == 1 and b"Subject: disk-after\r\n" in msgs[0], msgs
    assert d.proc.poll() is None
    assert d.stop() == 0


def test_a_message_refused_for_a_full_disk_is_logged(pigeond_on_small_disk):
    d = pigeond_on_small_disk
    fill(d.dir / "var" / "filler")
    code, lines = send_message(d.port, "127.0.0.1", "disk", b"disk-logged", b"logged")
    assert code == 452, lines
    qid = re.search(r"(\w{14}): client=127\.0\.0\.1, session=\d+, from=<sender@client\.test>",
                    d.log())[1]
    time.sleep(0.5)
    said = [line for line in d.log().splitlines() if qid in line and
            ("No space left on device" in line or "storage" in line)]
    assert said, d.log()[-2000:]


# ---- least privilege ----------------------------------------------------------------


def status_fields(path):
    fields = {}
    for line in pathlib.Path(path).read_text().splitlines():
        name, _, value = line.partition(":")
        fields[name] = value.split()
    return fields


def test_pigeond_started_as_root_runs_as_pigeon_in_every_thread(make_pigeond):
    if os.geteuid() != 0:
        pytest.skip("pigeond only changes user when started as root")
    try:
        pw = pwd.getpwnam("pigeon")
    except KeyError:
        pytest.skip("no pigeon user on this machine")
    d = make_pigeond()
    uid, gid = str(pw.pw_uid), str(pw.pw_gid)
    tasks = sorted((pathlib.Path("/proc/%d/task" % d.proc.pid)).iterdir())
    assert len(tasks) > 1  # the queue thread and the workers too
    for task in tasks:
        f = status_fields(task / "status")
        # real, effective, saved and filesystem ids
        assert f["Uid"] == [uid] * 4, (task, f["Uid"])
        assert f["Gid"] == [gid] * 4, (task, f["Gid"])
        assert f["Groups"] == [gid], (task, f["Groups"])
        assert int(f["CapEff"][0], 16) == 0 and int(f["CapPrm"][0], 16) == 0, (task, f)
    assert "running as user pigeon (uid %s)" % uid in d.log()


@pytest.mark.parametrize("user, complaint", [
    ("root", 'user "root" is root'),
    ("no-such-pigeon-user", 'user "no-such-pigeon-user" does not exist'),
])
def test_pigeond_refuses_to_run_as_root_or_as_a_missing_user(workdir, user, complaint):
    if os.geteuid() != 0:
        pytest.skip("pigeond only changes user when started as root")
    port = free_port()
    conf = workdir / "pigeond.conf"
    text = config_text(port)
    assert 'user "pigeon"' in text
    conf.write_text(text.replace('user "pigeon"', 'user "%s"' % user))
    r = subprocess.run([PIGEOND, "-d", "-f", str(conf)], cwd=workdir, capture_output=True,
                       text=True, timeout=10)
    assert r.returncode != 0, (r.stdout, r.stderr)
    assert complaint in r.stderr, r.stderr
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
