"""`quota_remaining` (the metrics' hosted-quota gauge) on both engines: every tenant's
calls left on a hosted provider, summed, with the configured quota for tenants that have
no counter yet, an override where one is set, and nothing for unlimited tenants."""

from __future__ import annotations

from proxy.store import StoreApi
from tests.store.test_store_contract import database, opener, store  # noqa: F401 (fixtures)


async def test_hosted_calls_left_are_summed_over_tenants(store: StoreApi) -> None:  # noqa: F811
    assert await store.quota_remaining("openai", 5) == 10  # two tenants, no calls yet
    assert await store.quota_reserve("tn_1", "openai", 5)
    assert await store.quota_reserve("tn_1", "openai", 5)
    assert await store.quota_remaining("openai", 5) == 8
    await store.quota_set_limit("tn_2", "openai", 1)  # tn_2: 1 left
    assert await store.quota_remaining("openai", 5) == 4
    await store.quota_set_limit("tn_2", "openai", -1)  # unlimited: adds nothing
    assert await store.quota_remaining("openai", 5) == 3
    assert await store.quota_remaining("openai", -1) == 0  # unlimited for all (tn_2's override too)
    assert await store.quota_remaining("anthropic", 2) == 4  # another provider: its own counters
    for _ in range(4):
        await store.quota_reserve("tn_1", "openai", 5)
    assert await store.quota_remaining("openai", 5) == 0  # spent, never negative
