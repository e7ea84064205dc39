"""Daily usage rollups (schema 5): what keeps usage summaries fast at millions of rows.

`usage_daily` holds, per (tenant, UTC day, provider, model), exactly the counts and
sums a summary needs: a month of one tenant is at most a few hundred rollup rows
however many requests it made, where the raw table would be read row by row (and a
big tenant's month is hundreds of thousands of them). Sums, not averages, so that
averages come out as the raw query's (sum / count).

Kept in step with `usage` in the same transaction as every insert: the batch's rows
are aggregated by SQL from the rows just written (`id > last id before the batch`),
so the rollup adds exactly what SQLite stored (after its type conversions), and the
row-by-row fallback rolls up only the rows it managed to insert.

A summary reads whole UTC days inside the window from the rollup and only the partial
days at its edges (a bound that is not midnight UTC) from `usage`, through the
(tenant_id, created_at) or created_at index; both feed one aggregation, so the answer is the
raw GROUP BY's for any window. Retention prunes whole UTC days from both tables, so
every day still in the rollup still has all of its raw rows.
"""

from __future__ import annotations

import math

DAY_SECONDS = 86_400

# The UTC day of `created_at` (days since the epoch). Not strftime(created_at): it
# rounds to the millisecond and puts 23:59:59.9996 on the next day, where the window
# test `created_at < midnight` puts it on this one. The quotient is exact enough (a
# correctly rounded x / 86400 never reaches the next integer: 86400 > 2^16); CAST
# truncates toward zero, hence the correction for instants before 1970. Migration 5
# spells the same expression out: a migration never changes once released.
_Q = "CAST(created_at / 86400 AS INTEGER)"
DAY_OF = f"({_Q} - ({_Q} * 86400 > created_at))"

MEASURES = ("requests", "errors", "hosted", "prompt_tokens", "completion_tokens", "total_tokens", "estimated",
            "latency_sum", "ttft_sum", "ttft_count", "cost_nanos", "priced")
_KEY = ("tenant_id", "day", "provider", "model")
# A raw row's contribution, in MEASURES order (the rollup stores their sums).
# CASE, not a bare comparison: PostgreSQL neither sums booleans nor unions them with integers.
_ERROR = "CASE WHEN status >= 400 THEN 1 ELSE 0 END"
_HOSTED = "CASE WHEN billing = 'hosted' THEN 1 ELSE 0 END"
# Cost (schema 11): the priced rows' sum and their number; an unpriced row (NULL) adds 0 to both.
_RAW_MEASURES = ("1", _ERROR, _HOSTED, "prompt_tokens", "completion_tokens", "total_tokens",
                 "estimated", "latency_ms", "ttft_ms", "CASE WHEN ttft_ms IS NULL THEN 0 ELSE 1 END",
                 "COALESCE(cost_nanos, 0)", "CASE WHEN cost_nanos IS NULL THEN 0 ELSE 1 END")
_RAW_COLUMNS = ", ".join(f"{expr} AS {name}" for expr, name in zip(
    ("tenant_id", DAY_OF, "provider", "model", *_RAW_MEASURES), _KEY + MEASURES, strict=True))

# The batch just inserted (ids above the largest one before it: the writer holds
# SQLite's write lock for the whole transaction, so nobody else's rows are in between),
# added into its days. NOT INDEXED: the rowid range is the batch, but given a covering
# index on `usage` (none today) the planner prefers scanning all of it in GROUP BY
# order: every row of the table on every batch. WHERE before ON CONFLICT: SQLite's rule
# for upserts from a SELECT.
ROLLUP_SINCE = (
    f"INSERT INTO usage_daily ({', '.join(_KEY + MEASURES)}) "
    f"SELECT tenant_id, {DAY_OF}, provider, model, COUNT(*), SUM({_ERROR}), SUM({_HOSTED}), "
    "SUM(prompt_tokens), SUM(completion_tokens), SUM(total_tokens), SUM(estimated), TOTAL(latency_ms), "
    "TOTAL(ttft_ms), COUNT(ttft_ms), COALESCE(SUM(cost_nanos), 0), COUNT(cost_nanos) "
    "FROM usage NOT INDEXED WHERE id > ? GROUP BY 1, 2, 3, 4 "
    "ON CONFLICT (day, tenant_id, provider, model) DO UPDATE SET "
    + ", ".join(f"{m} = usage_daily.{m} + excluded.{m}" for m in MEASURES))

LAST_ID = "SELECT COALESCE(MAX(id), 0) FROM usage"

