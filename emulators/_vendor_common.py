"""Pieces shared by the fakes.

`FakeState` gives every fake's state dataclass `reset`, `last_request`, `wait_for` and
`scripted_failure`; `RecordedRequest` is what a fake saw; `awkward_pieces` cuts an SSE event
where careless decoders break. For the Qwen, Minimax, ChatGLM and Zhipu fakes, `VendorState` holds what every fake scripts and observes (requests, scripted failures,
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
from typing import Any, ClassVar

import orjson
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import Response

__all__ = ["FakeState", "RecordedRequest", "UploadedFile", "VendorState", "awkward_pieces", "cut_pieces", "fake_vector",
           "count_stream_end", "json_response", "local_path", "public_root", "read_form", "record", "recorded", "stream_frames"]


@dataclass(frozen=True)
class UploadedFile:
    filename: str | None
    content_type: str | None
    size: int
    data: bytes = field(repr=False)


@dataclass
class RecordedRequest:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # lower-cased names
    body: bytes = field(repr=False)
    json: Any = None  # parsed JSON body (None if not JSON)
    form: dict[str, str | list[str]] | None = None  # multipart text fields; `x[]` -> list
    files: dict[str, UploadedFile] = field(default_factory=dict)  # multipart file parts


class FakeState:
    """Methods shared by the fakes' state dataclasses: each has a `lock`; `last_request` and
    `scripted_failure` are for those that keep `requests` and `fail_next` of this shape."""

    no_request_message: ClassVar[str] = ""  # what `last_request` says when nothing arrived
    requests: list[Any]
    fail_next: list[Any]
    lock: threading.Lock

    def reset(self) -> None:
        """Back to the defaults (scripting and observations); the lock is kept."""
        fresh = type(self)()
        with self.lock:
            for f in fields(self):  # type: ignore[arg-type]
                if f.name != "lock":
                    setattr(self, f.name, getattr(fresh, f.name))

    @property
    def last_request(self) -> Any:
        if not self.requests:
            raise AssertionError(self.no_request_message or f"{type(self).__name__}: no request received")
        return self.requests[-1]

    def scripted_failure(self) -> Response | None:
        """Pop one `fail_next` entry, (status, body: dict -> JSON, str -> text[, headers]), as a response."""
        with self.lock:
            if not self.fail_next:
                return None
            status, body, *rest = self.fail_next.pop(0)
        headers = dict(rest[0]) if rest else None
        if isinstance(body, (dict, list)):
            return json_response(body, status, headers)
        return Response(body, status_code=status, headers=headers, media_type="text/plain")

    def wait_for(self, predicate: Callable[[Any], bool], timeout: float = 5.0) -> bool:
        """Poll `predicate(self)` until true or `timeout` seconds pass; returns the last value."""
        deadline = time.monotonic() + timeout
        while not predicate(self):
            if time.monotonic() > deadline:
                return bool(predicate(self))
            time.sleep(0.01)
        return True


def awkward_pieces(frame: bytes) -> list[bytes]:
    """One event's bytes cut where careless decoders break: inside the `event:` line, inside
    the `data` field name, inside the first multi-byte UTF-8 character, before the blank line."""
    cuts = {3, frame.find(b"\ndata") + 3, len(frame) - 1}
    lead = next((i for i, byte in enumerate(frame) if byte >= 0xC0), None)
    if lead is not None:
        cuts.add(lead + 1)
    edges = sorted(c for c in cuts | {0, len(frame)} if 0 <= c <= len(frame))
    return [frame[a:b] for a, b in zip(edges, edges[1:]) if b > a]


def cut_pieces(data: bytes) -> list[bytes]:
    """Bytes cut after 2 bytes, inside a multi-byte UTF-8 character when there is one, in the
    middle, and right before the last byte (usually the blank line that ends an event)."""
    cuts = {2, len(data) // 2, len(data) - 1}
    for i, byte in enumerate(data):
        if (byte & 0xC0) == 0x80:  # a UTF-8 continuation byte: cut right before it
            cuts.add(i)
            break
    points = sorted(c for c in cuts if 0 < c < len(data))
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)])]


@dataclass
class VendorState(FakeState):
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


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status_code=status, headers=headers, media_type="application/json")


async def recorded(request: Request) -> RecordedRequest:
    """What a fake saw: the body, parsed when it is JSON (a multipart upload never is)."""
    raw = await request.body()
    parsed: Any = None
    if raw and not request.headers.get("content-type", "").startswith("multipart/"):
        try:
            parsed = orjson.loads(raw)
        except orjson.JSONDecodeError:
            parsed = None
    return RecordedRequest(request.method, request.url.path, dict(request.query_params),
                           {k.lower(): v for k, v in request.headers.items()}, raw, parsed)


async def read_form(request: Request, record: RecordedRequest) -> dict[str, str | list[str]]:
    """A multipart body into `record`: its files, and its text fields (`x[]` repeated: a list)."""
    fields: dict[str, str | list[str]] = {}
    async with request.form() as form:
        for name, value in form.multi_items():
            if isinstance(value, UploadFile):
                data = await value.read()
                record.files[name] = UploadedFile(value.filename, value.content_type, len(data), data)
            elif name.endswith("[]"):
                listed = fields.setdefault(name, [])
                assert isinstance(listed, list)
                listed.append(value)
            else:
                fields[name] = value
    record.form = fields
    return fields


async def record(state: VendorState, request: Request) -> RecordedRequest:
    seen = await recorded(request)
    with state.lock:
        state.requests.append(seen)
    if state.delay:
        await asyncio.sleep(state.delay)
    return seen


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
        count_stream_end(state, outcome)


def count_stream_end(state: Any, outcome: str) -> None:
    """How a fake's stream ended, in its counters: `finished`, `errored` (a scripted error
    event) or `aborted` (the client went away first)."""
    with state.lock:
        setattr(state, f"streams_{outcome}", getattr(state, f"streams_{outcome}") + 1)


def local_path(request: Request) -> str:
    """The path below where the app is mounted (`emulate all` serves each vendor under
    `/NAME`; Starlette keeps the full path in `request.url`)."""
    path = request.url.path
    root = str(request.scope.get("root_path", ""))
    return path[len(root):] or "/" if root and path.startswith(root) else path


def public_root(request: Request) -> str:
    """`scheme://host[:port][/NAME]`: what absolute URLs in an answer start with."""
    return f"{request.url.scheme}://{request.url.netloc}{request.scope.get('root_path', '')}"


def fake_vector(text: str, dimensions: int, salt: str = "") -> list[float]:
    """A deterministic unit-free vector for `text`, so tests can check order and content."""
    digest = b""
    counter = 0
    while len(digest) < 4 * dimensions:
        digest += hashlib.sha256(f"{salt}|{counter}|{text}".encode()).digest()
        counter += 1
    values = struct.unpack(f"<{dimensions}I", digest[:4 * dimensions])
    return [round(v / 2**31 - 1.0, 6) for v in values]
