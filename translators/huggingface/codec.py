"""Hugging Face <-> OpenAI: TGI's Messages API (requests, answers, stream events, with the
quirks of older TGI versions absorbed) and the errors of every surface. Pure functions
without I/O; the tasks are in `tasks.py`, the wiring in `__init__.py`, which documents the
mapping for users. Reference: ../shared/vendors/huggingface.md §2a, §3.

Messages API quirks absorbed (all seen in recorded traffic, TGI 1.4.x):
- `"id": ""` -> a generated `chatcmpl-...` id, one per stream;
- `"object": "text_completion"` -> `chat.completion` / `chat.completion.chunk`;
- every chunk repeating `"role": "assistant"` -> the role only on the first chunk;
- tool calls with a numeric (or empty) `id` -> a generated `call_...`; `arguments` as an object ->
  a JSON string; their `description` dropped; `tool_calls` as one object -> a list;
- `finish_reason` `eos_token` / `stop_sequence` -> `stop`; `tool_calls` whenever the answer
  has tool calls (TGI 1.4.5 said `eos_token`);
- a stream without the end marker (TGI 1.4.x ends after the finish chunk): the end of the
  body ends it, but only after a chunk with a finish reason (else 502, truncated);
- usage on the finish chunk (current TGI) -> a separate usage-only chunk at the end; a
  stream without usage (TGI 1.4.x) gets an estimate (`translators/_estimate.py`).
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import urlsplit

import orjson

from translators._estimate import TokenTally, estimated_usage
from translators._http import Headers
from translators._shapes import new_id, now
from translators._sse import DONE_DATA, SSEEvent
from translators._stream import Codec, StreamState, event_json
from translators.errors import (
    ApiError,
    UpstreamError,
    bad_request,
    bad_response,
    incomplete_stream,
    parse_retry_after,
    upstream_status_error,
)
from translators.types import ChatRequest, JSONObject, StreamChunk, Usage

PROVIDER = "huggingface"

FINISH_REASONS: Mapping[str, str] = {
    "eos_token": "stop", "stop_sequence": "stop", "stop": "stop", "length": "length",
    "tool_calls": "tool_calls", "content_filter": "content_filter", "function_call": "tool_calls",
}

# TGI's error_type -> the HTTP status TGI gives it (router/src/server.rs), for errors that
# arrive inside a stream or a 200 without a status of their own.
ERROR_TYPE_STATUS: Mapping[str, int] = {
    "validation": 422, "overloaded": 429, "generation": 424, "incomplete_generation": 500,
    "template_error": 422, "tool_error": 422, "healthcheck": 503,
}


def obj(value: Any) -> JSONObject:
    return value if isinstance(value, dict) else {}


def finish_reason(value: Any) -> str | None:
    return FINISH_REASONS.get(value, "stop") if isinstance(value, str) and value else None


def endpoint_root(url: str) -> str:
    """A checked `endpoint_url` without its trailing slash; the message never echoes it."""
    try:
        parts = urlsplit(url)
        ok = parts.scheme in ("http", "https") and bool(parts.hostname) and "@" not in parts.netloc \
            and not parts.query and not parts.fragment and not any(ch.isspace() for ch in url)
    except ValueError:
        ok = False
    if not ok:
        raise bad_request(f"the {PROVIDER} credential's endpoint_url must be an http(s) URL without user info, "
                          "query or fragment", "endpoint_url", "invalid_credential")
    return url.rstrip("/")


# -- errors ------------------------------------------------------------------------------------------


class ModelLoading(UpstreamError):
    """A 503 "model is loading" with the server's estimate (seconds): worth waiting for
    while the request's deadline allows (the wiring decides)."""

    def __init__(self, message: str, estimate: float, retry_after: float | None) -> None:
        super().__init__(503, message, "server_error", "model_loading", None, retry_after)
        self.estimate = estimate


class NoMessagesAPI(UpstreamError):
    """A 404/405 from a chat URL probed for the Messages API: the text-generation task serves instead."""


def _message(body: Any, status: int) -> tuple[str, str | None]:
    if isinstance(body, str) and body:
        return body, None
    if isinstance(body, dict):
        err = body.get("error")
        kind = body.get("error_type") if isinstance(body.get("error_type"), str) else None
        if isinstance(err, list):
            err = "; ".join(str(e) for e in err)
        if isinstance(err, dict):  # an OpenAI-shaped error from a newer router (or a plain-text body)
            code = err.get("code") or err.get("type")
            return str(err.get("message") or f"HTTP {status}"), code if isinstance(code, str) else None
        if err:
            return str(err), kind
        if isinstance(body.get("message"), str):
            return body["message"], kind
    return f"HTTP {status} from {PROVIDER}", None


