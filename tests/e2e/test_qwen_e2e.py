"""End-to-end: Qwen (DashScope's native API) behind a real `modelport serve`, called with the
openai SDK. A tenant of this module's own has the `qwen` provider pointed at the fake
DashScope; every test checks what the client got and what reached the fake."""

from __future__ import annotations

import base64
import json
import struct
import time
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from tests.e2e.harness import GatewayProcess, ProviderTenant, provider_tenant
from emulators.qwen import DEFAULT_API_KEY, DEFAULT_REPLY, embedding_vector
from tests.fakes.qwen_fixtures import FakeQwen

MODEL = "qwen-plus"
USER = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "say hello to me"}]
PROMPT_TOKENS = 6
TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "Weather in a city",
                                           "parameters": {"type": "object",
                                                          "properties": {"city": {"type": "string"}}}}}]
ASK = [{"role": "user", "content": "What is the weather in Hangzhou?"}]


@pytest.fixture(scope="module")
def tenant(gateway: GatewayProcess, fake_qwen_server: FakeQwen) -> Iterator[ProviderTenant]:
    with provider_tenant(gateway, "qwen", [
            ("providers", "set", "qwen", f"api_key={DEFAULT_API_KEY}", f"base_url={fake_qwen_server.base_url}"),
            ("defaults", "set", "llm", f"qwen/{MODEL}"),
            ("defaults", "set", "text-embedding", "qwen/text-embedding-v3"),
    ]) as made:
        yield made


@pytest.fixture
def client(gateway: GatewayProcess, tenant: ProviderTenant, fake_qwen: FakeQwen) -> Iterator[openai.OpenAI]:
    sdk = gateway.client(tenant.token)
    yield sdk
    sdk.close()


def upstream(fake: FakeQwen, path: str = "text-generation/generation") -> dict[str, Any]:
    seen = fake.state.last_request
    assert seen.path.endswith(path) and seen.headers["authorization"] == f"Bearer {DEFAULT_API_KEY}"
    assert isinstance(seen.json, dict)
    return seen.json


def content_of(chunks: list[Any]) -> str:
    return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


def finishes(chunks: list[Any]) -> list[str]:
    return [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]


# -- chat -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("model", [MODEL, "qwen/qwen-max", "default"])
def test_chat(client: openai.OpenAI, fake_qwen: FakeQwen, model: str) -> None:
    reply = client.chat.completions.create(model=model, messages=USER, temperature=0.3, top_p=1.0, seed=5)
    assert reply.choices[0].message.content == DEFAULT_REPLY and reply.choices[0].finish_reason == "stop"
    assert reply.usage is not None and reply.usage.prompt_tokens == PROMPT_TOKENS
    assert reply.usage.completion_tokens == len(DEFAULT_REPLY.split())
    sent = upstream(fake_qwen)
    assert reply.model == sent["model"] == model.removeprefix("qwen/").replace("default", MODEL)
    assert sent["input"]["messages"] == USER
    assert sent["parameters"] == {"result_format": "message", "temperature": 0.3, "top_p": 0.9999, "seed": 5}
    assert "x-dashscope-sse" not in fake_qwen.state.last_request.headers


def test_stream_with_and_without_usage(client: openai.OpenAI, fake_qwen: FakeQwen) -> None:
    whole = client.chat.completions.create(model=MODEL, messages=USER, max_tokens=3)
    chunks = list(client.chat.completions.create(model=MODEL, messages=USER, max_tokens=3, stream=True,
                                                 stream_options={"include_usage": True}))
    seen = fake_qwen.state.last_request
    assert seen.headers["x-dashscope-sse"] == "enable" and seen.json["parameters"]["incremental_output"] is True
    assert content_of(chunks) == whole.choices[0].message.content == " ".join(DEFAULT_REPLY.split()[:3])
    assert finishes(chunks) == [whole.choices[0].finish_reason] == ["length"]
    last = chunks[-1]
    assert last.choices == [] and last.usage is not None and whole.usage is not None
    assert (last.usage.prompt_tokens, last.usage.completion_tokens) == (whole.usage.prompt_tokens, 3)
    assert all(c.usage is None for c in chunks[:-1]) and len({c.id for c in chunks}) == 1
    plain = list(client.chat.completions.create(model=MODEL, messages=USER, stream=True))
    assert content_of(plain) == DEFAULT_REPLY and all(c.usage is None and c.choices for c in plain)
    assert fake_qwen.state.wait_for(lambda s: s.streams_finished == 2)  # counted after the last write


