"""Master-key queries: which master key the database is on, rotation, confirmation.

The key id (`keystore.crypto.master_key_id`) is stored in `meta.master_key_id` and beside
every wrapped private key. A rotation reads and re-wraps every key inside one
`BEGIN IMMEDIATE` transaction (`key_rotation`), so no tenant created meanwhile can be
left wrapped under a key that no longer exists: `Store.create_tenant` checks the key id
of the key it inserts against `meta.master_key_id` in its own transaction.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from keystore.store import MASTER_CHECK_META, MASTER_ID_META
from proxy.store.base import StoreBase
from proxy.store.changes import Change, Kind
from proxy.store.tx import Tx
from translators.errors import ApiError


async def current_key_id(db: Tx) -> str | None:
    """The database's master key id, read on `db` (inside the caller's transaction)."""
    row = await db.one("SELECT value FROM meta WHERE key = ?", (MASTER_ID_META,))
    return None if row is None else str(row[0])


class StaleMasterKey(ApiError):
    """A tenant's key was wrapped under a master key the database has rotated away from."""

    def __init__(self) -> None:
        super().__init__(503, "the master key was just rotated and this server has not loaded the new one yet; "
                         "retry in a moment (a server whose key comes from MODELPORT_MASTER_KEY must be "
                         "restarted with the new key)", "server_error", "master_key_rotated", retry_after=1)


class KeyRotation:
    """The open rotation transaction: reads and writes go through the writer connection
    while it holds SQLite's write lock, so nothing can change between them."""

    def __init__(self, db: Tx) -> None:
        self._db = db

    async def current_key_id(self) -> str | None:
        return await current_key_id(self._db)

    async def wrapped_keys(self) -> list[tuple[str, bytes]]:
        return [(str(r[0]), bytes(r[1])) for r in await self._db.all(
            "SELECT tenant_id, wrapped_key FROM tenant_private_keys ORDER BY tenant_id")]

    async def replace(self, keys: list[tuple[str, bytes]], old_id: str, new_id: str, new_check: str) -> None:
        """Keep every current wrapped key as the previous one, then install the new ones."""
        db = self._db
        await db.execute("DELETE FROM previous_private_keys")
        await db.execute("INSERT INTO previous_private_keys (tenant_id, master_key_id, wrapped_key) "
                         "SELECT tenant_id, ?, wrapped_key FROM tenant_private_keys", (old_id,))
        await db.executemany("UPDATE tenant_private_keys SET wrapped_key = ?, master_key_id = ? WHERE tenant_id = ?",
                             [(key, new_id, tenant_id) for tenant_id, key in keys])
        for name, value in ((MASTER_CHECK_META, new_check), (MASTER_ID_META, new_id)):
            await db.execute("INSERT INTO meta (key, value) VALUES (?, ?) "
                             "ON CONFLICT(key) DO UPDATE SET value = excluded.value", (name, value))


class MasterKeyQueries(StoreBase):
    @asynccontextmanager
    async def key_rotation(self) -> AsyncIterator[KeyRotation]:
        """One write transaction (bumping the change counter, so workers notice): commits
        when the block ends normally, rolls back if it raises."""
        async with self._write(Change(Kind.MASTER_KEY)) as db:
            yield KeyRotation(db)

    async def adopt_master_key_id(self, key_id: str) -> bool:
        """Record the id of the (verified) master key on a database from before key ids,
        and on its wrapped keys. A no-op, with no write, once recorded."""
        if await self._one("SELECT 1 FROM meta WHERE key = ?", (MASTER_ID_META,)) is not None:
            return False
        async with self._write(Change(Kind.META, detail=MASTER_ID_META)) as db:
            if await db.execute("INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO NOTHING",
                                (MASTER_ID_META, key_id)) != 1:
                return False
            await db.execute("UPDATE tenant_private_keys SET master_key_id = ? WHERE master_key_id IS NULL", (key_id,))
        return True

    async def previous_key_ids(self) -> set[str]:
        return {str(r[0]) for r in await self._all("SELECT DISTINCT master_key_id FROM previous_private_keys")}

    async def confirm_master_key(self, key_id: str) -> int:
        """The master key `key_id` was loaded from its configured source: drop the previous
        wrapped keys kept since the rotation to it. Rows dropped (0, with no write, if none)."""
        if not await self._one("SELECT 1 FROM previous_private_keys LIMIT 1"):
            return 0
        async with self._write(Change(Kind.META, detail="previous_private_keys")) as db:
            # Only if that key is still the current one (checked under the write lock).
            return await db.execute("DELETE FROM previous_private_keys WHERE EXISTS "
                                    "(SELECT 1 FROM meta WHERE key = ? AND value = ?)", (MASTER_ID_META, key_id))

    async def wrapped_private_key(self, tenant_id: str, key_id: str | None = None) -> bytes | None:
        """A tenant's wrapped private key: preferably the one wrapped under master key
        `key_id` (the current one, or the previous one kept until confirmation), else the current one."""
        row = await self._one(
            "SELECT wrapped_key FROM (SELECT wrapped_key, master_key_id, 0 AS o FROM tenant_private_keys "
            "WHERE tenant_id = ? UNION ALL SELECT wrapped_key, master_key_id, 1 AS o FROM previous_private_keys "
            "WHERE tenant_id = ?) AS k ORDER BY master_key_id IS ? DESC, o LIMIT 1", (tenant_id, tenant_id, key_id))
        return None if row is None else bytes(row[0])
