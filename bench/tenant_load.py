"""Load pieces of the `tenants` scenario (bench/tenants.py runs them):

- `rotating_script`: bench/wrk.py's script with a `request()` that gives every request
  the next tenant's token (prebuilt requests, so wrk's per-request cost stays a table
  lookup), each wrk thread starting at its own offset in the token list;
- `cold_pass`: each tenant's first request on each gateway worker, one connection per
  worker, to time the cold path (token lookup, tenant load, private-key unwrap, RSA
  decryption of the credential) without queueing in front of it;
- `AdminWriter`: admin API writes at a fixed rate in a thread, while wrk runs.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import wrk
from bench.client import Conn, pct
from bench.dribble import run as run_loop
from bench.procs import tree

ROTATE_LUA = r"""
-- tenants scenario: request() hands out the next tenant's request (built once, here).
local tokens_file, nthreads = "%(tokens)s", %(threads)d
local reqs = {}
for token in io.lines(tokens_file) do
  if token ~= "" then
    reqs[#reqs + 1] = wrk.format(nil, nil, {["Content-Type"] = "application/json",
                                            ["Authorization"] = "Bearer " .. token}, wrk.body)
  end
end
-- Number the threads (setup runs in the main state, once per thread) for their offsets.
local next_id = 0
local base_setup = setup
function setup(thread)
  thread:set("id", next_id)
  next_id = next_id + 1
  base_setup(thread)
