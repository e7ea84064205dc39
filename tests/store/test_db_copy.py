"""`modelport db copy`, `db status` and `db migrate` (issue 15) on the store level: every
table of a SQLite install moved verbatim into an empty PostgreSQL database, all or
nothing, row counts verified, identity sequences advanced; a migration that fails
leaves either engine's database as it was. Run in-process through `proxy.cli.main`;
PostgreSQL comes from `tests/pg.py` (skipped, saying why, where it is not installed)."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped]
import pytest

from proxy import dbcopy
from proxy.cli import main as cli_main
from proxy.store import Store, UsageRow, pg_schema
from proxy.store import schema as sqlite_schema
from proxy.store.budgets import BudgetRow
from proxy.store.kept import KeptRow
from proxy.store.postgres import PostgresStore
from tests.pg import PASSWORD

BLOB = bytes(range(256)) + b"\x00\xff\x00"  # every byte value, NULs included: must arrive verbatim


def run(*args: str, config: Path) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli_main(["--config", str(config), *args])
    return code, out.getvalue(), err.getvalue()


def config(tmp_path: Path, database: str | None = None) -> Path:
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / "config.yaml"
    lines = [f"data_dir: {tmp_path / 'data'}"] + ([f"database: '{database}'"] if database else [])
    path.write_text("\n".join(lines) + "\n")
    return path


def pg(dsn: str, query: str) -> list[tuple[Any, ...]]:
    async def go() -> list[tuple[Any, ...]]:
        conn = await asyncpg.connect(dsn)
        try:
            return [tuple(r) for r in await conn.fetch(query)]
        finally:
            await conn.close()
    return asyncio.run(go())


def pg_tables(dsn: str) -> set[str]:
    return {r[0] for r in pg(dsn, "SELECT table_name FROM information_schema.tables "
                                  "WHERE table_schema = current_schema()")}


def sqlite_rows(path: Path, table: str) -> list[tuple[Any, ...]]:
    db = sqlite3.connect(path)
    try:
        return sorted(db.execute(f"SELECT * FROM {table}").fetchall(), key=repr)
    finally:
        db.close()


def populate(path: Path) -> None:
    """A SQLite install with rows in every table (the test checks none is left out)."""
    async def through_the_store() -> None:
        store = Store(path)
        await store.open()
        try:
            await store.create_tenant("tn_1", "acme", BLOB, BLOB[::-1])
            await store.create_tenant("tn_2", "beta", b"pk", b"wk")
            await store.create_token("tk_1", "tn_1", "e2e", "hash-1", "mp-...abcd")
            await store.create_token("tk_2", "tn_1", None, "hash-2", "mp-...efgh", kind="console")
            await store.set_credential("tn_1", "openai", b"ciphertext\x00\x01", name="default", weight=3)
            await store.add_model("tn_1", "hf", "org/model", "llm", b"model-secret\xff")
            await store.set_default("tn_1", "llm", "openai", "gpt-4o-mini")
            await store.set_fallbacks("tn_1", "openai/gpt-4o", ["openai/gpt-4o-mini"])
            await store.set_meta("admin_token_hash", "abc")
            await store.set_budget("tn_1", BudgetRow("tk_1", 10**9, None, allow_unpriced=True))
            await store.keep_answer("tn_1", "responses", KeptRow("resp_1", 1_700_000_000, 2_000_000_000,
                                                                 '{"id": "resp_1"}', "[]", "[]"), 1_700_000_000)
            await store.insert_usage([UsageRow(1_700_000_000.25 + i, f"req_{i}", "tn_1", "tk_1", "/v1/chat/completions",
                                               "openai", "gpt-4o", "llm", "own", bool(i % 2), 200, 10, 5, 15, False,
                                               120.5, None if i % 2 else 30.0, 1, "default",
                                               None if i % 3 else 4_500 * i) for i in range(25)],
                                     "batch-0123")
        finally:
            await store.close()

    asyncio.run(through_the_store())
    db = sqlite3.connect(path)
    with db:
        db.execute("INSERT INTO previous_private_keys VALUES ('tn_1', 'mk_old', ?)", (BLOB,))
        db.execute("INSERT INTO hosted_quota VALUES ('tn_1', 'openai', 2, NULL), ('tn_2', 'openai', 0, 7)")
        db.execute("INSERT INTO console_sessions VALUES ('sess-hash', 'tn_1', 'tk_2', NULL, 'csrf', 1, 2000000000)")
        db.execute("INSERT INTO rate_limits VALUES ('tn_1', '', '', 60, NULL), "
                   "('tn_1', 'tk_1', 'openai/gpt-4o', 5, 100)")
        db.execute("INSERT INTO rate_windows VALUES ('scope-a', 28333333, 4)")
        db.execute("INSERT INTO budget_spend VALUES ('tn_1', 'daily|tk_1', '2026-12-07', 123456789)")
        db.execute("INSERT INTO credential_cooldowns VALUES ('tn_1', 'openai', 'default', 1700000100.5, '429')")
    db.close()
    empty = [t for (t,) in sqlite3.connect(path).execute("SELECT name FROM sqlite_master WHERE type = 'table'")
             if not sqlite_rows(path, t)]
    assert not empty, f"populate() left tables empty: {empty}"


def normalise(rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """SQLite's and PostgreSQL's values side by side (booleans stored as 0/1 in both)."""
    def value(v: Any) -> Any:
        if isinstance(v, (memoryview, bytearray)):
            return bytes(v)
        if isinstance(v, float) and v.is_integer():
            return int(v)
        return v
    return sorted((tuple(value(v) for v in row) for row in rows), key=repr)


@pytest.fixture
def install(tmp_path: Path) -> Path:
    path = tmp_path / "data" / "modelport.db"
    populate(path)
    return path


def test_copy_moves_every_table_verbatim_and_advances_identities(tmp_path: Path, install: Path, pg_dsn: str) -> None:
    code, out, err = run("db", "copy", "--to", pg_dsn, config=config(tmp_path))
    assert code == 0, err
    assert PASSWORD not in out + err
    assert "row counts verified" in out and "usage" in out
    tables = [t for (t,) in sqlite3.connect(install).execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
    assert pg_tables(pg_dsn) == set(tables) | {"schema_version"}
    for table in tables:
        columns = [r[1] for r in sqlite3.connect(install).execute(f"PRAGMA table_info({table})")]
        select = f"SELECT {', '.join(columns)} FROM {table}"
        assert normalise(pg(pg_dsn, select)) == normalise(sqlite3.connect(install).execute(select).fetchall()), table
    assert pg(pg_dsn, "SELECT public_key, wrapped_key FROM tenants JOIN tenant_private_keys ON tenant_id = id "
                      "WHERE id = 'tn_1'") == [(BLOB, BLOB[::-1])]
    assert pg(pg_dsn, "SELECT version FROM schema_version") == [(pg_schema.LATEST,)]

    async def on_postgres() -> None:
        store = PostgresStore(pg_dsn, pool_size=2)
        await store.open()
        try:
            changes = sqlite3.connect(install).execute("SELECT value FROM meta WHERE key = 'changes'").fetchone()[0]
            assert await store.changes() == int(changes)
            # New usage rows take ids after the copied ones (the identity was advanced).
            await store.insert_usage([UsageRow(1_800_000_000.0, "req_new", "tn_1", "tk_1", "/v1/chat/completions",
                                               "openai", "gpt-4o", "llm", "own", False, 200, 1, 1, 2, False, 1.0,
                                               None)])
            await store.create_tenant("tn_3", "gamma", b"pk", b"wk")  # a configuration write after the copy
            assert await store.changes() == int(changes) + 1
        finally:
            await store.close()

    asyncio.run(on_postgres())
    assert pg(pg_dsn, "SELECT id FROM usage WHERE request_id = 'req_new'") == [(26,)]

    status, out, _ = run("db", "status", "--json", config=config(tmp_path / "pg", pg_dsn))
    state = json.loads(out)
    assert status == 0 and state["engine"] == "postgresql" and state["version"] == state["latest"]
    assert PASSWORD not in out and "***" in state["database"]


def test_copy_refuses_a_target_with_modelport_data(tmp_path: Path, install: Path, pg_dsn: str) -> None:
    assert run("db", "copy", "--to", pg_dsn, config=config(tmp_path))[0] == 0
    before = pg(pg_dsn, "SELECT COUNT(*) FROM usage")
    code, out, err = run("db", "copy", "--to", pg_dsn, config=config(tmp_path))
    assert code == 1 and out == ""
    assert err.startswith("modelport: ") and err.count("\n") == 1 and "Traceback" not in err
    assert "already holds modelport data" in err and "tenants: 2" in err and PASSWORD not in err
    assert pg(pg_dsn, "SELECT COUNT(*) FROM usage") == before


def test_a_failed_copy_leaves_the_target_as_it_was(tmp_path: Path, install: Path, pg_dsn: str,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """A row lost on the way: the count check fails loudly and nothing stays, not even the schema."""
    real = dbcopy._sqlite_rows

    def lossy(db: sqlite3.Connection, table: str, columns: list[str]) -> Iterator[tuple[Any, ...]]:
        rows = real(db, table, columns)
        if table == "usage":
            next(rows)
        return rows

    monkeypatch.setattr(dbcopy, "_sqlite_rows", lossy)
    code, out, err = run("db", "copy", "--to", pg_dsn, config=config(tmp_path))
    assert code == 1 and out == "" and "row counts differ" in err and "usage: 25 in SQLite, 24 in PostgreSQL" in err
    assert err.count("\n") == 1 and PASSWORD not in err
    assert pg_tables(pg_dsn) == set()
    monkeypatch.setattr(dbcopy, "_sqlite_rows", real)
    assert run("db", "copy", "--to", pg_dsn, config=config(tmp_path))[0] == 0  # still empty: the copy works


def test_copy_errors_are_one_line_without_the_password(tmp_path: Path, install: Path, pg_server: Any) -> None:
    wrong = f"postgresql://modelport:{PASSWORD}@{pg_server.host}:{pg_server.port}/no_such_database"
    code, _, err = run("db", "copy", "--to", wrong, config=config(tmp_path))
    assert code != 0 and err.count("\n") == 1 and "no_such_database" in err and PASSWORD not in err
    (tmp_path / "dsn").write_text(wrong + "\n")
    code, _, err2 = run("db", "copy", "--to", f"@{tmp_path / 'dsn'}", config=config(tmp_path))  # from a file
    assert code != 0 and err2 == err
    code, _, err = run("db", "copy", "--to", "sqlite:///x", config=config(tmp_path))
    assert code == 1 and "postgresql://" in err
    code, _, err = run("db", "copy", "--to", wrong, config=config(tmp_path / "elsewhere"))
    assert code == 1 and "no SQLite database" in err
    code, _, err = run("db", "copy", "--to", wrong, config=config(tmp_path / "pg", wrong))
    assert code == 1 and "already PostgreSQL" in err and PASSWORD not in err


# -- status and migrate, on both engines -------------------------------------------------------


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, Path]:
    """(engine, config file) for an empty database of either engine."""
    if request.param == "sqlite":
        return "sqlite", config(tmp_path)
    return "postgresql", config(tmp_path, request.getfixturevalue("pg_dsn"))


def _tables(engine: str, cfg: Path) -> set[str]:
    if engine == "sqlite":
        path = cfg.parent / "data" / "modelport.db"
        if not path.exists():
            return set()
        return {t for (t,) in sqlite3.connect(path).execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    dsn = cfg.read_text().split("database: ")[1].strip().strip("'")
    return pg_tables(dsn)


LATEST = len(sqlite_schema.MIGRATIONS)
assert LATEST == pg_schema.LATEST  # one numbering
BROKEN = LATEST + 1


def _break_next_migration(engine: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A migration after the latest that creates a table, then fails."""
    script = "CREATE TABLE added_by_broken (a INTEGER); INSERT INTO no_such_table VALUES (1)"
    if engine == "sqlite":
        broken = (*sqlite_schema.MIGRATIONS, script)
        monkeypatch.setattr(sqlite_schema, "MIGRATIONS", broken)
        monkeypatch.setattr("proxy.store.base.MIGRATIONS", broken)
    else:
        monkeypatch.setattr(pg_schema, "MIGRATIONS", {**pg_schema.MIGRATIONS, BROKEN: script})
        monkeypatch.setattr(pg_schema, "LATEST", BROKEN)


