"""iFlytek Spark -> OpenAI: websocket frames, HTTP-API answers and errors as OpenAI shapes.

Pure functions without I/O; `translators/spark.py` (the translator) uses and re-exports
them. Reference: ../shared/vendors/spark.md §A4-§A6 and §B.

- Websocket frames carry text *increments* (`payload.choices.text[0].content`); the frame
  with `header.status == 2` is the last one and the only one with usage
  (`payload.usage.text`). Spark sends no finish reason: `stop`, or `tool_calls` when a
  `function_call` arrived (Spark returns at most one; it gets a synthesised `call_` id).
- `header.code != 0` is an error, in any frame: mapped by `ERROR_CODES`. Output moderation
  (10014/10019) after text went out ends the stream with `finish_reason: content_filter`
  instead, since the client already holds part of an answer.
- The HTTP API (APIPassword) is OpenAI-like without `id/object/created/model/finish_reason`;
  `code != 0` in a 200 body is an error mapped by the same table.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from translators._http import Headers
from translators._json import loads as bounded_json
from translators._shapes import chat_chunk, now, usage_chunk
from translators.errors import (
    ApiError,
    UpstreamError,
    body_text,
    parse_retry_after,
    upstream_status_error,
)
from translators.types import JSONObject, StreamChunk, Usage

PROVIDER = "spark"

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


def _int(value: Any) -> int:
    """An integer field; Spark's codes are numbers, but a digit string is read too."""
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def chat_id(sid: Any) -> str:
    return f"chatcmpl-{sid}" if isinstance(sid, str) and sid else "chatcmpl-spark-" + secrets.token_hex(8)


def tool_call_id() -> str:
    return "call_" + secrets.token_hex(12)


# -- errors -------------------------------------------------------------------------------


def error_from_code(code: int, message: str) -> ApiError:
    """A Spark error code (frame `header.code` or HTTP-API `code`) as the client's error."""
    status, openai_code = ERROR_CODES.get(code, (502, None))
    text = f"{message or 'error'} (Spark error {code})"
    return upstream_status_error(PROVIDER, status, text, openai_code or str(code))


def error_from_frame(frame: Any) -> ApiError | None:
    """The error a frame carries, or None for a good frame."""
    header = frame.get("header") if isinstance(frame, dict) else None
    if not isinstance(header, dict):
        return UpstreamError(502, f"{PROVIDER} sent a frame without a header", "server_error",
                             "upstream_bad_response")
    code = _int(header.get("code"))
    return None if code == 0 else error_from_code(code, str(header.get("message") or ""))


def error_from_response(status: int, body: Any, headers: Headers | None) -> ApiError:
    """A refused websocket handshake (`{"message": ...}`, 401/403) or an HTTP-API error
    (`{"error": {...}}`, or `{"code": N, "message": ...}` even with status 200)."""
    if isinstance(body, dict) and _int(body.get("code")) != 0:
        return error_from_code(_int(body["code"]), str(body.get("message") or ""))
    message = f"HTTP {status} from {PROVIDER}"
    err = body.get("error") if isinstance(body, dict) else None
    if isinstance(err, dict) and err.get("message"):
        message = str(err["message"])
    elif isinstance(body, dict) and isinstance(body.get("message"), str):
        message = body["message"]
    if status < 400:
        status = 502  # an error where an answer belonged (or a failed upgrade) without an error status
    return upstream_status_error(PROVIDER, status, message, None, None, parse_retry_after(headers))


# -- websocket frames --------------------------------------------------------------------


def parse_frame(text: str) -> JSONObject:
    try:
        frame = bounded_json(text)
    except orjson.JSONDecodeError:
        frame = None
    if not isinstance(frame, dict):
        raise UpstreamError(502, f"{PROVIDER} sent a frame that is not a JSON object", "server_error",
                            "upstream_bad_response")
    return frame


