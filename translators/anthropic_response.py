"""Anthropic -> OpenAI: Messages API responses, stream events and errors as OpenAI shapes.

Pure functions without I/O; `translators/anthropic.py` (the translator) uses and re-exports
them. Reference: ../shared/vendors/anthropic.md §3-§5.

Usage policy: Anthropic's `input_tokens` excludes prompt-cache reads and writes, OpenAI's
`prompt_tokens` includes cached tokens, so `prompt_tokens = input_tokens +
cache_creation_input_tokens + cache_read_input_tokens` and
`prompt_tokens_details.cached_tokens = cache_read_input_tokens`. Anthropic's usage figures
are running totals (output tokens in every `message_delta`): they replace, never add up.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from translators._http import Headers
from translators._json import loads as bounded_json
from translators._shapes import chat_chunk, now
from translators._sse import SSEEvent
from translators.errors import (
    ApiError,
    UpstreamError,
    parse_retry_after,
    upstream_status_error,
)
from translators.types import JSONObject, StreamChunk, Usage

PROVIDER = "anthropic"

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


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


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


def error_in_body(body: Any) -> ApiError:
    """An error object where a message or an event was expected (a status of 200 notwithstanding)."""
    err = body.get("error") if isinstance(body, dict) else None
    if isinstance(err, dict):
        return error_from_response(ERROR_STATUS.get(str(err.get("type")), 500), body, None)
    return UpstreamError(502, f"{PROVIDER} returned a response that is not a message", "server_error",
                         "upstream_bad_response")


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
        raise error_in_body(body)
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
    raw_usage = body.get("usage") if isinstance(body.get("usage"), dict) else {}
    usage, _ = usage_of(_int(raw_usage.get("input_tokens")), _int(raw_usage.get("cache_creation_input_tokens")),
                        _int(raw_usage.get("cache_read_input_tokens")), _int(raw_usage.get("output_tokens")))
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
class StreamState:
    """What translating one Anthropic stream must remember between events."""

    # Chunks name the routed model until message_start says which snapshot answers.
    model: str
    # OpenAI repeats one id and one `created` on every chunk; Anthropic sends its id once.
    id: str = "chatcmpl-anthropic"
    created: int = field(default_factory=now)
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
    # message_stop seen: the stream is complete (Anthropic sends no end sentinel after it).
    finished: bool = False

    def usage(self) -> tuple[JSONObject, Usage]:
        return usage_of(self.input_tokens, self.cache_creation_tokens, self.cache_read_tokens, self.output_tokens)


def parse_event(event: SSEEvent) -> JSONObject:
    """One SSE event's data as a dict whose `type` names the event (the SSE name wins for errors)."""
    try:
        data = bounded_json(event.data) if event.data else {}
    except orjson.JSONDecodeError:
        if event.event == "error":
            text = event.data[:500].decode("utf-8", "replace")
            return {"type": "error", "error": {"type": "api_error", "message": text}}
        raise UpstreamError(502, f"{PROVIDER} sent a stream event that is not JSON", "server_error",
                            "upstream_bad_response") from None
    if not isinstance(data, dict):
        data = {}
    if event.event == "error" or "type" not in data:
        data["type"] = event.event
    return data


def _chunk(state: StreamState, delta: JSONObject, finish: str | None = None) -> StreamChunk:
    return chat_chunk(state.id, state.created, state.model, delta, finish)


def _take_usage(state: StreamState, usage: Any) -> None:
    if not isinstance(usage, dict):
        return
    for key, attr in (("input_tokens", "input_tokens"), ("cache_creation_input_tokens", "cache_creation_tokens"),
                      ("cache_read_input_tokens", "cache_read_tokens"), ("output_tokens", "output_tokens")):
        if isinstance(usage.get(key), int):
            setattr(state, attr, usage[key])


def from_vendor_event(event: JSONObject, state: StreamState) -> list[StreamChunk]:
    """One Anthropic stream event -> the OpenAI chunks it becomes (often none).

    message_start -> the role chunk; text deltas -> content deltas; a tool_use block ->
    a tool call (id, name) on the renumbered index, its input_json_delta pieces -> argument
    deltas; message_delta -> the finish chunk; message_stop -> the usage chunk
    (`choices: []`, `StreamChunk.usage` set), always last. An `error` event raises ApiError.
    """
    kind = event.get("type")
    if state.finished:
        return []
    if kind == "content_block_delta":
        delta = event.get("delta") or {}
        if delta.get("type") == "text_delta":
            text = delta.get("text")
            return [_chunk(state, {"content": text})] if text else []
        if delta.get("type") == "input_json_delta":
            index = state.tool_index.get(event.get("index"))  # type: ignore[arg-type]
            piece = delta.get("partial_json")
            if index is None or not piece:
                return []
            return [_chunk(state, {"tool_calls": [{"index": index, "function": {"arguments": piece}}]})]
        return []  # thinking_delta, signature_delta, citations_delta
    if kind == "content_block_start":
        block = event.get("content_block") or {}
        if block.get("type") == "tool_use":
            index = state.tool_index[event.get("index")] = len(state.tool_index)  # type: ignore[index]
            arguments = orjson.dumps(block["input"]).decode() if block.get("input") else ""
            call = {"index": index, "id": str(block.get("id") or ""), "type": "function",
                    "function": {"name": str(block.get("name") or ""), "arguments": arguments}}
            return [_chunk(state, {"tool_calls": [call]})]
        if block.get("type") == "text" and block.get("text"):
            return [_chunk(state, {"content": block["text"]})]
        return []
    if kind == "message_start":
        message = event.get("message") or {}
        state.id = chat_id(message.get("id"))
        state.model = str(message.get("model") or state.model)
        _take_usage(state, message.get("usage"))
        return [_chunk(state, {"role": "assistant", "content": ""})]
    if kind == "message_delta":
        _take_usage(state, event.get("usage"))
        reason = (event.get("delta") or {}).get("stop_reason")
        if not reason or state.finish_reason is not None:
            return []
        state.finish_reason = finish_reason(reason)
        return [_chunk(state, {}, state.finish_reason)]
    if kind == "message_stop":
        state.finished = True
        chunks = [] if state.finish_reason is not None else [_chunk(state, {}, "stop")]
        body, usage = state.usage()
        chunks.append(StreamChunk.of({"id": state.id, "object": "chat.completion.chunk", "created": state.created,
                                      "model": state.model, "choices": [], "usage": body}, usage))
        return chunks
    if kind == "error":
        raise error_in_body(event)
    return []  # ping, content_block_stop, and event types Anthropic adds later
