"""Zhipu AI's hosted GLM API (智谱, open.bigmodel.cn v4): OpenAI's format with Zhipu's differences,
as a `CompatibleSpec` row.

A provider of its own, `zhipu`, not a mode of `chatglm`: the issue names it so, with the
credential `api_key` (`<id>.<secret>`), and the hosted API shares only the models' family
name with the self-hosted ChatGLM servers of `translators/chatglm.py` (its auth, URLs,
embeddings and errors are all different). Reference: ../shared/vendors/chatglm.md §C.

Credential: `api_key` (`id.secret`, checked when saved), optional `base_url` (default
https://open.bigmodel.cn/api/paas/v4).

Auth, a token step in front of every call: `Authorization: Bearer <JWT>`, HS256-signed with
the secret, header `{"alg":"HS256","sign_type":"SIGN"}`, payload `{"api_key": id, "exp",
"timestamp"}` in **milliseconds**; valid 210 s, reused for 180 s (what Zhipu's SDK does).
Tokens live in `TOKENS` (the shared `TokenCache`, minted there: an HMAC, no I/O, so no await
falls between the lookup and the store and concurrent first requests in a worker mint
exactly one). The JWT and its signature are derived from the key, so the gateway's scrubbing
of stored secrets cannot know them: they are scrubbed from every error of a call here.

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
the separate usage-only chunk OpenAI sends last (the compatible codec's doing).
Errors: `{"error": {"code": "1301", "message"}}` with an HTTP status, in a 200 body, or
inside a stream; codes decide where the status cannot: 1000-1004 auth (-> 403
upstream_credential_rejected), 1110-1113 account/balance (-> 429, 1113 insufficient_quota),
1210-1214 parameters (-> 400; 1211 unknown model -> 404), 1261 prompt too long (-> 400),
1301 content filter (-> 400 content_filter), 1302-1305 rate limits (-> 429).
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import orjson

from keystore.models import Credential, CredentialField
from translators._auth import TokenCache
from translators._compatible import (
    CHAT,
    EMBEDDINGS,
    OPENAI_PATHS,
    CompatibleSpec,
    PassState,
    compatible_codec,
    openai_error_fields,
)
from translators._http import Headers
from translators._refusals import (
    refuse_choices_and_logprobs,
    refuse_deprecated_functions,
    refuse_forced_tool_choice,
)
from translators._shapes import (
    as_int,
    embed_in_batches,
    new_id,
    now,
    vendor_error,
)
from translators.base import CallContext
from translators.errors import (
    ApiError,
    bad_request,
    bad_response,
    parse_retry_after,
    upstream_status_error,
)
from translators.types import (
    ChatRequest,
    EmbeddingRequest,
    JSONObject,
    ModelType,
    Usage,
)

__all__ = ["CODEC", "SPEC", "TOKENS", "derived_secrets", "error_from_response", "from_vendor_embeddings",
           "from_vendor_response", "headers", "jwt", "make_jwt", "to_vendor_request"]

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


# Wall-clock time: the cache's clock also dates the tokens it mints.
TOKENS = TokenCache(clock=time.time, max_entries=1024)


def jwt(api_key: str, cache: TokenCache = TOKENS) -> str:
    """The key's current JWT, minted when none is cached or it is due for renewal."""
    return cache.mint((PROVIDER, api_key), lambda issued_at: (make_jwt(api_key, issued_at), TOKEN_REUSE))


def headers(ctx: CallContext) -> dict[str, str]:
    return {"Authorization": f"Bearer {jwt(ctx.credential['api_key'])}"}


def derived_secrets(ctx: CallContext) -> tuple[str, str]:
    """The JWT sent for this key (the cached one) and its signature, for scrubbing errors."""
    token = jwt(ctx.credential["api_key"])
    return token, token.rsplit(".", 1)[-1]


def _scrubbed(err: ApiError, ctx: CallContext) -> ApiError:
    return err.scrubbed(derived_secrets(ctx))


def _check_credential(credential: Credential) -> None:
    split_key(credential["api_key"])


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


def _error_in_body(body: Any, headers: Headers | None) -> ApiError | None:
    """Zhipu's error object in a 200 (an answer or where a stream belongs): its code decides."""
    return error_from_response(200, body, headers) if isinstance(body, dict) and body.get("error") else None


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
        raise upstream_status_error(PROVIDER, 500, "the inference failed (finish_reason network_error)")
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
    if isinstance(body, dict) and body.get("error"):
        raise error_from_response(200, body, None)
    if not isinstance(body, dict) or not isinstance(body.get("choices"), list) or not body["choices"]:
        raise bad_response(PROVIDER, "a response without choices")
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


