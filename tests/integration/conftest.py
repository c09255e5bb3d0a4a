"""Fixtures for the integration tests: a real pigeond on a free loopback port.

Every test gets its own working directory (queue, mailboxes, log, config),
removed afterwards.  pigeond is the binary named by $PIGEOND (scripts/test
sets it), else build/src/pigeond.

    def test_something(pigeond):            # default-like configuration
        with smtp_session(pigeond.port) as s: ...
        assert pigeond.wait_for_messages("somebody", 1)

    def test_other(make_pigeond):           # a configuration of your own
        d = make_pigeond(trusted="192.0.2.0/24")   # loopback is untrusted
"""

import os
import pathlib
import re
import select
import signal
import socket
import subprocess
import tempfile
import threading
import time

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
PIGEOND = os.environ.get("PIGEOND") or str(ROOT / "build" / "src" / "pigeond")


def free_port():
    """A TCP port that nothing listens on right now (on 127.0.0.1)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def config_text(port, trusted="127.0.0.0/8, ::1", domains="localhost", listen=None,
                local_action='action "local" maildir "./var/mail/%{user}/Maildir"',
                extra="", limits=None, sync="syncfs"):
    """The built-in default configuration, with the knobs tests need."""
    listen = listen or ["127.0.0.1"]
    lines = [
        'hostname "pigeon.test"',
        'user "pigeon"',
        f'queue "./var/spool" sync {sync}',
        "workers 2",
    ]
    if trusted:
        lines.append("trusted { %s }" % trusted)
    lines += [f"listen on {a} port {port}" for a in listen]
    lines += [
        "table domains { %s }" % domains,
        local_action,
        'action "outbound" relay',
        'match from any for domain <domains> action "local"',
    ]
    if trusted:
        lines.append('match from trusted for any action "outbound"')
    for name, value in (limits or {}).items():
        lines.append(f"limit {name} {value}")
    lines.append(extra)
    return "\n".join(lines) + "\n"


class Pigeond:
    """One pigeond process with its own directory."""

    def __init__(self, workdir, port, text):
        self.dir = pathlib.Path(workdir)
        self.port = port
        self.conf = self.dir / "pigeond.conf"
        self.conf.write_text(text)
        self.logfile = self.dir / "pigeond.log"
        self.proc = None

    def start(self, timeout=30):
        # Counted before the start: a quick pigeond may say "ready" before
        # Popen returns, and a count taken after would wait for a second one.
        ready_before = self.log().count(" ready: ")
        log = open(self.logfile, "ab")
        self.proc = subprocess.Popen([PIGEOND, "-d", "-f", str(self.conf)], cwd=self.dir,
                                     stdout=log, stderr=log)
        log.close()
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("pigeond exited with %s:\n%s" % (self.proc.returncode, self.log()))
            # Our own pigeond said it is ready (not some other listener on the port).
            if self.log().count(" ready: ") > ready_before:
                try:
                    with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                        s.recv(100)
                        return self
                except OSError:
                    pass
            time.sleep(0.05)
        raise RuntimeError("pigeond did not start listening:\n" + self.log() + self.diagnosis())

    def diagnosis(self):
        """What pigeond's threads are doing, and the sockets on its port: for failures."""
        lines = []
        try:
            for t in sorted(os.listdir("/proc/%d/task" % self.proc.pid)):
                base = "/proc/%d/task/%s/" % (self.proc.pid, t)
                state = open(base + "stat").read().rsplit(")", 1)[1].split()[0]
                wchan = open(base + "wchan").read()
                lines.append("thread %s: state %s, waiting in %s" % (t, state, wchan or "-"))
        except OSError as e:
            lines.append("threads: %s" % e)
        try:
            r = subprocess.run(["ss", "-tanpi", "( sport = :%d or dport = :%d )"
                                % (self.port, self.port)], capture_output=True, text=True)
            lines.append(r.stdout + r.stderr)
        except OSError as e:
            lines.append("ss: %s" % e)
        return "\n--- diagnosis ---\n" + "\n".join(lines)

    def stop(self, timeout=10):
        """SIGTERM, and wait; returns the exit status."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise

    def kill9(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def sanitizer_reports(self):
        """AddressSanitizer, LeakSanitizer or UBSan reports in the log (sanitizer builds)."""
        text = self.log()
        marks = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:",
                 "WARNING: ThreadSanitizer")
        return ["sanitizer report in %s:\n%s" % (self.logfile, text[-4000:])
                for m in marks if m in text][:1]

    def log(self):
        try:
            return self.logfile.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def maildir(self, user):
        return self.dir / "var" / "mail" / user / "Maildir"

    def messages(self, user):
        """The files in a Maildir's new/, oldest name first, as bytes."""
        new = self.maildir(user) / "new"
        if not new.is_dir():
            return []
        return [p.read_bytes() for p in sorted(new.iterdir())]

    def wait_for_messages(self, user, count, timeout=10):
        """Wait until user's Maildir holds at least count messages; return them."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            msgs = self.messages(user)
            if len(msgs) >= count:
                return msgs
            time.sleep(0.02)
        return self.messages(user)

    def wait_spool_empty(self, timeout=30):
        """Wait until the queue has handed every message to the mailboxes (spool/msg empty)."""
        msgdir = self.dir / "var" / "spool" / "msg"
        deadline = time.time() + timeout
        while time.time() < deadline:
            if not any(msgdir.iterdir()):
                time.sleep(0.2)  # and for the last deliveries' files to be linked
                return True
            time.sleep(0.05)
        return False

    def wait_for_log(self, text, timeout=10):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if text in self.log():
                return True
            time.sleep(0.02)
        return False


@pytest.fixture
def workdir():
    """A directory the unprivileged pigeon user can reach (pytest's tmp_path is 0700)."""
    d = tempfile.mkdtemp(prefix="pigeon-test-")
    os.chmod(d, 0o755)
    yield pathlib.Path(d)
    subprocess.run(["rm", "-rf", d], check=False)


@pytest.fixture
def make_pigeond(workdir):
    """A factory: make_pigeond(**config_text knobs) or make_pigeond(text=...)."""
    started = []

    def make(text=None, start=True, **knobs):
        fixed_port = knobs.pop("port", None)
        for attempt in range(3):
            port = fixed_port or free_port()
            d = Pigeond(workdir, port, text if text is not None else config_text(port, **knobs))
            started.append(d)
            if not start:
                return d
            try:
                return d.start()
            except RuntimeError as e:
                # The free port was taken before pigeond bound it: another one.
                if "Address already in use" not in str(e) or text is not None or fixed_port:
                    raise
                started.remove(d)
        raise RuntimeError("no free port for pigeond after 3 attempts")

    yield make
    problems = []
    for d in started:
        try:
            d.stop()
        except Exception as e:  # a pigeond that will not stop is a failure too
            problems.append("pigeond did not stop: %r" % e)
        problems += d.sanitizer_reports()
    if problems:
        pytest.fail("\n".join(problems), pytrace=False)


@pytest.fixture
def pigeond(make_pigeond):
    """pigeond on the default-like configuration (loopback trusted)."""
    return make_pigeond()


class SmtpConn:
    """A raw SMTP connection: send bytes exactly, read whole replies.

    source binds the client end to an address of 127.0.0.0/8 (to look like
    another client); readahead=False reads byte by byte, so that silent()
    can tell with select() whether the server has said anything more.
    """

    def __init__(self, port, host="127.0.0.1", timeout=10, source=None, readahead=True):
        self.sock = socket.create_connection((host, port), timeout=timeout,
                                             source_address=(source, 0) if source else None)
        self.file = self.sock.makefile("rb", buffering=-1 if readahead else 0)

    def silent(self, wait=0.3):
        """True when the server sends nothing for wait seconds (needs readahead=False)."""
        readable, _, _ = select.select([self.sock], [], [], wait)
        return not readable

    def replies(self, n):
        return [self.reply() for _ in range(n)]

    def send(self, data):
        if isinstance(data, str):
            data = data.encode()
        self.sock.sendall(data)

    def reply(self):
        """One reply, all its lines: (code, [lines as bytes without CRLF])."""
        lines = []
        while True:
            line = self.file.readline()
            if not line:
                raise EOFError("connection closed; got %r" % lines)
            assert line.endswith(b"\r\n"), line
            lines.append(line[:-2])
            if line[3:4] != b"-":
                return int(line[:3]), lines

    def cmd(self, data):
        self.send(data)
        return self.reply()

    def closed(self, timeout=5):
        """True when the server has closed the connection."""
        self.sock.settimeout(timeout)
        try:
            return self.sock.recv(1) == b""
        except (ConnectionResetError, BrokenPipeError):
            return True

    def close(self):
        # The file from makefile() holds the descriptor too: close both, or
        # pigeond never sees the connection end.
        for f in (self.file, self.sock):
            try:
                f.close()
            except OSError:
                pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# The trace headers pigeond puts at the top of every stored message, as the
# default-like test configuration writes them (hostname "pigeon.test").
TRACE = re.compile(
    rb"Return-Path: <(?P<sender>[^\r\n]*)>\r\n"
    rb"Received: from (?P<helo>[^ \r\n]+) \(\[127\.0\.0\.1\]\)\r\n"
    rb"\tby pigeon\.test \(Pigeon\) with (?P<proto>[A-Z0-9]+) id (?P<id>[0-9A-Z]{14})"
    rb"(?:\r\n\tfor <(?P<rcpt>[^\r\n]*)>)?;\r\n"
    rb"\t(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun), [0-9]{1,2} "
    rb"(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) [0-9]{4} "
    rb"[0-9]{2}:[0-9]{2}:[0-9]{2} [+-][0-9]{4}\r\n")


@pytest.fixture
def sessions():
    """open(port, ehlo=None) -> an SmtpConn without read-ahead, past the 220
    greeting (and EHLO, if a name is given); all closed afterwards."""
    opened = []

    def open_(port, ehlo=None):
        s = SmtpConn(port, readahead=False)
        opened.append(s)
        assert s.reply() == (220, [b"220 pigeon.test ESMTP Pigeon"])
        if ehlo is not None:
            assert s.cmd(b"EHLO " + ehlo + b"\r\n")[0] == 250
        return s

    yield open_
    for s in opened:
        s.close()


@pytest.fixture
def connect(pigeond):
    """connect() -> an SmtpConn to the default pigeond, greeting already read."""
    conns = []

    def make(port=None):
        c = SmtpConn(port or pigeond.port)
        conns.append(c)
        code, _ = c.reply()
        assert code == 220
        return c

    yield make
    for c in conns:
        c.close()


# ---- foreign servers: Python's aiosmtpd and Postfix's smtp-sink --------------------------------

class Recorder:
    """An aiosmtpd handler that keeps each transaction as it came."""

    def __init__(self):
        self.got = []
        self.event = threading.Event()

    async def handle_DATA(self, server, session, envelope):
        self.got.append((envelope.mail_from, list(envelope.rcpt_tos),
                         envelope.original_content, list(envelope.mail_options)))
        self.event.set()
        return "250 2.0.0 Ok: recorded"


@pytest.fixture
def aiosmtpd_server():
    controller_mod = pytest.importorskip("aiosmtpd.controller")
    recorder = Recorder()
    port = free_port()
    c = controller_mod.Controller(recorder, hostname="127.0.0.1", port=port)
    c.start()
    recorder.port = port
    yield recorder
    c.stop()


SMTP_SINK = "/usr/sbin/smtp-sink"


@pytest.fixture
def smtp_sink():
    """start(*options) -> port of an smtp-sink with those options."""
    if not os.access(SMTP_SINK, os.X_OK):
        pytest.skip("smtp-sink (Debian package postfix) is not installed")
    procs = []

    def start(*options):
        port = free_port()
        user = ["-u", "nobody"] if os.getuid() == 0 else []
        p = subprocess.Popen([SMTP_SINK, *user, *options, "127.0.0.1:%d" % port, "10"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs.append(p)
        deadline = time.time() + 5
        while time.time() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return port
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("smtp-sink did not start")

    yield start
    for p in procs:
        p.kill()
        p.wait()
