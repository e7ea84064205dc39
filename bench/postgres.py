"""The `postgres` scenario (issue 15): the same load on SQLite and on PostgreSQL, in one run.

    python -m bench --scenarios postgres --duration 5 --rounds 1

Set-up, all on loopback: a throwaway PostgreSQL cluster (bench/pg_cluster.py: durable
settings, fsync on), and three gateways, each with `--workers` workers (2) and the same
`hosted:` section (OpenAI lent on the nginx fake, quota -1: unlimited, but every call still
takes its reservation, one conditional UPDATE):
- `sqlite`: one instance on its own data directory (SQLite, the default);
- `pg-a` and `pg-b`: two instances on separate ports on the one PostgreSQL database
  (`database: postgresql://...`, `database_pool` left at its default), sharing one data
  directory for the master key, as instances on several machines share it from a secret store.
Tenants: `bench` (its own OpenAI credential, base_url the nginx fake) and `bench-hosted`
(no credential: the trial) made with the real CLI on each backend, as in the rounds; and
MANY trial tenants `bench-hosted-NN` made through the admin API once the gateways run.

Measured, in each round: non-stream OpenAI chat at 64 connections direct to the fake, then
for each variant through each backend. Variants: `chat` (own credential: the database sees
only usage rows, written in batches), `hosted` (one trial tenant: a quota reservation per
request, all on that tenant's one row) and `hosted-many` (each request the next of MANY
trial tenants, as bench/tenants.py cycles: reservations spread over MANY rows). Backends:
`sqlite`, `postgres` (commits flushed: synchronous_commit on, the default) and
`postgres-async` (synchronous_commit=off, set by ALTER SYSTEM and a reload: what SQLite's WAL
with synchronous=NORMAL promises). One wrk with 2 threads of 32 connections each; for
PostgreSQL thread 1 goes to pg-a and thread 2 to pg-b (`wrk.script(ports=...)`), so one
latency histogram covers both instances. Each load follows a quiet wait and `--warmup` s
of the same load (unmeasured); the backends' order alternates between rounds.

CPU from /proc: every process of every instance of the backend measured (supervisors,
workers, RSA helpers), and PostgreSQL's own processes (the postmaster and its children:
backends, WAL writer, checkpointer...). From PostgreSQL itself, exactly: the write
transactions (transaction ids assigned) and WAL bytes per request. Medians over `--rounds`.
"""

from __future__ import annotations

import argparse
import json
import secrets
import statistics
from pathlib import Path
from typing import Any

from bench import fake, wrk
from bench.gateway import FAKE_KEY, Gateway
from bench.pg_cluster import SETTINGS, Cluster
from bench.procs import Procs, Watch, wait_quiet
from bench.scenarios import MESSAGES
from bench.tenant_load import ROTATE_LUA

CONNS, THREADS = 64, 2
EXPECT = '"chat.completion"'
PATH = "/v1/chat/completions"
MODEL = "gpt-4o-mini"
MANY = 32   # tenants of the `hosted-many` variant, made through the admin API
# variant -> its tenant; None: MANY tenants `bench-hosted-NN`, each request the next one's.
VARIANTS: dict[str, str | None] = {"chat": "bench", "hosted": "bench-hosted", "hosted-many": None}
# The PostgreSQL runs: durable commits (the server's default) and synchronous_commit=off,
# which is what SQLite's WAL mode with synchronous=NORMAL (proxy/store/base.py) promises: no
# flush per commit, the last commits lost on an OS crash or power cut, never a corruption.
BACKENDS = ("sqlite", "postgres", "postgres-async")
LABELS = {"direct": "direct to the fake", "sqlite": "SQLite, 1 instance",
          "postgres": "PostgreSQL, 2 instances", "postgres-async": "PostgreSQL, 2 instances, synchronous_commit=off"}


def median(values: list[float]) -> float:
    """The median (0 for none): shared by the database scenarios (bench/counters.py too)."""
    return statistics.median(values) if values else 0.0


