"""What an upstream answer can make the gateway do (translators/_http.py, _sse.py, errors.py):
no redirect is followed, reads are bounded, non-JSON error bodies are not relayed, and
derived secrets are scrubbed. Upstreams here are raw loopback sockets, so a test controls
every byte (a redirect, a declared length, a gzip bomb, a line that never ends)."""

from __future__ import annotations

import asyncio
import gzip
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import pytest

from translators._http import Limits, UpstreamClient
from translators._sse import SSEDecoder
from translators.errors import (
    NON_JSON_BODY,
    ApiError,
    UpstreamError,
    body_text,
    not_sent,
    scrubbing,
    upstream_status_error,
)

Writer = Callable[[asyncio.StreamWriter], Awaitable[None]]


@dataclass
class RawUpstream:
    """A loopback HTTP/1.1 server answering every request with `answer`; records the heads."""

    answer: Writer
    heads: list[bytes] = field(default_factory=list)
    server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            self.heads.append(head)
            length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                           if line.lower().startswith(b"content-length:")), 0)
            await reader.readexactly(length)
            await self.answer(writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the gateway hung up on us: what most tests want
        finally:
            writer.close()

    async def __aenter__(self) -> RawUpstream:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()


def fixed(status: str, headers: dict[str, str], body: bytes = b"") -> Writer:
    async def write(writer: asyncio.StreamWriter) -> None:
        lines = [f"HTTP/1.1 {status}", *(f"{k}: {v}" for k, v in headers.items()), "Connection: close", "", ""]
        writer.write("\r\n".join(lines).encode() + body)
        await writer.drain()
    return write


def endless(first: bytes, piece: bytes, total: int, content_type: str = "text/event-stream") -> Writer:
    """A 200 whose body is `first` then `piece` repeated up to `total` bytes, without a length."""
    async def write(writer: asyncio.StreamWriter) -> None:
        writer.write(f"HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nConnection: close\r\n\r\n".encode() + first)
        sent = 0
        while sent < total:
            writer.write(piece)
            sent += len(piece)
            await writer.drain()
    return write


@pytest.fixture
async def http() -> AsyncIterator[UpstreamClient]:
    client = UpstreamClient(limits=Limits(max_body_bytes=64 * 1024, max_event_bytes=16 * 1024))
    yield client
    await client.close()


# -- redirects ------------------------------------------------------------------------------------


@pytest.mark.parametrize("status", ["301 Moved Permanently", "302 Found", "303 See Other", "307 Temporary Redirect",
                                    "308 Permanent Redirect", "300 Multiple Choices"])
async def test_a_redirect_is_a_502_and_never_followed(http: UpstreamClient, status: str) -> None:
    async with RawUpstream(fixed("200 OK", {"Content-Length": "20"}, b'{"from": "target!!"}')) as target:
        moved = fixed(status, {"Location": target.url + "/elsewhere", "Content-Length": "11"}, b"target body")
        async with RawUpstream(moved) as upstream:
            with pytest.raises(ApiError) as caught:
                await http.post_json(upstream.url + "/v1/messages", {"prompt": "p"}, {"x-api-key": "sk-fake-1"})
            assert (caught.value.status, caught.value.code) == (502, "upstream_redirect")
            assert status[:3] in caught.value.message and "target" not in caught.value.message
            with pytest.raises(ApiError) as caught:
                async with http.stream("POST", upstream.url + "/s", headers={"api-key": "fake-2"}, json={}):
                    pass
            assert caught.value.code == "upstream_redirect"
            with pytest.raises(ApiError) as caught:
                async with http.websocket(upstream.url.replace("http", "ws") + "/ws", headers={"api-key": "fake-3"}):
                    pass
            assert caught.value.code == "upstream_redirect" and status[:3] in caught.value.message
        assert target.heads == []


# -- bounded reads --------------------------------------------------------------------------------


async def test_a_declared_length_past_the_limit_is_refused_unread(http: UpstreamClient) -> None:
    async with RawUpstream(fixed("200 OK", {"Content-Length": str(10**9)}, b"{")) as upstream:
        with pytest.raises(ApiError) as caught:
            await http.post_json(upstream.url, {})
    assert (caught.value.status, caught.value.code) == (502, "upstream_response_too_large")
    assert "max_body_bytes" in caught.value.message


async def test_an_undeclared_body_past_the_limit_is_cut(http: UpstreamClient) -> None:
    async with RawUpstream(endless(b"[", b"1," * 4096, 10 * 1024 * 1024, "application/json")) as upstream:
        with pytest.raises(ApiError) as caught:
            await http.post_json(upstream.url, {})
    assert caught.value.code == "upstream_response_too_large"


async def test_a_gzip_bomb_is_counted_after_decompression(http: UpstreamClient) -> None:
    bomb = gzip.compress(b" " * (4 * 1024 * 1024))
    assert len(bomb) < 64 * 1024
    answer = fixed("200 OK", {"Content-Length": str(len(bomb)), "Content-Encoding": "gzip"}, bomb)
    async with RawUpstream(answer) as upstream:
        with pytest.raises(ApiError) as caught:
            await http.post_json(upstream.url, {})
    assert caught.value.code == "upstream_response_too_large"


async def test_a_body_within_the_limit_is_read_whole(http: UpstreamClient) -> None:
    body = b'{"ok": "' + b"x" * 60_000 + b'"}'
    async with RawUpstream(fixed("200 OK", {"Content-Length": str(len(body))}, body)) as upstream:
        assert (await http.post_json(upstream.url, {})).body == body
    async with RawUpstream(endless(b"", b"y" * 1000, 60_000, "text/plain")) as upstream:
        assert len((await http.request("GET", upstream.url)).body) == 60_000


async def test_a_stream_line_past_the_limit_ends_the_stream(http: UpstreamClient) -> None:
    async with RawUpstream(endless(b"data: {\"a\": \"", b"z" * 4096, 50 * 1024 * 1024)) as upstream:
        with pytest.raises(ApiError) as caught:
            async with http.stream("GET", upstream.url) as resp:
                async for _ in resp.chunks():
                    pass
    assert (caught.value.status, caught.value.code) == (502, "upstream_response_too_large")
    assert "max_event_bytes" in caught.value.message


async def test_short_lines_stream_on_without_limit(http: UpstreamClient) -> None:
    async with RawUpstream(endless(b"", b"data: {}\n\n" * 100, 1024 * 1024)) as upstream:
        async with http.stream("GET", upstream.url) as resp:
            decoder = SSEDecoder(resp.max_event_bytes)
            events = [e async for data in resp.chunks() for e in _feed(decoder, data)]
    assert len(events) >= 100_000


def _feed(decoder: SSEDecoder, data: bytes) -> list[object]:
    return list(decoder.feed(data))


def test_the_sse_decoder_bounds_one_line_and_one_event() -> None:
    decoder = SSEDecoder(1000)
    decoder.feed(b"data: " + b"a" * 900)
    with pytest.raises(UpstreamError) as caught:
        decoder.feed(b"a" * 200)
    assert caught.value.code == "upstream_response_too_large"
    decoder = SSEDecoder(1000)
    with pytest.raises(UpstreamError):
        for _ in range(20):  # many short data lines, never a blank line: one growing event
            decoder.feed(b"data: " + b"b" * 90 + b"\n")
    decoder = SSEDecoder(1000)
    for _ in range(100):  # the same volume as whole events is fine: the count restarts per event
        assert [e.data for e in decoder.feed(b"data: " + b"c" * 90 + b"\n\n")] == [b"c" * 90]


# -- what of an error body reaches the client -----------------------------------------------------


def test_a_non_json_error_body_is_not_relayed() -> None:
    html = b"<html><body><h1>502 Bad Gateway</h1>nginx internal-host-42</body></html>"
    assert body_text(html) == NON_JSON_BODY
    assert body_text(html, plain_text=True) == NON_JSON_BODY          # markup: never
    assert body_text(b"line one\nline two", plain_text=True) == NON_JSON_BODY
    assert body_text(b"x" * 500, plain_text=True) == NON_JSON_BODY
    assert body_text(b"Failed to deserialize the JSON body", plain_text=True) == "Failed to deserialize the JSON body"
    err = upstream_status_error("openai", 502, body_text(html))
    assert err.status == 502 and "HTTP 502" in err.message and "not JSON" in err.message and "nginx" not in err.message
    assert len(upstream_status_error("openai", 400, "m" * 10_000).message) < 1100


def test_scrubbing_keeps_the_error_and_removes_derived_secrets() -> None:
    jwt = "eyJhbGciOiJIUzI1NiIsInNpZ25fdHlwZSI6IlNJR04ifQ.eyJhcGlfa2V5IjoiaWQiLCJleHAiOjF9.c2lnbmF0dXJlLXNpZw"
    ernie = "24.0123456789abcdef0123456789abcdef.2592000.1700000000.282335-12345678"
    message = (f"bad token {jwt}; url /chat?access_token={ernie}&x=1; "
               "wss://spark/v3.5/chat?authorization=YXBpX2tleT0ia2V5Ig%3D%3D&date=now; Bearer r8_fakefakefake12")
    err = not_sent(UpstreamError(401, message, "authentication_error", "bad"))
    clean = err.scrubbed(())
    assert isinstance(clean, UpstreamError) and clean.sent is False and (clean.status, clean.code) == (401, "bad")
    for secret in (jwt, ernie, "YXBpX2tleT0ia2V5Ig", "r8_fakefakefake12"):
        assert secret not in clean.message
    assert "access_token=***" in clean.message and "x=1" in clean.message
    with pytest.raises(UpstreamError) as caught, scrubbing("derived-value-1234"):
        raise UpstreamError(400, "echo: derived-value-1234")
    assert caught.value.message == "echo: ***"
