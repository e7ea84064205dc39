"""The keystore end to end (issue §5): what is on disk, the master key, tenant key
pairs and master-key rotation.

Rotation runs on a gateway of its own (its own data directory), so the session
gateway keeps its master key; the other tests read the session gateway's files.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import sqlite3
import stat
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from keystore import (
    MASTER_KEY_ENV,
    DecryptionError,
    KeystoreError,
    MasterKeyMismatch,
    decrypt_secret,
    encode_master_key,
    load_master_key,
    load_private_key,
    new_master_key,
    parse_master_key,
    unwrap_private_key,
)
from keystore.store import Keystore
from proxy.bootstrap import make_store
from proxy.settings import load_settings
from tests.e2e.harness import ACME_KEY, BETA_KEY, GatewayProcess
from tests.fakes.fixtures import FakeOpenAI
from translators import REGISTRY

HI = [{"role": "user", "content": "hi"}]
OPENAI_FIELDS = REGISTRY["openai"].credential_fields
ROT_KEYS = {"rot-a": "sk-test-rot-a-" + secrets.token_hex(12), "rot-b": "sk-test-rot-b-" + secrets.token_hex(12)}


def db_files(data_dir: Path) -> list[Path]:
    files = sorted(data_dir.glob("modelport.db*"))
    assert data_dir / "modelport.db" in files
    return files


def copy_database(src: Path, dst_dir: Path) -> None:
    """A consistent copy of a live database (WAL contents included) via SQLite's backup."""
    dst_dir.mkdir(parents=True)
    source, target = sqlite3.connect(src), sqlite3.connect(dst_dir / "modelport.db")
    try:
        source.backup(target)
    finally:
        source.close()
        target.close()


def other_master_key() -> str:
    return encode_master_key(new_master_key())


def fresh_chat(gateway: GatewayProcess, token: str) -> int:
    with httpx.Client(base_url=gateway.base_url, headers={"Authorization": f"Bearer {token}"}, timeout=15,
                      limits=httpx.Limits(max_keepalive_connections=0)) as client:
        return client.post("/v1/chat/completions", json={"model": "openai/gpt-4o", "messages": HI}).status_code


# -- what is on disk ----------------------------------------------------------------------------


def test_database_holds_no_secret_in_plaintext(gw: GatewayProcess) -> None:
    assert gw.client().models.list().data  # the server has run and written its WAL
    master_text = (gw.data_dir / "master.key").read_text().strip()
    secrets_ = [ACME_KEY, BETA_KEY, *gw.tokens.values(), master_text]
    if gw.backend == "sqlite":
        db_files(gw.data_dir)  # the database file is where it should be
    for where, raw in gw.stored_bytes().items():
        for secret in secrets_:
            assert secret.encode() not in raw, f"{where} holds a secret in plaintext"
            assert secret[-16:].encode() not in raw
        assert parse_master_key(master_text) not in raw
        assert b"PRIVATE KEY" not in raw
    blobs = [bytes(r[0]) for r in gw.sql("SELECT secret FROM provider_credentials")]
    wrapped = [bytes(r[0]) for r in gw.sql("SELECT wrapped_key FROM tenant_private_keys")]
    assert len(blobs) >= 2 and all(b"api_key" not in b for b in blobs)
    for blob in wrapped:  # private keys are stored wrapped, never as a loadable key
        with pytest.raises(KeystoreError):
            load_private_key(blob)


def test_master_key_file_is_private(gw: GatewayProcess) -> None:
    key_file = gw.data_dir / "master.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    parse_master_key(key_file.read_text().strip())  # 32 bytes, URL-safe base64


def test_one_tenants_key_pair_cannot_decrypt_anothers_credential(gw: GatewayProcess) -> None:
    async def check() -> None:
        store = make_store(load_settings(gw.config_path))  # either backend
        await store.open()
        try:
            master = load_master_key(gw.data_dir / "master.key", create=False)
            acme, beta = await store.find_tenant("acme"), await store.find_tenant("beta")
            assert acme is not None and beta is not None
            acme_wrapped, beta_wrapped = (await store.wrapped_private_key(acme.id),
                                          await store.wrapped_private_key(beta.id))
            assert acme_wrapped is not None and beta_wrapped is not None
            acme_blob = (await store.credentials(acme.id))["openai"][0].secret
            beta_blob = (await store.credentials(beta.id))["openai"][0].secret
        finally:
            await store.close()
        # Control: each tenant's own key pair opens its own credential.
        assert Keystore(master).decrypt(beta.id, beta_wrapped, beta_blob, OPENAI_FIELDS)["api_key"] == BETA_KEY
        assert Keystore(master).decrypt(acme.id, acme_wrapped, acme_blob, OPENAI_FIELDS)["api_key"] == ACME_KEY
        # acme's private key on beta's ciphertext, and the other way round.
        with pytest.raises(DecryptionError):
            Keystore(master).decrypt(acme.id, acme_wrapped, beta_blob, OPENAI_FIELDS)
        with pytest.raises(DecryptionError):
            Keystore(master).decrypt(beta.id, beta_wrapped, acme_blob, OPENAI_FIELDS)
        acme_private = load_private_key(unwrap_private_key(master, acme_wrapped, acme.id.encode()))
        with pytest.raises(DecryptionError):
            decrypt_secret(acme_private, beta_blob)
        # A wrapped private key is bound to its tenant: acme's does not pass as beta's.
        with pytest.raises(MasterKeyMismatch):
            Keystore(master).decrypt(beta.id, acme_wrapped, beta_blob, OPENAI_FIELDS)

    asyncio.run(check())


