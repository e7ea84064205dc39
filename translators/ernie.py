"""Baidu ERNIE (文心一言, Qianfan v1 "wenxinworkshop" API) behind OpenAI's shapes.

Credential: `api_key`, `secret_key` (a Qianfan app's AK/SK), optional `base_url` (default
https://aip.baidubce.com). Chat (streamed or not), legacy completions through the chat
path, and embeddings. Reference: ../shared/vendors/ernie.md. The pure conversions, and the
rule that makes a history valid for ERNIE, are in `translators/ernie_convert.py`.

Authentication: the AK/SK buy an OAuth access token (`POST {base_url}/oauth/2.0/token`),
sent as `?access_token=` on every call. `TOKENS` caches it per credential (a digest of
base_url + AK + SK) until shortly before it expires (a tenth of its lifetime, at most an
hour, early); concurrent callers needing a new one share one token call (single-flight).
An answer with error 110/111 (token invalid/expired) refreshes the token and retries once.
The cache is module state on purpose: translators never touch the database, and a derived
token is worth keeping only as long as the worker lives.

Models: `CHAT_ENDPOINTS` maps model names to the chat endpoint suffix (`ernie-4.0` ->
`completions_pro`, `ernie-3.5` -> `completions`, `ernie-bot-turbo`/`eb-instant` ->
`eb-instant`, ...). Another name is taken as a custom deployment's endpoint suffix
(`chat/<name>`; ERNIE answers 404 if there is none). `EMBEDDING_ENDPOINTS` maps embedding
models to their endpoint and per-call batch limit (embedding-v1, bge-large-zh/en: 16 texts;
tao-8k: 1); longer inputs are split into batches, and the answers joined in order.

Errors come with HTTP 200 as `{"error_code": N, "error_msg": ...}`, in streams as a bare
JSON body instead of events: mapped by `ERROR_STATUS` (auth -> 403
upstream_credential_rejected, limits -> 429, bad parameters -> 400, outages -> 502/503).

Dropped tuning knobs: `presence_penalty`, `frequency_penalty` (ERNIE's `penalty_score` has
another scale; send it as an extra field), `logit_bias`, `seed`, `parallel_tool_calls`,
`stream_options` (the gateway's). Rejected with a 400: `n` > 1, `logprobs`, more than 4
`stop` sequences, JSON-schema `response_format`, `tool_choice: required`, images,
several tool calls in one assistant turn, token-array embedding input, `dimensions`.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import orjson

from keystore.models import CredentialField
from translators._json import loads as bounded_json
from translators._sse import SSEDecoder
from translators.base import CallContext, Translator, check_model_id
from translators.ernie_convert import (
    ERROR_STATUS,
    TOKEN_ERRORS,
    StreamState,
    conversation,
    embedding_batches,
    error_code,
    error_from_response,
    from_embedding_responses,
    from_vendor_event,
    from_vendor_response,
    incomplete,
    to_vendor_request,
)
from translators.errors import ApiError, scrubbing
from translators.types import (
    ChatRequest,
    EmbeddingRequest,
    JSONObject,
    ModelType,
    StreamChunk,
)

__all__ = ["CHAT_ENDPOINTS", "EMBEDDING_ENDPOINTS", "ERROR_STATUS", "ErnieTranslator", "StreamState", "TOKENS",
           "TokenCache", "conversation", "error_from_response", "from_vendor_event", "from_vendor_response",
           "to_vendor_request"]

PROVIDER = "ernie"
WORKSHOP = "/rpc/2.0/ai_custom/v1/wenxinworkshop"
MAX_REFRESH_MARGIN = 3600.0   # refresh a token up to an hour before it expires
DEFAULT_EXPIRES_IN = 2592000  # 30 days, when the token answer does not say
_ERROR_HEAD_LIMIT = 65536     # how much of a JSON error body in stream mode is read

CHAT_ENDPOINTS: Mapping[str, str] = {
    "ernie-4.0": "completions_pro", "ernie-4.0-8k": "completions_pro", "ernie-bot-4": "completions_pro",
    "ernie-3.5": "completions", "ernie-3.5-8k": "completions", "ernie-bot": "completions",
    "ernie-bot-turbo": "eb-instant", "eb-instant": "eb-instant", "ernie-lite-8k-0922": "eb-instant",
    "ernie-lite": "ernie-lite-8k", "ernie-lite-8k": "ernie-lite-8k", "ernie-lite-8k-0308": "ernie-lite-8k",
    "ernie-speed": "ernie_speed", "ernie-speed-8k": "ernie_speed", "ernie-speed-128k": "ernie-speed-128k",
    "ernie-bot-8k": "ernie_bot_8k", "ernie-tiny-8k": "ernie-tiny-8k",
    "ernie-3.5-8k-0205": "ernie-3.5-8k-0205", "ernie-3.5-8k-1222": "ernie-3.5-8k-1222",
    "ernie-3.5-4k-0205": "ernie-3.5-4k-0205", "bloomz-7b": "bloomz_7b1",
}


@dataclass(frozen=True, slots=True)
class EmbeddingEndpoint:
    suffix: str
    batch: int  # texts per call


EMBEDDING_ENDPOINTS: Mapping[str, EmbeddingEndpoint] = {
    "embedding-v1": EmbeddingEndpoint("embedding-v1", 16),
    "bge-large-zh": EmbeddingEndpoint("bge_large_zh", 16),
    "bge-large-en": EmbeddingEndpoint("bge_large_en", 16),
    "tao-8k": EmbeddingEndpoint("tao_8k", 1),
}


# -- the access-token cache -------------------------------------------------------------------


@dataclass(slots=True)
class _Token:
    value: str
    refresh_at: float  # time.monotonic() after which a new token is fetched


Fetch = Callable[[], Awaitable[tuple[str, float]]]  # -> (access_token, expires_in seconds)


class TokenCache:
    """Derived tokens per credential key, refreshed single-flight: while one fetch for a key
    runs, every other caller of that key awaits it instead of starting its own."""

    def __init__(self) -> None:
        self._tokens: dict[str, _Token] = {}
        self._pending: dict[str, asyncio.Future[str]] = {}

    async def get(self, key: str, fetch: Fetch, stale: str | None = None) -> str:
        """The cached token, or a fresh one if none is cached, it is near expiry, or it is
        `stale` (the vendor just refused it; a token someone else refreshed meanwhile is used)."""
        token = self._tokens.get(key)
        if token is not None and token.value != stale and time.monotonic() < token.refresh_at:
            return token.value
        pending = self._pending.get(key)
        if pending is None or pending.get_loop() is not asyncio.get_running_loop():
            pending = asyncio.ensure_future(self._refresh(key, fetch))
            self._pending[key] = pending
        # shield: a caller that goes away (client disconnect) must not cancel the others' fetch
        return await asyncio.shield(pending)

    async def _refresh(self, key: str, fetch: Fetch) -> str:
        try:
            value, expires_in = await fetch()
            now = time.monotonic()
            self._tokens[key] = _Token(value, now + expires_in - min(MAX_REFRESH_MARGIN, expires_in / 10))
            if len(self._tokens) > 4096:  # forget credentials that went out of use
                for old in [k for k, t in self._tokens.items() if t.refresh_at < now]:
                    del self._tokens[old]
            return value
        finally:
            if self._pending.get(key) is asyncio.current_task():
                del self._pending[key]

    def clear(self) -> None:
        self._tokens.clear()


TOKENS = TokenCache()


def _credential_key(ctx: CallContext) -> str:
    raw = "\0".join((ctx.base_url, ctx.credential["api_key"], ctx.credential["secret_key"]))
    return hashlib.sha256(raw.encode()).hexdigest()


async def _fetch_token(ctx: CallContext) -> tuple[str, float]:
    query = urlencode({"grant_type": "client_credentials", "client_id": ctx.credential["api_key"],
                       "client_secret": ctx.credential["secret_key"]})
    resp = await ctx.http.request("POST", f"{ctx.base_url}/oauth/2.0/token?{query}",
                                  headers={"Accept": "application/json"})
    body = resp.json()
    if resp.status != 200 or not isinstance(body, dict) or not isinstance(body.get("access_token"), str):
        raise error_from_response(resp.status, body, resp.headers)
    expires_in = body.get("expires_in")
    if not isinstance(expires_in, int | float) or isinstance(expires_in, bool) or expires_in <= 0:
        expires_in = DEFAULT_EXPIRES_IN
    return body["access_token"], float(expires_in)


async def access_token(ctx: CallContext, stale: str | None = None) -> str:
    return await TOKENS.get(_credential_key(ctx), lambda: _fetch_token(ctx), stale)


def _json_or_none(payload: bytes) -> Any:
    try:
        return bounded_json(payload) if payload else None
    except orjson.JSONDecodeError:
        return None


async def _json_error_body(head: bytes, rest: AsyncIterator[bytes]) -> Any:
    """The bare JSON body ERNIE sends instead of events when a streamed call fails."""
    body = head
    async for data in rest:
        body += data
        if len(body) > _ERROR_HEAD_LIMIT:
            break
    return _json_or_none(body)


# -- the translator ---------------------------------------------------------------------------


class ErnieTranslator(Translator):
    name = PROVIDER
    display_name = "Baidu ERNIE"
    key_url = "https://console.bce.baidu.com/qianfan/ais/console/applicationConsole/application"
    model_types = frozenset({ModelType.LLM, ModelType.TEXT_EMBEDDING})
    credential_fields = (
        CredentialField("api_key", description="API Key (AK, client_id) of a Qianfan app"),
        CredentialField("secret_key", description="Secret Key (SK, client_secret) of the same app"),
    )
    default_base_url = "https://aip.baidubce.com"
    catalog = {
        ModelType.LLM: ("ernie-4.0", "ernie-3.5", "ernie-speed", "ernie-speed-128k", "ernie-lite",
                        "ernie-bot-turbo", "eb-instant", "ernie-tiny-8k"),
        ModelType.TEXT_EMBEDDING: tuple(EMBEDDING_ENDPOINTS),
    }
    model_prefixes = {ModelType.LLM: ("ernie-", "eb-")}

    def chat_url(self, ctx: CallContext) -> str:
        check_model_id(ctx.model)  # it ends up in the URL path
        return f"{ctx.base_url}{WORKSHOP}/chat/{CHAT_ENDPOINTS.get(ctx.model, ctx.model)}"

    async def _call(self, ctx: CallContext, url: str, body: JSONObject) -> Any:
        """POST with the access token; on error 110/111 refresh it and retry once."""
        stale: str | None = None
        for attempt in range(2):
            token = await access_token(ctx, stale)
            resp = await ctx.http.post_json(f"{url}?access_token={token}", body)
            parsed = resp.json()
            code = error_code(parsed)
            if code in TOKEN_ERRORS and attempt == 0:
                stale = token
                continue
            if resp.status != 200 or code is not None:
                with scrubbing(token):  # derived from the key: the stored-secret scrubbing can't know it
                    raise error_from_response(resp.status, parsed, resp.headers)
            return parsed
        raise AssertionError("unreachable")

    async def chat(self, req: ChatRequest, ctx: CallContext) -> JSONObject:
        body = to_vendor_request(req, ctx.model)
        body.pop("stream", None)
        return from_vendor_response(await self._call(ctx, self.chat_url(ctx), body), ctx.model)

    async def chat_stream(self, req: ChatRequest, ctx: CallContext) -> AsyncIterator[StreamChunk]:
        body = to_vendor_request(req, ctx.model)
        body["stream"] = True
        stale: str | None = None
        for attempt in range(2):
            token = await access_token(ctx, stale)
            url = f"{self.chat_url(ctx)}?access_token={token}"
            # The token is derived from the key: the stored-secret scrubbing can't know it.
            with scrubbing(token):
                async with ctx.http.stream("POST", url, json=body) as resp:
                    if resp.status != 200:
                        raise error_from_response(resp.status, _json_or_none(await resp.read()),
                                                  resp.headers)
                    chunks = resp.chunks()
                    head = b""
                    if "json" not in resp.headers.get("Content-Type", ""):
                        async for data in chunks:  # sniff: events, or a bare JSON error body?
                            head += data
                            if head.lstrip():
                                break
                    if "json" in resp.headers.get("Content-Type", "") or head.lstrip().startswith(b"{"):
                        parsed = await _json_error_body(head, chunks)
                        if error_code(parsed) in TOKEN_ERRORS and attempt == 0:
                            stale = token
                            continue
                        raise error_from_response(200, parsed, resp.headers)
                    state = StreamState(ctx.model)
                    decoder = SSEDecoder(resp.max_event_bytes)
                    for event in decoder.feed(head):
                        for chunk in from_vendor_event(_json_or_none(event.data), state):
                            yield chunk
                    async for data in chunks:
                        for event in decoder.feed(data):
                            for chunk in from_vendor_event(_json_or_none(event.data), state):
                                yield chunk
                        if state.finished:
                            return
                    for event in decoder.flush():
                        for chunk in from_vendor_event(_json_or_none(event.data), state):
                            yield chunk
                    if not state.finished:
                        raise incomplete()
                    return

    async def embed(self, req: EmbeddingRequest, ctx: CallContext) -> JSONObject:
        endpoint = EMBEDDING_ENDPOINTS.get(ctx.model)
        if endpoint is None:
            raise ApiError(404, f"The model '{ctx.model}' is not an ERNIE embedding model; known models: "
                                f"{', '.join(EMBEDDING_ENDPOINTS)}", "invalid_request_error", "model_not_found", "model")
        url = f"{ctx.base_url}{WORKSHOP}/embeddings/{endpoint.suffix}"
        extra: JSONObject = {"user_id": req.user} if req.user else {}
        batches = embedding_batches(req, endpoint.batch)
        bodies = await asyncio.gather(*(self._call(ctx, url, {"input": batch, **extra}) for batch in batches))
        return from_embedding_responses(list(bodies), ctx.model, req.encoding_format)
