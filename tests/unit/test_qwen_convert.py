"""The Qwen (DashScope) translator's pure functions against our fixtures of DashScope's payloads:
request mapping (checked by the fake's own checks), responses, cumulative and incremental
streams, errors (HTTP, in a 200 body, `event:error`), embeddings. No I/O; the real recordings
are an extra check where ../shared is present."""

from __future__ import annotations

import base64
import struct
from typing import Any

import orjson
import pytest

from emulators.qwen import _check_messages, _check_parameters
from tests.unit._vendor_data import (
    check_schema,
    content_of,
    events_of,
    finishes,
    fixture,
    fixture_json,
    needs_shared,
    parsed,
    shared_json,
    shared_recording,
)
from translators import REGISTRY
from translators._shapes import embedding_list
from translators._sse import SSEEvent
from translators.errors import ApiError
from translators.qwen import (
    QwenState,
    QwenTranslator,
    embedding_batch_size,
    error_from_response,
    from_vendor_embeddings,
    from_vendor_event,
    from_vendor_response,
    is_vision,
    to_vendor_embeddings_request,
    to_vendor_request,
)
from translators.types import ChatRequest, EmbeddingRequest, ModelType, StreamChunk

MODEL = "qwen-plus"
USER = [{"role": "user", "content": "你好"}]
TOOL = {"type": "function", "function": {"name": "get_weather", "description": "Weather in a city",
                                         "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}


def vendor(model: str = MODEL, **body: Any) -> dict[str, Any]:
    body.setdefault("model", model)
    body.setdefault("messages", USER)
    out = to_vendor_request(ChatRequest.parse(body), model)
    _check_messages(out["input"]["messages"], is_vision(model))  # what the fake (DashScope) accepts
    _check_parameters(out["parameters"])
    return out


def refused(**body: Any) -> ApiError:
    with pytest.raises(ApiError) as caught:
        vendor(**body)
    assert caught.value.status == 400
    return caught.value


def translate(data: bytes, cumulative: bool, piece: int | None = None) -> tuple[list[StreamChunk], QwenState]:
    state = QwenState(MODEL, cumulative=cumulative)
    chunks = [c for e in events_of(data, piece) for c in from_vendor_event(e, state)]
    return chunks, state


def sse(event: Any) -> SSEEvent:
    """A DashScope event as it comes off the wire (`event:result`)."""
    return SSEEvent("result", orjson.dumps(event))


# -- request mapping ----------------------------------------------------------------------------


def test_registered_with_its_credential_fields() -> None:
    translator = REGISTRY["qwen"]
    assert isinstance(translator, QwenTranslator)
    assert [f.name for f in translator.credential_fields] == ["api_key", "workspace"]
    assert translator.serves("qwen3-coder-plus", ModelType.LLM) and translator.serves("text-embedding-v4",
                                                                                      ModelType.TEXT_EMBEDDING)
    assert not translator.serves("gpt-4o", ModelType.LLM)


def test_messages_and_parameters() -> None:
    body = vendor(messages=[
        {"role": "user", "content": "Hi"},
        {"role": "developer", "content": [{"type": "text", "text": "Answer in French."}]},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"杭州"}'}}]},
        {"role": "tool", "tool_call_id": "call_1", "name": "get_weather", "content": "晴"},
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": [{"type": "text", "text": "And"}, {"type": "text", "text": "tomorrow?"}]},
    ], max_tokens=50, max_completion_tokens=20, temperature=2.0, top_p=1.0, seed=7, stop=["\n\n"],
        presence_penalty=0.5, frequency_penalty=1.0, user="u-1", top_k=40, logit_bias={"1": 2}, tools=[TOOL],
        tool_choice="auto")
    messages = body["input"]["messages"]
    assert messages[0] == {"role": "system", "content": "Answer in French.\n\nBe brief."}
    assert messages[1:] == [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "", "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"杭州"}'}}]},
        {"role": "tool", "content": "晴", "tool_call_id": "call_1", "name": "get_weather"},
        {"role": "user", "content": "And\ntomorrow?"},
    ]
    assert body["parameters"] == {
        "result_format": "message", "max_tokens": 20, "temperature": 1.99, "top_p": 0.9999, "seed": 7,
        "stop": ["\n\n"], "presence_penalty": 0.5, "tool_choice": "auto", "top_k": 40,
        "tools": [{"type": "function", "function": TOOL["function"]}]}
    assert body["model"] == MODEL and "stream" not in body


def test_stream_asks_for_incremental_output_and_top_p_zero_is_clamped() -> None:
    assert vendor(stream=True, top_p=0)["parameters"] == {"result_format": "message", "incremental_output": True,
                                                          "top_p": 0.0001}


def test_vision_models_get_dashscope_multimodal_content() -> None:
    body = vendor("qwen-vl-max", messages=[{"role": "system", "content": "Describe."}, {"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.png", "detail": "low"}},
        {"type": "text", "text": "What is this?"}]}])
    assert body["input"]["messages"] == [
        {"role": "system", "content": [{"text": "Describe."}]},
        {"role": "user", "content": [{"image": "https://example.com/cat.png"}, {"text": "What is this?"}]}]


