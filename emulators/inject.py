"""The middleware in front of every served emulator: it reads what a request asks
(`emulators/scripting.py`), answers an injected fault in the vendor's own words, and
otherwise lets the vendor's app answer with the request's reply and tool call in
`scripting.CURRENT`.

A vendor module says its faults with a `FaultAnswer` (`error-200` and the HTTP errors);
`reset` and `slow` are the same for every vendor and live here.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from starlette.websockets import WebSocket

from emulators.scripting import (
    CURRENT,
    FAULT_HEADER,
    FAULT_MODEL_PREFIX,
    REPLY_HEADER,
    Fault,
    RequestScript,
    auto_tool,
    echo_text,
    parse_fault,
)

__all__ = ["Asked", "Emulated", "FaultAnswer", "WebSocketFaultAnswer", "quiet_resets"]


@dataclass(frozen=True)
class Asked:
    """The request a fault answers."""

    path: str
    body: Any           # the parsed JSON body, or None
    stream: bool        # the caller asked for a stream (body, Accept or DashScope's header)
    headers: dict[str, str]


# The vendor's answer to 401, 429, 500, overloaded and error-200 (reset and slow are generic).
FaultAnswer = Callable[[Fault, Asked], Response]
# A websocket vendor's (Spark's) answer to a fault, on the accepted or refused socket.
WebSocketFaultAnswer = Callable[[Fault, WebSocket], Awaitable[None]]

RESET_MESSAGE = "ASGI callable returned without completing response."
_MAX_BODY = 64 * 1024 * 1024


class _QuietResets(logging.Filter):
    """uvicorn logs a response cut short as an error; an injected reset is no error."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() != RESET_MESSAGE


def quiet_resets() -> None:
    logger = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, _QuietResets) for f in logger.filters):
        logger.addFilter(_QuietResets())


def _is_stream(body: Any, headers: dict[str, str]) -> bool:
    if isinstance(body, dict) and body.get("stream") is True:
        return True
    return "text/event-stream" in headers.get("accept", "") or headers.get("x-dashscope-sse") == "enable"


class Emulated:
    """ASGI middleware: one vendor's app with per-request scripting and fault injection.

    `reply`: the server-wide answer (`echo`, a fixed text, or None for the vendor's own);
    a request's `X-Emulator-Reply` overrides it. `default_model` replaces a magic
    `fault-...` model name for the faults the vendor's app itself answers (reset, slow),
    so the app's own model check passes."""

    def __init__(self, app: ASGIApp, answer: FaultAnswer, *, default_model: str | None = None,
                 reply: str | None = None, auto_tools: bool = True,
                 websocket_answer: WebSocketFaultAnswer | None = None) -> None:
        self.app = app
        self.answer = answer
        self.default_model = default_model
        self.reply = reply
        self.auto_tools = auto_tools
        self.websocket_answer = websocket_answer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            await self._websocket(scope, receive, send)
            return
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        raw, body = await self._read(receive, headers)
        fault = parse_fault(headers.get(FAULT_HEADER, ""))
        model = body.get("model") if isinstance(body, dict) else None
        if fault is None and isinstance(model, str) and model.startswith(FAULT_MODEL_PREFIX):
            fault = parse_fault(model[len(FAULT_MODEL_PREFIX):])
            if fault is not None and self.default_model and fault.kind in ("reset", "slow"):
                raw = orjson.dumps({**body, "model": self.default_model})
                scope = {**scope, "headers": [(k, v) for k, v in scope["headers"] if k.lower() != b"content-length"]
                         + [(b"content-length", str(len(raw)).encode())]}
        token = CURRENT.set(self._script(headers, body))
        try:
            await self._answer(fault, scope, raw, body, headers, receive, send)
        finally:
            CURRENT.reset(token)

    def _script(self, headers: dict[str, str], body: Any) -> RequestScript:
        asked = _utf8(headers.get(REPLY_HEADER, "")) or self.reply
        reply = echo_text(body) if asked == "echo" else asked
        return RequestScript(reply=reply, tool=auto_tool(body) if self.auto_tools else None,
                             echo=asked == "echo", auto_tools=self.auto_tools)

    async def _answer(self, fault: Fault | None, scope: Scope, raw: bytes, body: Any,
                      headers: dict[str, str], receive: Receive, send: Send) -> None:
        replay = _replay(raw, receive)
        if fault is None:
            await self.app(scope, replay, send)
        elif fault.kind == "slow":
            await asyncio.sleep(fault.seconds)
            await self.app(scope, replay, send)
        elif fault.kind == "reset":
            await self.app(scope, replay, _cut_short(send))
        else:
            asked = Asked(scope.get("path", ""), body, _is_stream(body, headers), headers)
            await self.answer(fault, asked)(scope, replay, send)

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        fault = parse_fault(headers.get(FAULT_HEADER, ""))
        token = CURRENT.set(self._script(headers, None))
        try:
            if fault is not None and fault.kind == "slow":
                await asyncio.sleep(fault.seconds)
            if fault is None or fault.kind == "slow" or self.websocket_answer is None:
                await self.app(scope, receive, send)
            else:
                await self.websocket_answer(fault, WebSocket(scope, receive, send))
        finally:
            CURRENT.reset(token)

    @staticmethod
    async def _read(receive: Receive, headers: dict[str, str]) -> tuple[bytes, Any]:
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > _MAX_BODY:  # the vendors refuse far less; this only bounds memory
                break
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        raw = b"".join(chunks)
        body: Any = None
        if raw and "json" in headers.get("content-type", "json"):
            try:
                body = orjson.loads(raw)
            except orjson.JSONDecodeError:
                body = None
        return raw, body


def _utf8(value: str) -> str:
    """A header as its sender meant it: clients send UTF-8 bytes (curl, browsers), which
    ASGI hands over as latin-1."""
    try:
        return value.encode("latin-1").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        return value


def _replay(raw: bytes, receive: Receive) -> Receive:
    """The body read up front, then the client's own messages (its disconnect)."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": raw, "more_body": False}
        return await receive()

    return replay


def _cut_short(send: Send) -> Send:
    """Let the headers and the start of the body through, then nothing: the app ends
    without completing its response and uvicorn closes the connection mid-answer. A stream
    is cut after its first two events (an SDK has parsed something by then, as when a real
    connection drops mid-answer); a single-part answer after half of it."""
    seen = bytearray()  # what went out, for counting the events' blank lines
    cut_done = False

    async def cut(message: Message) -> None:
        nonlocal cut_done
        if cut_done:
            return
        if message["type"] != "http.response.body":
            await send(message)
            return
        chunk = message.get("body", b"")
        last = not message.get("more_body", False)
        if last or seen.count(b"\n\n") + seen.count(b"\r\n\r\n") >= 2:
            cut_done = True
            if last and chunk:  # half of the last part, so the client has started reading
                await send({"type": "http.response.body", "body": chunk[: max(1, len(chunk) // 2)], "more_body": True})
            return
        seen.extend(chunk)
        await send(message)

    return cut
