"""Anthropic's Messages API as a codec: pure functions without I/O, which the stream driver
(`translators/_stream.py`) and the translator (`translators/anthropic/__init__.py`) call.
`to_vendor_request` puts together the pieces `request.py` builds; responses, stream events
and errors are read here.
Reference: ../shared/vendors/anthropic.md §3-§5.

Usage policy: Anthropic's `input_tokens` excludes prompt-cache reads and writes, OpenAI's
`prompt_tokens` includes cached tokens, so `prompt_tokens = input_tokens +
cache_creation_input_tokens + cache_read_input_tokens` and
`prompt_tokens_details.cached_tokens = cache_read_input_tokens`. Anthropic's usage figures
are running totals (output tokens in every `message_delta`): they replace, never add up.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from translators._http import Headers
from translators._json import loads as bounded_json
from translators._shapes import as_int, now
from translators._sse import SSEEvent
from translators._stream import Codec, StreamState
from translators.anthropic.request import (
    PROVIDER,
    conversation,
    default_max_tokens,
    refuse_unsupported,
    tool_choice,
    tools,
)
from translators.errors import (
    ApiError,
    bad_request,
    bad_response,
    incomplete_stream,
    parse_retry_after,
    upstream_status_error,
)
from translators.types import ChatRequest, JSONObject, StreamChunk, Usage

__all__ = ["CODEC", "AnthropicState", "error_from_response", "error_in_body", "from_vendor_event",
           "from_vendor_response", "message_usage", "relay_event", "to_vendor_request"]

FINISH_REASONS: Mapping[str, str] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",  # a server-tool turn paused; rare, and nothing to call for the client
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}

# error.type -> HTTP status, for errors that arrive without a status of their own
# (an `error` event mid-stream, or an error object inside a 200 body).
ERROR_STATUS: Mapping[str, int] = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "billing_error": 402,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "timeout_error": 504,
    "overloaded_error": 529,
}


def finish_reason(stop_reason: Any) -> str:
    return FINISH_REASONS.get(stop_reason, "stop") if isinstance(stop_reason, str) else "stop"


def chat_id(message_id: Any) -> str:
    """OpenAI-style id that keeps Anthropic's message id (`chatcmpl-msg_01...`) for tracing."""
    return f"chatcmpl-{message_id}" if message_id else "chatcmpl-anthropic"


def usage_of(input_tokens: int, cache_creation: int, cache_read: int, output_tokens: int) -> tuple[JSONObject, Usage]:
    prompt = input_tokens + cache_creation + cache_read
    usage = Usage(prompt, output_tokens, prompt + output_tokens)
    body = usage.as_dict()
    body["prompt_tokens_details"] = {"cached_tokens": cache_read}
    return body, usage


# -- requests -----------------------------------------------------------------------------


def to_vendor_request(req: ChatRequest, model: str) -> JSONObject:
    """An OpenAI chat request as a Messages API body for `model` (the mapping: request.py's docstring)."""
    refuse_unsupported(req)
    system, messages = conversation(req.messages)
    body: JSONObject = {"model": model, "max_tokens": req.token_limit or default_max_tokens(model),
                        "messages": messages}
    if system:
        body["system"] = system
    if req.temperature is not None:
        body["temperature"] = min(req.temperature, 1.0)
    if req.top_p is not None:
        body["top_p"] = req.top_p
    top_k = req.raw.get("top_k")
    if isinstance(top_k, int) and not isinstance(top_k, bool) and top_k > 0:
        body["top_k"] = top_k
    stop = [req.stop] if isinstance(req.stop, str) else (req.stop or [])
    if any(stop):
        body["stop_sequences"] = [s for s in stop if s]
    if req.user:
        body["metadata"] = {"user_id": req.user}
    if req.tools:
        body["tools"] = tools(req)
        choice = tool_choice(req.tool_choice, req.parallel_tool_calls)
        if choice is not None:
            body["tool_choice"] = choice
    elif req.tool_choice not in (None, "auto", "none"):
        raise bad_request("tool_choice needs tools", "tool_choice")
    if req.stream:
        body["stream"] = True
    return body


# -- errors -------------------------------------------------------------------------------


def error_from_response(status: int, body: Any, headers: Headers | None) -> ApiError:
    """Anthropic's `{"type":"error","error":{"type","message"},"request_id"}` with its HTTP status.

    The status decides (401 -> 403 upstream_credential_rejected, 429 keeps `retry-after`,
    529 overloaded -> 503, other 5xx -> 502); Anthropic's error type becomes `code` for 4xx.
    """
    err = body.get("error") if isinstance(body, dict) else None
    message = f"HTTP {status} from {PROVIDER}"
    kind: str | None = None
    if isinstance(err, dict):
        message = str(err.get("message") or message)
        kind = err.get("type") if isinstance(err.get("type"), str) else None
    elif isinstance(err, str):
        message = err
    code = kind if status < 500 and status != 429 else None
    param = None
    if status == 404 and message.startswith("model:"):
        code, param = "model_not_found", "model"
    return upstream_status_error(PROVIDER, status, message, code, param, parse_retry_after(headers))


