"""The background writer of usage records, one per worker (started in the lifespan).

Requests hand their `UsageRow` to `submit()` (no await, no I/O). The writer inserts
queued rows in batches, one transaction each, every `interval` seconds or as soon as
a batch is full, through the store's quiet write path (usage is not a change any
cache cares about). Memory stays bounded: when the database is slower than traffic
and the queue is full, the oldest rows are dropped and the drops are counted in a
warning. A batch the database refuses is written again row by row, and only a row it
cannot store is dropped (and logged), so one bad record never stops the recording of
the others. `close()` (lifespan exit, after uvicorn has drained the requests) flushes
what is left, so a clean shutdown loses nothing.

The database away (PostgreSQL restarting, a lock held too long): the rows stay queued, in
order, and the writer retries with a growing pause (the flush interval doubled per failed
attempt, up to `max_backoff`), logging the outage once and its end with the count written.
The bound is the queue's capacity: only when it is full are the oldest rows dropped, and
the count is logged; at shutdown, rows that still cannot be written are counted in a warning.
A failed batch is retried as it was, under its id, before anything newer: when only the
answer to its COMMIT was lost (the connection dropped at that moment), the store finds the
id written and skips it, so no request is counted twice (`usage_batches`, pruned daily).

Retention: rows older than `retention_days` are deleted in small batches about once
an hour (each batch is its own short write, so requests' quota writes get in between).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections import deque

from proxy import metrics
from proxy.store import StoreApi, StoreBusy, StoreUnavailable, UsageRow

log = logging.getLogger("modelport")

PRUNE_BATCH = 2000
_DAY = 86_400.0
BATCH_IDS_KEPT = _DAY  # s: far longer than any retry of a batch


class UsageWriter:
    def __init__(self, store: StoreApi, *, retention_days: int, capacity: int = 20_000, batch: int = 500,
                 interval: float = 1.0, prune_every: float = 3600.0, max_backoff: float = 4.0) -> None:
        self.store = store
        self.retention_days = retention_days
        self.capacity = capacity
        self.batch = batch
        self.interval = interval
        self.prune_every = prune_every
        self.max_backoff = max(max_backoff, interval)
        self._failures = 0          # failed flushes in a row (the backoff's exponent)
        self._outage_since = 0.0    # monotonic time of the first of them
        self._queue: deque[UsageRow] = deque()
        self._retry: tuple[str, list[UsageRow]] | None = None  # the failed batch, its id: written next
        self._dropped = 0
        self._wake = asyncio.Event()
        self._closing = False
        self._task: asyncio.Task[None] | None = None
        self._next_prune = 0.0  # soon after start: a server that restarts often still prunes

    @property
    def pending(self) -> int:
        return len(self._queue) + (len(self._retry[1]) if self._retry else 0)

    def submit(self, row: UsageRow) -> None:
        if self.pending >= self.capacity:
            if self._retry and self._retry[1]:
                self._retry[1].pop(0)  # the oldest; the rest keep the id (written or not, as a whole)
            else:
                self._queue.popleft()
            self._dropped += 1
            metrics.usage_dropped(1)
        self._queue.append(row)
        if len(self._queue) >= self.batch:
            self._wake.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="usage-writer")

    async def close(self) -> None:
        """Stop the loop at its next turn (never mid-write) and flush what is left."""
        self._closing = True
        self._wake.set()
        if self._task is not None:
            await self._task
            self._task = None
        for _ in range(3):  # a locked database may need another try; then give up, loudly
            if await self.flush():
                return
            await asyncio.sleep(0.2)
        log.warning("usage: %d records could not be written at shutdown", self.pending)
        metrics.usage_dropped(self.pending)

    async def _run(self) -> None:
        while not self._closing:
            try:
                await self._prune_if_due()
            except Exception:  # the writer must outlive a bad moment of the database
                log.warning("usage: could not delete old records; will retry", exc_info=True)
            await self._pause()
            await self.flush()  # logs its own failures and keeps the rows

    def retry_delay(self) -> float:
        """The pause before the next flush: the interval, doubled per failed flush in a row."""
        if not self._failures:
            return self.interval
        return min(self.interval * 2.0 ** min(self._failures, 30), self.max_backoff)

    async def _pause(self) -> None:
        """Until the next flush: the delay, cut short by a full batch (unless the database is
        failing: a full queue must not turn the backoff into a busy loop) or by `close()`."""
        deadline = time.monotonic() + self.retry_delay()
        while not self._closing:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), left)
            self._wake.clear()
            if not self._failures:
                return

    async def flush(self) -> bool:
        """Write everything queued; False if the database refused (rows stay queued)."""
        written = 0
        try:
            while self._retry or self._queue:
                if self._retry is None:
                    self._retry = (secrets.token_hex(8),
                                   [self._queue.popleft() for _ in range(min(self.batch, len(self._queue)))])
                batch_id, batch = self._retry
                if not batch:  # every row of a failed batch dropped since (queue full)
                    self._retry = None
                    continue
                try:
                    await self._write(batch_id, batch)
                except Exception as exc:
                    self._failed(exc)
                    return False
                self._retry = None
                written += len(batch)
            self._recovered(written)
            return True
        finally:
            if self._dropped:
                log.warning("usage: dropped %d records (queue of %d full: the database is slower than traffic)",
                            self._dropped, self.capacity)
                self._dropped = 0

    def _failed(self, exc: Exception) -> None:
        self._failures += 1
        if isinstance(exc, (StoreBusy, StoreUnavailable)):  # expected in an outage: one line, no traceback
            if self._failures == 1:
                self._outage_since = time.monotonic()
                log.warning("usage: %s; %d records queued, retrying (every %.0f s at most)",
                            exc.message, self.pending, self.max_backoff)
            return
        if self._failures == 1:
            self._outage_since = time.monotonic()
        log.warning("usage: could not write %d records; will retry", self.pending, exc_info=True)

    def _recovered(self, written: int) -> None:
        if self._failures:
            log.warning("usage: the database is back after %.1f s (%d failed attempts); wrote the %d queued records",
                        time.monotonic() - self._outage_since, self._failures, written)
            self._failures = 0

    async def _write(self, batch_id: str, batch: list[UsageRow]) -> None:
        """One transaction for the batch; if the database refuses it, the rows one by one,
        so that one row it cannot store costs only that row, never every later record.
        Raises (rows kept for a retry) when the database itself fails."""
        try:
            await self.store.insert_usage(batch, batch_id)
            return
        except (StoreBusy, StoreUnavailable):
            raise
        except Exception:
            pass  # perhaps one bad row: find it below (a real database failure raises there too)
        for row, reason in await self.store.insert_usage_each(batch, batch_id):
            metrics.usage_dropped(1)
            # The row's identifiers only: it holds no secret, but nothing else is needed.
            log.error("usage: dropped the record of request %s (tenant %s): the database refused it (%s)",
                      row.request_id, row.tenant_id, reason)

    async def _prune_if_due(self) -> None:
        if self._closing or time.monotonic() < self._next_prune:
            return
        self._next_prune = time.monotonic() + self.prune_every
        await self.store.prune_usage_batches(time.time() - BATCH_IDS_KEPT)
        if self.retention_days > 0:
            await self.prune(time.time() - self.retention_days * _DAY)

    async def prune(self, before: float) -> int:
        deleted = 0
        while True:
            count = await self.store.prune_usage(before, PRUNE_BATCH)
            deleted += count
            if count < PRUNE_BATCH or self._closing:
                break
            await asyncio.sleep(0)
        if deleted:
            log.info("usage: deleted %d rows (records and daily totals) older than the retention period", deleted)
        return deleted
