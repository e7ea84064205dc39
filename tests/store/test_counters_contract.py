"""The counters' contract (`proxy/counters.py`), run on its three implementations: the
SQLite store, the PostgreSQL store (a fresh database on `tests/pg.py`'s cluster) and
`RedisCounters` (`tests/redis_server.py`'s server); PostgreSQL and Redis skip, saying why,
where they are not installed. Several openers on one backend are several workers or
instances: what one takes, the others see.

Then what is Redis's own: unreachable (a 503 `counters_unavailable` naming host:port,
never the password), back after a restart, counters that expire on their own.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from proxy.counters import Counters, CountersUnavailable
from proxy.store import Store
from proxy.store.credentials import Cooldown
from proxy.store.limits import Charge

Opener = Callable[[], Awaitable[Counters]]


@pytest.fixture(params=["sqlite", "postgresql", "redis"])
def where(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A SQLite file's path, a fresh PostgreSQL database's DSN or the emptied Redis's URL."""
    if request.param == "sqlite":
        return str(tmp_path / "modelport.db")
    fixture = {"postgresql": "pg_dsn", "redis": "redis_url"}[request.param]
    url: str = request.getfixturevalue(fixture)
    return url


@pytest.fixture
async def opener(where: str) -> AsyncIterator[Opener]:
    """Opens another client of the same counters each call (another worker or instance)."""
    closers: list[Callable[[], Awaitable[None]]] = []

    async def open_one() -> Counters:
        if where.startswith("redis://"):
            from proxy.store.redis_counters import RedisCounters

            redis = RedisCounters(where)
            await redis.open()
            closers.append(redis.close)
            return redis
        if where.startswith("postgresql://"):
            from proxy.store.postgres import PostgresStore

            store: Store | PostgresStore = PostgresStore(where, pool_size=4)
        else:
            store = Store(Path(where))
        await store.open()
        closers.append(store.close)
        if len(closers) == 1:  # the tables' cooldowns belong to tenants
            for tenant_id in ("tn_1", "tn_2"):
                await store.create_tenant(tenant_id, tenant_id, b"public", b"wrapped")
        return store.counters

    yield open_one
    for close in closers:
        await close()


@pytest.fixture
async def counters(opener: Opener) -> Counters:
    return await opener()


async def test_a_take_adds_to_every_counter_or_to_none(counters: Counters) -> None:
    wide, narrow = Charge("wide", 1, 10), Charge("narrow", 1, 1)
    first = await counters.rate_take(7, [wide, narrow])
    assert first.refused is None and first.used == (0, 0)
    refused = await counters.rate_take(7, [wide, narrow])
    assert refused.refused == 1 and refused.used == (1, 1)  # narrow is full: wide is not spent either
    assert await counters.rate_used(7, ["wide", "narrow", "unused"]) == {"wide": 1, "narrow": 1}
    assert (await counters.rate_take(7, [wide])).used == (1,)  # the other limit alone still takes
    assert await counters.rate_used(7, ["wide"]) == {"wide": 2}


async def test_refused_is_the_first_charge_that_would_pass_its_limit(counters: Counters) -> None:
    tokens = [Charge("a", 1, 100), Charge("b", 40, 50), Charge("c", 40, 50)]
    assert (await counters.rate_take(3, tokens)).refused is None
    taken = await counters.rate_take(3, tokens)
    assert (taken.refused, taken.used) == (1, (1, 40, 40))  # b and c both would pass: b is named
    assert (await counters.rate_take(3, [Charge("big", 11, 10)])).refused == 0  # larger than the limit itself
    assert await counters.rate_used(3, ["a", "b", "c", "big"]) == {"a": 1, "b": 40, "c": 40}


async def test_minutes_are_separate_counters(counters: Counters) -> None:
    charge = [Charge("m", 1, 1)]
    assert (await counters.rate_take(10, charge)).refused is None
    assert (await counters.rate_take(10, charge)).refused == 0
    assert (await counters.rate_take(11, charge)).refused is None
    assert await counters.rate_used(10, ["m"]) == {"m": 1} == await counters.rate_used(11, ["m"])