def error_in_body(body: Any, headers: Headers | None = None) -> ApiError | None:
    """The error an object holds where a message or an event was expected (a 200 body, an
    `error` event): its status comes from its type. None when it holds no error object."""
    err = body.get("error") if isinstance(body, dict) else None
    if isinstance(err, dict):
        return error_from_response(ERROR_STATUS.get(str(err.get("type")), 500), body, headers)
    return None


# -- non-streamed responses ---------------------------------------------------------------


def tool_call(block: JSONObject) -> JSONObject:
    """A `tool_use` block as an OpenAI tool call; `input` (an object) becomes a JSON string."""
    arguments = orjson.dumps(block.get("input") or {}).decode()
    return {"id": str(block.get("id") or ""), "type": "function",
            "function": {"name": str(block.get("name") or ""), "arguments": arguments}}


def from_vendor_response(body: Any, model: str) -> JSONObject:
    """A Messages API response as an OpenAI chat completion. Text blocks are joined,
    `tool_use` blocks become `tool_calls`, thinking blocks are dropped."""
    if not isinstance(body, dict) or body.get("type") == "error" or not isinstance(body.get("content"), list):
        raise error_in_body(body) or bad_response(PROVIDER, "a response that is not a message")
    texts: list[str] = []
    calls: list[JSONObject] = []
    for block in body["content"]:
        if not isinstance(block, dict):
            continue
        if block.get("type") == "text":
            texts.append(str(block.get("text") or ""))
        elif block.get("type") == "tool_use":
            calls.append(tool_call(block))
    message: JSONObject = {"role": "assistant", "content": "".join(texts) if texts or not calls else None,
                           "refusal": None}
    if calls:
        message["tool_calls"] = calls
    raw_usage = body.get("usage")
    if not isinstance(raw_usage, dict):
        raw_usage = {}
    usage, _ = usage_of(as_int(raw_usage.get("input_tokens")), as_int(raw_usage.get("cache_creation_input_tokens")),
                        as_int(raw_usage.get("cache_read_input_tokens")), as_int(raw_usage.get("output_tokens")))
    return {
        "id": chat_id(body.get("id")),
        "object": "chat.completion",
        "created": now(),
        "model": str(body.get("model") or model),
        "choices": [{"index": 0, "message": message, "logprobs": None,
                     "finish_reason": finish_reason(body.get("stop_reason"))}],
        "usage": usage,
    }


# -- streams --------------------------------------------------------------------------------


@dataclass(slots=True)
class AnthropicState(StreamState):
    """What translating one Anthropic stream must remember between events. `model` is the
    routed one until message_start says which snapshot answers; `id` is Anthropic's, from
    message_start; `finished` is message_stop (Anthropic sends no end sentinel after it)."""

    # Replaced by message_start's: no random id is drawn (a syscall per stream) to be thrown away.
    id: str = "chatcmpl-anthropic"
    # Anthropic's content-block index counts text and thinking blocks too; OpenAI's
    # tool_calls[].index counts tool calls only: block index -> tool-call index.
    tool_index: dict[int, int] = field(default_factory=dict)
    # Input tokens arrive once, in message_start (newer API versions repeat them in
    # message_delta); output tokens are cumulative in every message_delta. All replaced, never summed.
    input_tokens: int = 0
    cache_creation_tokens: int = 0
    cache_read_tokens: int = 0
    output_tokens: int = 0
    # The finish chunk went out (message_delta's stop_reason); message_stop adds one if not.
    finish_reason: str | None = None

    def usage(self) -> tuple[JSONObject, Usage]:
        return usage_of(self.input_tokens, self.cache_creation_tokens, self.cache_read_tokens, self.output_tokens)


def _event_data(event: SSEEvent) -> JSONObject:
    """One SSE event's data as a dict whose `type` names the event (the SSE name wins for errors)."""
    try:
        data = bounded_json(event.data) if event.data else {}
    except orjson.JSONDecodeError:
        if event.event == "error":  # the message of a proxy in between: still Anthropic's error event
            text = event.data[:500].decode("utf-8", "replace")
            return {"type": "error", "error": {"type": "api_error", "message": text}}
        raise bad_response(PROVIDER, "a stream event that is not JSON") from None
    if not isinstance(data, dict):
        data = {}
    if event.event == "error" or "type" not in data:
        data["type"] = event.event
    return data


