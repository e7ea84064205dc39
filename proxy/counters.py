"""Where the state that requests share across workers and instances, and that changes on
every request, is kept (issue 15): rate-limit counters (`proxy/ratelimits.py`) and
credential cooldowns (`proxy/balancer.py`).

By default the store keeps them (`StoreApi` is a `Counters`: SQLite's or PostgreSQL's
tables, `proxy/store/limits.py` and `credentials.py`). With `redis_url` configured,
`proxy/bootstrap.py` hands them to Redis (`proxy/store/redis_counters.py`), and every
caller reaches them the same way: `store.counters.<method>`.

The contract (`tests/store/test_counters_contract.py` holds every implementation to it):
- `rate_take(minute, charges)` adds every charge to its counter of that minute, or none of
  them when one would pass its limit, atomically across every worker and instance.
  `Taken.used` is each counter before, `Taken.refused` the first charge refused (or None).
- `rate_settle(minute, scopes, delta)` corrects existing counters by `delta`, never below 0.
- `rate_used(minute, scopes)` the counters that exist (absent: nothing taken yet).
- `set_cooldown(c)` keeps the later `until` of the one it meets, and the latest reason.
- `cooldowns(now, tenant_id)` those still running (of one tenant, or of all).
- `prune_cooldowns(now)` forgets finished ones: the rows deleted (Redis: nothing to do, 0;
  finished ones go as later ones are set).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from proxy.store.base import StoreUnavailable
from proxy.store.credentials import Cooldown
from proxy.store.limits import Charge, Taken


class CountersUnavailable(StoreUnavailable):
    """The counters' server (Redis) cannot be reached: a 503 `counters_unavailable` with
    Retry-After for a request that needs them (a rate-limited tenant's); the message names
    where, never a password (`proxy/store/redis_counters.py` raises it)."""

    def __init__(self, where: str, reason: str) -> None:
        super().__init__(503, f"cannot use the rate-limit counters (Redis at {where}): {reason}", "server_error",
                         "counters_unavailable", retry_after=1)


class Counters(Protocol):
    async def rate_take(self, minute: int, charges: Sequence[Charge]) -> Taken: ...

    async def rate_settle(self, minute: int, scopes: Sequence[str], delta: int) -> None: ...

    async def rate_used(self, minute: int, scopes: Sequence[str]) -> dict[str, int]: ...

    async def set_cooldown(self, cooldown: Cooldown) -> None: ...

    async def cooldowns(self, now: float, tenant_id: str | None = None) -> list[Cooldown]: ...

    async def prune_cooldowns(self, now: float) -> int: ...


class SharedCounters(Counters, Protocol):
    """Counters kept apart from the store (Redis): opened by `proxy/bootstrap.py`, closed
    with the store."""

    async def close(self) -> None: ...
