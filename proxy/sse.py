"""The one downstream SSE writer: chunks -> `data: ...` frames -> `data: [DONE]`.

The first chunk is pulled before the response starts, so an upstream refusal (401,
429, a 400) is still a real HTTP status. After the first byte a failure becomes one
`data: {"error": ...}` frame and no `[DONE]`, which the openai SDK raises as APIError.
The upstream generator is closed in every case (`aclosing`), and `SSEResponse` cancels
the body when the client disconnects, so a client that leaves closes the upstream.

On SIGTERM uvicorn lets running requests finish for `shutdown_grace_seconds`, then
cancels them. A stream cut there would look to the client like a stream that simply
ended; it gets the error frame instead (503 `server_shutting_down`, no `[DONE]`), so
the SDK raises and the caller knows to retry.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import aclosing

import orjson
from starlette.types import Message, Receive, Scope, Send

from translators.errors import ApiError
from translators.types import StreamChunk, Usage

log = logging.getLogger("modelport")

DONE = b"data: [DONE]\n\n"
HEADERS = {"Content-Type": "text/event-stream; charset=utf-8", "Cache-Control": "no-cache",
           "X-Accel-Buffering": "no"}


class SSEResponse:
    """A streamed ASGI response without Starlette's StreamingResponse: that one runs an
    anyio task group per stream, which the benchmark measured at ~10% of a stream's CPU.
    Here the body is sent from the request's own task and one small task waits for
    `http.disconnect`, cancelling the body (and so the upstream) when the client leaves."""

    def __init__(self, body: AsyncIterator[bytes], headers: dict[str, str]) -> None:
        self.body_iterator = body
        self.raw_headers = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]
        # Read by the body to tell a client that left (499) from a server that stopped (503).
        self.client_gone = False
        self.stopped = False

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
                    await send({"type": "http.response.body", "body": error_frame(shutting_down()),
                                "more_body": True})
                    await send({"type": "http.response.body", "body": b"", "more_body": False})
        except OSError:
            self.client_gone = True  # the socket broke under a send: the same as a client that left
        finally:
            watcher.cancel()
            await self.body_iterator.aclose()  # type: ignore[attr-defined]


def frame(data: bytes) -> bytes:
    return b"data: " + data + b"\n\n"


def error_frame(err: ApiError) -> bytes:
    return frame(orjson.dumps(err.body()))


def shutting_down() -> ApiError:
    return ApiError(503, "The gateway is shutting down and ended this stream before it finished; retry the request.",
                    "server_error", "server_shutting_down")


class StreamOutcome:
    """What the stream did, for accounting: usage if known, end status, and how many
    chunks went out (the completion estimate when the vendor reports no usage)."""

    __slots__ = ("usage", "status", "error", "chunks")

    def __init__(self) -> None:
        self.usage: Usage | None = None
        self.status = 200
        self.error: ApiError | None = None
        self.chunks = 0


async def open_stream(chunks: AsyncIterator[StreamChunk], *, include_usage: bool, secrets: tuple[str, ...],
                      headers: dict[str, str], on_end: Callable[[StreamOutcome], None]) -> SSEResponse:
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
        async with aclosing(chunks):  # type: ignore[type-var]
            try:
                chunk = first
                if chunk is not None:
                    if chunk.usage is None or include_usage:
                        yield frame(chunk.data)
                    outcome.usage = chunk.usage or outcome.usage
                    outcome.chunks += chunk.usage is None
                    async for chunk in chunks:
                        if chunk.usage is not None:
                            outcome.usage = chunk.usage
                            if not include_usage:
                                continue
                        else:
                            outcome.chunks += 1
                        yield frame(chunk.data)
                yield DONE
            except ApiError as err:
                outcome.status, outcome.error = err.status, err.scrubbed(secrets)
                yield error_frame(outcome.error)
            except Exception:
                log.exception("stream failed after the first byte")
                outcome.status = 500
                outcome.error = ApiError(500, "the stream failed inside the gateway", "server_error", "internal_error")
                yield error_frame(outcome.error)
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

    response = SSEResponse(body(), {**HEADERS, **headers})
    return response
