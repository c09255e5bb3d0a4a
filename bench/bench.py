#!/usr/bin/python3
"""bench.py - pigeond against Postfix, same load, same machine, one after the other.

bench/run.sh is the front door (it installs what is missing and builds
pigeond first); this program does the measuring.  For every repetition and
every measurement it starts a fresh server (servers.py), loads it, reads its
CPU and memory, stops it, and does the same with the other server; then it
prints a Markdown table of medians with min-max and the ratio
pigeond/Postfix, and saves every raw number as JSON in bench/results/.

The rows, and what measures them, are listed in ROWS; bench/README.md says
what each one means and where it can mislead.
"""

import argparse
import datetime
import fnmatch
import json
import os
import pathlib
import platform
import shutil
import statistics
import subprocess
import sys
import threading
import time

import servers

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent
PYTHON = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable
SENDER, RECIPIENT = "from@example.org", f"{servers.MAILBOX}@localhost"
SIZES = {"1k": 1024, "100k": 100 * 1024}
SESSIONS = (1, 10, 50, 200)
SYNC_CALLS = ("fsync", "fdatasync", "syncfs", "sync_file_range", "sync", "msync")

# Messages per accept run, by (size, reused?) and sessions: a few seconds of
# Postfix on a 2-core VM, and not much under a second of pigeond, whose short
# runs are the noisiest.  --quick divides them by 10.
ACCEPT_COUNT = {
    ("1k", True): {1: 600, 10: 3000, 50: 5000, 200: 5000},
    ("1k", False): {1: 600, 10: 2000, 50: 3000, 200: 3000},
    ("100k", True): {1: 300, 10: 1000, 50: 1500, 200: 1500},
    ("100k", False): {1: 300, 10: 1000, 50: 1500, 200: 1500},
}


class Row:
    """One line of the table: which measurement feeds it and how to read the value out."""

    def __init__(self, key, label, measurement, metric, unit, better, fmt):
        self.key, self.label, self.measurement = key, label, measurement
        self.metric, self.unit, self.better, self.fmt = metric, unit, better, fmt


def accept_key(size, reuse, sessions):
    return f"accept-{size}-{'reuse' if reuse else 'new'}-{sessions}"


def make_rows():
    rows = []
    for size in SIZES:
        for reuse in (True, False):
            for s in SESSIONS:
                how = "sessions reused" if reuse else "new connection per message"
                rows.append(Row(accept_key(size, reuse, s),
                                f"accepted msg/s, {size.upper().replace('K', ' KB')}, "
                                f"{s} session{'s' if s > 1 else ''}, {how}",
                                ("accept", size, reuse, s), "rate", "msg/s", "higher", "{:.0f}"))
    rows += [
        Row("e2e", "end-to-end msg/s into the Maildir (50 sessions, 1 KB)", ("e2e",), "rate",
            "msg/s", "higher", "{:.0f}"),
        Row("cpu", "server CPU ms per message, accept + delivery (e2e run)", ("e2e",),
            "cpu_ms_per_msg", "ms", "lower", "{:.3f}"),
        Row("fsync", "fsync-family calls per message (50 sessions, strace)", ("fsync",),
            "syncs_per_msg", "", "lower", "{:.3f}"),
        Row("peak-memory", "peak memory, MB PSS (200 sessions, 100 KB, reused)",
            ("accept", "100k", True, 200), "peak_pss_mb", "MB", "lower", "{:.1f}"),
        Row("idle-server-memory", "idle server memory, MB PSS", ("idle",), "base_pss_mb", "MB",
            "lower", "{:.1f}"),
        Row("idle-server-rss", "idle server memory, MB RSS (summed over processes)", ("idle",),
            "base_rss_mb", "MB", "lower", "{:.1f}"),
        Row("idle-sessions-memory", "memory with N idle sessions past EHLO, MB PSS", ("idle",),
            "held_pss_mb", "MB", "lower", "{:.1f}"),
        Row("idle-sessions-cgroup", "same, cgroup charge above idle, MB (incl. kernel)",
            ("idle",), "held_cgroup_delta_mb", "MB", "lower", "{:.1f}"),
        Row("idle-sessions-ready", "idle sessions that got past EHLO", ("idle",), "ready", "",
            None, "{:.0f}"),
        Row("idle-mail-through", "messages delivered (of 10) while they are held", ("idle",),
            "mail_through", "", None, "{:.0f}"),
        Row("latency-p50", "end of DATA to 250, p50 ms (S sessions)", ("latency",), "p50_ms",
            "ms", "lower", "{:.2f}"),
        Row("latency-p99", "end of DATA to 250, p99 ms (S sessions)", ("latency",), "p99_ms",
            "ms", "lower", "{:.2f}"),
    ]
    return rows


