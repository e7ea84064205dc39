"""Credentials and per-model entries (mixed into `proxy.service.Management`): several named
credentials per own-model provider (issue 13), validation by a real call and stored
secrets kept on edit (the console, issue 12), per-model entries of hosted-model providers.
Secrets go in, never out: responses carry masked values."""

from __future__ import annotations

import re
import time
from typing import Any

from keystore import CredentialError, validate_credential
from keystore.models import Credential
from keystore.store import Keystore
from proxy.store import StoreApi, TenantRow
from proxy.store.credentials import DEFAULT_NAME
from proxy.validation import validate_live
from translators import REGISTRY, Translator
from translators._http import UpstreamClient
from translators.errors import ApiError, bad_request
from translators.types import ModelType

_CREDENTIAL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def not_found(what: str) -> ApiError:
    return ApiError(404, f"{what} not found", "invalid_request_error", "not_found")


def credential_name(name: str) -> str:
    if not _CREDENTIAL_NAME.match(name):
        raise bad_request("a credential's name is 1-64 letters, digits, '.', '_' or '-'", "name", "invalid_value")
    return name


def parse_model_type(value: str) -> ModelType:
    try:
        return ModelType(value)
    except ValueError:
        raise bad_request(f"unknown model type '{value}'; use one of: llm, text-embedding, speech2text",
                          "type") from None


def translator_of(provider: str) -> Translator:
    translator = REGISTRY.get(provider)
    if translator is None:
        raise bad_request(f"unknown provider '{provider}'; known providers: {', '.join(sorted(REGISTRY))}",
                          "provider", "unknown_provider")
    return translator


