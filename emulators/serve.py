"""Serving the emulators: one vendor at the root, or every one under `/NAME` on one port
(`modelport emulate VENDOR|all`), and what to tell a client about each."""

from __future__ import annotations

import collections
import socket
from dataclasses import dataclass
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Mount, Route
from starlette.types import ASGIApp

from emulators.catalog import EMULATORS, Emulator
from emulators.inject import Emulated, quiet_resets
from emulators.server import ServedApp

__all__ = ["ALL", "Served", "build", "describe", "emulator_app", "serve_forever"]

ALL = "all"
RECORDS_KEPT = 100


@dataclass(frozen=True)
class Served:
    """One emulator as a running server holds it: its state and its wrapped app."""

    emulator: Emulator
    state: Any
    app: ASGIApp


def build(name: str, *, reply: str | None = None, auto_tools: bool = True) -> Served:
    emulator = EMULATORS[name]
    state, app = emulator.make()
    _bound_records(state)
    wrapped = Emulated(app, emulator.faults, default_model=emulator.default_model, reply=reply,
                       auto_tools=auto_tools, websocket_answer=emulator.websocket_faults)
    return Served(emulator, state, wrapped)


class _Recent(collections.OrderedDict[str, Any]):
    """A dict of what was made by id (predictions, tokens, stored answers) that forgets the
    oldest past `limit`: a client asking for one that old gets the vendor's "not found"."""

    def __init__(self, items: dict[str, Any], limit: int) -> None:
        super().__init__(items)
        self.limit = limit

    def __setitem__(self, key: str, value: Any) -> None:
        super().__setitem__(key, value)
        while len(self) > self.limit:
            self.popitem(last=False)


# What a state adds to at every request (the tests read them); a long-running emulator keeps
# the last RECORDS_KEPT of each. The other lists of a state are scripting, set by a test.
OBSERVATIONS = frozenset({"requests", "http_requests", "organizations", "queries", "effective", "embedding_batches",
                          "canceled", "handshakes", "rejected", "frames", "jwt_payloads"})
MADE_BY_ID = frozenset({"responses", "predictions", "tokens"})
ITEMS_KEPT = 10_000


def _bound_records(state: Any) -> None:
    """A long-running emulator's memory stays bounded: the tests' bare states keep every
    observation for inspection, a served one the last few."""
    for name, value in vars(state).items():
        if name in OBSERVATIONS and isinstance(value, list):
            setattr(state, name, collections.deque(value, maxlen=RECORDS_KEPT))
        elif name in MADE_BY_ID and isinstance(value, dict):
            setattr(state, name, _Recent(value, ITEMS_KEPT))


def describe(root: str, names: list[str], *, prefixed: bool) -> list[dict[str, Any]]:
    """Per emulator: the `base_url` a vendor SDK takes, its credential, the gateway's fields."""
    rows = []
    for name in names:
        emulator = EMULATORS[name]
        served_root = f"{root}/{name}" if prefixed else root
        rows.append({"name": name, "provider": emulator.provider, "title": emulator.title,
                     "base_url": served_root + emulator.client_path, "credential": dict(emulator.credential),
                     "gateway_credential": emulator.gateway_credential(served_root),
                     "note": emulator.note})
    return rows


def emulator_app(names: list[str], *, reply: str | None = None, auto_tools: bool = True) -> tuple[ASGIApp, dict[str, Served]]:
    """One vendor's app at the root, or several under `/NAME` with an index at `/`."""
    served = {name: build(name, reply=reply, auto_tools=auto_tools) for name in names}
    if len(names) == 1:
        return served[names[0]].app, served

    async def index(request: Request) -> JSONResponse:
        root = str(request.base_url).rstrip("/")
        return JSONResponse({"emulators": describe(root, names, prefixed=True)})

    routes: list[Any] = [Route("/", index)] + [Mount(f"/{name}", app=s.app) for name, s in served.items()]
    return Starlette(routes=routes), served


def _root(host: str, port: int) -> str:
    shown = "127.0.0.1" if host in ("0.0.0.0", "") else host
    return f"http://[{shown}]:{port}" if ":" in shown else f"http://{shown}:{port}"


def serve_forever(names: list[str], host: str, port: int, *, reply: str | None = None) -> int:
    """`modelport emulate`: serve until interrupted, after printing where each one is."""
    import uvicorn

    quiet_resets()
    app, _ = emulator_app(names, reply=reply)
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        print(f"modelport emulate: cannot listen on {host}:{port}: {exc.strerror}", flush=True)
        return 3
    sock.listen(128)
    root = _root(host, sock.getsockname()[1])
    print(f"modelport emulate: serving {', '.join(names)} on {root}", flush=True)
    for row in describe(root, names, prefixed=len(names) > 1):
        credential = " ".join(f"{k}={v}" for k, v in row["credential"].items()) or "(no key)"
        print(f"  {row['name']:<18} base_url={row['base_url']}  {credential}", flush=True)
        if row["note"]:
            print(f"  {'':<18} {row['note']}", flush=True)
    config = uvicorn.Config(app, log_level="warning", lifespan="off", ws="websockets")
    uvicorn.Server(config).run(sockets=[sock])
    return 0


def start_in_thread(sock: socket.socket | None = None, names: list[str] | None = None) -> tuple[ServedApp, dict[str, Served]]:
    """Every emulator under `/NAME` in a background thread (the demo, the tests)."""
    quiet_resets()
    app, served = emulator_app(names or list(EMULATORS))
    return ServedApp(app, sock=sock).start(), served
