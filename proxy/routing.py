"""(tenant, model type, requested model name) -> Route: which provider, which upstream
model, whose credential. Providers are looked up in the registry, never by name here.

Names resolve as: `default` -> the tenant's default for the endpoint's type;
`provider/model` -> that provider explicitly; a bare name -> the one configured
provider that serves it (per-model entries by exact name, own-model providers by
their catalog and prefixes, hosted offers by their list); ambiguity is a 400 naming
the candidates.

Hosted trials (`proxy/hosted.py`): a tenant's own credential for a provider always
wins; a tenant without one may use the models the operator listed for that provider
(billing "hosted"), and naming another of the provider's models is a 403 that lists
the allowed ones, since the request is understood but not permitted on the trial.
"""

from __future__ import annotations

from collections.abc import Container, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from proxy.hosted import NO_OFFERS, HostedOffer
from proxy.store import ModelRow
from proxy.tenants import TenantState
from translators import REGISTRY, Translator
from translators.errors import ApiError, bad_request
from translators.types import ModelType


@dataclass(frozen=True, slots=True)
class Route:
    provider: str
    translator: Translator
    model: str                       # the vendor's model id
    per_model: bool                  # credential from the per-model entry, else the provider's
    billing: Literal["own", "hosted"] = "own"

    @property
    def label(self) -> str:
        return f"{self.provider}/{self.model}"


class Configured(Protocol):
    """What `explicit` reads of a tenant: its cached `TenantState` when a request is routed,
    its rows as read when the admin API checks a new default (`Management.set_default`)."""

    @property
    def name(self) -> str: ...
    @property
    def credentials(self) -> Container[str]: ...  # the providers with the tenant's own credential
    @property
    def models(self) -> Mapping[tuple[str, str], Sequence[ModelRow]]: ...  # per-model entries


def model_not_found(name: str, detail: str = "") -> ApiError:
    return ApiError(404, f"The model '{name}' does not exist or is not configured for this tenant.{detail}",
                    "invalid_request_error", "model_not_found", "model")


def not_on_trial(offer: HostedOffer, model: str, tenant: str) -> ApiError:
    return ApiError(403, f"The model '{offer.provider}/{model}' is not part of the hosted trial of provider "
                         f"'{offer.provider}'. Allowed models: {', '.join(offer.models)}. Other models need this "
                         f"tenant's own {offer.provider} credential: {offer.setup_hint(tenant)}.",
                    "permission_error", "model_not_allowed", "model")


def _hosted(offer: HostedOffer, model: str, tenant: str) -> Route:
    if model not in offer.models:
        raise not_on_trial(offer, model, tenant)
    return Route(offer.provider, offer.translator, model, False, "hosted")


def _offers_for(tenant: TenantState, hosted: Mapping[str, HostedOffer]) -> list[HostedOffer]:
    """The hosted offers this tenant uses: those of providers it has no credential for."""
    return [offer for provider, offer in hosted.items() if provider not in tenant.credentials]


def resolve(tenant: TenantState, model_type: ModelType, name: str,
            hosted: Mapping[str, HostedOffer] = NO_OFFERS) -> Route:
    if name == "default":
        chosen = tenant.defaults.get(model_type)
        if chosen is None:
            raise bad_request(
                f"No default {model_type.value} model is set for this tenant. Set one with "
                f"`modelport defaults set {tenant.name} {model_type.value} PROVIDER/MODEL` "
                f"(or PUT /admin/v1/tenants/{tenant.name}/defaults/{model_type.value}).",
                "model", "default_model_not_set")
        return explicit(tenant, model_type, *chosen, hosted=hosted)
    provider, sep, rest = name.partition("/")
    if sep and provider in REGISTRY:
        try:
            return explicit(tenant, model_type, provider, rest, hosted=hosted)
        except ApiError as err:
            # Hosted-model ids may start with a provider's name (an "org/model" id whose org is also
            # another provider): a per-model entry of exactly that name still counts.
            entries = [c for c in _candidates(tenant, model_type, name, NO_OFFERS) if c.per_model]
            if err.status != 404 or len(entries) != 1:
                raise
            return entries[0]
    candidates = _candidates(tenant, model_type, name, hosted)
    if not candidates:
        # A name a hosted provider would serve, but not on its trial list: say what is allowed.
        for offer in _offers_for(tenant, hosted):
            if model_type in offer.translator.model_types and offer.translator.serves(name, model_type):
                raise not_on_trial(offer, name, tenant.name)
        raise model_not_found(name)
    if len(candidates) > 1:
        listed = ", ".join(sorted(f"'{c.label}'" for c in candidates))
        raise bad_request(f"The model '{name}' is served by more than one configured provider ({listed}); "
                          "name one as 'provider/model'.", "model", "ambiguous_model")
    return candidates[0]


