"""End-to-end: every OpenAI endpoint through a real `modelport serve`, driven by the
official openai SDK (and raw httpx where the SDK hides the wire), checked against what
the fake OpenAI received upstream and against OpenAI's response schemas (ours in
tests/fixtures/openai-schemas/, and OpenAI's published ones too where ../shared is present)."""

from __future__ import annotations

import base64
import io
import json
import struct
import wave
from typing import Any

import pytest

from tests.e2e.harness import ACME_KEY, GatewayProcess
from emulators._openai_payloads import embedding_vector
from tests.fakes.fixtures import FakeOpenAI
from tests.fixture_data import check_schema

REPLY = "Hello from the fake!"
TRANSCRIPT = "The quick brown fox."
USER = [{"role": "user", "content": "say hello to me"}]  # 4 words: the fake's prompt_tokens


def wav_bytes(seconds: float = 0.5, rate: int = 8000) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(b"\x00\x01" * int(seconds * rate))
    return buf.getvalue()


# -- chat completions ---------------------------------------------------------------------


@pytest.mark.parametrize(("requested", "upstream"), [
    ("default", "gpt-4o-mini"),
    ("gpt-4o-mini", "gpt-4o-mini"),
    ("openai/gpt-4o", "gpt-4o"),
])
def test_chat_resolves_model_and_answers(gw: GatewayProcess, fake_openai: FakeOpenAI,
                                         requested: str, upstream: str) -> None:
    raw = gw.client().chat.completions.with_raw_response.create(model=requested, messages=USER)
    check_schema("chat_completion_response.json", raw.http_response.json())
    reply = raw.parse()
    assert reply.choices[0].message.content == REPLY
    assert reply.choices[0].finish_reason == "stop"
    assert reply.model == upstream
    assert reply.object == "chat.completion"
    assert reply.usage is not None
    assert (reply.usage.prompt_tokens, reply.usage.completion_tokens, reply.usage.total_tokens) == (4, 4, 8)
    assert raw.http_response.headers["x-request-id"].startswith("req_")
    sent = fake_openai.state.requests_to("/v1/chat/completions")
    assert len(sent) == 1
    assert sent[0].json["model"] == upstream


