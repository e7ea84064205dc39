"""Tenancy end to end: tokens, isolation between tenants, live changes, model resolution.

Every test that changes state works on a tenant of its own, so the session gateway's
`acme` and `beta` stay as the harness seeded them. Changes are made through the CLI
(another process's view of the same database) and must reach both server workers
within 1 s: loops poll with fresh connections, so requests land on either worker.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import secrets
import time
import uuid
import wave
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from keystore import new_master_key
from keystore.store import Keystore
from proxy.service import Management
from proxy.store import Store
from proxy.tenants import Directory
from tests.e2e.harness import ACME_KEY, BETA_KEY, GatewayProcess
from tests.fakes.fixtures import FakeOpenAI
from translators.types import ModelType

HI = [{"role": "user", "content": "hi"}]
PROPAGATION = 1.0  # issue §6: a change reaches every worker within 1 s
SPREAD = 8  # requests per check, each on a new connection, to hit both workers

# Secrets this module hands to the gateway; none may ever appear in its log.
SEEN_SECRETS: set[str] = set()


def fresh(gw: GatewayProcess, token: str | None = None) -> httpx.Client:
    """An httpx client that opens a new connection per request (either worker may answer)."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.Client(base_url=gw.base_url, headers=headers, timeout=15.0,
                        limits=httpx.Limits(max_keepalive_connections=0))


def chat(client: httpx.Client, model: str = "default") -> httpx.Response:
    return client.post("/v1/chat/completions", json={"model": model, "messages": HI})


def within(seconds: float, check: Callable[[], bool]) -> None:
    """`check` holds within `seconds` (polled) and still holds once `seconds` have passed:
    early successes may all have met one worker, by then every worker must agree."""
    start = time.monotonic()
    while not check():
        if time.monotonic() - start > seconds:
            raise AssertionError(f"condition still false after {seconds}s")
        time.sleep(0.05)
    time.sleep(max(0.0, start + seconds - time.monotonic()))
    assert check(), f"condition held once but not on every worker after {seconds}s"


def new_tenant(gw: GatewayProcess, fake: FakeOpenAI | None = None, key: str | None = None) -> tuple[str, str, str]:
    """(name, id, token) of a fresh tenant, with the fake OpenAI configured when `fake` is given."""
    name = "t-" + uuid.uuid4().hex[:8]
    tenant_id = gw.cli("tenants", "create", name).out.strip()
    if fake is not None:
        key = key or "sk-test-" + secrets.token_hex(16)
        fake.state.api_keys.add(key)
        SEEN_SECRETS.add(key)
        gw.cli("providers", "set", name, "openai", f"api_key={key}", f"base_url={fake.v1_url}")
    token = gw.new_token(name)
    SEEN_SECRETS.add(token)
    return name, tenant_id, token


def wav_bytes() -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(b"\x00\x00" * 800)
    return buf.getvalue()


# -- tokens -----------------------------------------------------------------------------


def test_tokens_are_prefixed_hashed_and_shown_once(gw: GatewayProcess) -> None:
    created = gw.cli("tokens", "create", "acme", "--name", "shown-once")
    token = created.out.strip()
    SEEN_SECRETS.add(token)
    assert created.out.splitlines() == [token]  # the token alone on stdout
    assert token.startswith("mp-") and len(token) >= 40
    assert gw.tokens["acme"].startswith("mp-") and gw.tokens["beta"].startswith("mp-")
    assert fresh(gw, token).get("/v1/models").status_code == 200

    listed = gw.cli("tokens", "list", "acme").out
    assert token not in listed and token[5:-4] not in listed
    assert f"{token[:5]}...{token[-4:]}" in listed and "shown-once" in listed

    hashes = {row[0] for row in gw.sql("SELECT token_hash FROM tokens")}
    assert hashlib.sha256(token.encode()).hexdigest() in hashes
    for where, raw in gw.stored_bytes().items():
        for value in (token, *gw.tokens.values()):
            assert value.encode() not in raw, f"a token is stored in plaintext in {where}"


@pytest.mark.parametrize("header", [None, "Bearer", "Bearer sk-not-ours", "Basic abc", "Bearer mp-unknown-token"])
def test_missing_malformed_or_unknown_token_is_401(gw: GatewayProcess, header: str | None) -> None:
    headers = {"Authorization": header} if header is not None else {}
    response = httpx.post(gw.base_url + "/v1/chat/completions", headers=headers,
                          json={"model": "default", "messages": HI})
    assert response.status_code == 401
    assert response.json()["error"]["type"] == "authentication_error"