def _take_usage(state: AnthropicState, usage: Any) -> None:
    if not isinstance(usage, dict):
        return
    for key, attr in (("input_tokens", "input_tokens"), ("cache_creation_input_tokens", "cache_creation_tokens"),
                      ("cache_read_input_tokens", "cache_read_tokens"), ("output_tokens", "output_tokens")):
        if isinstance(usage.get(key), int):
            setattr(state, attr, usage[key])


def from_vendor_event(event: SSEEvent, state: AnthropicState) -> list[StreamChunk]:
    """One Anthropic stream event -> the OpenAI chunks it becomes (often none).

    message_start -> the role chunk; text deltas -> content deltas; a tool_use block ->
    a tool call (id, name) on the renumbered index, its input_json_delta pieces -> argument
    deltas; message_delta -> the finish chunk; message_stop -> the usage chunk
    (`choices: []`, `StreamChunk.usage` set), always last. An `error` event raises ApiError.
    """
    if state.finished:
        return []
    data = _event_data(event)
    kind = data["type"]
    if kind == "content_block_delta":  # first: nearly every event is one
        delta = data.get("delta") or {}
        if delta.get("type") == "text_delta":
            text = delta.get("text")
            return [state.chunk({"content": text})] if text else []
        if delta.get("type") == "input_json_delta":
            index = state.tool_index.get(data.get("index"))  # type: ignore[arg-type]
            piece = delta.get("partial_json")
            if index is None or not piece:
                return []
            return [state.chunk({"tool_calls": [{"index": index, "function": {"arguments": piece}}]})]
        return []  # thinking_delta, signature_delta, citations_delta
    if kind == "content_block_start":
        block = data.get("content_block") or {}
        if block.get("type") == "tool_use":
            index = state.tool_index[data.get("index")] = len(state.tool_index)  # type: ignore[index]
            arguments = orjson.dumps(block["input"]).decode() if block.get("input") else ""
            call = {"index": index, "id": str(block.get("id") or ""), "type": "function",
                    "function": {"name": str(block.get("name") or ""), "arguments": arguments}}
            return [state.chunk({"tool_calls": [call]})]
        if block.get("type") == "text" and block.get("text"):
            return [state.chunk({"content": block["text"]})]
        return []
    if kind == "message_start":
        message = data.get("message") or {}
        state.id = chat_id(message.get("id"))
        state.model = str(message.get("model") or state.model)
        state.started = True
        _take_usage(state, message.get("usage"))
        return [state.chunk({"role": "assistant", "content": ""})]
    if kind == "message_delta":
        _take_usage(state, data.get("usage"))
        reason = (data.get("delta") or {}).get("stop_reason")
        if not reason or state.finish_reason is not None:
            return []
        state.finish_reason = finish_reason(reason)
        return [state.chunk({}, state.finish_reason)]
    if kind == "message_stop":
        state.finished = True
        chunks = [] if state.finish_reason is not None else [state.chunk({}, "stop")]
        body, usage = state.usage()
        chunks.append(state.usage_chunk(usage, body))
        return chunks
    if kind == "error":
        raise error_in_body(data) or bad_response(PROVIDER, "an error event without an error object")
    return []  # ping, content_block_stop, and event types Anthropic adds later


# -- native relays (a Messages API client on this provider) --------------------------------------

_RELAY_READS = frozenset({"message_start", "message_delta", "message_stop", "error", "message"})


def message_usage(body: JSONObject) -> Usage:
    """The usage of a whole Messages answer, counted as the chat path counts it."""
    raw = body.get("usage")
    raw = raw if isinstance(raw, dict) else {}
    return usage_of(as_int(raw.get("input_tokens")), as_int(raw.get("cache_creation_input_tokens")),
                    as_int(raw.get("cache_read_input_tokens")), as_int(raw.get("output_tokens")))[1]


def relay_event(event: SSEEvent, state: AnthropicState) -> Usage | None:
    """One event of a stream relayed as it came: only the few that carry usage, the end or an
    error are parsed (the deltas pass unread); an `error` event raises; message_stop gives
    the totals."""
    if event.event not in _RELAY_READS:
        return None
    data = _event_data(event)
    kind = data["type"]
    if kind == "message_start":
        state.started = True
        message = data.get("message")
        _take_usage(state, message.get("usage") if isinstance(message, dict) else None)
    elif kind == "message_delta":
        _take_usage(state, data.get("usage"))
    elif kind == "message_stop":
        state.finished = True
        return state.usage()[1]
    elif kind == "error":
        raise error_in_body(data) or bad_response(PROVIDER, "an error event without an error object")
    return None


def _at_eof(state: AnthropicState) -> Iterable[StreamChunk]:
    raise incomplete_stream(PROVIDER, "message_stop")


CODEC: Codec[AnthropicState] = Codec(
    provider=PROVIDER,
    error_from_response=error_from_response,
    error_in_body=error_in_body,
    new_state=AnthropicState,
    from_vendor_event=from_vendor_event,
    at_eof=_at_eof,
)