def json_or_none(payload: bytes) -> Any:
    """An HTTP-API body as JSON; a non-JSON one (a proxy's HTML page) as a message to show."""
    try:
        return bounded_json(payload) if payload else None
    except orjson.JSONDecodeError:
        return {"message": body_text(payload)}


def _text_item(frame: JSONObject) -> JSONObject:
    choices = (frame.get("payload") or {}).get("choices") or {}
    items = choices.get("text") if isinstance(choices, dict) else None
    return items[0] if isinstance(items, list) and items and isinstance(items[0], dict) else {}


def _usage(frame: JSONObject) -> Usage | None:
    usage = ((frame.get("payload") or {}).get("usage") or {}).get("text")
    if not isinstance(usage, dict):
        return None
    prompt, completion = _int(usage.get("prompt_tokens")), _int(usage.get("completion_tokens"))
    return Usage(prompt, completion, _int(usage.get("total_tokens")) or prompt + completion)


def _tool_call(function_call: Any) -> JSONObject | None:
    if not isinstance(function_call, dict) or not function_call.get("name"):
        return None
    arguments = function_call.get("arguments")
    if not isinstance(arguments, str):  # documented as a JSON string; be kind to an object
        arguments = orjson.dumps(arguments if arguments is not None else {}).decode()
    return {"id": tool_call_id(), "type": "function",
            "function": {"name": str(function_call["name"]), "arguments": arguments}}


def is_last(frame: Any) -> bool:
    return isinstance(frame, dict) and (frame.get("header") or {}).get("status") == 2


def from_vendor_response(frames: list[JSONObject], model: str) -> JSONObject:
    """A whole websocket exchange (every frame, the status-2 one last) as a chat completion."""
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
    return UpstreamError(502, f"the {PROVIDER} websocket closed before its last frame", "server_error",
                         "upstream_incomplete_stream")


@dataclass(slots=True)
class StreamState:
    """What translating one Spark frame sequence must remember between frames."""

    model: str
    # Spark's session id names the stream; OpenAI repeats one id and one `created` per chunk.
    id: str = ""
    created: int = field(default_factory=now)
    # The first delta carries `role`; after it an output-moderation code ends the stream
    # as content_filter rather than as an error.
    started: bool = False
    # A function_call arrived: the finish reason is tool_calls (Spark sends none of its own).
    tool_call: bool = False
    # The status-2 frame went by: the stream is complete (usage came with it).
    finished: bool = False

    def chunk(self, delta: JSONObject, finish: str | None = None) -> StreamChunk:
        return chat_chunk(self.id, self.created, self.model, delta, finish)

    def usage_chunk(self, usage: Usage) -> StreamChunk:
        return usage_chunk(self.id, self.created, self.model, usage.as_dict(), usage)

    def end(self, finish: str, usage: Usage | None) -> list[StreamChunk]:
        self.finished = True
        chunks = [] if self.started else [self.chunk({"role": "assistant", "content": ""})]
        self.started = True
        return [*chunks, self.chunk({}, finish), self.usage_chunk(usage or Usage(0, 0, 0))]


def from_vendor_event(frame: JSONObject, state: StreamState) -> list[StreamChunk]:
    """One websocket frame -> the OpenAI chunks it becomes. The first chunk carries the
    role; the status-2 frame adds the finish chunk and the usage chunk (`choices: []`,
    `StreamChunk.usage` set), always last. An error frame raises ApiError."""
    if state.finished:
        return []
    header = frame.get("header") if isinstance(frame, dict) else None
    if not state.id:
        state.id = chat_id((header or {}).get("sid"))
    err = error_from_frame(frame)
    if err is not None:
        if state.started and _int((header or {}).get("code")) in OUTPUT_FILTER_CODES:
            return state.end("content_filter", _usage(frame))
        raise err
    item = _text_item(frame)
    chunks: list[StreamChunk] = []
    text = item.get("content") if isinstance(item.get("content"), str) else ""
    if text or not state.started:
        delta: JSONObject = {"content": text}
        if not state.started:
            delta = {"role": "assistant", "content": text}
            state.started = True
        chunks.append(state.chunk(delta))
    call = _tool_call(item.get("function_call"))
    if call is not None and not state.tool_call:
        state.tool_call = True
        chunks.append(state.chunk({"tool_calls": [{"index": 0, **call}]}))
    if is_last(frame):
        chunks += state.end("tool_calls" if state.tool_call else "stop", _usage(frame))
    return chunks