def test_revoked_token_fails_on_every_endpoint_within_a_second(gw: GatewayProcess) -> None:
    created = json.loads(gw.cli("--json", "tokens", "create", "acme", "--name", "to-revoke").out)
    token, token_id = created["token"], created["id"]
    SEEN_SECRETS.add(token)
    with fresh(gw, token) as client:
        assert all(client.get("/v1/models").status_code == 200 for _ in range(SPREAD))  # cached on both workers
        assert chat(client).status_code == 200
        assert "revoked=True" in gw.cli("tokens", "revoke", token_id).out
        within(PROPAGATION, lambda: all(client.get("/v1/models").status_code == 401 for _ in range(SPREAD)))

        responses = [chat(client), client.post("/v1/completions", json={"model": "default", "prompt": "x"}),
                     client.post("/v1/embeddings", json={"model": "default", "input": "x"}),
                     client.post("/v1/audio/transcriptions", data={"model": "default"},
                                 files={"file": ("a.wav", wav_bytes(), "audio/wav")}),
                     client.get("/v1/models"), client.get("/v1/models/default")]
        responses += [chat(client) for _ in range(SPREAD)]
    for response in responses:
        assert response.status_code == 401, response.request.url
        assert response.json()["error"]["type"] == "authentication_error"
    listed = {t["id"]: t for t in json.loads(gw.cli("--json", "tokens", "list", "acme").out)}
    assert listed[token_id]["revoked"] is True and listed[token_id]["name"] == "to-revoke"
    assert gw.client().models.list().data  # acme's other token is untouched


# -- isolation ----------------------------------------------------------------------------


def test_each_tenant_reaches_only_its_own_credential(gw: GatewayProcess, fake_openai: FakeOpenAI) -> None:
    for _ in range(3):
        for tenant, key in (("acme", ACME_KEY), ("beta", BETA_KEY)):
            with fresh(gw, gw.tokens[tenant]) as client:
                for path, body in (("/v1/chat/completions", {"model": "openai/gpt-4o", "messages": HI}),
                                   ("/v1/embeddings", {"model": "text-embedding-3-small", "input": "x"})):
                    before = len(fake_openai.state.requests)
                    assert client.post(path, json=body).status_code == 200
                    upstream = fake_openai.state.requests[before:]
                    assert [r.headers["authorization"] for r in upstream] == [f"Bearer {key}"], (tenant, path)


def test_a_tenant_never_falls_back_to_another_tenants_defaults(gw: GatewayProcess, fake_openai: FakeOpenAI) -> None:
    acme, beta = gw.http(gw.tokens["acme"]), gw.http(gw.tokens["beta"])
    assert chat(acme).status_code == 200
    assert acme.post("/v1/embeddings", json={"model": "default", "input": "x"}).status_code == 200
    before = len(fake_openai.state.requests)
    for path, body, kind in (("/v1/chat/completions", {"model": "default", "messages": HI}, "llm"),
                             ("/v1/completions", {"model": "default", "prompt": "x"}, "llm"),
                             ("/v1/embeddings", {"model": "default", "input": "x"}, "text-embedding")):
        response = beta.post(path, json=body)
        assert response.status_code == 400, path
        error = response.json()["error"]
        assert error["param"] == "model" and error["code"] == "default_model_not_set"
        assert f"modelport defaults set beta {kind}" in error["message"]
    transcription = beta.post("/v1/audio/transcriptions", data={"model": "default"},
                              files={"file": ("a.wav", wav_bytes(), "audio/wav")})
    assert transcription.status_code == 400 and "speech2text" in transcription.json()["error"]["message"]
    assert len(fake_openai.state.requests) == before  # nothing reached the vendor
    assert json.loads(gw.cli("--json", "defaults", "show", "beta").out) == {
        "llm": None, "text-embedding": None, "speech2text": None}


def test_models_list_differs_per_tenant(gw: GatewayProcess, fake_openai: FakeOpenAI) -> None:
    _, _, lonely_token = new_tenant(gw)  # no provider at all
    acme_ids = [m.id for m in gw.client(gw.tokens["acme"]).models.list().data]
    beta_ids = [m.id for m in gw.client(gw.tokens["beta"]).models.list().data]
    lonely_ids = [m.id for m in gw.client(lonely_token).models.list().data]
    assert "default" in acme_ids and "gpt-4o-mini" in acme_ids
    assert "default" not in beta_ids and "gpt-4o-mini" in beta_ids
    assert lonely_ids == []
    assert gw.http(gw.tokens["acme"]).get("/v1/models/default").status_code == 200
    assert gw.http(gw.tokens["beta"]).get("/v1/models/default").status_code == 404
    before = len(fake_openai.state.requests)
    with fresh(gw, lonely_token) as client:
        for model in ("openai/gpt-4o", "gpt-4o", "default"):
            assert chat(client, model).status_code in (400, 404), model
    assert len(fake_openai.state.requests) == before  # never borrowed acme's or beta's key