class PostgresBench:
    def __init__(self, args: argparse.Namespace, procs: Procs, root: Path, upstream: fake.Upstream) -> None:
        self.args, self.procs, self.upstream = args, procs, upstream
        self.root = root / "postgres"
        self.root.mkdir(parents=True)
        self.body = json.dumps({"model": MODEL, "messages": MESSAGES, "max_tokens": 64, "temperature": 0.2}).encode()
        (self.root / "body.json").write_bytes(self.body)
        self.cluster = Cluster(procs, self.root / "cluster")
        self.sqlite: Gateway | None = None
        self.pg: list[Gateway] = []
        self.tokens: dict[str, dict[str, str]] = {}   # backend -> tenant -> token
        self.admin = "mpa-bench-" + secrets.token_urlsafe(32)
        self.result: dict[str, Any] = {"conns": CONNS, "wrk_threads": THREADS, "duration_s": args.duration,
                                       "warmup_s": args.warmup, "rounds": args.rounds, "workers": args.workers,
                                       "postgres_settings": SETTINGS, "measurements": [], "notes": []}

    # -- set-up ----------------------------------------------------------------------

    def extra(self, dsn: str | None) -> str:
        return ((f"database: {dsn}\n" if dsn else "") + f"admin_token: {self.admin}\n"
                + f"hosted:\n  openai:\n    credentials:\n      api_key: {FAKE_KEY}\n"
                f"      base_url: {self.upstream.url('/v1')}\n    quota: -1\n    models: [{MODEL}]\n")

    def setup(self) -> None:
        took = self.cluster.start()
        self.result["postgres_version"] = self.cluster.version
        print(f"  postgres: {self.cluster.version} on 127.0.0.1:{self.cluster.port} in {took:.1f} s "
              f"({', '.join(f'{k}={v}' for k, v in SETTINGS.items() if k != 'listen_addresses')})", flush=True)
        tenants: dict[str, dict[str, str]] = {"bench": {"openai": self.upstream.url("/v1")}, "bench-hosted": {}}
        w = self.args.workers
        self.sqlite = Gateway(self.procs, self.root / "sqlite", workers=w, extra_config=self.extra(None))
        self.sqlite.setup(tenants)
        a = Gateway(self.procs, self.root / "pg-a", workers=w, extra_config=self.extra(self.cluster.dsn))
        a.setup(tenants)  # through the CLI, into PostgreSQL
        b = Gateway(self.procs, self.root / "pg-b", workers=w)
        b.config.write_text(a.config.read_text().replace(f"port: {a.port}\n", f"port: {b.port}\n"))
        self.pg = [a, b]
        self.tokens = {"sqlite": {t: self.sqlite.tenants[t].token for t in tenants},
                       "postgres": {t: a.tenants[t].token for t in tenants}}
        starts = {"sqlite": self.sqlite.start(PATH, self.body, self.tokens["sqlite"]["bench"])}
        for name, gw in (("pg-a", a), ("pg-b", b)):
            starts[name] = gw.start(PATH, self.body, self.tokens["postgres"]["bench"])
        self.result["startup_s"] = starts
        print("  postgres: start-up to the first served request: "
              + ", ".join(f"{k} {v:.2f} s" for k, v in starts.items()), flush=True)
        for backend, gw in (("sqlite", self.sqlite), ("postgres", a)):
            self.many_tenants(backend, gw)
        self.preflight()

    def many_tenants(self, backend: str, gw: Gateway) -> None:
        """MANY hosted-trial tenants through the admin API (a key pair each); their tokens in a file."""
        auth = {"Authorization": f"Bearer {self.admin}"}
        tokens = []
        for i in range(MANY):
            name = f"bench-hosted-{i:02d}"
            for path, body in (("/admin/v1/tenants", {"name": name}),
                               (f"/admin/v1/tenants/{name}/tokens", {"name": "bench"})):
                status, _, data = fake.post(gw.url(path), json.dumps(body).encode(), auth, timeout=60)
                if status not in (200, 201):
                    raise RuntimeError(f"postgres: POST {path}: {status} {data[:300]!r}")
            tokens.append(json.loads(data)["token"])
        (self.root / f"tokens-{backend}.txt").write_text("\n".join(tokens) + "\n")
        self.tokens[backend]["bench-hosted-00"] = tokens[0]

    def preflight(self) -> None:
        assert self.sqlite is not None
        checks = [(self.upstream.url(PATH), FAKE_KEY)]
        for tenant in [t or "bench-hosted-00" for t in VARIANTS.values()]:
            checks.append((self.sqlite.url(PATH), self.tokens["sqlite"][tenant]))
            checks += [(gw.url(PATH), self.tokens["postgres"][tenant]) for gw in self.pg]
        for url, token in checks:
            status, _, data = fake.post(url, self.body, {"Authorization": f"Bearer {token}"}, timeout=30)
            if status != 200 or EXPECT.encode() not in data:
                raise RuntimeError(f"postgres preflight {url}: status {status}: {data[:400]!r}")

    # -- loads -----------------------------------------------------------------------

    def load(self, name: str, url: str, token: str, ports: list[int] | None, duration: float,
             check: bool) -> dict[str, Any]:
        """token: a bearer token, or a file of them (`@path`): each request the next one."""
        expect = EXPECT.replace('"', '\\"')
        lua = self.root / f"{name}.lua"
        if token.startswith("@"):  # bench/tenant_load.py's rotation, on wrk.LUA with the threads spread
            lua.write_text(wrk.LUA % {"body": str(self.root / "body.json"), "token": "", "expect": expect,
                                      "extra_headers": "", "spread_threads": wrk.spread_threads(ports),
                                      "response_hook": wrk.CHECK_HOOK + ROTATE_LUA % {"tokens": token[1:],
                                                                                      "threads": THREADS}})
        else:
            wrk.script(lua, self.root / "body.json", "", expect if check else "",
                       {"Authorization": f"Bearer {token}"}, ports=ports)
        return wrk.run(self.procs, url, lua, CONNS, duration, threads=THREADS)

    def token(self, backend: str, variant: str) -> str:
        tenant = VARIANTS[variant]
        return f"@{self.root / f'tokens-{backend}.txt'}" if tenant is None else self.tokens[backend][tenant]

    def measure(self, rnd: int, backend: str, variant: str) -> dict[str, Any]:
        assert self.sqlite is not None
        nginx = self.upstream.nginx.pid  # type: ignore[union-attr]
        if backend == "direct":
            url, token, ports, gws = self.upstream.url(PATH), FAKE_KEY, None, {}
        elif backend == "sqlite":
            url, token, ports, gws = self.sqlite.url(PATH), self.token("sqlite", variant), None, \
                {"sqlite": self.sqlite.pid}
        else:
            url, token = self.pg[0].url(PATH), self.token("postgres", variant)
            ports, gws = [gw.port for gw in self.pg], {"pg-a": self.pg[0].pid, "pg-b": self.pg[1].pid}
            self.cluster.synchronous_commit(backend == "postgres")
        a = self.args
        if a.quiet_wait > 0:
            wait_quiet(a.quiet_wait, a.quiet_threshold, [nginx, self.cluster.pid, *gws.values()])
        name = f"{backend}-{variant}"
        if a.warmup:
            self.load(f"{name}-warm", url, token, ports, a.warmup, False)
        xid0, wal0 = self.cluster.counters()
        with Watch({**gws, "upstream": nginx, "postgres": self.cluster.pid}) as watch:
            result = self.load(name, url, token, ports, a.duration, True)
        xid1, wal1 = self.cluster.counters()
        n = max(result["requests"], 1)
        use = watch.result
        gw_cpu = sum(use[g].cpu_s for g in gws)
        result.update({
            "round": rnd, "backend": backend, "variant": variant,
            "gateway_cpu_ms_per_req": gw_cpu * 1000 / n if gws else None,
            "instance_cores": {g: use[g].cpu_s / watch.wall for g in gws},
            "gateway_peak_rss": {g: use[g].peak_rss for g in gws},
            "postgres_cpu_ms_per_req": use["postgres"].cpu_s * 1000 / n,
            "postgres_cores": use["postgres"].cpu_s / watch.wall,
            # Write transactions (each with a WAL flush when synchronous_commit is on) and WAL.
            "pg_write_xacts_per_req": (xid1 - xid0) / n, "pg_wal_bytes_per_req": (wal1 - wal0) / n,
            "upstream_busy": use["upstream"].cpu_s / watch.wall,
            "client_cores": watch.client_cpu / watch.wall,
            "background_cores": watch.background_cores})
        self.result["measurements"].append(result)
        cpu = (f"  gw cpu {result['gateway_cpu_ms_per_req']:.3f} ms/req (cores "
               + ", ".join(f"{g} {c:.2f}" for g, c in result["instance_cores"].items()) + ")") if gws else ""
        print(f"  round {rnd} postgres {variant:<11} {backend:<14} {result['rps']:8.0f} req/s  p50 {result['p50_ms']:7.2f} "
              f"p99 {result['p99_ms']:7.2f} ms{cpu}  postgres cpu {result['postgres_cpu_ms_per_req']:.3f} ms/req "
              f"({result['postgres_cores']:.2f} cores, {result['pg_write_xacts_per_req']:.2f} write xacts/req)  "
              f"errors {result['errors']}"
              + (f"  [others: {watch.background_cores:.2f} cores]" if watch.background_cores > a.quiet_threshold
                 else ""), flush=True)
        if result["errors"]:
            print(f"    errors: {result['error_kinds']} {result.get('error_sample', '')[:200]!r}", flush=True)
        return result

    def run(self) -> dict[str, Any]:
        try:
            self.setup()
            for rnd in range(1, self.args.rounds + 1):
                self.measure(rnd, "direct", "chat")
                order = BACKENDS if rnd % 2 else BACKENDS[::-1]
                for variant in VARIANTS:
                    for backend in order:
                        self.measure(rnd, backend, variant)
        finally:
            for gw in [*self.pg, self.sqlite]:
                if gw is not None:
                    gw.stop()
            self.cluster.stop()
        self.result["summary"] = summarize(self.result["measurements"])
        busy = [m["background_cores"] for m in self.result["measurements"]]
        self.result["notes"].append(f"other processes used {min(busy):.2f}-{max(busy):.2f} cores during the "
                                    "measurements")
        return self.result


