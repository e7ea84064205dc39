"""The hosted trial cannot be spent beyond its quota, nor the operator's key sent elsewhere,
end to end through the real server and the openai SDK.

The module's gateway lends the fake OpenAI (max_tokens 64) and a ChatGLM server on a port
where nothing listens (every call fails to connect); an "attacker" fake OpenAI records
whatever reaches it and must never see the platform key.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from typing import Any

import openai
import pytest

from tests.e2e.harness import GatewayProcess
from tests.e2e.hosted_setup import (
    ADMIN_TOKEN,
    HI,
    HOSTED_OPENAI_KEY,
    give_own_openai,
    hosted_env,
    new_tenant,
    wait_until,
)
from tests.e2e.test_endpoints import wav_bytes
from tests.fakes.fixtures import FakeOpenAI, served_fake_openai
from emulators.server import free_port

MAX_TOKENS = 64
DEAD_PORT = free_port()  # nothing listens here: a connection that is never made


@pytest.fixture(scope="module")
def attacker() -> Iterator[FakeOpenAI]:
    """A second OpenAI-compatible server, standing for any URL a tenant controls."""
    with served_fake_openai() as fake:
        yield fake


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory, fake_openai_server: FakeOpenAI,
            attacker: FakeOpenAI) -> Iterator[GatewayProcess]:
    settings: dict[str, Any] = {"admin_token": ADMIN_TOKEN, "hosted": {
        "openai": {"credentials": {"api_key": "${HOSTED_OPENAI_API_KEY}", "base_url": fake_openai_server.v1_url},
                   "quota": 20, "models": ["gpt-3.5-turbo", "text-embedding-3-small", "whisper-1"],
                   "max_tokens": MAX_TOKENS},
        "chatglm": {"credentials": {"base_url": f"http://127.0.0.1:{DEAD_PORT}"},
                    "quota": 20, "models": ["chatglm3-6b"]},
    }}
    with hosted_env():
        gw = GatewayProcess(tmp_path_factory.mktemp("hosted-guard"), workers=1, settings=settings)
        gw.start()
        try:
            yield gw
        finally:
            gw.stop()


@pytest.fixture
def gw(guarded: GatewayProcess, fake_openai: FakeOpenAI, attacker: FakeOpenAI) -> GatewayProcess:
    fake_openai.state.api_keys.add(HOSTED_OPENAI_KEY)
    attacker.state.api_keys.add(HOSTED_OPENAI_KEY)  # it would happily answer, were the key ever sent there
    return guarded


def quota_row(gw: GatewayProcess, token: str, provider: str) -> dict[str, Any]:
    with gw.http(token) as client:
        rows = client.get("/v1/quota").json()["data"]
    return dict(next(r for r in rows if r["provider"] == provider))


def used(gw: GatewayProcess, token: str, provider: str = "openai") -> int:
    return int(quota_row(gw, token, provider)["used"])


def own_credential(gw: GatewayProcess, token: str) -> bool:
    return bool(quota_row(gw, token, "openai")["own_credential"])


# -- parameters --------------------------------------------------------------------------------


@pytest.mark.parametrize(("field", "value"), [
    ("service_tier", "priority"), ("store", True), ("metadata", {"tag": "x"}), ("user", "someone-else"),
    ("logit_bias", {"50256": 100}), ("base_url", "http://127.0.0.1:1/v1"), ("prediction", {"type": "content",
                                                                                          "content": "x"}),
])
def test_a_parameter_off_the_allow_list_is_a_400_naming_it(gw: GatewayProcess, fake_openai: FakeOpenAI,
                                                           field: str, value: Any) -> None:
    _, token = new_tenant(gw)
    with pytest.raises(openai.BadRequestError) as exc:
        gw.client(token).chat.completions.create(model="gpt-3.5-turbo", messages=HI, extra_body={field: value})
    err = exc.value
    assert err.param == field and err.code == "hosted_parameter_not_allowed"
    assert f"'{field}' is not allowed on the hosted trial of provider 'openai'" in err.message
    assert fake_openai.state.requests == [] and used(gw, token) == 0  # refused before a call was taken


def test_n_and_max_tokens_are_capped(gw: GatewayProcess, fake_openai: FakeOpenAI) -> None:
    _, token = new_tenant(gw)
    sdk = gw.client(token)
    with pytest.raises(openai.BadRequestError) as exc:
        sdk.chat.completions.create(model="gpt-3.5-turbo", messages=HI, n=3)
    assert exc.value.param == "n"
    for field in ("max_tokens", "max_completion_tokens"):
        with pytest.raises(openai.BadRequestError) as exc:
            sdk.chat.completions.create(model="gpt-3.5-turbo", messages=HI, **{field: MAX_TOKENS + 1})
        assert (exc.value.param, exc.value.code) == (field, "hosted_max_tokens_exceeded")
        assert f"at most {MAX_TOKENS} output tokens" in exc.value.message
    with pytest.raises(openai.BadRequestError) as exc:
        sdk.chat.completions.create(model="gpt-3.5-turbo", messages=HI, stream=True,
                                    stream_options={"include_usage": True, "include_obfuscation": False})
    assert exc.value.param == "stream_options.include_obfuscation"
    assert fake_openai.state.requests == [] and used(gw, token) == 0

    sdk.chat.completions.create(model="gpt-3.5-turbo", messages=HI, n=1)  # no limit: the cap is sent
    assert fake_openai.state.last_request.json["max_tokens"] == MAX_TOKENS
    sdk.chat.completions.create(model="gpt-3.5-turbo", messages=HI, max_tokens=10)
    assert fake_openai.state.last_request.json["max_tokens"] == 10
    chunks = list(sdk.chat.completions.create(model="gpt-3.5-turbo", messages=HI, stream=True,
                                              stream_options={"include_usage": True}))
    assert chunks[-1].usage is not None and fake_openai.state.last_request.json["max_tokens"] == MAX_TOKENS
    assert used(gw, token) == 3


def test_embeddings_and_transcriptions_have_their_own_lists(gw: GatewayProcess, fake_openai: FakeOpenAI) -> None:
    _, token = new_tenant(gw)
    sdk = gw.client(token)
    assert sdk.embeddings.create(model="text-embedding-3-small", input="x", dimensions=8).data
    with pytest.raises(openai.BadRequestError) as exc:
        sdk.embeddings.create(model="text-embedding-3-small", input="x", user="someone-else")
    assert exc.value.param == "user"
    audio = ("hello.wav", wav_bytes(), "audio/wav")
    assert sdk.audio.transcriptions.create(model="whisper-1", file=audio, language="en").text
    with pytest.raises(openai.BadRequestError) as exc:
        sdk.audio.transcriptions.create(model="whisper-1", file=audio, response_format="verbose_json",
                                        timestamp_granularities=["segment"])
    assert exc.value.param == "timestamp_granularities"
    assert [r.path for r in fake_openai.state.requests] == ["/v1/embeddings", "/v1/audio/transcriptions"]


def test_an_own_credential_keeps_the_whole_api(gw: GatewayProcess, fake_openai: FakeOpenAI) -> None:
    tenant, token = new_tenant(gw)
    own = give_own_openai(gw, fake_openai, tenant)
    wait_until(lambda: own_credential(gw, token))
    gw.client(token).chat.completions.create(model="gpt-3.5-turbo", messages=HI, user="end-user-1", max_tokens=4000)
    sent = fake_openai.state.last_request
    assert sent.headers["authorization"] == f"Bearer {own}"
    assert (sent.json["user"], sent.json["max_tokens"]) == ("end-user-1", 4000)


# -- refunds -----------------------------------------------------------------------------------


def test_a_call_is_given_back_only_when_nothing_reached_the_upstream(gw: GatewayProcess,
                                                                      fake_openai: FakeOpenAI) -> None:
    _, token = new_tenant(gw)
    sdk = gw.client(token)
    for stream in (False, True):  # no connection made (nothing listens): refunded
        with pytest.raises(openai.APIStatusError) as exc:
            sdk.chat.completions.create(model="chatglm3-6b", messages=HI, stream=stream)
        assert exc.value.status_code == 502 and exc.value.code == "upstream_unreachable"
    assert used(gw, token, "chatglm") == 0

    boom = {"error": {"message": "boom", "type": "server_error", "param": None, "code": None}}
    fake_openai.state.fail_next.append((500, boom))
    with pytest.raises(openai.APIStatusError) as exc:  # the vendor answered 5xx: spent
        sdk.chat.completions.create(model="gpt-3.5-turbo", messages=HI)
    assert exc.value.status_code == 502
    fake_openai.state.fail_next.append((500, boom))
    with pytest.raises(openai.APIStatusError):  # streams too, the first chunk never came
        sdk.chat.completions.create(model="gpt-3.5-turbo", messages=HI, stream=True)
    fake_openai.state.fail_next.append((400, {"error": {"message": "flagged", "type": "invalid_request_error",
                                                        "param": None, "code": "content_policy_violation"}}))
    with pytest.raises(openai.BadRequestError):  # a vendor 4xx reached the operator's account: spent
        sdk.chat.completions.create(model="gpt-3.5-turbo", messages=HI)
    assert used(gw, token) == 3


def test_a_timeout_after_sending_is_a_spent_call(gw: GatewayProcess, fake_openai: FakeOpenAI) -> None:
    _, token = new_tenant(gw)
    fake_openai.state.delay = 3.0  # past the harness's read timeout (2 s): the vendor got the request
    with pytest.raises(openai.APIStatusError) as exc:
        gw.client(token).chat.completions.create(model="gpt-3.5-turbo", messages=HI)
    assert exc.value.status_code == 504
    assert used(gw, token) == 1 and len(fake_openai.state.requests) == 1


# -- the platform key goes to the configured upstream only -------------------------------------


def test_no_tenant_input_sends_the_platform_key_elsewhere(gw: GatewayProcess, fake_openai: FakeOpenAI,
                                                          attacker: FakeOpenAI) -> None:
    tenant, token = new_tenant(gw)
    sdk = gw.client(token)
    elsewhere = attacker.v1_url
    for field in ("base_url", "api_base", "endpoint", "endpoint_url", "url", "baseURL"):
        with pytest.raises(openai.BadRequestError):
            sdk.chat.completions.create(model="gpt-3.5-turbo", messages=HI, extra_body={field: elsewhere})
    with pytest.raises(openai.BadRequestError):
        sdk.chat.completions.create(model="gpt-3.5-turbo", messages=HI, extra_body={"extra_body": {"base_url":
                                                                                                    elsewhere}})
    # Headers a proxy might honour, and model names that smuggle a URL or a host.
    tricks = {"X-Forwarded-Host": f"127.0.0.1:{attacker.served.port}", "X-Base-URL": elsewhere,
              "OpenAI-Base-URL": elsewhere, "Forwarded": f"host=127.0.0.1:{attacker.served.port}"}
    assert sdk.chat.completions.create(model="gpt-3.5-turbo", messages=HI, extra_headers=tricks).choices
    for model in (elsewhere, f"openai/gpt-3.5-turbo@127.0.0.1:{attacker.served.port}",
                  f"openai/{elsewhere}", "openai/../../gpt-3.5-turbo", "chatglm/gpt-3.5-turbo"):
        with pytest.raises(openai.APIStatusError) as exc:
            sdk.chat.completions.create(model=model, messages=HI)
        assert exc.value.status_code in (400, 403, 404), (model, exc.value.status_code)
    # A credential of its own for another provider, pointed at its own server, gets its own
    # key there, never the platform's; the hosted model still goes to the configured fake.
    own = "sk-own-" + secrets.token_hex(8)
    attacker.state.api_keys.add(own)
    gw.cli("providers", "set", tenant, "zhipu", f"api_key={own}.secretpart", f"base_url={elsewhere}")
    assert sdk.chat.completions.create(model="gpt-3.5-turbo", messages=HI).choices

    assert all(HOSTED_OPENAI_KEY not in str(r.headers) + r.body.decode(errors="replace")
               for r in attacker.state.requests)
    hosted_seen = [r for r in fake_openai.state.requests if r.headers.get("authorization")
                   == f"Bearer {HOSTED_OPENAI_KEY}"]
    assert len(hosted_seen) == 2 and not any(k in r.json for r in hosted_seen for k in ("base_url", "url"))
    assert used(gw, token) == 2


def test_the_platform_key_never_reaches_a_server_it_was_not_configured_for(
        gw: GatewayProcess, attacker: FakeOpenAI) -> None:
    """Runs last: across every test of this module, the attacker never saw the platform key."""
    assert HOSTED_OPENAI_KEY not in gw.log()
    assert not any(HOSTED_OPENAI_KEY in str(r.headers) for r in attacker.state.requests)
