"""The Hugging Face translator's pure functions against TGI- and Inference-API-shaped payloads (our
fixtures in tests/fixtures/huggingface/, written from ../shared/vendors/huggingface.md; the real
recordings too where ../shared is present) and against the documented template and pooling rule."""

from __future__ import annotations

import base64
import json
import struct
import time

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
from translators._hosted import dialogue_prompt, render_transcription
from translators._shapes import embedding_items
from translators._sse import SSEEvent
from translators.errors import ApiError
from translators.huggingface import HuggingFaceTranslator, endpoint_root, loading_delay
from translators.huggingface.codec import (
    MessagesState,
    end_of_stream,
    error_from_response,
    error_in_body,
    from_vendor_event,
    from_vendor_response,
    to_vendor_request,
)
from translators.huggingface.tasks import (
    GenerateState,
    completion_request,
    end_of_generate_stream,
    from_asr,
    from_generate_event,
    from_generate_response,
    generate_request,
    generation_parameters,
    pool,
)
from translators.types import ChatRequest, CompletionRequest

MODEL = "HuggingFaceH4/zephyr-7b-beta"
USER = [{"role": "user", "content": "What is deep learning?"}]


def chat(**fields: object) -> ChatRequest:
    return ChatRequest.parse({"model": "m", "messages": USER, **fields})


def event(body: object) -> SSEEvent:
    return SSEEvent("message", orjson.dumps(body))


# -- Messages API ------------------------------------------------------------------------------------


def test_tgi_1_4_response_is_normalised() -> None:
    body = fixture_json("huggingface", "tgi_chat_response.json")
    out = from_vendor_response(body, MODEL)
    check_schema("chat_completion_response.json", out)
    assert out["object"] == "chat.completion" and out["id"].startswith("chatcmpl-")  # TGI 1.4: "", text_completion
    assert out["choices"][0]["message"]["content"] == body["choices"][0]["message"]["content"]
    assert out["choices"][0]["finish_reason"] == "length"
    assert out["usage"] == {"prompt_tokens": 39, "completion_tokens": 20, "total_tokens": 59}


def test_tgi_1_4_5_tool_call_is_normalised() -> None:
    out = from_vendor_response(fixture_json("huggingface", "tgi_chat_response_tool_call_v1.4.5.json"), MODEL)
    check_schema("chat_completion_response.json", out)
    choice = out["choices"][0]
    assert choice["finish_reason"] == "tool_calls"  # TGI 1.4.5: eos_token
    (call,) = choice["message"]["tool_calls"]
    assert isinstance(call["id"], str) and call["id"].startswith("call_") and call["id"] != "call_0"
    assert call["type"] == "function" and "description" not in call["function"]
    assert call["function"]["name"] == "get_stock_price"  # arguments came as an object, leave as a JSON string
    assert json.loads(call["function"]["arguments"]) == {"currency": "EUR", "symbol": "ACME"}
    assert choice["message"]["content"] is None


@pytest.mark.parametrize("piece", [None, 1, 7, 64])
def test_tgi_1_4_stream_without_done_is_normalised(piece: int | None) -> None:
    raw = fixture("huggingface", "tgi_chat_stream.sse")
    state = MessagesState(MODEL, prompt_estimate=5)
    chunks = [c for e in events_of(raw, piece) for c in from_vendor_event(e, state)]
    chunks += end_of_stream(state)
    events = parsed(chunks)
    for event in events:
        check_schema("chat_completion_chunk.json", event)
    expected = "".join(json.loads(line[5:])["choices"][0]["delta"].get("content") or ""
                       for line in raw.decode().splitlines() if line.startswith("data:"))
    assert content_of(chunks) == expected
    assert expected == "Photosynthesis is how green plants turn sunlight, water and carbon dioxide into sugar"
    assert [e["choices"][0]["delta"].get("role") for e in events if e["choices"]].count("assistant") == 1
    assert {e["id"] for e in events} == {state.id} and state.id.startswith("chatcmpl-")
    assert {e["object"] for e in events} == {"chat.completion.chunk"}
    assert finishes(chunks) == ["length"]
    usage = events[-1]
    assert usage["choices"] == [] and chunks[-1].usage is not None  # estimated: 1.4.x sends none
    assert usage["usage"]["prompt_tokens"] == 5 and usage["usage"]["completion_tokens"] == (len(expected) + 3) // 4


