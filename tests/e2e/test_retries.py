"""Retries and fallbacks (issue 13), on a gateway of this module's own with retries on
(the shared harness turns them off), against the fake OpenAI and Anthropic vendors,
called with the official openai SDK."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

from tests.e2e.harness import GatewayProcess
from emulators.anthropic import DEFAULT_API_KEY as ANTHROPIC_KEY
from tests.fakes.anthropic_fixtures import FakeAnthropic
from tests.fakes.fixtures import FakeOpenAI
from emulators.openai import DEFAULT_API_KEY as OPENAI_KEY
from emulators.server import free_port

HI: list[ChatCompletionMessageParam] = [{"role": "user", "content": "hi"}]
CLAUDE = "claude-haiku-4-5"


def error_body(message: str, **extra: Any) -> dict[str, Any]:
    return {"error": {"message": message, "type": extra.pop("type", "server_error"), "param": None,
                      "code": extra.pop("code", None), **extra}}


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory, fake_openai_server: FakeOpenAI,
       fake_anthropic_server: FakeAnthropic) -> Iterator[GatewayProcess]:
    gateway = GatewayProcess(tmp_path_factory.mktemp("retries"), workers=2, settings={
        "routing": {"retries": 2, "backoff_base": 0.01, "backoff_max": 0.05, "max_retry_after": 2}})
    gateway.port = free_port()
    gateway.write_config()
    gateway.cli("tenants", "create", "rt")
    gateway.cli("providers", "set", "rt", "openai", f"api_key={OPENAI_KEY}", f"base_url={fake_openai_server.v1_url}")
    gateway.cli("providers", "set", "rt", "anthropic", f"api_key={ANTHROPIC_KEY}",
                f"base_url={fake_anthropic_server.base_url}")
    gateway.cli("defaults", "set", "rt", "llm", "openai/gpt-4o-mini")
    gateway.cli("tenants", "create", "rt-down")
    # Nothing listens there: every attempt is a connect error.
    gateway.cli("providers", "set", "rt-down", "openai", f"api_key={OPENAI_KEY}",
                f"base_url=http://127.0.0.1:{free_port()}/v1")
    gateway.cli("providers", "set", "rt-down", "openai", "--name", "second", f"api_key={OPENAI_KEY}",
                f"base_url=http://127.0.0.1:{free_port()}/v1")  # both of OpenAI's keys are down
    gateway.cli("providers", "set", "rt-down", "anthropic", f"api_key={ANTHROPIC_KEY}",
                f"base_url={fake_anthropic_server.base_url}")
    gateway.cli("fallbacks", "set", "rt-down", "openai/gpt-4o-mini", f"anthropic/{CLAUDE}")
    gateway.tokens["rt"] = gateway.new_token("rt")
    gateway.tokens["rt-down"] = gateway.new_token("rt-down")
    with gateway.running():
        yield gateway


def raw(gw: GatewayProcess, tenant: str = "rt") -> httpx.Client:
    return httpx.Client(base_url=gw.v1_url, headers={"Authorization": f"Bearer {gw.tokens[tenant]}"}, timeout=20)


def chat_requests(fake: FakeOpenAI) -> int:
    return len(fake.state.requests_to("/v1/chat/completions"))


def usage_rows(gw: GatewayProcess, tenant: str) -> list[dict[str, Any]]:
    import sqlite3

    with sqlite3.connect(gw.data_dir / "modelport.db") as db:
        db.row_factory = sqlite3.Row
        return [dict(r) for r in db.execute(
            "SELECT u.* FROM usage u JOIN tenants t ON t.id = u.tenant_id WHERE t.name = ? ORDER BY u.id", (tenant,))]


def test_a_503_is_retried_and_the_headers_say_what_served(gw: GatewayProcess, fake_openai: FakeOpenAI) -> None:
    fake_openai.state.fail_next.append((503, error_body("The engine is currently overloaded.")))
    with raw(gw) as client:
        response = client.post("/chat/completions", json={"model": "default", "messages": HI})
    assert response.status_code == 200, response.text
    assert response.headers["x-modelport-attempts"] == "2"
    assert response.headers["x-modelport-provider"] == "openai"
    assert response.headers["x-modelport-model"] == "gpt-4o-mini"
    overhead = float(response.headers["x-modelport-overhead-ms"])
    assert 0 < overhead < 1000
    assert chat_requests(fake_openai) == 2


def test_usage_records_the_attempts(gw: GatewayProcess, fake_openai: FakeOpenAI) -> None:
    fake_openai.state.fail_next.extend([(502, "Bad gateway"), (500, error_body("oops"))])
    with raw(gw) as client:
        response = client.post("/chat/completions", json={"model": "default", "messages": HI,
                                                          "user": "usage-attempts"})
    assert response.status_code == 200 and response.headers["x-modelport-attempts"] == "3"
    request_id = response.headers["x-request-id"]
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        rows = [r for r in usage_rows(gw, "rt") if r["request_id"] == request_id]
        if rows:
            break
        time.sleep(0.1)
    assert [(r["attempts"], r["credential"], r["status"]) for r in rows] == [(3, "default", 200)]


def test_the_openai_sdk_sees_one_success_through_429s(gw: GatewayProcess, fake_openai: FakeOpenAI) -> None:
    fake_openai.state.fail_next.extend([
        (429, error_body("Rate limit reached for gpt-4o-mini.", type="requests", code="rate_limit_exceeded"),
         {"retry-after": "0.2"}),
        (429, error_body("Rate limit reached for gpt-4o-mini.", type="requests", code="rate_limit_exceeded"),
         {"retry-after": "0.2"})])
    sdk = openai.OpenAI(base_url=gw.v1_url, api_key=gw.tokens["rt"], max_retries=0, timeout=20)
    started = time.monotonic()
    raw_response = sdk.chat.completions.with_raw_response.create(model="default", messages=HI)
    assert raw_response.headers["x-modelport-attempts"] == "3"
    assert raw_response.parse().choices[0].message.content
    assert time.monotonic() - started >= 0.4  # Retry-After was honoured twice


@pytest.mark.parametrize("failure", [
    (400, error_body("Invalid 'temperature'.", type="invalid_request_error", param="temperature")),
    (404, error_body("The model does not exist.", type="invalid_request_error", code="model_not_found")),
    (429, error_body("You exceeded your current quota.", type="insufficient_quota", code="insufficient_quota")),
], ids=["400", "404", "insufficient-quota"])
def test_the_requests_own_fault_is_not_retried(gw: GatewayProcess, fake_openai: FakeOpenAI,
                                               failure: Any) -> None:
    fake_openai.state.fail_next.extend([failure, failure, failure])
    with raw(gw) as client:
        response = client.post("/chat/completions", json={"model": "default", "messages": HI})
    assert response.status_code == failure[0]
    assert response.headers["x-modelport-attempts"] == "1"
    assert chat_requests(fake_openai) == 1


def test_a_long_retry_after_is_not_waited_for(gw: GatewayProcess, fake_openai: FakeOpenAI) -> None:
    fake_openai.state.fail_next.extend([(429, error_body("slow down", code="rate_limit_exceeded"),
                                         {"retry-after": "30"})] * 3)
    started = time.monotonic()
    with raw(gw) as client:
        response = client.post("/chat/completions", json={"model": "default", "messages": HI})
    assert response.status_code == 429 and response.headers["retry-after"] == "30"
    assert time.monotonic() - started < 5
    assert chat_requests(fake_openai) == 1


def test_connect_errors_are_retried_then_the_fallback_answers(gw: GatewayProcess,
                                                              fake_anthropic: FakeAnthropic) -> None:
    sdk = openai.OpenAI(base_url=gw.v1_url, api_key=gw.tokens["rt-down"], max_retries=0, timeout=20)
    raw_response = sdk.chat.completions.with_raw_response.create(model="openai/gpt-4o-mini", messages=HI)
    assert raw_response.headers["x-modelport-provider"] == "anthropic"
    assert raw_response.headers["x-modelport-model"] == CLAUDE
    assert raw_response.headers["x-modelport-attempts"] == "4"  # 3 tries on openai's two keys, 1 on anthropic
    assert raw_response.parse().choices[0].message.content
    assert len(fake_anthropic.state.requests) == 1
    # Streams too: nothing was sent before the fallback answered.
    chunks = list(sdk.chat.completions.create(model="openai/gpt-4o-mini", messages=HI, stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


def test_a_stream_that_fails_before_its_first_byte_is_retried(gw: GatewayProcess, fake_openai: FakeOpenAI) -> None:
    fake_openai.state.fail_next.append((503, error_body("overloaded")))
    with raw(gw) as client, client.stream("POST", "/chat/completions",
                                          json={"model": "default", "messages": HI, "stream": True}) as response:
        assert response.status_code == 200
        assert response.headers["x-modelport-attempts"] == "2"
        assert "x-modelport-overhead-ms" in response.headers
        body = response.read().decode()
    assert body.rstrip().endswith("data: [DONE]")


def test_a_stream_that_fails_after_its_first_byte_is_not_retried(gw: GatewayProcess,
                                                                  fake_openai: FakeOpenAI) -> None:
    fake_openai.state.fail_after_chunks = 1
    with raw(gw) as client, client.stream("POST", "/chat/completions",
                                          json={"model": "default", "messages": HI, "stream": True}) as response:
        assert response.status_code == 200
        events = [line for line in response.read().decode().splitlines() if line.startswith("data: ")]
    assert any("error" in json.loads(e[6:]) for e in events if e != "data: [DONE]")
    assert chat_requests(fake_openai) == 1


def test_fallbacks_through_the_cli_and_the_admin_api(gw: GatewayProcess) -> None:
    assert "anthropic/claude-haiku-4-5" in gw.cli("fallbacks", "show", "rt-down").out
    bad = gw.cli("fallbacks", "set", "rt", "openai/gpt-4o-mini", "openai/gpt-4o-mini", check=False)
    assert bad.code == 1 and "its own fallback" in bad.err
    assert gw.cli("fallbacks", "set", "rt", "gpt-4o-mini", "x", check=False).code == 1
    admin = httpx.Client(base_url=gw.base_url + "/admin/v1", timeout=10,
                         headers={"Authorization": f"Bearer {gw.admin_token()}"})
    with admin:
        put = admin.put("/tenants/rt/fallbacks/openai/gpt-4o", json={"fallbacks": [f"anthropic/{CLAUDE}"]})
        assert put.status_code == 200 and put.json() == {"model": "openai/gpt-4o", "fallbacks": [f"anthropic/{CLAUDE}"]}
        assert {"model": "openai/gpt-4o", "fallbacks": [f"anthropic/{CLAUDE}"]} in \
            admin.get("/tenants/rt/fallbacks").json()["data"]
        assert admin.delete("/tenants/rt/fallbacks/openai/gpt-4o").status_code == 200
        assert admin.delete("/tenants/rt/fallbacks/openai/gpt-4o").status_code == 404
        assert admin.put("/tenants/rt/fallbacks/openai/gpt-4o", json={"fallbacks": []}).status_code == 400


def test_a_hosted_trial_counts_only_the_attempt_that_served(
        tmp_path_factory: pytest.TempPathFactory, fake_openai_server: FakeOpenAI,
        fake_anthropic_server: FakeAnthropic) -> None:
    from tests.e2e.hosted_setup import accept_hosted_keys, hosted_gateway, new_tenant

    routing = {"retries": 2, "backoff_base": 0.01, "backoff_max": 0.05}
    with hosted_gateway(tmp_path_factory.mktemp("hosted-retries"), fake_openai_server, fake_anthropic_server,
                        quota=5, workers=1, routing=routing) as hosted:
        fake_openai_server.reset()
        accept_hosted_keys(fake_openai_server, fake_anthropic_server)
        tenant, token = new_tenant(hosted)
        fake_openai_server.state.fail_next.extend([(503, error_body("overloaded")), (502, "Bad gateway")])
        with httpx.Client(base_url=hosted.base_url, headers={"Authorization": f"Bearer {token}"}, timeout=20) as c:
            served = c.post("/v1/chat/completions", json={"model": "openai/gpt-3.5-turbo", "messages": HI})
            assert served.status_code == 200 and served.headers["x-modelport-attempts"] == "3"
            quota = next(r for r in c.get("/v1/quota").json()["data"] if r["provider"] == "openai")
            assert quota["used"] == 1  # three upstream calls, one counted
            # A request that fails on every attempt costs one call, not three.
            fake_openai_server.state.fail_next.extend([(503, error_body("overloaded"))] * 3)
            failed = c.post("/v1/chat/completions", json={"model": "openai/gpt-3.5-turbo", "messages": HI})
            assert failed.status_code == 503 and failed.headers["x-modelport-attempts"] == "3"
            quota = next(r for r in c.get("/v1/quota").json()["data"] if r["provider"] == "openai")
            assert quota["used"] == 2
        assert tenant
