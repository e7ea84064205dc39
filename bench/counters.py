"""The `counters` scenario (issue 15): where rate-limit counters should live when several
instances share one PostgreSQL database, measured in one run.

    python -m bench --scenarios counters --duration 5 --rounds 1

Set-up, all on loopback: a throwaway PostgreSQL cluster (bench/pg_cluster.py: durable
settings, fsync on), a throwaway `redis-server` (no persistence: `--save '' --appendonly
no`, counters are worth a minute), and two pairs of gateway instances, `--workers` (2)
workers each, all four on the one database (same tenants, same master key):
- `pg-a`, `pg-b`: counters and cooldowns in PostgreSQL (the default);
- `redis-a`, `redis-b`: the same configuration plus `redis_url`.
Tenants, made once with the real CLI: `bench` (its own credential for the nginx fake, no
limit) and `bench-limited` (the same, with a tenant rpm and tpm far above the load: every
request takes two counters, one request and the prompt's estimated tokens, and settles the
tokens counter with the real usage afterwards; nothing is ever refused).

Measured, in each round: non-stream OpenAI chat at 64 connections direct to the fake, then
through a pair (wrk, 2 threads of 32 connections, thread 1 to the pair's A, thread 2 to its
B): `bench` on the PostgreSQL pair (no limit: the counters cost nothing), then
`bench-limited` with the counters in PostgreSQL (synchronous_commit on, the default), in
PostgreSQL with synchronous_commit=off, and in Redis. Each load follows a quiet wait and
`--warmup` s of the same load (unmeasured). CPU from /proc: both instances of the pair
(every process), PostgreSQL's processes, redis-server; write transactions per request from
PostgreSQL itself. Medians over `--rounds`.
"""

from __future__ import annotations

import argparse
import json
import secrets
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

from bench import fake, wrk
from bench.gateway import FAKE_KEY, Gateway
from bench.pg_cluster import Cluster
from bench.postgres import fmt, median
from bench.procs import Procs, Watch, free_port, wait_port, wait_quiet
from bench.scenarios import MESSAGES

CONNS, THREADS = 64, 2
EXPECT = '"chat.completion"'
PATH = "/v1/chat/completions"
MODEL = "gpt-4o-mini"
HIGH = 10**12  # rpm and tpm of `bench-limited`: never reached
# (label, pair, tenant, synchronous_commit) per variant, in the order measured.
VARIANTS: dict[str, tuple[str, str, str, bool]] = {
    "no-limit": ("no rate limit (counters unused)", "pg", "bench", True),
    "pg": ("rate limit, counters in PostgreSQL", "pg", "bench-limited", True),
    "pg-async": ("rate limit, counters in PostgreSQL, synchronous_commit=off", "pg", "bench-limited", False),
    "redis": ("rate limit, counters in Redis", "redis", "bench-limited", True),
}


class Redis:
    """A throwaway redis-server of the benchmark's own (a child in its own process group)."""

    def __init__(self, procs: Procs, root: Path) -> None:
        self.procs, self.root = procs, root
        self.password = "bench-" + secrets.token_hex(12)
        self.port = 0
        self.proc: Any = None
        self.version = ""

    @property
    def url(self) -> str:
        return f"redis://:{self.password}@127.0.0.1:{self.port}/0"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return int(self.proc.pid)

    def start(self) -> None:
        binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        if not Path(binary).exists():
            raise RuntimeError("redis-server is not installed (Debian: apt-get install redis-server; .ci/run does it)")
        self.root.mkdir(parents=True, exist_ok=True)
        conf = self.root / "redis.conf"  # the password in a file, not on the command line
        self.port = free_port()
        conf.write_text(f"port {self.port}\nbind 127.0.0.1\nsave \"\"\nappendonly no\ndir {self.root}\n"
                        f"requirepass {self.password}\n")
        conf.chmod(0o600)
        self.proc = self.procs.start("redis", [binary, str(conf)], log=self.root / "redis.log", cwd=self.root)
        wait_port(self.port, 15, self.proc)
        self.version = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=10,
                                      check=False).stdout.split(" sha=")[0].strip()

    def stop(self) -> None:
        if self.proc is not None:
            self.procs.stop(self.proc)
            self.proc = None