def test_a_cut_stream_is_an_error_not_a_short_answer() -> None:
    raw = fixture("huggingface", "tgi_chat_stream.sse")
    events = events_of(raw)[:5]
    state = MessagesState(MODEL)
    for e in events:
        from_vendor_event(e, state)
    with pytest.raises(ApiError) as caught:
        end_of_stream(state)
    assert caught.value.status == 502 and caught.value.code == "upstream_incomplete_stream"


def test_current_tgi_usage_on_the_finish_chunk_becomes_the_last_chunk() -> None:
    head = {"id": "", "object": "chat.completion.chunk", "created": 1, "model": "tgi"}
    state = MessagesState("m")
    chunks = from_vendor_event(event({**head, "choices": [{"index": 0, "delta": {"role": "assistant", "content": "Hi"},
                                                           "finish_reason": None}]}), state)
    chunks += from_vendor_event(event({**head, "choices": [{"index": 0, "delta": {}, "finish_reason": "eos_token"}],
                                       "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}}),
                                state)
    chunks += end_of_stream(state)
    events = parsed(chunks)
    assert [e["choices"][0]["finish_reason"] for e in events if e["choices"]] == [None, "stop"]
    assert all("usage" not in e for e in events[:-1])
    assert events[-1]["choices"] == [] and events[-1]["usage"]["total_tokens"] == 4


def test_old_tgi_streamed_tool_call_pieces() -> None:
    state = MessagesState("m")
    pieces = ['{"', "city", '":"', "Paris", '"}']
    chunks = []
    for p in pieces:  # TGI 1.4.x: tool_calls as one object, empty id, the name on every piece
        chunks += from_vendor_event(event({"choices": [{"index": 0, "delta": {"role": "assistant", "tool_calls": {
            "index": 0, "id": "", "type": "function",
            "function": {"description": None, "name": "get_weather", "arguments": p}}}, "finish_reason": None}]}),
            state)
    chunks += from_vendor_event(event({"choices": [{"index": 0, "delta": {}, "finish_reason": "eos_token"}]}), state)
    calls = [tc for e in parsed(chunks) for tc in e["choices"][0]["delta"].get("tool_calls") or ()]
    assert [c.get("id") for c in calls][1:] == [None] * 4 and calls[0]["id"].startswith("call_")
    assert [c["function"].get("name") for c in calls] == ["get_weather", None, None, None, None]
    assert json.loads("".join(c["function"]["arguments"] for c in calls)) == {"city": "Paris"}
    assert finishes(chunks) == ["tool_calls"]


def test_messages_api_request() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "string"}}}
    body = to_vendor_request(chat(max_completion_tokens=9, stream=True, response_format={
        "type": "json_schema", "json_schema": {"name": "x", "schema": schema}}), MODEL)
    assert body["model"] == MODEL and body["max_tokens"] == 9 and "max_completion_tokens" not in body
    assert body["response_format"] == {"type": "json_object", "value": schema}
    assert body["stream_options"] == {"include_usage": True}
    assert to_vendor_request(chat(response_format={"type": "json_object"}), MODEL)["response_format"] == \
        {"type": "json_object", "value": {"type": "object"}}


# -- text generation ----------------------------------------------------------------------------------------


def test_the_documented_prompt_template() -> None:
    req = ChatRequest.parse({"model": "m", "messages": [
        {"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello!"}, {"role": "developer", "content": "No emoji."},
        {"role": "user", "content": [{"type": "text", "text": "Who are you?"}]}]})
    assert generate_request(req, MODEL)["inputs"] == (
        "System: Be brief.\n\nNo emoji.\n\nUser: Hi\n\nAssistant: Hello!\n\nUser: Who are you?\n\nAssistant:")
    assert dialogue_prompt([("user", "Hi")]) == "User: Hi\n\nAssistant:"