def summarize(measurements: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Medians over rounds, one row per (variant, backend), with ratios to direct and to SQLite."""
    rows: list[dict[str, Any]] = []
    for variant, backend in [("chat", "direct")] + [(v, b) for v in VARIANTS for b in BACKENDS]:
        ms = [m for m in measurements if m["variant"] == variant and m["backend"] == backend]
        if not ms:
            continue
        row: dict[str, Any] = {"variant": variant, "backend": backend, "rounds": len(ms),
                               "errors": sum(m["errors"] for m in ms)}
        for key in ("rps", "p50_ms", "p99_ms", "postgres_cpu_ms_per_req", "postgres_cores", "pg_write_xacts_per_req",
                    "pg_wal_bytes_per_req"):
            row[key] = median([m[key] for m in ms])
        if backend != "direct":
            row["gateway_cpu_ms_per_req"] = median([m["gateway_cpu_ms_per_req"] for m in ms])
            row["instance_cores"] = {g: median([m["instance_cores"][g] for m in ms]) for g in ms[0]["instance_cores"]}
        rows.append(row)
    direct = next((r for r in rows if r["backend"] == "direct"), None)
    for r in rows:
        base = next((s for s in rows if s["variant"] == r["variant"] and s["backend"] == "sqlite"
                     and r["backend"] != "direct"), None)
        r["rps_vs_direct"] = r["rps"] / direct["rps"] if direct and direct["rps"] else None
        r["rps_vs_sqlite"] = r["rps"] / base["rps"] if base and base["rps"] else None
        r["cpu_vs_sqlite"] = (r["gateway_cpu_ms_per_req"] / base["gateway_cpu_ms_per_req"]
                              if base and r.get("gateway_cpu_ms_per_req") and base["gateway_cpu_ms_per_req"] else None)
    return rows


def fmt(v: float | None, digits: int = 2) -> str:
    """A figure for the tables ('-' for none)."""
    if v is None:
        return "-"
    return f"{v:,.0f}" if abs(v) >= 100 else f"{v:.{digits}f}"


def report(result: dict[str, Any]) -> str:
    starts = result.get("startup_s", {})
    lines = [(f"### PostgreSQL: {result['workers']} workers per instance, non-stream chat at {result['conns']} "
              f"connections (wrk, {result['wrk_threads']} threads), {result['duration_s']:g} s, "
              f"{result['rounds']} round(s) (medians); {result.get('postgres_version', '')}, "
              + ", ".join(f"{k}={v}" for k, v in result["postgres_settings"].items() if k != "listen_addresses")),
             "", ("| tenant | backend | req/s | × direct | × SQLite | p50 ms | p99 ms | gw CPU ms/req | × SQLite | "
                  "PostgreSQL CPU ms/req | write xacts/req | WAL bytes/req | gw cores per instance | errors |"),
             "|" + "|".join("---" for _ in range(14)) + "|"]
    for r in result["summary"]:
        tenant = {"direct": "-", "chat": "own credential", "hosted": "hosted trial",
                  "hosted-many": f"hosted trial, {MANY} tenants"}[r["variant"] if r["backend"] != "direct" else "direct"]
        cores = ", ".join(f"{c:.2f}" for c in r.get("instance_cores", {}).values()) or "-"
        pg = "-" if not r["backend"].startswith("postgres") else (
            f"{fmt(r['postgres_cpu_ms_per_req'], 3)} | {fmt(r['pg_write_xacts_per_req'])} | {fmt(r['pg_wal_bytes_per_req'])}")
        pg = pg if "|" in pg else "- | - | -"
        lines.append(f"| {tenant} | {LABELS[r['backend']]} | {fmt(r['rps'])} | {fmt(r['rps_vs_direct'], 3)} | "
                     f"{fmt(r['rps_vs_sqlite'])} | {fmt(r['p50_ms'])} | {fmt(r['p99_ms'])} | "
                     f"{fmt(r.get('gateway_cpu_ms_per_req'), 3)} | {fmt(r['cpu_vs_sqlite'])} | {pg} | {cores} | "
                     f"{r['errors']} |")
    if starts:
        lines.append("\nStart-up to the first served request: " + ", ".join(f"{k} {v:.2f} s" for k, v in starts.items()))
    for note in result.get("notes", []):
        lines.append(f"Note: {note}")
    return "\n".join(lines)


def run(args: argparse.Namespace, procs: Procs, root: Path, upstream: fake.Upstream) -> dict[str, Any]:
    print(f"bench: postgres scenario: SQLite (1 instance) vs PostgreSQL (2 instances), {args.workers} workers each, "
          f"{CONNS} connections, {args.duration:g} s per load, {args.rounds} round(s)", flush=True)
    return PostgresBench(args, procs, root, upstream).run()
