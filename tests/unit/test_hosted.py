"""Hosted trials without a server: the `hosted:` settings checked at start-up against
the registry and credential schemas, and routing's precedence (own credential first,
then the trial's listed models, 403 for the rest)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from proxy import routing
from proxy.hosted import build_offers
from proxy.settings import HostedSettings, SettingsError, load_settings
from proxy.tenants import TenantState
from translators.errors import ApiError
from translators.types import ModelType

KEY = "sk-platform-0123456789abcdef"
OFFERS = build_offers({
    "openai": HostedSettings(credentials={"api_key": KEY}, quota=3,
                             models=["gpt-3.5-turbo", "text-embedding-3-small", "my-finetune"]),
    "anthropic": HostedSettings(credentials={"api_key": KEY}, quota=-1, models=["claude-haiku-4-5"]),
})


def tenant(**kw: Any) -> TenantState:
    base: dict[str, Any] = {"id": "tn_1", "name": "acme", "wrapped_private": b"", "credentials": {},
                            "models": {}, "defaults": {}}
    base.update(kw)
    return TenantState(**base)


# -- settings ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("entry", "message"), [
    ("nope: {credentials: {api_key: x}, quota: 1, models: [a]}", "hosted: nope: unknown provider 'nope'"),
    ("openai: {credentials: {}, quota: 1, models: [gpt-4o]}", "needs field 'api_key'"),
    ("openai: {credentials: {api_key: SECRET, bogus: y}, quota: 1, models: [gpt-4o]}", "does not accept field 'bogus'"),
    ("openai: {credentials: {api_key: SECRET}, quota: -2, models: [gpt-4o]}", "hosted.openai.quota"),
    ("openai: {credentials: {api_key: SECRET}, quota: 1, models: []}", "hosted.openai.models"),
    ("openai: {credentials: {api_key: SECRET}, quota: 1, models: ['../x']}", "not allowed"),
    ("openai: {credentials: {api_key: SECRET}, models: [gpt-4o]}", "hosted.openai.quota"),
    ("azure_openai: {credentials: {api_key: SECRET}, quota: 1, models: [x]}", "takes a credential per model"),
])
def test_bad_hosted_entries_are_clear_start_up_errors(tmp_path: Path, entry: str, message: str) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"hosted:\n  {entry.replace('SECRET', 'sk-secret-never-echoed-1234')}\n")
    with pytest.raises(SettingsError) as exc:
        load_settings(cfg)
    assert message in str(exc.value)
    assert "sk-secret-never-echoed" not in str(exc.value)


def test_the_example_hosted_section_loads_once_uncommented(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    example = (Path(__file__).resolve().parents[2] / "config.example.yaml").read_text()
    assert "${HOSTED_OPENAI_API_KEY}" in example  # commented: left alone, so the example loads without it
    start = example.index("# hosted:")
    uncommented = example[:start] + "\n".join(line[2:] for line in example[start:].splitlines()) + "\n"
    cfg = tmp_path / "c.yaml"
    cfg.write_text(uncommented)
    with pytest.raises(SettingsError, match="HOSTED_OPENAI_API_KEY"):
        load_settings(cfg)
    monkeypatch.setenv("HOSTED_OPENAI_API_KEY", "sk-from-the-env-0123456789")
    monkeypatch.setenv("HOSTED_ANTHROPIC_API_KEY", "sk-ant-from-the-env-0123456789")
    settings = load_settings(cfg)
    assert settings.hosted["openai"].quota == 500 and settings.usage_retention_days == 90
    assert build_offers(settings.hosted)["openai"].credential["api_key"] == os.environ["HOSTED_OPENAI_API_KEY"]
    assert "sk-from-the-env" not in repr(settings) and "sk-from-the-env" not in repr(build_offers(settings.hosted))


# -- routing ----------------------------------------------------------------------------------


def test_a_tenant_without_a_credential_gets_the_listed_models_on_the_trial() -> None:
    t = tenant(defaults={ModelType.LLM: ("openai", "gpt-3.5-turbo")})
    for name in ("openai/gpt-3.5-turbo", "gpt-3.5-turbo", "default", "my-finetune"):
        route = routing.resolve(t, ModelType.LLM, name, OFFERS)
        assert (route.provider, route.billing) == ("openai", "hosted")
    embedding = routing.resolve(t, ModelType.TEXT_EMBEDDING, "text-embedding-3-small", OFFERS)
    assert (embedding.provider, embedding.billing) == ("openai", "hosted")
    assert routing.resolve(t, ModelType.LLM, "claude-haiku-4-5", OFFERS).provider == "anthropic"


@pytest.mark.parametrize("name", ["openai/gpt-4o", "gpt-4o", "anthropic/claude-opus-4-1"])
def test_other_models_of_a_hosted_provider_are_403_naming_the_allowed_ones(name: str) -> None:
    with pytest.raises(ApiError) as exc:
        routing.resolve(tenant(), ModelType.LLM, name, OFFERS)
    err = exc.value
    assert (err.status, err.code, err.param) == (403, "model_not_allowed", "model")
    allowed = OFFERS[name.split("/")[0] if "/" in name else "openai"].models
    assert all(model in err.message for model in allowed)
    assert "modelport providers set acme" in err.message


def test_unknown_names_stay_404_and_without_trials_nothing_changes() -> None:
    with pytest.raises(ApiError) as exc:
        routing.resolve(tenant(), ModelType.LLM, "llama-nonexistent", OFFERS)
    assert exc.value.status == 404
    with pytest.raises(ApiError) as exc:
        routing.resolve(tenant(), ModelType.LLM, "openai/gpt-3.5-turbo")
    assert exc.value.status == 404


def test_an_own_credential_always_wins() -> None:
    t = tenant(credentials={"openai": b"x"})
    for name in ("gpt-3.5-turbo", "openai/gpt-3.5-turbo", "gpt-4o"):
        route = routing.resolve(t, ModelType.LLM, name, OFFERS)
        assert (route.provider, route.billing) == ("openai", "own")
    assert routing.resolve(t, ModelType.LLM, "claude-haiku-4-5", OFFERS).billing == "hosted"


def test_listed_models_show_the_trial_only_without_an_own_credential() -> None:
    hosted_only = {(name, owner, kind) for name, owner, kind in routing.listed_models(tenant(), OFFERS)}
    assert hosted_only == {("gpt-3.5-turbo", "openai", ModelType.LLM), ("my-finetune", "openai", ModelType.LLM),
                           ("text-embedding-3-small", "openai", ModelType.TEXT_EMBEDDING),
                           ("claude-haiku-4-5", "anthropic", ModelType.LLM)}
    own = routing.listed_models(tenant(credentials={"openai": b"x"}), OFFERS)
    assert {owner for _, owner, _ in own} == {"openai", "anthropic"}
    assert "my-finetune" not in {name for name, _, _ in own}  # the own credential's catalog instead
