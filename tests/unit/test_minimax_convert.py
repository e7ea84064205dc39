"""The MiniMax translator's pure functions against our fixtures of MiniMax's payloads: request
mapping, v2 responses, the v2 stream whose final event repeats the message, `base_resp`
errors inside 200 bodies and streams, embeddings. No I/O; the real recordings are an extra
check where ../shared is present."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

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
from translators._compatible import CompatibleTranslator
from translators._sse import SSEEvent
from translators.errors import ApiError
from translators.minimax import (
    DEFAULT_MAX_TOKENS,
    SPEC,
    MinimaxState,
    error_from_response,
    finish_stream,
    from_vendor_embeddings,
    from_vendor_event,
    from_vendor_response,
    to_vendor_embeddings_request,
    to_vendor_request,
)
from translators.types import ChatRequest, EmbeddingRequest, StreamChunk

MODEL = "abab6.5s-chat"
USER = [{"role": "user", "content": "你好"}]


def vendor(**body: Any) -> dict[str, Any]:
    body.setdefault("model", MODEL)
    body.setdefault("messages", USER)
    return to_vendor_request(ChatRequest.parse(body), MODEL)


def event(body: Any) -> SSEEvent:
    return SSEEvent(data=orjson.dumps(body))


def translate(events: list[Any]) -> tuple[list[StreamChunk], MinimaxState]:
    state = MinimaxState(MODEL)
    chunks = [c for e in events for c in from_vendor_event(event(e), state)]
    return chunks, state


def stream_events(data: bytes) -> list[Any]:
    return [orjson.loads(e.data) for e in events_of(data, piece=5)]


def recorded_stream() -> list[Any]:
    return stream_events(fixture("minimax", "chat_stream_v2.sse"))


# -- requests ---------------------------------------------------------------------------------------


def test_registered_with_group_id() -> None:
    translator = REGISTRY["minimax"]
    assert isinstance(translator, CompatibleTranslator) and translator.spec is SPEC
    assert [(f.name, f.required, f.secret) for f in translator.credential_fields] == \
        [("api_key", True, True), ("group_id", True, False)]


def test_request_mapping() -> None:
    body = vendor(messages=[{"role": "developer", "content": "Be brief."}, *USER], temperature=0, top_p=1.5 / 2,
                  presence_penalty=1, frequency_penalty=1, seed=3, user="u", stream_options={"include_usage": True},
                  tools=[{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}],
                  mask_sensitive_info=False)
    assert body["messages"] == [{"role": "system", "content": "Be brief."}, *USER]
    assert (body["temperature"], body["top_p"], body["max_tokens"], body["stream"]) == (0.01, 0.75, DEFAULT_MAX_TOKENS,
                                                                                         False)
    assert not {"presence_penalty", "frequency_penalty", "seed", "user", "stream_options"} & set(body)
    assert body["tools"][0]["function"]["name"] == "f" and body["mask_sensitive_info"] is False
    assert vendor(max_completion_tokens=9, max_tokens=50, temperature=1.7)[
        "max_tokens"] == 9 and vendor(temperature=1.7)["temperature"] == 1.0


@pytest.mark.parametrize(("body", "param"), [({"n": 3}, "n"), ({"logprobs": True}, "logprobs"),
                                              ({"function_call": "auto"}, "function_call")])
def test_refused(body: dict[str, Any], param: str) -> None:
    with pytest.raises(ApiError) as caught:
        vendor(**body)
    assert caught.value.status == 400 and caught.value.param == param


# -- responses --------------------------------------------------------------------------------------


def test_v2_response_is_cleaned() -> None:
    out = from_vendor_response(fixture_json("minimax", "chat_response_v2.json"), MODEL)
    check_schema("chat_completion_response.json", out)
    assert out["id"] == "04a7e1c9b3d25f8a6c0e4b7d9f1a3c5e" and out["created"] == 1733452810
    assert out["choices"][0]["message"] == {"content": "Tea leaves keep best in an airtight tin, away from "
                                                       "light, heat and strong smells.", "role": "assistant",
                                            "refusal": None}  # MiniMax's name and audio_content dropped
    assert out["usage"] == {"prompt_tokens": 61, "completion_tokens": 22, "total_tokens": 83}
    assert not {"base_resp", "input_sensitive", "output_sensitive"} & set(out)


def test_sensitive_output_legacy_usage_and_max_output() -> None:
    body = fixture_json("minimax", "chat_response_v2.json")
    body.update(output_sensitive=True, usage={"total_tokens": 40})
    out = from_vendor_response(body, MODEL)
    assert out["choices"][0]["finish_reason"] == "content_filter"
    assert out["usage"] == {"prompt_tokens": 0, "completion_tokens": 40, "total_tokens": 40}
    body.update(output_sensitive=False)
    body["choices"][0]["finish_reason"] = "max_output"
    assert from_vendor_response(body, MODEL)["choices"][0]["finish_reason"] == "length"


@pytest.mark.parametrize(("name", "status", "code"), [
    ("error_200_auth_1004.json", 403, "upstream_credential_rejected"),
    ("error_200_balance_1008.json", 429, "insufficient_quota"),
])
def test_errors_in_200_bodies(name: str, status: int, code: str) -> None:
    with pytest.raises(ApiError) as caught:
        from_vendor_response(fixture_json("minimax", name), MODEL)
    assert (caught.value.status, caught.value.code) == (status, code)
    assert "minimax" in caught.value.message or status == 429


@pytest.mark.parametrize(("code", "status", "ours"), [
    (1002, 429, "rate_limit_exceeded"), (1039, 429, "rate_limit_exceeded"), (2013, 400, "invalid_parameter"),
    (1026, 400, "content_filter"), (1027, 400, "content_filter"), (1013, 502, "upstream_error"),
    (1001, 504, "upstream_timeout"), (2049, 403, "upstream_credential_rejected"), (2999, 400, None),
])
def test_base_resp_codes(code: int, status: int, ours: str | None) -> None:
    err = error_from_response(200, {"base_resp": {"status_code": code, "status_msg": "msg"}}, None)
    assert (err.status, err.code) == (status, ours) and f"base_resp {code}" in err.message


def test_http_errors_and_a_200_without_choices() -> None:
    assert error_from_response(500, None, {}).status == 502
    assert error_from_response(429, {"error": {"message": "slow down"}}, {"retry-after": "2"}).retry_after == 2.0
    assert error_from_response(200, {"id": "x", "choices": [], "base_resp": {"status_code": 0}}, None).status == 502


# -- streams ----------------------------------------------------------------------------------------


def test_v2_stream_does_not_repeat_the_final_message() -> None:
    chunks, state = translate(recorded_stream())
    out = parsed(chunks)
    for chunk in out:
        check_schema("chat_completion_chunk.json", chunk)
    assert content_of(chunks) == "晚上好！想听个故事吗？"  # once, though the final event repeats it
    assert finishes(chunks) == ["stop"] and state.finished
    assert [c["choices"][0]["delta"].get("role") for c in out if c["choices"]].count("assistant") == 1
    assert {c["id"] for c in out} == {"04a9c3e5f7b1d2a4c6e8f0b2d4a6c8e1"}
    assert out[-1]["choices"] == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.as_dict() == {"prompt_tokens": 58, "completion_tokens": 9, "total_tokens": 67}
    assert all(c.usage is None for c in chunks[:-1])  # the zero usage of the deltas is not forwarded


def test_final_event_gives_the_finish_reason_and_a_missing_tail_once() -> None:
    events = recorded_stream()
    assert "finish_reason" not in events[1]["choices"][0]  # the deltas end without a finish reason
    events[2]["choices"][0]["message"]["content"] += "再见"  # the final message holds a tail not streamed
    events[2]["output_sensitive"] = True
    chunks, _ = translate(events)
    assert content_of(chunks) == "晚上好！想听个故事吗？再见" and finishes(chunks) == ["content_filter"]


def test_base_resp_error_mid_stream_raises() -> None:
    events = recorded_stream()[:1] + [{"id": "", "choices": None,
                                       "base_resp": {"status_code": 1039, "status_msg": "token limit"}}]
    state = MinimaxState(MODEL)
    assert content_of(from_vendor_event(event(events[0]), state)) == "晚上好"
    with pytest.raises(ApiError) as caught:
        from_vendor_event(event(events[1]), state)
    assert caught.value.status == 429


def test_end_of_stream_without_the_final_event() -> None:
    chunks, state = translate(recorded_stream()[:2])
    tail = finish_stream(state)
    assert finishes(chunks) == [] and finishes(tail) == ["stop"] and tail[-1].usage is not None
    assert finish_stream(state) == []  # once
    _, cut = translate(recorded_stream()[:2])
    with pytest.raises(ApiError) as cut_short:
        finish_stream(cut, done=False)  # EOF with no finish reason anywhere: a cut stream
    assert cut_short.value.code == "upstream_incomplete_stream"
    with pytest.raises(ApiError) as caught:
        finish_stream(MinimaxState(MODEL))
    assert caught.value.status == 502


# -- embeddings -------------------------------------------------------------------------------------


def test_embeddings() -> None:
    assert from_vendor_embeddings(fixture_json("minimax", "embeddings_response.json")) == \
        ([[0.25, -0.5], [0.75, 0.125], [-0.375, 0.0625]], 9)
    with pytest.raises(ApiError) as caught:
        from_vendor_embeddings(fixture_json("minimax", "error_200_auth_1004.json"))
    assert caught.value.status == 403


@pytest.mark.parametrize(("extra", "kind"), [({}, "db"), ({"input_type": "query"}, "query"),
                                             ({"input_type": "document"}, "db"), ({"type": "query"}, "query")])
def test_embeddings_type(extra: dict[str, Any], kind: str) -> None:
    req = EmbeddingRequest.parse({"model": "embo-01", "input": ["a"], **extra})
    assert to_vendor_embeddings_request(["a"], "embo-01", req) == {"model": "embo-01", "texts": ["a"], "type": kind}


def test_embeddings_refusals() -> None:
    for extra, param in (({"dimensions": 8}, "dimensions"), ({"input_type": "search"}, "input_type")):
        with pytest.raises(ApiError) as caught:
            to_vendor_embeddings_request(["a"], "embo-01", EmbeddingRequest.parse({"model": "embo-01", "input": "a",
                                                                                   **extra}))
        assert caught.value.param == param


# -- conformance with the team's real recordings (only where ../shared is present) ---------------


@needs_shared
def test_the_real_recordings_translate_the_same_way() -> None:
    body = shared_json("minimax", "chat_response_v2.json")
    out = from_vendor_response(body, MODEL)
    check_schema("chat_completion_response.json", out)
    assert out["usage"]["total_tokens"] == body["usage"]["total_tokens"]
    events = stream_events(shared_recording("minimax", "chat_stream_v2.sse"))
    chunks, state = translate(events)
    assert content_of(chunks) == events[-1]["choices"][0]["message"]["content"]  # not repeated by the last event
    assert finishes(chunks) == ["stop"] and state.finished
    for name in ("error_200_auth_1004.json", "error_200_balance_1008.json"):
        with pytest.raises(ApiError):
            from_vendor_response(shared_json("minimax", name), MODEL)
    vectors, tokens = from_vendor_embeddings(shared_json("minimax", "embeddings_response.json"))
    assert len(vectors) == 2 and tokens > 0
