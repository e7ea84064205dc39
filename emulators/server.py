"""Serve any ASGI app on a loopback port from a background thread.

Used by the vendor fakes (tests and benchmark)::

    with ServedApp(create_app(state)) as served:
        httpx.get(served.base_url + "/v1/models")

The listening socket is bound *before* the server thread starts, so the port is known
up front and no other process can grab it in between (no pick-a-port-then-bind race).
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from types import TracebackType
from typing import Any

import uvicorn

__all__ = ["ServedApp", "free_port"]

HOST = "127.0.0.1"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (racy by nature; prefer ServedApp)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


class ServedApp:
    """Run an ASGI app with uvicorn on 127.0.0.1 in a thread with its own event loop."""

    def __init__(
        self,
        app: Any,
        *,
        port: int = 0,
        sock: socket.socket | None = None,
        start_timeout: float = 10.0,
        stop_timeout: float = 10.0,
        graceful_shutdown: float = 1.0,
    ) -> None:
        self.app = app
        self._port = port
        self._start_timeout = start_timeout
        self._stop_timeout = stop_timeout
        self._graceful_shutdown = graceful_shutdown
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._socket: socket.socket | None = None
        self._given_socket = sock  # bound by the caller (the demo binds it before the gateway starts)
        self._error: BaseException | None = None
        self._bound_port: int | None = None

    # -- public API ---------------------------------------------------------------------

    @property
    def port(self) -> int:
        if self._bound_port is None:
            raise RuntimeError("ServedApp is not started")
        return self._bound_port

    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> ServedApp:
        if self._thread is not None:
            raise RuntimeError("ServedApp already started")
        sock = self._given_socket or socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if self._given_socket is None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((HOST, self._port))
        sock.listen(128)
        sock.setblocking(False)
        self._socket = sock
        self._bound_port = int(sock.getsockname()[1])
        config = uvicorn.Config(
            self.app,
            host=HOST,
            port=self._bound_port,
            log_level="warning",
            lifespan="off",
            loop="asyncio",
            timeout_graceful_shutdown=self._graceful_shutdown,  # type: ignore[arg-type]  # a float works
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._run, name=f"ServedApp:{self.port}", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + self._start_timeout
        while not self._server.started:
            if not self._thread.is_alive():
                self._cleanup_socket()
                raise RuntimeError(f"server thread died during startup: {self._error!r}")
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError(f"server not started within {self._start_timeout}s")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        server, thread = self._server, self._thread
        if server is None or thread is None:
            return
        server.should_exit = True
        thread.join(self._stop_timeout / 2)
        if thread.is_alive():  # connections that never close: stop waiting for them
            server.force_exit = True
            thread.join(self._stop_timeout / 2)
        if thread.is_alive():
            raise TimeoutError(f"server thread did not stop within {self._stop_timeout}s")
        self._server = None
        self._thread = None
        self._cleanup_socket()

    def __enter__(self) -> ServedApp:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- internals ----------------------------------------------------------------------

    def _run(self) -> None:
        assert self._server is not None and self._socket is not None
        try:
            asyncio.run(self._server.serve(sockets=[self._socket]))
        except BaseException as exc:  # noqa: BLE001 - reported by start()
            self._error = exc

    def _cleanup_socket(self) -> None:
        # uvicorn closes the socket on shutdown; this covers failed starts.
        if self._socket is not None and self._socket.fileno() != -1:
            self._socket.close()
