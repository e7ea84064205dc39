"""The Spark translator's pure functions against spark.md and our fixtures: URL signing,
the model table, request frames (checked by the fake's own frame validation), frames ->
OpenAI answers and chunks, the HTTP API's answers, and the error-code mapping. No I/O;
the real recordings are an extra check where ../shared is present."""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Any
from urllib.parse import parse_qs, urlsplit

import orjson
import pytest

from keystore.models import Credential
from emulators.spark import PATH_DOMAINS, FakeSparkState, check_frame, check_handshake
from tests.unit._vendor_data import (
    check_schema,
    fixture,
    fixture_json,
    needs_shared,
    shared_json,
    shared_recording,
)
from translators import REGISTRY
from translators._sse import SSEDecoder, SSEEvent
from translators.errors import ApiError
from translators.spark import (
    MODELS,
    SparkState,
    SparkTranslator,
    error_from_frame,
    error_from_response,
    from_vendor_event,
    from_vendor_response,
    resolve_model,
    signed_url,
    to_http_request,
    to_vendor_request,
    with_app_id,
)
from translators.spark.http_codec import (
    SparkHTTPState,
    from_http_event,
    from_http_response,
)
from translators.types import ChatRequest, StreamChunk

USER = [{"role": "user", "content": "你好"}]
TOOL = {"type": "function", "function": {"name": "multiply", "description": "a*b", "parameters": {
    "type": "object", "properties": {"a": {"type": "number"}, "b": {"type": "number"}}, "required": ["a", "b"]}}}
# A known vector (spark.md has none of its own; this one was computed with openssl), and every step of §A2
# re-derived below from the text of the spec rather than from the module's code.
DATE = "Mon, 02 Dec 2024 08:00:00 GMT"
KEY, SECRET = "fake-api-key-0001", "fake-api-secret-0001"
KNOWN_SIGNATURE = "YX8/T6it0BXL3xorj01ZlYh9V9pvoODnt4Xpyq1j2WA="  # computed with `openssl dgst -sha256 -hmac`


def ours(name: str) -> Any:
    """Our own fixture `name` (tests/fixtures/spark/), parsed."""
    return fixture_json("spark", name)


def request(**body: Any) -> ChatRequest:
    body.setdefault("model", "spark-max")
    body.setdefault("messages", USER)
    return ChatRequest.parse(body)


def event(body: Any) -> SSEEvent:
    """A websocket frame as the stream driver hands it to the codec."""
    return SSEEvent(data=orjson.dumps(body))


def frame_for(req: ChatRequest, model: str, app_id: str = "") -> dict[str, Any]:
    return with_app_id(to_vendor_request(req, model), app_id)


def chunks_of(frames: list[Any], model: str = "spark-max") -> list[dict[str, Any]]:
    state = SparkState(model)
    out: list[StreamChunk] = []
    for frame in frames:
        out += from_vendor_event(event(frame), state)
    assert state.finished
    return [orjson.loads(c.data) for c in out]


# -- signing ---------------------------------------------------------------------------------------


def test_signed_url_follows_the_spec_step_by_step() -> None:
    url = signed_url("wss://spark-api.xf-yun.com", "/v3.5/chat", KEY, SECRET, DATE)
    parts = urlsplit(url)
    assert (parts.scheme, parts.netloc, parts.path) == ("wss", "spark-api.xf-yun.com", "/v3.5/chat")
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    assert query["date"] == DATE and query["host"] == "spark-api.xf-yun.com"
    origin = "host: spark-api.xf-yun.com\ndate: Mon, 02 Dec 2024 08:00:00 GMT\nGET /v3.5/chat HTTP/1.1"
    signature = base64.b64encode(hmac.new(SECRET.encode(), origin.encode(), hashlib.sha256).digest()).decode()
    assert signature == KNOWN_SIGNATURE
    assert base64.b64decode(query["authorization"]).decode() == (
        f'api_key="{KEY}", algorithm="hmac-sha256", headers="host date request-line", signature="{signature}"')
    assert "date=Mon%2C+02+Dec+2024+08%3A00%3A00+GMT" in parts.query  # spaces and commas encoded


