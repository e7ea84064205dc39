"""The store's contract, run against both backends: SQLite (a file) and PostgreSQL (a
fresh database on the throwaway cluster of `tests/pg.py`; skipped, saying why, where
PostgreSQL is not installed). The same `StoreApi` queries run on each; what differs is
the backend's primitives, so every test here is one behaviour both must show alike."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from proxy.store import Store, StoreApi, UsageRow
from proxy.store import schema as sqlite_schema
from proxy.store.budgets import BudgetRow, SpendCharge
from proxy.store.changes import Kind
from proxy.store.credentials import Cooldown, CredentialRow
from proxy.store.kept import KeptRow
from proxy.store.limits import Charge, LimitRow

Opener = Callable[[], Awaitable[StoreApi]]


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A SQLite file's path or a fresh PostgreSQL database's DSN (a sync fixture: the
    cluster's fixtures run their own event loop)."""
    if request.param == "sqlite":
        return str(tmp_path / "modelport.db")
    dsn: str = request.getfixturevalue("pg_dsn")
    return dsn


@pytest.fixture
async def opener(database: str) -> AsyncIterator[Opener]:
    """Opens another store on the same database each call (another worker or instance)."""
    def make() -> StoreApi:
        if database.startswith("postgresql://"):
            from proxy.store.postgres import PostgresStore

            return PostgresStore(database, pool_size=4)
        return Store(Path(database))
    opened: list[StoreApi] = []

    async def open_one() -> StoreApi:
        s = make()
        await s.open()
        opened.append(s)
        return s

    yield open_one
    for s in opened:
        await s.close()


@pytest.fixture
async def store(opener: Opener) -> StoreApi:
    s = await opener()
    await s.create_tenant("tn_1", "acme", b"public\x00\xff", b"wrapped\x00")
    await s.create_tenant("tn_2", "beta", b"public", b"wrapped")
    return s


def usage(i: int, created_at: float, tenant: str = "tn_1", **kw: object) -> UsageRow:
    row = UsageRow(created_at, f"req_{i}", tenant, "tk_1", "/v1/chat/completions", "openai", "gpt-4o", "llm",
                   "own", True, 200, 10, 5, 15, False, 120.5, 30.0)
    return row._replace(**kw)  # type: ignore[arg-type]


async def test_migrations_version_and_idempotent_reopen(opener: Opener) -> None:
    first = await opener()
    second = await opener()  # migrating an up-to-date database changes nothing
    assert await first.changes() == await second.changes() == 0
    if isinstance(first, Store):
        row = await first._one("PRAGMA user_version")
        assert row is not None and row[0] == len(sqlite_schema.MIGRATIONS)
    else:
        from proxy.store import pg_schema
        from proxy.store.postgres import PostgresStore

        assert isinstance(first, PostgresStore)
        assert await first.schema_version() == pg_schema.LATEST == len(sqlite_schema.MIGRATIONS)


async def test_tenants(store: StoreApi) -> None:
    acme = await store.find_tenant("acme")
    assert acme is not None and acme.id == "tn_1" and acme.public_key == b"public\x00\xff"
    assert await store.find_tenant("tn_2") == await store.find_tenant("beta")
    assert [t.name for t in await store.list_tenants()] == ["acme", "beta"]
    assert await store.wrapped_private_key("tn_1") == b"wrapped\x00"
    assert await store.delete_tenant("tn_2") and not await store.delete_tenant("tn_2")
    assert await store.find_tenant("beta") is None


async def test_tokens_create_find_revoke(store: StoreApi) -> None:
    await store.create_token("tk_1", "tn_1", "ci", "hash-1", "mp-…abcd")
    await store.create_token("tk_2", "tn_1", None, "hash-2", "mp-…efgh", kind="console")
    assert await store.find_token("hash-1") == ("tk_1", "tn_1", "hash-1")
    assert await store.find_token("hash-2") is None  # a console token is no API token
    assert await store.find_token("hash-2", "console") == ("tk_2", "tn_1", "hash-2")
    revoked = await store.revoke_token("tk_1")
    assert revoked is not None and revoked.revoked_at is not None
    assert await store.find_token("hash-1") is None
    assert await store.revoke_token("tk_none") is None
    assert [t.id for t in await store.list_tokens("tn_1")] == ["tk_1", "tk_2"]


