"""What a caller asks of an emulator per request: a fault, an echoed or fixed reply, a tool
call when tools are offered.

The emulators' middleware (`emulators/inject.py`) reads the request and sets `CURRENT`
for the task that answers it; the vendor modules read their reply and tool call through
`reply_of` / `tool_of`, which fall back to the state's scripting (what the tests set)
when no emulator middleware is in front, as in the test suite's bare apps.

How a request asks:
- `X-Emulator-Fault: KIND` (any request), or the model name `fault-KIND` where the
  request names its model in the body. KIND is one of `FAULT_KINDS`; `slow-SECONDS`
  and `429-SECONDS` set the delay and the Retry-After.
- `X-Emulator-Reply: echo` repeats the last user text; any other value is the reply.
"""

from __future__ import annotations

import contextvars
import math
from dataclasses import dataclass
from typing import Any

import orjson

__all__ = ["CURRENT", "FAULT_HEADER", "FAULT_KINDS", "FAULT_MODEL_PREFIX", "REPLY_HEADER", "Fault",
           "RequestScript", "auto_tool", "call_of", "echo_text", "parse_fault", "reply_in", "reply_of", "tool_of"]

FAULT_HEADER = "x-emulator-fault"
REPLY_HEADER = "x-emulator-reply"
FAULT_MODEL_PREFIX = "fault-"
# 401, 429 (Retry-After), 500, overloaded (529 on Anthropic, 503 elsewhere), the connection
# cut after the first part of the answer, the vendor's error inside an HTTP 200, and a
# first byte that takes its time.
FAULT_KINDS = ("401", "429", "500", "overloaded", "reset", "error-200", "slow")
DEFAULT_SLOW_SECONDS = 5.0
MAX_SECONDS = 120.0  # a typo must not hang a client for a day
DEFAULT_RETRY_AFTER = 1.0


@dataclass(frozen=True)
class Fault:
    kind: str
    seconds: float = 0.0  # slow: before the first byte; 429: the Retry-After

    @property
    def retry_after(self) -> str:
        return str(max(1, math.ceil(self.seconds or DEFAULT_RETRY_AFTER)))


def parse_fault(value: str) -> Fault | None:
    """`429`, `429-7`, `slow`, `slow-2.5`, ...; None for anything else (the request is then
    answered normally, so a misspelt fault is visible as a normal answer)."""
    kind, _, arg = value.strip().lower().partition("-")
    if f"{kind}-{arg}" in FAULT_KINDS:  # error-200
        return Fault(f"{kind}-{arg}")
    if kind not in FAULT_KINDS or (arg and kind not in ("slow", "429")):
        return None
    seconds = DEFAULT_SLOW_SECONDS if kind == "slow" else 0.0
    if arg:
        try:
            seconds = float(arg)
        except ValueError:
            return None
        if not 0 <= seconds <= MAX_SECONDS:
            return None
    return Fault(kind, seconds)


@dataclass(frozen=True)
class RequestScript:
    """What the middleware found in one request."""

    reply: str | None = None                           # echo or the fixed reply; None: the state's
    tool: tuple[str, dict[str, Any]] | None = None     # (name, arguments) to call; None: the state's
    # For a body the middleware cannot read (a websocket's frames: Spark), what the app
    # itself works out from it: echo was asked, tools offered get an automatic call.
    echo: bool = False
    auto_tools: bool = False


CURRENT: contextvars.ContextVar[RequestScript | None] = contextvars.ContextVar("emulator_request", default=None)


def reply_of(state: Any) -> str:
    """The text to answer with: the request's when it asked, else the state's `reply_text`."""
    script = CURRENT.get()
    return script.reply if script is not None and script.reply is not None else str(state.reply_text)


def tool_of(scripted: Any) -> tuple[str, dict[str, Any]] | None:
    """The tool to call: the request's automatic one (tools offered, no tool result yet)
    when the middleware found one, else None; `scripted` (the state's own) wins when set."""
    if scripted:
        return None
    script = CURRENT.get()
    return script.tool if script is not None else None


def call_of(scripted: tuple[str, str] | None, body: Any = None) -> tuple[str, str] | None:
    """The call to answer as (name, arguments JSON), the shape the Chinese vendors' fakes
    script: the state's when set, else the request's automatic one. `body`: a request the
    app read itself (Spark's websocket frame), whose tools the middleware never saw."""
    if scripted:
        return scripted
    automatic = tool_of(scripted)
    script = CURRENT.get()
    if automatic is None and body is not None and script is not None and script.auto_tools:
        automatic = auto_tool(body)
    if automatic is None:
        return None
    name, arguments = automatic
    return name, orjson.dumps(arguments).decode()  # compact, as the vendors send it


