"""The two servers under test, and how their resources are counted.

bench.py starts each server fresh for every measurement, in a directory of its
own under one parent (the work directory), so that both spools and both
Maildirs live on the same filesystem in sibling directories:

    WORK/pigeond/  pigeond.conf  spool/  mail/somebody/Maildir/  pigeond.log
    WORK/postfix/  etc/  spool/  data/  mail/somebody/Maildir/  postfix.log

Every server runs in a cgroup of its own (created here, removed when it
stops), which gives its CPU time and memory without caring how many
processes it forks.  Where cgroups cannot be used, the same figures come
from /proc, summed over the server's process tree.

Memory is reported as the sum of the processes' PSS (proportional set size,
from /proc/PID/smaps_rollup): it charges a shared library page to the
processes that share it in equal parts, so that Postfix's many processes are
not counted once per process.  The cgroup's own charge is recorded as well;
it includes kernel memory such as socket buffers, and we subtract the page
cache, which holds the mail just written and belongs to nobody in particular.
"""

import os
import pathlib
import pwd
import signal
import socket
import subprocess
import time

CGROUP_ROOT = pathlib.Path("/sys/fs/cgroup")
MAILBOX = "somebody"  # the one recipient all load is sent to: somebody@localhost


def free_port():
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_greeting(port, timeout, alive):
    """Wait until a 220 greeting comes from 127.0.0.1:port; alive() says whether to keep trying."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive():
            return False
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
                if s.recv(512).startswith(b"220"):
                    s.sendall(b"QUIT\r\n")
                    return True
        except OSError:
            pass
        time.sleep(0.05)
    return False


def count_files(path):
    """How many entries a directory holds; 0 if it does not exist yet."""
    try:
        with os.scandir(path) as it:
            return sum(1 for _ in it)
    except FileNotFoundError:
        return 0


def pss_bytes(pid):
    """A process's proportional set size in bytes, 0 if it is gone."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) * 1024
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        pass
    return 0