@pytest.mark.parametrize(("base", "host", "path"), [
    ("ws://127.0.0.1:8123", "127.0.0.1:8123", "/v1.1/chat"),
    ("wss://spark-api.xf-yun.com:443", "spark-api.xf-yun.com", "/v1.1/chat"),
    ("wss://proxy.example.com/spark/", "proxy.example.com", "/spark/v1.1/chat"),
])
def test_signed_host_and_request_line_match_the_connection(base: str, host: str, path: str) -> None:
    url = signed_url(base, "/v1.1/chat", KEY, SECRET, DATE)
    query = {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
    assert query["host"] == host and urlsplit(url).path == path
    origin = f"host: {host}\ndate: {DATE}\nGET {path} HTTP/1.1"
    expected = base64.b64encode(hmac.new(SECRET.encode(), origin.encode(), hashlib.sha256).digest()).decode()
    assert f'signature="{expected}"' in base64.b64decode(query["authorization"]).decode()


def test_the_fake_accepts_a_fresh_signature_and_refuses_tampering() -> None:
    from email.utils import formatdate
    state = FakeSparkState(credentials={KEY: (SECRET, "app")})
    date = formatdate(usegmt=True)
    query = {k: v[0] for k, v in parse_qs(urlsplit(signed_url("ws://127.0.0.1:9", "/v3.5/chat", KEY, SECRET,
                                                                    date)).query).items()}
    assert check_handshake(state, query, "127.0.0.1:9", "/v3.5/chat") is None
    assert check_handshake(state, query, "127.0.0.1:9", "/v4.0/chat") == (403, "HMAC signature does not match")
    assert check_handshake(state, query, "127.0.0.1:10", "/v3.5/chat")[0] == 403  # type: ignore[index]
    stale = {k: v[0] for k, v in parse_qs(urlsplit(signed_url("ws://127.0.0.1:9", "/v3.5/chat", KEY, SECRET,
                                                                    DATE)).query).items()}
    assert check_handshake(state, stale, "127.0.0.1:9", "/v3.5/chat")[0] == 401  # type: ignore[index]


# -- the model table ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["spark-lite", "spark-pro", "spark-max", "spark-4.0-ultra", "spark-pro-128k",
                                  "spark-max-32k", "lite", "generalv3", "generalv3.5", "4.0Ultra", "max-32k"])
def test_every_model_pairs_a_path_with_its_domain(name: str) -> None:
    model = resolve_model(name)
    assert model.domain in PATH_DOMAINS[model.path]  # the fake holds spark.md's §A1 table
    assert REGISTRY["spark"].serves(name, next(iter(SparkTranslator.model_types)))


def test_unknown_model_is_404_listing_the_known_names() -> None:
    with pytest.raises(ApiError) as caught:
        SparkTranslator().check_model("spark-5.0-mega")
    assert caught.value.status == 404 and caught.value.code == "model_not_found"
    assert all(name in caught.value.message for name in ("spark-lite", "spark-max", "spark-4.0-ultra", "4.0Ultra"))
    assert set(MODELS) >= {"spark-lite", "spark-pro", "spark-max", "spark-4.0-ultra"}


def test_credential_needs_the_websocket_triple_or_the_password() -> None:
    translator = SparkTranslator()
    translator.check_credential(Credential({"api_password": "x"}))
    translator.check_credential(Credential({"app_id": "a", "api_key": "k", "api_secret": "s"}))
    with pytest.raises(ApiError) as caught:
        translator.check_credential(Credential({"app_id": "a", "api_key": "k"}))
    assert caught.value.status == 400 and caught.value.param == "api_secret"


# -- requests ---------------------------------------------------------------------------------------


def test_request_frame_maps_fields_and_passes_the_fakes_checks() -> None:
    req = request(messages=[{"role": "system", "content": "Be brief."}, *USER], temperature=1.7, max_tokens=99999,
                  user="u" * 40, top_p=0.3, top_k=3, tools=[TOOL])
    frame = frame_for(req, "spark-max", "app-1")
    assert frame["header"] == {"app_id": "app-1", "uid": "u" * 32}
    assert frame["parameter"]["chat"] == {"domain": "generalv3.5", "temperature": 1.0, "max_tokens": 8192, "top_k": 3}
    assert frame["payload"]["message"]["text"] == [{"role": "system", "content": "Be brief."}, *USER]
    assert frame["payload"]["functions"]["text"] == [{"name": "multiply", "description": "a*b",
                                                      "parameters": TOOL["function"]["parameters"]}]
    state = FakeSparkState(credentials={KEY: (SECRET, "app-1")})
    assert check_frame(state, frame, "/v3.5/chat", KEY) is None
    assert frame_for(request(temperature=0), "spark-max")["parameter"]["chat"]["temperature"] == 0.01
    assert "functions" not in frame_for(request(tools=[TOOL], tool_choice="none"), "spark-max")["payload"]


