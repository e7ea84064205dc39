"""Rate limits end to end (issue 13), on the session gateway (2 workers, the fake OpenAI);
each test makes its own tenant.

Checked: exactly 10 of 100 concurrent requests pass an rpm of 10 across both workers, the
others get OpenAI's 429 with retry-after and x-ratelimit-* and never reach the vendor;
the openai SDK raises RateLimitError; a token's limit leaves the tenant's other tokens
alone and a model's limit the other models; a token limit settles with the vendor's real
usage (streams too); the CLI and the admin API; a console token sees its own tenant's
limits only; clearing a limit lifts it on every worker within about a second.

Counters are per UTC minute: a test that must stay within one minute first waits for
the next one when too little of the current one is left (`same_minute`).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import httpx
import openai
import pytest

from tests.e2e.harness import ACME_KEY, GatewayProcess, ProviderTenant, provider_tenant
from tests.e2e.test_admin_api import Admin
from tests.fakes.fixtures import FakeOpenAI

LIMITED = "openai/gpt-4o-mini"
OTHER = "openai/gpt-3.5-turbo"
HI = [{"role": "user", "content": "hi"}]


@pytest.fixture
def tenant(gw: GatewayProcess, fake_openai: FakeOpenAI) -> Iterator[ProviderTenant]:
    with provider_tenant(gw, "rl", [("providers", "set", "openai", f"api_key={ACME_KEY}",
                                     f"base_url={fake_openai.v1_url}"),
                                    ("defaults", "set", "llm", LIMITED)]) as made:
        yield made


def same_minute(seconds: float) -> None:
    """Make sure `seconds` fit before the minute turns (the counters start again then)."""
    left = 60 - time.time() % 60
    if left < seconds:
        time.sleep(left + 0.1)


def chat(gw: GatewayProcess, token: str, model: str = LIMITED, messages: list[dict[str, str]] = HI) -> httpx.Response:
    """One request on a connection of its own, so that either worker may take it."""
    return httpx.post(f"{gw.base_url}/v1/chat/completions", json={"model": model, "messages": messages},
                      headers={"Authorization": f"Bearer {token}"}, timeout=15)


def on_every_worker(check: Callable[[], bool], timeout: float = 5.0, streak: int = 8) -> float:
    """`check` (a request on a new connection each time) held `streak` times in a row,
    so both workers agree; returns the seconds it took."""
    start, seen = time.monotonic(), 0
    while seen < streak:
        if time.monotonic() - start > timeout:
            raise AssertionError(f"the workers did not agree within {timeout}s")
        seen = seen + 1 if check() else 0
    return time.monotonic() - start


@contextmanager
def probe_limit(gw: GatewayProcess, tenant: ProviderTenant, probe_token: str | None = None,
                rpm: int = 1000) -> Iterator[None]:
    """Limits set inside are live on both workers after it: a probe limit on another model,
    written after them, is seen by each worker (a worker reloads all of a tenant's limits).
    The probe token must be under no other limit of that model."""
    yield
    gw.cli("limits", "set", tenant.name, "--model", OTHER, "--rpm", str(rpm))
    token = probe_token or tenant.token
    on_every_worker(lambda: chat(gw, token, OTHER).headers.get("x-ratelimit-limit-requests") == str(rpm))


def token_id(gw: GatewayProcess, tenant: str, name: str) -> str:
    tokens = json.loads(gw.cli("tokens", "list", tenant, "--json").out)
    return str(next(t["id"] for t in tokens if t["name"] == name))


async def burst(gw: GatewayProcess, token: str, count: int) -> list[httpx.Response]:
    """`count` requests at once, each on a new connection, so both workers take part."""
    limits = httpx.Limits(max_connections=count, max_keepalive_connections=0)
    async with httpx.AsyncClient(base_url=gw.base_url, headers={"Authorization": f"Bearer {token}"},
                                 timeout=httpx.Timeout(30.0), limits=limits) as client:
        return list(await asyncio.gather(*[
            client.post("/v1/chat/completions", json={"model": LIMITED, "messages": HI}) for _ in range(count)]))


def test_exactly_10_of_100_concurrent_requests_pass_10_rpm_across_two_workers(
        gw: GatewayProcess, tenant: ProviderTenant, fake_openai: FakeOpenAI) -> None:
    with probe_limit(gw, tenant):
        gw.cli("limits", "set", tenant.name, "--model", LIMITED, "--rpm", "10")
    same_minute(5)
    fake_openai.state.requests.clear()
    fake_openai.state.delay = 0.05  # the winners are still upstream while the others are counted

    responses = asyncio.run(burst(gw, tenant.token, 100))  # about half a second
    statuses = [r.status_code for r in responses]
    assert statuses.count(200) == 10 and statuses.count(429) == 90, \
        [(r.status_code, r.text[:200]) for r in responses if r.status_code not in (200, 429)]
    assert len({r.headers["x-request-id"][:16] for r in responses}) == 2, "both workers should have answered"
    assert len(fake_openai.state.requests_to("/v1/chat/completions")) == 10  # refusals never reach the vendor
    for r in responses:
        assert r.headers["x-ratelimit-limit-requests"] == "10"
        assert 1 <= int(r.headers["x-ratelimit-reset-requests"].removesuffix("s")) <= 60
        if r.status_code == 429:
            assert r.json()["error"]["code"] == "rate_limit_exceeded" and 1 <= int(r.headers["retry-after"]) <= 60
            assert r.headers["x-ratelimit-remaining-requests"] == "0"
    assert sorted(int(r.headers["x-ratelimit-remaining-requests"]) for r in responses if r.status_code == 200) == \
        list(range(10))
    refused = next(r for r in responses if r.status_code == 429)
    error = refused.json()["error"]
    assert (error["type"], error["code"], error["param"]) == ("requests", "rate_limit_exceeded", None)
    assert error["message"].startswith(f"Rate limit reached for {LIMITED} for this tenant on requests per min "
                                       "(RPM): Limit 10, Used 10, Requested 1. Please try again in ")
    shown = json.loads(gw.cli("limits", "show", tenant.name, "--json").out)
    assert next(r for r in shown if r["model"] == LIMITED)["requests_this_minute"] == 10


def test_the_openai_sdk_raises_rate_limit_error(gw: GatewayProcess, tenant: ProviderTenant) -> None:
    with probe_limit(gw, tenant):
        gw.cli("limits", "set", tenant.name, "--rpm", "1", "--model", LIMITED)
    same_minute(5)
    client = gw.client(tenant.token)
    reply = client.chat.completions.with_raw_response.create(model="default", messages=HI)
    assert reply.headers["x-ratelimit-remaining-requests"] == "0"
    with pytest.raises(openai.RateLimitError) as refused:
        client.chat.completions.create(model="default", messages=HI)
    assert refused.value.status_code == 429 and refused.value.code == "rate_limit_exceeded"
    assert refused.value.response.headers["x-ratelimit-limit-requests"] == "1"


def test_a_tokens_limit_leaves_the_other_tokens_alone(gw: GatewayProcess, tenant: ProviderTenant) -> None:
    other = gw.new_token(tenant.name, "other")
    with probe_limit(gw, tenant, other):
        gw.cli("limits", "set", tenant.name, "--token", token_id(gw, tenant.name, "rl-e2e"), "--rpm", "2")
    same_minute(5)
    assert [chat(gw, tenant.token).status_code for _ in range(3)] == [200, 200, 429]
    assert "for this API token on requests per min" in chat(gw, tenant.token).json()["error"]["message"]
    answers = [chat(gw, other) for _ in range(4)]
    assert [r.status_code for r in answers] == [200] * 4
    assert not any("x-ratelimit-limit-requests" in r.headers for r in answers)


def test_a_models_limit_leaves_the_other_models_alone(gw: GatewayProcess, tenant: ProviderTenant) -> None:
    with probe_limit(gw, tenant):
        gw.cli("limits", "set", tenant.name, "--model", LIMITED, "--rpm", "1")
    same_minute(5)
    assert [chat(gw, tenant.token).status_code for _ in range(2)] == [200, 429]
    answers = [chat(gw, tenant.token, "openai/gpt-4o") for _ in range(4)]
    assert [r.status_code for r in answers] == [200] * 4
    assert not any("x-ratelimit-limit-requests" in r.headers for r in answers)


def test_a_token_limit_settles_with_the_real_usage(gw: GatewayProcess, tenant: ProviderTenant) -> None:
    with probe_limit(gw, tenant):
        gw.cli("limits", "set", tenant.name, "--model", LIMITED, "--tpm", "100000")
    same_minute(8)
    long_prompt = [{"role": "user", "content": "y" * 400}]  # estimated 100 tokens; the fake counts 1 word
    first = chat(gw, tenant.token, messages=long_prompt)
    second = chat(gw, tenant.token, messages=long_prompt)
    real = first.json()["usage"]["total_tokens"]
    assert 0 < real < 100
    assert first.headers["x-ratelimit-limit-tokens"] == "100000"
    assert first.headers["x-ratelimit-remaining-tokens"] == str(100000 - 100)
    # The first request's estimate was replaced by its real total before the second was counted.
    assert int(first.headers["x-ratelimit-remaining-tokens"]) - int(second.headers["x-ratelimit-remaining-tokens"]) \
        == real
    assert "x-ratelimit-limit-requests" not in first.headers  # no request limit set

    def tokens_used() -> int:
        shown = json.loads(gw.cli("limits", "show", tenant.name, "--json").out)
        return int(next(r for r in shown if r["model"] == LIMITED)["tokens_this_minute"])

    before = tokens_used()
    assert before == 2 * real
    client = gw.client(tenant.token)
    usage = None
    for chunk in client.chat.completions.create(model=LIMITED, messages=long_prompt, stream=True,
                                                stream_options={"include_usage": True}):
        usage = chunk.usage or usage
    assert usage is not None
    deadline = time.monotonic() + 3
    while tokens_used() != before + usage.total_tokens:
        assert time.monotonic() < deadline, f"the stream was not settled: {tokens_used()} != {before} + {usage}"
        time.sleep(0.05)


def test_limits_through_the_cli(gw: GatewayProcess, tenant: ProviderTenant) -> None:
    tok = token_id(gw, tenant.name, "rl-e2e")
    out = gw.cli("limits", "set", tenant.name, "--token", tok, "--model", LIMITED, "--rpm", "5", "--tpm", "900").out
    assert f"token_id={tok}" in out and "rpm=5" in out and "tpm=900" in out
    gw.cli("limits", "set", tenant.name, "--rpm", "50")
    shown = json.loads(gw.cli("limits", "show", tenant.name, "--json").out)
    assert [(r["token_id"], r["token_name"], r["model"], r["rpm"], r["tpm"]) for r in shown] == [
        (None, None, None, 50, None), (tok, "rl-e2e", LIMITED, 5, 900)]
    bad = gw.cli("limits", "set", tenant.name, "--model", "nosuch/x", "--rpm", "5", check=False)
    assert bad.code != 0 and "PROVIDER/MODEL" in bad.err
    assert gw.cli("limits", "set", tenant.name, "--model", LIMITED, check=False).code != 0  # neither rpm nor tpm
    gw.cli("limits", "clear", tenant.name, "--token", tok, "--model", LIMITED)
    assert gw.cli("limits", "clear", tenant.name, "--token", tok, "--model", LIMITED, check=False).code != 0
    assert [r["rpm"] for r in json.loads(gw.cli("limits", "show", tenant.name, "--json").out)] == [50]


def test_limits_through_the_admin_api_and_clearing_lifts_them_at_once(gw: GatewayProcess,
                                                                      tenant: ProviderTenant) -> None:
    admin = Admin(gw)
    path = f"/tenants/{tenant.name}/limits"
    set_ = admin("PUT", path, json={"token_id": None, "model": LIMITED, "rpm": 2, "tpm": None})
    assert set_.status_code == 200, set_.text
    assert set_.json() == {"token_id": None, "token_name": None, "model": LIMITED, "rpm": 2, "tpm": None}
    with probe_limit(gw, tenant):
        pass
    same_minute(5)
    assert [chat(gw, tenant.token).status_code for _ in range(3)] == [200, 200, 429]
    listed = admin("GET", path).json()
    assert listed["object"] == "list"
    assert next(r for r in listed["data"] if r["model"] == LIMITED)["requests_this_minute"] == 2

    assert admin("PUT", path, json={"model": LIMITED, "rpm": 0}).status_code == 400
    assert admin("PUT", path, json={"model": LIMITED, "rpm": 2, "burst": 9}).status_code == 400
    other_tenant_token = admin("GET", "/tenants/beta/tokens").json()["data"][0]["id"]
    foreign = admin("PUT", path, json={"token_id": other_tenant_token, "rpm": 2})
    assert foreign.status_code == 404 and foreign.json()["error"]["param"] == "token_id"

    cleared = admin("DELETE", path, params={"model": LIMITED})
    assert cleared.status_code == 200 and cleared.json()["deleted"] is True
    took = on_every_worker(lambda: chat(gw, tenant.token).status_code == 200, timeout=5)
    assert took < 2.5, f"clearing took {took:.1f}s to reach both workers"
    assert admin("DELETE", path, params={"model": LIMITED}).status_code == 404


def test_a_console_token_sees_only_its_own_tenants_limits(gw: GatewayProcess, tenant: ProviderTenant) -> None:
    admin = Admin(gw)
    other = f"{tenant.name}-other"
    gw.cli("tenants", "create", other)
    try:
        admin("PUT", f"/tenants/{other}/limits", json={"rpm": 100000})
        minted = admin("POST", f"/tenants/{tenant.name}/tokens", json={"name": "console", "kind": "console"})
        scoped = Admin(gw, minted.json()["token"])
        assert scoped("PUT", f"/tenants/{tenant.name}/limits", json={"rpm": 3}).status_code == 200
        assert [r["rpm"] for r in scoped("GET", f"/tenants/{tenant.name}/limits").json()["data"]] == [3]
        for method, kwargs in (("GET", {}), ("PUT", {"json": {"rpm": 1}}), ("DELETE", {})):
            refused = scoped(method, f"/tenants/{other}/limits", **kwargs)
            assert refused.status_code == 404, (method, refused.text)
        assert [r["rpm"] for r in admin("GET", f"/tenants/{other}/limits").json()["data"]] == [100000]
        assert "100000" not in "".join(scoped.bodies)
    finally:
        gw.cli("tenants", "delete", other, check=False)
