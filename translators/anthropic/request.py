"""The pieces of an Anthropic Messages API body, from an OpenAI chat request (pure): the
conversation, the tools, what is refused. `codec.to_vendor_request` puts them together.

Request mapping:
- `system` / `developer` messages are lifted, in order, into the top-level `system`
  (joined by a blank line), wherever they stood in the conversation;
- consecutive same-role turns are merged into one (Anthropic alternates user/assistant);
  the `role: tool` results answering one assistant turn become one user turn of
  `tool_result` blocks, placed before any text of that turn; assistant `tool_calls`
  become `tool_use` blocks (`arguments`, a JSON string, must hold a JSON object);
- `max_tokens` is always sent: `max_completion_tokens`, else `max_tokens`, else the
  per-model default of `DEFAULT_MAX_TOKENS`;
- `temperature` is clamped to Anthropic's 0-1 (OpenAI allows up to 2: 1.5 becomes 1.0);
  `top_p` as is; `stop` -> `stop_sequences`; `user` -> `metadata.user_id`;
  `top_k` (Anthropic's own knob, sent as an extra field) passes through;
- `tools` -> `{name, description, input_schema}`; `tool_choice` auto/none/required/a named
  function -> auto/none/any/tool; `parallel_tool_calls: false` ->
  `disable_parallel_tool_use` (on `auto` when no tool_choice was given);
- `image_url` parts: `data:` URLs -> base64 image blocks, http(s) URLs -> URL image
  sources. The gateway never fetches a URL itself.

Rejected with a 400 naming the field (they change what the answer means and Anthropic
cannot honour them): `n` > 1, `logprobs`, `top_logprobs`, `response_format` other than
`text`, `audio` / `modalities` with audio, `functions` / `function_call` (use `tools`),
tools other than functions, `role: function` messages, content parts other than text
and images (and images anywhere but user turns).

Dropped tuning knobs (no Anthropic equivalent, the answer keeps its meaning):
`presence_penalty`, `frequency_penalty`, `logit_bias`, `seed`, `service_tier`, `store`,
`metadata`, `prediction`, `reasoning_effort`, `verbosity`, `parallel_tool_calls: true`
(Anthropic's default), a function's `strict`, a message's `name`, an image's `detail`,
and any other field Anthropic does not know. `stream_options` is the gateway's: usage is
always read from the stream and forwarded only when the client asked.
"""

from __future__ import annotations

from typing import Any

import orjson

from translators._json import MAX_DEPTH, TooDeep
from translators._json import loads as bounded_json
from translators._refusals import (
    refuse_choices_and_logprobs,
    refuse_deprecated_functions,
    refuse_non_function_tools,
    refuse_response_format,
)
from translators.errors import bad_request, unsupported
from translators.types import ChatRequest, ContentPart, JSONObject, Message

__all__ = ["DEFAULT_MAX_TOKENS", "PROVIDER", "conversation", "default_max_tokens", "refuse_unsupported",
           "tool_choice", "tools"]

PROVIDER = "anthropic"

# `max_tokens` when the client sends none (Anthropic requires one). First matching prefix
# wins. Values are the legacy models' maximum output and, for newer ones, a conservative
# 8192: under every current model's output limit and short enough that a non-streamed
# call finishes well inside Anthropic's time limit for non-streamed requests.
DEFAULT_MAX_TOKENS: tuple[tuple[str, int], ...] = (
    ("claude-instant-1", 4096),
    ("claude-2", 4096),
    ("claude-3-5-", 8192),
    ("claude-3-7-", 8192),
    ("claude-3-", 4096),  # claude-3 opus / sonnet / haiku
    ("claude-", 8192),    # claude-{opus,sonnet,haiku}-4*, and later
)
FALLBACK_MAX_TOKENS = 4096

IMAGE_TYPES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"})


def default_max_tokens(model: str) -> int:
    for prefix, limit in DEFAULT_MAX_TOKENS:
        if model.startswith(prefix):
            return limit
    return FALLBACK_MAX_TOKENS


def refuse_unsupported(req: ChatRequest) -> None:
    raw = req.raw
    refuse_choices_and_logprobs(req, PROVIDER)
    refuse_response_format(req, PROVIDER, "response_format (JSON mode / structured outputs)")
    if raw.get("audio") is not None:
        raise unsupported(PROVIDER, "audio output", "audio")
    if "audio" in (raw.get("modalities") or ()):
        raise unsupported(PROVIDER, "audio output", "modalities")
    refuse_deprecated_functions(req, PROVIDER)


def _image(url: str, param: str) -> JSONObject:
    scheme, _, rest = url.partition(":")
    scheme = scheme.lower()
    if scheme == "data":
        header, sep, data = rest.partition(",")
        media_type, *options = header.split(";")
        media_type = media_type.strip().lower()
        media_type = "image/jpeg" if media_type == "image/jpg" else media_type
        if not sep or "base64" not in options or not data:
            raise bad_request("image data URLs must be base64 encoded (data:image/png;base64,...)", param)
        if media_type not in IMAGE_TYPES:
            raise bad_request(f"provider '{PROVIDER}' accepts {', '.join(sorted(IMAGE_TYPES))} images, "
                              f"not '{media_type}'", param)
        return {"type": "image", "source": {"type": "base64", "media_type": media_type, "data": data}}
    if scheme in ("http", "https"):
        return {"type": "image", "source": {"type": "url", "url": url}}
    raise bad_request("image_url must be an http(s) URL or a base64 data: URL", param)


