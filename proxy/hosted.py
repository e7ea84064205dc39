"""Hosted trial offers: providers the operator lends to every tenant with the
operator's own credential, counted in calls, limited to listed models.

The credential comes from the settings (the YAML file, typically `${VAR}` from the
environment) and lives only in this process's memory: it is never written to a
tenant's rows, never returned by an endpoint, and scrubbed from upstream error
messages like any tenant credential (`Credential.secret_values`).

Only providers with one credential for all their models can be hosted: a provider
whose models each need their own credential (deployments, endpoints) has no single
credential to lend.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING

from keystore import CredentialError, validate_credential
from keystore.models import Credential
from translators import REGISTRY, Translator
from translators.errors import ApiError
from translators.types import ModelType

if TYPE_CHECKING:
    from proxy.settings import HostedSettings


class HostedConfigError(ValueError):
    """A `hosted:` entry that does not fit the registry; the message never holds a secret."""


@dataclass(frozen=True, slots=True)
class HostedOffer:
    provider: str
    translator: Translator
    credential: Credential = field(repr=False)
    quota: int                      # calls per tenant; -1 = unlimited
    models: tuple[str, ...]

    def model_type(self, model: str) -> ModelType:
        """What kind of model a listed name is: the provider's catalog and prefixes decide;
        a name they do not know is taken as the provider's first type (usually llm)."""
        kinds = [t for t in ModelType if t in self.translator.model_types]
        return next((t for t in kinds if self.translator.serves(model, t)), kinds[0])

    def setup_hint(self, tenant: str) -> str:
        """The command that gives a tenant its own credential for this provider."""
        fields = " ".join(f"{f.name}=..." for f in self.translator.credential_fields if f.required)
        return (f"`modelport providers set {tenant} {self.provider} {fields}` "
                f"(or PUT /admin/v1/tenants/{tenant}/providers/{self.provider})")


NO_OFFERS: Mapping[str, HostedOffer] = MappingProxyType({})


def _offer(provider: str, entry: HostedSettings) -> HostedOffer:
    where = provider  # the settings loader prefixes "hosted: "
    translator = REGISTRY.get(provider)
    if translator is None:
        raise HostedConfigError(f"{where}: unknown provider '{provider}' (known: {', '.join(sorted(REGISTRY))})")
    if translator.per_model:
        raise HostedConfigError(f"{where}: provider '{provider}' takes a credential per model, so it cannot be "
                                "hosted with one platform credential")
    try:
        credential = validate_credential(provider, translator.credential_fields, entry.credentials)
        translator.check_credential(credential)
    except CredentialError as exc:
        raise HostedConfigError(f"{where}.credentials: {exc}") from None
    except ApiError as exc:
        raise HostedConfigError(f"{where}.credentials: {exc.message}") from None
    models: list[str] = []
    for model in entry.models:
        try:
            translator.check_model(model)
        except ApiError as exc:
            raise HostedConfigError(f"{where}.models: {exc.message}") from None
        if model not in models:
            models.append(model)
    return HostedOffer(provider, translator, credential, entry.quota, tuple(models))


def build_offers(config: Mapping[str, HostedSettings]) -> Mapping[str, HostedOffer]:
    """The validated offers of a `hosted:` section; `HostedConfigError` names the bad entry."""
    return MappingProxyType({provider: _offer(provider, entry) for provider, entry in config.items()})
