"""The OpenAI family's emulators (OpenAI, Azure OpenAI, DeepSeek, Moonshot), Anthropic's,
Hugging Face's and Replicate's, served the way `modelport emulate all` serves them (each
under `/NAME` behind `emulators.inject.Emulated`) and driven by each vendor's official SDK:
a fixed reply, echo, an automatic tool call when tools are offered, a stream, and every
injected fault as the SDK surfaces it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import httpx2
import openai
import pytest
from anthropic.types import TextBlock, ToolUseBlock
from huggingface_hub import InferenceClient
from huggingface_hub.errors import GenerationError, HfHubHTTPError, InferenceTimeoutError
from openai.types.chat import ChatCompletionMessageFunctionToolCall
from replicate.client import Client as ReplicateClient
from replicate.exceptions import ModelError, ReplicateError
from replicate.stream import EventSource
from starlette.testclient import TestClient

from emulators import anthropic as anthropic_fake
from emulators import azure_openai
from emulators.serve import Served, describe
from emulators.server import ServedApp
from tests.emulators._common import WEATHER, WEATHER_ARGUMENTS, WEATHER_SCHEMA, fault, reply, serving

OPENAI_FAMILY = {"openai": "gpt-4o-mini", "azure_openai": "prod-chat", "deepseek": "deepseek-chat",
                 "moonshot": "kimi-k2-turbo-preview"}
NAMES = [*OPENAI_FAMILY, "anthropic", "huggingface", "replicate"]
HTTP_FAULTS = ["401", "429", "500", "overloaded"]
ASKED = "Say hello to me"
# Plain JSON, as an application's own code holds it (typed Any: the SDKs want their TypedDicts).
HELLO: Any = [{"role": "user", "content": ASKED}]
FIXED = "A fixed answer in six words."
CLAUDE = "claude-haiku-4-5"
LLAMA = "meta/meta-llama-3-8b-instruct"
HF_CHAT_MODEL = "meta-llama/Meta-Llama-3-8B-Instruct"
HF_GENERATION_MODEL = "openai-community/gpt2"


@pytest.fixture(scope="module")
def emulated() -> Iterator[tuple[ServedApp, dict[str, Served]]]:
    with serving(NAMES) as pair:
        yield pair


@pytest.fixture(scope="module")
def rows(emulated: tuple[ServedApp, dict[str, Served]]) -> dict[str, dict[str, Any]]:
    """Each emulator's SDK `base_url` and credential, as `modelport emulate` prints them."""
    return {row["name"]: row for row in describe(emulated[0].base_url, NAMES, prefixed=True)}


# -- the OpenAI family: OpenAI, Azure OpenAI, DeepSeek, Moonshot ------------------------------------------


def openai_client(rows: dict[str, dict[str, Any]], name: str, headers: dict[str, str] | None = None,
                  timeout: float = 5.0) -> openai.OpenAI:
    row = rows[name]
    options: dict[str, Any] = {"api_key": row["credential"]["api_key"], "max_retries": 0, "timeout": timeout,
                               "default_headers": headers}
    if name == "azure_openai":  # the deployment in the URL, so a magic model in the body reaches the emulator
        return openai.AzureOpenAI(azure_endpoint=row["base_url"], api_version=azure_openai.API_VERSION,
                                  azure_deployment=OPENAI_FAMILY[name], **options)
    return openai.OpenAI(base_url=row["base_url"], **options)


@pytest.mark.parametrize("name", OPENAI_FAMILY)
def test_openai_family_fixed_and_echoed_replies(rows: dict[str, dict[str, Any]], name: str) -> None:
    model = OPENAI_FAMILY[name]
    fixed = openai_client(rows, name, reply(FIXED)).chat.completions.create(model=model, messages=HELLO)
    assert fixed.choices[0].message.content == FIXED and fixed.choices[0].finish_reason == "stop"
    echoed = openai_client(rows, name).chat.completions.create(model=model, messages=HELLO,
                                                               extra_headers=reply("echo"))
    assert echoed.choices[0].message.content == ASKED


@pytest.mark.parametrize("name", OPENAI_FAMILY)
def test_openai_family_stream(rows: dict[str, dict[str, Any]], name: str) -> None:
    chunks = list(openai_client(rows, name).chat.completions.create(
        model=OPENAI_FAMILY[name], messages=HELLO, stream=True, extra_headers=reply("echo")))
    # Azure's stream has a chunk without choices and a filter annotation without a delta.
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices and c.choices[0].delta) == ASKED
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["stop"]


