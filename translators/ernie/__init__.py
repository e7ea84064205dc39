"""Baidu ERNIE (文心一言, Qianfan v1 "wenxinworkshop" API) behind OpenAI's shapes: the wiring
(URLs, the access token, the transport recipes) of the pure codec in `codec.py`.

Credential: `api_key`, `secret_key` (a Qianfan app's AK/SK), optional `base_url` (default
https://aip.baidubce.com). Chat (streamed or not), legacy completions through the chat
path, and embeddings. Reference: ../shared/vendors/ernie.md.

Authentication, a token exchange in front of every call: the AK/SK buy an OAuth access
token (`POST {base_url}/oauth/2.0/token`), sent as `?access_token=` on every call. `TOKENS`
(the shared `TokenCache`) holds it per credential until shortly before it expires;
concurrent callers needing a new one share one token call. An answer with error 110/111
(token invalid/expired) refreshes the token and retries once. The cache is module state on
purpose: translators never touch the database, and a derived token is worth keeping only
as long as the worker lives. The token is scrubbed from every error of the call.

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
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from keystore.models import CredentialField
from translators._auth import TokenCache
from translators._stream import exchange, stream_sse
from translators.base import CallContext, Translator, check_model_id
from translators.ernie.codec import (
    CODEC,
    ERROR_STATUS,
    PROVIDER,
    AccessTokenRefused,
    ErnieState,
    conversation,
    embedding_batches,
    error_from_response,
    from_embedding_responses,
    from_vendor_event,
    from_vendor_response,
    to_vendor_request,
    token_answer,
)
from translators.errors import ApiError, scrubbing
from translators.types import (
    ChatRequest,
    EmbeddingRequest,
    JSONObject,
    ModelType,
    StreamChunk,
)

__all__ = ["CHAT_ENDPOINTS", "CODEC", "EMBEDDING_ENDPOINTS", "ERROR_STATUS", "ErnieState", "ErnieTranslator",
           "TOKENS", "access_token", "conversation", "error_from_response", "from_vendor_event",
           "from_vendor_response", "to_vendor_request"]

WORKSHOP = "/rpc/2.0/ai_custom/v1/wenxinworkshop"

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


# -- the access token ---------------------------------------------------------------------------

TOKENS = TokenCache()


async def _fetch_token(ctx: CallContext) -> tuple[str, float]:
    query = urlencode({"grant_type": "client_credentials", "client_id": ctx.credential["api_key"],
                       "client_secret": ctx.credential["secret_key"]})
    body = await exchange(ctx.http, CODEC, f"{ctx.base_url}/oauth/2.0/token?{query}", None,
                          headers={"Accept": "application/json"})
    return token_answer(body)


async def access_token(ctx: CallContext, stale: str | None = None, cache: TokenCache = TOKENS) -> str:
    """The credential's access token, fetched if none is cached, it is near expiry, or it is
    `stale` (ERNIE just refused it)."""
    parts = (PROVIDER, ctx.base_url, ctx.credential["api_key"], ctx.credential["secret_key"])
    return await cache.get(parts, lambda: _fetch_token(ctx), stale)


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
        """One exchange with the access token; on error 110/111 a new token and one retry."""
        stale: str | None = None
        while True:
            token = await access_token(ctx, stale)
            try:
                with scrubbing(token):  # derived from the key: the stored-secret scrubbing can't know it
                    return await exchange(ctx.http, CODEC, f"{url}?access_token={token}", body)
            except AccessTokenRefused:
                if stale is not None:
                    raise
                stale = token

    async def chat(self, req: ChatRequest, ctx: CallContext) -> JSONObject:
        body = to_vendor_request(req, ctx.model)
        body.pop("stream", None)
        return from_vendor_response(await self._call(ctx, self.chat_url(ctx), body), ctx.model)

    async def chat_stream(self, req: ChatRequest, ctx: CallContext) -> AsyncIterator[StreamChunk]:
        body = to_vendor_request(req, ctx.model)
        body["stream"] = True
        url = self.chat_url(ctx)
        stale: str | None = None
        while True:
            token = await access_token(ctx, stale)
            stream = stream_sse(ctx.http, CODEC, ctx.model, f"{url}?access_token={token}", json=body)
            started = False
            try:
                with scrubbing(token):
                    async for chunk in stream:
                        started = True
                        yield chunk
                    return
            except AccessTokenRefused:  # before any chunk: a new token and one retry
                if started or stale is not None:
                    raise
                stale = token
            finally:
                await stream.aclose()  # type: ignore[attr-defined]

    async def embed(self, req: EmbeddingRequest, ctx: CallContext) -> JSONObject:
        endpoint = EMBEDDING_ENDPOINTS.get(ctx.model)
        if endpoint is None:
            raise ApiError(404, f"The model '{ctx.model}' is not an ERNIE embedding model; known models: "
                                f"{', '.join(EMBEDDING_ENDPOINTS)}", "invalid_request_error", "model_not_found",
                           "model")
        url = f"{ctx.base_url}{WORKSHOP}/embeddings/{endpoint.suffix}"
        extra: JSONObject = {"user_id": req.user} if req.user else {}
        batches = embedding_batches(req, endpoint.batch)
        bodies = await asyncio.gather(*(self._call(ctx, url, {"input": batch, **extra}) for batch in batches))
        return from_embedding_responses(list(bodies), ctx.model, req.encoding_format)
