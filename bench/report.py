"""Medians over rounds, gateway/direct ratios, the results table and the targets."""

from __future__ import annotations

import statistics
from typing import Any

MiB = 1024 * 1024

# The targets (2 workers on this 2-core machine).
TARGETS: list[dict[str, Any]] = [
    {"id": "chat-added-p50", "text": "OpenAI non-stream, 1 connection: added median latency <= 1.0 ms",
     "row": ("chat", 1), "metric": "added_p50_ms", "op": "<=", "limit": 1.0},
    {"id": "chat-rps-64", "text": "OpenAI non-stream, 64 connections: >= 3,000 req/s",
     "row": ("chat", 64), "metric": "gateway_rps", "op": ">=", "limit": 3000},
    {"id": "chat-cpu-64", "text": "OpenAI non-stream, 64 connections: gateway CPU <= 0.6 ms per request",
     "row": ("chat", 64), "metric": "gateway_cpu_ms_per_req", "op": "<=", "limit": 0.6},
    {"id": "anthropic-cpu-64", "text": "Translated (Anthropic), 64 connections: gateway CPU <= 1.0 ms per request",
     "row": ("anthropic", 64), "metric": "gateway_cpu_ms_per_req", "op": "<=", "limit": 1.0},
    {"id": "stream-ttfb-1", "text": "Streaming, 1 connection: added time to first byte <= 1.0 ms",
     "row": ("stream", 1), "metric": "added_ttfb_p50_ms", "op": "<=", "limit": 1.0},
    {"id": "stream-rps-50", "text": "Streaming, 50 concurrent: >= 1,500 streams/s",
     "row": ("stream", 50), "metric": "gateway_rps", "op": ">=", "limit": 1500},
    {"id": "soak-errors", "text": "1,000 concurrent slow streams: zero errors",
     "row": ("soak", None), "metric": "gateway_errors", "op": "==", "limit": 0, "min_conns": 1000},
    {"id": "soak-rss", "text": "1,000 concurrent slow streams: gateway RSS <= 250 MiB in total",
     "row": ("soak", None), "metric": "gateway_peak_rss_mib", "op": "<=", "limit": 250, "min_conns": 1000},
    {"id": "startup", "text": "Start-up to first served request < 2 s",
     "row": ("startup", None), "metric": "startup_s", "op": "<", "limit": 2.0},
]


