"""End-to-end: Zhipu's hosted GLM API (provider `zhipu`) behind a real `modelport serve`, called
with the openai SDK. A tenant of this module's own has `zhipu` pointed at the fake, which
verifies the HS256 JWT the gateway mints from the `id.secret` key on every request."""

from __future__ import annotations

import base64
import json
import struct
import time
from collections.abc import Iterator
from typing import Any

import openai
import pytest

from tests.e2e.harness import GatewayProcess, ProviderTenant, provider_tenant
from emulators._vendor_common import fake_vector
from tests.fakes.chatglm_fixtures import FakeZhipu
from emulators.zhipu import DEFAULT_API_KEY, DEFAULT_REPLY

MODEL = "glm-4"
USER = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "say hello to me"}]
TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "Weather in a city",
                                           "parameters": {"type": "object",
                                                          "properties": {"city": {"type": "string"}}}}}]


@pytest.fixture(scope="module")
def tenant(gateway: GatewayProcess, fake_zhipu_server: FakeZhipu) -> Iterator[ProviderTenant]:
    with provider_tenant(gateway, "zhipu", [
            ("providers", "set", "zhipu", f"api_key={DEFAULT_API_KEY}", f"base_url={fake_zhipu_server.base_url}"),
            ("defaults", "set", "llm", f"zhipu/{MODEL}"),
            ("defaults", "set", "text-embedding", "zhipu/embedding-3"),
    ]) as made:
        yield made


@pytest.fixture
def client(gateway: GatewayProcess, tenant: ProviderTenant, fake_zhipu: FakeZhipu) -> Iterator[openai.OpenAI]:
    sdk = gateway.client(tenant.token)
    yield sdk
    sdk.close()


def upstream(fake: FakeZhipu) -> dict[str, Any]:
    seen = fake.state.last_request
    assert seen.headers["authorization"].startswith("Bearer ey")  # a JWT, never the raw key
    assert DEFAULT_API_KEY.split(".")[1] not in seen.headers["authorization"]
    assert isinstance(seen.json, dict)
    return seen.json


def content_of(chunks: list[Any]) -> str:
    return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


def finishes(chunks: list[Any]) -> list[str]:
    return [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]


def test_key_format_checked_when_saved(gateway: GatewayProcess, tenant: ProviderTenant) -> None:
    result = gateway.cli("providers", "set", tenant.name, "zhipu", "api_key=no-dot-here", check=False)
    assert result.code != 0 and "id>.<secret" in result.err


@pytest.mark.parametrize("model", [MODEL, "zhipu/glm-4-flash", "default"])
def test_chat_with_a_jwt(client: openai.OpenAI, fake_zhipu: FakeZhipu, model: str) -> None:
    reply = client.chat.completions.create(model=model, messages=USER, temperature=0, user="user-42-abc")
    assert reply.choices[0].message.content == DEFAULT_REPLY and reply.object == "chat.completion"
    assert reply.usage is not None and reply.usage.prompt_tokens == 6
    sent = upstream(fake_zhipu)
    assert sent["do_sample"] is False and "temperature" not in sent and sent["user_id"] == "user-42-abc"
    payload = fake_zhipu.state.jwt_payloads[-1]
    assert payload["api_key"] == DEFAULT_API_KEY.split(".")[0]
    assert payload["timestamp"] > 10**12 and payload["exp"] - payload["timestamp"] == 210_000  # milliseconds


def test_jwt_is_cached_across_requests(client: openai.OpenAI, fake_zhipu: FakeZhipu) -> None:
    for _ in range(3):
        client.chat.completions.create(model=MODEL, messages=USER)
    tokens = {r.headers["authorization"] for r in fake_zhipu.state.requests}
    assert len(tokens) <= 2  # one per gateway worker at most, not one per request
    assert all(p["timestamp"] > (time.time() - 300) * 1000 for p in fake_zhipu.state.jwt_payloads)


def test_stream_usage_split_from_the_last_chunk(client: openai.OpenAI, fake_zhipu: FakeZhipu) -> None:
    whole = client.chat.completions.create(model=MODEL, messages=USER)
    chunks = list(client.chat.completions.create(model=MODEL, messages=USER, stream=True,
                                                 stream_options={"include_usage": True}))
    assert "stream_options" not in upstream(fake_zhipu)
    assert content_of(chunks) == whole.choices[0].message.content == DEFAULT_REPLY
    assert finishes(chunks) == ["stop"] and all(c.object == "chat.completion.chunk" for c in chunks)
    assert chunks[-1].choices == [] and chunks[-1].usage is not None and whole.usage is not None
    assert chunks[-1].usage.total_tokens == whole.usage.total_tokens
    assert all(c.usage is None for c in chunks[:-1])
    plain = list(client.chat.completions.create(model=MODEL, messages=USER, stream=True))
    assert content_of(plain) == DEFAULT_REPLY and all(c.usage is None and c.choices for c in plain)