# -- the HTTP API (APIPassword) --------------------------------------------------------------


def _http_usage(body: JSONObject) -> Usage | None:
    return Usage.from_openai(body.get("usage"))


def from_http_response(body: Any, model: str) -> JSONObject:
    """An HTTP-API answer (no id/object/created/model/finish_reason) as a chat completion."""
    if not isinstance(body, dict) or _int(body.get("code")) != 0 or not isinstance(body.get("choices"), list):
        raise error_from_response(200, body, None)
    choices = []
    for i, choice in enumerate(body["choices"]):
        message = dict((choice or {}).get("message") or {})
        message.setdefault("role", "assistant")
        message.setdefault("content", None)
        message.setdefault("refusal", None)
        finish = choice.get("finish_reason") or ("tool_calls" if message.get("tool_calls") else "stop")
        choices.append({"index": choice.get("index", i), "message": message, "logprobs": None,
                        "finish_reason": finish})
    usage = _http_usage(body) or Usage(0, 0, 0)
    return {"id": chat_id(body.get("id") or body.get("sid")), "object": "chat.completion",
            "created": _int(body.get("created")) or now(), "model": model,
            "choices": choices, "usage": usage.as_dict()}


@dataclass(slots=True)
class HTTPStreamState:
    """What translating one HTTP-API stream must remember between events."""

    model: str
    id: str = ""
    created: int = field(default_factory=now)
    # Spark repeats `role` in every delta; OpenAI sends it once, first.
    started: bool = False
    tool_call: bool = False
    # Spark puts usage on its last content chunk and sends no finish reason: both are
    # held and emitted as the finish chunk and the usage chunk when the stream ends.
    usage: Usage | None = None
    finish: str | None = None

    def chunk(self, delta: JSONObject, finish: str | None = None) -> StreamChunk:
        return chat_chunk(self.id, self.created, self.model, delta, finish)


def from_http_event(event: Any, state: HTTPStreamState) -> list[StreamChunk]:
    """One parsed HTTP-API stream event -> OpenAI chunks (the end comes from `http_stream_end`)."""
    if not isinstance(event, dict) or _int(event.get("code")) != 0 or isinstance(event.get("error"), dict):
        raise error_from_response(200, event, None)
    if not state.id:
        state.id = chat_id(event.get("id") or event.get("sid"))
        state.created = _int(event.get("created")) or state.created
    state.usage = _http_usage(event) or state.usage
    chunks = []
    for choice in event.get("choices") or ():
        delta = dict((choice or {}).get("delta") or {})
        delta.pop("role", None)
        if delta.get("tool_calls"):
            state.tool_call = True
        if not state.started:
            delta = {"role": "assistant", **delta}
            delta.setdefault("content", "")
            state.started = True
        elif not delta.get("content") and not delta.get("tool_calls"):
            delta = {}
        if delta:
            chunks.append(state.chunk(delta))
        if choice.get("finish_reason"):
            state.finish = str(choice["finish_reason"])
    return chunks


def http_stream_end(state: HTTPStreamState) -> list[StreamChunk]:
    chunks = [] if state.started else [state.chunk({"role": "assistant", "content": ""})]
    finish = state.finish or ("tool_calls" if state.tool_call else "stop")
    usage = state.usage or Usage(0, 0, 0)
    chunks.append(state.chunk({}, finish))
    chunks.append(usage_chunk(state.id or chat_id(None), state.created, state.model, usage.as_dict(), usage))
    return chunks
