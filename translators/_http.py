"""All upstream I/O: one aiohttp session shared by every translator and tenant.

This is the only module that imports aiohttp (DESIGN §4: it measured ~10x faster
than httpx as a forwarder here). It also maps transport failures to `ApiError`
exactly once: timeouts -> 504, refused/reset/DNS -> 502. Messages name the upstream
host only, never the full URL, because some vendors carry tokens in the query.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import orjson

from translators.errors import ApiError, UpstreamError

Headers = Mapping[str, str]


@dataclass(frozen=True, slots=True)
class Timeouts:
    connect: float = 10.0
    read: float = 120.0     # longest silence between two bytes of a response
    total: float = 600.0    # a whole non-streamed exchange


@dataclass(frozen=True, slots=True)
class FilePart:
    field: str
    filename: str
    content: bytes
    content_type: str


@dataclass(slots=True)
class UpstreamResponse:
    status: int
    headers: Headers
    body: bytes

    def json(self) -> Any:
        """The body as JSON, or None when it is not JSON (vendors send HTML error pages too)."""
        try:
            return orjson.loads(self.body)
        except orjson.JSONDecodeError:
            return None

    def text(self) -> str:
        return self.body.decode("utf-8", "replace")


class UpstreamStream:
    """An open streamed response; iterate `chunks()` for the raw bytes as they arrive."""

    __slots__ = ("_resp", "status", "headers", "_host")

    def __init__(self, resp: aiohttp.ClientResponse, host: str) -> None:
        self._resp = resp
        self.status = resp.status
        self.headers: Headers = resp.headers
        self._host = host

    async def read(self) -> bytes:
        try:
            return await self._resp.read()
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            raise _transport_error(exc, self._host) from None

    async def chunks(self) -> AsyncIterator[bytes]:
        try:
            async for data in self._resp.content.iter_any():
                yield data
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            raise _transport_error(exc, self._host) from None


class WebSocketRejected(UpstreamError):
    """The server answered the websocket upgrade with an HTTP status instead of 101. The
    vendor module maps `upstream_status` (it knows what it means); unmapped, it is a 502."""

    def __init__(self, upstream_status: int, headers: Headers, host: str) -> None:
        super().__init__(502, f"the upstream at {host} refused the websocket (HTTP {upstream_status})",
                         "server_error", "upstream_error")
        self.upstream_status = upstream_status
        self.headers = headers


class UpstreamWebSocket:
    """An open websocket: `send_json` a frame, iterate `texts()` for the text frames until the
    server closes. Transport failures map like HTTP ones; binary frames are decoded as UTF-8."""

    __slots__ = ("_ws", "_host")

    def __init__(self, ws: aiohttp.ClientWebSocketResponse, host: str) -> None:
        self._ws = ws
        self._host = host

    async def send_json(self, payload: Any) -> None:
        try:
            await self._ws.send_str(orjson.dumps(payload).decode())
        except (aiohttp.ClientError, asyncio.TimeoutError, ConnectionError) as exc:
            raise _transport_error(exc, self._host) from None

    async def texts(self) -> AsyncIterator[str]:
        try:
            async for msg in self._ws:
                if msg.type == aiohttp.WSMsgType.TEXT:
                    yield msg.data
                elif msg.type == aiohttp.WSMsgType.BINARY:
                    yield msg.data.decode("utf-8", "replace")
                elif msg.type == aiohttp.WSMsgType.ERROR:
                    raise _transport_error(self._ws.exception() or ConnectionError(), self._host)
        except (aiohttp.ClientError, asyncio.TimeoutError, ConnectionError) as exc:
            raise _transport_error(exc, self._host) from None


def _host_of(url: str) -> str:
    parts = urlsplit(url)
    return parts.netloc.rsplit("@", 1)[-1] or "upstream"


def _transport_error(exc: BaseException, host: str) -> ApiError:
    if isinstance(exc, asyncio.TimeoutError | aiohttp.ServerTimeoutError):
        return UpstreamError(504, f"the upstream at {host} did not answer in time", "server_error",
                             "upstream_timeout")
    if isinstance(exc, aiohttp.ClientConnectorError):
        return UpstreamError(502, f"could not connect to the upstream at {host}", "server_error",
                             "upstream_unreachable")
    return UpstreamError(502, f"the connection to the upstream at {host} failed ({type(exc).__name__})",
                         "server_error", "upstream_connection_error")


class UpstreamClient:
    """The app-wide upstream client; created in the app's lifespan, closed at shutdown."""

    def __init__(self, timeouts: Timeouts | None = None) -> None:
        self.timeouts = timeouts or Timeouts()
        self._session: aiohttp.ClientSession | None = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            # Unlimited pool: the gateway's own concurrency limit is the client count,
            # and 1,000 slow streams must not queue behind aiohttp's default of 100.
            connector = aiohttp.TCPConnector(limit=0, ttl_dns_cache=300, keepalive_timeout=30)
            self._session = aiohttp.ClientSession(
                connector=connector, auto_decompress=True, skip_auto_headers=("User-Agent",),
                json_serialize=lambda obj: orjson.dumps(obj).decode())
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _timeout(self, streaming: bool) -> aiohttp.ClientTimeout:
        t = self.timeouts
        return aiohttp.ClientTimeout(total=None if streaming else t.total, connect=t.connect, sock_read=t.read)

    async def request(self, method: str, url: str, *, headers: Headers | None = None,
                      body: bytes | None = None, json: Any = None,
                      files: list[FilePart] | None = None, fields: list[tuple[str, str]] | None = None,
                      ) -> UpstreamResponse:
        """One whole exchange. `json` is encoded with orjson; `files`/`fields` make a multipart body."""
        data: Any = body
        hdrs = dict(headers or {})
        if json is not None:
            data = orjson.dumps(json)
            hdrs.setdefault("Content-Type", "application/json")
        elif files is not None:
            form = aiohttp.FormData()
            for name, value in fields or ():
                form.add_field(name, value)
            for part in files:
                form.add_field(part.field, part.content, filename=part.filename, content_type=part.content_type)
            data = form
        host = _host_of(url)
        try:
            async with self.session.request(method, url, data=data, headers=hdrs,
                                            timeout=self._timeout(False)) as resp:
                return UpstreamResponse(resp.status, resp.headers, await resp.read())
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            raise _transport_error(exc, host) from None

    async def post_json(self, url: str, payload: Any, headers: Headers | None = None) -> UpstreamResponse:
        return await self.request("POST", url, headers=headers, json=payload)

    @asynccontextmanager
    async def websocket(self, url: str, *, headers: Headers | None = None) -> AsyncIterator[UpstreamWebSocket]:
        """Open a websocket (TLS verified for wss://); leaving the block, normally, by error
        or by cancellation when the client went away, closes it. A refused upgrade raises
        `WebSocketRejected`; silence longer than the read timeout is a 504."""
        host = _host_of(url)
        timeout = aiohttp.ClientWSTimeout(ws_receive=self.timeouts.read, ws_close=self.timeouts.connect)
        try:
            async with asyncio.timeout(self.timeouts.connect):
                ws = await self.session.ws_connect(url, headers=headers, timeout=timeout, autoping=True)
        except aiohttp.WSServerHandshakeError as exc:
            raise WebSocketRejected(exc.status, exc.headers or {}, host) from None
        except (aiohttp.ClientError, asyncio.TimeoutError, ConnectionError) as exc:
            raise _transport_error(exc, host) from None
        try:
            yield UpstreamWebSocket(ws, host)
        finally:
            await ws.close()

    @asynccontextmanager
    async def stream(self, method: str, url: str, *, headers: Headers | None = None,
                     json: Any = None) -> AsyncIterator[UpstreamStream]:
        """Open a streamed response; leaving the block (normally, by error or by
        cancellation when the client went away) closes the upstream connection."""
        hdrs = dict(headers or {})
        data = None
        if json is not None:
            data = orjson.dumps(json)
            hdrs.setdefault("Content-Type", "application/json")
        host = _host_of(url)
        try:
            resp = await self.session.request(method, url, data=data, headers=hdrs, timeout=self._timeout(True))
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            raise _transport_error(exc, host) from None
        try:
            yield UpstreamStream(resp, host)
        finally:
            # A stream abandoned half-way must not go back to the pool: close it.
            if resp.content.at_eof():
                resp.release()
            else:
                resp.close()
