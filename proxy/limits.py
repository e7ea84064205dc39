"""Guards against slow and abusive clients, per worker.

- `BodyDeadline`: the whole request body must arrive within `client_body_timeout`
  seconds of the first read, else a 408. A deadline rather than nginx's per-read
  timeout, because a client sending one byte every few seconds would never trip a
  per-read timeout and would hold its connection (and a slot of `max_concurrency`)
  for as long as it likes. The request line and headers have their own deadline in
  `proxy/server.py`.
- `FailureLimiter`: counts failed authentications per client address; past the limit
  within the window the answer is a 429 with Retry-After instead of a 401.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from translators.errors import ApiError

log = logging.getLogger("modelport")


class BodyTimeout(BaseException):
    """Raised from `receive()` when the body is late. A BaseException, like
    CancelledError: no `except Exception` on the way (a route's 500 handler) may turn it
    into something else; `BodyDeadline` answers it."""


def body_timeout_error(timeout: float) -> ApiError:
    return ApiError(408, f"The request body did not arrive in time (limit: {timeout:g} s).",
                    "invalid_request_error", "request_timeout")


class BodyDeadline:
    def __init__(self, app: ASGIApp, timeout: float) -> None:
        self.app = app
        self.timeout = timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        deadline: float | None = None
        body_done = started = False

        async def timed_receive() -> Message:
            nonlocal deadline, body_done
            if body_done:
                return await receive()  # after the body: a stream waiting for the client to leave
            if deadline is None:
                deadline = asyncio.get_running_loop().time() + self.timeout
            try:
                async with asyncio.timeout_at(deadline):
                    message = await receive()
            except TimeoutError:
                raise BodyTimeout from None
            if message["type"] != "http.request" or not message.get("more_body", False):
                body_done = True
            return message

        async def tracked_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, timed_receive, tracked_send)
        except BodyTimeout:
            client = scope.get("client") or ("-", 0)
            log.info("client %s: request body not received within %gs (408)", client[0], self.timeout)
            if started:
                return  # cannot happen with our routes (they read the body first); nothing to add
            body = orjson.dumps(body_timeout_error(self.timeout).body())
            await send({"type": "http.response.start", "status": 408,
                        "headers": [(b"content-type", b"application/json"), (b"connection", b"close"),
                                    (b"content-length", str(len(body)).encode())]})
            await send({"type": "http.response.body", "body": body})


class FailureLimiter:
    """Failed authentications per client address in fixed windows: the first failure opens
    a window of `window` seconds; the `limit`+1st failure inside it is refused with a 429
    until the window ends. Memory is bounded: at most `max_addresses` windows are kept,
    the least recently failing address dropped first."""

    def __init__(self, limit: int, window: float, max_addresses: int = 10_000) -> None:
        self.limit = limit
        self.window = window
        self.max_addresses = max_addresses
        self._windows: OrderedDict[str, tuple[float, int]] = OrderedDict()  # address -> (window start, failures)

    def failed(self, address: str, now: float | None = None) -> float | None:
        """Count one failure; the Retry-After seconds if `address` is now over the limit."""
        now = time.monotonic() if now is None else now
        start, count = self._windows.pop(address, (now, 0))
        if now - start >= self.window:
            start, count = now, 0
        self._windows[address] = (start, count + 1)  # (re)inserted last: the most recent
        while len(self._windows) > self.max_addresses:
            self._windows.popitem(last=False)
        return start + self.window - now if count + 1 > self.limit else None
