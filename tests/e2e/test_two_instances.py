"""Two gateway instances on one PostgreSQL database (issue 15): separate processes,
separate ports, separate data directories; one master key (given to both through
MODELPORT_MASTER_KEY, the way a secret store hands it to every instance) and one DSN.

Checked: a hosted quota is global (100 concurrent requests over both instances against 3
remaining calls: exactly 3 succeed), and what one instance changes the other learns within
a second: a revoked token, a changed credential, also after the listening connection was
cut. Both instances poll the change counter only every 10 s (`change_poll_interval`'s
largest value): within a second is LISTEN/NOTIFY's doing (`proxy/store/pg_listen.py`).
"""

from __future__ import annotations

import asyncio
import secrets
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from keystore import MASTER_KEY_ENV, encode_master_key, new_master_key
from proxy.store.pg_listen import APPLICATION_NAME
from tests.e2e.harness import GatewayProcess
from tests.e2e.hosted_setup import (
    ADMIN_TOKEN,
    HI,
    accept_hosted_keys,
    hosted_env,
    hosted_settings,
)
from tests.fakes.anthropic_fixtures import FakeAnthropic
from tests.fakes.fixtures import FakeOpenAI

QUOTA = 3
POLL = 10.0      # Settings.change_poll_interval's largest value: only a notification is fast enough
SPREAD = 8       # fresh connections per check: SO_REUSEPORT spreads them over an instance's workers


@pytest.fixture
def pair(tmp_path: Path, pg_dsn: str, fake_openai: FakeOpenAI, fake_anthropic: FakeAnthropic,
         monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[GatewayProcess, GatewayProcess]]:
    # The test process's environment reaches both servers and the in-process CLI.
    monkeypatch.setenv(MASTER_KEY_ENV, encode_master_key(new_master_key()))
    accept_hosted_keys(fake_openai, fake_anthropic)
    settings = hosted_settings(fake_openai, fake_anthropic, quota=QUOTA, change_poll_interval=POLL)
    with hosted_env():
        a = GatewayProcess(tmp_path / "a", settings=settings, database=pg_dsn)
        b = GatewayProcess(tmp_path / "b", settings=settings, database=pg_dsn)
        a.start()
        try:
            b.start()
            try:
                yield a, b
            finally:
                b.stop()
        finally:
            a.stop()
    for gw in (a, b):
        assert not (gw.data_dir / "master.key").exists()  # the key came from the environment only
        assert "Traceback" not in gw.log(), gw.log()


def admin(gw: GatewayProcess, method: str, path: str, **kwargs: Any) -> httpx.Response:
    response = httpx.request(method, gw.base_url + "/admin/v1" + path, timeout=10,
                             headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, **kwargs)
    assert response.status_code < 300, response.text
    return response


def tenant_with_token(gw: GatewayProcess) -> tuple[str, str, str]:
    """(name, token, token id), made through `gw`'s admin API."""
    name = "two-" + uuid.uuid4().hex[:8]
    admin(gw, "POST", "/tenants", json={"name": name})
    minted = admin(gw, "POST", f"/tenants/{name}/tokens", json={"name": "e2e"}).json()
    return name, minted["token"], minted["id"]


def fresh(gw: GatewayProcess, token: str, method: str, path: str, **kwargs: Any) -> httpx.Response:
    """One request on a new connection (so any of the instance's workers may take it)."""
    with httpx.Client(base_url=gw.base_url, headers={"Authorization": f"Bearer {token}"}, timeout=10) as client:
        return client.request(method, path, **kwargs)


def seconds_until(check: Callable[[], bool], limit: float = 5.0) -> float:
    """After how long `check` held (polled), from now: the time its first passing round began,
    so the round's own requests (slow on a loaded machine) are not counted as the delay."""
    start = time.monotonic()
    while True:
        began = time.monotonic()
        if check():
            return began - start
        if began - start > limit:
            raise AssertionError(f"still not true after {limit}s")
        time.sleep(0.02)


# -- a global hosted quota ---------------------------------------------------------------------


async def burst(instances: tuple[GatewayProcess, ...], token: str, count: int) -> list[httpx.Response]:
    """`count` requests at once, alternating over the instances, each on a new connection."""
    limits = httpx.Limits(max_connections=count, max_keepalive_connections=0)
    async with httpx.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=httpx.Timeout(30.0),
                                 limits=limits) as client:
        return list(await asyncio.gather(*[
            client.post(instances[i % len(instances)].v1_url + "/chat/completions",
                        json={"model": "openai/gpt-3.5-turbo", "messages": HI})
            for i in range(count)]))


