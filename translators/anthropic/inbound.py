"""Anthropic's Messages API for clients of the gateway (Claude Code, the anthropic SDK), as
the `InboundApi` `MESSAGES` (translators/_inbound.py): requests (`inbound_request.py`),
answers, stream events and errors in Anthropic's shapes. Pure.
Reference: ../shared/vendors/anthropic.md §3-§5.

Answers from the chat path: the reply's text -> a `text` block, its tool calls ->
`tool_use` blocks (`arguments` parsed into `input`; what is not a JSON object becomes `{}`);
finish reasons: stop -> end_turn (tool calls present: tool_use), length -> max_tokens,
tool_calls -> tool_use, content_filter -> refusal. Chat completions do not say which stop
sequence matched, so `stop_sequence` is reported only where the provider answers natively.
Usage: `input_tokens` = prompt tokens less cached ones, `cache_read_input_tokens` = the
cached ones (Anthropic counts them apart), `output_tokens` = completion tokens; estimated
(translators/_estimate.py) when the provider reports none.

Streams, in Anthropic's documented order: message_start (input tokens estimated: the
provider's count arrives only at the end and goes into message_delta), ping, then per block
content_block_start, content_block_delta (text_delta / input_json_delta) ...,
content_block_stop, then message_delta (stop_reason, usage) and message_stop. A failure after
the first byte is one `error` event and nothing after it, as Anthropic ends a failed stream.

Errors: `{"type": "error", "error": {"type", "message"}}` with the type of the status
(Anthropic's table, `codec.ERROR_STATUS`); a 503 (an overloaded or unavailable upstream)
becomes Anthropic's 529 overloaded_error; other 5xx keep their status as api_error.
"""

from __future__ import annotations

from typing import Any

import orjson

from translators._estimate import TokenTally, estimate_tokens
from translators._inbound import (
    Event,
    InboundApi,
    InboundChatRequest,
    count,
    read_chat_answer,
    read_tool_delta,
)
from translators._json import loads as bounded_json
from translators.anthropic.codec import ERROR_STATUS
from translators.anthropic.inbound_request import (
    CountRequest,
    MessagesRequest,
    estimate_input_tokens,
    to_chat,
)
from translators.errors import ApiError
from translators.types import JSONObject, StreamChunk

__all__ = ["MESSAGES", "MessagesEncoder", "error_events", "error_of", "from_chat", "message_id"]

STOP_REASONS = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use", "function_call": "tool_use",
                "content_filter": "refusal"}
ERROR_TYPES = {status: kind for kind, status in ERROR_STATUS.items()}
_PING = b'{"type":"ping"}'
_STOP = b'{"type":"message_stop"}'


def error_of(err: ApiError) -> tuple[int, JSONObject]:
    status = 529 if err.status == 503 else err.status
    kind = ERROR_TYPES.get(status) or ("api_error" if status >= 500 else "invalid_request_error")
    return status, {"type": "error", "error": {"type": kind, "message": err.message}}


def error_events(err: ApiError) -> list[Event]:
    return [("error", orjson.dumps(error_of(err)[1]))]


def message_id(chat_id: Any) -> str:
    """Anthropic-style id: an Anthropic id kept (`chatcmpl-msg_01...` from its chat path)."""
    text = str(chat_id or "").removeprefix("chatcmpl-") or "gateway"
    return text if text.startswith("msg_") else f"msg_{text}"


def _stop_reason(finish: Any, tools: bool) -> str:
    reason = STOP_REASONS.get(finish, "end_turn") if isinstance(finish, str) else "end_turn"
    return "tool_use" if tools and reason == "end_turn" else reason


def _usage(usage: Any) -> JSONObject | None:
    if not isinstance(usage, dict):
        return None
    details = usage.get("prompt_tokens_details")
    cached = count(details.get("cached_tokens")) if isinstance(details, dict) else 0
    prompt = count(usage.get("prompt_tokens"))
    return {"input_tokens": max(prompt - cached, 0), "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": cached, "output_tokens": count(usage.get("completion_tokens"))}


def _estimated_usage(input_tokens: int, output_tokens: int) -> JSONObject:
    return {"input_tokens": input_tokens, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0,
            "output_tokens": output_tokens}


def _input(arguments: Any) -> JSONObject:
    if isinstance(arguments, dict):
        return arguments
    try:
        value = bounded_json(arguments) if isinstance(arguments, str) and arguments.strip() else {}
    except ValueError:  # not JSON (or nested too deeply): nothing a tool could run
        return {}
    return value if isinstance(value, dict) else {}


def chat_input_estimate(req: InboundChatRequest) -> int:
    tokens = 0
    for message in req.messages:
        content = message.content
        if isinstance(content, str):
            tokens += estimate_tokens(content)
        elif content is not None:
            tokens += sum(estimate_tokens(part.text or "") for part in content)
        for call in message.tool_calls or ():
            tokens += estimate_tokens(call.function.arguments)
    return tokens


