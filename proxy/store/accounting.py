"""Accounting queries: hosted-trial counters and usage records.

All of them but `quota_set_limit` (an operator's decision, logged as a change) write
through the quiet path (no change-log row): nothing a worker caches depends on them.
The invariant that matters across workers, "no more than N hosted calls", lives
entirely in one conditional UPDATE, never in memory.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import NamedTuple

from proxy.store import usage_rollup as rollup
from proxy.store.base import StoreBase
from proxy.store.changes import Change, Kind
from proxy.store.tx import Tx
from proxy.store.usage_rollup import GROUP_KEYS

__all__ = ["GROUP_KEYS", "AccountingQueries", "UsageGroup", "UsageRow"]

# The whole reservation: SQLite runs one statement atomically under its writer lock,
# so concurrent reservations from any number of workers can never overshoot.
# COALESCE: a per-tenant override (quota set) wins over the configured quota.
_RESERVE = ("UPDATE hosted_quota SET used = used + 1 WHERE tenant_id = ? AND provider = ? "
            "AND (COALESCE(limit_override, ?) < 0 OR used < COALESCE(limit_override, ?))")

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
    attempts: int = 1            # upstream attempts (retries and fallbacks included)
    credential: str | None = None  # the name of the credential that served ("hosted" for a trial)
    cost_nanos: int | None = None  # nano-dollars (proxy/prices.py); None: the model has no price


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
    cost_nanos: int | None = None  # of the priced requests; None when none was priced
    unpriced: int = 0              # requests whose model had no price (not in cost_nanos)


async def _touch_tokens(db: Tx, rows: list[UsageRow]) -> None:
    """Each token's last use, from the batch: one UPDATE per token in it, inside the
    batch's transaction (nothing on the request path)."""
    last: dict[str, float] = {}
    for row in rows:
        if row.token_id and row.created_at > last.get(row.token_id, 0.0):
            last[row.token_id] = row.created_at
    if last:
        await db.executemany("UPDATE tokens SET last_used_at = MAX(COALESCE(last_used_at, 0), ?) WHERE id = ?",
                             [(int(ts), token_id) for token_id, ts in last.items()])