# ---------------------------------------------------------------------------
# Helpers shared by the measurements


class MemorySampler:
    """Samples a server's memory every interval seconds in a thread; keeps the peaks."""

    def __init__(self, acct, interval=0.25):
        self.acct, self.interval = acct, interval
        self.peak_pss = 0
        self.peak_cgroup = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while True:
            self.sample()
            if self._stop.wait(self.interval):
                break

    def sample(self):
        m = self.acct.memory()
        self.peak_pss = max(self.peak_pss, m["pss"])
        if m["cgroup"] is not None:
            self.peak_cgroup = max(self.peak_cgroup or 0, m["cgroup"])

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.sample()


def smtp_source(port, size, count, sessions, reuse):
    cmd = ["smtp-source", "-l", str(size), "-m", str(count), "-s", str(sessions),
           "-f", SENDER, "-t", RECIPIENT]
    if reuse:
        cmd.append("-d")  # -d: don't disconnect, send the next message over the same session
    return cmd + [f"127.0.0.1:{port}"]


def run_checked(cmd, timeout):
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                       timeout=timeout)
    if r.returncode != 0:
        raise RuntimeError(f"{cmd[0]} exited with {r.returncode}: {r.stdout.strip()[-500:]}")
    return r.stdout


def wait_delivered(server, count, timeout):
    """Wait until the Maildir holds count messages; the time it happened, or None."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.delivered() >= count:
            return time.monotonic()
        time.sleep(0.02)
    return None


MB = 1024 * 1024


# ---------------------------------------------------------------------------
# The measurements.  Each gets a started server and returns a dict of numbers.


def measure_accept(server, cfg, size, reuse, sessions):
    """Messages accepted per second: smtp-source's wall time for COUNT messages."""
    count = cfg.accept_count(size, reuse, sessions)
    cmd = smtp_source(server.port, SIZES[size], count, sessions, reuse)
    cpu0 = server.acct.cpu_ns()
    with MemorySampler(server.acct) as mem:
        t0 = time.monotonic()
        run_checked(cmd, timeout=cfg.run_timeout)
        elapsed = time.monotonic() - t0
        cpu = server.acct.cpu_ns() - cpu0
    return {"count": count, "seconds": elapsed, "rate": count / elapsed,
            "cpu_ms_per_msg_during_accept": cpu / 1e6 / count,
            "peak_pss_mb": mem.peak_pss / MB,
            "peak_cgroup_noncache_mb": mem.peak_cgroup / MB if mem.peak_cgroup else None}


def measure_e2e(server, cfg):
    """From the start of the load until every message is a file in Maildir/new."""
    count = cfg.e2e_count
    cmd = smtp_source(server.port, SIZES["1k"], count, 50, True)
    cpu0 = server.acct.cpu_ns()
    with MemorySampler(server.acct) as mem:
        t0 = time.monotonic()
        client = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                  text=True)
        done = wait_delivered(server, count, cfg.run_timeout)
        out, _ = client.communicate(timeout=cfg.run_timeout)
        cpu = server.acct.cpu_ns() - cpu0
    if client.returncode != 0:
        raise RuntimeError(f"smtp-source exited with {client.returncode}: {out.strip()[-500:]}")
    if done is None:
        raise RuntimeError(f"only {server.delivered()} of {count} messages delivered "
                           f"in {cfg.run_timeout} s")
    return {"count": count, "seconds": done - t0, "rate": count / (done - t0),
            "cpu_ms_per_msg": cpu / 1e6 / count, "peak_pss_mb": mem.peak_pss / MB}