@pytest.mark.parametrize(("fields", "expected"), [
    ({}, {"do_sample": True}),
    ({"temperature": 0}, {"do_sample": False}),
    ({"temperature": 0.7, "top_p": 0.9, "max_tokens": 30}, {"do_sample": True, "temperature": 0.7, "top_p": 0.9,
                                                             "max_new_tokens": 30}),
    ({"top_p": 1.0, "max_completion_tokens": 5, "max_tokens": 9}, {"do_sample": True, "max_new_tokens": 5}),
    ({"top_p": 0}, {"do_sample": False}),
    ({"stop": "###", "seed": 4, "top_k": 5}, {"do_sample": True, "stop": ["###"], "seed": 4, "top_k": 5}),
])
def test_generation_parameters(fields: dict[str, object], expected: dict[str, object]) -> None:
    body = generate_request(chat(**fields), MODEL)
    assert body["parameters"] == {"return_full_text": False, "details": True, **expected}


@pytest.mark.parametrize(("fields", "param"), [
    ({"n": 2}, "n"), ({"logprobs": True}, "logprobs"),
    ({"tools": [{"type": "function", "function": {"name": "f"}}]}, "tools"),
    ({"response_format": {"type": "json_object"}}, "response_format"),
    ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
    ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://x/y.png"}}]}]},
     "messages[0].content[0].type"),
    ({"messages": [{"role": "tool", "tool_call_id": "c", "content": "1"}]}, "messages[0].role"),
])
def test_text_generation_refuses_what_it_cannot_honour(fields: dict[str, object], param: str) -> None:
    with pytest.raises(ApiError) as caught:
        generate_request(chat(**fields), MODEL)
    assert caught.value.status == 400 and caught.value.param == param


def test_serverless_generate_answer_is_a_list() -> None:
    out = from_generate_response(fixture_json("huggingface", "generate_response_serverless.json"), MODEL, "Hi there")
    check_schema("chat_completion_response.json", out)
    assert out["choices"][0]["message"]["content"] == " Hello" and out["choices"][0]["finish_reason"] == "length"
    assert out["usage"] == {"prompt_tokens": 2, "completion_tokens": 2, "total_tokens": 4}  # 2 from details


def test_generate_headers_give_the_counts() -> None:
    body = {"generated_text": " Hello", "details": {"finish_reason": "eos_token"}}
    out = from_generate_response(body, MODEL, "x" * 40, {"x-prompt-tokens": "12", "x-generated-tokens": "2"})
    assert out["usage"] == {"prompt_tokens": 12, "completion_tokens": 2, "total_tokens": 14}
    assert out["choices"][0]["finish_reason"] == "stop" and out["choices"][0]["message"]["content"] == " Hello"


def test_generate_stream() -> None:
    state = GenerateState(MODEL, prompt="Hi")
    chunks = [c for e in events_of(fixture("huggingface", "generate_stream.sse"), 5)
              for c in from_generate_event(e, state)]
    chunks += end_of_generate_stream(state)
    for event in parsed(chunks):
        check_schema("chat_completion_chunk.json", event)
    assert content_of(chunks) == "Hi!" and finishes(chunks) == ["length"]
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 2


def test_token_stream_skips_special_tokens_and_reads_details() -> None:
    events = [{"index": 1, "token": {"id": 5, "text": "Hel", "special": False}, "generated_text": None,
               "details": None},
              {"index": 2, "token": {"id": 6, "text": "lo", "special": False}, "generated_text": None, "details": None},
              {"index": 3, "token": {"id": 2, "text": "</s>", "special": True}, "generated_text": "Hello",
               "details": {"finish_reason": "eos_token", "generated_tokens": 3, "input_length": 7}}]
    state = GenerateState(MODEL, prompt="prompt")
    chunks = [c for e in events for c in from_generate_event(event(e), state)] + end_of_generate_stream(state)
    assert content_of(chunks) == "Hello" and finishes(chunks) == ["stop"]
    usage = chunks[-1].usage
    assert usage is not None and (usage.prompt_tokens, usage.completion_tokens) == (7, 3)
    with pytest.raises(ApiError) as caught:
        end_of_generate_stream(GenerateState(MODEL, prompt="prompt"))
    assert caught.value.status == 502


def test_error_event_in_a_token_stream() -> None:
    state = GenerateState(MODEL, prompt="p")
    with pytest.raises(ApiError) as caught:
        from_generate_event(event({"error": "Request failed during generation: OOM", "error_type": "generation"}),
                            state)
    assert caught.value.status == 502 and "OOM" in caught.value.message