def test_sensitive_is_content_filter(client: openai.OpenAI, fake_zhipu: FakeZhipu) -> None:
    fake_zhipu.state.finish_reason = "sensitive"
    assert client.chat.completions.create(model=MODEL, messages=USER).choices[0].finish_reason == "content_filter"
    chunks = list(client.chat.completions.create(model=MODEL, messages=USER, stream=True))
    assert finishes(chunks) == ["content_filter"]


def test_tools(client: openai.OpenAI, fake_zhipu: FakeZhipu) -> None:
    fake_zhipu.state.tool_call = ("get_weather", '{"city": "北京"}')
    ask = [{"role": "user", "content": "Weather in Beijing?"}]
    whole = client.chat.completions.create(model=MODEL, messages=ask, tools=TOOLS)
    [call] = whole.choices[0].message.tool_calls or []
    assert whole.choices[0].finish_reason == "tool_calls" and json.loads(call.function.arguments) == {"city": "北京"}
    chunks = list(client.chat.completions.create(model=MODEL, messages=ask, tools=TOOLS, stream=True))
    [delta] = [d for c in chunks if c.choices for d in c.choices[0].delta.tool_calls or ()]
    assert (delta.index, delta.function.name) == (0, "get_weather") and (delta.id or "").startswith("call_")
    assert json.loads(delta.function.arguments or "") == {"city": "北京"}
    assert finishes(chunks) == ["tool_calls"]
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model=MODEL, messages=ask, tools=TOOLS, tool_choice="required")
    assert caught.value.param == "tool_choice"


def test_legacy_completions(client: openai.OpenAI, fake_zhipu: FakeZhipu) -> None:
    assert client.completions.create(model=MODEL, prompt="Say hi").choices[0].text == DEFAULT_REPLY
    assert upstream(fake_zhipu)["messages"] == [{"role": "user", "content": "Say hi"}]


def test_embeddings(client: openai.OpenAI, fake_zhipu: FakeZhipu) -> None:
    texts = [f"text {i}" for i in range(70)]  # embedding-3: 64 per request
    reply = client.embeddings.create(model="default", input=texts, encoding_format="float")
    assert [d.embedding for d in reply.data] == [fake_vector(t, 8) for t in texts]
    assert reply.usage.prompt_tokens == 140 and len(fake_zhipu.state.requests) == 2
    packed = client.embeddings.create(model="embedding-2", input=["a", "b"], encoding_format="base64")
    vectors = [list(struct.unpack("<8f", base64.b64decode(d.embedding))) for d in packed.data]  # type: ignore[arg-type]
    assert vectors == [pytest.approx(fake_vector(t, 8), abs=1e-6) for t in ("a", "b")]
    sized = client.embeddings.create(model="embedding-3", input="a", dimensions=256, encoding_format="float")
    assert len(sized.data[0].embedding) == 256


@pytest.mark.parametrize(("status", "code", "expected", "ours"), [
    (400, "1301", openai.BadRequestError, "content_filter"),
    (429, "1302", openai.RateLimitError, "rate_limit_exceeded"),
    (429, "1113", openai.RateLimitError, "insufficient_quota"),
    (500, "500", openai.InternalServerError, "upstream_error"),
    (200, "1002", openai.PermissionDeniedError, "upstream_credential_rejected"),  # an error in a 200 body
])
def test_errors_by_meaning(client: openai.OpenAI, fake_zhipu: FakeZhipu, status: int, code: str,
                           expected: type[openai.APIStatusError], ours: str) -> None:
    fake_zhipu.state.fail(status, code, "scripted")
    with pytest.raises(expected) as caught:
        client.chat.completions.create(model=MODEL, messages=USER)
    assert caught.value.code == ours


def test_wrong_key_is_403(client: openai.OpenAI, fake_zhipu: FakeZhipu) -> None:
    fake_zhipu.state.api_keys = {"otherid.othersecret"}
    for stream in (False, True):
        with pytest.raises(openai.PermissionDeniedError) as caught:
            client.chat.completions.create(model=MODEL, messages=USER, stream=stream)
        assert "zhipu" in caught.value.message and DEFAULT_API_KEY not in caught.value.message


def test_error_events_in_the_stream(client: openai.OpenAI, fake_zhipu: FakeZhipu) -> None:
    fake_zhipu.state.stream_error_after = 0
    with pytest.raises(openai.RateLimitError):
        client.chat.completions.create(model=MODEL, messages=USER, stream=True)
    fake_zhipu.state.stream_error_after = 2
    received = []
    with pytest.raises(openai.APIError):
        for chunk in client.chat.completions.create(model=MODEL, messages=USER, stream=True):
            received.append(chunk.choices[0].delta.content or "")
    assert "".join(received) == " ".join(DEFAULT_REPLY.split()[:2])
