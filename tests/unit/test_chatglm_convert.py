"""The ChatGLM (self-hosted) translator's pure functions against our fixtures of ChatGLM2-6B's
payloads: messages -> prompt + history pairs, openai_api.py's id-less answers and CRLF stream,
estimated usage, errors. No I/O; the real recordings are an extra check where ../shared is
present."""

from __future__ import annotations

from typing import Any

import pytest

from keystore.models import validate_credential
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
from translators._estimate import estimate_tokens
from translators.chatglm import (
    ChatGLMState,
    ChatGLMTranslator,
    as_stream,
    error_from_response,
    estimated,
    finish_stream,
    from_native_response,
    from_vendor_event,
    from_vendor_response,
    prompt_tokens,
    to_native_request,
    to_vendor_request,
)
from translators.errors import ApiError
from translators.types import ChatRequest, StreamChunk

MODEL = "chatglm2-6b"
T = REGISTRY["chatglm"]


def request(messages: list[dict[str, Any]], **body: Any) -> ChatRequest:
    return ChatRequest.parse({"model": MODEL, "messages": messages, **body})


def native(messages: list[dict[str, Any]], **body: Any) -> dict[str, Any]:
    return to_native_request(request(messages, **body))


# -- credential -------------------------------------------------------------------------------------


def test_credential_needs_base_url_and_a_known_api() -> None:
    assert isinstance(T, ChatGLMTranslator)
    spec = T.credential_fields
    with pytest.raises(ValueError, match="base_url"):
        validate_credential("chatglm", spec, {"api": "native"})
    credential = validate_credential("chatglm", spec, {"base_url": "http://gpu:8000/", "api": "native"})
    assert credential.base_url == "http://gpu:8000" and "base_url" not in credential.secret_values()
    T.check_credential(credential)
    with pytest.raises(ApiError) as caught:
        T.check_credential(validate_credential("chatglm", spec, {"base_url": "http://gpu:8000", "api": "v3"}))
    assert caught.value.param == "api"


# -- messages -> prompt + history ---------------------------------------------------------------


def test_history_pairs_and_system_prefix() -> None:
    body = native([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Q1"},
                   {"role": "assistant", "content": "A1"}, {"role": "user", "content": "Q2"},
                   {"role": "user", "content": [{"type": "text", "text": "Q2b"}]},
                   {"role": "assistant", "content": "A2"},
                   {"role": "assistant", "content": "A2b"}, {"role": "developer", "content": "Late."},
                   {"role": "user", "content": "Q3"}])
    assert body == {"prompt": "Q3", "history": [["Be brief.\n\nLate.\n\nQ1", "A1"], ["Q2\n\nQ2b", "A2\n\nA2b"]]}


def test_system_only_before_the_prompt_and_leading_assistant() -> None:
    assert native([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]) == \
        {"prompt": "Be brief.\n\nHi", "history": []}
    assert native([{"role": "assistant", "content": "Welcome!"}, {"role": "user", "content": "Hi"}]) == \
        {"prompt": "Hi", "history": [["", "Welcome!"]]}


def test_sampling_zero_and_max_length() -> None:
    messages = [{"role": "user", "content": "你好 world"}]
    body = native(messages, temperature=0, top_p=0, max_tokens=100)
    assert (body["temperature"], body["top_p"]) == (0.01, 0.01)  # api.py reads 0 as "use the default"
    assert body["max_length"] == prompt_tokens(request(messages)) + 100 == 4 + 100


