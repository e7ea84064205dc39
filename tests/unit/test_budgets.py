"""Budgets against a real SQLite file (issue 16): `hold` costs nothing without a budget
that applies; holds the estimate in every matching budget and is settled with the real
cost when the record finishes (a failure gives the estimate back); a budget of exactly
two calls' cost lets two through and refuses the third (OpenAI's 429 shape, code
`budget_exceeded`); periods are UTC days and months; unpriced models are refused under
a budget unless allowed; management validates, shows the spend and logs its writes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from keystore import new_master_key
from keystore.store import Keystore
from proxy.budgets import BudgetedRecord, hold, periods
from proxy.errors import HeaderedError, error_response
from proxy.prices import Price
from proxy.routing import Route
from proxy.service import Management
from proxy.settings import BudgetSettings, Settings
from proxy.store import Store
from proxy.store.budgets import BudgetRow
from proxy.store.changes import Kind
from proxy.tenants import TenantState
from tests.unit.test_prices import wav
from tests.unit.test_quotas import open_store
from translators import REGISTRY
from translators.errors import ApiError
from translators.types import ChatRequest, TranscriptionRequest, Usage

T0 = 1_796_601_600.0 + 3600  # 2026-12-07T01:00:00Z
HELLO = ChatRequest.model_validate({"model": "default", "messages": [{"role": "user", "content": "x" * 40}]})
PRICED = Route("openai", REGISTRY["openai"], "gpt-4o-mini", False)
UNPRICED = Route("openai", REGISTRY["openai"], "gpt-4o", False)
SETTINGS = Settings(prices={"openai": {"gpt-4o-mini": Price(input=1000, output=2000),  # $0.001 a prompt token
                                      "whisper-1": Price(per_audio_minute=0.006)}})
WHISPER = Route("openai", REGISTRY["openai"], "whisper-1", False)
CALL = Usage(10, 5, 15)
CALL_COST = 10 * 1_000_000 + 5 * 2_000_000  # nano-dollars: $0.02
ESTIMATE = 10 * 1_000_000  # 40 characters at ~4 a token, at the input price


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    s = await open_store(tmp_path / "modelport.db")
    await s.create_tenant("tn_1", "acme", b"public", b"wrapped")
    await s.create_token("tok_a", "tn_1", "app", "hash-a", "mp-...aaaa")
    await s.create_token("tok_b", "tn_1", "batch", "hash-b", "mp-...bbbb")
    await s.create_token("tok_c", "tn_1", "admin", "hash-c", "mpc-...cccc", "console")
    await s.create_tenant("tn_2", "beta", b"public", b"wrapped")
    await s.create_token("tok_x", "tn_2", "other", "hash-x", "mp-...xxxx")
    yield s
    await s.close()


def tenant(*budgets: BudgetRow) -> TenantState:
    return TenantState("tn_1", "acme", b"wrapped", {}, {}, {}, budgets=budgets)


def clock(now: float) -> Any:
    return lambda: now


class NoStore:
    """Any use of the database fails the test: the zero-cost path must not touch it."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"the store was used: {name}")


async def spent(store: Store, kind: str = "monthly", token_id: str = "", now: float = T0) -> int:
    key = (f"{kind}|{token_id}", periods(now)[kind])
    return (await store.budget_spent("tn_1", [key])).get(key, 0)


async def call(store: Store, state: TenantState, token_id: str = "tok_a", route: Route = PRICED,
               usage: Usage | None = CALL, status: int = 200, now: float = T0,
               settings: Settings = SETTINGS) -> BudgetedRecord:
    """One request through `hold` and a record that finishes the way routes.py finishes it."""
    record = BudgetedRecord("req", "chat.completions", "llm", prices=settings.prices, tenant_id="tn_1",
                            provider=route.provider, model=route.model, billing=route.billing)
    record.hold = await hold(store, settings, state, token_id, route, HELLO, clock(now))
    record.finish(status, usage)
    if record.hold is not None:
        await record.hold.settled()
    return record


async def test_no_budget_that_applies_costs_nothing() -> None:
    nothing: Any = NoStore()
    assert await hold(nothing, SETTINGS, tenant(), "tok_a", PRICED, HELLO) is None
    assert await hold(nothing, SETTINGS, tenant(BudgetRow("tok_b", None, 10**9)), "tok_a", PRICED, HELLO) is None
    hosted = Route("openai", REGISTRY["openai"], "gpt-4o-mini", False, "hosted")  # the operator's trial
    assert await hold(nothing, SETTINGS, tenant(BudgetRow("", None, 0)), "tok_a", hosted, HELLO) is None


