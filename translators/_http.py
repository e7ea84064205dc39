"""All upstream I/O: one aiohttp session shared by every translator and tenant.

This is the only module that imports aiohttp (DESIGN §4: it measured ~10x faster
than httpx as a forwarder here). It also maps transport failures to `ApiError`
exactly once: timeouts -> 504, refused/reset/DNS -> 502. Messages name the upstream
host only, never the full URL, because some vendors carry tokens in the query.

What an upstream call may do is bounded here, once for every vendor (issue 10):
- Redirects are never followed (requests, streams, token exchanges and websockets): a
  redirect would re-send the credential headers (`x-api-key`, `api-key`) and the prompt
  to a host nobody configured, and show that host's answer to the tenant. A 3xx is a 502
  naming the status; the target's body is not read.
- Every connection goes through `_GuardedConnector`, which applies the destination policy
  (`_destinations.py`) to the addresses a host resolves to, when the connection is opened.
- Bodies are read up to `Limits.max_body_bytes`, stream lines up to `max_event_bytes`
  (the SSE decoder bounds whole events), websocket messages likewise: past a limit the
  call is a 502 and the connection is dropped, so memory per call stays bounded.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import orjson
from aiohttp.abc import AbstractResolver

from translators._destinations import DestinationPolicy
from translators._json import loads as bounded_json
from translators.errors import (
    ApiError,
    UpstreamError,
    not_sent,
    upstream_redirect,
    upstream_too_large,
)

Headers = Mapping[str, str]
MiB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class Timeouts:
    connect: float = 10.0
    read: float = 120.0     # longest silence between two bytes of a response
    total: float = 600.0    # a whole non-streamed exchange


@dataclass(frozen=True, slots=True)
class Limits:
    max_body_bytes: int = 8 * MiB    # a whole (decompressed) response body
    max_event_bytes: int = 4 * MiB   # one stream line or event, one websocket message


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
            return bounded_json(self.body)
        except orjson.JSONDecodeError:
            return None

    def text(self) -> str:
        return self.body.decode("utf-8", "replace")


class UpstreamStream:
    """An open streamed response; iterate `chunks()` for the raw bytes as they arrive.
    Decode events with `SSEDecoder(resp.max_event_bytes)`, so the operator's limit holds."""

    __slots__ = ("_resp", "status", "headers", "_host", "_limits")

    def __init__(self, resp: aiohttp.ClientResponse, host: str, limits: Limits = Limits()) -> None:
        self._resp = resp
        self.status = resp.status
        self.headers: Headers = resp.headers
        self._host = host
        self._limits = limits

    @property
    def max_event_bytes(self) -> int:
        return self._limits.max_event_bytes

    async def read(self) -> bytes:
        """The whole body (an error body, a JSON answer where a stream was asked for), bounded."""
        with transport_errors(self._host):
            return await _read_body(self._resp, self._limits.max_body_bytes, self._host)

    async def chunks(self) -> AsyncIterator[bytes]:
        """The body as it arrives. A line longer than `max_event_bytes` ends it with a 502:
        checked here, below every vendor's decoder, so no consumer (SSE decoder, a vendor
        sniffing the first bytes) can be made to buffer one endless line."""
        limit = self._limits.max_event_bytes
        run = 0  # bytes since the last line break
        with transport_errors(self._host):
            async for data in self._resp.content.iter_any():
                cut = max(data.rfind(b"\n"), data.rfind(b"\r"))
                run = len(data) - cut - 1 if cut >= 0 else run + len(data)
                if run > limit:
                    self._resp.close()
                    raise upstream_too_large("a stream line", limit, "max_event_bytes", self._host)
                yield data


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

    __slots__ = ("_ws", "_host", "_limit")

    def __init__(self, ws: aiohttp.ClientWebSocketResponse, host: str, limit: int) -> None:
        self._ws = ws
        self._host = host
        self._limit = limit  # aiohttp enforces it (max_msg_size); kept for the message

    async def send_json(self, payload: Any) -> None:
        with transport_errors(self._host):
            await self._ws.send_str(orjson.dumps(payload).decode())

    async def texts(self) -> AsyncIterator[str]:
        with transport_errors(self._host):
            async for msg in self._ws:
                if msg.type == aiohttp.WSMsgType.TEXT:
                    yield msg.data
                elif msg.type == aiohttp.WSMsgType.BINARY:
                    yield msg.data.decode("utf-8", "replace")
                elif msg.type == aiohttp.WSMsgType.ERROR:
                    exc = self._ws.exception()
                    if isinstance(exc, aiohttp.WebSocketError) and exc.code == aiohttp.WSCloseCode.MESSAGE_TOO_BIG:
                        raise upstream_too_large("a websocket message", self._limit, "max_event_bytes", self._host)
                    raise _transport_error(exc or ConnectionError(), self._host)


