"""The Anthropic translator's pure functions, against Anthropic-shaped payloads (our fixtures in
tests/fixtures/anthropic/, and the real recordings where ../shared is present): request mapping,
response mapping, streams -> OpenAI chunks, errors. No I/O."""

from __future__ import annotations

import json
from typing import Any

import orjson
import pytest

from emulators._anthropic_checks import (
    TOP_LEVEL,
    check_messages,
    check_tools,
    check_top_level,
)
from emulators.anthropic import (
    DEFAULT_REPLY,
    FakeAnthropicState,
    Plan,
    awkward_pieces,
    event_frame,
)
from tests.fixture_data import check_schema, fixture, fixture_json
from translators import REGISTRY
from translators._sse import SSEDecoder, SSEEvent
from translators.anthropic import (
    API_VERSION,
    AnthropicState,
    AnthropicTranslator,
    default_max_tokens,
    error_from_response,
    from_vendor_event,
    from_vendor_response,
    to_vendor_request,
)
from translators.errors import ApiError
from translators.types import ChatRequest, ModelType, StreamChunk

MODEL = "claude-sonnet-4-5"
USER = [{"role": "user", "content": "Hi"}]
WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Weather in a city",
    "parameters": {"type": "object", "properties": {"location": {"type": "string"}}, "required": ["location"]}}}
PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="


def vendor(**body: Any) -> dict[str, Any]:
    body.setdefault("model", "claude-sonnet-4-5")
    body.setdefault("messages", USER)
    return to_vendor_request(ChatRequest.parse(body), MODEL)


def accepted_by_fake(body: dict[str, Any]) -> None:
    """The fake's Anthropic checks (roles, alternation, blocks, tools) accept the body."""
    check_top_level(body)
    check_messages(body, check_tools(body))


def refused(**body: Any) -> ApiError:
    with pytest.raises(ApiError) as caught:
        vendor(**body)
    assert caught.value.status == 400
    return caught.value


def events_of(raw: bytes) -> list[SSEEvent]:
    decoder = SSEDecoder()
    return decoder.feed(raw) + decoder.flush()


def translate(events: list[SSEEvent], model: str = MODEL) -> tuple[list[StreamChunk], AnthropicState]:
    state = AnthropicState(model)
    chunks = [c for e in events for c in from_vendor_event(e, state)]
    return chunks, state


def sse(event: Any) -> SSEEvent:
    """An Anthropic event as it comes off the wire: named by its type."""
    return SSEEvent(event["type"], orjson.dumps(event))


def deltas(chunks: list[StreamChunk]) -> list[dict[str, Any]]:
    return [orjson.loads(c.data) for c in chunks]


# -- request mapping ---------------------------------------------------------------------------


def test_system_lifted_turns_merged_and_alternating() -> None:
    body = vendor(messages=[
        {"role": "system", "content": "Be brief."},
        {"role": "developer", "content": [{"type": "text", "text": "Answer in French."}]},
        {"role": "user", "content": "Hello"},
        {"role": "user", "content": [{"type": "text", "text": "Are you there?"}]},
        {"role": "assistant", "content": "Oui."},
        {"role": "system", "content": "Late rule."},
        {"role": "assistant", "content": "Bonjour."},
        {"role": "user", "content": "Merci"},
    ])
    assert body["system"] == "Be brief.\n\nAnswer in French.\n\nLate rule."
    assert body["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "Hello"}, {"type": "text", "text": "Are you there?"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "Oui."}, {"type": "text", "text": "Bonjour."}]},
        {"role": "user", "content": "Merci"},
    ]
    accepted_by_fake(body)


def test_simple_request_shape() -> None:
    assert vendor() == {"model": MODEL, "max_tokens": 8192, "messages": [{"role": "user", "content": "Hi"}]}
    assert vendor(stream=True)["stream"] is True


@pytest.mark.parametrize(("fields", "expected"), [
    ({"max_completion_tokens": 50, "max_tokens": 99}, 50),
    ({"max_tokens": 99}, 99),
    ({}, 8192),
])
def test_max_tokens_always_sent(fields: dict[str, Any], expected: int) -> None:
    assert vendor(**fields)["max_tokens"] == expected


