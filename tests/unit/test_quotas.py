"""Hosted-trial counting against a real SQLite file: one conditional UPDATE decides,
across connections (workers); refunds; per-tenant limits; the exhaustion error;
accounting writes leave the change counter (and so every worker's caches) alone."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from proxy.hosted import build_offers
from proxy.quotas import Quotas
from proxy.settings import HostedSettings
from proxy.store import Store, UsageRow
from proxy.store.changes import Kind
from translators.errors import ApiError

OFFERS = build_offers({"openai": HostedSettings(credentials={"api_key": "sk-platform-0123456789abcdef"}, quota=3,
                                                models=["gpt-3.5-turbo", "gpt-3.5-turbo"])})


async def open_store(path: Path) -> Store:
    store = Store(path)
    await store.open()
    return store


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    s = await open_store(tmp_path / "modelport.db")
    await s.create_tenant("tn_1", "acme", b"public", b"wrapped")
    await s.create_tenant("tn_2", "beta", b"public", b"wrapped")
    yield s
    await s.close()


async def test_exactly_the_remaining_calls_succeed_across_connections(store: Store, tmp_path: Path) -> None:
    # Three connections stand for three worker processes sharing the database.
    workers = [store, await open_store(store.path), await open_store(store.path)]
    try:
        results = await asyncio.gather(*[workers[i % 3].quota_reserve("tn_1", "openai", 3) for i in range(100)])
    finally:
        for other in workers[1:]:
            await other.close()
    assert results.count(True) == 3
    assert await store.quota_counters("tn_1") == {"openai": (3, None)}
    assert await store.quota_counters("tn_2") == {}


async def test_refund_gives_one_call_back_and_never_goes_negative(store: Store) -> None:
    assert await store.quota_reserve("tn_1", "openai", 1)
    assert not await store.quota_reserve("tn_1", "openai", 1)
    await store.quota_refund("tn_1", "openai")
    assert await store.quota_reserve("tn_1", "openai", 1)
    await store.quota_refund("tn_1", "openai")
    await store.quota_refund("tn_1", "openai")
    assert (await store.quota_counters("tn_1"))["openai"] == (0, None)


async def test_limits_zero_override_and_unlimited(store: Store) -> None:
    assert not await store.quota_reserve("tn_1", "openai", 0)
    await store.quota_set_limit("tn_1", "openai", 2)  # grant: the override wins over the configured 0
    assert [await store.quota_reserve("tn_1", "openai", 0) for _ in range(3)] == [True, True, False]
    await store.quota_set_limit("tn_1", "openai", -1)
    assert all([await store.quota_reserve("tn_1", "openai", 0) for _ in range(20)])
    await store.quota_set_limit("tn_1", "openai", None)
    assert not await store.quota_reserve("tn_1", "openai", 5)  # 22 used > 5 configured
    assert all([await store.quota_reserve("tn_2", "openai", -1) for _ in range(10)])


async def test_accounting_writes_do_not_bump_the_change_counter(store: Store) -> None:
    before = await store.changes()
    await store.quota_reserve("tn_1", "openai", 3)
    await store.quota_refund("tn_1", "openai")
    row = UsageRow(0.0, "req", "tn_1", "tok", "chat.completions", "openai", "m", "llm", "own", False, 200,
                   1, 2, 3, False, 1.0, None)
    await store.insert_usage([row])
    await store.prune_usage(10.0, 100)
    assert await store.changes() == before
    await store.create_token("tok_1", "tn_1", None, "hash", "mp-...abcd")  # configuration does bump
    assert await store.changes() == before + 1
    await store.quota_set_limit("tn_1", "openai", 9)  # an operator's limit is configuration too
    _, logged = await store.changes_since(before, 10)
    assert [(c.change.kind, c.change.tenant_id, c.change.detail) for c in logged] == [
        (Kind.TOKEN, "tn_1", "hash"), (Kind.QUOTA, "tn_1", "openai")]


async def test_deleting_a_tenant_removes_its_counters_and_usage(store: Store) -> None:
    await store.quota_reserve("tn_1", "openai", 3)
    await store.insert_usage([UsageRow(1.0, "req", "tn_1", "tok", "chat.completions", "openai", "m", "llm", "own",
                                       False, 200, 1, 2, 3, False, 1.0, None)])
    await store.delete_tenant("tn_1")
    assert await store.quota_counters("tn_1") == {}
    assert await store.usage_summary("tn_1", 0, 10, "model") == []


async def test_quotas_reserve_refund_report_and_the_exhaustion_error(store: Store) -> None:
    quotas = Quotas(store, OFFERS)
    assert OFFERS["openai"].models == ("gpt-3.5-turbo",)  # listed twice, kept once
    first = await quotas.reserve("tn_1", "acme", "openai")
    await first.refund()
    await first.refund()  # at most once
    for _ in range(3):
        await quotas.reserve("tn_1", "acme", "openai")
    with pytest.raises(ApiError) as exc:
        await quotas.reserve("tn_1", "acme", "openai")
    err = exc.value
    assert (err.status, err.type, err.code) == (429, "insufficient_quota", "insufficient_quota")
    assert "(3 of 3 calls)" in err.message and "'openai'" in err.message
    assert "`modelport providers set acme openai api_key=...`" in err.message
    assert "sk-platform" not in err.message
    assert await quotas.report("tn_1", own={"openai"}) == [
        {"provider": "openai", "limit": 3, "used": 3, "remaining": 0, "models": ["gpt-3.5-turbo"],
         "own_credential": True}]
    await quotas.set_limit("tn_2", "openai", -1)
    assert (await quotas.report("tn_2", own=()))[0] | {"models": None} == {
        "provider": "openai", "limit": -1, "used": 0, "remaining": -1, "models": None, "own_credential": False}
