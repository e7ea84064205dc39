"""LISTEN/NOTIFY for the change watcher on PostgreSQL: every instance learns of a
configuration write as it commits, not at its next poll.

Each write transaction that logs a change also runs `pg_notify(CHANNEL, '')`
(`postgres.PostgresBase._transaction`); PostgreSQL delivers it to every listener when the
transaction commits, and drops it with a rollback. The notification carries nothing: the
change log and its counter stay the truth (`proxy/store/changes.py`), and a notification
only wakes the watcher to read them, so a burst of writes costs one read.

One connection per worker listens, outside the pool (a pooled connection would be handed
to queries). A notification sent while that connection was down is lost, so whenever it
(re)connects the waiter is woken at once and reads the counter: the counter is the
fallback after a reconnect. While it cannot connect, the watcher polls as on SQLite.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

import asyncpg

from proxy.settings import without_password

log = logging.getLogger("modelport")

CHANNEL = "modelport_changes"
APPLICATION_NAME = "modelport-listen"   # what pg_stat_activity shows for the listening connection
RETRY_AFTER = 1.0                       # s between tries to reconnect while the server is away
CONNECT_TIMEOUT = 2.0                   # s: the watcher waits on a try, so a try stays short


class ChangeListener:
    def __init__(self, dsn: str, connect_timeout: float = CONNECT_TIMEOUT) -> None:
        self._dsn = dsn
        self._connect_timeout = min(connect_timeout, CONNECT_TIMEOUT)
        self._conn: asyncpg.Connection[Any] | None = None
        self._woken = asyncio.Event()
        self._next_try = 0.0  # monotonic: no connection attempt before this
        self._warned = False

    @property
    def listening(self) -> bool:
        return self._conn is not None and not self._conn.is_closed()

    async def wait(self, timeout: float) -> None:
        """Return after a notification, a (re)connection or `timeout` s, whichever is first."""
        deadline = time.monotonic() + timeout
        while (remaining := deadline - time.monotonic()) > 0:
            if not await self._listen():
                await asyncio.sleep(min(remaining, RETRY_AFTER))
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._woken.wait(), remaining)
            woken = self._woken.is_set()
            self._woken.clear()
            # Cleared before the caller reads, so a notification during its read wakes the
            # next wait. Woken by the loss of the connection: listen again first (that wakes
            # it), rather than send the caller to a server that has just gone away.
            if not woken or self.listening:
                return

    async def _listen(self) -> bool:
        if self.listening:
            return True
        self._conn = None
        now = time.monotonic()
        if now < self._next_try:
            return False
        try:
            conn: asyncpg.Connection[Any] = await asyncpg.connect(
                self._dsn, timeout=self._connect_timeout,
                server_settings={"application_name": APPLICATION_NAME})
            await conn.add_listener(CHANNEL, self._notified)
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            self._next_try = now + RETRY_AFTER
            if not self._warned:  # the watcher logs the outage itself; this says what it costs
                self._warned = True
                log.warning("cannot LISTEN for changes (%s); polling the change counter until it can",
                            without_password(str(exc) or type(exc).__name__, self._dsn))
            return False
        conn.add_termination_listener(self._lost)
        self._conn = conn
        self._warned = False
        self._woken.set()  # what was committed while nobody listened: read the counter now
        return True

    def _notified(self, *_: object) -> None:
        self._woken.set()

    def _lost(self, *_: object) -> None:
        self._woken.set()  # the waiter wakes to listen again

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None and not conn.is_closed():
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.close(), 2.0)
