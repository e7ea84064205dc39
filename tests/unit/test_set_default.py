"""`defaults set` (CLI and admin API) accepts exactly what routing would serve (issue 14): it
asks `proxy.routing.explicit` rather than re-stating the precedence (a per-model entry of
that type; the tenant's own credential; else a hosted trial's listed models, while calls
are left). Real store, real keystore; credentials obviously fake."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable
from pathlib import Path

import pytest

from keystore import new_master_key
from keystore.store import Keystore
from proxy import routing
from proxy.hosted import build_offers
from proxy.service import Management
from proxy.settings import HostedSettings
from proxy.store import Store
from proxy.tenants import Directory, TenantState
from translators import REGISTRY
from translators.errors import ApiError
from translators.types import ModelType

OFFERS = build_offers({"openai": HostedSettings(credentials={"api_key": "sk-test-platform-0000000000001"},
                                                quota=3, models=["gpt-3.5-turbo", "text-embedding-3-small"])})
CLAUDE = REGISTRY["anthropic"].catalog[ModelType.LLM][0]
BGE = "BAAI/bge-small-en-v1.5"

# (type, target): what routing decides for the tenant below.
TARGETS = [
    ("llm", f"anthropic/{CLAUDE}"),              # its own credential
    ("llm", "openai/gpt-3.5-turbo"),             # the hosted trial's list
    ("llm", "openai/gpt-4o"),                    # not on the trial: 403
    ("text-embedding", f"huggingface/{BGE}"),    # a per-model entry of that type
    ("llm", f"huggingface/{BGE}"),               # an entry of another type
    ("text-embedding", "huggingface/other"),     # no such entry
    ("llm", "qwen/qwen-max"),                    # no credential, no trial
    ("text-embedding", f"anthropic/{CLAUDE}"),   # a provider without that type
]


@pytest.fixture
async def setup(tmp_path: Path) -> AsyncIterator[tuple[Management, TenantState]]:
    store = Store(tmp_path / "defaults.db")
    await store.open()
    keystore = Keystore(new_master_key())
    manage = Management(store, keystore, OFFERS)
    tenant_id = (await manage.create_tenant("acme"))["id"]
    await manage.set_provider("acme", "anthropic", {"api_key": "sk-ant-test-defaults-000000000001"})
    await manage.add_model("acme", "huggingface", BGE, "text-embedding", {"api_token": "hf_test_defaults_0000000001"})
    try:
        yield manage, await Directory(store, keystore).tenant(tenant_id)
    finally:
        await store.close()


async def _outcome(call: Awaitable[object]) -> str:
    try:
        await call
    except ApiError as err:
        return str(err.code)
    return "ok"


@pytest.mark.parametrize(("kind", "target"), TARGETS)
async def test_defaults_set_agrees_with_routing(setup: tuple[Management, TenantState], kind: str,
                                                target: str) -> None:
    manage, state = setup
    provider, _, model = target.partition("/")

    async def route() -> None:
        routing.explicit(state, ModelType(kind), provider, model, OFFERS)

    assert await _outcome(manage.set_default("acme", kind, target)) == await _outcome(route())


async def test_refusals_are_400s_about_the_model_that_say_what_to_do(setup: tuple[Management, TenantState]) -> None:
    manage, _ = setup
    for kind, target, hint in [("llm", "qwen/qwen-max", "modelport providers set acme qwen"),
                               ("text-embedding", "huggingface/other", "modelport models add acme huggingface")]:
        with pytest.raises(ApiError) as exc:
            await manage.set_default("acme", kind, target)
        assert (exc.value.status, exc.value.param) == (400, "model") and hint in exc.value.message
    with pytest.raises(ApiError) as exc:
        await manage.set_default("acme", "llm", "openai/gpt-4o")
    assert (exc.value.status, exc.value.code) == (403, "model_not_allowed")
    for target, code in [("nosuchvendor/x", "unknown_provider"), ("anthropic", None), ("anthropic/", None)]:
        with pytest.raises(ApiError) as exc:
            await manage.set_default("acme", "llm", target)
        assert (exc.value.status, exc.value.code) == (400, code)


async def test_a_spent_trial_is_no_default_but_an_own_credential_still_is(
        setup: tuple[Management, TenantState]) -> None:
    manage, _ = setup
    await manage.set_quota("acme", "openai", 0)
    with pytest.raises(ApiError) as exc:
        await manage.set_default("acme", "llm", "openai/gpt-3.5-turbo")
    assert (exc.value.status, exc.value.code) == (400, "insufficient_quota")
    assert await manage.set_default("acme", "llm", f"anthropic/{CLAUDE}") == {"type": "llm",
                                                                              "model": f"anthropic/{CLAUDE}"}
    assert (await manage.show_defaults("acme"))["llm"] == f"anthropic/{CLAUDE}"
