"""The fake OpenAI playing DeepSeek, Moonshot and a self-hosted server (emulators/compatibles.py),
and what their spec rows make of them, called directly (no gateway): the reasoner's thoughts
pass through, Moonshot's usage moves to where OpenAI puts it, each vendor's errors mean what
they say, and a server without a key is sent no Authorization header."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest

from keystore.models import validate_credential
from emulators.compatibles import deepseek_error, moonshot_error
from tests.fakes.fixtures import FakeOpenAI
from translators import REGISTRY
from translators._http import UpstreamClient
from translators.base import CallContext
from translators.errors import ApiError
from translators.types import ChatRequest, CompletionRequest, EmbeddingRequest

HELLO = [{"role": "user", "content": "say hello"}]
REPLY = "Hello from the fake!"


@pytest.fixture
async def http() -> AsyncIterator[UpstreamClient]:
    client = UpstreamClient()
    yield client
    await client.close()


def ctx_for(http: UpstreamClient, provider: str, fake: FakeOpenAI, model: str, **fields: str) -> CallContext:
    translator = REGISTRY[provider]
    values = {"base_url": fake.v1_url, "api_key": fake.api_key, **fields}
    credential = validate_credential(provider, translator.credential_fields, values)
    translator.check_credential(credential)
    return CallContext(http, credential, model, translator.base_url_for(credential), "req_test")


def chat(model: str, stream: bool = False, **body: Any) -> ChatRequest:
    return ChatRequest.parse({"model": model, "messages": HELLO, "stream": stream, **body})


async def chunks_of(provider: str, req: ChatRequest, ctx: CallContext) -> list[Any]:
    return [(orjson.loads(c.data), c.usage) async for c in REGISTRY[provider].chat_stream(req, ctx)]


def joined(chunks: list[Any], name: str) -> str:
    return "".join(c["choices"][0]["delta"].get(name) or "" for c, _ in chunks if c["choices"])


# -- DeepSeek ---------------------------------------------------------------------------------------------


async def test_deepseek_reasoner_thoughts_pass_through(http: UpstreamClient, fake_deepseek: FakeOpenAI) -> None:
    ctx = ctx_for(http, "deepseek", fake_deepseek, "deepseek-reasoner")
    thought = fake_deepseek.state.reasoning_text
    whole = await REGISTRY["deepseek"].chat(chat("deepseek-reasoner"), ctx)
    message = whole["choices"][0]["message"]
    assert (message["content"], message["reasoning_content"]) == (REPLY, thought)
    assert whole["usage"]["completion_tokens_details"]["reasoning_tokens"] == len(thought.split())
    chunks = await chunks_of("deepseek", chat("deepseek-reasoner", stream=True), ctx)
    assert joined(chunks, "reasoning_content") == thought and joined(chunks, "content") == REPLY
    first = chunks[0][0]["choices"][0]["delta"]
    assert first == {"role": "assistant", "content": None, "reasoning_content": ""}
    body, usage = chunks[-1]
    assert body["choices"] == [] and usage is not None and usage.completion_tokens == whole["usage"]["completion_tokens"]
    sent = fake_deepseek.state.last_request
    assert sent.path == "/v1/chat/completions" and sent.json["stream_options"] == {"include_usage": True}


async def test_deepseek_chat_has_no_thoughts_and_no_other_endpoint(http: UpstreamClient,
                                                                     fake_deepseek: FakeOpenAI) -> None:
    ctx = ctx_for(http, "deepseek", fake_deepseek, "deepseek-chat")
    whole = await REGISTRY["deepseek"].chat(chat("deepseek-chat"), ctx)
    assert "reasoning_content" not in whole["choices"][0]["message"]
    completed = await REGISTRY["deepseek"].complete(CompletionRequest.parse({"model": "deepseek-chat",
                                                                             "prompt": "Say hi"}), ctx)
    assert completed["choices"][0]["text"] == REPLY  # legacy completions through the chat path, not /beta FIM
    assert fake_deepseek.state.last_request.path == "/v1/chat/completions"
    with pytest.raises(ApiError) as caught:
        await REGISTRY["deepseek"].embed(EmbeddingRequest.parse({"model": "deepseek-chat", "input": "x"}), ctx)
    assert (caught.value.status, caught.value.code) == (400, "unsupported_by_provider")


@pytest.mark.parametrize(("status", "body", "expected"), [
    (402, deepseek_error("Insufficient Balance", "unknown_error"), (429, "insufficient_quota")),
    (401, deepseek_error("Authentication Fails, Your api key: ****abcd is invalid", "authentication_error"),
     (403, "upstream_credential_rejected")),
    (422, deepseek_error("Invalid max_tokens value, the valid range of max_tokens is [1, 8192]"), (400, None)),
    (429, deepseek_error("Rate Limit Reached", "rate_limit_error"), (429, "rate_limit_exceeded")),
    (500, deepseek_error("Internal Server Error", "internal_error"), (502, "upstream_error")),
    (503, deepseek_error("Server overloaded, please try again later", "service_unavailable_error"),
     (503, "upstream_unavailable")),
])
async def test_deepseek_errors(http: UpstreamClient, fake_deepseek: FakeOpenAI, status: int, body: dict[str, Any],
                               expected: tuple[int, str | None]) -> None:
    fake_deepseek.state.fail_next.append((status, body))
    with pytest.raises(ApiError) as caught:
        await REGISTRY["deepseek"].chat(chat("deepseek-chat"), ctx_for(http, "deepseek", fake_deepseek, "deepseek-chat"))
    assert (caught.value.status, caught.value.code) == expected
    assert body["error"]["message"] in caught.value.message


# -- Moonshot ---------------------------------------------------------------------------------------------


async def test_moonshot_usage_moves_from_the_choice(http: UpstreamClient, fake_moonshot: FakeOpenAI) -> None:
    ctx = ctx_for(http, "moonshot", fake_moonshot, "moonshot-v1-8k")
    whole = await REGISTRY["moonshot"].chat(chat("moonshot-v1-8k"), ctx)
    chunks = await chunks_of("moonshot", chat("moonshot-v1-8k", stream=True), ctx)
    assert "stream_options" not in fake_moonshot.state.last_request.json
    assert joined(chunks, "content") == REPLY
    *content, (last, usage) = chunks
    assert last["choices"] == [] and usage is not None and usage.total_tokens == whole["usage"]["total_tokens"]
    assert all(u is None and "usage" not in c and "usage" not in c["choices"][0] for c, u in content)
    assert content[-1][0]["choices"][0]["finish_reason"] == "stop"


@pytest.mark.parametrize(("status", "body", "expected"), [
    (429, moonshot_error("You exceeded your current quota, please check your plan and billing details",
                         "exceeded_current_quota_error"), (429, "insufficient_quota")),
    (429, moonshot_error("The engine is currently overloaded, please try again later", "engine_overloaded_error"),
     (503, "upstream_unavailable")),
    (429, moonshot_error("Your account request reached max request: 3", "rate_limit_reached_error"),
     (429, "rate_limit_exceeded")),
    (400, moonshot_error("The request was rejected because it was considered high risk", "content_filter"),
     (400, "content_filter")),
    (401, moonshot_error("Invalid Authentication", "invalid_authentication_error"), (403, "upstream_credential_rejected")),
])
async def test_moonshot_errors_by_type(http: UpstreamClient, fake_moonshot: FakeOpenAI, status: int,
                                       body: dict[str, Any], expected: tuple[int, str]) -> None:
    fake_moonshot.state.fail_next.append((status, body))
    with pytest.raises(ApiError) as caught:
        await REGISTRY["moonshot"].chat(chat("kimi-k2.5"), ctx_for(http, "moonshot", fake_moonshot, "kimi-k2.5"))
    assert (caught.value.status, caught.value.code) == expected


# -- a generic OpenAI-compatible server -------------------------------------------------------------------


async def test_server_without_a_key(http: UpstreamClient, fake_compatible: FakeOpenAI) -> None:
    fake_compatible.state.require_key = False
    ctx = ctx_for(http, "openai_compatible", fake_compatible, "llama3.1:8b", api_key="")
    assert "api_key" not in ctx.credential
    whole = await REGISTRY["openai_compatible"].chat(chat("llama3.1:8b"), ctx)
    assert whole["choices"][0]["message"]["content"] == REPLY
    vectors = await REGISTRY["openai_compatible"].embed(EmbeddingRequest.parse({"model": "e5", "input": ["a", "b"]}),
                                                        ctx)
    assert len(vectors["data"]) == 2
    assert all("authorization" not in r.headers for r in fake_compatible.state.requests)
    assert [r.path for r in fake_compatible.state.requests] == ["/v1/chat/completions", "/v1/embeddings"]


async def test_server_with_a_key_and_plain_text_errors(http: UpstreamClient, fake_compatible: FakeOpenAI) -> None:
    ctx = ctx_for(http, "openai_compatible", fake_compatible, "Qwen/Qwen2.5-7B-Instruct")
    chunks = await chunks_of("openai_compatible", chat("Qwen/Qwen2.5-7B-Instruct", stream=True), ctx)
    assert joined(chunks, "content") == REPLY
    assert fake_compatible.state.last_request.headers["authorization"] == f"Bearer {fake_compatible.api_key}"
    fake_compatible.state.fail_next.append((500, "Internal Server Error"))
    with pytest.raises(ApiError) as caught:
        await REGISTRY["openai_compatible"].chat(chat("Qwen/Qwen2.5-7B-Instruct"), ctx)
    assert caught.value.status == 502 and "Internal Server Error" in caught.value.message


def test_the_server_url_is_required() -> None:
    fields = REGISTRY["openai_compatible"].credential_fields
    with pytest.raises(ValueError, match="base_url"):
        validate_credential("openai_compatible", fields, {"api_key": "k"})
    with pytest.raises(ValueError, match="base_url"):
        validate_credential("openai_compatible", fields, {"base_url": "http://gpu-box:8000/v1?x=1"})
