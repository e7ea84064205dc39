"""The one downstream SSE writer: chunks -> `data: ...` frames -> `data: [DONE]`, or, for
a client speaking another API (`proxy/inbound/`), that API's named events (`Framing`).

The first chunk is pulled before the response starts, so an upstream refusal (401,
429, a 400) is still a real HTTP status. After the first byte a failure becomes one
`data: {"error": ...}` frame and no `[DONE]`, which the openai SDK raises as APIError.
The upstream generator is closed in every case (`aclosing`), and `SSEResponse` cancels
the body when the client disconnects, so a client that leaves closes the upstream.

How chunks become bytes is a `Framing`: OpenAI's chat framing by default; `EventFraming`
(an API's encoder turns chat chunks into its named events, `event: NAME` + `data: JSON`)
and `RelayFraming` (a vendor's own events passed on, for a client of that vendor's API)
come with the stream as a `Framed`. Errors after the first byte are the framing's too.

On SIGTERM uvicorn lets running requests finish for `shutdown_grace_seconds`, then
cancels them. A stream cut there would look to the client like a stream that simply
ended; it gets the error frame instead (503 `server_shutting_down`, no `[DONE]`), so
the SDK raises and the caller knows to retry.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import aclosing
from dataclasses import dataclass
from typing import Protocol

import orjson
from starlette.types import Message, Receive, Scope, Send

from translators._inbound import Event, EventEncoder
from translators.errors import ApiError
from translators.types import JSONObject, StreamChunk, Usage

log = logging.getLogger("modelport")

DONE = b"data: [DONE]\n\n"
HEADERS = {"Content-Type": "text/event-stream; charset=utf-8", "Cache-Control": "no-cache",
           "X-Accel-Buffering": "no"}


class SSEResponse:
    """A streamed ASGI response without Starlette's StreamingResponse: that one runs an
    anyio task group per stream, which the benchmark measured at ~10% of a stream's CPU.
    Here the body is sent from the request's own task and one small task waits for
    `http.disconnect`, cancelling the body (and so the upstream) when the client leaves."""

    def __init__(self, body: AsyncIterator[bytes], headers: dict[str, str],
                 error_frame: Callable[[ApiError], bytes] | None = None) -> None:
        self.body_iterator = body
        self.error_frame = error_frame or _error_frame
        self.raw_headers = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]
        # Read by the body to tell a client that left (499) from a server that stopped (503).
        self.client_gone = False
        self.stopped = False
        # What ends the stream when the body never ran (the client left while the headers
        # were going out): an async generator closed before its first step runs no code at
        # all, so its own `finally` (close the upstream, account the request) would not run.
        self.body_started = False
        self.abandon: Callable[[], Awaitable[None]] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        task = asyncio.current_task()

        async def watch() -> None:
            message: Message = {"type": ""}
            while message["type"] != "http.disconnect":
                message = await receive()
            self.client_gone = True
            if task is not None:
                task.cancel()

        watcher = asyncio.create_task(watch())
        try:
            await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
            async for part in self.body_iterator:
                await send({"type": "http.response.body", "body": part, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        except asyncio.CancelledError:
            task.uncancel()  # type: ignore[union-attr]
            if not self.client_gone:
                self.stopped = True
                # uvicorn's graceful-shutdown period ran out (nothing else cancels a request):
                # say so in the stream rather than cutting it silently.
                with contextlib.suppress(OSError):
                    await send({"type": "http.response.body", "body": self.error_frame(shutting_down()),
                                "more_body": True})
                    await send({"type": "http.response.body", "body": b"", "more_body": False})
        except OSError:
            self.client_gone = True  # the socket broke under a send: the same as a client that left
        finally:
            watcher.cancel()
            await self.body_iterator.aclose()  # type: ignore[attr-defined]
            if not self.body_started and self.abandon is not None:
                await self.abandon()


def frame(data: bytes) -> bytes:
    return b"data: " + data + b"\n\n"


def error_frame(err: ApiError) -> bytes:
    return frame(orjson.dumps(err.body()))


_error_frame = error_frame  # SSEResponse's default, under a name its attribute does not shadow


def named_frame(name: str, data: bytes) -> bytes:
    """One event of a stream whose events are named (`event: NAME` then `data: JSON`). Data
    of several lines (a relayed event that had several `data:` lines) keeps them."""
    if b"\n" in data:
        data = data.replace(b"\n", b"\ndata: ")
    return b"event: " + name.encode() + b"\ndata: " + data + b"\n\n"


def named_frames(events: list[Event]) -> bytes:
    return b"".join([named_frame(name, data) for name, data in events])


class Framing(Protocol):
    """How a stream's chunks are written. `usage_frames`: the usage-only chunk goes to
    `frame` too (else it is only read, for accounting). `frame` may return b"" (nothing
    to write for that chunk); `end` follows the last chunk, `error` a failure after the
    first byte (then nothing follows it)."""

    usage_frames: bool

    def frame(self, chunk: StreamChunk) -> bytes: ...

    def end(self) -> bytes: ...

    def error(self, err: ApiError) -> bytes: ...

    async def settle(self) -> None:
        """Awaited after `end`, before its bytes go out (an API keeping the whole answer)."""


class ChatFraming:
    """The chat completions framing: `data: <chunk JSON>` frames, then `data: [DONE]`; the
    usage chunk only when the client asked (`stream_options.include_usage`)."""

    __slots__ = ("usage_frames",)

    def __init__(self, include_usage: bool) -> None:
        self.usage_frames = include_usage

    def frame(self, chunk: StreamChunk) -> bytes:
        return b"data: " + chunk.data + b"\n\n"

    def end(self) -> bytes:
        return DONE

    def error(self, err: ApiError) -> bytes:
        return error_frame(err)

    async def settle(self) -> None:
        return None


_CHAT = (ChatFraming(False), ChatFraming(True))  # stateless: shared by every stream


class EventFraming:
    """Another API's named events, made from the chat chunks by its `EventEncoder` (one
    per stream); the usage chunk goes to the encoder too (its totals end the stream).
    `on_answer` gets the encoder's whole answer when the stream ended (`settle`)."""

    __slots__ = ("encoder", "on_answer")
    usage_frames = True

    def __init__(self, encoder: EventEncoder,
                 on_answer: Callable[[JSONObject], Awaitable[None]] | None = None) -> None:
        self.encoder = encoder
        self.on_answer = on_answer

    def frame(self, chunk: StreamChunk) -> bytes:
        return named_frames(self.encoder.chunk(chunk))

    def end(self) -> bytes:
        return named_frames(self.encoder.end())

    def error(self, err: ApiError) -> bytes:
        return named_frames(self.encoder.error(err))

    async def settle(self) -> None:
        answer = self.encoder.answer() if self.on_answer is not None else None
        if answer is not None and self.on_answer is not None:
            await self.on_answer(answer)


