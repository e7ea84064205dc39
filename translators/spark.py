"""iFlytek Spark (讯飞星火) behind OpenAI's chat shapes: the websocket API, or the HTTP API.

Credential (`modelport providers set TENANT spark key=value ...`), one of:
- `app_id`, `api_key`, `api_secret`: the websocket API. Each call opens one websocket to
  `{base_url}{path}` (default base `wss://spark-api.xf-yun.com`, TLS verified) with a URL
  signed by HMAC-SHA256 over `host`, an RFC 1123 `date` and the request line, sends one
  request frame and reads frames until `header.status == 2`. The socket is closed when the
  answer is complete, on error, and when the client goes away.
- `api_password`: the OpenAI-compatible HTTP API, `POST {base_url}/chat/completions` with
  `Authorization: Bearer <APIPassword>` (default base `https://spark-api-open.xf-yun.com/v1`).
  If both are set, the HTTP API is used (spark.md recommends it).
Reference: ../shared/vendors/spark.md. Answers and errors: `translators/spark_response.py`.

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
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from email.utils import formatdate
from urllib.parse import parse_qsl, quote, urlencode, urlsplit

import orjson

from keystore.models import Credential, CredentialField
from translators._http import UpstreamWebSocket, WebSocketRejected
from translators._refusals import (
    refuse_choices_and_logprobs,
    refuse_forced_tool_choice,
    refuse_non_function_tools,
    refuse_response_format,
    text_only,
)
from translators._sse import DONE_DATA, SSEDecoder
from translators.base import CallContext, Translator, check_model_id
from translators.errors import (
    ApiError,
    UpstreamError,
    bad_request,
    scrubbing,
    unsupported,
)
from translators.spark_response import (
    HTTPStreamState,
    StreamState,
    error_from_frame,
    error_from_response,
    from_http_event,
    from_http_response,
    from_vendor_event,
    from_vendor_response,
    http_stream_end,
    incomplete,
    is_last,
    json_or_none,
    parse_frame,
)
from translators.types import ChatRequest, JSONObject, Message, ModelType, StreamChunk

__all__ = ["HTTP_BASE_URL", "MODELS", "SparkModel", "SparkTranslator", "StreamState", "error_from_frame",
           "error_from_response", "from_vendor_event", "from_vendor_response", "resolve_model", "signed_url",
           "to_http_request", "to_vendor_request"]

PROVIDER = "spark"
WS_BASE_URL = "wss://spark-api.xf-yun.com"
HTTP_BASE_URL = "https://spark-api-open.xf-yun.com/v1"
MAX_TOKENS = 8192
UID_LENGTH = 32
_DEFAULT_PORTS = {"ws": 80, "http": 80, "wss": 443, "https": 443}


@dataclass(frozen=True, slots=True)
class SparkModel:
    path: str         # the websocket URL path (must match the domain)
    domain: str       # parameter.chat.domain, and the HTTP API's `model`
    functions: bool   # accepts payload.functions (v3 and later)
    system: bool      # accepts a system turn (not Lite, not V2 ⚠)


_LITE = SparkModel("/v1.1/chat", "lite", False, False)
_V2 = SparkModel("/v2.1/chat", "generalv2", False, False)
_PRO = SparkModel("/v3.1/chat", "generalv3", True, True)
_PRO_128K = SparkModel("/chat/pro-128k", "pro-128k", True, True)
_MAX = SparkModel("/v3.5/chat", "generalv3.5", True, True)
_MAX_32K = SparkModel("/chat/max-32k", "max-32k", True, True)
_ULTRA = SparkModel("/v4.0/chat", "4.0Ultra", True, True)

# spark.md §A1: model name -> (path, domain). The product names first, then the domains.
MODELS: Mapping[str, SparkModel] = {
    "spark-lite": _LITE, "spark-v2": _V2, "spark-pro": _PRO, "spark-pro-128k": _PRO_128K,
    "spark-max": _MAX, "spark-max-32k": _MAX_32K, "spark-4.0-ultra": _ULTRA,
    "lite": _LITE, "general": SparkModel("/v1.1/chat", "general", False, False), "generalv2": _V2,
    "generalv3": _PRO, "pro-128k": _PRO_128K, "generalv3.5": _MAX, "max-32k": _MAX_32K, "4.0Ultra": _ULTRA,
}


def resolve_model(model: str) -> SparkModel:
    found = MODELS.get(model)
    if found is None:
        raise ApiError(404, f"The model '{model}' is not a Spark model; known models: {', '.join(MODELS)}",
                       "invalid_request_error", "model_not_found", "model")
    return found


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


# -- request: OpenAI -> Spark -----------------------------------------------------------------


def _refuse_unsupported(req: ChatRequest, model: SparkModel) -> None:
    refuse_choices_and_logprobs(req, PROVIDER)
    if req.stop:
        raise unsupported(PROVIDER, "stop sequences", "stop")
    refuse_response_format(req, PROVIDER, "response_format (JSON mode / structured outputs)")
    if req.tools and not model.functions:
        raise unsupported(PROVIDER, f"tools on '{model.domain}' (function calling needs v3 or later)", "tools")
    refuse_non_function_tools(req, PROVIDER)
    refuse_forced_tool_choice(req, PROVIDER)


def _calls_as_text(message: Message) -> str:
    calls = [{"name": c.function.name, "arguments": c.function.arguments} for c in message.tool_calls or ()]
    if not calls:
        return ""
    return orjson.dumps({"function_call": calls[0]} if len(calls) == 1 else {"function_calls": calls}).decode()


def _messages(req: ChatRequest, model: SparkModel, http: bool) -> list[JSONObject]:
    system: list[str] = []
    turns: list[JSONObject] = []
    for i, message in enumerate(req.messages):
        where = f"messages[{i}]"
        text = text_only(message.content, where, PROVIDER)
        if message.role in ("system", "developer"):
            if text:
                system.append(text)
        elif message.role == "user":
            turns.append({"role": "user", "content": text})
        elif message.role == "assistant":
            turn: JSONObject = {"role": "assistant", "content": text}
            if http and message.tool_calls:
                turn["tool_calls"] = [c.model_dump(exclude_none=True) for c in message.tool_calls]
            elif not text:
                turn["content"] = _calls_as_text(message)
            turns.append(turn)
        elif http and message.role == "tool":
            turns.append({"role": "tool", "content": text, "tool_call_id": message.tool_call_id or ""})
        else:  # tool / function results on the websocket: a user turn (see the module docstring)
            turns.append({"role": "user", "content": text})
    if not any(t["role"] == "user" for t in turns):
        raise bad_request(f"provider '{PROVIDER}' needs at least one user message", "messages")
    if system and model.system:
        return [{"role": "system", "content": "\n\n".join(system)}, *turns]
    if system:
        first = next(t for t in turns if t["role"] == "user")
        first["content"] = "\n\n".join([*system, first["content"]])
    return turns


def _sampling(req: ChatRequest) -> JSONObject:
    out: JSONObject = {}
    if req.temperature is not None:
        out["temperature"] = min(max(req.temperature, 0.01), 1.0)
    if req.token_limit is not None:
        out["max_tokens"] = min(req.token_limit, MAX_TOKENS)
    top_k = req.raw.get("top_k")
    if isinstance(top_k, int) and not isinstance(top_k, bool) and 1 <= top_k <= 6:
        out["top_k"] = top_k
    return out


def _functions(req: ChatRequest) -> list[JSONObject]:
    if not req.tools or req.tool_choice == "none":
        return []
    out = []
    for tool in req.tools:
        item: JSONObject = {"name": tool.function.name,
                            "parameters": tool.function.parameters or {"type": "object", "properties": {}}}
        if tool.function.description:
            item["description"] = tool.function.description
        out.append(item)
    return out


def to_vendor_request(req: ChatRequest, model: str, app_id: str = "") -> JSONObject:
    """The websocket request frame for `model` (a name of `MODELS`); `app_id` goes in the header."""
    spark_model = resolve_model(model)
    _refuse_unsupported(req, spark_model)
    header: JSONObject = {"app_id": app_id}
    if req.user:
        header["uid"] = req.user[:UID_LENGTH]
    payload: JSONObject = {"message": {"text": _messages(req, spark_model, http=False)}}
    functions = _functions(req)
    if functions:
        payload["functions"] = {"text": functions}
    return {"header": header, "parameter": {"chat": {"domain": spark_model.domain, **_sampling(req)}},
            "payload": payload}


def to_http_request(req: ChatRequest, model: str) -> JSONObject:
    """The HTTP API's body: OpenAI-like, with the domain as `model`."""
    spark_model = resolve_model(model)
    _refuse_unsupported(req, spark_model)
    body: JSONObject = {"model": spark_model.domain, "messages": _messages(req, spark_model, http=True),
                        **_sampling(req)}
    if req.user:
        body["user"] = req.user[:UID_LENGTH]
    if req.tools and req.tool_choice != "none":
        body["tools"] = [t.model_dump(exclude_none=True) for t in req.tools]
    if req.stream:
        body["stream"] = True
    return body