def test_tool_call_round_trip_streamed(client: openai.OpenAI, fake_qwen: FakeQwen) -> None:
    fake_qwen.state.tool_call = ("get_weather", '{"city": "杭州"}')
    whole = client.chat.completions.create(model=MODEL, messages=ASK, tools=TOOLS)
    [call] = whole.choices[0].message.tool_calls or []
    assert whole.choices[0].finish_reason == "tool_calls" and json.loads(call.function.arguments) == {"city": "杭州"}
    assert upstream(fake_qwen)["parameters"]["tools"] == TOOLS
    chunks = list(client.chat.completions.create(model=MODEL, messages=ASK, tools=TOOLS, stream=True))
    deltas = [d for c in chunks if c.choices for d in c.choices[0].delta.tool_calls or ()]
    assert deltas[0].id and deltas[0].function.name == "get_weather" and all(d.index == 0 for d in deltas)
    assert json.loads("".join(d.function.arguments or "" for d in deltas)) == {"city": "杭州"}
    assert finishes(chunks) == ["tool_calls"]
    history = [*ASK, {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
               {"role": "tool", "tool_call_id": call.id, "content": "晴, 25°C"}]
    final = client.chat.completions.create(model=MODEL, messages=history, tools=TOOLS)
    assert final.choices[0].message.content == DEFAULT_REPLY
    assert upstream(fake_qwen)["input"]["messages"][2] == {"role": "tool", "content": "晴, 25°C",
                                                           "tool_call_id": call.id}


def test_vision_model_uses_the_multimodal_endpoint(client: openai.OpenAI, fake_qwen: FakeQwen) -> None:
    reply = client.chat.completions.create(model="qwen-vl-plus", messages=[{"role": "user", "content": [
        {"type": "text", "text": "What is this?"}, {"type": "image_url", "image_url": {"url": "https://x.cn/a.png"}}]}])
    assert reply.choices[0].message.content == DEFAULT_REPLY
    assert upstream(fake_qwen, "multimodal-generation/generation")["input"]["messages"] == [
        {"role": "user", "content": [{"text": "What is this?"}, {"image": "https://x.cn/a.png"}]}]


def test_legacy_completions(client: openai.OpenAI, fake_qwen: FakeQwen) -> None:
    whole = client.completions.create(model=MODEL, prompt="Say hi")
    assert whole.choices[0].text == DEFAULT_REPLY and whole.object == "text_completion"
    chunks = list(client.completions.create(model=MODEL, prompt="Say hi", stream=True,
                                            stream_options={"include_usage": True}))
    assert "".join(c.choices[0].text for c in chunks if c.choices) == DEFAULT_REPLY
    assert chunks[-1].usage is not None and chunks[-1].usage.prompt_tokens == 2


# -- embeddings -------------------------------------------------------------------------------------


def test_embeddings_float_base64_and_batches(client: openai.OpenAI, fake_qwen: FakeQwen) -> None:
    texts = [f"text number {i}" for i in range(23)]  # v3 takes 10 per request: 3 requests
    floats = client.embeddings.create(model="default", input=texts, encoding_format="float")
    assert [d.index for d in floats.data] == list(range(23))
    assert [d.embedding for d in floats.data] == [embedding_vector(t) for t in texts]
    assert floats.usage.prompt_tokens == 69 and len(fake_qwen.state.requests) == 3
    packed = client.embeddings.create(model="text-embedding-v3", input="风急天高", encoding_format="base64",
                                      extra_body={"text_type": "query"})
    raw = base64.b64decode(packed.data[0].embedding)  # type: ignore[arg-type]
    assert list(struct.unpack("<8f", raw)) == pytest.approx(embedding_vector("风急天高", text_type="query"), abs=1e-6)
    assert upstream(fake_qwen, "text-embedding")["parameters"] == {"text_type": "query"}
    default = client.embeddings.create(model="text-embedding-v3", input="风急天高")  # the SDK asks for base64
    assert default.data[0].embedding == pytest.approx(embedding_vector("风急天高"), abs=1e-6)


def test_embedding_dimensions_and_errors(client: openai.OpenAI, fake_qwen: FakeQwen) -> None:
    reply = client.embeddings.create(model="text-embedding-v3", input="a", dimensions=64, encoding_format="float")
    assert len(reply.data[0].embedding) == 64
    with pytest.raises(openai.BadRequestError) as caught:
        client.embeddings.create(model="qwen/text-embedding-v1", input="a", dimensions=64)
    assert caught.value.param == "dimensions"


# -- errors -----------------------------------------------------------------------------------------


def test_rejected_key_is_403_naming_the_provider(client: openai.OpenAI, fake_qwen: FakeQwen) -> None:
    fake_qwen.state.api_keys.clear()
    for stream in (False, True):
        with pytest.raises(openai.PermissionDeniedError) as caught:
            client.chat.completions.create(model=MODEL, messages=USER, stream=stream)
        assert caught.value.code == "upstream_credential_rejected" and "qwen" in caught.value.message
        assert DEFAULT_API_KEY not in caught.value.message


@pytest.mark.parametrize(("status", "code", "expected"), [
    (400, "Arrearage", openai.RateLimitError), (429, "Throttling.RateQuota", openai.RateLimitError),
    (400, "InvalidParameter", openai.BadRequestError), (500, "InternalError", openai.InternalServerError),
    (200, "Arrearage", openai.RateLimitError),  # an error object in a 200 body
])
def test_errors_by_meaning(client: openai.OpenAI, fake_qwen: FakeQwen, status: int, code: str,
                           expected: type[Exception]) -> None:
    fake_qwen.state.fail(status, code, f"{code} happened")
    with pytest.raises(expected) as caught:
        client.chat.completions.create(model=MODEL, messages=USER)
    assert f"{code} happened" in str(caught.value)


def test_error_event_before_the_first_chunk_is_a_real_status(client: openai.OpenAI, fake_qwen: FakeQwen) -> None:
    fake_qwen.state.stream_error_after = 0
    fake_qwen.state.stream_error = (400, "DataInspectionFailed", "Input data may contain inappropriate content.")
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model=MODEL, messages=USER, stream=True)
    assert caught.value.code == "content_filter"


