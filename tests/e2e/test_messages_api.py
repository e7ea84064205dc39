"""End-to-end: Anthropic's Messages API served by a real `modelport serve` (issue 17), called
with the official anthropic SDK (and raw HTTP where the bytes matter).

One tenant of this module's own has three providers: OpenAI (fake, reached through the chat
path), Anthropic (fake, native passthrough) and Qwen (fake DashScope, a Chinese provider,
through the chat path), its default llm a Qwen model. Each test checks what the client got
and what reached the fake upstream; streams are checked against Anthropic's documented
event order (`documented_order`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import pytest

from tests.e2e.harness import GatewayProcess, ProviderTenant, provider_tenant
from tests.e2e.hosted_setup import usage_rows, wait_until
from tests.e2e.inbound_setup import Fakes, provider_commands
from emulators.anthropic import DEFAULT_API_KEY as ANTHROPIC_KEY
from emulators.anthropic import DEFAULT_REPLY as ANTHROPIC_REPLY
from tests.fakes.anthropic_fixtures import FakeAnthropic
from tests.fakes.fixtures import FakeOpenAI
from emulators.openai import DEFAULT_API_KEY as OPENAI_KEY
from emulators.qwen import DEFAULT_REPLY as QWEN_REPLY
from tests.fakes.qwen_fixtures import FakeQwen

MODELS = {"openai": "openai/gpt-4o-mini", "anthropic": "anthropic/claude-haiku-4-5", "qwen": "qwen/qwen-plus"}
REPLIES = {"openai": "Hello from the fake!", "anthropic": ANTHROPIC_REPLY, "qwen": QWEN_REPLY}
SYSTEM = [{"type": "text", "text": "You are a terse assistant.", "cache_control": {"type": "ephemeral"}}]
HELLO = [{"role": "user", "content": [{"type": "text", "text": "say hello", "cache_control": {"type": "ephemeral"}}]}]
WEATHER_TOOL = {"name": "get_weather", "description": "Weather in a city",
                "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}
ASK_WEATHER = [{"role": "user", "content": "What is the weather in Paris?"}]
RAW_EVENTS = {"message_start", "content_block_start", "content_block_delta", "content_block_stop", "message_delta",
              "message_stop", "ping"}


@pytest.fixture(scope="module")
def tenant(gateway: GatewayProcess, fake_openai_server: FakeOpenAI, fake_anthropic_server: FakeAnthropic,
           fake_qwen_server: FakeQwen) -> Iterator[ProviderTenant]:
    with provider_tenant(gateway, "msgs", [
            *provider_commands(fake_openai_server, fake_anthropic_server, fake_qwen_server),
            ("defaults", "set", "llm", MODELS["qwen"]),
    ]) as made:
        yield made


@pytest.fixture
def fakes(fake_openai: FakeOpenAI, fake_anthropic: FakeAnthropic, fake_qwen: FakeQwen) -> Fakes:
    return Fakes(fake_openai, fake_anthropic, fake_qwen)


@pytest.fixture
def client(gateway: GatewayProcess, tenant: ProviderTenant) -> Iterator[anthropic.Anthropic]:
    sdk = anthropic.Anthropic(base_url=gateway.base_url, api_key=tenant.token, max_retries=0, timeout=15.0)
    yield sdk
    sdk.close()


def documented_order(events: list[tuple[str, dict[str, Any]]]) -> None:
    """Anthropic's stream grammar: message_start; per content block, in index order from 0,
    content_block_start, its deltas, content_block_stop; message_delta; message_stop last;
    `ping` anywhere; each event's data names its event."""
    assert all(data["type"] == name for name, data in events), events
    names = [name for name, _ in events if name != "ping"]
    assert names[0] == "message_start" and names[-2:] == ["message_delta", "message_stop"], names
    assert names.count("message_start") == names.count("message_delta") == names.count("message_stop") == 1
    following, open_block = 0, None
    for name, data in events[1:-2]:
        if name == "content_block_start":
            assert open_block is None and data["index"] == following, events
            open_block, following = following, following + 1
        elif name == "content_block_delta":
            assert data["index"] == open_block, events
        elif name == "content_block_stop":
            assert data["index"] == open_block, events
            open_block = None
        else:
            assert name in ("ping", "message_delta"), name
    assert open_block is None


