"""Anthropic's Messages API as clients send it to the gateway (`POST /v1/messages`): the
request's model, its chat form for every other provider, and the token-count estimate.
Pure; the reverse of `request.py` (chat -> Messages). Reference: ../shared/vendors/anthropic.md.

Chat form (`to_chat`):
- `system` (a string or text blocks) -> one leading system message, blocks joined by a
  blank line; `cache_control` anywhere is accepted and ignored (there is no cache to mark);
- user turns: text blocks -> one string (joined by a blank line) or, with images, text and
  `image_url` parts (base64 sources as `data:` URLs, URL sources as they are);
  `tool_result` blocks -> `role: tool` messages, first (each answers its `tool_use_id`;
  text blocks joined, `is_error` as an "Error: " prefix, images moved to the user message
  that follows); assistant turns: text blocks -> content, `tool_use` -> `tool_calls`
  (`input` as a JSON string), `thinking` / `redacted_thinking` blocks dropped;
- `max_tokens`, `temperature`, `top_p` as they are, `stop_sequences` -> `stop`, `stream`;
  `top_k` only to translators that read it (`Translator.chat_extras`);
- custom tools -> function tools (`input_schema` -> `parameters`); `tool_choice` auto /
  any / tool / none -> "auto" / "required" / the named function / "none",
  `disable_parallel_tool_use` -> `parallel_tool_calls: false`.

Dropped on the chat path (knobs without a chat equivalent; the answer keeps its meaning):
`metadata` (an abuse-tracking id; on a hosted trial OpenAI's `user` would even be refused),
`thinking`, `service_tier`, `context_management`, `container` and other fields the chat
form does not know; the `anthropic-beta` header.

Refused with a 400, but only when an attempt takes the chat path (a provider that serves
the Messages API natively gets them as sent): built-in tools (`web_search_...`,
`bash_...`, any tool with a `type` other than "custom"), `document`, `search_result` and
other content blocks the chat form cannot carry, `mcp_servers`.
Malformed requests (a missing `max_tokens`, a block without its fields) are a 400 at once.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import orjson
from pydantic import Field

from translators._estimate import TokenTally
from translators._inbound import Conversion, InboundChatRequest
from translators.errors import bad_request
from translators.types import JSONObject, _Open, _Request

__all__ = ["CountRequest", "MessagesRequest", "estimate_input_tokens", "to_chat"]

DATA_URI_SCHEME = "data"  # base64 images go to chat as data: URLs
IMAGE_TYPES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"})
IMAGE_TOKENS = 1600  # what an image is counted as when tokens are estimated (a ~1.15 megapixel image)
SKIPPED = frozenset({"thinking", "redacted_thinking"})  # the model's own reasoning, echoed back by clients


class InMessage(_Open):
    role: Literal["user", "assistant"]
    content: str | list[JSONObject]


class TextBlock(_Open):
    type: Literal["text"]
    text: str


class CountRequest(_Request):
    """`POST /v1/messages/count_tokens`: a Messages request without its sampling knobs."""

    messages: Annotated[list[InMessage], Field(min_length=1)]
    system: str | list[TextBlock] | None = None
    tools: list[JSONObject] | None = None
    tool_choice: JSONObject | None = None


class MessagesRequest(CountRequest):
    max_tokens: Annotated[int, Field(ge=1)]
    stop_sequences: list[str] | None = None
    temperature: Annotated[float, Field(ge=0, le=1)] | None = None
    top_p: Annotated[float, Field(ge=0, le=1)] | None = None
    top_k: Annotated[int, Field(ge=0)] | None = None
    stream: bool = False
    metadata: JSONObject | None = None


def _text(block: JSONObject, at: str) -> str:
    text = block.get("text")
    if not isinstance(text, str):
        raise bad_request(f"{at}.text must be a string", f"{at}.text")
    return text


def _image(block: JSONObject, at: str, conv: Conversion) -> JSONObject | None:
    source = block.get("source")
    if not isinstance(source, dict):
        raise bad_request(f"{at}.source must be an object", f"{at}.source")
    kind = source.get("type")
    if kind == "base64":
        media, data = source.get("media_type"), source.get("data")
        if media not in IMAGE_TYPES or not isinstance(data, str) or not data:
            raise bad_request(f"{at}.source needs media_type (one of {', '.join(sorted(IMAGE_TYPES))}) and base64 "
                              "data", f"{at}.source")
        return {"type": "image_url", "image_url": {"url": f"{DATA_URI_SCHEME}:{media};base64,{data}"}}
    if kind == "url" and isinstance(source.get("url"), str):
        return {"type": "image_url", "image_url": {"url": source["url"]}}
    conv.refuse(f"An image source of type '{kind}'", f"{at}.source.type")
    return None


def _tool_result(block: JSONObject, at: str, conv: Conversion) -> tuple[JSONObject, list[JSONObject]]:
    """The tool message a `tool_result` becomes, and the images it held (for the next user message)."""
    call_id = block.get("tool_use_id")
    if not isinstance(call_id, str) or not call_id:
        raise bad_request(f"{at}.tool_use_id must be a string", f"{at}.tool_use_id")
    content = block.get("content")
    texts: list[str] = []
    images: list[JSONObject] = []
    if isinstance(content, str):
        texts.append(content)
    elif isinstance(content, list):
        for k, part in enumerate(content):
            where = f"{at}.content[{k}]"
            kind = part.get("type") if isinstance(part, dict) else None
            if kind == "text":
                texts.append(_text(part, where))
            elif kind == "image":
                image = _image(part, where, conv)
                images += [image] if image else []
            else:
                conv.refuse(f"A '{kind}' block in a tool result", f"{where}.type")
    elif content is not None:
        raise bad_request(f"{at}.content must be a string or a list of blocks", f"{at}.content")
    text = "\n".join(texts)
    if block.get("is_error") is True:
        text = f"Error: {text}" if text else "Error"
    return {"role": "tool", "tool_call_id": call_id, "content": text}, images


def _user(content: str | list[JSONObject], where: str, conv: Conversion) -> list[JSONObject]:
    if isinstance(content, str):
        return [{"role": "user", "content": content}]
    out: list[JSONObject] = []
    parts: list[JSONObject] = []
    later: list[JSONObject] = []  # images of tool results: chat's tool messages carry text only
    for j, block in enumerate(content):
        at = f"{where}.content[{j}]"
        kind = block.get("type")
        if kind == "text":
            parts.append({"type": "text", "text": _text(block, at)})
        elif kind == "image":
            image = _image(block, at, conv)
            parts += [image] if image else []
        elif kind == "tool_result":
            message, images = _tool_result(block, at, conv)
            out.append(message)  # tool messages answer the assistant turn: before the user's own words
            later += images
        elif kind not in SKIPPED:
            conv.refuse(f"A '{kind}' content block", f"{at}.type")
    parts += later
    if parts and all(p["type"] == "text" for p in parts):
        out.append({"role": "user", "content": "\n\n".join(p["text"] for p in parts)})
    elif parts:
        out.append({"role": "user", "content": parts})
    return out


def _assistant(content: str | list[JSONObject], where: str, conv: Conversion) -> list[JSONObject]:
    if isinstance(content, str):
        return [{"role": "assistant", "content": content}] if content else []
    texts: list[str] = []
    calls: list[JSONObject] = []
    for j, block in enumerate(content):
        at = f"{where}.content[{j}]"
        kind = block.get("type")
        if kind == "text":
            texts.append(_text(block, at))
        elif kind == "tool_use":
            call_id, name, arguments = block.get("id"), block.get("name"), block.get("input")
            if not isinstance(call_id, str) or not isinstance(name, str) or not isinstance(arguments, dict):
                raise bad_request(f"{at} needs id and name (strings) and input (an object)", at)
            calls.append({"id": call_id, "type": "function",
                          "function": {"name": name, "arguments": orjson.dumps(arguments).decode()}})
        elif kind not in SKIPPED:
            conv.refuse(f"A '{kind}' content block", f"{at}.type")
    if not texts and not calls:
        return []
    message: JSONObject = {"role": "assistant", "content": "\n".join(texts) if texts else None}
    if calls:
        message["tool_calls"] = calls
    return [message]


def _system(system: str | list[TextBlock] | None) -> str:
    if system is None or isinstance(system, str):
        return system or ""
    return "\n\n".join(b.text for b in system if b.text)


def _tools(tools: list[JSONObject], conv: Conversion) -> list[JSONObject]:
    out: list[JSONObject] = []
    for k, tool in enumerate(tools):
        at = f"tools[{k}]"
        kind = tool.get("type")
        if kind not in (None, "custom"):
            conv.refuse(f"The built-in tool '{kind}'", f"{at}.type")
            continue
        name, schema = tool.get("name"), tool.get("input_schema")
        if not isinstance(name, str) or not name or not isinstance(schema, dict):
            raise bad_request(f"{at} needs a name (a string) and an input_schema (an object)", at)
        function: JSONObject = {"name": name, "parameters": schema}
        if isinstance(tool.get("description"), str):
            function["description"] = tool["description"]
        out.append({"type": "function", "function": function})
    return out


def _tool_choice(choice: JSONObject, chat: JSONObject) -> None:
    kind = choice.get("type")
    if kind in ("auto", "any", "none"):
        chat["tool_choice"] = {"auto": "auto", "any": "required", "none": "none"}[kind]
    elif kind == "tool" and isinstance(choice.get("name"), str):
        chat["tool_choice"] = {"type": "function", "function": {"name": choice["name"]}}
    else:
        raise bad_request("tool_choice.type must be 'auto', 'any', 'none' or 'tool' (with a name)", "tool_choice")
    if choice.get("disable_parallel_tool_use") is True and kind != "none":
        chat["parallel_tool_calls"] = False


def to_chat(req: MessagesRequest) -> InboundChatRequest:
    """The chat form of a Messages request (see the module docstring), carrying the client's
    body for a native endpoint and `top_k` for translators that read it."""
    conv = Conversion("needs a provider that serves Anthropic's Messages API natively; this model's provider is "
                      "reached through chat completions.")
    messages: list[JSONObject] = []
    system = _system(req.system)
    if system:
        messages.append({"role": "system", "content": system})
    for i, message in enumerate(req.messages):
        turn = _user if message.role == "user" else _assistant
        messages += turn(message.content, f"messages[{i}]", conv)
    chat = conv.chat_body(req.model, messages, "messages: at least one message needs content", "messages",
                          max_tokens=req.max_tokens, stream=req.stream, temperature=req.temperature,
                          top_p=req.top_p, stop=req.stop_sequences)
    tools = _tools(req.tools or [], conv)
    if tools:
        chat["tools"] = tools
    if req.tool_choice is not None:
        if not req.tools:
            raise bad_request("tool_choice may only be specified while providing tools", "tool_choice")
        if tools:
            _tool_choice(req.tool_choice, chat)
    if req.raw.get("mcp_servers"):
        conv.refuse("'mcp_servers'", "mcp_servers")
    extras = {"top_k": req.top_k} if req.top_k else None
    return InboundChatRequest.parse(chat).carrying(req.raw, extras, conv.refusal)


def estimate_input_tokens(req: CountRequest) -> int:
    """The input tokens of a request, estimated (translators/_estimate.py): every text the
    model reads, tool inputs and definitions as JSON, images at a flat `IMAGE_TOKENS`."""
    tally = TokenTally()
    images = 0

    def add(value: Any) -> None:
        nonlocal images
        if isinstance(value, str):
            tally.add(value)
        elif isinstance(value, list):
            for item in value:
                add(item)
        elif isinstance(value, dict):
            kind = value.get("type")
            if kind == "image":
                images += 1
            elif kind in ("text", "thinking"):
                add(value.get("text") or value.get("thinking"))
            elif kind == "tool_use":
                tally.add(orjson.dumps(value.get("input") or {}).decode())
            elif kind == "tool_result":
                add(value.get("content"))

    add(_system(req.system))
    for message in req.messages:
        add(message.content)
    for tool in req.tools or ():
        tally.add(orjson.dumps(tool).decode())
    return tally.tokens + images * IMAGE_TOKENS
