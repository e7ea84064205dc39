"""`modelport db copy --to postgresql://...`: an existing SQLite install moved into an
empty PostgreSQL database, every table, all or nothing.

- The master key is not needed: wrapped private keys, credential ciphertexts, token
  hashes and the key check move as they are (bytes verbatim), so the copied install
  serves the same credentials with the same master key.
- The source is read in one SQLite read transaction (a consistent snapshot, even while
  a gateway writes usage rows); it is migrated to the latest schema first, as any
  command that opens it would.
- The target is written in one PostgreSQL transaction holding the migrations' and the
  writers' advisory locks: schema (if absent), refusal if any modelport data is there,
  rows in foreign-key order (COPY), identity sequences moved past the copied ids, and
  row counts compared table by table. Any failure rolls all of it back.
- Tables and columns come from the target's catalog and must match the source's
  exactly, so a table added by a later migration is copied too, or the copy refuses.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from graphlib import CycleError, TopologicalSorter
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import asyncpg

from proxy.dbschema import (
    DatabaseCommandError,
    connect_postgres,
    postgres_version,
    scrub,
    sqlite_latest,
)
from proxy.settings import is_postgres_url, masked_dsn
from proxy.store import Store, pg_schema
from proxy.store.postgres import MIGRATE_LOCK, WRITE_LOCK

# The row the PostgreSQL baseline inserts (the change counter): an empty database has it.
_BASELINE_META = {("changes", "0")}


@dataclass
class CopyReport:
    source: str
    target: str
    version: int
    rows: dict[str, int] = field(default_factory=dict)  # table -> rows copied, in copy order


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def check_target(dsn: str) -> None:
    if not is_postgres_url(dsn):
        raise DatabaseCommandError("--to must be a postgresql:// URL (postgresql://user:password@host:5432/database)")
    try:
        parts = urlsplit(dsn)
        _ = parts.port
    except ValueError:
        raise DatabaseCommandError(f"--to is not a valid postgresql:// URL: {masked_dsn(dsn)}") from None
    if not parts.hostname or parts.path in ("", "/"):
        raise DatabaseCommandError("--to needs a host and a database name: "
                                   "postgresql://user:password@host:5432/database")


# -- values: SQLite's loose types to what asyncpg's binary COPY expects ---------------------


def _to_bytes(v: Any) -> Any:
    return v.encode() if isinstance(v, str) else bytes(v)


def _to_int(v: Any) -> Any:
    return int(v) if isinstance(v, float) and v.is_integer() else v


def _to_float(v: Any) -> Any:
    return float(v) if isinstance(v, int) else v


def _to_text(v: Any) -> Any:
    return v if isinstance(v, str) else str(v)


_CONVERT: dict[str, Callable[[Any], Any]] = {
    "bytea": _to_bytes, "bigint": _to_int, "integer": _to_int, "smallint": _to_int,
    "double precision": _to_float, "real": _to_float, "numeric": _to_float, "text": _to_text,
}


def _converted(rows: Iterator[tuple[Any, ...]], types: list[str]) -> Iterator[tuple[Any, ...]]:
    converters = [_CONVERT.get(t, lambda v: v) for t in types]
    for row in rows:
        yield tuple(None if v is None else f(v) for f, v in zip(converters, row, strict=True))


def _sqlite_rows(db: sqlite3.Connection, table: str, columns: list[str]) -> Iterator[tuple[Any, ...]]:
    cur = db.execute(f"SELECT {', '.join(map(_q, columns))} FROM {_q(table)}")
    while batch := cur.fetchmany(5000):
        yield from batch


# -- the source -------------------------------------------------------------------------------


async def _migrate_source(path: Path, busy_timeout: float) -> None:
    if not path.is_file():
        raise DatabaseCommandError(f"no SQLite database at {path}: nothing to copy")
    db = sqlite3.connect(f"file:{quote(str(path))}?mode=ro", uri=True, timeout=busy_timeout)
    try:
        version = int(db.execute("PRAGMA user_version").fetchone()[0])
    except sqlite3.Error as exc:
        raise DatabaseCommandError(f"cannot read the SQLite database {path}: {exc}") from None
    finally:
        db.close()
    if version > sqlite_latest():
        raise DatabaseCommandError(f"{path} is at schema version {version}, newer than this build knows "
                                   f"({sqlite_latest()}): copy it with a newer modelport")
    if version < sqlite_latest():
        store = Store(path, busy_timeout=busy_timeout)  # opening migrates, as every command does
        await store.open()
        await store.close()


def _source_tables(db: sqlite3.Connection) -> dict[str, list[str]]:
    names = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table' "
                                      "AND name NOT LIKE 'sqlite_%' ORDER BY name")]
    return {name: [r[1] for r in db.execute(f"PRAGMA table_info({_q(name)})")] for name in names}


# -- the target -------------------------------------------------------------------------------


async def _target_schema(conn: asyncpg.Connection[asyncpg.Record]) -> dict[str, list[tuple[str, str]]]:
    """table -> [(column, data type)] in column order, schema_version left out."""
    tables: dict[str, list[tuple[str, str]]] = {}
    for r in await conn.fetch("SELECT c.table_name, c.column_name, c.data_type FROM information_schema.columns c "
                              "JOIN information_schema.tables t ON t.table_schema = c.table_schema "
                              "AND t.table_name = c.table_name AND t.table_type = 'BASE TABLE' "
                              "WHERE c.table_schema = current_schema() AND c.table_name <> 'schema_version' "
                              "ORDER BY c.table_name, c.ordinal_position"):
        tables.setdefault(r[0], []).append((r[1], r[2]))
    return tables


async def _fk_order(conn: asyncpg.Connection[asyncpg.Record], tables: list[str]) -> list[str]:
    """The tables, each after every table its foreign keys name."""
    graph: dict[str, set[str]] = {t: set() for t in sorted(tables)}
    for r in await conn.fetch("SELECT src.relname, dst.relname FROM pg_constraint c "
                              "JOIN pg_class src ON src.oid = c.conrelid JOIN pg_class dst ON dst.oid = c.confrelid "
                              "WHERE c.contype = 'f' AND c.connamespace = current_schema()::regnamespace"):
        if r[0] in graph and r[1] in graph and r[0] != r[1]:
            graph[r[0]].add(r[1])
    sorter = TopologicalSorter(graph)
    try:
        sorter.prepare()
    except CycleError as exc:
        raise DatabaseCommandError(f"the target's foreign keys form a cycle: {exc.args[1]}") from None
    order: list[str] = []
    while sorter.is_active():  # alphabetical among the ready ones: the same order every time
        ready = sorted(sorter.get_ready())
        order += ready
        sorter.done(*ready)
    return order


async def _ensure_schema(conn: asyncpg.Connection[asyncpg.Record], label: str) -> int:
    """The migrations `PostgresStore` applies at start, here inside the copy's transaction
    (so a failed copy leaves no schema behind either)."""
    await conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
    version = await postgres_version(conn)
    if version > pg_schema.LATEST:
        raise DatabaseCommandError(f"{label} is at schema version {version}, newer than this build knows "
                                   f"({pg_schema.LATEST}): it is not an empty modelport database")
    steps = pg_schema.pending(version)
    for _number, script in steps:
        await conn.execute(script)
    if steps:
        await conn.execute("DELETE FROM schema_version")
        await conn.execute("INSERT INTO schema_version (version) VALUES ($1)", steps[-1][0])
        version = steps[-1][0]
    return version


async def _refuse_unless_empty(conn: asyncpg.Connection[asyncpg.Record], tables: list[str], label: str) -> None:
    held: list[str] = []
    for table in tables:
        if table == "meta":
            rows = {(r[0], r[1]) for r in await conn.fetch("SELECT key, value FROM meta")}
            if rows - _BASELINE_META:
                held.append(f"meta: {len(rows - _BASELINE_META)}")
        else:
            count = int(await conn.fetchval(f"SELECT COUNT(*) FROM {_q(table)}"))
            if count:
                held.append(f"{table}: {count}")
    if held:
        held.sort(key=lambda h: not h.startswith("tenants:"))  # the telling one first, whatever else sorts before
        shown = ", ".join(held[:4]) + (f" and {len(held) - 4} more tables" if len(held) > 4 else "")
        raise DatabaseCommandError(f"{label} already holds modelport data (rows in {shown}); "
                                   "db copy only fills an empty database: nothing was copied")


async def _advance_sequences(conn: asyncpg.Connection[asyncpg.Record]) -> None:
    """Identity and serial columns: the next generated id after the largest copied one."""
    for r in await conn.fetch("SELECT table_name, column_name FROM information_schema.columns "
                              "WHERE table_schema = current_schema() "
                              "AND (is_identity = 'YES' OR column_default LIKE 'nextval(%')"):
        table, column = str(r[0]), str(r[1])
        await conn.execute(f"SELECT setval(pg_get_serial_sequence($1, $2), MAX({_q(column)})) FROM {_q(table)} "
                           f"HAVING MAX({_q(column)}) IS NOT NULL", _q(table), column)


# -- the copy ---------------------------------------------------------------------------------


async def copy_to_postgres(path: Path, dsn: str, *, busy_timeout: float = 10.0) -> CopyReport:
    """Copy the SQLite database at `path` into the (empty) PostgreSQL database `dsn`."""
    check_target(dsn)
    label = masked_dsn(dsn)
    await _migrate_source(path, busy_timeout)
    src = sqlite3.connect(f"file:{quote(str(path))}?mode=ro", uri=True, timeout=busy_timeout, isolation_level=None)
    try:
        src.execute("BEGIN")  # one read snapshot for every table and count (WAL: writers go on)
        source = _source_tables(src)
        version = int(src.execute("PRAGMA user_version").fetchone()[0])
        conn = await connect_postgres(dsn)
        try:
            report = CopyReport(str(path), label, version)
            async with conn.transaction():
                # A gateway starting on the target meanwhile waits for the copy, then sees it whole.
                await conn.execute("SELECT pg_advisory_xact_lock($1), pg_advisory_xact_lock($2)",
                                   MIGRATE_LOCK, WRITE_LOCK)
                target_version = await _ensure_schema(conn, label)
                if target_version != version:
                    raise DatabaseCommandError(f"schema versions differ: {path} is at {version}, {label} at "
                                               f"{target_version}")
                target = await _target_schema(conn)
                if set(target) != set(source):
                    only_src, only_dst = sorted(set(source) - set(target)), sorted(set(target) - set(source))
                    raise DatabaseCommandError(f"the databases' tables differ (only in SQLite: {only_src or 'none'}; "
                                               f"only in PostgreSQL: {only_dst or 'none'})")
                order = await _fk_order(conn, list(target))
                await _refuse_unless_empty(conn, order, label)
                await conn.execute("DELETE FROM meta")  # the baseline's counter row: the source's replaces it
                for table in order:
                    columns = [c for c, _ in target[table]]
                    if set(columns) != set(source[table]):
                        raise DatabaseCommandError(
                            f"table {table}'s columns differ (SQLite: {', '.join(source[table])}; "
                            f"PostgreSQL: {', '.join(columns)})")
                    types = [t for _, t in target[table]]
                    rows = _converted(_sqlite_rows(src, table, columns), types)
                    await conn.copy_records_to_table(table, records=rows, columns=columns)
                await _advance_sequences(conn)
                differ: list[str] = []
                for table in order:
                    expected = int(src.execute(f"SELECT COUNT(*) FROM {_q(table)}").fetchone()[0])
                    copied = int(await conn.fetchval(f"SELECT COUNT(*) FROM {_q(table)}"))
                    report.rows[table] = copied
                    if copied != expected:
                        differ.append(f"{table}: {expected} in SQLite, {copied} in PostgreSQL")
                if differ:
                    raise DatabaseCommandError(f"row counts differ after the copy ({'; '.join(differ)}): "
                                               "rolled back, nothing was copied")
        except DatabaseCommandError as exc:
            raise DatabaseCommandError(scrub(str(exc), dsn)) from None
        except (asyncpg.PostgresError, asyncpg.InterfaceError, sqlite3.Error, OSError, ValueError,
                TypeError, OverflowError) as exc:
            raise DatabaseCommandError(scrub(f"the copy failed and was rolled back ({label} is unchanged): "
                                             f"{type(exc).__name__}: {exc}", dsn)) from None
        finally:
            await conn.close()
    finally:
        src.close()
    return report


def describe(report: CopyReport) -> str:
    width = max(len(t) for t in report.rows) if report.rows else 0
    lines = [f"copied {report.source} (schema version {report.version}) to {report.target}, row counts verified:"]
    lines += [f"  {table.ljust(width)}  {n}" for table, n in report.rows.items()]
    lines.append("start the gateway with `database:` (or MODELPORT_DATABASE_URL) set to it and the same master key")
    return "\n".join(lines)
