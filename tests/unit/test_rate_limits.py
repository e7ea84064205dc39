"""Rate limits against a real SQLite file: the per-minute counters are exact across
connections (two `Store`s stand for two workers), all or nothing across the limits a
request matches, settled up and down, per UTC minute (an injected clock); `admit` costs
nothing without a matching limit; the 429 is OpenAI's; management validates and logs."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from keystore import new_master_key
from keystore.store import Keystore
from proxy.errors import HeaderedError, error_response
from proxy.ratelimits import MeteredRecord, admit, minute_of, scope
from proxy.service import Management
from proxy.store import Store
from proxy.store.changes import Kind
from proxy.store.limits import Charge, LimitRow
from proxy.tenants import TenantState
from tests.unit.test_quotas import open_store
from translators.errors import ApiError
from translators.types import ChatRequest, Usage

T0 = 1_700_000_020.0  # 40 s into a UTC minute
HELLO = ChatRequest.model_validate({"model": "default", "messages": [{"role": "user", "content": "x" * 40}]})
ESTIMATE = 10  # 40 characters at ~4 per token


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    s = await open_store(tmp_path / "modelport.db")
    await s.create_tenant("tn_1", "acme", b"public", b"wrapped")
    await s.create_tenant("tn_2", "beta", b"public", b"wrapped")
    await s.create_token("tok_a", "tn_1", "app", "hash-a", "mp-...aaaa")
    await s.create_token("tok_b", "tn_1", "batch", "hash-b", "mp-...bbbb")
    await s.create_token("tok_c", "tn_1", "admin", "hash-c", "mpc-...cccc", "console")
    await s.create_token("tok_x", "tn_2", "other", "hash-x", "mp-...xxxx")
    yield s
    await s.close()


def tenant(*limits: LimitRow) -> TenantState:
    return TenantState("tn_1", "acme", b"wrapped", {}, {}, {}, limits=limits)


def clock(now: float) -> Any:
    return lambda: now


async def counter(store: Store, row: LimitRow, kind: Any, now: float = T0) -> int:
    return (await store.rate_used(minute_of(now), [scope("tn_1", row, kind)])).get(scope("tn_1", row, kind), 0)


class NoStore:
    """Any use of the database fails the test: the zero-cost path must not touch it."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"the store was used ({name})")


# -- the store's counters -------------------------------------------------------------------


async def test_exactly_the_limit_is_taken_across_connections(store: Store) -> None:
    other = await open_store(store.path)  # a second worker on the same file
    try:
        charge = [Charge("requests|tn_1||", 1, 10)]
        results = await asyncio.gather(*[(store, other)[i % 2].rate_take(100, charge) for i in range(100)])
    finally:
        await other.close()
    assert sum(r.refused is None for r in results) == 10
    assert sorted(r.used[0] for r in results if r.refused is None) == list(range(10))
    assert await store.rate_used(100, ["requests|tn_1||"]) == {"requests|tn_1||": 10}


async def test_all_or_nothing_a_refusal_spends_no_other_limit(store: Store) -> None:
    wide, narrow = Charge("wide", 1, 10), Charge("narrow", 1, 1)
    assert (await store.rate_take(5, [wide, narrow])).refused is None
    refused = await store.rate_take(5, [wide, narrow])
    assert refused.refused == 1 and refused.used == (1, 1)
    assert await store.rate_used(5, ["wide", "narrow"]) == {"wide": 1, "narrow": 1}


async def test_settle_moves_counters_both_ways_and_never_below_zero(store: Store) -> None:
    await store.rate_take(5, [Charge("t", 10, 100)])
    await store.rate_settle(5, ["t"], 25)
    assert await store.rate_used(5, ["t"]) == {"t": 35}
    await store.rate_settle(5, ["t"], -100)
    assert await store.rate_used(5, ["t"]) == {"t": 0}


async def test_a_new_minute_starts_from_zero_and_prunes_older_ones(store: Store) -> None:
    charge = [Charge("c", 1, 1)]
    assert (await store.rate_take(5, charge)).refused is None
    assert (await store.rate_take(5, charge)).refused == 0
    assert (await store.rate_take(6, charge)).refused is None
    assert (await store.rate_take(7, charge)).refused is None  # opens minute 7: minute 5 goes
    assert await store.rate_used(5, ["c"]) == {}
    assert await store.rate_used(6, ["c"]) == {"c": 1}


async def test_counters_are_accounting_not_configuration(store: Store) -> None:
    before = await store.changes()
    await store.rate_take(5, [Charge("c", 1, 3)])
    await store.rate_settle(5, ["c"], 2)
    assert await store.changes() == before


