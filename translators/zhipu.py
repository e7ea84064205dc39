"""Zhipu AI's hosted GLM API (智谱, open.bigmodel.cn v4): OpenAI's format with Zhipu's differences.

A provider of its own, `zhipu`, not a mode of `chatglm`: the issue names it so, with the
credential `api_key` (`<id>.<secret>`), and the hosted API shares only the models' family
name with the self-hosted ChatGLM servers of `translators/chatglm.py` (its auth, URLs,
embeddings and errors are all different). Reference: ../shared/vendors/chatglm.md §C.

Credential: `api_key` (`id.secret`, checked when saved), optional `base_url` (default
https://open.bigmodel.cn/api/paas/v4).

Auth: `Authorization: Bearer <JWT>`, HS256-signed with the secret, header
`{"alg":"HS256","sign_type":"SIGN"}`, payload `{"api_key": id, "exp", "timestamp"}` in
**milliseconds**; valid 210 s, reused for 180 s (what Zhipu's SDK does). Tokens are cached
per credential (keyed by a hash of the key, at most 1,024 entries). Minting is synchronous
(an HMAC, no I/O), so no await can fall between the cache lookup and the store: concurrent
first requests in a worker mint exactly one token (single-flight without a lock).

Endpoints: chat `POST {base}/chat/completions`; legacy `/v1/completions` through the chat
path; embeddings `POST {base}/embeddings` (`embedding-2`, `embedding-3`; `dimensions` passes
for embedding-3; base64 encoded here, Zhipu answers floats; batches of 64 texts for
embedding-3 and of 1 for embedding-2, as one-api does ⚠). No transcriptions.

Request mapping (`to_vendor_request`): `user` -> `user_id` (when 6-128 characters, which
is all Zhipu accepts); `temperature: 0` ->
`do_sample: false` (greedy), other temperatures and `top_p` clamped into [0.01, 0.99]
(older GLM models refuse 0 and 1); `tool_choice: "none"` drops the tools (Zhipu knows only
"auto"); `developer` -> `system`. Rejected with a 400: `n` > 1, `logprobs`, `top_logprobs`,
`functions`/`function_call`, `tool_choice` "required" or a named function. Dropped:
`presence_penalty`, `frequency_penalty`, `logit_bias`, `parallel_tool_calls`, `store`,
`metadata`, `service_tier`, `stream_options` (usage always comes on the last chunk).

Responses: `object` added; the role Zhipu repeats on every delta is sent once, first;
finish_reason `sensitive` -> `content_filter`, `network_error` (a failed inference) -> 502;
usage taken from the last chunk, where Zhipu puts it beside the finish reason, and sent as
the separate usage-only chunk OpenAI sends last.
Errors: `{"error": {"code": "1301", "message"}}` with an HTTP status, or inside a stream;
codes decide where the status cannot: 1000-1004 auth (-> 403 upstream_credential_rejected),
1110-1113 account/balance (-> 429, 1113 insufficient_quota), 1210-1214 parameters (-> 400;
1211 unknown model -> 404), 1261 prompt too long (-> 400), 1301 content filter (-> 400
content_filter), 1302-1305 rate limits (-> 429).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

import orjson

from keystore.models import Credential, CredentialField
from translators._http import Headers, UpstreamResponse
from translators._json import loads as bounded_json
from translators._refusals import (
    refuse_choices_and_logprobs,
    refuse_deprecated_functions,
    refuse_forced_tool_choice,
)
from translators._shapes import (
    as_int,
    embed_in_batches,
    embedding_list,
    input_texts,
    new_id,
    now,
    vendor_error,
)
from translators._sse import DONE_DATA
from translators.base import CallContext, Translator
from translators.errors import (
    ApiError,
    UpstreamError,
    bad_request,
    parse_retry_after,
    scrubbing,
)
from translators.openai_compatible import OpenAICompatible, openai_error_fields
from translators.types import (
    ChatRequest,
    EmbeddingRequest,
    JSONObject,
    ModelType,
    StreamChunk,
    Usage,
)

PROVIDER = "zhipu"
TOKEN_TTL = 210.0    # seconds a minted JWT is valid
TOKEN_REUSE = 180.0  # seconds a cached JWT is handed out
DROPPED = frozenset({"presence_penalty", "frequency_penalty", "logit_bias", "parallel_tool_calls", "store",
                     "metadata", "service_tier", "stream_options", "max_completion_tokens", "user", "n", "logprobs",
                     "top_logprobs"})
FINISH_REASONS: Mapping[str, str] = {"stop": "stop", "length": "length", "tool_calls": "tool_calls",
                                     "sensitive": "content_filter"}
ERROR_CODES: dict[str, tuple[int, str | None]] = {
    **{str(c): (401, None) for c in range(1000, 1005)},
    **{str(c): (429, "account_unavailable") for c in range(1110, 1113)},
    "1113": (429, "insufficient_quota"),
    **{str(c): (400, "invalid_parameter") for c in range(1210, 1215)},
    "1211": (404, "model_not_found"),
    "1261": (400, "context_length_exceeded"),
    "1301": (400, "content_filter"),
    **{str(c): (429, "rate_limit_exceeded") for c in range(1302, 1306)},
}
_MEANINGFUL = frozenset({"content_filter", "model_not_found", "insufficient_quota"})


# -- the JWT --------------------------------------------------------------------------------------


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def split_key(api_key: str) -> tuple[str, str]:
    key_id, sep, secret = api_key.partition(".")
    if not sep or not key_id or not secret:
        raise bad_request("the zhipu api_key must look like '<id>.<secret>'", "api_key", "invalid_credential")
    return key_id, secret


def make_jwt(api_key: str, issued_at: float, ttl: float = TOKEN_TTL) -> str:
    """Zhipu's HS256 token for `api_key` issued at `issued_at` (seconds); timestamps in ms."""
    key_id, secret = split_key(api_key)
    millis = int(issued_at * 1000)
    header = _b64url(orjson.dumps({"alg": "HS256", "sign_type": "SIGN"}))
    payload = _b64url(orjson.dumps({"api_key": key_id, "exp": millis + int(ttl * 1000), "timestamp": millis}))
    signature = hmac.new(secret.encode(), f"{header}.{payload}".encode(), hashlib.sha256).digest()
    return f"{header}.{payload}.{_b64url(signature)}"