async def test_a_budget_of_two_calls_lets_two_through_and_refuses_the_third(store: Store) -> None:
    state = tenant(BudgetRow("", None, 2 * CALL_COST))
    record = BudgetedRecord("req", "chat.completions", "llm", prices=SETTINGS.prices, tenant_id="tn_1",
                            provider="openai", model="gpt-4o-mini", billing="own")
    record.hold = await hold(store, SETTINGS, state, "tok_a", PRICED, HELLO, clock(T0))
    assert record.hold is not None and await spent(store) == ESTIMATE  # held while it runs
    record.finish(200, CALL)
    record.finish(200, CALL)  # settled once, however often it is finished
    await record.hold.settled()
    assert await spent(store) == CALL_COST
    await call(store, state)
    assert await spent(store) == 2 * CALL_COST
    with pytest.raises(HeaderedError) as refused:
        await call(store, state)
    err = refused.value
    assert (err.status, err.type, err.code) == (429, "insufficient_quota", "budget_exceeded")
    assert err.message == ("Budget exceeded for this tenant: $0.04 spent of its monthly budget of $0.04 (2026-12, "
                           "UTC). Requests are refused until the month ends or the budget is raised.")
    response = error_response(err)
    assert response.headers["x-should-retry"] == "false"
    assert await spent(store) == 2 * CALL_COST  # a refusal holds nothing


async def test_the_last_call_may_pass_the_limit_by_what_it_cost_beyond_its_estimate(store: Store) -> None:
    state = tenant(BudgetRow("", None, CALL_COST + 1))
    await call(store, state)
    await call(store, state)  # below the limit when it started: let through
    assert await spent(store) == 2 * CALL_COST
    with pytest.raises(HeaderedError):
        await call(store, state)


async def test_a_failed_request_gives_its_estimate_back(store: Store) -> None:
    state = tenant(BudgetRow("", 10**9, 10**9))
    await call(store, state, usage=None, status=502)
    assert await spent(store) == 0 and await spent(store, "daily") == 0


async def test_daily_and_monthly_periods_are_utc(store: Store) -> None:
    state = tenant(BudgetRow("", CALL_COST, 100 * CALL_COST))
    await call(store, state)
    with pytest.raises(HeaderedError) as refused:
        await call(store, state, now=T0 + 3600)
    assert "daily budget of $0.02 (2026-12-07, UTC)" in refused.value.message and "the day ends" in \
        refused.value.message
    await call(store, state, now=T0 + 86_400)  # the next UTC day: a new daily budget, the same month
    assert await spent(store, "monthly", now=T0 + 86_400) == 2 * CALL_COST
    assert await spent(store, "daily", now=T0 + 86_400) == CALL_COST
    assert periods(T0) == {"daily": "2026-12-07", "monthly": "2026-12"}
    assert periods(T0 + 25 * 86_400) == {"daily": "2027-01-01", "monthly": "2027-01"}


async def test_a_tokens_budget_leaves_the_other_tokens_alone(store: Store) -> None:
    state = tenant(BudgetRow("tok_a", None, CALL_COST), BudgetRow("", None, 10 * CALL_COST))
    await call(store, state, "tok_a")
    with pytest.raises(HeaderedError) as refused:
        await call(store, state, "tok_a")
    assert refused.value.message.startswith("Budget exceeded for this API token: $0.02 spent")
    await call(store, state, "tok_b")
    assert await spent(store, token_id="tok_a") == CALL_COST and await spent(store) == 2 * CALL_COST


async def test_unpriced_models_are_refused_under_a_budget_unless_allowed(store: Store) -> None:
    with pytest.raises(ApiError) as refused:
        await call(store, tenant(BudgetRow("", None, 10**9)), route=UNPRICED)
    assert (refused.value.status, refused.value.code, refused.value.param) == (400, "unpriced_model", "model")
    assert "'openai/gpt-4o' has no price" in refused.value.message
    # Allowed by the operator's setting, or by every budget that applies: let through, nothing counted.
    allowing = Settings(prices=SETTINGS.prices, budgets=BudgetSettings(allow_unpriced=True))
    record = await call(store, tenant(BudgetRow("", None, 10**9)), route=UNPRICED, settings=allowing)
    assert record.cost_nanos is None and await spent(store) == 0
    await call(store, tenant(BudgetRow("", None, 10**9, allow_unpriced=True)), route=UNPRICED)
    with pytest.raises(ApiError):
        await call(store, tenant(BudgetRow("", None, 10**9, allow_unpriced=True), BudgetRow("tok_a", 10**9, None)),
                   route=UNPRICED)


