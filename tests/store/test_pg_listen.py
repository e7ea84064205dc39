"""LISTEN/NOTIFY under the change watcher (proxy/store/pg_listen.py), on a real PostgreSQL:
a committed change wakes the waiter long before its poll would; a rolled-back one does not;
a notification lost while the listening connection was down is made up for by the wake at
the reconnection (the watcher then reads the counter)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from proxy.store.changes import Change, Kind
from proxy.store.pg_listen import APPLICATION_NAME
from proxy.store.postgres import PostgresStore

pytestmark = pytest.mark.usefixtures("pg_server")
LONG = 30.0   # a wait's timeout no test should reach: returning early means it was woken


@pytest.fixture
async def stores(pg_dsn: str) -> AsyncIterator[tuple[PostgresStore, PostgresStore]]:
    listening, writing = PostgresStore(pg_dsn), PostgresStore(pg_dsn)
    await listening.open()
    await writing.open()
    try:
        yield listening, writing
    finally:
        await listening.close()
        await writing.close()


async def woken(store: PostgresStore, timeout: float = LONG) -> bool:
    """Did `wait_for_change` return before its timeout?"""
    start = time.monotonic()
    await store.wait_for_change(timeout)
    return time.monotonic() - start < timeout * 0.9


async def test_a_committed_change_wakes_the_waiter_and_nothing_else_does(
        stores: tuple[PostgresStore, PostgresStore]) -> None:
    listening, writing = stores
    assert await woken(listening)            # the first connection: read the counter at once
    assert not await woken(listening, 0.5)   # then quiet: the wait runs to its timeout

    waiter = asyncio.create_task(woken(listening))
    await asyncio.sleep(0.2)
    await writing.set_meta("listen", "a")
    assert await asyncio.wait_for(waiter, LONG)

    # a write that rolls back notifies nobody; an accounting write (no change) neither
    class Abort(Exception):
        pass

    with pytest.raises(Abort):
        async with writing._write(Change(Kind.META, detail="nothing")) as tx:
            await tx.execute("SELECT 1")
            raise Abort
    assert not await woken(listening, 0.5)


async def test_a_change_committed_while_the_listener_was_cut_is_not_lost(
        stores: tuple[PostgresStore, PostgresStore]) -> None:
    listening, writing = stores
    assert await woken(listening)
    cut = await writing._all("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                             "WHERE application_name = ? AND datname = current_database()", (APPLICATION_NAME,))
    assert len(cut) == 1
    await writing.set_meta("listen", "b")   # notified to nobody: the listener is gone
    # Woken (the counter is read) at the latest when it listens again: by the cut, then by
    # the reconnection; or by the reconnection alone when the cut was seen only on the next wait.
    assert await woken(listening)
    assert [await woken(listening, 0.5) for _ in range(3)][-1] is False  # then quiet
    waiter = asyncio.create_task(woken(listening))
    await asyncio.sleep(0.2)
    await writing.set_meta("listen", "c")
    assert await asyncio.wait_for(waiter, LONG)  # notifications flow again


async def test_the_server_away_means_polling_not_an_error(pg_dsn: str) -> None:
    store = PostgresStore(pg_dsn.replace(pg_dsn.rsplit("/", 1)[1], "no_such_database"))
    start = time.monotonic()
    await store.wait_for_change(0.3)  # cannot listen: sleeps its timeout, raises nothing
    assert time.monotonic() - start >= 0.3
    await store.close()
