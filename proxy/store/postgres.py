"""The PostgreSQL store (asyncpg, one connection pool per process): the same query
mixins as SQLite (`sqlite.StoreApi`) over the same primitives, with the SQL translated
in one place (`pg_dialect.py`).

Writes. SQLite has one writer at a time (BEGIN IMMEDIATE), and the queries rely on it:
the change counter's numbers follow commit order with no gaps, a rotation re-wraps every
key while no tenant can be created, `rate_take` reads and adds with nobody in between,
and a usage batch rolls up "the ids above the largest before it". Here every write
transaction (`_write` and `_quiet_write`) takes one transaction-level advisory lock
first, so transactions that write serialise across every worker of every instance on
the database exactly as they do on SQLite, and the lock goes with the commit or the
rollback (a dropped connection included). Single statements (`_quiet_statement`: the
hosted-quota reservation, refunds, cooldowns, pruning) take no lock: each is atomic on
its own, and the reservation stays one conditional UPDATE, which PostgreSQL re-checks
against the row's latest version after waiting for its row lock, so concurrent
reservations never overshoot.

Reads go to any pooled connection (READ COMMITTED), like SQLite's reader connection.

PostgreSQL restarted or unreachable while serving: every primitive turns a lost or refused
connection into `DatabaseUnavailable` (a 503 `database_unavailable`, no traceback). The
pool drops a connection the server closed and opens a fresh one at the next acquire, so
the first request after the server is back works; requests that need only what a worker
caches never get here.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from urllib.parse import urlsplit

import asyncpg

from proxy.settings import masked_dsn, without_password
from proxy.store import pg_schema
from proxy.store.base import StoreBase, StoreUnavailable
from proxy.store.changes import Change, log_change
from proxy.store.pg_dialect import to_postgres
from proxy.store.pg_listen import CHANNEL, ChangeListener
from proxy.store.sqlite import StoreApi
from proxy.store.tx import Row, Tx

# pg_advisory_xact_lock keys ("modelport" in letters, and the migrations' one beside it).
WRITE_LOCK = 0x6D6F64656C706F
MIGRATE_LOCK = WRITE_LOCK + 1


def describe(dsn: str) -> str:
    """host:port/database of a DSN (no user, no password)."""
    parts = urlsplit(dsn)
    try:
        port = parts.port or 5432
    except ValueError:
        port = 5432
    return f"{parts.hostname or 'localhost'}:{port}{parts.path or ''}"


class DatabaseUnavailable(StoreUnavailable):
    """PostgreSQL could not be reached or refused us; the message names host:port, never the password."""

    def __init__(self, dsn: str, reason: str) -> None:
        super().__init__(503, f"cannot use the PostgreSQL database at {describe(dsn)}: "
                              f"{without_password(reason, dsn)}",
                         "server_error", "database_unavailable", retry_after=1)


# The server went away or refused a new connection: shut down or restarting (57P01-57P03),
# the connection lost or refused (class 08, OSError), connecting timed out.
_CONNECTION_LOST = (OSError, TimeoutError, asyncio.TimeoutError, asyncpg.PostgresConnectionError,
                    asyncpg.AdminShutdownError, asyncpg.CrashShutdownError, asyncpg.CannotConnectNowError)


def _is_connection_lost(exc: BaseException) -> bool:
    if isinstance(exc, _CONNECTION_LOST):
        return True
    # asyncpg's InterfaceError is also its "you used the API wrongly": only a closed connection counts.
    return isinstance(exc, asyncpg.InterfaceError) and "closed" in str(exc)


class _ConnectionLostInOneLine(logging.Filter):
    """asyncpg's pool reconnects in the background while the server is away and logs each
    failed try with a traceback: one line (the reason) is what an operator needs there."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if exc is not None and _is_connection_lost(exc):
            record.msg, record.args = "%s (%s)", (record.getMessage(), str(exc) or type(exc).__name__)
            record.exc_info, record.exc_text = None, None
        return True


logging.getLogger("asyncpg.pool").addFilter(_ConnectionLostInOneLine())


def _rowcount(status: str) -> int:
    """Rows changed, from a command status ("UPDATE 3", "INSERT 0 1", "DELETE 0")."""
    last = status.rpartition(" ")[2]
    return int(last) if last.isdigit() else 0