def from_chat(body: JSONObject, req: InboundChatRequest) -> JSONObject:
    """A chat completion as a Messages answer (see the module docstring)."""
    answer = read_chat_answer(body)
    text = answer.text
    content: list[JSONObject] = [{"type": "text", "text": text}] if text else []
    for call in answer.calls:
        content.append({"type": "tool_use", "id": call.id or f"toolu_{len(content)}", "name": call.name,
                        "input": _input(call.arguments)})
    tools = any(block["type"] == "tool_use" for block in content)
    usage = _usage(body.get("usage")) or _estimated_usage(chat_input_estimate(req), estimate_tokens(text))
    return {"id": message_id(body.get("id")), "type": "message", "role": "assistant",
            "model": str(body.get("model") or req.model), "content": content,
            "stop_reason": _stop_reason(answer.finish_reason, tools), "stop_sequence": None, "usage": usage}


class MessagesEncoder:
    """A chat stream's chunks as Anthropic's stream events (`EventEncoder`), one per stream."""

    __slots__ = ("finish", "index", "input_estimate", "model", "open", "started", "tally", "tools", "usage")

    def __init__(self, model: str, input_estimate: int) -> None:
        self.model = model
        self.input_estimate = input_estimate
        self.started = False
        self.index = -1            # the last content block opened
        self.open: str | None = None  # its type while it is open: "text" | "tool_use"
        self.tools: dict[int, int] = {}  # the chat tool call's index -> its tool_use block's index
        self.finish: Any = None
        self.usage: JSONObject | None = None
        self.tally = TokenTally()  # the output, for an estimate when the provider counts nothing

    def _start(self, chunk: JSONObject) -> list[Event]:
        self.started = True
        self.model = str(chunk.get("model") or self.model)
        message: JSONObject = {"id": message_id(chunk.get("id")), "type": "message", "role": "assistant",
                               "model": self.model, "content": [], "stop_reason": None, "stop_sequence": None,
                               "usage": _estimated_usage(self.input_estimate, 0)}
        return [("message_start", orjson.dumps({"type": "message_start", "message": message})), ("ping", _PING)]

    def _close(self) -> list[Event]:
        if self.open is None:
            return []
        self.open = None
        return [("content_block_stop", orjson.dumps({"type": "content_block_stop", "index": self.index}))]

    def _block(self, block: JSONObject) -> list[Event]:
        events = self._close()
        self.index += 1
        self.open = block["type"]
        events.append(("content_block_start", orjson.dumps({"type": "content_block_start", "index": self.index,
                                                             "content_block": block})))
        return events

    def _delta(self, index: int, delta: JSONObject) -> Event:
        return "content_block_delta", orjson.dumps({"type": "content_block_delta", "index": index, "delta": delta})

    def _tool(self, call: Any) -> list[Event]:
        delta = read_tool_delta(call, len(self.tools))
        if delta is None:
            return []
        events: list[Event] = []
        if delta.position not in self.tools:
            events += self._block({"type": "tool_use", "id": delta.id or f"toolu_{self.index + 1}",
                                   "name": delta.name, "input": {}})
            self.tools[delta.position] = self.index
        if delta.arguments:
            self.tally.add(delta.arguments)
            events.append(self._delta(self.tools[delta.position],
                                      {"type": "input_json_delta", "partial_json": delta.arguments}))
        return events

    def chunk(self, chunk: StreamChunk) -> list[Event]:
        data = orjson.loads(chunk.data)
        events = [] if self.started else self._start(data)
        if chunk.usage is not None:
            self.usage = _usage(data.get("usage"))
        for choice in data.get("choices") or ():
            delta = choice.get("delta") or {}
            text = delta.get("content")
            if isinstance(text, str) and text:
                if self.open != "text":
                    events += self._block({"type": "text", "text": ""})
                self.tally.add(text)
                events.append(self._delta(self.index, {"type": "text_delta", "text": text}))
            for call in delta.get("tool_calls") or ():
                events += self._tool(call)
            if choice.get("finish_reason"):
                self.finish = choice["finish_reason"]
        return events

    def end(self) -> list[Event]:
        events = [] if self.started else self._start({})
        events += self._close()
        usage = self.usage or _estimated_usage(self.input_estimate, self.tally.tokens)
        delta = {"stop_reason": _stop_reason(self.finish, bool(self.tools)), "stop_sequence": None}
        events.append(("message_delta", orjson.dumps({"type": "message_delta", "delta": delta, "usage": usage})))
        events.append(("message_stop", _STOP))
        return events

    def error(self, err: ApiError) -> list[Event]:
        return error_events(err)

    def answer(self) -> JSONObject | None:
        return None  # Messages answers are not kept


def _encoder(req: InboundChatRequest) -> MessagesEncoder:
    return MessagesEncoder(req.model, chat_input_estimate(req))


def count_estimate(req: CountRequest) -> JSONObject:
    return {"input_tokens": estimate_input_tokens(req), "estimated": True}


MESSAGES = InboundApi(
    name="messages",
    path="/v1/messages",
    request=MessagesRequest,
    to_chat=to_chat,
    from_chat=from_chat,
    encoder=_encoder,
    error=error_of,
    error_events=error_events,
    forward_headers=("anthropic-beta",),
    count_path="/v1/messages/count_tokens",
    count_request=CountRequest,
    count_estimate=count_estimate,
)