def test_legacy_completion_maps_directly() -> None:
    body, prompt = completion_request(CompletionRequest.parse({"model": "m", "prompt": ["Once"], "max_tokens": 4,
                                                               "temperature": 0}))
    assert body == {"inputs": "Once", "stream": False, "parameters": {
        "return_full_text": False, "details": True, "max_new_tokens": 4, "do_sample": False}}
    for fields, param in (({"suffix": "x"}, "suffix"), ({"n": 2}, "n"), ({"prompt": ["a", "b"]}, "prompt")):
        with pytest.raises(ApiError) as caught:
            completion_request(CompletionRequest.parse({"model": "m", "prompt": "p", **fields}))
        assert caught.value.param == param
    state = GenerateState(MODEL, prompt="Once", completion=True, echo=True)
    chunks = from_generate_event(event({"token": {"text": " upon", "special": False},
                                        "details": {"finish_reason": "length", "generated_tokens": 1}}), state)
    choices = [c["choices"][0] for c in parsed(chunks) if c["choices"]]  # then the usage chunk
    assert [c["text"] for c in choices] == ["Once", " upon", ""]
    assert choices[-1]["finish_reason"] == "length"


# -- errors -----------------------------------------------------------------------------------------------


def test_422_json_and_plain_text_are_400s_with_the_message() -> None:
    body = fixture_json("huggingface", "error_422_validation.json")
    err = error_from_response(422, body, {})
    assert (err.status, err.code, err.type) == (400, "validation", "invalid_request_error")
    assert err.message == body["error"]
    text = fixture("huggingface", "error_422_plaintext.txt").decode()
    err = error_from_response(422, text, {})
    assert err.status == 400 and err.message == text


def test_503_loading_names_the_estimate() -> None:
    err = error_from_response(503, fixture_json("huggingface", "error_503_loading.json"), {})
    assert (err.status, err.code, err.retry_after) == (503, "model_loading", 45.0)
    assert "Mistral-7B-Instruct-v0.2 is currently loading" in err.message and "45s" in err.message


@pytest.mark.parametrize(("status", "body", "expected"), [
    (401, {"error": "Invalid credentials in Authorization header"}, (403, "upstream_credential_rejected")),
    (403, {"error": "forbidden"}, (403, "upstream_credential_rejected")),
    (404, {"error": "Model x/y does not exist"}, (404, "model_not_found")),
    (424, {"error": "Request failed during generation", "error_type": "generation"}, (502, "generation")),
    (429, {"error": "Model is overloaded", "error_type": "overloaded"}, (429, "overloaded")),
    (500, {"error": ["a", "b"]}, (502, "upstream_error")),
    (503, {"error": "Service Unavailable"}, (503, "upstream_unavailable")),
])
def test_statuses_are_trusted(status: int, body: object, expected: tuple[int, str]) -> None:
    err = error_from_response(status, body, {})
    assert (err.status, err.code) == expected


def test_error_in_a_200_body_takes_the_status_of_its_error_type() -> None:
    assert error_in_body({"error": "x", "error_type": "validation"}, None).status == 400  # type: ignore[union-attr]
    assert error_in_body({"error": "x", "error_type": "overloaded"}, None).status == 429  # type: ignore[union-attr]
    with pytest.raises(ApiError):
        from_vendor_response({"error": "x", "error_type": "generation"}, MODEL)


def test_loading_delay_is_bounded_by_the_deadline() -> None:
    body = {"error": "Model m is currently loading", "estimated_time": 1.5}
    loading = error_from_response(503, body, {})
    assert loading_delay(loading, time.monotonic() + 10) == 1.5
    assert loading_delay(error_from_response(503, {"error": "loading", "estimated_time": 0}, {}),
                         time.monotonic() + 10) == 0.2
    assert loading_delay(loading, time.monotonic() + 1.0) is None  # past the deadline: the error is the answer
    assert loading.status == 503 and loading.retry_after == 1.5
    assert loading_delay(error_from_response(503, {"error": "Service Unavailable"}, {}), time.monotonic() + 10) is None
    assert loading_delay(error_from_response(500, body, {}), time.monotonic() + 10) is None


# -- embeddings, speech ------------------------------------------------------------------------------------


def test_1d_embedding() -> None:
    vector = fixture_json("huggingface", "embeddings_feature_extraction_1d.json")
    assert len(vector) == 384  # all-MiniLM-L6-v2: one pooled sentence vector
    vectors, tokens = pool(vector, 1)
    assert vectors == [vector] and tokens is None