async def test_credentials_several_named(store: StoreApi) -> None:
    await store.set_credential("tn_1", "openai", b"\x01secret")
    await store.set_credential("tn_1", "openai", b"\x02other", name="backup", weight=5)
    await store.set_credential("tn_1", "anthropic", b"\x03")
    creds = await store.credentials("tn_1")
    assert creds["openai"] == (CredentialRow("default", 1, b"\x01secret", None), CredentialRow("backup", 5, b"\x02other", None))
    assert await store.mark_invalid("tn_1", "openai", "backup", b"\x02other")
    assert not await store.mark_invalid("tn_1", "openai", "backup", b"\x02other")  # marked already: no write
    assert (await store.credentials("tn_1"))["openai"][1].invalid_at is not None
    await store.set_credential("tn_1", "openai", b"\x04new", name="backup", weight=2)  # replaced: valid again
    assert (await store.credentials("tn_1"))["openai"][1] == CredentialRow("backup", 2, b"\x04new", None)
    assert await store.remove_credential("tn_1", "openai", "backup")
    assert await store.remove_credential("tn_1", "anthropic")
    assert list(await store.credentials("tn_1")) == ["openai"]


async def test_models_defaults_fallbacks(store: StoreApi) -> None:
    await store.add_model("tn_1", "openai", "gpt-4o", "llm", b"s1")
    await store.add_model("tn_1", "openai", "gpt-4o", "llm", b"s2", name="b", weight=3)
    models = await store.models("tn_1")
    assert [(m.name, m.weight, m.secret) for m in models] == [("default", 1, b"s1"), ("b", 3, b"s2")]
    assert await store.mark_model_invalid("tn_1", "openai", "gpt-4o", "b", b"s2")
    assert (await store.models("tn_1"))[1].invalid_at is not None
    assert await store.remove_model("tn_1", "openai", "gpt-4o", "b")
    await store.set_default("tn_1", "llm", "openai", "gpt-4o")
    await store.set_default("tn_1", "llm", "anthropic", "claude")
    assert await store.defaults("tn_1") == {"llm": ("anthropic", "claude")}
    assert await store.clear_default("tn_1", "llm") and not await store.clear_default("tn_1", "llm")
    await store.set_fallbacks("tn_1", "openai/gpt-4o", ["anthropic/claude", "qwen/qwen-max"])
    assert await store.fallbacks("tn_1") == {"openai/gpt-4o": ("anthropic/claude", "qwen/qwen-max")}
    assert await store.clear_fallbacks("tn_1", "openai/gpt-4o")
    assert await store.fallbacks("tn_1") == {}


