"""Which of a tenant's credentials for a provider serves the next attempt (issue 13).

- **Spread by weight**: smooth weighted round-robin (nginx's): each pick adds every usable
  credential's weight to its running score, takes the highest and subtracts the total
  from it, so two equal keys alternate instead of colliding at random, and weights 3:1
  give A A B A, A A B A, ... Per worker; a provider with one credential costs nothing.
- **Cooldowns**: a credential answered with a 429 sits out for the vendor's Retry-After
  (else `routing.cooldown`); one that failed `routing.failures_to_cool` times in a row
  (5xx, connect errors, resets; no success between them, all within
  `routing.failure_window`) sits out for `routing.cooldown` and is tried again after it.
  In a row, not in a window: a key behind an upstream that fails 5% of requests at random
  must stay in rotation, a dead one must not. Cooldowns are kept in `store.counters` (the
  store's rows, quiet writes; or Redis with `redis_url`), re-read by every worker on its
  change poll, so all workers of every instance keep the key out. When they cannot be
  written or read (Redis away), the request goes on: each worker keeps what it knows,
  and says so in the log once.
- **Invalid**: a credential the vendor rejects (401/403) is marked in the store (a logged
  change: every worker's tenant state reloads) and stays out until it is changed.
A credential is never skipped when nothing else is left: the vendor's answer is then
better than a made-up one.

The same holds for the named credentials of a per-model entry (a model added one by one
with its own credentials): their "slot" is `provider/model` where a provider's is `provider`.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Collection, Sequence

from cachetools import LRUCache

from proxy import metrics
from proxy.counters import CountersUnavailable
from proxy.settings import RoutingSettings
from proxy.store import ModelRow, StoreApi, StoreUnavailable
from proxy.store.credentials import Cooldown, CredentialRow
from proxy.tenants import TenantState
from translators.errors import ApiError, UpstreamError

log = logging.getLogger("modelport")

Key = tuple[str, str, str]  # (tenant id, slot, credential name)
_FAILING_STATUS = frozenset({500, 502, 503, 504, 529})


def slot(provider: str, model: str | None) -> str:
    """Where a credential's cooldown is kept: the provider's, or a per-model entry's."""
    return f"{provider}/{model}" if model else provider


def rows_of(tenant: TenantState, provider: str, model: str | None) -> Sequence[CredentialRow | ModelRow]:
    return tenant.models.get((provider, model), ()) if model else tenant.credentials.get(provider, ())