def status_kib(pid, field):
    """A field of /proc/PID/status in KiB (VmRSS, VmHWM), 0 if the process is gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        pass
    return 0


def proc_children():
    """Map of parent pid to child pids, from /proc."""
    children = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except (FileNotFoundError, ProcessLookupError):
            continue
        ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    return children


def proc_tree(root):
    """root and all its descendants."""
    children = proc_children()
    pids, todo = [], [root]
    while todo:
        pid = todo.pop()
        pids.append(pid)
        todo.extend(children.get(pid, []))
    return pids


def proc_cpu_ns(pid):
    """CPU time of a process and its reaped children, in ns (0 if gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return 0
    fields = stat[stat.rindex(")") + 2 :].split()
    # utime, stime, cutime, cstime are fields 14-17 of proc(5); fields[0] is field 3.
    ticks = sum(int(x) for x in fields[11:15])
    return ticks * 1_000_000_000 // os.sysconf("SC_CLK_TCK")


class Accounting:
    """CPU and memory of one server: a cgroup if we can make one, else its /proc tree.

    Use: join() in the child before exec (as preexec_fn), set_root(pid) once the
    main process is known, then cpu_ns(), pids(), memory(), and remove() at the end.
    """

    def __init__(self, name):
        self.name = name
        self.root = None
        self.kind = "proc"
        self.dirs = {}  # controller -> cgroup directory
        try:
            self._make_cgroups()
        except OSError as e:
            self._remove_dirs()
            self.note = f"cgroups unusable ({e}); using /proc"

    def _make_cgroups(self):
        leaf = f"pigeon-bench-{self.name}-{os.getpid()}"
        controllers = (CGROUP_ROOT / "cgroup.controllers").read_text().split() if (
            CGROUP_ROOT / "cgroup.controllers").exists() else None
        if controllers is not None:
            if "memory" not in controllers:
                raise OSError("cgroup v2 without the memory controller")
            enabled = (CGROUP_ROOT / "cgroup.subtree_control").read_text().split()
            if "memory" not in enabled:
                raise OSError("cgroup v2: memory not enabled in /sys/fs/cgroup/cgroup.subtree_control")
            d = CGROUP_ROOT / leaf
            d.mkdir()
            self.dirs = {"unified": d}
            self.kind = "cgroup2"
        else:
            for ctl in ("cpuacct", "memory"):
                base = CGROUP_ROOT / ctl
                if not (base / "cgroup.procs").exists():
                    raise OSError(f"no cgroup v1 {ctl} hierarchy at {base}")
                # Nest under the cgroup we are in ourselves, so that whatever
                # limits apply to us apply to the server too.
                d = base / self._own_cgroup(ctl).lstrip("/") / leaf
                d.mkdir()
                self.dirs[ctl] = d
            self.kind = "cgroup1"
        self.note = f"{self.kind}: " + ", ".join(str(d) for d in self.dirs.values())

    @staticmethod
    def _own_cgroup(controller):
        for line in open("/proc/self/cgroup"):
            _, ctls, path = line.rstrip("\n").split(":", 2)
            if controller in ctls.split(","):
                return path
        return "/"

    def join(self):
        """Put the calling process into the server's cgroups (called between fork and exec)."""
        for d in self.dirs.values():
            (d / "cgroup.procs").write_text(str(os.getpid()))

    def set_root(self, pid):
        self.root = pid

    def pids(self):
        if self.kind == "proc":
            return proc_tree(self.root) if self.root else []
        d = next(iter(self.dirs.values()))
        return [int(x) for x in (d / "cgroup.procs").read_text().split()]

    def cpu_ns(self):
        """CPU time used so far by everything the server ran, in ns."""
        if self.kind == "cgroup2":
            for line in (self.dirs["unified"] / "cpu.stat").read_text().splitlines():
                if line.startswith("usage_usec "):
                    return int(line.split()[1]) * 1000
        if self.kind == "cgroup1":
            return int((self.dirs["cpuacct"] / "cpuacct.usage").read_text())
        return sum(proc_cpu_ns(p) for p in self.pids())

    def memory(self):
        """Memory now, in bytes: PSS and RSS summed over the server's processes, the
        main process's RSS, and the cgroup's charge without page cache (or None)."""
        pids = self.pids()
        out = {
            "pss": sum(pss_bytes(p) for p in pids),
            "rss": sum(status_kib(p, "VmRSS") for p in pids) * 1024,
            "rss_main": status_kib(self.root, "VmRSS") * 1024 if self.root else 0,
            "nproc": len(pids),
            "cgroup": None,
        }
        if self.kind == "cgroup2":
            d = self.dirs["unified"]
            stat = self._stat(d / "memory.stat")
            out["cgroup"] = int((d / "memory.current").read_text()) - stat.get("file", 0)
        elif self.kind == "cgroup1":
            d = self.dirs["memory"]
            stat = self._stat(d / "memory.stat")
            out["cgroup"] = int((d / "memory.usage_in_bytes").read_text()) - stat.get("cache", 0)
        return out

    def cgroup_peak(self):
        """The cgroup's peak charge in bytes (page cache included), or None."""
        for name in ("memory.peak", "memory.max_usage_in_bytes"):
            for d in self.dirs.values():
                if (d / name).exists():
                    return int((d / name).read_text())
        return None

    @staticmethod
    def _stat(path):
        return {k: int(v) for k, v in (line.split() for line in path.read_text().splitlines())}

    def remove(self):
        """Remove the cgroups; the server's processes must have exited."""
        deadline = time.monotonic() + 10
        while self.dirs and self.pids() and time.monotonic() < deadline:
            time.sleep(0.1)
        self._remove_dirs()

    def _remove_dirs(self):
        for d in self.dirs.values():
            for _ in range(50):
                try:
                    d.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.1)
        self.dirs = {}


def fresh_dir(path):
    """An empty directory at path.  A previous run's directory is moved into
    the work dir's trash/, not deleted: on ext4 a file created soon after
    many are deleted waits while the allocator steps over the freshly freed
    inodes (recently_deleted(), a 60 to 360 second window), which would make
    every run pay for the one before.  bench.py empties the trash at the end."""
    path = pathlib.Path(path)
    if path.exists():
        trash = path.parent / "trash"
        trash.mkdir(exist_ok=True)
        n = sum(1 for _ in trash.iterdir())
        path.rename(trash / f"{path.name}-{n}")
    path.mkdir(parents=True)
    return path


