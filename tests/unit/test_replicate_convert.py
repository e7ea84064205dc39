"""The Replicate translator's pure functions against prediction- and stream-shaped payloads (our
fixtures in tests/fixtures/replicate/, written from ../shared/vendors/replicate.md; the real
recordings too where ../shared is present) and the documented prompt template."""

from __future__ import annotations

import base64

import orjson
import pytest

from tests.unit._vendor_data import (
    check_schema,
    content_of,
    events_of,
    finishes,
    fixture,
    fixture_json,
    parsed,
)
from translators._sse import SSEEvent
from translators.errors import ApiError
from translators.replicate import ReplicateTranslator
from translators.replicate.codec import (
    ReplicateState,
    end_of_stream,
    error_from_response,
    from_vendor_event,
    from_vendor_response,
    output_text,
    prediction_body,
    to_vendor_request,
    transcription_input,
    transcription_output,
)
from translators.types import ChatRequest, TranscriptionRequest

MODEL = "meta/meta-llama-3-8b-instruct"


def chat(messages: list[dict[str, object]] | None = None, **fields: object) -> ChatRequest:
    return ChatRequest.parse({"model": "m", "messages": messages or [{"role": "user", "content": "Hi"}], **fields})


def stream_of(raw: bytes, piece: int | None) -> tuple[ReplicateState, list]:  # type: ignore[type-arg]
    state = ReplicateState(MODEL, prompt="Hi")
    chunks = [c for e in events_of(raw, piece) for c in from_vendor_event(e, state)]
    return state, chunks


# -- requests ----------------------------------------------------------------------------------------------


def test_single_user_message_is_the_prompt_as_is() -> None:
    inputs = to_vendor_request(chat([{"role": "system", "content": "Be brief."},
                                     {"role": "developer", "content": "No."},
                                     {"role": "user", "content": "Write a haiku"}]), MODEL)
    assert inputs == {"prompt": "Write a haiku", "system_prompt": "Be brief.\n\nNo."}


