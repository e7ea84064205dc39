"""`python -m bench`'s command line (the runner is bench/__main__.py)."""

from __future__ import annotations

import argparse
from collections.abc import Iterable


def parse_args(argv: list[str] | None, description: str, alone: Iterable[str]) -> argparse.Namespace:
    """The options; `alone`: the scenarios that run once, apart (see `bench.__main__.ALONE`)."""
    p = argparse.ArgumentParser(prog="python -m bench", description=description,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=3, help="rounds (fresh gateway each); medians are reported")
    p.add_argument("--duration", type=float, default=5.0, help="seconds per measurement (default 5)")
    p.add_argument("--warmup", type=float, default=1.0, help="seconds of unmeasured load before each (default 1)")
    p.add_argument("--scenarios", default="chat,anthropic,messages,responses,embeddings,stream,soak",
                   help="comma-separated subset of chat,anthropic,messages,responses,embeddings,stream,soak (the "
                        "default), responses-stored (the Responses API keeping each answer), "
                        "embeddings-1536 (a real-sized embedding), failover (5%% of upstream answers a 503), tenants "
                        "(N tenants, steady vs admin writes vs creations), spread (64 connections at once: per-worker "
                        "CPU), postgres (SQLite vs 2 instances on PostgreSQL), counters (rate-limit counters in "
                        "PostgreSQL vs Redis); the last four run once, apart")
    p.add_argument("--tenants", type=int, default=1000, help="tenants scenario: tenants seeded (default 1000)")
    p.add_argument("--tenant-evict-cache", type=int, default=100,
                   help="tenants scenario: cache size (tenants, private keys) of the eviction run, where "
                        "nearly every request is a cold tenant (default 100; 0 = no eviction run)")
    p.add_argument("--quick", action="store_true", help="smoke run: 1 round, 1 s loads, 200-stream soak")
    p.add_argument("--soak-streams", type=int, default=1000, help="concurrent slow streams in the soak")
    p.add_argument("--soak-duration", type=float, default=6.0, help="seconds of soak (each stream lasts ~2 s)")
    p.add_argument("--workers", type=int, default=2, help="modelport serve workers (default 2)")
    p.add_argument("--wrk-threads", type=int, default=1, help="wrk threads (default 1: leaves the cores to the "
                                                                "gateway)")
    p.add_argument("--quiet-wait", type=float, default=30.0,
                   help="before each pair of loads, wait up to this many seconds while other processes keep "
                        "the machine busy (default 30; 0 = never wait)")
    p.add_argument("--quiet-threshold", type=float, default=0.25,
                   help="cores used by other processes that count as busy (default 0.25)")
    p.add_argument("--nice", type=int, default=-10,
                   help="scheduling priority of everything the benchmark starts (default -10 when run as root, "
                        "so other work on a shared machine disturbs the numbers less; 0 = leave as is)")
    p.add_argument("--profile", action="store_true", help="also profile the workers with py-spy under load")
    p.add_argument("--profile-seconds", type=int, default=8)
    p.add_argument("--keep", action="store_true", help="keep the temp dir (configs, logs) after the run")
    a = p.parse_args(argv)
    if a.quick:
        a.rounds, a.duration, a.warmup, a.soak_streams, a.soak_duration = 1, 1.0, 1.0, 200, 2.5
    a.scenarios = [s.strip() for s in a.scenarios.split(",") if s.strip()]
    known = {"chat", "anthropic", "messages", "responses", "responses-stored", "embeddings", "embeddings-1536", "failover", "stream",
             "soak", *alone}
    if set(a.scenarios) - known:
        p.error(f"unknown scenario(s): {', '.join(sorted(set(a.scenarios) - known))}")
    if a.tenants < 1:
        p.error("--tenants must be at least 1")
    return a
