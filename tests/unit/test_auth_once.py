"""A request's caller is found once: a second `authenticate` of the same request (the
Responses API's lookup of a kept answer) reads it from the request, not the directory."""

from __future__ import annotations

from typing import Any, cast

from starlette.requests import Request

from proxy.auth import authenticate
from proxy.tenants import Caller, Directory


class CountingDirectory:
    def __init__(self) -> None:
        self.lookups = 0
        self.caller_found = Caller(cast(Any, object()), "tok_1")

    async def caller(self, token: str) -> Caller | None:
        self.lookups += 1
        return self.caller_found if token == "mp-good" else None


def _request(token: str) -> Request:
    return Request({"type": "http", "method": "POST", "path": "/v1/responses", "headers": [
        (b"authorization", f"Bearer {token}".encode())], "client": ("127.0.0.1", 1), "app": None})


async def test_the_caller_is_looked_up_once_per_request() -> None:
    directory = CountingDirectory()
    request = _request("mp-good")
    first = await authenticate(request, cast(Directory, directory))
    again = await authenticate(request, cast(Directory, directory))
    assert first is again is directory.caller_found and directory.lookups == 1
    await authenticate(_request("mp-good"), cast(Directory, directory))  # another request: looked up
    assert directory.lookups == 2
