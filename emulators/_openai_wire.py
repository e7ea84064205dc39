"""OpenAI wire format pieces for the fake: errors, ids, usage, chat/completions bodies and SSE.

Shapes follow ../shared/vendors/openai.md and the recordings in
../shared/vendors/recordings/openai/. Nothing here touches HTTP except `SSEResponse`.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import secrets
import time
from collections.abc import AsyncIterator, Iterable
from typing import Any, Protocol

import orjson
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from emulators._replay import StreamBook
from emulators._vendor_common import count_stream_end, cut_pieces


class SSEBook(StreamBook, Protocol):
    """What `sse_stream` reads and counts in a state (the OpenAI and Azure fakes')."""

    fail_after_chunks: int | None
    stream_error: dict[str, Any]

SYSTEM_FINGERPRINT = "fp_fake0penai"
DONE_EVENT = b"data: [DONE]\n\n"


# -- errors -----------------------------------------------------------------------------


class OpenAIHTTPError(Exception):
    """Raised by handlers; rendered as OpenAI's `{"error": {...}}` envelope."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",  # noqa: A002 - OpenAI's field name
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.body = error_body(message, type=type, param=param, code=code)
        self.headers = headers or {}


def error_body(
    message: str,
    *,
    type: str = "invalid_request_error",  # noqa: A002
    param: str | None = None,
    code: str | None = None,
) -> dict[str, Any]:
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


def missing_param(name: str) -> OpenAIHTTPError:
    return OpenAIHTTPError(
        400, f"Missing required parameter: '{name}'.", param=name, code="missing_required_parameter"
    )


def invalid_type(name: str, expected: str, value: Any) -> OpenAIHTTPError:
    got = {str: "a string", int: "an integer", float: "a decimal", bool: "a boolean",
           list: "an array", dict: "an object", type(None): "null"}.get(type(value), "a value")
    return OpenAIHTTPError(
        400,
        f"Invalid type for '{name}': expected {expected}, but got {got} instead.",
        param=name,
        code="invalid_type",
    )


def invalid_value(name: str, value: Any, supported: Iterable[str]) -> OpenAIHTTPError:
    options = ", ".join(f"'{s}'" for s in supported)
    return OpenAIHTTPError(
        400,
        f"Invalid value: '{value}'. Supported values are: {options}.",
        param=name,
        code="invalid_value",
    )


# -- ids, tokens, usage -----------------------------------------------------------------


def new_id(prefix: str) -> str:
    return f"{prefix}-{secrets.token_urlsafe(21).replace('-', 'x').replace('_', 'y')}"


def tool_call_id(name: str, arguments: str) -> str:
    return "call_" + hashlib.sha1(f"{name}\0{arguments}".encode()).hexdigest()[:24]


_PIECE = re.compile(r"\s*\S+|\s+")
_ARG_PIECE = re.compile(r"\s*\w+|\s*[^\w\s]+|\s+")


def word_count(text: str) -> int:
    return len(text.split())


def text_pieces(text: str, limit: int | None = None) -> tuple[list[str], bool]:
    """Split `text` into word pieces (spaces kept, so ''.join == text) and apply a word
    limit; returns (pieces, truncated)."""
    pieces = _PIECE.findall(text)
    if limit is None or word_count(text) <= limit:
        return pieces, False
    kept: list[str] = []
    words = 0
    for piece in pieces:
        if piece.strip():
            if words == limit:
                break
            words += 1
        kept.append(piece)
    return kept, True


def argument_pieces(arguments: str) -> list[str]:
    """Split tool-call arguments like OpenAI does: `{"`, `city`, `":"`, `New`, ` York`..."""
    return _ARG_PIECE.findall(arguments)


def usage(prompt: int, completion: int, *, details: bool = True) -> dict[str, Any]:
    body: dict[str, Any] = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }
    if details:
        body["prompt_tokens_details"] = {"cached_tokens": 0, "audio_tokens": 0}
        body["completion_tokens_details"] = {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        }
    return body


def message_words(messages: list[dict[str, Any]]) -> int:
    """prompt_tokens of a chat request: words of every text content (strings and text parts)."""
    total = 0
    for message in messages:
        content = message.get("content")
        if isinstance(content, str):
            total += word_count(content)
        elif isinstance(content, list):
            for part in content:
                if isinstance(part, dict) and isinstance(part.get("text"), str):
                    total += word_count(part["text"])
    return total


# -- chat completions -------------------------------------------------------------------


class ChatPlan:
    """What one chat request answers: text (maybe truncated) or one tool call."""

    def __init__(
        self,
        *,
        model: str,
        prompt_tokens: int,
        reply_text: str,
        limit: int | None,
        tool_call: tuple[str, str] | None,
        reasoning: str | None = None,
        usage_in_choice: bool = False,
    ) -> None:
        """`reasoning`: DeepSeek's reasoner thinks aloud first (`reasoning_content`, counted as
        completion tokens); `usage_in_choice`: Moonshot's stream puts its usage in the finishing
        choice, always, instead of a usage-only chunk."""
        self.id = new_id("chatcmpl")
        self.created = int(time.time())
        self.model = model
        self.prompt_tokens = prompt_tokens
        self.tool_call = tool_call
        if tool_call is not None:
            name, arguments = tool_call
            self.call_id = tool_call_id(name, arguments)
            self.pieces = argument_pieces(arguments)
            self.finish_reason = "tool_calls"
        else:
            self.pieces, truncated = text_pieces(reply_text, limit)
            self.finish_reason = "length" if truncated else "stop"
        self.reasoning_pieces = text_pieces(reasoning)[0] if reasoning else []
        self.reasoning_tokens = len([p for p in self.reasoning_pieces if p.strip()])
        self.usage_in_choice = usage_in_choice
        self.completion_tokens = len([p for p in self.pieces if p.strip()]) + self.reasoning_tokens

    @property
    def text(self) -> str:
        return "".join(self.pieces)

    def usage(self) -> dict[str, Any]:
        body = usage(self.prompt_tokens, self.completion_tokens)
        body["completion_tokens_details"]["reasoning_tokens"] = self.reasoning_tokens
        return body

    def response(self) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": self.text, "refusal": None}
        if self.tool_call is not None:
            name, arguments = self.tool_call
            message["content"] = None
            message["tool_calls"] = [
                {"id": self.call_id, "type": "function",
                 "function": {"name": name, "arguments": arguments}}
            ]
        message["annotations"] = []
        if self.reasoning_pieces:
            message["reasoning_content"] = "".join(self.reasoning_pieces)
        return {
            "id": self.id,
            "object": "chat.completion",
            "created": self.created,
            "model": self.model,
            "choices": [
                {"index": 0, "message": message, "logprobs": None,
                 "finish_reason": self.finish_reason}
            ],
            "usage": self.usage(),
            "service_tier": "default",
            "system_fingerprint": SYSTEM_FINGERPRINT,
        }

    def _chunk(self, delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "system_fingerprint": SYSTEM_FINGERPRINT,
            "choices": [
                {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
            ],
        }

    def chunks(self, include_usage: bool) -> list[dict[str, Any]]:
        first: dict[str, Any]
        rest: list[dict[str, Any]]
        if self.tool_call is not None:
            name, _ = self.tool_call
            first = {
                "role": "assistant",
                "content": None,
                "tool_calls": [{"index": 0, "id": self.call_id, "type": "function",
                                "function": {"name": name, "arguments": ""}}],
                "refusal": None,
            }
            rest = [{"tool_calls": [{"index": 0, "function": {"arguments": p}}]}
                    for p in self.pieces]
        else:
            first = {"role": "assistant", "content": "", "refusal": None}
            rest = [{"content": p} for p in self.pieces]
        if self.reasoning_pieces:  # the role opens the thinking; the answer follows it
            del first["role"]
            thinking = [{"content": None, "reasoning_content": p} for p in self.reasoning_pieces]
            first, rest = {"role": "assistant", "content": None, "reasoning_content": ""}, [*thinking, first, *rest]
        chunks = [self._chunk(first)] + [self._chunk(delta) for delta in rest]
        chunks.append(self._chunk({}, self.finish_reason))
        if self.usage_in_choice:
            chunks[-1]["choices"][0]["usage"] = usage(self.prompt_tokens, self.completion_tokens, details=False)
            return chunks
        if include_usage:
            final = self._chunk({})
            final["choices"] = []
            final["usage"] = self.usage()
            chunks.append(final)
        return chunks


# -- legacy completions -----------------------------------------------------------------


class CompletionPlan:
    """One /v1/completions request: one choice per prompt."""

    def __init__(
        self, *, model: str, prompts: list[str | list[int]], reply_text: str,
        limit: int, echo: bool, suffix: str | None,
    ) -> None:
        self.id = new_id("cmpl")
        self.created = int(time.time())
        self.model = model
        self.choices: list[tuple[list[str], str]] = []  # (pieces, finish_reason)
        self.prompt_tokens = 0
        self.completion_tokens = 0
        for prompt in prompts:
            self.prompt_tokens += word_count(prompt) if isinstance(prompt, str) else len(prompt)
            pieces, truncated = text_pieces(reply_text, limit)
            self.completion_tokens += len([p for p in pieces if p.strip()])
            if echo and isinstance(prompt, str) and prompt:
                pieces = [prompt, *pieces]
            if suffix and not truncated:
                pieces.append(suffix)
            self.choices.append((pieces, "length" if truncated else "stop"))

    def _object(self, choices: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "text_completion",
            "created": self.created,
            "model": self.model,
            "system_fingerprint": SYSTEM_FINGERPRINT,
            "choices": choices,
        }

    def response(self) -> dict[str, Any]:
        body = self._object([
            {"text": "".join(pieces), "index": i, "logprobs": None, "finish_reason": reason}
            for i, (pieces, reason) in enumerate(self.choices)
        ])
        body["usage"] = usage(self.prompt_tokens, self.completion_tokens, details=False)
        return body

    def chunks(self, include_usage: bool) -> list[dict[str, Any]]:
        chunks = []
        for i, (pieces, reason) in enumerate(self.choices):
            for piece in pieces:
                chunks.append(self._object(
                    [{"text": piece, "index": i, "logprobs": None, "finish_reason": None}]))
            chunks.append(self._object(
                [{"text": "", "index": i, "logprobs": None, "finish_reason": reason}]))
        if include_usage:
            final = self._object([])
            final["usage"] = usage(self.prompt_tokens, self.completion_tokens, details=False)
            chunks.append(final)
        return chunks


# -- SSE --------------------------------------------------------------------------------


def sse_event(obj: Any) -> bytes:
    return b"data: " + orjson.dumps(obj) + b"\n\n"


async def sse_stream(state: SSEBook, events: list[dict[str, Any]]) -> AsyncIterator[bytes]:
    """Yield `events` as OpenAI SSE and record the stream's fate in `state`.

    finished: every event and `[DONE]` were handed to the server; errored: the scripted
    `fail_after_chunks` error was sent; aborted: the generator was cancelled or closed
    early, which is what happens when the client goes away (see `SSEResponse`).
    """
    with state.lock:
        state.streams_started += 1
        delay, fail_after, error, split = (state.stream_delay, state.fail_after_chunks, state.stream_error,
                                           state.split_events)
    outcome = "aborted"
    try:
        for i, event in enumerate(events):
            if i:  # even with no delay: where a client disconnect is delivered, other connections served
                await asyncio.sleep(delay)
            if fail_after is not None and i >= fail_after:
                outcome = "errored"
                yield sse_event({"error": error})
                return
            for piece in cut_pieces(sse_event(event)) if split else [sse_event(event)]:
                yield piece  # split: in pieces (mid-line, mid-UTF-8), each its own write
                if split:
                    await asyncio.sleep(0.001)
        await asyncio.sleep(delay)
        yield DONE_EVENT
        outcome = "finished"
    finally:
        count_stream_end(state, outcome)


class SSEResponse(StreamingResponse):
    """StreamingResponse that always closes its body generator when the response ends.

    Under uvicorn (ASGI spec 2.3) Starlette cancels the streaming task when the client
    disconnects; a generator suspended at `yield` (not at an `await`) would then only be
    closed whenever the garbage collector gets to it. Closing it here makes the
    generator's `finally` run deterministically.
    """

    media_type = "text/event-stream"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            aclose = getattr(self.body_iterator, "aclose", None)
            if aclose is not None:
                await aclose()