def test_lite_gets_the_system_text_in_the_first_user_turn() -> None:
    frame = frame_for(request(messages=[{"role": "system", "content": "Be brief."}, *USER]), "spark-lite")
    assert frame["payload"]["message"]["text"] == [{"role": "user", "content": "Be brief.\n\n你好"}]
    assert frame["parameter"]["chat"]["domain"] == "lite"


def test_tool_history_becomes_text_turns_on_the_websocket() -> None:
    call = {"id": "call_1", "type": "function", "function": {"name": "multiply", "arguments": '{"a":2,"b":3}'}}
    req = request(tools=[TOOL], messages=[*USER, {"role": "assistant", "content": None, "tool_calls": [call]},
                                          {"role": "tool", "tool_call_id": "call_1", "content": "6"}])
    texts = frame_for(req, "spark-max", "app")["payload"]["message"]["text"]
    assert texts[1] == {"role": "assistant",
                        "content": '{"function_call":{"name":"multiply","arguments":"{\\"a\\":2,\\"b\\":3}"}}'}
    assert texts[2] == {"role": "user", "content": "6"}
    assert check_frame(FakeSparkState(credentials={KEY: (SECRET, "app")}),
                       frame_for(req, "spark-max", "app"), "/v3.5/chat", KEY) is None
    body = to_http_request(req, "spark-max")
    assert body["model"] == "generalv3.5" and body["messages"][1]["tool_calls"][0]["id"] == "call_1"
    assert body["messages"][2] == {"role": "tool", "content": "6", "tool_call_id": "call_1"}


@pytest.mark.parametrize(("body", "param"), [
    ({"n": 2}, "n"), ({"stop": ["x"]}, "stop"), ({"logprobs": True}, "logprobs"),
    ({"response_format": {"type": "json_object"}}, "response_format"), ({"tool_choice": "required", "tools": [TOOL]},
                                                                        "tool_choice"),
    ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://x/y.png"}}]}]},
     "messages[0].content[0].type"),
])
def test_what_spark_cannot_honour_is_a_400_naming_the_field(body: dict[str, Any], param: str) -> None:
    with pytest.raises(ApiError) as caught:
        to_vendor_request(request(**body), "spark-max")
    assert caught.value.status == 400 and caught.value.param == param


def test_tools_on_a_model_without_function_calling_are_refused() -> None:
    with pytest.raises(ApiError) as caught:
        to_vendor_request(request(tools=[TOOL]), "spark-lite")
    assert caught.value.param == "tools" and "lite" in caught.value.message


# -- answers from frames ----------------------------------------------------------------------------


def test_frames_as_completion_and_as_stream() -> None:
    frames = ours("chat_ws_frames.json")
    whole = from_vendor_response(frames, "spark-max")
    check_schema("chat_completion_response.json", whole)
    assert whole["id"] == "chatcmpl-cht000e21d4@dx193f7a2b9c4e81b770"
    assert whole["choices"][0]["message"]["content"] == "西湖的春天柳枝新绿，桃花沿着苏堤一路开到断桥边。"
    assert whole["choices"][0]["finish_reason"] == "stop"
    assert whole["usage"] == {"prompt_tokens": 8, "completion_tokens": 21, "total_tokens": 29}  # not question_tokens
    chunks = chunks_of(frames)
    for chunk in chunks:
        check_schema("chat_completion_chunk.json", chunk)
    assert {c["id"] for c in chunks} == {whole["id"]} and len({c["created"] for c in chunks}) == 1
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text == whole["choices"][0]["message"]["content"]
    assert [c["choices"][0]["delta"].get("role") for c in chunks if c["choices"]].count("assistant") == 1
    assert [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]][-1] == "stop"
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"] == whole["usage"]