@pytest.mark.parametrize(("body", "param"), [
    ({"n": 2}, "n"), ({"logprobs": True}, "logprobs"), ({"functions": []}, "functions"),
    ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://x/y.png"}}]}]},
     "messages[0].content[0].type"),
    ({"messages": [{"role": "tool", "content": "x"}]}, "messages[0].tool_call_id"),
])
def test_refused_fields_name_the_field(body: dict[str, Any], param: str) -> None:
    assert refused(**body).param == param


# -- responses ----------------------------------------------------------------------------------


def test_response() -> None:
    body = fixture_json("qwen", "chat_response.json")
    out = from_vendor_response(body, MODEL)
    check_schema("chat_completion_response.json", out)
    assert out["id"] == "chatcmpl-5c1f9e07-3b2a-9d4e-8a61-0f7b2c3d4e5a" and out["model"] == MODEL
    assert out["choices"][0]["message"]["content"] == body["output"]["choices"][0]["message"]["content"]
    assert out["choices"][0]["finish_reason"] == "stop"
    assert out["usage"] == {"prompt_tokens": 41, "completion_tokens": 122, "total_tokens": 163}


def test_legacy_text_format_and_tool_calls() -> None:
    text = from_vendor_response({"output": {"text": "hi", "finish_reason": "length"},
                                 "usage": {"input_tokens": 1, "output_tokens": 1}, "request_id": "r"}, MODEL)
    assert text["choices"][0]["message"]["content"] == "hi" and text["choices"][0]["finish_reason"] == "length"
    assert text["usage"]["total_tokens"] == 2  # missing total_tokens: the sum
    call = {"id": "call_9", "type": "function", "index": 0, "function": {"name": "f", "arguments": '{"a":1}'}}
    out = from_vendor_response({"output": {"choices": [{"finish_reason": "tool_calls", "message": {
        "role": "assistant", "content": "", "tool_calls": [call]}}]}, "usage": {}, "request_id": "r"}, MODEL)
    check_schema("chat_completion_response.json", out)
    message = out["choices"][0]["message"]
    assert message["content"] is None and out["choices"][0]["finish_reason"] == "tool_calls"
    assert message["tool_calls"] == [{"id": "call_9", "type": "function",
                                      "function": {"name": "f", "arguments": '{"a":1}'}}]


def test_error_inside_a_200_body_is_an_error() -> None:
    with pytest.raises(ApiError) as caught:
        from_vendor_response({"code": "Arrearage", "message": "Access denied, your account is in overdue-payment",
                              "request_id": "r"}, MODEL)
    assert caught.value.status == 429 and caught.value.code == "insufficient_quota"


# -- streams --------------------------------------------------------------------------------------