class CountersBench:
    def __init__(self, args: argparse.Namespace, procs: Procs, root: Path, upstream: fake.Upstream) -> None:
        self.args, self.procs, self.upstream = args, procs, upstream
        self.root = root / "counters"
        self.root.mkdir(parents=True)
        body = json.dumps({"model": MODEL, "messages": MESSAGES, "max_tokens": 64, "temperature": 0.2}).encode()
        self.body = body
        (self.root / "body.json").write_bytes(body)
        self.cluster = Cluster(procs, self.root / "cluster")
        self.redis = Redis(procs, self.root / "redis")
        self.pairs: dict[str, list[Gateway]] = {}
        self.tokens: dict[str, str] = {}
        self.result: dict[str, Any] = {"conns": CONNS, "wrk_threads": THREADS, "duration_s": args.duration,
                                       "warmup_s": args.warmup, "rounds": args.rounds, "workers": args.workers,
                                       "measurements": [], "notes": []}

    def setup(self) -> None:
        self.cluster.start()
        self.redis.start()
        self.result["versions"] = {"postgres": self.cluster.version, "redis": self.redis.version}
        print(f"  counters: {self.cluster.version} on :{self.cluster.port}, {self.redis.version} on "
              f":{self.redis.port}", flush=True)
        w, dsn = self.args.workers, self.cluster.dsn
        first = Gateway(self.procs, self.root / "pg-a", workers=w, extra_config=f"database: {dsn}\n")
        first.setup({"bench": {"openai": self.upstream.url("/v1")}, "bench-limited": {"openai": self.upstream.url("/v1")}})
        first.cli("limits", "set", "bench-limited", "--rpm", str(HIGH), "--tpm", str(HIGH))
        self.tokens = {t: first.tenants[t].token for t in ("bench", "bench-limited")}
        # The others: the first one's configuration on their own ports (its data directory for
        # the master key, as instances on several machines share it from a secret store).
        self.pairs = {"pg": [first], "redis": []}
        for pair, name in (("pg", "pg-b"), ("redis", "redis-a"), ("redis", "redis-b")):
            gw = Gateway(self.procs, self.root / name, workers=w)
            gw.config.write_text(first.config.read_text().replace(f"port: {first.port}\n", f"port: {gw.port}\n")
                                 + (f"redis_url: {self.redis.url}\n" if pair == "redis" else ""))
            self.pairs[pair].append(gw)
        starts = {}
        for pair, gws in self.pairs.items():
            for i, gw in enumerate(gws):
                starts[f"{pair}-{'ab'[i]}"] = gw.start(PATH, self.body, self.tokens["bench-limited"])
        self.result["startup_s"] = starts
        for pair, gws in self.pairs.items():
            for gw in gws:
                for token in self.tokens.values():
                    status, _, data = fake.post(gw.url(PATH), self.body, {"Authorization": f"Bearer {token}"},
                                                timeout=30)
                    if status != 200 or EXPECT.encode() not in data:
                        raise RuntimeError(f"counters preflight {pair} {gw.url(PATH)}: {status} {data[:300]!r}")

    def measure(self, rnd: int, variant: str) -> dict[str, Any]:
        nginx = self.upstream.nginx.pid  # type: ignore[union-attr]
        if variant == "direct":
            url, token, ports, gws = self.upstream.url(PATH), FAKE_KEY, None, {}
        else:
            _, pair, tenant, sync = VARIANTS[variant]
            self.cluster.synchronous_commit(sync)
            url, token = self.pairs[pair][0].url(PATH), self.tokens[tenant]
            ports = [gw.port for gw in self.pairs[pair]]
            gws = {f"{pair}-{'ab'[i]}": gw.pid for i, gw in enumerate(self.pairs[pair])}
        a = self.args
        watched = {**gws, "upstream": nginx, "postgres": self.cluster.pid, "redis": self.redis.pid}
        if a.quiet_wait > 0:
            wait_quiet(a.quiet_wait, a.quiet_threshold, list(watched.values()))
        lua = wrk.script(self.root / f"{variant}.lua", self.root / "body.json", "", EXPECT.replace('"', '\\"'),
                         {"Authorization": f"Bearer {token}"}, ports=ports)
        if a.warmup:
            wrk.run(self.procs, url, lua, CONNS, a.warmup, threads=THREADS)
        xid0, _ = self.cluster.counters()
        with Watch(watched) as watch:
            result = wrk.run(self.procs, url, lua, CONNS, a.duration, threads=THREADS)
        xid1, _ = self.cluster.counters()
        n = max(result["requests"], 1)
        use = watch.result
        gw_cpu = sum(use[g].cpu_s for g in gws)
        result.update({
            "round": rnd, "variant": variant,
            "gateway_cpu_ms_per_req": gw_cpu * 1000 / n if gws else None,
            "postgres_cpu_ms_per_req": use["postgres"].cpu_s * 1000 / n,
            "redis_cpu_ms_per_req": use["redis"].cpu_s * 1000 / n,
            "total_cpu_ms_per_req": (gw_cpu + use["postgres"].cpu_s + use["redis"].cpu_s) * 1000 / n if gws else None,
            "pg_write_xacts_per_req": (xid1 - xid0) / n,
            "instance_cores": {g: use[g].cpu_s / watch.wall for g in gws},
            "background_cores": watch.background_cores})
        self.result["measurements"].append(result)
        cpu = "" if not gws else (f"  gw {result['gateway_cpu_ms_per_req']:.3f} + pg {result['postgres_cpu_ms_per_req']:.3f}"
                                  f" + redis {result['redis_cpu_ms_per_req']:.3f} = "
                                  f"{result['total_cpu_ms_per_req']:.3f} ms CPU/req")
        print(f"  round {rnd} counters {variant:<9} {result['rps']:8.0f} req/s  p50 {result['p50_ms']:7.2f} "
              f"p99 {result['p99_ms']:7.2f} ms{cpu}  {result['pg_write_xacts_per_req']:.2f} pg write xacts/req  "
              f"errors {result['errors']}", flush=True)
        return result

    def run(self) -> dict[str, Any]:
        try:
            self.setup()
            for rnd in range(1, self.args.rounds + 1):
                self.measure(rnd, "direct")
                order = list(VARIANTS) if rnd % 2 else list(VARIANTS)[::-1]
                for variant in order:
                    self.measure(rnd, variant)
        finally:
            for gws in self.pairs.values():
                for gw in gws:
                    gw.stop()
            self.redis.stop()
            self.cluster.stop()
        self.result["summary"] = summarize(self.result["measurements"])
        busy = [m["background_cores"] for m in self.result["measurements"]]
        self.result["notes"].append(f"other processes used {min(busy):.2f}-{max(busy):.2f} cores during the "
                                    "measurements")
        return self.result