def _median(values: list[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return statistics.median(vals) if vals else None


def summarize(measurements: list[dict[str, Any]], startups: list[float]) -> list[dict[str, Any]]:
    """One row per (scenario, conns): medians over rounds of each side and of the per-round deltas."""
    keys: list[tuple[str, int]] = []
    for m in measurements:
        if (m["scenario"], m["conns"]) not in keys:
            keys.append((m["scenario"], m["conns"]))
    rows = []
    for scenario, conns in keys:
        by_round: dict[int, dict[str, dict[str, Any]]] = {}
        for m in measurements:
            if m["scenario"] == scenario and m["conns"] == conns:
                by_round.setdefault(m["round"], {})[m["target"]] = m
        pairs = [(r["direct"], r["gateway"]) for r in by_round.values() if "direct" in r and "gateway" in r]
        if not pairs:
            continue
        row: dict[str, Any] = {"scenario": scenario, "conns": conns, "rounds": len(pairs)}
        for side, idx in (("direct", 0), ("gateway", 1)):
            for metric in ("rps", "p50_ms", "p90_ms", "p99_ms", "ttfb_p50_ms", "ttfb_p90_ms", "ttfb_p99_ms",
                           "max_ms"):
                row[f"{side}_{metric}"] = _median([p[idx].get(metric) for p in pairs])
            row[f"{side}_errors"] = sum(p[idx]["errors"] for p in pairs)
            row[f"{side}_requests"] = sum(p[idx]["requests"] for p in pairs)
        for metric in ("p50_ms", "p90_ms", "p99_ms", "ttfb_p50_ms", "ttfb_p99_ms"):
            deltas = [p[1][metric] - p[0][metric] for p in pairs
                      if p[0].get(metric) is not None and p[1].get(metric) is not None]
            row[f"added_{metric}"] = _median(deltas)
        row["rps_ratio"] = (row["gateway_rps"] / row["direct_rps"]) if row["direct_rps"] else None
        row["gateway_cpu_ms_per_req"] = _median([p[1]["gateway_cpu_ms_per_req"] for p in pairs])
        row["upstream_cpu_ms_per_req"] = _median([p[0]["upstream_cpu_ms_per_req"] for p in pairs])
        row["gateway_peak_rss_mib"] = max(p[1]["gateway_peak_rss"] for p in pairs) / MiB
        row["upstream_busy_during_gateway"] = _median([p[1]["upstream_busy"] for p in pairs])
        row["client_cores_gateway"] = _median([p[1].get("client_cores") for p in pairs])
        row["background_cores_max"] = max(max(p[0].get("background_cores", 0), p[1].get("background_cores", 0))
                                          for p in pairs)
        row["contended"] = sum(bool(p[0].get("contended")) + bool(p[1].get("contended")) for p in pairs)
        kinds: dict[str, int] = {}
        for p in pairs:
            for k, v in p[1]["error_kinds"].items():
                kinds[k] = kinds.get(k, 0) + v
        row["gateway_error_kinds"] = kinds
        row["gateway_error_sample"] = next((p[1]["error_sample"] for p in pairs if p[1]["error_sample"]), "")
        rows.append(row)
    if startups:
        rows.append({"scenario": "startup", "conns": None, "rounds": len(startups),
                     "startup_s": statistics.median(startups), "startup_all_s": startups})
    return rows


def evaluate(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for t in TARGETS:
        scenario, conns = t["row"]
        row = next((r for r in rows if r["scenario"] == scenario and (conns is None or r["conns"] == conns)), None)
        value = None if row is None else row.get(t["metric"])
        if value is None:
            status = "not measured"
        elif row is not None and row["conns"] is not None and row["conns"] < t.get("min_conns", 0):
            status = f"not measured at full size ({row['conns']} streams)"
        else:
            ok = {"<=": value <= t["limit"], ">=": value >= t["limit"], "<": value < t["limit"],
                  "==": value == t["limit"]}[t["op"]]
            status = "met" if ok else "NOT met"
        out.append({"id": t["id"], "target": t["text"], "value": value, "status": status})
    return out


def _f(v: Any, digits: int = 2) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        if abs(v) >= 1000:
            return f"{v:,.0f}"
        if abs(v) >= 100:
            return f"{v:.0f}"
        return f"{v:.{digits}f}"
    return str(v)


def table(rows: list[dict[str, Any]]) -> str:
    head = ("| scenario | conns | direct req/s | gateway req/s | gw/direct | direct p50 ms | gw p50 ms | gw p90 ms "
            "| gw p99 ms | added p50 ms | added p99 ms | gw CPU ms/req | gw peak RSS MiB | errors direct/gw |")
    lines = [head, "|" + "|".join("---" for _ in range(14)) + "|"]
    for r in rows:
        if r["scenario"] == "startup":
            continue
        lines.append("| " + " | ".join([
            r["scenario"], str(r["conns"]), _f(r["direct_rps"]), _f(r["gateway_rps"]), _f(r["rps_ratio"]),
            _f(r["direct_p50_ms"]), _f(r["gateway_p50_ms"]), _f(r["gateway_p90_ms"]), _f(r["gateway_p99_ms"]),
            _f(r["added_p50_ms"]), _f(r["added_p99_ms"]), _f(r["gateway_cpu_ms_per_req"], 3),
            _f(r["gateway_peak_rss_mib"], 0), f"{r['direct_errors']}/{r['gateway_errors']}"]) + " |")
    ttfb = [r for r in rows if r.get("gateway_ttfb_p50_ms") is not None]
    if ttfb:
        lines += ["", ("| scenario | conns | direct TTFB p50 ms | gw TTFB p50 ms | gw TTFB p99 ms | added TTFB p50 ms "
                       "| added TTFB p99 ms | direct total p50 ms | gw total p50 ms |"),
                  "|" + "|".join("---" for _ in range(9)) + "|"]
        for r in ttfb:
            lines.append("| " + " | ".join([
                r["scenario"], str(r["conns"]), _f(r["direct_ttfb_p50_ms"]), _f(r["gateway_ttfb_p50_ms"]),
                _f(r["gateway_ttfb_p99_ms"]), _f(r["added_ttfb_p50_ms"]), _f(r["added_ttfb_p99_ms"]),
                _f(r["direct_p50_ms"]), _f(r["gateway_p50_ms"])]) + " |")
    busy = [r for r in rows if r.get("contended")]
    if busy:
        lines += ["", "Other processes took CPU from the benchmark (cores full) in: " + ", ".join(
            f"{r['scenario']}@{r['conns']} ({r['contended']} of {2 * r['rounds']} measurements, others used up to "
            f"{r['background_cores_max']:.2f} cores)" for r in busy) + "; those numbers are pessimistic."]
    startup = next((r for r in rows if r["scenario"] == "startup"), None)
    if startup:
        all_s = ", ".join(f"{s:.2f}" for s in startup["startup_all_s"])
        lines += ["", (f"Start-up to first served request (median of {startup['rounds']}): "
                       f"{startup['startup_s']:.2f} s (all: {all_s})")]
    return "\n".join(lines)


def targets_table(results: list[dict[str, Any]]) -> str:
    lines = ["| target | measured | status |", "|---|---|---|"]
    for t in results:
        lines.append(f"| {t['target']} | {_f(t['value'], 3)} | {t['status']} |")
    return "\n".join(lines)


# -- the tenants scenario (bench/tenants.py) -----------------------------------------------


def tenants_verdict(result: dict[str, Any]) -> list[dict[str, Any]]:
    """The issue's targets for the write phases, against "steady" of the same run."""
    phases = {p["phase"]: p for p in result.get("phases", [])}
    steady = phases.get("steady")
    out: list[dict[str, Any]] = []

    def add(text: str, value: float | None, ok: bool | None) -> None:
        status = "not measured" if ok is None else ("met" if ok else "NOT met")
        out.append({"target": text, "value": value, "status": status})

    for name in ("+1 admin write/s", "+2 tenant creations/s"):
        p = phases.get(name)
        rps = p["rps"] / steady["rps"] if p and steady and steady["rps"] else None
        add(f"{name}: req/s within 10 % of steady (ratio)", rps, None if rps is None else rps >= 0.9)
        p99 = p["p99_ms"] / steady["p99_ms"] if p and steady and steady["p99_ms"] else None
        add(f"{name}: p99 at most 2x steady (ratio)", p99, None if p99 is None else p99 <= 2.0)
    create = phases.get("+2 tenant creations/s")
    # A stall is a request waiting behind a key generation (hundreds of ms); its mark is a
    # max latency well above what the same load shows without creations.
    stall = create["max_ms"] / steady["max_ms"] if create and steady and steady["max_ms"] else None
    add("tenant creation never stalls other tenants' requests: max latency at most 2x steady's max (ratio)",
        stall, None if stall is None else stall <= 2.0)
    errors = sum(p["errors"] for p in result.get("phases", [])) + sum(
        (p.get("writes") or {}).get("errors", 0) for p in result.get("phases", []))
    add("no errors (requests and admin writes, all phases)", float(errors), errors == 0 if phases else None)
    return out


def tenants_report(result: dict[str, Any]) -> str:
    n = result["tenants"]
    lines = [(f"### Tenants: {n:,} tenants, {result['conns']} connections cycling over every tenant's token, "
              f"{result['duration_s']:g} s per phase, {result['workers']} workers"), "",
             ("| phase | req/s | vs steady | p50 ms | p99 ms | max ms | errors | gw CPU ms/req | writes | "
              "write p50/max ms |"), "|" + "|".join("---" for _ in range(10)) + "|"]
    phases = list(result.get("phases", []))
    steady = next((p for p in phases if p["phase"] == "steady"), None)
    evict = result.get("evict")
    rows = phases + ([evict] if evict and "skipped" not in evict else [])
    for p in rows:
        w = p.get("writes")
        ratio = p["rps"] / steady["rps"] if steady and steady["rps"] else None
        lines.append("| " + " | ".join([
            p["phase"] + (", nearly all cold" if p is evict else ""), _f(p["rps"]), _f(ratio), _f(p["p50_ms"]),
            _f(p["p99_ms"]), _f(p["max_ms"]), str(p["errors"]), _f(p["gateway_cpu_ms_per_req"], 3),
            "-" if not w else f"{w['count']} ({w['errors']} failed)",
            "-" if not w else f"{_f(w['p50_ms'])} / {_f(w['max_ms'])}"]) + " |")
    kinds = [f"{p['phase']}: " + ", ".join(f"{k} {v['count']}x p50 {_f(v['p50_ms'])} max {_f(v['max_ms'])} ms"
                                         for k, v in p["writes"]["by_kind"].items())
             for p in phases if p.get("writes")]
    if kinds:
        lines += ["", "Writes by kind: " + "; ".join(kinds) + "."]
    cold = result.get("cold")
    if cold:
        lines += ["", (f"Cold tenant (each tenant's first request on each worker; one connection per worker, so no "
                       f"queueing; {cold['cold_samples']:,} requests): p50 {_f(cold['cold_p50_ms'])} ms, p99 "
                       f"{_f(cold['cold_p99_ms'])} ms, max {_f(cold['cold_max_ms'])} ms; the same tenants warm: p50 "
                       f"{_f(cold['warm_p50_ms'])} ms, p99 {_f(cold['warm_p99_ms'])} ms; cold cost (p50 cold - warm) "
                       f"{_f(cold.get('cold_cost_p50_ms'))} ms; errors {cold['errors']}.")]
    if evict and "skipped" not in evict and steady:
        extra = evict["gateway_cpu_ms_per_req"] - steady["gateway_cpu_ms_per_req"]
        size = evict["cache"]
        lines += ["", (f"Eviction run (`cache: {{tenants: {size}, private_keys: {size}}}`, the same "
                       f"load over {n:,} tenants): {_f(evict['rps'])} req/s, {evict['gateway_cpu_ms_per_req']:.3f} ms "
                       f"of gateway CPU per request, {extra:+.3f} ms over steady: the CPU cost of a cold tenant.")]
    elif evict:
        lines += ["", f"Eviction run skipped: {evict['skipped'][:300]}"]
    warm, start = result.get("rss_warm"), result.get("rss_start")
    if warm and start:
        per = ", ".join(f"{int(v) / MiB:.0f}" for v in warm["per_worker"].values())
        growth = ", ".join(f"{g:.1f}" for g in result.get("rss_growth_kib_per_tenant_per_worker", []))
        lines += ["", (f"RSS with {n:,} warm tenants: {warm['total'] / MiB:.0f} MiB in total ({warm['processes']} "
                       f"processes); workers (with their helper processes) {per} MiB; at start "
                       f"{start['total'] / MiB:.0f} MiB; growth {growth} KiB per tenant per worker.")]
    if result.get("seed"):
        lines += ["", (f"Seeded in {result['seed']['seconds']:.1f} s (one RSA key pair shared by all tenants, "
                       "each with its own wrapped copy: see bench/README.md).")]
    for note in result.get("notes", []):
        lines.append(f"Note: {note}")
    lines += ["", targets_table(result.get("verdict") or tenants_verdict(result))]
    return "\n".join(lines)


# -- the spread scenario (bench/spread.py) -------------------------------------------------


def spread_report(result: dict[str, Any]) -> str:
    d, g = result["direct"], result["gateway"]
    lines = [(f"### Spread: {result['conns']} keep-alive connections opened at once, {result['workers']} workers, "
              f"{result['duration_s']:g} s each way ({g['listening_sockets']} socket(s) listening on the port)"), "",
             ("| target | req/s | p50 ms | p99 ms | errors | gw CPU ms/req | gw cores | per worker: cores "
              "(connections held) | balance (min/max cores) |"), "|" + "|".join("---" for _ in range(9)) + "|",
             f"| direct | {_f(d['rps'])} | {_f(d['p50_ms'])} | {_f(d['p99_ms'])} | {d['errors']} | - | - | - | - |"]
    per = ", ".join(f"{w['cores']:.2f} ({w['connections'] if w['connections'] is not None else '?'})"
                    for w in g["workers"])
    lines.append(f"| gateway | {_f(g['rps'])} | {_f(g['p50_ms'])} | {_f(g['p99_ms'])} | {g['errors']} | "
                 f"{_f(g['gateway_cpu_ms_per_req'], 3)} | {_f(g['gateway_cores'])} | {per} | {_f(g['balance'])} |")
    for note in result.get("notes", []):
        lines.append(f"Note: {note}")
    return "\n".join(lines)
