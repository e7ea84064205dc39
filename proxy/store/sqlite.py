"""The store's queries (`StoreApi`) and the SQLite store (aiosqlite, WAL). The hot path reads through caches and only
comes here on a miss; every configuration write bumps `meta.changes` in the same
transaction, which is how every worker (and the CLI's effect on them) learns that
caches are stale. Accounting writes (quota, usage) do not: see `base.py`."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import orjson

from keystore.store import WrappedKey
from proxy.store.accounting import AccountingQueries
from proxy.store.base import SQLiteBase
from proxy.store.budgets import BudgetQueries
from proxy.store.changes import Change, Kind, LoggedChange, parse_rows
from proxy.store.console import ConsoleQueries
from proxy.store.credentials import CredentialQueries
from proxy.store.keys import MasterKeyQueries, StaleMasterKey, current_key_id
from proxy.store.kept import KeptQueries
from proxy.store.limits import LimitQueries

if TYPE_CHECKING:  # proxy.counters imports this package
    from proxy.counters import Counters, SharedCounters


@dataclass(frozen=True, slots=True)
class TenantRow:
    id: str
    name: str
    public_key: bytes
    created_at: int


@dataclass(frozen=True, slots=True)
class TokenRow:
    id: str
    tenant_id: str
    name: str | None
    hint: str
    created_at: int
    revoked_at: int | None
    kind: str = "api"              # "api" (the /v1 endpoints) or "console" (the settings page)
    last_used_at: int | None = None


@dataclass(frozen=True, slots=True)
class ModelRow:
    provider: str
    model: str
    model_type: str
    secret: bytes
    name: str = "default"          # one of the entry's named credentials (issue 13)
    weight: int = 1
    invalid_at: int | None = None  # the vendor rejected it (401/403) at this time


_TOKEN_COLUMNS = "id, tenant_id, name, hint, created_at, revoked_at, kind, last_used_at"


def _now() -> int:
    return int(time.time())


class StoreApi(MasterKeyQueries, AccountingQueries, ConsoleQueries, LimitQueries, CredentialQueries, BudgetQueries,
               KeptQueries):
    """The store's interface, whichever the backend: configuration queries (every write
    bumps the change counter); master-key queries come from `MasterKeyQueries`,
    accounting ones from `AccountingQueries`, the primitives from a backend: `Store`
    (SQLite, below) or `postgres.PostgresStore`."""

    _shared: SharedCounters | None = None

    # -- rate-limit counters and cooldowns: here, or in Redis -----------------------------

    @property
    def counters(self) -> Counters:
        """Where rate-limit counters and credential cooldowns live (`proxy/counters.py`):
        this store's tables, or what `share_counters` gave (Redis, with `redis_url`)."""
        return self if self._shared is None else self._shared

    def share_counters(self, counters: SharedCounters) -> None:
        """Keep the counters and cooldowns there from now on; closed with the store."""
        self._shared = counters

    async def close(self) -> None:
        shared, self._shared = self._shared, None
        try:
            await super().close()
        finally:
            if shared is not None:
                await shared.close()

    # -- meta ---------------------------------------------------------------------

    async def changes(self) -> int:
        row = await self._one("SELECT value FROM meta WHERE key = 'changes'")
        return int(row[0]) if row else 0

    async def changes_since(self, seq: int, limit: int) -> tuple[int, list[LoggedChange]]:
        """The change counter and up to `limit` logged changes after `seq` (none when the
        counter has not moved: the poll's common case is one indexed read)."""
        counter = await self.changes()
        if counter <= seq:
            return counter, []
        rows = await self._all("SELECT seq, tenant_id, kind, detail FROM change_log WHERE seq > ? AND seq <= ? "
                               "ORDER BY seq LIMIT ?", (seq, counter, limit))
        return counter, parse_rows(rows)

    async def prune_changes(self, before: float) -> int:
        """Drop change-log rows older than `before` (a quiet write: nothing to invalidate)."""
        return await self._quiet_statement("DELETE FROM change_log WHERE created_at < ?", (before,))

    async def get_meta(self, key: str) -> str | None:
        row = await self._one("SELECT value FROM meta WHERE key = ?", (key,))
        return None if row is None else str(row[0])

    async def set_meta(self, key: str, value: str) -> None:
        async with self._write(Change(Kind.META, detail=key)) as db:
            await db.execute("INSERT INTO meta (key, value) VALUES (?, ?) "
                             "ON CONFLICT(key) DO UPDATE SET value = excluded.value", (key, value))

    async def set_meta_if_absent(self, key: str, value: str) -> bool:
        # Nothing to write is not a change: bumping the counter here would make workers
        # that call this on every poll invalidate each other's caches for ever.
        if await self.get_meta(key) is not None:
            return False
        async with self._write(Change(Kind.META, detail=key)) as db:
            return await db.execute("INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO NOTHING",
                                    (key, value)) == 1

    # -- tenants ------------------------------------------------------------------

    async def create_tenant(self, tenant_id: str, name: str, public_key: bytes, wrapped_key: bytes) -> TenantRow:
        row = TenantRow(tenant_id, name, public_key, _now())
        key_id = wrapped_key.master_key_id if isinstance(wrapped_key, WrappedKey) else None
        async with self._write(Change(Kind.TENANT, tenant_id)) as db:
            if key_id is not None:
                # Under the write lock: a rotation either committed before (then refuse a key
                # wrapped under the old master key) or will re-wrap this tenant's key too.
                current = await current_key_id(db)
                if current is not None and current != key_id:
                    raise StaleMasterKey()
            await db.execute("INSERT INTO tenants (id, name, public_key, created_at) VALUES (?, ?, ?, ?)",
                             (row.id, row.name, row.public_key, row.created_at))
            await db.execute("INSERT INTO tenant_private_keys (tenant_id, wrapped_key, master_key_id) VALUES (?, ?, ?)",
                             (tenant_id, bytes(wrapped_key), key_id))
        return row

    async def find_tenant(self, ref: str) -> TenantRow | None:
        row = await self._one("SELECT id, name, public_key, created_at FROM tenants WHERE id = ? OR name = ? "
                              "ORDER BY id = ? DESC LIMIT 1", (ref, ref, ref))
        return None if row is None else TenantRow(*row)

    async def list_tenants(self) -> list[TenantRow]:
        return [TenantRow(*r) for r in await self._all(
            "SELECT id, name, public_key, created_at FROM tenants ORDER BY name")]

    async def delete_tenant(self, tenant_id: str) -> bool:
        async with self._write(Change(Kind.TENANT_DELETED, tenant_id)) as db:
            deleted = await db.execute("DELETE FROM tenants WHERE id = ?", (tenant_id,))
            # usage has no foreign key (see schema 2); a deleted tenant's history goes too.
            await db.execute("DELETE FROM usage WHERE tenant_id = ?", (tenant_id,))
            await db.execute("DELETE FROM usage_daily WHERE tenant_id = ?", (tenant_id,))
            await db.execute("DELETE FROM budget_spend WHERE tenant_id = ?", (tenant_id,))  # no foreign key either
            return deleted == 1

    # -- tokens -------------------------------------------------------------------

    async def create_token(self, token_id: str, tenant_id: str, name: str | None, token_hash: str,
                           hint: str, kind: str = "api") -> TokenRow:
        row = TokenRow(token_id, tenant_id, name, hint, _now(), None, kind)
        async with self._write(Change(Kind.TOKEN, tenant_id, token_hash)) as db:
            await db.execute("INSERT INTO tokens (id, tenant_id, name, token_hash, hint, created_at, kind) "
                             "VALUES (?, ?, ?, ?, ?, ?, ?)",
                             (token_id, tenant_id, name, token_hash, hint, row.created_at, kind))
        return row

    async def find_token(self, token_hash: str, kind: str = "api") -> tuple[str, str, str] | None:
        """(token id, tenant id, stored hash) of a live token of `kind`: an API token is
        never a console token, whatever its text (the prefixes differ too)."""
        row = await self._one("SELECT id, tenant_id, token_hash FROM tokens "
                              "WHERE token_hash = ? AND revoked_at IS NULL AND kind = ?", (token_hash, kind))
        return None if row is None else (row[0], row[1], row[2])

    async def token(self, token_id: str) -> TokenRow | None:
        row = await self._one(f"SELECT {_TOKEN_COLUMNS} FROM tokens WHERE id = ?", (token_id,))
        return None if row is None else TokenRow(*row)

    async def list_tokens(self, tenant_id: str) -> list[TokenRow]:
        return [TokenRow(*r) for r in await self._all(
            f"SELECT {_TOKEN_COLUMNS} FROM tokens WHERE tenant_id = ? ORDER BY created_at, id", (tenant_id,))]

    async def revoke_token(self, token_id: str) -> TokenRow | None:
        # The hash names the cache entry every worker drops; a token's hash never changes.
        found = await self._one("SELECT tenant_id, token_hash FROM tokens WHERE id = ?", (token_id,))
        if found is None:
            return None
        async with self._write(Change(Kind.TOKEN, found[0], found[1])) as db:
            await db.execute("UPDATE tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
                             (_now(), token_id))
            # A console token's sessions end with it (the session check reads the token too).
            await db.execute("DELETE FROM console_sessions WHERE token_id = ?", (token_id,))
        return await self.token(token_id)

    # -- per-model entries (provider credentials: `credentials.py`) ---------------------

    async def add_model(self, tenant_id: str, provider: str, model: str, model_type: str, secret: bytes,
                        name: str = "default", weight: int = 1) -> None:
        """Add or replace one named credential of a per-model entry; a replaced one is valid
        again and cools down no more. The entry's rows keep one model type."""
        async with self._write(Change(Kind.MODEL, tenant_id, f"{provider}/{model}")) as db:
            await db.execute("INSERT INTO tenant_models (tenant_id, provider, model, name, model_type, weight, secret, "
                             "updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(tenant_id, provider, model, name) "
                             "DO UPDATE SET model_type = excluded.model_type, weight = excluded.weight, "
                             "secret = excluded.secret, updated_at = excluded.updated_at, invalid_at = NULL",
                             (tenant_id, provider, model, name, model_type, weight, secret, _now()))
            await db.execute("UPDATE tenant_models SET model_type = ? WHERE tenant_id = ? AND provider = ? AND model = ?",
                             (model_type, tenant_id, provider, model))
            await db.execute("DELETE FROM credential_cooldowns WHERE tenant_id = ? AND provider = ? AND name = ?",
                             (tenant_id, f"{provider}/{model}", name))

    async def models(self, tenant_id: str) -> list[ModelRow]:
        """Every per-model entry's credentials, by entry ("default" first)."""
        return [ModelRow(r[0], r[1], r[2], bytes(r[3]), r[4], r[5], r[6]) for r in await self._all(
            "SELECT provider, model, model_type, secret, name, weight, invalid_at FROM tenant_models "
            "WHERE tenant_id = ? ORDER BY provider, model, name != 'default', name", (tenant_id,))]

    async def remove_model(self, tenant_id: str, provider: str, model: str, name: str | None = None) -> bool:
        """One named credential of the entry, or (name None) the whole entry."""
        async with self._write(Change(Kind.MODEL, tenant_id, f"{provider}/{model}")) as db:
            if name is None:
                n = await db.execute("DELETE FROM tenant_models WHERE tenant_id = ? AND provider = ? AND model = ?",
                                     (tenant_id, provider, model))
            else:
                n = await db.execute("DELETE FROM tenant_models WHERE tenant_id = ? AND provider = ? AND model = ? "
                                     "AND name = ?", (tenant_id, provider, model, name))
            return n >= 1

    # -- defaults -----------------------------------------------------------------

    async def set_default(self, tenant_id: str, model_type: str, provider: str, model: str) -> None:
        async with self._write(Change(Kind.DEFAULT, tenant_id, model_type)) as db:
            await db.execute("INSERT INTO default_models (tenant_id, model_type, provider, model) VALUES (?, ?, ?, ?) "
                             "ON CONFLICT(tenant_id, model_type) DO UPDATE SET provider = excluded.provider, "
                             "model = excluded.model", (tenant_id, model_type, provider, model))

    async def defaults(self, tenant_id: str) -> dict[str, tuple[str, str]]:
        return {r[0]: (r[1], r[2]) for r in await self._all(
            "SELECT model_type, provider, model FROM default_models WHERE tenant_id = ?", (tenant_id,))}

    async def clear_default(self, tenant_id: str, model_type: str) -> bool:
        async with self._write(Change(Kind.DEFAULT, tenant_id, model_type)) as db:
            return await db.execute("DELETE FROM default_models WHERE tenant_id = ? AND model_type = ?",
                                    (tenant_id, model_type)) == 1

    # -- fallbacks ----------------------------------------------------------------------

    async def set_fallbacks(self, tenant_id: str, model: str, fallbacks: list[str]) -> None:
        async with self._write(Change(Kind.FALLBACK, tenant_id, model)) as db:
            await db.execute("INSERT INTO fallbacks (tenant_id, model, fallbacks) VALUES (?, ?, ?) "
                             "ON CONFLICT(tenant_id, model) DO UPDATE SET fallbacks = excluded.fallbacks",
                             (tenant_id, model, orjson.dumps(fallbacks).decode()))

    async def fallbacks(self, tenant_id: str) -> dict[str, tuple[str, ...]]:
        return {r[0]: tuple(orjson.loads(r[1])) for r in await self._all(
            "SELECT model, fallbacks FROM fallbacks WHERE tenant_id = ? ORDER BY model", (tenant_id,))}

    async def clear_fallbacks(self, tenant_id: str, model: str) -> bool:
        async with self._write(Change(Kind.FALLBACK, tenant_id, model)) as db:
            return await db.execute("DELETE FROM fallbacks WHERE tenant_id = ? AND model = ?", (tenant_id, model)) == 1


class Store(StoreApi, SQLiteBase):
    """The SQLite store (the default: one file, one machine)."""
