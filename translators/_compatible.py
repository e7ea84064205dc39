"""Vendors that speak OpenAI's wire format: one translator, composed from a spec row.

OpenAI's format is ours, so this path is kept lean: the client's JSON is re-encoded once
with the upstream model name, streamed chunks pass through as bytes and are parsed only
when they carry something the gateway needs (usage, an error). A vendor that differs
(its auth header, its URL layout, which endpoints it has, how it reports errors, a
request or event it shapes differently) says so in its `CompatibleSpec` row: data and
small pure hooks, never a subclass overriding private methods.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from keystore.models import Credential, CredentialField
from translators._http import FilePart, Headers
from translators._json import loads as bounded_json
from translators._sse import DONE_DATA, SSEEvent
from translators._stream import (
    Codec,
    StreamState,
    exchange,
    openai_error_in_body,
    relay_sse,
    stream_sse,
)
from translators.base import CallContext, NativeApi, Translator, check_model_id
from translators.errors import (
    ApiError,
    bad_response,
    failed_mid_stream,
    parse_retry_after,
    unsupported,
    upstream_status_error,
)
from translators.types import (
    ChatRequest,
    CompletionRequest,
    EmbeddingRequest,
    JSONObject,
    ModelType,
    StreamChunk,
    TranscriptionRequest,
    TranscriptionResult,
    Usage,
)

__all__ = ["CHAT", "COMPLETIONS", "EMBEDDINGS", "OPENAI_PATHS", "TRANSCRIPTIONS", "CompatibleSpec",
           "CompatibleTranslator", "PassState", "bearer", "compatible_codec", "openai_error_fields",
           "openai_errors"]

CHAT, COMPLETIONS, EMBEDDINGS, TRANSCRIPTIONS = "chat", "completions", "embeddings", "transcriptions"
OPENAI_PATHS: Mapping[str, str] = {CHAT: "chat/completions", COMPLETIONS: "completions",
                                   EMBEDDINGS: "embeddings", TRANSCRIPTIONS: "audio/transcriptions"}


def openai_error_fields(body: Any, fallback: str) -> tuple[str, str | None, str | None]:
    """(message, code, param) from an OpenAI-style error body, tolerant of variants."""
    err = body.get("error") if isinstance(body, dict) else None
    if isinstance(err, dict):
        code = err.get("code")
        return (str(err.get("message") or fallback), None if code is None else str(code),
                err.get("param") if isinstance(err.get("param"), str) else None)
    if isinstance(err, str):
        return err, None, None
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        return body["message"], None, None
    return fallback, None, None


def openai_errors(provider: str) -> Callable[[int, Any, Headers | None], ApiError]:
    """The usual `error_from_response`: OpenAI's error body, the status trusted first."""
    def error_from_response(status: int, body: Any, headers: Headers | None) -> ApiError:
        message, code, param = openai_error_fields(body, f"HTTP {status} from {provider}")
        return upstream_status_error(provider, status, message, code, param, parse_retry_after(headers))
    return error_from_response


def openai_stream_error(provider: str) -> Callable[[Any], ApiError]:
    def stream_error(err: Any) -> ApiError:
        message, code, _ = openai_error_fields({"error": err}, "an error event")
        return failed_mid_stream(provider, message, code)
    return stream_error


def bearer(ctx: CallContext) -> dict[str, str]:
    return {"Authorization": f"Bearer {ctx.credential['api_key']}"}


# -- the pass-through stream codec -------------------------------------------------------------


@dataclass(slots=True)
class PassState(StreamState):
    # Usage some compatibles put on a content chunk: split off and sent last, after the
    # content, as the contract's separate usage-only chunk.
    pending_usage: tuple[JSONObject, Usage] | None = None

    def end(self) -> tuple[StreamChunk, ...]:
        self.finished = True
        if self.pending_usage is None:
            return ()
        head, usage = self.pending_usage
        self.pending_usage = None
        return (StreamChunk.of({**head, "choices": [], "usage": usage.as_dict()}, usage),)


EventFixup = Callable[[JSONObject, PassState], JSONObject | None]


