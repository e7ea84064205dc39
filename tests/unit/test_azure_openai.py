"""The Azure OpenAI translator without a server: URLs, headers, deployment names, the
stream clean-up on Azure-shaped streams, and the error mapping on its error bodies (our fixtures in
tests/fixtures/azure-openai/, written from ../shared/vendors/azure-openai.md).
I/O goes through a stub `UpstreamClient` that records what would have been sent."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import orjson
import pytest

from keystore.models import Credential, validate_credential
from tests.fixture_data import fixture
from translators import REGISTRY
from translators._compatible import (
    CHAT,
    COMPLETIONS,
    EMBEDDINGS,
    TRANSCRIPTIONS,
    CompatibleTranslator,
    PassState,
)
from translators._http import UpstreamResponse
from translators._sse import SSEEvent
from translators.azure_openai import (
    CODEC,
    DEFAULT_API_VERSION,
    SPEC,
    error_from_response,
    fixup_event,
    for_deployment,
    from_vendor_response,
    headers,
    supports_stream_options,
)
from translators.base import CallContext
from translators.errors import ApiError
from translators.types import (
    ChatRequest,
    CompletionRequest,
    EmbeddingRequest,
    ModelType,
    StreamChunk,
)

T = REGISTRY["azure_openai"]
assert isinstance(T, CompatibleTranslator)
ENDPOINT = "https://contoso.openai.azure.com"
KEY = "fake-azure-key-unit-000000000000"
USER = [{"role": "user", "content": "hi"}]


def recording(name: str) -> bytes:
    return fixture("azure-openai", name)


def cred(**fields: str) -> Credential:
    values = {"endpoint": ENDPOINT, "api_key": KEY, **fields}
    return validate_credential(T.name, T.credential_fields, values)


class StubStream:
    max_event_bytes = 4 * 1024 * 1024  # as `UpstreamStream`: the decoder's limit

    def __init__(self, status: int, body: bytes, pieces: int) -> None:
        self.status, self.headers, self._body, self._pieces = status, {}, body, pieces
        self.closed = False

    async def read(self) -> bytes:
        return self._body

    async def chunks(self) -> AsyncIterator[bytes]:
        step = max(1, len(self._body) // self._pieces)
        for i in range(0, len(self._body), step):  # awkward cuts: mid-line, mid-JSON
            yield self._body[i:i + step]


class StubHTTP:
    """Stands in for `UpstreamClient`: answers with canned bytes, records every call."""

    def __init__(self, status: int = 200, body: bytes = b"{}", headers: dict[str, str] | None = None,
                 pieces: int = 7) -> None:
        self.status, self.body, self.headers, self.pieces = status, body, headers or {}, pieces
        self.calls: list[dict[str, Any]] = []
        self.streams: list[StubStream] = []

    async def request(self, method: str, url: str, *, headers: Any = None, json: Any = None,
                      **_: Any) -> UpstreamResponse:
        self.calls.append({"url": url, "json": json, "headers": dict(headers or {})})
        return UpstreamResponse(self.status, self.headers, self.body)

    @asynccontextmanager
    async def stream(self, method: str, url: str, *, headers: Any = None, json: Any = None) -> AsyncIterator[Any]:
        self.calls.append({"url": url, "json": json, "headers": dict(headers or {})})
        stream = StubStream(self.status, self.body, self.pieces)
        self.streams.append(stream)
        try:
            yield stream
        finally:
            stream.closed = True


def ctx(http: Any = None, model: str = "prod-chat", context_base_url: str | None = None,
        **fields: str) -> CallContext:
    """Built the way the gateway builds it: the credential's base_url, else the provider default."""
    credential = cred(**fields)
    base_url = context_base_url or credential.base_url or T.default_base_url
    return CallContext(http or StubHTTP(), credential, model, base_url, "req_test")


async def collect(chunks: AsyncIterator[StreamChunk]) -> list[StreamChunk]:
    return [c async for c in chunks]


def events(*data: bytes) -> list[StreamChunk]:
    """What the codec makes of these stream events (the stream's state kept across them)."""
    state = PassState("prod-chat")
    assert CODEC.from_vendor_event is not None
    return [c for d in data for c in CODEC.from_vendor_event(SSEEvent(data=d), state)]


# -- registry and credential schema ---------------------------------------------------------------