async def test_a_transcription_whose_duration_stays_unknown_is_as_good_as_unpriced(store: Store) -> None:
    state = tenant(BudgetRow("", None, 10**9))

    def upload(audio: bytes, response_format: str) -> TranscriptionRequest:
        return TranscriptionRequest.model_validate({"model": "whisper-1", "file": audio,
                                                    "response_format": response_format})

    with pytest.raises(ApiError) as refused:  # a text answer of an mp3: nothing tells how long it was
        await hold(store, SETTINGS, state, "tok_a", WHISPER, upload(b"ID3not-really-mp3", "text"))
    assert refused.value.code == "unpriced_model" and "audio duration would stay unknown" in refused.value.message
    held = await hold(store, SETTINGS, state, "tok_a", WHISPER, upload(b"ID3not-really-mp3", "json"))
    assert held is not None and held.estimate == 0  # the answer will say (usage.seconds)
    held = await hold(store, SETTINGS, state, "tok_a", WHISPER, upload(wav(30.0), "srt"))
    assert held is not None and held.estimate == 3_000_000  # half a minute, from the WAV header


# -- management -------------------------------------------------------------------------------


@pytest.fixture
def manage(store: Store) -> Management:
    return Management(store, Keystore(new_master_key()))


async def test_set_show_and_clear(manage: Management, store: Store) -> None:
    before = await store.changes()
    assert await manage.set_budget("acme", None, None, 50, False) == {
        "token_id": None, "token_name": None, "daily": None, "monthly": 50.0, "allow_unpriced": False,
        "spent_today": None, "spent_this_month": 0.0}
    await manage.set_budget("acme", "tok_a", 0.5, 10, True)
    await manage.set_budget("acme", None, 2, 60)  # replaces the tenant's
    _, logged = await store.changes_since(before, 10)
    assert [(c.change.kind, c.change.tenant_id, c.change.detail) for c in logged] == [
        (Kind.BUDGET, "tn_1", ""), (Kind.BUDGET, "tn_1", "tok_a"), (Kind.BUDGET, "tn_1", "")]
    assert await store.budgets("tn_1") == (BudgetRow("", 2 * 10**9, 60 * 10**9),
                                           BudgetRow("tok_a", 5 * 10**8, 10 * 10**9, True))
    await call(store, tenant(*await store.budgets("tn_1")), "tok_a")  # spend shows up
    shown = await manage.show_budgets("acme")
    assert shown[1] == {"token_id": "tok_a", "token_name": "app", "daily": 0.5, "monthly": 10.0,
                        "allow_unpriced": True, "spent_today": 0.02, "spent_this_month": 0.02}
    assert (shown[0]["spent_today"], shown[0]["spent_this_month"]) == (0.02, 0.02)
    assert await manage.clear_budget("acme", "tok_a") == {"token_id": "tok_a", "deleted": True}
    with pytest.raises(ApiError) as missing:
        await manage.clear_budget("acme", "tok_a")
    assert missing.value.status == 404
    assert [r["token_id"] for r in await manage.show_budgets("acme")] == [None]


@pytest.mark.parametrize(("token", "daily", "monthly", "status", "param"), [
    (None, None, None, 400, "monthly"),           # nothing to limit
    (None, -1.0, None, 400, "daily"),
    (None, None, float("inf"), 400, "monthly"),
    (None, None, 2e9, 400, "monthly"),            # past what the counters hold
    ("tok_c", None, 5.0, 400, "token_id"),        # a console token
    ("tok_x", None, 5.0, 404, "token_id"),        # another tenant's
    ("tok_none", None, 5.0, 404, "token_id"),
])
async def test_set_validates(manage: Management, store: Store, token: str | None, daily: float | None,
                             monthly: float | None, status: int, param: str) -> None:
    with pytest.raises(ApiError) as refused:
        await manage.set_budget("acme", token, daily, monthly)
    assert (refused.value.status, refused.value.param) == (status, param)
    assert await store.budgets("tn_1") == ()


async def test_a_tenant_scoped_caller_manages_its_own_budgets_only(store: Store) -> None:
    scoped = Management(store, Keystore(new_master_key()), scope="tn_2")
    with pytest.raises(ApiError) as hidden:
        await scoped.set_budget("acme", None, None, 5)
    assert hidden.value.status == 404
    await scoped.set_budget("beta", "tok_x", None, 5)
    assert [r["token_id"] for r in await scoped.show_budgets("beta")] == ["tok_x"]
