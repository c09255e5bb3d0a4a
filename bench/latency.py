#!/usr/bin/python3
"""latency.py - how long an SMTP server takes to say 250 after the end of DATA.

    latency.py [--sessions S] [--messages M] [--size BYTES] PORT

S sessions to 127.0.0.1:PORT share M messages to somebody@localhost, each
session sending its share one after the other (no pipelining).  For every
message the time from writing the final ".\\r\\n" to reading the reply is
recorded: this is the time the server takes to make the message durable and
answer, which is what a client waits for.  One line of JSON goes to stdout:

    {"messages": 2000, "errors": 0, "p50_ms": 1.9, "p99_ms": 7.3, "max_ms": 12.0, ...}

Percentiles are nearest-rank.  The client is a single asyncio thread; its own
overhead is in every figure, equally for every server.
"""

import argparse
import asyncio
import json
import math
import time

from smtp_reply import read_reply


async def expect(reader, code):
    got = await read_reply(reader)
    if got != code:
        raise ConnectionError(f"expected {code.decode()}, got {got.decode(errors='replace')}")


def message_body(size):
    """Headers and a body of about size bytes in 78-character lines, dot-safe."""
    head = (b"From: <bench@example.org>\r\nTo: <somebody@localhost>\r\n"
            b"Subject: latency\r\n\r\n")
    line = b"x" * 76 + b"\r\n"
    return head + line * max(1, size // len(line))


async def session(port, count, body, times):
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        await expect(reader, b"220")
        writer.write(b"EHLO latency.test\r\n")
        await expect(reader, b"250")
        for _ in range(count):
            writer.write(b"MAIL FROM:<bench@example.org>\r\n")
            await expect(reader, b"250")
            writer.write(b"RCPT TO:<somebody@localhost>\r\n")
            await expect(reader, b"250")
            writer.write(b"DATA\r\n")
            await expect(reader, b"354")
            writer.write(body)
            await writer.drain()
            start = time.perf_counter()
            writer.write(b".\r\n")
            await expect(reader, b"250")
            times.append(time.perf_counter() - start)
        writer.write(b"QUIT\r\n")
        await read_reply(reader)
    finally:
        writer.close()


def percentile(sorted_values, p):
    if not sorted_values:
        return None
    rank = max(1, math.ceil(p / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


async def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("port", type=int)
    ap.add_argument("--sessions", type=int, default=10)
    ap.add_argument("--messages", type=int, default=2000)
    ap.add_argument("--size", type=int, default=1024)
    args = ap.parse_args()

    body = message_body(args.size)
    times = []
    shares = [args.messages // args.sessions + (i < args.messages % args.sessions)
              for i in range(args.sessions)]
    start = time.monotonic()
    results = await asyncio.gather(*(session(args.port, n, body, times) for n in shares if n),
                                   return_exceptions=True)
    elapsed = time.monotonic() - start
    errors = [f"{type(r).__name__}: {r}" for r in results if isinstance(r, BaseException)]
    times.sort()
    ms = lambda v: None if v is None else round(v * 1000, 3)
    print(json.dumps({
        "messages": len(times), "sessions": args.sessions, "errors": len(errors),
        "first_error": errors[0] if errors else None,
        "p50_ms": ms(percentile(times, 50)), "p90_ms": ms(percentile(times, 90)),
        "p99_ms": ms(percentile(times, 99)), "max_ms": ms(times[-1] if times else None),
        "seconds": round(elapsed, 3),
    }))


if __name__ == "__main__":
    asyncio.run(main())