def test_error_event_mid_stream(client: openai.OpenAI, fake_qwen: FakeQwen) -> None:
    fake_qwen.state.stream_error_after = 3
    received = []
    with pytest.raises(openai.APIError) as caught:
        for chunk in client.chat.completions.create(model=MODEL, messages=USER, stream=True):
            received.append(chunk.choices[0].delta.content or "")
    assert "".join(received) == " ".join(DEFAULT_REPLY.split()[:2]) and "internal error" in str(caught.value)


def test_client_disconnect_closes_the_upstream(gateway: GatewayProcess, tenant: ProviderTenant,
                                               fake_qwen: FakeQwen) -> None:
    state = fake_qwen.state
    state.reply_text = " ".join(f"词{i}" for i in range(400))
    state.stream_delay = 0.05
    body = {"model": MODEL, "messages": USER, "stream": True}
    with httpx.Client(base_url=gateway.base_url, headers={"Authorization": f"Bearer {tenant.token}"},
                      timeout=15) as http, http.stream("POST", "/v1/chat/completions", json=body) as resp:
        assert resp.status_code == 200
        assert next(resp.iter_bytes()).startswith(b"data: {")
    started = time.monotonic()
    assert state.wait_for(lambda s: s.streams_aborted >= 1, timeout=5.0)
    assert state.streams_finished == 0 and time.monotonic() - started < 5.0