class RelayFraming:
    """A vendor's own events passed on as they came (`StreamChunk.event` names each);
    the vendor's last event ends the stream, and an error is the API's error event.
    With `on_answer`, the whole answer an event carries (`answer_in`) goes to it (`settle`),
    and that event is held back until then (`end`): a client that sends its follow-up as
    soon as it has the answer finds it kept."""

    __slots__ = ("answer", "answer_in", "error_events", "held", "on_answer")
    usage_frames = False

    def __init__(self, error_events: Callable[[ApiError], list[Event]],
                 on_answer: Callable[[JSONObject], Awaitable[None]] | None = None,
                 answer_in: Callable[[StreamChunk], JSONObject | None] | None = None) -> None:
        self.error_events = error_events
        self.on_answer = on_answer
        self.answer_in = answer_in if on_answer is not None else None
        self.answer: JSONObject | None = None
        self.held = b""

    def frame(self, chunk: StreamChunk) -> bytes:
        data = named_frame(chunk.event or "message", chunk.data)
        if self.answer_in is not None and (answer := self.answer_in(chunk)) is not None:
            self.answer, self.held = answer, self.held + data
            return b""
        return data

    def end(self) -> bytes:
        held, self.held = self.held, b""
        return held

    def error(self, err: ApiError) -> bytes:
        return named_frames(self.error_events(err))

    async def settle(self) -> None:
        if self.on_answer is not None and self.answer is not None:
            await self.on_answer(self.answer)


