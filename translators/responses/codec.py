"""OpenAI's Responses API answers made from the chat path: the `response` object, its stream
events and errors. Pure.

Answers: the reply's text -> a `message` item with one `output_text` part; its tool calls
-> `function_call` items (`call_id` the chat tool call's id). Finish reasons: stop and
tool_calls -> `status: completed`; length -> `incomplete` with `incomplete_details.reason`
`max_output_tokens`; content_filter -> `incomplete` (`content_filter`). Usage: input and
output tokens (cached input tokens in `input_tokens_details`), estimated
(translators/_estimate.py) when the provider reports none. The request's own fields
(instructions, tools, temperature, metadata, ...) are echoed, as OpenAI does.

Streams, in OpenAI's documented order, each event's data naming its `type` and carrying a
`sequence_number` from 0: response.created, response.in_progress; per output item
response.output_item.added, then for a message response.content_part.added,
response.output_text.delta ..., response.output_text.done, response.content_part.done,
and for a function call response.function_call_arguments.delta ...,
response.function_call_arguments.done; then response.output_item.done; last
response.completed (or response.incomplete). A failure after the first byte is one
response.failed carrying the error, and nothing after it.

Errors are OpenAI's `{"error": {...}}` with the gateway's status.
"""

from __future__ import annotations

from typing import Any

import orjson

from translators._estimate import TokenTally, estimate_tokens
from translators._inbound import (
    Event,
    InboundChatRequest,
    count,
    read_chat_answer,
    read_tool_delta,
)
from translators.errors import ApiError
from translators.responses.request import ResponsesChatRequest, new_item_id
from translators.types import JSONObject, StreamChunk

__all__ = ["ResponsesEncoder", "error_events", "error_of", "from_chat", "response_object"]

INCOMPLETE = {"length": "max_output_tokens", "content_filter": "content_filter"}


def error_of(err: ApiError) -> tuple[int, JSONObject]:
    return err.status, err.body()


def error_events(err: ApiError) -> list[Event]:
    data = {"type": "error", "code": err.code, "message": err.message, "param": err.param, "sequence_number": 0}
    return [("error", orjson.dumps(data))]


def _usage(usage: Any) -> JSONObject | None:
    if not isinstance(usage, dict):
        return None
    details = usage.get("prompt_tokens_details")
    cached = count(details.get("cached_tokens")) if isinstance(details, dict) else 0
    prompt, completion = count(usage.get("prompt_tokens")), count(usage.get("completion_tokens"))
    return _tokens(prompt, completion, cached)


def _tokens(prompt: int, completion: int, cached: int = 0) -> JSONObject:
    return {"input_tokens": prompt, "input_tokens_details": {"cached_tokens": cached},
            "output_tokens": completion, "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": prompt + completion}


def input_estimate(req: InboundChatRequest) -> int:
    tally = TokenTally()
    for message in req.messages:
        content = message.content
        if isinstance(content, str):
            tally.add(content)
        elif content is not None:
            for part in content:
                tally.add(part.text or "")
        for call in message.tool_calls or ():
            tally.add(call.function.arguments)
    return tally.tokens


def text_part(text: str) -> JSONObject:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def message_item(item_id: str, parts: list[JSONObject], status: str) -> JSONObject:
    return {"type": "message", "id": item_id, "status": status, "role": "assistant", "content": parts}


def call_item(item_id: str, call_id: str, name: str, arguments: str, status: str) -> JSONObject:
    return {"type": "function_call", "id": item_id, "call_id": call_id, "name": name, "arguments": arguments,
            "status": status}