def sse_events(body: bytes) -> list[tuple[str, dict[str, Any]]]:
    events = []
    for block in body.decode().split("\n\n"):
        if block.strip():
            fields = dict(line.split(": ", 1) for line in block.split("\n"))
            events.append((fields["event"], json.loads(fields["data"])))
    return events


def streamed(client: anthropic.Anthropic, **params: Any) -> tuple[list[tuple[str, dict[str, Any]]], Any]:
    """The raw events of a `messages.stream` (the SDK's helper events left out) and its final message."""
    with client.messages.stream(**params) as stream:
        events = [(e.type, e.model_dump()) for e in stream if e.type in RAW_EVENTS]
        return events, stream.get_final_message()


# -- text ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("provider", list(MODELS))
def test_create_text(client: anthropic.Anthropic, fakes: Fakes, provider: str) -> None:
    raw = client.messages.with_raw_response.create(model=MODELS[provider], max_tokens=200, system=SYSTEM,
                                                   messages=HELLO, stop_sequences=["zzz"],
                                                   extra_body={"temperature": 0.5, "top_k": 5})
    assert raw.headers["x-modelport-provider"] == provider and raw.headers["x-request-id"]
    message = raw.parse()
    assert message.type == "message" and message.role == "assistant" and message.id.startswith("msg_")
    assert [b.type for b in message.content] == ["text"] and message.content[0].text == REPLIES[provider]
    assert message.stop_reason == "end_turn" and message.stop_sequence is None
    assert message.usage.input_tokens > 0 and message.usage.output_tokens == len(REPLIES[provider].split())
    seen = fakes.seen(provider)
    if provider == "anthropic":  # native: the client's own body, the routed model in it
        assert seen == {"model": "claude-haiku-4-5", "max_tokens": 200, "system": SYSTEM, "messages": HELLO,
                        "temperature": 0.5, "top_k": 5, "stop_sequences": ["zzz"]}
    elif provider == "openai":  # the chat form: the system message first, cache_control gone, no top_k
        assert seen["messages"] == [{"role": "system", "content": "You are a terse assistant."},
                                    {"role": "user", "content": "say hello"}]
        assert (seen["max_tokens"], seen["temperature"], seen["stop"]) == (200, 0.5, ["zzz"]) and "top_k" not in seen
    else:
        assert seen["input"]["messages"][0] == {"role": "system", "content": "You are a terse assistant."}
        assert seen["parameters"]["top_k"] == 5  # Qwen has top_k


@pytest.mark.parametrize("provider", list(MODELS))
def test_stream_text(client: anthropic.Anthropic, fakes: Fakes, provider: str) -> None:
    whole = client.messages.create(model=MODELS[provider], max_tokens=200, system=SYSTEM, messages=HELLO)
    events, final = streamed(client, model=MODELS[provider], max_tokens=200, system=SYSTEM, messages=HELLO)
    documented_order(events)
    assert [b.type for b in final.content] == ["text"] and final.content[0].text == REPLIES[provider]
    assert final.stop_reason == "end_turn"
    assert (final.usage.input_tokens, final.usage.output_tokens) == (whole.usage.input_tokens,
                                                                     whole.usage.output_tokens)
    deltas = [d["delta"]["text"] for n, d in events if n == "content_block_delta"]
    assert len(deltas) > 1 and "".join(deltas) == REPLIES[provider]


def test_default_model_and_max_tokens_cut(client: anthropic.Anthropic, fakes: Fakes) -> None:
    message = client.messages.create(model="default", max_tokens=2, messages=HELLO)
    assert fakes.seen("qwen")["model"] == "qwen-plus"
    assert message.stop_reason == "max_tokens" and message.usage.output_tokens == 2


# -- tools -----------------------------------------------------------------------------------------


def _tool_result(call_id: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": [{"type": "tool_result", "tool_use_id": call_id,
                                          "content": [{"type": "text", "text": "18 degrees and sunny"}]}]}]


