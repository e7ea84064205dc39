"""Request ids: `x-request-id` on every answer, the client's own when it sent a sane one.

`RequestIds` (the outermost middleware of the app) takes the id from the request's
`x-request-id` header when it is 1-128 characters of `[A-Za-z0-9._:-]` (so it can go into
a log line, a response header and an upstream's header as it is), else makes one, keeps
it in the ASGI scope (`request_id(scope)`: the request's record, the call context that
translators send upstream) and adds it to the response's headers, whatever answers:
an endpoint, an error handler, a 404 of the router, the body deadline's 408.

A client's id is not unique: two requests may share one (the usage table does not rely
on it being unique, and nothing else may).
"""

from __future__ import annotations

import itertools
import re
import secrets

from starlette.types import ASGIApp, Message, Receive, Scope, Send

HEADER = b"x-request-id"
_SCOPE_KEY = "modelport.request_id"
_SANE = re.compile(rb"[A-Za-z0-9._:-]{1,128}")

# A random prefix per process and a counter: unique across workers and restarts without a
# getrandom() system call per request.
_PREFIX = "req_" + secrets.token_hex(6)
_ids = itertools.count(1)


def new_id() -> str:
    return f"{_PREFIX}{next(_ids):06x}"


def sane(value: bytes) -> bool:
    return _SANE.fullmatch(value) is not None


def from_headers(headers: list[tuple[bytes, bytes]]) -> str:
    """The client's id (the first `x-request-id`) when sane, else a new one."""
    for name, value in headers:
        if name == HEADER:  # ASGI servers give header names in lower case
            return value.decode("ascii") if sane(value) else new_id()
    return new_id()


def request_id(scope: Scope) -> str:
    """The request's id (made here when the middleware did not run: a test's bare app)."""
    found = scope.get(_SCOPE_KEY)
    if found is None:
        found = scope[_SCOPE_KEY] = from_headers(scope.get("headers") or [])
    return str(found)


class RequestIds:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = scope[_SCOPE_KEY] = from_headers(scope["headers"])
        header = (HEADER, rid.encode("ascii"))

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), header]
            await send(message)

        await self.app(scope, receive, send_with_id)