def test_chat_body_reaches_upstream_untouched(gw: GatewayProcess, fake_openai: FakeOpenAI) -> None:
    tools = [{"type": "function", "function": {
        "name": "get_weather", "description": "Weather of a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]
    response_format = {"type": "json_schema", "json_schema": {
        "name": "answer", "schema": {"type": "object", "properties": {"a": {"type": "integer"}}}}}
    gw.client().chat.completions.create(
        model="default", messages=USER, seed=42, response_format=response_format, tools=tools,
        tool_choice="none", temperature=0.3, max_tokens=50, metadata={"k": "v"},
        extra_body={"x_vendor_knob": {"nested": [1, 2.5, None]}})
    sent = fake_openai.state.last_request
    assert sent.path == "/v1/chat/completions"
    body = sent.json
    assert body["model"] == "gpt-4o-mini"  # re-encoded with the upstream model name
    assert body["messages"] == USER
    assert body["seed"] == 42
    assert body["response_format"] == response_format
    assert body["tools"] == tools
    assert body["tool_choice"] == "none"
    assert body["temperature"] == 0.3
    assert body["max_tokens"] == 50
    assert body["metadata"] == {"k": "v"}
    assert body["x_vendor_knob"] == {"nested": [1, 2.5, None]}
    assert "stream" not in body
    # The tenant's provider key goes upstream, never the caller's gateway token.
    assert sent.headers["authorization"] == f"Bearer {ACME_KEY}"
    assert gw.tokens["acme"] not in sent.body.decode()
    assert all(gw.tokens["acme"] not in v for v in sent.headers.values())


def test_chat_truncation_maps_finish_reason(gw: GatewayProcess) -> None:
    reply = gw.client().chat.completions.create(model="default", messages=USER, max_completion_tokens=2)
    assert reply.choices[0].message.content == "Hello from"
    assert reply.choices[0].finish_reason == "length"
    assert reply.usage is not None and reply.usage.completion_tokens == 2


def test_chat_non_stream_tool_call(gw: GatewayProcess, fake_openai: FakeOpenAI) -> None:
    fake_openai.state.tool_call = ("get_weather", '{"city": "Paris"}')
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]
    raw = gw.client().chat.completions.with_raw_response.create(model="default", messages=USER, tools=tools)
    check_schema("chat_completion_response.json", raw.http_response.json())
    choice = raw.parse().choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.tool_calls is not None
    call = choice.message.tool_calls[0]
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Paris"}
    assert call.id.startswith("call_")


# -- legacy completions ---------------------------------------------------------------------


def test_completions_non_stream(gw: GatewayProcess, fake_openai: FakeOpenAI) -> None:
    raw = gw.client().completions.with_raw_response.create(model="gpt-3.5-turbo-instruct",
                                                           prompt="Say hi", max_tokens=3)
    check_schema("completion_response.json", raw.http_response.json())
    reply = raw.parse()
    assert reply.object == "text_completion"
    assert reply.model == "gpt-3.5-turbo-instruct"
    assert reply.choices[0].text == "Hello from the"
    assert reply.choices[0].finish_reason == "length"
    assert reply.usage is not None and (reply.usage.prompt_tokens, reply.usage.completion_tokens) == (2, 3)
    sent = fake_openai.state.last_request
    assert sent.path == "/v1/completions"
    assert sent.json == {"model": "gpt-3.5-turbo-instruct", "prompt": "Say hi", "max_tokens": 3}


def test_completions_default_model_and_prompt_list(gw: GatewayProcess, fake_openai: FakeOpenAI) -> None:
    reply = gw.client().completions.create(model="default", prompt=["one", "two three"], max_tokens=20)
    assert reply.model == "gpt-4o-mini"
    assert [c.text for c in reply.choices] == [REPLY, REPLY]
    assert [c.index for c in reply.choices] == [0, 1]
    assert fake_openai.state.last_request.json["prompt"] == ["one", "two three"]


# -- embeddings ------------------------------------------------------------------------------


def test_embeddings_float(gw: GatewayProcess, fake_openai: FakeOpenAI) -> None:
    raw = gw.client().embeddings.with_raw_response.create(model="default", input="hello world",
                                                          encoding_format="float")
    check_schema("embedding_response.json", raw.http_response.json())
    result = raw.parse()
    assert result.model == "text-embedding-3-small"
    assert len(result.data) == 1
    assert result.data[0].embedding == embedding_vector("hello world", 8)
    assert (result.usage.prompt_tokens, result.usage.total_tokens) == (2, 2)
    sent = fake_openai.state.last_request
    assert sent.path == "/v1/embeddings"
    assert sent.json == {"model": "text-embedding-3-small", "input": "hello world", "encoding_format": "float"}


def test_embeddings_sdk_default_base64_decodes_to_the_same_floats(gw: GatewayProcess,
                                                                 fake_openai: FakeOpenAI) -> None:
    client = gw.client()
    as_float = client.embeddings.create(model="default", input="hello world", encoding_format="float")
    as_default = client.embeddings.create(model="default", input="hello world")  # SDK asks for base64
    assert fake_openai.state.last_request.json["encoding_format"] == "base64"
    assert [float(x) for x in as_default.data[0].embedding] == as_float.data[0].embedding
    # On the wire: a base64 string of little-endian float32.
    with gw.http() as http:
        body = http.post("/v1/embeddings", json={"model": "default", "input": "hello world",
                                                 "encoding_format": "base64"}).json()
    packed = base64.b64decode(body["data"][0]["embedding"])
    assert list(struct.unpack(f"<{len(packed) // 4}f", packed)) == embedding_vector("hello world", 8)


@pytest.mark.parametrize("given", [
    ["first text", "second"],
    [1, 2, 3],
    [[1, 2], [3, 4, 5]],
], ids=["strings", "token-array", "token-arrays"])
def test_embeddings_input_shapes(gw: GatewayProcess, fake_openai: FakeOpenAI, given: list[Any]) -> None:
    result = gw.client().embeddings.create(model="text-embedding-3-small", input=given, encoding_format="float")
    items = [given] if isinstance(given[0], int) else given
    assert [d.index for d in result.data] == list(range(len(items)))
    assert [d.embedding for d in result.data] == [embedding_vector(item, 8) for item in items]
    assert fake_openai.state.last_request.json["input"] == given


def test_embeddings_dimensions_passed_upstream(gw: GatewayProcess, fake_openai: FakeOpenAI) -> None:
    result = gw.client().embeddings.create(model="openai/text-embedding-3-large", input="x", dimensions=4,
                                           encoding_format="float")
    assert fake_openai.state.last_request.json["dimensions"] == 4
    assert result.model == "text-embedding-3-large"
    assert result.data[0].embedding == embedding_vector("x", 4)


# -- transcriptions ----------------------------------------------------------------------------


def test_transcription_json(gw: GatewayProcess, fake_openai: FakeOpenAI) -> None:
    audio = wav_bytes()
    result = gw.client().audio.transcriptions.create(model="default", file=("hello.wav", audio, "audio/wav"))
    assert result.text == TRANSCRIPT
    sent = fake_openai.state.last_request
    assert sent.path == "/v1/audio/transcriptions"
    assert sent.headers["authorization"] == f"Bearer {ACME_KEY}"
    assert sent.form is not None and sent.form["model"] == "whisper-1"
    upload = sent.files["file"]
    assert (upload.filename, upload.content_type, upload.data) == ("hello.wav", "audio/wav", audio)
    with gw.http() as http:
        resp = http.post("/v1/audio/transcriptions", data={"model": "default"},
                         files={"file": ("hello.wav", audio, "audio/wav")})
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("application/json")
    check_schema("transcription_response_json.json", resp.json())
    assert resp.json()["usage"] == {"type": "duration", "seconds": 1}


def test_transcription_text_is_plain_text(gw: GatewayProcess) -> None:
    with gw.http() as http:
        resp = http.post("/v1/audio/transcriptions", data={"model": "whisper-1", "response_format": "text"},
                         files={"file": ("a.wav", wav_bytes(), "audio/wav")})
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/plain")
    assert resp.text == TRANSCRIPT + "\n"
    text = gw.client().audio.transcriptions.create(model="default", file=("a.wav", wav_bytes(), "audio/wav"),
                                                   response_format="text")
    assert str(text).strip() == TRANSCRIPT


@pytest.mark.parametrize(("fmt", "expected"), [
    ("srt", f"1\n00:00:00,000 --> 00:00:00,500\n{TRANSCRIPT}\n\n"),
    ("vtt", f"WEBVTT\n\n00:00:00.000 --> 00:00:00.500\n{TRANSCRIPT}\n\n"),
])
def test_transcription_subtitles(gw: GatewayProcess, fmt: str, expected: str) -> None:
    with gw.http() as http:
        resp = http.post("/v1/audio/transcriptions", data={"model": "default", "response_format": fmt},
                         files={"file": ("a.wav", wav_bytes(0.5), "audio/wav")})
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/plain")
    assert resp.text == expected


def test_transcription_verbose_json_fields_reach_upstream(gw: GatewayProcess, fake_openai: FakeOpenAI) -> None:
    result = gw.client().audio.transcriptions.create(
        model="default", file=("a.wav", wav_bytes(1.0), "audio/wav"), response_format="verbose_json",
        language="de", prompt="Foxes and dogs.", temperature=0.2, timestamp_granularities=["word", "segment"])
    form = fake_openai.state.last_request.form
    assert form is not None
    assert form["model"] == "whisper-1"
    assert form["response_format"] == "verbose_json"
    assert form["language"] == "de"
    assert form["prompt"] == "Foxes and dogs."
    assert float(form["temperature"]) == 0.2  # type: ignore[arg-type]
    assert form["timestamp_granularities[]"] == ["word", "segment"]
    assert result.text == TRANSCRIPT
    assert result.language == "german"
    assert result.duration == pytest.approx(1.0)
    assert result.words is not None and [w.word for w in result.words] == ["The", "quick", "brown", "fox"]
    assert result.segments is not None and result.segments[0].text.strip() == TRANSCRIPT


# -- models and health ------------------------------------------------------------------------


def test_models_list(gw: GatewayProcess) -> None:
    client = gw.client()
    raw = client.models.with_raw_response.list()
    check_schema("list_models_response.json", raw.http_response.json())
    ids = [m.id for m in raw.parse()]
    assert "default" in ids
    assert {"gpt-4o-mini", "text-embedding-3-small", "whisper-1"} <= set(ids)
    assert len(ids) == len(set(ids))
    model = client.models.retrieve("gpt-4o-mini")
    assert (model.id, model.object, model.owned_by) == ("gpt-4o-mini", "model", "openai")
    # A tenant without defaults lists its models but no `default`.
    beta_ids = [m.id for m in gw.client(gw.tokens["beta"]).models.list()]
    assert "gpt-4o-mini" in beta_ids and "default" not in beta_ids


def test_healthz_needs_no_token(gw: GatewayProcess) -> None:
    import httpx

    resp = httpx.get(gw.base_url + "/healthz", timeout=5)
    assert resp.status_code == 200
    assert resp.json() == {"status": "ok"}