# Oldest first and in batches, like the raw rows: each call holds the write lock briefly.
PRUNE_RAW = "DELETE FROM usage WHERE id IN (SELECT id FROM usage WHERE created_at < ? ORDER BY created_at LIMIT ?)"
PRUNE_DAILY = (f"DELETE FROM usage_daily WHERE ({', '.join(_KEY)}) IN "
               f"(SELECT {', '.join(_KEY)} FROM usage_daily WHERE day < ? ORDER BY day LIMIT ?)")

# Keys of `usage_summary`'s groups, chosen from this fixed table (never from client
# text), over the columns of `_KEY`; `_GROUP_COLUMNS` names the ones each key reads.
GROUP_KEYS: dict[str, str] = {
    "model": "CASE WHEN u.provider = '' THEN u.model ELSE u.provider || '/' || u.model END",
    "provider": "u.provider",
    "day": "strftime('%Y-%m-%d', u.day * 86400, 'unixepoch')",
    "tenant": "COALESCE(t.name, u.tenant_id)",
}
_GROUP_COLUMNS: dict[str, tuple[str, ...]] = {
    "model": ("provider", "model"), "provider": ("provider",), "day": ("day",), "tenant": ("tenant_id",)}
_TENANT_NAME = GROUP_KEYS["tenant"]


def day_of(ts: float) -> int:
    """The UTC day of an instant (days since the epoch), as DAY_OF computes it."""
    day = math.floor(ts / DAY_SECONDS)
    return day - 1 if day * DAY_SECONDS > ts else day  # -5e-324 / 86400 is -0.0


def split_window(start: float, end: float) -> tuple[tuple[int, int] | None, list[tuple[float, float]]]:
    """[start, end) as the whole UTC days inside it ([first, last) day numbers, None if
    there are none) and the partial pieces left at its edges, in seconds."""
    if not start < end:
        return None, []
    first = day_of(start)
    if first * DAY_SECONDS < start:
        first += 1
    last = day_of(end)
    if first >= last:
        return None, [(start, end)]
    edges = [(start, float(first * DAY_SECONDS))] if start < first * DAY_SECONDS else []
    if last * DAY_SECONDS < end:
        edges.append((float(last * DAY_SECONDS), end))
    return (first, last), edges


def summary_query(tenant_id: str | None, start: float, end: float, group_by: str,
                  per_tenant: bool) -> tuple[str, list[object]] | None:
    """The SQL and parameters of a summary (None: an empty window). Rows: who, key,
    the seven counts, average latency, average time to first token, the cost of the
    priced requests (NULL when none was priced) and the number of unpriced ones."""
    key = GROUP_KEYS[group_by]
    columns = list(_GROUP_COLUMNS[group_by])
    who = "''"
    if per_tenant and group_by != "tenant":
        who = _TENANT_NAME
        columns.insert(0, "tenant_id")
    days, edges = split_window(start, end)
    tenant = " AND tenant_id = ?" if tenant_id else ""
    parts: list[str] = []
    params: list[object] = []
    if days is not None:
        parts.append(f"SELECT {', '.join(_KEY + MEASURES)} FROM usage_daily WHERE day >= ? AND day < ?{tenant}")
        params += [days[0], days[1], *([tenant_id] if tenant_id else [])]
    for lo, hi in edges:
        parts.append(f"SELECT {_RAW_COLUMNS} FROM usage WHERE created_at >= ? AND created_at < ?{tenant}")
        params += [lo, hi, *([tenant_id] if tenant_id else [])]
    if not parts:
        return None
    # Two levels: first the sums per raw column the key needs, then the key itself (and
    # the tenant's name) once per such group instead of once per row: the all-tenants
    # month is ~10^5 rollup rows but only ~10^3 tenants to look up.
    inner = (f"SELECT {', '.join(columns)}, " + ", ".join(f"SUM({m}) AS {m}" for m in MEASURES)
             + f" FROM ({' UNION ALL '.join(parts)}) AS r GROUP BY {', '.join(columns)}")
    join = " LEFT JOIN tenants t ON t.id = u.tenant_id" if "tenant_id" in columns else ""
    sql = (f"SELECT {who}, {key}, SUM(u.requests), SUM(u.errors), SUM(u.hosted), SUM(u.prompt_tokens), "
           "SUM(u.completion_tokens), SUM(u.total_tokens), SUM(u.estimated), SUM(u.latency_sum) / SUM(u.requests), "
           "CASE WHEN SUM(u.ttft_count) > 0 THEN SUM(u.ttft_sum) / SUM(u.ttft_count) END, "
           "CASE WHEN SUM(u.priced) > 0 THEN SUM(u.cost_nanos) END, SUM(u.requests) - SUM(u.priced) "
           f"FROM ({inner}) u{join} GROUP BY 1, 2 ORDER BY 1, 2")
    return sql, params