class TokenCache:
    """JWTs per credential, reused until shortly before they expire (see the module docstring)."""

    def __init__(self, clock: Callable[[], float] = time.time, max_entries: int = 1024) -> None:
        self.clock = clock
        self.max_entries = max_entries
        self.minted = 0
        self._tokens: OrderedDict[bytes, tuple[str, float]] = OrderedDict()

    def token(self, api_key: str) -> str:
        key = hashlib.sha256(api_key.encode()).digest()
        current = self.clock()
        hit = self._tokens.get(key)
        if hit is not None and hit[1] > current:
            self._tokens.move_to_end(key)
            return hit[0]
        token = make_jwt(api_key, current)
        self.minted += 1
        self._tokens[key] = (token, current + TOKEN_REUSE)
        self._tokens.move_to_end(key)
        while len(self._tokens) > self.max_entries:
            self._tokens.popitem(last=False)
        return token


# -- errors and requests --------------------------------------------------------------------------


def error_from_response(status: int, body: Any, headers: Headers | None) -> ApiError:
    """Zhipu's error object; `status` < 400 means it came in a 200 body or a stream event."""
    message, code, _ = openai_error_fields(body, f"HTTP {status} from {PROVIDER}")
    known = ERROR_CODES.get(code or "")
    if status < 400:
        status = known[0] if known else 502
    ours = known[1] if known else code
    if known and known[1] in _MEANINGFUL:
        status = known[0]
    return vendor_error(PROVIDER, status, f"{message} (code {code})" if code else message, ours,
                        parse_retry_after(headers))


def to_vendor_request(req: ChatRequest, model: str) -> JSONObject:
    refuse_choices_and_logprobs(req, PROVIDER)
    refuse_deprecated_functions(req, PROVIDER)
    refuse_forced_tool_choice(req, PROVIDER)
    raw = req.raw
    body = {k: v for k, v in raw.items() if k not in DROPPED}
    body.update(model=model, stream=req.stream)
    body["messages"] = [{**m, "role": "system"} if m.get("role") == "developer" else m for m in raw["messages"]]
    if req.token_limit:
        body["max_tokens"] = req.token_limit
    if req.user and 6 <= len(req.user) <= 128:  # Zhipu refuses other lengths; the id is only a hint
        body["user_id"] = req.user
    if req.temperature == 0:
        body.pop("temperature")
        body["do_sample"] = False
    for key in ("temperature", "top_p"):
        if key in body and getattr(req, key) is not None:
            body[key] = min(max(getattr(req, key), 0.01), 0.99)
    if req.tool_choice == "none":
        body.pop("tools", None)
        body.pop("tool_choice", None)
    return body


# -- responses -------------------------------------------------------------------------------------


