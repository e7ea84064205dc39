"""The `tenants` scenario: does the gateway's cost grow with its tenants (issue 11)?

One gateway (2 workers) over N seeded tenants (bench/tenant_seed.py; 1,000 by default),
each with a token, an OpenAI credential whose base_url is the nginx fake, and a default
llm model. 32 wrk connections cycle over all tokens (each request carries the next
tenant's token, model "default"). In order:

1. cold pass: every tenant's first request on each worker, one connection per worker
   (bench/tenant_load.py `cold_pass`): the cold-tenant cost, then the same tenants warm;
2. phase "steady": wrk only;
3. phase "+1 admin write/s": wrk, and an admin API write on the gateway's own port every
   second (mostly a new token for a random tenant; see `tenant_load.write_ops`);
4. phase "+2 tenant creations/s": wrk, and `POST /admin/v1/tenants` twice a second;
5. RSS of the gateway's processes with all N tenants warm (taken after "steady");
6. eviction run: a second gateway on the same data with `cache: {tenants: 100,
   private_keys: 100}`, the same cycling load: nearly every request is a cold tenant.

Each phase follows a quiet wait and `--warmup` s of the same load, unmeasured; it is one
bounded wrk run, and its writes run meanwhile in threads of this process. The verdict
against the issue's targets is `report.tenants_verdict`.
"""

from __future__ import annotations

import argparse
import json
import secrets
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench import fake, report, wrk
from bench.gateway import FAKE_KEY, REPO, Gateway, _env
from bench.procs import Procs, Watch, rss_bytes, tree, wait_quiet
from bench.scenarios import MESSAGES
from bench.tenant_load import AdminWriter, cold_pass, rotating_script, write_ops
from bench.tenant_seed import DEFAULT_MODEL, tenant_name

CONNS = 32             # the measurement: 32 concurrent clients
EXPECT = '"chat.completion"'
PATH = "/v1/chat/completions"
WARM_SAMPLE = 300      # tenants re-requested warm, per worker, as the cold pass's baseline
PHASES: list[tuple[str, str | None, float]] = [   # (name, write kind, writes per second)
    ("steady", None, 0.0),
    ("+1 admin write/s", "admin", 1.0),
    ("+2 tenant creations/s", "create", 2.0),
]


