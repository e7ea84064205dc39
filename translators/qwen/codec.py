"""DashScope (Qwen) as a codec: pure functions without I/O, which the stream driver
(`translators/_stream.py`) and the translator (`translators/qwen/__init__.py`) call.
`to_vendor_request` puts together the pieces `request.py` builds; responses, stream events,
embeddings and errors are read here. Reference: ../shared/vendors/qwen.md §4-§7.

- `finish_reason` is the string `"null"` while a stream runs (-> JSON null); stop, length
  and tool_calls keep their names.
- usage: `input_tokens` -> prompt_tokens, `output_tokens` -> completion_tokens,
  `total_tokens` (or their sum); cached and reasoning tokens in OpenAI's `*_details`.
  Every stream event carries the running totals: they replace, never add up.
- A stream is incremental when the request said `incremental_output: true` (what the
  translator always sends) and cumulative otherwise (DashScope's default: each event
  repeats the whole text so far); the state knows which it reads and never repeats text.
  In incremental mode a final event that repeats the whole answer is not re-emitted.
- errors: DashScope's `{code, message, request_id}` with an HTTP status, or the same
  object inside a 200 body or an `event:error` stream event (whose status is only in an
  SSE comment, so the code decides there).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from translators._http import Headers
from translators._json import loads as bounded_json
from translators._shapes import as_int, completion, vendor_error
from translators._sse import SSEEvent
from translators._stream import Codec, StreamState
from translators.errors import (
    ApiError,
    bad_request,
    bad_response,
    failed_mid_stream,
    parse_retry_after,
    unsupported,
)
from translators.qwen.request import (
    PROVIDER,
    is_vision,
    messages,
    parameters,
    refuse_unsupported,
)
from translators.types import (
    ChatRequest,
    EmbeddingRequest,
    JSONObject,
    StreamChunk,
    Usage,
)

__all__ = ["CODEC", "QwenState", "error_from_response", "error_in_body", "from_vendor_embeddings",
           "from_vendor_event", "from_vendor_response", "to_vendor_embeddings_request", "to_vendor_request"]

FINISH_REASONS: Mapping[str, str | None] = {
    "null": None, "stop": "stop", "length": "length", "tool_calls": "tool_calls", "function_call": "tool_calls",
}

# code -> (status, the code our client sees). The status of an error inside a 200 body or a
# stream event, and the meaning-based override of a few statuses (an overdue account is
# a 400 at DashScope but a balance problem, i.e. 429, here).
ERROR_CODES: Mapping[str, tuple[int, str | None]] = {
    "InvalidParameter": (400, "invalid_parameter"),
    "DataInspectionFailed": (400, "content_filter"),
    "data_inspection_failed": (400, "content_filter"),
    "InvalidApiKey": (401, None),
    "AccessDenied": (403, None),
    "Model.AccessDenied": (403, None),
    "ModelNotFound": (404, "model_not_found"),
    "Arrearage": (429, "insufficient_quota"),
    "Throttling": (429, "rate_limit_exceeded"),
    "InternalError": (500, None),
    "SystemError": (500, None),
    "ServiceUnavailable": (503, None),
    "RequestTimeOut": (504, None),
}
_OVERRIDES = frozenset({"DataInspectionFailed", "data_inspection_failed", "ModelNotFound", "Arrearage"})
_NO_OUTPUT = "a response without output"


def _known(code: str) -> tuple[int, str | None] | None:
    return ERROR_CODES.get(code) or ERROR_CODES.get(code.split(".", 1)[0])  # Throttling.RateQuota -> Throttling


# -- requests -----------------------------------------------------------------------------------


def to_vendor_request(req: ChatRequest, model: str) -> JSONObject:
    """An OpenAI chat request as a DashScope generation body for `model` (the mapping:
    request.py's docstring)."""
    refuse_unsupported(req)
    return {"model": model, "input": {"messages": messages(req.messages, is_vision(model))},
            "parameters": parameters(req)}


def to_vendor_embeddings_request(texts: list[str], model: str, req: EmbeddingRequest) -> JSONObject:
    options: JSONObject = {}
    if req.dimensions is not None:
        if model in ("text-embedding-v1", "text-embedding-v2"):
            raise unsupported(PROVIDER, f"'dimensions' with {model} (only text-embedding-v3 and later)",
                              "dimensions")
        options["dimension"] = req.dimensions
    text_type = req.raw.get("text_type", req.raw.get("input_type"))
    if text_type is not None:
        if text_type not in ("query", "document"):
            raise bad_request("text_type must be 'query' or 'document'", "text_type")
        options["text_type"] = text_type
    return {"model": model, "input": {"texts": texts}, "parameters": options}


# -- errors -----------------------------------------------------------------------------------


def error_from_response(status: int, body: Any, headers: Headers | None) -> ApiError:
    """A DashScope error; `status` < 400 means it arrived in a 200 body or a stream event."""
    code = str(body.get("code") or "") if isinstance(body, dict) else ""
    message = body.get("message") if isinstance(body, dict) else None
    message = str(message or f"HTTP {status} from {PROVIDER}" + (f" ({code})" if code else ""))
    known = _known(code) if code else None
    if known is not None and (status < 400 or code.split(".", 1)[0] in _OVERRIDES):
        status = known[0]
    elif status < 400:
        status = 502
    ours = known[1] if known is not None else (code or None)
    return vendor_error(PROVIDER, status, message, ours, parse_retry_after(headers))


def error_in_body(body: Any, headers: Headers | None = None) -> ApiError | None:
    """The error a 200 body holds (a `code` and no `output`), or None."""
    if isinstance(body, dict) and "output" not in body and body.get("code"):
        return error_from_response(200, body, headers)
    return None


# -- shared pieces ----------------------------------------------------------------------------


def usage_of(raw: Any) -> tuple[JSONObject, Usage]:
    raw = raw if isinstance(raw, dict) else {}
    prompt, completion_tokens = as_int(raw.get("input_tokens")), as_int(raw.get("output_tokens"))
    usage = Usage(prompt, completion_tokens, as_int(raw.get("total_tokens")) or prompt + completion_tokens)
    body = usage.as_dict()
    cached = as_int((raw.get("prompt_tokens_details") or {}).get("cached_tokens")) or as_int(raw.get("cached_tokens"))
    if cached:
        body["prompt_tokens_details"] = {"cached_tokens": cached}
    reasoning = as_int((raw.get("output_tokens_details") or {}).get("reasoning_tokens"))
    if reasoning:
        body["completion_tokens_details"] = {"reasoning_tokens": reasoning}
    return body, usage


def text_of(content: Any) -> str:
    """Message content: a string, or (multimodal models) a list of `{"text": ...}` items."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(str(item.get("text") or "") for item in content if isinstance(item, dict))
    return ""


def finish_reason(value: Any) -> str | None:
    return FINISH_REASONS.get(value, "stop") if isinstance(value, str) else None


def choices_of(output: Any) -> list[JSONObject]:
    """`output.choices` (result_format message), or the legacy `output.text` as one choice."""
    if not isinstance(output, dict):
        return []
    if isinstance(output.get("choices"), list):
        return [c for c in output["choices"] if isinstance(c, dict)]
    if "text" in output:
        return [{"message": {"role": "assistant", "content": output.get("text")},
                 "finish_reason": output.get("finish_reason")}]
    return []


def _tool_call(call: JSONObject) -> JSONObject:
    function = call.get("function") or {}
    arguments = function.get("arguments")
    if not isinstance(arguments, str):
        arguments = orjson.dumps(arguments or {}).decode()
    return {"id": str(call.get("id") or ""), "type": "function",
            "function": {"name": str(function.get("name") or ""), "arguments": arguments}}


def _answer(body: Any) -> JSONObject:
    """A 200 body that is no error: raises the error it holds, or a 502 when it is not an object."""
    err = error_in_body(body)
    if err is not None:
        raise err
    if not isinstance(body, dict):
        raise bad_response(PROVIDER, _NO_OUTPUT)
    return body


# -- non-streamed responses -------------------------------------------------------------------


def from_vendor_response(body: Any, model: str) -> JSONObject:
    body = _answer(body)
    choices = choices_of(body.get("output"))
    if not choices:
        raise bad_response(PROVIDER, _NO_OUTPUT)
    choice = choices[0]
    message = choice.get("message") or {}
    calls = [_tool_call(c) for c in message.get("tool_calls") or () if isinstance(c, dict)]
    text = text_of(message.get("content"))
    out: JSONObject = {"role": "assistant", "content": text if text or not calls else None, "refusal": None}
    if calls:
        out["tool_calls"] = calls
    if message.get("reasoning_content"):
        out["reasoning_content"] = message["reasoning_content"]
    usage, _ = usage_of(body.get("usage"))
    finish = finish_reason(choice.get("finish_reason")) or "stop"
    return completion(f"chatcmpl-{body.get('request_id') or 'qwen'}", model, out, finish, usage)


# -- streams ----------------------------------------------------------------------------------


@dataclass(slots=True)
class QwenState(StreamState):
    """What translating one DashScope stream must remember between events (`id` becomes
    DashScope's request_id; `finished` is the event whose finish_reason is not "null")."""

    # Replaced by the first event's request_id: no random id is drawn (a syscall per stream)
    # to be thrown away.
    id: str = "chatcmpl-qwen"
    # Each event repeats the whole text so far (incremental_output false) instead of a piece.
    cumulative: bool = False
    # The text sent so far: diffing cumulative events, and spotting an incremental stream's
    # final event that repeats the whole answer.
    text: list[str] = field(default_factory=list)
    sent: int = 0
    # Tool calls: DashScope repeats a call's id (and name) in its fragments; OpenAI sends
    # them once per index. Cumulative streams repeat the arguments too: characters sent.
    tool_ids: dict[int, str] = field(default_factory=dict)
    tool_args: dict[int, int] = field(default_factory=dict)
    # Running totals, replaced by every event that has them (never summed).
    usage: Any = None


def _event_data(event: SSEEvent) -> JSONObject:
    """One SSE event as a dict; an `event:error` event (or an error object) raises ApiError."""
    try:
        data = bounded_json(event.data) if event.data else {}
    except orjson.JSONDecodeError:
        if event.event == "error":
            raise failed_mid_stream(PROVIDER, event.data[:300].decode("utf-8", "replace")) from None
        raise bad_response(PROVIDER, "a stream event that is not JSON") from None
    if not isinstance(data, dict):
        raise error_from_response(200, {"code": "InternalError", "message": str(data)}, None)
    if event.event == "error" or ("output" not in data and data.get("code")):
        raise error_from_response(200, data if data.get("code") else {"code": "InternalError",
                                                                      "message": str(data)}, None)
    return data


def _new_text(state: QwenState, text: str, final: bool) -> str:
    if state.cumulative:
        piece = text[state.sent:]
    elif final and state.sent and text == "".join(state.text):
        piece = ""  # an incremental stream's last event repeating the whole answer
    else:
        piece = text
    if piece:
        state.text.append(piece)
        state.sent += len(piece)
    return piece


def _tool_deltas(state: QwenState, calls: Any) -> list[JSONObject]:
    deltas = []
    for position, call in enumerate(calls if isinstance(calls, list) else ()):
        if not isinstance(call, dict):
            continue
        index = call["index"] if isinstance(call.get("index"), int) else position
        function = call.get("function") or {}
        delta: JSONObject = {"index": index}
        fn: JSONObject = {}
        if index not in state.tool_ids:
            state.tool_ids[index] = str(call.get("id") or f"call_{state.id[-12:]}_{index}")
            delta.update(id=state.tool_ids[index], type="function")
            fn["name"] = str(function.get("name") or "")
        arguments = function.get("arguments")
        if isinstance(arguments, str) and arguments:
            if state.cumulative:
                arguments = arguments[state.tool_args.get(index, 0):]
            state.tool_args[index] = state.tool_args.get(index, 0) + len(arguments)
            if arguments:
                fn["arguments"] = arguments
        elif "id" in delta:
            fn["arguments"] = ""
        if fn:
            delta["function"] = fn
            deltas.append(delta)
    return deltas


def from_vendor_event(event: SSEEvent, state: QwenState) -> list[StreamChunk]:
    """One DashScope stream event -> the OpenAI chunks it becomes; after the event whose
    finish_reason is not "null": the finish chunk, then the usage chunk (always last).
    An `event:error` event (or an error object in any event) raises ApiError."""
    if state.finished:
        return []
    data = _event_data(event)
    if data.get("request_id"):
        state.id = f"chatcmpl-{data['request_id']}"
    if isinstance(data.get("usage"), dict) and data["usage"]:
        state.usage = data["usage"]
    chunks = []
    if not state.started:
        state.started = True
        chunks.append(state.chunk({"role": "assistant", "content": ""}))
    for choice in choices_of(data.get("output"))[:1]:
        message = choice.get("message") or {}
        finish = finish_reason(choice.get("finish_reason"))
        reasoning = message.get("reasoning_content")
        if isinstance(reasoning, str) and reasoning and not state.cumulative:
            chunks.append(state.chunk({"reasoning_content": reasoning}))
        piece = _new_text(state, text_of(message.get("content")), finish is not None)
        if piece:
            chunks.append(state.chunk({"content": piece}))
        calls = _tool_deltas(state, message.get("tool_calls"))
        if calls:
            chunks.append(state.chunk({"tool_calls": calls}))
        if finish is not None:
            state.finished = True
            chunks.append(state.chunk({}, finish))
            body, usage = usage_of(state.usage)
            chunks.append(state.usage_chunk(usage, body))
    return chunks


# -- embeddings -------------------------------------------------------------------------------


def from_vendor_embeddings(body: Any) -> tuple[list[list[float]], int]:
    """(vectors in input order, tokens) from `output.embeddings[{text_index, embedding}]`."""
    body = _answer(body)
    items = (body.get("output") or {}).get("embeddings")
    if not isinstance(items, list):
        raise bad_response(PROVIDER, _NO_OUTPUT)
    ordered = sorted((i for i in items if isinstance(i, dict)), key=lambda i: as_int(i.get("text_index")))
    usage = body.get("usage") if isinstance(body.get("usage"), dict) else {}
    tokens = as_int(usage.get("total_tokens")) or as_int(usage.get("input_tokens"))
    return [list(i.get("embedding") or ()) for i in ordered], tokens


CODEC: Codec[QwenState] = Codec(
    provider=PROVIDER,
    error_from_response=error_from_response,
    error_in_body=error_in_body,
    new_state=QwenState,
    from_vendor_event=from_vendor_event,
)
