"""The pass-through translator for vendors that already speak OpenAI's wire format.

OpenAI's format is ours, so this path is kept lean: the client's JSON is re-encoded
once with the upstream model name, streamed chunks pass through as bytes and are
parsed only when they carry something the gateway needs (usage, an error). Vendor
modules (openai.py, later Azure, Minimax v2, Zhipu, TGI) subclass this and override
the small hooks: `headers`, `url`, `request_body`, `error_from_response`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson

from translators._http import FilePart, Headers, UpstreamResponse
from translators._json import loads as bounded_json
from translators._sse import DONE_DATA, SSEDecoder
from translators.base import CallContext, Translator
from translators.errors import (
    ApiError,
    UpstreamError,
    body_text,
    parse_retry_after,
    status_for_error_body,
    upstream_status_error,
)
from translators.types import (
    ChatRequest,
    CompletionRequest,
    EmbeddingRequest,
    JSONObject,
    StreamChunk,
    TranscriptionRequest,
    TranscriptionResult,
    Usage,
)


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


class OpenAICompatible(Translator):
    def headers(self, ctx: CallContext) -> dict[str, str]:
        return {"Authorization": f"Bearer {ctx.credential['api_key']}"}

    def url(self, ctx: CallContext, endpoint: str) -> str:
        return f"{ctx.base_url}/{endpoint}"

    def request_body(self, raw: JSONObject, ctx: CallContext) -> JSONObject:
        raw["model"] = ctx.model
        return raw

    def error_from_response(self, status: int, body: Any, headers: Headers) -> ApiError:
        message, code, param = openai_error_fields(body, f"HTTP {status} from {self.name}")
        return upstream_status_error(self.name, status, message, code, param, parse_retry_after(headers))

    def stream_error(self, err: Any) -> ApiError:
        """An error object sent inside the stream after the status was 200."""
        message, code, _ = openai_error_fields({"error": err}, f"{self.name} failed mid-stream")
        return UpstreamError(502, f"{self.name} failed mid-stream: {message}", "server_error",
                             code or "upstream_error")

    def _check(self, resp: UpstreamResponse) -> JSONObject:
        if resp.status != 200:
            raise self.error_from_response(resp.status, resp.json() if resp.body else None, resp.headers)
        body = resp.json()
        if not isinstance(body, dict):
            raise UpstreamError(502, f"{self.name} returned a response that is not a JSON object", "server_error",
                                "upstream_bad_response")
        if "error" in body and not body.get("choices") and not body.get("data"):
            raise self.error_from_response(status_for_error_body(body), body, resp.headers)
        return body

    async def _post(self, endpoint: str, raw: JSONObject, ctx: CallContext) -> JSONObject:
        url = self.url(ctx, endpoint)
        resp = await ctx.http.post_json(url, self.request_body(raw, ctx), self.headers(ctx))
        return self._check(resp)

    async def _stream(self, endpoint: str, raw: JSONObject, ctx: CallContext) -> AsyncIterator[StreamChunk]:
        # Ask for usage even when the client did not: the gateway accounts for it,
        # and the proxy drops the usage chunk again unless the client asked.
        raw["stream_options"] = {**(raw.get("stream_options") or {}), "include_usage": True}
        body = self.request_body(raw, ctx)
        async with ctx.http.stream("POST", self.url(ctx, endpoint), headers=self.headers(ctx), json=body) as resp:
            if resp.status != 200:
                payload = await resp.read()
                try:
                    parsed = bounded_json(payload) if payload else None
                except orjson.JSONDecodeError:
                    parsed = {"error": {"message": body_text(payload)}}
                raise self.error_from_response(resp.status, parsed, resp.headers)
            decoder = SSEDecoder(resp.max_event_bytes)
            pending_usage: tuple[JSONObject, Usage] | None = None
            done = False
            events = 0
            prefix = b""  # the body's first bytes, kept until an event shows it really is SSE
            async for data in resp.chunks():
                if not events and len(prefix) < _HEAD_LIMIT:
                    prefix += data
                for event in decoder.feed(data):
                    events += 1
                    chunk = self._pass_chunk(event.data)
                    if chunk is _END:
                        done = True
                        break
                    if isinstance(chunk, tuple):  # (content chunk, (head, usage)): usage goes last
                        chunk, pending_usage = chunk
                        yield chunk
                    elif chunk is not None:
                        yield chunk  # type: ignore[misc]
                if done:
                    break
            if not done:
                for event in decoder.flush():
                    events += 1
                    chunk = self._pass_chunk(event.data)
                    if isinstance(chunk, tuple):
                        chunk, pending_usage = chunk
                    if isinstance(chunk, StreamChunk):
                        yield chunk
            if not events:
                raise self._not_a_stream(prefix, resp.headers)
            if pending_usage is not None:
                head, usage = pending_usage
                yield StreamChunk.of({**head, "choices": [], "usage": usage.as_dict()}, usage)

    def _not_a_stream(self, body: bytes, headers: Headers) -> ApiError:
        """A 200 answer to a streamed request that holds no event at all: an error in a
        200 body (compatibles do this) or something that is not a stream. Passing it on
        as an empty stream would tell the client the call succeeded with no output."""
        try:
            parsed = bounded_json(body) if body else None
        except orjson.JSONDecodeError:
            parsed = None
        if isinstance(parsed, dict) and parsed.get("error") is not None:
            return self.error_from_response(status_for_error_body(parsed), parsed, headers)
        return UpstreamError(502, f"{self.name} answered a streamed request without any event", "server_error",
                             "upstream_bad_response")

    def _pass_chunk(self, data: bytes) -> StreamChunk | tuple[JSONObject, Usage] | object | None:
        """Decide what one upstream event becomes, parsing only when its bytes say it must."""
        if not data or data == DONE_DATA:
            return _END if data == DONE_DATA else None
        if b'"error"' not in data and b'"usage"' not in data:
            return StreamChunk(data)
        try:
            parsed = bounded_json(data)
        except orjson.JSONDecodeError:
            raise UpstreamError(502, f"{self.name} sent a stream event that is not JSON", "server_error",
                                "upstream_bad_response") from None
        if not isinstance(parsed, dict):
            return None
        if parsed.get("error") is not None and not parsed.get("choices"):
            raise self.stream_error(parsed["error"])
        usage = Usage.from_openai(parsed.get("usage"))
        if usage is None:
            return StreamChunk(data)
        if not parsed.get("choices"):
            return StreamChunk(data, usage)
        # Some compatibles put usage on a content chunk; the contract is a separate
        # usage-only chunk at the end, so split it off.
        head = {k: v for k, v in parsed.items() if k not in ("choices", "usage")}
        parsed.pop("usage")
        return StreamChunk.of(parsed), (head, usage)

    # -- endpoints ---------------------------------------------------------------

    async def chat(self, req: ChatRequest, ctx: CallContext) -> JSONObject:
        return await self._post("chat/completions", req.raw_with(), ctx)

    def chat_stream(self, req: ChatRequest, ctx: CallContext) -> AsyncIterator[StreamChunk]:
        return self._stream("chat/completions", req.raw_with(), ctx)

    async def complete(self, req: CompletionRequest, ctx: CallContext) -> JSONObject:
        return await self._post("completions", req.raw_with(), ctx)

    def complete_stream(self, req: CompletionRequest, ctx: CallContext) -> AsyncIterator[StreamChunk]:
        return self._stream("completions", req.raw_with(), ctx)

    async def embed(self, req: EmbeddingRequest, ctx: CallContext) -> JSONObject:
        return await self._post("embeddings", req.raw_with(), ctx)

    async def transcribe(self, req: TranscriptionRequest, ctx: CallContext) -> TranscriptionResult:
        fields = [("model", ctx.model), ("response_format", req.response_format)]
        for key in ("language", "prompt", "temperature"):
            value = getattr(req, key)
            if value is not None:
                fields.append((key, str(value)))
        for granularity in req.timestamp_granularities or ():
            fields.append(("timestamp_granularities[]", granularity))
        files = [FilePart("file", req.filename, req.file, req.content_type)]
        resp = await ctx.http.request("POST", self.url(ctx, "audio/transcriptions"), headers=self.headers(ctx),
                                      files=files, fields=fields)
        if resp.status != 200:
            raise self.error_from_response(resp.status, resp.json(), resp.headers)
        media_type = resp.headers.get("Content-Type") or (
            "application/json" if req.response_format in ("json", "verbose_json") else "text/plain; charset=utf-8")
        return TranscriptionResult(resp.body, media_type)


_END = object()
_HEAD_LIMIT = 65536  # how much of a stream that shows no event is kept to explain it
