"""The 400s a translator raises for what its vendor cannot honour (DESIGN.md §3), in one place.

Each check names the offending field as `param` and uses `errors.unsupported`, so every
vendor words the same refusal the same way. Vendor differences (which response formats
pass, how a refused content part is described) are parameters; each translator calls
the checks it needs in its own order, since the order decides which field a request with
several faults is told about.
"""

from __future__ import annotations

from collections.abc import Collection

from translators.errors import unsupported
from translators.types import ChatRequest, ContentPart

__all__ = ["DEPRECATED_FUNCTIONS", "refuse_choices_and_logprobs", "refuse_deprecated_functions",
           "refuse_forced_tool_choice", "refuse_non_function_tools", "refuse_response_format", "text_only"]

# How the deprecated `functions` / `function_call` are refused by vendors that do take `tools`.
DEPRECATED_FUNCTIONS = "the deprecated '{key}' (use 'tools' and 'tool_choice')"


def refuse_choices_and_logprobs(req: ChatRequest, provider: str) -> None:
    """`n` > 1 and (truthy) `logprobs` / `top_logprobs`: no vendor here returns several
    choices or token log-probabilities, and both change what the answer means."""
    if (req.n or 1) > 1:
        raise unsupported(provider, "several choices per request ('n' must be 1)", "n")
    for key in ("logprobs", "top_logprobs"):
        if req.raw.get(key):
            raise unsupported(provider, "logprobs", key)


def refuse_deprecated_functions(req: ChatRequest, provider: str, what: str = DEPRECATED_FUNCTIONS,
                                keys: tuple[str, ...] = ("functions", "function_call")) -> None:
    """The first of `keys` the request sets (even to a falsy value, only null passes);
    `what` describes it, with `{key}` standing for the field's name."""
    for key in keys:
        if req.raw.get(key) is not None:
            raise unsupported(provider, what.format(key=key), key)


def refuse_response_format(req: ChatRequest, provider: str, what: str,
                           allowed: Collection[str] = ("text",)) -> None:
    """A `response_format` whose type (default "text") is not in `allowed`, or one that is not an object."""
    fmt = req.raw.get("response_format")
    if fmt is not None and (not isinstance(fmt, dict) or fmt.get("type", "text") not in allowed):
        raise unsupported(provider, what, "response_format")


def refuse_forced_tool_choice(req: ChatRequest, provider: str) -> None:
    """`tool_choice` "required" or a named function, for vendors that only let the model decide."""
    if req.tool_choice not in (None, "auto", "none"):
        raise unsupported(provider, "tool_choice other than 'auto' or 'none'", "tool_choice")


def refuse_non_function_tools(req: ChatRequest, provider: str) -> None:
    for k, tool in enumerate(req.tools or ()):
        if tool.type != "function":
            raise unsupported(provider, f"'{tool.type}' tools (only functions)", f"tools[{k}].type")


def text_only(content: str | list[ContentPart] | None, where: str, provider: str,
              what: str = "'{type}' content parts") -> str:
    """A message's content as one string (text parts joined by a newline), for vendors that
    take text only; the first other part is refused, `what` describing it (`{type}` = its type)."""
    if content is None or isinstance(content, str):
        return content or ""
    texts = []
    for j, part in enumerate(content):
        if part.type != "text":
            raise unsupported(provider, what.format(type=part.type), f"{where}.content[{j}].type")
        texts.append(part.text or "")
    return "\n".join(texts)
