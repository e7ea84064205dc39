"""iFlytek Spark's wire formats as pure functions: requests, websocket frames, errors.

No I/O: the wiring, and what the requests map, is `translators/spark/__init__.py`; the HTTP
API's requests, answers and events are `translators/spark/http_codec.py`. Reference:
../shared/vendors/spark.md §A1-§A6.

Frames carry text *increments* (`payload.choices.text[0].content`); the frame with
`header.status == 2` is the last one and the only one with usage (`payload.usage.text`).
Spark sends no finish reason: `stop`, or `tool_calls` when a `function_call` arrived (Spark
returns at most one; it gets a synthesised `call_` id). `header.code != 0` is an error, in
any frame, mapped by `ERROR_CODES`; output moderation (10014/10019) after text went out ends
the stream with `finish_reason: content_filter` instead (the client holds part of an answer).
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from translators._http import Headers
from translators._json import loads as bounded_json
from translators._refusals import (
    refuse_choices_and_logprobs,
    refuse_forced_tool_choice,
    refuse_non_function_tools,
    refuse_response_format,
    text_only,
)
from translators._shapes import now
from translators._sse import SSEEvent
from translators._stream import Codec, StreamState
from translators.errors import (
    ApiError,
    bad_request,
    bad_response,
    incomplete_stream,
    parse_retry_after,
    unsupported,
    upstream_status_error,
)
from translators.types import ChatRequest, JSONObject, Message, StreamChunk, Usage

PROVIDER = "spark"
MAX_TOKENS = 8192
UID_LENGTH = 32


# -- models -------------------------------------------------------------------------------------


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


# -- requests: OpenAI -> Spark ------------------------------------------------------------------


def refuse_unsupported(req: ChatRequest, model: SparkModel) -> None:
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


def messages_for(req: ChatRequest, model: SparkModel, http: bool) -> list[JSONObject]:
    system: list[str] = []
    turns: list[JSONObject] = []
    for i, message in enumerate(req.messages):
        text = text_only(message.content, f"messages[{i}]", PROVIDER)
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


def sampling(req: ChatRequest) -> JSONObject:
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


def to_vendor_request(req: ChatRequest, model: str) -> JSONObject:
    """The websocket request frame for `model` (a name of `MODELS`); the credential's
    `app_id` is the wiring's to add (`with_app_id`)."""
    spark_model = resolve_model(model)
    refuse_unsupported(req, spark_model)
    header: JSONObject = {"uid": req.user[:UID_LENGTH]} if req.user else {}
    payload: JSONObject = {"message": {"text": messages_for(req, spark_model, http=False)}}
    functions = _functions(req)
    if functions:
        payload["functions"] = {"text": functions}
    return {"header": header, "parameter": {"chat": {"domain": spark_model.domain, **sampling(req)}},
            "payload": payload}


def with_app_id(frame: JSONObject, app_id: str) -> JSONObject:
    return {**frame, "header": {"app_id": app_id, **frame["header"]}}


# -- errors -------------------------------------------------------------------------------------

# header.code (websocket) / code (HTTP API) -> (HTTP status, OpenAI error code or None for str(code)).
# Statuses go through `upstream_status_error`: 401/403 -> 403 upstream_credential_rejected,
# 5xx -> 502, 503 stays 503. Unknown non-zero codes are a 502.
ERROR_CODES: Mapping[int, tuple[int, str | None]] = {
    10003: (400, None), 10004: (400, None), 10005: (400, None), 10163: (400, None),
    10013: (400, "content_filter"), 10014: (400, "content_filter"), 10019: (400, "content_filter"),
    10907: (400, "context_length_exceeded"),
    11200: (403, None),
    11201: (429, None), 11202: (429, None), 11203: (429, None),
    10110: (503, None), 10222: (502, None), 10012: (500, None),
}
# Output moderation: after the first delta these end the stream as `content_filter`.
OUTPUT_FILTER_CODES = frozenset({10014, 10019})