@pytest.mark.parametrize("stream", [False, True], ids=["create", "stream"])
@pytest.mark.parametrize("provider", list(MODELS))
def test_tool_use_round_trip(client: anthropic.Anthropic, fakes: Fakes, provider: str, stream: bool) -> None:
    fakes.script_tool(provider)
    params: dict[str, Any] = {"model": MODELS[provider], "max_tokens": 300, "tools": [WEATHER_TOOL],
                              "messages": ASK_WEATHER, "tool_choice": {"type": "any"}}
    if stream:
        events, first = streamed(client, **params)
        documented_order(events)
        pieces = [d["delta"]["partial_json"] for n, d in events if n == "content_block_delta"]
        assert json.loads("".join(pieces)) == {"city": "Paris"}
    else:
        first = client.messages.create(**params)
    assert first.stop_reason == "tool_use"
    [call] = [b for b in first.content if b.type == "tool_use"]
    assert call.name == "get_weather" and call.input == {"city": "Paris"} and call.id
    seen = fakes.seen(provider)
    if provider == "openai":
        assert seen["tool_choice"] == "required"
        assert seen["tools"] == [{"type": "function", "function": {
            "name": "get_weather", "description": "Weather in a city", "parameters": WEATHER_TOOL["input_schema"]}}]
    fakes.unscript_tool()
    history = [*ASK_WEATHER, {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in first.content]},
               *_tool_result(call.id)]
    final = client.messages.create(model=MODELS[provider], max_tokens=300, tools=[WEATHER_TOOL], messages=history)
    assert final.stop_reason == "end_turn" and final.content[0].text == REPLIES[provider]
    seen = fakes.seen(provider)
    if provider == "anthropic":
        assert seen["messages"][1:] == history[1:]
    elif provider == "openai":
        assert seen["messages"][1]["tool_calls"] == [{"id": call.id, "type": "function", "function": {
            "name": "get_weather", "arguments": '{"city":"Paris"}'}}]
        assert seen["messages"][2] == {"role": "tool", "tool_call_id": call.id, "content": "18 degrees and sunny"}
    else:
        assert seen["input"]["messages"][-1]["role"] == "tool"
        assert seen["input"]["messages"][-1]["content"] == "18 degrees and sunny"


# -- Claude Code's request shape ------------------------------------------------------------------------


CLAUDE_CODE_BETAS = "claude-code-20250219,interleaved-thinking-2025-05-14,fine-grained-tool-streaming-2025-05-14," \
                    "no-such-beta-2099-01-01"


def claude_code_body(model: str) -> dict[str, Any]:
    return {
        "model": model, "max_tokens": 8192, "stream": True, "temperature": 1,
        "system": [{"type": "text", "text": "You are Claude Code, Anthropic's official CLI for Claude.",
                    "cache_control": {"type": "ephemeral"}},
                   {"type": "text", "text": "You help with software engineering tasks.",
                    "cache_control": {"type": "ephemeral"}}],
        "messages": [{"role": "user", "content": [
            {"type": "text", "text": "<system-reminder>This is a reminder.</system-reminder>"},
            {"type": "text", "text": "list the files", "cache_control": {"type": "ephemeral"}}]}],
        "tools": [{"name": "Bash", "description": "Run a shell command",
                   "input_schema": {"$schema": "http://json-schema.org/draft-07/schema#", "type": "object",
                                    "properties": {"command": {"type": "string"}}, "required": ["command"],
                                    "additionalProperties": False},
                   "cache_control": {"type": "ephemeral"}}],
        "metadata": {"user_id": "user_0123abcd_account__session_4567"},
    }


@pytest.mark.parametrize("provider", ["qwen", "anthropic"])
def test_claude_code_request_shape(gateway: GatewayProcess, tenant: ProviderTenant, fakes: Fakes,
                                   provider: str) -> None:
    model = "default" if provider == "qwen" else "claude-haiku-4-5"
    body = claude_code_body(model)
    headers = {"x-api-key": tenant.token, "anthropic-version": "2023-06-01", "anthropic-beta": CLAUDE_CODE_BETAS,
               "user-agent": "claude-cli/2.0.0 (external, cli)", "x-app": "cli"}
    reply = httpx.post(f"{gateway.base_url}/v1/messages?beta=true", json=body, headers=headers, timeout=15)
    assert reply.status_code == 200, reply.text
    assert reply.headers["content-type"].startswith("text/event-stream")
    events = sse_events(reply.content)
    documented_order(events)
    text = "".join(d["delta"].get("text", "") for n, d in events if n == "content_block_delta")
    assert text == REPLIES[provider]
    seen = fakes.seen(provider)
    if provider == "anthropic":
        assert seen == {**body, "model": "claude-haiku-4-5"}  # cache_control, metadata and all, as sent
        assert fakes.anthropic.state.last_request.headers["anthropic-beta"] == CLAUDE_CODE_BETAS
        assert fakes.anthropic.state.last_request.headers["x-api-key"] == ANTHROPIC_KEY
    else:
        assert seen["input"]["messages"][0]["content"].startswith("You are Claude Code")
        assert seen["input"]["messages"][1] == {"role": "user", "content": (
            "<system-reminder>This is a reminder.</system-reminder>\n\nlist the files")}
        assert seen["parameters"]["tools"][0]["function"]["name"] == "Bash"