def error_from_response(status: int, body: Any, headers: Headers | None) -> ApiError:
    """A Hugging Face error (JSON `{"error", "error_type"}`, `{"error", "estimated_time"}`, or
    plain text) with its HTTP status. The status decides: 401/403 -> 403
    upstream_credential_rejected; 422 -> 400 with the vendor's message; 424 (generation
    failed) -> 502; 503 loading -> 503 `model_loading` with the estimate; 404 -> model_not_found."""
    message, kind = _message(body, status)
    retry_after = parse_retry_after(headers)
    if isinstance(body, dict) and isinstance(body.get("estimated_time"), int | float):
        estimate = float(body["estimated_time"])
        message = f"{PROVIDER}: {message} (estimated time until it is ready: {estimate:.0f}s); retry later"
        if status == 503:
            return ModelLoading(message, estimate, retry_after or estimate)
        return UpstreamError(503, message, "server_error", "model_loading", None, retry_after or estimate)
    if status == 404:
        return UpstreamError(404, f"{PROVIDER}: {message}", "invalid_request_error", "model_not_found", "model")
    if status == 424:
        status = 502
    return upstream_status_error(PROVIDER, status, message, kind, None, retry_after)


def error_event(body: JSONObject) -> ApiError:
    """An error object without a status of its own (`data:{"error", "error_type"}` inside a
    stream, or an error where a 200 answer belongs): the status TGI gives its error_type."""
    kind = body.get("error_type")
    status = ERROR_TYPE_STATUS.get(kind, 500) if isinstance(kind, str) else 500
    return error_from_response(status, body, None)


def error_in_body(body: Any, headers: Headers | None) -> ApiError | None:
    """The error a 200 body holds instead of an answer (a chat, a generation, a transcription)."""
    if isinstance(body, dict) and body.get("error") is not None and not body.get("choices") \
            and "generated_text" not in body and "text" not in body:
        return error_event(body)
    return None


def _probe_error(status: int, body: Any, headers: Headers | None) -> ApiError:
    if status in (404, 405):
        return NoMessagesAPI(404, f"{PROVIDER} has no Messages API at this URL", "invalid_request_error",
                             "model_not_found", "model")
    return error_from_response(status, body, headers)


# -- Messages API: requests and answers -----------------------------------------------------------------


def to_vendor_request(req: ChatRequest, model: str) -> JSONObject:
    """The client's JSON for TGI's Messages API (see `__init__.py`'s docstring)."""
    body = req.raw_with(model=model)
    limit = body.pop("max_completion_tokens", None)
    if limit is not None and body.get("max_tokens") is None:
        body["max_tokens"] = limit
    fmt = body.get("response_format")
    if isinstance(fmt, dict):
        if fmt.get("type") == "json_schema" and isinstance(fmt.get("json_schema"), dict):
            body["response_format"] = {"type": "json_object", "value": fmt["json_schema"].get("schema") or {}}
        elif fmt.get("type") == "json_object" and "value" not in fmt:
            body["response_format"] = {"type": "json_object", "value": {"type": "object"}}
        elif fmt.get("type") == "text":
            del body["response_format"]
    if req.stream:
        body["stream_options"] = {**(body.get("stream_options") or {}), "include_usage": True}
    return body


def tool_call(call: Any, index: int, with_id: bool = True) -> JSONObject:
    """One TGI tool call (or, in a stream, one piece of it) as OpenAI's: a unique string id
    (TGI numbers them 0, 1... on every answer), `arguments` a JSON string, no `description`."""
    call = obj(call)
    function = obj(call.get("function"))
    arguments = function.get("arguments")
    if arguments is not None and not isinstance(arguments, str):
        arguments = orjson.dumps(arguments).decode()
    out: JSONObject = {"index": index}
    fn: JSONObject = {}
    if with_id:  # the first piece of a call: id, type and name (1.4.x repeats the name on every piece)
        call_id = call.get("id")
        usable = isinstance(call_id, str) and call_id and not call_id.isdigit()
        out["id"] = call_id if usable else f"call_{secrets.token_hex(12)}"
        out["type"] = "function"
        if function.get("name"):
            fn["name"] = str(function["name"])
    if arguments is not None:
        fn["arguments"] = arguments
    if fn:
        out["function"] = fn
    return out


def _calls(value: Any) -> list[Any]:
    if isinstance(value, dict):
        return [value]
    return value if isinstance(value, list) else []