def as_int(value: Any) -> int:
    """An integer field; Spark's codes are numbers, but a digit string is read too."""
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def error_from_code(code: int, message: str) -> ApiError:
    """A Spark error code (frame `header.code` or HTTP-API `code`) as the client's error."""
    status, openai_code = ERROR_CODES.get(code, (502, None))
    text = f"{message or 'error'} (Spark error {code})"
    return upstream_status_error(PROVIDER, status, text, openai_code or str(code))


def error_from_frame(frame: Any) -> ApiError | None:
    """The error a frame carries, or None for a good frame."""
    header = frame.get("header") if isinstance(frame, dict) else None
    if not isinstance(header, dict):
        return bad_response(PROVIDER, "a frame without a header")
    code = as_int(header.get("code"))
    return None if code == 0 else error_from_code(code, str(header.get("message") or ""))


def error_from_response(status: int, body: Any, headers: Headers | None) -> ApiError:
    """A refused websocket handshake (`{"message": ...}`, 401/403) or an HTTP-API error
    (`{"error": {...}}`, or `{"code": N, "message": ...}` even with status 200)."""
    if isinstance(body, dict) and as_int(body.get("code")) != 0:
        return error_from_code(as_int(body["code"]), str(body.get("message") or ""))
    message = f"HTTP {status} from {PROVIDER}"
    err = body.get("error") if isinstance(body, dict) else None
    if isinstance(err, dict) and err.get("message"):
        message = str(err["message"])
    elif isinstance(body, dict) and isinstance(body.get("message"), str):
        message = body["message"]
    if status < 400:
        status = 502  # an error where an answer belonged (or a failed upgrade) without an error status
    return upstream_status_error(PROVIDER, status, message, None, None, parse_retry_after(headers))


def error_in_body(body: Any, headers: Headers | None) -> ApiError | None:
    """An HTTP-API body (a whole answer, or one where a stream belongs) that is an error."""
    if isinstance(body, dict) and (as_int(body.get("code")) != 0 or isinstance(body.get("error"), dict)):
        return error_from_response(200, body, headers)
    return None


def chat_id(sid: Any) -> str:
    return f"chatcmpl-{sid}" if isinstance(sid, str) and sid else "chatcmpl-spark-" + secrets.token_hex(8)


# -- websocket frames -> OpenAI -------------------------------------------------------------------


def parse_frame(data: bytes | str) -> JSONObject:
    try:
        frame = bounded_json(data)
    except ValueError:
        frame = None
    if not isinstance(frame, dict):
        raise bad_response(PROVIDER, "a frame that is not a JSON object")
    return frame


def _text_item(frame: JSONObject) -> JSONObject:
    choices = (frame.get("payload") or {}).get("choices") or {}
    items = choices.get("text") if isinstance(choices, dict) else None
    return items[0] if isinstance(items, list) and items and isinstance(items[0], dict) else {}


def _usage(frame: JSONObject) -> Usage | None:
    usage = ((frame.get("payload") or {}).get("usage") or {}).get("text")
    if not isinstance(usage, dict):
        return None
    prompt, completion = as_int(usage.get("prompt_tokens")), as_int(usage.get("completion_tokens"))
    return Usage(prompt, completion, as_int(usage.get("total_tokens")) or prompt + completion)


def _tool_call(function_call: Any) -> JSONObject | None:
    if not isinstance(function_call, dict) or not function_call.get("name"):
        return None
    arguments = function_call.get("arguments")
    if not isinstance(arguments, str):  # documented as a JSON string; be kind to an object
        arguments = orjson.dumps(arguments if arguments is not None else {}).decode()
    return {"id": "call_" + secrets.token_hex(12), "type": "function",
            "function": {"name": str(function_call["name"]), "arguments": arguments}}


def is_last(frame: Any) -> bool:
    return isinstance(frame, dict) and (frame.get("header") or {}).get("status") == 2


