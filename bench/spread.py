"""The `spread` scenario (issue 14): do connections spread over the gateway's workers?

One gateway (`--workers`, 2 by default) and the nginx fake. wrk opens its 64 keep-alive
connections all at once when it starts and keeps them for the whole run, the shape in
which one uvicorn worker used to take every connection: with one listening socket
shared by all workers, the worker that wakes first may accept most or all of the burst
(a matter of timing: from an even split to 0/64). Measured, back to back after a quiet
wait: the same non-stream chat load direct to the fake, then through the gateway, each
one bounded wrk run of `--duration` s right after `--warmup` s of the same load
(unmeasured), as in the rounds.

Reported: req/s both ways, latency, the gateway's CPU per request, and per worker: its
CPU (utime+stime of the worker and its own children, from /proc/<pid>/stat, before and
after, as cores) and the connections it held in the middle of the run (the gateway-side
ends of the connections, matched to each worker's socket descriptors through
/proc/net/tcp); also how many sockets listen on the gateway's port (one per worker with
SO_REUSEPORT, one shared otherwise).
"""

from __future__ import annotations

import argparse
import json
import os
import threading
import time
from pathlib import Path
from typing import Any

from bench import fake, wrk
from bench.gateway import FAKE_KEY, Gateway
from bench.procs import Procs, Watch, cpu_seconds, tree, wait_quiet
from bench.scenarios import MESSAGES

CONNS = 64
EXPECT = '"chat.completion"'
PATH = "/v1/chat/completions"
TENANT = "bench-spread"
_LISTEN, _ESTABLISHED = "0A", "01"


def workers(supervisor: int) -> list[int]:
    """uvicorn's workers: the supervisor's children started by multiprocessing's spawn (not
    its resource tracker); the supervisor itself when it serves alone (1 worker)."""
    found = []
    for pid in tree(supervisor):
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                ppid = int(f.read().rsplit(b")", 1)[1].split()[1])
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmdline = f.read()
        except OSError:
            continue
        if ppid == supervisor and b"spawn_main" in cmdline:
            found.append(pid)
    return sorted(found) or [supervisor]


def socket_inodes(pid: int) -> set[str]:
    out: set[str] = set()
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return out
    for fd in fds:
        try:
            link = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if link.startswith("socket:["):
            out.add(link[8:-1])
    return out


def port_sockets(port: int) -> dict[str, list[str]]:
    """Inodes of the TCP sockets whose local port is `port`, by state (LISTEN, ESTABLISHED)."""
    out: dict[str, list[str]] = {_LISTEN: [], _ESTABLISHED: []}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                next(f)
                rows = [line.split() for line in f]
        except OSError:
            continue
        for parts in rows:
            if int(parts[1].rsplit(":", 1)[1], 16) == port and parts[3] in out:
                out[parts[3]].append(parts[9])
    return out


def connections_by_worker(port: int, pids: list[int]) -> dict[int, int]:
    """The accepted connections on `port` each worker holds (its own socket descriptors)."""
    established = set(port_sockets(port)[_ESTABLISHED])
    return {pid: len(socket_inodes(pid) & established) for pid in pids}


def listeners(port: int) -> int:
    return len(port_sockets(port)[_LISTEN])