def reply_in(state: Any, body: Any) -> str:
    """`reply_of` for a request the app read itself (Spark's websocket frame): echo is
    worked out from `body` here, since the middleware saw no body to echo."""
    script = CURRENT.get()
    if script is not None and script.echo and body is not None:
        return echo_text(body)
    return reply_of(state)


# -- reading a request body of any vendor's shape ------------------------------------------


def _text_of(content: Any) -> str | None:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # parts: OpenAI, Anthropic, Qwen's multimodal
        texts = [str(p["text"]) for p in content if isinstance(p, dict) and isinstance(p.get("text"), str)]
        return " ".join(texts) if texts else None
    return None


def _messages(body: dict[str, Any]) -> list[Any] | None:
    """The conversation wherever the vendor keeps it."""
    for holder in (body, body.get("input"), (body.get("payload") or {}).get("message")):
        if isinstance(holder, dict):
            for key in ("messages", "text"):
                if isinstance(holder.get(key), list):
                    return list(holder[key])
    if isinstance(body.get("input"), list):  # the Responses API
        return list(body["input"])
    return None


def echo_text(body: Any) -> str:
    """The last user text of a request of any vendor's shape (chat messages, a prompt,
    Hugging Face's inputs, Replicate's input.prompt, Spark's payload), else a fixed line."""
    if isinstance(body, dict):
        for message in reversed(_messages(body) or []):
            if isinstance(message, dict) and message.get("role", "user") == "user":
                text = _text_of(message.get("content"))
                if text:
                    return text
        for holder in (body, body.get("input"), body.get("parameters")):
            if isinstance(holder, dict):
                for key in ("prompt", "inputs", "input"):
                    if isinstance(holder.get(key), str) and holder[key]:
                        return str(holder[key])
        if isinstance(body.get("inputs"), str) and body["inputs"]:
            return str(body["inputs"])
    return "(nothing to echo)"


def _tools(body: dict[str, Any]) -> list[Any]:
    for holder in (body, body.get("parameters"), (body.get("payload") or {}).get("functions")):
        if isinstance(holder, dict):
            for key in ("tools", "functions", "text"):
                if isinstance(holder.get(key), list) and holder[key]:
                    return list(holder[key])
    return []


def _sample(schema: Any) -> Any:
    """A value that fits a JSON schema: the first enum value, else one per type."""
    if not isinstance(schema, dict):
        return "example"
    if schema.get("enum"):
        return schema["enum"][0]
    kind = schema.get("type")
    kind = kind[0] if isinstance(kind, list) and kind else kind
    if kind == "object":
        props = schema.get("properties") or {}
        required = schema.get("required") or list(props)
        return {k: _sample(props.get(k)) for k in required if isinstance(k, str)}
    return {"integer": 1, "number": 1, "boolean": True, "array": [], "null": None}.get(str(kind), "example")


def _ends_in_tool_result(body: dict[str, Any]) -> bool:
    last = (_messages(body) or [None])[-1]
    if not isinstance(last, dict):
        return False
    if last.get("role") in ("tool", "function") or last.get("type") == "function_call_output":
        return True
    content = last.get("content")
    return isinstance(content, list) and any(isinstance(b, dict) and b.get("type") == "tool_result" for b in content)


def auto_tool(body: Any) -> tuple[str, dict[str, Any]] | None:
    """The first offered function with arguments that fit its schema, unless the caller
    refused tools or the conversation already ends with a tool's result."""
    if not isinstance(body, dict):
        return None
    choice = body.get("tool_choice") or (body.get("parameters") or {}).get("tool_choice")
    if choice == "none" or (isinstance(choice, dict) and choice.get("type") == "none"):
        return None
    if _ends_in_tool_result(body):
        return None
    for tool in _tools(body):
        if not isinstance(tool, dict):
            continue
        function: dict[str, Any] = tool["function"] if isinstance(tool.get("function"), dict) else tool
        name = function.get("name")
        if isinstance(name, str) and name:
            schema = function.get("parameters") or function.get("input_schema") or {}
            arguments = _sample(schema)
            return name, arguments if isinstance(arguments, dict) else {}
    return None
