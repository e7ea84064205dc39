"""End-to-end: Azure OpenAI deployments through a real `modelport serve`, driven by the
official openai SDK, checked against what the fake Azure resource received.

The module's own tenant (never acme/beta) gets deployments added one by one with
`modelport models add T azure_openai DEPLOYMENT --type ... endpoint=<fake> api_key=...`."""

from __future__ import annotations

import base64
import json
import struct
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import openai
import pytest

from tests.e2e.harness import GatewayProcess, provider_tenant
from tests.e2e.test_endpoints import check_schema, wav_bytes
from tests.e2e.test_streaming import sse_frames
from emulators._openai_payloads import embedding_vector
from tests.fakes.azure_fixtures import FakeAzure
from emulators.azure_openai import (
    DEFAULT_API_KEY,
    DEFAULT_DEPLOYMENTS,
    ERROR_400_CONTENT_FILTER,
    error_429,
)

TENANT = "azure-e2e"
REPLY = "Hello from the fake Azure!"
USER = [{"role": "user", "content": "say hello to me"}]
TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "Weather in a city", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]
DEPLOYMENTS = [  # (name, type, extra fields); gone-deploy is configured here but missing at the resource
    ("prod-chat", "llm", ["base_model=gpt-4o-mini"]),
    ("legacy-chat", "llm", ["api_version=2024-06-01"]),
    ("prod-instruct", "llm", []),
    ("prod-embed", "text-embedding", ["base_model=text-embedding-3-small"]),
    ("prod-whisper", "speech2text", []),
    ("gone-deploy", "llm", []),
]


@dataclass
class Azure:
    gw: GatewayProcess
    fake: FakeAzure
    token: str

    def client(self, **kwargs: Any) -> openai.OpenAI:
        return self.gw.client(self.token, **kwargs)

    def http(self) -> httpx.Client:
        return self.gw.http(self.token)

    @property
    def state(self) -> Any:
        return self.fake.state


def deployment(fake: FakeAzure, name: str, kind: str, *extra: str) -> tuple[str, ...]:
    """`models add` arguments (after the tenant) for an Azure deployment."""
    fields = [f"endpoint={fake.endpoint}", f"api_key={DEFAULT_API_KEY}"]
    if not any(e.startswith("api_version=") for e in extra):
        fields.append("api_version=2024-10-21")
    return ("azure_openai", name, "--type", kind, *fields, *extra)


def add(gw: GatewayProcess, fake: FakeAzure, name: str, kind: str, *extra: str, check: bool = True) -> Any:
    return gw.cli("models", "add", TENANT, *deployment(fake, name, kind, *extra), check=check)


@pytest.fixture(scope="module")
def azure_tenant(gateway: GatewayProcess, fake_azure_server: FakeAzure) -> Iterator[tuple[GatewayProcess, str]]:
    setup = [("models", "add", *deployment(fake_azure_server, name, kind, *extra)) for name, kind, extra in DEPLOYMENTS]
    with provider_tenant(gateway, TENANT, setup, unique=False, token_name="azure-e2e",
                         listed={name for name, _, _ in DEPLOYMENTS}) as made:
        yield gateway, made.token


@pytest.fixture
def az(azure_tenant: tuple[GatewayProcess, str], fake_azure: FakeAzure) -> Azure:
    gw, token = azure_tenant
    return Azure(gw, fake_azure, token)


def upstream(az: Azure, deployment: str = "prod-chat", operation: str = "chat/completions") -> Any:
    sent = az.state.requests_to(deployment, operation)
    assert sent, f"nothing reached {deployment}/{operation}"
    return sent[-1]


def error_of(resp: httpx.Response, status: int) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    return resp.json()["error"]


# -- chat ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("model", ["prod-chat", "azure_openai/prod-chat"])
def test_chat_non_stream(az: Azure, model: str) -> None:
    answer = az.client().chat.completions.create(model=model, messages=USER)  # type: ignore[arg-type]
    assert answer.choices[0].message.content == REPLY and answer.choices[0].finish_reason == "stop"
    assert answer.model == DEFAULT_DEPLOYMENTS["prod-chat"]  # the deployment's model, as Azure says
    assert answer.usage is not None and answer.usage.total_tokens > 0
    sent = upstream(az)
    assert sent.query == {"api-version": "2024-10-21"}
    assert sent.headers["api-key"] == DEFAULT_API_KEY and "authorization" not in sent.headers
    assert sent.json == {"model": "prod-chat", "messages": USER}


