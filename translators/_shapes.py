"""OpenAI shapes built by the translators whose vendors answer in another format.

Builders shared by the vendor modules (chunks, the usage-only last chunk, completions,
embeddings lists and their base64 encoding, the text inputs of an embeddings request and
their batching), so each vendor module keeps only what belongs to its vendor. All pure
but `embed_in_batches`, which awaits the I/O its caller passes in.
"""

from __future__ import annotations

import base64
import secrets
import sys
import time
from array import array
from collections.abc import Awaitable, Callable, Iterator, Sequence
from typing import Any

from translators.errors import (
    UpstreamError,
    bad_request,
    bad_response,
    upstream_status_error,
)
from translators.types import EmbeddingRequest, JSONObject, StreamChunk, Usage


def new_id(prefix: str = "chatcmpl") -> str:
    return f"{prefix}-{secrets.token_hex(12)}"


def now() -> int:
    return int(time.time())


def as_int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def chat_chunk(id: str, created: int, model: str, delta: JSONObject,
               finish: str | None = None, index: int = 0) -> StreamChunk:
    return StreamChunk.of({"id": id, "object": "chat.completion.chunk", "created": created, "model": model,
                           "choices": [{"index": index, "delta": delta, "logprobs": None, "finish_reason": finish}]})


def usage_chunk(id: str, created: int, model: str, body: JSONObject, usage: Usage) -> StreamChunk:
    """The last chunk of a stream: no choices, the totals (forwarded only if the client asked)."""
    return StreamChunk.of({"id": id, "object": "chat.completion.chunk", "created": created, "model": model,
                           "choices": [], "usage": body}, usage)


def completion(id: str, model: str, message: JSONObject, finish: str, usage: JSONObject | None,
               created: int | None = None) -> JSONObject:
    out: JSONObject = {"id": id, "object": "chat.completion", "created": created or now(), "model": model,
                       "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish}]}
    if usage is not None:
        out["usage"] = usage
    return out


def vendor_error(provider: str, status: int, message: str, code: str | None = None,
                 retry_after: float | None = None, param: str | None = None) -> UpstreamError:
    """An upstream error whose meaning the vendor's own code names (a content filter, an
    unknown model, an empty balance), else the meaning of its status."""
    if code == "content_filter":
        return UpstreamError(400, message, "invalid_request_error", "content_filter")
    if code == "model_not_found":
        return UpstreamError(404, message, "invalid_request_error", "model_not_found", "model")
    if code == "insufficient_quota":
        return UpstreamError(429, f"{provider}: {message}", "insufficient_quota", "insufficient_quota", None,
                             retry_after)
    return upstream_status_error(provider, status, message, code if status < 500 else None, param, retry_after)


# -- embeddings ----------------------------------------------------------------------------


def input_texts(req: EmbeddingRequest, provider: str) -> list[str]:
    """The texts of an embeddings request; token arrays are refused (these vendors take text)."""
    value = req.input
    if isinstance(value, str):
        return [value]
    if all(isinstance(item, str) for item in value):
        return list(value)  # type: ignore[arg-type]
    raise bad_request(f"provider '{provider}' embeds text only, not token arrays", "input")


def batches(items: Sequence[str], size: int) -> Iterator[Sequence[str]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


async def embed_in_batches(req: EmbeddingRequest, model: str, provider: str, size: int,
                           fetch: Callable[[list[str]], Awaitable[tuple[list[list[float]], int]]],
                           ) -> JSONObject:
    """OpenAI's embeddings list for the texts of `req`, sent `size` at a time through `fetch`
    (one upstream call per batch -> (vectors in input order, tokens), so the batches' token
    counts do add up). A batch answered with another number of vectors than it had texts
    would shift every later vector: a 502."""
    texts = input_texts(req, provider)
    vectors: list[list[float]] = []
    tokens = 0
    for batch in batches(texts, size):
        got, used = await fetch(list(batch))
        if len(got) != len(batch):
            raise bad_response(provider, f"{len(got)} embeddings for {len(batch)} texts")
        vectors += got
        tokens += used
    return embedding_list(vectors, model, tokens, req.encoding_format)


def encode_vector(vector: Sequence[float], encoding_format: str) -> list[float] | str:
    """OpenAI's base64 format: the vector as little-endian float32, base64 encoded."""
    if encoding_format != "base64":
        return list(vector)
    packed = array("f", vector)
    if sys.byteorder != "little":
        packed.byteswap()
    return base64.b64encode(packed.tobytes()).decode("ascii")


def embedding_items(vectors: Sequence[Sequence[float]], encoding_format: str) -> list[JSONObject]:
    """OpenAI's `data` items, indexed in order."""
    return [{"object": "embedding", "index": i, "embedding": encode_vector(v, encoding_format)}
            for i, v in enumerate(vectors)]


def embedding_list(vectors: Sequence[Sequence[float]], model: str, tokens: int, encoding_format: str) -> JSONObject:
    return {"object": "list", "model": model, "data": embedding_items(vectors, encoding_format),
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}
