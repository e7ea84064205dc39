"""The credential balancer (proxy/balancer.py): smooth weighted round-robin, cooldowns
from a 429 or repeated failures, invalid keys, and what is left when nothing is ready."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from proxy.balancer import Balancer
from proxy.settings import RoutingSettings
from proxy.store import Store
from proxy.store.credentials import CredentialRow
from proxy.tenants import TenantState
from translators.errors import ApiError, UpstreamError


class _NoStore:
    """Records what the balancer would write; the balancer must not need more."""

    def __init__(self) -> None:
        self.cooldowns: list[object] = []
        self.invalid: list[tuple[str, str, str]] = []
        self.counters = self  # where cooldowns go (`StoreApi.counters`: the store itself, or Redis)

    async def set_cooldown(self, cooldown: object) -> None:
        self.cooldowns.append(cooldown)

    async def mark_invalid(self, tenant_id: str, provider: str, name: str, secret: bytes) -> bool:
        self.invalid.append((tenant_id, provider, name))
        return True


def tenant(*rows: CredentialRow) -> TenantState:
    return TenantState("tn_1", "acme", b"wrapped", {"openai": rows}, {}, {})


def row(name: str, weight: int = 1, invalid: bool = False) -> CredentialRow:
    return CredentialRow(name, weight, f"blob-{name}".encode(), 1 if invalid else None)


def balancer(**settings: float) -> tuple[Balancer, _NoStore]:
    store = _NoStore()
    return Balancer(store, RoutingSettings(**settings)), store  # type: ignore[arg-type]


def test_equal_weights_alternate_and_weights_share() -> None:
    b, _ = balancer()
    t = tenant(row("a"), row("b"))
    assert [b.pick(t, "openai") for _ in range(6)] == ["a", "b", "a", "b", "a", "b"]
    t = tenant(row("a", 3), row("b", 1))
    picks = [b.pick(t, "openai") for _ in range(8)]
    assert picks.count("a") == 6 and picks.count("b") == 2
    assert "b" in picks[:4] and "b" in picks[4:]  # spread, not bunched: smooth


def test_one_credential_is_always_the_one() -> None:
    b, _ = balancer()
    assert b.pick(tenant(row("only", invalid=True)), "openai", avoid={"only"}) == "only"


def test_avoid_invalid_and_cooling_keys() -> None:
    b, store = balancer(cooldown=60)
    t = tenant(row("a"), row("b"), row("c", invalid=True))
    assert {b.pick(t, "openai", avoid={"a"}) for _ in range(4)} == {"b"}
    rate_limited = UpstreamError(429, "slow down", "rate_limit_error", "rate_limit_exceeded", retry_after=30)
    asyncio.run(b.failed(t, "openai", "a", rate_limited))
    assert {b.pick(t, "openai") for _ in range(4)} == {"b"}
    until = b.cooling_until("tn_1", "openai", "a")
    assert until is not None and 25 < until - time.time() <= 30
    assert len(store.cooldowns) == 1
    asyncio.run(b.failed(t, "openai", "a", rate_limited))  # the same cooldown again: no second write
    assert len(store.cooldowns) == 1
    # Everything cooling or avoided: the one back first, rather than nothing.
    asyncio.run(b.failed(t, "openai", "b", UpstreamError(429, "x", "rate_limit_error", None, retry_after=5)))
    assert b.pick(t, "openai") == "b"


def test_repeated_failures_cool_a_key_down_and_a_gateway_refusal_does_not() -> None:
    b, store = balancer(failures_to_cool=3, failure_window=60, cooldown=60)
    t = tenant(row("a"), row("b"))
    for _ in range(2):
        asyncio.run(b.failed(t, "openai", "a", UpstreamError(503, "overloaded", "server_error", None)))
    assert b.cooling_until("tn_1", "openai", "a") is None
    asyncio.run(b.failed(t, "openai", "a", ApiError(429, "our own quota", "rate_limit_error", "insufficient_quota")))
    asyncio.run(b.failed(t, "openai", "a", UpstreamError(400, "bad request", "invalid_request_error", None)))
    assert b.cooling_until("tn_1", "openai", "a") is None
    asyncio.run(b.failed(t, "openai", "a", UpstreamError(502, "reset", "server_error", "upstream_connection_error")))
    assert b.cooling_until("tn_1", "openai", "a") is not None
    assert [c.reason for c in store.cooldowns] == ["failing"]  # type: ignore[attr-defined]


def test_a_success_between_failures_keeps_a_key_in_rotation() -> None:
    b, store = balancer(failures_to_cool=3, failure_window=60, cooldown=60)
    t = tenant(row("a"), row("b"))
    for _ in range(10):  # fails often, but never three times in a row
        asyncio.run(b.failed(t, "openai", "a", UpstreamError(503, "overloaded", "server_error", None)))
        asyncio.run(b.failed(t, "openai", "a", UpstreamError(503, "overloaded", "server_error", None)))
        b.succeeded("tn_1", "openai", "a")
    assert b.cooling_until("tn_1", "openai", "a") is None and store.cooldowns == []


def test_a_rejected_key_is_marked_once() -> None:
    b, store = balancer()
    rejected = UpstreamError(403, "rejected", "permission_error", "upstream_credential_rejected")
    asyncio.run(b.failed(tenant(row("a"), row("b")), "openai", "a", rejected))
    asyncio.run(b.failed(tenant(row("a", invalid=True), row("b")), "openai", "a", rejected))  # reloaded: marked
    assert store.invalid == [("tn_1", "openai", "a")]


def test_cooldowns_are_shared_through_the_store(tmp_path: Path) -> None:
    async def run() -> None:
        one, two = Store(tmp_path / "db"), Store(tmp_path / "db")
        await one.open()
        await two.open()
        try:
            await one.create_tenant("tn_1", "acme", b"public", b"wrapped")
            first, second = Balancer(one, RoutingSettings()), Balancer(two, RoutingSettings())
            t = tenant(row("a"), row("b"))
            await first.failed(t, "openai", "a", UpstreamError(429, "x", "rate_limit_error", None, retry_after=20))
            assert second.cooling_until("tn_1", "openai", "a") is None
            await second.refresh()  # what every worker does on its change poll
            assert second.cooling_until("tn_1", "openai", "a") is not None
            assert {second.pick(t, "openai") for _ in range(3)} == {"b"}
        finally:
            await one.close()
            await two.close()

    asyncio.run(run())