class TenantsBench:
    def __init__(self, args: argparse.Namespace, procs: Procs, root: Path, upstream: fake.Upstream) -> None:
        self.args, self.procs, self.upstream = args, procs, upstream
        self.root = root / "tenants"
        self.root.mkdir(parents=True)
        self.n = args.tenants
        self.base_url = upstream.url("/v1")
        self.admin_token = "mpa-bench-" + secrets.token_urlsafe(32)
        self.body = {"model": "default", "messages": MESSAGES, "max_tokens": 64, "temperature": 0.2}
        self.body_file = self.root / "body.json"
        self.body_file.write_bytes(json.dumps(self.body).encode())
        self.tokens_file = self.root / "tokens.txt"
        self.probe_token = ""
        self.worker_pids: list[int] = []
        self.result: dict[str, Any] = {"tenants": self.n, "conns": CONNS, "duration_s": args.duration,
                                       "workers": args.workers, "notes": []}

    def note(self, text: str) -> None:
        print(f"  tenants: {text}", flush=True)
        self.result["notes"].append(text)

    # -- set-up --------------------------------------------------------------------

    def gateway(self, name: str, data_dir: Path, extra: str = "") -> Gateway:
        gw = Gateway(self.procs, self.root / name, workers=self.args.workers)
        # The same config Gateway writes, on the seeded data, with an admin token we know.
        gw.config.write_text(f"host: 127.0.0.1\nport: {gw.port}\nworkers: {gw.workers}\ndata_dir: {data_dir}\n"
                             f"log_level: warning\nadmin_token: {self.admin_token}\n{extra}")
        return gw

    def seed(self, gw: Gateway) -> None:
        argv = [sys.executable, "-m", "bench.tenant_seed", "--config", str(gw.config), "--tenants", str(self.n),
                "--base-url", self.base_url, "--api-key", FAKE_KEY, "--tokens-out", str(self.tokens_file)]
        # Like Gateway.cli: the product's own code, without the caller's MODELPORT_* settings.
        out = subprocess.run(argv, capture_output=True, text=True, cwd=REPO, env=_env(),
                             timeout=600 + self.n / 10, check=False)
        if out.returncode != 0:
            raise RuntimeError(f"bench.tenant_seed failed: {out.stderr.strip()[-2000:]}")
        seeded = json.loads(out.stdout.strip().splitlines()[-1])
        self.probe_token = seeded.pop("probe_token")
        self.result["seed"] = seeded
        print(f"  tenants: seeded {self.n} tenants (one shared RSA key pair, generated in {seeded['keygen_s']:.2f} s) "
              f"in {seeded['seconds']:.1f} s", flush=True)

    def start(self, gw: Gateway) -> float:
        took = gw.start(PATH, json.dumps(self.body).encode(), self.probe_token)
        print(f"  tenants: gateway ({gw.workers} workers) answered its first request {took:.2f} s after spawn",
              flush=True)
        return took

    # -- measurements ----------------------------------------------------------------

    def rss(self, gw: Gateway) -> dict[str, Any]:
        """RSS of the whole tree, and of each worker with its own children (crypto helpers).
        Before the cold pass has told which processes are workers: of every child of the
        supervisor (the workers, and multiprocessing's resource tracker)."""
        pids = tree(gw.pid)
        workers = self.worker_pids or [p for p in pids if _ppid(p) == gw.pid]
        per_worker = {str(w): rss_bytes(tree(w)) for w in workers if w in pids}
        return {"total": rss_bytes(pids), "per_worker": per_worker, "processes": len(pids)}

    def cold(self, gw: Gateway) -> None:
        tokens = self.tokens_file.read_text().split()
        t0 = time.perf_counter()
        stats = cold_pass(gw.pid, gw.port, PATH, json.dumps(self.body).encode(), tokens, self.probe_token,
                          EXPECT, gw.workers, WARM_SAMPLE)
        summary = stats.summary()
        summary["seconds"] = time.perf_counter() - t0
        self.worker_pids = [int(p) for p in summary["per_worker"]]
        self.result["cold"] = summary
        if stats.unmapped_workers:
            self.note(f"{stats.unmapped_workers} worker(s) got no connection in the cold pass: their tenants "
                      "are loaded during 'steady', which then is not all warm")
        f = _ms
        print(f"  tenants: cold pass ({summary['cold_samples']} first requests on {summary['workers']} workers, "
              f"1 connection each, found in {summary['connections_tried']} tries; {summary['seconds']:.1f} s): "
              f"cold p50 {f(summary['cold_p50_ms'])} p99 {f(summary['cold_p99_ms'])} "
              f"max {f(summary['cold_max_ms'])} ms; warm p50 {f(summary['warm_p50_ms'])} "
              f"p99 {f(summary['warm_p99_ms'])} ms; errors {summary['errors']}", flush=True)
        if summary["errors"]:
            print(f"    errors: {summary['error_kinds']} {summary['error_sample'][:200]!r}", flush=True)

    def phase(self, gw: Gateway, name: str, kind: str | None, rate: float, lua: Path) -> dict[str, Any]:
        a = self.args
        if a.quiet_wait > 0:
            wait_quiet(a.quiet_wait, a.quiet_threshold, [gw.pid, self.upstream.nginx.pid])  # type: ignore[union-attr]
        if a.warmup:
            self.warm_wrk(gw, lua, a.warmup)
        writer = None
        if kind is not None:
            make = write_ops(kind, self.n, lambda i: tenant_name("bench", i),
                             {"api_key": FAKE_KEY, "base_url": self.base_url}, f"openai/{DEFAULT_MODEL}",
                             f"bench-new-{int(time.time())}")
            writer = AdminWriter(gw.url(""), self.admin_token, rate, make)
        with Watch({"gateway": gw.pid}) as watch:
            if writer is not None:
                writer.start()
            try:
                result: dict[str, Any] = wrk.run(self.procs, gw.url(PATH), lua, CONNS, a.duration,
                                                 threads=a.wrk_threads)
            finally:
                writes = writer.stop() if writer is not None else None
        use = watch.result["gateway"]
        result.update({"phase": name, "writes": writes, "write_rate": rate,
                       "gateway_cpu_ms_per_req": use.cpu_s * 1000 / max(result["requests"], 1),
                       "gateway_peak_rss": use.peak_rss, "background_cores": watch.background_cores})
        w = "" if writes is None else (f"  writes {writes['count']} (errors {writes['errors']}) p50 "
                                       f"{_ms(writes['p50_ms'])} max {_ms(writes['max_ms'])} ms")
        print(f"  tenants: {name:<22} {result['rps']:8.0f} req/s  p50 {_ms(result['p50_ms'])} p99 "
              f"{_ms(result['p99_ms'])} max {_ms(result['max_ms'])} ms  gw cpu "
              f"{result['gateway_cpu_ms_per_req']:.3f} ms/req  errors {result['errors']}{w}", flush=True)
        if result["errors"]:
            print(f"    errors: {result['error_kinds']} {str(result.get('error_sample', ''))[:200]!r}", flush=True)
        if watch.background_cores > a.quiet_threshold:
            self.note(f"other processes used {watch.background_cores:.2f} cores during '{name}'")
        return result

    def warm_wrk(self, gw: Gateway, lua: Path, seconds: float) -> None:
        """Unmeasured, before each phase: every phase starts from the same load with its
        connections up (the tenants themselves were warmed by the cold pass)."""
        wrk.run(self.procs, gw.url(PATH), lua, CONNS, seconds, threads=self.args.wrk_threads)

    # -- the run -----------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        a = self.args
        data = self.root / "data"
        gw = self.gateway("gateway", data)
        self.seed(gw)
        lua = rotating_script(self.root / "rotate.lua", self.body_file, self.tokens_file, EXPECT,
                              min(a.wrk_threads, CONNS))
        self.result["startup_s"] = self.start(gw)
        try:
            self.result["rss_start"] = self.rss(gw)
            self.cold(gw)
            self.result["rss_after_cold"] = self.rss(gw)
            phases = []
            for name, kind, rate in PHASES:
                phases.append(self.phase(gw, name, kind, rate, lua))
                if kind is None:  # after "steady": every tenant warm, nothing written yet
                    self.result["rss_warm"] = self.rss(gw)
            self.result["phases"] = phases
            self.result["rss_end"] = self.rss(gw)
        finally:
            gw.stop()
        self.print_rss()
        if a.tenant_evict_cache > 0:
            self.evict(data, lua)
        return self.result

    def print_rss(self) -> None:
        r, start = self.result.get("rss_warm"), self.result.get("rss_start")
        if not r or not start:
            return
        workers = ", ".join(f"{int(v) / 2**20:.0f}" for v in r["per_worker"].values())
        grown = [(int(v) - int(start["per_worker"].get(k, v))) / max(self.n, 1) / 1024
                 for k, v in r["per_worker"].items()]
        self.result["rss_growth_kib_per_tenant_per_worker"] = grown
        print(f"  tenants: RSS with {self.n} warm tenants: {r['total'] / 2**20:.0f} MiB in total ({r['processes']} "
              f"processes), workers {workers} MiB (at start {start['total'] / 2**20:.0f} MiB; "
              f"{', '.join(f'{g:.1f}' for g in grown)} KiB per tenant per worker)", flush=True)

    def evict(self, data: Path, lua: Path) -> None:
        size = self.args.tenant_evict_cache
        if self.n <= size:
            self.note(f"eviction run skipped: {self.n} tenants fit in a cache of {size} "
                      "(use more tenants or a smaller --tenant-evict-cache)")
            self.result["evict"] = {"skipped": f"{self.n} tenants fit in a cache of {size}", "cache": size}
            return
        gw = self.gateway("gateway-evict", data, f"cache:\n  tenants: {size}\n  private_keys: {size}\n")
        try:
            try:
                self.start(gw)
            except (RuntimeError, TimeoutError) as exc:
                self.note(f"eviction run skipped: the gateway did not start with `cache:` settings ({exc})"[:600])
                self.result["evict"] = {"skipped": str(exc)[:600], "cache": size}
                return
            result = self.phase(gw, f"evict (cache {size})", None, 0.0, lua)
            result["cache"] = size
            self.result["evict"] = result
        finally:
            gw.stop()


def _ppid(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return int(f.read().rsplit(b")", 1)[1].split()[1])
    except OSError:
        return 0


def _ms(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}"


def run(args: argparse.Namespace, procs: Procs, root: Path, upstream: fake.Upstream) -> dict[str, Any]:
    print(f"bench: tenants scenario: {args.tenants} tenants, {CONNS} connections, {args.duration:g} s per phase",
          flush=True)
    result = TenantsBench(args, procs, root, upstream).run()
    result["verdict"] = report.tenants_verdict(result)
    return result