def measure_fsync(server, cfg):
    """fsync-family system calls per message, logged by strace for every server process.

    The server was started under strace --seccomp-bpf (start_server), so
    only these calls stop the traced processes and the server runs at
    nearly full speed.  Calls are counted from just before the load starts
    until a second after the last message is in the Maildir, so delivery is
    included and start-up is not.  This run stops the server to read the
    whole trace.
    """
    count = cfg.fsync_count
    t0 = time.time()
    run_checked(smtp_source(server.port, SIZES["1k"], count, 50, True), cfg.run_timeout)
    if wait_delivered(server, count, cfg.run_timeout) is None:
        raise RuntimeError(f"only {server.delivered()} of {count} messages delivered")
    time.sleep(1.0)  # syncs that finish the deliveries off
    t1 = time.time()
    server.stop()
    calls, lifetime = {}, 0
    for line in (server.dir / "strace.out").read_text().splitlines():
        # "PID SECONDS.MICROS fsync(7) = 0", or "... fsync(7 <unfinished ...>"
        words = line.split(None, 2)
        if len(words) < 3:
            continue
        name = words[2].split("(", 1)[0]
        if name in SYNC_CALLS:
            lifetime += 1
            if t0 <= float(words[1]) <= t1:
                calls[name] = calls.get(name, 0) + 1
    return {"count": count, "calls": calls, "syncs_per_msg": sum(calls.values()) / count,
            "calls_in_server_lifetime": lifetime}