class PgTx:
    """`Tx` over an asyncpg connection inside a transaction."""

    __slots__ = ("_conn",)

    def __init__(self, conn: asyncpg.pool.PoolConnectionProxy[asyncpg.Record]) -> None:
        self._conn = conn

    async def execute(self, sql: str, params: Sequence[object] = ()) -> int:
        return _rowcount(await self._conn.execute(to_postgres(sql), *params))

    async def executemany(self, sql: str, rows: Iterable[Sequence[object]]) -> None:
        await self._conn.executemany(to_postgres(sql), rows)

    async def one(self, sql: str, params: Sequence[object] = ()) -> Row | None:
        return await self._conn.fetchrow(to_postgres(sql), *params)

    async def all(self, sql: str, params: Sequence[object] = ()) -> Sequence[Row]:
        return await self._conn.fetch(to_postgres(sql), *params)

    async def try_execute(self, sql: str, params: Sequence[object]) -> str | None:
        try:
            async with self._conn.transaction():  # a savepoint: a refused row leaves the transaction usable
                await self._conn.execute(to_postgres(sql), *params)
        except (asyncpg.DataError, asyncpg.IntegrityConstraintViolationError,
                OverflowError, ValueError, TypeError) as exc:  # asyncpg's own DataError (a value it cannot encode) is a ValueError
            return type(exc).__name__
        return None


class PostgresBase(StoreBase):
    def __init__(self, dsn: str, pool_size: int = 10, connect_timeout: float = 10.0) -> None:
        self.dsn = dsn
        self.pool_size = pool_size
        self.connect_timeout = connect_timeout
        self._pool: asyncpg.Pool[asyncpg.Record] | None = None
        self._listener = ChangeListener(dsn, connect_timeout)  # connects at the first wait_for_change

    def __repr__(self) -> str:
        return f"{type(self).__name__}({masked_dsn(self.dsn)!r})"

    async def open(self) -> None:
        try:
            self._pool = await asyncpg.create_pool(self.dsn, min_size=1, max_size=self.pool_size,
                                                   timeout=self.connect_timeout)
        except (OSError, TimeoutError, asyncio.TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError,
                ValueError) as exc:
            raise DatabaseUnavailable(self.dsn, str(exc) or type(exc).__name__) from None
        try:
            await self._migrate()
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        await self._listener.close()
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()

    @property
    def pool(self) -> asyncpg.Pool[asyncpg.Record]:
        if self._pool is None:
            raise RuntimeError("store is not open")
        return self._pool

    @contextmanager
    def _reachable(self) -> Iterator[None]:
        """A lost or refused connection as `DatabaseUnavailable`; anything else as it is."""
        try:
            yield
        except Exception as exc:
            if isinstance(exc, DatabaseUnavailable) or not _is_connection_lost(exc):
                raise
            raise DatabaseUnavailable(self.dsn, str(exc) or type(exc).__name__) from exc

    @asynccontextmanager
    async def _transaction(self, change: Change | None) -> AsyncIterator[Tx]:
        with self._reachable():
            async with self.pool.acquire() as conn, conn.transaction():
                await conn.execute("SELECT pg_advisory_xact_lock($1)", WRITE_LOCK)
                tx = PgTx(conn)
                yield tx
                if change is not None:
                    await log_change(tx, change)
                    await conn.execute("SELECT pg_notify($1, '')", CHANNEL)  # delivered at commit

    @asynccontextmanager
    async def _write(self, change: Change) -> AsyncIterator[Tx]:
        async with self._transaction(change) as tx:
            yield tx

    @asynccontextmanager
    async def _quiet_write(self) -> AsyncIterator[Tx]:
        async with self._transaction(None) as tx:
            yield tx

    async def _quiet_statement(self, sql: str, params: Iterable[object] = ()) -> int:
        with self._reachable():
            return _rowcount(await self.pool.execute(to_postgres(sql), *params))

    async def _one(self, sql: str, params: Iterable[object] = ()) -> Row | None:
        with self._reachable():
            return await self.pool.fetchrow(to_postgres(sql), *params)

    async def _all(self, sql: str, params: Iterable[object] = ()) -> Sequence[Row]:
        with self._reachable():
            return await self.pool.fetch(to_postgres(sql), *params)

    async def wait_for_change(self, timeout: float) -> None:
        await self._listener.wait(timeout)

    async def schema_version(self) -> int:
        row = await self._one("SELECT version FROM schema_version")
        return 0 if row is None else int(row[0])

    async def _migrate(self) -> None:
        """Every pending migration in one transaction (PostgreSQL's DDL is transactional:
        one that fails leaves the database as it was), one instance at a time."""
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", MIGRATE_LOCK)
            await conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            version = int(await conn.fetchval("SELECT COALESCE(MAX(version), 0) FROM schema_version"))
            steps = pg_schema.pending(version)
            for _number, script in steps:
                await conn.execute(script)  # no parameters: the simple protocol, several statements
            if steps:
                await conn.execute("DELETE FROM schema_version")
                await conn.execute("INSERT INTO schema_version (version) VALUES ($1)", steps[-1][0])


class PostgresStore(StoreApi, PostgresBase):
    """The PostgreSQL store: several instances on one database."""
