"""End-to-end: MiniMax (ChatCompletion v2, embo-01) behind a real `modelport serve`, called
with the openai SDK. A tenant of this module's own has the `minimax` provider pointed at the
fake; MiniMax's errors arrive inside HTTP 200 bodies and must leave the gateway as real statuses."""

from __future__ import annotations

import base64
import json
import struct
from collections.abc import Iterator
from typing import Any

import openai
import pytest

from tests.e2e.harness import GatewayProcess, ProviderTenant, provider_tenant
from emulators._vendor_common import fake_vector
from emulators.minimax import DEFAULT_API_KEY, DEFAULT_GROUP_ID, DEFAULT_REPLY
from tests.fakes.minimax_fixtures import FakeMinimax

MODEL = "abab6.5s-chat"
USER = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "say hello to me"}]
TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "Weather in a city",
                                           "parameters": {"type": "object",
                                                          "properties": {"city": {"type": "string"}}}}}]


@pytest.fixture(scope="module")
def tenant(gateway: GatewayProcess, fake_minimax_server: FakeMinimax) -> Iterator[ProviderTenant]:
    with provider_tenant(gateway, "minimax", [
            ("providers", "set", "minimax", f"api_key={DEFAULT_API_KEY}", f"group_id={DEFAULT_GROUP_ID}",
             f"base_url={fake_minimax_server.base_url}"),
            ("defaults", "set", "llm", f"minimax/{MODEL}"),
            ("defaults", "set", "text-embedding", "minimax/embo-01"),
    ]) as made:
        yield made


@pytest.fixture
def client(gateway: GatewayProcess, tenant: ProviderTenant, fake_minimax: FakeMinimax) -> Iterator[openai.OpenAI]:
    sdk = gateway.client(tenant.token)
    yield sdk
    sdk.close()


def upstream(fake: FakeMinimax, path: str = "/v1/text/chatcompletion_v2") -> dict[str, Any]:
    seen = fake.state.last_request
    assert seen.path == path and seen.query == {"GroupId": DEFAULT_GROUP_ID}
    assert seen.headers["authorization"] == f"Bearer {DEFAULT_API_KEY}" and isinstance(seen.json, dict)
    return seen.json


def content_of(chunks: list[Any]) -> str:
    return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


def finishes(chunks: list[Any]) -> list[str]:
    return [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]


@pytest.mark.parametrize("model", [MODEL, "minimax/MiniMax-Text-01", "default"])
def test_chat(client: openai.OpenAI, fake_minimax: FakeMinimax, model: str) -> None:
    reply = client.chat.completions.create(model=model, messages=USER, temperature=0, presence_penalty=1)
    assert reply.choices[0].message.content == DEFAULT_REPLY and reply.choices[0].finish_reason == "stop"
    assert reply.usage is not None and reply.usage.prompt_tokens == 6
    sent = upstream(fake_minimax)
    assert sent["temperature"] == 0.01 and sent["max_tokens"] == 2048 and "presence_penalty" not in sent
    assert "base_resp" not in reply.model_dump() and reply.choices[0].message.model_dump().get("name") is None


@pytest.mark.parametrize("send_done", [False, True])
def test_stream_does_not_repeat_the_final_message(client: openai.OpenAI, fake_minimax: FakeMinimax,
                                                  send_done: bool) -> None:
    fake_minimax.state.send_done = send_done
    whole = client.chat.completions.create(model=MODEL, messages=USER)
    chunks = list(client.chat.completions.create(model=MODEL, messages=USER, stream=True,
                                                 stream_options={"include_usage": True}))
    assert upstream(fake_minimax)["stream"] is True and "stream_options" not in upstream(fake_minimax)
    assert content_of(chunks) == whole.choices[0].message.content == DEFAULT_REPLY
    assert finishes(chunks) == ["stop"]
    assert [c.choices[0].delta.role for c in chunks if c.choices and c.choices[0].delta.role] == ["assistant"]
    last = chunks[-1]
    assert last.choices == [] and last.usage is not None and whole.usage is not None
    assert last.usage.total_tokens == whole.usage.total_tokens > 0
    assert all(c.usage is None for c in chunks[:-1])
    plain = list(client.chat.completions.create(model=MODEL, messages=USER, stream=True))
    assert content_of(plain) == DEFAULT_REPLY and all(c.choices for c in plain)


