"""The upstream destination policy (translators/_destinations.py) and its enforcement in the
connector (translators/_http.py): decided on the resolved address, before any connection.

No test here sends a byte to a non-loopback address: the refusal decisions are checked
directly, and the connector tests replace the socket layer with a recorder that fails the
test if a refused address were ever dialled.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.abc import AbstractResolver, ResolveResult
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from emulators.server import ServedApp
from translators import _destinations
from translators._destinations import DestinationPolicy, Verdict, classify
from translators._http import UpstreamClient
from translators.errors import ApiError

ALWAYS_REFUSED = [
    "169.254.169.254", "169.254.170.2", "169.254.0.1", "100.100.100.200", "168.63.129.16", "0.0.0.0",
    "0.1.2.3", "224.0.0.1", "255.255.255.255", "240.0.0.1",
    "fe80::1", "fe80::1%2", "fd00:ec2::254", "ff02::1", "::",
    "::ffff:169.254.169.254", "::ffff:100.100.100.200", "64:ff9b::a9fe:a9fe", "2002:a9fe:a9fe::1",
]
PRIVATE = ["127.0.0.1", "127.8.9.10", "10.0.0.1", "172.16.0.1", "172.31.255.254", "192.168.1.1", "100.64.0.1",
           "::1", "fc00::1", "fd12:3456::1", "::ffff:127.0.0.1", "::ffff:10.1.2.3"]
PUBLIC = ["8.8.8.8", "172.32.0.1", "100.128.0.1", "1.1.1.1", "2001:4860:4860::8888", "::ffff:8.8.8.8"]


@pytest.mark.parametrize("address", ALWAYS_REFUSED)
def test_link_local_metadata_and_reserved_are_refused_by_every_policy(address: str) -> None:
    assert classify(ipaddress.ip_address(address)) is Verdict.REFUSED
    for policy in (DestinationPolicy("allow"), DestinationPolicy("allow", allow_hosts=["0.0.0.0/0", "::/0", "h"])):
        assert policy.refusal("h", address, 443) is not None


@pytest.mark.parametrize("address", PRIVATE)
def test_private_addresses_follow_the_setting(address: str) -> None:
    assert classify(ipaddress.ip_address(address)) is Verdict.PRIVATE
    assert DestinationPolicy("allow").refusal("h", address, 80) is None
    refusal = DestinationPolicy("deny").refusal("h", address, 80)
    assert refusal is not None and "private" in refusal and address not in refusal


@pytest.mark.parametrize("address", PUBLIC)
def test_public_addresses_pass(address: str) -> None:
    assert classify(ipaddress.ip_address(address)) is Verdict.PUBLIC
    assert DestinationPolicy("deny").refusal("h", address, 443) is None


def test_the_allow_list_takes_host_names_and_cidrs() -> None:
    policy = DestinationPolicy("deny", allow_hosts=["10.1.0.0/16", "TGI.internal.", "fd00:1::/32", "192.168.5.5"])
    assert policy.refusal("x", "10.1.2.3", 80) is None
    assert policy.refusal("x", "10.2.0.1", 80) is not None
    assert policy.refusal("tgi.internal", "10.9.9.9", 80) is None          # by name, any address it has
    assert policy.refusal("tgi.internal.", "127.0.0.1", 80) is None
    assert policy.refusal("other.internal", "10.9.9.9", 80) is not None
    assert policy.refusal("x", "fd00:1::5", 80) is None
    assert policy.refusal("x", "192.168.5.5", 80) is None
    assert policy.refusal("x", "192.168.5.6", 80) is not None
    # ... but never re-opens what is always refused, not even by name
    assert DestinationPolicy("deny", allow_hosts=["169.254.0.0/16", "meta"]).refusal("meta", "169.254.169.254",
                                                                                    80) is not None


def test_the_gateways_own_port_is_refused_on_loopback_and_its_own_address() -> None:
    policy = DestinationPolicy("allow", own_host="127.0.0.1", own_port=8080)
    for address in ("127.0.0.1", "127.0.0.2", "::1", "::ffff:127.0.0.1"):
        assert policy.refusal("localhost", address, 8080) == "the gateway itself"
    assert policy.refusal("localhost", "127.0.0.1", 8081) is None           # another loopback port: the setting
    assert policy.refusal("h", "10.0.0.1", 8080) is None                    # another machine's 8080
    bound = DestinationPolicy("allow", own_host="10.0.0.7", own_port=9000)
    assert bound.refusal("h", "10.0.0.7", 9000) == "the gateway itself"
    assert bound.refusal("h", "10.0.0.8", 9000) is None


def test_a_wildcard_listener_owns_every_local_address(monkeypatch: pytest.MonkeyPatch) -> None:
    local = frozenset({ipaddress.ip_address("10.0.0.7"), ipaddress.ip_address("fd00::7")})
    monkeypatch.setattr(_destinations, "_local_addresses", lambda: local)
    for host in ("0.0.0.0", "::", ""):
        policy = DestinationPolicy("allow", own_host=host, own_port=8080)
        assert policy.refusal("h", "10.0.0.7", 8080) == "the gateway itself"
        assert policy.refusal("h", "fd00::7", 8080) == "the gateway itself"
        assert policy.refusal("h", "127.0.0.1", 8080) == "the gateway itself"
        assert policy.refusal("h", "10.0.0.8", 8080) is None


@pytest.mark.skipif(not Path("/proc/net/fib_trie").exists(), reason="reads the local addresses Linux lists in /proc")
def test_the_local_addresses_include_loopback() -> None:
    assert ipaddress.ip_address("127.0.0.1") in _destinations._local_addresses()


def test_what_is_not_an_address_is_refused() -> None:
    assert DestinationPolicy("allow").refusal("h", "not-an-ip", 80) is not None


# -- enforced by the connector, on the resolved addresses --------------------------------------------


class MapResolver(AbstractResolver):
    """DNS for tests: each name resolves to the addresses given (the trick a tenant can
    play with a public name of its own pointing at a metadata or private address)."""

    def __init__(self, names: dict[str, list[str]]) -> None:
        self.names = names

    async def resolve(self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET,
                      ) -> list[ResolveResult]:
        return [ResolveResult(hostname=host, host=a, port=port, proto=0, flags=0,
                              family=socket.AF_INET6 if ":" in a else socket.AF_INET) for a in self.names[host]]

    async def close(self) -> None:
        pass


@pytest.fixture
def dialled(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Any]]:
    """Every address the connector dials; a non-loopback one fails the test before any packet."""
    from aiohttp import TCPConnector

    seen: list[Any] = []
    original = TCPConnector._wrap_create_connection

    async def recording(self: Any, *args: Any, addr_infos: list[Any], **kwargs: Any) -> Any:
        seen.extend(info[4][0] for info in addr_infos)
        assert all(ipaddress.ip_address(info[4][0]).is_loopback for info in addr_infos), addr_infos
        return await original(self, *args, addr_infos=addr_infos, **kwargs)

    monkeypatch.setattr(TCPConnector, "_wrap_create_connection", recording)
    yield seen


@pytest.fixture(scope="module")
def echo() -> Iterator[ServedApp]:
    async def answer(request: Request) -> JSONResponse:
        return JSONResponse({"ok": True})

    with ServedApp(Starlette(routes=[Route("/{p:path}", answer, methods=["GET", "POST"])])) as served:
        yield served


@pytest.fixture
async def client(echo: ServedApp) -> AsyncIterator[UpstreamClient]:
    resolver = MapResolver({"metadata.tenant.example": ["169.254.169.254"],
                            "v6meta.tenant.example": ["fd00:ec2::254"],
                            "mapped.tenant.example": ["::ffff:169.254.169.254"],
                            "mixed.tenant.example": ["169.254.169.254", "127.0.0.1"],
                            "private.tenant.example": ["127.0.0.1"]})
    http = UpstreamClient(policy=DestinationPolicy("deny", own_host="127.0.0.1", own_port=echo.port + 1),
                          resolver=resolver)
    yield http
    await http.close()


@pytest.mark.parametrize("url", [
    "http://metadata.tenant.example/latest/meta-data/", "http://v6meta.tenant.example/",
    "http://mapped.tenant.example/", "http://169.254.169.254/latest/meta-data/",
    "http://[::ffff:169.254.169.254]/", "http://[fd00:ec2::254]/", "http://100.100.100.200/",
    "http://[fe80::1]/", "http://0.0.0.0/",
])
async def test_refused_destinations_are_never_dialled(client: UpstreamClient, dialled: list[Any], url: str) -> None:
    with pytest.raises(ApiError) as caught:
        await client.post_json(url, {"prompt": "secret"}, {"Authorization": "Bearer sk-fake-never-sent"})
    err = caught.value
    assert (err.status, err.type, err.code) == (403, "permission_error", "upstream_destination_refused")
    assert "never allowed" in err.message and "sk-fake" not in err.message
    assert "169.254" not in err.message.replace(url.split("/")[2], "")  # the host is named, not where it resolved
    assert getattr(err, "sent", True) is False  # nothing left the gateway
    assert dialled == []


async def test_a_name_is_judged_by_what_it_resolves_to(client: UpstreamClient, dialled: list[Any],
                                                       echo: ServedApp) -> None:
    # private_networks is deny: a loopback address behind a harmless-looking name is refused...
    with pytest.raises(ApiError) as caught:
        await client.post_json(f"http://private.tenant.example:{echo.port}/", {})
    assert caught.value.code == "upstream_destination_refused" and "private" in caught.value.message
    assert "private.tenant.example" in caught.value.message
    assert dialled == []
    # ...and of a name's addresses, only the allowed ones are dialled (here: none once
    # 127.0.0.1 is private too, so nothing at all).
    with pytest.raises(ApiError):
        await client.post_json(f"http://mixed.tenant.example:{echo.port}/", {})
    assert dialled == []


async def test_refused_addresses_are_dropped_and_the_rest_used(echo: ServedApp, dialled: list[Any]) -> None:
    resolver = MapResolver({"mixed.tenant.example": ["169.254.169.254", "127.0.0.1"]})
    http = UpstreamClient(policy=DestinationPolicy("allow"), resolver=resolver)
    try:
        resp = await http.post_json(f"http://mixed.tenant.example:{echo.port}/", {})
    finally:
        await http.close()
    assert resp.status == 200 and dialled == ["127.0.0.1"]


async def test_the_gateways_own_port_is_refused_through_the_connector(echo: ServedApp, dialled: list[Any]) -> None:
    http = UpstreamClient(policy=DestinationPolicy("allow", own_host="127.0.0.1", own_port=echo.port))
    try:
        for url in (f"http://127.0.0.1:{echo.port}/admin/v1/tenants", f"http://localhost:{echo.port}/"):
            with pytest.raises(ApiError) as caught:
                await http.request("GET", url)
            assert caught.value.code == "upstream_destination_refused" and "the gateway itself" in caught.value.message
        with pytest.raises(ApiError) as caught:
            async with http.websocket(f"ws://127.0.0.1:{echo.port}/ws"):
                pass
        assert caught.value.code == "upstream_destination_refused"
    finally:
        await http.close()
    assert dialled == []