def _answer(body: JSONObject, ctx: CallContext) -> JSONObject:
    # Chat answers are reshaped here; embeddings answers (`data`) are read by `_embed`.
    return body if "data" in body and "choices" not in body else from_vendor_response(body, ctx.model)


def fix_event(chunk: JSONObject, state: PassState) -> JSONObject:
    """One parsed Zhipu chunk as OpenAI's: `object` added, the role Zhipu repeats on every
    delta sent once (first), tool calls and finish reasons mapped; usage stays on it for
    the codec to send last."""
    out: JSONObject = {"id": str(chunk.get("id") or ""), "object": "chat.completion.chunk",
                       "created": chunk.get("created") or now(), "model": chunk.get("model") or "", "choices": []}
    for i, choice in enumerate(chunk.get("choices") or ()):
        delta = {k: v for k, v in (choice.get("delta") or {}).items() if k != "role"}
        if not state.started:
            delta = {"role": "assistant", **delta}
        if delta.get("tool_calls"):
            delta["tool_calls"] = _calls(delta["tool_calls"], indexed=True)
        out["choices"].append({"index": choice.get("index", i), "delta": delta, "logprobs": None,
                               "finish_reason": finish_reason(choice.get("finish_reason"))})
    state.started = state.started or bool(out["choices"])
    usage = Usage.from_openai(chunk["usage"]) if "usage" in chunk else None
    if usage is not None:
        out["usage"] = usage.as_dict()
    return out


def _stream_error(err: Any) -> ApiError:
    return error_from_response(200, {"error": err}, None)


CODEC = dataclasses.replace(compatible_codec(PROVIDER, error_from_response, _stream_error, fix_event),
                            error_in_body=_error_in_body)


# -- embeddings ------------------------------------------------------------------------------------


def from_vendor_embeddings(body: Any) -> tuple[list[list[float]], int]:
    """(vectors in input order, tokens) from Zhipu's OpenAI-like embeddings answer."""
    data = sorted((d for d in body.get("data") or () if isinstance(d, dict)), key=lambda d: as_int(d.get("index")))
    usage = body.get("usage") if isinstance(body.get("usage"), dict) else {}
    return [list(d.get("embedding") or ()) for d in data], \
        as_int(usage.get("prompt_tokens")) or as_int(usage.get("total_tokens"))


def embedding_batch_size(model: str) -> int:
    return 1 if model == "embedding-2" else 64


async def _embed(req: EmbeddingRequest, model: str, post: Callable[[JSONObject], Awaitable[JSONObject]]) -> JSONObject:
    async def fetch(batch: list[str]) -> tuple[list[list[float]], int]:
        body: JSONObject = {"model": model, "input": batch}
        if req.dimensions is not None:
            body["dimensions"] = req.dimensions
        return from_vendor_embeddings(await post(body))

    return await embed_in_batches(req, model, PROVIDER, embedding_batch_size(model), fetch)


SPEC = CompatibleSpec(
    name=PROVIDER,
    display_name="Zhipu AI",
    key_url="https://open.bigmodel.cn/usercenter/apikeys",
    model_types=frozenset({ModelType.LLM, ModelType.TEXT_EMBEDDING}),
    credential_fields=(CredentialField("api_key", description="Zhipu API key (<id>.<secret>)"),),
    default_base_url="https://open.bigmodel.cn/api/paas/v4",
    catalog={
        ModelType.LLM: ("glm-4-plus", "glm-4-air", "glm-4-airx", "glm-4-flash", "glm-4-long", "glm-4", "glm-4v",
                        "glm-4v-plus", "glm-4.5", "glm-4.5-air", "glm-z1-air"),
        ModelType.TEXT_EMBEDDING: ("embedding-2", "embedding-3"),
    },
    model_prefixes={ModelType.LLM: ("glm-4", "glm-z1", "glm-3")},
    paths={CHAT: OPENAI_PATHS[CHAT], EMBEDDINGS: OPENAI_PATHS[EMBEDDINGS]},
    headers=headers,
    codec=CODEC,
    to_vendor_request=to_vendor_request,
    stream_usage_option=False,  # Zhipu refuses `stream_options`; its last chunk has the usage anyway
    check_credential=_check_credential,
    from_vendor_response=_answer,
    call_error=_scrubbed,
    embed=_embed,
)
