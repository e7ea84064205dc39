"""Request checks of the fake Anthropic vendor: what the Messages API rejects, and how.

Errors use Anthropic's envelope and its pydantic-style messages (`max_tokens: Field required`,
`temperature: Input should be less than or equal to 1`). The fake is a little stricter than
today's API in one place, on purpose: it requires user/assistant turns to alternate (the
API now merges consecutive same-role turns itself), so a translator that forgot to merge
them is caught. Reference: ../shared/vendors/anthropic.md §1-§2.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Any

TOP_LEVEL = frozenset({"model", "messages", "max_tokens", "system", "metadata", "stop_sequences", "stream",
                       "temperature", "top_p", "top_k", "tools", "tool_choice", "thinking", "service_tier"})
IMAGE_TYPES = ("image/jpeg", "image/png", "image/gif", "image/webp")
TOOL_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,128}$")
TOOL_ID = re.compile(r"^[a-zA-Z0-9_-]+$")


class AnthropicHTTPError(Exception):
    """Raised by checks and handlers; rendered as `{"type":"error","error":{type,message},...}`."""

    def __init__(self, status: int, message: str, type: str = "invalid_request_error",  # noqa: A002
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.type = type
        self.message = message
        self.headers = headers or {}


def invalid(message: str) -> AnthropicHTTPError:
    return AnthropicHTTPError(400, message)


def _number(body: dict[str, Any], name: str, low: float, high: float | None) -> None:
    value = body.get(name)
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise invalid(f"{name}: Input should be a valid number")
    if value < low:
        raise invalid(f"{name}: Input should be greater than or equal to {low:g}")
    if high is not None and value > high:
        raise invalid(f"{name}: Input should be less than or equal to {high:g}")


def check_top_level(body: dict[str, Any]) -> None:
    for key in body:
        if key not in TOP_LEVEL:
            raise invalid(f"{key}: Extra inputs are not permitted")
    if not isinstance(body.get("model"), str) or not body["model"]:
        raise invalid("model: Field required")
    max_tokens = body.get("max_tokens")
    if max_tokens is None:
        raise invalid("max_tokens: Field required")
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
        raise invalid("max_tokens: Input should be greater than or equal to 1")
    _number(body, "temperature", 0, 1)
    _number(body, "top_p", 0, 1)
    if body.get("top_k") is not None and (not isinstance(body["top_k"], int) or body["top_k"] < 0):
        raise invalid("top_k: Input should be a valid integer greater than or equal to 0")
    stop = body.get("stop_sequences")
    if stop is not None and (not isinstance(stop, list) or not all(isinstance(s, str) for s in stop)):
        raise invalid("stop_sequences: Input should be a valid list of strings")
    if body.get("stream") is not None and not isinstance(body["stream"], bool):
        raise invalid("stream: Input should be a valid boolean")
    metadata = body.get("metadata")
    if metadata is not None:
        if not isinstance(metadata, dict):
            raise invalid("metadata: Input should be a valid dictionary")
        for key in metadata:
            if key != "user_id":
                raise invalid(f"metadata.{key}: Extra inputs are not permitted")
    system = body.get("system")
    if system is not None and not isinstance(system, str):
        if not isinstance(system, list) or not all(isinstance(b, dict) and b.get("type") == "text"
                                                   and isinstance(b.get("text"), str) for b in system):
            raise invalid("system: Input should be a valid string or a list of text blocks")


def check_tools(body: dict[str, Any]) -> list[str]:
    """The tool names; `tool_choice` checked against them."""
    tools = body.get("tools")
    names: list[str] = []
    if tools is not None:
        if not isinstance(tools, list):
            raise invalid("tools: Input should be a valid list")
        for k, tool in enumerate(tools):
            if not isinstance(tool, dict):
                raise invalid(f"tools.{k}: Input should be a valid dictionary")
            for key in tool:
                if key not in ("name", "description", "input_schema", "type", "cache_control"):
                    raise invalid(f"tools.{k}.custom.{key}: Extra inputs are not permitted")
            if not isinstance(tool.get("name"), str) or not TOOL_NAME.match(tool["name"]):
                raise invalid(f"tools.{k}.custom.name: String should match pattern '^[a-zA-Z0-9_-]{{1,128}}$'")
            schema = tool.get("input_schema")
            if not isinstance(schema, dict):
                raise invalid(f"tools.{k}.custom.input_schema: Field required")
            if schema.get("type") != "object":
                raise invalid(f"tools.{k}.custom.input_schema.type: Input should be 'object'")
            names.append(tool["name"])
    choice = body.get("tool_choice")
    if choice is not None:
        if not tools:
            raise invalid("tool_choice: tool_choice may only be specified while providing tools.")
        if not isinstance(choice, dict) or choice.get("type") not in ("auto", "any", "tool", "none"):
            raise invalid("tool_choice: Input tag does not match any of the expected tags: 'auto', 'any', "
                          "'tool', 'none'")
        if choice["type"] == "tool" and choice.get("name") not in names:
            raise invalid(f"tool_choice.tool.name: Tool '{choice.get('name')}' not found in provided tools")
        extra = set(choice) - {"type", "name", "disable_parallel_tool_use"}
        if extra:
            raise invalid(f"tool_choice.{choice['type']}.{sorted(extra)[0]}: Extra inputs are not permitted")
    return names


def _check_image(block: dict[str, Any], where: str) -> None:
    source = block.get("source")
    if not isinstance(source, dict):
        raise invalid(f"{where}.source: Field required")
    if source.get("type") == "base64":
        if source.get("media_type") not in IMAGE_TYPES:
            raise invalid(f"{where}.source.base64.media_type: Input should be " +
                          ", ".join(f"'{t}'" for t in IMAGE_TYPES))
        try:
            base64.b64decode(source.get("data") or "", validate=True)
        except (binascii.Error, ValueError):
            raise invalid(f"{where}.source.base64.data: invalid base64 data") from None
        if not source.get("data"):
            raise invalid(f"{where}.source.base64.data: Field required")
    elif source.get("type") == "url":
        if not str(source.get("url", "")).startswith(("http://", "https://")):
            raise invalid(f"{where}.source.url.url: URL must use http or https")
    else:
        raise invalid(f"{where}.source: Input tag '{source.get('type')}' does not match 'base64', 'url'")


def _blocks(content: Any, where: str) -> list[dict[str, Any]]:
    if isinstance(content, str):
        if not content:
            raise invalid("messages: text content blocks must be non-empty")
        return [{"type": "text", "text": content}]
    if not isinstance(content, list) or not content:
        raise invalid(f"{where}.content: Input should be a valid string or a non-empty list")
    for j, block in enumerate(content):
        if not isinstance(block, dict):
            raise invalid(f"{where}.content.{j}: Input should be a valid dictionary")
    return content


def check_messages(body: dict[str, Any], tool_names: list[str]) -> list[dict[str, Any]]:
    """Messages as lists of blocks, after checking roles, order and every block."""
    messages = body.get("messages")
    if not isinstance(messages, list):
        raise invalid("messages: Field required")
    if not messages:
        raise invalid("messages: at least one message is required")
    out: list[dict[str, Any]] = []
    pending: list[str] = []  # tool_use ids of the previous assistant turn, still unanswered
    uses_tools = False
    for i, message in enumerate(messages):
        where = f"messages.{i}"
        if not isinstance(message, dict):
            raise invalid(f"{where}: Input should be a valid dictionary")
        role = message.get("role")
        if role == "system":
            raise invalid('messages: Unexpected role "system". The Messages API accepts a top-level `system` '
                          'parameter, not "system" as an input message role.')
        if role not in ("user", "assistant"):
            raise invalid(f"{where}.role: Input should be 'user' or 'assistant'")
        if i == 0 and role != "user":
            raise invalid('messages: first message must use the "user" role')
        if out and out[-1]["role"] == role:
            raise invalid(f'messages: roles must alternate between "user" and "assistant", but found '
                          f'multiple "{role}" roles in a row')
        blocks = _blocks(message.get("content"), where)
        answered: list[str] = []
        seen_other = False
        for j, block in enumerate(blocks):
            kind, at = block.get("type"), f"{where}.content.{j}"
            if kind == "text":
                if not isinstance(block.get("text"), str) or not block["text"]:
                    raise invalid("messages: text content blocks must be non-empty")
                seen_other = True
            elif kind == "image":
                if role != "user":
                    raise invalid(f"{at}: image blocks are only allowed in user messages")
                _check_image(block, at)
                seen_other = True
            elif kind == "tool_use":
                if role != "assistant":
                    raise invalid(f"{at}: tool_use blocks are only allowed in assistant messages")
                if not isinstance(block.get("id"), str) or not TOOL_ID.match(block["id"]):
                    raise invalid(f"{at}.tool_use.id: String should match pattern '^[a-zA-Z0-9_-]+$'")
                if not isinstance(block.get("name"), str) or not isinstance(block.get("input"), dict):
                    raise invalid(f"{at}.tool_use: name (string) and input (object) are required")
                uses_tools = True
            elif kind == "tool_result":
                if role != "user":
                    raise invalid(f"{at}: tool_result blocks are only allowed in user messages")
                if seen_other:
                    raise invalid(f"{where}: tool_result blocks must come first in the content array, "
                                  "any text must come after")
                if block.get("tool_use_id") not in pending:
                    raise invalid(f"{where}.content.{j}: unexpected `tool_use_id` found in `tool_result` blocks: "
                                  f"{block.get('tool_use_id')}. Each `tool_result` block must have a "
                                  "corresponding `tool_use` block in the previous message.")
                content = block.get("content")
                if content is not None and not isinstance(content, (str, list)):
                    raise invalid(f"{at}.tool_result.content: Input should be a valid string or list")
                answered.append(block["tool_use_id"])
                uses_tools = True
            else:
                raise invalid(f"{at}.type: Input tag '{kind}' found using 'type' does not match any of the "
                              "expected tags")
        if role == "user" and pending:
            missing = [p for p in pending if p not in answered]
            if missing:
                raise invalid(f"messages.{i - 1}: `tool_use` ids were found without `tool_result` blocks "
                              f"immediately after: {', '.join(missing)}. Each `tool_use` block must have a "
                              "corresponding `tool_result` block in the next message.")
        pending = [b["id"] for b in blocks if b.get("type") == "tool_use"] if role == "assistant" else []
        out.append({"role": role, "content": blocks})
    if uses_tools and not tool_names:
        raise invalid("Requests which include `tool_use` or `tool_result` blocks must define tools.")
    return out


def text_of(blocks: list[dict[str, Any]]) -> list[str]:
    """Every text the model would read in these blocks (for counting input tokens)."""
    texts: list[str] = []
    for block in blocks:
        if block.get("type") == "text":
            texts.append(block["text"])
        elif block.get("type") == "tool_result":
            content = block.get("content")
            if isinstance(content, str):
                texts.append(content)
            elif isinstance(content, list):
                texts += text_of([b for b in content if isinstance(b, dict)])
    return texts
