"""Provider credentials: several named ones per tenant and provider (issue 13), each with
a weight for the balancer, marked invalid when the vendor rejects it (until changed), and
their cooldowns, which every worker reads on its change poll (`proxy/balancer.py`)."""

from __future__ import annotations

import time
from dataclasses import dataclass

from proxy.store.base import StoreBase
from proxy.store.changes import Change, Kind

DEFAULT_NAME = "default"


@dataclass(frozen=True, slots=True)
class CredentialRow:
    name: str
    weight: int
    secret: bytes                 # the ciphertext
    invalid_at: int | None        # the vendor rejected it (401/403) at this time


@dataclass(frozen=True, slots=True)
class Cooldown:
    tenant_id: str
    provider: str
    name: str
    until: float
    reason: str


class CredentialQueries(StoreBase):
    async def set_credential(self, tenant_id: str, provider: str, secret: bytes, name: str = DEFAULT_NAME,
                             weight: int = 1) -> None:
        """Add or replace one named credential; a replaced one is valid again and cools down no more."""
        async with self._write(Change(Kind.CREDENTIAL, tenant_id, provider)) as db:
            await db.execute("INSERT INTO provider_credentials (tenant_id, provider, name, weight, secret, updated_at) "
                             "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(tenant_id, provider, name) DO UPDATE SET "
                             "weight = excluded.weight, secret = excluded.secret, updated_at = excluded.updated_at, "
                             "invalid_at = NULL", (tenant_id, provider, name, weight, secret, int(time.time())))
            await db.execute("DELETE FROM credential_cooldowns WHERE tenant_id = ? AND provider = ? AND name = ?",
                             (tenant_id, provider, name))

    async def credentials(self, tenant_id: str) -> dict[str, tuple[CredentialRow, ...]]:
        """provider -> its credentials, by name ("default" first)."""
        out: dict[str, list[CredentialRow]] = {}
        for provider, name, weight, secret, invalid_at in await self._all(
                "SELECT provider, name, weight, secret, invalid_at FROM provider_credentials WHERE tenant_id = ? "
                "ORDER BY provider, name != 'default', name", (tenant_id,)):
            out.setdefault(provider, []).append(CredentialRow(name, weight, bytes(secret), invalid_at))
        return {provider: tuple(rows) for provider, rows in out.items()}

    async def remove_credential(self, tenant_id: str, provider: str, name: str | None = None) -> bool:
        """One named credential, or (name None) every credential of the provider."""
        async with self._write(Change(Kind.CREDENTIAL, tenant_id, provider)) as db:
            if name is None:
                n = await db.execute("DELETE FROM provider_credentials WHERE tenant_id = ? AND provider = ?",
                                     (tenant_id, provider))
            else:
                n = await db.execute("DELETE FROM provider_credentials WHERE tenant_id = ? AND provider = ? "
                                     "AND name = ?", (tenant_id, provider, name))
            return n >= 1

    async def mark_invalid(self, tenant_id: str, provider: str, name: str, secret: bytes) -> bool:
        """The vendor rejected this credential: out of rotation until it is changed. Only the
        ciphertext that was rejected (a key replaced meanwhile stays valid). No write (and no
        change every worker reloads for) when it is marked already: a client hammering with
        a dead key must not turn each 401 into a cache flush."""
        if await self._one("SELECT 1 FROM provider_credentials WHERE tenant_id = ? AND provider = ? AND name = ? "
                           "AND secret = ? AND invalid_at IS NULL", (tenant_id, provider, name, secret)) is None:
            return False
        async with self._write(Change(Kind.CREDENTIAL, tenant_id, provider)) as db:
            return await db.execute("UPDATE provider_credentials SET invalid_at = ? WHERE tenant_id = ? AND "
                                    "provider = ? AND name = ? AND secret = ? AND invalid_at IS NULL",
                                    (int(time.time()), tenant_id, provider, name, secret)) == 1

    async def mark_model_invalid(self, tenant_id: str, provider: str, model: str, name: str, secret: bytes) -> bool:
        """`mark_invalid` for a per-model entry's credential."""
        if await self._one("SELECT 1 FROM tenant_models WHERE tenant_id = ? AND provider = ? AND model = ? AND "
                           "name = ? AND secret = ? AND invalid_at IS NULL",
                           (tenant_id, provider, model, name, secret)) is None:
            return False
        async with self._write(Change(Kind.MODEL, tenant_id, f"{provider}/{model}")) as db:
            return await db.execute("UPDATE tenant_models SET invalid_at = ? WHERE tenant_id = ? AND provider = ? "
                                    "AND model = ? AND name = ? AND secret = ? AND invalid_at IS NULL",
                                    (int(time.time()), tenant_id, provider, model, name, secret)) == 1

    # -- cooldowns (accounting-like: quiet writes, read by every worker's poll) ------------

    async def set_cooldown(self, cooldown: Cooldown) -> None:
        await self._quiet_statement(
            "INSERT INTO credential_cooldowns (tenant_id, provider, name, until, reason) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT(tenant_id, provider, name) DO UPDATE SET until = MAX(credential_cooldowns.until, excluded.until), "
            "reason = excluded.reason",
            (cooldown.tenant_id, cooldown.provider, cooldown.name, cooldown.until, cooldown.reason))

    async def cooldowns(self, now: float, tenant_id: str | None = None) -> list[Cooldown]:
        """The cooldowns still running (of one tenant, or of all)."""
        if tenant_id is not None:
            rows = await self._all("SELECT tenant_id, provider, name, until, reason FROM credential_cooldowns "
                                   "WHERE tenant_id = ? AND until > ?", (tenant_id, now))
        else:
            rows = await self._all("SELECT tenant_id, provider, name, until, reason FROM credential_cooldowns "
                                   "WHERE until > ?", (now,))
        return [Cooldown(*r) for r in rows]

    async def prune_cooldowns(self, now: float) -> int:
        return await self._quiet_statement("DELETE FROM credential_cooldowns WHERE until <= ?", (now,))