@pytest.mark.parametrize(("messages", "extra", "param"), [
    ([{"role": "assistant", "content": "x"}], {}, "messages"),
    ([{"role": "user", "content": "x"}], {"n": 2}, "n"),
    ([{"role": "user", "content": "x"}], {"tools": [{"type": "function", "function": {"name": "f"}}]}, "tools"),
    ([{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://x/y.png"}}]}], {},
     "messages[0].content[0].type"),
    ([{"role": "tool", "tool_call_id": "c", "content": "x"}, {"role": "user", "content": "x"}], {},
     "messages[0].role"),
])
def test_refused(messages: list[dict[str, Any]], extra: dict[str, Any], param: str) -> None:
    for build in (to_native_request, lambda r: to_vendor_request(r, MODEL)):
        with pytest.raises(ApiError) as caught:
            build(request(messages, **extra))
        assert caught.value.status == 400 and caught.value.param == param


def test_openai_server_request_has_string_contents() -> None:
    body = to_vendor_request(request([{"role": "developer", "content": "Be brief."},
                                      {"role": "user", "content": [{"type": "text", "text": "a"},
                                                                   {"type": "text", "text": "b"}]}],
                                     stream=True, temperature=0.2, max_tokens=10), MODEL)
    assert body == {"model": MODEL, "messages": [{"role": "system", "content": "Be brief."},
                                                 {"role": "user", "content": "a\nb"}],
                    "stream": True, "temperature": 0.2, "max_length": 14}


# -- token estimates (the one estimator: a CJK character is a token, else four characters) ---------


@pytest.mark.parametrize(("text", "tokens"), [("", 0), ("hello world", 3), ("你好", 2), ("ChatGLM2-6B，你好！", 7),
                                              ("こんにちは", 5), ("3.14", 1)])
def test_estimate_tokens(text: str, tokens: int) -> None:
    assert estimate_tokens(text) == tokens


# -- responses --------------------------------------------------------------------------------------


def test_native_response() -> None:
    body = fixture_json("chatglm", "chatglm2_api_response.json")
    out = estimated(from_native_response(body, MODEL), 2)
    check_schema("chat_completion_response.json", out)
    assert out["choices"][0]["message"]["content"] == body["response"] and out["choices"][0]["finish_reason"] == "stop"
    assert out["usage"] == {"prompt_tokens": 2, "completion_tokens": estimate_tokens(body["response"]),
                            "total_tokens": 2 + estimate_tokens(body["response"]), "estimated": True}
    assert out["id"].startswith("chatcmpl-")


def test_openai_server_response_gets_an_id_and_usage() -> None:
    body = fixture_json("chatglm", "chatglm2_openai_response.json")
    out = estimated(from_vendor_response(body, MODEL), 4)
    check_schema("chat_completion_response.json", out)
    assert out["id"].startswith("chatcmpl-") and out["created"] == 1730769300 and out["model"] == "chatglm2-6b"
    assert out["usage"]["estimated"] is True and out["usage"]["prompt_tokens"] == 4
    given = estimated(from_vendor_response(
        {**body, "usage": {"prompt_tokens": 3, "completion_tokens": 5, "total_tokens": 8}}, MODEL), 4)
    assert given["usage"] == {"prompt_tokens": 3, "completion_tokens": 5, "total_tokens": 8}  # a server's own counts


def crlf_stream(raw: bytes, state: ChatGLMState, piece: int | None = None) -> list[StreamChunk]:
    events = events_of(raw, piece)
    assert events[-1].data == b"[DONE]"
    chunks = [c for e in events[:-1] for c in from_vendor_event(e, state)]
    return chunks + finish_stream(state, done=True)


@pytest.mark.parametrize("piece", [None, 1, 4])
def test_crlf_stream(piece: int | None) -> None:
    state = ChatGLMState(MODEL, prompt_tokens=1)
    raw = fixture("chatglm", "chatglm2_openai_stream.sse")
    assert raw.count(b"\r\n\r\n") == 5  # sse-starlette's CRLF separators
    chunks = crlf_stream(raw, state, piece)
    out = parsed(chunks)
    for chunk in out:
        check_schema("chat_completion_chunk.json", chunk)
    assert content_of(chunks) == "晚安🌙，祝你好梦，明天见！"
    assert finishes(chunks) == ["stop"] and {c["id"] for c in out} == {state.id}
    assert len({c["created"] for c in out}) == 1
    assert out[-1]["choices"] == [] and out[-1]["usage"]["estimated"] is True
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == estimate_tokens(content_of(chunks))


def test_native_answer_as_a_stream() -> None:
    result = estimated(from_native_response({"response": "你好", "history": [], "status": 200}, MODEL), 1)
    chunks = as_stream(result)
    assert content_of(chunks) == "你好" and finishes(chunks) == ["stop"]
    assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens == 3


def test_errors() -> None:
    err = error_from_response(500, fixture("chatglm", "chatglm2_api_error_500.txt").decode(), {})
    assert (err.status, err.code) == (502, "upstream_error") and "Internal Server Error" in err.message
    err = error_from_response(400, fixture_json("chatglm", "chatglm2_openai_error_400.json"), {})
    assert err.status == 400 and err.message == "Invalid request"
    err = error_from_response(422, {"detail": [{"loc": ["body", "messages"], "msg": "str type expected"}]}, {})
    assert err.status == 400 and "str type expected" in err.message
    assert error_from_response(401, {"detail": "Not authenticated"}, {}).code == "upstream_credential_rejected"
    with pytest.raises(ApiError) as caught:
        from_native_response({"status": 200}, MODEL)  # a 200 that is no answer
    assert caught.value.status == 502
    with pytest.raises(ApiError):
        finish_stream(ChatGLMState(MODEL, prompt_tokens=1), done=True)  # a stream that said nothing


def test_a_cut_stream_is_an_error() -> None:
    """openai_api.py fails mid-stream by closing the connection: no finish chunk, no DONE."""
    state = ChatGLMState(MODEL, prompt_tokens=1)
    events = events_of(fixture("chatglm", "chatglm2_openai_stream.sse"))
    chunks = [c for e in events[:2] for c in from_vendor_event(e, state)]
    assert content_of(chunks) == "晚安"
    with pytest.raises(ApiError) as caught:
        finish_stream(state, done=False)
    assert (caught.value.status, caught.value.code) == (502, "upstream_incomplete_stream")
    assert finishes(finish_stream(state, done=True)) == ["stop"]  # DONE without a finish chunk: stop


# -- conformance with the team's real recordings (only where ../shared is present) ---------------


@needs_shared
def test_the_real_recordings_translate_the_same_way() -> None:
    native = shared_json("chatglm", "chatglm2_api_response.json")
    out = estimated(from_native_response(native, MODEL), 2)
    check_schema("chat_completion_response.json", out)
    assert out["choices"][0]["message"]["content"] == native["response"]
    check_schema("chat_completion_response.json",
                 estimated(from_vendor_response(shared_json("chatglm", "chatglm2_openai_response.json"), MODEL), 4))
    chunks = crlf_stream(shared_recording("chatglm", "chatglm2_openai_stream.sse"),
                         ChatGLMState(MODEL, prompt_tokens=1), 3)
    assert content_of(chunks) and finishes(chunks) == ["stop"] and chunks[-1].usage is not None
    assert error_from_response(400, shared_json("chatglm", "chatglm2_openai_error_400.json"), {}).status == 400
    assert error_from_response(500, shared_recording("chatglm", "chatglm2_api_error_500.txt").decode(),
                               {}).status == 502