def test_the_mean_pooling_rule() -> None:
    a, b = [1.0, 2.0], [3.0, 6.0]
    assert pool([a, b], 2) == ([a, b], None)                            # 2-D, one row per input
    assert pool([a, b], 1) == ([[2.0, 4.0]], 2)                         # 2-D for one text: tokens
    assert pool([[a, b], [b]], 2) == ([[2.0, 4.0], b], 3)               # [input][token][dim]
    assert pool([[[a, b]], [[a]]], 2) == ([[2.0, 4.0], a], 3)           # [input][1][token][dim]
    for body, count in (([a, b, a], 2), ([[a, [1.0]]], 1), ([], 1), ({"unexpected": "x"}, 1)):
        with pytest.raises(ApiError) as caught:
            pool(body, count)
        assert caught.value.status == 502
    with pytest.raises(ApiError) as caught:  # an error where the vectors belong
        pool({"error": "Input validation error: too long", "error_type": "validation"}, 1)
    assert caught.value.status == 400 and "too long" in caught.value.message


def test_base64_embeddings_are_little_endian_float32() -> None:
    (item,) = embedding_items([[0.5, -1.25]], "base64")
    assert struct.unpack("<2f", base64.b64decode(item["embedding"])) == (0.5, -1.25)
    assert embedding_items([[0.5]], "float") == [{"object": "embedding", "index": 0, "embedding": [0.5]}]


def test_asr_answer_in_each_format() -> None:
    body = fixture_json("huggingface", "asr_response.json")
    assert orjson.loads(from_asr(body, "json").content) == {"text": "THE TRAIN TO LEEDS LEAVES FROM PLATFORM NINE"}
    assert from_asr(body, "text").content == b"THE TRAIN TO LEEDS LEAVES FROM PLATFORM NINE\n"
    for fmt in ("srt", "vtt", "verbose_json"):
        with pytest.raises(ApiError) as caught:
            from_asr(body, fmt)
        assert caught.value.status == 400 and caught.value.param == "response_format"


def test_timestamped_asr_answer() -> None:
    body = {"text": "hello there friend", "chunks": [{"text": " hello there", "timestamp": [0.0, 1.5]},
                                                     {"text": " friend", "timestamp": [1.5, None]}]}
    assert from_asr(body, "srt").content.decode() == (
        "1\n00:00:00,000 --> 00:00:01,500\nhello there\n\n2\n00:00:01,500 --> 00:00:01,500\nfriend\n")
    assert from_asr(body, "vtt").content.decode().startswith("WEBVTT\n\n00:00:00.000 --> 00:00:01.500\nhello there\n")
    verbose = orjson.loads(from_asr(body, "verbose_json", "en").content)
    assert verbose["language"] == "en" and [s["text"] for s in verbose["segments"]] == [" hello there", " friend"]
    assert render_transcription("x", None, "json", "p").media_type == "application/json"


# -- ids and URLs -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("model", ["gpt2", "org/name", "HuggingFaceH4/zephyr-7b-beta", "a.b/c_d-1"])
def test_model_ids_accepted(model: str) -> None:
    HuggingFaceTranslator().check_model(model)


@pytest.mark.parametrize("model", ["a/b/c", "../x", "a/../b", "%2e%2e", "org/", "/x", "a b", "a?b"])
def test_model_ids_refused(model: str) -> None:
    with pytest.raises(ApiError) as caught:
        HuggingFaceTranslator().check_model(model)
    assert caught.value.status == 400


@pytest.mark.parametrize("url", ["ftp://x", "https://user:pw@x.cloud", "https://x.cloud/?token=1", "not a url",
                                 "https://x.cloud/#f"])
def test_bad_endpoint_urls_are_refused(url: str) -> None:
    with pytest.raises(ApiError) as caught:
        endpoint_root(url)
    assert caught.value.param == "endpoint_url" and url not in caught.value.message
    assert endpoint_root("https://e.us-east-1.aws.endpoints.huggingface.cloud/") == \
        "https://e.us-east-1.aws.endpoints.huggingface.cloud"


def test_generation_parameters_directly() -> None:
    assert generation_parameters(None, None, None, None, {"repetition_penalty": 1.1}) == {
        "return_full_text": False, "details": True, "do_sample": True, "repetition_penalty": 1.1}