# -- admit ------------------------------------------------------------------------------------


async def test_no_matching_limit_costs_no_database_access() -> None:
    store: Any = NoStore()
    assert await admit(store, tenant(), "tok_a", "openai/gpt-4o", HELLO) is None
    others = tenant(LimitRow("tok_b", "", 5, None), LimitRow("", "openai/gpt-4o-mini", 5, 50))
    assert await admit(store, others, "tok_a", "openai/gpt-4o", HELLO) is None


async def test_admitted_requests_carry_openais_headers(store: Store) -> None:
    limits = tenant(LimitRow("", "", 10, 1000), LimitRow("tok_a", "", 3, None))
    admission = await admit(store, limits, "tok_a", "openai/gpt-4o", HELLO, clock(T0))
    assert admission is not None
    assert admission.headers == {  # requests: the token's limit has the least left
        "x-ratelimit-limit-requests": "3", "x-ratelimit-remaining-requests": "2", "x-ratelimit-reset-requests": "20s",
        "x-ratelimit-limit-tokens": "1000", "x-ratelimit-remaining-tokens": str(1000 - ESTIMATE),
        "x-ratelimit-reset-tokens": "20s"}


async def test_the_429_is_openais_and_spends_nothing(store: Store) -> None:
    wide, own = LimitRow("", "", 100, 1000), LimitRow("tok_a", "", 1, None)
    limits = tenant(wide, own)
    assert await admit(store, limits, "tok_a", "openai/gpt-4o", HELLO, clock(T0)) is not None
    with pytest.raises(HeaderedError) as refused:
        await admit(store, limits, "tok_a", "openai/gpt-4o", HELLO, clock(T0 + 8))
    err = refused.value
    assert (err.status, err.type, err.code, err.param, err.retry_after) == (429, "requests", "rate_limit_exceeded",
                                                                           None, 12)
    assert err.message == ("Rate limit reached for this API token on requests per min (RPM): Limit 1, Used 1, "
                           "Requested 1. Please try again in 12s.")
    response = error_response(err)
    assert response.headers["retry-after"] == "12"
    assert response.headers["x-ratelimit-remaining-requests"] == "0"
    assert response.headers["x-ratelimit-reset-tokens"] == "12s"
    assert await counter(store, wide, "requests") == 1 and await counter(store, wide, "tokens") == ESTIMATE
    # Another token of the tenant is held by the tenant-wide limit only.
    assert await admit(store, limits, "tok_b", "openai/gpt-4o", HELLO, clock(T0)) is not None


async def test_a_token_limit_refuses_the_request_that_would_pass_it(store: Store) -> None:
    row = LimitRow("", "openai/gpt-4o", None, 25)
    assert await admit(store, tenant(row), "tok_a", "openai/gpt-4o", HELLO, clock(T0)) is not None
    assert await admit(store, tenant(row), "tok_a", "openai/gpt-4o", HELLO, clock(T0)) is not None
    with pytest.raises(HeaderedError) as refused:
        await admit(store, tenant(row), "tok_a", "openai/gpt-4o", HELLO, clock(T0))
    assert refused.value.type == "tokens"
    assert "openai/gpt-4o for this tenant on tokens per min (TPM): Limit 25, Used 20, Requested 10" in \
        refused.value.message
    # Another model is not limited at all.
    assert await admit(store, tenant(row), "tok_a", "openai/gpt-4o-mini", HELLO, clock(T0)) is None


async def test_a_request_larger_than_the_limit_is_told_not_to_retry(store: Store) -> None:
    with pytest.raises(HeaderedError) as refused:
        await admit(store, tenant(LimitRow("", "", None, 5)), "tok_a", "openai/gpt-4o", HELLO, clock(T0))
    assert refused.value.message.startswith("Request too large for this tenant on tokens per min (TPM): Limit 5, "
                                            "Requested 10.")
    assert refused.value.retry_after is None and refused.value.headers["x-should-retry"] == "false"


async def test_the_next_minute_admits_again(store: Store) -> None:
    limits = tenant(LimitRow("", "", 1, None))
    assert await admit(store, limits, "tok_a", "m/x", HELLO, clock(T0)) is not None
    with pytest.raises(HeaderedError):
        await admit(store, limits, "tok_a", "m/x", HELLO, clock(T0 + 19.5))
    admission = await admit(store, limits, "tok_a", "m/x", HELLO, clock(T0 + 20))
    assert admission is not None and admission.headers["x-ratelimit-reset-requests"] == "60s"


