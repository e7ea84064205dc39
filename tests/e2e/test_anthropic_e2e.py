"""End-to-end: Anthropic behind a real `modelport serve`, called with the openai SDK.

A tenant of this module's own (acme and beta stay as the harness seeded them) has the
`anthropic` provider pointed at the fake Messages API; every test checks what the client
got and what reached the fake upstream.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from tests.e2e.harness import GatewayProcess, ProviderTenant, provider_tenant
from emulators.anthropic import DEFAULT_API_KEY, DEFAULT_REPLY
from tests.fakes.anthropic_fixtures import FakeAnthropic

MODEL = "claude-haiku-4-5"
USER = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "say hello to me"}]
PROMPT_TOKENS = 6  # words the fake counts: "Be brief." + "say hello to me"
TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "Weather in a city",
                                           "parameters": {"type": "object",
                                                          "properties": {"location": {"type": "string"}}}}}]
ASK_WEATHER = [{"role": "user", "content": "What is the weather in Paris?"}]
PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="


@pytest.fixture(scope="module")
def tenant(gateway: GatewayProcess, fake_anthropic_server: FakeAnthropic) -> Iterator[ProviderTenant]:
    with provider_tenant(gateway, "anthropic", [
            ("providers", "set", "anthropic", f"api_key={DEFAULT_API_KEY}",
             f"base_url={fake_anthropic_server.base_url}"),
            ("defaults", "set", "llm", f"anthropic/{MODEL}"),
    ]) as made:
        yield made


@pytest.fixture
def client(gateway: GatewayProcess, tenant: ProviderTenant, fake_anthropic: FakeAnthropic) -> Iterator[openai.OpenAI]:
    sdk = gateway.client(tenant.token)
    yield sdk
    sdk.close()


def upstream(fake: FakeAnthropic) -> dict[str, Any]:
    seen = fake.state.last_request
    assert seen.path == "/v1/messages"
    assert seen.headers["x-api-key"] == DEFAULT_API_KEY and "authorization" not in seen.headers
    assert seen.headers["anthropic-version"] == "2023-06-01"
    assert isinstance(seen.json, dict)
    return seen.json


def content_of(chunks: list[Any]) -> str:
    return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


def tool_calls_of(chunks: list[Any]) -> dict[int, dict[str, str]]:
    calls: dict[int, dict[str, str]] = {}
    for chunk in chunks:
        for delta in (chunk.choices[0].delta.tool_calls or ()) if chunk.choices else ():
            call = calls.setdefault(delta.index, {"id": "", "name": "", "arguments": ""})
            call["id"] += delta.id or ""
            if delta.function is not None:
                call["name"] += delta.function.name or ""
                call["arguments"] += delta.function.arguments or ""
    return calls


def finishes(chunks: list[Any]) -> list[str]:
    return [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]


# -- chat -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("model", [MODEL, "anthropic/claude-2", "default"])
def test_chat(client: openai.OpenAI, fake_anthropic: FakeAnthropic, model: str) -> None:
    reply = client.chat.completions.create(model=model, messages=USER, temperature=1.7, stop="never", user="u-1")
    assert reply.choices[0].message.content == DEFAULT_REPLY
    assert reply.choices[0].finish_reason == "stop"
    assert reply.id.startswith("chatcmpl-msg_01")
    assert reply.usage is not None and reply.usage.prompt_tokens == PROMPT_TOKENS
    assert reply.usage.completion_tokens == len(DEFAULT_REPLY.split())
    sent = upstream(fake_anthropic)
    upstream_model = model.removeprefix("anthropic/").replace("default", MODEL)
    assert reply.model == sent["model"] == upstream_model
    assert sent["system"] == "Be brief." and sent["messages"] == [{"role": "user", "content": "say hello to me"}]
    assert sent["max_tokens"] == (4096 if upstream_model == "claude-2" else 8192)
    assert (sent["temperature"], sent["stop_sequences"], sent["metadata"]) == (1.0, ["never"], {"user_id": "u-1"})


def test_chat_stream_with_and_without_usage(client: openai.OpenAI, fake_anthropic: FakeAnthropic) -> None:
    whole = client.chat.completions.create(model=MODEL, messages=USER, max_tokens=5)
    chunks = list(client.chat.completions.create(model=MODEL, messages=USER, max_tokens=5, stream=True,
                                                 stream_options={"include_usage": True}))
    assert upstream(fake_anthropic)["stream"] is True
    assert fake_anthropic.state.wait_for(lambda s: s.streams_finished == 1)  # counted after the last write
    assert content_of(chunks) == whole.choices[0].message.content == "Héllo 世界! The fake Claude"
    assert [c.choices[0].delta.role for c in chunks if c.choices and c.choices[0].delta.role] == ["assistant"]
    assert finishes(chunks) == [whole.choices[0].finish_reason] == ["length"]
    last = chunks[-1]
    assert last.choices == [] and last.usage is not None and whole.usage is not None
    assert (last.usage.prompt_tokens, last.usage.completion_tokens, last.usage.total_tokens) == \
        (whole.usage.prompt_tokens, whole.usage.completion_tokens, whole.usage.total_tokens)
    assert all(c.usage is None for c in chunks[:-1])
    assert len({c.id for c in chunks}) == 1
    plain = list(client.chat.completions.create(model=MODEL, messages=USER, stream=True))
    assert content_of(plain) == DEFAULT_REPLY
    assert all(c.usage is None and c.choices for c in plain)


# -- tools ------------------------------------------------------------------------------------------


def _answer_history(call_id: str, arguments: str) -> list[dict[str, Any]]:
    return [*ASK_WEATHER,
            {"role": "assistant", "content": None, "tool_calls": [
                {"id": call_id, "type": "function", "function": {"name": "get_weather", "arguments": arguments}}]},
            {"role": "tool", "tool_call_id": call_id, "content": "18 degrees and sunny"}]


def _check_tool_turns(sent: dict[str, Any], call_id: str) -> None:
    assert sent["tools"] == [{"name": "get_weather", "description": "Weather in a city",
                              "input_schema": TOOLS[0]["function"]["parameters"]}]
    assert sent["messages"][1] == {"role": "assistant", "content": [
        {"type": "tool_use", "id": call_id, "name": "get_weather", "input": {"location": "Paris"}}]}
    assert sent["messages"][2] == {"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": call_id, "content": "18 degrees and sunny"}]}


def test_tool_call_round_trip(client: openai.OpenAI, fake_anthropic: FakeAnthropic) -> None:
    fake_anthropic.state.tool_uses = [("get_weather", {"location": "Paris"})]
    first = client.chat.completions.create(model=MODEL, messages=ASK_WEATHER, tools=TOOLS, tool_choice="required",
                                           parallel_tool_calls=False)
    assert upstream(fake_anthropic)["tool_choice"] == {"type": "any", "disable_parallel_tool_use": True}
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    [call] = choice.message.tool_calls or []
    assert call.id.startswith("toolu_") and call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"location": "Paris"}
    final = client.chat.completions.create(model=MODEL, messages=_answer_history(call.id, call.function.arguments),
                                           tools=TOOLS)
    assert final.choices[0].message.content == DEFAULT_REPLY and final.choices[0].finish_reason == "stop"
    _check_tool_turns(upstream(fake_anthropic), call.id)


def test_tool_call_round_trip_streamed(client: openai.OpenAI, fake_anthropic: FakeAnthropic) -> None:
    fake_anthropic.state.tool_uses = [("get_weather", {"location": "Paris"})]
    fake_anthropic.state.tool_preamble = "I'll check the weather."
    chunks = list(client.chat.completions.create(model=MODEL, messages=ASK_WEATHER, tools=TOOLS, stream=True,
                                                 stream_options={"include_usage": True}))
    assert content_of(chunks) == "I'll check the weather."
    calls = tool_calls_of(chunks)
    assert list(calls) == [0]  # Anthropic's block index 1, renumbered
    assert calls[0]["id"].startswith("toolu_") and calls[0]["name"] == "get_weather"
    assert json.loads(calls[0]["arguments"]) == {"location": "Paris"}
    assert sum(1 for c in chunks if c.choices and c.choices[0].delta.tool_calls) > 2  # arguments in pieces
    assert finishes(chunks) == ["tool_calls"] and chunks[-1].usage is not None
    final = list(client.chat.completions.create(
        model=MODEL, messages=_answer_history(calls[0]["id"], calls[0]["arguments"]), tools=TOOLS, stream=True))
    assert content_of(final) == DEFAULT_REPLY and finishes(final) == ["stop"]
    _check_tool_turns(upstream(fake_anthropic), calls[0]["id"])


# -- vision, legacy completions --------------------------------------------------------------------


def test_image_parts_reach_the_fake_as_image_blocks(client: openai.OpenAI, fake_anthropic: FakeAnthropic) -> None:
    reply = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": [
        {"type": "text", "text": "What is in these pictures?"},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg", "detail": "low"}}]}])
    assert reply.choices[0].message.content == DEFAULT_REPLY
    assert upstream(fake_anthropic)["messages"][0]["content"] == [
        {"type": "text", "text": "What is in these pictures?"},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
        {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}}]


def test_legacy_completions_through_the_chat_path(client: openai.OpenAI, fake_anthropic: FakeAnthropic) -> None:
    whole = client.completions.create(model="claude-2", prompt="Say hi", max_tokens=50)
    assert whole.object == "text_completion" and whole.choices[0].text == DEFAULT_REPLY
    assert whole.choices[0].finish_reason == "stop" and whole.id.startswith("cmpl-msg_01")
    sent = upstream(fake_anthropic)
    assert sent["messages"] == [{"role": "user", "content": "Say hi"}] and sent["max_tokens"] == 50
    chunks = list(client.completions.create(model="claude-2", prompt="Say hi", stream=True,
                                            stream_options={"include_usage": True}))
    assert "".join(c.choices[0].text for c in chunks if c.choices) == DEFAULT_REPLY
    assert chunks[-1].choices == [] and chunks[-1].usage is not None and chunks[-1].usage.prompt_tokens == 2


# -- errors ------------------------------------------------------------------------------------------


def test_rejected_key_is_403_naming_the_provider(client: openai.OpenAI, fake_anthropic: FakeAnthropic) -> None:
    fake_anthropic.state.api_keys.clear()  # the fake now says 401 "invalid x-api-key"
    for stream in (False, True):
        with pytest.raises(openai.PermissionDeniedError) as caught:
            client.chat.completions.create(model=MODEL, messages=USER, stream=stream)
        assert caught.value.status_code == 403 and caught.value.code == "upstream_credential_rejected"
        assert "anthropic" in caught.value.message and DEFAULT_API_KEY not in caught.value.message
    assert len(fake_anthropic.state.requests) == 2


def test_rate_limit_keeps_retry_after(client: openai.OpenAI, fake_anthropic: FakeAnthropic) -> None:
    fake_anthropic.state.fail(429, "Number of request tokens has exceeded your rate limit", {"retry-after": "7"})
    with pytest.raises(openai.RateLimitError) as caught:
        client.chat.completions.create(model=MODEL, messages=USER)
    assert caught.value.status_code == 429 and "rate limit" in caught.value.message
    assert caught.value.response.headers["retry-after"] == "7"


@pytest.mark.parametrize("stream", [False, True])
def test_overloaded_is_503(client: openai.OpenAI, fake_anthropic: FakeAnthropic, stream: bool) -> None:
    fake_anthropic.state.fail(529, "Overloaded")
    with pytest.raises(openai.InternalServerError) as caught:
        client.chat.completions.create(model=MODEL, messages=USER, stream=stream)
    assert caught.value.status_code == 503 and "Overloaded" in caught.value.message


def test_upstream_400_passes_with_its_message(client: openai.OpenAI, fake_anthropic: FakeAnthropic) -> None:
    with pytest.raises(openai.BadRequestError) as caught:  # Anthropic wants the user to speak first
        client.chat.completions.create(model=MODEL, messages=[{"role": "assistant", "content": "Hello!"}])
    assert caught.value.status_code == 400 and "first message" in caught.value.message


def test_unsupported_field_is_400_before_any_upstream_call(client: openai.OpenAI,
                                                           fake_anthropic: FakeAnthropic) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model=MODEL, messages=USER, n=2)
    assert caught.value.param == "n" and "anthropic" in caught.value.message
    assert fake_anthropic.state.requests == []


def test_mid_stream_error_raises_during_iteration(client: openai.OpenAI, fake_anthropic: FakeAnthropic) -> None:
    fake_anthropic.state.stream_error_after = 6  # message_start, block start, ping, three text deltas
    received: list[str] = []
    with pytest.raises(openai.APIError) as caught:
        for chunk in client.chat.completions.create(model=MODEL, messages=USER, stream=True):
            received.append(chunk.choices[0].delta.content or "")
    assert "".join(received) == "Héllo 世界! The"
    assert "overloaded" in str(caught.value).lower()
    assert fake_anthropic.state.wait_for(lambda s: s.streams_errored == 1)  # counted after the last write


def test_client_disconnect_closes_the_upstream(gateway: GatewayProcess, tenant: ProviderTenant,
                                               fake_anthropic: FakeAnthropic) -> None:
    state = fake_anthropic.state
    state.reply_text = " ".join(f"word{i}" for i in range(400))  # ~20 s at 0.05 s per event
    state.stream_delay = 0.05
    body = {"model": MODEL, "messages": USER, "stream": True, "max_tokens": 1000}
    started = time.monotonic()
    with httpx.Client(base_url=gateway.base_url, headers={"Authorization": f"Bearer {tenant.token}"},
                      timeout=15) as http, http.stream("POST", "/v1/chat/completions", json=body) as resp:
        assert resp.status_code == 200
        assert next(resp.iter_bytes()).startswith(b"data: {")
    assert state.wait_for(lambda s: s.streams_aborted >= 1, timeout=5.0), \
        f"upstream stream not closed: started={state.streams_started} aborted={state.streams_aborted}"
    assert state.streams_finished == 0
    assert time.monotonic() - started < 6.0
