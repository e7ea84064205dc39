"""Tenant key pairs generated ahead of need, so creating a tenant does not wait for RSA.

A pair in the pool is not yet any tenant's: it is wrapped under the master key (and
bound to a tenant id) only when taken, so a master key rotation meanwhile changes nothing.
At most one asyncio task refills it, one pair at a time: with a single helper process,
a burst of refills would queue ahead of credential decryptions that requests wait on.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import Protocol

from keystore.crypto import KeyPair, KeystoreError

__all__ = ["KeyPairPool"]

log = logging.getLogger("modelport")


class KeyGenerator(Protocol):
    async def generate_key_pair(self) -> KeyPair: ...


class KeyPairPool:
    """Up to `size` ready key pairs (0: none; every take generates one)."""

    def __init__(self, runner: KeyGenerator, size: int) -> None:
        if size < 0:
            raise ValueError("the key pair pool size cannot be negative")
        self._runner = runner
        self._size = size
        self._ready: deque[KeyPair] = deque()
        self._filling: asyncio.Task[None] | None = None
        self._started = False
        self._closed = False
        self.hits = 0    # takes served from the pool
        self.misses = 0  # takes that had to generate a pair on the spot

    @property
    def size(self) -> int:
        return self._size

    @property
    def ready(self) -> int:
        return len(self._ready)

    def start(self) -> None:
        """Begin filling (needs a running event loop). Until then, or the first `take`,
        nothing is generated ahead: a worker (or a test's server) that never creates a
        tenant never pays for pairs it will not use."""
        self._started = True
        self._refill()

    async def take(self) -> KeyPair:
        if self._closed:
            raise RuntimeError("the key pair pool is closed")
        if self._ready:
            pair = self._ready.popleft()
            self.hits += 1
        else:
            # Not waiting for a refill in progress: it may be the one that failed.
            self.misses += 1
            pair = await self._runner.generate_key_pair()
        self._started = True  # this worker creates tenants: keep pairs ready from now on
        self._refill()
        return pair

    def _refill(self) -> None:
        if not self._started or self._closed or len(self._ready) >= self._size:
            return
        if self._filling is None or self._filling.done():
            self._filling = asyncio.get_running_loop().create_task(self._fill(), name="key pair pool refill")

    async def _fill(self) -> None:
        while not self._closed and len(self._ready) < self._size:
            try:
                pair = await self._runner.generate_key_pair()
            except Exception as exc:  # noqa: BLE001 - a background task must not die unheard
                # Stop rather than spin on a persistent failure; the next take tries again.
                # KeystoreError messages carry no secrets by contract; others are named only.
                reason = str(exc) if isinstance(exc, KeystoreError) else type(exc).__name__
                log.warning("could not pre-generate a tenant key pair (%s); will retry at the next tenant creation",
                            reason)
                return
            if not self._closed:
                self._ready.append(pair)

    async def close(self) -> None:
        """Stop refilling and drop the ready pairs."""
        self._closed = True
        task, self._filling = self._filling, None
        if task is not None:
            task.cancel()
            # wait(), not `await task`: the refill's CancelledError is expected, while a
            # cancellation of close() itself must still propagate.
            await asyncio.wait({task})
        self._ready.clear()