# -- a wrong master key ------------------------------------------------------------------------


def test_wrong_master_key_is_a_clear_cli_error(gw: GatewayProcess) -> None:
    wrong = other_master_key()
    result = gw.cli("providers", "list", "acme", env={MASTER_KEY_ENV: wrong}, check=False)
    assert result.code == 2
    assert "master key" in result.err and "does not match" in result.err
    assert wrong not in result.err + result.out and ACME_KEY[-4:] not in result.out
    garbage = "not-a-key-" + secrets.token_hex(4)
    result = gw.cli("tenants", "list", env={MASTER_KEY_ENV: garbage}, check=False)
    assert result.code == 2 and MASTER_KEY_ENV in result.err and garbage not in result.err
    assert "acme" in gw.cli("tenants", "list").out  # the right key still works


def share_database(gw: GatewayProcess, other: GatewayProcess) -> None:
    """`other` opens `gw`'s database: a copy of the SQLite file, or (PostgreSQL) the same DSN,
    as another instance of a scaled-out install would."""
    if gw.database:
        other.database = gw.database
    else:
        copy_database(gw.data_dir / "modelport.db", other.data_dir)


def test_wrong_or_missing_master_key_stops_serve_at_start(gw: GatewayProcess, tmp_path: Path) -> None:
    copied = GatewayProcess(tmp_path / "copy", workers=1, env={MASTER_KEY_ENV: other_master_key()})
    share_database(gw, copied)
    with pytest.raises(AssertionError, match="gateway exited"):
        copied.start(timeout=15)
    assert copied.proc is not None and copied.proc.returncode == 2
    assert "master key" in copied.log() and "does not match" in copied.log()
    assert "Traceback" not in copied.log()
    # No key at all for a database that has one: refused, and no new key is made up.
    keyless = GatewayProcess(tmp_path / "keyless", workers=1)
    share_database(gw, keyless)
    with pytest.raises(AssertionError, match="gateway exited"):
        keyless.start(timeout=15)
    assert keyless.proc is not None and keyless.proc.returncode == 2
    assert "master key" in keyless.log() and not (keyless.data_dir / "master.key").exists()
    # Control: the copy opens with the right key (so the failures above are the key's doing).
    keyless.data_dir.mkdir(exist_ok=True)
    shutil.copy2(gw.data_dir / "master.key", keyless.data_dir / "master.key")
    assert f"sk-...{BETA_KEY[-4:]}" in keyless.cli("providers", "list", "beta").out


# -- master-key rotation --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def rotation_gateway(tmp_path_factory: pytest.TempPathFactory, fake_openai_server: FakeOpenAI,
                     fresh_database: Callable[[], str | None]) -> Iterator[GatewayProcess]:
    gateway = GatewayProcess(tmp_path_factory.mktemp("rotation"), database=fresh_database())
    gateway.write_config()
    for name, key in ROT_KEYS.items():
        gateway.cli("tenants", "create", name)
        gateway.cli("providers", "set", name, "openai", f"api_key={key}", f"base_url={fake_openai_server.v1_url}")
        gateway.tokens[name] = gateway.new_token(name)
    gateway.start()
    try:
        yield gateway
    finally:
        gateway.stop()


@pytest.fixture
def rot(rotation_gateway: GatewayProcess, fake_openai: FakeOpenAI) -> GatewayProcess:
    fake_openai.state.api_keys.update(ROT_KEYS.values())
    return rotation_gateway


