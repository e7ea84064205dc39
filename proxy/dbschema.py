"""`modelport db status` and `modelport db migrate`: the configured database's schema
version beside the latest one this build knows, and applying what is pending.

`serve` (and every other command) still migrates when it opens the store; `db migrate`
does only that, so an operator can upgrade the schema before starting new instances.
A migration that fails leaves the database as it was: SQLite runs every pending one in
one BEGIN IMMEDIATE transaction, PostgreSQL in one transaction (its DDL is
transactional), and the version is read again afterwards to say so.

`db status` reads without migrating: SQLite's `PRAGMA user_version` (a database that
does not exist yet is version 0 and is not created), PostgreSQL's `schema_version`.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from urllib.parse import quote

import asyncpg

from proxy.bootstrap import make_store
from proxy.settings import Settings, without_password
from proxy.store import pg_schema, schema
from proxy.store.postgres import DatabaseUnavailable
from translators.errors import ApiError


class DatabaseCommandError(Exception):
    """One line for the operator (a DSN's password never in it); the CLI exits non-zero."""


def scrub(text: str, dsn: str | None) -> str:
    """`text` without the DSN's password, on one line."""
    return " ".join(without_password(text, dsn).split())


@dataclass(frozen=True)
class SchemaStatus:
    engine: str        # "sqlite" or "postgresql"
    database: str      # the SQLite file, or the DSN with its password masked
    version: int       # 0: no schema yet
    latest: int        # the latest version this build knows
    exists: bool = True

    @property
    def pending(self) -> list[int]:
        if self.engine == "postgresql":
            return [n for n, _ in pg_schema.pending(self.version)] if self.version <= self.latest else []
        return list(range(self.version + 1, self.latest + 1))

    def as_dict(self) -> dict[str, object]:
        return {"engine": self.engine, "database": self.database, "version": self.version,
                "latest": self.latest, "pending": self.pending, "exists": self.exists}

    def describe(self) -> str:
        if self.version > self.latest:
            state = f"the database is newer than this build (version {self.version} > {self.latest}): upgrade modelport"
        elif self.pending:
            state = (f"pending migrations: {', '.join(map(str, self.pending))} "
                     "(applied by `modelport db migrate` or at the next start)")
        else:
            state = "up to date"
        lines = [f"backend:        {self.engine} {self.database}" + ("" if self.exists else " (not created yet)"),
                 f"schema version: {self.version}",
                 f"latest version: {self.latest}",
                 f"status:         {state}"]
        return "\n".join(lines)


def sqlite_latest() -> int:
    return len(schema.MIGRATIONS)


def _sqlite_status(settings: Settings) -> SchemaStatus:
    path = settings.database_path
    label = str(path)
    if not path.exists():
        return SchemaStatus("sqlite", label, 0, sqlite_latest(), exists=False)
    try:
        # Read-only: status never creates, migrates or locks the database for writing.
        db = sqlite3.connect(f"file:{quote(str(path))}?mode=ro", uri=True, timeout=settings.database_busy_timeout)
        try:
            version = int(db.execute("PRAGMA user_version").fetchone()[0])
        finally:
            db.close()
    except sqlite3.Error as exc:
        raise DatabaseCommandError(f"cannot read the SQLite database {label}: {exc}") from None
    return SchemaStatus("sqlite", label, version, sqlite_latest())


async def postgres_version(conn: asyncpg.Connection[asyncpg.Record]) -> int:
    """The schema version of the database `conn` is on; 0 if none."""
    if await conn.fetchval("SELECT to_regclass('schema_version')") is None:
        return 0
    return int(await conn.fetchval("SELECT COALESCE(MAX(version), 0) FROM schema_version"))


async def connect_postgres(dsn: str, timeout: float = 10.0) -> asyncpg.Connection[asyncpg.Record]:
    """An asyncpg connection, or DatabaseUnavailable naming host:port/database (no password)."""
    try:
        return await asyncpg.connect(dsn, timeout=timeout)
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError, ValueError) as exc:
        raise DatabaseUnavailable(dsn, str(exc) or type(exc).__name__) from None


async def _postgres_status(settings: Settings) -> SchemaStatus:
    dsn = settings.database_url
    assert dsn is not None
    conn = await connect_postgres(dsn)
    try:
        version = await postgres_version(conn)
    except asyncpg.PostgresError as exc:
        raise DatabaseCommandError(scrub(f"cannot read the schema version of {settings.database_label}: {exc}",
                                         dsn)) from None
    finally:
        await conn.close()
    return SchemaStatus("postgresql", settings.database_label, version, pg_schema.LATEST)


async def status(settings: Settings) -> SchemaStatus:
    if settings.database_url:
        return await _postgres_status(settings)
    return _sqlite_status(settings)


async def migrate(settings: Settings) -> tuple[SchemaStatus, SchemaStatus]:
    """(before, after). Opening the store applies every pending migration in one
    transaction; on failure DatabaseCommandError says so and names the version the
    database is still at."""
    before = await status(settings)
    if before.version > before.latest:
        raise DatabaseCommandError(f"{before.database} is at schema version {before.version}, newer than this "
                                   f"build knows ({before.latest}): upgrade modelport")
    if not before.pending:
        return before, before
    store = make_store(settings)
    try:
        await store.open()
    except (DatabaseCommandError, ApiError):  # unreachable, busy: said in one line already
        raise
    except (sqlite3.Error, asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
        # The migration's own error, reported in one line with the version read again.
        try:
            still = (await status(settings)).version
            where = f"the database is unchanged (still at version {still})"
        except (DatabaseCommandError, ApiError, sqlite3.Error, asyncpg.PostgresError, OSError):
            where = "the database should be unchanged (its version could not be read again)"
        reason = str(exc) or type(exc).__name__
        raise DatabaseCommandError(scrub(f"migrating {before.database} to version {before.latest} failed, "
                                         f"{where}: {type(exc).__name__}: {reason}", settings.database_url)) from None
    await store.close()
    return before, await status(settings)
