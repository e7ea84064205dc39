"""A small HTTP/1.1 load client that measures time to first byte (wrk cannot).

    python -m bench.client --port P --request FILE --concurrency 1 --duration 5 [--ramp 0.5]

`--request` is a file with the whole raw request (head and body). Each of the
`--concurrency` connections sends it again and again (keep-alive) until the duration
is over, and records per response: TTFB (request written -> first body byte) and total
(-> the last byte), with wrk's correction for coordinated omission (see `corrected`).
A response counts as an error when the status is not 200, the
connection fails or closes early, it times out, or (with `--expect`) the body lacks
the expected bytes (`data: [DONE]` for streams). Prints one JSON object on stdout.
Content-Length and chunked bodies are both understood.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import random
import sys
import time
from dataclasses import dataclass, field

from bench.dribble import run


@dataclass
class Stats:
    ttfb: list[float] = field(default_factory=list)
    total: list[float] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)
    error_sample: str = ""

    def error(self, kind: str, detail: str = "") -> None:
        self.errors[kind] = self.errors.get(kind, 0) + 1
        if detail and not self.error_sample:
            self.error_sample = detail[:300]


class Conn(asyncio.Protocol):
    """One keep-alive connection; `exchange()` sends the request and waits for the end."""

    def __init__(self, expect: bytes) -> None:
        self.expect = expect
        self.transport: asyncio.Transport | None = None
        self.closed = asyncio.get_running_loop().create_future()
        self._reset()

    def _reset(self) -> None:
        self.head = bytearray()
        self.in_body = False
        self.status = 0
        self.length = -1          # Content-Length, or -1 for chunked
        self.got = 0
        self.tail = b""
        self.found = not self.expect
        self.t_first = 0.0
        self.done: asyncio.Future[None] | None = None
        self.sample = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if not self.closed.done():
            self.closed.set_result(None)
        if self.done is not None and not self.done.done():
            self.done.set_exception(ConnectionError("connection closed before the response ended"))

    def data_received(self, data: bytes) -> None:
        if self.done is None:
            return
        if not self.in_body:
            self.head += data
            end = self.head.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self.head[:end])
            data = bytes(self.head[end + 4:])
            self.in_body = True
            lines = head.split(b"\r\n")
            self.status = int(lines[0].split()[1])
            for line in lines[1:]:
                name, _, value = line.partition(b":")
                name = name.strip().lower()
                if name == b"content-length":
                    self.length = int(value.strip())
            if not data:
                if self.length == 0:
                    self._finish()
                return
        if not data:
            return
        if not self.t_first:
            self.t_first = time.perf_counter()
        if len(self.sample) < 300:
            self.sample += data[:300]
        if not self.found:
            self.found = self.expect in (self.tail + data)
        self.got += len(data)
        if self.length >= 0:
            if self.got >= self.length:
                self._finish()
            else:
                self.tail = data[-32:]
        else:
            window = self.tail + data
            if window.endswith(b"\r\n0\r\n\r\n") or (self.got == len(window) and window.startswith(b"0\r\n\r\n")):
                self._finish()
            else:
                self.tail = window[-32:]

    def _finish(self) -> None:
        if self.done is not None and not self.done.done():
            self.done.set_result(None)

    async def exchange(self, request: bytes, timeout: float) -> tuple[int, float, float, bool, bytes]:
        """(status, ttfb, total, expected bytes seen, start of the body)."""
        assert self.transport is not None
        self._reset()
        self.done = asyncio.get_running_loop().create_future()
        t0 = time.perf_counter()
        self.transport.write(request)
        await asyncio.wait_for(self.done, timeout)
        t1 = time.perf_counter()
        return self.status, (self.t_first or t1) - t0, t1 - t0, self.found, self.sample


async def worker(port: int, request: bytes, expect: bytes, deadline: float, ramp: float, timeout: float,
                 stats: Stats) -> None:
    loop = asyncio.get_running_loop()
    if ramp:
        await asyncio.sleep(random.uniform(0, ramp))
    conn: Conn | None = None
    while time.perf_counter() < deadline:
        if conn is None or conn.transport is None:
            try:
                _, conn = await asyncio.wait_for(
                    loop.create_connection(lambda: Conn(expect), "127.0.0.1", port), timeout)
            except (OSError, TimeoutError) as exc:
                stats.error("connect", repr(exc))
                conn = None
                await asyncio.sleep(0.05)
                continue
        try:
            status, ttfb, total, found, sample = await conn.exchange(request, timeout)
        except TimeoutError:
            stats.error("timeout")
            if conn.transport is not None:
                conn.transport.close()
            conn = None
            continue
        except ConnectionError as exc:
            stats.error("closed", repr(exc))
            conn = None
            continue
        if status != 200:
            stats.error(f"status_{status}", sample.decode("utf-8", "replace"))
        elif not found:
            stats.error("incomplete", sample.decode("utf-8", "replace"))
        else:
            stats.ttfb.append(ttfb)
            stats.total.append(total)
    if conn is not None and conn.transport is not None:
        conn.transport.close()


def corrected(values: list[float], expected: float) -> list[float]:
    """wrk's coordinated-omission correction (stats_correct), so both tools report alike:
    a response that took n >= 2x the expected interval between a connection's requests
    also stands for the requests a steady client would have sent meanwhile, which would
    have waited n - expected, n - 2*expected, ... (down to > expected)."""
    if expected <= 0:
        return values
    out = list(values)
    for n in values:
        if n >= 2 * expected:
            m = n - expected
            while m > expected:
                out.append(m)
                m -= expected
    return out


def pct(values: list[float], p: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    return s[min(len(s) - 1, max(0, math.ceil(p / 100 * len(s)) - 1))]


async def main_async(a: argparse.Namespace, request: bytes) -> dict[str, object]:
    stats = Stats()
    t0 = time.perf_counter()
    deadline = t0 + a.ramp + a.duration
    expect = a.expect.encode() if a.expect else b""
    await asyncio.gather(*(worker(a.port, request, expect, deadline, a.ramp, a.timeout, stats)
                           for _ in range(a.concurrency)))
    elapsed = time.perf_counter() - t0
    ms = 1000.0
    requests = len(stats.total)
    per_conn = requests / a.concurrency
    expected = (elapsed - a.ramp) / per_conn if per_conn else 0.0
    raw_p99 = pct(stats.total, 99)
    stats.total = corrected(stats.total, expected)
    stats.ttfb = corrected(stats.ttfb, expected)
    return {
        "requests": requests,
        "elapsed_s": elapsed,
        "rps": requests / max(elapsed - a.ramp, 1e-9),
        "errors": sum(stats.errors.values()),
        "error_kinds": stats.errors,
        "error_sample": stats.error_sample,
        **{f"ttfb_p{p}_ms": (v * ms if (v := pct(stats.ttfb, p)) is not None else None) for p in (50, 90, 99)},
        **{f"p{p}_ms": (v * ms if (v := pct(stats.total, p)) is not None else None) for p in (50, 90, 99)},
        "max_ms": max(stats.total) * ms if stats.total else None,
        "raw_p99_ms": raw_p99 * ms if raw_p99 is not None else None,   # before the correction
    }


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--request", required=True)
    p.add_argument("--concurrency", type=int, default=1)
    p.add_argument("--duration", type=float, default=5.0)
    p.add_argument("--ramp", type=float, default=0.0, help="start connections spread over this many seconds")
    p.add_argument("--timeout", type=float, default=30.0)
    p.add_argument("--expect", default="", help="bytes every good body contains")
    a = p.parse_args()
    result: dict[str, object] = {}
    with open(a.request, "rb") as f:
        request = f.read()

    async def go() -> None:
        result.update(await main_async(a, request))

    run(go())
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    sys.exit(main())
