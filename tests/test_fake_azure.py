"""The fake Azure OpenAI resource is faithful: the official `openai.AzureOpenAI` client
talks to it as to Azure, and its wire bytes carry Azure's quirks and error bodies: the shapes of our
fixtures (tests/fixtures/azure-openai/) and, where ../shared is present, the real recordings' exact bodies."""

from __future__ import annotations

import base64
import json
import struct
from typing import Any

import httpx
import openai
import pytest

from emulators._openai_payloads import embedding_vector
from tests.fakes.azure_fixtures import FakeAzure
from emulators.azure_openai import (
    DEFAULT_DEPLOYMENTS,
    ERROR_400_CONTENT_FILTER,
    ERROR_404_DEPLOYMENT_NOT_FOUND,
    error_429,
)
from tests.fixture_data import fixture, fixture_json, needs_shared, shared_recording

USER = [{"role": "user", "content": "Say hello to me"}]
TOOL = {"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
CHAT_MODEL = DEFAULT_DEPLOYMENTS["prod-chat"]


def url(fake: FakeAzure, deployment: str = "prod-chat", operation: str = "chat/completions",
        version: str | None = "2024-10-21") -> str:
    query = f"?api-version={version}" if version else ""
    return f"{fake.endpoint}/openai/deployments/{deployment}/{operation}{query}"


def shape(value: Any) -> Any:
    """The structure of a JSON value (keys, nesting, types) without its values."""
    if isinstance(value, dict):
        return {k: shape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [shape(v) for v in value]
    return type(value).__name__


def recorded_json(name: str) -> Any:
    return json.loads(shared_recording("azure-openai", name))


def raw_events(resp: httpx.Response) -> list[Any]:
    text = resp.text
    assert text.endswith("data: [DONE]\n\n"), text[-200:]
    return [json.loads(block[len("data: "):]) for block in text.split("\n\n")[:-2]]


def test_chat_via_sdk(fake_azure: FakeAzure) -> None:
    answer = fake_azure.client().chat.completions.create(model="prod-chat", messages=USER)  # type: ignore[arg-type]
    assert answer.choices[0].message.content == "Hello from the fake Azure!"
    assert answer.model == CHAT_MODEL  # Azure answers with the deployment's model
    extra = answer.model_dump()
    assert extra["prompt_filter_results"][0]["content_filter_results"]["hate"]["filtered"] is False
    assert "content_filter_results" in extra["choices"][0]
    sent = fake_azure.state.last_request
    assert sent.path == "/openai/deployments/prod-chat/chat/completions"
    assert sent.query == {"api-version": "2024-10-21"}
    assert sent.headers["api-key"] == fake_azure.api_key and "authorization" not in sent.headers


def test_stream_with_usage_via_sdk(fake_azure: FakeAzure) -> None:
    chunks = list(fake_azure.client().chat.completions.create(
        model="prod-chat", messages=USER, stream=True, stream_options={"include_usage": True}))  # type: ignore[arg-type]
    assert chunks[0].choices == [] and chunks[0].id == ""  # the prompt-filter chunk, as Azure sends it
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices and c.choices[0].delta)
    assert text == "Hello from the fake Azure!"
    assert any(c.choices and c.choices[0].delta is None for c in chunks)  # the annotation chunk
    assert chunks[-1].choices == [] and chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 5
    assert fake_azure.state.wait_for(lambda s: s.streams_finished == 1)  # counted after the last write


def test_stream_wire_bytes_carry_azure_quirks(fake_azure: FakeAzure) -> None:
    resp = httpx.post(url(fake_azure), headers={"api-key": fake_azure.api_key},
                      json={"messages": USER, "stream": True}, timeout=5)
    events = raw_events(resp)
    recorded = json.loads(fixture("azure-openai", "chat_stream.sse").split(b"\n\n")[0][len(b"data: "):])
    assert events[0].keys() == recorded.keys() and events[0]["choices"] == [] and events[0]["id"] == ""
    assert events[1]["choices"][0]["delta"]["role"] == "assistant"
    assert events[1]["choices"][0]["content_filter_results"] == {}
    assert events[2]["choices"][0]["content_filter_results"]["violence"] == {"filtered": False, "severity": "safe"}
    annotation = [e for e in events if e["choices"] and "delta" not in e["choices"][0]]
    assert len(annotation) == 1 and "content_filter_offsets" in annotation[0]["choices"][0]
    assert events[-1]["choices"][0]["finish_reason"] == "stop"
    assert not any("usage" in e for e in events)


def test_old_api_version_stream_shape(fake_azure: FakeAzure) -> None:
    resp = httpx.post(url(fake_azure, version="2023-07-01-preview"), headers={"api-key": fake_azure.api_key},
                      json={"messages": USER, "stream": True}, timeout=5)
    events = raw_events(resp)
    assert "prompt_annotations" in events[0] and all(e["usage"] is None for e in events)
    refused = httpx.post(url(fake_azure, version="2024-06-01"), headers={"api-key": fake_azure.api_key},
                         json={"messages": USER, "stream": True, "stream_options": {"include_usage": True}}, timeout=5)
    assert refused.status_code == 400
    assert refused.json()["error"]["message"] == "Unrecognized request argument supplied: stream_options"


def test_split_events_still_parse(fake_azure: FakeAzure) -> None:
    fake_azure.state.split_events = True
    fake_azure.state.reply_text = "Grüße aus Zürich ☕"
    chunks = list(fake_azure.client().chat.completions.create(model="prod-chat", messages=USER, stream=True))  # type: ignore[arg-type]
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices and c.choices[0].delta) == \
        "Grüße aus Zürich ☕"


