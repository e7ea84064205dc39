"""Helpers for the unit tests of the vendor translators: our own vendor fixtures
(`tests/fixtures/<vendor>/`), the OpenAI-shape schemas, and SSE bytes decoded in awkward
pieces. The real recordings in ../shared are only read by tests marked `needs_shared`."""

from __future__ import annotations

from typing import Any

import orjson

from tests.fixture_data import (
    check_schema,
    fixture,
    fixture_json,
    needs_shared,
    shared_recording,
)
from translators._sse import SSEDecoder, SSEEvent
from translators.types import StreamChunk

__all__ = ["check_schema", "content_of", "events_of", "finishes", "fixture", "fixture_json", "needs_shared",
           "parsed", "shared_json", "shared_recording"]


def shared_json(vendor: str, name: str) -> Any:
    """A real recording from ../shared, parsed (only in tests marked `needs_shared`)."""
    return orjson.loads(shared_recording(vendor, name))


def events_of(data: bytes, piece: int | None = None) -> list[SSEEvent]:
    """The SSE events of `data`, fed whole or in pieces of `piece` bytes (cutting lines,
    CRLF pairs and multi-byte characters)."""
    decoder = SSEDecoder()
    pieces = [data] if piece is None else [data[i:i + piece] for i in range(0, len(data), piece)]
    return [e for p in pieces for e in decoder.feed(p)] + decoder.flush()


def parsed(chunks: list[StreamChunk]) -> list[dict[str, Any]]:
    return [orjson.loads(c.data) for c in chunks]


def content_of(chunks: list[StreamChunk]) -> str:
    return "".join(c["choices"][0]["delta"].get("content") or "" for c in parsed(chunks) if c["choices"])


def finishes(chunks: list[StreamChunk]) -> list[str]:
    return [c["choices"][0]["finish_reason"] for c in parsed(chunks)
            if c["choices"] and c["choices"][0]["finish_reason"]]