@pytest.mark.parametrize(("model", "expected"), [
    ("claude-instant-1", 4096), ("claude-2", 4096), ("claude-2.1", 4096), ("claude-3-haiku-20240307", 4096),
    ("claude-3-opus-latest", 4096), ("claude-3-5-sonnet-20241022", 8192), ("claude-3-7-sonnet-latest", 8192),
    ("claude-sonnet-4-5", 8192), ("claude-opus-4-1-20250805", 8192), ("my-finetune", 4096)])
def test_default_max_tokens_table(model: str, expected: int) -> None:
    assert default_max_tokens(model) == expected
    assert to_vendor_request(ChatRequest.parse({"model": model, "messages": USER}), model)["max_tokens"] == expected


def test_sampling_fields_and_dropped_knobs() -> None:
    body = vendor(temperature=1.5, top_p=0.9, stop="END", user="user-42", top_k=40, n=1, logprobs=False,
                  presence_penalty=0.5, frequency_penalty=0.1, logit_bias={"50256": -100}, seed=7,
                  stream_options={"include_usage": True}, service_tier="auto", store=True, parallel_tool_calls=True,
                  metadata={"app": "x"}, response_format={"type": "text"}, reasoning_effort="low")
    assert body["temperature"] == 1.0  # clamped to Anthropic's 0-1
    assert (body["top_p"], body["top_k"], body["stop_sequences"]) == (0.9, 40, ["END"])
    assert body["metadata"] == {"user_id": "user-42"}
    assert set(body) <= TOP_LEVEL
    accepted_by_fake(body)
    assert vendor(temperature=0.3)["temperature"] == 0.3
    assert vendor(stop=["a", "b"])["stop_sequences"] == ["a", "b"]
    assert "stop_sequences" not in vendor(stop=[])