def _host_of(url: str) -> str:
    parts = urlsplit(url)
    return parts.netloc.rsplit("@", 1)[-1] or "upstream"


async def _read_body(resp: aiohttp.ClientResponse, limit: int, host: str) -> bytes:
    """The body, refused past `limit` bytes (counted after decompression, so a small
    gzip bomb is refused too) without reading the rest. One `read()` when the length is
    declared and nothing is compressed: the usual JSON answer pays nothing extra."""
    length = resp.content_length
    if length is not None and length > limit:
        resp.close()
        raise upstream_too_large("a body", limit, "max_body_bytes", host)
    if length is not None and "Content-Encoding" not in resp.headers:
        return await resp.read()
    parts: list[bytes] = []
    size = 0
    async for data in resp.content.iter_any():
        size += len(data)
        if size > limit:
            resp.close()
            raise upstream_too_large("a body", limit, "max_body_bytes", host)
        parts.append(data)
    return b"".join(parts)


def _refuse_redirect_response(resp: aiohttp.ClientResponse, host: str) -> None:
    """A 3xx (not followed: `allow_redirects=False`) ends the call, its body unread."""
    if 300 <= resp.status < 400:
        resp.close()
        raise upstream_redirect(resp.status, host)


class DestinationRefused(aiohttp.ClientConnectionError):
    """Raised by the connector before a refused address is connected to (not an OSError,
    so aiohttp passes it through instead of wrapping it as a DNS failure)."""

    def __init__(self, host: str, reason: str) -> None:
        super().__init__(host, reason)
        self.host, self.reason = host, reason


class _RedirectRefused(aiohttp.ClientError):
    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