def test_tool_call_stream_via_sdk(fake_azure: FakeAzure) -> None:
    fake_azure.state.tool_call = ("get_weather", '{"city": "Paris"}')
    chunks = list(fake_azure.client().chat.completions.create(
        model="prod-chat", messages=USER, tools=[TOOL], stream=True))  # type: ignore[arg-type, list-item]
    calls = [tc for c in chunks if c.choices and c.choices[0].delta for tc in c.choices[0].delta.tool_calls or []]
    assert calls[0].id and calls[0].function.name == "get_weather"
    assert json.loads("".join(tc.function.arguments or "" for tc in calls)) == {"city": "Paris"}
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["tool_calls"]


def test_completion_filtered(fake_azure: FakeAzure) -> None:
    fake_azure.state.filter_completion = True
    answer = fake_azure.client().chat.completions.create(model="prod-chat", messages=USER)  # type: ignore[arg-type]
    assert answer.choices[0].finish_reason == "content_filter"
    assert answer.model_dump()["choices"][0]["content_filter_results"]["violence"]["filtered"] is True


def test_completions_via_sdk(fake_azure: FakeAzure) -> None:
    answer = fake_azure.client().completions.create(model="prod-instruct", prompt="Say hi")
    assert answer.choices[0].text == "Hello from the fake Azure!" and answer.model == "gpt-35-turbo-instruct"
    assert fake_azure.state.last_request.path == "/openai/deployments/prod-instruct/completions"


def test_embeddings_float_and_sdk_default_base64(fake_azure: FakeAzure) -> None:
    client = fake_azure.client()
    floats = client.embeddings.create(model="prod-embed", input="hello world", encoding_format="float")
    assert fake_azure.state.last_request.json["encoding_format"] == "float"
    default = client.embeddings.create(model="prod-embed", input="hello world")
    assert fake_azure.state.last_request.json["encoding_format"] == "base64"  # the SDK's default
    assert floats.data[0].embedding == default.data[0].embedding == embedding_vector("hello world", 8)
    raw = httpx.post(url(fake_azure, "prod-embed", "embeddings"), headers={"api-key": fake_azure.api_key},
                     json={"input": ["this is a test"], "encoding_format": "base64"}, timeout=5).json()
    decoded = struct.unpack("<8f", base64.b64decode(raw["data"][0]["embedding"]))
    assert list(decoded) == embedding_vector("this is a test", 8)  # no `model` needed in the body


def test_minimal_bodies_like_the_spec_examples(fake_azure: FakeAzure) -> None:
    fake_azure.state.minimal_bodies = True
    raw = httpx.post(url(fake_azure, "prod-embed", "embeddings"), headers={"api-key": fake_azure.api_key},
                     json={"input": "x"}, timeout=5).json()
    recorded = fixture_json("azure-openai", "embeddings_response.json")
    assert raw.keys() == recorded.keys() and raw["data"][0].keys() == recorded["data"][0].keys()


def test_transcription_multipart_via_sdk(fake_azure: FakeAzure) -> None:
    text = fake_azure.client().audio.transcriptions.create(model="prod-whisper", file=("a.wav", b"RIFFfake", "audio/wav"))
    assert text.text == "The quick brown fox."
    sent = fake_azure.state.last_request
    assert sent.path == "/openai/deployments/prod-whisper/audio/transcriptions"
    assert sent.files["file"].data == b"RIFFfake"


