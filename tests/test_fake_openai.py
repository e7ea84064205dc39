"""The fake OpenAI vendor is faithful: the official SDK and OpenAI's schemas accept it, and its
bodies have the shapes of our fixtures (tests/fixtures/openai/) and, where ../shared is present,
of the real recordings."""

from __future__ import annotations

import io
import json
import math
import struct
import wave
from collections.abc import Callable
from typing import Any

import httpx
import openai
import pytest

from tests.fakes.fixtures import FakeOpenAI
from emulators.openai import DEFAULT_API_KEY, FakeOpenAIState, create_app, mask_key
from emulators.server import ServedApp, free_port
from tests.fixture_data import check_schema, fixture, needs_shared, shared_recording

AUTH = {"Authorization": f"Bearer {DEFAULT_API_KEY}"}
USER = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Say hello to me"}]
WEATHER_TOOL = {"type": "function", "function": {
    "name": "get_weather", "description": "Weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                   "required": ["city"]}}}
RECORDED_ARGUMENTS = '{"city":"Buenos Aires"}'  # the arguments of chat_stream_tool_calls_with_usage.sse

# What the fake is compared with: our fixture always, the real recording where ../shared is.
Reference = Callable[[str], bytes]
REFERENCES = [pytest.param(lambda name: fixture("openai", name), id="fixture"),
              pytest.param(lambda name: shared_recording("openai", name), id="recording", marks=needs_shared)]


validate = check_schema


def sse_events(raw: bytes) -> list[str]:
    """Split an SSE body into `data:` payloads, checking OpenAI's exact framing."""
    assert raw.endswith(b"\n\n")
    blocks = raw.decode().split("\n\n")
    assert blocks[-1] == ""
    payloads = []
    for block in blocks[:-1]:
        assert block.startswith("data: ") and "\n" not in block, block
        payloads.append(block[len("data: "):])
    return payloads


def post(fake: FakeOpenAI, path: str, body: Any, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.post(fake.v1_url + path, json=body, headers=AUTH if headers is None else headers,
                      timeout=5)


def make_wav(seconds: float = 0.5, rate: int = 8000) -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        frames = int(seconds * rate)
        wav.writeframes(b"".join(
            struct.pack("<h", int(8000 * math.sin(2 * math.pi * 440 * i / rate)))
            for i in range(frames)))
    return buffer.getvalue()


# -- chat -------------------------------------------------------------------------------


def test_chat_completion_via_sdk(fake_openai: FakeOpenAI) -> None:
    client = fake_openai.client(organization="org-fake-123")
    completion = client.chat.completions.create(model="gpt-4o-mini", messages=USER,
                                                temperature=0.2)
    assert completion.object == "chat.completion"
    assert completion.model == "gpt-4o-mini"
    assert completion.choices[0].message.role == "assistant"
    assert completion.choices[0].message.content == "Hello from the fake!"
    assert completion.choices[0].finish_reason == "stop"
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens,
            completion.usage.total_tokens) == (6, 4, 10)
    sent = fake_openai.state.last_request
    assert (sent.method, sent.path) == ("POST", "/v1/chat/completions")
    assert sent.json == {"model": "gpt-4o-mini", "messages": USER, "temperature": 0.2}
    assert sent.headers["authorization"] == f"Bearer {DEFAULT_API_KEY}"
    assert fake_openai.state.organizations == ["org-fake-123"]


@pytest.mark.parametrize("reference", REFERENCES)
def test_chat_response_matches_schema_and_recording(fake_openai: FakeOpenAI, reference: Reference) -> None:
    response = post(fake_openai, "/chat/completions", {"model": "gpt-4o", "messages": USER})
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.headers["x-request-id"].startswith("req_")
    body = response.json()
    validate("chat_completion_response.json", body)
    recorded = json.loads(reference("chat_response.json"))
    assert set(recorded) <= set(body)
    assert set(recorded["choices"][0]["message"]) == set(body["choices"][0]["message"])
    assert set(recorded["usage"]) == set(body["usage"])


def test_chat_stream_with_usage_via_sdk(fake_openai: FakeOpenAI) -> None:
    fake_openai.state.reply_text = "One two  three, four!"
    client = fake_openai.client()
    chunks = list(client.chat.completions.create(
        model="gpt-4o", messages=USER, stream=True, stream_options={"include_usage": True}))
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[0].choices[0].delta.content == ""
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "One two  three, four!"
    assert [c.choices[0].finish_reason for c in chunks[:-1]][-1] == "stop"
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 4
    assert chunks[-1].usage.prompt_tokens == 6
    assert all(c.usage is None for c in chunks[:-1])
    assert len({c.id for c in chunks}) == 1
    state = fake_openai.state
    assert state.wait_for(lambda s: s.streams_finished == 1)
    assert (state.streams_started, state.streams_aborted, state.streams_errored) == (1, 0, 0)


def test_chat_stream_framing_and_schema(fake_openai: FakeOpenAI) -> None:
    body = {"model": "gpt-4o", "messages": USER, "stream": True}
    response = post(fake_openai, "/chat/completions", body)
    assert response.headers["content-type"].startswith("text/event-stream")
    payloads = sse_events(response.content)
    assert payloads[-1] == "[DONE]"
    chunks = [json.loads(p) for p in payloads[:-1]]
    for chunk in chunks:
        validate("chat_completion_chunk.json", chunk)
        assert "usage" not in chunk  # no include_usage: no usage anywhere
    assert chunks[-1]["choices"][0] == {"index": 0, "delta": {}, "logprobs": None,
                                        "finish_reason": "stop"}
    joined = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)
    non_stream = post(fake_openai, "/chat/completions", {"model": "gpt-4o", "messages": USER})
    assert joined == non_stream.json()["choices"][0]["message"]["content"]


def test_max_tokens_truncates_with_length(fake_openai: FakeOpenAI) -> None:
    client = fake_openai.client()
    completion = client.chat.completions.create(model="gpt-4o", messages=USER,
                                                max_completion_tokens=2, max_tokens=3)
    assert completion.choices[0].message.content == "Hello from"
    assert completion.choices[0].finish_reason == "length"
    assert completion.usage.completion_tokens == 2
    chunks = list(client.chat.completions.create(model="gpt-4o", messages=USER, max_tokens=3,
                                                 stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "Hello from the"
    assert chunks[-1].choices[0].finish_reason == "length"


def test_tool_call_non_stream(fake_openai: FakeOpenAI) -> None:
    fake_openai.state.tool_call = ("get_weather", RECORDED_ARGUMENTS)
    response = post(fake_openai, "/chat/completions",
                    {"model": "gpt-4o", "messages": USER, "tools": [WEATHER_TOOL]})
    body = response.json()
    validate("chat_completion_response.json", body)
    choice = body["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] is None
    call = choice["message"]["tool_calls"][0]
    assert call["type"] == "function" and call["id"].startswith("call_")
    assert call["function"] == {"name": "get_weather", "arguments": RECORDED_ARGUMENTS}
    # Without tools (or with tool_choice "none") the model answers in text.
    for extra in ({}, {"tools": [WEATHER_TOOL], "tool_choice": "none"}):
        plain = post(fake_openai, "/chat/completions", {"model": "gpt-4o", "messages": USER, **extra})
        assert plain.json()["choices"][0]["message"]["content"] == "Hello from the fake!"


def test_tool_call_stream_reassembles_via_sdk(fake_openai: FakeOpenAI) -> None:
    fake_openai.state.tool_call = ("get_weather", RECORDED_ARGUMENTS)
    client = fake_openai.client()
    with client.chat.completions.stream(model="gpt-4o", messages=USER,
                                        tools=[WEATHER_TOOL]) as stream:
        final = stream.get_final_completion()
    call = final.choices[0].message.tool_calls[0]
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Buenos Aires"}
    assert final.choices[0].finish_reason == "tool_calls"


@pytest.mark.parametrize("reference", REFERENCES)
def test_tool_call_stream_matches_recording(fake_openai: FakeOpenAI, reference: Reference) -> None:
    recorded_raw = reference("chat_stream_tool_calls_with_usage.sse")
    recorded = [json.loads(p) for p in sse_events(recorded_raw)[:-1]]
    arguments = "".join(c["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"] for c in recorded[:-2])
    fake_openai.state.tool_call = ("get_weather", arguments)
    body = {"model": "gpt-4o", "messages": USER, "tools": [WEATHER_TOOL], "stream": True,
            "stream_options": {"include_usage": True}}
    ours = [json.loads(p) for p in sse_events(post(fake_openai, "/chat/completions", body).content)[:-1]]
    for chunk in ours:
        validate("chat_completion_chunk.json", chunk)
    assert [set(c) for c in ours] == [set(c) for c in recorded]
    assert [c["choices"][0]["delta"] for c in ours[1:-2]] == \
        [c["choices"][0]["delta"] for c in recorded[1:-2]]
    first, recorded_first = ours[0]["choices"][0]["delta"], recorded[0]["choices"][0]["delta"]
    assert first["tool_calls"][0]["function"] == {"name": "get_weather", "arguments": ""}
    assert set(first) == set(recorded_first)
    assert set(first["tool_calls"][0]) == set(recorded_first["tool_calls"][0])
    assert ours[-1]["choices"] == [] and ours[-1]["usage"]["completion_tokens"] == len(recorded) - 3


# -- legacy completions -----------------------------------------------------------------


def test_completions_via_sdk_and_schema(fake_openai: FakeOpenAI) -> None:
    client = fake_openai.client()
    completion = client.completions.create(model="gpt-3.5-turbo-instruct",
                                           prompt="Say this is a test")
    assert completion.object == "text_completion"
    assert completion.choices[0].text == "Hello from the fake!"
    assert completion.usage.prompt_tokens == 5 and completion.usage.completion_tokens == 4
    several = client.completions.create(model="gpt-3.5-turbo-instruct", prompt=["a b", "c d e"],
                                        max_tokens=1, echo=True)
    assert [(c.index, c.text, c.finish_reason) for c in several.choices] == \
        [(0, "a bHello", "length"), (1, "c d eHello", "length")]
    assert several.usage.prompt_tokens == 5
    tokens = client.completions.create(model="gpt-3.5-turbo-instruct", prompt=[[1, 2, 3], [4]])
    assert len(tokens.choices) == 2 and tokens.usage.prompt_tokens == 4
    mixed = post(fake_openai, "/completions", {"model": "m", "prompt": ["a", [1]]})
    assert mixed.status_code == 400 and mixed.json()["error"]["param"] == "prompt"
    raw = post(fake_openai, "/completions", {"model": "gpt-3.5-turbo-instruct", "prompt": "x"})
    validate("completion_response.json", raw.json())


def test_completions_stream_via_sdk(fake_openai: FakeOpenAI) -> None:
    chunks = list(fake_openai.client().completions.create(
        model="gpt-3.5-turbo-instruct", prompt="Hi", stream=True,
        stream_options={"include_usage": True}))
    assert all(c.object == "text_completion" for c in chunks)
    assert "".join(c.choices[0].text for c in chunks if c.choices) == "Hello from the fake!"
    assert chunks[-2].choices[0].finish_reason == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage.total_tokens == 5


# -- embeddings -------------------------------------------------------------------------


def test_embeddings_float_and_sdk_default_base64(fake_openai: FakeOpenAI) -> None:
    client = fake_openai.client()
    inputs = ["first text", "second"]
    floats = client.embeddings.create(model="text-embedding-3-small", input=inputs,
                                      encoding_format="float")
    assert fake_openai.state.last_request.json["encoding_format"] == "float"
    default = client.embeddings.create(model="text-embedding-3-small", input=inputs)
    assert fake_openai.state.last_request.json["encoding_format"] == "base64"  # SDK's choice
    assert [d.embedding for d in default.data] == [d.embedding for d in floats.data]
    first, second = (d.embedding for d in floats.data)
    assert len(first) == 8 and first != second
    assert math.isclose(sum(x * x for x in first), 1.0, rel_tol=1e-5)
    assert floats.usage.prompt_tokens == 3 and floats.model == "text-embedding-3-small"
    raw = post(fake_openai, "/embeddings", {"model": "text-embedding-3-small", "input": "x",
                                            "encoding_format": "base64"}).json()
    assert isinstance(raw["data"][0]["embedding"], str)


def test_embeddings_inputs_dimensions_and_schema(fake_openai: FakeOpenAI) -> None:
    client = fake_openai.client()
    tokens = client.embeddings.create(model="text-embedding-3-small", input=[[1, 2], [3]],
                                      dimensions=16, encoding_format="float")
    assert [len(d.embedding) for d in tokens.data] == [16, 16]
    assert tokens.usage.prompt_tokens == 3
    one = client.embeddings.create(model="text-embedding-3-small", input=[5, 6, 7],
                                   encoding_format="float")
    assert len(one.data) == 1 and one.usage.prompt_tokens == 3
    again = client.embeddings.create(model="text-embedding-3-small", input=[5, 6, 7],
                                     encoding_format="float")
    assert again.data[0].embedding == one.data[0].embedding  # deterministic
    body = post(fake_openai, "/embeddings", {"model": "text-embedding-3-small",
                                             "input": ["a", "b"]}).json()
    validate("embedding_response.json", body)
    with pytest.raises(openai.BadRequestError) as excinfo:
        client.embeddings.create(model="text-embedding-ada-002", input="x", dimensions=4)
    assert excinfo.value.body["param"] == "dimensions"


# -- transcriptions ---------------------------------------------------------------------


def test_transcription_json_and_text_via_sdk(fake_openai: FakeOpenAI) -> None:
    client = fake_openai.client()
    audio = make_wav()
    result = client.audio.transcriptions.create(
        model="whisper-1", file=("clip.wav", audio, "audio/wav"), language="en",
        prompt="A fox", temperature=0.3)
    assert result.text == "The quick brown fox."
    sent = fake_openai.state.last_request
    assert sent.files["file"].size == len(audio)
    assert sent.files["file"].content_type == "audio/wav"
    assert sent.files["file"].filename == "clip.wav"
    assert sent.form == {"model": "whisper-1", "language": "en", "prompt": "A fox",
                         "temperature": "0.3"}
    fake_openai.state.transcript = "Hello there."
    text = client.audio.transcriptions.create(model="whisper-1", file=("clip.wav", audio),
                                              response_format="text")
    assert text == "Hello there.\n"
    raw = httpx.post(fake_openai.v1_url + "/audio/transcriptions", headers=AUTH,
                     files={"file": ("clip.wav", audio)},
                     data={"model": "whisper-1", "response_format": "text"})
    assert raw.headers["content-type"] == "text/plain; charset=utf-8"
    raw_json = httpx.post(fake_openai.v1_url + "/audio/transcriptions", headers=AUTH,
                          files={"file": ("clip.wav", audio)}, data={"model": "whisper-1"})
    validate("transcription_response_json.json", raw_json.json())
    assert raw_json.json()["usage"] == {"type": "duration", "seconds": 1}


@pytest.mark.parametrize("reference", REFERENCES)
def test_transcription_verbose_json_srt_vtt(fake_openai: FakeOpenAI, reference: Reference) -> None:
    client = fake_openai.client()
    audio = make_wav(seconds=2.5)
    verbose = client.audio.transcriptions.create(
        model="whisper-1", file=("clip.wav", audio), response_format="verbose_json",
        timestamp_granularities=["word"])
    assert verbose.duration == 2.5 and verbose.language == "english"
    assert [w.word for w in verbose.words] == ["The", "quick", "brown", "fox"]
    assert verbose.words[-1].end == 2.5 and verbose.segments is None
    assert fake_openai.state.last_request.form["timestamp_granularities[]"] == ["word"]
    recorded = json.loads(reference("transcription_verbose_json_words.json"))
    assert set(verbose.model_dump(exclude_none=True)) == set(recorded)
    srt = client.audio.transcriptions.create(model="whisper-1", file=("a.wav", audio),
                                             response_format="srt")
    assert srt == "1\n00:00:00,000 --> 00:00:02,500\nThe quick brown fox.\n\n"
    vtt = client.audio.transcriptions.create(model="whisper-1", file=("a.wav", audio),
                                             response_format="vtt")
    assert vtt == "WEBVTT\n\n00:00:00.000 --> 00:00:02.500\nThe quick brown fox.\n\n"


def test_transcription_requires_file_and_known_format(fake_openai: FakeOpenAI) -> None:
    url = fake_openai.v1_url + "/audio/transcriptions"
    no_file = httpx.post(url, headers=AUTH, files={"model": (None, "whisper-1")})
    assert no_file.status_code == 400 and no_file.json()["error"]["param"] == "file"
    validate("error_response.json", no_file.json())
    bad_ext = httpx.post(url, headers=AUTH, files={"file": ("notes.txt", b"hi")},
                         data={"model": "whisper-1"})
    assert bad_ext.status_code == 400 and "Invalid file format" in bad_ext.json()["error"]["message"]


# -- errors and scripting ---------------------------------------------------------------


@pytest.mark.parametrize("reference", REFERENCES)
def test_wrong_key_raises_authentication_error(fake_openai: FakeOpenAI, reference: Reference) -> None:
    client = fake_openai.client(api_key="sk-test-wrong-fake-key")
    with pytest.raises(openai.AuthenticationError) as excinfo:
        client.chat.completions.create(model="gpt-4o", messages=USER)
    error = excinfo.value
    assert error.status_code == 401 and error.code == "invalid_api_key"
    assert "sk-test-wrong-fake-key" not in error.message
    assert mask_key("sk-test-wrong-fake-key") in error.message
    assert mask_key("sk-test-wrong-fake-key") == "sk-tes************-key"
    missing = post(fake_openai, "/chat/completions", {"model": "m", "messages": USER}, headers={})
    assert missing.status_code == 401
    validate("error_response.json", missing.json())
    recorded = json.loads(reference("error_401.json"))
    assert set(missing.json()["error"]) == set(recorded["error"])


def test_organization_mismatch_is_rejected(fake_openai: FakeOpenAI) -> None:
    fake_openai.state.allowed_organizations = {"org-right"}
    with pytest.raises(openai.AuthenticationError) as excinfo:
        fake_openai.client(organization="org-wrong").chat.completions.create(
            model="gpt-4o", messages=USER)
    assert excinfo.value.code == "mismatched_organization"
    ok = fake_openai.client(organization="org-right").chat.completions.create(
        model="gpt-4o", messages=USER)
    assert ok.choices[0].message.content == "Hello from the fake!"


def test_scripted_429_and_retry(fake_openai: FakeOpenAI) -> None:
    state = fake_openai.state
    state.fail_next.append((429, {"error": {"message": "Rate limit reached", "type": "requests",
                                            "param": None, "code": "rate_limit_exceeded"}},
                            {"retry-after": "7"}))
    with pytest.raises(openai.RateLimitError) as excinfo:
        fake_openai.client(max_retries=0).chat.completions.create(model="gpt-4o", messages=USER)
    assert excinfo.value.response.headers["retry-after"] == "7"
    assert excinfo.value.code == "rate_limit_exceeded"
    assert len(state.requests) == 1 and state.fail_next == []
    # One scripted failure per request: the SDK's retry gets the real answer.
    state.fail_next.append((503, "upstream overloaded", {"retry-after-ms": "10"}))
    completion = fake_openai.client(max_retries=1).chat.completions.create(
        model="gpt-4o", messages=USER)
    assert completion.choices[0].message.content == "Hello from the fake!"
    assert len(state.requests) == 3


def test_validation_errors(fake_openai: FakeOpenAI) -> None:
    cases = [
        ({"model": "gpt-4o"}, "messages"),
        ({"messages": USER}, "model"),
        ({"model": "gpt-4o", "messages": []}, "messages"),
        ({"model": "gpt-4o", "messages": [{"role": "robot", "content": "x"}]}, "messages[0].role"),
        ({"model": "gpt-4o", "messages": USER, "stream_options": {"include_usage": True}},
         "stream_options"),
    ]
    for body, param in cases:
        response = post(fake_openai, "/chat/completions", body)
        assert response.status_code == 400, body
        validate("error_response.json", response.json())
        assert response.json()["error"]["param"] == param
    with pytest.raises(openai.BadRequestError) as excinfo:
        fake_openai.client().chat.completions.create(model="gpt-4o", messages=[])
    assert excinfo.value.param == "messages"
    bad_json = httpx.post(fake_openai.v1_url + "/chat/completions", content=b"{nope",
                          headers={**AUTH, "content-type": "application/json"})
    assert bad_json.status_code == 400 and "parse the JSON" in bad_json.json()["error"]["message"]


def test_unknown_path_is_openai_404(fake_openai: FakeOpenAI) -> None:
    response = post(fake_openai, "/nope", {})
    assert response.status_code == 404
    assert response.json()["error"]["message"] == "Invalid URL (POST /v1/nope)"
    validate("error_response.json", response.json())
    wrong_method = httpx.get(fake_openai.v1_url + "/chat/completions", headers=AUTH)
    assert wrong_method.status_code == 404
    assert fake_openai.state.last_request.method == "GET"


def test_delay_makes_sdk_time_out(fake_openai: FakeOpenAI) -> None:
    fake_openai.state.delay = 0.5
    with pytest.raises(openai.APITimeoutError):
        fake_openai.client(timeout=0.1).chat.completions.create(model="gpt-4o", messages=USER)


# -- stream lifecycle -------------------------------------------------------------------


def test_mid_stream_error_raises_api_error(fake_openai: FakeOpenAI) -> None:
    state = fake_openai.state
    state.fail_after_chunks = 2
    received = []
    with pytest.raises(openai.APIError) as excinfo:
        for chunk in fake_openai.client().chat.completions.create(model="gpt-4o", messages=USER,
                                                                  stream=True):
            received.append(chunk)
    assert len(received) == 2
    assert not isinstance(excinfo.value, openai.APIStatusError)  # HTTP status was 200
    assert excinfo.value.body == state.stream_error
    assert "server had an error" in excinfo.value.message
    assert state.wait_for(lambda s: s.streams_errored == 1)
    assert (state.streams_finished, state.streams_aborted) == (0, 0)


def test_client_disconnect_is_recorded_as_abort(fake_openai: FakeOpenAI) -> None:
    state = fake_openai.state
    state.stream_delay = 0.05
    state.reply_text = " ".join(f"word{i}" for i in range(100))  # ~5 s if not aborted
    body = {"model": "gpt-4o", "messages": USER, "stream": True}
    with httpx.Client(timeout=5) as http:
        with http.stream("POST", fake_openai.v1_url + "/chat/completions", json=body,
                         headers=AUTH) as response:
            first = next(response.iter_raw())
            assert first.startswith(b"data: {")
    assert state.wait_for(lambda s: s.streams_aborted == 1, timeout=3), state
    assert (state.streams_started, state.streams_finished, state.streams_errored) == (1, 0, 0)


def test_disconnect_is_noticed_without_stream_delay(fake_openai: FakeOpenAI) -> None:
    # No delay: the fake must still yield to its event loop between events, or it writes
    # the whole stream into a dead socket and calls it finished.
    state = fake_openai.state
    state.reply_text = "word " * 20_000
    body = {"model": "gpt-4o", "messages": USER, "stream": True}
    with httpx.Client(timeout=5) as http:
        with http.stream("POST", fake_openai.v1_url + "/chat/completions", json=body,
                         headers=AUTH) as response:
            assert next(response.iter_raw()).startswith(b"data: {")
    assert state.wait_for(lambda s: s.streams_aborted + s.streams_finished == 1, timeout=5)
    assert (state.streams_aborted, state.streams_finished) == (1, 0)


def test_sdk_closing_a_stream_is_recorded_as_abort(fake_openai: FakeOpenAI) -> None:
    state = fake_openai.state
    state.stream_delay = 0.05
    state.reply_text = " ".join(f"word{i}" for i in range(100))
    stream = fake_openai.client().chat.completions.create(model="gpt-4o", messages=USER,
                                                          stream=True)
    assert next(iter(stream)).choices[0].delta.role == "assistant"
    stream.close()
    assert state.wait_for(lambda s: s.streams_aborted == 1, timeout=3), state
    assert state.streams_finished == 0


# -- the server helper ------------------------------------------------------------------


def test_served_app_starts_and_stops() -> None:
    state = FakeOpenAIState(reply_text="Separate server")
    served = ServedApp(create_app(state))
    with served:
        assert served.base_url == f"http://127.0.0.1:{served.port}"
        response = httpx.post(served.base_url + "/v1/chat/completions", headers=AUTH,
                              json={"model": "m", "messages": USER})
        assert response.json()["choices"][0]["message"]["content"] == "Separate server"
    assert not served.running
    with pytest.raises(httpx.ConnectError):
        httpx.get(served.base_url + "/v1/x", timeout=1)
    served.stop()  # idempotent
    assert 0 < free_port() < 65536