def compatible_codec(provider: str, error_from_response: Callable[[int, Any, Headers | None], ApiError] | None = None,
                     stream_error: Callable[[Any], ApiError] | None = None,
                     fixup: EventFixup | None = None,
                     fixup_when: Callable[[bytes], bool] | None = None) -> Codec[PassState]:
    """The codec of an OpenAI-compatible vendor. `fixup` reshapes each parsed event (None
    drops it); without one, events that carry neither usage nor an error are not parsed.
    `fixup_when`, a cheap test of an event's bytes, keeps that saving for the events the
    fixup would leave alone (None: the fixup sees every event)."""
    errors = error_from_response or openai_errors(provider)
    mid_stream = stream_error or openai_stream_error(provider)

    def from_vendor_event(event: SSEEvent, state: PassState) -> Iterable[StreamChunk]:
        data = event.data
        if data == DONE_DATA:
            return state.end()
        if not data:
            return ()
        fix = fixup if fixup_when is None or fixup_when(data) else None
        if fix is None and b'"error"' not in data and b'"usage"' not in data:
            return (StreamChunk(data),)
        try:
            parsed = bounded_json(data)
        except ValueError:
            raise bad_response(provider, "a stream event that is not JSON") from None
        if not isinstance(parsed, dict):
            return ()
        if parsed.get("error") is not None and not parsed.get("choices"):
            raise mid_stream(parsed["error"])
        if fix is not None:
            fixed = fix(parsed, state)
            if fixed is None:
                return state.end() if state.finished else ()
            parsed = fixed
        usage = Usage.from_openai(parsed.get("usage"))
        if usage is None:
            return (StreamChunk(data) if fix is None else StreamChunk.of(parsed),)
        if not parsed.get("choices"):
            return (StreamChunk(data, usage) if fix is None else StreamChunk.of(parsed, usage),)
        head = {k: v for k, v in parsed.items() if k not in ("choices", "usage")}
        parsed.pop("usage")
        state.pending_usage = (head, usage)
        return (StreamChunk.of(parsed),)

    def at_eof(state: PassState) -> Iterable[StreamChunk]:
        return state.end()  # compatibles that end without the end sentinel still ended well

    return Codec(provider, errors, openai_error_in_body(errors), PassState, from_vendor_event, at_eof)


# -- the spec row and its translator ----------------------------------------------------------------


def _no_check(value: Any) -> None:
    return None


@dataclass(frozen=True, slots=True)
class NativeRoute:
    """One of the vendor's own endpoints for a client API (translators/_inbound.py), by data:
    its key in `paths`, a whole answer's usage, and `relay_sse`'s reader of each event."""

    endpoint: str
    usage: Callable[[Any], Usage | None]
    observe: Callable[[str], Callable[[SSEEvent, Any], Usage | None]]  # (provider) -> the reader


@dataclass(frozen=True, slots=True)
class CompatibleSpec:
    name: str
    display_name: str
    key_url: str
    credential_fields: tuple[CredentialField, ...]
    default_base_url: str
    model_types: frozenset[ModelType] = frozenset({ModelType.LLM})
    catalog: Mapping[ModelType, tuple[str, ...]] = field(default_factory=dict)
    model_prefixes: Mapping[ModelType, tuple[str, ...]] = field(default_factory=dict)
    per_model: bool = False
    # Which endpoints the vendor has, and their paths under the base URL. Without
    # `completions`, legacy completions go through the chat path.
    paths: Mapping[str, str] = field(default_factory=lambda: {CHAT: OPENAI_PATHS[CHAT]})
    headers: Callable[[CallContext], dict[str, str]] = bearer
    # The header that carries the gateway's request id (the client's x-request-id when it
    # sent one) to a vendor that records it; None: not sent.
    request_id_header: str | None = None
    # `ctx.base_url` + path by default; Azure puts the deployment and a query in it.
    url: Callable[[CallContext, str], str] | None = None
    # None: `compatible_codec(name)`. A vendor whose stream does not pass through (MiniMax,
    # Spark's HTTP API) brings its own codec, with its own state.
    codec: Codec[Any] | None = None
    # The chat body from the request (default: the client's JSON, the routed model in it).
    to_vendor_request: Callable[[ChatRequest, str], JSONObject] | None = None
    # Streams ask for usage (`stream_options.include_usage`) unless the vendor refuses it.
    stream_usage_option: bool = True
    check_credential: Callable[[Credential], None] = _no_check
    check_model: Callable[[str], None] = check_model_id
    # The JSON body's last touch, knowing the call (every endpoint, streams after their
    # `stream_options`): Azure drops `stream_options` where its api-version has none.
    prepare: Callable[[JSONObject, CallContext], JSONObject] | None = None
    # A whole JSON answer (chat, completions, embeddings), knowing the call: Azure fills
    # in the `object` and `model` its answers may leave out.
    from_vendor_response: Callable[[JSONObject, CallContext], JSONObject] | None = None
    # Any error of a call, reworded with what only the call knows (Azure names the
    # deployment in a 404). It costs streams one generator hop, so only where set.
    call_error: Callable[[ApiError, CallContext], ApiError] | None = None
    # Embeddings the vendor takes otherwise (Zhipu: in batches; MiniMax: its own shape):
    # (request, routed model, `post` of one body to the embeddings path) -> the answer.
    embed: Callable[[EmbeddingRequest, str, Callable[[JSONObject], Awaitable[JSONObject]]],
                    Awaitable[JSONObject]] | None = None
    # The vendor's own endpoints for other client APIs, by the API's name (`Translator.native`).
    native: Mapping[str, NativeRoute] = field(default_factory=dict)


