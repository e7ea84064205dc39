"""A fake Anthropic vendor: a small Starlette app speaking the Messages API's real wire format.

Tests script it and inspect it through `FakeAnthropicState` (shared with the server thread):

    state = FakeAnthropicState(reply_text="Hi there")
    with ServedApp(create_app(state)) as served:
        ...  # point a client at served.base_url (the SDK and the gateway add /v1/messages)
        assert state.last_request.json["max_tokens"] == 1024

It checks what Anthropic checks (`x-api-key`, `anthropic-version`, `max_tokens`, system at
top level, alternating roles starting with user, images, tool_use/tool_result pairing; see
`_anthropic_checks.py`), answers in the recorded shapes of ../shared/vendors/recordings/
anthropic/, and streams with Anthropic's framing (`event:` + `data:` lines, a `ping`, no end
sentinel). Each stream event is written in awkward pieces (cut inside the `event:` line,
inside a multi-byte UTF-8 character, before the closing blank line), and the default
reply holds non-ASCII text, so a decoder that splits on reads rather than lines shows.

`/v1/messages/count_tokens` answers the words the model would read (system, text and tool
results), after the same checks.

Scripting knobs: `api_versions` (+ `any_dated_version`: any `YYYY-MM-DD` from 2023-01-01
on, as the served emulator takes), `reply_text`, `tool_uses` + `tool_preamble` (tool_use
replies when the request has tools and does not end in tool results; served as an emulator,
an offered tool is called when none is scripted), `stop_reason` (force one, e.g.
"refusal"), `cache_read_input_tokens`, `delay`, `stream_delay`, `fail_next` / `fail()`
(status, body, headers), `stream_error_after` + `stream_error` (an `error` event mid-stream),
`awkward` / `piece_size` (how stream bytes are cut). Observations: `requests`,
`streams_started/finished/errored/aborted`, `pieces_sent`.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import re
import secrets
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Union

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from emulators._anthropic_checks import (
    AnthropicHTTPError,
    check_messages,
    check_tools,
    check_top_level,
    text_of,
)
from emulators._openai_wire import SSEResponse, text_pieces, word_count
from emulators._vendor_common import (
    FakeState,
    RecordedRequest,
    awkward_pieces,
    count_stream_end,
    json_response,
    recorded,
)
from emulators.scripting import reply_of, tool_of

__all__ = ["DEFAULT_API_KEY", "DEFAULT_REPLY", "FakeAnthropicState", "awkward_pieces", "create_app",
           "error_body", "event_frame"]

DEFAULT_API_KEY = "sk-ant-test-fake-anthropic-key-0001"
DEFAULT_REPLY = "Héllo 世界! The fake Claude says hi."
KNOWN_VERSIONS = ("2023-01-01", "2023-06-01")
FIRST_VERSION = datetime.date(2023, 1, 1)
_DATED = re.compile(r"\d{4}-\d{2}-\d{2}")
OVERLOADED: dict[str, str] = {"type": "overloaded_error", "message": "Overloaded"}
ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 402: "billing_error",
               403: "permission_error", 404: "not_found_error", 413: "request_too_large",
               429: "rate_limit_error", 500: "api_error", 504: "timeout_error", 529: "overloaded_error"}

# (status, body: dict -> JSON | str -> raw text, headers); the headers may be left out.
FailSpec = Union[tuple[int, Union[dict[str, Any], str], dict[str, str]],
                 tuple[int, Union[dict[str, Any], str]]]


def _rand(prefix: str) -> str:
    return prefix + secrets.token_urlsafe(18).replace("-", "x").replace("_", "y")


def error_body(kind: str, message: str) -> dict[str, Any]:
    return {"type": "error", "error": {"type": kind, "message": message}, "request_id": _rand("req_011C")}


@dataclass
class FakeAnthropicState(FakeState):
    no_request_message = "the fake Anthropic server received no request"

    # -- scripting (set by tests) --
    api_keys: set[str] = field(default_factory=lambda: {DEFAULT_API_KEY})
    accept_bearer: bool = True  # `Authorization: Bearer KEY` as well as `x-api-key: KEY`
    api_versions: set[str] = field(default_factory=lambda: set(KNOWN_VERSIONS))
    # Also any well-formed dated version from FIRST_VERSION on: a served emulator takes what each
    # SDK release sends; the tests' default stays strict, as Anthropic is about versions it knows.
    any_dated_version: bool = False
    reply_text: str = DEFAULT_REPLY
    tool_uses: list[tuple[str, dict[str, Any]]] = field(default_factory=list)  # (name, input) per tool_use
    tool_preamble: str | None = None  # a text block before the tool_use blocks ("I'll check...")
    stop_reason: str | None = None  # force this stop_reason (e.g. "refusal", "pause_turn")
    cache_read_input_tokens: int = 0
    delay: float = 0.0  # seconds before answering any request
    stream_delay: float = 0.0  # seconds between stream events
    stream_error_after: int | None = None  # after N events, an `error` event ends the stream
    stream_error: dict[str, Any] = field(default_factory=lambda: dict(OVERLOADED))
    fail_next: list[FailSpec] = field(default_factory=list)  # popped one per request
    awkward: bool = True  # cut each event in awkward pieces (else one write per event)
    piece_size: int | None = None  # cut the stream bytes in pieces of this size instead
    # -- observations (written by the server) --
    requests: list[RecordedRequest] = field(default_factory=list)
    streams_started: int = 0
    streams_finished: int = 0  # sent through message_stop
    streams_errored: int = 0  # ended by the scripted error event
    streams_aborted: int = 0  # the client went away before the end
    pieces_sent: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def fail(self, status: int, message: str | None = None, headers: dict[str, str] | None = None) -> None:
        """Script the next request to fail with Anthropic's error body for `status`."""
        kind = ERROR_TYPES.get(status, "api_error")
        self.fail_next.append((status, error_body(kind, message or kind.replace("_", " ")), headers or {}))


