"""Accounting queries: hosted-trial counters and usage records.

All of them write through the quiet path (no change-counter bump): nothing a worker
caches depends on these tables. The invariant that matters across workers, "no
more than N hosted calls", lives entirely in one conditional UPDATE, never in memory.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from typing import NamedTuple

from proxy.store.base import SQLiteBase

# The whole reservation: SQLite runs one statement atomically under its writer lock,
# so concurrent reservations from any number of workers can never overshoot.
# COALESCE: a per-tenant override (quota set) wins over the configured quota.
_RESERVE = ("UPDATE hosted_quota SET used = used + 1 WHERE tenant_id = ? AND provider = ? "
            "AND (COALESCE(limit_override, ?) < 0 OR used < COALESCE(limit_override, ?))")

# Keys of `usage_summary`'s groups, chosen from a fixed table (never from client text).
GROUP_KEYS: dict[str, str] = {
    "model": "CASE WHEN u.provider = '' THEN u.model ELSE u.provider || '/' || u.model END",
    "provider": "u.provider",
    "day": "strftime('%Y-%m-%d', u.created_at, 'unixepoch')",
    "tenant": "COALESCE(t.name, u.tenant_id)",
}


class UsageRow(NamedTuple):
    """One request, in the `usage` table's column order (a tuple: cheap to queue)."""

    created_at: float
    request_id: str
    tenant_id: str
    token_id: str
    endpoint: str
    provider: str
    model: str
    model_type: str
    billing: str
    stream: bool
    status: int
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    estimated: bool
    latency_ms: float
    ttft_ms: float | None


_INSERT_USAGE = f"INSERT INTO usage ({', '.join(UsageRow._fields)}) VALUES ({', '.join('?' * len(UsageRow._fields))})"


@dataclass(frozen=True, slots=True)
class UsageGroup:
    tenant: str                 # tenant name ("" unless the summary is per tenant)
    key: str
    requests: int
    errors: int                 # status >= 400
    hosted: int                 # requests billed to a hosted trial
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    estimated: int              # requests whose token counts are estimates
    avg_latency_ms: float
    avg_ttft_ms: float | None   # streams only


class AccountingQueries(SQLiteBase):
    # -- hosted-trial counters --------------------------------------------------------

    async def quota_reserve(self, tenant_id: str, provider: str, configured_limit: int) -> bool:
        """Take one call if any is left (True), atomically across every worker."""
        params = (tenant_id, provider, configured_limit, configured_limit)
        if await self._quiet_statement(_RESERVE, params) == 1:
            return True
        # No row matched: either the trial is spent or this is the tenant's first hosted
        # call on this provider. Creating the row is idempotent, and the same conditional
        # UPDATE decides again whoever created it (a racing first call may have).
        await self._quiet_statement(
            "INSERT OR IGNORE INTO hosted_quota (tenant_id, provider, used) VALUES (?, ?, 0)", (tenant_id, provider))
        return await self._quiet_statement(_RESERVE, params) == 1

    async def quota_refund(self, tenant_id: str, provider: str) -> None:
        await self._quiet_statement("UPDATE hosted_quota SET used = used - 1 WHERE tenant_id = ? AND provider = ? "
                                    "AND used > 0", (tenant_id, provider))

    async def quota_counters(self, tenant_id: str) -> dict[str, tuple[int, int | None]]:
        """provider -> (used, limit override or None)."""
        return {r[0]: (int(r[1]), None if r[2] is None else int(r[2])) for r in await self._all(
            "SELECT provider, used, limit_override FROM hosted_quota WHERE tenant_id = ?", (tenant_id,))}

    async def quota_set_limit(self, tenant_id: str, provider: str, limit: int | None) -> None:
        """A per-tenant limit (None: back to the configured quota); `used` is kept."""
        await self._quiet_statement(
            "INSERT INTO hosted_quota (tenant_id, provider, used, limit_override) VALUES (?, ?, 0, ?) "
            "ON CONFLICT(tenant_id, provider) DO UPDATE SET limit_override = excluded.limit_override",
            (tenant_id, provider, limit))

    # -- usage records ----------------------------------------------------------------

    async def insert_usage(self, rows: list[UsageRow]) -> None:
        """A batch in one transaction: one fsync for hundreds of requests."""
        async with self._quiet_write() as db:
            await db.executemany(_INSERT_USAGE, rows)

    async def insert_usage_each(self, rows: list[UsageRow]) -> list[tuple[UsageRow, str]]:
        """The rows one statement each, in one transaction: a row the database refuses
        (a value it cannot store) is skipped, not the batch. Returns the skipped rows with
        the reason; raises when the database itself fails (locked, full, gone)."""
        skipped: list[tuple[UsageRow, str]] = []
        async with self._quiet_write() as db:
            for row in rows:
                try:
                    await db.execute(_INSERT_USAGE, row)
                except sqlite3.OperationalError:
                    raise  # the database, not the row
                except (sqlite3.Error, OverflowError, ValueError, TypeError) as exc:
                    skipped.append((row, type(exc).__name__))
        return skipped

    async def prune_usage(self, before: float, limit: int) -> int:
        """Delete up to `limit` rows older than `before`; small batches keep each lock short."""
        return await self._quiet_statement(
            "DELETE FROM usage WHERE id IN (SELECT id FROM usage WHERE created_at < ? ORDER BY created_at LIMIT ?)",
            (before, limit))

    async def usage_summary(self, tenant_id: str | None, start: float, end: float, group_by: str,
                            per_tenant: bool = False) -> list[UsageGroup]:
        """Totals per group of the requests in [start, end), for one tenant or all."""
        key = GROUP_KEYS[group_by]
        who = "COALESCE(t.name, u.tenant_id)" if per_tenant and group_by != "tenant" else "''"
        where = "u.created_at >= ? AND u.created_at < ?" + (" AND u.tenant_id = ?" if tenant_id else "")
        params: tuple[object, ...] = (start, end, tenant_id) if tenant_id else (start, end)
        rows = await self._all(
            f"SELECT {who}, {key}, COUNT(*), SUM(u.status >= 400), SUM(u.billing = 'hosted'), "
            "SUM(u.prompt_tokens), SUM(u.completion_tokens), SUM(u.total_tokens), SUM(u.estimated), "
            "AVG(u.latency_ms), AVG(u.ttft_ms) "
            f"FROM usage u LEFT JOIN tenants t ON t.id = u.tenant_id WHERE {where} GROUP BY 1, 2 ORDER BY 1, 2",
            params)
        return [UsageGroup(str(r[0]), str(r[1] or ""), int(r[2]), int(r[3]), int(r[4]), int(r[5]), int(r[6]),
                           int(r[7]), int(r[8]), round(float(r[9]), 1),
                           None if r[10] is None else round(float(r[10]), 1)) for r in rows]