def measure_idle(server, cfg, n):
    """Memory with n idle sessions past EHLO, and whether mail still gets through."""
    time.sleep(cfg.settle)
    base = server.acct.memory()
    holder = subprocess.Popen([PYTHON, str(HERE / "idle_sessions.py"), str(server.port), str(n)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        line = holder.stdout.readline()
        if not line:
            raise RuntimeError("idle_sessions.py failed")
        opened = json.loads(line)
        time.sleep(cfg.settle)
        held = server.acct.memory()
        # A normal client must still get its mail through.
        try:
            run_checked(["smtp-source", "-m", "10", "-s", "1", "-d", "-f", SENDER, "-t",
                         RECIPIENT, f"127.0.0.1:{server.port}"], timeout=60)
            wait_delivered(server, 10, 30)
        except (RuntimeError, subprocess.TimeoutExpired) as e:
            opened["mail_error"] = str(e)
        through = server.delivered()
    finally:
        holder.stdin.close()
        servers.reap(holder, 60)
    ready = opened["ready"]
    per_session = (held["pss"] - base["pss"]) / ready if ready else 0
    cg_delta = (held["cgroup"] - base["cgroup"]) if held["cgroup"] is not None else None
    result = {
        "requested": n, "ready": ready, "open": opened, "mail_through": through,
        "base_pss_mb": base["pss"] / MB, "base_rss_mb": base["rss"] / MB,
        "base_rss_main_mb": base["rss_main"] / MB,
        "base_processes": base["nproc"],
        "held_pss_mb": held["pss"] / MB, "held_rss_main_mb": held["rss_main"] / MB,
        "held_processes": held["nproc"],
        "held_cgroup_delta_mb": cg_delta / MB if cg_delta is not None else None,
        "pss_per_session_kb": per_session / 1024,
    }
    # Postfix holds a session with a process; we cannot give it 10,000.  It is
    # measured with fewer sessions and the total projected linearly to N.
    if ready and n < cfg.idle_sessions:
        scale = cfg.idle_sessions / ready
        result["projected_from"] = ready
        result["measured_held_pss_mb"] = result["held_pss_mb"]
        result["held_pss_mb"] = (base["pss"] + per_session * cfg.idle_sessions) / MB
        if cg_delta is not None:
            result["measured_held_cgroup_delta_mb"] = result["held_cgroup_delta_mb"]
            result["held_cgroup_delta_mb"] = cg_delta * scale / MB
    return result


def measure_latency(server, cfg):
    out = run_checked([PYTHON, str(HERE / "latency.py"), str(server.port), "--sessions",
                       str(cfg.latency_sessions), "--messages", str(cfg.latency_messages)],
                      timeout=cfg.run_timeout)
    r = json.loads(out.strip().splitlines()[-1])
    if r["errors"]:
        raise RuntimeError(f"latency.py: {r['errors']} sessions failed: {r['first_error']}")
    return r


# ---------------------------------------------------------------------------
# Running the plan


class Config:
    def __init__(self, args):
        self.quick = args.quick
        self.reps = args.reps if args.reps is not None else (1 if args.quick else 3)
        scale = 10 if args.quick else 1
        self.scale = scale
        self.e2e_count = 4000 // scale
        self.fsync_count = 600 // scale
        self.idle_sessions = args.idle_sessions or (500 if args.quick else 10000)
        self.postfix_idle_sessions = min(self.idle_sessions, args.postfix_idle_sessions or (
            100 if args.quick else 1000))
        self.latency_sessions = args.latency_sessions
        self.latency_messages = 2000 // scale
        self.run_timeout = 300
        self.settle = 0.5 if args.quick else 1.0

    def accept_count(self, size, reuse, sessions):
        return max(sessions, ACCEPT_COUNT[(size, reuse)][sessions] // self.scale)


def start_server(name, args, cfg, measurement):
    nofile = cfg.idle_sessions + 1000 if measurement[0] == "idle" else None
    if name == "pigeond":
        server = servers.Pigeond(args.workdir, args.pigeond, nofile=nofile)
    else:
        limit = cfg.postfix_idle_sessions + 50 if measurement[0] == "idle" else None
        server = servers.Postfix(args.workdir, smtpd_limit=limit, nofile=nofile)
    if measurement[0] == "fsync":
        server.trace = ["strace", "-f", "--seccomp-bpf", "-ttt", "-o", str(server.dir / "strace.out"),
                        "-e", "trace=" + ",".join(SYNC_CALLS)]
    return server


def run_one(server, cfg, measurement):
    kind = measurement[0]
    if kind == "accept":
        return measure_accept(server, cfg, *measurement[1:])
    if kind == "e2e":
        return measure_e2e(server, cfg)
    if kind == "fsync":
        return measure_fsync(server, cfg)
    if kind == "idle":
        n = cfg.idle_sessions if server.name == "pigeond" else cfg.postfix_idle_sessions
        return measure_idle(server, cfg, n)
    if kind == "latency":
        return measure_latency(server, cfg)
    raise ValueError(kind)


def describe(measurement):
    if measurement[0] == "accept":
        _, size, reuse, s = measurement
        return f"accept {size} {'reused' if reuse else 'new-conn'} x{s}"
    return measurement[0]


def run_plan(args, cfg, rows, server_names, log):
    measurements = []
    for row in rows:
        if row.measurement not in measurements:
            measurements.append(row.measurement)
    runs = []
    for rep in range(cfg.reps):
        # Alternate which server goes first, so that a slow drift of the
        # machine does not always favour the same one.
        order = server_names if rep % 2 == 0 else list(reversed(server_names))
        for m in measurements:
            for name in order:
                record = {"rep": rep, "server": name, "measurement": list(m),
                          "loadavg": open("/proc/loadavg").read().split()[:3]}
                t0 = time.monotonic()
                server = None
                phases = record["phase_seconds"] = {}
                try:
                    server = start_server(name, args, cfg, m)
                    # The previous run's files have just been removed: write that
                    # out now, or the next fsync/syncfs will, and be billed for it.
                    subprocess.run(["sync", "-f", str(args.workdir)], check=False)
                    server.start()
                    phases["start"] = round(time.monotonic() - t0, 2)
                    record["accounting"] = server.acct.note
                    record["metrics"] = run_one(server, cfg, m)
                except Exception as e:  # one failed run must not lose the others
                    record["error"] = f"{type(e).__name__}: {e}"
                finally:
                    t1 = time.monotonic()
                    if server is not None:
                        try:
                            server.stop()
                        except Exception as e:
                            record.setdefault("error", f"stop: {type(e).__name__}: {e}")
                        if isinstance(server, servers.Pigeond):
                            record["commit_stats"] = server.commit_stats()
                    phases["stop"] = round(time.monotonic() - t1, 2)
                record["wall_seconds"] = round(time.monotonic() - t0, 2)
                runs.append(record)
                log(rep, name, m, record)
    return runs


# ---------------------------------------------------------------------------
# The table


def summarize(values):
    values = [v for v in values if v is not None]
    if not values:
        return None
    return {"median": statistics.median(values), "min": min(values), "max": max(values),
            "n": len(values)}


def cell(s, fmt, mark=""):
    if s is None:
        return "—"
    if s["n"] == 1 or s["min"] == s["max"]:
        return fmt.format(s["median"]) + mark
    return f"{fmt.format(s['median'])}{mark} ({fmt.format(s['min'])}–{fmt.format(s['max'])})"


def table(rows, runs, cfg):
    summary = {}
    lines = ["| row | pigeond median (min–max) | Postfix median (min–max) | pigeond/Postfix |",
             "| --- | ---: | ---: | ---: |"]
    notes = []
    for row in rows:
        per_server, marks = {}, {}
        for name in ("pigeond", "postfix"):
            got = [r for r in runs if r["server"] == name and tuple(r["measurement"]) ==
                   row.measurement and "metrics" in r]
            per_server[name] = summarize([r["metrics"].get(row.metric) for r in got])
            if row.metric.startswith("held_") and any("projected_from" in r["metrics"] for r in got):
                marks[name] = "*"
                k = got[0]["metrics"]["projected_from"]
                note = (f"\\* projected linearly from {k} sessions to {cfg.idle_sessions}: "
                        "Postfix holds each session with an smtpd process.")
                if note not in notes:
                    notes.append(note)
        a, b = per_server["pigeond"], per_server["postfix"]
        ratio = None
        if a and b and b["median"]:
            ratio = a["median"] / b["median"]
        if ratio is None or row.better is None:
            rtext = "—"
        else:
            digits = ".1f" if ratio >= 10 else ".2f" if ratio >= 0.1 else ".2g"
            rtext = f"{ratio:{digits}}×" + (" (lower is better)" if row.better == "lower" else "")
        label = row.label.replace("N idle", f"{cfg.idle_sessions:,} idle").replace(
            "(S sessions)", f"({cfg.latency_sessions} sessions)")
        lines.append(f"| {label} | {cell(a, row.fmt, marks.get('pigeond', ''))} | "
                     f"{cell(b, row.fmt, marks.get('postfix', ''))} | {rtext} |")
        summary[row.key] = {"label": label, "pigeond": a, "postfix": b, "ratio": ratio,
                            "better": row.better}
    failed = [r for r in runs if "error" in r]
    for r in failed:
        notes.append(f"run failed: rep {r['rep']} {r['server']} {describe(r['measurement'])}: "
                     f"{r['error']}")
    return "\n".join(lines) + ("\n\n" + "\n".join(notes) if notes else ""), summary


# ---------------------------------------------------------------------------


def select_rows(all_rows, patterns):
    if not patterns:
        return all_rows
    chosen = []
    for row in all_rows:
        for p in patterns.split(","):
            p = p.strip()
            if p and (fnmatch.fnmatch(row.key, p) or row.key.startswith(p + "-")):
                chosen.append(row)
                break
    if not chosen:
        sys.exit(f"bench: no row matches {patterns!r}; --list-rows shows them")
    return chosen


def environment(args):
    def out(cmd):
        try:
            return subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                  text=True, cwd=ROOT).stdout.strip()
        except OSError:
            return None

    return {
        "host": platform.node(), "kernel": platform.release(), "cpus": os.cpu_count(),
        "memory_total_kb": int(open("/proc/meminfo").readline().split()[1]),
        "loadavg_at_start": open("/proc/loadavg").read().split()[:3],
        "pigeond": args.pigeond, "pigeon_commit": out(["git", "rev-parse", "HEAD"]),
        "pigeon_dirty": bool(out(["git", "status", "--porcelain", "--untracked-files=no"])),
        "postfix": out(["postconf", "-dh", "mail_version"]),
        "workdir": str(args.workdir),
    }


def main():
    ap = argparse.ArgumentParser(description="Benchmark pigeond against a private Postfix.")
    ap.add_argument("--quick", action="store_true", help="a fast smoke run: few messages, 1 rep")
    ap.add_argument("--reps", type=int, help="repetitions per row (default 3, --quick 1)")
    ap.add_argument("--rows", help="comma-separated row keys or globs (see --list-rows)")
    ap.add_argument("--list-rows", action="store_true", help="print the row keys and exit")
    ap.add_argument("--servers", default="pigeond,postfix", help="which servers to run")
    ap.add_argument("--workdir", type=pathlib.Path,
                    default=pathlib.Path(os.environ.get("BENCH_WORKDIR", "/var/tmp/pigeon-bench")))
    ap.add_argument("--pigeond", default=os.environ.get("PIGEOND",
                                                        str(ROOT / "build" / "src" / "pigeond")))
    ap.add_argument("--idle-sessions", type=int, help="idle sessions (default 10000)")
    ap.add_argument("--postfix-idle-sessions", type=int,
                    help="idle sessions actually opened to Postfix (default 1000)")
    ap.add_argument("--latency-sessions", type=int, default=10)
    ap.add_argument("--results", type=pathlib.Path, default=HERE / "results")
    args = ap.parse_args()

    all_rows = make_rows()
    if args.list_rows:
        for row in all_rows:
            print(f"{row.key:24} {row.label}")
        return 0
    if os.geteuid() != 0:
        sys.exit("bench: run as root (servers drop to the user pigeon; cgroups need root)")
    rows = select_rows(all_rows, args.rows)
    cfg = Config(args)
    server_names = [s.strip() for s in args.servers.split(",") if s.strip()]
    args.workdir = args.workdir.resolve()
    stamp = args.workdir.parent / (args.workdir.name + ".deleted")
    if stamp.exists():
        # The previous benchmark deleted its files at the end: let ext4's
        # window of recently deleted inodes pass (see servers.fresh_dir).
        wait = 65 - (time.time() - stamp.stat().st_mtime)
        if wait > 0:
            print(f"bench: the last run deleted its files {65 - wait:.0f} s ago; waiting "
                  f"{wait:.0f} s", file=sys.stderr)
            time.sleep(wait)
    if args.workdir.exists() and any(args.workdir.iterdir()):
        # Left by an interrupted run: delete it, then let ext4's window of
        # recently deleted inodes pass before measuring (see servers.fresh_dir).
        print(f"bench: removing {args.workdir} from an earlier run and waiting 65 s",
              file=sys.stderr)
        shutil.rmtree(args.workdir)
        subprocess.run(["sync", "-f", str(args.workdir.parent)], check=False)
        time.sleep(65)
    args.workdir.mkdir(parents=True, exist_ok=True)
    os.chmod(args.workdir, 0o755)

    started = datetime.datetime.now()
    load = float(open("/proc/loadavg").read().split()[0])
    if load > (os.cpu_count() or 1):
        print(f"bench: warning: load average {load} on {os.cpu_count()} CPUs; other work will "
              "disturb the figures (compare ratios, not absolute numbers)", file=sys.stderr)
    print(f"bench: {len(rows)} rows, {cfg.reps} repetition(s), servers {', '.join(server_names)}, "
          f"work dir {args.workdir}", file=sys.stderr)

    def log(rep, name, m, record):
        if "error" in record:
            what = "FAILED: " + record["error"]
        else:
            met = record["metrics"]
            what = ", ".join(f"{k}={v:.4g}" for k, v in met.items()
                             if isinstance(v, (int, float)) and not isinstance(v, bool))
        ph = record["phase_seconds"]
        print(f"  rep {rep + 1} {name:8} {describe(m):24} {record['wall_seconds']:5.1f}s "
              f"(start {ph.get('start', 0):.1f}, stop {ph.get('stop', 0):.1f})  {what}",
              file=sys.stderr, flush=True)

    try:
        runs = run_plan(args, cfg, rows, server_names, log)
    finally:
        # Everything measured: now the deleting can happen.
        shutil.rmtree(args.workdir, ignore_errors=True)
        stamp.touch()
    text, summary = table(rows, runs, cfg)
    elapsed = (datetime.datetime.now() - started).total_seconds()

    args.results.mkdir(parents=True, exist_ok=True)
    path = args.results / f"bench-{started:%Y%m%d-%H%M%S}{'-quick' if cfg.quick else ''}.json"
    path.write_text(json.dumps({
        "started": started.isoformat(timespec="seconds"), "seconds": round(elapsed, 1),
        "argv": sys.argv[1:], "config": {k: v for k, v in vars(cfg).items()},
        "environment": environment(args), "summary": summary, "runs": runs,
    }, indent=1, default=str) + "\n")

    print(f"\nPigeon benchmark, {started:%Y-%m-%d %H:%M}, {cfg.reps} repetition(s), "
          f"{elapsed / 60:.1f} min, {os.cpu_count()} CPUs, load average {load} at the start; "
          f"raw numbers in {path}\n")
    print(text)
    return 1 if any("error" in r for r in runs) else 0


if __name__ == "__main__":
    sys.exit(main())
