"""Master-key rotation and start-up (proxy/rotation.py): no credential is ever left
under a key that exists nowhere, whatever fails or runs concurrently (issue 10).

In-process on a data directory of each test's own; the CLI runs as a subprocess only
where its stdout must be /dev/full. Credentials are obviously fake."""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import keystore.master
from keystore import (
    MASTER_KEY_ENV,
    encode_master_key,
    load_master_key,
    master_key_id,
    new_master_key,
)
from keystore.store import Keystore
from proxy.bootstrap import StartupError, open_store_and_keystore
from proxy.cli import main as cli_main
from proxy.rotation import rotate_master
from proxy.service import Management
from proxy.settings import Settings, load_settings
from proxy.store.keys import KeyRotation
from proxy.tenants import Directory
from translators.errors import ApiError

REPO = Path(__file__).resolve().parents[2]
API_KEY = "sk-test-rotation-not-a-real-key-0001"


@pytest.fixture(autouse=True)
def _no_env_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(MASTER_KEY_ENV, raising=False)
    monkeypatch.setattr(keystore.master, "_warned_empty", False)


def make_settings(tmp_path: Path) -> Settings:
    return load_settings(None, data_dir=tmp_path / "data")


async def seed(settings: Settings, *names: str) -> None:
    store, ks = await open_store_and_keystore(settings)
    try:
        for name in names:
            await Management(store, ks).create_tenant(name)
            await Management(store, ks).set_provider(name, "openai", {"api_key": API_KEY})
    finally:
        await store.close()


async def listed(settings: Settings, name: str) -> list[dict[str, Any]]:
    """Decrypts the tenant's credentials in a fresh process-like open (no caches)."""
    store, ks = await open_store_and_keystore(settings)
    try:
        return await Management(store, ks).list_providers(name)
    finally:
        await store.close()


def snapshot(settings: Settings) -> tuple[object, ...]:
    db = sqlite3.connect(settings.database_path)
    try:
        return (db.execute("SELECT tenant_id, wrapped_key, master_key_id FROM tenant_private_keys "
                           "ORDER BY tenant_id").fetchall(),
                db.execute("SELECT key, value FROM meta WHERE key LIKE 'master_key%' ORDER BY key").fetchall(),
                db.execute("SELECT COUNT(*) FROM previous_private_keys").fetchone())
    finally:
        db.close()


def staged(settings: Settings) -> Path:
    return settings.master_key_path.with_name("master.key.new")


# -- an empty MODELPORT_MASTER_KEY ---------------------------------------------------------------