# -- live changes through the CLI ---------------------------------------------------------------


def test_new_credential_is_used_by_the_running_server_within_a_second(gw: GatewayProcess,
                                                                    fake_openai: FakeOpenAI) -> None:
    old_key = "sk-test-old-" + secrets.token_hex(12)
    new_key = "sk-test-new-" + secrets.token_hex(12)
    name, _, token = new_tenant(gw, fake_openai, old_key)
    fake_openai.state.api_keys.add(new_key)
    SEEN_SECRETS.add(new_key)
    with fresh(gw, token) as client:
        for _ in range(SPREAD):
            assert chat(client, "openai/gpt-4o").status_code == 200
        assert {r.headers["authorization"] for r in fake_openai.state.requests} == {f"Bearer {old_key}"}
        gw.cli("providers", "set", name, "openai", f"api_key={new_key}", f"base_url={fake_openai.v1_url}")

        def new_key_everywhere() -> bool:
            start = len(fake_openai.state.requests)
            statuses = [chat(client, "openai/gpt-4o").status_code for _ in range(SPREAD)]
            seen = {r.headers["authorization"] for r in fake_openai.state.requests[start:]}
            return statuses == [200] * SPREAD and seen == {f"Bearer {new_key}"}

        within(PROPAGATION, new_key_everywhere)


def test_tenant_name_or_id_and_deletion_revokes_its_tokens(gw: GatewayProcess, fake_openai: FakeOpenAI) -> None:
    name, tenant_id, _ = new_tenant(gw)
    assert tenant_id.startswith("tn_")
    key = "sk-test-byid-" + secrets.token_hex(12)
    fake_openai.state.api_keys.add(key)
    SEEN_SECRETS.add(key)
    gw.cli("providers", "set", tenant_id, "openai", f"api_key={key}", f"base_url={fake_openai.v1_url}")
    gw.cli("defaults", "set", tenant_id, "llm", "openai/gpt-4.1-mini")
    token = gw.new_token(tenant_id, "by-id")
    SEEN_SECRETS.add(token)
    assert "gpt-4.1-mini" in gw.cli("defaults", "show", name).out
    assert f"sk-...{key[-4:]}" in gw.cli("providers", "list", name).out
    assert gw.cli("tokens", "list", name).out.count("by-id") == 1
    with fresh(gw, token) as client:
        assert [chat(client).status_code for _ in range(SPREAD)] == [200] * SPREAD
        assert fake_openai.state.last_request.json["model"] == "gpt-4.1-mini"
        assert "deleted=True" in gw.cli("tenants", "delete", tenant_id).out
        within(PROPAGATION, lambda: all(chat(client).status_code == 401 for _ in range(SPREAD)))
    assert name not in gw.cli("tenants", "list").out
    assert gw.cli("tokens", "list", name, check=False).code != 0


def test_a_cache_load_racing_a_change_is_not_kept(tmp_path: Path) -> None:
    """A worker that reads the database just before a change commits, and stores what it
    read just after its watcher cleared the caches, must not keep that stale copy until
    some later change: the next request has to see the change."""

    async def run() -> None:
        worker, cli = Store(tmp_path / "race.db"), Store(tmp_path / "race.db")
        await worker.open()
        await cli.open()
        try:
            keystore = Keystore(new_master_key())
            manage = Management(cli, keystore)
            tenant_id = (await manage.create_tenant("race"))["id"]
            await manage.set_provider("race", "openai", {"api_key": "sk-test-race-" + "0" * 24})
            await manage.set_default("race", "llm", "openai/gpt-4o")
            created = await manage.create_token("race")
            directory = Directory(worker, keystore)
            await directory.refresh_if_changed()

            def racing(read: Callable[..., Awaitable[Any]], change: Callable[[], Awaitable[Any]]) -> Any:
                async def read_then_change(*args: Any) -> Any:
                    value = await read(*args)  # read before the change ...
                    await change()  # ... which commits now,
                    assert await directory.refresh_if_changed()  # and the watcher clears the caches
                    return value
                return read_then_change

            worker.defaults = racing(worker.defaults,  # type: ignore[method-assign]
                                     lambda: manage.set_default("race", "llm", "openai/gpt-4.1"))
            await directory.tenant(tenant_id)
            del worker.defaults
            assert (await directory.tenant(tenant_id)).defaults[ModelType.LLM] == ("openai", "gpt-4.1")

            worker.find_token = racing(worker.find_token,  # type: ignore[method-assign]
                                       lambda: manage.revoke_token(created["id"]))
            await directory.caller(created["token"])
            del worker.find_token
            assert await directory.caller(created["token"]) is None
        finally:
            await worker.close()
            await cli.close()

    asyncio.run(run())


