"""Rate-limit counters and credential cooldowns in Redis (`redis_url`, issue 15), end to
end: two gateway instances (2 workers each) on one PostgreSQL database and one Redis
(`tests/redis_server.py`'s, password set), one master key from the environment.

Checked: an rpm of 3 under 30 concurrent requests over both instances admits exactly 3,
counted in Redis (not in the database); a credential that a vendor's 429 cooled down on
instance A is skipped by instance B, the cooldown in Redis (not in the database); Redis
stopped while serving: a rate-limited tenant's requests are 503 `counters_unavailable` in
OpenAI's error shape (no password, no traceback), a vendor's 429 still reaches its client,
a tenant without limits is served as before, and all works again once Redis is back;
Redis unreachable at start: one line naming host:port, exit code 1 (as PostgreSQL's).
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from keystore import MASTER_KEY_ENV, encode_master_key, new_master_key
from tests.e2e.harness import GatewayProcess
from tests.fakes.fixtures import FakeOpenAI, served_fake_openai
from tests.pg import PgServer
from tests.redis_server import PASSWORD, RedisServer

HI = [{"role": "user", "content": "hi"}]
MODEL = "openai/gpt-4o-mini"
KEY_A = "sk-test-redis-a-not-a-real-key-0000000001"
KEY_B = "sk-test-redis-b-not-a-real-key-0000000002"
RATE_LIMITED = (429, {"error": {"message": "Rate limit reached", "type": "requests", "param": None,
                                "code": "rate_limit_exceeded"}}, {"retry-after": "30"})


@pytest.fixture(scope="module")
def other_fake() -> Iterator[FakeOpenAI]:
    """Key A's account: another fake OpenAI, scripted to answer 429."""
    with served_fake_openai() as fake:
        yield fake


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory, pg_server: PgServer,
         redis_server: RedisServer) -> Iterator[tuple[GatewayProcess, GatewayProcess]]:
    root = tmp_path_factory.mktemp("redis-pair")
    if redis_server.proc is None:
        redis_server.start()
    database = pg_server.create_database()
    with pytest.MonkeyPatch.context() as env:
        # The test process's environment reaches both servers and the in-process CLI.
        env.setenv(MASTER_KEY_ENV, encode_master_key(new_master_key()))
        a = GatewayProcess(root / "a", database=database, settings={"redis_url": redis_server.url})
        b = GatewayProcess(root / "b", database=database, settings={"redis_url": redis_server.url})
        with a.running(), b.running():
            yield a, b
    for gw in (a, b):
        assert "Traceback" not in gw.log(), gw.log()
        assert PASSWORD not in gw.log()


@pytest.fixture
def tenant(pair: tuple[GatewayProcess, GatewayProcess], fake_openai: FakeOpenAI) -> Iterator[tuple[str, str]]:
    """(name, token) of a new tenant whose default model is the fake OpenAI's, made on A."""
    a, _ = pair
    fake_openai.state.api_keys.update({KEY_A, KEY_B})
    name = "rc-" + uuid.uuid4().hex[:8]
    a.cli("tenants", "create", name)
    a.cli("providers", "set", name, "openai", f"api_key={KEY_B}", f"base_url={fake_openai.v1_url}")
    a.cli("defaults", "set", name, "llm", MODEL)
    try:
        yield name, a.new_token(name)
    finally:
        a.cli("tenants", "delete", name, check=False)


def chat(gw: GatewayProcess, token: str) -> httpx.Response:
    """One request on a connection of its own (either worker of the instance may take it)."""
    return httpx.post(gw.v1_url + "/chat/completions", json={"model": "default", "messages": HI},
                      headers={"Authorization": f"Bearer {token}"}, timeout=15)


def same_minute(seconds: float) -> None:
    """Make sure `seconds` fit before the minute turns (the counters start again then)."""
    left = 60 - time.time() % 60
    if left < seconds:
        time.sleep(left + 0.1)