def from_vendor_response(body: Any, model: str) -> JSONObject:
    """A Messages API response as an OpenAI chat completion (quirks in the module docstring)."""
    err = error_in_body(body, None)
    if err is not None:
        raise err
    if not isinstance(body, dict) or not isinstance(body.get("choices"), list):
        raise bad_response(PROVIDER, "a chat response without choices")
    choices = []
    for i, choice in enumerate(body["choices"]):
        if not isinstance(choice, dict):
            continue
        message = obj(choice.get("message"))
        calls = []
        for k, call in enumerate(_calls(message.get("tool_calls"))):
            normal = tool_call(call, k)
            normal.pop("index")
            normal.setdefault("function", {}).setdefault("arguments", "{}")
            normal["function"].setdefault("name", "")
            calls.append(normal)
        content = message.get("content") if isinstance(message.get("content"), str) else None
        out: JSONObject = {"role": "assistant", "content": (content or None) if calls else (content or ""),
                           "refusal": None}
        if calls:
            out["tool_calls"] = calls
        reason = "tool_calls" if calls else (finish_reason(choice.get("finish_reason")) or "stop")
        choices.append({"index": choice.get("index", i), "message": out, "logprobs": choice.get("logprobs"),
                        "finish_reason": reason})
    result: JSONObject = {
        "id": body.get("id") or new_id(), "object": "chat.completion",
        "created": body.get("created") if isinstance(body.get("created"), int) else now(),
        "model": body.get("model") or model, "choices": choices,
    }
    if isinstance(body.get("system_fingerprint"), str):
        result["system_fingerprint"] = body["system_fingerprint"]
    usage = Usage.from_openai(body.get("usage"))
    if usage is not None:
        result["usage"] = usage.as_dict()
    return result


# -- Messages API: streams ------------------------------------------------------------------------------


@dataclass(slots=True)
class MessagesState(StreamState):
    """What translating one TGI chat stream must remember between events. The base's `id` is
    ours (TGI sends `"id": ""`); `started`: the role went out (TGI 1.4.x repeats it in every
    delta, OpenAI sends it once); `finished`: the end marker, or the end of the body after a
    finish reason (TGI 1.4.x has no marker)."""

    # Tool-call indexes already announced (id/type go out with the first piece only), and
    # whether the answer had tool calls at all (TGI's finish reason does not say so).
    tool_indexes: set[int] = field(default_factory=set)
    # A chunk with a finish reason went out: the stream is complete, though current TGI
    # still sends its usage (on that chunk, or on one of its own after it).
    finish_seen: bool = False
    usage: Usage | None = None
    # Else the counts are estimated: the prompt's when the request was made, the answer's here.
    prompt_estimate: int = 0
    completion: TokenTally = field(default_factory=TokenTally)


def from_vendor_event(event: SSEEvent, state: MessagesState) -> list[StreamChunk]:
    """One TGI chat stream event -> the OpenAI chunks it becomes (quirks absorbed)."""
    if not event.data:
        return []
    if event.data == DONE_DATA:
        return end_of_stream(state)
    body = event_json(event, PROVIDER)
    if not isinstance(body, dict):
        return []
    if body.get("error") is not None and not body.get("choices"):
        raise error_event(body)
    usage = Usage.from_openai(body.get("usage"))
    if usage is not None:
        state.usage = usage
    if state.finish_seen:
        return []
    if isinstance(body.get("created"), int) and not state.started:
        state.created = body["created"]
    if body.get("model") and not state.started:
        state.model = str(body["model"])
    chunks = []
    for choice in body.get("choices") or ():
        if not isinstance(choice, dict):
            continue
        index = choice.get("index", 0) if isinstance(choice.get("index"), int) else 0
        raw = obj(choice.get("delta"))
        delta: JSONObject = {}
        if not state.started:
            delta["role"] = "assistant"
            state.started = True
        content = raw.get("content")
        if isinstance(content, str) and content:
            delta["content"] = content
            state.completion.add(content)
        calls = []
        for k, call in enumerate(_calls(raw.get("tool_calls"))):
            call_index = call.get("index", k) if isinstance(call, dict) and isinstance(call.get("index"), int) else k
            first = call_index not in state.tool_indexes
            state.tool_indexes.add(call_index)
            normal = tool_call(call, call_index, with_id=first)
            if first:
                normal.setdefault("function", {}).setdefault("name", "")
                normal["function"].setdefault("arguments", "")
            if first or normal.get("function", {}).get("arguments"):
                calls.append(normal)
                state.completion.add(normal.get("function", {}).get("arguments") or "")
        if calls:
            delta["tool_calls"] = calls
        finish = finish_reason(choice.get("finish_reason"))
        if finish is not None:
            finish = "tool_calls" if state.tool_indexes else finish
            state.finish_seen = True
        if delta or finish is not None:
            chunks.append(state.chunk(delta, finish, index))
    return chunks


def end_of_stream(state: MessagesState) -> list[StreamChunk]:
    """The end marker or the end of the body: the usage chunk (`choices: []`), always last."""
    if not state.finish_seen:
        raise incomplete_stream(PROVIDER, "a finish reason")
    state.finished = True
    usage = state.usage or estimated_usage(state.prompt_estimate, state.completion.tokens)
    return [state.usage_chunk(usage)]


CODEC: Codec[MessagesState] = Codec(PROVIDER, error_from_response, error_in_body, MessagesState,
                                    from_vendor_event, end_of_stream, plain_text_errors=True)
# The Messages API where it may be missing (no task configured): a 404/405 is `NoMessagesAPI`.
PROBE: Codec[MessagesState] = replace(CODEC, error_from_response=_probe_error)
