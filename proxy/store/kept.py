"""Answers kept for later requests (issue 17): the Responses API's stored responses, one row
per tenant, API and answer id, read back by `previous_response_id` and the retrieve,
delete and input-items endpoints (`proxy/inbound/kept.py`).

A row holds what a tenant's user sent and got (the answer, the request's input items, the
conversation they continued) as JSON text, written because the request asked for it
(`store`); nothing here is logged. Every query names the tenant: another tenant's id is
simply not found. Rows live until `expires_at` (`responses_retention_days`): reads ignore
expired rows, and each write prunes them (an index range, usually empty). Accounting-like
writes (quiet): nothing cached depends on them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from proxy.store.base import StoreBase


@dataclass(frozen=True, slots=True)
class KeptRow:
    id: str
    created_at: int
    expires_at: int
    answer: str    # JSON
    items: str     # JSON list
    context: str   # JSON list


class KeptQueries(StoreBase):
    async def keep_answer(self, tenant_id: str, api: str, row: KeptRow, now: int) -> None:
        await self.keep_answers([(tenant_id, api, row)], now)

    async def keep_answers(self, rows: Sequence[tuple[str, str, KeptRow]], now: int) -> None:
        """Several answers (tenant, API, row) in one transaction: what finished while the
        last write was under way (`proxy/inbound/kept.py` groups them)."""
        async with self._quiet_write() as db:
            await db.execute("DELETE FROM kept_answers WHERE expires_at <= ?", (now,))
            await db.executemany(
                "INSERT INTO kept_answers (tenant_id, api, id, created_at, expires_at, answer, items, context) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (tenant_id, api, id) DO UPDATE SET "
                "created_at = excluded.created_at, expires_at = excluded.expires_at, answer = excluded.answer, "
                "items = excluded.items, context = excluded.context",
                [(tenant_id, api, r.id, r.created_at, r.expires_at, r.answer, r.items, r.context)
                 for tenant_id, api, r in rows])

    async def kept_answer(self, tenant_id: str, api: str, answer_id: str, now: int) -> KeptRow | None:
        r = await self._one("SELECT id, created_at, expires_at, answer, items, context FROM kept_answers "
                            "WHERE tenant_id = ? AND api = ? AND id = ? AND expires_at > ?",
                            (tenant_id, api, answer_id, now))
        if r is None:
            return None
        return KeptRow(str(r[0]), int(r[1]), int(r[2]), str(r[3]), str(r[4]), str(r[5]))

    async def forget_answer(self, tenant_id: str, api: str, answer_id: str, now: int) -> bool:
        return await self._quiet_statement("DELETE FROM kept_answers WHERE tenant_id = ? AND api = ? AND id = ? "
                                           "AND expires_at > ?", (tenant_id, api, answer_id, now)) == 1

    async def prune_kept(self, now: int) -> int:
        return await self._quiet_statement("DELETE FROM kept_answers WHERE expires_at <= ?", (now,))