async def test_settle_corrects_existing_counters_never_below_zero(counters: Counters) -> None:
    await counters.rate_take(5, [Charge("tok", 10, 1000), Charge("req", 1, 10)])
    await counters.rate_settle(5, ["tok"], 25)
    assert await counters.rate_used(5, ["tok", "req"]) == {"tok": 35, "req": 1}
    await counters.rate_settle(5, ["tok"], -100)
    assert await counters.rate_used(5, ["tok"]) == {"tok": 0}
    await counters.rate_settle(5, ["never-taken"], 10)  # corrects, never opens a counter
    await counters.rate_settle(6, ["tok"], 10)
    assert await counters.rate_used(5, ["never-taken"]) == {} == await counters.rate_used(6, ["tok"])
    assert (await counters.rate_take(5, [Charge("tok", 1000, 1000)])).refused is None  # the freed tokens count


async def test_100_concurrent_takes_of_a_limit_of_3_over_3_clients_give_exactly_3(opener: Opener) -> None:
    clients = [await opener() for _ in range(3)]
    # Every client's connections open first: redis-py's pool opens them one at a time under a
    # lock, which alone would serialise a cold burst and hide a take that is not atomic.
    await asyncio.gather(*[clients[i % 3].rate_used(0, ["warm-up"]) for i in range(100)])
    charges = [Charge("tenant", 1, 3), Charge("token", 1, 1000)]
    results = await asyncio.gather(*[clients[i % 3].rate_take(42, charges) for i in range(100)])
    assert sum(r.refused is None for r in results) == 3
    assert {r.refused for r in results} == {None, 0}
    assert await clients[1].rate_used(42, ["tenant", "token"]) == {"tenant": 3, "token": 3}


async def test_a_cooldown_keeps_the_later_until_and_the_latest_reason(opener: Opener) -> None:
    a, b = await opener(), await opener()
    now = time.time()
    await a.set_cooldown(Cooldown("tn_1", "openai", "default", now + 60, "rate_limited"))
    await b.set_cooldown(Cooldown("tn_1", "openai", "default", now + 10, "failing"))  # another instance, shorter
    await a.set_cooldown(Cooldown("tn_1", "openai/gpt-4o", "spare", now + 30, "failing"))
    await b.set_cooldown(Cooldown("tn_2", "anthropic", "default", now + 20, "rate_limited"))
    [cool] = [c for c in await b.cooldowns(now, "tn_1") if c.name == "default"]
    assert (cool.tenant_id, cool.provider, cool.until, cool.reason) == ("tn_1", "openai", pytest.approx(now + 60),
                                                                        "failing")
    assert {(c.tenant_id, c.provider, c.name) for c in await a.cooldowns(now)} == {
        ("tn_1", "openai", "default"), ("tn_1", "openai/gpt-4o", "spare"), ("tn_2", "anthropic", "default")}
    assert [c.provider for c in await a.cooldowns(now, "tn_2")] == ["anthropic"]
    assert {c.name for c in await a.cooldowns(now + 25, "tn_1")} == {"default", "spare"}
    assert [c.name for c in await a.cooldowns(now + 45)] == ["default"]  # the others are over
    await b.set_cooldown(Cooldown("tn_1", "openai", "default", now + 90, "rate_limited"))  # a longer one wins
    assert [c.until for c in await a.cooldowns(now + 61, "tn_1")] == [pytest.approx(now + 90)]


async def test_a_finished_cooldown_is_not_listed_and_can_start_again(counters: Counters) -> None:
    start = time.time()
    await counters.set_cooldown(Cooldown("tn_1", "openai", "k", start + 0.3, "rate_limited"))
    assert len(await counters.cooldowns(time.time())) == 1
    await asyncio.sleep(0.5)
    assert await counters.cooldowns(time.time()) == []
    assert await counters.prune_cooldowns(time.time()) in (0, 1)  # the rows deleted; Redis: nothing to do
    assert await counters.cooldowns(time.time()) == []
    await counters.set_cooldown(Cooldown("tn_1", "openai", "k", time.time() + 30, "failing"))
    [again] = await counters.cooldowns(time.time(), "tn_1")
    assert again.reason == "failing" and again.until > time.time() + 25


# -- Redis's own ---------------------------------------------------------------------------------


