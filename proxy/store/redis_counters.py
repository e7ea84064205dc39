"""Rate-limit counters and credential cooldowns in Redis (`redis_url`, issue 15): the
`proxy.counters.Counters` contract, for several instances that would otherwise each take
a database write transaction per rate-limited request.

Keys, all under `modelport:`:
- `modelport:rl:<minute>:<scope>`: one counter (an integer) per limit scope and UTC
  minute, expiring `COUNTER_TTL` seconds after it was opened: it outlives its minute (a
  long stream settles its tokens after the minute turned), nothing has to prune it.
- `modelport:cd:until`: a sorted set, member = the credential `[tenant, slot, name]` (JSON),
  score = until (unix time), and `modelport:cd:reason`, a hash of the same members: the
  reason. `cooldowns(now)` reads the members scored above `now` (the running ones: work
  bounded by them, not by history); each `set_cooldown` drops up to `PRUNE_BATCH` finished
  ones, so `prune_cooldowns` has nothing to do.

Atomicity: `rate_take` is one Lua script (EVALSHA, loaded again after a Redis restart by
redis-py's `Script`): it reads every counter, refuses without adding anything if one would
pass its limit, else adds to all. Redis runs a script alone, so no two requests of any
worker or instance can both see the last free slot. `rate_settle` and `set_cooldown` are
scripts for the same reason (a floor at 0, the later until).

Redis unreachable: every call raises `CountersUnavailable` (a 503 `counters_unavailable`
for the request that needed it), naming host:port/db, never the password. One retry on a
fresh connection when the connection failed (a pooled one Redis closed when it
restarted), at once: a backoff would hold the request for seconds; none after a timeout,
where the script may have run (a take counted twice). Not for Redis Cluster: one server
(or a primary).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

import orjson
import redis.asyncio as aioredis
import redis.exceptions
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.commands.core import AsyncScript

from proxy.counters import CountersUnavailable
from proxy.settings import without_password
from proxy.store.credentials import Cooldown
from proxy.store.limits import Charge, Taken

PREFIX = "modelport:"
COUNTER_TTL = 120     # seconds: the counter's minute and one more
PRUNE_BATCH = 100     # finished cooldowns dropped per `set_cooldown`, at most
TIMEOUT = 2.0         # seconds to connect, and for one answer

_UNTIL, _REASON = PREFIX + "cd:until", PREFIX + "cd:reason"

# KEYS: the counters; ARGV: the expiry, then each charge's cost and limit.
# Returns {refused index (0-based) or -1, each counter before}.
_TAKE = """
local used = redis.call('MGET', unpack(KEYS))
local out = {-1}
for i = 1, #KEYS do
  local u = tonumber(used[i]) or 0
  out[i + 1] = u
  if out[1] < 0 and u + tonumber(ARGV[2 * i]) > tonumber(ARGV[2 * i + 1]) then out[1] = i - 1 end
end
if out[1] < 0 then
  for i = 1, #KEYS do
    local cost = tonumber(ARGV[2 * i])
    if redis.call('INCRBY', KEYS[i], cost) == cost then redis.call('EXPIRE', KEYS[i], ARGV[1]) end
  end
end
return out
"""

# KEYS: the counters; ARGV[1]: delta. Existing counters only, never below 0 (INCRBY keeps the expiry).
_SETTLE = """
for i = 1, #KEYS do
  if redis.call('EXISTS', KEYS[i]) == 1 then
    local v = redis.call('INCRBY', KEYS[i], ARGV[1])
    if v < 0 then redis.call('INCRBY', KEYS[i], -v) end
  end
end
return 0
"""

# KEYS: until (sorted set), reason (hash); ARGV: member, until, reason, now, prune batch.
_COOL = """
local gone = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[4], 'LIMIT', 0, ARGV[5])
if #gone > 0 then
  redis.call('ZREM', KEYS[1], unpack(gone))
  redis.call('HDEL', KEYS[2], unpack(gone))
