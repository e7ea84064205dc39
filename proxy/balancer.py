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
  must stay in rotation, a dead one must not. Cooldowns are rows in the store (quiet writes), re-read by
  every worker on its change poll, so all workers of the server keep the key out.
- **Invalid**: a credential the vendor rejects (401/403) is marked in the store (a logged
  change: every worker's tenant state reloads) and stays out until it is changed.
A credential is never skipped when nothing else is left: the vendor's answer is then
better than a made-up one.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Collection

from cachetools import LRUCache

from proxy.settings import RoutingSettings
from proxy.store import Store
from proxy.store.credentials import Cooldown, CredentialRow
from proxy.tenants import TenantState
from translators.errors import ApiError, UpstreamError

log = logging.getLogger("modelport")

Key = tuple[str, str, str]  # (tenant id, provider, credential name)
_FAILING_STATUS = frozenset({500, 502, 503, 504, 529})


class Balancer:
    def __init__(self, store: Store, settings: RoutingSettings, *, size: int = 100_000) -> None:
        self.store = store
        self.settings = settings
        self._scores: LRUCache[tuple[str, str], dict[str, int]] = LRUCache(size)
        self._cooling: dict[Key, float] = {}        # until (unix time), as the store last said
        self._failures: LRUCache[Key, deque[float]] = LRUCache(size)

    def cooling_until(self, tenant_id: str, provider: str, name: str) -> float | None:
        until = self._cooling.get((tenant_id, provider, name))
        return until if until is not None and until > time.time() else None

    def pick(self, tenant: TenantState, provider: str, avoid: Collection[str] = ()) -> str:
        rows = tenant.credentials[provider]
        if len(rows) == 1:
            return rows[0].name
        now = time.time()
        valid = [r for r in rows if r.invalid_at is None] or list(rows)
        fresh = [r for r in valid if r.name not in avoid] or valid
        ready = [r for r in fresh if self._cooling.get((tenant.id, provider, r.name), 0.0) <= now]
        if not ready:  # every one cools down: the one that comes back first
            return min(fresh, key=lambda r: self._cooling.get((tenant.id, provider, r.name), 0.0)).name
        return self._weighted(tenant.id, provider, ready)

    def _weighted(self, tenant_id: str, provider: str, rows: list[CredentialRow]) -> str:
        scores = self._scores.get((tenant_id, provider))
        if scores is None:
            scores = self._scores[(tenant_id, provider)] = {}
        total = 0
        best: CredentialRow | None = None
        for row in rows:
            scores[row.name] = scores.get(row.name, 0) + row.weight
            total += row.weight
            if best is None or scores[row.name] > scores[best.name]:
                best = row
        assert best is not None
        scores[best.name] -= total
        return best.name

    async def failed(self, tenant: TenantState, provider: str, name: str, err: ApiError) -> None:
        """Learn from an attempt with this credential that failed."""
        if not isinstance(err, UpstreamError):
            return  # the gateway's own refusal says nothing about the key
        key = (tenant.id, provider, name)
        now = time.time()
        if err.code == "upstream_credential_rejected":
            blob = tenant.ciphertext(provider, "", name)
            row = next((r for r in tenant.credentials.get(provider, ()) if r.name == name), None)
            if row is None or row.invalid_at is not None:
                return  # marked already (this worker has reloaded since)
            if blob is not None and await self.store.mark_invalid(tenant.id, provider, name, blob):
                log.warning("tenant %s: the %s credential %r was rejected by the vendor; it stays out of "
                            "rotation until it is changed", tenant.id, provider, name)
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

    def succeeded(self, tenant_id: str, provider: str, name: str) -> None:
        """A success ends a run of failures (cheap: one dict removal, usually of nothing)."""
        if self._failures:
            self._failures.pop((tenant_id, provider, name), None)

    async def _cool(self, key: Key, until: float, reason: str) -> None:
        if self._cooling.get(key, 0.0) >= until - 1.0:
            return  # already known to cool down that long: a 429 storm is not a write storm
        self._cooling[key] = until
        await self.store.set_cooldown(Cooldown(*key, until, reason))

    async def refresh(self) -> None:
        """Take the server's cooldowns from the store (the watcher calls this every poll)."""
        now = time.time()
        self._cooling = {(c.tenant_id, c.provider, c.name): c.until for c in await self.store.cooldowns(now)}