# -- the answer -----------------------------------------------------------------------------


class Plan:
    """What one request answers: content blocks, stop reason, token counts."""

    def __init__(self, state: FakeAnthropicState, body: dict[str, Any], messages: list[dict[str, Any]]) -> None:
        self.id = _rand("msg_01")
        self.model = body["model"]
        system = body.get("system")
        texts = [system] if isinstance(system, str) else [b["text"] for b in system or ()]
        for message in messages:
            texts += text_of(message["content"])
        self.input_tokens = sum(word_count(t) for t in texts)
        self.cache_read = state.cache_read_input_tokens
        self.stop_sequence: str | None = None
        self.blocks: list[dict[str, Any]] = []
        self.pieces: list[list[str]] = []  # per block: text pieces or input_json pieces
        last_user = messages[-1]["content"] if messages[-1]["role"] == "user" else []
        automatic = tool_of(state.tool_uses)  # served as an emulator: the offered tool, when none is scripted
        tool_uses = [automatic] if automatic is not None else state.tool_uses
        wants_tool = (bool(body.get("tools")) and (body.get("tool_choice") or {}).get("type") != "none"
                      and tool_uses and not any(b.get("type") == "tool_result" for b in last_user))
        if wants_tool:
            if state.tool_preamble:
                self._text(state.tool_preamble)
            for name, arguments in tool_uses:
                self.blocks.append({"type": "tool_use", "id": _rand("toolu_01"), "name": name, "input": arguments})
                encoded = json.dumps(arguments)  # Anthropic's spacing: `{"city": "Paris"}`
                self.pieces.append([encoded[i:i + 7] for i in range(0, len(encoded), 7)])
            self.stop_reason = "tool_use"
        else:
            text, truncated = reply_of(state), False
            for stop in body.get("stop_sequences") or ():
                at = text.find(stop)
                if stop and at >= 0:
                    text, self.stop_sequence = text[:at], stop
            pieces, truncated = text_pieces(text, body["max_tokens"])
            self._text("".join(pieces))
            self.stop_reason = "max_tokens" if truncated else "stop_sequence" if self.stop_sequence else "end_turn"
        self.stop_reason = state.stop_reason or self.stop_reason
        self.output_tokens = sum(len(p) for p in self.pieces) or 1

    def _text(self, text: str) -> None:
        if not text:
            return  # Anthropic sends no empty text block (a stop sequence at the very start)
        self.blocks.append({"type": "text", "text": text})
        self.pieces.append(text_pieces(text)[0])

    def usage(self, output_tokens: int) -> dict[str, Any]:
        return {"input_tokens": self.input_tokens, "cache_creation_input_tokens": 0,
                "cache_read_input_tokens": self.cache_read, "output_tokens": output_tokens,
                "service_tier": "standard"}

    def message(self) -> dict[str, Any]:
        return {"model": self.model, "id": self.id, "type": "message", "role": "assistant",
                "content": self.blocks, "stop_reason": self.stop_reason, "stop_sequence": self.stop_sequence,
                "usage": self.usage(self.output_tokens)}

    def events(self) -> list[tuple[str, dict[str, Any]]]:
        start = {**self.message(), "content": [], "stop_reason": None, "stop_sequence": None,
                 "usage": self.usage(1)}
        events: list[tuple[str, dict[str, Any]]] = [("message_start", {"type": "message_start", "message": start})]
        for index, (block, pieces) in enumerate(zip(self.blocks, self.pieces, strict=True)):
            opening = {**block, "text": ""} if block["type"] == "text" else {**block, "input": {}}
            events.append(("content_block_start", {"type": "content_block_start", "index": index,
                                                   "content_block": opening}))
            if index == 0:
                events.append(("ping", {"type": "ping"}))
            if block["type"] == "text":
                deltas = [{"type": "text_delta", "text": p} for p in pieces]
            else:
                deltas = [{"type": "input_json_delta", "partial_json": p} for p in ["", *pieces]]
            events += [("content_block_delta", {"type": "content_block_delta", "index": index, "delta": d})
                       for d in deltas]
            events.append(("content_block_stop", {"type": "content_block_stop", "index": index}))
        events.append(("message_delta", {"type": "message_delta",
                                         "delta": {"stop_reason": self.stop_reason,
                                                   "stop_sequence": self.stop_sequence},
                                         "usage": {"output_tokens": self.output_tokens}}))
        events.append(("message_stop", {"type": "message_stop"}))
        return events


