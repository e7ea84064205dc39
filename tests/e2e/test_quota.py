"""Hosted trial quotas end to end: a 2-worker gateway whose `hosted:` section lends the
fake OpenAI and the fake Anthropic on platform keys; each test uses fresh tenants.

Checked: exact counting under concurrency across workers, what is spent, precedence of a
tenant's own credential, the allowed-model list, the exhaustion error through the
openai SDK, hosted defaults, /v1/quota, the CLI and admin API, and that the platform
keys never leave the gateway.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import openai
import pytest

from tests.e2e.harness import GatewayProcess
from tests.e2e.hosted_setup import (
    ADMIN_TOKEN,
    ANTHROPIC_MODELS,
    HI,
    HOSTED_ANTHROPIC_KEY,
    HOSTED_OPENAI_KEY,
    OPENAI_MODELS,
    accept_hosted_keys,
    give_own_openai,
    hosted_gateway,
    new_tenant,
    wait_until,
)
from tests.fakes.anthropic_fixtures import FakeAnthropic
from tests.fakes.fixtures import FakeOpenAI

QUOTA = 5
SEEN_BODIES: list[str] = []  # every response body of this module, checked for the platform keys


@pytest.fixture(scope="module")
def hosted(tmp_path_factory: pytest.TempPathFactory, fake_openai_server: FakeOpenAI,
           fake_anthropic_server: FakeAnthropic, fresh_database: Callable[[], str | None]) -> Iterator[GatewayProcess]:
    with hosted_gateway(tmp_path_factory.mktemp("quota"), fake_openai_server, fake_anthropic_server,
                        quota=QUOTA, database=fresh_database()) as gw:
        yield gw


@pytest.fixture
def gw(hosted: GatewayProcess, fake_openai: FakeOpenAI, fake_anthropic: FakeAnthropic) -> GatewayProcess:
    accept_hosted_keys(fake_openai, fake_anthropic)
    return hosted


def http(gw: GatewayProcess, token: str) -> httpx.Client:
    return httpx.Client(base_url=gw.base_url, headers={"Authorization": f"Bearer {token}"}, timeout=15.0,
                        event_hooks={"response": [lambda r: SEEN_BODIES.append(r.read().decode())]})


def chat(client: httpx.Client, model: str, stream: bool = False) -> httpx.Response:
    return client.post("/v1/chat/completions", json={"model": model, "messages": HI, "stream": stream})


def quota_of(client: httpx.Client, provider: str = "openai") -> dict[str, Any]:
    response = client.get("/v1/quota")
    assert response.status_code == 200, response.text
    return next(row for row in response.json()["data"] if row["provider"] == provider)


def upstream_keys(fake: FakeOpenAI) -> list[str]:
    return [r.headers.get("authorization", "") for r in fake.state.requests]


# -- counting ------------------------------------------------------------------------------


async def burst(gw: GatewayProcess, token: str, count: int) -> list[httpx.Response]:
    """`count` requests at once, each on a new connection, so both workers take part."""
    limits = httpx.Limits(max_connections=count, max_keepalive_connections=0)
    async with httpx.AsyncClient(base_url=gw.base_url, headers={"Authorization": f"Bearer {token}"},
                                 timeout=httpx.Timeout(30.0), limits=limits) as client:
        return list(await asyncio.gather(*[
            client.post("/v1/chat/completions", json={"model": "openai/gpt-3.5-turbo", "messages": HI})
            for _ in range(count)]))


def test_100_concurrent_requests_against_3_remaining_give_exactly_3(gw: GatewayProcess,
                                                                    fake_openai: FakeOpenAI) -> None:
    # Sync test driving its own loop: the CLI (asyncio.run) cannot run inside a running loop.
    _, token = new_tenant(gw)
    with http(gw, token) as client:
        for _ in range(QUOTA - 3):
            assert chat(client, "gpt-3.5-turbo").status_code == 200
        assert quota_of(client)["remaining"] == 3
    fake_openai.state.requests.clear()
    fake_openai.state.delay = 0.05  # the 3 winners are still upstream while the others reserve

    responses = asyncio.run(burst(gw, token, 100))
    statuses = sorted(r.status_code for r in responses)
    assert statuses.count(200) == 3 and statuses.count(429) == 97, \
        [(r.status_code, r.text[:300]) for r in responses if r.status_code not in (200, 429)]
    refused = next(r for r in responses if r.status_code == 429).json()["error"]
    assert refused["type"] == refused["code"] == "insufficient_quota"
    assert len(fake_openai.state.requests) == 3
    with http(gw, token) as client:
        assert quota_of(client) | {"models": None} == {"provider": "openai", "limit": QUOTA, "used": QUOTA,
                                                       "remaining": 0, "models": None, "own_credential": False}


def test_a_vendor_error_is_a_spent_call(gw: GatewayProcess, fake_openai: FakeOpenAI) -> None:
    # The request reached the operator's account: it may be billed or rate-counted there.
    # Only a call that never left the gateway is given back (tests/e2e/test_hosted_guard.py).
    _, token = new_tenant(gw)
    boom = {"error": {"message": "boom", "type": "server_error", "param": None, "code": None}}
    with http(gw, token) as client:
        fake_openai.state.fail_next.append((500, boom))
        assert chat(client, "gpt-3.5-turbo").status_code == 502
        assert quota_of(client)["used"] == 1
        fake_openai.state.fail_next.append((500, boom))
        assert chat(client, "gpt-3.5-turbo", stream=True).status_code == 502  # the first chunk raised
        assert quota_of(client)["used"] == 2
        assert chat(client, "gpt-3.5-turbo").status_code == 200
        assert quota_of(client)["used"] == 3


def test_a_stream_counts_once_started_even_if_it_fails_later(gw: GatewayProcess, fake_openai: FakeOpenAI) -> None:
    _, token = new_tenant(gw)
    fake_openai.state.fail_after_chunks = 2
    with http(gw, token) as client:
        response = chat(client, "gpt-3.5-turbo", stream=True)
        assert response.status_code == 200 and '"error"' in response.text and "[DONE]" not in response.text
        assert quota_of(client)["used"] == 1


# -- resolution ----------------------------------------------------------------------------


def test_own_credential_wins_and_spends_no_trial(gw: GatewayProcess, fake_openai: FakeOpenAI) -> None:
    tenant, token = new_tenant(gw)
    own_key = give_own_openai(gw, fake_openai, tenant)
    with http(gw, token) as client:
        wait_until(lambda: quota_of(client)["own_credential"])
        fake_openai.state.requests.clear()
        for model in ("gpt-3.5-turbo", "openai/gpt-3.5-turbo", "gpt-4o"):  # gpt-4o: not on the trial list
            assert chat(client, model).status_code == 200
        assert chat(client, "gpt-3.5-turbo", stream=True).status_code == 200
        assert client.post("/v1/embeddings", json={"model": "text-embedding-3-small", "input": "x"}).status_code \
            == 200
        assert upstream_keys(fake_openai) == [f"Bearer {own_key}"] * 5
        row = quota_of(client)
        assert row["used"] == 0 and row["own_credential"] is True
        listed = client.get("/v1/models").json()["data"]
        assert not any(e.get("hosted") for e in listed if e["owned_by"] == "openai")
        # anthropic: no credential of its own, so the trial is still there
        assert [e["id"] for e in listed if e.get("hosted")] == ANTHROPIC_MODELS


def test_models_off_the_list_are_403_naming_the_allowed_ones(gw: GatewayProcess, fake_openai: FakeOpenAI) -> None:
    tenant, token = new_tenant(gw)
    with http(gw, token) as client:
        for model in ("openai/gpt-4o", "gpt-4o"):
            response = chat(client, model)
            assert response.status_code == 403, response.text
            error = response.json()["error"]
            assert error["code"] == "model_not_allowed" and error["param"] == "model"
            assert all(m in error["message"] for m in OPENAI_MODELS)
            assert f"modelport providers set {tenant} openai api_key=" in error["message"]
        assert chat(client, "llama-nonexistent").status_code == 404
    assert fake_openai.state.requests == []


def test_hosted_models_are_listed_and_reachable_by_bare_name(gw: GatewayProcess, fake_openai: FakeOpenAI,
                                                           fake_anthropic: FakeAnthropic) -> None:
    _, token = new_tenant(gw)
    with http(gw, token) as client:
        listed = {e["id"]: e for e in client.get("/v1/models").json()["data"]}
        assert set(listed) == {*OPENAI_MODELS, *ANTHROPIC_MODELS}
        assert listed["text-embedding-3-small"]["type"] == "text-embedding"
        assert all(e["hosted"] for e in listed.values())
        assert chat(client, "claude-haiku-4-5").status_code == 200
        assert client.post("/v1/embeddings", json={"model": "text-embedding-3-small", "input": "x"}).status_code \
            == 200
        assert quota_of(client, "anthropic")["used"] == 1 and quota_of(client)["used"] == 1
    assert fake_anthropic.state.requests[-1].headers["x-api-key"] == HOSTED_ANTHROPIC_KEY
    assert upstream_keys(fake_openai) == [f"Bearer {HOSTED_OPENAI_KEY}"]


def test_exhaustion_through_the_openai_sdk(gw: GatewayProcess) -> None:
    tenant, token = new_tenant(gw)
    gw.cli("quota", "set", tenant, "openai", "1")
    sdk = gw.client(token)
    assert sdk.chat.completions.create(model="gpt-3.5-turbo", messages=HI).choices[0].message.content
    with pytest.raises(openai.RateLimitError) as exc:
        sdk.chat.completions.create(model="gpt-3.5-turbo", messages=HI)
    err = exc.value
    assert err.status_code == 429 and err.code == "insufficient_quota" and err.type == "insufficient_quota"
    assert "(1 of 1 calls)" in err.message and "openai" in err.message
    assert f"modelport providers set {tenant} openai api_key=..." in err.message
    assert err.response.headers["x-should-retry"] == "false"  # the SDK's own retries would not help
    with pytest.raises(openai.RateLimitError):  # streams too
        sdk.chat.completions.create(model="gpt-3.5-turbo", messages=HI, stream=True)
    SEEN_BODIES.append(err.message)


def test_hosted_default(gw: GatewayProcess, fake_openai: FakeOpenAI) -> None:
    tenant, token = new_tenant(gw)
    assert "gpt-3.5-turbo" in gw.cli("defaults", "set", tenant, "llm", "openai/gpt-3.5-turbo").out
    refused = gw.cli("defaults", "set", tenant, "llm", "openai/gpt-4o", check=False)
    assert refused.code == 1 and "Allowed models: gpt-3.5-turbo" in refused.err
    with http(gw, token) as client:
        wait_until(lambda: chat(client, "default").status_code == 200)
        assert quota_of(client)["used"] >= 1
    assert fake_openai.state.last_request.json["model"] == "gpt-3.5-turbo"
    assert fake_openai.state.last_request.headers["authorization"] == f"Bearer {HOSTED_OPENAI_KEY}"


def test_the_pickers_offer_a_trial_only_while_it_has_calls_left(gw: GatewayProcess) -> None:
    """The console's default pickers (GET .../defaults/choices) and `defaults set` agree:
    a hosted trial's listed models are choices until its calls are spent, then refused."""
    tenant, _ = new_tenant(gw)
    admin = httpx.Client(base_url=gw.base_url + "/admin/v1", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
                         timeout=10)
    with admin:
        llm = admin.get(f"/tenants/{tenant}/defaults/choices").json()["llm"]["options"]
        assert {(o["provider"], o["model"], o["source"]) for o in llm} >= {("openai", "gpt-3.5-turbo", "hosted")}
        assert admin.put(f"/tenants/{tenant}/defaults/llm", json={"model": "openai/gpt-3.5-turbo"}).status_code == 200
        gw.cli("quota", "set", tenant, "openai", "0")
        after = admin.get(f"/tenants/{tenant}/defaults/choices").json()["llm"]
        assert not [o for o in after["options"] if o["provider"] == "openai"]
        assert after["current"] == "openai/gpt-3.5-turbo" and after["usable"] is False
        refused = admin.put(f"/tenants/{tenant}/defaults/llm", json={"model": "openai/gpt-3.5-turbo"})
        assert refused.status_code == 400 and refused.json()["error"]["code"] == "insufficient_quota"