async def test_redis_unreachable_names_host_and_port_never_the_password() -> None:
    from proxy.store.redis_counters import RedisCounters

    counters = RedisCounters("redis://:s3cret-redis-pw@127.0.0.1:1/2")
    assert "s3cret" not in repr(counters)
    try:
        for call in (counters.open(), counters.rate_take(1, [Charge("s", 1, 1)]), counters.cooldowns(0.0)):
            started = time.monotonic()
            with pytest.raises(CountersUnavailable) as caught:
                await call
            assert time.monotonic() - started < 2  # refused at once: no retries with backoff
            err = caught.value
            assert (err.status, err.code, err.type, err.retry_after) == (503, "counters_unavailable", "server_error", 1)
            assert "127.0.0.1:1/2" in err.message and "s3cret" not in err.message
    finally:
        await counters.close()


async def test_redis_restarted_works_again_without_reopening(redis_server: object, redis_url: str) -> None:
    from proxy.store.redis_counters import RedisCounters
    from tests.redis_server import RedisServer

    assert isinstance(redis_server, RedisServer)
    counters = RedisCounters(redis_url)
    await counters.open()
    try:
        assert (await counters.rate_take(1, [Charge("r", 1, 5)])).refused is None
        redis_server.stop()
        with pytest.raises(CountersUnavailable):
            await counters.rate_take(1, [Charge("r", 1, 5)])
        redis_server.start()  # empty (nothing saved), its scripts gone: loaded again on NOSCRIPT
        assert (await counters.rate_take(1, [Charge("r", 1, 5)])).used == (0,)
        await counters.set_cooldown(Cooldown("tn_1", "openai", "default", time.time() + 30, "failing"))
        assert len(await counters.cooldowns(time.time())) == 1
    finally:
        await counters.close()


async def test_redis_counters_expire_on_their_own(redis_server: object, redis_url: str) -> None:
    from proxy.store.redis_counters import COUNTER_TTL, RedisCounters
    from tests.redis_server import RedisServer

    assert isinstance(redis_server, RedisServer)
    counters = RedisCounters(redis_url)
    try:
        await counters.rate_take(9, [Charge("tenant|tn_1||", 1, 5)])
        ttl = int((redis_server.command("TTL", "modelport:rl:9:tenant|tn_1||") or ":-9")[1:])
        assert 60 < ttl <= COUNTER_TTL  # outlives its minute, then goes
        await counters.rate_settle(9, ["tenant|tn_1||"], -5)  # a correction keeps the expiry
        assert 60 < int((redis_server.command("TTL", "modelport:rl:9:tenant|tn_1||") or ":-9")[1:]) <= COUNTER_TTL
    finally:
        await counters.close()


def test_redis_url_from_the_configuration_or_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from proxy.settings import REDIS_URL_ENV, SettingsError, load_settings

    monkeypatch.delenv(REDIS_URL_ENV, raising=False)
    assert load_settings(data_dir=tmp_path).redis_url is None
    monkeypatch.setenv(REDIS_URL_ENV, "redis://:s3cret-redis@cache.internal:6380/3")
    settings = load_settings(data_dir=tmp_path)
    assert settings.redis_url == "redis://:s3cret-redis@cache.internal:6380/3" and "s3cret" not in repr(settings)
    config = tmp_path / "c.yaml"
    config.write_text("redis_url: unix:///run/redis.sock\n")  # the configuration's wins over the environment
    assert load_settings(config).redis_url == "unix:///run/redis.sock"
    for bad in ("http://cache:6379", "redis://:s3cret-redis@cache:99999/0", "redis:///0"):
        config.write_text(f"redis_url: '{bad}'\n")
        with pytest.raises(SettingsError, match="redis_url") as caught:
            load_settings(config)
        assert "s3cret" not in str(caught.value)


async def test_the_store_hands_its_counters_to_redis_when_configured(tmp_path: Path, redis_url: str) -> None:
    from proxy.bootstrap import open_store_and_keystore
    from proxy.settings import load_settings
    from proxy.store.redis_counters import RedisCounters

    plain, _ = await open_store_and_keystore(load_settings(data_dir=tmp_path / "a"))
    try:
        assert plain.counters is plain
    finally:
        await plain.close()
    store, _ = await open_store_and_keystore(load_settings(data_dir=tmp_path / "b", redis_url=redis_url))
    counters = store.counters
    assert isinstance(counters, RedisCounters)
    await counters.rate_take(1, [Charge("s", 1, 1)])
    assert await store.rate_used(1, ["s"]) == {}  # the table is not where they went
    closed: list[bool] = []
    close = counters.close

    async def spy() -> None:
        closed.append(True)
        await close()

    counters.close = spy  # type: ignore[method-assign]
    await store.close()
    assert closed == [True]  # closed with the store