class SpreadBench:
    def __init__(self, args: argparse.Namespace, procs: Procs, root: Path, upstream: fake.Upstream) -> None:
        self.args, self.procs, self.upstream = args, procs, upstream
        self.root = root / "spread"
        self.root.mkdir(parents=True)
        self.body = json.dumps({"model": "gpt-4o-mini", "messages": MESSAGES, "max_tokens": 64,
                                "temperature": 0.2}).encode()
        (self.root / "body.json").write_bytes(self.body)
        self.result: dict[str, Any] = {"conns": CONNS, "duration_s": args.duration, "workers": args.workers,
                                       "notes": []}

    def load(self, url: str, token: str, name: str) -> dict[str, Any]:
        headers = {"Authorization": f"Bearer {token}"}
        lua = wrk.script(self.root / f"{name}.lua", self.root / "body.json", "", EXPECT.replace('"', '\\"'), headers)
        return wrk.run(self.procs, url, lua, CONNS, self.args.duration, threads=self.args.wrk_threads)

    def warm(self, url: str, token: str) -> None:
        if self.args.warmup:
            headers = {"Authorization": f"Bearer {token}"}
            lua = wrk.script(self.root / "warm.lua", self.root / "body.json", "", "", headers)
            wrk.run(self.procs, url, lua, CONNS, self.args.warmup, threads=self.args.wrk_threads)

    def direct(self) -> dict[str, Any]:
        self.warm(self.upstream.url(PATH), FAKE_KEY)
        with Watch({"upstream": self.upstream.nginx.pid}) as watch:  # type: ignore[union-attr]
            result = self.load(self.upstream.url(PATH), FAKE_KEY, "direct")
        result["background_cores"] = watch.background_cores
        return result

    def through(self, gw: Gateway, token: str) -> dict[str, Any]:
        self.warm(gw.url(PATH), token)
        pids = workers(gw.pid)
        held: dict[int, int] = {}

        def sample() -> None:  # the connections each worker holds, mid-run
            time.sleep(self.args.duration / 2)
            held.update(connections_by_worker(gw.port, pids))

        sampler = threading.Thread(target=sample, daemon=True)
        cpu0 = {pid: cpu_seconds(tree(pid)) for pid in pids}
        t0 = time.perf_counter()
        with Watch({"gateway": gw.pid, "upstream": self.upstream.nginx.pid}) as watch:  # type: ignore[union-attr]
            sampler.start()
            result = self.load(gw.url(PATH), token, "gateway")
        wall = time.perf_counter() - t0
        sampler.join()
        cores = [(cpu_seconds(tree(pid)) - cpu0[pid]) / wall for pid in pids]
        per = [{"pid": pid, "cores": c, "connections": held.get(pid)} for pid, c in zip(pids, cores, strict=True)]
        result.update({
            "workers": per, "listening_sockets": listeners(gw.port),
            "balance": min(cores) / max(cores) if len(cores) > 1 and max(cores) > 0 else None,
            "gateway_cpu_ms_per_req": watch.result["gateway"].cpu_s * 1000 / max(result["requests"], 1),
            "gateway_cores": watch.result["gateway"].cpu_s / watch.wall,
            "upstream_busy": watch.result["upstream"].cpu_s / watch.wall,
            "background_cores": watch.background_cores})
        return result

    def run(self) -> dict[str, Any]:
        a = self.args
        gw = Gateway(self.procs, self.root / "gateway", workers=a.workers)
        gw.setup({TENANT: {"openai": self.upstream.url("/v1")}})
        token = gw.tenants[TENANT].token
        self.result["startup_s"] = gw.start(PATH, self.body, token)
        try:
            for url, headers in ((self.upstream.url(PATH), {"Authorization": f"Bearer {FAKE_KEY}"}),
                                 (gw.url(PATH), {"Authorization": f"Bearer {token}"})):
                status, _, data = fake.post(url, self.body, headers, timeout=30)
                if status != 200 or EXPECT.encode() not in data:
                    raise RuntimeError(f"spread preflight {url}: status {status}: {data[:400]!r}")
            if a.quiet_wait > 0:
                wait_quiet(a.quiet_wait, a.quiet_threshold, [gw.pid, self.upstream.nginx.pid])  # type: ignore[union-attr]
            self.result["direct"] = self.direct()
            self.result["gateway"] = self.through(gw, token)
        finally:
            gw.stop()
        d, g = self.result["direct"], self.result["gateway"]
        per = ", ".join(f"[{w['pid']}] {w['cores']:.2f} cores / {w['connections']} conns" for w in g["workers"])
        print(f"  spread: direct {d['rps']:8.0f} req/s; gateway {g['rps']:8.0f} req/s, p50 {g['p50_ms']:.2f} p99 "
              f"{g['p99_ms']:.2f} ms, gw cpu {g['gateway_cpu_ms_per_req']:.3f} ms/req, errors {g['errors']}; "
              f"workers: {per}; {g['listening_sockets']} listening socket(s)", flush=True)
        for name, side in (("direct", d), ("gateway", g)):
            if side["background_cores"] > a.quiet_threshold:
                self.result["notes"].append(f"other processes used {side['background_cores']:.2f} cores during "
                                            f"the {name} measurement")
        return self.result


def run(args: argparse.Namespace, procs: Procs, root: Path, upstream: fake.Upstream) -> dict[str, Any]:
    print(f"bench: spread scenario: {args.workers} workers, {CONNS} keep-alive connections opened at once, "
          f"{args.duration:g} s each way", flush=True)
    return SpreadBench(args, procs, root, upstream).run()