@pytest.mark.parametrize("piece", [None, 1, 7])
def test_incremental_stream(piece: int | None) -> None:
    data = fixture("qwen", "chat_stream_incremental.sse")
    chunks, state = translate(data, cumulative=False, piece=piece)
    out = parsed(chunks)
    for chunk in out:
        check_schema("chat_completion_chunk.json", chunk)
    pieces = [orjson.loads(line[5:])["output"]["choices"][0]["message"]["content"]
              for line in data.splitlines() if line.startswith(b"data:")]
    assert content_of(chunks) == "".join(pieces) == "明天杭州多云转晴，最高气温二十六度，早晚注意添衣。"  # middle events trimmed
    assert out[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert finishes(chunks) == ["stop"] and state.finished
    assert {c["id"] for c in out} == {"chatcmpl-3d8a0f6b-71c2-4e95-b0a4-9e2f51c7d803"}
    last = chunks[-1]
    assert out[-1]["choices"] == [] and last.usage is not None  # running totals, the last one, never summed
    assert (last.usage.prompt_tokens, last.usage.completion_tokens, last.usage.total_tokens) == (1520, 157, 1677)
    assert all(c.usage is None for c in chunks[:-1])


@pytest.mark.parametrize("piece", [None, 3])
def test_cumulative_stream_never_repeats_text(piece: int | None) -> None:
    data = fixture("qwen", "chat_stream_cumulative.sse")
    chunks, _ = translate(data, cumulative=True, piece=piece)
    whole = orjson.loads(data.split(b"data:")[-1])["output"]["choices"][0]["message"]["content"]
    assert content_of(chunks) == whole
    assert finishes(chunks) == ["stop"]
    assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens == 104
    # Read as incremental, the same bytes would repeat the text: the mode matters.
    assert content_of(translate(data, cumulative=False)[0]) != whole


def test_incremental_final_event_repeating_the_answer_is_not_re_emitted() -> None:
    state = QwenState(MODEL)
    events = [{"output": {"choices": [{"message": {"content": t}, "finish_reason": f}]}, "usage": {}}
              for t, f in (("Hello", "null"), (" world", "null"), ("Hello world", "stop"))]
    chunks = [c for e in events for c in from_vendor_event(sse(e), state)]
    assert content_of(chunks) == "Hello world" and finishes(chunks) == ["stop"]


def test_streamed_tool_call_fragments() -> None:
    state = QwenState(MODEL)
    fragments = [{"index": 0, "id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": ""}},
                 {"index": 0, "id": "", "type": "function", "function": {"arguments": '{"city":'}},
                 {"index": 0, "id": "", "type": "function", "function": {"name": "", "arguments": '"杭州"}'}}]
    events = [{"output": {"choices": [{"message": {"content": "", "tool_calls": [f]}, "finish_reason": "null"}]}}
              for f in fragments]
    events.append({"output": {"choices": [{"message": {"content": ""}, "finish_reason": "tool_calls"}]},
                   "usage": {"input_tokens": 5, "output_tokens": 3, "total_tokens": 8}})
    out = parsed([c for e in events for c in from_vendor_event(sse(e), state)])
    calls = [d for c in out if c["choices"] for d in c["choices"][0]["delta"].get("tool_calls") or ()]
    assert calls[0] == {"index": 0, "id": "call_1", "type": "function", "function": {"name": "get_weather",
                                                                                     "arguments": ""}}
    assert all("id" not in c and "name" not in c["function"] for c in calls[1:])
    assert "".join(c["function"]["arguments"] for c in calls) == '{"city":"杭州"}'
    assert out[-2]["choices"][0]["finish_reason"] == "tool_calls" and out[-1]["usage"]["total_tokens"] == 8


def test_error_event_raises_the_mapped_error() -> None:
    [event] = events_of(fixture("qwen", "chat_stream_error.sse"))
    assert event.event == "error"
    with pytest.raises(ApiError) as caught:
        from_vendor_event(event, QwenState(MODEL))
    assert (caught.value.status, caught.value.code) == (400, "content_filter")
    assert "inappropriate" in caught.value.message


# -- errors ---------------------------------------------------------------------------------------


def test_401_names_the_provider_without_being_a_401() -> None:
    err = error_from_response(401, fixture_json("qwen", "error_401.json"), {})
    assert (err.status, err.code, err.type) == (403, "upstream_credential_rejected", "permission_error")
    assert "qwen" in err.message and "Invalid API-key" in err.message


