"""The store's primitives (`StoreBase`: what every query mixin uses), the SQLite
connections and the two write paths. The PostgreSQL backend (`postgres.py`) implements
the same primitives, so the same mixins run on both.

Inside a write transaction a mixin talks to a `Tx` (execute, executemany, one, all,
try_execute), not to a driver's connection: `SQLiteTx` wraps aiosqlite's writer
connection, `postgres.PgTx` an asyncpg connection (translating the SQL on the way).

Two aiosqlite connections per process, WAL mode: one for reads, one for writes (the
"one writer connection" of DESIGN §8). Keeping them apart matters: coroutines share a
connection, and a read cursor another coroutine has not finished yet keeps a read
snapshot open on it; a write on that connection after another process committed then
fails at once with "database is locked" (SQLITE_BUSY_SNAPSHOT, no busy wait). The
writer connection never reads between statements, so its writes always wait their turn.
Writes are serialised by one lock per process and by SQLite's writer lock across
processes.

There are two kinds of writes:
- `_write(change)`: configuration (tenants, tokens, credentials, defaults). It bumps
  `meta.changes` and logs what changed in the same transaction (`changes.py`); every
  worker polls that counter and drops only the cache entries the change names.
- `_quiet_write()` / `_quiet_statement()`: accounting (quota counters, usage rows).
  Nothing a worker caches depends on them, and they happen on every hosted call and
  every usage batch: bumping the counter there would empty every worker's caches
  about once a second under load.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from contextlib import (
    AbstractAsyncContextManager,
    asynccontextmanager,
    contextmanager,
    suppress,
)
from pathlib import Path

import aiosqlite

from proxy.store.changes import Change, log_change
from proxy.store.schema import MIGRATIONS
from proxy.store.tx import Row, Tx
from translators.errors import ApiError


class StoreBusy(ApiError):
    """The database stayed locked by another connection (a long write elsewhere, a backup
    tool holding a lock) for longer than the busy timeout. An ApiError, so the API answers
    503 with Retry-After and the CLI prints one line, instead of a 500 or a traceback."""

    def __init__(self) -> None:
        super().__init__(503, "The database is busy (locked by another process); retry shortly.",
                         "server_error", "database_busy", retry_after=1)


class StoreUnavailable(ApiError):
    """The database server cannot be reached right now (PostgreSQL restarting, the network
    down): a 503 with Retry-After for the API. The usage writer keeps its rows queued and
    retries on this, as on `StoreBusy`. `postgres.DatabaseUnavailable` is the one raised."""


def _is_busy(exc: sqlite3.OperationalError) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)  # extended code: BUSY_SNAPSHOT, LOCKED_SHAREDCACHE, ...
    if isinstance(code, int):
        return code & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
    return str(exc).startswith(("database is locked", "database table is locked"))


@contextmanager
def _typed_busy() -> Iterator[None]:
    try:
        yield
    except sqlite3.OperationalError as exc:
        if _is_busy(exc):
            raise StoreBusy() from None
        raise


def _make_private(path: Path) -> None:
    """The database and its -wal/-shm files readable by the owner only. SQLite gives the
    -wal and -shm files the database file's mode, so creating that one 0600 (before SQLite
    creates it with the umask's mode) is enough for a new database; an older one is fixed."""
    if str(path) == ":memory:":
        return
    os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
    for name in (str(path), f"{path}-wal", f"{path}-shm"):
        with suppress(FileNotFoundError, PermissionError):  # not ours to change: its owner decides
            if os.stat(name).st_mode & 0o077:
                os.chmod(name, 0o600)


class StoreBase:
    """The primitives every query mixin uses; `SQLiteBase` and `PostgresBase` implement them."""

    async def open(self) -> None:
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError

    def _write(self, change: Change) -> AbstractAsyncContextManager[Tx]:
        """One write transaction that also logs `change` (and bumps the counter)."""
        raise NotImplementedError

    def _quiet_write(self) -> AbstractAsyncContextManager[Tx]:
        """One write transaction that leaves the change counter alone (accounting)."""
        raise NotImplementedError

    async def _quiet_statement(self, sql: str, params: Iterable[object] = ()) -> int:
        """One statement, atomic on its own; the rows it changed."""
        raise NotImplementedError

    async def _one(self, sql: str, params: Iterable[object] = ()) -> Row | None:
        raise NotImplementedError

    async def _all(self, sql: str, params: Iterable[object] = ()) -> Sequence[Row]:
        raise NotImplementedError

    async def wait_for_change(self, timeout: float) -> None:
        """Return when another process may have logged a change, or after `timeout` s.
        SQLite has no way to be told: the change watcher polls the counter."""
        await asyncio.sleep(timeout)


