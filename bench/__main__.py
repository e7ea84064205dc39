"""`python -m bench`: what the gateway costs over calling the (fake) vendor directly.

    python -m bench                       # 3 rounds, 5 s per measurement, every scenario
    python -m bench --quick               # smoke run: 1 round, 1 s, a 200-stream soak
    python -m bench --scenarios chat,stream --rounds 5 --duration 10
    python -m bench --profile             # also py-spy the workers under load (top costs)
    python -m bench --scenarios tenants --tenants 1000   # cost with many tenants (bench/tenants.py)
    python -m bench --scenarios spread    # 64 connections at once: do both workers take some?
    python -m bench --scenarios postgres  # SQLite vs 2 instances on PostgreSQL (bench/postgres.py)
    python -m bench --scenarios counters  # rate-limit counters in PostgreSQL vs Redis (bench/counters.py)

Each round starts a fresh `modelport serve` (2 workers; start-up is timed to the first
served request), then for every scenario and connection count runs the same bounded
load direct to the fake upstream and through the gateway, back to back (the order
alternates between rounds). `tenants`, `spread`, `postgres` and `counters` run once,
after the rounds, on their own gateways. Results: tables on stdout and
bench/results/<time>.json (README.md).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import counters, fake, options, postgres, profile, report, spread, tenants, wrk
from bench.gateway import FAKE_KEY, Gateway, anthropic_translator
from bench.procs import Procs, Watch, background_cores, wait_quiet
from bench.scenarios import Scenario, ensure_tools, machine, scenarios

RESULTS = Path(__file__).resolve().parent / "results"
# Scenarios that run once, after the rounds, each on its own gateway: name -> (run, report).
ALONE = {"tenants": (tenants.run, report.tenants_report), "spread": (spread.run, report.spread_report),
         "postgres": (postgres.run, postgres.report), "counters": (counters.run, counters.report)}
def raw_request(port: int, path: str, body: bytes, headers: dict[str, str]) -> bytes:
    head = [f"POST {path} HTTP/1.1", f"Host: 127.0.0.1:{port}", "Content-Type: application/json",
            f"Content-Length: {len(body)}", "Accept: */*"] + [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


class Bench:
    def __init__(self, args: argparse.Namespace, procs: Procs, root: Path) -> None:
        self.args, self.procs, self.root = args, procs, root
        self.upstream = fake.Upstream(procs, root / "upstream")
        self.gateway: Gateway | None = None
        self.measurements: list[dict[str, Any]] = []
        self.startups: list[float] = []
        self.notes: list[str] = []
        self.anthropic: dict[str, Any] | None = None
        self.profiles: dict[str, Any] = {}
        self.alone: dict[str, dict[str, Any]] = {}   # results of the ALONE scenarios
        self.standard = [s for s in args.scenarios if s not in ALONE]  # the direct/gateway pairs

    # -- set-up ----------------------------------------------------------------------

    def setup(self) -> None:
        bg = background_cores(1.0)
        msg = f"other processes keep {bg:.2f} of {os.cpu_count()} cores busy at the start"
        print(f"bench: {msg}", flush=True)
        self.notes.append(msg)
        (self.root / "upstream").mkdir(parents=True)
        self.upstream.start()
        print(f"bench: fake upstream: nginx on 127.0.0.1:{self.upstream.port}, dribble server on "
              f"127.0.0.1:{self.upstream.dribble_port} (bodies from {fake.DATA})", flush=True)
        self.anthropic = anthropic_translator()
        wanted = self.args.scenarios
        if "anthropic" in wanted and self.anthropic is None:
            msg = "anthropic scenario skipped: 'anthropic' is not in translators.REGISTRY yet"
            print(f"bench: {msg}", flush=True)
            self.notes.append(msg)
            wanted.remove("anthropic")
            self.standard.remove("anthropic")
        self.scenarios = scenarios("claude-sonnet-4-5")
        if not self.standard:
            return  # no rounds: no gateway with the CLI-made tenants needed
        # The failover scenario's upstream fails 5% of requests at random: 3 attempts (the
        # default) all fail 1.25e-4 of the time, 4 attempts 6e-6. Only failing requests retry,
        # so the other scenarios are the same either way.
        extra = "routing:\n  retries: 3\n" if "failover" in wanted else ""
        self.gateway = Gateway(self.procs, self.root / "gateway", workers=self.args.workers, extra_config=extra)
        up = self.upstream
        tenants: dict[str, dict[str, str]] = {"bench": {"openai": up.url("/v1")},
                                             "bench-stream": {"openai": up.url("/stream/v1")},
                                             "bench-soak": {"openai": f"http://127.0.0.1:{up.dribble_port}/v1"}}
        if "embeddings-1536" in wanted:
            tenants["bench-large"] = {"openai": up.url("/large/v1")}
        if "failover" in wanted:
            tenants["bench-flaky"] = {"openai": up.url("/flaky/v1")}
        if self.anthropic is not None:
            base = str(self.anthropic["default_base_url"]).rstrip("/")
            tenants["bench"]["anthropic"] = up.url("/v1") if base.endswith("/v1") else up.url("")
        t0 = time.perf_counter()
        self.gateway.setup(tenants)
        if "failover" in wanted:  # a second credential: retries prefer it (proxy/balancer.py)
            self.gateway.cli("providers", "set", "bench-flaky", "openai", "--name", "second", f"api_key={FAKE_KEY}",
                             f"base_url={up.url('/flaky/v1')}")
        print(f"bench: gateway data dir {self.gateway.data}: tenants {', '.join(tenants)} set up through the CLI "
              f"in {time.perf_counter() - t0:.1f} s", flush=True)

    def body_file(self, name: str, body: dict[str, Any]) -> Path:
        path = self.root / f"{name}.json"
        path.write_bytes(json.dumps(body).encode())
        return path

    def start_gateway(self) -> float:
        assert self.gateway is not None
        s = self.scenarios["chat"]
        took = self.gateway.start(s.gateway_path, json.dumps(s.gateway_body).encode(),
                                  self.gateway.tenants[s.tenant].token)
        self.startups.append(took)
        print(f"bench: modelport serve ({self.args.workers} workers) answered its first request "
              f"{took:.2f} s after spawn", flush=True)
        return took

    def preflight(self, s: Scenario) -> None:
        """One request each way, checked by content: a misconfigured run must not look fast."""
        assert self.gateway is not None
        token = self.gateway.tenants[s.tenant].token
        checks = [("direct", self.target_url(s, "direct"), s.direct_body, s.direct_headers,
                   s.direct_expect or s.expect),
                  ("gateway", self.gateway.url(s.gateway_path), s.gateway_body, {"Authorization": f"Bearer {token}"},
                   s.expect)]
        for target, url, body, headers, expect in checks:
            for _ in range(5):  # the failover scenario's upstream fails 5% of requests on purpose
                status, ctype, data = fake.post(url, json.dumps(body).encode(), headers, timeout=30)
                if status == 200:
                    break
            if status != 200 or expect.encode() not in data:
                raise RuntimeError(f"{s.name} preflight {target} {url}: status {status} ({ctype}): {data[:400]!r}")

    def target_url(self, s: Scenario, target: str) -> str:
        assert self.gateway is not None
        if target == "gateway":
            return self.gateway.url(s.gateway_path)
        if s.name == "soak":
            return f"http://127.0.0.1:{self.upstream.dribble_port}{s.direct_path}"
        return self.upstream.url(s.direct_path)

    # -- one measurement -------------------------------------------------------------

    def load(self, s: Scenario, target: str, conns: int, duration: float, warm: bool) -> dict[str, Any]:
        assert self.gateway is not None
        url = self.target_url(s, target)
        port = int(url.split(":")[2].split("/")[0])
        path = "/" + url.split("/", 3)[3]
        if target == "gateway":
            body, headers = s.gateway_body, {"Authorization": f"Bearer {self.gateway.tenants[s.tenant].token}"}
        else:
            body, headers = s.direct_body, s.direct_headers
        expect = "data: [DONE]" if s.stream else ""
        if s.stream and (conns == 1 or s.name == "soak"):
            # Our own client: it measures time to first byte, and holds 1,000 slow streams cheaply.
            req = self.root / f"req-{s.name}-{target}.http"
            req.write_bytes(raw_request(port, path, json.dumps(body).encode(), headers))
            # Soak: starts spread over one stream's length (~2 s), so the 1,000 streams overlap
            # evenly (about 500 new streams/s) instead of arriving as one burst.
            ramp = min(2.0, duration / 3) if s.name == "soak" and not warm else 0.0
            argv = [sys.executable, "-m", "bench.client", "--port", str(port), "--request", str(req),
                    "--concurrency", str(conns), "--duration", f"{duration:g}", "--ramp", f"{ramp:g}",
                    "--timeout", "30", "--expect", expect]
            out = self.procs.run(argv, timeout=duration + 120, cwd=Path(__file__).resolve().parents[1])
            if out.returncode != 0:
                raise RuntimeError(f"bench.client failed: {out.stderr.strip()[-1000:]}")
            result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
            return result
        lua = wrk.script(self.root / f"{s.name}-{target}.lua", self.body_file(f"{s.name}-{target}", body),
                         "", expect, headers)
        return wrk.run(self.procs, url, lua, conns, duration, threads=self.args.wrk_threads)

    def measure(self, rnd: int, s: Scenario, target: str, conns: int) -> dict[str, Any]:
        assert self.gateway is not None
        a = self.args
        duration = max(a.duration, a.soak_duration) if s.name == "soak" else a.duration
        if s.name == "soak" and target == "gateway" and a.warmup:  # load the tenant into both workers' caches
            self.load(s, target, min(conns, 16), 0.1, True)
        elif s.name != "soak" and a.warmup:
            self.load(s, target, conns, a.warmup, True)
        upstream_pid = self.upstream.dribble.pid if s.name == "soak" else self.upstream.nginx.pid  # type: ignore[union-attr]
        with Watch({"gateway": self.gateway.pid, "upstream": upstream_pid}) as watch:
            t0 = time.perf_counter()
            result = self.load(s, target, conns, duration, False)
            wall = time.perf_counter() - t0
        use = watch.result
        n = max(result["requests"], 1)
        result.update({
            "round": rnd, "scenario": s.name, "target": target, "conns": conns, "duration_s": duration,
            "gateway_cpu_s": use["gateway"].cpu_s,
            "gateway_cpu_ms_per_req": use["gateway"].cpu_s * 1000 / n if target == "gateway" else None,
            "gateway_peak_rss": use["gateway"].peak_rss,
            "gateway_peak_rss_by_pid": use["gateway"].peak_rss_pids,
            "upstream_cpu_ms_per_req": use["upstream"].cpu_s * 1000 / n,
            "upstream_busy": use["upstream"].cpu_s / wall,   # cores the fake kept busy
            "client_cores": watch.client_cpu / watch.wall,   # the load generator (and this process)
            "background_cores": watch.background_cores,      # everything else on the machine
        })
        self.measurements.append(result)
        rps = result["rps"]
        extra = f" ttfb p50 {result['ttfb_p50_ms']:.2f} ms" if result.get("ttfb_p50_ms") is not None else ""
        cpu = f" gw cpu {result['gateway_cpu_ms_per_req']:.3f} ms/req" if target == "gateway" else ""
        print(f"  round {rnd} {s.name:<10} c={conns:<4} {target:<7} {rps:9.0f} req/s  p50 {result['p50_ms'] or 0:7.2f} "
              f"p99 {result['p99_ms'] or 0:7.2f} ms{extra}{cpu}  rss {use['gateway'].peak_rss / 2**20:.0f} MiB"
              f"  errors {result['errors']}", flush=True)
        ours = (use["gateway"].cpu_s + use["upstream"].cpu_s + watch.client_cpu) / watch.wall
        # Contended: others were busy *and* the cores were full, so they took time from us.
        result["contended"] = bool(watch.background_cores > self.args.quiet_threshold
                                   and watch.background_cores + ours > 0.9 * (os.cpu_count() or 1))
        if result["contended"]:
            print(f"    note: other processes used {watch.background_cores:.2f} cores during this measurement",
                  flush=True)
        if result["errors"]:
            print(f"    errors: {result['error_kinds']} {result.get('error_sample', '')[:200]!r}", flush=True)
        return result

    # -- the run ---------------------------------------------------------------------

    def run(self) -> None:
        a = self.args
        for rnd in range(1, (a.rounds if self.standard else 0) + 1):
            print(f"bench: round {rnd}/{a.rounds}", flush=True)
            self.start_gateway()
            try:
                idle = Watch({"gateway": self.gateway.pid})  # type: ignore[union-attr]
                with idle:
                    time.sleep(0.2)
                print(f"  gateway RSS at start: {idle.result['gateway'].peak_rss / 2**20:.0f} MiB", flush=True)
                for name in self.standard:
                    s = self.scenarios[name]
                    self.preflight(s)
                    conns_list = (a.soak_streams,) if name == "soak" else s.conns
                    for conns in conns_list:
                        if a.quiet_wait > 0:
                            wait_quiet(a.quiet_wait, a.quiet_threshold,
                                       [self.gateway.pid, self.upstream.nginx.pid, self.upstream.dribble.pid])  # type: ignore[union-attr]
                        order = ("direct", "gateway") if rnd % 2 else ("gateway", "direct")
                        for target in order:
                            self.measure(rnd, s, target, conns)
            finally:
                self.gateway.stop()  # type: ignore[union-attr]
        for name in (n for n in a.scenarios if n in ALONE):
            self.alone[name] = ALONE[name][0](a, self.procs, self.root, self.upstream)

    def run_profile(self, out_dir: Path) -> str:
        """One fresh gateway; py-spy on every worker during a few loads."""
        self.start_gateway()
        self.startups.pop()  # not a measurement round
        texts = []
        try:
            plan = [("chat", 64), *((name, 64) for name in ("anthropic", "messages", "responses", "responses-stored")
                                    if name in self.args.scenarios), ("stream", 50)]
            for name, conns in plan:
                s = self.scenarios[name]
                self.preflight(s)
                self.load(s, "gateway", conns, 1, True)
                seconds = self.args.profile_seconds
                pids = profile.workers(self.gateway.pid)  # type: ignore[union-attr]
                started = profile.start(pids, seconds, out_dir, f"profile-{name}-c{conns}")
                time.sleep(0.3)
                result = self.load(s, "gateway", conns, seconds + 1, False)
                paths = profile.finish(started, timeout=seconds + 30)
                summary = profile.summarize(paths)
                summary["files"] = [str(p.relative_to(RESULTS)) for p in profile.compress(paths)]
                summary["rps_under_profiler"] = result["rps"]
                self.profiles[f"{name}@{conns}"] = summary
                text = profile.render(f"{name} at {conns} connections, {result['rps']:.0f} req/s under py-spy",
                                      summary)
                texts.append(text)
                print(text, flush=True)
        finally:
            self.gateway.stop()  # type: ignore[union-attr]
        return "\n\n".join(texts)


def _terminate(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    args = options.parse_args(argv, __doc__ or "", ALONE)
    signal.signal(signal.SIGTERM, _terminate)
    ensure_tools()
    if args.nice and os.geteuid() != 0:
        args.nice = 0  # only root may raise priority
    if args.nice:
        print(f"bench: nginx, the gateway and the load generators run at priority {args.nice} "
              "(nice and scheduler autogroup)", flush=True)
    if not fake.DATA.is_dir():
        sys.exit(f"bench: the fake upstream's bodies are missing from {fake.DATA} (part of the repository)")
    started = dt.datetime.now(dt.UTC)
    stamp = started.strftime("%Y%m%dT%H%M%SZ")
    root = Path(tempfile.mkdtemp(prefix="modelport-bench-"))
    os.chmod(root, 0o711)  # nginx's workers (user nobody) must pass through to the site files
    procs = Procs(args.nice)
    ok = False
    bench = Bench(args, procs, root)
    try:
        bench.setup()
        bench.run()
        profile_text = ""
        if args.profile and bench.standard:
            prof_dir = RESULTS / f"{stamp}-profile"
            prof_dir.mkdir(parents=True, exist_ok=True)
            profile_text = bench.run_profile(prof_dir)
        ok = True
    except KeyboardInterrupt:
        print("\nbench: interrupted; stopping everything", flush=True)
        return 130
    finally:
        procs.stop_all()
        if ok and not args.keep:
            shutil.rmtree(root, ignore_errors=True)
        else:
            print(f"bench: logs and configs kept in {root}", flush=True)

    rows = report.summarize(bench.measurements, bench.startups)
    targets = report.evaluate(rows) if bench.standard else []
    headroom: list[str] = []
    md = [f"# modelport benchmark {started.isoformat()}", ""]
    if not bench.standard and bench.notes:
        md += ["; ".join(bench.notes), ""]
    if bench.standard:
        print()
        print(report.table(rows))
        print()
        print(report.targets_table(targets))
        for r in rows:
            if r["scenario"] not in ("startup", "soak") and r["conns"] and r["conns"] > 1 and r["gateway_rps"]:
                headroom.append(f"{r['scenario']}@{r['conns']}: {r['direct_rps'] / r['gateway_rps']:.1f}x "
                                f"(the fake used {r['upstream_busy_during_gateway']:.2f} cores during the gateway run)")
            if r["scenario"] == "soak":
                headroom.append(f"soak: direct {r['direct_requests']} streams, {r['direct_errors']} errors, p50 "
                                f"{(r['direct_p50_ms'] or 0) / 1000:.2f} s; dribble server used "
                                f"{r['upstream_busy_during_gateway']:.2f} cores during the gateway soak")
        print("\nfake upstream headroom (direct req/s over gateway req/s; should be several x):")
        for h in headroom:
            print(f"  {h}")
        low = [r for r in rows if r["scenario"] not in ("startup", "soak") and r["conns"] and r["conns"] > 1
               and r["gateway_rps"] and r["direct_rps"] < 3 * r["gateway_rps"]]
        if low:
            print("  WARNING: the fake sustains less than 3x the gateway's rate in: "
                  + ", ".join(f"{r['scenario']}@{r['conns']}" for r in low))
        md += [f"{args.rounds} round(s), {args.duration:g} s per measurement, {args.workers} gateway workers; "
               "medians over rounds. " + "; ".join(bench.notes), "", report.table(rows), "",
               report.targets_table(targets), "", "Fake upstream headroom:", ""] + [f"- {h}" for h in headroom]
    for name, result in bench.alone.items():
        md += ["", ALONE[name][1](result)]
        print(f"\n{md[-1]}")
    if profile_text:
        md += ["", profile_text]
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{stamp}.md").write_text("\n".join(md) + "\n")
    out = RESULTS / f"{stamp}.json"
    out.write_text(json.dumps({
        "started": started.isoformat(), "machine": machine(), "args": vars(args), "notes": bench.notes,
        "summary": rows, "targets": targets, "startups_s": bench.startups, "headroom": headroom,
        "profiles": bench.profiles, "measurements": bench.measurements, **{k: bench.alone.get(k) for k in ALONE},
    }, indent=1, default=str))
    print(f"\nbench: results in {out} (and {out.with_suffix('.md')})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
