"""iFlytek Spark (讯飞星火) behind OpenAI's chat shapes: the websocket API, or the HTTP API.

Credential (`modelport providers set TENANT spark key=value ...`), one of:
- `app_id`, `api_key`, `api_secret`: the websocket API. Each call opens one websocket to
  `{base_url}{path}` (default base `wss://spark-api.xf-yun.com`, TLS verified) with a URL
  signed by HMAC-SHA256 over `host`, an RFC 1123 `date` and the request line, sends one
  request frame and reads frames (`stream_frames`, codec `codec.CODEC`) until
  `header.status == 2`. The socket is closed when the answer is complete, on error, and
  when the client goes away.
- `api_password`: the OpenAI-compatible HTTP API, `POST {base_url}/chat/completions` with
  `Authorization: Bearer <APIPassword>` (default base `https://spark-api-open.xf-yun.com/v1`):
  the spec row `HTTP_API` with its own codec (`http_codec.py`).
  If both are set, the HTTP API is used (spark.md recommends it).
Reference: ../shared/vendors/spark.md. This module is the wiring; the formats are in
`codec.py` (requests, frames, errors) and `http_codec.py` (the HTTP API), both pure.

Models: `MODELS` maps each accepted name (`spark-lite`, `spark-pro`, `spark-max`,
`spark-4.0-ultra`, ... and Spark's own `domain` names) to the websocket URL path and the
`domain` (also the HTTP API's `model`); any other name is a 404 listing the known ones.

Request mapping (`to_vendor_request`, websocket; `to_http_request`, HTTP API):
- messages -> `payload.message.text[]` `{role, content}`; text parts are joined (other
  parts are refused). `system`/`developer` turns stay `system` where the model takes one;
  for Lite and V2 (no system role ⚠) their text opens the first user turn instead.
- websocket only (Spark documents no function-result turn there): an assistant turn's
  `tool_calls` become its text as `{"function_call": {...}}` JSON when it has no text of its
  own, and a `tool` result becomes a user turn. The HTTP API gets OpenAI's tool turns as sent.
- `temperature` clamped into Spark's (0, 1] (0 -> 0.01, 1.5 -> 1); `max_tokens` /
  `max_completion_tokens` capped at 8192; `user` -> `header.uid` (32 characters); `top_k`
  (Spark's own, sent as an extra field) passes; `tools` -> `payload.functions.text[]` (v3+
  models only); `tool_choice` `none` leaves the functions out, `auto` is the default.
- Rejected with a 400 naming the field: `n` > 1, `logprobs`, `top_logprobs`, `stop`,
  `response_format` other than text, `tool_choice` required or a named function, tools on
  models without function calling, non-function tools.
- Dropped tuning knobs: `top_p`, `presence_penalty`, `frequency_penalty`, `logit_bias`,
  `seed`, `parallel_tool_calls`, `stream_options` (the gateway's), and unknown fields.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from email.utils import formatdate
from urllib.parse import parse_qsl, quote, urlencode, urlsplit

from keystore.models import Credential, CredentialField
from translators._compatible import CompatibleSpec, CompatibleTranslator
from translators._http import UpstreamWebSocket, WebSocketRejected
from translators._stream import stream_frames
from translators.base import CallContext, Translator, check_model_id
from translators.errors import bad_request, scrubbing
from translators.spark.codec import (
    CODEC,
    FRAMES,
    MODELS,
    PROVIDER,
    FrameLog,
    SparkModel,
    SparkState,
    error_from_frame,
    error_from_response,
    from_vendor_event,
    from_vendor_response,
    resolve_model,
    to_vendor_request,
    with_app_id,
)
from translators.spark.http_codec import HTTP_CODEC, from_http_response, to_http_request
from translators.types import ChatRequest, JSONObject, ModelType, StreamChunk

__all__ = ["HTTP_API", "HTTP_BASE_URL", "MODELS", "SparkModel", "SparkState", "SparkTranslator", "error_from_frame",
           "error_from_response", "from_vendor_event", "from_vendor_response", "resolve_model", "signed_parts",
           "signed_url", "to_http_request", "to_vendor_request", "with_app_id"]

WS_BASE_URL = "wss://spark-api.xf-yun.com"
HTTP_BASE_URL = "https://spark-api-open.xf-yun.com/v1"
_DEFAULT_PORTS = {"ws": 80, "http": 80, "wss": 443, "https": 443}


# -- signing ------------------------------------------------------------------------------------


def _host(base_url: str) -> str:
    """The `host` that is signed: what the HTTP Host header will say (no default port)."""
    parts = urlsplit(base_url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    if parts.port and parts.port != _DEFAULT_PORTS.get(parts.scheme):
        host += f":{parts.port}"
    return host


def signed_url(base_url: str, path: str, api_key: str, api_secret: str, date: str) -> str:
    """The websocket URL with `authorization`, `date` and `host` (spark.md §A2)."""
    host = _host(base_url)
    request_path = urlsplit(base_url).path.rstrip("/") + path
    origin = f"host: {host}\ndate: {date}\nGET {request_path} HTTP/1.1"
    signature = base64.b64encode(hmac.new(api_secret.encode(), origin.encode(), hashlib.sha256).digest()).decode()
    authorization = (f'api_key="{api_key}", algorithm="hmac-sha256", headers="host date request-line", '
                     f'signature="{signature}"')
    query = urlencode({"authorization": base64.b64encode(authorization.encode()).decode(), "date": date,
                       "host": host})
    return f"{base_url.rstrip('/')}{path}?{query}"


def signed_parts(url: str) -> tuple[str, ...]:
    """What of a signed URL is derived from the secret (for scrubbing errors): the URL, its
    query, the authorization as sent (encoded or not) and decoded, and the signature."""
    query = urlsplit(url).query
    auth = dict(parse_qsl(query)).get("authorization", "")
    try:
        decoded = base64.b64decode(auth).decode()
    except (ValueError, UnicodeDecodeError):
        decoded = ""
    signature = decoded.partition('signature="')[2].rstrip('"')
    return tuple(part for part in (url, query, auth, quote(auth, safe=""), decoded, signature) if part)


# -- the translator ------------------------------------------------------------------------------

DISPLAY_NAME = "iFlytek Spark"
KEY_URL = "https://console.xfyun.cn/services/cbm"
CREDENTIAL_FIELDS = (
    CredentialField("app_id", required=False, secret=False, description="APPID (websocket API)", label="APPID"),
    CredentialField("api_key", required=False, description="APIKey (websocket API)", label="APIKey"),
    CredentialField("api_secret", required=False, description="APISecret (websocket API)", label="APISecret"),
    CredentialField("api_password", required=False, label="APIPassword",
                    description="APIPassword (HTTP API; used instead of the websocket when set)"),
)

HTTP_API = CompatibleSpec(
    name=PROVIDER, display_name=DISPLAY_NAME, key_url=KEY_URL, credential_fields=CREDENTIAL_FIELDS,
    default_base_url=HTTP_BASE_URL,
    headers=lambda ctx: {"Authorization": f"Bearer {ctx.credential['api_password']}"},
    codec=HTTP_CODEC,
    to_vendor_request=to_http_request,
    from_vendor_response=lambda body, ctx: from_http_response(body, ctx.model),
    stream_usage_option=False,  # the end of its stream carries usage unasked
)


class SparkTranslator(Translator):
    name = PROVIDER
    display_name = DISPLAY_NAME
    key_url = KEY_URL
    model_types = frozenset({ModelType.LLM})
    credential_fields = CREDENTIAL_FIELDS
    default_base_url = WS_BASE_URL
    catalog = {ModelType.LLM: ("spark-lite", "spark-pro", "spark-pro-128k", "spark-max", "spark-max-32k",
                               "spark-4.0-ultra")}
    model_prefixes = {ModelType.LLM: ("spark-",)}
    chat_extras = frozenset({"top_k"})

    def __init__(self) -> None:
        self.http_api = CompatibleTranslator(HTTP_API)  # serves credentials with an api_password

    def base_url_for(self, credential: Credential) -> str:
        # Two APIs on two hosts: the credential's fields say which one this call speaks.
        return credential.base_url or (HTTP_BASE_URL if credential.get("api_password") else WS_BASE_URL)

    def serves(self, model: str, model_type: ModelType) -> bool:
        return model_type is ModelType.LLM and (model in MODELS or model.startswith("spark-"))

    def check_model(self, model: str) -> None:
        check_model_id(model)
        resolve_model(model)

    def check_credential(self, credential: Credential) -> None:
        if credential.get("api_password"):
            return
        for field in ("app_id", "api_key", "api_secret"):
            if not credential.get(field):
                raise bad_request(f"provider '{PROVIDER}' needs api_password (HTTP API) or app_id, api_key and "
                                  f"api_secret (websocket API); '{field}' is missing", field, "invalid_credential")

    @asynccontextmanager
    async def _websocket(self, req: ChatRequest, ctx: CallContext) -> AsyncIterator[UpstreamWebSocket]:
        """Sign, connect, send the request frame; the socket closes when the block is left."""
        self.check_credential(ctx.credential)
        frame = with_app_id(to_vendor_request(req, ctx.model), ctx.credential["app_id"])
        url = signed_url(ctx.base_url, resolve_model(ctx.model).path, ctx.credential["api_key"],
                         ctx.credential["api_secret"], formatdate(usegmt=True))
        with scrubbing(*signed_parts(url)):  # errors, also those raised in the caller's block
            try:
                async with ctx.http.websocket(url) as ws:
                    await ws.send_json(frame)
                    yield ws
            except WebSocketRejected as exc:
                raise error_from_response(exc.upstream_status, None, exc.headers) from None

    async def chat(self, req: ChatRequest, ctx: CallContext) -> JSONObject:
        if ctx.credential.get("api_password"):
            return await self.http_api.chat(req, ctx)
        log = FrameLog(ctx.model)
        async with self._websocket(req, ctx) as ws:
            async for _ in stream_frames(ws, FRAMES, ctx.model, state=log):
                pass  # FRAMES yields nothing: it keeps every frame, the answer is built from all of them
        return from_vendor_response(log.frames, ctx.model)

    def chat_stream(self, req: ChatRequest, ctx: CallContext) -> AsyncIterator[StreamChunk]:
        if ctx.credential.get("api_password"):
            return self.http_api.chat_stream(req, ctx)
        return self._websocket_stream(req, ctx)

    async def _websocket_stream(self, req: ChatRequest, ctx: CallContext) -> AsyncIterator[StreamChunk]:
        async with self._websocket(req, ctx) as ws:
            async for chunk in stream_frames(ws, CODEC, ctx.model):
                yield chunk