def test_chat_stream_with_usage_is_clean(az: Azure) -> None:
    chunks = list(az.client().chat.completions.create(model="prod-chat", messages=USER, stream=True,  # type: ignore[arg-type]
                                                      stream_options={"include_usage": True}))
    body, last = chunks[:-1], chunks[-1]
    assert all(c.choices and c.choices[0].delta is not None and c.id for c in body)  # no filter/annotation chunks
    assert len({c.id for c in chunks}) == 1 and body[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in body) == REPLY
    assert [c.choices[0].finish_reason for c in body if c.choices[0].finish_reason] == ["stop"]
    assert last.choices == [] and last.usage is not None and last.usage.completion_tokens == 5
    assert all(c.usage is None for c in body)
    assert upstream(az).json["stream_options"] == {"include_usage": True}
    assert az.state.wait_for(lambda s: s.streams_finished == 1)  # counted after the last write


def test_chat_stream_wire_without_usage(az: Azure) -> None:
    with az.http() as http:
        resp = http.post("/v1/chat/completions", json={"model": "prod-chat", "messages": USER, "stream": True})
    frames = sse_frames(resp.content)
    assert frames[-1] == b"[DONE]"
    events = [json.loads(f) for f in frames[:-1]]
    assert all(e["choices"] and e["id"] and "delta" in e["choices"][0] for e in events)
    assert not any("prompt_filter_results" in e or "usage" in e for e in events)
    # The gateway asked for usage upstream anyway (its own accounting) and dropped it here.
    assert upstream(az).json["stream_options"] == {"include_usage": True}


def test_old_api_version_gets_no_stream_options_and_no_invented_usage(az: Azure) -> None:
    chunks = list(az.client().chat.completions.create(model="legacy-chat", messages=USER, stream=True,  # type: ignore[arg-type]
                                                      stream_options={"include_usage": True}))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == REPLY
    assert all(c.choices for c in chunks) and all(c.usage is None for c in chunks)
    sent = upstream(az, "legacy-chat")
    assert sent.query == {"api-version": "2024-06-01"} and "stream_options" not in sent.json


def test_tool_call_non_stream_and_stream(az: Azure) -> None:
    az.state.tool_call = ("get_weather", '{"city": "Paris"}')
    client = az.client()
    answer = client.chat.completions.create(model="prod-chat", messages=USER, tools=TOOLS)  # type: ignore[arg-type]
    call = answer.choices[0].message.tool_calls[0]  # type: ignore[index]
    assert answer.choices[0].finish_reason == "tool_calls"
    assert call.function.name == "get_weather" and json.loads(call.function.arguments) == {"city": "Paris"}
    chunks = list(client.chat.completions.create(model="prod-chat", messages=USER, tools=TOOLS, stream=True))  # type: ignore[arg-type]
    deltas = [tc for c in chunks if c.choices for tc in c.choices[0].delta.tool_calls or []]
    assert {tc.index for tc in deltas} == {0} and deltas[0].id == call.id
    assert deltas[0].function.name == "get_weather"
    assert json.loads("".join(tc.function.arguments or "" for tc in deltas)) == {"city": "Paris"}
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["tool_calls"]


def test_tools_images_and_tool_messages_pass_through_untouched(az: Azure) -> None:
    messages = [
        {"role": "system", "content": "Answer in JSON."},
        {"role": "user", "content": [{"type": "text", "text": "What is in this picture?"},
                                     {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo=",
                                                                         "detail": "low"}},
                                     {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}]},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": '{"temp": 21}'},
    ]
    schema = {"type": "json_schema", "json_schema": {"name": "answer", "strict": True, "schema": {
        "type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"],
        "additionalProperties": False}}}
    body = {"model": "prod-chat", "messages": messages, "tools": TOOLS,
            "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
            "parallel_tool_calls": False, "response_format": schema, "seed": 42, "user": "u-1"}
    with az.http() as http:
        resp = http.post("/v1/chat/completions", json=body)
    assert resp.status_code == 200, resp.text
    assert upstream(az).json == body
    az.client().chat.completions.create(model="prod-chat", messages=USER,  # type: ignore[arg-type]
                                        response_format={"type": "json_object"}, tool_choice="none", tools=TOOLS)
    sent = upstream(az).json
    assert sent["response_format"] == {"type": "json_object"} and sent["tool_choice"] == "none"


