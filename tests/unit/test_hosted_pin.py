"""The hosted credential's destination pin and the "was anything sent" count that decides
refunds (`proxy/hosted.py` `PinnedClient`, `UpstreamError.sent` from `translators/_http.py`),
against real sockets on loopback: a closed port, a server that never answers, one that does."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest

from proxy.hosted import PinnedClient, build_offers, origin_of
from proxy.settings import HostedSettings
from emulators.server import free_port
from translators._http import Timeouts, UpstreamClient
from translators.errors import UpstreamError, not_sent

KEY = "sk-platform-0123456789abcdef"


@contextlib.asynccontextmanager
async def tcp_server(reply: bytes | None) -> AsyncIterator[int]:
    """A loopback server that reads the request and answers `reply` (None: never answers)."""
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        if reply is None:
            await asyncio.sleep(30)
        else:
            writer.write(reply)
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()


OK = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}"


@pytest.fixture
async def http() -> AsyncIterator[UpstreamClient]:
    client = UpstreamClient(Timeouts(connect=2.0, read=0.3, total=2.0))
    yield client
    await client.close()


def pinned(http: UpstreamClient, port: int) -> PinnedClient:
    entry = HostedSettings(credentials={"api_key": KEY, "base_url": f"http://127.0.0.1:{port}/v1"}, quota=1,
                           models=["gpt-3.5-turbo"])
    offer = build_offers({"openai": entry})["openai"]
    return offer.pinned(http)


def test_origins_are_scheme_host_and_port_with_default_ports() -> None:
    assert origin_of("https://API.openai.com/v1") == ("https", "api.openai.com", 443)
    assert origin_of("https://api.openai.com:443/x") == origin_of("https://api.openai.com")
    assert origin_of("http://api.openai.com/v1") != origin_of("https://api.openai.com/v1")
    assert origin_of("wss://spark-api.xf-yun.com/v3.5/chat") == ("wss", "spark-api.xf-yun.com", 443)
    assert origin_of("https://api.openai.com.evil.test/v1") != origin_of("https://api.openai.com/v1")
    assert origin_of("https://api.openai.com@evil.test/v1") == ("https", "evil.test", 443)
    for bad in ("/v1/chat", "file:///etc/passwd", "http://x:port/", ""):
        assert origin_of(bad) is None
    offer = build_offers({"openai": HostedSettings(credentials={"api_key": KEY}, quota=1, models=["m"])})["openai"]
    assert offer.origins == {("https", "api.openai.com", 443)}  # no base_url: the provider's default only


async def test_another_destination_is_refused_before_connecting(http: UpstreamClient) -> None:
    async with tcp_server(OK) as port, tcp_server(OK) as other:
        client = pinned(http, port)
        for url in (f"http://127.0.0.1:{other}/v1/chat/completions", f"https://127.0.0.1:{port}/v1",
                    f"http://localhost:{port}/v1", "http://169.254.169.254/latest/meta-data/"):
            with pytest.raises(UpstreamError) as exc:
                await client.post_json(url, {"model": "m"}, {"Authorization": f"Bearer {KEY}"})
            assert (exc.value.status, exc.value.code, exc.value.sent) == (502, "hosted_destination_refused", False)
            assert KEY not in exc.value.message and str(other) not in exc.value.message
            with pytest.raises(UpstreamError, match="configured upstream"):
                async with client.stream("POST", url, json={}):
                    pass
            with pytest.raises(UpstreamError, match="configured upstream"):
                async with client.websocket(url.replace("http", "ws", 1)):
                    pass
        assert client.attempts == 0
        resp = await client.post_json(f"http://127.0.0.1:{port}/v1/chat/completions", {"model": "m"})
        assert resp.status == 200 and client.attempts == 1


async def test_a_connection_never_made_is_not_sent_and_gives_its_attempt_back(http: UpstreamClient) -> None:
    port = free_port()  # nothing listens there
    client = pinned(http, port)
    with pytest.raises(UpstreamError) as exc:
        await client.post_json(f"http://127.0.0.1:{port}/v1/chat/completions", {})
    assert (exc.value.code, exc.value.sent, client.attempts) == ("upstream_unreachable", False, 0)
    with pytest.raises(UpstreamError) as exc:
        async with client.stream("POST", f"http://127.0.0.1:{port}/v1/chat/completions", json={}):
            pass
    assert (exc.value.sent, client.attempts) == (False, 0)


async def test_a_timeout_after_sending_counts_as_sent(http: UpstreamClient) -> None:
    async with tcp_server(None) as port:
        client = pinned(http, port)
        with pytest.raises(UpstreamError) as exc:
            await client.post_json(f"http://127.0.0.1:{port}/v1/chat/completions", {})
        assert (exc.value.status, exc.value.sent, client.attempts) == (504, True, 1)


async def test_an_error_inside_an_opened_stream_is_no_news_about_the_connection(http: UpstreamClient) -> None:
    async with tcp_server(OK) as port:
        client = pinned(http, port)
        with pytest.raises(UpstreamError):
            async with client.stream("POST", f"http://127.0.0.1:{port}/v1/chat/completions", json={}):
                raise not_sent(UpstreamError(502, "raised by the caller's own code, not the connection"))
        assert client.attempts == 1


async def test_the_shared_session_is_not_reachable_and_the_shared_client_is_not_closed(
        http: UpstreamClient) -> None:
    client = pinned(http, 1)
    assert client.timeouts is http.timeouts  # the rest is the shared client's
    with pytest.raises(RuntimeError):
        _ = client.session
    await client.close()
    async with tcp_server(OK) as port:
        assert (await http.post_json(f"http://127.0.0.1:{port}/", {})).status == 200


@pytest.mark.parametrize(("fields", "host"), [
    ({"app_id": "fake-app", "api_key": "fake-key", "api_secret": "fake-secret"}, "spark-api.xf-yun.com"),
    ({"api_password": "fake-spark-password"}, "spark-api-open.xf-yun.com"),
])
def test_a_provider_with_two_apis_is_pinned_to_the_one_its_credential_speaks(fields: dict[str, str],
                                                                            host: str) -> None:
    # Spark's websocket and HTTP APIs live on different hosts: the pin must follow the
    # credential, or a hosted HTTP-API Spark would be refused on every call.
    entry = HostedSettings(credentials=fields, quota=1, models=["spark-lite"])
    offer = build_offers({"spark": entry})["spark"]
    assert {origin[1] for origin in offer.origins} == {host}
