"""Token-exchange auth as a composable step: the one cache of credentials' derived tokens.

Some vendors take a token derived from the key instead of the key: ERNIE's OAuth access
token (fetched from the vendor, valid 30 days), Zhipu's JWT (minted here, valid minutes).
Either way the token is reused until shortly before it expires, per credential, and the
cache is bounded. Keys are stored hashed: the cache never holds a key, only tokens.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable

__all__ = ["Fetch", "Mint", "TokenCache", "refresh_margin"]

# -> (token, seconds it may be handed out): the caller decides how early to refresh.
Fetch = Callable[[], Awaitable[tuple[str, float]]]
Mint = Callable[[float], tuple[str, float]]  # (now) -> (token, seconds it may be handed out)


def refresh_margin(expires_in: float, most: float = 3600.0) -> float:
    """Seconds of a token's life to give up so that it is never sent about to expire:
    a tenth of it, at most `most`."""
    return min(most, expires_in / 10)


def _key(parts: tuple[str, ...]) -> bytes:
    return hashlib.sha256("\0".join(parts).encode()).digest()


class TokenCache:
    """Tokens per credential. `get` fetches single-flight: while one fetch for a credential
    runs, every other caller of it awaits that fetch instead of starting its own. `mint`
    is for tokens made locally (no I/O, nothing to wait for)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic, max_entries: int = 4096) -> None:
        self.clock = clock
        self.max_entries = max_entries
        self.minted = 0  # tokens made or fetched (tests and the benchmark read it)
        self._tokens: OrderedDict[bytes, tuple[str, float]] = OrderedDict()
        self._pending: dict[bytes, asyncio.Future[str]] = {}

    def _cached(self, key: bytes, stale: str | None = None) -> str | None:
        hit = self._tokens.get(key)
        if hit is None or hit[0] == stale or self.clock() >= hit[1]:
            return None
        self._tokens.move_to_end(key)
        return hit[0]

    def _store(self, key: bytes, token: str, lifetime: float) -> str:
        self.minted += 1
        self._tokens[key] = (token, self.clock() + lifetime)
        self._tokens.move_to_end(key)
        while len(self._tokens) > self.max_entries:  # credentials that went out of use go first
            self._tokens.popitem(last=False)
        return token

    def mint(self, parts: tuple[str, ...], make: Mint) -> str:
        key = _key(parts)
        token = self._cached(key)
        if token is None:
            token, lifetime = make(self.clock())
            self._store(key, token, lifetime)
        return token

    async def get(self, parts: tuple[str, ...], fetch: Fetch, stale: str | None = None) -> str:
        """The cached token, or a fresh one if none is cached, it is near expiry, or it is
        `stale` (the vendor just refused it; a token someone else refreshed meanwhile is used)."""
        key = _key(parts)
        token = self._cached(key, stale)
        if token is not None:
            return token
        pending = self._pending.get(key)
        if pending is None or pending.get_loop() is not asyncio.get_running_loop():
            pending = asyncio.ensure_future(self._refresh(key, fetch))
            self._pending[key] = pending
        # shield: a caller that goes away (client disconnect) must not cancel the others' fetch
        return await asyncio.shield(pending)

    async def _refresh(self, key: bytes, fetch: Fetch) -> str:
        try:
            token, lifetime = await fetch()
            return self._store(key, token, lifetime)
        finally:
            if self._pending.get(key) is asyncio.current_task():
                del self._pending[key]

    def clear(self) -> None:
        self._tokens.clear()