end
local old = tonumber(redis.call('ZSCORE', KEYS[1], ARGV[1]))
if old == nil or old < tonumber(ARGV[2]) then redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1]) end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
return 0
"""

# KEYS: until, reason; ARGV[1]: now. Returns {member, until (as stored), reason, ...} of the running ones.
_RUNNING = """
local found = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. ARGV[1], '+inf', 'WITHSCORES')
local out = {}
for i = 1, #found, 2 do
  out[#out + 1] = found[i]
  out[#out + 1] = found[i + 1]
  out[#out + 1] = redis.call('HGET', KEYS[2], found[i]) or ''
end
return out
"""

# Redis away, restarting (still loading its data), refusing us, or a replica after a failover.
_LOST = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, redis.exceptions.ReadOnlyError,
         OSError, asyncio.TimeoutError)


def describe(url: str) -> str:
    """host:port/db of a redis:// URL (the socket's path for unix://), never user or password."""
    parts = urlsplit(url)
    if parts.scheme == "unix":
        return parts.path
    try:
        port = parts.port or 6379
    except ValueError:
        port = 6379
    return f"{parts.hostname or 'localhost'}:{port}{parts.path if parts.path not in ('', '/') else '/0'}"


def _counter(minute: int, scope: str) -> str:
    return f"{PREFIX}rl:{minute}:{scope}"


def _member(tenant_id: str, provider: str, name: str) -> bytes:
    return orjson.dumps([tenant_id, provider, name])


def _float(value: float) -> str:
    return repr(float(value))


class RedisCounters:
    """`Counters` on one Redis server; a connection pool per process (per worker)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.where = describe(url)
        self._redis: aioredis.Redis = aioredis.Redis.from_url(
            url, socket_connect_timeout=TIMEOUT, socket_timeout=TIMEOUT,
            retry=Retry(NoBackoff(), 1, supported_errors=(redis.exceptions.ConnectionError,)))
        self._take = self._redis.register_script(_TAKE)
        self._settle = self._redis.register_script(_SETTLE)
        self._cool = self._redis.register_script(_COOL)
        self._running = self._redis.register_script(_RUNNING)

    def __repr__(self) -> str:
        return f"RedisCounters({self.where!r})"

    @contextmanager
    def _reachable(self) -> Iterator[None]:
        try:
            yield
        except _LOST as exc:
            raise CountersUnavailable(self.where, without_password(str(exc) or type(exc).__name__, self.url)) \
                from None

    async def open(self) -> None:
        """Check that Redis answers (a start-up error otherwise)."""
        with self._reachable():
            await self._redis.ping()

    async def close(self) -> None:
        await self._redis.aclose()

    async def _call(self, script: AsyncScript, keys: Sequence[str], args: Sequence[str | bytes | int]) -> Any:
        with self._reachable():
            return await script(keys=list(keys), args=list(args))

    # -- rate-limit counters ----------------------------------------------------------

    async def rate_take(self, minute: int, charges: Sequence[Charge]) -> Taken:
        if not charges:
            return Taken((), None)
        args: list[str | bytes | int] = [COUNTER_TTL]
        for c in charges:
            args += [c.cost, c.limit]
        out = await self._call(self._take, [_counter(minute, c.scope) for c in charges], args)
        refused = int(out[0])
        return Taken(tuple(int(u) for u in out[1:]), None if refused < 0 else refused)

    async def rate_settle(self, minute: int, scopes: Sequence[str], delta: int) -> None:
        if scopes and delta:
            await self._call(self._settle, [_counter(minute, s) for s in dict.fromkeys(scopes)], [delta])

    async def rate_used(self, minute: int, scopes: Sequence[str]) -> dict[str, int]:
        if not scopes:
            return {}
        wanted = list(dict.fromkeys(scopes))
        with self._reachable():
            values = await self._redis.mget([_counter(minute, s) for s in wanted])
        return {scope: int(v) for scope, v in zip(wanted, values, strict=True) if v is not None}

    # -- credential cooldowns -----------------------------------------------------------

    async def set_cooldown(self, cooldown: Cooldown) -> None:
        member = _member(cooldown.tenant_id, cooldown.provider, cooldown.name)
        await self._call(self._cool, [_UNTIL, _REASON],
                         [member, _float(cooldown.until), cooldown.reason, _float(time.time()), PRUNE_BATCH])

    async def cooldowns(self, now: float, tenant_id: str | None = None) -> list[Cooldown]:
        out = await self._call(self._running, [_UNTIL, _REASON], [_float(now)])
        found = []
        for i in range(0, len(out), 3):
            tenant, slot, name = orjson.loads(out[i])
            if tenant_id is None or tenant == tenant_id:
                found.append(Cooldown(tenant, slot, name, float(out[i + 1]), bytes(out[i + 2]).decode()))
        return found

    async def prune_cooldowns(self, now: float) -> int:
        """Nothing to do: `set_cooldown` drops finished ones as it goes."""
        return 0
