"""PostgreSQL restarted while the gateway serves (issue 15, failure): requests that need
only cached state keep working, their usage records wait in the queue and reach the
database once it is back (none lost), a request that needs the database is a clean 503
`database_unavailable` meanwhile, and the pool reconnects: an admin write works again.

One worker, so the first chat's caches (token, tenant, credential) are the ones every
later request meets. The cluster is the test process's throwaway one (`tests/pg.py`),
stopped and started again on the same port with the same data.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import httpx

from tests.e2e.harness import GatewayProcess
from tests.fakes.fixtures import FakeOpenAI
from tests.pg import PgServer

KEY = "sk-test-pgrestart-not-a-real-key-000000001"
DOWN_CHATS = 6
POLL = 0.2  # the harness's change_poll_interval


def _wait_for(what: str, check: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout} s")
        time.sleep(0.1)


def _chat(client: httpx.Client) -> httpx.Response:
    return client.post("/v1/chat/completions", json={"model": "openai/gpt-4o-mini",
                                                     "messages": [{"role": "user", "content": "hi"}]})


def test_a_postgresql_restart_keeps_cached_requests_and_their_usage(
        tmp_path: Path, fake_openai: FakeOpenAI, pg_server: PgServer) -> None:
    fake_openai.state.api_keys.add(KEY)
    gw = GatewayProcess(tmp_path, workers=1, database=pg_server.create_database(),
                        settings={"usage_flush_interval": 0.2})
    gw.port = 0
    gw.start()  # writes the config the CLI reads
    try:
        gw.cli("tenants", "create", "acme")
        gw.cli("providers", "set", "acme", "openai", f"api_key={KEY}", f"base_url={fake_openai.v1_url}")
        token = gw.new_token("acme", "e2e")
        admin = {"Authorization": f"Bearer {gw.admin_token()}"}

        def usage_rows() -> int:
            return int(gw.sql("SELECT COUNT(*) FROM usage")[0][0])

        with gw.http(token) as client:
            first = _chat(client)
            assert first.status_code == 200, first.text
            # The worker may apply the setup's changes (the token's creation drops its cache
            # entry) after that chat: let it poll them, then cache everything again.
            time.sleep(5 * POLL)
            assert _chat(client).status_code == 200  # token, tenant and credential now cached
            _wait_for("the first usage rows", lambda: usage_rows() == 2, 10)

            pg_server.stop()
            try:
                for _ in range(DOWN_CHATS):
                    reply = _chat(client)
                    assert reply.status_code == 200, reply.text
                    assert reply.json()["choices"][0]["message"]["content"] == "Hello from the fake!"
                # What needs the database is refused cleanly, not a 500.
                refused = httpx.post(gw.base_url + "/admin/v1/tenants/acme/tokens", json={"name": "down"},
                                     headers=admin, timeout=15)
                assert refused.status_code == 503, refused.text
                assert refused.json()["error"]["code"] == "database_unavailable"
                assert refused.headers.get("retry-after") == "1"
                assert "test-password" not in refused.text
            finally:
                pg_server.start()

            # The queued records reach the database: every one, once (writer's backoff <= 4 s).
            _wait_for("the queued usage rows", lambda: usage_rows() == 2 + DOWN_CHATS, 15)
            assert usage_rows() == 2 + DOWN_CHATS
            assert len({row[0] for row in gw.sql("SELECT request_id FROM usage")}) == 2 + DOWN_CHATS

            # The pool reconnected: an admin write and a chat work again.
            created = httpx.post(gw.base_url + "/admin/v1/tenants/acme/tokens", json={"name": "after"},
                                 headers=admin, timeout=15)
            assert created.status_code < 300, created.text
            assert _chat(client).status_code == 200
        with httpx.Client(base_url=gw.base_url, headers={"Authorization": f"Bearer {created.json()['token']}"},
                          timeout=15) as fresh:
            assert _chat(fresh).status_code == 200  # a token made after the restart is learnt and served
        _wait_for("every usage row", lambda: usage_rows() == 4 + DOWN_CHATS, 10)
    finally:
        gw.stop()
    log = gw.log()
    assert "Traceback" not in log, log
    assert "usage: cannot use the PostgreSQL database" in log, log  # the outage, logged once per worker
    assert log.count("usage: cannot use the PostgreSQL database") == 1, log
    assert "usage: the database is back" in log, log
    assert "dropped" not in log, log