def summarize(measurements: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Medians over rounds, one row per variant, with ratios to direct and to counters in PostgreSQL."""
    rows: list[dict[str, Any]] = []
    for variant in ["direct", *VARIANTS]:
        ms = [m for m in measurements if m["variant"] == variant]
        if not ms:
            continue
        row: dict[str, Any] = {"variant": variant, "rounds": len(ms), "errors": sum(m["errors"] for m in ms)}
        for key in ("rps", "p50_ms", "p99_ms", "postgres_cpu_ms_per_req", "redis_cpu_ms_per_req",
                    "pg_write_xacts_per_req"):
            row[key] = median([m[key] for m in ms])
        for key in ("gateway_cpu_ms_per_req", "total_cpu_ms_per_req"):
            row[key] = median([m[key] for m in ms]) if ms[0][key] is not None else None
        rows.append(row)
    by = {r["variant"]: r for r in rows}
    direct, pg = by.get("direct"), by.get("pg")
    for r in rows:
        r["rps_vs_direct"] = r["rps"] / direct["rps"] if direct and direct["rps"] else None
        r["rps_vs_pg"] = r["rps"] / pg["rps"] if pg and pg["rps"] and r["variant"] != "direct" else None
        r["cpu_vs_pg"] = (r["total_cpu_ms_per_req"] / pg["total_cpu_ms_per_req"]
                          if pg and r["total_cpu_ms_per_req"] and pg["total_cpu_ms_per_req"] else None)
    return rows


def report(result: dict[str, Any]) -> str:
    versions = result.get("versions", {})
    lines = [(f"### Rate-limit counters: PostgreSQL or Redis, 2 instances x {result['workers']} workers on one "
              f"PostgreSQL, non-stream chat at {result['conns']} connections (wrk, {result['wrk_threads']} threads), "
              f"{result['duration_s']:g} s, {result['rounds']} round(s) (medians); {versions.get('postgres', '')}, "
              f"{versions.get('redis', '')}"),
             "", ("| variant | req/s | × direct | × counters in PostgreSQL | p50 ms | p99 ms | gw CPU ms/req | "
                  "PostgreSQL CPU ms/req | Redis CPU ms/req | total CPU ms/req | × counters in PostgreSQL | "
                  "PG write xacts/req | errors |"),
             "|" + "|".join("---" for _ in range(13)) + "|"]
    for r in result["summary"]:
        label = "direct to the fake" if r["variant"] == "direct" else VARIANTS[r["variant"]][0]
        lines.append(f"| {label} | {fmt(r['rps'])} | {fmt(r['rps_vs_direct'], 3)} | {fmt(r['rps_vs_pg'])} | "
                     f"{fmt(r['p50_ms'])} | {fmt(r['p99_ms'])} | {fmt(r['gateway_cpu_ms_per_req'], 3)} | "
                     f"{fmt(r['postgres_cpu_ms_per_req'], 3)} | {fmt(r['redis_cpu_ms_per_req'], 3)} | "
                     f"{fmt(r['total_cpu_ms_per_req'], 3)} | {fmt(r['cpu_vs_pg'])} | {fmt(r['pg_write_xacts_per_req'])} | "
                     f"{r['errors']} |")
    starts = result.get("startup_s", {})
    if starts:
        lines.append("\nStart-up to the first served request: " + ", ".join(f"{k} {v:.2f} s" for k, v in starts.items()))
    for note in result.get("notes", []):
        lines.append(f"Note: {note}")
    return "\n".join(lines)


def run(args: argparse.Namespace, procs: Procs, root: Path, upstream: fake.Upstream) -> dict[str, Any]:
    print(f"bench: counters scenario: rate-limit counters in PostgreSQL vs Redis, 2 instances x {args.workers} "
          f"workers on PostgreSQL, {CONNS} connections, {args.duration:g} s per load, {args.rounds} round(s)",
          flush=True)
    started = time.perf_counter()
    result = CountersBench(args, procs, root, upstream).run()
    result["took_s"] = time.perf_counter() - started
    return result