def test_status_and_migrate(database: tuple[str, Path]) -> None:
    engine, cfg = database
    code, out, _ = run("db", "status", config=cfg)
    latest = len(sqlite_schema.MIGRATIONS) if engine == "sqlite" else pg_schema.LATEST
    assert code == 0 and f"backend:        {engine} " in out and "schema version: 0\n" in out
    assert f"latest version: {latest}\n" in out and "pending migrations:" in out
    assert _tables(engine, cfg) <= {"schema_version"}  # status reads, never creates or migrates
    code, out, _ = run("db", "migrate", config=cfg)
    assert code == 0 and f"migrated from schema version 0 to {latest}" in out
    code, out, _ = run("db", "status", "--json", config=cfg)
    state = json.loads(out)
    assert (state["version"], state["latest"], state["pending"]) == (latest, latest, [])
    code, out, _ = run("db", "migrate", config=cfg)
    assert code == 0 and out.strip().endswith(f"schema version {latest}, up to date")
    assert PASSWORD not in out


def test_a_failing_migration_leaves_the_database_as_it_was(database: tuple[str, Path],
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    engine, cfg = database
    assert run("db", "migrate", config=cfg)[0] == 0
    tables = _tables(engine, cfg)
    _break_next_migration(engine, monkeypatch)
    code, out, _ = run("db", "status", "--json", config=cfg)
    assert json.loads(out)["pending"] == [BROKEN]
    code, out, err = run("db", "migrate", config=cfg)
    assert code == 1 and out == "" and err.count("\n") == 1 and "Traceback" not in err
    assert (f"to version {BROKEN} failed, the database is unchanged (still at version {LATEST})" in err
            and "no_such_table" in err)
    assert _tables(engine, cfg) == tables  # added_by_broken rolled back with the rest
    assert json.loads(run("db", "status", "--json", config=cfg)[1])["version"] == LATEST


def test_a_failing_migration_from_empty_leaves_nothing(database: tuple[str, Path],
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """From an empty database: every migration and the broken one are one transaction."""
    engine, cfg = database
    _break_next_migration(engine, monkeypatch)
    code, _, err = run("db", "migrate", config=cfg)
    assert code == 1 and "still at version 0" in err
    assert _tables(engine, cfg) == set()
