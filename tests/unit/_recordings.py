"""Helpers for the unit tests of the Qwen, Minimax, ChatGLM and Zhipu translators: the shared
recordings, OpenAI's JSON schemas, and SSE bytes decoded in awkward pieces."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import orjson
from jsonschema import Draft202012Validator

from translators._sse import SSEDecoder, SSEEvent
from translators.types import StreamChunk

SHARED = Path(__file__).resolve().parents[2].parent / "shared"
RECORDINGS = SHARED / "vendors" / "recordings"
SCHEMAS = SHARED / "openai-schemas"


def recording(vendor: str, name: str) -> bytes:
    return (RECORDINGS / vendor / name).read_bytes()


def recorded_json(vendor: str, name: str) -> Any:
    return json.loads(recording(vendor, name))


@cache
def _validator(name: str) -> Draft202012Validator:
    return Draft202012Validator(json.loads((SCHEMAS / name).read_text()))


def check_schema(name: str, body: Any) -> None:
    errors = sorted(_validator(name).iter_errors(body), key=str)
    assert not errors, f"{name}: " + "; ".join(f"{list(e.absolute_path)}: {e.message}" for e in errors[:5])


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