# -- reporting and management --------------------------------------------------------------


def test_quota_numbers_cli_and_admin_api(gw: GatewayProcess) -> None:
    tenant, token = new_tenant(gw)
    with http(gw, token) as client:
        for _ in range(2):
            assert chat(client, "gpt-3.5-turbo").status_code == 200
        rows = client.get("/v1/quota").json()["data"]
        assert rows == [
            {"provider": "anthropic", "limit": QUOTA, "used": 0, "remaining": QUOTA, "models": ANTHROPIC_MODELS,
             "own_credential": False},
            {"provider": "openai", "limit": QUOTA, "used": 2, "remaining": QUOTA - 2, "models": OPENAI_MODELS,
             "own_credential": False},
        ]
        shown = gw.cli("quota", "show", tenant).out
        assert "PROVIDER" in shown and "gpt-3.5-turbo-16k" in shown
        assert [line.split()[:4] for line in shown.splitlines()[1:]] == [
            ["anthropic", str(QUOTA), "0", str(QUOTA)], ["openai", str(QUOTA), "2", str(QUOTA - 2)]]

        gw.cli("quota", "set", tenant, "openai", "10")  # grant more: the calls made still count
        assert quota_of(client) | {"models": None} == {"provider": "openai", "limit": 10, "used": 2,
                                                       "remaining": 8, "models": None, "own_credential": False}
        gw.cli("quota", "set", tenant, "openai", "-1")
        assert (quota_of(client)["limit"], quota_of(client)["remaining"]) == (-1, -1)
        gw.cli("quota", "set", tenant, "openai", "default")
        assert quota_of(client)["limit"] == QUOTA
        bad = gw.cli("quota", "set", tenant, "azure_openai", "3", check=False)
        assert bad.code == 1 and "not hosted" in bad.err

    admin = httpx.Client(base_url=gw.base_url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=10)
    with admin:
        listed = admin.get(f"/admin/v1/tenants/{tenant}/quota").json()["data"]
        assert [(r["provider"], r["used"]) for r in listed] == [("anthropic", 0), ("openai", 2)]
        put = admin.put(f"/admin/v1/tenants/{tenant}/quota/anthropic", json={"limit": 7})
        assert put.status_code == 200 and put.json()["limit"] == 7 and put.json()["remaining"] == 7
        assert admin.put(f"/admin/v1/tenants/{tenant}/quota/anthropic", json={"limit": -5}).status_code == 400
        assert admin.put(f"/admin/v1/tenants/{tenant}/quota/nope", json={"limit": 5}).status_code == 400
        assert admin.get("/admin/v1/tenants/no-such-tenant/quota").status_code == 404
        SEEN_BODIES.extend(r.text for r in (put,))