def test_function_call_becomes_a_tool_call() -> None:
    frames = ours("chat_ws_frames_function_call.json")
    whole = from_vendor_response(frames, "spark-max")
    check_schema("chat_completion_response.json", whole)
    choice = whole["choices"][0]
    assert choice["finish_reason"] == "tool_calls" and choice["message"]["content"] is None
    [call] = choice["message"]["tool_calls"]
    assert call["id"].startswith("call_") and call["function"] == {"name": "multiply", "arguments": '{"a":6,"b":7}'}
    chunks = chunks_of(frames)
    [delta] = [c["choices"][0]["delta"]["tool_calls"] for c in chunks if c["choices"] and
               c["choices"][0]["delta"].get("tool_calls")]
    assert delta[0]["index"] == 0 and delta[0]["function"]["arguments"] == '{"a":6,"b":7}'
    assert chunks[-2]["choices"][0]["finish_reason"] == "tool_calls" and chunks[-1]["usage"]["prompt_tokens"] == 14


def test_text_in_the_last_frame_is_not_lost() -> None:
    frames = ours("chat_ws_frames.json")
    frames[-1]["payload"]["choices"]["text"][0]["content"] = "完"
    assert from_vendor_response(frames, "m")["choices"][0]["message"]["content"].endswith("断桥边。完")
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks_of(frames) if c["choices"]) \
        .endswith("断桥边。完")


def test_error_frame_before_any_delta_raises_the_mapped_error() -> None:
    frame = ours("error_ws_frame_10013.json")
    with pytest.raises(ApiError) as caught:
        from_vendor_event(event(frame), SparkState("spark-max"))
    assert (caught.value.status, caught.value.code) == (400, "content_filter")
    assert "input content audit failed" in caught.value.message
    with pytest.raises(ApiError):
        from_vendor_response([frame], "spark-max")


def test_output_moderation_mid_stream_finishes_as_content_filter() -> None:
    state = SparkState("spark-max")
    first = ours("chat_ws_frames.json")[0]
    assert from_vendor_event(event(first), state)
    cut = [orjson.loads(c.data) for c in from_vendor_event(
        event({"header": {"code": 10014, "message": "output audit failed", "sid": "x", "status": 2}}), state)]
    assert cut[0]["choices"][0]["finish_reason"] == "content_filter" and cut[-1]["choices"] == []
    other = SparkState("spark-max")
    from_vendor_event(event(first), other)
    with pytest.raises(ApiError) as caught:  # any other code mid-stream stays an error
        from_vendor_event(event({"header": {"code": 10110, "message": "busy", "sid": "x", "status": 2}}), other)
    assert caught.value.status == 503


def test_frames_ending_without_the_last_frame_are_incomplete() -> None:
    with pytest.raises(ApiError) as caught:
        from_vendor_response(ours("chat_ws_frames.json")[:-1], "spark-max")
    assert caught.value.status == 502 and caught.value.code == "upstream_incomplete_stream"


@pytest.mark.parametrize(("code", "status", "openai_code"), [
    (10003, 400, "10003"), (10005, 400, "10005"), (10013, 400, "content_filter"),
    (10907, 400, "context_length_exceeded"), (11200, 403, "upstream_credential_rejected"),
    (11201, 429, "11201"), (11202, 429, "11202"), (11203, 429, "11203"), (10110, 503, "10110"),
    (10012, 502, "10012"), (99999, 502, "99999"),
])
def test_frame_error_codes_map_by_meaning(code: int, status: int, openai_code: str) -> None:
    err = error_from_frame({"header": {"code": code, "message": "m", "sid": "s", "status": 2}})
    assert err is not None and (err.status, err.code) == (status, openai_code)
    assert error_from_frame({"header": {"code": 0, "message": "Success", "sid": "s", "status": 1}}) is None


def test_refused_handshake_maps_by_status() -> None:
    denied = error_from_response(403, {"message": "HMAC signature does not match"}, None)
    assert (denied.status, denied.code) == (403, "upstream_credential_rejected") and "spark" in denied.message
    assert error_from_response(401, None, None).code == "upstream_credential_rejected"
    assert error_from_response(429, None, {"retry-after": "3"}).retry_after == 3.0