# -- the translator ------------------------------------------------------------------------------


class SparkTranslator(Translator):
    name = PROVIDER
    display_name = "iFlytek Spark"
    key_url = "https://console.xfyun.cn/services/cbm"
    model_types = frozenset({ModelType.LLM})
    credential_fields = (
        CredentialField("app_id", required=False, secret=False, description="APPID (websocket API)", label="APPID"),
        CredentialField("api_key", required=False, description="APIKey (websocket API)", label="APIKey"),
        CredentialField("api_secret", required=False, description="APISecret (websocket API)", label="APISecret"),
        CredentialField("api_password", required=False, label="APIPassword",
                        description="APIPassword (HTTP API; used instead of the websocket when set)"),
    )
    default_base_url = WS_BASE_URL
    catalog = {ModelType.LLM: ("spark-lite", "spark-pro", "spark-pro-128k", "spark-max", "spark-max-32k",
                               "spark-4.0-ultra")}
    model_prefixes = {ModelType.LLM: ("spark-",)}

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
        frame = to_vendor_request(req, ctx.model, ctx.credential["app_id"])
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
            resp = await ctx.http.post_json(self._http_url(ctx), to_http_request(req, ctx.model) | {"stream": False},
                                            self._http_headers(ctx))
            if resp.status != 200:
                raise error_from_response(resp.status, json_or_none(resp.body), resp.headers)
            return from_http_response(resp.json(), ctx.model)
        frames: list[JSONObject] = []
        async with self._websocket(req, ctx) as ws:
            async for text in ws.texts():
                frame = parse_frame(text)
                err = error_from_frame(frame)
                if err is not None:
                    raise err
                frames.append(frame)
                if is_last(frame):
                    break
        return from_vendor_response(frames, ctx.model)

    async def chat_stream(self, req: ChatRequest, ctx: CallContext) -> AsyncIterator[StreamChunk]:
        if ctx.credential.get("api_password"):
            async for chunk in self._http_stream(req, ctx):
                yield chunk
            return
        state = StreamState(ctx.model)
        async with self._websocket(req, ctx) as ws:
            async for text in ws.texts():
                for chunk in from_vendor_event(parse_frame(text), state):
                    yield chunk
                if state.finished:
                    return
        raise incomplete()

    # -- the HTTP API --------------------------------------------------------------------------

    def _http_url(self, ctx: CallContext) -> str:
        return f"{ctx.base_url.rstrip('/')}/chat/completions"

    def _http_headers(self, ctx: CallContext) -> dict[str, str]:
        return {"Authorization": f"Bearer {ctx.credential['api_password']}"}

    async def _http_stream(self, req: ChatRequest, ctx: CallContext) -> AsyncIterator[StreamChunk]:
        body = to_http_request(req, ctx.model) | {"stream": True}
        async with ctx.http.stream("POST", self._http_url(ctx), headers=self._http_headers(ctx), json=body) as resp:
            if resp.status != 200:
                raise error_from_response(resp.status, json_or_none(await resp.read()), resp.headers)
            if "json" in resp.headers.get("Content-Type", ""):  # `{"code": N, ...}` where a stream belongs
                raise error_from_response(200, json_or_none(await resp.read()), resp.headers)
            state = HTTPStreamState(ctx.model)
            decoder = SSEDecoder(resp.max_event_bytes)
            events = 0
            async for data in resp.chunks():
                for event in decoder.feed(data):
                    events += 1
                    if event.data == DONE_DATA:
                        for chunk in http_stream_end(state):
                            yield chunk
                        return
                    if event.data:
                        for chunk in from_http_event(json_or_none(event.data), state):
                            yield chunk
            for event in decoder.flush():
                if event.data and event.data != DONE_DATA:
                    for chunk in from_http_event(json_or_none(event.data), state):
                        yield chunk
        if not events and not state.started:
            raise UpstreamError(502, f"{PROVIDER} answered a streamed request without any event", "server_error",
                                "upstream_bad_response")
        for chunk in http_stream_end(state):  # no end marker: the stream simply ended
            yield chunk
