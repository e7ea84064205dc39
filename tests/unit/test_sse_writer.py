"""proxy/sse.py: first chunk before the status, usage chunk only when asked, errors
after the first byte as one error frame without [DONE], upstream closed on every exit."""

from __future__ import annotations

from collections.abc import AsyncIterator

import orjson
import pytest

from proxy import sse
from translators.errors import ApiError
from translators.types import StreamChunk, Usage

USAGE = Usage(3, 4, 7)


class Upstream:
    def __init__(self, chunks: list[StreamChunk | ApiError]) -> None:
        self.chunks = chunks
        self.closed = False

    async def gen(self) -> AsyncIterator[StreamChunk]:
        try:
            for item in self.chunks:
                if isinstance(item, ApiError):
                    raise item
                yield item
        finally:
            self.closed = True


def chunk(text: str) -> StreamChunk:
    return StreamChunk.of({"choices": [{"index": 0, "delta": {"content": text}}]})


async def body(resp: object) -> bytes:
    return b"".join([part async for part in resp.body_iterator])  # type: ignore[attr-defined]


async def open_(up: Upstream, include_usage: bool = False, outcomes: list[sse.StreamOutcome] | None = None,
                secrets: tuple[str, ...] = ()) -> object:
    return await sse.open_stream(up.gen(), include_usage=include_usage, secrets=secrets, headers={},
                                 on_end=(outcomes if outcomes is not None else []).append)


async def test_frames_and_done() -> None:
    up = Upstream([chunk("a"), chunk("b")])
    data = await body(await open_(up))
    assert data.count(b"data: ") == 3 and data.endswith(sse.DONE)
    assert data.startswith(b'data: {"choices"') and b"\n\n" in data
    assert up.closed


async def test_usage_chunk_only_when_asked_but_always_counted() -> None:
    usage_chunk = StreamChunk.of({"choices": [], "usage": USAGE.as_dict()}, USAGE)
    outcomes: list[sse.StreamOutcome] = []
    data = await body(await open_(Upstream([chunk("a"), usage_chunk]), False, outcomes))
    assert b"usage" not in data and outcomes[0].usage == USAGE
    data = await body(await open_(Upstream([chunk("a"), usage_chunk]), True))
    frames = [f for f in data.split(b"\n\n") if f]
    assert orjson.loads(frames[-2][6:])["usage"]["total_tokens"] == 7 and frames[-1] == b"data: [DONE]"


async def test_error_before_first_chunk_is_raised_scrubbed() -> None:
    up = Upstream([ApiError(429, "slow down sk-secret-value", "rate_limit_error")])
    with pytest.raises(ApiError) as exc:
        await open_(up, secrets=("sk-secret-value",))
    assert exc.value.status == 429 and "sk-secret-value" not in exc.value.message
    assert up.closed


async def test_error_after_first_byte_is_one_frame_without_done() -> None:
    outcomes: list[sse.StreamOutcome] = []
    up = Upstream([chunk("a"), ApiError(502, "broke with key sk-secret-value", "server_error")])
    data = await body(await open_(up, outcomes=outcomes, secrets=("sk-secret-value",)))
    frames = [f for f in data.split(b"\n\n") if f]
    assert len(frames) == 2 and b"[DONE]" not in data
    err = orjson.loads(frames[1][6:])["error"]
    assert set(err) == {"message", "type", "param", "code"} and "sk-secret-value" not in err["message"]
    assert outcomes[0].status == 502 and up.closed


async def test_closing_the_body_early_closes_the_upstream() -> None:
    up = Upstream([chunk(str(i)) for i in range(100)])
    resp = await open_(up)
    iterator = resp.body_iterator  # type: ignore[attr-defined]
    await anext(iterator)
    await iterator.aclose()
    assert up.closed


async def test_a_client_gone_before_the_first_frame_still_closes_the_upstream_and_is_accounted() -> None:
    """The client leaves while the headers go out: the body never takes a step (a generator
    closed before it starts runs no `finally`), yet the upstream is closed and the request
    finishes as a 499 (its usage row, its open-stream gauge)."""
    import asyncio

    up = Upstream([chunk("a"), chunk("b")])
    outcomes: list[sse.StreamOutcome] = []
    response = await open_(up, outcomes=outcomes)
    gone = asyncio.Event()

    async def receive() -> dict[str, object]:
        await gone.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, object]) -> None:
        if message["type"] == "http.response.start":
            gone.set()               # the client is gone while the start goes out...
            await asyncio.sleep(1)   # ...and the watcher cancels this send
        raise AssertionError(f"nothing is sent after the start: {message}")

    await response({"type": "http"}, receive, send)  # type: ignore[operator, arg-type]
    assert up.closed
    assert [o.status for o in outcomes] == [499]