def test_100_concurrent_requests_over_two_instances_against_a_quota_of_3_give_exactly_3(
        pair: tuple[GatewayProcess, GatewayProcess], fake_openai: FakeOpenAI) -> None:
    a, b = pair
    _, token, _ = tenant_with_token(a)
    for gw in pair:  # both know the tenant and the token (cached) before the burst
        assert fresh(gw, token, "GET", "/v1/models").status_code == 200
    fake_openai.state.requests.clear()
    fake_openai.state.delay = 0.05  # the winners are still upstream while the others reserve

    responses = asyncio.run(burst(pair, token, 100))
    statuses = [r.status_code for r in responses]
    assert statuses.count(200) == QUOTA and statuses.count(429) == 100 - QUOTA, \
        [(r.status_code, r.text[:300]) for r in responses if r.status_code not in (200, 429)]
    winners = {str(r.url).split("/v1/")[0] for r in responses if r.status_code == 200}
    assert winners <= {a.base_url, b.base_url}
    assert len(fake_openai.state.requests) == QUOTA
    for gw in pair:
        quota = next(row for row in fresh(gw, token, "GET", "/v1/quota").json()["data"]
                     if row["provider"] == "openai")
        assert (quota["limit"], quota["used"], quota["remaining"]) == (QUOTA, QUOTA, 0)


# -- what A changes, B learns within a second --------------------------------------------------------


def test_a_token_revoked_on_a_is_refused_by_b_within_a_second(pair: tuple[GatewayProcess, GatewayProcess]) -> None:
    a, b = pair
    _, token, token_id = tenant_with_token(a)
    # B serves the token first, on every worker: it is in B's caches when A revokes it.
    assert all(fresh(b, token, "GET", "/v1/models").status_code == 200 for _ in range(SPREAD))

    assert admin(a, "DELETE", f"/tokens/{token_id}").json() == {"id": token_id, "revoked": True}
    took = seconds_until(lambda: all(fresh(b, token, "GET", "/v1/models").status_code == 401
                                     for _ in range(SPREAD)))
    assert took < 1.0, f"B still accepted the revoked token {took:.2f}s after A revoked it"
    assert fresh(a, token, "GET", "/v1/models").status_code == 401


def test_a_credential_changed_on_a_is_used_by_b_within_a_second(
        pair: tuple[GatewayProcess, GatewayProcess], fake_openai: FakeOpenAI) -> None:
    a, b = pair
    name, token, _ = tenant_with_token(a)
    old_key, new_key = ("sk-two-" + secrets.token_hex(12) for _ in range(2))
    fake_openai.state.api_keys.update({old_key, new_key})
    admin(a, "PUT", f"/tenants/{name}/providers/openai",
          json={"credentials": {"api_key": old_key, "base_url": fake_openai.v1_url}})
    admin(a, "PUT", f"/tenants/{name}/defaults/llm", json={"model": "openai/gpt-4o-mini"})

    def b_uses(key: str) -> bool:
        for _ in range(SPREAD):
            fake_openai.state.requests.clear()
            response = fresh(b, token, "POST", "/v1/chat/completions", json={"model": "default", "messages": HI})
            if response.status_code != 200 or fake_openai.state.requests[-1].headers["authorization"] != f"Bearer {key}":
                return False
        return True

    seconds_until(lambda: b_uses(old_key))  # B has the tenant and its old credential cached, on every worker
    fake_openai.state.api_keys.discard(old_key)  # a stale credential would now fail upstream

    admin(a, "PUT", f"/tenants/{name}/providers/openai",
          json={"credentials": {"api_key": new_key, "base_url": fake_openai.v1_url}})
    took = seconds_until(lambda: b_uses(new_key))
    assert took < 1.0, f"B still used the old credential {took:.2f}s after A changed it"


def test_after_its_listening_connection_is_cut_b_still_learns_within_a_second(
        pair: tuple[GatewayProcess, GatewayProcess]) -> None:
    a, b = pair
    _, token, token_id = tenant_with_token(a)
    assert all(fresh(b, token, "GET", "/v1/models").status_code == 200 for _ in range(SPREAD))
    # Every worker's listening connection (both instances'): PostgreSQL ends them as a restart would.
    cut = a.sql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = ? "
                "AND datname = current_database()", (APPLICATION_NAME,))
    assert len(cut) >= 2, cut  # at least one per instance

    assert admin(a, "DELETE", f"/tokens/{token_id}").json() == {"id": token_id, "revoked": True}
    took = seconds_until(lambda: all(fresh(b, token, "GET", "/v1/models").status_code == 401
                                     for _ in range(SPREAD)))
    assert took < 1.0, f"B still accepted the revoked token {took:.2f}s after A revoked it"
    # and they listen again
    assert seconds_until(lambda: len(a.sql("SELECT pid FROM pg_stat_activity WHERE application_name = ? "
                                           "AND datname = current_database()", (APPLICATION_NAME,))) >= len(cut)) < 5