def _blocks(content: str | list[ContentPart] | None, where: str, images: bool) -> list[JSONObject]:
    """Text (and, for user turns, image) blocks; empty text is left out (Anthropic refuses it)."""
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    blocks: list[JSONObject] = []
    for j, part in enumerate(content):
        if part.type == "text":
            if part.text:
                blocks.append({"type": "text", "text": part.text})
        elif part.type == "image_url" and images and part.image_url is not None:
            blocks.append(_image(part.image_url.url, f"{where}.content[{j}].image_url.url"))
        else:
            raise unsupported(PROVIDER, f"'{part.type}' content parts here", f"{where}.content[{j}].type")
    return blocks


def _text(content: str | list[ContentPart] | None, where: str) -> str:
    return "\n".join(b["text"] for b in _blocks(content, where, images=False))


def _tool_use(message: Message, where: str) -> list[JSONObject]:
    blocks = []
    for k, call in enumerate(message.tool_calls or ()):
        arguments = call.function.arguments
        param = f"{where}.tool_calls[{k}].function.arguments"
        try:
            # A client's string parsed here: nesting checked first, as for a request body.
            value = bounded_json(arguments) if arguments.strip() else {}
        except (orjson.JSONDecodeError, TooDeep):
            raise bad_request(f"tool call arguments must be valid JSON nested at most {MAX_DEPTH} levels deep",
                              param) from None
        if not isinstance(value, dict):
            raise bad_request("tool call arguments must be a JSON object", param)
        blocks.append({"type": "tool_use", "id": call.id, "name": call.function.name, "input": value})
    return blocks


def _tool_result(message: Message, where: str) -> JSONObject:
    if not message.tool_call_id:
        raise bad_request("a tool message needs the tool_call_id it answers", f"{where}.tool_call_id")
    block: JSONObject = {"type": "tool_result", "tool_use_id": message.tool_call_id}
    content = _blocks(message.content, where, images=False)
    if content:
        block["content"] = content[0]["text"] if len(content) == 1 else content
    return block


def conversation(messages: list[Message]) -> tuple[str | None, list[JSONObject]]:
    """(system, turns): system messages lifted out, the rest as merged alternating turns."""
    system: list[str] = []
    turns: list[JSONObject] = []
    for i, message in enumerate(messages):
        where = f"messages[{i}]"
        if message.role in ("system", "developer"):
            text = _text(message.content, where)
            if text:
                system.append(text)
            continue
        if message.role == "user":
            role, blocks = "user", _blocks(message.content, where, images=True)
        elif message.role == "assistant":
            role, blocks = "assistant", _blocks(message.content, where, images=False) + _tool_use(message, where)
        elif message.role == "tool":
            role, blocks = "user", [_tool_result(message, where)]
        else:
            raise unsupported(PROVIDER, f"'{message.role}' messages (use tools)", f"{where}.role")
        if not blocks:
            continue
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": role, "content": blocks})
    if not turns:
        raise bad_request(f"provider '{PROVIDER}' needs at least one non-empty user or assistant message",
                          "messages")
    for turn in turns:
        content = turn["content"]
        if turn["role"] == "user":  # tool results must open the turn that carries them
            content.sort(key=lambda b: b["type"] != "tool_result")
        if len(content) == 1 and content[0]["type"] == "text":
            turn["content"] = content[0]["text"]
    return ("\n\n".join(system) or None), turns


def tools(req: ChatRequest) -> list[JSONObject]:
    refuse_non_function_tools(req, PROVIDER)
    tools = []
    for tool in req.tools or ():
        schema = dict(tool.function.parameters or {})
        schema.setdefault("type", "object")
        item: JSONObject = {"name": tool.function.name, "input_schema": schema}
        if tool.function.description:
            item["description"] = tool.function.description
        tools.append(item)
    return tools


def tool_choice(choice: Any, parallel: bool | None) -> JSONObject | None:
    if choice is None or choice == "auto":
        out: JSONObject | None = {"type": "auto"} if choice == "auto" or parallel is False else None
    elif choice == "none":
        out = {"type": "none"}
    elif choice == "required":
        out = {"type": "any"}
    elif isinstance(choice, dict) and choice.get("type") == "function" \
            and isinstance(choice.get("function"), dict) and isinstance(choice["function"].get("name"), str):
        out = {"type": "tool", "name": choice["function"]["name"]}
    else:
        raise bad_request("tool_choice must be 'auto', 'none', 'required' or "
                          '{"type": "function", "function": {"name": ...}}', "tool_choice")
    if out is not None and parallel is False and out["type"] != "none":
        out["disable_parallel_tool_use"] = True
    return out