end
local idx = nil
function request()
  if idx == nil then idx = math.floor((id or 0) * #reqs / nthreads) end
  idx = idx %% #reqs + 1
  return reqs[idx]
end
"""


def rotating_script(path: Path, body_file: Path, tokens_file: Path, expect: str, threads: int) -> Path:
    """wrk.LUA (its percentiles, error counts and BENCHJSON line, which wrk.run parses) with
    the rotation put in the hook slot, after wrk.LUA's own `setup`, which it wraps."""
    hook = wrk.CHECK_HOOK + ROTATE_LUA % {"tokens": str(tokens_file), "threads": threads}
    lua_expect = expect.replace("\\", "\\\\").replace('"', '\\"')  # inside a "..." Lua string
    path.write_text(wrk.LUA % {"body": str(body_file), "token": "", "expect": lua_expect, "extra_headers": "",
                               "response_hook": hook, "spread_threads": ""})
    return path


def raw_request(port: int, path: str, body: bytes, token: str) -> bytes:
    return (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nAuthorization: Bearer {token}\r\n\r\n").encode() + body


# -- which worker holds a connection --------------------------------------------------


def _server_inode(gw_port: int, client_port: int) -> str | None:
    """The inode of the gateway's end of our connection (/proc/net/tcp, IPv4 loopback)."""
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            parts = line.split()
            local, remote, inode = parts[1], parts[2], parts[9]
            if int(local.split(":")[1], 16) == gw_port and int(remote.split(":")[1], 16) == client_port:
                return inode if inode != "0" else None
    return None


def holder(gw_root: int, gw_port: int, client_port: int) -> int | None:
    """The process of the gateway's tree that accepted this connection: a worker."""
    inode = _server_inode(gw_port, client_port)
    if inode is None:
        return None
    target = f"socket:[{inode}]"
    for pid in tree(gw_root):
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}") == target:
                    return pid
            except OSError:
                continue
    return None


# -- the cold pass -----------------------------------------------------------------------


@dataclass
class ColdPass:
    cold_ms: dict[int, list[float]] = field(default_factory=dict)   # worker pid -> first-request latencies
    warm_ms: dict[int, list[float]] = field(default_factory=dict)   # the same tenants again, warm
    errors: dict[str, int] = field(default_factory=dict)
    error_sample: str = ""
    unmapped_workers: int = 0
    connections_tried: int = 0

    def error(self, kind: str, detail: str) -> None:
        self.errors[kind] = self.errors.get(kind, 0) + 1
        self.error_sample = self.error_sample or detail[:300]

    def summary(self) -> dict[str, Any]:
        cold = [v for vs in self.cold_ms.values() for v in vs]
        warm = [v for vs in self.warm_ms.values() for v in vs]
        out: dict[str, Any] = {"cold_samples": len(cold), "warm_samples": len(warm), "workers": len(self.cold_ms),
                               "unmapped_workers": self.unmapped_workers, "connections_tried": self.connections_tried,
                               "errors": sum(self.errors.values()),
                               "error_kinds": self.errors, "error_sample": self.error_sample}
        for name, vals in (("cold", cold), ("warm", warm)):
            for p in (50, 90, 99):
                out[f"{name}_p{p}_ms"] = pct(vals, p)
            out[f"{name}_max_ms"] = max(vals) if vals else None
        if out["cold_p50_ms"] is not None and out["warm_p50_ms"] is not None:
            out["cold_cost_p50_ms"] = out["cold_p50_ms"] - out["warm_p50_ms"]
        out["per_worker"] = {str(pid): {"cold_p50_ms": pct(v, 50), "cold_p99_ms": pct(v, 99), "samples": len(v)}
                             for pid, v in self.cold_ms.items()}
        return out


async def _connect(port: int, expect: bytes) -> tuple[Conn, int]:
    loop = asyncio.get_running_loop()
    transport, conn = await loop.create_connection(lambda: Conn(expect), "127.0.0.1", port)
    return conn, int(transport.get_extra_info("sockname")[1])


async def _worker_conns(gw_root: int, port: int, probe: bytes, expect: bytes, workers: int,
                        attempts: int = 300) -> tuple[dict[int, Conn], int]:
    """One keep-alive connection per worker, and the connections it took. Connections are
    opened one at a time: asyncio accepts every pending connection of a readiness event in
    one go, so a burst would all land on the worker that woke first. Each answers a probe
    (then it has surely been accepted) before `holder` looks for it."""
    found: dict[int, Conn] = {}
    tried = 0
    while len(found) < workers and tried < attempts:
        tried += 1
        conn, client_port = await _connect(port, expect)
        status = (await conn.exchange(probe, 30))[0]
        pid = holder(gw_root, port, client_port) if status == 200 else None
        if pid is not None and pid not in found:
            found[pid] = conn
            continue
        if conn.transport is not None:
            conn.transport.close()
        await asyncio.sleep(0.005)
    return found, tried


async def _sequence(conn: Conn, requests: Sequence[bytes], out: list[float], stats: ColdPass) -> None:
    for req in requests:
        try:
            status, _, total, ok, sample = await conn.exchange(req, 30)
        except (TimeoutError, ConnectionError) as exc:
            stats.error(type(exc).__name__, repr(exc))
            return  # a lost connection could come back on another worker: stop this one's pass
        if status != 200 or not ok:
            stats.error(f"status_{status}" if status != 200 else "bad_body", sample.decode("utf-8", "replace"))
        else:
            out.append(total * 1000)


def cold_pass(gw_root: int, port: int, path: str, body: bytes, tokens: list[str], probe_token: str,
              expect: str, workers: int, warm_sample: int) -> ColdPass:
    """Every token once on every worker (the cold path, in order), then the first
    `warm_sample` tokens again (the warm path at the same concurrency of 1 per worker)."""
    stats = ColdPass()

    async def go() -> None:
        conns, stats.connections_tried = await _worker_conns(
            gw_root, port, raw_request(port, path, body, probe_token), expect.encode(), workers)
        stats.unmapped_workers = max(0, workers - len(conns))
        reqs = [raw_request(port, path, body, t) for t in tokens]
        for pid in conns:
            stats.cold_ms[pid], stats.warm_ms[pid] = [], []
        await asyncio.gather(*(_sequence(c, reqs, stats.cold_ms[pid], stats) for pid, c in conns.items()))
        await asyncio.gather(*(_sequence(c, reqs[:warm_sample], stats.warm_ms[pid], stats)
                               for pid, c in conns.items()))
        for c in conns.values():
            if c.transport is not None:
                c.transport.close()

    run_loop(go())
    return stats


# -- admin writes at a fixed rate ---------------------------------------------------------

WriteOp = tuple[str, str, str, dict[str, Any]]   # (kind, method, path, JSON body)


def admin_call(base: str, admin_token: str, method: str, path: str, body: dict[str, Any],
               timeout: float = 60.0) -> int:
    req = urllib.request.Request(base + path, data=json.dumps(body).encode(), method=method, headers={
        "Content-Type": "application/json", "Authorization": f"Bearer {admin_token}"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            resp.read()
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        exc.read()
        return int(exc.code)


class AdminWriter:
    """Starts `make(k)`'s write every 1/rate s, each in a pool thread (open loop: a slow
    write does not delay the next one, so a stall shows in its own time, not as fewer writes)."""

    def __init__(self, base: str, admin_token: str, rate: float, make: Callable[[int], WriteOp]) -> None:
        self.base, self.token, self.rate, self.make = base, admin_token, rate, make
        self._stop = threading.Event()
        self._pool = ThreadPoolExecutor(max_workers=16, thread_name_prefix="admin-write")
        self._futures: list[Future[tuple[str, int, float]]] = []
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _one(self, op: WriteOp) -> tuple[str, int, float]:
        kind, method, path, body = op
        t0 = time.perf_counter()
        try:
            status = admin_call(self.base, self.token, method, path, body)
        except OSError:
            status = 0
        return kind, status, (time.perf_counter() - t0) * 1000

    def _run(self) -> None:
        interval, k = 1.0 / self.rate, 0
        # The first write half an interval in: wrk has started and its connections are up.
        next_at = time.perf_counter() + interval / 2
        while not self._stop.wait(max(0.0, next_at - time.perf_counter())):
            self._futures.append(self._pool.submit(self._one, self.make(k)))
            k += 1
            next_at += interval

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> dict[str, Any]:
        """Stop issuing; wait for the writes in flight (each bounded by its timeout)."""
        self._stop.set()
        self._thread.join()
        self._pool.shutdown(wait=True)
        done = [f.result() for f in self._futures]
        ok = [ms for _, status, ms in done if 200 <= status < 300]
        by_kind: dict[str, list[float]] = {}
        for kind, status, ms in done:
            if 200 <= status < 300:
                by_kind.setdefault(kind, []).append(ms)
        return {"count": len(done), "errors": len(done) - len(ok),
                "statuses": sorted({status for _, status, _ in done}),
                "p50_ms": pct(ok, 50), "max_ms": max(ok) if ok else None,
                "by_kind": {k: {"count": len(v), "p50_ms": pct(v, 50), "max_ms": max(v)} for k, v in by_kind.items()}}


def write_ops(kind: str, tenants: int, name: Callable[[int], str], credential: dict[str, str], default: str,
              new_prefix: str, seed: int = 11) -> Callable[[int], WriteOp]:
    """kind "admin": mostly token creation for a random existing tenant (the issue's
    measurement), every third write a credential or a default set again to the same value
    (so requests keep working, while the write still invalidates what workers cache);
    kind "create": a new tenant per write (an RSA key generation in the gateway)."""
    rng = random.Random(seed)

    def make(k: int) -> WriteOp:
        if kind == "create":
            return "tenant", "POST", "/admin/v1/tenants", {"name": f"{new_prefix}-{k:05d}"}
        t = f"/admin/v1/tenants/{name(rng.randrange(tenants))}"
        if k % 6 == 2:
            return "credential", "PUT", f"{t}/providers/openai", {"credentials": credential}
        if k % 6 == 5:
            return "default", "PUT", f"{t}/defaults/llm", {"model": default}
        return "token", "POST", f"{t}/tokens", {"name": f"bench-write-{k}"}
    return make