# -- stream framing -----------------------------------------------------------------------------


def event_frame(name: str, data: dict[str, Any]) -> bytes:
    payload = b'{"type": "ping"}' if name == "ping" else orjson.dumps(data)
    return b"event: " + name.encode() + b"\ndata: " + payload + b"\n\n"


async def _stream(state: FakeAnthropicState, plan: Plan) -> AsyncIterator[bytes]:
    with state.lock:
        state.streams_started += 1
        delay, error_after, error = state.stream_delay, state.stream_error_after, state.stream_error
        awkward, piece_size = state.awkward, state.piece_size
    frames = [event_frame(name, data) for name, data in plan.events()]
    if error_after is not None:
        frames = frames[:error_after] + [event_frame("error", {"type": "error", "error": error})]
    if piece_size:
        joined = b"".join(frames)
        writes = [[joined[i:i + piece_size]] for i in range(0, len(joined), piece_size)]
    else:
        writes = [awkward_pieces(f) if awkward else [f] for f in frames]
    outcome = "aborted"
    try:
        for n, pieces in enumerate(writes):
            if n:
                # Yield to the loop between events even with no delay: that is where a client
                # disconnect arrives (as a cancellation).
                await asyncio.sleep(delay)
            for piece in pieces:
                yield piece
                await asyncio.sleep(0)
                with state.lock:
                    state.pieces_sent += 1
        outcome = "errored" if error_after is not None else "finished"
    finally:
        count_stream_end(state, outcome)


