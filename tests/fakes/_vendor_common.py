"""Pieces shared by the fakes of the Qwen, Minimax, ChatGLM and Zhipu vendors.

`VendorState` holds what every fake scripts and observes (requests, scripted failures,
stream outcomes); `record` stores a request; `stream_frames` writes SSE frames the way a
real server's bytes arrive, in awkward pieces (cut inside field names, inside multi-byte
UTF-8 characters, before the blank line), and counts how each stream ended.
"""

from __future__ import annotations

import asyncio
import hashlib
import struct
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field, fields
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from tests.fakes.anthropic import awkward_pieces
from tests.fakes.openai import RecordedRequest

__all__ = ["VendorState", "fake_vector", "json_response", "record", "stream_frames"]


@dataclass
class VendorState:
    # -- scripting --
    delay: float = 0.0  # seconds before answering any request
    stream_delay: float = 0.0  # seconds between stream events
    # (status, body: dict -> JSON, str -> text[, headers]), popped one per request
    fail_next: list[tuple[Any, ...]] = field(default_factory=list)
    awkward: bool = True  # cut stream events into awkward pieces (else one write per event)
    # -- observations --
    requests: list[RecordedRequest] = field(default_factory=list)
    streams_started: int = 0
    streams_finished: int = 0
    streams_errored: int = 0
    streams_aborted: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def reset(self) -> None:
        fresh = type(self)()
        with self.lock:
            for f in fields(self):
                if f.name != "lock":
                    setattr(self, f.name, getattr(fresh, f.name))

    @property
    def last_request(self) -> RecordedRequest:
        if not self.requests:
            raise AssertionError(f"{type(self).__name__}: no request received")
        return self.requests[-1]

    def scripted_failure(self) -> Response | None:
        with self.lock:
            if not self.fail_next:
                return None
            status, body, *rest = self.fail_next.pop(0)
        headers = dict(rest[0]) if rest else None
        if isinstance(body, (dict, list)):
            return json_response(body, status, headers)
        return Response(body, status_code=status, headers=headers, media_type="text/plain")

    def wait_for(self, predicate: Callable[[Any], bool], timeout: float = 5.0) -> bool:
        deadline = time.monotonic() + timeout
        while not predicate(self):
            if time.monotonic() > deadline:
                return bool(predicate(self))
            time.sleep(0.01)
        return True


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status_code=status, headers=headers, media_type="application/json")


async def record(state: VendorState, request: Request) -> RecordedRequest:
    raw = await request.body()
    try:
        parsed = orjson.loads(raw) if raw else None
    except orjson.JSONDecodeError:
        parsed = None
    recorded = RecordedRequest(request.method, request.url.path, dict(request.query_params),
                               {k.lower(): v for k, v in request.headers.items()}, raw, parsed)
    with state.lock:
        state.requests.append(recorded)
    if state.delay:
        await asyncio.sleep(state.delay)
    return recorded


async def stream_frames(state: VendorState, frames: list[bytes], errored: bool = False) -> AsyncIterator[bytes]:
    """Write `frames` (whole SSE events) in pieces; `errored`: the last frame is a scripted error."""
    with state.lock:
        state.streams_started += 1
        delay, awkward = state.stream_delay, state.awkward
    outcome = "aborted"
    try:
        for n, frame in enumerate(frames):
            if n:
                await asyncio.sleep(delay)  # where a client disconnect arrives, even with no delay
            for piece in awkward_pieces(frame) if awkward else [frame]:
                yield piece
                await asyncio.sleep(0)
        outcome = "errored" if errored else "finished"
    finally:
        with state.lock:
            setattr(state, f"streams_{outcome}", getattr(state, f"streams_{outcome}") + 1)


def fake_vector(text: str, dimensions: int, salt: str = "") -> list[float]:
    """A deterministic unit-free vector for `text`, so tests can check order and content."""
    digest = b""
    counter = 0
    while len(digest) < 4 * dimensions:
        digest += hashlib.sha256(f"{salt}|{counter}|{text}".encode()).digest()
        counter += 1
    values = struct.unpack(f"<{dimensions}I", digest[:4 * dimensions])
    return [round(v / 2**31 - 1.0, 6) for v in values]
