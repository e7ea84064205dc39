"""OpenAI's Responses API as clients send it to the gateway (`POST /v1/responses`): the
request's model, its input as items, and its chat form for every provider. Pure.

Chat form (`to_chat`):
- `instructions` -> one leading system message (not carried over by `previous_response_id`,
  as OpenAI does); the conversation a `previous_response_id` continues (its items, kept by
  the gateway) goes before this request's `input`;
- `input`: a string is one user message; items: messages (`role` user / system /
  developer / assistant, `content` a string or parts: `input_text` / `output_text` /
  `refusal` as text, `input_image` as an `image_url` part), `function_call` items ->
  an assistant message's `tool_calls` (consecutive calls, and the assistant text just
  before them, are one message), `function_call_output` -> `role: tool` messages;
  `reasoning` items are skipped (the model's own reasoning, echoed back by clients);
  `developer` becomes `system` (not every provider has the newer role);
- `max_output_tokens` -> `max_tokens`; `temperature`, `top_p`, `stream` as they are;
- function tools (Responses' flat shape) -> chat's nested `function`; `tool_choice`
  auto / none / required / a named function; `parallel_tool_calls` (with tools);
- `text.format`: `json_object` / `json_schema` -> `response_format` (`text`: nothing).

Dropped on the chat path (echoed in the answer, but without effect there): `metadata`,
`user`, `truncation`, `reasoning`, `include`, `service_tier`, `prompt_cache_key`,
`safety_identifier`.

Refused with a 400 naming what: built-in tools (`web_search`, `file_search`,
`code_interpreter`, `computer_use_preview`, `image_generation`, `mcp`, ...) and a
`tool_choice` naming one, `input_file` parts, `item_reference` items and other items
the chat form cannot carry (on the chat path only: a provider serving the Responses API
natively gets them as sent); `background`, `conversation` and `prompt` always (the
gateway runs none of them).
"""

from __future__ import annotations

import secrets
import time
from typing import Annotated, Any

from pydantic import Field, PrivateAttr

from translators._inbound import Conversion, InboundChatRequest
from translators.errors import bad_request
from translators.responses.native import native_body
from translators.types import JSONObject, _Request

__all__ = ["ResponsesChatRequest", "ResponsesRequest", "input_items", "new_item_id", "to_chat"]

TEXT_PARTS = frozenset({"input_text", "output_text", "text", "refusal"})
SKIPPED = frozenset({"reasoning"})
NEVER = ("background", "conversation", "prompt")  # features the gateway does not run on any provider


def new_item_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(16)}"


class ResponsesRequest(_Request):
    input: str | list[JSONObject] | None = None
    instructions: str | None = None
    max_output_tokens: Annotated[int, Field(ge=1)] | None = None
    temperature: Annotated[float, Field(ge=0, le=2)] | None = None
    top_p: Annotated[float, Field(ge=0, le=1)] | None = None
    tools: list[JSONObject] | None = None
    tool_choice: str | JSONObject | None = None
    parallel_tool_calls: bool | None = None
    text: JSONObject | None = None
    metadata: dict[str, str] | None = None
    stream: bool = False
    store: bool = True
    previous_response_id: Annotated[str, Field(min_length=1, max_length=200)] | None = None
    user: str | None = None
    # The conversation a `previous_response_id` names (its input and output items), put here
    # by the gateway from what it kept before the chat form is made.
    # A plain default, never default_factory: pydantic inspects a factory's signature on
    # every instantiation (3x a request's CPU, measured by the bench's profile).
    _history: list[JSONObject] | None = PrivateAttr(default=None)

    def continuing(self, history: list[JSONObject]) -> ResponsesRequest:
        self._history = history
        return self

    @property
    def history(self) -> list[JSONObject]:
        return self._history or []


class ResponsesChatRequest(InboundChatRequest):
    """The chat form of a Responses request, carrying what its answer echoes and keeps: the
    response's id and time, the request's own fields, its input items and the history."""

    _origin: ResponsesRequest | None = PrivateAttr(default=None)
    _response_id: str = PrivateAttr(default="")
    _created_at: int = PrivateAttr(default=0)
    _items: list[JSONObject] | None = PrivateAttr(default=None)  # set by `of` (no factory: see above)

    def of(self, origin: ResponsesRequest, items: list[JSONObject]) -> ResponsesChatRequest:
        self._origin, self._items = origin, items
        self._response_id, self._created_at = new_item_id("resp"), int(time.time())
        return self

    @property
    def origin(self) -> ResponsesRequest:
        assert self._origin is not None, "a Responses chat form is made by to_chat"
        return self._origin

    @property
    def response_id(self) -> str:
        return self._response_id

    @property
    def created_at(self) -> int:
        return self._created_at

    @property
    def items(self) -> list[JSONObject]:
        """This request's own input, as items with ids (what `input_items` lists)."""
        return self._items or []