async def test_limits_and_rate_windows(store: StoreApi) -> None:
    await store.set_rate_limit("tn_1", LimitRow("", "", 2, None))
    await store.set_rate_limit("tn_1", LimitRow("tk_1", "openai/gpt-4o", None, 100))
    await store.set_rate_limit("tn_1", LimitRow("", "", 3, None))
    assert await store.rate_limits("tn_1") == (LimitRow("", "", 3, None), LimitRow("tk_1", "openai/gpt-4o", None, 100))
    assert await store.clear_rate_limit("tn_1", "tk_1", "openai/gpt-4o")
    minute = int(time.time() // 60)
    charges = [Charge("req", 1, 2), Charge("tok", 40, 100)]
    assert (await store.rate_take(minute, charges)).refused is None
    assert (await store.rate_take(minute, charges)).refused is None
    taken = await store.rate_take(minute, charges)
    assert taken.refused == 0 and taken.used == (2, 80)  # all or nothing: tok not spent
    await store.rate_settle(minute, ["tok"], -100)  # never below zero
    assert await store.rate_used(minute, ["req", "tok", "none"]) == {"req": 2, "tok": 0}


async def test_rate_take_is_atomic_across_instances(store: StoreApi, opener: Opener) -> None:
    other = await opener()
    minute = 1_000
    results = await asyncio.gather(*[(store, other)[i % 2].rate_take(minute, [Charge("s", 1, 5)]) for i in range(40)])
    assert sum(r.refused is None for r in results) == 5
    assert await store.rate_used(minute, ["s"]) == {"s": 5}


async def test_hosted_quota_reservation_is_atomic(store: StoreApi, opener: Opener) -> None:
    others = [store, await opener(), await opener()]
    results = await asyncio.gather(*[others[i % 3].quota_reserve("tn_1", "openai", 3) for i in range(100)])
    assert results.count(True) == 3
    assert await store.quota_counters("tn_1") == {"openai": (3, None)}
    await store.quota_refund("tn_1", "openai")
    assert await store.quota_reserve("tn_1", "openai", 3)
    await store.quota_set_limit("tn_1", "openai", -1)  # unlimited for this tenant
    assert await store.quota_reserve("tn_1", "openai", 3)
    assert await store.quota_counters("tn_1") == {"openai": (4, -1)}


async def test_usage_rows_rollups_and_pruning(store: StoreApi) -> None:
    await store.create_token("tk_1", "tn_1", None, "h", "hint")
    day = 86_400
    d0 = 20_000 * day
    rows = [usage(0, d0 + 10), usage(1, d0 + 20, status=500), usage(2, d0 + day + 5, billing="hosted", ttft_ms=None),
            usage(3, d0 + 30, tenant="tn_2", estimated=True)]
    await store.insert_usage(rows[:2])
    # A row the database refuses costs only that row (PostgreSQL refuses a NUL in text;
    # SQLite would store it, so it gets the other rows only).
    bad = [] if isinstance(store, Store) else [usage(9, d0 + 1, request_id="nul\x00")]
    skipped = await store.insert_usage_each([*rows[2:], *bad])
    assert [(row.request_id, reason) for row, reason in skipped] == [(r.request_id, "CharacterNotInRepertoireError")
                                                                     for r in bad]
    token = await store.token("tk_1")
    assert token is not None and token.last_used_at == d0 + day + 5
    whole = await store.usage_summary("tn_1", d0, d0 + 2 * day, "model")  # whole days: the rollup
    edges = await store.usage_summary("tn_1", d0 + 1, d0 + 2 * day - 1, "model")  # partial days: raw rows
    assert len(whole) == 1 and whole[0].key == "openai/gpt-4o"
    assert (whole[0].requests, whole[0].errors, whole[0].hosted) == (3, 1, 1)
    assert edges[0].errors == whole[0].errors and edges[0].hosted == whole[0].hosted
    by_day = await store.usage_summary(None, d0, d0 + 2 * day, "day", per_tenant=True)
    assert [(g.tenant, g.key) for g in by_day] == [("acme", "2024-10-04"), ("acme", "2024-10-05"), ("beta", "2024-10-04")]
    beta = [g for g in by_day if g.tenant == "beta"][0]
    assert (beta.requests, beta.estimated, beta.prompt_tokens, beta.avg_latency_ms, beta.avg_ttft_ms) == (1, 1, 10, 120.5, 30.0)
    assert await store.prune_usage(d0 + day, 1000) >= 3
    assert [g.key for g in await store.usage_summary(None, d0, d0 + 2 * day, "day")] == ["2024-10-05"]


async def test_a_batch_written_again_under_its_id_is_not_counted_twice(store: StoreApi) -> None:
    rows = [usage(0, 1_000_000.0), usage(1, 1_000_001.0)]
    await store.insert_usage(rows, "batch-1")
    await store.insert_usage(rows, "batch-1")        # its COMMIT's answer was lost: retried
    await store.insert_usage_each(rows, "batch-1")   # nor row by row
    await store.insert_usage(rows[:1], "batch-2")    # another batch is another batch
    summary = await store.usage_summary("tn_1", 0, 2_000_000.0, "model")
    assert [g.requests for g in summary] == [3]
    assert await store.prune_usage_batches(time.time() + 1) == 2
    await store.insert_usage(rows[:1], "batch-2")    # forgotten a day later: written again
    assert [g.requests for g in await store.usage_summary("tn_1", 0, 2_000_000.0, "model")] == [4]


async def test_usage_costs_sum_in_rollups_and_edges_alike(store: StoreApi) -> None:
    """Issue 16: a priced row's cost is summed, an unpriced one (NULL) is counted apart;
    whole days (the rollup) and partial ones (raw rows) answer the same on both engines."""
    day, d0 = 86_400, 20_000 * 86_400
    await store.insert_usage([usage(0, d0 + 10, cost_nanos=4_500), usage(1, d0 + 20, cost_nanos=10**12),
                              usage(2, d0 + 30, model="unpriced", cost_nanos=None),
                              usage(3, d0 + day + 5, cost_nanos=0)])
    await store.insert_usage_each([usage(4, d0 + 40, model="unpriced", cost_nanos=None)])
    for start, end in ((d0, d0 + 2 * day), (d0 + 1, d0 + 2 * day - 1)):
        groups = {g.key: g for g in await store.usage_summary("tn_1", start, end, "model")}
        priced, unpriced = groups["openai/gpt-4o"], groups["openai/unpriced"]
        assert (priced.requests, priced.cost_nanos, priced.unpriced) == (3, 10**12 + 4_500, 0)
        assert (unpriced.requests, unpriced.cost_nanos, unpriced.unpriced) == (2, None, 2)
        by_day = await store.usage_summary("tn_1", start, end, "day")
        assert [(g.cost_nanos, g.unpriced) for g in by_day] == [(10**12 + 4_500, 2), (0, 0)]
    rows = await store._all("SELECT request_id, cost_nanos FROM usage ORDER BY request_id")
    assert [(r[0], r[1]) for r in rows] == [("req_0", 4_500), ("req_1", 10**12), ("req_2", None), ("req_3", 0),
                                            ("req_4", None)]


async def test_budgets_and_their_spend(store: StoreApi, opener: Opener) -> None:
    """Issue 16: budgets are configuration (logged, per tenant and token); spend is held all
    or nothing, exactly once across instances, settled never below 0, pruned by period."""
    start = await store.changes()
    await store.set_budget("tn_1", BudgetRow("", None, 50 * 10**9))
    await store.set_budget("tn_1", BudgetRow("tk_1", 10**9, None, allow_unpriced=True))
    await store.set_budget("tn_1", BudgetRow("", 2 * 10**9, 60 * 10**9))  # replaces the tenant's
    assert await store.budgets("tn_1") == (BudgetRow("", 2 * 10**9, 60 * 10**9, False),
                                           BudgetRow("tk_1", 10**9, None, True))
    assert await store.budgets("tn_2") == ()
    _, logged = await store.changes_since(start, 100)
    assert [(c.change.kind, c.change.tenant_id, c.change.detail) for c in logged] == [
        (Kind.BUDGET, "tn_1", ""), (Kind.BUDGET, "tn_1", "tk_1"), (Kind.BUDGET, "tn_1", "")]
    assert await store.clear_budget("tn_1", "tk_1") and not await store.clear_budget("tn_1", "tk_1")

    # 40 requests from two instances against a limit of 5 units, each holding 1: exactly 5.
    other = await opener()
    charge = [SpendCharge("monthly|", "2026-12", 1, 5)]
    results = await asyncio.gather(*[(store, other)[i % 2].budget_take("tn_1", charge) for i in range(40)])
    assert sum(r.refused is None for r in results) == 5
    # All or nothing: the daily budget is used up, so the monthly one holds nothing either.
    both = [SpendCharge("monthly|", "2026-12", 1, 100), SpendCharge("daily|", "2026-12-07", 1, 0)]
    taken = await store.budget_take("tn_1", both)
    assert (taken.refused, taken.spent) == (1, (5, 0))
    await store.budget_settle("tn_1", [("monthly|", "2026-12")], 3)  # cost 4 where 1 was held
    await store.budget_settle("tn_1", [("daily|", "2026-12-07")], -7)  # nothing there: no row
    assert await store.budget_spent("tn_1", [("monthly|", "2026-12"), ("daily|", "2026-12-07")]) == {
        ("monthly|", "2026-12"): 8}
    await store.budget_settle("tn_1", [("monthly|", "2026-12")], -100)  # never below 0
    assert await store.budget_spent("tn_1", [("monthly|", "2026-12")]) == {("monthly|", "2026-12"): 0}
    # A new month's first request drops the scope's old months (and nobody else's).
    await store.budget_take("tn_2", [SpendCharge("monthly|", "2026-12", 9, 100)])
    assert (await store.budget_take("tn_1", [SpendCharge("monthly|", "2027-01", 2, 100)])).spent == (0,)
    assert [tuple(r) for r in await store._all("SELECT tenant_id, period, spent FROM budget_spend "
                                               "ORDER BY tenant_id, period")] == [
        ("tn_1", "2027-01", 2), ("tn_2", "2026-12", 9)]
    assert await store.delete_tenant("tn_2")
    assert [r[0] for r in await store._all("SELECT tenant_id FROM budget_spend")] == ["tn_1"]


async def test_kept_answers_per_tenant_until_they_expire(store: StoreApi, opener: Opener) -> None:
    now = 1_800_000_000
    row = KeptRow("resp_1", now, now + 100, '{"id": "resp_1", "text": "\u4f60\u597d"}', '[{"id": "msg_1"}]', "[]")
    await store.keep_answer("tn_1", "responses", row, now)
    changes = await store.changes()
    other = await opener()  # another worker or instance reads it at once
    assert await other.kept_answer("tn_1", "responses", "resp_1", now + 1) == row
    assert await other.kept_answer("tn_2", "responses", "resp_1", now + 1) is None  # another tenant's: not there
    assert await other.kept_answer("tn_1", "messages", "resp_1", now + 1) is None  # another API's
    assert await other.kept_answer("tn_1", "responses", "resp_1", now + 100) is None  # expired
    assert not await other.forget_answer("tn_2", "responses", "resp_1", now)
    # Kept again under its id (a retried write): replaced, not doubled.
    await other.keep_answer("tn_1", "responses", dataclasses.replace(row, items="[]"), now)
    kept = await store.kept_answer("tn_1", "responses", "resp_1", now)
    assert kept is not None and kept.items == "[]"
    assert await store.changes() == changes  # accounting-like writes: no cache depends on them
    # A later write prunes what expired; prune_kept does the same on its own.
    await store.keep_answer("tn_2", "responses", KeptRow("resp_2", now, now + 10, "{}", "[]", "[]"), now)
    await store.keep_answer("tn_2", "responses", KeptRow("resp_3", now, now + 500, "{}", "[]", "[]"), now + 200)
    assert [r[0] for r in await store._all("SELECT id FROM kept_answers ORDER BY id")] == ["resp_3"]
    assert await store.prune_kept(now + 500) == 1
    await store.keep_answer("tn_1", "responses", KeptRow("resp_4", now, now + 500, "{}", "[]", "[]"), now)
    assert await store.forget_answer("tn_1", "responses", "resp_4", now)
    assert not await store.forget_answer("tn_1", "responses", "resp_4", now)
    await store.keep_answer("tn_2", "responses", KeptRow("resp_5", now, now + 500, "{}", "[]", "[]"), now)
    assert await store.delete_tenant("tn_2")  # a tenant's kept answers go with it
    assert await store._all("SELECT id FROM kept_answers") == []


async def test_change_counter_and_log(store: StoreApi, opener: Opener) -> None:
    start = await store.changes()
    assert start == 2  # the two tenants
    await store.set_meta("greeting", "hello")
    assert await store.get_meta("greeting") == "hello"
    assert await store.set_meta_if_absent("once", "1")
    assert not await store.set_meta_if_absent("once", "2")
    assert await store.get_meta("once") == "1"
    await store.quota_reserve("tn_1", "openai", 5)  # accounting: no change
    counter, logged = await store.changes_since(start, 100)
    assert counter == start + 2
    assert [(c.seq, c.change.kind, c.change.detail) for c in logged] == [
        (start + 1, Kind.META, "greeting"), (start + 2, Kind.META, "once")]
    # Two instances writing at once: numbers follow commits with no gap and no repeat.
    other = await opener()
    await asyncio.gather(*[(store, other)[i % 2].set_default("tn_1", "llm", "openai", f"m{i}") for i in range(20)])
    counter, logged = await other.changes_since(start + 2, 100)
    assert counter == start + 22 and [c.seq for c in logged] == list(range(start + 3, start + 23))
    assert await store.prune_changes(time.time() + 1) == start + 22
    assert (await store.changes_since(0, 100))[1] == []


async def test_master_key_rows(store: StoreApi) -> None:
    assert await store.adopt_master_key_id("key-a")
    assert not await store.adopt_master_key_id("key-b")
    assert await store.get_meta("master_key_id") == "key-a"
    async with store.key_rotation() as txn:
        assert await txn.current_key_id() == "key-a"
        keys = await txn.wrapped_keys()
        assert keys == [("tn_1", b"wrapped\x00"), ("tn_2", b"wrapped")]
        await txn.replace([(t, k + b"-new") for t, k in keys], "key-a", "key-b", "check-b")
    assert await store.wrapped_private_key("tn_1", "key-b") == b"wrapped\x00-new"
    assert await store.wrapped_private_key("tn_1", "key-a") == b"wrapped\x00"  # kept until confirmed
    assert await store.previous_key_ids() == {"key-a"}
    assert await store.confirm_master_key("key-b") == 2
    assert await store.wrapped_private_key("tn_1", "key-a") == b"wrapped\x00-new"
    with pytest.raises(RuntimeError):
        async with store.key_rotation() as txn:
            await txn.replace([], "key-b", "key-c", "check-c")
            raise RuntimeError("rolled back")
    assert await store.get_meta("master_key_id") == "key-b"


async def test_cooldowns_and_sessions(store: StoreApi) -> None:
    from proxy.store.console import SessionRow

    now = time.time()
    await store.set_cooldown(Cooldown("tn_1", "openai", "default", now + 60, "429"))
    await store.set_cooldown(Cooldown("tn_1", "openai", "default", now + 10, "failures"))  # the later until stays
    [cool] = await store.cooldowns(now, "tn_1")
    assert cool.until == pytest.approx(now + 60) and cool.reason == "failures"
    assert await store.prune_cooldowns(now + 61) == 1
    await store.create_token("tk_c", "tn_1", None, "hc", "hint", kind="console")
    await store.create_session(SessionRow("sid", "tn_1", "tk_c", None, "csrf", int(now), int(now) + 600))
    assert (await store.session("sid")) is not None
    await store.revoke_token("tk_c")
    assert await store.session("sid") is None


async def test_postgres_failed_migration_leaves_the_database_as_it_was(database: str,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    if not database.startswith("postgresql://"):
        pytest.skip("SQLite's migrations: tests/unit (BEGIN IMMEDIATE around them all)")
    import asyncpg

    from proxy.store import pg_schema
    from proxy.store.postgres import PostgresStore

    monkeypatch.setattr(pg_schema, "BASELINE", pg_schema.BASELINE + "\nCREATE TABLE meta (x INTEGER);")
    store = PostgresStore(database, pool_size=2)
    with pytest.raises(asyncpg.DuplicateTableError):
        await store.open()
    conn = await asyncpg.connect(database)
    try:
        assert await conn.fetchval("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'") == 0
    finally:
        await conn.close()


async def test_postgres_unreachable_names_host_and_port_never_the_password() -> None:
    from proxy.store.postgres import DatabaseUnavailable, PostgresStore

    store = PostgresStore("postgresql://gw:s3cret-pass@127.0.0.1:1/modelport", connect_timeout=2)
    with pytest.raises(DatabaseUnavailable) as caught:
        await store.open()
    assert "127.0.0.1:1/modelport" in caught.value.message and "s3cret" not in caught.value.message
    assert "s3cret" not in repr(store)


def test_settings_select_postgres_by_url_or_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from proxy.bootstrap import make_store
    from proxy.settings import DATABASE_URL_ENV, load_settings
    from proxy.store.postgres import PostgresStore

    monkeypatch.delenv(DATABASE_URL_ENV, raising=False)
    assert isinstance(make_store(load_settings(data_dir=tmp_path)), Store)
    dsn = "postgresql://gw:s3cret-pass@db.internal:5433/modelport"
    monkeypatch.setenv(DATABASE_URL_ENV, dsn)
    settings = load_settings(data_dir=tmp_path, database_pool=3)
    store = make_store(settings)
    assert isinstance(store, PostgresStore) and store.pool_size == 3 and store.dsn == dsn
    assert settings.database_label == "postgresql://gw:***@db.internal:5433/modelport"
    assert "s3cret" not in repr(settings)
    config = tmp_path / "c.yaml"
    config.write_text(f"database: {tmp_path / 'x.db'}\n")  # the configuration's database wins over the env
    assert load_settings(config).database_path == tmp_path / "x.db"