def test_quota_writes_do_not_invalidate_worker_caches(gw: GatewayProcess) -> None:
    _, token = new_tenant(gw)
    def changes() -> str:
        return str(gw.sql("SELECT value FROM meta WHERE key = 'changes'")[0][0])

    before = changes()
    with http(gw, token) as client:
        for _ in range(3):
            assert chat(client, "gpt-3.5-turbo").status_code == 200
    assert changes() == before


# -- secrets -------------------------------------------------------------------------------


def test_a_rejected_platform_key_is_the_operators_problem(gw: GatewayProcess, fake_openai: FakeOpenAI) -> None:
    _, token = new_tenant(gw)
    fake_openai.state.api_keys.discard(HOSTED_OPENAI_KEY)
    with http(gw, token) as client:
        for stream in (False, True):
            response = chat(client, "gpt-3.5-turbo", stream=stream)
            error = response.json()["error"]
            # Not the tenant's credential, so not a 403 telling it to fix one; and the vendor's
            # message (which quotes the key's tail) does not reach the tenant.
            assert response.status_code == 502 and error["code"] == "hosted_credential_rejected", response.text
            assert HOSTED_OPENAI_KEY[-4:] not in response.text
        # Spent: the requests reached the vendor on the operator's account (the gateway cannot
        # tell a revoked key from one the vendor counts against a rate or abuse limit).
        assert quota_of(client)["used"] == 2
    assert "hosted credential of provider openai was rejected" in gw.log()


def test_platform_keys_never_leave_the_gateway(gw: GatewayProcess) -> None:
    """Runs last in this module: every response seen so far, the log and the database."""
    assert SEEN_BODIES
    for key in (HOSTED_OPENAI_KEY, HOSTED_ANTHROPIC_KEY):
        assert not any(key in body for body in SEEN_BODIES)
        assert key not in gw.log()
        for raw in gw.stored_bytes().values():
            assert key.encode() not in raw
        assert key[-8:] not in gw.log()