def input_items(req: ResponsesRequest) -> list[JSONObject]:
    """The request's `input` as items, each with an id (a string is one user message)."""
    raw = req.input
    if raw is None:
        return []
    if isinstance(raw, str):
        return [{"type": "message", "id": new_item_id("msg"), "role": "user", "status": "completed",
                 "content": [{"type": "input_text", "text": raw}]}]
    items: list[JSONObject] = []
    for item in raw:
        kind = item.get("type") or ("message" if "role" in item else None)
        out = {**item, "type": kind}
        if "id" not in out and kind in ("message", "function_call", "function_call_output"):
            out["id"] = new_item_id({"message": "msg", "function_call": "fc"}.get(kind, "fco"))
        if kind == "message":
            out.setdefault("status", "completed")
            if isinstance(out.get("content"), str):
                part = "output_text" if out.get("role") == "assistant" else "input_text"
                out["content"] = [{"type": part, "text": out["content"]}]
        items.append(out)
    return items


def _parts(content: Any, at: str, conv: Conversion) -> list[JSONObject]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    if not isinstance(content, list):
        raise bad_request(f"{at}.content must be a string or a list of parts", f"{at}.content")
    parts: list[JSONObject] = []
    for j, part in enumerate(content):
        where = f"{at}.content[{j}]"
        kind = part.get("type") if isinstance(part, dict) else None
        if kind in TEXT_PARTS:
            text = part.get("text", part.get("refusal")) if isinstance(part, dict) else None
            if not isinstance(text, str):
                raise bad_request(f"{where}.text must be a string", f"{where}.text")
            parts.append({"type": "text", "text": text})
        elif kind == "input_image" and isinstance(part, dict) and isinstance(part.get("image_url"), str):
            image: JSONObject = {"url": part["image_url"]}
            if isinstance(part.get("detail"), str) and part["detail"] != "auto":
                image["detail"] = part["detail"]
            parts.append({"type": "image_url", "image_url": image})
        elif kind == "input_image":
            conv.refuse("An input_image without an image_url (a file_id)", f"{where}.image_url")
        else:
            conv.refuse(f"A content part of type '{kind}'", f"{where}.type")
    return parts


def _message(item: JSONObject, at: str, conv: Conversion) -> JSONObject | None:
    role = item.get("role")
    if role not in ("user", "system", "developer", "assistant"):
        raise bad_request(f"{at}.role must be 'user', 'system', 'developer' or 'assistant'", f"{at}.role")
    parts = _parts(item.get("content"), at, conv)
    chat_role = "system" if role == "developer" else role
    if all(p["type"] == "text" for p in parts):
        text = "".join(p["text"] for p in parts) if role == "assistant" else "\n\n".join(p["text"] for p in parts)
        return {"role": chat_role, "content": text}
    return {"role": chat_role, "content": parts}


def _call(item: JSONObject, at: str) -> JSONObject:
    call_id, name, arguments = item.get("call_id"), item.get("name"), item.get("arguments")
    if not isinstance(call_id, str) or not isinstance(name, str) or not isinstance(arguments, str):
        raise bad_request(f"{at} needs call_id, name and arguments (strings)", at)
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


def _output(item: JSONObject, at: str) -> JSONObject:
    call_id, output = item.get("call_id"), item.get("output")
    if not isinstance(call_id, str):
        raise bad_request(f"{at}.call_id must be a string", f"{at}.call_id")
    if isinstance(output, list):  # output parts: their text, in order
        output = "".join(str(p.get("text") or "") for p in output if isinstance(p, dict))
    if not isinstance(output, str):
        raise bad_request(f"{at}.output must be a string", f"{at}.output")
    return {"role": "tool", "tool_call_id": call_id, "content": output}