def test_empty_env_key_reads_as_unset_with_a_warning(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                      caplog: pytest.LogCaptureFixture,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv(MASTER_KEY_ENV, "")
    key_file = tmp_path / "master.key"
    with caplog.at_level(logging.WARNING, logger="modelport"):
        key = load_master_key(key_file, create=True)
    assert key_file.exists() and load_master_key(key_file, create=False) == key
    assert any(MASTER_KEY_ENV in r.getMessage() and "empty" in r.getMessage() for r in caplog.records)
    # Every command still works (here on a fresh data directory, then again on it).
    monkeypatch.setenv(MASTER_KEY_ENV, "  \n")
    data = str(tmp_path / "cli-data")
    assert cli_main(["--data-dir", data, "tenants", "create", "acme"]) == 0
    assert cli_main(["--data-dir", data, "tenants", "list"]) == 0
    assert "acme" in capsys.readouterr().out


# -- a server holding the old key never wraps under it ------------------------------------------


def test_a_stale_master_key_cannot_create_a_tenant(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    settings = make_settings(tmp_path)

    async def scenario() -> None:
        await seed(settings, "acme")
        store, following = await open_store_and_keystore(settings)  # can reload the key file
        stale = Keystore(load_master_key(settings.master_key_path, create=False))  # like an env key: cannot
        directory = Directory(store, following)
        await directory.refresh_if_changed()
        try:
            await rotate_master(settings)
            with pytest.raises(ApiError) as refused:
                await Management(store, stale).create_tenant("late")
            assert refused.value.status == 503 and refused.value.retry_after
            assert await store.find_tenant("late") is None
            # A worker that follows the change loads the new key and creates tenants again.
            old_id = following.key_id
            await directory.refresh_if_changed()
            assert following.key_id != old_id
            await Management(store, following).create_tenant("late")
            await Management(store, following).set_provider("late", "openai", {"api_key": API_KEY})
        finally:
            await store.close()
        assert (await listed(settings, "late"))[0]["fields"]["api_key"] == f"sk-...{API_KEY[-4:]}"

    asyncio.run(scenario())
    capsys.readouterr()


def test_rotation_reads_and_rewraps_in_one_transaction(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    """A tenant created by another process while a rotation runs is either re-wrapped by
    it or refused: never inserted under the old key between the read and the write."""
    settings = make_settings(tmp_path)
    original = KeyRotation.replace
    racer: list[asyncio.Task[Any]] = []

    async def scenario() -> None:
        await seed(settings, "acme")
        other_store, other_ks = await open_store_and_keystore(settings)  # "another worker"

        async def replace_with_a_racer(self: KeyRotation, *args: Any) -> None:
            racer.append(asyncio.create_task(Management(other_store, Keystore(
                load_master_key(settings.master_key_path, create=False))).create_tenant("racer")))
            await asyncio.sleep(0.3)  # the racer now waits for the rotation's write lock
            await original(self, *args)

        monkeypatch.setattr(KeyRotation, "replace", replace_with_a_racer)
        try:
            await rotate_master(settings)
            with pytest.raises(ApiError) as refused:
                await racer[0]
            assert refused.value.status == 503
        finally:
            await other_store.close()
        monkeypatch.setattr(KeyRotation, "replace", original)
        assert (await listed(settings, "acme"))[0]["fields"]["api_key"] == f"sk-...{API_KEY[-4:]}"
        store, _ = await open_store_and_keystore(settings)
        try:
            assert await store.find_tenant("racer") is None
        finally:
            await store.close()

    asyncio.run(scenario())
    capsys.readouterr()


# -- output that cannot be written ---------------------------------------------------------------


@pytest.mark.parametrize("mode", ["key-file", "env"])
def test_a_rotation_whose_output_cannot_be_written_changes_nothing(tmp_path: Path, mode: str,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    settings = make_settings(tmp_path)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop(MASTER_KEY_ENV, None)
    if mode == "env":
        env[MASTER_KEY_ENV] = encode_master_key(new_master_key())
        monkeypatch.setenv(MASTER_KEY_ENV, env[MASTER_KEY_ENV])  # the in-process opens below
    asyncio.run(seed(settings, "acme", "beta"))
    before = snapshot(settings)
    key_file_before = settings.master_key_path.read_bytes() if mode == "key-file" else None
    with open("/dev/full", "w") as full:
        result = subprocess.run([sys.executable, "-m", "proxy.cli", "--data-dir", str(settings.data_dir),
                                 "keys", "rotate-master"], stdout=full, stderr=subprocess.PIPE, env=env,
                                cwd=tmp_path, timeout=60, text=True)
    assert result.returncode != 0
    assert "nothing was changed" in result.stderr and "Traceback" not in result.stderr
    assert snapshot(settings) == before
    assert not staged(settings).exists()
    if mode == "key-file":
        assert settings.master_key_path.read_bytes() == key_file_before
    else:
        assert not settings.master_key_path.exists()
    for name in ("acme", "beta"):  # the old key still opens everything
        assert (asyncio.run(listed(settings, name)))[0]["fields"]["api_key"] == f"sk-...{API_KEY[-4:]}"


# -- a crash between COMMIT and the rename -------------------------------------------------------


def test_a_crash_between_commit_and_rename_is_finished_at_start(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                 caplog: pytest.LogCaptureFixture,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    settings = make_settings(tmp_path)
    asyncio.run(seed(settings, "acme"))
    old_text = settings.master_key_path.read_text()
    # The crash: COMMIT done, the process gone before the rename.
    monkeypatch.setattr("proxy.rotation.finish_rename", lambda *args: None)
    asyncio.run(rotate_master(settings))
    monkeypatch.undo()
    new_text = staged(settings).read_text()
    assert settings.master_key_path.read_text() == old_text and new_text != old_text
    with caplog.at_level(logging.INFO, logger="modelport"):
        assert (asyncio.run(listed(settings, "acme")))[0]["fields"]["api_key"] == f"sk-...{API_KEY[-4:]}"
    assert settings.master_key_path.read_text() == new_text and not staged(settings).exists()
    messages = " ".join(r.getMessage() for r in caplog.records)
    assert "interrupted" in messages and str(staged(settings)) in messages
    assert str(settings.master_key_path) in messages
    assert old_text.strip() not in messages and new_text.strip() not in messages
    capsys.readouterr()


def test_a_staged_key_that_does_not_match_is_left_and_named(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    settings = make_settings(tmp_path)
    asyncio.run(seed(settings, "acme"))
    stray = encode_master_key(new_master_key())
    staged(settings).write_text(stray + "\n")
    with caplog.at_level(logging.WARNING, logger="modelport"):
        assert asyncio.run(listed(settings, "acme"))  # the key file is right: works
    assert staged(settings).read_text().strip() == stray
    assert any(str(staged(settings)) in r.getMessage() for r in caplog.records)
    # Both wrong: the error names the key file and the staged file, and shows neither key.
    wrong = encode_master_key(new_master_key())
    settings.master_key_path.write_text(wrong + "\n")
    with pytest.raises(StartupError) as exc:
        asyncio.run(listed(settings, "acme"))
    message = str(exc.value)
    assert "does not match" in message and str(settings.master_key_path) in message
    assert str(staged(settings)) in message and "left in place" in message
    assert wrong not in message and stray not in message
    assert staged(settings).read_text().strip() == stray


def test_previous_wrapped_keys_serve_an_old_key_until_confirmed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    settings = make_settings(tmp_path)
    old = encode_master_key(new_master_key())
    monkeypatch.setenv(MASTER_KEY_ENV, old)

    async def scenario() -> None:
        await seed(settings, "acme")
        store, worker = await open_store_and_keystore(settings)  # a server on the old env key
        directory = Directory(store, worker)
        try:
            await rotate_master(settings)
            staged(settings).unlink()  # the operator moved the new key elsewhere
            await directory.refresh_if_changed()
            assert worker.key_id == master_key_id(load_master_key(settings.master_key_path, create=False))
            state = await directory.tenant((await store.find_tenant("acme")).id)  # type: ignore[union-attr]
            assert (await directory.credential(state, "openai", None))["api_key"] == API_KEY
        finally:
            await store.close()

    asyncio.run(scenario())
    new = [line for line in capsys.readouterr().out.splitlines() if "master.key.new" in line]
    assert new, "the rotation names the file with the new key"
    assert snapshot(settings)[2] == (1,)


def test_a_database_from_before_key_ids_adopts_its_verified_key(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    asyncio.run(seed(settings, "acme"))
    db = sqlite3.connect(settings.database_path)
    db.execute("UPDATE tenant_private_keys SET master_key_id = NULL")
    db.execute("DELETE FROM meta WHERE key = 'master_key_id'")
    db.commit()
    db.close()
    assert asyncio.run(listed(settings, "acme"))
    key_id = master_key_id(load_master_key(settings.master_key_path, create=False))
    rows, meta, _ = snapshot(settings)  # type: ignore[misc]
    assert [r[2] for r in rows] == [key_id] and ("master_key_id", key_id) in meta