# -- the HTTP API ---------------------------------------------------------------------------------


def test_http_answer_gets_the_missing_fields() -> None:
    whole = from_http_response(ours("http_chat_response.json"), "spark-lite")
    check_schema("chat_completion_response.json", whole)
    assert whole["id"] == "chatcmpl-cha000d7e40@dx193f80a1c35b86d990" and whole["object"] == "chat.completion"
    assert whole["model"] == "spark-lite" and whole["choices"][0]["finish_reason"] == "stop"
    assert whole["usage"] == {"prompt_tokens": 11, "completion_tokens": 37, "total_tokens": 48}


def http_stream(raw: bytes) -> list[StreamChunk]:
    decoder = SSEDecoder()
    events = [e for i in range(0, len(raw), 7) for e in decoder.feed(raw[i:i + 7])] + decoder.flush()
    state = SparkHTTPState("spark-lite")
    chunks: list[StreamChunk] = []
    for sse in events:
        chunks += from_http_event(sse, state)
        if state.finished:  # the DONE sentinel
            break
    return chunks


def test_http_stream_becomes_openai_chunks() -> None:
    chunks = http_stream(fixture("spark", "http_chat_stream.sse"))
    parsed = [orjson.loads(c.data) for c in chunks]
    for chunk in parsed:
        check_schema("chat_completion_chunk.json", chunk)
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in parsed if c["choices"]) == \
        "早上好！今天想聊点什么？"
    assert [c["choices"][0]["delta"].get("role") for c in parsed if c["choices"]].count("assistant") == 1
    assert parsed[-2]["choices"][0]["finish_reason"] == "stop"
    assert parsed[-1]["choices"] == [] and chunks[-1].usage is not None and chunks[-1].usage.total_tokens == 12
    assert sum(1 for c in chunks if c.usage is not None) == 1


def test_http_errors_in_the_status_and_in_a_200_body() -> None:
    refused = error_from_response(401, ours("http_error.json"), None)
    assert refused.code == "upstream_credential_rejected" and "invalid user" in refused.message
    with pytest.raises(ApiError) as caught:
        from_http_response({"code": 11202, "message": "qps limit", "sid": "cha1"}, "spark-lite")
    assert caught.value.status == 429
    with pytest.raises(ApiError) as caught:
        from_http_event(event({"code": 10013, "message": "audit failed", "sid": "cha1"}), SparkHTTPState("m"))
    assert (caught.value.status, caught.value.code) == (400, "content_filter")


def test_a_failed_upgrade_without_an_error_status_is_502() -> None:
    for status in (101, 200, 302):
        err = error_from_response(status, None, None)
        assert err.status == 502 and err.type == "server_error"


# -- conformance with the team's real recordings (only where ../shared is present) ---------------


@needs_shared
def test_the_real_recordings_translate_the_same_way() -> None:
    frames = shared_json("spark", "chat_ws_frames.json")
    whole = from_vendor_response(frames, "spark-max")
    check_schema("chat_completion_response.json", whole)
    chunks = chunks_of(frames)
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"]) == \
        whole["choices"][0]["message"]["content"] != ""
    assert chunks[-1]["usage"] == whole["usage"] and whole["usage"]["total_tokens"] > 0
    [call] = from_vendor_response(shared_json("spark", "chat_ws_frames_function_call.json"),
                                  "spark-max")["choices"][0]["message"]["tool_calls"]
    assert call["function"]["name"] == "multiply"
    with pytest.raises(ApiError) as caught:
        from_vendor_response([shared_json("spark", "error_ws_frame_10013.json")], "spark-max")
    assert caught.value.code == "content_filter"
    answer = from_http_response(shared_json("spark", "http_chat_response.json"), "spark-lite")
    check_schema("chat_completion_response.json", answer)
    streamed = [orjson.loads(c.data) for c in http_stream(shared_recording("spark", "http_chat_stream.sse"))]
    assert streamed[-2]["choices"][0]["finish_reason"] == "stop" and streamed[-1]["usage"]["total_tokens"] > 0
    assert error_from_response(401, shared_json("spark", "http_error.json"), None).code == \
        "upstream_credential_rejected"