@pytest.mark.parametrize("name", OPENAI_FAMILY)
def test_openai_family_calls_an_offered_tool(rows: dict[str, dict[str, Any]], name: str) -> None:
    client, model = openai_client(rows, name), OPENAI_FAMILY[name]
    answer = client.chat.completions.create(model=model, messages=HELLO, tools=[WEATHER])
    calls = answer.choices[0].message.tool_calls
    assert calls and isinstance(calls[0], ChatCompletionMessageFunctionToolCall)
    call = calls[0]
    assert answer.choices[0].finish_reason == "tool_calls"
    assert call.function.name == "get_weather" and json.loads(call.function.arguments) == WEATHER_ARGUMENTS
    refused = client.chat.completions.create(model=model, messages=HELLO, tools=[WEATHER],
                                             tool_choice="none")
    assert refused.choices[0].message.tool_calls is None and refused.choices[0].message.content
    answered: Any = [*HELLO, {"role": "assistant", "content": None, "tool_calls": [
        {"id": call.id, "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": call.id, "content": "sunny"}]
    after = client.chat.completions.create(model=model, messages=answered, tools=[WEATHER])
    assert after.choices[0].message.tool_calls is None and after.choices[0].message.content


def test_openai_responses_api_echoes_and_calls_tools(rows: dict[str, dict[str, Any]]) -> None:
    client = openai_client(rows, "openai")
    assert client.responses.create(model="gpt-4o-mini", input=ASKED, extra_headers=reply("echo")).output_text == ASKED
    tool: Any = {"type": "function", "name": "get_weather", "parameters": WEATHER_SCHEMA}
    called = client.responses.create(model="gpt-4o-mini", input=ASKED, tools=[tool])
    item = called.output[0]
    assert item.type == "function_call" and json.loads(item.arguments) == WEATHER_ARGUMENTS


# (status, a piece of the body that is the vendor's own) per fault
OPENAI_FAMILY_FAULTS: dict[str, dict[str, tuple[int, str]]] = {
    "openai": {"401": (401, "invalid_api_key"), "429": (429, "rate_limit_exceeded"), "500": (500, "server_error"),
               "overloaded": (503, "currently overloaded")},
    "azure_openai": {"401": (401, "Access denied due to invalid subscription key"),
                     "429": (429, "ChatCompletions_Create Operation under Azure OpenAI API version"),
                     "500": (500, "InternalServerError"), "overloaded": (503, "ServiceUnavailable")},
    "deepseek": {"401": (401, "Authentication Fails"), "429": (429, "Rate Limit Reached"),
                 "500": (500, "Server Error"), "overloaded": (503, "Server Overloaded")},
    "moonshot": {"401": (401, "invalid_authentication_error"), "429": (429, "rate_limit_reached_error"),
                 "500": (500, "server_error"), "overloaded": (429, "engine_overloaded_error")},
}
OPENAI_ERRORS = {401: openai.AuthenticationError, 429: openai.RateLimitError, 500: openai.InternalServerError,
                 503: openai.InternalServerError}


@pytest.mark.parametrize("via", ["header", "model"])
@pytest.mark.parametrize("kind", HTTP_FAULTS)
@pytest.mark.parametrize("name", OPENAI_FAMILY)
def test_openai_family_http_faults(rows: dict[str, dict[str, Any]], name: str, kind: str, via: str) -> None:
    status, words = OPENAI_FAMILY_FAULTS[name][kind]
    client = openai_client(rows, name, fault(kind) if via == "header" else None)
    model = OPENAI_FAMILY[name] if via == "header" else f"fault-{kind}"
    with pytest.raises(OPENAI_ERRORS[status]) as caught:
        client.chat.completions.create(model=model, messages=HELLO)
    assert caught.value.status_code == status and words in caught.value.response.text
    if kind == "429":
        assert caught.value.response.headers["retry-after"] == "1"


@pytest.mark.parametrize("name", OPENAI_FAMILY)
def test_openai_family_retry_after_is_the_asked_one(rows: dict[str, dict[str, Any]], name: str) -> None:
    with pytest.raises(openai.RateLimitError) as caught:
        openai_client(rows, name).chat.completions.create(model="fault-429-7", messages=HELLO)
    assert caught.value.response.headers["retry-after"] == "7"
    if name == "azure_openai":
        assert caught.value.response.headers["retry-after-ms"] == "7000"
        assert "Please retry after 7 seconds" in caught.value.response.text


@pytest.mark.parametrize("name", OPENAI_FAMILY)
def test_openai_family_error_in_a_200(rows: dict[str, dict[str, Any]], name: str) -> None:
    client, model = openai_client(rows, name, fault("error-200")), OPENAI_FAMILY[name]
    received = []
    with pytest.raises(openai.APIError) as caught:  # the SDK raises on an `error` event
        for chunk in client.chat.completions.create(model=model, messages=HELLO, stream=True):
            received.append(chunk)
    assert received and not isinstance(caught.value, openai.APIStatusError)
    # A plain answer is the error body in a 200: the SDK hands it back unvalidated, `error` kept.
    answer = client.chat.completions.create(model=model, messages=HELLO)
    assert answer.choices is None and answer.model_extra and answer.model_extra["error"]["message"]


@pytest.mark.parametrize("name", OPENAI_FAMILY)
def test_openai_family_reset(rows: dict[str, dict[str, Any]], name: str) -> None:
    client, model = openai_client(rows, name, fault("reset")), OPENAI_FAMILY[name]
    received = []
    with pytest.raises(openai.APIConnectionError):
        for chunk in client.chat.completions.create(model=model, messages=HELLO, stream=True):
            received.append(chunk)
    assert received  # cut mid-stream, not refused
    with pytest.raises(openai.APIConnectionError):
        openai_client(rows, name).chat.completions.create(model="fault-reset", messages=HELLO)


@pytest.mark.parametrize("name", OPENAI_FAMILY)
def test_openai_family_slow(rows: dict[str, dict[str, Any]], name: str) -> None:
    model = OPENAI_FAMILY[name]
    answer = openai_client(rows, name, fault("slow-0.3")).chat.completions.create(model=model, messages=HELLO)
    assert answer.choices[0].message.content
    with pytest.raises(openai.APITimeoutError):
        openai_client(rows, name, timeout=0.1).chat.completions.create(model="fault-slow-0.3", messages=HELLO)


# -- Anthropic --------------------------------------------------------------------------------------------


def claude(rows: dict[str, dict[str, Any]], headers: dict[str, str] | None = None,
           timeout: float = 5.0) -> anthropic.Anthropic:
    row = rows["anthropic"]
    return anthropic.Anthropic(base_url=row["base_url"], api_key=row["credential"]["api_key"], max_retries=0,
                               timeout=timeout, default_headers=headers)


def test_anthropic_fixed_and_echoed_replies_and_stream(rows: dict[str, dict[str, Any]]) -> None:
    # The SDK sends its own anthropic-version, which the served emulator takes.
    fixed = claude(rows, reply(FIXED)).messages.create(model=CLAUDE, max_tokens=100, messages=HELLO)
    assert isinstance(fixed.content[0], TextBlock) and fixed.content[0].text == FIXED
    assert fixed.stop_reason == "end_turn"
    with claude(rows, reply("echo")).messages.stream(model=CLAUDE, max_tokens=100, messages=HELLO) as stream:
        assert "".join(stream.text_stream) == ASKED


def test_anthropic_calls_an_offered_tool(rows: dict[str, dict[str, Any]]) -> None:
    client = claude(rows)
    tool: Any = {"name": "get_weather", "description": "the weather in a city", "input_schema": WEATHER_SCHEMA}
    called = client.messages.create(model=CLAUDE, max_tokens=100, messages=HELLO, tools=[tool])
    block = called.content[0]
    assert called.stop_reason == "tool_use" and isinstance(block, ToolUseBlock)
    assert block.name == "get_weather" and block.input == WEATHER_ARGUMENTS
    refused = client.messages.create(model=CLAUDE, max_tokens=100, messages=HELLO, tools=[tool],
                                     tool_choice={"type": "none"})
    assert refused.content[0].type == "text"
    result = {"type": "tool_result", "tool_use_id": block.id, "content": "sunny"}
    answered: Any = [*HELLO, {"role": "assistant", "content": [block.model_dump(exclude_none=True)]},
                     {"role": "user", "content": [result]}]
    after = client.messages.create(model=CLAUDE, max_tokens=100, messages=answered, tools=[tool])
    assert after.content[0].type == "text" and after.stop_reason == "end_turn"


ANTHROPIC_FAULTS: dict[str, tuple[type[anthropic.APIStatusError], int, str]] = {
    "401": (anthropic.AuthenticationError, 401, "authentication_error"),
    "429": (anthropic.RateLimitError, 429, "rate_limit_error"),
    "500": (anthropic.InternalServerError, 500, "api_error"),
    "overloaded": (anthropic.InternalServerError, 529, "overloaded_error"),
}


@pytest.mark.parametrize("via", ["header", "model"])
@pytest.mark.parametrize("kind", HTTP_FAULTS)
def test_anthropic_http_faults(rows: dict[str, dict[str, Any]], kind: str, via: str) -> None:
    error, status, error_type = ANTHROPIC_FAULTS[kind]
    client = claude(rows, fault(kind) if via == "header" else None)
    with pytest.raises(error) as caught:
        client.messages.create(model=CLAUDE if via == "header" else f"fault-{kind}", max_tokens=100,
                               messages=HELLO)
    body = caught.value.response.json()
    assert caught.value.status_code == status and body["type"] == "error" and body["error"]["type"] == error_type
    assert caught.value.response.headers["request-id"] == body["request_id"]
    if kind == "429":
        assert caught.value.response.headers["retry-after"] == "1"
        assert caught.value.response.headers["anthropic-ratelimit-requests-remaining"] == "0"


def test_anthropic_error_in_a_200(rows: dict[str, dict[str, Any]]) -> None:
    client = claude(rows, fault("error-200"))
    events = []
    with pytest.raises(anthropic.APIStatusError) as caught:  # an `event: error` after message_start
        for event in client.messages.create(model=CLAUDE, max_tokens=100, messages=HELLO, stream=True):
            events.append(event.type)
    assert events == ["message_start"] and caught.value.status_code == 200
    assert caught.value.body == {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    # A plain answer: the same error body in a 200, handed back unvalidated.
    answer = client.messages.create(model=CLAUDE, max_tokens=100, messages=HELLO).model_dump()
    assert answer["type"] == "error" and answer["error"]["type"] == "overloaded_error" and answer["content"] is None


def test_anthropic_reset_and_slow(rows: dict[str, dict[str, Any]]) -> None:
    stream = claude(rows, fault("reset")).messages.create(model=CLAUDE, max_tokens=100, messages=HELLO,
                                                          stream=True)
    received = []
    with pytest.raises(anthropic.APIConnectionError):  # the answer began, then the connection dropped
        for event in stream:
            received.append(event.type)
    assert received[:1] == ["message_start"]  # cut after its first events, as mid-answer
    with pytest.raises(anthropic.APIConnectionError):
        claude(rows).messages.create(model="fault-reset", max_tokens=100, messages=HELLO)
    slow = claude(rows, fault("slow-0.3")).messages.create(model=CLAUDE, max_tokens=100, messages=HELLO)
    assert slow.content[0].type == "text"
    with pytest.raises(anthropic.APITimeoutError):
        claude(rows, timeout=0.1).messages.create(model="fault-slow-0.3", max_tokens=100, messages=HELLO)


@pytest.mark.parametrize(("version", "status"), [
    ("2026-10-21", 200), ("2023-06-01", 200), ("2023-01-01", 200), ("2022-12-31", 400), ("2024-02-30", 400),
    ("2024-1-01", 400), ("latest", 400), (None, 400)])
def test_anthropic_served_takes_any_dated_version(rows: dict[str, dict[str, Any]], version: str | None,
                                                  status: int) -> None:
    row = rows["anthropic"]
    headers = {"x-api-key": row["credential"]["api_key"], **({"anthropic-version": version} if version else {})}
    answer = httpx.post(row["base_url"] + "/v1/messages", headers=headers, timeout=5,
                        json={"model": CLAUDE, "max_tokens": 10, "messages": HELLO})
    assert answer.status_code == status, answer.text


def test_anthropic_bare_app_stays_strict_about_versions() -> None:
    """The tests' fake (no emulator row) knows its versions only; the SDK's is added by hand."""
    with TestClient(anthropic_fake.create_app(anthropic_fake.FakeAnthropicState())) as client:
        answer = client.post("/v1/messages", json={"model": CLAUDE, "max_tokens": 10, "messages": HELLO},
                             headers={"x-api-key": anthropic_fake.DEFAULT_API_KEY, "anthropic-version": "2026-10-21"})
    assert answer.status_code == 400 and "is not a valid version" in answer.text


# -- Hugging Face -----------------------------------------------------------------------------------------


def hf(rows: dict[str, dict[str, Any]], model: str = HF_CHAT_MODEL, headers: dict[str, str] | None = None,
       timeout: float = 5.0) -> InferenceClient:
    row = rows["huggingface"]
    return InferenceClient(base_url=f"{row['base_url']}/models/{model}", token=row["credential"]["api_token"],
                           headers=headers, timeout=timeout)


def test_huggingface_fixed_and_echoed_replies_and_streams(rows: dict[str, dict[str, Any]]) -> None:
    assert hf(rows, headers=reply(FIXED)).chat_completion(messages=HELLO).choices[0].message.content == FIXED
    client = hf(rows, headers=reply("echo"))  # kept referenced: a collected client closes the stream it opened
    chunks = list(client.chat_completion(messages=HELLO, stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == ASKED
    generator = hf(rows, HF_GENERATION_MODEL, reply("echo"))
    assert generator.text_generation(ASKED, return_full_text=False) == ASKED
    events = generator.text_generation(ASKED, stream=True, details=True)
    assert "".join(e.token.text for e in events if not e.token.special) == ASKED  # TGI ends with a special </s>


def test_huggingface_calls_an_offered_tool(rows: dict[str, dict[str, Any]]) -> None:
    client = hf(rows)
    called = client.chat_completion(messages=HELLO, tools=[WEATHER])
    calls = called.choices[0].message.tool_calls
    assert calls
    call = calls[0]
    assert call.function.name == "get_weather" and json.loads(call.function.arguments) == WEATHER_ARGUMENTS
    refused = client.chat_completion(messages=HELLO, tools=[WEATHER], tool_choice="none")
    assert refused.choices[0].message.tool_calls is None and refused.choices[0].message.content


HF_FAULTS = {"401": (401, "Invalid credentials"), "429": (429, "Rate limit reached"),
             "500": (500, "Internal Server Error"), "overloaded": (503, f"Model {HF_CHAT_MODEL} is currently loading")}


@pytest.mark.parametrize("via", ["header", "model"])
@pytest.mark.parametrize("kind", HTTP_FAULTS)
def test_huggingface_http_faults(rows: dict[str, dict[str, Any]], kind: str, via: str) -> None:
    status, words = HF_FAULTS[kind]
    client = hf(rows, headers=fault(kind) if via == "header" else None)
    with pytest.raises(HfHubHTTPError) as caught:  # the model in the body: the client's `model=`
        client.chat_completion(messages=HELLO, model=None if via == "header" else f"fault-{kind}")
    response = caught.value.response
    assert response.status_code == status and response.json()["error"].startswith(words)
    if kind == "429":
        assert response.headers["retry-after"] == "1"
    if kind == "overloaded":
        assert response.json()["estimated_time"] > 0


def test_huggingface_error_in_a_200(rows: dict[str, dict[str, Any]]) -> None:
    client = hf(rows, headers=fault("error-200"))
    received = []
    with pytest.raises(GenerationError, match="Request failed during generation"):  # TGI's error event
        for chunk in client.chat_completion(messages=HELLO, stream=True):
            received.append(chunk)
    assert received
    generator = hf(rows, HF_GENERATION_MODEL, fault("error-200"))
    with pytest.raises(GenerationError):
        list(generator.text_generation(ASKED, stream=True))
    answer = client.chat_completion(messages=HELLO)  # a plain answer: the error body in a 200
    assert answer.choices is None and answer.error.startswith("Request failed during generation")


def test_huggingface_reset_and_slow(rows: dict[str, dict[str, Any]]) -> None:
    client = hf(rows, headers=fault("reset"))
    received = []
    with pytest.raises(httpx2.RemoteProtocolError):  # huggingface_hub's own httpx, unwrapped
        for chunk in client.chat_completion(messages=HELLO, stream=True):
            received.append(chunk)
    assert received  # cut mid-stream
    assert hf(rows, headers=fault("slow-0.3")).chat_completion(messages=HELLO).choices[0].message.content
    with pytest.raises(InferenceTimeoutError):
        hf(rows, headers=fault("slow-0.3"), timeout=0.1).chat_completion(messages=HELLO)


# -- Replicate --------------------------------------------------------------------------------------------


def replicate_client(rows: dict[str, dict[str, Any]], headers: dict[str, str] | None = None,
                     timeout: float = 5.0) -> ReplicateClient:
    """Replicate's client has no max_retries; it retries only GETs (on 429/503/504), and the
    faults below are asked of creates (POST)."""
    row = rows["replicate"]
    client = ReplicateClient(api_token=row["credential"]["api_token"], base_url=row["base_url"],
                              headers=headers or {}, timeout=httpx.Timeout(timeout))
    client.poll_interval = 0.01  # the emulator finishes a prediction after a few polls
    return client


def finished_output(client: ReplicateClient, prompt: str) -> str:
    prediction = client.models.predictions.create(model=LLAMA, input={"prompt": prompt})
    prediction.wait()
    assert prediction.status == "succeeded" and isinstance(prediction.output, list)
    return "".join(prediction.output)


def test_replicate_fixed_and_echoed_replies_and_stream(rows: dict[str, dict[str, Any]]) -> None:
    assert finished_output(replicate_client(rows, reply(FIXED)), ASKED) == FIXED
    assert finished_output(replicate_client(rows, reply("echo")), ASKED) == ASKED
    events = replicate_client(rows, reply("echo")).stream(LLAMA, input={"prompt": ASKED})
    assert "".join(str(e) for e in events) == ASKED


REPLICATE_FAULTS = {"401": (401, "Unauthenticated"), "429": (429, "Request was throttled."),
                    "500": (500, "Internal Server Error"), "overloaded": (503, "Service Unavailable")}


@pytest.mark.parametrize("kind", HTTP_FAULTS)
def test_replicate_http_faults(rows: dict[str, dict[str, Any]], kind: str) -> None:
    status, title = REPLICATE_FAULTS[kind]
    with pytest.raises(ReplicateError) as caught:
        replicate_client(rows, fault(kind)).models.predictions.create(model=LLAMA, input={"prompt": ASKED})
    assert caught.value.status == status and caught.value.title == title
    if kind == "429":
        assert caught.value.detail == "Request was throttled. Expected available in 1 second."


def test_replicate_error_in_a_200_is_a_failed_prediction(rows: dict[str, dict[str, Any]]) -> None:
    client = replicate_client(rows, fault("error-200"))
    with pytest.raises(ModelError) as caught:
        client.run(LLAMA, input={"prompt": ASKED})
    assert caught.value.prediction.status == "failed" and "out of memory" in str(caught.value.prediction.error)
    with pytest.raises(RuntimeError, match="out of memory"):  # the stream's `error` event
        list(client.stream(LLAMA, input={"prompt": ASKED}))


def test_replicate_reset_and_slow(rows: dict[str, dict[str, Any]]) -> None:
    with pytest.raises(httpx.RemoteProtocolError):
        replicate_client(rows, fault("reset")).models.predictions.create(model=LLAMA, input={"prompt": ASKED})
    client = replicate_client(rows)
    prediction = client.models.predictions.create(model=LLAMA, input={"prompt": ASKED}, stream=True)
    assert prediction.urls
    received = []
    headers = {"Authorization": f"Bearer {rows['replicate']['credential']['api_token']}",
               "Accept": "text/event-stream", **fault("reset")}
    with pytest.raises(httpx.RemoteProtocolError), \
            httpx.stream("GET", prediction.urls["stream"], headers=headers, timeout=5) as response:
        for event in EventSource(client, response):
            received.append(str(event))
    assert received  # cut mid-stream
    slow = replicate_client(rows, fault("slow-0.3"))
    assert slow.predictions.get(prediction.id).id == prediction.id
    # A create waits as long as it takes (the client sets no timeout on it); a GET does not.
    with pytest.raises(httpx.ReadTimeout):
        replicate_client(rows, fault("slow-0.3"), timeout=0.1).predictions.get(prediction.id)
