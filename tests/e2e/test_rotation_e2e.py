"""Master-key rotation while a server runs (issue 10, "Credentials must never be lost").

A server that still holds the old master key must never wrap a new tenant's private key
under it once the database has moved to a new one: it loads the new key (key file, or the
staged file) or refuses to create tenants (503) until it has. Each test runs a gateway of
its own; tenants are made through the admin API and checked after a restart, with the
openai SDK against the fake OpenAI.
"""

from __future__ import annotations

import secrets
import shutil
import time
from pathlib import Path

import httpx

from keystore import MASTER_KEY_ENV, encode_master_key, new_master_key
from tests.e2e.harness import GatewayProcess
from tests.fakes.fixtures import FakeOpenAI

HI = [{"role": "user", "content": "hi"}]
ADMIN_TOKEN = "mp-admin-test-not-a-real-token-" + secrets.token_hex(16)


def new_gateway(root: Path, **kwargs: object) -> GatewayProcess:
    gateway = GatewayProcess(root, workers=2, settings={"admin_token": ADMIN_TOKEN}, **kwargs)  # type: ignore[arg-type]
    gateway.write_config()
    return gateway


def admin(gw: GatewayProcess, method: str, path: str, body: dict[str, object] | None = None) -> httpx.Response:
    return httpx.request(method, f"{gw.base_url}/admin/v1{path}", json=body, timeout=15,
                         headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})


def create_tenant_via_admin(gw: GatewayProcess, name: str, api_key: str, base_url: str,
                            deadline: float = 10.0) -> tuple[str, list[int]]:
    """Create tenant + token + credential through the admin API; a 503 (the server has not
    loaded the rotated key yet) is retried after its Retry-After. (token, statuses seen)."""
    statuses: list[int] = []
    stop = time.monotonic() + deadline
    while True:
        created = admin(gw, "POST", "/tenants", {"name": name})
        statuses.append(created.status_code)
        if created.status_code != 503 or time.monotonic() > stop:
            break
        assert created.headers.get("retry-after"), created.text
        assert "master key" in created.json()["error"]["message"]
        time.sleep(float(created.headers["retry-after"]))
    assert created.status_code == 201, created.text
    token = admin(gw, "POST", f"/tenants/{name}/tokens", {"name": "e2e"})
    assert token.status_code == 201, token.text
    cred = admin(gw, "PUT", f"/tenants/{name}/providers/openai", {"credentials": {"api_key": api_key,
                                                                                  "base_url": base_url}})
    assert cred.status_code == 200, cred.text
    return str(token.json()["token"]), statuses


def chat(gw: GatewayProcess, token: str) -> str:
    reply = gw.client(token).chat.completions.create(model="openai/gpt-4o-mini", messages=HI)
    return str(reply.choices[0].message.content)


def seed_tenant(gw: GatewayProcess, name: str, fake: FakeOpenAI, env: dict[str, str] | None = None) -> tuple[str, str]:
    api_key = f"sk-test-{name}-" + secrets.token_hex(12)
    fake.state.api_keys.add(api_key)
    gw.cli("tenants", "create", name, env=env)
    gw.cli("providers", "set", name, "openai", f"api_key={api_key}", f"base_url={fake.v1_url}", env=env)
    token = gw.cli("tokens", "create", name, env=env).out.strip()
    return api_key, token


def test_tenant_created_right_after_a_rotation_survives_a_restart(tmp_path: Path, fake_openai: FakeOpenAI) -> None:
    gw = new_gateway(tmp_path / "file-mode")
    _, old_token = seed_tenant(gw, "before", fake_openai)
    gw.start()
    try:
        assert chat(gw, old_token)
        out = gw.cli("keys", "rotate-master").out
        assert "rotated" in out and "1 tenant key(s)" in out
        # At once, before the workers' next poll: they still hold the old key.
        api_key = "sk-test-after-" + secrets.token_hex(12)
        fake_openai.state.api_keys.add(api_key)
        token, statuses = create_tenant_via_admin(gw, "after", api_key, fake_openai.v1_url)
        assert set(statuses) <= {201, 503}
        assert chat(gw, token) and chat(gw, old_token)
    finally:
        gw.stop()
    gw.start()  # a fresh process: only the new master key, read from the key file
    try:
        assert chat(gw, token) and chat(gw, old_token)
        assert fake_openai.state.requests[-2].headers["authorization"] == f"Bearer {api_key}"
    finally:
        gw.stop()
    assert not (gw.data_dir / "master.key.new").exists()
    for secret in (api_key, token, old_token, ADMIN_TOKEN, (gw.data_dir / "master.key").read_text().strip()):
        assert secret not in gw.log()


def test_env_key_rotation_with_servers_running(tmp_path: Path, fake_openai: FakeOpenAI) -> None:
    old_key = encode_master_key(new_master_key())
    env = {MASTER_KEY_ENV: old_key}
    gw = new_gateway(tmp_path / "env-mode", env=dict(env))
    _, old_token = seed_tenant(gw, "before", fake_openai, env=env)
    gw.start()
    staged = gw.data_dir / "master.key.new"
    try:
        assert chat(gw, old_token)
        out = gw.cli("keys", "rotate-master", env=env).out
        assert str(staged) in out and MASTER_KEY_ENV in out
        new_key = staged.read_text().strip()
        assert new_key != old_key and new_key not in out
        # The operator moves the file away: the servers cannot load the new key. Creating
        # a tenant is refused (never wrapped under the old key) ...
        aside = tmp_path / "new-key-copy"
        shutil.move(staged, aside)
        time.sleep(1.0)  # several polls: every worker has seen the rotation
        for _ in range(4):
            refused = admin(gw, "POST", "/tenants", {"name": "refused"})
            assert refused.status_code == 503, refused.text
            assert refused.headers.get("retry-after") and "MODELPORT_MASTER_KEY" in refused.json()["error"]["message"]
        # ... while existing tenants keep working on the previous wrapped keys.
        assert all(chat(gw, old_token) for _ in range(4))
        # With the staged file back, the servers pick the new key up and create tenants.
        shutil.move(aside, staged)
        api_key = "sk-test-after-env-" + secrets.token_hex(12)
        fake_openai.state.api_keys.add(api_key)
        token, _ = create_tenant_via_admin(gw, "after", api_key, fake_openai.v1_url)
        assert chat(gw, token)
    finally:
        gw.stop()
    # Restart with the old key (the operator forgot): it still serves, on the previous
    # wrapped keys and the staged key, says so, and confirms nothing.
    gw.start()
    try:
        assert chat(gw, token) and chat(gw, old_token)
    finally:
        gw.stop()
    assert str(staged) in gw.log() and "is the previous one" in gw.log() and staged.exists()
    gw.env[MASTER_KEY_ENV] = new_key
    gw.start()  # confirms the new key: staged copy and previous wrapped keys go
    try:
        assert chat(gw, token) and chat(gw, old_token)
    finally:
        gw.stop()
    assert not staged.exists()
    for secret in (old_key, new_key, api_key, token, old_token, ADMIN_TOKEN):
        assert secret not in gw.log()
