"""Budgets (issue 16): spending limits (configuration: logged writes, cached in each
worker's tenant state) and what each has spent (accounting: quiet writes).

Spend is one row of `budget_spend` per tenant, scope (one budget's daily or monthly
limit) and period ("YYYY-MM-DD" or "YYYY-MM", UTC), in nano-dollars. It holds the cost of
the requests that finished and the reservations of those still running, so a request
is let through only while what is spent and held stays below every limit that applies.
A request draws on all of its budgets or on none (one it exceeds must not hold money of
the others), so `budget_take` reads and adds inside one write transaction: SQLite's
writer lock (BEGIN IMMEDIATE) and PostgreSQL's advisory lock serialise it against every
other worker and instance, and no two requests can both see the last cent free.
A scope's earlier periods are pruned when its first request of a new period opens a row.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from proxy.store.base import StoreBase
from proxy.store.changes import Change, Kind
from proxy.store.limits import marks as _marks


@dataclass(frozen=True, slots=True)
class BudgetRow:
    token_id: str            # "" = the whole tenant
    daily: int | None        # nano-dollars per UTC day (None: no daily limit)
    monthly: int | None      # nano-dollars per UTC month (None: no monthly limit)
    allow_unpriced: bool = False  # models without a price may be used under it (their cost not counted)


@dataclass(frozen=True, slots=True)
class SpendCharge:
    """What one request holds of one budget: its scope and period, the estimate, the limit."""

    scope: str
    period: str
    cost: int
    limit: int


@dataclass(frozen=True, slots=True)
class SpendTaken:
    spent: tuple[int, ...]   # each scope's spend (and holds) before this request, in order
    refused: int | None      # the first charge whose budget is used up (nothing was taken), or None


_ADD = ("INSERT INTO budget_spend (tenant_id, scope, period, spent) VALUES (?, ?, ?, ?) "
        "ON CONFLICT(tenant_id, scope, period) DO UPDATE SET spent = budget_spend.spent + excluded.spent")


class BudgetQueries(StoreBase):
    # -- configuration ------------------------------------------------------------------

    async def budgets(self, tenant_id: str) -> tuple[BudgetRow, ...]:
        return tuple(BudgetRow(str(r[0]), None if r[1] is None else int(r[1]), None if r[2] is None else int(r[2]),
                               bool(r[3])) for r in await self._all(
            "SELECT token_id, daily_nanos, monthly_nanos, allow_unpriced FROM budgets WHERE tenant_id = ? "
            "ORDER BY token_id", (tenant_id,)))

    async def set_budget(self, tenant_id: str, row: BudgetRow) -> None:
        async with self._write(Change(Kind.BUDGET, tenant_id, row.token_id)) as db:
            await db.execute("INSERT INTO budgets (tenant_id, token_id, daily_nanos, monthly_nanos, allow_unpriced) "
                             "VALUES (?, ?, ?, ?, ?) ON CONFLICT(tenant_id, token_id) DO UPDATE SET "
                             "daily_nanos = excluded.daily_nanos, monthly_nanos = excluded.monthly_nanos, "
                             "allow_unpriced = excluded.allow_unpriced",
                             (tenant_id, row.token_id, row.daily, row.monthly, int(row.allow_unpriced)))

    async def clear_budget(self, tenant_id: str, token_id: str) -> bool:
        """The budget goes; what it spent stays (set again within the period, it counts on)."""
        async with self._write(Change(Kind.BUDGET, tenant_id, token_id)) as db:
            return await db.execute("DELETE FROM budgets WHERE tenant_id = ? AND token_id = ?",
                                    (tenant_id, token_id)) == 1

    # -- spend (quiet: nothing cached depends on it) --------------------------------------

    async def budget_take(self, tenant_id: str, charges: Sequence[SpendCharge]) -> SpendTaken:
        """Hold every charge's cost in its scope's period, or none of them when a budget is
        used up already (spent and held at or above its limit); atomically across workers."""
        async with self._quiet_write() as db:
            found = {(str(r[0]), str(r[1])): int(r[2]) for r in await db.all(
                f"SELECT scope, period, spent FROM budget_spend WHERE tenant_id = ? "
                f"AND scope IN ({_marks(len(charges))})", (tenant_id, *(c.scope for c in charges)))}
            spent = tuple(found.get((c.scope, c.period), 0) for c in charges)
            refused = next((i for i, c in enumerate(charges) if spent[i] >= c.limit), None)
            if refused is None:
                await db.executemany(_ADD, [(tenant_id, c.scope, c.period, c.cost) for c in charges])
                for c in charges:
                    if (c.scope, c.period) not in found and any(s == c.scope for s, _ in found):
                        await db.execute("DELETE FROM budget_spend WHERE tenant_id = ? AND scope = ? AND period < ?",
                                         (tenant_id, c.scope, c.period))
        return SpendTaken(spent, refused)

    async def budget_settle(self, tenant_id: str, charges: Sequence[tuple[str, str]], delta: int) -> None:
        """Correct the holds of one request by `delta` (its real cost minus its estimate)."""
        # Scopes and periods crossed: each scope names its kind (daily or monthly) and one
        # request holds one period of each kind, so no pair matches a row it does not hold.
        scopes, periods = sorted({s for s, _ in charges}), sorted({p for _, p in charges})
        await self._quiet_statement(
            f"UPDATE budget_spend SET spent = MAX(spent + ?, 0) WHERE tenant_id = ? AND scope IN "
            f"({_marks(len(scopes))}) AND period IN ({_marks(len(periods))})", (delta, tenant_id, *scopes, *periods))

    async def budget_spent(self, tenant_id: str, charges: Sequence[tuple[str, str]]) -> dict[tuple[str, str], int]:
        """The spend of each (scope, period) that has any (absent: nothing spent yet)."""
        if not charges:
            return {}
        wanted = set(charges)
        return {key: int(r[2]) for r in await self._all(
            f"SELECT scope, period, spent FROM budget_spend WHERE tenant_id = ? AND scope IN "
            f"({_marks(len(wanted))})", (tenant_id, *sorted({s for s, _ in wanted})))
            if (key := (str(r[0]), str(r[1]))) in wanted}