class CompatibleTranslator(Translator):
    """The translator of every `CompatibleSpec` row."""

    def __init__(self, spec: CompatibleSpec) -> None:
        self.spec = spec
        self.name = spec.name
        self.display_name = spec.display_name
        self.key_url = spec.key_url
        self.model_types = spec.model_types
        self.credential_fields = spec.credential_fields
        self.default_base_url = spec.default_base_url
        self.per_model = spec.per_model
        self.catalog = spec.catalog
        self.model_prefixes = spec.model_prefixes
        self.codec = spec.codec or compatible_codec(spec.name)
        self.native = {api: self._native(route) for api, route in spec.native.items()}

    def _native(self, route: NativeRoute) -> NativeApi:
        """The client's body to the vendor's own endpoint, the routed model in it; the answer,
        or the events, as they came (`relay_sse`)."""
        observe = route.observe(self.name)

        async def call(body: JSONObject, forwarded: Mapping[str, str], ctx: CallContext) -> tuple[JSONObject, Usage | None]:
            answer = await self._post(route.endpoint, {**body, "model": ctx.model}, ctx, shaped=False)
            return answer, route.usage(answer)

        def stream(body: JSONObject, forwarded: Mapping[str, str], ctx: CallContext) -> AsyncIterator[StreamChunk]:
            url = self.url(ctx, route.endpoint)
            chunks = relay_sse(ctx.http, self.codec, ctx.model, url, observe, headers=self._headers(ctx),
                               json=self._prepared({**body, "model": ctx.model}, ctx))
            return chunks if self.spec.call_error is None else self._reworded(chunks, ctx)
        return NativeApi(call, stream)

    def check_model(self, model: str) -> None:
        self.spec.check_model(model)

    def check_credential(self, credential: Credential) -> None:
        self.spec.check_credential(credential)

    def url(self, ctx: CallContext, endpoint: str) -> str:
        path = self.spec.paths.get(endpoint)
        if path is None:
            raise unsupported(self.name, {CHAT: "chat completions", EMBEDDINGS: "embeddings",
                                          TRANSCRIPTIONS: "audio transcriptions"}.get(endpoint, endpoint))
        return self.spec.url(ctx, path) if self.spec.url is not None else f"{ctx.base_url}/{path}"

    def _body(self, req: ChatRequest, ctx: CallContext) -> JSONObject:
        build = self.spec.to_vendor_request
        return build(req, ctx.model) if build is not None else req.raw_with(model=ctx.model)

    def _prepared(self, body: JSONObject, ctx: CallContext) -> JSONObject:
        return body if self.spec.prepare is None else self.spec.prepare(body, ctx)

    def _error(self, err: ApiError, ctx: CallContext) -> ApiError:
        return err if self.spec.call_error is None else self.spec.call_error(err, ctx)

    def _headers(self, ctx: CallContext) -> dict[str, str]:
        headers = self.spec.headers(ctx)
        name = self.spec.request_id_header
        return headers if name is None or not ctx.request_id else {**headers, name: ctx.request_id}

    async def _post(self, endpoint: str, body: JSONObject, ctx: CallContext, shaped: bool = True) -> JSONObject:
        try:
            answer = await exchange(ctx.http, self.codec, self.url(ctx, endpoint), self._prepared(body, ctx),
                                    headers=self._headers(ctx))
        except ApiError as err:
            if self.spec.call_error is None:
                raise
            raise self._error(err, ctx) from None
        if not isinstance(answer, dict):
            raise bad_response(self.name, "a response that is not a JSON object")
        hook = self.spec.from_vendor_response
        return answer if hook is None or not shaped else hook(answer, ctx)

    def _stream(self, endpoint: str, body: JSONObject, ctx: CallContext) -> AsyncIterator[StreamChunk]:
        if self.spec.stream_usage_option:
            # Ask for usage even when the client did not: the gateway accounts for it,
            # and the proxy drops the usage chunk again unless the client asked.
            body["stream_options"] = {**(body.get("stream_options") or {}), "include_usage": True}
        url = self.url(ctx, endpoint)  # before the stream opens: an unsupported endpoint is a plain 400
        chunks = stream_sse(ctx.http, self.codec, ctx.model, url, headers=self._headers(ctx),
                            json=self._prepared(body, ctx))
        return chunks if self.spec.call_error is None else self._reworded(chunks, ctx)

    async def _reworded(self, chunks: AsyncIterator[StreamChunk], ctx: CallContext) -> AsyncIterator[StreamChunk]:
        try:
            async for chunk in chunks:
                yield chunk
        except ApiError as err:
            raise self._error(err, ctx) from None
        finally:
            close = getattr(chunks, "aclose", None)  # the upstream closes when the client leaves
            if close is not None:
                await close()

    async def chat(self, req: ChatRequest, ctx: CallContext) -> JSONObject:
        return await self._post(CHAT, self._body(req, ctx), ctx)

    def chat_stream(self, req: ChatRequest, ctx: CallContext) -> AsyncIterator[StreamChunk]:
        return self._stream(CHAT, self._body(req, ctx), ctx)

    async def complete(self, req: CompletionRequest, ctx: CallContext) -> JSONObject:
        if COMPLETIONS not in self.spec.paths:
            return await super().complete(req, ctx)
        return await self._post(COMPLETIONS, req.raw_with(model=ctx.model), ctx)

    def complete_stream(self, req: CompletionRequest, ctx: CallContext) -> AsyncIterator[StreamChunk]:
        if COMPLETIONS not in self.spec.paths:
            return super().complete_stream(req, ctx)
        return self._stream(COMPLETIONS, req.raw_with(model=ctx.model), ctx)

    async def embed(self, req: EmbeddingRequest, ctx: CallContext) -> JSONObject:
        if self.spec.embed is not None:
            # The vendor's hook reads its own answers: `from_vendor_response` is not applied.
            return await self.spec.embed(req, ctx.model, lambda body: self._post(EMBEDDINGS, body, ctx, False))
        return await self._post(EMBEDDINGS, req.raw_with(model=ctx.model), ctx)

    async def transcribe(self, req: TranscriptionRequest, ctx: CallContext) -> TranscriptionResult:
        url = self.url(ctx, TRANSCRIPTIONS)
        fields = [("model", ctx.model), ("response_format", req.response_format)]
        for key in ("language", "prompt", "temperature"):
            value = getattr(req, key)
            if value is not None:
                fields.append((key, str(value)))
        for granularity in req.timestamp_granularities or ():
            fields.append(("timestamp_granularities[]", granularity))
        files = [FilePart("file", req.filename, req.file, req.content_type)]
        resp = await ctx.http.request("POST", url, headers=self._headers(ctx), files=files, fields=fields)
        if resp.status != 200:
            raise self._error(self.codec.error_of(resp.status, resp.body, resp.headers), ctx)
        media_type = resp.headers.get("Content-Type") or (
            "application/json" if req.response_format in ("json", "verbose_json") else "text/plain; charset=utf-8")
        return TranscriptionResult(resp.body, media_type)