def test_a_conversation_uses_the_documented_template() -> None:
    inputs = to_vendor_request(chat([{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"},
                                     {"role": "user", "content": "Who are you?"}]), MODEL)
    assert inputs == {"prompt": "User: Hi\n\nAssistant: Hello!\n\nUser: Who are you?\n\nAssistant:"}


def test_parameters_are_mapped() -> None:
    inputs = to_vendor_request(chat(max_completion_tokens=64, max_tokens=9, temperature=0.2, top_p=0.9,
                                    stop=["\n\n", "###"], seed=7, presence_penalty=1.0), MODEL)
    assert inputs == {"prompt": "Hi", "max_tokens": 64, "temperature": 0.2, "top_p": 0.9,
                      "stop_sequences": "\n\n,###", "seed": 7}
    assert prediction_body(inputs, None, False) == {"input": inputs}
    assert prediction_body(inputs, "abc123", True) == {"version": "abc123", "input": inputs, "stream": True}


@pytest.mark.parametrize(("fields", "param"), [
    ({"stop": ["a,b"]}, "stop"), ({"n": 3}, "n"), ({"logprobs": True}, "logprobs"),
    ({"tools": [{"type": "function", "function": {"name": "f"}}]}, "tools"),
    ({"response_format": {"type": "json_schema", "json_schema": {"name": "x"}}}, "response_format"),
])
def test_what_cannot_be_honoured_is_refused(fields: dict[str, object], param: str) -> None:
    with pytest.raises(ApiError) as caught:
        to_vendor_request(chat(**fields), MODEL)
    assert caught.value.status == 400 and caught.value.param == param


def test_transcription_input_is_a_data_uri() -> None:
    req = TranscriptionRequest.parse({"model": "m", "file": b"RIFFdata", "filename": "a.wav",
                                      "content_type": "application/octet-stream", "language": "en",
                                      "prompt": "names: Ada", "temperature": "0.2"})
    inputs = transcription_input(req)
    header, _, payload = inputs["audio"].partition(",")
    assert header == "data:audio/x-wav;base64" or header == "data:audio/wav;base64"
    assert base64.b64decode(payload) == b"RIFFdata"
    assert (inputs["language"], inputs["initial_prompt"], inputs["temperature"]) == ("en", "names: Ada", 0.2)


# -- predictions ----------------------------------------------------------------------------------------------


def test_succeeded_prediction() -> None:
    prediction = fixture_json("replicate", "prediction_succeeded_llm.json")
    out = from_vendor_response(prediction, MODEL)
    check_schema("chat_completion_response.json", out)
    text = "".join(prediction["output"])
    assert out["choices"][0]["message"]["content"] == text
    assert text.startswith(" Here is a short poem about a lighthouse:\n\nA tower")  # the leading "" token kept
    assert out["choices"][0]["finish_reason"] == "stop" and out["id"] == f"chatcmpl-{prediction['id']}"
    prompt = prediction["input"]["system_prompt"] + "\n\n" + prediction["input"]["prompt"]
    assert out["usage"]["prompt_tokens"] == (len(prompt) + 3) // 4  # estimated: no counts in the prediction
    assert out["usage"]["completion_tokens"] == (len(text) + 3) // 4


def test_prefer_wait_answer_is_not_final() -> None:
    prediction = fixture_json("replicate", "prediction_prefer_wait_processing.json")
    assert output_text(prediction["output"]) == "\n\nGray waves on stone\nA lamp turns slowly\nShips find the way home"
    with pytest.raises(ApiError) as caught:
        from_vendor_response(prediction, MODEL)  # still processing: the caller polls
    assert caught.value.status == 502


def test_model_token_counts_are_used_when_given() -> None:
    prediction = {"id": "p1", "status": "succeeded", "input": {"prompt": "Hi"}, "output": ["a", "b"],
                  "metrics": {"input_token_count": 11, "output_token_count": 8}}
    out = from_vendor_response({**prediction, "input": {"prompt": "Hi", "max_tokens": 8}}, MODEL)  # echoed input
    assert out["usage"] == {"prompt_tokens": 11, "completion_tokens": 8, "total_tokens": 19}
    assert out["choices"][0]["finish_reason"] == "length"
    assert from_vendor_response({**prediction, "input": {"prompt": "Hi", "max_tokens": 9}},
                                MODEL)["choices"][0]["finish_reason"] == "stop"


@pytest.mark.parametrize(("prediction", "code", "words"), [
    ({"status": "failed", "error": "CUDA out of memory"}, "prediction_failed", "CUDA out of memory"),
    ({"status": "canceled", "output": ["a"]}, "prediction_canceled", "canceled"),
    ({"status": "starting"}, "upstream_bad_response", "starting"),
    ({"detail": "not a prediction"}, "upstream_bad_response", "not a prediction"),
])
def test_unsuccessful_predictions_are_errors(prediction: dict[str, object], code: str, words: str) -> None:
    with pytest.raises(ApiError) as caught:
        from_vendor_response(prediction, MODEL)
    assert caught.value.status == 502 and caught.value.code == code and words in caught.value.message


def test_output_text_shapes() -> None:
    assert output_text(["a", "", None, " b"]) == "a b"   # joined with "", not " "
    assert output_text("whole") == "whole" and output_text(None) == ""
    assert output_text({"x": 1}) == '{"x":1}'


# -- streams ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("piece", [None, 1, 5, 33])
def test_stream_keeps_whitespace_and_newlines(piece: int | None) -> None:
    state, chunks = stream_of(fixture("replicate", "chat_stream.sse"), piece)
    chunks += end_of_stream(state)
    for event in parsed(chunks):
        check_schema("chat_completion_chunk.json", event)
    haiku = fixture_json("replicate", "prediction_prefer_wait_processing.json")["output"]
    assert content_of(chunks) == "".join(haiku)  # the same tokens as the prediction's token list
    assert finishes(chunks) == ["stop"] and len({e["id"] for e in parsed(chunks)}) == 1
    assert parsed(chunks)[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert chunks[-1].usage is not None and parsed(chunks)[-1]["choices"] == []


def test_stream_error_event() -> None:
    state = ReplicateState(MODEL)
    events = events_of(fixture("replicate", "chat_stream_error.sse"), 7)
    chunks = from_vendor_event(events[0], state)
    assert content_of(chunks) == "Once"
    with pytest.raises(ApiError) as caught:
        from_vendor_event(events[1], state)
    assert (caught.value.status, caught.value.code) == (502, "prediction_failed")
    assert "GPU memory exhausted while loading weights" in caught.value.message


@pytest.mark.parametrize("reason", [b'{"reason":"canceled"}', b'{"reason":"error"}'])
def test_done_with_a_reason_is_an_error(reason: bytes) -> None:
    state = ReplicateState(MODEL)
    from_vendor_event(SSEEvent("output", b"Hi", "1:0"), state)
    with pytest.raises(ApiError) as caught:
        from_vendor_event(SSEEvent("done", reason, "1:1"), state)
    assert caught.value.status == 502


def test_logs_are_skipped_and_a_stream_without_done_is_cut() -> None:
    state = ReplicateState(MODEL)
    chunks = from_vendor_event(SSEEvent("logs", b"loading weights", "1:0"), state)
    chunks += from_vendor_event(SSEEvent("output", b" x", "1:1"), state)
    assert content_of(chunks) == " x"
    with pytest.raises(ApiError) as caught:
        end_of_stream(state)
    assert caught.value.code == "upstream_incomplete_stream"


# -- errors ----------------------------------------------------------------------------------------------------------


def test_401_problem_is_a_403_naming_replicate() -> None:
    err = error_from_response(401, fixture_json("replicate", "error_401_problem.json"), {})
    assert (err.status, err.code) == (403, "upstream_credential_rejected")
    assert "replicate" in err.message and "Missing or invalid API token" in err.message


@pytest.mark.parametrize(("status", "body", "headers", "expected"), [
    (402, {"title": "Payment required", "detail": "Set up billing", "status": 402}, {}, (429, "insufficient_quota")),
    (429, {"title": "Throttled", "detail": "Request was throttled", "status": 429}, {"retry-after": "7"},
     (429, "rate_limit_exceeded")),
    (422, {"title": "Input validation failed", "detail": "- input.prompt: Invalid type", "status": 422}, {},
     (400, "invalid_input")),
    (404, {"title": "Not found", "detail": "The model x/y does not exist", "status": 404}, {},
     (404, "model_not_found")),
    (500, "<html>oops</html>", {}, (502, "upstream_error")),
    (503, {"detail": "unavailable"}, {}, (503, "upstream_unavailable")),
])
def test_problem_json_statuses(status: int, body: object, headers: dict[str, str], expected: tuple[int, str]) -> None:
    err = error_from_response(status, body, headers)
    assert (err.status, err.code) == expected
    if status == 429:
        assert err.retry_after == 7.0
    if status == 422:
        assert err.message == "- input.prompt: Invalid type"


# -- speech ---------------------------------------------------------------------------------------------


WHISPER = {"status": "succeeded", "output": {
    "transcription": " hello there friend", "detected_language": "english", "translation": None,
    "segments": [{"id": 0, "start": 0.0, "end": 1.5, "text": " hello there"},
                 {"id": 1, "start": 1.5, "end": 2.25, "text": " friend"}]}}


def test_whisper_output_in_each_format() -> None:
    assert orjson.loads(transcription_output(WHISPER, "json").content) == {"text": " hello there friend"}
    assert transcription_output(WHISPER, "text").content == b" hello there friend\n"
    assert transcription_output(WHISPER, "srt").content.decode() == (
        "1\n00:00:00,000 --> 00:00:01,500\nhello there\n\n2\n00:00:01,500 --> 00:00:02,250\nfriend\n")
    assert transcription_output(WHISPER, "vtt").content.decode().startswith("WEBVTT\n\n00:00:00.000 --> 00:00:01.500")
    verbose = orjson.loads(transcription_output(WHISPER, "verbose_json").content)
    assert verbose["language"] == "english" and verbose["duration"] == 2.25 and len(verbose["segments"]) == 2


def test_a_model_without_timestamps_refuses_subtitles() -> None:
    plain = {"status": "succeeded", "output": "just text"}
    assert orjson.loads(transcription_output(plain, "json").content) == {"text": "just text"}
    with pytest.raises(ApiError) as caught:
        transcription_output(plain, "srt")
    assert caught.value.status == 400 and caught.value.param == "response_format"


# -- ids ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("model", ["gpt2", "a/b/c", "../x", "meta/..", "%2e%2e/x", "a/b?c", "a/ b"])
def test_model_ids_refused(model: str) -> None:
    with pytest.raises(ApiError) as caught:
        ReplicateTranslator().check_model(model)
    assert caught.value.status == 400


def test_model_id_accepted() -> None:
    ReplicateTranslator().check_model(MODEL)