def test_registered_per_model_for_every_type() -> None:
    assert isinstance(T, CompatibleTranslator) and T.spec is SPEC
    assert T.per_model and T.model_types == frozenset(ModelType)


def test_credential_schema_secrets_and_optional_fields() -> None:
    c = cred(api_version="2024-06-01", base_model="gpt-4o")
    masked = c.masked()
    assert masked["endpoint"] == ENDPOINT and masked["api_version"] == "2024-06-01"
    assert masked["base_model"] == "gpt-4o" and KEY not in str(masked) and KEY not in repr(c)
    assert cred().get("api_version") is None  # optional: the default applies at call time
    with pytest.raises(ValueError, match="endpoint"):
        validate_credential(T.name, T.credential_fields, {"api_key": KEY})


# -- URLs and headers ------------------------------------------------------------------------------


@pytest.mark.parametrize(("endpoint", "expected"), [
    (CHAT, "chat/completions"), (COMPLETIONS, "completions"),
    (EMBEDDINGS, "embeddings"), (TRANSCRIPTIONS, "audio/transcriptions")])
def test_url_per_operation_with_default_api_version(endpoint: str, expected: str) -> None:
    assert T.url(ctx(), endpoint) == \
        f"{ENDPOINT}/openai/deployments/prod-chat/{expected}?api-version={DEFAULT_API_VERSION}"


def test_url_with_trailing_slash_and_given_version() -> None:
    c = ctx(endpoint=ENDPOINT + "/", api_version="2025-01-01-preview")
    assert T.url(c, EMBEDDINGS) == f"{ENDPOINT}/openai/deployments/prod-chat/embeddings?api-version=2025-01-01-preview"


def test_base_url_replaces_the_endpoint() -> None:
    c = ctx(base_url="https://apim.example.net/aoai/")
    assert T.url(c, CHAT).startswith("https://apim.example.net/aoai/openai/deployments/prod-chat/")
    # A context built with an explicit base_url (a test fake, a contract suite) wins too.
    c = ctx(context_base_url="http://127.0.0.1:9999")
    assert T.url(c, CHAT).startswith("http://127.0.0.1:9999/openai/deployments/prod-chat/")


def test_headers_api_key_only() -> None:
    assert headers(ctx()) == {"api-key": KEY}


@pytest.mark.parametrize("endpoint", ["http://contoso.openai.azure.com", "ftp://contoso", "contoso.openai.azure.com",
                                      "https://user:pw@contoso.openai.azure.com", "https://c.example?x=1"])
def test_bad_endpoint_is_refused_without_echoing_it(endpoint: str) -> None:
    with pytest.raises(ApiError) as caught:
        T.url(ctx(endpoint=endpoint), CHAT)
    assert caught.value.status == 400 and caught.value.code == "invalid_credential"
    assert endpoint not in caught.value.message


@pytest.mark.parametrize("endpoint", ["http://127.0.0.1:8080", "http://localhost:1", "https://x.cognitiveservices.azure.com"])
def test_loopback_http_and_other_azure_domains_are_fine(endpoint: str) -> None:
    assert T.url(ctx(endpoint=endpoint), EMBEDDINGS).startswith(endpoint + "/openai/deployments/")


@pytest.mark.parametrize("version", ["latest", "2024-10-21&x=1", "v1", "2024-10-21-beta"])
def test_bad_api_version_is_refused(version: str) -> None:
    with pytest.raises(ApiError) as caught:
        T.url(ctx(api_version=version), CHAT)
    assert caught.value.status == 400 and caught.value.code == "invalid_credential"


# -- deployment names --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["prod-chat", "gpt-4o", "gpt-35-turbo.v2", "my_deploy", "a", "x" * 64])
def test_valid_deployment_names(name: str) -> None:
    T.check_model(name)


@pytest.mark.parametrize("name", ["../x", "..", "%2e%2e", "%2e%2e/x", "a/b", "a/../b", "./x", ".hidden", "a b",
                                  "a?b=c", "a#b", "a\\b", "", "x" * 65, "prod:chat", "prod@chat", "a%2fb"])
def test_path_changing_deployment_names_are_refused(name: str) -> None:
    with pytest.raises(ApiError) as caught:
        T.check_model(name)
    assert caught.value.status == 400 and caught.value.code == "invalid_model_id" and caught.value.param == "model"


