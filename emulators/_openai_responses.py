"""The fake OpenAI's Responses API (`POST /v1/responses`), written from OpenAI's documented
shapes: a `response` object with a `message` item (the fake's reply text, cut at
`max_output_tokens` words: `status: incomplete`) or, when tools are given and the state
scripts a `tool_call`, a `function_call` item; streams as named events (`event: TYPE`)
in OpenAI's order with `sequence_number`s. It checks what OpenAI checks of the few fields
it reads (model, input, previous_response_id only for ids it made itself) and rejects
built-in tools it does not have. Responses it made are remembered (`state.responses`).
Served as an emulator, a request's reply and automatic tool call (`emulators/scripting.py`)
stand in for the state's."""

from __future__ import annotations

import secrets
import time
from collections.abc import AsyncIterator
from typing import Any

import orjson
from starlette.responses import Response, StreamingResponse

from emulators._openai_wire import OpenAIHTTPError
from emulators._vendor_common import RecordedRequest, json_response
from emulators.scripting import call_of, reply_of


def _id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(12)}"


def _words(value: Any) -> int:
    if isinstance(value, str):
        return len(value.split())
    if isinstance(value, list):
        return sum(_words(v) for v in value)
    if isinstance(value, dict):
        return sum(_words(v) for k, v in value.items() if k in ("content", "text", "output", "arguments"))
    return 0


def _plan(state: Any, body: dict[str, Any]) -> tuple[dict[str, Any], list[tuple[str, dict[str, Any]]]]:
    """The whole response and its stream's events."""
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise OpenAIHTTPError(400, "Missing required parameter: 'model'.", param="model",
                              code="missing_required_parameter")
    if body.get("input") is None:
        raise OpenAIHTTPError(400, "Missing required parameter: 'input'.", param="input",
                              code="missing_required_parameter")
    previous = body.get("previous_response_id")
    if previous is not None and previous not in state.responses:
        raise OpenAIHTTPError(404, f"Previous response with id '{previous}' not found.",
                              param="previous_response_id")
    tools = body.get("tools") or []
    for tool in tools:
        if tool.get("type") not in ("function", "web_search"):
            raise OpenAIHTTPError(400, f"Unsupported tool type: {tool.get('type')}", param="tools")
    response_id = _id("resp")
    created: dict[str, Any] = {"id": response_id, "object": "response", "created_at": int(time.time()),
                               "status": "in_progress", "model": f"{model}-2024-07-18", "output": [],
                               "previous_response_id": previous, "usage": None, "error": None,
                               "instructions": body.get("instructions"),
                               "incomplete_details": None, "tools": tools, "tool_choice": body.get("tool_choice", "auto"),
                               "parallel_tool_calls": True, "metadata": body.get("metadata") or {},
                               "store": body.get("store", True), "text": {"format": {"type": "text"}}}
    events: list[tuple[str, dict[str, Any]]] = [("response.created", {"response": dict(created)}),
                                                ("response.in_progress", {"response": dict(created)})]
    tool_call = call_of(state.tool_call)
    use_tool = bool([t for t in tools if t.get("type") == "function"]) and tool_call is not None \
        and not any(isinstance(i, dict) and i.get("type") == "function_call_output" for i in body["input"]
                    if isinstance(body["input"], list))
    status, incomplete = "completed", None
    item: dict[str, Any]
    if use_tool and tool_call is not None:
        name, arguments = tool_call
        item = {"type": "function_call", "id": _id("fc"), "call_id": _id("call"), "name": name, "arguments": "",
                "status": "in_progress"}
        events.append(("response.output_item.added", {"output_index": 0, "item": dict(item)}))
        for i in range(0, len(arguments), 6):
            events.append(("response.function_call_arguments.delta",
                           {"item_id": item["id"], "output_index": 0, "delta": arguments[i:i + 6]}))
        events.append(("response.function_call_arguments.done",
                       {"item_id": item["id"], "output_index": 0, "arguments": arguments}))
        item.update(arguments=arguments, status="completed")
        output_tokens = _words(arguments)
    else:
        words = reply_of(state).split(" ")
        limit = body.get("max_output_tokens")
        if isinstance(limit, int) and limit < len(words):
            words, status, incomplete = words[:limit], "incomplete", {"reason": "max_output_tokens"}
        pieces = [w if i == 0 else " " + w for i, w in enumerate(words)]
        text = "".join(pieces)
        item = {"type": "message", "id": _id("msg"), "status": "in_progress", "role": "assistant", "content": []}
        base = {"item_id": item["id"], "output_index": 0, "content_index": 0}
        part = {"type": "output_text", "text": "", "annotations": []}
        events.append(("response.output_item.added", {"output_index": 0, "item": dict(item)}))
        events.append(("response.content_part.added", {**base, "part": dict(part)}))
        events += [("response.output_text.delta", {**base, "delta": p, "logprobs": []}) for p in pieces]
        events.append(("response.output_text.done", {**base, "text": text, "logprobs": []}))
        part["text"] = text
        events.append(("response.content_part.done", {**base, "part": part}))
        item.update(content=[part], status="completed")
        output_tokens = len(words)
    events.append(("response.output_item.done", {"output_index": 0, "item": item}))
    input_tokens = _words(body["input"]) + _words(body.get("instructions") or "")
    done = {**created, "status": status, "output": [item], "incomplete_details": incomplete,
            "usage": {"input_tokens": input_tokens, "input_tokens_details": {"cached_tokens": 0},
                      "output_tokens": output_tokens, "output_tokens_details": {"reasoning_tokens": 0},
                      "total_tokens": input_tokens + output_tokens}}
    events.append(("response.completed" if status == "completed" else "response.incomplete", {"response": done}))
    if body.get("store", True):
        state.responses[response_id] = done
    return done, events


async def _frames(events: list[tuple[str, dict[str, Any]]]) -> AsyncIterator[bytes]:
    for n, (name, data) in enumerate(events):
        yield f"event: {name}\n".encode() + b"data: " + orjson.dumps({"type": name, **data, "sequence_number": n}) \
            + b"\n\n"


async def responses(state: Any, body: dict[str, Any], record: RecordedRequest) -> Response:
    done, events = _plan(state, body)
    if body.get("stream") is True:
        return StreamingResponse(_frames(events), media_type="text/event-stream")
    return json_response(done)
