"""Per-tenant cache invalidation (issue 11): a write for one tenant costs the others
nothing, observable through the directory's and the keystore's counters.

Two `Directory`s on one SQLite file stand for two workers; `Management` on a third
connection stands for the CLI or the admin API of another process. Real store, real
keystore (inline RSA), real change log. Credentials are obviously fake."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from keystore import new_master_key
from keystore.store import Keystore
from proxy.service import Management
from proxy.store import Store
from proxy.store.changes import Kind
from proxy.tenants import Directory, hash_token
from translators.types import ModelType

KEY_A = "sk-test-cache-a-not-a-real-key-000001"
KEY_B = "sk-test-cache-b-not-a-real-key-000002"


@dataclass
class World:
    manage: Management
    cli: Store
    worker: Store
    keystore: Keystore
    tokens: dict[str, str]
    ids: dict[str, str]

    def directory(self, **sizes: int) -> Directory:
        return Directory(self.worker, self.keystore, **sizes)


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    cli, worker = Store(tmp_path / "cache.db"), Store(tmp_path / "cache.db")
    await cli.open()
    await worker.open()
    master = new_master_key()
    manage = Management(cli, Keystore(master))
    tokens, ids = {}, {}
    for name, key in (("a", KEY_A), ("b", KEY_B)):
        ids[name] = (await manage.create_tenant(name))["id"]
        await manage.set_provider(name, "openai", {"api_key": key})
        await manage.set_default(name, "llm", "openai/gpt-4o")
        tokens[name] = (await manage.create_token(name))["token"]
    try:
        yield World(manage, cli, worker, Keystore(master), tokens, ids)
    finally:
        await cli.close()
        await worker.close()


async def warm(directory: Directory, token: str) -> str:
    caller = await directory.caller(token)
    assert caller is not None
    return (await directory.credential(caller.tenant, "openai", None))["api_key"]


async def test_a_write_for_one_tenant_leaves_the_others_cached(world: World) -> None:
    directory = world.directory()
    await directory.refresh_if_changed()
    assert await warm(directory, world.tokens["a"]) == KEY_A
    assert await warm(directory, world.tokens["b"]) == KEY_B
    before = (directory.stats.token_loads, directory.stats.tenant_loads,
              directory.stats.credential_decryptions, world.keystore.stats.unwraps)
    assert before == (2, 2, 2, 2)

    # One change of every kind for tenant a.
    await world.manage.create_token("a")
    await world.manage.set_default("a", "llm", "openai/gpt-4.1")
    await world.manage.set_provider("a", "openai", {"api_key": KEY_A + "x"})
    kinds = await directory.refresh_if_changed()
    assert kinds == {Kind.TOKEN, Kind.DEFAULT, Kind.CREDENTIAL}
    assert directory.stats.flushes == 0

    assert await warm(directory, world.tokens["b"]) == KEY_B  # b: nothing loaded again
    assert (directory.stats.tenant_loads, directory.stats.credential_decryptions) == (2, 2)
    assert await warm(directory, world.tokens["a"]) == KEY_A + "x"  # a: its rows again, its key kept
    assert directory.stats.token_loads == 2  # a's token hash stays cached: its token did not change
    assert directory.stats.tenant_loads == 3
    assert directory.stats.credential_decryptions == 3  # the changed credential only
    assert world.keystore.stats.unwraps == 2  # a's private key stayed unwrapped
    assert (await directory.tenant(world.ids["a"])).defaults[ModelType.LLM] == ("openai", "gpt-4.1")


async def test_an_unchanged_credential_is_not_decrypted_again(world: World) -> None:
    directory = world.directory()
    await directory.refresh_if_changed()
    await warm(directory, world.tokens["a"])
    await world.manage.set_provider("a", "anthropic", {"api_key": "sk-ant-test-cache-not-real-000003"})
    await directory.refresh_if_changed()
    assert await warm(directory, world.tokens["a"]) == KEY_A
    assert directory.stats.tenant_loads == 2 and directory.stats.credential_decryptions == 1


async def test_a_revoked_token_is_refused_after_one_poll_and_the_others_stay(world: World) -> None:
    worker_1, worker_2 = world.directory(), world.directory()
    for directory in (worker_1, worker_2):
        await directory.refresh_if_changed()
        await warm(directory, world.tokens["a"])
        await warm(directory, world.tokens["b"])
    second = await world.manage.create_token("a")
    tokens = {t["id"] for t in await world.manage.list_tokens("a")}
    first_id = next(t for t in tokens if t != second["id"])
    await world.manage.revoke_token(first_id)
    for directory in (worker_1, worker_2):
        assert await directory.refresh_if_changed() == {Kind.TOKEN}
        loads = directory.stats.token_loads
        assert await directory.caller(world.tokens["a"]) is None
        assert await directory.caller(second["token"]) is not None
        assert await directory.caller(world.tokens["b"]) is not None
        assert directory.stats.token_loads == loads + 2  # the revoked hash and the new one only
        assert directory.stats.tenant_loads == 2


async def test_a_token_refused_before_it_existed_works_once_created(world: World) -> None:
    directory = world.directory()
    await directory.refresh_if_changed()
    token = "mp-" + "refused-then-created-" + "0" * 24
    assert await directory.caller(token) is None
    assert await directory.caller(token) is None  # remembered as refused
    loads = directory.stats.token_loads
    assert loads == 1
    await world.cli.create_token("tok_later", world.ids["b"], None, hash_token(token), "mp-re...0000")
    await directory.refresh_if_changed()
    caller = await directory.caller(token)
    assert caller is not None and caller.tenant.name == "b"
    assert directory.stats.token_loads == loads + 1


async def test_a_deleted_tenant_goes_alone(world: World) -> None:
    directory = world.directory()
    await directory.refresh_if_changed()
    await warm(directory, world.tokens["a"])
    await warm(directory, world.tokens["b"])
    await world.manage.delete_tenant("a")
    assert await directory.refresh_if_changed() == {Kind.TENANT_DELETED}
    assert await directory.caller(world.tokens["a"]) is None  # its cached token finds no tenant
    assert await directory.caller(world.tokens["a"]) is None  # and is refused from then on
    loads = directory.stats.tenant_loads
    assert await warm(directory, world.tokens["b"]) == KEY_B
    assert directory.stats.tenant_loads == loads and world.keystore.stats.unwraps == 2  # b untouched


async def test_a_gap_in_the_log_drops_everything(world: World) -> None:
    directory = world.directory()
    await directory.refresh_if_changed()
    await warm(directory, world.tokens["b"])
    await world.manage.set_default("a", "llm", "openai/gpt-4.1")
    assert await world.cli.prune_changes(time.time() + 1) > 0  # this worker slept through a prune
    await world.manage.set_default("a", "llm", "openai/gpt-4o")
    assert await directory.refresh_if_changed() == frozenset(Kind)
    assert directory.stats.flushes == 1
    assert await warm(directory, world.tokens["b"]) == KEY_B
    assert directory.stats.tenant_loads == 2 and world.keystore.stats.unwraps == 2


async def test_pruning_keeps_recent_rows(world: World) -> None:
    assert await world.cli.prune_changes(time.time() - 3600) == 0
    counter = await world.cli.changes()
    _, rows = await world.cli.changes_since(0, 1000)
    assert len(rows) == counter and [r.seq for r in rows] == list(range(1, counter + 1))


async def test_lru_bounds_every_cache_and_reloads_what_it_evicted(world: World) -> None:
    keystore = Keystore(world.keystore._master, private_keys=1)
    directory = Directory(world.worker, keystore, tenants=1, tokens=1)
    await directory.refresh_if_changed()
    for _ in range(3):
        assert await warm(directory, world.tokens["a"]) == KEY_A
        assert await warm(directory, world.tokens["b"]) == KEY_B
    # Each alternation evicted the other tenant: 6 loads of each kind, never a stale answer.
    assert directory.stats.token_loads == 6 and directory.stats.tenant_loads == 6
    assert keystore.stats.unwraps == 6
    assert len(directory._tenants) == 1 and len(directory._tokens) == 1
    # A big enough cache loads each once.
    roomy = Directory(world.worker, Keystore(world.keystore._master))
    for _ in range(3):
        await warm(roomy, world.tokens["a"])
        await warm(roomy, world.tokens["b"])
    assert roomy.stats.tenant_loads == 2


async def test_concurrent_first_requests_decrypt_once(world: World) -> None:
    directory = world.directory()
    await directory.refresh_if_changed()
    caller = await directory.caller(world.tokens["a"])
    assert caller is not None
    keys = await asyncio.gather(*(directory.credential(caller.tenant, "openai", None) for _ in range(20)))
    assert {k["api_key"] for k in keys} == {KEY_A}
    assert directory.stats.credential_decryptions == 1


async def test_meta_changes_are_reported_for_the_admin_token(world: World) -> None:
    directory = world.directory()
    await directory.refresh_if_changed()
    await world.cli.set_meta("admin_token_hash", "0" * 64)
    assert await directory.refresh_if_changed() == {Kind.META}
    assert await directory.refresh_if_changed() == frozenset()