def finish_reason(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    if value == "network_error":
        raise UpstreamError(502, f"{PROVIDER} failed while generating (finish_reason network_error)",
                            "server_error", "upstream_error")
    return FINISH_REASONS.get(value, "stop")


def _calls(calls: Any, indexed: bool) -> list[JSONObject]:
    out = []
    for i, call in enumerate(calls if isinstance(calls, list) else ()):
        function = call.get("function") or {}
        arguments = function.get("arguments")
        item: JSONObject = {"id": str(call.get("id") or f"call_{i}"), "type": "function",
                            "function": {"name": str(function.get("name") or ""),
                                         "arguments": arguments if isinstance(arguments, str)
                                         else orjson.dumps(arguments or {}).decode()}}
        out.append({"index": call.get("index", i), **item} if indexed else item)
    return out


def from_vendor_response(body: Any, model: str) -> JSONObject:
    if not isinstance(body, dict) or body.get("error") or not isinstance(body.get("choices"), list) \
            or not body["choices"]:
        raise error_from_response(200, body, None) if isinstance(body, dict) and body.get("error") else \
            UpstreamError(502, f"{PROVIDER} returned a response without choices", "server_error",
                          "upstream_bad_response")
    choices = []
    for i, choice in enumerate(body["choices"]):
        message = dict(choice.get("message") or {})
        message.setdefault("role", "assistant")
        message.setdefault("refusal", None)
        if message.get("tool_calls"):
            message["tool_calls"] = _calls(message["tool_calls"], indexed=False)
        choices.append({"index": choice.get("index", i), "message": message, "logprobs": None,
                        "finish_reason": finish_reason(choice.get("finish_reason")) or "stop"})
    out = {"id": str(body.get("id") or new_id()), "object": "chat.completion",
           "created": body.get("created") or now(), "model": body.get("model") or model, "choices": choices}
    if isinstance(body.get("usage"), dict):
        out["usage"] = body["usage"]
    return out


def with_role(chunk: StreamChunk) -> StreamChunk:
    """The stream's first chunk with `role: assistant` (once, as OpenAI sends it)."""
    body = bounded_json(chunk.data)
    for choice in body.get("choices") or ():
        choice["delta"] = {"role": "assistant", **(choice.get("delta") or {})}
    return StreamChunk.of(body)


def from_vendor_event(chunk: Any) -> tuple[JSONObject, Usage | None]:
    """One parsed Zhipu chunk -> (the OpenAI chunk without usage, the usage it carried)."""
    if not isinstance(chunk, dict) or (chunk.get("error") is not None and not chunk.get("choices")):
        raise error_from_response(200, chunk if isinstance(chunk, dict) else {}, None)
    out: JSONObject = {"id": str(chunk.get("id") or ""), "object": "chat.completion.chunk",
                       "created": chunk.get("created") or now(), "model": chunk.get("model") or "", "choices": []}
    for i, choice in enumerate(chunk.get("choices") or ()):
        delta = {k: v for k, v in (choice.get("delta") or {}).items() if k != "role"}  # Zhipu repeats it
        if delta.get("tool_calls"):
            delta["tool_calls"] = _calls(delta["tool_calls"], indexed=True)
        out["choices"].append({"index": choice.get("index", i), "delta": delta, "logprobs": None,
                               "finish_reason": finish_reason(choice.get("finish_reason"))})
    return out, Usage.from_openai(chunk.get("usage"))


def from_vendor_embeddings(body: Any) -> tuple[list[list[float]], int]:
    """(vectors in input order, tokens) from Zhipu's OpenAI-like embeddings answer."""
    data = sorted((d for d in body.get("data") or () if isinstance(d, dict)), key=lambda d: as_int(d.get("index")))
    usage = body.get("usage") if isinstance(body.get("usage"), dict) else {}
    return [list(d.get("embedding") or ()) for d in data], \
        as_int(usage.get("prompt_tokens")) or as_int(usage.get("total_tokens"))


# -- the translator ------------------------------------------------------------------------------------


def embedding_batch_size(model: str) -> int:
    return 1 if model == "embedding-2" else 64


class ZhipuTranslator(OpenAICompatible):
    name = PROVIDER
    display_name = "Zhipu AI"
    key_url = "https://open.bigmodel.cn/usercenter/apikeys"
    model_types = frozenset({ModelType.LLM, ModelType.TEXT_EMBEDDING})
    credential_fields = (CredentialField("api_key", description="Zhipu API key (<id>.<secret>)"),)
    default_base_url = "https://open.bigmodel.cn/api/paas/v4"
    catalog = {
        ModelType.LLM: ("glm-4-plus", "glm-4-air", "glm-4-airx", "glm-4-flash", "glm-4-long", "glm-4", "glm-4v",
                        "glm-4v-plus", "glm-4.5", "glm-4.5-air", "glm-z1-air"),
        ModelType.TEXT_EMBEDDING: ("embedding-2", "embedding-3"),
    }
    model_prefixes = {ModelType.LLM: ("glm-4", "glm-z1", "glm-3")}
    tokens = TokenCache()

    complete = Translator.complete
    complete_stream = Translator.complete_stream
    transcribe = Translator.transcribe

    def check_credential(self, credential: Credential) -> None:
        split_key(credential["api_key"])

    def headers(self, ctx: CallContext) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens.token(ctx.credential['api_key'])}"}

    def _derived(self, ctx: CallContext) -> tuple[str, str]:
        """The JWT sent for this key (the cached one) and its signature, for scrubbing errors."""
        token = self.tokens.token(ctx.credential["api_key"])
        return token, token.rsplit(".", 1)[-1]

    def request_body(self, raw: JSONObject, ctx: CallContext) -> JSONObject:
        raw.pop("stream_options", None)  # set by the shared stream code; Zhipu always sends usage
        raw["model"] = ctx.model
        return raw

    def error_from_response(self, status: int, body: Any, headers: Headers) -> ApiError:
        return error_from_response(status, body, headers)

    def stream_error(self, err: Any) -> ApiError:
        return error_from_response(200, {"error": err}, None)

    def _check(self, resp: UpstreamResponse) -> JSONObject:
        body = resp.json()
        if resp.status != 200 or (isinstance(body, dict) and body.get("error")):
            raise error_from_response(resp.status, body, resp.headers)
        return body if isinstance(body, dict) else {}

    def _pass_chunk(self, data: bytes) -> Any:
        if not data or data == DONE_DATA:
            return super()._pass_chunk(data)
        try:
            parsed = bounded_json(data)
        except orjson.JSONDecodeError:
            raise UpstreamError(502, f"{PROVIDER} sent a stream event that is not JSON", "server_error",
                                "upstream_bad_response") from None
        chunk, usage = from_vendor_event(parsed)
        if usage is None:
            return StreamChunk.of(chunk)
        if not chunk["choices"]:
            return StreamChunk.of({**chunk, "usage": usage.as_dict()}, usage)
        # Zhipu's last chunk carries the finish reason and the usage: OpenAI sends usage last, alone.
        return StreamChunk.of(chunk), ({k: v for k, v in chunk.items() if k != "choices"}, usage)

    def _not_a_stream(self, body: bytes, headers: Headers) -> ApiError:
        try:
            parsed = bounded_json(body) if body else None
        except orjson.JSONDecodeError:
            parsed = None
        return error_from_response(200, parsed, headers) if isinstance(parsed, dict) and parsed.get("error") \
            else super()._not_a_stream(body, headers)

    async def chat(self, req: ChatRequest, ctx: CallContext) -> JSONObject:
        body = to_vendor_request(req, ctx.model)
        body["stream"] = False
        with scrubbing(*self._derived(ctx)):
            return from_vendor_response(await self._post("chat/completions", body, ctx), ctx.model)

    async def chat_stream(self, req: ChatRequest, ctx: CallContext) -> AsyncIterator[StreamChunk]:
        body = to_vendor_request(req, ctx.model)
        body["stream"] = True
        inner = self._stream("chat/completions", body, ctx)
        role_sent = False
        try:
            with scrubbing(*self._derived(ctx)):
                async for chunk in inner:
                    if not role_sent and chunk.usage is None:
                        role_sent, chunk = True, with_role(chunk)
                    yield chunk
        finally:
            await inner.aclose()  # type: ignore[attr-defined]

    async def embed(self, req: EmbeddingRequest, ctx: CallContext) -> JSONObject:
        async def fetch(batch: list[str]) -> tuple[list[list[float]], int]:
            body: JSONObject = {"model": ctx.model, "input": batch}
            if req.dimensions is not None:
                body["dimensions"] = req.dimensions
            return from_vendor_embeddings(await self._post("embeddings", body, ctx))

        texts = input_texts(req, PROVIDER)
        with scrubbing(*self._derived(ctx)):
            vectors, tokens = await embed_in_batches(texts, embedding_batch_size(ctx.model), PROVIDER, fetch)
        return embedding_list(vectors, ctx.model, tokens, req.encoding_format)
