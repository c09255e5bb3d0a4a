#!/usr/bin/python3
"""idle_sessions.py - open N SMTP sessions on loopback, say EHLO, and hold them.

    idle_sessions.py [--sources K] [--timeout S] PORT N

Each session connects to 127.0.0.1:PORT, reads the 220 greeting, sends EHLO
and reads the whole 250 reply; then it stays open, saying nothing.  At most
--parallel handshakes run at once, so that the server's listen queue does not
overflow.  When every session is ready or has failed, one line of JSON goes
to stdout:

    {"ready": 9998, "failed": 2, "seconds": 3.1, "errors": {"timeout": 2}}

and the sessions stay open until stdin is closed (or reaches EOF), when all
are closed with QUIT and the program exits.  bench.py measures the server's
memory in between.

A client has 28,000-odd ephemeral ports per source address; beyond
--per-source sessions the next source address is used (127.0.0.2, ...),
which any 127.0.0.0/8 trust covers.  The descriptor limit is raised to what
N needs, as far as the hard limit allows.
"""

import argparse
import asyncio
import json
import resource
import sys
import time

from smtp_reply import read_reply


def raise_nofile(n):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = n + 64
    if want > soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (max(want, hard), max(want, hard)))
        except (ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


async def open_session(port, source, gate, timeout):
    async with gate:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0)), timeout)
        try:
            if await asyncio.wait_for(read_reply(reader), timeout) != b"220":
                raise ConnectionError("no 220 greeting")
            writer.write(b"EHLO idle.test\r\n")
            if await asyncio.wait_for(read_reply(reader), timeout) != b"250":
                raise ConnectionError("EHLO refused")
        except BaseException:
            writer.close()
            raise
        return reader, writer


async def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("port", type=int)
    ap.add_argument("n", type=int)
    ap.add_argument("--parallel", type=int, default=100, help="handshakes in flight at once")
    ap.add_argument("--per-source", type=int, default=20000, help="sessions per source address")
    ap.add_argument("--timeout", type=float, default=60.0, help="seconds allowed per handshake")
    args = ap.parse_args()

    limit = raise_nofile(args.n)
    n = min(args.n, limit - 64)
    gate = asyncio.Semaphore(args.parallel)
    start = time.monotonic()
    tasks = [
        asyncio.create_task(
            open_session(args.port, "127.0.0.%d" % (1 + i // args.per_source), gate, args.timeout))
        for i in range(n)
    ]
    results = await asyncio.gather(*tasks, return_exceptions=True)
    sessions = [r for r in results if not isinstance(r, BaseException)]
    errors = {}
    for r in results:
        if isinstance(r, BaseException):
            key = type(r).__name__ if not str(r) else f"{type(r).__name__}: {r}"
            errors[key] = errors.get(key, 0) + 1
    report = {"requested": args.n, "ready": len(sessions), "failed": n - len(sessions),
              "seconds": round(time.monotonic() - start, 3), "errors": errors}
    if n < args.n:
        report["capped_by_fd_limit"] = limit
    print(json.dumps(report), flush=True)

    # Hold the sessions until our parent closes our stdin.
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.read)
    for _, writer in sessions:
        try:
            writer.write(b"QUIT\r\n")
            writer.close()
        except OSError:
            pass
    await asyncio.sleep(0.2)


if __name__ == "__main__":
    asyncio.run(main())
