"""Creating a tenant generates an RSA key pair (a quarter second or more of CPU): it must
not run on the event loop, where it would stall every request the worker is serving."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest

from keystore.store import Keystore
from proxy.bootstrap import open_store_and_keystore
from proxy.service import Management
from proxy.settings import load_settings


@pytest.fixture(autouse=True)
def _no_env_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MODELPORT_MASTER_KEY", raising=False)


async def test_the_event_loop_runs_while_a_tenant_key_pair_is_generated(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    released = threading.Event()
    generating = threading.Event()
    real = Keystore.new_tenant_keys

    def slow_keys(self: Keystore, tenant_id: str) -> object:
        # Holds key generation until the loop has shown it is free. On the loop itself this
        # wait could never end early: it times out and the creation fails.
        generating.set()
        if not released.wait(timeout=5):
            raise AssertionError("the event loop was blocked while the key pair was generated")
        return real(self, tenant_id)

    monkeypatch.setattr(Keystore, "new_tenant_keys", slow_keys)
    store, keystore = await open_store_and_keystore(load_settings(None, data_dir=tmp_path / "data"))
    try:
        creation = asyncio.create_task(Management(store, keystore).create_tenant("busy-keys"))
        for _ in range(500):  # bounded: 5 s of 10 ms steps
            if generating.is_set():
                break
            await asyncio.sleep(0.01)
        assert generating.is_set()
        await asyncio.sleep(0)  # another coroutine runs while the key is being made
        released.set()
        created = await creation
        assert created["name"] == "busy-keys"
        assert [t["name"] for t in await Management(store, keystore).list_tenants()] == ["busy-keys"]
    finally:
        await store.close()