def _candidates(tenant: TenantState, model_type: ModelType, name: str,
                hosted: Mapping[str, HostedOffer]) -> list[Route]:
    found = [Route(p, REGISTRY[p], m, True) for (p, m), rows in tenant.models.items()
             if m == name and rows[0].model_type == model_type.value and p in REGISTRY]
    for provider in tenant.credentials:
        translator = REGISTRY.get(provider)
        if translator is not None and not translator.per_model and model_type in translator.model_types \
                and translator.serves(name, model_type):
            found.append(Route(provider, translator, name, False))
    for offer in _offers_for(tenant, hosted):
        if name in offer.models and offer.model_type(name) == model_type:
            found.append(Route(offer.provider, offer.translator, name, False, "hosted"))
    return found


def explicit(tenant: Configured, model_type: ModelType, provider: str, model: str,
             hosted: Mapping[str, HostedOffer] = NO_OFFERS) -> Route:
    translator = REGISTRY.get(provider)
    if translator is None:
        raise model_not_found(f"{provider}/{model}", f" Unknown provider '{provider}'.")
    label = f"{provider}/{model}"
    if not model:
        raise model_not_found(label)
    if model_type not in translator.model_types:
        raise bad_request(f"Provider '{provider}' has no {model_type.value} models.", "model", "model_type_mismatch")
    if translator.per_model:
        rows = tenant.models.get((provider, model))
        if not rows:
            raise model_not_found(label, f" Add it with `modelport models add {tenant.name} {provider} {model} "
                                         f"--type {model_type.value} ...`.")
        if rows[0].model_type != model_type.value:
            raise bad_request(f"The model '{label}' is configured as a {rows[0].model_type} model, "
                              f"not {model_type.value}.", "model", "model_type_mismatch")
        return Route(provider, translator, model, True)
    translator.check_model(model)
    if provider in tenant.credentials:
        return Route(provider, translator, model, False)
    offer = hosted.get(provider)
    if offer is not None:
        return _hosted(offer, model, tenant.name)
    raise model_not_found(label, f" Provider '{provider}' has no credential for this tenant; set one with "
                                 f"`modelport providers set {tenant.name} {provider} key=value ...`.")


def listed_models(tenant: TenantState,
                  hosted: Mapping[str, HostedOffer] = NO_OFFERS) -> list[tuple[str, str, ModelType]]:
    """(id, owner, type) of every model this tenant can name, bare ids where unambiguous;
    hosted models only for providers the tenant has no credential of its own for."""
    entries: list[tuple[str, str, ModelType]] = []
    for (provider, model), rows in tenant.models.items():
        if provider in REGISTRY:
            entries.append((model, provider, ModelType(rows[0].model_type)))
    for provider in tenant.credentials:
        translator = REGISTRY.get(provider)
        if translator is None or translator.per_model:
            continue
        for model_type, names in translator.catalog.items():
            entries.extend((name, provider, model_type) for name in names)
    for offer in _offers_for(tenant, hosted):
        entries.extend((name, offer.provider, offer.model_type(name)) for name in offer.models)
    counts: dict[str, int] = {}
    for name, _, _ in entries:
        counts[name] = counts.get(name, 0) + 1
    return [(name if counts[name] == 1 else f"{owner}/{name}", owner, t) for name, owner, t in entries]