def response_object(req: InboundChatRequest, status: str, output: list[JSONObject], usage: JSONObject | None,
                    finish: Any = None, model: str | None = None, error: JSONObject | None = None) -> JSONObject:
    """The `response` object, echoing the request's own fields as OpenAI does."""
    assert isinstance(req, ResponsesChatRequest)
    origin = req.origin
    reason = INCOMPLETE.get(finish) if isinstance(finish, str) else None
    if status == "completed" and reason is not None:
        status = "incomplete"
    text = origin.text or {}
    return {
        "id": req.response_id, "object": "response", "created_at": req.created_at, "status": status,
        "background": False, "error": error,
        "incomplete_details": {"reason": reason} if status == "incomplete" else None,
        "instructions": origin.instructions, "max_output_tokens": origin.max_output_tokens,
        "max_tool_calls": None, "model": model or origin.model, "output": output,
        "parallel_tool_calls": origin.parallel_tool_calls is not False,
        "previous_response_id": origin.previous_response_id, "reasoning": {"effort": None, "summary": None},
        "service_tier": "default", "store": origin.store, "temperature": origin.temperature,
        "text": {"format": text.get("format") or {"type": "text"}},
        "tool_choice": origin.tool_choice if origin.tool_choice is not None else "auto",
        "tools": origin.tools or [], "top_logprobs": 0, "top_p": origin.top_p, "truncation": "disabled",
        "usage": usage, "user": origin.user, "metadata": origin.metadata or {},
    }


def from_chat(body: JSONObject, req: InboundChatRequest) -> JSONObject:
    """A chat completion as a `response` object (see the module docstring)."""
    answer = read_chat_answer(body)
    text = answer.text
    output = [message_item(new_item_id("msg"), [text_part(text)], "completed")] if text else []
    for call in answer.calls:
        arguments = call.arguments
        output.append(call_item(new_item_id("fc"), call.id or new_item_id("call"), call.name,
                                arguments if isinstance(arguments, str) else orjson.dumps(arguments or {}).decode(),
                                "completed"))
    usage = _usage(body.get("usage")) or _tokens(input_estimate(req), estimate_tokens(text))
    model = body.get("model")
    return response_object(req, "completed", output, usage, answer.finish_reason,
                           model if isinstance(model, str) and model else None)


class _Item:
    """An output item being streamed: a message (its text) or a function call."""

    __slots__ = ("arguments", "call_id", "id", "kind", "name", "output_index", "text")

    def __init__(self, kind: str, output_index: int, call_id: str = "", name: str = "") -> None:
        self.kind, self.output_index = kind, output_index
        self.id = new_item_id("msg" if kind == "message" else "fc")
        self.call_id, self.name = call_id, name
        self.text = ""
        self.arguments = ""

    def item(self, status: str) -> JSONObject:
        if self.kind == "message":
            return message_item(self.id, [text_part(self.text)] if status == "completed" else [], status)
        return call_item(self.id, self.call_id, self.name, self.arguments, status)


