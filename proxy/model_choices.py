"""What a tenant may pick as a default model now, per model type: the console's pickers
(`GET /admin/v1/tenants/T/defaults/choices`) and whether the current default is still usable.
`defaults set` asks routing itself (`Management.set_default`).

Usable now means what routing would serve (`proxy/routing.py`, the same precedence): a
per-model entry of that type; an own-model provider with the tenant's credential (its
catalog is offered; any model it serves is usable); else a hosted trial with calls left,
for the models the operator listed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from proxy.hosted import HostedOffer
from proxy.store import ModelRow
from translators import REGISTRY
from translators.types import ModelType


@dataclass(frozen=True, slots=True)
class TenantModels:
    """The rows that decide what a tenant can use (read once per question)."""

    own: frozenset[str]                       # providers with the tenant's own credential
    entries: tuple[ModelRow, ...]             # per-model entries
    hosted_left: frozenset[str]               # hosted providers whose trial has calls left
    defaults: Mapping[str, tuple[str, str]]   # model type -> (provider, model)


def usable(models: TenantModels, hosted: Mapping[str, HostedOffer], model_type: ModelType,
           provider: str, model: str) -> bool:
    translator = REGISTRY.get(provider)
    if translator is None or model_type not in translator.model_types:
        return False
    if translator.per_model:
        return any(e.provider == provider and e.model == model and e.model_type == model_type.value
                   for e in models.entries)
    if provider in models.own:
        return True
    offer = hosted.get(provider)
    return (offer is not None and provider in models.hosted_left and model in offer.models
            and offer.model_type(model) == model_type)


def _options(models: TenantModels, hosted: Mapping[str, HostedOffer], model_type: ModelType) -> list[dict[str, Any]]:
    found: list[tuple[str, str, str]] = []
    for name, translator in REGISTRY.items():
        if model_type not in translator.model_types:
            continue
        if translator.per_model:
            found.extend((name, e.model, "own") for e in models.entries
                         if e.provider == name and e.model_type == model_type.value)
        elif name in models.own:
            found.extend((name, m, "own") for m in translator.catalog.get(model_type, ()))
        elif name in models.hosted_left:
            offer = hosted[name]
            found.extend((name, m, "hosted") for m in offer.models if offer.model_type(m) == model_type)
    # An entry with several named credentials is one choice.
    return [{"provider": p, "display_name": REGISTRY[p].display_name, "model": m, "source": source}
            for p, m, source in dict.fromkeys(found)]


def choices(models: TenantModels, hosted: Mapping[str, HostedOffer]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for model_type in ModelType:
        current = models.defaults.get(model_type.value)
        out[model_type.value] = {
            "current": None if current is None else "/".join(current),
            "usable": None if current is None else usable(models, hosted, model_type, *current),
            "options": _options(models, hosted, model_type),
        }
    return out