class Server:
    """What bench.py needs of a server: start(), stop(), port, maildir, acct, name.

    If trace is set before start() (a command prefix such as ["strace", ...]),
    the server is started under it, from its first instruction.
    """

    name = "?"
    trace = None

    def maildir_new(self):
        return self.dir / "mail" / MAILBOX / "Maildir" / "new"

    def delivered(self):
        return count_files(self.maildir_new())


class Pigeond(Server):
    name = "pigeond"

    def __init__(self, workdir, binary, user="pigeon", nofile=None):
        self.dir = fresh_dir(pathlib.Path(workdir) / "pigeond")
        self.binary = binary
        self.port = free_port()
        self.nofile = nofile
        self.conf = self.dir / "pigeond.conf"
        self.conf.write_text(
            "\n".join([
                'hostname "bench.test"',
                f'user "{user}"',
                f'queue "{self.dir}/spool" sync syncfs',
                "trusted { 127.0.0.0/8, ::1 }",
                f"listen on 127.0.0.1 port {self.port}",
                "table domains { localhost }",
                f'action "local" maildir "{self.dir}/mail/%{{user}}/Maildir"',
                'match from any for domain <domains> action "local"',
                "limit sessions 20000",
            ]) + "\n")
        self.log = self.dir / "pigeond.log"
        self.proc = None
        self.acct = None

    def start(self):
        self.acct = Accounting(self.name)
        log = open(self.log, "ab")

        def child():
            self.acct.join()
            raise_nofile(self.nofile)

        self.proc = subprocess.Popen((self.trace or []) + [self.binary, "-d", "-f", str(self.conf)],
                                     cwd=self.dir, stdout=log, stderr=log,
                                     stdin=subprocess.DEVNULL, preexec_fn=child)
        log.close()
        # Under a tracer, pigeond is the tracer's child.
        self.pid = self.proc.pid if self.trace is None else traced_child(self.proc.pid)
        self.acct.set_root(self.pid)
        if not wait_for_greeting(self.port, 15, lambda: self.proc.poll() is None):
            self.stop()
            raise RuntimeError("pigeond did not start; see " + str(self.log))

    def stop(self):
        if self.proc and self.proc.poll() is None:
            os.kill(self.pid, signal.SIGTERM)
            reap(self.proc, 30)
        if self.acct:
            self.acct.remove()

    def commit_stats(self):
        """The 'queue: N messages committed in M syncs' figures from the log, or None."""
        for line in reversed(self.log.read_text(errors="replace").splitlines()):
            if "messages committed in" in line:
                words = line.split("queue: ", 1)[1].split()
                return {"committed": int(words[0]), "syncs": int(words[4])}
        return None


POSTFIX_MASTER_CF = """\
# A private Postfix instance for the benchmark: no chroot, no TLS.
127.0.0.1:{port} inet n - n - {smtpd_limit} smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
local     unix  -       n       n       -       -       local
virtual   unix  -       n       n       -       -       virtual
lmtp      unix  -       -       n       -       -       lmtp
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""


class Postfix(Server):
    """A private Postfix instance: its own config, queue and data directories; never the system one.

    Mail for somebody@localhost goes through virtual(8) into a Maildir, as the
    same unprivileged user pigeond delivers as.  Durability is Postfix's
    default: cleanup(8) fsyncs each queue file, virtual(8) each Maildir file.
    """

    name = "postfix"

    def __init__(self, workdir, user="pigeon", smtpd_limit=None, nofile=None):
        self.dir = fresh_dir(pathlib.Path(workdir) / "postfix")
        self.port = free_port()
        self.nofile = nofile
        pw = pwd.getpwnam(user)
        etc, spool, data, mail = (self.dir / n for n in ("etc", "spool", "data", "mail"))
        for d in (etc, data, mail):
            d.mkdir()
        pf = pwd.getpwnam("postfix")
        os.chown(data, pf.pw_uid, pf.pw_gid)
        os.chown(mail, pw.pw_uid, pw.pw_gid)
        self.etc = etc
        self.log = self.dir / "postfix.log"
        (etc / "main.cf").write_text(f"""\