class ResponsesEncoder:
    """A chat stream's chunks as the Responses API's events (`EventEncoder`), one per stream."""

    __slots__ = ("calls", "done", "finish", "input_estimate", "items", "model", "open", "req", "sequence", "started",
                 "tally", "usage", "final")

    def __init__(self, req: InboundChatRequest) -> None:
        self.req = req
        self.model: str | None = None
        self.input_estimate = input_estimate(req)
        self.sequence = 0
        self.started = False
        self.items: list[_Item] = []
        self.open: _Item | None = None
        self.calls: dict[int, _Item] = {}  # the chat tool call's index -> its item
        self.done: list[JSONObject] = []   # finished items, in output order
        self.finish: Any = None
        self.usage: JSONObject | None = None
        self.tally = TokenTally()
        self.final: JSONObject | None = None

    def _event(self, data: JSONObject) -> Event:
        data["sequence_number"] = self.sequence
        self.sequence += 1
        return data["type"], orjson.dumps(data)

    def _response(self, status: str, usage: JSONObject | None = None, error: JSONObject | None = None) -> JSONObject:
        return response_object(self.req, status, list(self.done), usage, self.finish, self.model, error)

    def _start(self) -> list[Event]:
        self.started = True
        response = self._response("in_progress")
        return [self._event({"type": "response.created", "response": response}),
                self._event({"type": "response.in_progress", "response": response})]

    def _close(self) -> list[Event]:
        item, self.open = self.open, None
        if item is None:
            return []
        base = {"item_id": item.id, "output_index": item.output_index}
        events: list[Event] = []
        if item.kind == "message":
            events += [self._event({"type": "response.output_text.done", **base, "content_index": 0,
                                    "text": item.text, "logprobs": []}),
                       self._event({"type": "response.content_part.done", **base, "content_index": 0,
                                    "part": text_part(item.text)})]
        else:
            events.append(self._event({"type": "response.function_call_arguments.done", **base,
                                       "name": item.name, "arguments": item.arguments}))
        finished = item.item("completed")
        self.done.append(finished)
        events.append(self._event({"type": "response.output_item.done", "output_index": item.output_index,
                                   "item": finished}))
        return events

    def _open(self, item: _Item) -> list[Event]:
        events = self._close()
        self.items.append(item)
        self.open = item
        events.append(self._event({"type": "response.output_item.added", "output_index": item.output_index,
                                   "item": item.item("in_progress")}))
        if item.kind == "message":
            events.append(self._event({"type": "response.content_part.added", "item_id": item.id,
                                       "output_index": item.output_index, "content_index": 0,
                                       "part": text_part("")}))
        return events

    def _text(self, text: str) -> list[Event]:
        events: list[Event] = []
        if self.open is None or self.open.kind != "message":
            events += self._open(_Item("message", len(self.items)))
        item = self.open
        assert item is not None
        item.text += text
        self.tally.add(text)
        events.append(self._event({"type": "response.output_text.delta", "item_id": item.id,
                                   "output_index": item.output_index, "content_index": 0, "delta": text,
                                   "logprobs": []}))
        return events

    def _tool(self, call: Any) -> list[Event]:
        delta = read_tool_delta(call, len(self.calls))
        if delta is None:
            return []
        events: list[Event] = []
        item = self.calls.get(delta.position)
        if item is None:
            item = _Item("function_call", len(self.items), delta.id or new_item_id("call"), delta.name)
            events += self._open(item)
            self.calls[delta.position] = item
        piece = delta.arguments
        if piece:
            if item is not self.open:  # a late piece of a call already done (chat streams rarely interleave):
                item.arguments += piece  # no event may follow its .done; the final response has it whole
                for finished in self.done:
                    if finished["id"] == item.id:
                        finished["arguments"] = item.arguments
                return events
            item.arguments += piece
            self.tally.add(piece)
            events.append(self._event({"type": "response.function_call_arguments.delta", "item_id": item.id,
                                       "output_index": item.output_index, "delta": piece}))
        return events

    def chunk(self, chunk: StreamChunk) -> list[Event]:
        data = orjson.loads(chunk.data)
        if self.model is None and isinstance(data.get("model"), str) and data["model"]:
            self.model = data["model"]
        events = [] if self.started else self._start()
        if chunk.usage is not None:
            self.usage = _usage(data.get("usage"))
        for choice in data.get("choices") or ():
            delta = choice.get("delta") or {}
            text = delta.get("content")
            if isinstance(text, str) and text:
                events += self._text(text)
            for call in delta.get("tool_calls") or ():
                events += self._tool(call)
            if choice.get("finish_reason"):
                self.finish = choice["finish_reason"]
        return events

    def end(self) -> list[Event]:
        events = [] if self.started else self._start()
        events += self._close()
        usage = self.usage or _tokens(self.input_estimate, self.tally.tokens)
        self.final = self._response("completed", usage)
        kind = "response.completed" if self.final["status"] == "completed" else "response.incomplete"
        events.append(self._event({"type": kind, "response": self.final}))
        return events

    def error(self, err: ApiError) -> list[Event]:
        events = [] if self.started else self._start()
        failed = self._response("failed", None, {"code": err.code or err.type, "message": err.message})
        events.append(self._event({"type": "response.failed", "response": failed}))
        return events

    def answer(self) -> JSONObject | None:
        return self.final