def test_an_idle_server_does_not_keep_invalidating_its_caches(gw: GatewayProcess) -> None:
    """Workers only read the change counter: if polling wrote to the database, each
    worker's poll would look like a change to the other and every cache (tokens, tenants,
    unwrapped RSA keys) would be dropped on every poll, for ever."""
    def changes() -> int:
        return int(gw.sql("SELECT value FROM meta WHERE key = 'changes'")[0][0])

    assert gw.http().get("/v1/models").status_code == 200
    time.sleep(0.5)  # let both workers see the last change made by an earlier test
    before = changes()
    time.sleep(1.0)  # five polls per worker
    assert changes() == before


# -- model resolution (issue §4) -------------------------------------------------------------------


def test_provider_slash_model_and_bare_names_resolve(gw: GatewayProcess, fake_openai: FakeOpenAI) -> None:
    client = gw.client(gw.tokens["acme"])
    for requested, upstream in (("openai/gpt-4o", "gpt-4o"), ("gpt-4.1", "gpt-4.1"), ("default", "gpt-4o-mini"),
                                ("openai/gpt-4o-2024-08-06", "gpt-4o-2024-08-06")):
        reply = client.chat.completions.create(model=requested, messages=HI)
        assert fake_openai.state.last_request.json["model"] == upstream, requested
        assert reply.model == upstream


def test_default_per_model_type(gw: GatewayProcess, fake_openai: FakeOpenAI) -> None:
    client = gw.client(gw.tokens["acme"])
    embedding = client.embeddings.create(model="default", input="hello", encoding_format="float")
    assert fake_openai.state.last_request.json["model"] == "text-embedding-3-small"
    assert embedding.model == "text-embedding-3-small"
    client.audio.transcriptions.create(model="default", file=("a.wav", wav_bytes(), "audio/wav"))
    assert fake_openai.state.last_request.path == "/v1/audio/transcriptions"
    assert fake_openai.state.last_request.form is not None
    assert fake_openai.state.last_request.form["model"] == "whisper-1"
    client.completions.create(model="default", prompt="x")
    assert fake_openai.state.last_request.json["model"] == "gpt-4o-mini"


@pytest.mark.parametrize("model", ["no-such-model", "nosuchprovider/gpt-4o", "openai/"])
def test_unknown_model_is_404_model_not_found(gw: GatewayProcess, fake_openai: FakeOpenAI, model: str) -> None:
    response = chat(gw.http(gw.tokens["acme"]), model)
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "model_not_found"
    assert fake_openai.state.requests == []


def test_setting_a_default_again_replaces_it(gw: GatewayProcess, fake_openai: FakeOpenAI) -> None:
    name, tenant_id, token = new_tenant(gw, fake_openai)
    gw.cli("defaults", "set", name, "llm", "openai/gpt-4o")
    gw.cli("defaults", "set", name, "llm", "openai/gpt-4.1-mini")
    gw.cli("defaults", "set", name, "text-embedding", "openai/text-embedding-3-large")
    shown = gw.cli("--json", "defaults", "show", name).out
    assert json.loads(shown) == {"llm": "openai/gpt-4.1-mini", "text-embedding": "openai/text-embedding-3-large",
                                 "speech2text": None}
    rows = gw.sql("SELECT model_type, model FROM default_models WHERE tenant_id = ?", (tenant_id,))
    assert sorted(rows) == [("llm", "gpt-4.1-mini"), ("text-embedding", "text-embedding-3-large")]
    with fresh(gw, token) as client:
        assert chat(client).status_code == 200
        assert fake_openai.state.last_request.json["model"] == "gpt-4.1-mini"
        gw.cli("defaults", "set", name, "llm", "openai/gpt-4o")

        def switched() -> bool:
            start = len(fake_openai.state.requests)
            ok = all(chat(client).status_code == 200 for _ in range(SPREAD))
            return ok and {r.json["model"] for r in fake_openai.state.requests[start:]} == {"gpt-4o"}

        within(PROPAGATION, switched)
        gw.cli("defaults", "clear", name, "llm")
        within(PROPAGATION, lambda: all(chat(client).status_code == 400 for _ in range(SPREAD)))


# -- last: nothing secret reached the server's log -------------------------------------------------


def test_no_secret_in_the_server_log(gw: GatewayProcess) -> None:
    log = gw.log()
    assert "serving on" in log
    for secret in (ACME_KEY, BETA_KEY, *gw.tokens.values(), *SEEN_SECRETS):
        assert secret not in log
        assert secret[-12:] not in log
