"""Usage summaries, one implementation for `GET /v1/usage`, the CLI and the admin API.

A window is [start, end): each bound is a unix timestamp in seconds, an ISO date
(`2024-05-01`, midnight UTC; as `end` the whole day is included) or an ISO date-time
(`2024-05-01T12:00:00Z`; without an offset, UTC). Defaults: from the oldest record
kept to now. Groups: `model` (provider/model), `provider`, `day` (UTC), and for the
admin API also `tenant`.

Each row and the total carry `cost` in US dollars (`proxy/prices.py`): what the priced
requests cost, `null` when none of them had a price, and `unpriced_requests`, how many
had none (their cost is not in `cost`: unknown, never counted as 0).
"""

from __future__ import annotations

import dataclasses
import re
import time
from datetime import UTC, date, datetime, timedelta
from typing import Any

from proxy.prices import format_usd, usd
from proxy.store import GROUP_KEYS, StoreApi, UsageGroup
from translators.errors import bad_request

TENANT_GROUPS = ("model", "provider", "day")
ADMIN_GROUPS = (*TENANT_GROUPS, "tenant")
_NUMBER = re.compile(r"^\d+(\.\d+)?$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_SUMS = ("requests", "errors", "hosted", "prompt_tokens", "completion_tokens", "total_tokens", "estimated")


# The instants a window bound may name: what `datetime` can represent (year 1 to 9999),
# so that every bound can be turned back into an ISO string (`_iso`) without overflow.
MIN_TS = datetime(1, 1, 1, tzinfo=UTC).timestamp()
MAX_TS = datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC).timestamp()


def _instant(text: str, end: bool) -> float | None:
    try:
        if _NUMBER.match(text):
            return float(text)
        if _DATE.match(text):
            day = datetime.combine(date.fromisoformat(text), datetime.min.time(), UTC)
            return (day + timedelta(days=1) if end else day).timestamp()
        moment = datetime.fromisoformat(text)
        return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()
    except ValueError:
        return None
    except OverflowError:  # 9999-12-31 as an `end` is the first moment of the year 10000
        return MAX_TS + 1


def parse_time(value: str | None, param: str, *, end: bool = False) -> float | None:
    """Seconds since the epoch for a window bound, None when not given."""
    if value is None or not value.strip():
        return None
    moment = _instant(value.strip(), end)
    if moment is None:
        raise bad_request(f"Invalid value for '{param}': use unix seconds, an ISO date (2024-05-01) or an "
                          "ISO date-time (2024-05-01T12:00:00Z).", param, "invalid_value")
    if not MIN_TS <= moment <= MAX_TS:
        raise bad_request(f"Invalid value for '{param}': out of range (years 1 to 9999, UTC).",
                          param, "invalid_value")
    return moment


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


async def summarize(store: StoreApi, tenant_id: str | None, start: str | None, end: str | None,
                    group_by: str | None, *, allowed: tuple[str, ...] = TENANT_GROUPS,
                    per_tenant: bool = False) -> dict[str, Any]:
    group = group_by or "model"
    if group not in allowed or group not in GROUP_KEYS:
        raise bad_request(f"Invalid value for 'group_by': use one of {', '.join(allowed)}.", "group_by",
                          "invalid_value")
    since = parse_time(start, "start")
    until = parse_time(end, "end", end=True)
    since = 0.0 if since is None else since
    until = time.time() + 1 if until is None else until  # +1: include this very second
    if until <= since:
        raise bad_request("'end' must be after 'start'.", "end", "invalid_value")
    groups = await store.usage_summary(tenant_id, since, until, group, per_tenant)
    data: list[dict[str, Any]] = []
    for g in groups:
        row = dataclasses.asdict(g)
        if not per_tenant or group == "tenant":
            row.pop("tenant")
        row["key"] = row["key"] or "(unrouted)"  # failed before a provider was chosen
        data.append(_with_cost(row, row.pop("cost_nanos"), row.pop("unpriced")))
    total = {name: sum(getattr(g, name) for g in groups) for name in _SUMS}
    _with_cost(total, _total_cost(groups), sum(g.unpriced for g in groups))
    return {"object": "usage.summary", "start": _iso(since), "end": _iso(until), "group_by": group,
            "data": data, "total": total}


def _with_cost(row: dict[str, Any], nanos: int | None, unpriced: int) -> dict[str, Any]:
    row["cost"], row["unpriced_requests"] = usd(nanos), unpriced
    return row


def _total_cost(groups: list[UsageGroup]) -> int | None:
    """The priced groups' sum; None when no group had a priced request (0 for no requests)."""
    priced = [g.cost_nanos for g in groups if g.cost_nanos is not None]
    return sum(priced) if priced or not groups else None


def _cost_cell(row: dict[str, Any]) -> str:
    """`unpriced`, or dollars with `+` when unpriced requests are left out of them."""
    if row["cost"] is None:
        return "unpriced"
    return format_usd(round(row["cost"] * 10**9)) + ("+" if row["unpriced_requests"] else "")


def table(summary: dict[str, Any]) -> str:
    """A plain-text table of a summary for the CLI; `~` marks estimated token counts."""
    per_tenant = any("tenant" in row for row in summary["data"])
    head = (["TENANT"] if per_tenant else []) + [summary["group_by"].upper(), "REQUESTS", "ERRORS", "HOSTED",
                                                 "PROMPT", "COMPLETION", "TOTAL", "COST", "AVG_MS"]
    lines = [head]
    for row in [*summary["data"], {"key": "total", **summary["total"], "avg_latency_ms": None}]:
        mark = "~" if row.get("estimated") else ""
        cells = ([row.get("tenant", "")] if per_tenant else []) + [
            row["key"], str(row["requests"]), str(row["errors"]), str(row["hosted"]),
            f"{row['prompt_tokens']}{mark}", f"{row['completion_tokens']}{mark}", f"{row['total_tokens']}{mark}",
            _cost_cell(row), "" if row["avg_latency_ms"] is None else f"{row['avg_latency_ms']:.0f}"]
        lines.append(cells)
    widths = [max(len(line[i]) for line in lines) for i in range(len(head))]
    out = ["  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip() for line in lines]
    notes = [f"window {summary['start']} .. {summary['end']}"]
    if summary["total"]["estimated"]:
        notes.append("~ = includes estimated token counts")
    if summary["total"]["unpriced_requests"]:
        notes.append(f"+ = without {summary['total']['unpriced_requests']} unpriced request(s) (no price configured)")
    out.append("; ".join(notes))
    return "\n".join(out)