# -- count_tokens -------------------------------------------------------------------------------------


@pytest.mark.parametrize("provider", list(MODELS))
def test_count_tokens(client: anthropic.Anthropic, fakes: Fakes, provider: str) -> None:
    raw = client.messages.with_raw_response.count_tokens(model=MODELS[provider], system=SYSTEM, messages=HELLO,
                                                         tools=[WEATHER_TOOL])
    count = raw.parse().input_tokens
    if provider == "anthropic":  # the vendor's own counter, the words the fake counts
        assert count == 7 and "x-modelport-tokens-estimated" not in raw.headers
        assert fakes.anthropic.state.last_request.path == "/v1/messages/count_tokens"
    else:  # no counter there: the estimate, and saying so
        assert count > 7 and raw.headers["x-modelport-tokens-estimated"] == "true"
        assert not getattr(fakes, provider).state.requests


# -- errors in Anthropic's shape ----------------------------------------------------------------------


def _error(response: httpx.Response, status: int, kind: str) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["type"] == "error" and body["error"]["type"] == kind, body
    return str(body["error"]["message"])


def test_bad_key_is_an_authentication_error(gateway: GatewayProcess) -> None:
    sdk = anthropic.Anthropic(base_url=gateway.base_url, api_key="mp-not-a-key", max_retries=0)
    with pytest.raises(anthropic.AuthenticationError) as caught:
        sdk.messages.create(model="default", max_tokens=10, messages=HELLO)
    assert caught.value.body["error"]["type"] == "authentication_error"
    reply = httpx.post(f"{gateway.base_url}/v1/messages", headers={"x-api-key": "mp-wrong"},
                       json={"model": "default", "max_tokens": 10, "messages": HELLO})
    assert "mp-wrong" not in _error(reply, 401, "authentication_error")
    reply = httpx.post(f"{gateway.base_url}/v1/messages/count_tokens", json={"model": "default", "messages": HELLO})
    _error(reply, 401, "authentication_error")


def test_unknown_paths_and_methods_answer_in_anthropics_shape(gateway: GatewayProcess,
                                                               tenant: ProviderTenant) -> None:
    headers = {"x-api-key": tenant.token}
    _error(httpx.get(f"{gateway.base_url}/v1/messages", headers=headers), 405, "invalid_request_error")
    _error(httpx.post(f"{gateway.base_url}/v1/messages/batches", headers=headers, json={}), 404, "not_found_error")
    sdk = anthropic.Anthropic(base_url=gateway.base_url, api_key=tenant.token, max_retries=0)
    with pytest.raises(anthropic.NotFoundError) as caught:
        sdk.get("/v1/messages/nope/nothing", cast_to=object)
    assert caught.value.body["error"]["type"] == "not_found_error"
    # Elsewhere, OpenAI's shape as before.
    assert httpx.get(f"{gateway.base_url}/v1/nothing").json()["error"]["code"] == "unknown_url"


def test_bad_requests(gateway: GatewayProcess, tenant: ProviderTenant, fakes: Fakes) -> None:
    url, headers = f"{gateway.base_url}/v1/messages", {"x-api-key": tenant.token}
    assert "max_tokens" in _error(httpx.post(url, headers=headers, json={"model": "default", "messages": HELLO}),
                                  400, "invalid_request_error")
    _error(httpx.post(url, headers={**headers, "content-type": "application/json"}, content=b"{not json"),
           400, "invalid_request_error")
    _error(httpx.post(url, headers={**headers, "content-type": "application/json"}, content=b" " * 1_100_000),
           413, "request_too_large")
    web_search = {"type": "web_search_20250305", "name": "web_search"}
    message = _error(httpx.post(url, headers=headers, json={"model": MODELS["openai"], "max_tokens": 10,
                                                            "messages": HELLO, "tools": [web_search]}),
                     400, "invalid_request_error")
    assert "web_search_20250305" in message and not fakes.openai.state.requests
    assert not fakes.anthropic.state.requests  # ... which the native provider would have been sent


