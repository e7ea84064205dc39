"""Writing a fake vendor's stream the awkward way real networks do, with bookkeeping of how
the stream ended (shared by the Hugging Face and Replicate fakes)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable
from typing import Any, Protocol

from emulators._vendor_common import count_stream_end, cut_pieces


class StreamBook(Protocol):
    lock: Any
    split_events: bool
    stream_delay: float
    streams_started: int
    streams_finished: int
    streams_aborted: int


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
            pieces = cut_pieces(event) if split else [event]
            for j, piece in enumerate(pieces):
                if j:
                    await asyncio.sleep(0.001)
                yield piece
        finished = True  # everything was handed over: a client may hang up now
    finally:
        count_stream_end(book, "finished" if finished else "aborted")
        if on_end is not None:
            on_end(finished)