def _messages(items: list[JSONObject], where: str, conv: Conversion) -> list[JSONObject]:
    messages: list[JSONObject] = []
    for i, item in enumerate(items):
        at = f"{where}[{i}]"
        kind = item.get("type")
        if kind == "message":
            message = _message(item, at, conv)
            if message is not None:
                messages.append(message)
        elif kind == "function_call":
            last = messages[-1] if messages else None
            if last is None or last["role"] != "assistant" or not isinstance(last.get("content"), str | None):
                last = {"role": "assistant", "content": None}
                messages.append(last)
            last.setdefault("tool_calls", []).append(_call(item, at))
        elif kind == "function_call_output":
            messages.append(_output(item, at))
        elif kind not in SKIPPED:
            conv.refuse(f"An input item of type '{kind}'", f"{at}.type")
    return messages


def _tools(tools: list[JSONObject], conv: Conversion) -> list[JSONObject]:
    out: list[JSONObject] = []
    for k, tool in enumerate(tools):
        at = f"tools[{k}]"
        kind = tool.get("type")
        if kind != "function":
            conv.refuse(f"The built-in tool '{kind}'", f"{at}.type")
            continue
        name = tool.get("name")
        if not isinstance(name, str) or not name:
            raise bad_request(f"{at}.name must be a string", f"{at}.name")
        function: JSONObject = {"name": name}
        for key in ("description", "parameters", "strict"):
            if tool.get(key) is not None:
                function[key] = tool[key]
        out.append({"type": "function", "function": function})
    return out


def _tool_choice(choice: str | JSONObject, conv: Conversion) -> str | JSONObject | None:
    if isinstance(choice, str):
        if choice not in ("auto", "none", "required"):
            raise bad_request("tool_choice must be 'auto', 'none', 'required' or an object", "tool_choice")
        return choice
    if choice.get("type") == "function" and isinstance(choice.get("name"), str):
        return {"type": "function", "function": {"name": choice["name"]}}
    conv.refuse(f"A tool_choice of type '{choice.get('type')}'", "tool_choice.type")
    return None


def _format(text: JSONObject) -> JSONObject | None:
    fmt = text.get("format")
    if fmt is None:
        return None
    kind = fmt.get("type") if isinstance(fmt, dict) else None
    if kind == "text":
        return None
    if kind == "json_object":
        return {"type": "json_object"}
    if kind == "json_schema" and isinstance(fmt, dict) and isinstance(fmt.get("name"), str) \
            and isinstance(fmt.get("schema"), dict):
        schema = {k: fmt[k] for k in ("name", "schema", "strict", "description") if fmt.get(k) is not None}
        return {"type": "json_schema", "json_schema": schema}
    raise bad_request("text.format must be {'type': 'text'}, {'type': 'json_object'} or "
                      "{'type': 'json_schema', 'name': ..., 'schema': {...}}", "text.format")


def to_chat(req: ResponsesRequest) -> ResponsesChatRequest:
    """The chat form of a Responses request (see the module docstring)."""
    for name in NEVER:
        if req.raw.get(name):
            raise bad_request(f"'{name}' is not supported by the gateway.", name, "unsupported_parameter")
    conv = Conversion("is not supported by the gateway on this model's provider (it is reached through chat "
                      "completions).")
    items = input_items(req)
    messages: list[JSONObject] = []
    if req.instructions:
        messages.append({"role": "system", "content": req.instructions})
    messages += _messages(req.history, "previous_response_id", conv)
    messages += _messages(items, "input", conv)
    chat = conv.chat_body(req.model, messages, "input: at least one input item with content is required", "input",
                          max_tokens=req.max_output_tokens, stream=req.stream, temperature=req.temperature,
                          top_p=req.top_p)
    tools = _tools(req.tools or [], conv)
    if tools:
        chat["tools"] = tools
        if req.parallel_tool_calls is not None:
            chat["parallel_tool_calls"] = req.parallel_tool_calls
    if req.tool_choice is not None:
        choice = _tool_choice(req.tool_choice, conv)
        if choice is not None and tools:  # without tools a choice means nothing (some vendors refuse it)
            chat["tool_choice"] = choice
    response_format = _format(req.text or {})
    if response_format is not None:
        chat["response_format"] = response_format
    built = ResponsesChatRequest.parse(chat).carrying(native_body(req.raw, req.history), None, conv.refusal)
    assert isinstance(built, ResponsesChatRequest)
    return built.of(req, items)

