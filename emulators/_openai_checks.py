"""Request checks of the fake OpenAI vendor: what OpenAI rejects with a 400, and how.

Messages mimic OpenAI's (`Missing required parameter: 'messages'.`, `Invalid type for ...`),
with `param` naming the offending field.
"""

from __future__ import annotations

from typing import Any

from emulators._openai_wire import (
    OpenAIHTTPError,
    invalid_type,
    invalid_value,
    missing_param,
)

CHAT_ROLES = ("system", "developer", "user", "assistant", "tool", "function")


def model_param(body: dict[str, Any]) -> str:
    model = body.get("model")
    if model is None:
        raise missing_param("model")
    if not isinstance(model, str):
        raise invalid_type("model", "a string", model)
    return model


def stream_params(body: dict[str, Any]) -> tuple[bool, bool]:
    """(stream, include_usage), checked like OpenAI does."""
    stream = body.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise invalid_type("stream", "a boolean", stream)
    options = body.get("stream_options")
    if options is not None and not stream:
        raise OpenAIHTTPError(
            400,
            "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
            param="stream_options",
        )
    if options is not None and not isinstance(options, dict):
        raise invalid_type("stream_options", "an object", options)
    return bool(stream), bool((options or {}).get("include_usage"))


def token_limit(body: dict[str, Any], *names: str) -> int | None:
    for name in names:  # first given wins: max_completion_tokens over max_tokens
        value = body.get(name)
        if value is None:
            continue
        if not isinstance(value, int) or isinstance(value, bool):
            raise invalid_type(name, "an integer", value)
        if value < 1:
            raise OpenAIHTTPError(
                400, f"Invalid '{name}': integer below minimum value. Expected a value >= 1, "
                f"but got {value} instead.", param=name, code="integer_below_min_value")
        return value
    return None


def checked_messages(messages: Any) -> list[dict[str, Any]]:
    if messages is None:
        raise missing_param("messages")
    if not isinstance(messages, list):
        raise invalid_type("messages", "an array", messages)
    if not messages:
        raise OpenAIHTTPError(
            400, "Invalid 'messages': empty array. Expected an array with minimum length 1, "
            "but got an empty array instead.", param="messages", code="empty_array")
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            raise invalid_type(f"messages[{i}]", "an object", message)
        role = message.get("role")
        if role is None:
            raise missing_param(f"messages[{i}].role")
        if role not in CHAT_ROLES:
            raise invalid_value(f"messages[{i}].role", role, CHAT_ROLES)
        if role == "tool" and "tool_call_id" not in message:
            raise missing_param(f"messages[{i}].tool_call_id")
    return messages


def prompt_list(prompt: Any) -> list[str | list[int]]:
    def is_int(v: Any) -> bool:
        return isinstance(v, int) and not isinstance(v, bool)

    if prompt is None:
        raise missing_param("prompt")
    if isinstance(prompt, str):
        return [prompt]
    if isinstance(prompt, list) and prompt:
        if all(isinstance(p, str) for p in prompt):
            return list(prompt)
        if all(is_int(p) for p in prompt):
            return [prompt]
        if all(isinstance(p, list) and all(is_int(t) for t in p) for p in prompt):
            return list(prompt)
    raise invalid_type("prompt", "a string, an array of strings, an array of integers or "
                       "an array of integer arrays", prompt)
