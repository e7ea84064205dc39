"""What a worker knows about tenants, cached: token hashes, each tenant's credentials
(still encrypted), per-model entries, defaults, and the credentials it decrypted.

A request whose tenant is cached touches no database. Every write logs what it changed
(`proxy/store/changes.py`); `refresh_if_changed`, polled by every worker, drops only
the entries each change names: a revoked token's hash, one tenant's state. So a write
for one tenant costs the others nothing, and a revoked token is refused within one poll
interval. A tenant whose credentials or defaults changed keeps its unwrapped private key
(in the keystore) and every decrypted credential whose ciphertext did not change; only a
master-key rotation, or a gap in the log, drops everything.

Every cache is a bounded LRU (`cache:` in the settings): memory does not grow with the
number of tenants, and an evicted tenant is loaded again on its next request.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import TypeVar

from cachetools import LRUCache

from keystore.models import Credential
from keystore.store import MASTER_ID_META, Keystore
from proxy.store import ModelRow, StoreApi
from proxy.store.budgets import BudgetRow
from proxy.store.changes import Kind, LoggedChange
from proxy.store.credentials import DEFAULT_NAME, CredentialRow
from proxy.store.limits import LimitRow
from translators import REGISTRY
from translators.types import ModelType

log = logging.getLogger("modelport")
T = TypeVar("T")
_REFUSED_LIMIT = 10_000   # refused token hashes remembered: a flood of random tokens evicts only these
_LOG_BATCH = 10_000       # more changes than this in one poll: dropping everything is cheaper
_EVERYTHING = frozenset(Kind)
_MASTER_KEY_KINDS = frozenset({Kind.MASTER_KEY, Kind.META})  # a rotation; the key id adopted


# Changes that make a cached tenant state stale (reloaded on next use).
_TENANT_KINDS = frozenset({Kind.CREDENTIAL, Kind.MODEL, Kind.DEFAULT, Kind.LIMIT, Kind.FALLBACK, Kind.BUDGET})


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def by_entry(rows: Iterable[ModelRow]) -> dict[tuple[str, str], tuple[ModelRow, ...]]:
    """Per-model rows grouped by entry, (provider, model) -> its named credentials, in order."""
    models: dict[tuple[str, str], tuple[ModelRow, ...]] = {}
    for m in rows:
        models[(m.provider, m.model)] = (*models.get((m.provider, m.model), ()), m)
    return models


@dataclass(slots=True)
class TenantState:
    id: str
    name: str
    wrapped_private: bytes
    credentials: dict[str, tuple[CredentialRow, ...]]  # provider -> its named, encrypted credentials
    models: dict[tuple[str, str], tuple[ModelRow, ...]]  # (provider, model) -> the entry's named credentials
    defaults: dict[ModelType, tuple[str, str]]         # model type -> (provider, model)
    fallbacks: dict[str, tuple[str, ...]] = field(default_factory=dict)  # provider/model -> models to try next
    limits: tuple[LimitRow, ...] = ()                  # rate limits (empty: nothing to count)
    budgets: tuple[BudgetRow, ...] = ()                # spending limits (empty: nothing to count)
    decrypted: dict[tuple[str, str, str], Credential] = field(default_factory=dict)  # (provider, model, name)
    stale: bool = False  # its rows changed: reloaded on next use, keeping what did not change

    def ciphertext(self, provider: str, model: str, name: str = DEFAULT_NAME) -> bytes | None:
        if not model:
            return next((row.secret for row in self.credentials.get(provider, ()) if row.name == name), None)
        return next((row.secret for row in self.models.get((provider, model), ()) if row.name == name), None)

    def inherit(self, old: TenantState) -> None:
        """Keep the credentials `old` decrypted whose ciphertexts are still the same."""
        if old.wrapped_private != self.wrapped_private:
            return
        for key, cred in old.decrypted.items():
            blob = self.ciphertext(*key)
            if blob is not None and blob == old.ciphertext(*key):
                self.decrypted[key] = cred


@dataclass(frozen=True, slots=True)
class Caller:
    tenant: TenantState
    token_id: str


@dataclass(slots=True)
class CacheStats:
    """Plain counters for tests and the benchmark: what the caches saved and cost."""

    token_loads: int = 0
    tenant_loads: int = 0
    credential_decryptions: int = 0
    flushes: int = 0


class Directory:
    def __init__(self, store: StoreApi, keystore: Keystore, *, tenants: int = 10_000, tokens: int = 100_000) -> None:
        self.store = store
        self.keystore = keystore
        self._tokens: LRUCache[str, tuple[str, str]] = LRUCache(tokens)   # hash -> (token id, tenant id)
        self._refused: LRUCache[str, bool] = LRUCache(min(tokens, _REFUSED_LIMIT))
        self._tenants: LRUCache[str, TenantState] = LRUCache(tenants)
        self._loading: dict[str, asyncio.Future[object]] = {}
        self._seen_changes = -1
        # Bumped by every invalidation: a load that began before one must not fill the
        # cache after it (it may have read rows from before the change).
        self._generation = 0
        self._stale_key_id: str | None = None  # the database's key id while this worker cannot load it
        self.stats = CacheStats()

    def clear(self) -> None:
        self._generation += 1
        self.stats.flushes += 1
        self._tokens.clear()
        self._refused.clear()
        self._tenants.clear()
        self.keystore.forget()

    async def _single_flight(self, key: str, load: Callable[[], Awaitable[T]]) -> T:
        """Concurrent first requests for the same key share one load."""
        key = f"{self._generation}:{key}"  # never join a load from before the last invalidation
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

    # -- the hot path -----------------------------------------------------------------

    async def caller(self, token: str) -> Caller | None:
        digest = hash_token(token)
        found = self._tokens.get(digest)
        if found is None:
            if digest in self._refused:
                return None
            found = await self._single_flight("tok:" + digest, lambda: self._load_token(digest))
            if found is None:
                return None
        try:
            return Caller(await self.tenant(found[1]), found[0])
        except LookupError:  # the tenant was deleted since its token was cached
            self._tokens.pop(digest, None)
            return None

    async def _load_token(self, digest: str) -> tuple[str, str] | None:
        generation = self._generation
        self.stats.token_loads += 1
        row = await self.store.find_token(digest)
        # The row was found by its hash; compare again in constant time for good measure.
        found = (row[0], row[1]) if row is not None and hmac.compare_digest(row[2], digest) else None
        if generation == self._generation:
            if found is None:
                self._refused[digest] = True
            else:
                self._tokens[digest] = found
        return found

    async def tenant(self, tenant_id: str) -> TenantState:
        state = self._tenants.get(tenant_id)
        if state is None or state.stale:
            state = await self._single_flight("tn:" + tenant_id, lambda: self._load_tenant(tenant_id, state))
        return state

    async def _load_tenant(self, tenant_id: str, old: TenantState | None) -> TenantState:
        generation = self._generation
        self.stats.tenant_loads += 1
        row = await self.store.find_tenant(tenant_id)
        # The key wrapped under this worker's master key: after a rotation elsewhere, the
        # previous one (kept until the new key is confirmed) while this worker has the old key.
        wrapped = await self.store.wrapped_private_key(tenant_id, self.keystore.key_id)
        if row is None or wrapped is None:
            raise LookupError(tenant_id)
        models = by_entry(await self.store.models(tenant_id))
        defaults = {ModelType(t): pm for t, pm in (await self.store.defaults(tenant_id)).items()}
        state = TenantState(row.id, row.name, wrapped, await self.store.credentials(tenant_id), models, defaults,
                            await self.store.fallbacks(tenant_id), await self.store.rate_limits(tenant_id),
                            await self.store.budgets(tenant_id))
        if old is not None:
            state.inherit(old)
        if generation == self._generation:
            self._tenants[tenant_id] = state
        return state

    async def credential(self, state: TenantState, provider: str, model: str | None,
                         name: str = DEFAULT_NAME) -> Credential:
        """The decrypted credential of a provider (model=None; one of its named ones) or of a
        per-model entry. RSA runs off the event loop (`Keystore.open_credential`), once per ciphertext."""
        key = (provider, model or "", name)
        cred = state.decrypted.get(key)
        if cred is None:
            blob = state.ciphertext(*key)
            if blob is None:
                raise KeyError(key)  # routing only picks what the tenant has
            cred = await self._single_flight(f"cred:{state.id}:{provider}:{key[1]}:{name}", lambda: self._decrypt(
                state, provider, blob))
            state.decrypted[key] = cred
        return cred

    async def _decrypt(self, state: TenantState, provider: str, blob: bytes) -> Credential:
        self.stats.credential_decryptions += 1
        return await self.keystore.open_credential(state.id, state.wrapped_private, blob,
                                                   REGISTRY[provider].credential_fields)

    # -- following writes ----------------------------------------------------------------

    async def refresh_if_changed(self) -> frozenset[Kind]:
        """Apply the changes logged since the last poll; the kinds applied (all of them
        when everything was dropped), empty when nothing changed."""
        if self._seen_changes == -1:  # the first poll: nothing cached yet, nothing to read
            counter, changes = await self.store.changes(), list[LoggedChange]()
        else:
            counter, changes = await self.store.changes_since(self._seen_changes, _LOG_BATCH)
        if counter == self._seen_changes:
            if self._stale_key_id is not None:
                await self._follow_master_key()
            return frozenset()
        seen, self._seen_changes = self._seen_changes, counter
        # Numbers are gap-free (`changes.py`), so the rows in (seen, counter] are all there
        # unless some were pruned unread, more came than one batch, or the database was
        # replaced (the counter went back).
        complete = seen != -1 and len(changes) == counter - seen
        kinds = frozenset(c.change.kind for c in changes) if complete else _EVERYTHING
        if kinds & _MASTER_KEY_KINDS or self._stale_key_id is not None:
            await self._follow_master_key()  # one more read, only when the key may have moved
        if seen == -1:
            return _EVERYTHING  # the first poll: nothing was cached before it
        if not complete:
            return self._drop_everything(f"{counter - seen} change(s) since the last poll, {len(changes)} in the log")
        if Kind.MASTER_KEY in kinds:
            return self._drop_everything(None)
        for logged in changes:
            self._apply(logged)
        return kinds

    def _drop_everything(self, why: str | None) -> frozenset[Kind]:
        if why:
            log.warning("dropping every cached tenant: %s", why)
        self.clear()
        return _EVERYTHING

    def _apply(self, logged: LoggedChange) -> None:
        change = logged.change
        kind, tenant_id = change.kind, change.tenant_id
        if kind is Kind.TOKEN and change.detail:
            self._generation += 1
            self._tokens.pop(change.detail, None)
            self._refused.pop(change.detail, None)
        elif kind in _TENANT_KINDS and tenant_id:
            self._generation += 1
            state = self._tenants.get(tenant_id)
            if state is not None:
                state.stale = True
        elif kind is Kind.TENANT_DELETED and tenant_id:
            self._generation += 1
            self._tenants.pop(tenant_id, None)
            self.keystore.forget(tenant_id)
            # Its cached tokens find no tenant on their next use and are dropped then (`caller`).
        # TENANT (created), QUOTA and META leave tenants' cached entries as they are.

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