# A private Postfix instance for the benchmark (bench/servers.py).
compatibility_level = 3.6
myhostname = bench.test
mydomain = bench.test
myorigin = bench.test
config_directory = {etc}
queue_directory = {spool}
data_directory = {data}
maillog_file = {self.log}
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
mydestination =
relay_domains =
alias_maps =
alias_database =
local_recipient_maps =
biff = no
virtual_mailbox_domains = localhost
virtual_mailbox_base = {mail}
virtual_mailbox_maps = static:{MAILBOX}/Maildir/
virtual_uid_maps = static:{pw.pw_uid}
virtual_gid_maps = static:{pw.pw_gid}
smtpd_recipient_restrictions = permit_mynetworks, reject
default_process_limit = 300
smtpd_client_connection_count_limit = 0
smtpd_client_connection_rate_limit = 0
""")
        limit = "-" if smtpd_limit is None else str(smtpd_limit)
        (etc / "master.cf").write_text(POSTFIX_MASTER_CF.format(port=self.port, smtpd_limit=limit))
        # Postfix will not read a configuration file changed within the last
        # second (it might be half written) and waits; date ours back.
        past = time.time() - 60
        for f in ("main.cf", "master.cf"):
            os.utime(etc / f, (past, past))
        self.acct = None
        self.master = None
        self.tracer = None

    def _postfix(self, *args, preexec=None, check=True):
        return subprocess.run(["postfix", "-c", str(self.etc), *args], stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, preexec_fn=preexec, check=check)

    def start(self):
        self.acct = Accounting(self.name)

        def child():
            self.acct.join()
            raise_nofile(self.nofile)

        # "postfix start" checks the installation and creates the queue
        # directories, which takes seconds; we do that once, in a template
        # queue directory, and copy it.  Postfix's own quick-start marker then
        # tells it that the checks were done.
        spool = self.dir / "spool"
        template = self.dir.parent / ".postfix-spool-template"
        if not (template / "pid").is_dir():
            spool.mkdir()
            r = self._postfix("check", check=False)
            if r.returncode != 0:
                raise RuntimeError(f"postfix check failed:\n{r.stdout}{self.log_tail()}")
            subprocess.run(["cp", "-a", str(spool), str(template)], check=True)
        else:
            subprocess.run(["cp", "-a", str(template), str(spool)], check=True)
        (spool / "quick-start").touch()
        if self.trace is None:
            r = self._postfix("start", preexec=child, check=False)
        else:
            # The tracer lives as long as the last process it follows: do not wait for it.
            self.tracer = subprocess.Popen(self.trace + ["postfix", "-c", str(self.etc), "start"],
                                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                           preexec_fn=child)
            r = None
        pidfile = self.dir / "spool" / "pid" / "master.pid"
        try:
            if r is not None and r.returncode != 0:
                raise RuntimeError(f"postfix start failed:\n{r.stdout}{self.log_tail()}")
            deadline = time.monotonic() + 15
            while not pidfile.exists() and time.monotonic() < deadline:
                time.sleep(0.05)
            self.master = int(pidfile.read_text().split()[0])
            self.acct.set_root(self.master)
            if not wait_for_greeting(self.port, 15, lambda: pid_alive(self.master)):
                raise RuntimeError("postfix did not answer:\n" + self.log_tail())
        except Exception:
            self.stop()
            raise

    def stop(self):
        if self.master and pid_alive(self.master):
            self._postfix("stop", check=False)
            deadline = time.monotonic() + 30
            while pid_alive(self.master) and time.monotonic() < deadline:
                time.sleep(0.05)
        if self.tracer is not None:
            reap(self.tracer, 30)
        if self.acct:
            self.acct.remove()

    def log_tail(self, n=20):
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])
        except FileNotFoundError:
            return ""


def traced_child(tracer_pid, timeout=10):
    """The pid of the process a tracer started (its first child)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        children = proc_children().get(tracer_pid)
        if children:
            return min(children)
        time.sleep(0.01)
    raise RuntimeError(f"process {tracer_pid} started no child")


def reap(proc, timeout):
    """Wait for a child that was told to end; kill it if it takes longer than timeout."""
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def pid_alive(pid):
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False


def raise_nofile(want):
    """Raise the descriptor limit to want (or to the hard limit), as far as we may."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if want and want > hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, want))
            return
        except (ValueError, OSError):
            pass  # not allowed to raise the hard limit: take what there is
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