# -- app -------------------------------------------------------------------------------------------


async def _record(state: FakeAnthropicState, request: Request) -> RecordedRequest:
    record = await recorded(request)
    with state.lock:
        state.requests.append(record)
    return record


def _check_headers(state: FakeAnthropicState, record: RecordedRequest) -> None:
    key = record.headers.get("x-api-key")
    scheme, _, token = record.headers.get("authorization", "").partition(" ")
    if not key and state.accept_bearer and scheme.lower() == "bearer":
        key = token.strip()  # the documented alternative (the newest SDKs send API keys this way)
    if not key:
        raise AnthropicHTTPError(401, "x-api-key header is required", "authentication_error")
    if key not in state.api_keys:
        raise AnthropicHTTPError(401, "invalid x-api-key", "authentication_error")
    version = record.headers.get("anthropic-version")
    if not version:
        raise AnthropicHTTPError(400, "anthropic-version: header is required")
    if version not in state.api_versions and not (state.any_dated_version and _dated_version(version)):
        raise AnthropicHTTPError(400, f'anthropic-version: "{version}" is not a valid version')


def _dated_version(version: str) -> bool:
    """`YYYY-MM-DD`, a real date, not before the first API version."""
    if not _DATED.fullmatch(version):
        return False
    try:
        return datetime.date.fromisoformat(version) >= FIRST_VERSION
    except ValueError:  # 2024-02-30
        return False


def create_app(state: FakeAnthropicState) -> Starlette:
    """The fake's ASGI app; every request is recorded in `state.requests`."""

    async def messages(request: Request) -> Response:
        record = await _record(state, request)
        try:
            if state.delay:
                await asyncio.sleep(state.delay)
            _check_headers(state, record)
            response = state.scripted_failure()
            if response is None:
                if not isinstance(record.json, dict):
                    raise AnthropicHTTPError(400, "There was an error parsing the body of your request: "
                                                  "expected a JSON object")
                body = record.json
                check_top_level(body)
                plan = Plan(state, body, check_messages(body, check_tools(body)))
                response = SSEResponse(_stream(state, plan)) if body.get("stream") else json_response(plan.message())
        except AnthropicHTTPError as exc:
            response = json_response(error_body(exc.type, exc.message), exc.status, exc.headers)
        if "request-id" not in response.headers:
            response.headers["request-id"] = _rand("req_011C")
        return response

    async def count_tokens(request: Request) -> Response:
        """`/v1/messages/count_tokens`: the words the model would read (as `Plan` counts them)."""
        record = await _record(state, request)
        try:
            _check_headers(state, record)
            response = state.scripted_failure()
            if response is None:
                body = record.json if isinstance(record.json, dict) else {}
                extra = set(body) - {"model", "messages", "system", "tools", "tool_choice", "thinking"}
                if extra:
                    raise AnthropicHTTPError(400, f"{sorted(extra)[0]}: Extra inputs are not permitted")
                check_top_level({**body, "max_tokens": 1})
                messages = check_messages(body, check_tools(body))
                system = body.get("system")
                texts = [system] if isinstance(system, str) else [b["text"] for b in system or ()]
                for message in messages:
                    texts += text_of(message["content"])
                response = json_response({"input_tokens": sum(word_count(t) for t in texts)})
        except AnthropicHTTPError as exc:
            response = json_response(error_body(exc.type, exc.message), exc.status, exc.headers)
        return response

    async def not_found(request: Request) -> Response:
        await _record(state, request)
        return json_response(error_body("not_found_error", "Not Found"), 404)

    every = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
    return Starlette(routes=[
        Route("/v1/messages", messages, methods=["POST"]),
        Route("/v1/messages/count_tokens", count_tokens, methods=["POST"]),
        Route("/{path:path}", not_found, methods=every),
    ])