class _GuardedConnector(aiohttp.TCPConnector):
    """aiohttp's connector, with the destination policy applied to the resolved addresses.
    `_resolve_host` is where both a DNS answer (cached or fresh) and an IP literal in the
    URL pass before aiohttp connects, so nothing reaches a socket unchecked; refused
    addresses are dropped, and when none is left the call fails without connecting."""

    def __init__(self, policy: DestinationPolicy, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._policy = policy

    async def _resolve_host(self, host: str, port: int, traces: Any = None) -> Any:
        resolved = await super()._resolve_host(host, port, traces=traces)
        allowed: list[Any] = []
        reason = ""
        for entry in resolved:
            refusal = self._policy.refusal(host, entry["host"], entry["port"] or port)
            if refusal is None:
                allowed.append(entry)
            else:
                reason = reason or refusal
        if not allowed:
            raise DestinationRefused(host, reason or "no address")
        return allowed


async def _refuse_redirect(session: aiohttp.ClientSession, ctx: Any,
                           params: aiohttp.TraceRequestRedirectParams) -> None:
    # For websockets, whose `ws_connect` has no allow_redirects: aiohttp signals a redirect
    # before following it, and an exception here stops it there.
    params.response.close()
    raise _RedirectRefused(params.response.status)


@contextmanager
def transport_errors(host: str) -> Iterator[None]:
    """Transport failures inside become the gateway's errors (`_transport_error`): the one
    place where aiohttp's and the socket's exceptions are caught."""
    try:
        yield
    except (aiohttp.ClientError, asyncio.TimeoutError, ConnectionError) as exc:
        raise _transport_error(exc, host) from None


def _transport_error(exc: BaseException, host: str) -> ApiError:
    if isinstance(exc, DestinationRefused):
        # A 4xx, not a 502: the answer is the same on every retry (the openai SDK retries
        # 5xx), and only a change of the provider's base_url or of the operator's policy
        # fixes it. The credential never left the gateway, and the message names the
        # host but not the address it resolved to.
        return not_sent(UpstreamError(
            403, f"the upstream at {host} is not an allowed destination: it is {exc.reason} (the gateway's "
                 "upstream destination policy)", "permission_error", "upstream_destination_refused"))
    if isinstance(exc, _RedirectRefused):
        return upstream_redirect(exc.status, host)
    if isinstance(exc, asyncio.TimeoutError | aiohttp.ServerTimeoutError):
        late = UpstreamError(504, f"the upstream at {host} did not answer in time", "server_error", "upstream_timeout")
        return not_sent(late) if isinstance(exc, aiohttp.ConnectionTimeoutError) else late  # no connection: not sent
    if isinstance(exc, aiohttp.ClientConnectorError):
        return not_sent(UpstreamError(502, f"could not connect to the upstream at {host}", "server_error",
                                      "upstream_unreachable"))
    return UpstreamError(502, f"the connection to the upstream at {host} failed ({type(exc).__name__})",
                         "server_error", "upstream_connection_error")


class UpstreamClient:
    """The app-wide upstream client; created in the app's lifespan, closed at shutdown."""

    def __init__(self, timeouts: Timeouts | None = None, limits: Limits | None = None,
                 policy: DestinationPolicy | None = None, resolver: AbstractResolver | None = None,
                 ) -> None:
        self.timeouts = timeouts or Timeouts()
        self.limits = limits or Limits()
        # The default policy (private networks allowed, nothing about our own port) is for
        # tests and scripts; the app passes the operator's (`UpstreamSettings.client`).
        self.policy = policy or DestinationPolicy()
        self._resolver = resolver  # None: aiohttp's own; another for tests (names -> chosen addresses)
        self._session: aiohttp.ClientSession | None = None
        self._ws_session: aiohttp.ClientSession | None = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            # Unlimited pool: the gateway's own concurrency limit is the client count,
            # and 1,000 slow streams must not queue behind aiohttp's default of 100.
            connector = _GuardedConnector(self.policy, limit=0, ttl_dns_cache=300, keepalive_timeout=30,
                                          resolver=self._resolver)
            self._session = aiohttp.ClientSession(
                connector=connector, auto_decompress=True, skip_auto_headers=("User-Agent",),
                json_serialize=lambda obj: orjson.dumps(obj).decode())
        return self._session

    @property
    def _websockets(self) -> aiohttp.ClientSession:
        """A second session on the same connector, only for websockets: its trace hook
        refuses redirects (see `_refuse_redirect`); the HTTP path pays for no tracing."""
        if self._ws_session is None:
            trace = aiohttp.TraceConfig()
            trace.on_request_redirect.append(_refuse_redirect)
            self._ws_session = aiohttp.ClientSession(
                connector=self.session.connector, connector_owner=False, skip_auto_headers=("User-Agent",),
                trace_configs=[trace])
        return self._ws_session

    async def close(self) -> None:
        if self._ws_session is not None:
            await self._ws_session.close()
            self._ws_session = None
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
        with transport_errors(host):
            async with self.session.request(method, url, data=data, headers=hdrs, allow_redirects=False,
                                            timeout=self._timeout(False)) as resp:
                _refuse_redirect_response(resp, host)
                return UpstreamResponse(resp.status, resp.headers,
                                        await _read_body(resp, self.limits.max_body_bytes, host))

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
                ws = await self._websockets.ws_connect(url, headers=headers, timeout=timeout, autoping=True,
                                                       max_msg_size=self.limits.max_event_bytes)
        except aiohttp.WSServerHandshakeError as exc:
            if 300 <= exc.status < 400:  # a 3xx aiohttp does not follow (300, 304...)
                raise upstream_redirect(exc.status, host) from None
            raise WebSocketRejected(exc.status, exc.headers or {}, host) from None
        except (aiohttp.ClientError, asyncio.TimeoutError, ConnectionError) as exc:
            raise _transport_error(exc, host) from None
        try:
            yield UpstreamWebSocket(ws, host, self.limits.max_event_bytes)
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
        with transport_errors(host):
            resp = await self.session.request(method, url, data=data, headers=hdrs, allow_redirects=False,
                                              timeout=self._timeout(True))
        _refuse_redirect_response(resp, host)
        try:
            yield UpstreamStream(resp, host, self.limits)
        finally:
            # A stream abandoned half-way must not go back to the pool: close it.
            if resp.content.at_eof():
                resp.release()
            else:
                resp.close()