@pytest.mark.parametrize(("fields", "param"), [
    ({"n": 2}, "n"),
    ({"logprobs": True}, "logprobs"),
    ({"top_logprobs": 3}, "top_logprobs"),
    ({"response_format": {"type": "json_object"}}, "response_format"),
    ({"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {}}}}, "response_format"),
    ({"audio": {"voice": "alloy", "format": "wav"}}, "audio"),
    ({"modalities": ["text", "audio"]}, "modalities"),
    ({"functions": [WEATHER["function"]]}, "functions"),
    ({"function_call": "auto"}, "function_call"),
    ({"tools": [{"type": "custom", "function": {"name": "x"}}]}, "tools[0].type"),
    ({"tool_choice": "required"}, "tool_choice"),
    ({"tools": [WEATHER], "tool_choice": "sometimes"}, "tool_choice"),
    ({"messages": [{"role": "function", "name": "f", "content": "x"}]}, "messages[0].role"),
    ({"messages": [{"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]}]},
     "messages[0].content[0].type"),
    ({"messages": [{"role": "user", "content": "x"}, {"role": "assistant", "content": [
        {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}]}]}, "messages[1].content[0].type"),
    ({"messages": [{"role": "system", "content": "only a system prompt"}]}, "messages"),
])
def test_meaning_changing_fields_are_refused_by_name(fields: dict[str, Any], param: str) -> None:
    assert refused(**fields).param == param


def test_tools_and_tool_choice() -> None:
    bare = {"type": "function", "function": {"name": "ping"}}
    body = vendor(tools=[WEATHER, bare])
    assert body["tools"] == [
        {"name": "get_weather", "description": "Weather in a city", "input_schema": WEATHER["function"]["parameters"]},
        {"name": "ping", "input_schema": {"type": "object"}},
    ]
    assert "tool_choice" not in body
    accepted_by_fake(body)


@pytest.mark.parametrize(("choice", "parallel", "expected"), [
    ("auto", None, {"type": "auto"}),
    ("none", None, {"type": "none"}),
    ("required", None, {"type": "any"}),
    ({"type": "function", "function": {"name": "get_weather"}}, None, {"type": "tool", "name": "get_weather"}),
    (None, False, {"type": "auto", "disable_parallel_tool_use": True}),
    ("required", False, {"type": "any", "disable_parallel_tool_use": True}),
    ("none", False, {"type": "none"}),
])
def test_tool_choice_mapping(choice: Any, parallel: bool | None, expected: dict[str, Any]) -> None:
    fields: dict[str, Any] = {"tools": [WEATHER]}
    if choice is not None:
        fields["tool_choice"] = choice
    if parallel is not None:
        fields["parallel_tool_calls"] = parallel
    body = vendor(**fields)
    assert body["tool_choice"] == expected
    accepted_by_fake(body)


def test_tool_history_becomes_tool_use_and_one_tool_result_turn() -> None:
    body = vendor(tools=[WEATHER], messages=[
        {"role": "user", "content": "Weather in Paris and Rome?"},
        {"role": "assistant", "content": "Checking both.", "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"location":"Paris"}'}},
            {"id": "call_2", "type": "function", "function": {"name": "get_weather", "arguments": ""}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "18C"},
        {"role": "tool", "tool_call_id": "call_2", "content": [{"type": "text", "text": "21C"}]},
        {"role": "user", "content": "Thanks"},
    ])
    assert body["messages"][1] == {"role": "assistant", "content": [
        {"type": "text", "text": "Checking both."},
        {"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"location": "Paris"}},
        {"type": "tool_use", "id": "call_2", "name": "get_weather", "input": {}}]}
    assert body["messages"][2] == {"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": "call_1", "content": "18C"},
        {"type": "tool_result", "tool_use_id": "call_2", "content": "21C"},
        {"type": "text", "text": "Thanks"}]}
    assert len(body["messages"]) == 3
    accepted_by_fake(body)


def test_assistant_with_only_tool_calls_and_null_content() -> None:
    body = vendor(tools=[WEATHER], messages=[
        {"role": "user", "content": "Weather?"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "toolu_1", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "toolu_1", "content": ""},
    ])
    assert body["messages"][1]["content"] == [{"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {}}]
    assert body["messages"][2]["content"] == [{"type": "tool_result", "tool_use_id": "toolu_1"}]
    accepted_by_fake(body)


def test_tool_results_open_their_user_turn_even_after_a_user_note() -> None:
    body = vendor(tools=[WEATHER], messages=[
        {"role": "user", "content": "Weather?"},
        {"role": "assistant", "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}]},
        {"role": "user", "content": "(use Celsius)"},
        {"role": "tool", "tool_call_id": "call_1", "content": "18C"},
    ])
    assert [b["type"] for b in body["messages"][2]["content"]] == ["tool_result", "text"]
    accepted_by_fake(body)


@pytest.mark.parametrize(("arguments", "message"), [("{not json", "valid JSON"), ("[1, 2]", "JSON object")])
def test_bad_tool_call_arguments_are_refused(arguments: str, message: str) -> None:
    err = refused(tools=[WEATHER], messages=[
        {"role": "user", "content": "x"},
        {"role": "assistant", "tool_calls": [
            {"id": "c", "type": "function", "function": {"name": "get_weather", "arguments": arguments}}]}])
    assert err.param == "messages[1].tool_calls[0].function.arguments" and message in err.message


def test_tool_message_without_id_is_refused() -> None:
    err = refused(messages=[{"role": "user", "content": "x"}, {"role": "tool", "content": "y"}])
    assert err.param == "messages[1].tool_call_id"


def test_vision_parts() -> None:
    body = vendor(messages=[{"role": "user", "content": [
        {"type": "text", "text": "What is in these?"},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}", "detail": "high"}},
        {"type": "image_url", "image_url": {"url": f"data:image/jpg;base64,{PNG}"}},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.webp"}},
    ]}])
    assert body["messages"][0]["content"][1:] == [
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
        {"type": "image", "source": {"type": "base64", "media_type": "image/jpeg", "data": PNG}},
        {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.webp"}},
    ]
    accepted_by_fake(body)


@pytest.mark.parametrize("url", ["data:image/svg+xml;base64,PHN2Zz4=", "data:image/png,rawbytes",
                                 "ftp://example.com/a.png", "file:///etc/passwd", "data:image/png;base64,"])
def test_bad_image_urls_are_refused(url: str) -> None:
    err = refused(messages=[{"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}}]}])
    assert err.param == "messages[0].content[0].image_url.url"


def test_empty_turns_are_left_out() -> None:
    body = vendor(messages=[{"role": "user", "content": "Hi"}, {"role": "assistant", "content": ""},
                            {"role": "user", "content": "Again"}])
    assert body["messages"] == [{"role": "user", "content": [{"type": "text", "text": "Hi"},
                                                             {"type": "text", "text": "Again"}]}]
    accepted_by_fake(body)


# -- non-streamed responses --------------------------------------------------------------------


def test_text_response() -> None:
    body = fixture_json("anthropic", "chat_response.json")
    out = from_vendor_response(body, MODEL)
    check_schema("chat_completion_response.json", out)
    assert out["id"] == "chatcmpl-msg_01Vq8TnR3wXk5bYe2LzH7cMa"
    assert out["model"] == "claude-sonnet-4-5-20250929" and out["object"] == "chat.completion"
    choice = out["choices"][0]
    assert choice["message"]["content"] == body["content"][0]["text"]
    assert "tool_calls" not in choice["message"]
    assert choice["finish_reason"] == "stop"
    assert out["usage"] == {"prompt_tokens": 39, "completion_tokens": 17, "total_tokens": 56,  # 31 + 8 cached
                            "prompt_tokens_details": {"cached_tokens": 8}}


def test_tool_use_response() -> None:
    body = fixture_json("anthropic", "chat_response_tool_use.json")
    out = from_vendor_response(body, MODEL)
    check_schema("chat_completion_response.json", out)
    message = out["choices"][0]["message"]
    assert message["content"] is None
    [call] = message["tool_calls"]
    assert call["id"] == "toolu_01Tk7Rm2Wq5Zx8Vb3Nc6Hy9J" and call["type"] == "function"
    assert call["function"]["name"] == "get_weather"
    assert isinstance(call["function"]["arguments"], str)
    assert json.loads(call["function"]["arguments"]) == {"location": "Oslo, Norway", "unit": "celsius"}
    assert out["choices"][0]["finish_reason"] == "tool_calls"
    assert (out["usage"]["prompt_tokens"], out["usage"]["completion_tokens"]) == (402, 58)


@pytest.mark.parametrize(("stop_reason", "finish"), [
    ("end_turn", "stop"), ("stop_sequence", "stop"), ("max_tokens", "length"),
    ("model_context_window_exceeded", "length"), ("tool_use", "tool_calls"), ("refusal", "content_filter"),
    ("pause_turn", "stop"), (None, "stop"), ("something_new", "stop")])
def test_finish_reasons(stop_reason: str | None, finish: str) -> None:
    body = {"id": "msg_1", "type": "message", "role": "assistant", "content": [{"type": "text", "text": "x"}],
            "model": MODEL, "stop_reason": stop_reason, "usage": {"input_tokens": 1, "output_tokens": 1}}
    assert from_vendor_response(body, MODEL)["choices"][0]["finish_reason"] == finish


def test_text_blocks_joined_thinking_dropped_cache_counted() -> None:
    body = {"id": "msg_1", "type": "message", "role": "assistant", "model": MODEL, "stop_reason": "end_turn",
            "content": [{"type": "thinking", "thinking": "hmm", "signature": "s"},
                        {"type": "text", "text": "Hello "}, {"type": "text", "text": "world"}],
            "usage": {"input_tokens": 10, "cache_creation_input_tokens": 5, "cache_read_input_tokens": 100,
                      "output_tokens": 3}}
    out = from_vendor_response(body, MODEL)
    assert out["choices"][0]["message"]["content"] == "Hello world"
    assert out["usage"] == {"prompt_tokens": 115, "completion_tokens": 3, "total_tokens": 118,
                            "prompt_tokens_details": {"cached_tokens": 100}}


@pytest.mark.parametrize(("body", "status"), [
    (fixture_json("anthropic", "error_529.json"), 503),
    ({"type": "error", "error": {"type": "rate_limit_error", "message": "slow down"}}, 429),
    ({"type": "error", "error": {"type": "invalid_request_error", "message": "bad"}}, 400),
    ({"unexpected": True}, 502),
    (["not", "an", "object"], 502),
])
def test_error_inside_a_200_body_raises(body: Any, status: int) -> None:
    with pytest.raises(ApiError) as caught:
        from_vendor_response(body, MODEL)
    assert caught.value.status == status


# -- streams ------------------------------------------------------------------------------------


def test_text_stream() -> None:
    chunks, state = translate(events_of(fixture("anthropic", "chat_stream.sse")))
    parsed = deltas(chunks)
    for chunk in parsed:
        check_schema("chat_completion_chunk.json", chunk)
    assert len({c["id"] for c in parsed}) == 1 and len({c["created"] for c in parsed}) == 1
    assert parsed[0]["id"] == "chatcmpl-msg_01Lp5Xr8Kd2Wn6Tq9Ve3Zb7C"
    assert {c["model"] for c in parsed} == {"claude-3-5-haiku-latest"}
    with_choices = [c for c in parsed if c["choices"]]
    roles = [c for c in with_choices if "role" in c["choices"][0]["delta"]]
    assert len(roles) == 1 and roles[0] is with_choices[0] and roles[0]["choices"][0]["delta"]["role"] == "assistant"
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in with_choices) == "Happy to help!"
    assert [c["choices"][0]["finish_reason"] for c in with_choices if c["choices"][0]["finish_reason"]] == ["stop"]
    # The usage chunk comes last, alone, marked for the proxy; no other chunk carries usage.
    assert parsed[-1]["choices"] == [] and chunks[-1].usage is not None
    assert parsed[-1]["usage"]["total_tokens"] == 23
    # message_delta's output count replaces message_start's, never adds to it
    assert (chunks[-1].usage.prompt_tokens, chunks[-1].usage.completion_tokens) == (14, 9)
    assert all(c.usage is None for c in chunks[:-1]) and all("usage" not in c for c in parsed[:-1])
    assert state.finished


def test_tool_use_stream_renumbers_the_tool_call_index() -> None:
    chunks, _ = translate(events_of(fixture("anthropic", "chat_stream_tool_use.sse")))
    parsed = [c for c in deltas(chunks) if c["choices"]]
    for chunk in parsed:
        check_schema("chat_completion_chunk.json", chunk)
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in parsed)
    assert text == "Let me look up the weather in Oslo."
    calls = [tc for c in parsed for tc in c["choices"][0]["delta"].get("tool_calls") or ()]
    assert {tc["index"] for tc in calls} == {0}  # Anthropic's block index was 1
    assert calls[0]["id"] == "toolu_01Gz3Mb6Yc9Qf2Wh5Ks8Dn1R" and calls[0]["type"] == "function"
    assert calls[0]["function"] == {"name": "get_weather", "arguments": ""}
    pieces = [tc["function"]["arguments"] for tc in calls[1:]]
    assert all(pieces) and all("id" not in tc for tc in calls[1:])  # the empty first piece is not sent
    assert json.loads("".join(pieces)) == {"location": "Oslo"} and len(pieces) == 4
    assert [c["choices"][0]["finish_reason"] for c in parsed if c["choices"][0]["finish_reason"]] == ["tool_calls"]
    assert chunks[-1].usage is not None and (chunks[-1].usage.prompt_tokens, chunks[-1].usage.completion_tokens) == \
        (395, 71)


def test_two_tool_uses_around_text_get_indexes_0_and_1() -> None:
    state = AnthropicState(MODEL)
    events = [
        {"type": "message_start", "message": {"id": "msg_x", "model": MODEL, "usage": {"input_tokens": 3}}},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        {"type": "content_block_start", "index": 1, "content_block": {"type": "tool_use", "id": "t1", "name": "a",
                                                                       "input": {}}},
        {"type": "content_block_start", "index": 2, "content_block": {"type": "thinking", "thinking": ""}},
        {"type": "content_block_start", "index": 3, "content_block": {"type": "tool_use", "id": "t2", "name": "b",
                                                                       "input": {}}},
        {"type": "content_block_delta", "index": 3, "delta": {"type": "input_json_delta", "partial_json": "{}"}},
        {"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": "{\"x\":1}"}},
    ]
    calls = [tc for e in events for c in deltas(from_vendor_event(sse(e), state)) if c["choices"]
             for tc in c["choices"][0]["delta"].get("tool_calls") or ()]
    assert [(tc["index"], tc.get("id"), tc["function"].get("arguments")) for tc in calls] == \
        [(0, "t1", ""), (1, "t2", ""), (1, None, "{}"), (0, None, '{"x":1}')]


def test_usage_is_replaced_never_summed() -> None:
    state = AnthropicState(MODEL)
    events = [
        {"type": "message_start", "message": {"id": "m", "usage": {"input_tokens": 20, "cache_read_input_tokens": 4,
                                                                   "output_tokens": 1}}},
        {"type": "message_delta", "delta": {"stop_reason": None}, "usage": {"output_tokens": 5}},
        {"type": "message_delta", "delta": {"stop_reason": "max_tokens"}, "usage": {"output_tokens": 9,
                                                                                    "input_tokens": 20}},
        {"type": "message_stop"},
    ]
    chunks = [c for e in events for c in from_vendor_event(sse(e), state)]
    assert chunks[-1].usage is not None
    assert (chunks[-1].usage.prompt_tokens, chunks[-1].usage.completion_tokens) == (24, 9)
    finishes = [c["choices"][0]["finish_reason"] for c in deltas(chunks) if c["choices"]
                and c["choices"][0]["finish_reason"]]
    assert finishes == ["length"]


def test_stop_without_a_stop_reason_still_finishes_once_and_ignores_what_follows() -> None:
    state = AnthropicState(MODEL)
    events = [{"type": "message_start", "message": {"id": "m"}}, {"type": "message_stop"},
              {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "late"}}]
    parsed = deltas([c for e in events for c in from_vendor_event(sse(e), state)])
    assert [c["choices"][0]["finish_reason"] for c in parsed if c["choices"]] == [None, "stop"]
    assert parsed[-1]["choices"] == [] and "late" not in json.dumps(parsed)


@pytest.mark.parametrize(("error", "status"), [
    ({"type": "overloaded_error", "message": "Overloaded"}, 503),
    ({"type": "rate_limit_error", "message": "slow"}, 429),
    ({"type": "api_error", "message": "boom"}, 502),
    ({"type": "brand_new_error", "message": "?"}, 502),
])
def test_error_event_raises(error: dict[str, str], status: int) -> None:
    state = AnthropicState(MODEL)
    from_vendor_event(sse({"type": "message_start", "message": {"id": "m"}}), state)
    with pytest.raises(ApiError) as caught:
        from_vendor_event(SSEEvent("error", orjson.dumps({"type": "error", "error": error})), state)
    assert caught.value.status == status and error["message"] in caught.value.message


def test_events_are_read_by_their_event_name() -> None:
    state = AnthropicState(MODEL)
    with pytest.raises(ApiError) as caught:  # not JSON, but an error event: its text is the message
        from_vendor_event(SSEEvent("error", b"upstream exploded"), state)
    assert "upstream exploded" in caught.value.message
    assert from_vendor_event(SSEEvent("ping", b""), state) == []
    with pytest.raises(ApiError):  # the SSE name wins: an error event is no message_stop
        from_vendor_event(SSEEvent("error", b'{"type":"message_stop"}'), state)
    assert not state.finished
    with pytest.raises(ApiError):
        from_vendor_event(SSEEvent("content_block_delta", b"{not json"), state)


@pytest.mark.parametrize("cut", ["awkward", "bytewise"])
def test_fake_stream_in_awkward_pieces_keeps_utf8(cut: str) -> None:
    """The fake's stream bytes, cut inside lines and inside multi-byte characters, through the
    one decoder and the translator: the non-ASCII reply comes out whole."""
    state = FakeAnthropicState()
    plan = Plan(state, {"model": MODEL, "max_tokens": 100}, [{"role": "user", "content": [{"type": "text",
                                                                                          "text": "hi"}]}])
    frames = [event_frame(name, data) for name, data in plan.events()]
    pieces = [p for f in frames for p in awkward_pieces(f)] if cut == "awkward" else \
        [bytes([b]) for f in frames for b in f]
    assert any(_splits_a_character(p) for p in pieces)
    decoder, stream = SSEDecoder(), AnthropicState(MODEL)
    chunks = [c for p in pieces for e in decoder.feed(p) for c in from_vendor_event(e, stream)]
    chunks += [c for e in decoder.flush() for c in from_vendor_event(e, stream)]
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in deltas(chunks) if c["choices"])
    assert text == DEFAULT_REPLY and stream.finished


def _splits_a_character(piece: bytes) -> bool:
    try:
        piece.decode("utf-8")
    except UnicodeDecodeError:
        return True
    return False


# -- errors -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("status", "body", "headers", "expected", "kind", "code"), [
    (400, fixture_json("anthropic", "error_400.json"), {}, 400, "invalid_request_error",
     "invalid_request_error"),
    (401, {"type": "error", "error": {"type": "authentication_error", "message": "invalid x-api-key"}}, {}, 403,
     "permission_error", "upstream_credential_rejected"),
    (403, {"type": "error", "error": {"type": "permission_error", "message": "no access"}}, {}, 403,
     "permission_error", "upstream_credential_rejected"),
    (404, {"type": "error", "error": {"type": "not_found_error", "message": "model: claude-9"}}, {}, 404,
     "invalid_request_error", "model_not_found"),
    (413, {"type": "error", "error": {"type": "request_too_large", "message": "too big"}}, {}, 413,
     "invalid_request_error", "request_too_large"),
    (429, {"type": "error", "error": {"type": "rate_limit_error", "message": "slow down"}}, {"retry-after": "7"},
     429, "rate_limit_error", "rate_limit_exceeded"),
    (500, {"type": "error", "error": {"type": "api_error", "message": "internal"}}, {}, 502, "server_error",
     "upstream_error"),
    (529, fixture_json("anthropic", "error_529.json"), {}, 503, "server_error", "upstream_unavailable"),
    (502, {"error": {"message": "<html>bad gateway</html>"}}, {}, 502, "server_error", "upstream_error"),
    (500, None, {}, 502, "server_error", "upstream_error"),
])
def test_error_mapping(status: int, body: Any, headers: dict[str, str], expected: int, kind: str,
                       code: str) -> None:
    err = error_from_response(status, body, headers)
    assert (err.status, err.type, err.code) == (expected, kind, code)
    message = (body or {}).get("error", {}).get("message")
    if message:
        assert message in err.message
    if status in (401, 403):
        assert "anthropic" in err.message
    assert err.retry_after == (7.0 if headers else None)
    assert err.body()["error"]["message"] == err.message


# -- the translator's declaration -----------------------------------------------------------------


def test_registered_with_its_credential_models_and_headers() -> None:
    translator = REGISTRY["anthropic"]
    assert isinstance(translator, AnthropicTranslator)
    assert translator.model_types == frozenset({ModelType.LLM}) and not translator.per_model
    assert [f.name for f in translator.credential_fields] == ["api_key"]
    assert translator.default_base_url == "https://api.anthropic.com"
    for model in ("claude-instant-1", "claude-2", "claude-sonnet-4-5", "claude-3-haiku-20240307", "claude-next"):
        assert translator.serves(model, ModelType.LLM)
    assert not translator.serves("gpt-4o", ModelType.LLM)
    assert not translator.serves("claude-2", ModelType.TEXT_EMBEDDING)
    assert {"claude-instant-1", "claude-2"} <= set(translator.catalog[ModelType.LLM])
    assert API_VERSION == "2023-06-01"