@pytest.mark.parametrize(("status", "usage", "expected"), [
    (200, Usage(30, 12, 42), 42),    # the vendor's real total replaces the estimate
    (200, Usage(2, 1, 3), 3),        # less than estimated: given back
    (502, None, 0),                  # failed: the estimate is given back
])
async def test_finishing_the_record_settles_the_token_counters(store: Store, status: int, usage: Usage | None,
                                                               expected: int) -> None:
    row = LimitRow("", "", None, 1000)
    record = MeteredRecord("req_1", "chat.completions", "llm")
    record.admission = await admit(store, tenant(row), "tok_a", "openai/gpt-4o", HELLO)
    assert record.admission is not None
    assert await counter(store, row, "tokens", record.admission.minute * 60.0) == ESTIMATE
    record.finish(status, usage)
    record.finish(status, usage)  # settled once, however often it is finished
    await record.admission.settled()
    assert await counter(store, row, "tokens", record.admission.minute * 60.0) == expected


# -- management -------------------------------------------------------------------------------


@pytest.fixture
def manage(store: Store) -> Management:
    return Management(store, Keystore(new_master_key()))


async def test_set_show_and_clear(manage: Management, store: Store) -> None:
    before = await store.changes()
    assert await manage.set_rate_limit("acme", None, None, 10, None) == {
        "token_id": None, "token_name": None, "model": None, "rpm": 10, "tpm": None}
    await manage.set_rate_limit("acme", "tok_a", "openai/gpt-4o-mini", None, 500)
    await manage.set_rate_limit("acme", None, None, 20, 100)  # replaces the tenant-wide limit
    _, logged = await store.changes_since(before, 10)
    assert [(c.change.kind, c.change.tenant_id) for c in logged] == [(Kind.LIMIT, "tn_1")] * 3
    shown = await manage.show_rate_limits("acme")
    assert shown == [
        {"token_id": None, "token_name": None, "model": None, "rpm": 20, "tpm": 100, "requests_this_minute": 0,
         "tokens_this_minute": 0},
        {"token_id": "tok_a", "token_name": "app", "model": "openai/gpt-4o-mini", "rpm": None, "tpm": 500,
         "requests_this_minute": 0, "tokens_this_minute": 0}]
    assert await store.rate_limits("tn_1") == (LimitRow("", "", 20, 100), LimitRow("tok_a", "openai/gpt-4o-mini",
                                                                                  None, 500))
    assert await manage.clear_rate_limit("acme", "tok_a", "openai/gpt-4o-mini") == {
        "token_id": "tok_a", "model": "openai/gpt-4o-mini", "deleted": True}
    with pytest.raises(ApiError) as missing:
        await manage.clear_rate_limit("acme", "tok_a", "openai/gpt-4o-mini")
    assert missing.value.status == 404
    assert [r["token_id"] for r in await manage.show_rate_limits("acme")] == [None]


@pytest.mark.parametrize(("token", "model", "rpm", "tpm", "status", "param"), [
    ("tok_x", None, 5, None, 404, "token_id"),         # another tenant's token
    ("tok_nope", None, 5, None, 404, "token_id"),
    ("tok_c", None, 5, None, 400, "token_id"),         # a console token
    (None, "gpt-4o", 5, None, 400, "model"),           # not provider/model
    (None, "nosuch/gpt-4o", 5, None, 400, "model"),
    (None, None, 0, None, 400, "rpm"),
    (None, None, None, -3, 400, "tpm"),
    (None, None, None, None, 400, "rpm"),              # neither
])
async def test_bad_limits_are_refused(manage: Management, store: Store, token: str | None, model: str | None,
                                      rpm: int | None, tpm: int | None, status: int, param: str) -> None:
    with pytest.raises(ApiError) as refused:
        await manage.set_rate_limit("acme", token, model, rpm, tpm)
    assert (refused.value.status, refused.value.param) == (status, param)
    assert await store.rate_limits("tn_1") == ()


async def test_a_tenants_console_sees_only_its_own_limits(manage: Management, store: Store) -> None:
    await manage.set_rate_limit("beta", None, None, 7, None)
    scoped = Management(store, manage.keystore, scope="tn_1")
    for attempt in (scoped.show_rate_limits("beta"), scoped.set_rate_limit("beta", None, None, 1, None),
                    scoped.clear_rate_limit("beta", None, None)):
        with pytest.raises(ApiError) as refused:
            await attempt
        assert refused.value.status == 404
    assert await scoped.show_rate_limits("acme") == []
    assert await store.rate_limits("tn_2") == (LimitRow("", "", 7, None),)
