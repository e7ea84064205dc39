"""Writing a fake vendor's stream the awkward way real networks do, with bookkeeping of how
the stream ended (shared by the Hugging Face and Replicate fakes)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable
from typing import Any, Protocol


class StreamBook(Protocol):
    lock: Any
    split_events: bool
    stream_delay: float
    streams_started: int
    streams_finished: int
    streams_aborted: int


def awkward_pieces(data: bytes) -> list[bytes]:
    """Cut bytes after 2 bytes, inside a multi-byte UTF-8 character when there is one, in the
    middle, and right before the last byte (usually the blank line that ends an event)."""
    cuts = {2, len(data) // 2, len(data) - 1}
    for i, byte in enumerate(data):
        if (byte & 0xC0) == 0x80:  # a UTF-8 continuation byte: cut right before it
            cuts.add(i)
            break
    points = sorted(c for c in cuts if 0 < c < len(data))
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)])]


async def write_events(book: StreamBook, events: Iterable[bytes], on_end: Any = None) -> AsyncIterator[bytes]:
    """`events` (already framed), split when `book.split_events`, with `book.stream_delay`
    between them; counts the stream as finished or aborted (the client went away)."""
    with book.lock:
        book.streams_started += 1
        split, delay = book.split_events, book.stream_delay
    finished = False
    try:
        for i, event in enumerate(events):
            if i:
                await asyncio.sleep(delay)  # where a client disconnect is delivered
            pieces = awkward_pieces(event) if split else [event]
            for j, piece in enumerate(pieces):
                if j:
                    await asyncio.sleep(0.001)
                yield piece
        finished = True  # everything was handed over: a client may hang up now
    finally:
        with book.lock:
            if finished:
                book.streams_finished += 1
            else:
                book.streams_aborted += 1
        if on_end is not None:
            on_end(finished)