def from_vendor_response(body: Any, model: str) -> JSONObject:
    """A whole websocket exchange (`body`: every frame, the status-2 one last) as a chat completion."""
    frames: list[JSONObject] = body if isinstance(body, list) else []
    texts: list[str] = []
    calls: list[JSONObject] = []
    usage = Usage(0, 0, 0)
    for frame in frames:
        err = error_from_frame(frame)
        if err is not None:
            raise err
        item = _text_item(frame)
        if isinstance(item.get("content"), str):
            texts.append(item["content"])
        call = _tool_call(item.get("function_call"))
        if call is not None:
            calls = [call]
        usage = _usage(frame) or usage
    if not frames or not is_last(frames[-1]):
        raise incomplete()
    content = "".join(texts)
    message: JSONObject = {"role": "assistant", "content": content if content or not calls else None,
                           "refusal": None}
    if calls:
        message["tool_calls"] = calls
    return {"id": chat_id((frames[0].get("header") or {}).get("sid")), "object": "chat.completion",
            "created": now(), "model": model,
            "choices": [{"index": 0, "message": message, "logprobs": None,
                         "finish_reason": "tool_calls" if calls else "stop"}],
            "usage": usage.as_dict()}


def incomplete() -> ApiError:
    return incomplete_stream(PROVIDER, "its last frame")


@dataclass(slots=True)
class SparkState(StreamState):
    """One websocket stream. `started`: the first delta (with `role`) went out; after it an
    output-moderation code ends the stream as content_filter rather than as an error."""

    named: bool = False  # the id is Spark's session id, from the first frame
    # A function_call arrived: the finish reason is tool_calls (Spark sends none of its own).
    tool_call: bool = False

    def end(self, finish: str, usage: Usage | None) -> list[StreamChunk]:
        self.finished = True
        chunks = [] if self.started else [self.chunk({"role": "assistant", "content": ""})]
        self.started = True
        return [*chunks, self.chunk({}, finish), self.usage_chunk(usage or Usage(0, 0, 0))]


def from_vendor_event(event: SSEEvent, state: SparkState) -> list[StreamChunk]:
    """One websocket frame -> the OpenAI chunks it becomes. The first chunk carries the
    role; the status-2 frame adds the finish chunk and the usage chunk (`choices: []`,
    `StreamChunk.usage` set), always last. An error frame raises ApiError."""
    if state.finished:
        return []
    frame = parse_frame(event.data)
    header = frame.get("header")
    if not state.named:
        state.id, state.named = chat_id(header.get("sid") if isinstance(header, dict) else None), True
    err = error_from_frame(frame)
    if err is not None:
        if state.started and isinstance(header, dict) and as_int(header.get("code")) in OUTPUT_FILTER_CODES:
            return state.end("content_filter", _usage(frame))
        raise err
    item = _text_item(frame)
    chunks: list[StreamChunk] = []
    text = item.get("content") if isinstance(item.get("content"), str) else ""
    if text or not state.started:
        chunks.append(state.chunk({"content": text} if state.started else {"role": "assistant", "content": text}))
        state.started = True
    call = _tool_call(item.get("function_call"))
    if call is not None and not state.tool_call:
        state.tool_call = True
        chunks.append(state.chunk({"tool_calls": [{"index": 0, **call}]}))
    if is_last(frame):
        chunks += state.end("tool_calls" if state.tool_call else "stop", _usage(frame))
    return chunks


def _closed_early(state: StreamState) -> list[StreamChunk]:
    raise incomplete()


CODEC = Codec(PROVIDER, error_from_response, error_in_body, SparkState, from_vendor_event, _closed_early)


@dataclass(slots=True)
class FrameLog(StreamState):
    """A whole (not streamed) answer's frames, kept for `from_vendor_response`."""

    frames: list[JSONObject] = field(default_factory=list)


def keep_frame(event: SSEEvent, log: FrameLog) -> tuple[()]:
    frame = parse_frame(event.data)
    err = error_from_frame(frame)
    if err is not None:
        raise err
    log.frames.append(frame)
    log.finished = is_last(frame)
    return ()


FRAMES = Codec(PROVIDER, error_from_response, error_in_body, FrameLog, keep_frame, _closed_early)