class Balancer:
    def __init__(self, store: StoreApi, settings: RoutingSettings, *, size: int = 100_000) -> None:
        self.store = store
        self.settings = settings
        self._scores: LRUCache[tuple[str, str], dict[str, int]] = LRUCache(size)
        self._cooling: dict[Key, float] = {}        # until (unix time), as the store last said
        self._failures: LRUCache[Key, deque[float]] = LRUCache(size)
        self._unwritten: str | None = None          # cooldowns could not be written (logged once)
        self._unread: str | None = None             # ... or read: the last known ones stay

    def cooling_until(self, tenant_id: str, slot: str, name: str) -> float | None:
        until = self._cooling.get((tenant_id, slot, name))
        return until if until is not None and until > time.time() else None

    def pick(self, tenant: TenantState, provider: str, avoid: Collection[str] = (), model: str | None = None) -> str:
        """The credential for the next attempt: one of the provider's, or (model given) one
        of that per-model entry's."""
        rows = rows_of(tenant, provider, model)
        if len(rows) == 1:
            return rows[0].name
        where = slot(provider, model)
        now = time.time()
        valid = [r for r in rows if r.invalid_at is None] or list(rows)
        fresh = [r for r in valid if r.name not in avoid] or valid
        ready = [r for r in fresh if self._cooling.get((tenant.id, where, r.name), 0.0) <= now]
        if not ready:  # every one cools down: the one that comes back first
            return min(fresh, key=lambda r: self._cooling.get((tenant.id, where, r.name), 0.0)).name
        return self._weighted(tenant.id, where, ready)

    def _weighted(self, tenant_id: str, where: str, rows: list[CredentialRow | ModelRow]) -> str:
        scores = self._scores.get((tenant_id, where))
        if scores is None:
            scores = self._scores[(tenant_id, where)] = {}
        total = 0
        best: CredentialRow | ModelRow | None = None
        for row in rows:
            scores[row.name] = scores.get(row.name, 0) + row.weight
            total += row.weight
            if best is None or scores[row.name] > scores[best.name]:
                best = row
        assert best is not None
        scores[best.name] -= total
        return best.name

    async def failed(self, tenant: TenantState, provider: str, name: str, err: ApiError,
                     model: str | None = None) -> None:
        """Learn from an attempt with this credential that failed."""
        if not isinstance(err, UpstreamError):
            return  # the gateway's own refusal says nothing about the key
        key = (tenant.id, slot(provider, model), name)
        now = time.time()
        if err.code == "upstream_credential_rejected":
            row = next((r for r in rows_of(tenant, provider, model) if r.name == name), None)
            if row is None or row.invalid_at is not None:
                return  # marked already (this worker has reloaded since)
            marked = (await self.store.mark_model_invalid(tenant.id, provider, model, name, row.secret) if model
                      else await self.store.mark_invalid(tenant.id, provider, name, row.secret))
            if marked:
                metrics.credential_invalidated(tenant.id, provider)
                log.warning("tenant %s: the %s credential %r was rejected by the vendor; it stays out of "
                            "rotation until it is changed", tenant.id, key[1], name)
            return
        if err.status == 429:
            await self._cool(key, now + (err.retry_after or self.settings.cooldown), "rate_limited")
            return
        if err.status in _FAILING_STATUS:
            window = self._failures.get(key)
            if window is None:
                window = self._failures[key] = deque(maxlen=self.settings.failures_to_cool)
            window.append(now)
            if len(window) == window.maxlen and now - window[0] <= self.settings.failure_window:
                window.clear()
                await self._cool(key, now + self.settings.cooldown, "failing")

    def succeeded(self, tenant_id: str, provider: str, name: str, model: str | None = None) -> None:
        """A success ends a run of failures (cheap: nothing to do unless some key is failing)."""
        if self._failures:
            self._failures.pop((tenant_id, slot(provider, model), name), None)

    async def _cool(self, key: Key, until: float, reason: str) -> None:
        if self._cooling.get(key, 0.0) >= until - 1.0:
            return  # already known to cool down that long: a 429 storm is not a write storm
        self._cooling[key] = until
        metrics.cooldown_entered(key[0], key[1].partition("/")[0], reason)
        try:
            await self.store.counters.set_cooldown(Cooldown(*key, until, reason))
        except StoreUnavailable as exc:  # the vendor's answer still reaches the client
            if self._unwritten is None:
                log.warning("could not share a credential cooldown: %s; this worker keeps it, will retry",
                            exc.message)
            self._unwritten = exc.message
            return
        if self._unwritten is not None:
            log.warning("credential cooldowns are shared again")
            self._unwritten = None

    async def refresh(self) -> None:
        """Take every instance's cooldowns from `store.counters` (the watcher calls this
        every poll). Redis away: the last known ones stay (the store's own outage is the
        watcher's to report)."""
        now = time.time()
        try:
            running = await self.store.counters.cooldowns(now)
        except CountersUnavailable as exc:
            if self._unread is None:
                log.warning("could not read the credential cooldowns: %s; keeping the last known, will retry",
                            exc.message)
            self._unread = exc.message
            return
        if self._unread is not None:
            log.warning("credential cooldowns are readable again")
            self._unread = None
        self._cooling = {(c.tenant_id, c.provider, c.name): c.until for c in running}