def test_content_filter_finish_reason_passes(az: Azure) -> None:
    az.state.filter_completion = True
    answer = az.client().chat.completions.create(model="prod-chat", messages=USER)  # type: ignore[arg-type]
    assert answer.choices[0].finish_reason == "content_filter"
    chunks = list(az.client().chat.completions.create(model="prod-chat", messages=USER, stream=True))  # type: ignore[arg-type]
    assert [c.choices[0].finish_reason for c in chunks if c.choices[0].finish_reason] == ["content_filter"]


# -- completions, embeddings, transcription --------------------------------------------------------


def test_completions_non_stream_and_stream(az: Azure) -> None:
    client = az.client()
    answer = client.completions.create(model="prod-instruct", prompt="Say hi")
    assert answer.choices[0].text == REPLY and answer.object == "text_completion"
    assert upstream(az, "prod-instruct", "completions").json["prompt"] == "Say hi"
    chunks = list(client.completions.create(model="prod-instruct", prompt="Say hi", stream=True,
                                            stream_options={"include_usage": True}))
    assert "".join(c.choices[0].text for c in chunks if c.choices) == REPLY
    assert all(c.id for c in chunks) and chunks[-1].usage is not None
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["stop"]


def test_embeddings_float_and_base64(az: Azure) -> None:
    client = az.client()
    floats = client.embeddings.create(model="prod-embed", input=["hello world", "bye"], encoding_format="float")
    assert upstream(az, "prod-embed", "embeddings").json["encoding_format"] == "float"
    assert [d.embedding for d in floats.data] == [embedding_vector("hello world", 8), embedding_vector("bye", 8)]
    default = client.embeddings.create(model="prod-embed", input="hello world")  # the SDK asks for base64
    assert upstream(az, "prod-embed", "embeddings").json["encoding_format"] == "base64"
    assert default.data[0].embedding == embedding_vector("hello world", 8)
    with az.http() as http:
        raw = http.post("/v1/embeddings", json={"model": "prod-embed", "input": "x", "encoding_format": "base64"}).json()
    assert list(struct.unpack("<8f", base64.b64decode(raw["data"][0]["embedding"]))) == embedding_vector("x", 8)


def test_embeddings_spec_shaped_answer_is_completed(az: Azure) -> None:
    az.state.minimal_bodies = True  # Azure's documented example has no object/model
    with az.http() as http:
        body = http.post("/v1/embeddings", json={"model": "prod-embed", "input": "x"}).json()
    check_schema("embedding_response.json", body)
    assert body["model"] == "text-embedding-3-small" and body["object"] == "list"


def test_transcription_json_and_text(az: Azure) -> None:
    audio = wav_bytes()
    client = az.client()
    result = client.audio.transcriptions.create(model="prod-whisper", file=("hello.wav", audio, "audio/wav"))
    assert result.text == "The quick brown fox."
    sent = upstream(az, "prod-whisper", "audio/transcriptions")
    assert sent.files["file"].data == audio and sent.headers["api-key"] == DEFAULT_API_KEY
    text = client.audio.transcriptions.create(model="prod-whisper", file=("hello.wav", audio, "audio/wav"),
                                              response_format="text")
    assert str(text).strip() == "The quick brown fox."


# -- deployment names -----------------------------------------------------------------------------------


BAD_NAMES = ["../x", "%2e%2e", "..%2fx", "a/b", "x/../../admin", ".x"]


@pytest.mark.parametrize("name", BAD_NAMES)
def test_bad_deployment_names_are_refused_by_the_cli(az: Azure, name: str) -> None:
    result = add(az.gw, az.fake, name, "llm", check=False)
    assert result.code != 0 and "not allowed" in result.err
    listed = az.gw.cli("models", "list", TENANT).out
    assert name not in listed.split()


def admin_token(gw: GatewayProcess) -> str:
    return gw.admin_token()  # written by the first start to <data dir>/admin-token


