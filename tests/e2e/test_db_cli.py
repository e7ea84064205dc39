"""`modelport db copy` end to end (issue 15): a SQLite install made with the CLI and used
by a real gateway, copied into an empty PostgreSQL database without the master key, then
a gateway started on PostgreSQL (same master key) serves the same token with the same
vendor credential, and the usage recorded before the copy is there after it."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from tests.e2e.harness import GatewayProcess
from tests.fakes.fixtures import FakeOpenAI
from tests.pg import PASSWORD

KEY = "sk-test-dbcopy-not-a-real-key-0000000000001"


def _requests(gw: GatewayProcess, tenant: str, at_least: int) -> int:
    """The tenant's request count from `modelport usage`, once it reaches `at_least` (usage is batched)."""
    deadline = time.monotonic() + 10
    while True:
        total = _total(gw, tenant)
        if total >= at_least or time.monotonic() > deadline:
            return total
        time.sleep(0.2)


def _total(gw: GatewayProcess, tenant: str) -> int:
    summary: dict[str, Any] = json.loads(gw.cli("usage", tenant, "--json").out)
    return int(summary["total"]["requests"])


def _chat(gw: GatewayProcess, token: str) -> str:
    reply = gw.client(token).chat.completions.create(model="openai/gpt-4o-mini",
                                                     messages=[{"role": "user", "content": "hi"}])
    return str(reply.choices[0].message.content)


def test_a_copied_install_serves_the_same_credentials(tmp_path: Path, fake_openai: FakeOpenAI, pg_dsn: str) -> None:
    fake_openai.state.api_keys.add(KEY)
    old = GatewayProcess(tmp_path / "sqlite", workers=1)
    old.write_config()
    old.cli("tenants", "create", "acme")
    old.cli("providers", "set", "acme", "openai", f"api_key={KEY}", f"base_url={fake_openai.v1_url}")
    token = old.new_token("acme", "copied")
    with old.running():
        assert _chat(old, token) == "Hello from the fake!"
        assert _requests(old, "acme", 1) == 1
    assert old.cli("db", "status").out.splitlines()[0].startswith("backend:        sqlite ")

    # The copy opens no keystore (tests/store/test_db_copy.py copies an install that has no master key at all).
    result = old.cli("db", "copy", "--to", pg_dsn)
    assert "row counts verified" in result.out and PASSWORD not in result.out + result.err
    counts = dict(line.split() for line in result.out.splitlines()[1:-1])
    assert counts["tenants"] == "1" and counts["tokens"] == "1" and counts["provider_credentials"] == "1"
    assert counts["usage"] == "1" and counts["usage_daily"] == "1"

    new = GatewayProcess(tmp_path / "postgresql", workers=1,
                         settings={"database": pg_dsn, "master_key_file": str(old.data_dir / "master.key")})
    new.write_config()
    status = new.cli("db", "status").out
    assert "backend:        postgresql postgresql://modelport:***@" in status and PASSWORD not in status
    assert "status:         up to date" in status
    assert _total(new, "acme") == 1  # the usage recorded on SQLite
    fake_openai.state.requests.clear()
    with new.running():
        assert _chat(new, token) == "Hello from the fake!"
        sent = fake_openai.state.last_request
        assert sent.path == "/v1/chat/completions" and sent.headers["authorization"] == f"Bearer {KEY}"
        assert _requests(new, "acme", 2) == 2  # a new usage row beside the copied one (ids advanced)
    assert not (new.data_dir / "master.key").exists()  # the copied install used the original key


def test_copy_refuses_a_database_in_use(tmp_path: Path, pg_dsn: str) -> None:
    target = GatewayProcess(tmp_path / "postgresql", settings={"database": pg_dsn})
    target.write_config()
    target.cli("tenants", "create", "already-here")
    source = GatewayProcess(tmp_path / "sqlite")
    source.write_config()
    source.cli("tenants", "create", "acme")
    result = source.cli("db", "copy", "--to", pg_dsn, check=False)
    assert result.code == 1 and result.out == ""
    assert result.err.startswith("modelport: ") and result.err.count("\n") == 1
    assert "already holds modelport data" in result.err and PASSWORD not in result.err
    listed = target.cli("tenants", "list").out
    assert "already-here" in listed and "acme" not in listed


def test_a_migration_that_fails_at_start_is_one_line_and_changes_nothing(tmp_path: Path, pg_dsn: str) -> None:
    """A database that an earlier, foreign program left a conflicting table in: the first
    migration fails; every command says so in one line (no traceback, no password) and
    leaves the database as it was."""
    import asyncio

    import asyncpg

    async def squat() -> None:
        conn = await asyncpg.connect(pg_dsn)
        try:
            await conn.execute("CREATE TABLE tenants (squatter TEXT)")
        finally:
            await conn.close()

    asyncio.run(squat())
    gw = GatewayProcess(tmp_path / "postgresql", settings={"database": pg_dsn})
    gw.write_config()
    result = gw.cli("tenants", "list", check=False)
    assert result.code != 0 and "Traceback" not in result.err and PASSWORD not in result.err
    assert result.err.count("\n") == 1 and "rolled back" in result.err, result.err

    async def tables() -> list[str]:
        conn = await asyncpg.connect(pg_dsn)
        try:
            return [r[0] for r in await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")]
        finally:
            await conn.close()

    assert asyncio.run(tables()) == ["tenants"]  # only the squatter's table: nothing half-made
