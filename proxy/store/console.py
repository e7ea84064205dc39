"""Console sessions (the settings page's sign-in) and tokens' last use.

Sessions are rows, not worker memory: a sign-in on one worker is known to every other,
and revoking a console token (which deletes its sessions in the same transaction) or
deleting its tenant (ON DELETE CASCADE) ends the session everywhere at once. Only the
SHA-256 of the session id is stored, so a copy of the database signs nobody in.
Writes here are quiet (no change-log entry): no worker caches a session.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from proxy.store.base import StoreBase


@dataclass(frozen=True, slots=True)
class SessionRow:
    id_hash: str
    tenant_id: str | None     # None: the operator
    token_id: str | None      # the console token signed in with (tenant sessions)
    admin_hash: str | None    # the admin token's hash at sign-in (operator sessions)
    csrf: str
    created_at: int
    expires_at: int


_COLUMNS = "s.id_hash, s.tenant_id, s.token_id, s.admin_hash, s.csrf, s.created_at, s.expires_at"


class ConsoleQueries(StoreBase):
    async def create_session(self, row: SessionRow) -> None:
        async with self._quiet_write() as db:
            # Housekeeping on the (rare) sign-in, so expired rows never pile up.
            await db.execute("DELETE FROM console_sessions WHERE expires_at <= ?", (row.created_at,))
            await db.execute("INSERT INTO console_sessions (id_hash, tenant_id, token_id, admin_hash, csrf, "
                             "created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                             (row.id_hash, row.tenant_id, row.token_id, row.admin_hash, row.csrf,
                              row.created_at, row.expires_at))
            if row.token_id is not None:
                await db.execute("UPDATE tokens SET last_used_at = ? WHERE id = ?", (row.created_at, row.token_id))

    async def session(self, id_hash: str) -> SessionRow | None:
        """A live session: not expired, and its console token (if any) not revoked."""
        row = await self._one(
            f"SELECT {_COLUMNS} FROM console_sessions s LEFT JOIN tokens t ON t.id = s.token_id "
            "WHERE s.id_hash = ? AND s.expires_at > ? AND "
            "(s.token_id IS NULL OR (t.revoked_at IS NULL AND t.kind = 'console'))", (id_hash, int(time.time())))
        return None if row is None else SessionRow(*row)

    async def delete_session(self, id_hash: str) -> bool:
        return await self._quiet_statement("DELETE FROM console_sessions WHERE id_hash = ?", (id_hash,)) == 1

    async def touch_token(self, token_id: str) -> None:
        """A console token used as a bearer token on the admin API."""
        await self._quiet_statement("UPDATE tokens SET last_used_at = ? WHERE id = ?", (int(time.time()), token_id))