class SQLiteTx:
    """`Tx` over aiosqlite's writer connection."""

    __slots__ = ("_db",)

    def __init__(self, db: aiosqlite.Connection) -> None:
        self._db = db

    async def execute(self, sql: str, params: Sequence[object] = ()) -> int:
        async with self._db.execute(sql, tuple(params)) as cur:
            return cur.rowcount

    async def executemany(self, sql: str, rows: Iterable[Sequence[object]]) -> None:
        await self._db.executemany(sql, rows)

    async def one(self, sql: str, params: Sequence[object] = ()) -> sqlite3.Row | None:
        async with self._db.execute(sql, tuple(params)) as cur:
            return await cur.fetchone()

    async def all(self, sql: str, params: Sequence[object] = ()) -> list[sqlite3.Row]:
        async with self._db.execute(sql, tuple(params)) as cur:
            return list(await cur.fetchall())

    async def try_execute(self, sql: str, params: Sequence[object]) -> str | None:
        try:
            await self._db.execute(sql, tuple(params))
        except sqlite3.OperationalError:
            raise  # the database, not the row
        except (sqlite3.Error, OverflowError, ValueError, TypeError) as exc:
            return type(exc).__name__
        return None


class SQLiteBase(StoreBase):
    def __init__(self, path: Path, busy_timeout: float = 10.0) -> None:
        self.path = path
        self.busy_timeout_ms = int(busy_timeout * 1000)  # how long to wait for another writer's lock
        self._db: aiosqlite.Connection | None = None        # reads
        self._writer: aiosqlite.Connection | None = None    # writes, under _write_lock
        self._write_lock = asyncio.Lock()

    async def _connect(self, path: Path) -> aiosqlite.Connection:
        db = await aiosqlite.connect(path, isolation_level=None)
        try:
            # busy_timeout first: switching to WAL needs a lock that another process may hold.
            await db.execute(f"PRAGMA busy_timeout={self.busy_timeout_ms}")
            await db.execute("PRAGMA journal_mode=WAL")
            await db.execute("PRAGMA foreign_keys=ON")
            await db.execute("PRAGMA synchronous=NORMAL")
        except BaseException:
            await db.close()
            raise
        return db

    async def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)  # the database holds ciphertexts only, still nobody else's business
        _make_private(self.path)
        try:
            with _typed_busy():
                self._writer = await self._connect(self.path)
                await self._migrate()
                self._db = await self._connect(self.path)
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        for db in (self._db, self._writer):
            if db is not None:
                await db.close()
        self._db = self._writer = None

    @property
    def db(self) -> aiosqlite.Connection:
        if self._db is None:
            raise RuntimeError("store is not open")
        return self._db

    @property
    def writer(self) -> aiosqlite.Connection:
        if self._writer is None:
            raise RuntimeError("store is not open")
        return self._writer

    @asynccontextmanager
    async def _transaction(self, change: Change | None) -> AsyncIterator[Tx]:
        async with self._write_lock:
            db = self.writer
            await db.execute("BEGIN IMMEDIATE")
            try:
                tx = SQLiteTx(db)
                yield tx
                if change is not None:
                    await log_change(tx, change)
                await db.execute("COMMIT")
            except BaseException:
                await db.execute("ROLLBACK")
                raise

    @asynccontextmanager
    async def _write(self, change: Change) -> AsyncIterator[Tx]:
        """One immediate transaction that also logs `change` (and bumps the counter)."""
        with _typed_busy():
            async with self._transaction(change) as db:
                yield db

    @asynccontextmanager
    async def _quiet_write(self) -> AsyncIterator[Tx]:
        """One immediate transaction that leaves the change counter alone (accounting)."""
        with _typed_busy():
            async with self._transaction(None) as db:
                yield db

    async def _quiet_statement(self, sql: str, params: Iterable[object] = ()) -> int:
        """One statement in autocommit mode (atomic on its own), rows changed. No
        BEGIN/COMMIT round trips: this is the hosted-quota hot path."""
        with _typed_busy():
            async with self._write_lock, self.writer.execute(sql, tuple(params)) as cur:
                return cur.rowcount

    async def _migrate(self) -> None:
        db = self.writer
        async with self._write_lock:
            await db.execute("BEGIN IMMEDIATE")
            try:
                version = (await (await db.execute("PRAGMA user_version")).fetchone())[0]  # type: ignore[index]
                for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
                    for statement in filter(str.strip, script.split(";")):
                        await db.execute(statement)
                    await db.execute(f"PRAGMA user_version = {number}")
                await db.execute("COMMIT")
            except BaseException:
                await db.execute("ROLLBACK")
                raise

    async def _one(self, sql: str, params: Iterable[object] = ()) -> aiosqlite.Row | None:
        with _typed_busy():
            async with self.db.execute(sql, tuple(params)) as cur:
                return await cur.fetchone()

    async def _all(self, sql: str, params: Iterable[object] = ()) -> list[aiosqlite.Row]:
        with _typed_busy():
            async with self.db.execute(sql, tuple(params)) as cur:
                return list(await cur.fetchall())