def test_unknown_model_is_not_found(client: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.NotFoundError) as caught:
        client.messages.create(model="no-such-model", max_tokens=10, messages=HELLO)
    assert caught.value.body["error"]["type"] == "not_found_error"


def test_upstream_overloaded_is_529(client: anthropic.Anthropic, fakes: Fakes) -> None:
    fakes.anthropic.state.fail(529)
    with pytest.raises(anthropic.APIStatusError) as caught:
        client.messages.create(model=MODELS["anthropic"], max_tokens=10, messages=HELLO)
    assert caught.value.status_code == 529
    assert caught.value.body["error"]["type"] == "overloaded_error"


@pytest.mark.parametrize("provider", ["anthropic", "openai"])
def test_failure_mid_stream_is_an_error_event(gateway: GatewayProcess, tenant: ProviderTenant, fakes: Fakes,
                                              provider: str) -> None:
    if provider == "anthropic":
        fakes.anthropic.state.stream_error_after = 4
    else:
        fakes.openai.state.fail_after_chunks = 2
    body = {"model": MODELS[provider], "max_tokens": 100, "messages": HELLO, "stream": True}
    reply = httpx.post(f"{gateway.base_url}/v1/messages", json=body, headers={"x-api-key": tenant.token}, timeout=15)
    assert reply.status_code == 200
    events = sse_events(reply.content)
    assert events[0][0] == "message_start" and events[-1][0] == "error"
    assert "message_stop" not in [n for n, _ in events]
    assert events[-1][1]["error"]["type"] in ("overloaded_error", "api_error")


def test_rate_limit_is_a_rate_limit_error(gateway: GatewayProcess, fake_openai_server: FakeOpenAI,
                                          fakes: Fakes) -> None:
    with provider_tenant(gateway, "msgs-rl", [
            ("providers", "set", "openai", f"api_key={OPENAI_KEY}", f"base_url={fake_openai_server.v1_url}"),
            ("limits", "set", "--model", MODELS["openai"], "--rpm", "1")]) as limited:
        sdk = anthropic.Anthropic(base_url=gateway.base_url, api_key=limited.token, max_retries=0)
        deadline = time.monotonic() + 10
        with pytest.raises(anthropic.RateLimitError) as caught:
            while time.monotonic() < deadline:  # until both workers know the limit
                sdk.messages.create(model=MODELS["openai"], max_tokens=10, messages=HELLO)
        assert caught.value.body["error"]["type"] == "rate_limit_error"
        assert caught.value.response.headers["retry-after"]


# -- one system: usage ---------------------------------------------------------------------------------


def test_usage_rows_say_messages(gateway: GatewayProcess, fake_openai_server: FakeOpenAI,
                                 fake_anthropic_server: FakeAnthropic, fakes: Fakes) -> None:
    with provider_tenant(gateway, "msgs-usage", [
            ("providers", "set", "openai", f"api_key={OPENAI_KEY}", f"base_url={fake_openai_server.v1_url}"),
            ("providers", "set", "anthropic", f"api_key={ANTHROPIC_KEY}",
             f"base_url={fake_anthropic_server.base_url}")]) as made:
        sdk = anthropic.Anthropic(base_url=gateway.base_url, api_key=made.token, max_retries=0)
        sdk.messages.create(model=MODELS["openai"], max_tokens=50, messages=HELLO)
        streamed(sdk, model=MODELS["anthropic"], max_tokens=50, messages=HELLO)
        wait_until(lambda: len(usage_rows(gateway, made.name)) == 2, timeout=10)
        rows = sorted(usage_rows(gateway, made.name), key=lambda r: r["provider"])
    assert [(r["endpoint"], r["provider"], r["stream"], r["status"]) for r in rows] == [
        ("messages", "anthropic", 1, 200), ("messages", "openai", 0, 200)]
    assert rows[0]["completion_tokens"] == len(ANTHROPIC_REPLY.split()) and not rows[0]["estimated"]
    assert rows[1]["completion_tokens"] == len(REPLIES["openai"].split()) and rows[1]["prompt_tokens"] > 0