def wait_for(what: str, check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout} s")
        time.sleep(0.1)


def rows_in_database(gw: GatewayProcess, table: str, tenant_name: str) -> int:
    """The tenant's rows of `rate_windows` or `credential_cooldowns` in PostgreSQL."""
    tenant_id = gw.sql("SELECT id FROM tenants WHERE name = ?", (tenant_name,))[0][0]
    column = "scope" if table == "rate_windows" else "tenant_id"
    pattern = f"%|{tenant_id}|%" if table == "rate_windows" else tenant_id
    return int(gw.sql(f"SELECT COUNT(*) FROM {table} WHERE {column} LIKE ?", (pattern,))[0][0])


def test_an_rpm_of_3_admits_exactly_3_of_30_concurrent_requests_over_two_instances(
        pair: tuple[GatewayProcess, GatewayProcess], tenant: tuple[str, str], fake_openai: FakeOpenAI,
        redis_server: RedisServer) -> None:
    a, b = pair
    name, token = tenant
    a.cli("limits", "set", name, "--rpm", "3")  # before either instance has loaded the tenant
    same_minute(10)
    fake_openai.state.requests.clear()
    fake_openai.state.delay = 0.05  # the winners are still upstream while the others are counted

    async def burst() -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=30, max_keepalive_connections=0)
        async with httpx.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=30,
                                     limits=limits) as client:
            return list(await asyncio.gather(*[
                client.post(pair[i % 2].v1_url + "/chat/completions", json={"model": "default", "messages": HI})
                for i in range(30)]))

    responses = asyncio.run(burst())
    statuses = [r.status_code for r in responses]
    assert statuses.count(200) == 3 and statuses.count(429) == 27, \
        [(r.status_code, r.text[:200]) for r in responses if r.status_code not in (200, 429)]
    assert len(fake_openai.state.requests_to("/v1/chat/completions")) == 3
    assert {r.json()["error"]["code"] for r in responses if r.status_code == 429} == {"rate_limit_exceeded"}
    # Counted in Redis, not in the database; the CLI reads them there too.
    assert rows_in_database(a, "rate_windows", name) == 0
    tenant_id = a.sql("SELECT id FROM tenants WHERE name = ?", (name,))[0][0]
    key = f"modelport:rl:{int(time.time() // 60)}:requests|{tenant_id}||"
    assert redis_server.command("GET", key) == "$1"  # a bulk string of length 1: "3"
    shown = json.loads(b.cli("limits", "show", name, "--json").out)
    assert [r["requests_this_minute"] for r in shown] == [3]


def test_a_credential_cooled_down_on_a_is_skipped_by_b(
        pair: tuple[GatewayProcess, GatewayProcess], tenant: tuple[str, str], fake_openai: FakeOpenAI,
        other_fake: FakeOpenAI, redis_server: RedisServer) -> None:
    a, b = pair
    name, token = tenant
    other_fake.reset()
    other_fake.state.api_keys.add(KEY_A)
    other_fake.state.fail_next.extend([RATE_LIMITED] * 50)
    a.cli("providers", "set", name, "openai", "--name", "spare", f"api_key={KEY_A}", f"base_url={other_fake.v1_url}")

    # A: one request in two goes to "spare" (round-robin) until its 429 cools it down.
    wait_for("A's 429 from the spare key", lambda: chat(a, token).status_code == 429)
    assert len(other_fake.state.requests_to("/v1/chat/completions")) == 1
    members = redis_server.command("ZCARD", "modelport:cd:until")
    assert members == ":1", members  # in Redis ...
    assert rows_in_database(a, "credential_cooldowns", name) == 0  # ... not in the database

    time.sleep(0.6)  # B's workers poll the cooldowns (change_poll_interval 0.2 s)
    replies = [chat(b, token) for _ in range(12)]  # new connections: both of B's workers
    assert [r.status_code for r in replies] == [200] * 12, [r.text[:200] for r in replies if r.status_code != 200]
    assert len(other_fake.state.requests_to("/v1/chat/completions")) == 1  # B never tried the spare key
    with httpx.Client(base_url=b.base_url + "/admin/v1", timeout=10,
                      headers={"Authorization": f"Bearer {a.admin_token()}"}) as admin:  # A made it
        rows = {r["name"]: r for r in admin.get(f"/tenants/{name}/providers").json()["data"]}
    assert rows["spare"]["cooling_down_until"] > time.time() + 20 and rows["default"]["cooling_down_until"] is None