@pytest.mark.parametrize("name", ["../x", "%2e%2e"])
def test_bad_deployment_names_are_refused_by_the_admin_api(az: Azure, name: str) -> None:
    body = {"provider": "azure_openai", "model": name, "type": "llm",
            "credentials": {"endpoint": az.fake.endpoint, "api_key": DEFAULT_API_KEY}}
    resp = httpx.post(f"{az.gw.base_url}/admin/v1/tenants/{TENANT}/models", json=body, timeout=10,
                      headers={"Authorization": f"Bearer {admin_token(az.gw)}"})
    err = error_of(resp, 400)
    assert err["code"] == "invalid_model_id" and err["param"] == "model"


def test_a_bad_name_in_a_request_is_never_dispatched(az: Azure) -> None:
    with az.http() as http:
        for model in ("azure_openai/../x", "azure_openai/%2e%2e", "../x"):
            resp = http.post("/v1/chat/completions", json={"model": model, "messages": USER})
            assert resp.status_code in (400, 404), resp.text
    assert az.state.requests == []


# -- errors ----------------------------------------------------------------------------------------------


def test_upstream_401_is_403_credential_rejected(az: Azure) -> None:
    az.state.api_keys = {"another-key"}
    with pytest.raises(openai.PermissionDeniedError) as caught:
        az.client().chat.completions.create(model="prod-chat", messages=USER)  # type: ignore[arg-type]
    assert caught.value.code == "upstream_credential_rejected" and "azure_openai" in caught.value.message
    with az.http() as http:
        err = error_of(http.post("/v1/chat/completions", json={"model": "prod-chat", "messages": USER, "stream": True}), 403)
    assert err["code"] == "upstream_credential_rejected"
    assert DEFAULT_API_KEY not in az.gw.log()


def test_deployment_not_found_is_mapped(az: Azure) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        az.client().chat.completions.create(model="gone-deploy", messages=USER)  # type: ignore[arg-type]
    assert caught.value.code == "model_not_found" and "'gone-deploy'" in caught.value.message
    with az.http() as http:
        err = error_of(http.post("/v1/chat/completions",
                                 json={"model": "gone-deploy", "messages": USER, "stream": True}), 404)
    assert err["code"] == "model_not_found" and "does not exist" in err["message"]


def test_prompt_content_filter_is_400_content_filter(az: Azure) -> None:
    az.state.prompt_filter_trigger = "forbidden"
    prompt = [{"role": "user", "content": "tell me something forbidden"}]
    with pytest.raises(openai.BadRequestError) as caught:
        az.client().chat.completions.create(model="prod-chat", messages=prompt)  # type: ignore[arg-type]
    assert caught.value.code == "content_filter" and "violence" in caught.value.message
    with az.http() as http:
        err = error_of(http.post("/v1/chat/completions", json={"model": "prod-chat", "messages": prompt, "stream": True}), 400)
    assert (err["code"], err["param"], err["type"]) == ("content_filter", "prompt", "invalid_request_error")


def test_mid_stream_content_filter_error_is_one_error_frame(az: Azure) -> None:
    az.state.fail_after_chunks = 3
    az.state.stream_error = dict(ERROR_400_CONTENT_FILTER["error"])
    with az.http() as http:
        resp = http.post("/v1/chat/completions", json={"model": "prod-chat", "messages": USER, "stream": True})
    frames = sse_frames(resp.content)
    assert resp.status_code == 200 and b"[DONE]" not in frames
    assert json.loads(frames[-1])["error"]["code"] == "content_filter"


def test_upstream_429_keeps_retry_after(az: Azure) -> None:
    az.state.fail_next.append(error_429(3))
    with az.http() as http:
        resp = http.post("/v1/chat/completions", json={"model": "prod-chat", "messages": USER})
    assert error_of(resp, 429)["type"] == "rate_limit_error" and resp.headers["retry-after"] == "3"


def test_client_disconnect_closes_the_upstream(az: Azure) -> None:
    az.state.reply_text = " ".join(f"word{i}" for i in range(400))
    az.state.stream_delay = 0.05
    started = time.monotonic()
    with az.http() as http, http.stream("POST", "/v1/chat/completions",
                                        json={"model": "prod-chat", "messages": USER, "stream": True}) as resp:
        assert resp.status_code == 200
        assert next(resp.iter_bytes()).startswith(b"data: {")
    assert az.state.wait_for(lambda s: s.streams_aborted >= 1, timeout=5.0), \
        f"upstream not closed: started={az.state.streams_started} aborted={az.state.streams_aborted}"
    assert az.state.streams_finished == 0 and time.monotonic() - started < 6.0
