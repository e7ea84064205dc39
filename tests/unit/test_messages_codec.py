"""The Messages API as an inbound codec (translators/anthropic/inbound*.py), without a server:
requests to their chat form, chat answers and chunks to Anthropic's shapes, errors, the
token estimate, the relay's usage reading, and the framings of proxy/sse.py that write them."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from pydantic import ValidationError

from proxy import sse
from proxy.hosted import build_offers
from proxy.hosted_params import restrict
from proxy.settings import HostedSettings
from translators._inbound import InboundChatRequest
from translators._shapes import chat_chunk, usage_chunk
from translators._sse import SSEEvent
from translators.anthropic.codec import AnthropicState, relay_event
from translators.anthropic.inbound import (
    MESSAGES,
    MessagesEncoder,
    error_of,
    from_chat,
    message_id,
)
from translators.anthropic.inbound_request import (
    CountRequest,
    MessagesRequest,
    estimate_input_tokens,
    to_chat,
)
from translators.errors import ApiError, UpstreamError
from translators.types import ChatRequest, StreamChunk, Usage

PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
TOOL = {"name": "get_weather", "description": "Weather", "cache_control": {"type": "ephemeral"},
        "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}


def request(**fields: Any) -> MessagesRequest:
    body = {"model": "default", "max_tokens": 100, "messages": [{"role": "user", "content": "hi"}], **fields}
    return MessagesRequest.parse(body)


def chat_of(**fields: Any) -> InboundChatRequest:
    return to_chat(request(**fields))


# -- requests -> the chat form ---------------------------------------------------------------------


def test_a_conversation_becomes_its_chat_form() -> None:
    req = chat_of(
        system=[{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}},
                {"type": "text", "text": "Be kind."}],
        messages=[
            {"role": "user", "content": [{"type": "text", "text": "<reminder/>"},
                                         {"type": "text", "text": "weather?", "cache_control": {"type": "ephemeral"}}]},
            {"role": "assistant", "content": [{"type": "thinking", "thinking": "hm", "signature": "s"},
                                              {"type": "text", "text": "Checking."},
                                              {"type": "tool_use", "id": "toolu_1", "name": "get_weather",
                                               "input": {"city": "Paris"}}]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "is_error": True,
                 "content": [{"type": "text", "text": "timeout"},
                             {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}}]},
                {"type": "text", "text": "try again"}]},
        ],
        tools=[TOOL], tool_choice={"type": "tool", "name": "get_weather", "disable_parallel_tool_use": True},
        stop_sequences=["END"], temperature=0.2, top_p=0.9, top_k=7, metadata={"user_id": "u"},
        thinking={"type": "enabled", "budget_tokens": 1024}, stream=True)
    assert req.raw == {
        "model": "default", "max_tokens": 100, "stream": True, "temperature": 0.2, "top_p": 0.9, "stop": ["END"],
        "messages": [
            {"role": "system", "content": "Be brief.\n\nBe kind."},
            {"role": "user", "content": "<reminder/>\n\nweather?"},
            {"role": "assistant", "content": "Checking.", "tool_calls": [
                {"id": "toolu_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}}]},
            {"role": "tool", "tool_call_id": "toolu_1", "content": "Error: timeout"},
            {"role": "user", "content": [{"type": "text", "text": "try again"},
                                         {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}}]},
        ],
        "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": TOOL["input_schema"],
                                                    "description": "Weather"}}],
        "tool_choice": {"type": "function", "function": {"name": "get_weather"}}, "parallel_tool_calls": False,
    }
    assert req.native_body is not None and req.native_body["metadata"] == {"user_id": "u"}  # the client's own body
    assert req.for_chat(frozenset()) is req  # top_k only where a translator reads it
    assert req.for_chat(frozenset({"top_k"})).raw["top_k"] == 7


@pytest.mark.parametrize(("choice", "expected"), [("auto", "auto"), ("any", "required"), ("none", "none")])
def test_tool_choices(choice: str, expected: str) -> None:
    assert chat_of(tools=[TOOL], tool_choice={"type": choice}).raw["tool_choice"] == expected


def test_what_only_a_native_provider_can_do_is_refused_on_the_chat_path_only() -> None:
    web_search = {"type": "web_search_20250305", "name": "web_search", "max_uses": 3}
    for req in (chat_of(tools=[TOOL, web_search]),
                chat_of(messages=[{"role": "user", "content": [
                    {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "x"}}]}])):
        assert req.native_body is not None  # a native attempt sends it as it came
        with pytest.raises(ApiError) as caught:
            req.for_chat(frozenset())
        assert caught.value.status == 400 and caught.value.code == "unsupported_on_chat_path"
    assert [t["function"]["name"] for t in chat_of(tools=[TOOL, web_search]).raw["tools"]] == ["get_weather"]


@pytest.mark.parametrize("fields", [
    {"max_tokens": None}, {"max_tokens": 0}, {"temperature": 1.5}, {"messages": []},
    {"messages": [{"role": "system", "content": "x"}]}, {"stream": "yes"},
])
def test_malformed_requests_are_validation_errors(fields: dict[str, Any]) -> None:
    body = {"model": "m", "max_tokens": 100, "messages": [{"role": "user", "content": "hi"}], **fields}
    body = {k: v for k, v in body.items() if v is not None}
    with pytest.raises(ValidationError):
        MessagesRequest.parse(body)


@pytest.mark.parametrize("fields", [
    {"tool_choice": {"type": "auto"}},  # without tools
    {"tools": [TOOL], "tool_choice": {"type": "sometimes"}},
    {"messages": [{"role": "assistant", "content": [{"type": "tool_use", "id": "t", "name": "x", "input": "{}"}]}]},
    {"messages": [{"role": "user", "content": [{"type": "tool_result"}]}]},
    {"messages": [{"role": "user", "content": [{"type": "image", "source": {"type": "base64",
                                                                            "media_type": "image/bmp", "data": "x"}}]}]},
])
def test_malformed_blocks_are_400s_at_once(fields: dict[str, Any]) -> None:
    with pytest.raises(ApiError) as caught:
        chat_of(**fields)
    assert caught.value.status == 400


def test_a_hosted_trial_gets_the_chat_form_only() -> None:
    offer = build_offers({"anthropic": HostedSettings(credentials={"api_key": "sk-ant-platform-0123456789"}, quota=3,
                                                      models=["claude-haiku-4-5"], max_tokens=256)})["anthropic"]
    req = chat_of(model="claude-haiku-4-5", max_tokens=200)
    trial = restrict(offer, req)
    assert isinstance(trial, InboundChatRequest) and trial.native_body is None and req.native_body is not None
    assert trial.raw == req.raw and trial.messages == req.messages  # the same chat form
    with pytest.raises(ApiError) as caught:
        restrict(offer, chat_of(model="claude-haiku-4-5", max_tokens=1000))
    assert caught.value.code == "hosted_max_tokens_exceeded"


# -- answers -------------------------------------------------------------------------------------------


def completion(message: dict[str, Any], finish: str, usage: dict[str, Any] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"id": "chatcmpl-abc", "model": "gpt-x",
                            "choices": [{"index": 0, "message": message, "finish_reason": finish}]}
    if usage is not None:
        body["usage"] = usage
    return body


def test_a_chat_answer_becomes_a_message() -> None:
    calls = [{"id": "call_1", "type": "function", "function": {"name": "f", "arguments": '{"a": 1}'}},
             {"id": "call_2", "type": "function", "function": {"name": "g", "arguments": "not json"}}]
    usage = {"prompt_tokens": 10, "completion_tokens": 4, "prompt_tokens_details": {"cached_tokens": 3}}
    message = from_chat(completion({"role": "assistant", "content": "Let me see.", "tool_calls": calls}, "tool_calls",
                                   usage), chat_of())
    assert message == {
        "id": "msg_abc", "type": "message", "role": "assistant", "model": "gpt-x",
        "content": [{"type": "text", "text": "Let me see."},
                    {"type": "tool_use", "id": "call_1", "name": "f", "input": {"a": 1}},
                    {"type": "tool_use", "id": "call_2", "name": "g", "input": {}}],
        "stop_reason": "tool_use", "stop_sequence": None,
        "usage": {"input_tokens": 7, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 3, "output_tokens": 4},
    }


@pytest.mark.parametrize(("finish", "reason"), [("stop", "end_turn"), ("length", "max_tokens"),
                                                ("content_filter", "refusal"), (None, "end_turn")])
def test_finish_reasons(finish: str | None, reason: str) -> None:
    answer = from_chat(completion({"role": "assistant", "content": "hello there"}, finish), chat_of())  # type: ignore[arg-type]
    assert answer["stop_reason"] == reason
    assert answer["usage"]["output_tokens"] == 3  # no usage from the provider: estimated


def test_message_ids() -> None:
    assert message_id("chatcmpl-msg_01abc") == "msg_01abc"  # Anthropic's own id, through its chat path
    assert message_id("chatcmpl-xyz") == "msg_xyz" and message_id(None) == "msg_gateway"


# -- streams -------------------------------------------------------------------------------------------


def chunk(delta: dict[str, Any], finish: str | None = None) -> StreamChunk:
    return chat_chunk("chatcmpl-s1", 1, "gpt-x", delta, finish)


def events_of(encoder: MessagesEncoder, chunks: list[StreamChunk]) -> list[tuple[str, dict[str, Any]]]:
    events = [e for c in chunks for e in encoder.chunk(c)] + encoder.end()
    return [(name, orjson.loads(data)) for name, data in events]


def test_a_chat_stream_becomes_anthropics_events() -> None:
    usage = Usage(10, 5, 15)
    events = events_of(MessagesEncoder("default", 9), [
        chunk({"role": "assistant", "content": ""}), chunk({"content": "Hi"}), chunk({"content": " there"}),
        chunk({"tool_calls": [{"index": 0, "id": "call_1", "type": "function",
                               "function": {"name": "f", "arguments": ""}}]}),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"a":'}}]}),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": " 1}"}}]}),
        chunk({}, "tool_calls"),
        usage_chunk("chatcmpl-s1", 1, "gpt-x", {**usage.as_dict(), "prompt_tokens_details": {"cached_tokens": 2}},
                    usage),
    ])
    assert [name for name, _ in events] == [
        "message_start", "ping", "content_block_start", "content_block_delta", "content_block_delta",
        "content_block_stop", "content_block_start", "content_block_delta", "content_block_delta",
        "content_block_stop", "message_delta", "message_stop"]
    start = events[0][1]["message"]
    assert (start["id"], start["model"], start["usage"]["input_tokens"]) == ("msg_s1", "gpt-x", 9)  # an estimate
    assert events[2][1] == {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}
    assert events[4][1]["delta"] == {"type": "text_delta", "text": " there"}
    assert events[6][1]["content_block"] == {"type": "tool_use", "id": "call_1", "name": "f", "input": {}}
    assert [e[1]["delta"]["partial_json"] for e in events[7:9]] == ['{"a":', " 1}"]
    assert all(e[1]["index"] == 1 for e in events[6:10])
    assert events[10][1] == {"type": "message_delta", "delta": {"stop_reason": "tool_use", "stop_sequence": None},
                             "usage": {"input_tokens": 8, "cache_creation_input_tokens": 0,
                                       "cache_read_input_tokens": 2, "output_tokens": 5}}


def test_a_stream_without_usage_or_chunks_still_ends_well() -> None:
    events = events_of(MessagesEncoder("m", 4), [chunk({"content": "one two three four"}, "length")])
    assert events[-2][1]["delta"]["stop_reason"] == "max_tokens"
    assert events[-2][1]["usage"]["output_tokens"] == 5 and events[-2][1]["usage"]["input_tokens"] == 4  # estimates
    assert [name for name, _ in events_of(MessagesEncoder("m", 0), [])] == [
        "message_start", "ping", "message_delta", "message_stop"]


# -- errors ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("status", "expected"), [
    (400, (400, "invalid_request_error")), (401, (401, "authentication_error")), (403, (403, "permission_error")),
    (404, (404, "not_found_error")), (413, (413, "request_too_large")), (415, (415, "invalid_request_error")),
    (429, (429, "rate_limit_error")), (500, (500, "api_error")), (502, (502, "api_error")),
    (503, (529, "overloaded_error")), (504, (504, "timeout_error")),
])
def test_errors_in_anthropics_shape(status: int, expected: tuple[int, str]) -> None:
    got, body = error_of(ApiError(status, "what happened", "whatever", "some_code"))
    assert (got, body["error"]["type"]) == expected
    assert body == {"type": "error", "error": {"type": expected[1], "message": "what happened"}}


# -- token counts ------------------------------------------------------------------------------------------


def test_the_token_estimate_reads_everything_the_model_reads() -> None:
    small = CountRequest.parse({"model": "m", "messages": [{"role": "user", "content": "hello world"}]})
    big = CountRequest.parse({"model": "m", "system": "You are helpful and kind.", "tools": [TOOL], "messages": [
        {"role": "user", "content": [{"type": "text", "text": "hello world"},
                                     {"type": "image", "source": {"type": "url", "url": "https://x/y.png"}}]},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "t", "name": "f", "input": {"q": "long " * 40}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t", "content": "result " * 40}]}]})
    assert estimate_input_tokens(small) == 3
    assert estimate_input_tokens(big) > 1600 + 100
    assert MESSAGES.count_estimate is not None and MESSAGES.count_estimate(small) == {"input_tokens": 3,
                                                                                       "estimated": True}


# -- the native relay reads usage on the way ------------------------------------------------------------


def test_relay_reads_usage_and_raises_error_events() -> None:
    state = AnthropicState("claude-x")
    start = {"type": "message_start", "message": {"usage": {"input_tokens": 10, "cache_read_input_tokens": 5}}}
    assert relay_event(SSEEvent("message_start", orjson.dumps(start)), state) is None
    assert relay_event(SSEEvent("content_block_delta", b"not even parsed"), state) is None
    relay_event(SSEEvent("message_delta", b'{"type":"message_delta","usage":{"output_tokens":7}}'), state)
    assert relay_event(SSEEvent("message_stop", b'{"type":"message_stop"}'), state) == Usage(15, 7, 22)
    assert state.finished
    with pytest.raises(UpstreamError) as caught:
        relay_event(SSEEvent("error", b'{"type":"error","error":{"type":"overloaded_error","message":"busy"}}'),
                    AnthropicState("claude-x"))
    assert caught.value.status == 503 and error_of(caught.value)[0] == 529


# -- the framings of proxy/sse.py ---------------------------------------------------------------------------


async def gen(items: list[StreamChunk | ApiError]) -> AsyncIterator[StreamChunk]:
    for item in items:
        if isinstance(item, ApiError):
            raise item
        yield item


async def written(stream: sse.Framed, outcomes: list[sse.StreamOutcome]) -> bytes:
    response = await sse.open_stream(stream, include_usage=False, secrets=("sk-secret",), headers={},
                                     on_end=outcomes.append)
    return b"".join([part async for part in response.body_iterator])


async def test_event_framing_writes_named_events_and_an_error_event() -> None:
    outcomes: list[sse.StreamOutcome] = []
    failure = UpstreamError(502, "broke with sk-secret inside", "server_error", "upstream_error")
    data = await written(sse.Framed(gen([chunk({"content": "Hi"}), failure]),
                                    sse.EventFraming(MessagesEncoder("m", 1))), outcomes)
    frames = data.decode().split("\n\n")[:-1]
    assert frames[0].startswith("event: message_start\ndata: {") and frames[-1].startswith("event: error\n")
    assert "sk-secret" not in data.decode() and "[DONE]" not in data.decode() and "message_stop" not in data.decode()
    assert orjson.loads(frames[-1].split("data: ", 1)[1])["error"]["type"] == "api_error"
    assert outcomes[0].status == 502


async def test_relay_framing_passes_events_as_they_came() -> None:
    outcomes: list[sse.StreamOutcome] = []
    relayed = [StreamChunk(b'{"type": "ping"}', None, "ping"), StreamChunk(b'{"type":\n"later"}', None, "later"),
               StreamChunk(b'{"type":"message_stop"}', None, "message_stop"), StreamChunk(b"", Usage(1, 2, 3))]
    data = await written(sse.Framed(gen(relayed), sse.RelayFraming(MESSAGES.error_events)), outcomes)  # type: ignore[arg-type]
    assert data == (b'event: ping\ndata: {"type": "ping"}\n\nevent: later\ndata: {"type":\ndata: "later"}\n\n'
                    b'event: message_stop\ndata: {"type":"message_stop"}\n\n')
    assert outcomes[0].usage == Usage(1, 2, 3)


def test_chat_form_is_a_chat_request() -> None:
    assert isinstance(chat_of(), ChatRequest)