@pytest.mark.parametrize(("status", "code", "expected", "ours"), [
    (400, "InvalidParameter", 400, "invalid_parameter"),
    (400, "DataInspectionFailed", 400, "content_filter"),
    (400, "Arrearage", 429, "insufficient_quota"),
    (403, "AccessDenied.Unpurchased", 403, "upstream_credential_rejected"),
    (404, "ModelNotFound", 404, "model_not_found"),
    (429, "Throttling.RateQuota", 429, "rate_limit_exceeded"),
    (500, "InternalError", 502, "upstream_error"),
    (503, "ServiceUnavailable", 503, "upstream_unavailable"),
    (200, "InvalidApiKey", 403, "upstream_credential_rejected"),
    (200, "Throttling.AllocationQuota", 429, "rate_limit_exceeded"),
    (200, "SomethingNew", 502, "upstream_error"),
])
def test_errors_mapped_by_meaning(status: int, code: str, expected: int, ours: str) -> None:
    err = error_from_response(status, {"code": code, "message": "m", "request_id": "r"}, {"retry-after": "3"})
    assert (err.status, err.code) == (expected, ours)
    if expected == 429 and ours == "rate_limit_exceeded":
        assert err.retry_after == 3.0


# -- embeddings -----------------------------------------------------------------------------------


def test_embeddings_and_reordering() -> None:
    vectors, tokens = from_vendor_embeddings(fixture_json("qwen", "embeddings_response.json"))
    assert vectors == [[0.01287360528871417, -0.03144017606973648]] and tokens == 7
    shuffled = {"output": {"embeddings": [{"text_index": 2, "embedding": [2.0]}, {"text_index": 0, "embedding": [0.0]},
                                          {"text_index": 1, "embedding": [1.0]}]}, "usage": {"input_tokens": 4}}
    assert from_vendor_embeddings(shuffled) == ([[0.0], [1.0], [2.0]], 4)


def test_embeddings_request_and_base64() -> None:
    def request(**body: Any) -> EmbeddingRequest:
        return EmbeddingRequest.parse({"model": "text-embedding-v3", "input": "x", **body})
    assert to_vendor_embeddings_request(["a"], "text-embedding-v3", request(dimensions=512, text_type="query")) == \
        {"model": "text-embedding-v3", "input": {"texts": ["a"]},
         "parameters": {"dimension": 512, "text_type": "query"}}
    with pytest.raises(ApiError) as caught:
        to_vendor_embeddings_request(["a"], "text-embedding-v1", request(dimensions=512))
    assert caught.value.param == "dimensions"
    assert (embedding_batch_size("text-embedding-v2"), embedding_batch_size("text-embedding-v4")) == (25, 10)
    check_schema("embedding_response.json", embedding_list([[0.5, -1.25]], "m", 3, "float"))
    encoded = embedding_list([[0.5, -1.25]], "m", 3, "base64")
    raw = base64.b64decode(encoded["data"][0]["embedding"])
    assert struct.unpack("<2f", raw) == (0.5, -1.25)


# -- conformance with the team's real recordings (only where ../shared is present) ---------------


@needs_shared
def test_the_real_recordings_translate_the_same_way() -> None:
    body = shared_json("qwen", "chat_response.json")
    out = from_vendor_response(body, MODEL)
    check_schema("chat_completion_response.json", out)
    assert out["usage"]["total_tokens"] == body["usage"]["total_tokens"]
    for name, cumulative in (("chat_stream_incremental.sse", False), ("chat_stream_cumulative.sse", True)):
        data = shared_recording("qwen", name)
        chunks, state = translate(data, cumulative=cumulative, piece=7)
        last = orjson.loads(data.split(b"data:")[-1])
        assert finishes(chunks) == ["stop"] and state.finished and content_of(chunks)
        assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens == last["usage"]["total_tokens"]
    with pytest.raises(ApiError) as caught:
        from_vendor_event(events_of(shared_recording("qwen", "chat_stream_error.sse"))[0], QwenState(MODEL))
    assert caught.value.code == "content_filter"
    assert error_from_response(401, shared_json("qwen", "error_401.json"), {}).status == 403
    vectors, tokens = from_vendor_embeddings(shared_json("qwen", "embeddings_response.json"))
    assert len(vectors) == 1 and tokens > 0
