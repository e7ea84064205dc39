"""The one upstream Server-Sent-Events decoder (WHATWG event-stream rules, on bytes).

Every vendor stream is decoded here, so translators only see whole events. The work is
done with `bytes.splitlines`/`find` in C; Python runs once per line, never per byte.
`data` stays bytes: a multi-byte character split across reads is safe, and translators
hand it to `orjson.loads` without a decode round trip.

Two deliberate deviations from WHATWG, both for vendors that bend the format:
- A block with an explicit `event:` name is dispatched even without a `data:` line
  (`event: done` then a blank line); WHATWG drops it, a translator wants the signal.
- `flush()` dispatches an event left unterminated at EOF if it has data (see there).

An event (its data lines, or one unterminated line) larger than `max_event_bytes` raises a
502 instead of growing without bound: the upstream decides what it sends, the gateway's
memory must not depend on it (`UpstreamStream.chunks()` also bounds lines below this).
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass

from translators.errors import upstream_too_large

__all__ = ["SSEDecoder", "SSEEvent", "aiter_sse"]

_BOM = b"\xef\xbb\xbf"


# The data of the end-of-stream event that OpenAI-style streams send.
DONE_DATA = b"[DONE]"
DEFAULT_MAX_EVENT_BYTES = 4 * 1024 * 1024  # as `Limits.max_event_bytes` (`upstream.max_event_bytes`)


@dataclass(slots=True)
class SSEEvent:
    event: str = "message"
    data: bytes = b""
    id: str | None = None
    retry: int | None = None


class SSEDecoder:
    """Incremental decoder: `feed()` each read, `flush()` once at end of stream."""

    __slots__ = ("_partial", "_pending_cr", "_at_start", "_data", "_event", "_last_id", "_retry", "_limit",
                 "_size")

    def __init__(self, max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES) -> None:
        self._limit = max_event_bytes
        self._size = 0  # bytes held for the current event: its data lines and the unterminated line
        self._partial: list[bytes] = []  # pieces of an unterminated line, joined only once it ends
        self._pending_cr = False  # the previous read ended in CR: a leading LF now is its CRLF tail
        self._at_start = True  # a BOM is only meaningful as the stream's first bytes
        self._data: list[bytes] = []
        self._event: str | None = None
        self._last_id: str | None = None  # WHATWG's last-event-id: survives dispatches
        self._retry: int | None = None  # not per-event in WHATWG: reported on the next dispatch

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        if not chunk:
            return []
        if self._pending_cr:
            self._pending_cr = False
            if chunk[0] == 0x0A:
                chunk = chunk[1:]
                if not chunk:
                    return []
        if self._at_start:
            if self._partial:
                chunk = b"".join(self._partial) + chunk
                self._partial.clear()
            if len(chunk) < len(_BOM) and _BOM.startswith(chunk):
                self._partial.append(chunk)  # may still become a BOM: decide on the next read
                return []
            self._at_start = False
            if chunk.startswith(_BOM):
                chunk = chunk[len(_BOM) :]
        if b"\n" not in chunk and b"\r" not in chunk:
            # Mid-line read (a long JSON body in small TCP segments): don't re-copy the buffer.
            self._grow(len(chunk))
            self._partial.append(chunk)
            return []
        if self._partial:
            self._partial.append(chunk)
            chunk = b"".join(self._partial)
            self._partial.clear()
        lines = chunk.splitlines()  # bytes.splitlines splits on exactly CR, LF and CRLF
        last = chunk[-1]
        if last == 0x0D:
            self._pending_cr = True
        elif last != 0x0A:
            self._partial.append(lines.pop())
        # Recount what is held: the current event's data (its lines add up in `_field`),
        # then the new unterminated tail.
        self._size = sum(len(d) for d in self._data) if self._data else 0
        events: list[SSEEvent] = []
        for line in lines:
            if line:
                self._field(line)
            elif self._data or self._event is not None:
                events.append(self._dispatch())
        if self._partial:
            self._grow(len(self._partial[0]))
        return events

    def flush(self) -> list[SSEEvent]:
        """End of stream. WHATWG discards an event not closed by a blank line, but some
        vendors (old TGI, ERNIE) end their last event without one, so a gateway that
        discarded it would lose the final chunk (finish reason, usage). It is dispatched
        only if it has data: a name alone at EOF more likely means a truncated stream."""
        if self._at_start:
            self._partial.clear()  # only a lone BOM prefix can be pending before the first line
        elif self._partial:
            line = b"".join(self._partial)
            self._partial.clear()
            self._field(line)
        events = [self._dispatch()] if self._data else []
        self._data.clear()
        self._event = None
        self._retry = None
        self._pending_cr = False
        return events

    def _field(self, line: bytes) -> None:
        colon = line.find(b":")
        if colon == 0:
            return  # comment: keep-alives (`: ping`), DashScope's `:HTTP_STATUS/200`
        if colon < 0:
            name, value = line, b""
        else:
            name, value = line[:colon], line[colon + 1 :]
            if value[:1] == b" ":
                value = value[1:]
        if name == b"data":
            self._grow(len(value))
            self._data.append(value)
        elif name == b"event":
            self._event = value.decode("utf-8", "replace") or None  # `event:` alone means "message"
        elif name == b"id":
            if b"\0" not in value:
                self._last_id = value.decode("utf-8", "replace")
        elif name == b"retry":
            if value.isdigit():  # bytes.isdigit is ASCII-only, as WHATWG requires
                self._retry = int(value)
        # Unknown fields are ignored, per WHATWG.

    def _grow(self, size: int) -> None:
        self._size += size
        if self._size > self._limit:
            self._partial.clear()
            self._data.clear()
            raise upstream_too_large("a stream event", self._limit, "max_event_bytes")

    def _dispatch(self) -> SSEEvent:
        data = self._data[0] if len(self._data) == 1 else b"\n".join(self._data)
        event = SSEEvent(self._event or "message", data, self._last_id, self._retry)
        self._size = 0
        self._data.clear()
        self._event = None
        self._retry = None
        return event


async def aiter_sse(chunks: AsyncIterable[bytes],
                    max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES) -> AsyncIterator[SSEEvent]:
    """Events of a byte stream (e.g. `response.content.iter_any()`), flushed at its end.
    Closing the byte source stays the caller's job: it owns the HTTP response."""
    decoder = SSEDecoder(max_event_bytes)
    async for chunk in chunks:
        for event in decoder.feed(chunk):
            yield event
    for event in decoder.flush():
        yield event