class CredentialsManagement:
    store: StoreApi
    keystore: Keystore
    http: UpstreamClient | None

    async def tenant(self, ref: str) -> TenantRow:  # provided by Management
        raise NotImplementedError

    # -- credentials ----------------------------------------------------------------

    def _credential(self, translator: Translator, fields: dict[str, str]) -> Credential:
        try:
            credential = validate_credential(translator.name, translator.credential_fields, fields)
        except CredentialError as exc:
            raise bad_request(str(exc), exc.field, "invalid_credential") from None
        translator.check_credential(credential)
        return credential

    async def _stored(self, tenant: TenantRow, translator: Translator, blob: bytes | None) -> Credential | None:
        wrapped = None if blob is None else await self.store.wrapped_private_key(tenant.id)
        if blob is None or wrapped is None:
            return None
        return await self.keystore.open_credential(tenant.id, wrapped, blob, translator.credential_fields)

    async def _incoming(self, tenant: TenantRow, translator: Translator, fields: dict[str, str],
                        keep_secrets: bool, blob: bytes | None) -> Credential:
        """The credential to check and store. With `keep_secrets` (the console's edit form,
        which never shows a stored secret), a secret field left empty keeps its stored value,
        but only while every other field stays as stored: a kept secret is never sent to a
        changed endpoint or account (a stolen session must not redirect a key it cannot read)."""
        stored = await self._stored(tenant, translator, blob) if keep_secrets else None
        if stored is None:
            return self._credential(translator, fields)
        secret = {f.name for f in translator.credential_fields if f.secret}
        merged = dict(fields)
        kept = sorted(name for name in secret if not str(merged.get(name) or "").strip() and name in stored)
        for name in kept:
            merged[name] = stored[name]
        credential = self._credential(translator, merged)
        changed = sorted(name for name in set(credential) | set(stored)
                         if name not in secret and credential.get(name) != stored.get(name))
        if kept and changed:
            raise bad_request(f"re-enter {', '.join(kept)} to change {', '.join(changed)}: a stored secret is only "
                              "kept while the rest of the credential stays the same", kept[0], "secret_required")
        return credential

    async def _validate(self, translator: Translator, credential: Credential, model_type: ModelType | None = None,
                        model: str | None = None) -> dict[str, Any]:
        if self.http is None:
            raise ApiError(503, "validation by a real call needs a running server (use the admin API)",
                           "server_error", "validation_unavailable")
        return await validate_live(translator, credential, self.http, model_type=model_type, model=model)

    async def _named_blob(self, tenant: TenantRow, provider: str, name: str) -> bytes | None:
        rows = (await self.store.credentials(tenant.id)).get(provider, ())
        return next((row.secret for row in rows if row.name == name), None)

    async def validate_provider(self, ref: str, provider: str, fields: dict[str, str],
                                keep_secrets: bool = False, name: str = DEFAULT_NAME) -> dict[str, Any]:
        """The smallest real call with these fields (nothing stored): the console's live check."""
        tenant = await self.tenant(ref)
        translator = self._own_model(tenant, provider)
        credential = await self._incoming(tenant, translator, fields, keep_secrets,
                                          await self._named_blob(tenant, provider, credential_name(name)))
        return await self._validate(translator, credential)

    def _own_model(self, tenant: TenantRow, provider: str) -> Translator:
        translator = translator_of(provider)
        if translator.per_model:
            raise bad_request(f"provider '{provider}' takes credentials per model: use "
                              f"`modelport models add {tenant.name} {provider} MODEL --type TYPE key=value ...`",
                              "provider", "per_model_provider")
        return translator

    async def set_provider(self, ref: str, provider: str, fields: dict[str, str], *, validate: bool = False,
                           keep_secrets: bool = False, name: str = DEFAULT_NAME, weight: int = 1) -> dict[str, Any]:
        """Add or replace one of the provider's named credentials (requests spread over them by weight)."""
        tenant = await self.tenant(ref)
        translator = self._own_model(tenant, provider)
        name = credential_name(name)
        if not 1 <= weight <= 1000:
            raise bad_request("a credential's weight is 1 to 1000", "weight", "invalid_value")
        credential = await self._incoming(tenant, translator, fields, keep_secrets,
                                          await self._named_blob(tenant, provider, name))
        if validate:
            await self._validate(translator, credential)  # raises: nothing is stored
        await self.store.set_credential(tenant.id, provider, self.keystore.encrypt(tenant.public_key, credential),
                                        name, weight)
        return {"provider": provider, "name": name, "weight": weight, "fields": credential.masked(),
                "invalid": False, "cooling_down_until": None}

    async def _decrypt_masked(self, tenant: TenantRow, wrapped: bytes | None, provider: str,
                              blob: bytes) -> dict[str, str]:
        translator = REGISTRY.get(provider)
        if wrapped is None or translator is None:
            return {}
        credential = await self.keystore.open_credential(tenant.id, wrapped, blob, translator.credential_fields)
        return credential.masked()

    async def list_providers(self, ref: str) -> list[dict[str, Any]]:
        """Every credential of every configured provider, with its state: `invalid` (the
        vendor rejected it; out of rotation until changed) and `cooling_down_until`."""
        tenant = await self.tenant(ref)
        wrapped = await self.store.wrapped_private_key(tenant.id)  # once for the whole list
        cooling = await self._cooling(tenant)
        return [{"provider": p, "name": row.name, "weight": row.weight,
                 "fields": await self._decrypt_masked(tenant, wrapped, p, row.secret),
                 "invalid": row.invalid_at is not None, "cooling_down_until": cooling.get((p, row.name))}
                for p, rows in (await self.store.credentials(tenant.id)).items() for row in rows]

    async def remove_provider(self, ref: str, provider: str, name: str | None = None) -> dict[str, Any]:
        """One named credential, or (no name) all of the provider's."""
        tenant = await self.tenant(ref)
        if not await self.store.remove_credential(tenant.id, provider, None if name is None else credential_name(name)):
            what = f"provider '{provider}'" if name is None else f"credential '{name}' of provider '{provider}'"
            raise not_found(f"{what} for tenant '{tenant.name}'")
        return {"provider": provider, "name": name, "removed": True}

    # -- per-model entries --------------------------------------------------------

    def _per_model(self, tenant: TenantRow, provider: str, model: str,
                   model_type: str) -> tuple[Translator, ModelType]:
        translator = translator_of(provider)
        kind = parse_model_type(model_type)
        if not translator.per_model:
            raise bad_request(f"provider '{provider}' serves all its models with one credential: use "
                              f"`modelport providers set {tenant.name} {provider} key=value ...`",
                              "provider", "own_model_provider")
        if kind not in translator.model_types:
            raise bad_request(f"provider '{provider}' has no {kind.value} models", "type", "model_type_mismatch")
        translator.check_model(model)
        return translator, kind

    async def _cooling(self, tenant: TenantRow) -> dict[tuple[str, str], float]:
        """(slot, credential name) -> until, for the tenant's credentials cooling down now."""
        return {(c.provider, c.name): c.until for c in await self.store.counters.cooldowns(time.time(), tenant.id)}

    async def _entry_blob(self, tenant: TenantRow, provider: str, model: str, name: str) -> bytes | None:
        return next((m.secret for m in await self.store.models(tenant.id)
                     if m.provider == provider and m.model == model and m.name == name), None)

    async def validate_model(self, ref: str, provider: str, model: str, model_type: str, fields: dict[str, str],
                             keep_secrets: bool = False, name: str = DEFAULT_NAME) -> dict[str, Any]:
        tenant = await self.tenant(ref)
        translator, kind = self._per_model(tenant, provider, model, model_type)
        credential = await self._incoming(tenant, translator, fields, keep_secrets,
                                          await self._entry_blob(tenant, provider, model, credential_name(name)))
        return await self._validate(translator, credential, kind, model)

    async def add_model(self, ref: str, provider: str, model: str, model_type: str, fields: dict[str, str], *,
                        validate: bool = False, keep_secrets: bool = False, name: str = DEFAULT_NAME,
                        weight: int = 1) -> dict[str, Any]:
        """Add a per-model entry, or one more named credential of it (requests spread over
        an entry's credentials by weight, as over a provider's)."""
        tenant = await self.tenant(ref)
        translator, kind = self._per_model(tenant, provider, model, model_type)
        name = credential_name(name)
        if not 1 <= weight <= 1000:
            raise bad_request("a credential's weight is 1 to 1000", "weight", "invalid_value")
        others = [m for m in await self.store.models(tenant.id)
                  if m.provider == provider and m.model == model and m.name != name]
        if others and others[0].model_type != kind.value:
            raise bad_request(f"model '{provider}/{model}' is a {others[0].model_type} model (its other credentials "
                              f"say so); remove it first to add it as {kind.value}", "type", "model_type_mismatch")
        credential = await self._incoming(tenant, translator, fields, keep_secrets,
                                          await self._entry_blob(tenant, provider, model, name))
        if validate:
            await self._validate(translator, credential, kind, model)
        await self.store.add_model(tenant.id, provider, model, kind.value,
                                   self.keystore.encrypt(tenant.public_key, credential), name, weight)
        return {"provider": provider, "model": model, "type": kind.value, "name": name, "weight": weight,
                "fields": credential.masked(), "invalid": False, "cooling_down_until": None}

    async def list_models(self, ref: str) -> list[dict[str, Any]]:
        """Every credential of every per-model entry, with its state (as `list_providers`)."""
        tenant = await self.tenant(ref)
        wrapped = await self.store.wrapped_private_key(tenant.id)
        cooling = await self._cooling(tenant)
        return [{"provider": m.provider, "model": m.model, "type": m.model_type, "name": m.name, "weight": m.weight,
                 "fields": await self._decrypt_masked(tenant, wrapped, m.provider, m.secret),
                 "invalid": m.invalid_at is not None, "cooling_down_until": cooling.get((f"{m.provider}/{m.model}",
                                                                                          m.name))}
                for m in await self.store.models(tenant.id)]

    async def remove_model(self, ref: str, provider: str, model: str, name: str | None = None) -> dict[str, Any]:
        """One named credential of the entry, or (no name) the whole entry."""
        tenant = await self.tenant(ref)
        if not await self.store.remove_model(tenant.id, provider, model, None if name is None else credential_name(name)):
            what = f"model '{provider}/{model}'" + ("" if name is None else f" credential '{name}'")
            raise not_found(f"{what} for tenant '{tenant.name}'")
        return {"provider": provider, "model": model, "name": name, "removed": True}
