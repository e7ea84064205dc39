"""Creating a tenant generates an RSA key pair (a quarter second or more of CPU): in the
server it must not run on the event loop, where it would stall every request the worker
is serving. A thread is not enough (pycryptodome holds the GIL): it runs in a helper
process, or comes ready-made from the key pair pool. CLI commands run it inline."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from keystore.offload import InlineCrypto, ProcessCrypto
from keystore.store import Keystore, WrappedKey
from proxy.bootstrap import open_store_and_keystore
from proxy.service import Management
from proxy.settings import Settings, load_settings

API_KEY = "sk-test-keygen-not-a-real-key-0001"


@pytest.fixture(autouse=True)
def _no_env_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MODELPORT_MASTER_KEY", raising=False)


def _settings(tmp_path: Path, processes: int = 1, pregenerated: int = 0) -> Settings:
    return load_settings(None, data_dir=tmp_path / "data",
                         crypto={"processes": processes, "pregenerated_keys": pregenerated})


async def _ticks_during_key_creation(keystore: Keystore, monkeypatch: pytest.MonkeyPatch,
                                     create: Any) -> int:
    """How often a 1 ms ticker ran while `create_tenant_keys` was pending. Inline RSA never
    yields to the loop, so it is 0 there; the database awaits around it do not count."""
    ticks = 0
    during: list[int] = []
    real = keystore.create_tenant_keys

    async def spied(tenant_id: str) -> tuple[bytes, WrappedKey]:
        before = ticks
        try:
            return await real(tenant_id)
        finally:
            during.append(ticks - before)

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.001)
            ticks += 1

    monkeypatch.setattr(keystore, "create_tenant_keys", spied)
    ticking = asyncio.create_task(ticker())
    try:
        await create
    finally:
        ticking.cancel()
    assert len(during) == 1
    return during[0]


async def test_the_event_loop_runs_while_a_tenant_key_pair_is_generated(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    store, keystore = await open_store_and_keystore(_settings(tmp_path), serving=True)
    keystore.start()
    try:
        assert isinstance(keystore.runner, ProcessCrypto)
        manage = Management(store, keystore)
        assert await _ticks_during_key_creation(keystore, monkeypatch, manage.create_tenant("busy-keys")) >= 2
        assert keystore.stats.keys_generated == 1
        assert [t["name"] for t in await manage.list_tenants()] == ["busy-keys"]
        # Its credentials open (RSA in the helper process too).
        await manage.set_provider("busy-keys", "openai", {"api_key": API_KEY})
        providers = await manage.list_providers("busy-keys")
        assert providers[0]["fields"]["api_key"] != API_KEY and keystore.stats.rsa_decryptions == 1
    finally:
        await keystore.close()
        await store.close()


async def test_the_measure_sees_inline_generation_block_the_loop(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    store, keystore = await open_store_and_keystore(_settings(tmp_path))  # the CLI's keystore
    try:
        assert isinstance(keystore.runner, InlineCrypto)
        manage = Management(store, keystore)
        assert await _ticks_during_key_creation(keystore, monkeypatch, manage.create_tenant("cli-keys")) == 0
        assert keystore.stats.keys_generated == 1
    finally:
        await keystore.close()
        await store.close()


async def test_a_served_tenant_gets_a_pregenerated_key_pair(tmp_path: Path) -> None:
    store, keystore = await open_store_and_keystore(_settings(tmp_path, pregenerated=1), serving=True)
    keystore.start()
    try:
        for _ in range(2000):  # bounded: 10 s of 5 ms steps
            if keystore.pool.ready == 1:
                break
            await asyncio.sleep(0.005)
        assert keystore.pool.ready == 1
        manage = Management(store, keystore)
        await manage.create_tenant("ready-keys")
        assert keystore.pool.hits == 1 and keystore.pool.misses == 0
        await manage.set_provider("ready-keys", "openai", {"api_key": API_KEY})
        assert (await manage.list_providers("ready-keys"))[0]["provider"] == "openai"
    finally:
        await keystore.close()
        await store.close()


@pytest.mark.parametrize(("serving", "processes", "runner", "pool"), [
    (False, 2, InlineCrypto, 0),   # a CLI command: no helper processes, nothing made ahead
    (True, 0, InlineCrypto, 0),    # crypto.processes 0: inline, and nothing made ahead on the loop
    (True, 2, ProcessCrypto, 3),
])
async def test_only_the_server_gets_helper_processes_and_a_pool(tmp_path: Path, serving: bool, processes: int,
                                                                runner: type, pool: int) -> None:
    settings = load_settings(None, data_dir=tmp_path / "data", cache={"private_keys": 7},
                             crypto={"processes": processes, "pregenerated_keys": 3})
    store, keystore = await open_store_and_keystore(settings, serving=serving)
    try:
        assert type(keystore.runner) is runner and keystore.pool.size == pool
        assert keystore._private.maxsize == 7  # cache.private_keys
        if isinstance(keystore.runner, ProcessCrypto):
            assert keystore.runner.processes == processes
            # Key generation has a lane of its own, one process, at a lower priority.
            assert isinstance(keystore.key_runner, ProcessCrypto) and keystore.key_runner is not keystore.runner
            assert keystore.key_runner.processes == 1
        else:
            assert keystore.key_runner is keystore.runner
    finally:
        await keystore.close()
        await store.close()
