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
            row[f"added_{metric}"] = _median(deltas)  # type: ignore[arg-type]
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