def test_rotate_master_rewraps_every_key_and_the_running_server_keeps_serving(
        rot: GatewayProcess, fake_openai: FakeOpenAI) -> None:
    key_file = rot.data_dir / "master.key"
    old_text = key_file.read_text().strip()
    old_key = parse_master_key(old_text)

    def wrapped() -> dict[str, bytes]:
        return {r[0]: bytes(r[1]) for r in rot.sql("SELECT tenant_id, wrapped_key FROM tenant_private_keys")}

    before = wrapped()
    for name in ROT_KEYS:  # warm both workers' caches
        assert [fresh_chat(rot, rot.tokens[name]) for _ in range(4)] == [200] * 4

    out = rot.cli("keys", "rotate-master").out
    assert "rotated" in out and "2 tenant key(s)" in out
    new_text = key_file.read_text().strip()
    new_key = parse_master_key(new_text)
    assert new_key != old_key and old_text not in out and new_text not in out
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert not list(rot.data_dir.glob("*.new")) and not list(rot.data_dir.glob(".master.key.*"))

    after = wrapped()
    assert after.keys() == before.keys() and all(after[t] != before[t] for t in before)
    for tenant_id, blob in after.items():
        unwrap_private_key(new_key, blob, tenant_id.encode())
        with pytest.raises(MasterKeyMismatch):
            unwrap_private_key(old_key, blob, tenant_id.encode())

    # Every credential still decrypts (a new process, the new key file) ...
    for name, key in ROT_KEYS.items():
        assert f"sk-...{key[-4:]}" in rot.cli("providers", "list", name).out
    # ... the running server, whose caches are dropped by the change, keeps serving both tenants ...
    time.sleep(0.5)
    for _ in range(3):
        for name, key in ROT_KEYS.items():
            start = len(fake_openai.state.requests)
            assert fresh_chat(rot, rot.tokens[name]) == 200, name
            assert fake_openai.state.requests[start].headers["authorization"] == f"Bearer {key}"
    # ... and a tenant created after the rotation works on it too.
    extra_key = "sk-test-rot-c-" + secrets.token_hex(12)
    fake_openai.state.api_keys.add(extra_key)
    rot.cli("tenants", "create", "rot-c")
    rot.cli("providers", "set", "rot-c", "openai", f"api_key={extra_key}", f"base_url={fake_openai.v1_url}")
    token = rot.new_token("rot-c")
    time.sleep(0.5)
    assert [fresh_chat(rot, token) for _ in range(4)] == [200] * 4
    # The old key no longer opens the database.
    stale = rot.cli("tenants", "list", env={MASTER_KEY_ENV: old_text}, check=False)
    assert stale.code == 2 and "master key" in stale.err

    log = rot.log()
    for secret in (old_text, new_text, extra_key, token, *ROT_KEYS.values(), *rot.tokens.values()):
        assert secret not in log


def test_rotate_master_with_the_env_key_writes_the_new_key_to_a_private_file(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    offline = GatewayProcess(tmp_path / "env-rotation")  # CLI only, no server
    offline.write_config()
    start_key = other_master_key()
    env = {MASTER_KEY_ENV: start_key}
    api_key = "sk-test-env-rot-" + secrets.token_hex(12)
    offline.cli("tenants", "create", "envy", env=env)
    offline.cli("providers", "set", "envy", "openai", f"api_key={api_key}", env=env)
    assert not (offline.data_dir / "master.key").exists()  # the env key is used, no file is made

    result = offline.cli("keys", "rotate-master", env=env)
    staged = offline.data_dir / "master.key.new"
    assert MASTER_KEY_ENV in result.out and str(staged) in result.out
    assert stat.S_IMODE(staged.stat().st_mode) == 0o600
    new_key = staged.read_text().strip()
    parse_master_key(new_key)
    assert new_key != start_key and new_key not in result.out + result.err and start_key not in result.out
    assert not (offline.data_dir / "master.key").exists()

    def previous_rows() -> int:
        db = sqlite3.connect(offline.data_dir / "modelport.db")
        try:
            return int(db.execute("SELECT COUNT(*) FROM previous_private_keys").fetchone()[0])
        finally:
            db.close()

    assert previous_rows() == 1  # kept until the new key is confirmed
    # The previous key still opens the database until then, with a warning naming the file.
    with caplog.at_level("WARNING", logger="modelport"):
        stale = offline.cli("providers", "list", "envy", env=env)
    warned = " ".join(r.getMessage() for r in caplog.records)
    assert "previous one" in warned and str(staged) in warned and f"sk-...{api_key[-4:]}" in stale.out
    assert start_key not in warned + stale.err and new_key not in warned + stale.err
    assert previous_rows() == 1 and staged.exists()  # and confirms nothing
    # The first open with the new key confirms it: staged copy and previous keys go.
    assert f"sk-...{api_key[-4:]}" in offline.cli("providers", "list", "envy", env={MASTER_KEY_ENV: new_key}).out
    assert not staged.exists() and previous_rows() == 0
    stale = offline.cli("providers", "list", "envy", env=env, check=False)
    assert stale.code == 2 and "master key" in stale.err
    assert os.environ.get(MASTER_KEY_ENV) is None  # the harness put the environment back


def test_no_secret_in_the_session_server_log(gw: GatewayProcess) -> None:
    log = gw.log()
    for secret in (ACME_KEY, BETA_KEY, *gw.tokens.values(), (gw.data_dir / "master.key").read_text().strip()):
        assert secret not in log
