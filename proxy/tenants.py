"""What a worker knows about tenants, cached: token hashes, each tenant's credentials
(still encrypted), per-model entries, defaults, and the credentials it decrypted.

A request whose tenant is cached touches no database. Every write anywhere bumps the
store's change counter; `watch_changes` polls it and drops everything cached when it
moves, which is how a revoked token or a new credential reaches every worker in < 1 s.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

from keystore.models import Credential
from keystore.store import MASTER_ID_META, Keystore
from proxy.store import ModelRow, Store
from translators import REGISTRY
from translators.types import ModelType

log = logging.getLogger("modelport")
T = TypeVar("T")
_NEGATIVE_LIMIT = 10_000


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(slots=True)
class TenantState:
    id: str
    name: str
    wrapped_private: bytes
    credentials: dict[str, bytes]                      # provider -> encrypted credential
    models: dict[tuple[str, str], ModelRow]            # (provider, model) -> per-model entry
    defaults: dict[ModelType, tuple[str, str]]         # model type -> (provider, model)
    decrypted: dict[tuple[str, str], Credential] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Caller:
    tenant: TenantState
    token_id: str


class Directory:
    def __init__(self, store: Store, keystore: Keystore) -> None:
        self.store = store
        self.keystore = keystore
        self._tokens: dict[str, tuple[str, str] | None] = {}   # hash -> (token id, tenant id)
        self._tenants: dict[str, TenantState] = {}
        self._loading: dict[str, asyncio.Future[object]] = {}
        self._seen_changes = -1
        # Bumped by clear(): a load that began before a clear must not fill the cache
        # after it (it may have read rows from before the change that caused the clear).
        self._generation = 0
        self._stale_key_id: str | None = None  # the database's key id while this worker cannot load it

    def clear(self) -> None:
        self._generation += 1
        self._tokens.clear()
        self._tenants.clear()
        self.keystore.forget()

    async def _single_flight(self, key: str, load: Callable[[], Awaitable[T]]) -> T:
        """Concurrent first requests for the same key share one database load."""
        key = f"{self._generation}:{key}"  # never join a load from before the last clear
        pending = self._loading.get(key)
        if pending is not None:
            return await pending  # type: ignore[return-value]
        future: asyncio.Future[object] = asyncio.get_running_loop().create_future()
        self._loading[key] = future
        try:
            value = await load()
            future.set_result(value)
            return value
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # mark retrieved when nobody else waits
            raise
        finally:
            del self._loading[key]

    async def caller(self, token: str) -> Caller | None:
        digest = hash_token(token)
        if digest in self._tokens:
            found = self._tokens[digest]
        else:
            found = await self._single_flight("tok:" + digest, lambda: self._load_token(digest))
        if found is None:
            return None
        return Caller(await self.tenant(found[1]), found[0])

    async def _load_token(self, digest: str) -> tuple[str, str] | None:
        generation = self._generation
        row = await self.store.find_token(digest)
        # The row was found by its hash; compare again in constant time for good measure.
        found = (row[0], row[1]) if row is not None and hmac.compare_digest(row[2], digest) else None
        if found is None and len(self._tokens) >= _NEGATIVE_LIMIT:
            self._tokens.clear()  # bound memory against floods of random tokens
        if generation == self._generation:
            self._tokens[digest] = found
        return found

    async def tenant(self, tenant_id: str) -> TenantState:
        state = self._tenants.get(tenant_id)
        if state is None:
            state = await self._single_flight("tn:" + tenant_id, lambda: self._load_tenant(tenant_id))
        return state

    async def _load_tenant(self, tenant_id: str) -> TenantState:
        generation = self._generation
        row = await self.store.find_tenant(tenant_id)
        # The key wrapped under this worker's master key: after a rotation elsewhere, the
        # previous one (kept until the new key is confirmed) while this worker has the old key.
        wrapped = await self.store.wrapped_private_key(tenant_id, self.keystore.key_id)
        if row is None or wrapped is None:
            raise LookupError(tenant_id)
        models = {(m.provider, m.model): m for m in await self.store.models(tenant_id)}
        defaults = {ModelType(t): pm for t, pm in (await self.store.defaults(tenant_id)).items()}
        state = TenantState(row.id, row.name, wrapped, await self.store.credentials(tenant_id), models, defaults)
        if generation == self._generation:
            self._tenants[tenant_id] = state
        return state

    def credential(self, state: TenantState, provider: str, model: str | None) -> Credential:
        """The decrypted credential of a provider (model=None) or of a per-model entry."""
        key = (provider, model or "")
        cred = state.decrypted.get(key)
        if cred is None:
            blob = state.credentials[provider] if model is None else state.models[(provider, model)].secret
            cred = self.keystore.decrypt(state.id, state.wrapped_private, blob, REGISTRY[provider].credential_fields)
            state.decrypted[key] = cred
        return cred

    async def refresh_if_changed(self) -> bool:
        changes = await self.store.changes()
        if changes != self._seen_changes or self._stale_key_id is not None:
            await self._follow_master_key()
        if changes != self._seen_changes:
            if self._seen_changes != -1:
                self.clear()
            self._seen_changes = changes
            return True
        return False

    async def _follow_master_key(self) -> None:
        """After a rotation elsewhere, load the new master key (from the key file, or the
        staged file between the rotation's commit and its rename). Until this worker has
        it, creating a tenant here is refused (503) by the store, never wrapped under the old key."""
        current, before = await self.store.get_meta(MASTER_ID_META), self.keystore.key_id
        if current is None or self.keystore.follow(current):
            if self.keystore.key_id != before:
                log.info("loaded the rotated master key %s", current)
            self._stale_key_id = None
            return
        if current != self._stale_key_id:
            log.warning("the master key was rotated to %s but this worker cannot load it (key from "
                        "MODELPORT_MASTER_KEY?); creating tenants is refused until it is restarted with the new key",
                        current)
        self._stale_key_id = current
