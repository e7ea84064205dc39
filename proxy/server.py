"""The `serve` process: uvicorn, run by us, so that secrets never ride in an environment.

`modelport serve` (proxy/cli.py) loads the settings, writes them and the master key to
an unlinked 0600 temporary file and execs `python -m proxy.server --handoff-fd N` with
an environment from which those secrets are removed. /proc/PID/environ (readable by
every process of the same user, copied into crash reports, inherited by children)
then holds none of them; neither does the command line. This module reads the file
descriptor once, closes it, and runs uvicorn with a `Config` that carries the handoff:
uvicorn sends its `Config` to each worker pickled over the spawn pipe, and the worker
builds the app from it (`proxy.app.app_from_handoff`).

It also adds the one slow-client guard uvicorn lacks: a deadline for the request line
and headers (uvicorn's keep-alive timer only runs between requests, so a client that
dribbles headers could hold a connection for ever).

The supervisor imports only uvicorn and this module: everything else (translators,
keystore, pydantic) would stay resident in it for nothing (see `_serve`).
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import os
import sys
from typing import Any

from uvicorn import Config, Server
from uvicorn._types import ASGIReceiveCallable, ASGISendCallable, Scope
from uvicorn.protocols.http import httptools_impl
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.supervisors import Multiprocess

# An OpenAI-shaped 408 for a client too slow to send its headers.
_HEADER_TIMEOUT_BODY = json.dumps({"error": {
    "message": "The request line and headers did not arrive in time.", "type": "invalid_request_error",
    "param": None, "code": "request_timeout"}}).encode()
_HEADER_TIMEOUT_RESPONSE = (b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\n"
                            b"connection: close\r\ncontent-length: " + str(len(_HEADER_TIMEOUT_BODY)).encode()
                            + b"\r\n\r\n" + _HEADER_TIMEOUT_BODY)


_BUSY_BODY = json.dumps({"error": {
    "message": "The gateway is at its concurrency limit; retry shortly.", "type": "server_error",
    "param": None, "code": "server_busy"}}).encode()


async def _busy(scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable) -> None:
    await send({"type": "http.response.start", "status": 503, "headers": [
        (b"content-type", b"application/json"), (b"content-length", str(len(_BUSY_BODY)).encode()),
        (b"retry-after", b"1"), (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": _BUSY_BODY, "more_body": False})


# uvicorn answers past `limit_concurrency` with a plain-text app it looks up as a module
# global when the headers are complete; every answer of ours is OpenAI-shaped, so is this.
httptools_impl.service_unavailable = _busy  # type: ignore[assignment]


MAX_HEAD_BYTES = 64 * 1024  # request line + headers (nginx's large_client_header_buffers is 32 KiB)


class HeaderDeadlineProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a deadline for each request's line and headers,
    armed when the connection opens and after each response, disarmed when the headers
    are complete (the body's own deadline is `proxy.limits.BodyDeadline`), and a size
    limit on them."""

    _header_timer: asyncio.TimerHandle | None = None
    _head_bytes = 0

    def _arm(self) -> None:
        self._disarm()
        timeout = getattr(self.config, "header_timeout", None)
        if timeout:
            self._header_timer = self.loop.call_later(timeout, self._headers_too_slow)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_too_slow(self) -> None:
        self._header_timer = None
        if not self.transport.is_closing():
            self.transport.write(_HEADER_TIMEOUT_RESPONSE)
            self.transport.close()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def on_message_begin(self) -> None:
        self._head_bytes = 0
        super().on_message_begin()

    def on_url(self, url: bytes) -> None:
        self._count(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count(len(name) + len(value))
        super().on_header(name, value)

    def _count(self, size: int) -> None:
        # llhttp sets no limit on a request head; without one a fast client could make us
        # buffer headers without bound. Raising here makes httptools fail the parse, and
        # uvicorn answers 400 and closes the connection.
        self._head_bytes += size
        if self._head_bytes > MAX_HEAD_BYTES:
            raise ValueError("request head too large")

    def on_headers_complete(self) -> None:
        self._disarm()
        super().on_headers_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)


class HandoffConfig(Config):
    """A uvicorn `Config` that carries the settings (and the master key, when it came from
    the environment) to the workers, pickled with the rest of the config."""

    def __init__(self, handoff: bytes, header_timeout: float, **kwargs: Any) -> None:
        super().__init__("proxy.app:app_from_handoff", factory=True, **kwargs)
        self.handoff = handoff
        self.header_timeout = header_timeout

    def load_app(self) -> Any:
        from proxy.app import app_from_handoff

        return functools.partial(app_from_handoff, self.handoff)


def read_handoff(fd: int) -> bytes:
    with os.fdopen(fd, "rb") as f:  # closes it: nothing else may inherit it
        return f.read()


def run(handoff: bytes) -> None:
    data = json.loads(handoff)
    s = data["settings"]
    from proxy.logs import uvicorn_log_config

    config = HandoffConfig(
        handoff, header_timeout=s["client_header_timeout"], host=s["host"], port=s["port"],
        workers=s["workers"], log_level=s["log_level"], log_config=uvicorn_log_config(), access_log=False,
        proxy_headers=False, http="proxy.server:HeaderDeadlineProtocol",
        timeout_keep_alive=s["keep_alive_timeout"], limit_concurrency=s["max_concurrency"],
        timeout_graceful_shutdown=s["shutdown_grace_seconds"])
    server = Server(config)
    if config.workers > 1:
        Multiprocess(config, sockets=[config.bind_socket()]).run()
    else:
        server.run()
        if not server.started:
            sys.exit(3)  # uvicorn's STARTUP_FAILURE


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m proxy.server")
    parser.add_argument("--handoff-fd", type=int, required=True)
    run(read_handoff(parser.parse_args().handoff_fd))


if __name__ == "__main__":
    main()