@dataclass(frozen=True, slots=True)
class Framed:
    """A stream that is written otherwise than as chat chunks: its chunks and its framing."""

    chunks: AsyncIterator[StreamChunk]
    framing: Framing


def shutting_down() -> ApiError:
    return ApiError(503, "The gateway is shutting down and ended this stream before it finished; retry the request.",
                    "server_error", "server_shutting_down")


class StreamOutcome:
    """What the stream did, for accounting: usage if known, end status, and how many
    chunks went out (the completion estimate when the vendor reports no usage)."""

    __slots__ = ("chunks", "error", "status", "usage")

    def __init__(self) -> None:
        self.usage: Usage | None = None
        self.status = 200
        self.error: ApiError | None = None
        self.chunks = 0


async def open_stream(stream: AsyncIterator[StreamChunk] | Framed, *, include_usage: bool, secrets: tuple[str, ...],
                      headers: dict[str, str], on_end: Callable[[StreamOutcome], None]) -> SSEResponse:
    """The started response of `stream` (chat chunks, or a `Framed` stream of another API):
    its first chunk is in, so a failure before it raises here as a real HTTP status."""
    if isinstance(stream, Framed):
        chunks, framing = stream.chunks, stream.framing
    else:
        chunks, framing = stream, _CHAT[include_usage]
    outcome = StreamOutcome()
    try:
        first = await anext(chunks)
    except StopAsyncIteration:
        first = None
    except ApiError as err:
        await chunks.aclose()  # type: ignore[attr-defined]
        raise err.scrubbed(secrets) from None
    except BaseException:
        await chunks.aclose()  # type: ignore[attr-defined]
        raise

    async def body() -> AsyncIterator[bytes]:
        response.body_started = True
        # Locals: the loop below runs once per chunk of every stream.
        write, usage_frames = framing.frame, framing.usage_frames
        async with aclosing(chunks):  # type: ignore[type-var]
            try:
                chunk = first
                if chunk is not None:
                    if chunk.usage is None or usage_frames:
                        data = write(chunk)
                        if data:
                            yield data
                    outcome.usage = chunk.usage or outcome.usage
                    outcome.chunks += chunk.usage is None
                    async for chunk in chunks:
                        if chunk.usage is not None:
                            outcome.usage = chunk.usage
                            if not usage_frames:
                                continue
                        else:
                            outcome.chunks += 1
                        data = write(chunk)
                        if data:
                            yield data
                data = framing.end()
                await framing.settle()
                if data:
                    yield data
            except ApiError as err:
                outcome.status, outcome.error = err.status, err.scrubbed(secrets)
                yield framing.error(outcome.error)
            except Exception:
                log.exception("stream failed after the first byte")
                outcome.status = 500
                outcome.error = ApiError(500, "the stream failed inside the gateway", "server_error", "internal_error")
                yield framing.error(outcome.error)
            except BaseException as exc:
                # A cancel hits the body directly (client gone, or uvicorn's grace period
                # over); a close while suspended at a yield comes after SSEResponse saw which.
                cancelled = isinstance(exc, asyncio.CancelledError)
                if (cancelled and not response.client_gone) or (not cancelled and response.stopped):
                    outcome.status, outcome.error = 503, shutting_down()
                else:
                    outcome.status = 499  # the client went away; nginx's name for it
                raise
            finally:
                on_end(outcome)

    async def abandon() -> None:
        """The client left before the body's first step: close the upstream, and account
        the request as the body would have (499: the client went away)."""
        outcome.status = 503 if response.stopped else 499
        try:
            await chunks.aclose()  # type: ignore[attr-defined]
        finally:
            on_end(outcome)

    response = SSEResponse(body(), {**HEADERS, **headers}, framing.error)
    response.abandon = abandon
    return response
