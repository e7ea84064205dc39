"""The Responses API as an inbound codec (translators/responses/), without a server: requests
to their chat form, chat answers and chunks to `response` objects and events (with their
sequence numbers, in OpenAI's order), errors, and what is kept for `previous_response_id`."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from proxy import sse
from proxy.hosted import build_offers
from proxy.hosted_params import restrict
from proxy.settings import HostedSettings
from translators._inbound import Kept
from translators._shapes import chat_chunk, usage_chunk
from translators._sse import SSEEvent
from translators._stream import StreamState
from translators.errors import ApiError
from translators.responses import RESPONSES, history_of, items_page, keep, resume
from translators.responses.codec import ResponsesEncoder, error_events, error_of, from_chat
from translators.responses.native import answer_in_event, native_body, observer, usage_of
from translators.responses.request import ResponsesChatRequest, ResponsesRequest, to_chat
from translators.types import StreamChunk, Usage

TOOL = {"type": "function", "name": "get_weather", "description": "Weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}


def chat_of(body: dict[str, Any]) -> ResponsesChatRequest:
    return to_chat(ResponsesRequest.parse({"model": "default", **body}))


def test_string_input_and_instructions() -> None:
    req = chat_of({"input": "hi", "instructions": "be terse", "max_output_tokens": 50, "temperature": 0.2,
                   "top_p": 0.9, "metadata": {"k": "v"}, "user": "u1", "store": False})
    assert req.raw == {"model": "default", "messages": [{"role": "system", "content": "be terse"},
                                                        {"role": "user", "content": "hi"}],
                       "max_tokens": 50, "temperature": 0.2, "top_p": 0.9}
    assert req.response_id.startswith("resp_") and [i["type"] for i in req.items] == ["message"]
    assert req.items[0]["content"] == [{"type": "input_text", "text": "hi"}]


def test_items_tools_and_formats() -> None:
    req = chat_of({"input": [
        {"role": "developer", "content": "rules"},
        {"type": "message", "role": "user", "content": [
            {"type": "input_text", "text": "look"},
            {"type": "input_image", "image_url": "https://x/cat.png", "detail": "low"}]},
        {"type": "reasoning", "id": "rs_1", "summary": []},
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "calling"}]},
        {"type": "function_call", "call_id": "call_1", "name": "get_weather", "arguments": '{"city":"Paris"}'},
        {"type": "function_call", "call_id": "call_2", "name": "get_weather", "arguments": '{"city":"Rome"}'},
        {"type": "function_call_output", "call_id": "call_1", "output": "18C"},
        {"type": "function_call_output", "call_id": "call_2", "output": [{"type": "input_text", "text": "20C"}]},
    ], "tools": [TOOL], "tool_choice": {"type": "function", "name": "get_weather"}, "parallel_tool_calls": False,
        "text": {"format": {"type": "json_schema", "name": "w", "schema": {"type": "object"}, "strict": True}},
        "stream": True})
    raw = req.raw
    assert raw["messages"] == [
        {"role": "system", "content": "rules"},
        {"role": "user", "content": [{"type": "text", "text": "look"},
                                     {"type": "image_url", "image_url": {"url": "https://x/cat.png", "detail": "low"}}]},
        {"role": "assistant", "content": "calling", "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}},
            {"id": "call_2", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Rome"}'}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "18C"},
        {"role": "tool", "tool_call_id": "call_2", "content": "20C"}]
    assert raw["tools"] == [{"type": "function", "function": {"name": "get_weather", "description": "Weather",
                                                              "parameters": TOOL["parameters"]}}]
    assert raw["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}
    assert raw["parallel_tool_calls"] is False and raw["stream"] is True
    assert raw["response_format"] == {"type": "json_schema", "json_schema": {"name": "w", "schema": {"type": "object"},
                                                                             "strict": True}}
    assert chat_of({"input": "x", "text": {"format": {"type": "json_object"}}}).raw["response_format"] == {
        "type": "json_object"}
    assert "response_format" not in chat_of({"input": "x", "text": {"format": {"type": "text"}}}).raw


@pytest.mark.parametrize("body, named", [
    ({"tools": [{"type": "web_search"}]}, "web_search"),
    ({"tools": [{"type": "file_search", "vector_store_ids": ["vs_1"]}]}, "file_search"),
    ({"tools": [{"type": "code_interpreter", "container": {"type": "auto"}}]}, "code_interpreter"),
    ({"tools": [{"type": "computer_use_preview", "display_width": 1, "display_height": 1}]}, "computer_use_preview"),
    ({"input": [{"role": "user", "content": [{"type": "input_file", "file_id": "file_1"}]}]}, "input_file"),
])
def test_what_the_chat_form_cannot_carry_is_a_400_naming_it(body: dict[str, Any], named: str) -> None:
    req = chat_of({"input": "hi", **body})
    with pytest.raises(ApiError) as caught:
        req.for_chat(frozenset())
    assert caught.value.status == 400 and named in caught.value.message


@pytest.mark.parametrize("body", [{"input": []}, {"input": "x", "background": True},
                                  {"input": "x", "tool_choice": "sometimes"},
                                  {"input": "x", "text": {"format": {"type": "json_schema"}}},
                                  {"input": [{"type": "function_call", "call_id": 1}]}])
def test_malformed_requests_are_400s_at_once(body: dict[str, Any]) -> None:
    with pytest.raises(ApiError) as caught:
        chat_of(body)
    assert caught.value.status == 400


def test_from_chat_text_tools_incomplete_and_usage() -> None:
    req = chat_of({"input": "hi", "instructions": "sys", "tools": [TOOL], "metadata": {"a": "b"}})
    chat = {"id": "chatcmpl-1", "model": "gpt-4o-mini-2024", "choices": [{"index": 0, "finish_reason": "tool_calls",
            "message": {"role": "assistant", "content": "checking", "tool_calls": [
                {"id": "call_9", "type": "function", "function": {"name": "get_weather", "arguments": '{"c":1}'}}]}}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 4, "total_tokens": 14,
                      "prompt_tokens_details": {"cached_tokens": 3}}}
    answer = from_chat(chat, req)
    assert answer["id"] == req.response_id and answer["object"] == "response" and answer["status"] == "completed"
    assert answer["model"] == "gpt-4o-mini-2024" and answer["instructions"] == "sys"
    assert answer["metadata"] == {"a": "b"} and answer["tools"] == [TOOL] and answer["store"] is True
    message, call = answer["output"]
    assert message["type"] == "message" and message["content"][0]["text"] == "checking"
    assert (call["type"], call["call_id"], call["name"], call["arguments"]) == (
        "function_call", "call_9", "get_weather", '{"c":1}')
    assert answer["usage"] == {"input_tokens": 10, "input_tokens_details": {"cached_tokens": 3}, "output_tokens": 4,
                               "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 14}
    cut = from_chat({"choices": [{"finish_reason": "length", "message": {"content": "a b"}}]}, req)
    assert cut["status"] == "incomplete" and cut["incomplete_details"] == {"reason": "max_output_tokens"}
    assert cut["usage"]["output_tokens"] > 0  # estimated where the provider counted nothing


def _events(encoder: ResponsesEncoder, chunks: list[StreamChunk]) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for chunk in chunks:
        out += encoder.chunk(chunk)
    out += encoder.end()
    return [(name, orjson.loads(data)) for name, data in out]


def test_stream_events_in_order_with_sequence_numbers() -> None:
    req = chat_of({"input": "hi", "tools": [TOOL], "stream": True})
    call = {"index": 0, "id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": ""}}
    chunks = [chat_chunk("c1", 1, "m", {"role": "assistant", "content": "He"}),
              chat_chunk("c1", 1, "m", {"content": "llo"}),
              chat_chunk("c1", 1, "m", {"tool_calls": [call]}),
              chat_chunk("c1", 1, "m", {"tool_calls": [{"index": 0, "function": {"arguments": '{"city":'}}]}),
              chat_chunk("c1", 1, "m", {"tool_calls": [{"index": 0, "function": {"arguments": '"Paris"}'}}]}),
              chat_chunk("c1", 1, "m", {}, "tool_calls"),
              usage_chunk("c1", 1, "m", {"prompt_tokens": 5, "completion_tokens": 7, "total_tokens": 12},
                          Usage(5, 7, 12))]
    encoder = ResponsesEncoder(req)
    events = _events(encoder, chunks)
    assert [n for n, _ in events] == [
        "response.created", "response.in_progress",
        "response.output_item.added", "response.content_part.added",
        "response.output_text.delta", "response.output_text.delta", "response.output_text.done",
        "response.content_part.done", "response.output_item.done",
        "response.output_item.added", "response.function_call_arguments.delta",
        "response.function_call_arguments.delta", "response.function_call_arguments.done",
        "response.output_item.done", "response.completed"]
    assert all(d["type"] == n for n, d in events)
    assert [d["sequence_number"] for _, d in events] == list(range(len(events)))
    done = events[-1][1]["response"]
    assert done["id"] == events[0][1]["response"]["id"] == req.response_id
    assert [i["type"] for i in done["output"]] == ["message", "function_call"]
    assert done["output"][0]["content"][0]["text"] == "Hello"
    assert done["output"][1]["arguments"] == '{"city":"Paris"}' and done["output"][1]["call_id"] == "call_1"
    assert done["usage"]["input_tokens"] == 5 and done["usage"]["total_tokens"] == 12
    assert encoder.answer() == done


def test_stream_cut_by_tokens_is_incomplete_and_a_failure_is_response_failed() -> None:
    req = chat_of({"input": "hi", "stream": True})
    events = _events(ResponsesEncoder(req), [chat_chunk("c", 1, "m", {"content": "a"}, "length")])
    assert events[-1][0] == "response.incomplete"
    assert events[-1][1]["response"]["incomplete_details"] == {"reason": "max_output_tokens"}
    encoder = ResponsesEncoder(req)
    encoder.chunk(chat_chunk("c", 1, "m", {"content": "a"}))
    [(name, data)] = encoder.error(ApiError(502, "upstream broke", "server_error", "bad_gateway"))
    body = orjson.loads(data)
    assert name == "response.failed" and body["response"]["error"]["message"] == "upstream broke"
    assert body["sequence_number"] == 5 and encoder.answer() is None


def test_errors_are_openai_shaped() -> None:
    assert error_of(ApiError(429, "slow down", "rate_limit_error", "rate_limited")) == (
        429, {"error": {"message": "slow down", "type": "rate_limit_error", "param": None, "code": "rate_limited"}})


def test_keeping_and_previous_response_id() -> None:
    first = chat_of({"input": "hi", "instructions": "sys"})
    answer = from_chat({"choices": [{"finish_reason": "stop", "message": {"content": "hello"}}]}, first)
    kept = keep(first, answer)
    assert kept is not None and kept.id == answer["id"] and kept.items == first.items and kept.context == []
    assert keep(chat_of({"input": "x", "store": False}), answer) is None
    follow = resume(ResponsesRequest.parse({"model": "m", "input": "and again?", "previous_response_id": kept.id}),
                    kept)
    chat = to_chat(follow)
    assert chat.raw["messages"] == [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"},
                                    {"role": "user", "content": "and again?"}]  # instructions not carried over
    assert history_of(Kept("r2", {"output": []}, chat.items, follow.history))[:2] == [*first.items, answer["output"][0]]
    assert RESPONSES.keeping is not None and RESPONSES.keeping.previous(follow) == kept.id


def test_input_items_pages() -> None:
    items = [{"id": f"msg_{i}", "type": "message"} for i in range(5)]
    kept = Kept("r", {}, items, [])
    page = items_page(kept, {"limit": "2"})
    assert [i["id"] for i in page["data"]] == ["msg_4", "msg_3"] and page["has_more"] is True
    page = items_page(kept, {"order": "asc", "after": "msg_2"})
    assert [i["id"] for i in page["data"]] == ["msg_3", "msg_4"] and page["has_more"] is False
    assert (page["first_id"], page["last_id"]) == ("msg_3", "msg_4")
    with pytest.raises(ApiError):
        items_page(kept, {"limit": "0"})


def test_a_hosted_trial_restricts_the_chat_form_and_keeps_what_it_carries() -> None:
    offer = build_offers({"qwen": HostedSettings(credentials={"api_key": "sk-platform-0123456789"}, quota=3,
                                                 models=["qwen-plus"], max_tokens=256)})["qwen"]
    req = chat_of({"input": "hi", "tools": [{"type": "web_search"}]})
    trial = restrict(offer, req)  # no token limit given: the trial's cap is set, so the request is parsed again
    assert isinstance(trial, ResponsesChatRequest) and trial.raw["max_tokens"] == 256
    assert trial.response_id == req.response_id and trial.origin is req.origin and trial.native_body is None
    with pytest.raises(ApiError) as caught:  # the refusal survives the new parse
        trial.for_chat(frozenset())
    assert "web_search" in caught.value.message
    answer = from_chat({"choices": [{"finish_reason": "stop", "message": {"content": "ok"}}]}, trial)
    assert answer["id"] == req.response_id


def test_native_body_usage_and_events() -> None:
    raw = {"model": "m", "input": "and now?", "previous_response_id": "resp_x", "tools": [{"type": "web_search"}]}
    history = [{"type": "message", "id": "msg_1", "status": "completed", "role": "user",
                "content": [{"type": "input_text", "text": "hi"}]}]
    assert native_body(raw, []) is raw  # nothing kept: the body as it came
    sent = native_body(raw, history)
    assert "previous_response_id" not in sent and sent["tools"] == raw["tools"]
    assert sent["input"] == [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]},
                             {"type": "message", "role": "user", "content": "and now?"}]
    done = {"id": "resp_1", "usage": {"input_tokens": 3, "output_tokens": 2, "total_tokens": 5}}
    assert usage_of(done) == Usage(3, 2, 5) and usage_of({"usage": None}) is None
    observe, state = observer("openai"), StreamState("m")
    assert observe(SSEEvent("response.output_text.delta", b'{"delta": "x"}'), state) is None and not state.finished
    completed = orjson.dumps({"type": "response.completed", "response": done})
    assert observe(SSEEvent("response.completed", completed), state) == Usage(3, 2, 5) and state.finished
    with pytest.raises(ApiError) as caught:
        observe(SSEEvent("error", b'{"type": "error", "code": "server_error", "message": "boom"}'), StreamState("m"))
    assert "boom" in caught.value.message and caught.value.status == 502
    assert answer_in_event(StreamChunk(completed, None, "response.completed")) == done
    assert answer_in_event(StreamChunk(b'{"delta": "x"}', None, "response.output_text.delta")) is None


async def test_a_relayed_stream_keeps_its_answer_before_the_last_event_goes_out() -> None:
    kept: list[dict[str, Any]] = []

    async def on_answer(answer: dict[str, Any]) -> None:
        kept.append(answer)

    framing = sse.RelayFraming(error_events, on_answer, answer_in_event)
    delta = StreamChunk(b'{"type": "response.output_text.delta"}', None, "response.output_text.delta")
    last = StreamChunk(orjson.dumps({"type": "response.completed", "response": {"id": "resp_1"}}), None,
                       "response.completed")
    assert framing.frame(delta).startswith(b"event: response.output_text.delta\n")
    assert framing.frame(last) == b""  # held back ...
    held = framing.end()
    assert held.startswith(b"event: response.completed\n") and not kept
    await framing.settle()  # ... until the answer is kept
    assert kept == [{"id": "resp_1"}]
    plain = sse.RelayFraming(error_events)  # nothing to keep: every event goes out at once
    assert plain.frame(last).startswith(b"event: response.completed\n") and plain.end() == b""