async def test_a_bad_deployment_is_never_dispatched() -> None:
    http = StubHTTP()
    req = ChatRequest.parse({"model": "../x", "messages": USER})
    with pytest.raises(ApiError) as caught:
        await T.chat(req, ctx(http, model="../x"))
    assert caught.value.status == 400
    with pytest.raises(ApiError):
        await collect(T.chat_stream(req, ctx(http, model="%2e%2e")))
    assert http.calls == []


# -- request bodies ------------------------------------------------------------------------------------


async def test_chat_body_passes_through_with_the_deployment_as_model() -> None:
    body = {"model": "prod-chat", "messages": [{"role": "user", "content": [
        {"type": "text", "text": "what is this?"}, {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA=="}}]}],
        "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}],
        "tool_choice": "required", "parallel_tool_calls": False, "response_format": {"type": "json_object"},
        "seed": 7, "data_sources": [{"type": "azure_search"}]}
    http = StubHTTP(body=recording("chat_response.json"))
    await T.chat(ChatRequest.parse(body), ctx(http))
    sent = http.calls[0]
    assert sent["json"] == body
    assert sent["headers"] == {"api-key": KEY}


@pytest.mark.parametrize(("version", "kept"), [
    ("2024-10-21", True), ("2024-08-01-preview", True), ("2025-01-01-preview", True),
    ("2024-06-01", False), ("2024-02-01", False), ("2023-05-15", False)])
async def test_stream_options_only_where_the_api_version_has_them(version: str, kept: bool) -> None:
    assert supports_stream_options(version) is kept
    http = StubHTTP(body=b"data: [DONE]\n\n")
    req = ChatRequest.parse({"model": "prod-chat", "messages": USER, "stream": True,
                             "stream_options": {"include_usage": True}})
    await collect(T.chat_stream(req, ctx(http, api_version=version)))
    sent = http.calls[0]["json"]
    assert ("stream_options" in sent) is kept
    if kept:
        assert sent["stream_options"] == {"include_usage": True}
    assert sent["stream"] is True


# -- streams ---------------------------------------------------------------------------------------------


async def test_azure_stream_is_cleaned() -> None:
    http = StubHTTP(body=recording("chat_stream.sse"), pieces=13)
    req = ChatRequest.parse({"model": "prod-chat", "messages": USER, "stream": True})
    chunks = await collect(T.chat_stream(req, ctx(http)))
    parsed = [orjson.loads(c.data) for c in chunks]
    assert all(p["choices"] and p["id"] == "chatcmpl-A1kP7vXe3QsN0dHw5RtY2uGm8ZcLb" for p in parsed)
    assert not any("prompt_filter_results" in p for p in parsed)
    assert parsed[0]["choices"][0]["delta"]["role"] == "assistant"
    assert "".join(p["choices"][0]["delta"].get("content") or "" for p in parsed) == "Tea or coffee?"
    assert [p["choices"][0]["finish_reason"] for p in parsed][-1] == "stop"
    assert all(c.usage is None for c in chunks)  # the stream has no usage: none is invented
    assert http.streams[0].closed


async def test_old_api_version_stream_head_is_cleaned() -> None:
    http = StubHTTP(body=recording("chat_stream_2023-07-01-preview_head.sse"), pieces=5)
    req = ChatRequest.parse({"model": "prod-chat", "messages": USER, "stream": True})
    chunks = await collect(T.chat_stream(req, ctx(http, api_version="2023-07-01-preview")))
    assert len(chunks) == 1 and chunks[0].usage is None  # `usage: null` is not usage
    only = orjson.loads(chunks[0].data)
    assert only["id"].startswith("chatcmpl-") and only["choices"][0]["delta"] == {"role": "assistant"}
    assert "stream_options" not in http.calls[0]["json"]


def test_plain_content_chunk_passes_as_the_same_bytes() -> None:
    data = recording("chat_stream.sse").split(b"\n\n")[2][len(b"data: "):]
    [out] = events(data)
    assert out.data is data


def test_prompt_filter_chunk_is_dropped() -> None:
    first = recording("chat_stream.sse").split(b"\n\n")[0][len(b"data: "):]
    assert events(first) == []
    assert fixup_event(orjson.loads(first), PassState("prod-chat")) is None


ANNOTATION = {"choices": [{"content_filter_offsets": {"check_offset": 35, "start_offset": 35, "end_offset": 44},
                           "content_filter_results": {"hate": {"filtered": False, "severity": "safe"}},
                           "finish_reason": None, "index": 0}], "created": 0, "id": "", "model": "", "object": ""}


def test_annotation_chunk_without_delta_is_dropped() -> None:
    assert events(orjson.dumps(ANNOTATION)) == []


def test_annotation_choice_beside_a_content_choice_is_dropped_alone() -> None:
    chunk = {"id": "c", "object": "chat.completion.chunk", "choices": [
        {"index": 0, "delta": {"content": "x"}, "content_filter_results": {}}, ANNOTATION["choices"][0]]}
    [out] = events(orjson.dumps(chunk))
    assert orjson.loads(out.data)["choices"] == [chunk["choices"][0]]


def test_deltaless_choice_with_a_finish_reason_keeps_the_finish() -> None:
    chat = {"id": "c", "object": "chat.completion.chunk",
            "choices": [{"index": 0, "finish_reason": "content_filter", "content_filter_results": {}}]}
    assert fixup_event(chat, PassState("prod-chat"))["choices"][0] == {**chat["choices"][0], "delta": {}}
    completion = {**chat, "object": "text_completion"}
    assert fixup_event(completion, PassState("prod-chat"))["choices"][0]["text"] == ""


def test_completion_chunks_and_content_filter_finish_pass_untouched() -> None:
    text = b'{"id":"cmpl-1","object":"text_completion","choices":[{"text":"Hi","index":0,"finish_reason":null}]}'
    [out] = events(text)
    assert out.data is text
    finish = (b'{"id":"c","choices":[{"content_filter_results":{"violence":{"filtered":true,"severity":"medium"}},'
              b'"delta":{},"finish_reason":"content_filter","index":0}]}')
    [out] = events(finish)
    assert out.data is finish


def test_usage_chunk_with_empty_choices_is_kept_and_marked() -> None:
    usage = b'{"id":"chatcmpl-1","choices":[],"usage":{"prompt_tokens":3,"completion_tokens":4,"total_tokens":7}}'
    [out] = events(usage)
    assert out.usage is not None and out.usage.total_tokens == 7


def test_mid_stream_errors() -> None:
    with pytest.raises(ApiError) as caught:
        events(orjson.dumps({"error": {"message": "boom", "type": "server_error", "code": None}}))
    assert caught.value.status == 502 and "boom" in caught.value.message
    with pytest.raises(ApiError) as caught:
        events(orjson.dumps(json.loads(recording("error_400_content_filter.json"))))
    assert (caught.value.status, caught.value.code) == (400, "content_filter")


async def test_closing_the_stream_closes_the_upstream() -> None:
    http = StubHTTP(body=recording("chat_stream.sse"), pieces=20)
    req = ChatRequest.parse({"model": "prod-chat", "messages": USER, "stream": True})
    stream = T.chat_stream(req, ctx(http))
    first = await anext(stream)  # type: ignore[call-overload]
    assert orjson.loads(first.data)["choices"]
    assert not http.streams[0].closed
    await stream.aclose()  # type: ignore[attr-defined]
    assert http.streams[0].closed


# -- errors -------------------------------------------------------------------------------------------------


def test_deployment_not_found_is_model_not_found_naming_the_deployment() -> None:
    body = json.loads(recording("error_404_deployment_not_found.json"))
    err = error_from_response(404, body, {})
    assert (err.status, err.code, err.param, err.type) == (404, "model_not_found", "model", "invalid_request_error")
    named = for_deployment(err, "prod-chat")
    assert "'prod-chat'" in named.message and "does not exist" in named.message and named.code == "model_not_found"


async def test_deployment_not_found_through_post_and_stream() -> None:
    body = recording("error_404_deployment_not_found.json")
    for call in ("chat", "stream", "embed"):
        http = StubHTTP(status=404, body=body)
        c = ctx(http, model="gone-deploy")
        with pytest.raises(ApiError) as caught:
            if call == "chat":
                await T.chat(ChatRequest.parse({"model": "x", "messages": USER}), c)
            elif call == "embed":
                await T.embed(EmbeddingRequest.parse({"model": "x", "input": "a"}), c)
            else:
                await collect(T.chat_stream(ChatRequest.parse({"model": "x", "messages": USER, "stream": True}), c))
        assert caught.value.status == 404 and caught.value.code == "model_not_found"
        assert "'gone-deploy'" in caught.value.message, call


def test_content_filter_is_400_content_filter() -> None:
    err = error_from_response(400, json.loads(recording("error_400_content_filter.json")), {})
    assert (err.status, err.code, err.param, err.type) == (400, "content_filter", "prompt", "invalid_request_error")
    assert "content management policy" in err.message and "hate (high)" in err.message
    assert "violence" not in err.message.split("[filtered:")[1]  # low, not filtered: not named


def test_401_with_string_code_is_credential_rejected() -> None:
    body = {"error": {"code": "401", "message": "Access denied due to invalid subscription key or wrong API endpoint."}}
    err = error_from_response(401, body, {})
    assert (err.status, err.code, err.type) == (403, "upstream_credential_rejected", "permission_error")
    assert "azure_openai" in err.message and "Access denied" in err.message


@pytest.mark.parametrize(("headers", "retry"), [({"retry-after": "7"}, 7.0), ({"retry-after-ms": "1500"}, 1.5), ({}, None)])
def test_429_string_code_and_retry_headers(headers: dict[str, str], retry: float | None) -> None:
    err = error_from_response(429, {"error": {"code": "429", "message": "Please retry after 7 seconds."}}, headers)
    assert (err.status, err.code, err.retry_after) == (429, "rate_limit_exceeded", retry)


def test_other_statuses() -> None:
    assert error_from_response(500, {"error": {"code": "InternalServerError", "message": "x"}}, {}).status == 502
    not_found = error_from_response(404, {"error": {"code": "404", "message": "Resource not found"}}, {})
    assert (not_found.status, not_found.code) == (404, "upstream_not_found")
    assert "check the endpoint and api_version" in for_deployment(not_found, "d").message
    bad = error_from_response(400, {"error": {"code": None, "message": "Unrecognized request argument supplied: x",
                                              "type": "invalid_request_error", "param": None}}, {})
    assert (bad.status, bad.code, bad.type) == (400, None, "invalid_request_error")
    assert error_from_response(502, b"<html>".decode(), {}).status == 502
    # Statuses are trusted before codes: a 5xx that says content_filter is still an upstream failure.
    assert error_from_response(500, {"error": {"code": "content_filter", "message": "x"}}, {}).status == 502


# -- responses ----------------------------------------------------------------------------------------------


def test_chat_response_without_object_and_model_gets_them() -> None:
    body = from_vendor_response(json.loads(recording("chat_response.json")), "gpt-4o")
    assert body["object"] == "chat.completion" and body["model"] == "gpt-4o"
    assert body["choices"][0]["message"]["content"].startswith("Bonjour! A croissant")
    kept = from_vendor_response({"object": "chat.completion", "model": "gpt-4o-2024-08-06"}, "x")
    assert kept["model"] == "gpt-4o-2024-08-06"


async def test_embeddings_response_without_object_and_model_is_completed() -> None:
    http = StubHTTP(body=recording("embeddings_response.json"))
    body = await T.embed(EmbeddingRequest.parse({"model": "prod-embed", "input": ["this is a test"]}),
                         ctx(http, model="prod-embed", base_model="text-embedding-ada-002"))
    assert body["object"] == "list" and body["model"] == "text-embedding-ada-002"
    assert body["data"][0]["object"] == "embedding" and body["data"][0]["embedding"][0] == 0.021937416
    assert http.calls[0]["url"].endswith("/openai/deployments/prod-embed/embeddings?api-version=2024-10-21")


async def test_completions_use_the_native_endpoint() -> None:
    answer = {"id": "cmpl-1", "object": "text_completion", "created": 1, "model": "gpt-35-turbo-instruct",
              "choices": [{"text": "Hi", "index": 0, "finish_reason": "stop", "logprobs": None}]}
    http = StubHTTP(body=orjson.dumps(answer))
    body = await T.complete(CompletionRequest.parse({"model": "prod-instruct", "prompt": "Say hi"}),
                            ctx(http, model="prod-instruct"))
    assert body == answer
    assert "/openai/deployments/prod-instruct/completions?" in http.calls[0]["url"]