def test_redis_stopped_rate_limited_requests_are_503_the_others_are_served(
        pair: tuple[GatewayProcess, GatewayProcess], tenant: tuple[str, str], fake_openai: FakeOpenAI,
        other_fake: FakeOpenAI, redis_server: RedisServer) -> None:
    a, _ = pair
    limited, limited_token = tenant
    a.cli("limits", "set", limited, "--rpm", "1000")
    free = "rc-free-" + uuid.uuid4().hex[:8]  # no limit: its requests never need the counters
    a.cli("tenants", "create", free)
    a.cli("providers", "set", free, "openai", f"api_key={KEY_B}", f"base_url={fake_openai.v1_url}")
    a.cli("providers", "set", free, "openai", "--name", "spare", f"api_key={KEY_A}", f"base_url={other_fake.v1_url}")
    a.cli("defaults", "set", free, "llm", MODEL)
    free_token = a.new_token(free)
    other_fake.reset()
    other_fake.state.api_keys.add(KEY_A)
    try:
        for gw in pair:  # both tenants known (cached) by the instances before Redis goes
            assert all(chat(gw, t).status_code == 200 for t in (limited_token, free_token, free_token))
        redis_server.stop()
        other_fake.state.fail_next.extend([RATE_LIMITED] * 50)

        for gw in pair:
            for _ in range(4):
                reply = chat(gw, limited_token)
                assert reply.status_code == 503, reply.text
                assert reply.json() == {"error": {
                    "message": reply.json()["error"]["message"], "type": "server_error", "param": None,
                    "code": "counters_unavailable"}}
                message = reply.json()["error"]["message"]
                assert f"127.0.0.1:{redis_server.port}/0" in message and PASSWORD not in message
                assert reply.headers["retry-after"] == "1"
            # Without limits: served as before; a vendor's 429 reaches the client as it is,
            # though its cooldown cannot be shared.
            statuses = {chat(gw, free_token).status_code for _ in range(6)}
            assert statuses == {200, 429}, statuses
    finally:
        redis_server.start()  # empty, on the same port
        a.cli("tenants", "delete", free, check=False)
    wait_for("the limited tenant served again", lambda: all(chat(gw, limited_token).status_code == 200
                                                            for gw in pair for _ in range(4)))
    for gw in pair:
        log = gw.log()
        assert log.count("could not share a credential cooldown") <= gw.workers, log  # once per worker at most
        assert "Traceback" not in log and PASSWORD not in log


def test_redis_unreachable_at_start_is_one_line_and_exit_code_1(tmp_path: Path) -> None:
    gw = GatewayProcess(tmp_path, settings={"redis_url": "redis://:s3cret-redis@127.0.0.1:1/0"})
    gw.port = 0
    gw.write_config()
    run = subprocess.run([sys.executable, "-m", "proxy.cli", "--config", str(gw.config_path), "serve"],
                         capture_output=True, text=True, timeout=60, cwd=tmp_path, check=False)
    assert run.returncode == 1, (run.stdout, run.stderr)
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("modelport: cannot use the rate-limit counters (Redis at "
                                                  "127.0.0.1:1/0): "), run.stderr
    assert "s3cret" not in run.stderr + run.stdout
    cli = gw.cli("tenants", "list", check=False)  # the CLI too (its `limits show` reads Redis)
    assert cli.code == 1 and "127.0.0.1:1/0" in cli.err and "s3cret" not in cli.err + cli.out
