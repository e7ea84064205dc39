"""Several credentials per provider (issue 13): weighted round-robin, a rate-limited key
sitting out for its Retry-After on every worker, a failing key skipped by the retry, a
rejected key marked invalid until changed. A second fake OpenAI plays the bad key's
account; the official openai SDK and httpx are the clients."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import socket
import struct
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

from tests.e2e.harness import GatewayProcess
from tests.fakes.azure_fixtures import FakeAzure
from tests.fakes.fixtures import FakeOpenAI, served_fake_openai
from emulators.server import free_port

HI: list[ChatCompletionMessageParam] = [{"role": "user", "content": "hi"}]
KEY_A = "sk-test-balance-a-000000000000000001"
KEY_B = "sk-test-balance-b-000000000000000002"


@pytest.fixture(scope="module")
def other_fake() -> Iterator[FakeOpenAI]:
    with served_fake_openai() as fake:
        yield fake


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    gateway = GatewayProcess(tmp_path_factory.mktemp("balance"), workers=2, settings={
        "routing": {"retries": 2, "backoff_base": 0.01, "backoff_max": 0.02, "cooldown": 60}})
    with gateway.running():
        yield gateway


@pytest.fixture
def tenant(gw: GatewayProcess, fake_openai: FakeOpenAI, other_fake: FakeOpenAI) -> Iterator[str]:
    other_fake.reset()
    fake_openai.state.api_keys.update({KEY_A, KEY_B})
    other_fake.state.api_keys.update({KEY_A, KEY_B})
    name = f"bal-{time.monotonic_ns() % 10**9}"
    gw.cli("tenants", "create", name)
    gw.tokens[name] = gw.new_token(name)
    try:
        yield name
    finally:
        gw.cli("tenants", "delete", name, check=False)


def setup(gw: GatewayProcess, tenant: str, *credentials: tuple[str, str, str, int]) -> None:
    for name, key, base_url, weight in credentials:
        gw.cli("providers", "set", tenant, "openai", "--name", name, "--weight", str(weight), f"api_key={key}",
               f"base_url={base_url}")
    gw.cli("defaults", "set", tenant, "llm", "openai/gpt-4o-mini")
    time.sleep(0.6)  # both workers reload the tenant (change poll 0.2 s)


def admin(gw: GatewayProcess) -> httpx.Client:
    return httpx.Client(base_url=gw.base_url + "/admin/v1", timeout=10,
                        headers={"Authorization": f"Bearer {gw.admin_token()}"})


def keys_seen(fake: FakeOpenAI) -> list[str]:
    return [r.headers.get("authorization", "").removeprefix("Bearer ")
            for r in fake.state.requests_to("/v1/chat/completions")]


def test_equal_keys_alternate_and_weights_share(gw: GatewayProcess, tenant: str, fake_openai: FakeOpenAI) -> None:
    setup(gw, tenant, ("a", KEY_A, fake_openai.v1_url, 1), ("b", KEY_B, fake_openai.v1_url, 1))
    # One keep-alive connection: one worker, whose round-robin is exact.
    with httpx.Client(base_url=gw.v1_url, headers={"Authorization": f"Bearer {gw.tokens[tenant]}"}, timeout=10) as c:
        for _ in range(6):
            assert c.post("/chat/completions", json={"model": "default", "messages": HI}).status_code == 200
    seen = keys_seen(fake_openai)
    assert all(x != y for x, y in itertools.pairwise(seen)), seen  # never the same key twice in a row
    assert sorted(seen) == sorted([KEY_A, KEY_B] * 3)
    fake_openai.state.requests.clear()
    setup(gw, tenant, ("b", KEY_B, fake_openai.v1_url, 3))
    with httpx.Client(base_url=gw.v1_url, headers={"Authorization": f"Bearer {gw.tokens[tenant]}"}, timeout=10) as c:
        for _ in range(8):
            assert c.post("/chat/completions", json={"model": "default", "messages": HI}).status_code == 200
    seen = keys_seen(fake_openai)
    assert (seen.count(KEY_A), seen.count(KEY_B)) == (2, 6)


def test_a_rate_limited_key_sits_out_on_every_worker(gw: GatewayProcess, tenant: str, fake_openai: FakeOpenAI,
                                                     other_fake: FakeOpenAI) -> None:
    # Key A's account is rate limited for the next 30 s; key B's answers.
    other_fake.state.fail_next.extend([(429, {"error": {"message": "Rate limit reached", "type": "requests",
                                                        "param": None, "code": "rate_limit_exceeded"}},
                                        {"retry-after": "30"})] * 200)
    setup(gw, tenant, ("a", KEY_A, other_fake.v1_url, 1), ("b", KEY_B, fake_openai.v1_url, 1))

    async def run() -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=4, max_keepalive_connections=0)  # new connections: both workers
        async with httpx.AsyncClient(base_url=gw.v1_url, limits=limits, timeout=20,
                                     headers={"Authorization": f"Bearer {gw.tokens[tenant]}"}) as client:
            return list(await asyncio.gather(*[
                client.post("/chat/completions", json={"model": "default", "messages": HI}) for _ in range(100)]))

    responses = asyncio.run(run())
    assert [r.status_code for r in responses] == [200] * 100
    to_a = len(other_fake.state.requests_to("/v1/chat/completions"))
    assert 1 <= to_a <= 6  # the first 429s in flight at once (4 connections, 2 workers), then never again
    with admin(gw) as c:
        rows = {r["name"]: r for r in c.get(f"/tenants/{tenant}/providers").json()["data"]}
    assert rows["a"]["cooling_down_until"] is not None and rows["a"]["cooling_down_until"] > time.time() + 20
    assert rows["b"]["cooling_down_until"] is None


def test_a_key_that_cannot_connect_is_skipped_by_the_retry(gw: GatewayProcess, tenant: str,
                                                           fake_openai: FakeOpenAI) -> None:
    setup(gw, tenant, ("a", KEY_A, f"http://127.0.0.1:{free_port()}/v1", 1), ("b", KEY_B, fake_openai.v1_url, 1))
    sdk = openai.OpenAI(base_url=gw.v1_url, api_key=gw.tokens[tenant], max_retries=0, timeout=20)
    attempts: list[str] = []
    for _ in range(4):
        raw = sdk.chat.completions.with_raw_response.create(model="default", messages=HI)
        attempts.append(raw.headers["x-modelport-attempts"])
        assert raw.parse().choices[0].message.content
    assert "2" in attempts  # the key that failed was not tried again within the request
    assert set(keys_seen(fake_openai)) == {KEY_B}


def test_a_rejected_key_is_marked_invalid_until_changed(gw: GatewayProcess, tenant: str,
                                                        fake_openai: FakeOpenAI) -> None:
    fake_openai.state.api_keys.discard(KEY_A)  # the vendor no longer takes key A
    setup(gw, tenant, ("a", KEY_A, fake_openai.v1_url, 1), ("b", KEY_B, fake_openai.v1_url, 1))
    with httpx.Client(base_url=gw.v1_url, headers={"Authorization": f"Bearer {gw.tokens[tenant]}"}, timeout=10) as c:
        statuses = [c.post("/chat/completions", json={"model": "default", "messages": HI}).status_code
                    for _ in range(3)]
    assert statuses == [200, 200, 200]  # key A's 403 was retried on key B

    def listed() -> dict[str, Any]:
        with admin(gw) as client:
            return {r["name"]: r for r in client.get(f"/tenants/{tenant}/providers").json()["data"]}

    assert listed()["a"]["invalid"] is True and listed()["b"]["invalid"] is False
    assert "invalid=True" in gw.cli("providers", "list", tenant).out
    time.sleep(0.6)  # every worker has reloaded the tenant: key A is out of rotation everywhere
    fake_openai.state.requests.clear()
    with httpx.Client(base_url=gw.v1_url, headers={"Authorization": f"Bearer {gw.tokens[tenant]}"},
                      timeout=10, limits=httpx.Limits(max_keepalive_connections=0)) as c:
        assert all(c.post("/chat/completions", json={"model": "default", "messages": HI}).status_code == 200
                   for _ in range(6))
    assert set(keys_seen(fake_openai)) == {KEY_B}
    # Changing it puts it back.
    fake_openai.state.api_keys.add(KEY_A)
    setup(gw, tenant, ("a", KEY_A, fake_openai.v1_url, 1))
    assert listed()["a"]["invalid"] is False


def test_a_per_model_entry_spreads_over_its_named_credentials(gw: GatewayProcess, tenant: str,
                                                               fake_azure: FakeAzure) -> None:
    """Azure deployments take their credentials one model at a time: several named ones
    per deployment, balanced and marked like a provider's (slot `azure_openai/DEPLOYMENT`)."""
    good, dead = "azure-balance-good-0000000000000001", "azure-balance-dead-0000000000000002"
    fake_azure.state.api_keys.add(good)
    for name, key in (("a", dead), ("b", good)):
        gw.cli("models", "add", tenant, "azure_openai", "prod-chat", "--type", "llm", "--name", name,
               f"endpoint={fake_azure.endpoint}", f"api_key={key}", "api_version=2024-10-21")
    time.sleep(0.6)
    with httpx.Client(base_url=gw.v1_url, headers={"Authorization": f"Bearer {gw.tokens[tenant]}"}, timeout=10) as c:
        first = c.post("/chat/completions", json={"model": "azure_openai/prod-chat", "messages": HI})
        assert first.status_code == 200, first.text
        assert first.headers["x-modelport-attempts"] == "2"  # the dead key's 401, then the other key
        with admin(gw) as client:
            rows = {r["name"]: r for r in client.get(f"/tenants/{tenant}/models").json()["data"]}
        assert rows["a"]["invalid"] is True and rows["b"]["invalid"] is False
        time.sleep(0.6)  # every worker reloads the entry: key a is out of rotation
        statuses = {c.post("/chat/completions", json={"model": "azure_openai/prod-chat", "messages": HI}
                           ).headers["x-modelport-attempts"] for _ in range(4)}
    assert statuses == {"1"}
    keys = {r.headers.get("api-key") for r in fake_azure.state.requests}
    assert keys == {good, dead}  # the dead key was tried once, then never again


def test_a_key_whose_connections_are_reset_is_skipped_by_the_retry(gw: GatewayProcess, tenant: str,
                                                                   fake_openai: FakeOpenAI) -> None:
    """Key A's endpoint accepts each connection and resets it (RST) before answering."""
    with resetting_server() as port:
        setup(gw, tenant, ("a", KEY_A, f"http://127.0.0.1:{port}/v1", 1), ("b", KEY_B, fake_openai.v1_url, 1))
        with httpx.Client(base_url=gw.v1_url, headers={"Authorization": f"Bearer {gw.tokens[tenant]}"},
                          timeout=10) as c:
            first = c.post("/chat/completions", json={"model": "default", "messages": HI})
    assert first.status_code == 200, first.text
    assert first.headers["x-modelport-attempts"] == "2"
    assert set(keys_seen(fake_openai)) == {KEY_B}


@contextlib.contextmanager
def resetting_server() -> Iterator[int]:
    """A loopback port whose every connection is read from, then reset."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            with contextlib.suppress(OSError):
                conn.settimeout(1)
                conn.recv(65536)
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close = RST
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        thread.join(timeout=5)
        listener.close()
