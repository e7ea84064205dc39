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

With several workers on Linux, each worker listens on a socket of its own, bound to
host:port with SO_REUSEPORT, so the kernel spreads new connections over the workers (see
`serve_workers`); uvicorn's supervisor still starts, watches and restarts them.

The supervisor imports only uvicorn and this module: everything else (translators,
keystore, pydantic) would stay resident in it for nothing (see `_serve`).

Metrics (proxy/metrics.py): with `metrics.enabled` and several workers, the supervisor
makes a fresh private directory (0700) for this run and names it in PROMETHEUS_MULTIPROC_DIR before any worker
starts, so every worker (and only this run's) writes its values there; a worker that
ended, however, is marked dead (its live gauges' files go: its open streams are no longer
open), and the directory is removed when the supervisor exits.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import logging
import os
import shutil
import socket
import sys
import tempfile
from typing import Any, NoReturn

from uvicorn import Config, Server
from uvicorn._types import ASGIReceiveCallable, ASGISendCallable, Scope
from uvicorn.config import STARTUP_FAILURE
from uvicorn.protocols.http import httptools_impl
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.supervisors import Multiprocess, multiprocess

from proxy import request_ids

logger = logging.getLogger("uvicorn.error")

# An OpenAI-shaped 408 for a client too slow to send its headers.
_HEADER_TIMEOUT_BODY = json.dumps({"error": {
    "message": "The request line and headers did not arrive in time.", "type": "invalid_request_error",
    "param": None, "code": "request_timeout"}}).encode()


def _header_timeout_response() -> bytes:
    """The 408 written straight to the socket: no headers arrived to take a client's id from."""
    return (b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\nconnection: close\r\n"
            b"x-request-id: " + request_ids.new_id().encode() + b"\r\n"
            b"content-length: " + str(len(_HEADER_TIMEOUT_BODY)).encode() + b"\r\n\r\n" + _HEADER_TIMEOUT_BODY)


_BUSY_BODY = json.dumps({"error": {
    "message": "The gateway is at its concurrency limit; retry shortly.", "type": "server_error",
    "param": None, "code": "server_busy"}}).encode()


async def _busy(scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable) -> None:
    request_id = request_ids.from_headers(list(scope["headers"]) if scope["type"] == "http" else [])
    await send({"type": "http.response.start", "status": 503, "headers": [
        (b"content-type", b"application/json"), (b"content-length", str(len(_BUSY_BODY)).encode()),
        (b"retry-after", b"1"), (b"connection", b"close"), (request_ids.HEADER, request_id.encode())]})
    await send({"type": "http.response.body", "body": _BUSY_BODY, "more_body": False})


# uvicorn answers past `limit_concurrency` with a plain-text app it looks up as a module
# global when the headers are complete; every answer of ours is OpenAI-shaped, so is this.
httptools_impl.service_unavailable = _busy  # type: ignore[attr-defined]


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
            self.transport.write(_header_timeout_response())
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


# -- workers: one SO_REUSEPORT socket each ------------------------------------------------
#
# uvicorn's supervisor binds one socket and hands it to every worker. All workers then wait
# on the same socket, and of a burst of connections (64 keep-alive connections opened at
# once) the worker that wakes first may accept most or all: one worker busy, the others
# idle, for as long as those connections live. With SO_REUSEPORT each
# worker listens on a socket of its own and the kernel picks the socket of each new
# connection by a hash of its addresses and ports, so connections spread evenly.
#
# The supervisor keeps no socket: a listening socket of its own in the group would get a
# share of the connections and accept none. It first checks that host:port is free (as
# uvicorn's own bind did: an error naming the address, exit code 3), because SO_REUSEPORT
# lets a process of the same user join sockets already listening there: without the check
# a second `modelport serve` on the same port would silently take half its connections.
# A process of another user cannot join (Linux requires the same effective uid), nor can
# a socket without SO_REUSEPORT. Left open: a second instance of the same user started
# within the second or so between this check and our workers' listen() would share.
#
# Worker sockets are closed one by one (a worker's restart, SIGHUP, shutdown); connections
# still in the closing socket's accept queue (not accepted yet: the workers accept at once)
# are reset unless net.ipv4.tcp_migrate_req=1 moves them to the other sockets.


def reuse_port(config: Config) -> bool:
    """Whether workers can listen on a SO_REUSEPORT socket each: Linux (where the kernel
    balances the sockets of a port; BSDs and macOS do not), a fixed TCP port (with port 0
    each worker would get a different one), and a uvicorn whose supervisor has the
    `Process.target` hook (0.30 and later). Otherwise: uvicorn's one shared socket."""
    return (sys.platform.startswith("linux") and hasattr(socket, "SO_REUSEPORT") and bool(config.port)
            and config.uds is None and config.fd is None
            and callable(getattr(getattr(multiprocess, "Process", None), "target", None)))


def _tcp_socket(host: str, reuse_port: bool) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET  # as uvicorn's Config.bind_socket
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    return sock


def check_port_free(config: Config) -> None:
    """Exit 3, naming the address, when anything listens on host:port already (another
    modelport included: the probe has no SO_REUSEPORT, so it cannot join their group).
    It listens for an instant, then closes: nothing is kept in the supervisor."""
    try:
        with _tcp_socket(config.host, reuse_port=False) as probe:
            probe.bind((config.host, config.port))
            probe.listen(1)
    except OSError as exc:
        _cannot_listen(config, exc)
    logger.info("Uvicorn running on http://%s (Press CTRL+C to quit)", _address(config))


def _address(config: Config) -> str:
    return f"[{config.host}]:{config.port}" if ":" in config.host else f"{config.host}:{config.port}"


def _cannot_listen(config: Config, exc: OSError) -> NoReturn:
    logger.error("cannot listen on %s: %s", _address(config), exc)
    sys.exit(STARTUP_FAILURE)


class WorkerProcess(multiprocess.Process):
    """uvicorn's worker, marked dead for the metrics once the supervisor has joined it
    (every way a worker ends passes there: a crash, a restart, SIGTTOU, shutdown)."""

    def join(self) -> None:
        super().join()
        path = os.environ.get(MULTIPROC_ENV)
        if path and self.pid is not None:
            from prometheus_client import multiprocess as prometheus_multiprocess

            prometheus_multiprocess.mark_process_dead(self.pid, path)  # type: ignore[no-untyped-call]


class ReusePortProcess(WorkerProcess):
    """A uvicorn worker that binds its own SO_REUSEPORT socket, in the worker, instead of
    using one inherited from the supervisor. It listens when uvicorn starts serving on it
    (after the app's start-up), so the kernel sends it no connection before it can answer.
    A failure to bind or listen is a start-up failure (exit 3: the supervisor stops rather
    than restarting the worker for ever), logged like uvicorn's own."""

    def target(self, sockets: list[socket.socket] | None = None) -> None:  # pragma: no cover (in the worker)
        try:
            sock = _tcp_socket(self.config.host, reuse_port=True)
            sock.bind((self.config.host, self.config.port))
        except OSError as exc:
            _cannot_listen(self.config, exc)
        try:
            super().target([sock])
        except OSError as exc:
            if self.server.started:
                raise
            _cannot_listen(self.config, exc)  # listen() refused: a socket without SO_REUSEPORT came first


def serve_workers(config: Config) -> None:
    """uvicorn's supervisor over `config.workers` workers, each on its own SO_REUSEPORT
    socket where `reuse_port` allows, else on one socket the supervisor binds and shares.
    Exit 3 when a worker failed to start (uvicorn's supervisor stops then, but returns)."""
    if reuse_port(config):
        check_port_free(config)
        multiprocess.Process = ReusePortProcess  # type: ignore[misc]  # what the supervisor starts
        supervisor = Multiprocess(config, sockets=[])
    else:
        multiprocess.Process = WorkerProcess  # type: ignore[misc]
        supervisor = Multiprocess(config, sockets=[config.bind_socket()])
    supervisor.run()
    if any(p.exitcode == STARTUP_FAILURE for p in supervisor.processes):
        sys.exit(STARTUP_FAILURE)


MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"  # as proxy.metrics (not imported here: see the docstring)


_METRICS_PREFIX = "modelport-metrics-"


def metrics_directory() -> str:
    """A fresh, empty, 0700 directory for this run's metrics, named in the environment the
    workers inherit (set before any of them imports prometheus_client). Directories that
    runs killed outright (SIGKILL: no chance to remove their own) left behind are removed
    first: their names carry the supervisor's pid, and only a dead one's go."""
    tmp = tempfile.gettempdir()
    for name in os.listdir(tmp):
        pid = name[len(_METRICS_PREFIX):].partition("-")[0]
        if name.startswith(_METRICS_PREFIX) and pid.isdigit() and not _alive(int(pid)):
            path = os.path.join(tmp, name)
            if os.path.isdir(path) and not os.path.islink(path) and os.stat(path).st_uid == os.getuid():
                shutil.rmtree(path, ignore_errors=True)
    path = tempfile.mkdtemp(prefix=f"{_METRICS_PREFIX}{os.getpid()}-")  # 0700, a new name
    os.environ[MULTIPROC_ENV] = path
    return path


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's: not ours to judge
    return True


def check_metrics_port_free(listen: str) -> None:
    """Exit 3 when `metrics.listen` is taken, as for the main port (the workers' sockets
    have SO_REUSEPORT: without the check, a second server would silently share it)."""
    host, _, port = listen.rpartition(":")
    host = host.strip("[]")
    try:
        with _tcp_socket(host, reuse_port=False) as probe:
            probe.bind((host, int(port)))
            probe.listen(1)
    except OSError as exc:
        logger.error("cannot listen on %s (metrics.listen): %s", listen, exc)
        sys.exit(STARTUP_FAILURE)


def read_handoff(fd: int) -> bytes:
    with os.fdopen(fd, "rb") as f:  # closes it: nothing else may inherit it
        return f.read()


def run(handoff: bytes) -> None:
    data = json.loads(handoff)
    s = data["settings"]
    from proxy.logs import uvicorn_log_config

    config = HandoffConfig(
        handoff, header_timeout=s["client_header_timeout"], host=s["host"], port=s["port"],
        workers=s["workers"], log_level=s["log_level"], log_config=uvicorn_log_config(s["log_format"]),
        access_log=False, proxy_headers=False, http="proxy.server:HeaderDeadlineProtocol",
        timeout_keep_alive=s["keep_alive_timeout"], limit_concurrency=s["max_concurrency"],
        timeout_graceful_shutdown=s["shutdown_grace_seconds"])
    metrics = s["metrics"]
    if metrics["enabled"] and metrics["listen"] and config.workers > 1:
        check_metrics_port_free(metrics["listen"])  # one worker binds it without SO_REUSEPORT: no check needed
    # One worker is one process: its own registry, no files (and uvicorn's single server
    # re-raises SIGTERM once stopped, which would leave a directory behind).
    directory = metrics_directory() if metrics["enabled"] and config.workers > 1 else None
    emulators = _start_emulators(data.get("emulators_fd"))
    try:
        server = Server(config)
        if config.workers > 1:
            serve_workers(config)
        else:
            server.run()
            if not server.started:
                sys.exit(3)  # uvicorn's STARTUP_FAILURE
    finally:
        if emulators is not None:
            emulators.stop()
        if directory is not None:
            shutil.rmtree(directory, ignore_errors=True)


def _start_emulators(fd: int | None) -> Any:
    """`serve --demo`: the vendor emulators on the loopback socket the CLI bound, in a
    thread of this process (the supervisor's, with several workers)."""
    if fd is None:
        return None
    from emulators.serve import start_in_thread

    sock = socket.socket(fileno=fd)
    sock.set_inheritable(False)  # the workers have no use for it
    served, _ = start_in_thread(sock)
    return served


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m proxy.server")
    parser.add_argument("--handoff-fd", type=int, required=True)
    run(read_handoff(parser.parse_args().handoff_fd))


if __name__ == "__main__":
    main()