def test_wrong_key_and_bearer_are_401(fake_azure: FakeAzure) -> None:
    with pytest.raises(openai.AuthenticationError) as caught:
        fake_azure.client(api_key="wrong").chat.completions.create(model="prod-chat", messages=USER)  # type: ignore[arg-type]
    assert caught.value.body["code"] == "401"  # type: ignore[index]
    bearer = httpx.post(url(fake_azure), json={"messages": USER}, timeout=5,
                        headers={"api-key": fake_azure.api_key, "Authorization": "Bearer sk-openai-style"})
    assert bearer.status_code == 401 and bearer.json()["error"]["code"] == "401"


def test_missing_api_version_and_unknown_paths_are_resource_not_found(fake_azure: FakeAzure) -> None:
    for target in (url(fake_azure, version=None), url(fake_azure, version="latest"), fake_azure.endpoint + "/v1/chat/completions"):
        resp = httpx.post(target, headers={"api-key": fake_azure.api_key}, json={"messages": USER}, timeout=5)
        assert resp.status_code == 404 and resp.json() == {"error": {"code": "404", "message": "Resource not found"}}


def test_unknown_deployment_is_azures_404(fake_azure: FakeAzure) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        fake_azure.client().chat.completions.create(model="nope", messages=USER)  # type: ignore[arg-type]
    body = {"error": caught.value.body}
    assert body == ERROR_404_DEPLOYMENT_NOT_FOUND and body["error"]["code"] == "DeploymentNotFound"
    assert shape(body) == shape(fixture_json("azure-openai", "error_404_deployment_not_found.json"))


@needs_shared
def test_error_bodies_are_the_recorded_ones() -> None:
    assert ERROR_404_DEPLOYMENT_NOT_FOUND == recorded_json("error_404_deployment_not_found.json")
    assert ERROR_400_CONTENT_FILTER == recorded_json("error_400_content_filter.json")


def test_wrong_operation_for_the_deployment(fake_azure: FakeAzure) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        fake_azure.client().chat.completions.create(model="prod-embed", messages=USER)  # type: ignore[arg-type]
    assert caught.value.body["code"] == "OperationNotSupported"  # type: ignore[index]


def test_prompt_filter_is_azures_400(fake_azure: FakeAzure) -> None:
    fake_azure.state.prompt_filter_trigger = "forbidden"
    with pytest.raises(openai.BadRequestError) as caught:
        fake_azure.client().chat.completions.create(model="prod-chat", messages=[{"role": "user", "content": "a forbidden thing"}])  # type: ignore[arg-type]
    assert caught.value.code == "content_filter"
    assert {"error": caught.value.body} == ERROR_400_CONTENT_FILTER
    assert shape(ERROR_400_CONTENT_FILTER) == shape(fixture_json("azure-openai", "error_400_content_filter.json"))


def test_scripted_429_with_retry_headers(fake_azure: FakeAzure) -> None:
    fake_azure.state.fail_next.append(error_429(3))
    with pytest.raises(openai.RateLimitError) as caught:
        fake_azure.client().chat.completions.create(model="prod-chat", messages=USER)  # type: ignore[arg-type]
    assert caught.value.response.headers["retry-after-ms"] == "3000"
    assert fake_azure.client().chat.completions.create(model="prod-chat", messages=USER).choices  # type: ignore[arg-type]


def test_mid_stream_error_and_disconnect(fake_azure: FakeAzure) -> None:
    fake_azure.state.fail_after_chunks = 3
    with pytest.raises(openai.APIError):
        list(fake_azure.client().chat.completions.create(model="prod-chat", messages=USER, stream=True))  # type: ignore[arg-type]
    assert fake_azure.state.wait_for(lambda s: s.streams_errored == 1)  # counted after the last write
    fake_azure.state.fail_after_chunks = None
    fake_azure.state.stream_delay = 0.05
    fake_azure.state.reply_text = " ".join(f"w{i}" for i in range(200))
    stream = fake_azure.client().chat.completions.create(model="prod-chat", messages=USER, stream=True)  # type: ignore[arg-type]
    next(iter(stream))
    stream.close()
    assert fake_azure.state.wait_for(lambda s: s.streams_aborted == 1)
    assert fake_azure.state.streams_finished == 0
