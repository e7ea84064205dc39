"""Cost and budgets end to end (issue 16), on a 2-worker gateway of the module's own with a
price table (and the fake Anthropic lent as a hosted trial), on SQLite and PostgreSQL.

Checked: each request's cost in the usage table, `/v1/usage`, the CLI and the admin API
equals tokens x price (chat, stream, embeddings, a hosted call, a transcription billed by
the minute), an unpriced model's is null, never 0; `GET /v1/prices`; a budget of exactly
two calls' cost lets two through and refuses the third with OpenAI's 429 (the openai SDK
raises RateLimitError, code budget_exceeded) on every worker; per-call prices hold
exactly under a concurrent burst across both workers; unpriced models under a budget;
the CLI's and the admin API's budgets.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import openai
import pytest

from tests.e2e.harness import GatewayProcess
from tests.e2e.hosted_setup import (
    ADMIN_TOKEN,
    HI,
    accept_hosted_keys,
    give_own_openai,
    hosted_gateway,
    new_tenant,
    usage_rows,
    wait_until,
)
from tests.e2e.test_usage import wav_bytes
from tests.fakes.anthropic_fixtures import FakeAnthropic
from tests.fakes.fixtures import FakeOpenAI

# Dollars per million tokens (or per call, per audio minute). Big prices keep the costs of
# the fakes' few tokens readable: a gpt-4o-mini prompt token costs $0.001 here.
PRICES: dict[str, Any] = {
    "openai": {"gpt-4o-mini": {"input": 1000, "output": 2000}, "gpt-3.5-turbo": {"per_call": 0.01},
               "text-embedding-3-small": {"input": 20}, "whisper-1": {"per_audio_minute": 0.006}},
    "anthropic": {"claude-haiku-4-5": {"input": 1, "output": 5}},
}
CLAUDE = "anthropic/claude-haiku-4-5"
NANOS = 10**9


@pytest.fixture(scope="module")
def priced(tmp_path_factory: pytest.TempPathFactory, fake_openai_server: FakeOpenAI,
           fake_anthropic_server: FakeAnthropic, fresh_database: Callable[[], str | None]) -> Iterator[GatewayProcess]:
    with hosted_gateway(tmp_path_factory.mktemp("costs"), fake_openai_server, fake_anthropic_server, quota=100,
                        database=fresh_database(), prices=PRICES) as gw:
        yield gw


@pytest.fixture
def gw(priced: GatewayProcess, fake_openai: FakeOpenAI, fake_anthropic: FakeAnthropic) -> GatewayProcess:
    accept_hosted_keys(fake_openai, fake_anthropic)
    return priced


@pytest.fixture
def tenant(gw: GatewayProcess, fake_openai: FakeOpenAI) -> tuple[str, str]:
    """A fresh tenant with its own key for the fake OpenAI (the fake Anthropic: hosted)."""
    name, token = new_tenant(gw)
    give_own_openai(gw, fake_openai, name)
    return name, token


def cost(model: str, usage: Any) -> int:
    """tokens x price, in nano-dollars."""
    price = PRICES[model.split("/")[0]][model.split("/")[1]]
    completion = getattr(usage, "completion_tokens", 0) or 0  # an embedding's usage has none
    return int(round(usage.prompt_tokens * price["input"] * 1000 + completion * price.get("output", 0) * 1000))


def rows_when(gw: GatewayProcess, tenant: str, count: int) -> list[dict[str, Any]]:
    wait_until(lambda: len(usage_rows(gw, tenant)) >= count, timeout=5)
    rows = usage_rows(gw, tenant)
    assert len(rows) == count, rows
    return rows


def chat(gw: GatewayProcess, token: str, model: str = "gpt-4o-mini") -> httpx.Response:
    """One request on a connection of its own, so that either worker may take it."""
    return httpx.post(f"{gw.base_url}/v1/chat/completions", json={"model": model, "messages": HI},
                      headers={"Authorization": f"Bearer {token}"}, timeout=15)


def set_budget(gw: GatewayProcess, *args: str) -> None:
    gw.cli("budgets", "set", *args)
    time.sleep(1.0)  # every worker reloads the tenant within its change poll (0.2 s here)


def test_the_cost_of_each_request_is_tokens_times_price(gw: GatewayProcess, tenant: tuple[str, str]) -> None:
    name, token = tenant
    sdk = gw.client(token)
    chat_usage = sdk.chat.completions.create(model="gpt-4o-mini", messages=HI).usage
    chunks = list(sdk.chat.completions.create(model="gpt-4o-mini", messages=HI, stream=True,
                                              stream_options={"include_usage": True}))
    stream_usage = chunks[-1].usage
    embedding = sdk.embeddings.create(model="text-embedding-3-small", input="some words to embed").usage
    hosted_usage = sdk.chat.completions.create(model=CLAUDE, messages=HI).usage
    # whisper-1 answers {"usage": {"type": "duration", "seconds": 1}} for this tenth of a second.
    assert sdk.audio.transcriptions.create(model="whisper-1", file=("a.wav", wav_bytes(), "audio/wav")).text
    unpriced = sdk.chat.completions.create(model="gpt-4o", messages=HI).usage
    expected = [cost("openai/gpt-4o-mini", chat_usage), cost("openai/gpt-4o-mini", stream_usage),
                cost("openai/text-embedding-3-small", embedding), cost(CLAUDE, hosted_usage),
                round(1 / 60 * 0.006 * NANOS)]
    assert all(expected) and unpriced.total_tokens > 0
    rows = rows_when(gw, name, 6)
    assert [r["cost_nanos"] for r in rows] == [*expected, None]  # the unpriced gpt-4o: null, never 0
    assert [r["billing"] for r in rows] == ["own", "own", "own", "hosted", "own", "own"]

    with httpx.Client(base_url=gw.base_url, headers={"Authorization": f"Bearer {token}"}, timeout=15) as client:
        summary = client.get("/v1/usage").json()
    groups = {g["key"]: g for g in summary["data"]}
    assert groups["openai/gpt-4o-mini"]["cost"] == pytest.approx((expected[0] + expected[1]) / NANOS, abs=1e-9)
    assert groups[CLAUDE]["cost"] == pytest.approx(expected[3] / NANOS, abs=1e-9)
    assert groups["openai/whisper-1"]["cost"] == pytest.approx(0.0001)
    assert (groups["openai/gpt-4o"]["cost"], groups["openai/gpt-4o"]["unpriced_requests"]) == (None, 1)
    assert groups["openai/gpt-4o-mini"]["unpriced_requests"] == 0
    assert summary["total"]["cost"] == pytest.approx(sum(expected) / NANOS, abs=1e-9)
    assert summary["total"]["unpriced_requests"] == 1

    table = gw.cli("usage", name).out.splitlines()
    assert table[0].split()[:2] == ["MODEL", "REQUESTS"] and "COST" in table[0].split()
    assert any(line.split()[0] == "openai/gpt-4o" and "unpriced" in line for line in table)
    assert any(line.split()[0] == "total" and "+" in line for line in table)
    by_cli = {g["key"]: g["cost"] for g in json.loads(gw.cli("--json", "usage", name).out)["data"]}
    assert by_cli == {k: g["cost"] for k, g in groups.items()}
    admin = httpx.get(gw.base_url + "/admin/v1/usage", params={"tenant": name, "group_by": "tenant"},
                      headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=15).json()
    assert admin["data"][0]["cost"] == summary["total"]["cost"]


def test_tenants_can_read_the_price_table(gw: GatewayProcess, tenant: tuple[str, str]) -> None:
    listed = httpx.get(gw.base_url + "/v1/prices", headers={"Authorization": f"Bearer {tenant[1]}"}, timeout=15)
    assert listed.status_code == 200
    body = listed.json()
    assert body["object"] == "list" and body["currency"] == "usd"
    by_id = {p["id"]: p for p in body["data"]}
    assert by_id["openai/gpt-4o-mini"] | {} == {"id": "openai/gpt-4o-mini", "object": "model.price",
                                               "provider": "openai", "model": "gpt-4o-mini", "input": 1000.0,
                                               "output": 2000.0, "per_call": None, "per_audio_minute": None}
    assert by_id["openai/gpt-3.5-turbo"]["per_call"] == 0.01 and "openai/gpt-4o" not in by_id
    assert httpx.get(gw.base_url + "/v1/prices", timeout=15).status_code == 401


def test_a_budget_of_two_calls_lets_two_through_and_refuses_the_third(gw: GatewayProcess, tenant: tuple[str, str],
                                                                      fake_openai: FakeOpenAI) -> None:
    name, token = tenant
    one = cost("openai/gpt-4o-mini", gw.client(token).chat.completions.create(model="gpt-4o-mini",
                                                                             messages=HI).usage)
    set_budget(gw, name, "--monthly", f"{2 * one / NANOS:.9f}")  # spend counts from here on
    assert [chat(gw, token).status_code for _ in range(2)] == [200, 200]
    with pytest.raises(openai.RateLimitError) as refused:
        gw.client(token).chat.completions.create(model="gpt-4o-mini", messages=HI)
    error = refused.value.body
    assert isinstance(error, dict) and (error["type"], error["code"]) == ("insufficient_quota", "budget_exceeded")
    assert error["message"].startswith("Budget exceeded for this tenant: ")
    assert refused.value.response.headers["x-should-retry"] == "false"

    fake_openai.state.requests.clear()
    responses = asyncio.run(burst(gw, token, 40))  # every worker refuses: the spend is in the database
    assert [r.status_code for r in responses] == [429] * 40
    assert len({r.headers["x-request-id"][:16] for r in responses}) == 2, "both workers should have answered"
    assert fake_openai.state.requests_to("/v1/chat/completions") == []  # refusals never reach the vendor
    shown = json.loads(gw.cli("--json", "budgets", "show", name).out)
    assert shown[0]["spent_this_month"] == pytest.approx(2 * one / NANOS, abs=1e-9)
    assert rows_when(gw, name, 44)[-1]["status"] == 429  # refusals are recorded, and cost nothing
    assert {r["cost_nanos"] for r in usage_rows(gw, name) if r["status"] == 429} == {0}


async def burst(gw: GatewayProcess, token: str, count: int, model: str = "gpt-4o-mini") -> list[httpx.Response]:
    """`count` requests at once, each on a new connection, so both workers take part."""
    limits = httpx.Limits(max_connections=count, max_keepalive_connections=0)
    async with httpx.AsyncClient(base_url=gw.base_url, headers={"Authorization": f"Bearer {token}"},
                                 timeout=httpx.Timeout(30.0), limits=limits) as client:
        return list(await asyncio.gather(*[
            client.post("/v1/chat/completions", json={"model": model, "messages": HI}) for _ in range(count)]))


def test_per_call_prices_hold_exactly_under_a_burst_across_workers(gw: GatewayProcess, tenant: tuple[str, str],
                                                                   fake_openai: FakeOpenAI) -> None:
    name, token = tenant
    set_budget(gw, name, "--daily", "0.03")  # three calls at $0.01
    fake_openai.state.requests.clear()
    fake_openai.state.delay = 0.05  # the winners are still upstream while the others are checked
    responses = asyncio.run(burst(gw, token, 40, "gpt-3.5-turbo"))
    statuses = [r.status_code for r in responses]
    assert statuses.count(200) == 3 and statuses.count(429) == 37, statuses
    assert len({r.headers["x-request-id"][:16] for r in responses}) == 2, "both workers should have answered"
    assert len(fake_openai.state.requests_to("/v1/chat/completions")) == 3
    assert json.loads(gw.cli("--json", "budgets", "show", name).out)[0]["spent_today"] == pytest.approx(0.03)


def test_unpriced_models_are_refused_under_a_budget_unless_allowed(gw: GatewayProcess,
                                                                   tenant: tuple[str, str]) -> None:
    name, token = tenant
    set_budget(gw, name, "--monthly", "5")
    with pytest.raises(openai.BadRequestError) as refused:
        gw.client(token).chat.completions.create(model="gpt-4o", messages=HI)
    assert refused.value.code == "unpriced_model" and "'openai/gpt-4o' has no price" in refused.value.message
    assert chat(gw, token, CLAUDE).status_code == 200  # a hosted trial is not the tenant's spending
    set_budget(gw, name, "--monthly", "5", "--allow-unpriced")
    assert chat(gw, token, "gpt-4o").status_code == 200
    rows = rows_when(gw, name, 3)
    assert [(r["model"], r["status"], r["cost_nanos"]) for r in rows][2] == ("gpt-4o", 200, None)
    assert json.loads(gw.cli("--json", "budgets", "show", name).out)[0]["spent_this_month"] == 0


def test_budgets_from_the_cli(gw: GatewayProcess, tenant: tuple[str, str]) -> None:
    name, token = tenant
    token_id = json.loads(gw.cli("--json", "tokens", "list", name).out)[0]["id"]
    out = json.loads(gw.cli("--json", "budgets", "set", name, "--monthly", "50", "--daily", "2").out)
    assert (out["monthly"], out["daily"], out["token_id"], out["spent_this_month"]) == (50.0, 2.0, None, 0.0)
    gw.cli("budgets", "set", name, "--token", token_id, "--monthly", "0")  # this token: nothing at all
    time.sleep(1.0)
    refused = chat(gw, token)
    assert refused.status_code == 429 and "this API token" in refused.json()["error"]["message"]
    text = gw.cli("budgets", "show", name).out
    assert token_id in text and "50" in text
    shown = json.loads(gw.cli("--json", "budgets", "show", name).out)
    assert [(b["token_id"], b["monthly"], b["daily"]) for b in shown] == [(None, 50.0, 2.0), (token_id, 0.0, None)]
    gw.cli("budgets", "clear", name, "--token", token_id)
    time.sleep(1.0)
    assert chat(gw, token).status_code == 200
    assert gw.cli("budgets", "clear", name, "--token", token_id, check=False).code == 1  # nothing left to clear
    assert gw.cli("budgets", "set", name, check=False).code == 1                      # no amount
    assert gw.cli("budgets", "set", name, "--monthly", "-1", check=False).code == 1
    assert gw.cli("budgets", "set", name, "--token", "tok_none", "--daily", "1", check=False).code == 1
    gw.cli("budgets", "clear", name)
    assert json.loads(gw.cli("--json", "budgets", "show", name).out) == []


def test_budgets_from_the_admin_api(gw: GatewayProcess, tenant: tuple[str, str]) -> None:
    name, token = tenant
    with httpx.Client(base_url=f"{gw.base_url}/admin/v1/tenants/{name}", timeout=15,
                      headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}) as admin:
        put = admin.put("/budgets", json={"monthly": 12.5, "allow_unpriced": True})
        assert put.status_code == 200 and put.json()["monthly"] == 12.5 and put.json()["allow_unpriced"]
        assert admin.put("/budgets", json={"monthly": "lots"}).status_code == 400
        assert admin.put("/budgets", json={"weekly": 1}).status_code == 400
        listed = admin.get("/budgets").json()
        assert listed["object"] == "list" and [b["monthly"] for b in listed["data"]] == [12.5]
        assert admin.delete("/budgets").json() == {"token_id": None, "deleted": True}
        assert admin.delete("/budgets").status_code == 404
    assert httpx.get(f"{gw.base_url}/admin/v1/tenants/{name}/budgets", timeout=15,
                     headers={"Authorization": f"Bearer {token}"}).status_code == 401