class AccountingQueries(StoreBase):
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
            "INSERT INTO hosted_quota (tenant_id, provider, used) VALUES (?, ?, 0) "
            "ON CONFLICT (tenant_id, provider) DO NOTHING", (tenant_id, provider))
        return await self._quiet_statement(_RESERVE, params) == 1

    async def quota_refund(self, tenant_id: str, provider: str) -> None:
        await self._quiet_statement("UPDATE hosted_quota SET used = used - 1 WHERE tenant_id = ? AND provider = ? "
                                    "AND used > 0", (tenant_id, provider))

    async def quota_counters(self, tenant_id: str) -> dict[str, tuple[int, int | None]]:
        """provider -> (used, limit override or None)."""
        return {r[0]: (int(r[1]), None if r[2] is None else int(r[2])) for r in await self._all(
            "SELECT provider, used, limit_override FROM hosted_quota WHERE tenant_id = ?", (tenant_id,))}

    async def quota_remaining(self, provider: str, configured_limit: int) -> int:
        """Hosted calls left on `provider`, summed over every tenant (the metrics' gauge):
        a tenant without a counter row has the whole configured quota; unlimited ones (-1)
        add nothing."""
        row = await self._one(
            "SELECT (SELECT COUNT(*) FROM tenants) - COUNT(q.tenant_id), COALESCE(SUM(CASE "
            "WHEN COALESCE(q.limit_override, ?) > q.used THEN COALESCE(q.limit_override, ?) - q.used ELSE 0 END), 0) "
            "FROM hosted_quota q WHERE q.provider = ? AND q.tenant_id IN (SELECT id FROM tenants)",
            (configured_limit, configured_limit, provider))
        without_row, left = (int(row[0]), int(row[1])) if row is not None else (0, 0)
        return left + without_row * max(configured_limit, 0)

    async def quota_set_limit(self, tenant_id: str, provider: str, limit: int | None) -> None:
        """A per-tenant limit (None: back to the configured quota); `used` is kept. An
        operator's decision, not accounting: logged as a change (nothing cached depends on
        it today; the console and the change log's readers may)."""
        async with self._write(Change(Kind.QUOTA, tenant_id, provider)) as db:
            await db.execute(
                "INSERT INTO hosted_quota (tenant_id, provider, used, limit_override) VALUES (?, ?, 0, ?) "
                "ON CONFLICT(tenant_id, provider) DO UPDATE SET limit_override = excluded.limit_override",
                (tenant_id, provider, limit))

    # -- usage records ----------------------------------------------------------------

    async def insert_usage(self, rows: list[UsageRow], batch_id: str | None = None) -> None:
        """A batch in one transaction: one fsync for hundreds of requests, and one more
        statement that adds the batch into its days of the rollup. A batch whose id is
        written already (its COMMIT went through, its answer was lost) is not written again."""
        async with self._quiet_write() as db:
            if not await _first_time(db, batch_id):
                return
            last = await _last_id(db)
            await db.executemany(_INSERT_USAGE, rows)
            await db.execute(rollup.ROLLUP_SINCE, (last,))
            await _touch_tokens(db, rows)

    async def insert_usage_each(self, rows: list[UsageRow], batch_id: str | None = None) -> list[tuple[UsageRow, str]]:
        """The rows one statement each, in one transaction: a row the database refuses
        (a value it cannot store) is skipped, not the batch. Returns the skipped rows with
        the reason; raises when the database itself fails (locked, full, gone). The
        rollup gets the rows inserted, and only those (a refused row has no id)."""
        skipped: list[tuple[UsageRow, str]] = []
        async with self._quiet_write() as db:
            if not await _first_time(db, batch_id):
                return skipped
            last = await _last_id(db)
            for row in rows:
                reason = await db.try_execute(_INSERT_USAGE, row)
                if reason is not None:
                    skipped.append((row, reason))
            await db.execute(rollup.ROLLUP_SINCE, (last,))
            await _touch_tokens(db, rows)
        return skipped

    async def prune_usage(self, before: float, limit: int) -> int:
        """Delete up to `limit` usage rows and up to `limit` rollup rows from before the
        UTC midnight at or before `before` (whole days: every day left in the rollup
        keeps all its raw rows, so edge days and whole days agree). Returns the rows
        deleted from both; less than `limit` once both are done. Small batches, each its
        own statement, keep every lock short."""
        day = rollup.day_of(before)
        raw = await self._quiet_statement(rollup.PRUNE_RAW, (day * rollup.DAY_SECONDS, limit))
        return raw + await self._quiet_statement(rollup.PRUNE_DAILY, (day, limit))

    async def prune_usage_batches(self, before: float) -> int:
        return await self._quiet_statement("DELETE FROM usage_batches WHERE created_at < ?", (before,))

    async def usage_summary(self, tenant_id: str | None, start: float, end: float, group_by: str,
                            per_tenant: bool = False) -> list[UsageGroup]:
        """Totals per group of the requests in [start, end), for one tenant or all:
        whole UTC days from the rollup, partial days at the edges from the raw rows."""
        query = rollup.summary_query(tenant_id, start, end, group_by, per_tenant)
        rows = [] if query is None else await self._all(*query)
        return [UsageGroup(str(r[0]), str(r[1] or ""), int(r[2]), int(r[3]), int(r[4]), int(r[5]), int(r[6]),
                           int(r[7]), int(r[8]), round(float(r[9]), 1),
                           None if r[10] is None else round(float(r[10]), 1),
                           None if r[11] is None else int(r[11]), int(r[12])) for r in rows]


async def _first_time(db: Tx, batch_id: str | None) -> bool:
    """Record the batch's id; False when it was there already (the batch is in). A batch
    without an id is never retried (a test's, a copy's): nothing to record."""
    if batch_id is None:
        return True
    return await db.execute("INSERT INTO usage_batches (id, created_at) VALUES (?, ?) ON CONFLICT (id) DO NOTHING",
                            (batch_id, time.time())) == 1


async def _last_id(db: Tx) -> int:
    """The largest usage id, read inside the write transaction (so no row can slip in
    between it and the insert)."""
    row = await db.one(rollup.LAST_ID)
    return int(row[0]) if row else 0
