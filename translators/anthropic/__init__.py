"""Anthropic's Messages API (`POST {base_url}/v1/messages`) behind OpenAI's chat shapes.

Credential: `api_key` (sent as `x-api-key`), optional `base_url` (default
https://api.anthropic.com). Every request carries `anthropic-version: 2023-06-01`.
Chat only: legacy `/v1/completions` goes through the chat path (the prompt as one user
turn, translators/completions.py); no embeddings, no transcriptions.
Reference: ../shared/vendors/anthropic.md.

This module is the wiring (URL, headers, which recipe of `translators/_stream.py` each call
uses); the codec is pure: `codec.py` (requests, responses, stream events, errors, and the
`CODEC` the driver runs) with `request.py` (the pieces of a request: what is mapped, refused
or dropped).

Clients that speak the Messages API themselves (Claude Code, the anthropic SDK: `MESSAGES`,
`inbound.py` and `inbound_request.py`) get it natively here (`native`): their body goes to
/v1/messages (or /v1/messages/count_tokens) as they sent it, the routed model in it, their
`anthropic-beta` header with it; answers come back as the vendor sent them, streams event
by event (`relay_sse`, usage read on the way by `codec.relay_event`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping

from keystore.models import CredentialField
from translators._stream import exchange, relay_sse, stream_sse
from translators.anthropic.codec import (
    CODEC,
    AnthropicState,
    error_from_response,
    from_vendor_event,
    from_vendor_response,
    message_usage,
    relay_event,
    to_vendor_request,
)
from translators.anthropic.inbound import MESSAGES
from translators.anthropic.request import (
    DEFAULT_MAX_TOKENS,
    PROVIDER,
    default_max_tokens,
)
from translators.base import CallContext, NativeApi, Translator
from translators.errors import bad_response
from translators.types import ChatRequest, JSONObject, ModelType, StreamChunk, Usage

__all__ = ["API_VERSION", "CODEC", "DEFAULT_MAX_TOKENS", "MESSAGES", "AnthropicState", "AnthropicTranslator",
           "default_max_tokens", "error_from_response", "from_vendor_event", "from_vendor_response",
           "to_vendor_request"]

API_VERSION = "2023-06-01"


class AnthropicTranslator(Translator):
    name = PROVIDER
    display_name = "Anthropic"
    key_url = "https://console.anthropic.com/settings/keys"
    model_types = frozenset({ModelType.LLM})
    credential_fields = (CredentialField("api_key", description="Anthropic API key (sk-ant-...)"),)
    default_base_url = "https://api.anthropic.com"
    # The current models both the vendor notes and the installed SDK's model list name, and
    # the two legacy names; any other `claude-*` id routes here through the prefix.
    catalog = {ModelType.LLM: (
        "claude-opus-4-5", "claude-opus-4-5-20251101", "claude-sonnet-4-5", "claude-sonnet-4-5-20250929",
        "claude-haiku-4-5", "claude-haiku-4-5-20251001", "claude-2", "claude-instant-1",
    )}
    model_prefixes = {ModelType.LLM: ("claude-",)}
    chat_extras = frozenset({"top_k"})

    def __init__(self) -> None:
        # A Messages API client's body goes to the vendor as it came (cache_control, thinking,
        # built-in tools, betas), and its answer or events come back as they were.
        self.native = {MESSAGES.name: NativeApi(self.messages, self.messages_stream, self.count_tokens)}

    def headers(self, ctx: CallContext, forwarded: Mapping[str, str] | None = None) -> dict[str, str]:
        headers = {"x-api-key": ctx.credential["api_key"], "anthropic-version": API_VERSION}
        beta = (forwarded or {}).get("anthropic-beta")
        if beta:
            headers["anthropic-beta"] = beta  # the client's features; the vendor judges them
        return headers

    def url(self, ctx: CallContext) -> str:
        return f"{ctx.base_url}/v1/messages"

    async def chat(self, req: ChatRequest, ctx: CallContext) -> JSONObject:
        body = to_vendor_request(req, ctx.model)
        body.pop("stream", None)
        answer = await exchange(ctx.http, CODEC, self.url(ctx), body, headers=self.headers(ctx))
        return from_vendor_response(answer, ctx.model)

    def chat_stream(self, req: ChatRequest, ctx: CallContext) -> AsyncIterator[StreamChunk]:
        body = to_vendor_request(req, ctx.model)
        body["stream"] = True
        return stream_sse(ctx.http, CODEC, ctx.model, self.url(ctx), headers=self.headers(ctx), json=body)

    # -- native: a Messages API client (translators/_inbound.py) -----------------------------------

    async def messages(self, body: JSONObject, forwarded: Mapping[str, str],
                       ctx: CallContext) -> tuple[JSONObject, Usage | None]:
        body = {**body, "model": ctx.model}
        body.pop("stream", None)
        answer = await exchange(ctx.http, CODEC, self.url(ctx), body, headers=self.headers(ctx, forwarded))
        if not isinstance(answer, dict):
            raise bad_response(PROVIDER, "a response that is not a message")
        return answer, message_usage(answer)

    def messages_stream(self, body: JSONObject, forwarded: Mapping[str, str],
                        ctx: CallContext) -> AsyncIterator[StreamChunk]:
        return relay_sse(ctx.http, CODEC, ctx.model, self.url(ctx), relay_event,
                         headers=self.headers(ctx, forwarded), json={**body, "model": ctx.model, "stream": True})

    async def count_tokens(self, body: JSONObject, forwarded: Mapping[str, str], ctx: CallContext) -> JSONObject:
        answer = await exchange(ctx.http, CODEC, f"{ctx.base_url}/v1/messages/count_tokens",
                                {**body, "model": ctx.model}, headers=self.headers(ctx, forwarded))
        if not isinstance(answer, dict):
            raise bad_response(PROVIDER, "a token count that is not an object")
        return answer
