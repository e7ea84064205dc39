"""Model resolution: default per type, provider/model, bare names, ambiguity, errors."""

from __future__ import annotations

from typing import Any, ClassVar

import pytest

from keystore.models import CredentialField
from proxy import routing
from proxy.store import ModelRow
from proxy.tenants import TenantState
from translators import REGISTRY, Translator
from translators.errors import ApiError
from translators.types import ModelType


class HostedFake(Translator):
    """A per-model provider (like Hugging Face) for routing tests only."""

    name = "hostedfake"
    model_types = frozenset(ModelType)
    credential_fields: ClassVar[tuple[CredentialField, ...]] = (CredentialField("api_token"),)
    default_base_url = "http://127.0.0.1:1"
    per_model = True


class OwnFake(Translator):
    name = "ownfake"
    model_types = frozenset({ModelType.LLM})
    credential_fields: ClassVar[tuple[CredentialField, ...]] = (CredentialField("api_key"),)
    default_base_url = "http://127.0.0.1:1"
    model_prefixes = {ModelType.LLM: ("gpt-",)}


@pytest.fixture(autouse=True)
def registry(monkeypatch: pytest.MonkeyPatch) -> None:
    table: dict[str, Any] = {**REGISTRY, "hostedfake": HostedFake(), "ownfake": OwnFake()}
    monkeypatch.setattr(routing, "REGISTRY", table)


def tenant(**kw: Any) -> TenantState:
    base: dict[str, Any] = {"id": "tn_1", "name": "acme", "wrapped_private": b"", "credentials": {"openai": b"x"},
                            "models": {}, "defaults": {}}
    base.update(kw)
    return TenantState(**base)


def test_default_resolves_per_type() -> None:
    t = tenant(defaults={ModelType.LLM: ("openai", "gpt-4o-mini"),
                         ModelType.TEXT_EMBEDDING: ("openai", "text-embedding-3-small")})
    assert routing.resolve(t, ModelType.LLM, "default").model == "gpt-4o-mini"
    assert routing.resolve(t, ModelType.TEXT_EMBEDDING, "default").model == "text-embedding-3-small"


def test_default_unset_says_how_to_set_one() -> None:
    with pytest.raises(ApiError) as exc:
        routing.resolve(tenant(), ModelType.SPEECH2TEXT, "default")
    assert exc.value.status == 400 and exc.value.param == "model"
    assert "modelport defaults set acme speech2text" in exc.value.message


def test_explicit_provider_and_bare_name() -> None:
    route = routing.resolve(tenant(), ModelType.LLM, "openai/some-new-model")
    assert (route.provider, route.model, route.per_model) == ("openai", "some-new-model", False)
    assert routing.resolve(tenant(), ModelType.LLM, "gpt-4o").provider == "openai"


def test_unknown_model_is_404() -> None:
    with pytest.raises(ApiError) as exc:
        routing.resolve(tenant(), ModelType.LLM, "llama-nonexistent")
    assert exc.value.status == 404 and exc.value.code == "model_not_found"


def test_provider_without_credential_is_404_with_hint() -> None:
    with pytest.raises(ApiError) as exc:
        routing.resolve(tenant(credentials={}), ModelType.LLM, "openai/gpt-4o")
    assert exc.value.status == 404 and "modelport providers set acme openai" in exc.value.message


def test_ambiguous_bare_name_names_candidates() -> None:
    t = tenant(credentials={"openai": b"x", "ownfake": b"y"})
    with pytest.raises(ApiError) as exc:
        routing.resolve(t, ModelType.LLM, "gpt-4o")
    assert exc.value.status == 400 and exc.value.code == "ambiguous_model"
    assert "'openai/gpt-4o'" in exc.value.message and "'ownfake/gpt-4o'" in exc.value.message
    assert routing.resolve(t, ModelType.LLM, "ownfake/gpt-4o").provider == "ownfake"


def test_per_model_entries_route_by_name_and_type() -> None:
    rows = {("hostedfake", "org/emb"): (ModelRow("hostedfake", "org/emb", "text-embedding", b""),),
            ("hostedfake", "org/chat"): (ModelRow("hostedfake", "org/chat", "llm", b""),)}
    t = tenant(models=rows)
    route = routing.resolve(t, ModelType.TEXT_EMBEDDING, "org/emb")
    assert (route.provider, route.per_model) == ("hostedfake", True)
    with pytest.raises(ApiError) as exc:
        routing.resolve(t, ModelType.LLM, "hostedfake/org/emb")
    assert exc.value.code == "model_type_mismatch"
    with pytest.raises(ApiError) as exc:
        routing.resolve(t, ModelType.LLM, "hostedfake/org/missing")
    assert exc.value.status == 404


def test_wrong_type_for_provider() -> None:
    with pytest.raises(ApiError) as exc:
        routing.resolve(tenant(credentials={"ownfake": b"y"}), ModelType.TEXT_EMBEDDING, "ownfake/gpt-4o")
    assert exc.value.code == "model_type_mismatch"


@pytest.mark.parametrize("bad", ["../etc", "a/../b", "x%2e%2e", "a b", "a?b", "a#b", "a\\b"])
def test_model_ids_that_could_change_a_path_are_rejected(bad: str) -> None:
    with pytest.raises(ApiError) as exc:
        routing.resolve(tenant(), ModelType.LLM, f"openai/{bad}")
    assert exc.value.status == 400 and exc.value.code == "invalid_model_id"


def test_listed_models_disambiguates_duplicates() -> None:
    t = tenant(credentials={"openai": b"x", "ownfake": b"y"})
    ids = {name for name, _, _ in routing.listed_models(t)}
    assert "gpt-4o-mini" in ids and "text-embedding-3-small" in ids
    rows = {("hostedfake", "gpt-4o"): (ModelRow("hostedfake", "gpt-4o", "llm", b""),)}
    ids = {name for name, _, _ in routing.listed_models(tenant(models=rows))}
    assert {"openai/gpt-4o", "hostedfake/gpt-4o"} <= ids


def test_hosted_model_id_that_starts_with_a_provider_name() -> None:
    rows = {("hostedfake", "openai/whisper"): (ModelRow("hostedfake", "openai/whisper", "speech2text", b""),)}
    route = routing.resolve(tenant(models=rows, credentials={}), ModelType.SPEECH2TEXT, "openai/whisper")
    assert (route.provider, route.model) == ("hostedfake", "openai/whisper")
    # The explicit reading still wins when it works.
    assert routing.resolve(tenant(models=rows), ModelType.SPEECH2TEXT, "openai/whisper-1").provider == "openai"
