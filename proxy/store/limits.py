"""Rate limits (issue 13): the configured limits (configuration: logged writes, cached in
each worker's tenant state) and their per-minute counters (accounting: quiet writes).

A counter is one row of `rate_windows` per scope (one limit's requests, or its tokens)
and UTC minute. A request draws on every limit that matches it at once, and must draw on
all of them or on none (one it exceeds must not spend the others), so `rate_take` reads
and adds inside one immediate transaction: SQLite's writer lock, held from BEGIN
IMMEDIATE to COMMIT, serialises it against every other worker's, so no two requests can
both see the last free slot. Minutes before the previous one are pruned whenever a
counter opens a new minute: the table holds about two rows per limit in use.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from proxy.store.base import StoreBase
from proxy.store.changes import Change, Kind


@dataclass(frozen=True, slots=True)
class LimitRow:
    token_id: str          # "" = the whole tenant
    model: str             # "" = every model; else provider/model
    rpm: int | None        # requests per minute (None: no request limit)
    tpm: int | None        # tokens per minute (None: no token limit)


@dataclass(frozen=True, slots=True)
class Charge:
    """What one request adds to one counter, and that counter's ceiling per minute."""

    scope: str
    cost: int
    limit: int


@dataclass(frozen=True, slots=True)
class Taken:
    used: tuple[int, ...]    # each charge's counter before this request, in order
    refused: int | None      # the first charge that would pass its limit (nothing was added), or None


_ADD = ("INSERT INTO rate_windows (scope, minute, used) VALUES (?, ?, ?) "
        "ON CONFLICT(scope, minute) DO UPDATE SET used = rate_windows.used + excluded.used")


def marks(n: int) -> str:
    """n placeholders for an IN list."""
    return ", ".join("?" * n)


class LimitQueries(StoreBase):
    # -- configuration ------------------------------------------------------------------

    async def rate_limits(self, tenant_id: str) -> tuple[LimitRow, ...]:
        return tuple(LimitRow(*r) for r in await self._all(
            "SELECT token_id, model, rpm, tpm FROM rate_limits WHERE tenant_id = ? ORDER BY token_id, model",
            (tenant_id,)))

    async def set_rate_limit(self, tenant_id: str, row: LimitRow) -> None:
        async with self._write(Change(Kind.LIMIT, tenant_id, f"{row.token_id}/{row.model}")) as db:
            await db.execute("INSERT INTO rate_limits (tenant_id, token_id, model, rpm, tpm) VALUES (?, ?, ?, ?, ?) "
                             "ON CONFLICT(tenant_id, token_id, model) DO UPDATE SET rpm = excluded.rpm, "
                             "tpm = excluded.tpm", (tenant_id, row.token_id, row.model, row.rpm, row.tpm))

    async def clear_rate_limit(self, tenant_id: str, token_id: str, model: str) -> bool:
        async with self._write(Change(Kind.LIMIT, tenant_id, f"{token_id}/{model}")) as db:
            return await db.execute("DELETE FROM rate_limits WHERE tenant_id = ? AND token_id = ? AND model = ?",
                                    (tenant_id, token_id, model)) == 1

    # -- counters (quiet: nothing cached depends on them) ---------------------------------

    async def rate_take(self, minute: int, charges: Sequence[Charge]) -> Taken:
        """Add every charge to its counter of `minute`, or none of them when one would
        pass its limit; atomically across every worker."""
        scopes = [c.scope for c in charges]
        async with self._quiet_write() as db:
            found = {str(r[0]): int(r[1]) for r in await db.all(
                f"SELECT scope, used FROM rate_windows WHERE minute = ? AND scope IN ({marks(len(scopes))})",
                (minute, *scopes))}
            used = tuple(found.get(scope, 0) for scope in scopes)
            refused = next((i for i, c in enumerate(charges) if used[i] + c.cost > c.limit), None)
            if refused is None:
                await db.executemany(_ADD, [(c.scope, minute, c.cost) for c in charges])
                if len(found) < len(set(scopes)):  # a counter's first request this minute
                    await db.execute("DELETE FROM rate_windows WHERE minute < ?", (minute - 1,))
        return Taken(used, refused)

    async def rate_settle(self, minute: int, scopes: Sequence[str], delta: int) -> None:
        """Correct token counters by `delta` (real usage minus the estimate taken)."""
        await self._quiet_statement(f"UPDATE rate_windows SET used = MAX(used + ?, 0) WHERE minute = ? AND scope IN "
                                    f"({marks(len(scopes))})", (delta, minute, *scopes))

    async def rate_used(self, minute: int, scopes: Sequence[str]) -> dict[str, int]:
        """The counters of `minute` (absent: nothing used yet)."""
        return {str(r[0]): int(r[1]) for r in await self._all(
            f"SELECT scope, used FROM rate_windows WHERE minute = ? AND scope IN ({marks(len(scopes))})",
            (minute, *scopes))}