def test_tool_calls_and_sensitive_output(client: openai.OpenAI, fake_minimax: FakeMinimax) -> None:
    fake_minimax.state.tool_call = ("get_weather", '{"city": "上海"}')
    ask = [{"role": "user", "content": "Weather in Shanghai?"}]
    whole = client.chat.completions.create(model=MODEL, messages=ask, tools=TOOLS)
    [call] = whole.choices[0].message.tool_calls or []
    assert whole.choices[0].finish_reason == "tool_calls" and json.loads(call.function.arguments) == {"city": "上海"}
    chunks = list(client.chat.completions.create(model=MODEL, messages=ask, tools=TOOLS, stream=True))
    deltas = [d for c in chunks if c.choices for d in c.choices[0].delta.tool_calls or ()]
    assert deltas[0].id and deltas[0].function.name == "get_weather"
    assert json.loads("".join(d.function.arguments or "" for d in deltas)) == {"city": "上海"}
    assert finishes(chunks) == ["tool_calls"]
    fake_minimax.state.tool_call = None
    fake_minimax.state.output_sensitive = True
    assert client.chat.completions.create(model=MODEL, messages=USER).choices[0].finish_reason == "content_filter"


def test_legacy_completions(client: openai.OpenAI, fake_minimax: FakeMinimax) -> None:
    assert client.completions.create(model=MODEL, prompt="Say hi").choices[0].text == DEFAULT_REPLY
    chunks = list(client.completions.create(model=MODEL, prompt="Say hi", stream=True))
    assert "".join(c.choices[0].text for c in chunks if c.choices) == DEFAULT_REPLY


def test_embeddings_types_and_base64(client: openai.OpenAI, fake_minimax: FakeMinimax) -> None:
    docs = client.embeddings.create(model="default", input=["a b", "c"], encoding_format="float")
    assert [d.embedding for d in docs.data] == [fake_vector("a b", 8, "db"), fake_vector("c", 8, "db")]
    assert docs.usage.prompt_tokens == 3
    assert upstream(fake_minimax, "/v1/embeddings") == {"model": "embo-01", "texts": ["a b", "c"], "type": "db"}
    query = client.embeddings.create(model="embo-01", input="c", encoding_format="base64",
                                     extra_body={"input_type": "query"})
    raw = base64.b64decode(query.data[0].embedding)  # type: ignore[arg-type]
    assert list(struct.unpack("<8f", raw)) == pytest.approx(fake_vector("c", 8, "query"), abs=1e-6)
    assert upstream(fake_minimax, "/v1/embeddings")["type"] == "query"


def test_embeddings_are_split_into_batches(client: openai.OpenAI, fake_minimax: FakeMinimax) -> None:
    fake_minimax.state.embedding_max_batch = 512
    texts = [f"t{i}" for i in range(600)]
    reply = client.embeddings.create(model="embo-01", input=texts, encoding_format="float")
    assert len(reply.data) == 600 and reply.data[599].embedding == fake_vector("t599", 8, "db")
    assert [len(r.json["texts"]) for r in fake_minimax.state.requests] == [512, 88]


@pytest.mark.parametrize(("code", "expected", "ours"), [
    (1004, openai.PermissionDeniedError, "upstream_credential_rejected"),
    (1008, openai.RateLimitError, "insufficient_quota"),
    (1002, openai.RateLimitError, "rate_limit_exceeded"),
    (2013, openai.BadRequestError, "invalid_parameter"),
    (1013, openai.InternalServerError, "upstream_error"),
])
@pytest.mark.parametrize("stream", [False, True])
def test_errors_in_200_bodies_become_real_statuses(client: openai.OpenAI, fake_minimax: FakeMinimax, code: int,
                                                   expected: type[openai.APIStatusError], ours: str,
                                                   stream: bool) -> None:
    fake_minimax.state.fail(code, "scripted failure")
    with pytest.raises(expected) as caught:
        client.chat.completions.create(model=MODEL, messages=USER, stream=stream)
    assert caught.value.code == ours and "scripted failure" in caught.value.message


def test_wrong_key_and_embeddings_error(client: openai.OpenAI, fake_minimax: FakeMinimax) -> None:
    fake_minimax.state.api_keys.clear()
    with pytest.raises(openai.PermissionDeniedError) as caught:
        client.embeddings.create(model="embo-01", input="x")
    assert "minimax" in caught.value.message and DEFAULT_API_KEY not in caught.value.message


def test_base_resp_error_as_first_event_and_mid_stream(client: openai.OpenAI, fake_minimax: FakeMinimax) -> None:
    fake_minimax.state.stream_error_after = 0
    with pytest.raises(openai.RateLimitError):
        client.chat.completions.create(model=MODEL, messages=USER, stream=True)
    fake_minimax.state.stream_error_after = 2
    received = []
    with pytest.raises(openai.APIError) as caught:
        for chunk in client.chat.completions.create(model=MODEL, messages=USER, stream=True):
            received.append(chunk.choices[0].delta.content or "")
    assert "".join(received) == " ".join(DEFAULT_REPLY.split()[:2]) and "rate limit" in str(caught.value)
