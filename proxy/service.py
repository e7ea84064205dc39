"""Management operations, one implementation for the CLI and the admin API.

Every operation takes a tenant by name or id, validates against the provider
registry (credential fields, model types), writes through the store (which bumps
the change counter so running workers notice), and returns plain data with every
secret masked. Failures are `ApiError`s: the admin API renders them, the CLI prints them.

A `Management` may be scoped to one tenant (a tenant administrator signed in to the
console, or calling with a console token): every operation then goes through
`tenant()`, which answers "not found" for any other tenant, and the operator-only
operations (tenants, hosted quotas) are refused with a 403.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from keystore.store import Keystore
from proxy.auth import CONSOLE_TOKEN_PREFIX, TOKEN_PREFIX
from proxy.hosted import NO_OFFERS, HostedOffer
from proxy.model_choices import TenantModels, choices
from proxy.quotas import Quotas
from proxy.routing import explicit
from proxy.service_budgets import BudgetsManagement
from proxy.service_credentials import (
    CredentialsManagement,
    not_found,
    parse_model_type,
    translator_of,
)
from proxy.service_fallbacks import FallbacksManagement
from proxy.service_limits import LimitsManagement
from proxy.store import ModelRow, StoreApi, TenantRow
from proxy.tenants import by_entry, hash_token
from proxy.usage_report import ADMIN_GROUPS, summarize
from translators._http import UpstreamClient
from translators.errors import ApiError, bad_request
from translators.types import ModelType

_TENANT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


_TOKEN_KINDS = {"api": TOKEN_PREFIX, "console": CONSOLE_TOKEN_PREFIX}


@dataclass(frozen=True, slots=True)
class _TenantRows:
    """A tenant's rows as routing reads them (`proxy.routing.Configured`)."""

    name: str
    credentials: Mapping[str, object]
    models: Mapping[tuple[str, str], Sequence[ModelRow]]


class Management(CredentialsManagement, FallbacksManagement, LimitsManagement, BudgetsManagement):
    def __init__(self, store: StoreApi, keystore: Keystore, hosted: Mapping[str, HostedOffer] = NO_OFFERS, *,
                 scope: str | None = None, http: UpstreamClient | None = None) -> None:
        self.store = store
        self.keystore = keystore
        self.hosted = hosted
        self.quotas = Quotas(store, hosted)
        self.scope = scope   # a tenant id: this caller manages that tenant only
        self.http = http     # for validation by a real call (the server's upstream client)

    async def tenant(self, ref: str) -> TenantRow:
        row = await self.store.find_tenant(ref)
        # Another tenant is "not found", never "forbidden": its existence is not this caller's business.
        if row is None or (self.scope is not None and row.id != self.scope):
            raise not_found(f"tenant '{ref}'")
        return row

    def _operator_only(self, what: str) -> None:
        if self.scope is not None:
            raise ApiError(403, f"{what} is for the gateway's operator (the admin token), not a tenant's console",
                           "permission_error", "operator_only")

    # -- tenants ------------------------------------------------------------------

    async def create_tenant(self, name: str) -> dict[str, Any]:
        self._operator_only("creating tenants")
        if not _TENANT_NAME.match(name) or name.startswith("tn_"):
            raise bad_request("tenant names are 1-64 letters, digits, '.', '_' or '-', start with a letter or "
                              "digit, and do not start with 'tn_'", "name")
        if await self.store.find_tenant(name) is not None:
            raise ApiError(409, f"tenant '{name}' already exists", "invalid_request_error", "conflict")
        tenant_id = "tn_" + secrets.token_hex(8)
        # RSA key generation takes ~0.25-0.5 s of CPU: a pre-generated pair, or one made in
        # a helper process (a thread would not do: pycryptodome holds the GIL too often).
        public, wrapped = await self.keystore.create_tenant_keys(tenant_id)
        row = await self.store.create_tenant(tenant_id, name, public, wrapped)
        return {"id": row.id, "name": row.name, "created_at": row.created_at}

    async def list_tenants(self) -> list[dict[str, Any]]:
        rows = await self.store.list_tenants()
        return [{"id": r.id, "name": r.name, "created_at": r.created_at} for r in rows
                if self.scope is None or r.id == self.scope]

    async def delete_tenant(self, ref: str) -> dict[str, Any]:
        self._operator_only("deleting tenants")
        row = await self.tenant(ref)
        await self.store.delete_tenant(row.id)
        return {"id": row.id, "name": row.name, "deleted": True}

    # -- tokens -------------------------------------------------------------------

    async def create_token(self, ref: str, name: str | None = None, kind: str = "api") -> dict[str, Any]:
        """An API token (`mp-`, for /v1) or a console token (`mpc-`, signs the tenant's
        administrator in to /console/); neither is accepted where the other belongs."""
        tenant = await self.tenant(ref)
        prefix = _TOKEN_KINDS.get(kind)
        if prefix is None:
            raise bad_request("a token's kind is 'api' or 'console'", "kind", "invalid_value")
        if name is not None and (len(name) > 100 or any(ch < " " or ch == "\x7f" for ch in name)):
            raise bad_request("a token's name is at most 100 printable characters", "name", "invalid_value")
        token = prefix + secrets.token_urlsafe(32)
        row = await self.store.create_token("tok_" + secrets.token_hex(8), tenant.id, name, hash_token(token),
                                            f"{token[:len(prefix) + 2]}...{token[-4:]}", kind)
        return {"id": row.id, "tenant": tenant.name, "name": row.name, "kind": row.kind, "token": token}

    async def list_tokens(self, ref: str) -> list[dict[str, Any]]:
        tenant = await self.tenant(ref)
        return [{"id": r.id, "name": r.name, "kind": r.kind, "hint": r.hint, "created_at": r.created_at,
                 "last_used_at": r.last_used_at, "revoked": r.revoked_at is not None}
                for r in await self.store.list_tokens(tenant.id)]

    async def revoke_token(self, token_id: str) -> dict[str, Any]:
        found = await self.store.token(token_id)
        if found is None or (self.scope is not None and found.tenant_id != self.scope):
            raise not_found(f"token '{token_id}'")
        row = await self.store.revoke_token(token_id)
        if row is None:
            raise not_found(f"token '{token_id}'")
        return {"id": row.id, "revoked": True}

    # -- defaults -----------------------------------------------------------------

    async def set_default(self, ref: str, model_type: str, target: str) -> dict[str, Any]:
        """Set when routing would serve it now (a hosted trial: while it has calls left)."""
        tenant = await self.tenant(ref)
        kind = parse_model_type(model_type)
        provider, sep, model = target.partition("/")
        if not sep or not model:
            raise bad_request("name the default as PROVIDER/MODEL", "model")
        translator_of(provider)  # an unknown provider: the 400 that lists the known ones
        rows = _TenantRows(tenant.name, await self.store.credentials(tenant.id),
                           by_entry(await self.store.models(tenant.id)))
        try:
            route = explicit(rows, kind, provider, model, self.hosted)
        except ApiError as err:
            if err.status != 404:
                raise
            # A request for a model that is not there is a 404; here the model is a bad value in the body.
            raise ApiError(400, err.message, err.type, err.code, "model") from None
        if route.billing == "hosted":
            used, limit = await self.quotas.limit(tenant.id, provider)
            if 0 <= limit <= used:
                raise bad_request(f"the hosted trial of '{provider}' has no calls left for tenant "
                                  f"'{tenant.name}'; set its own credential first", "model", "insufficient_quota")
        await self.store.set_default(tenant.id, kind.value, provider, model)
        return {"type": kind.value, "model": target}

    async def show_defaults(self, ref: str) -> dict[str, str | None]:
        tenant = await self.tenant(ref)
        current = await self.store.defaults(tenant.id)
        return {t.value: ("/".join(current[t.value]) if t.value in current else None) for t in ModelType}

    async def _tenant_models(self, tenant: TenantRow) -> TenantModels:
        own = frozenset(await self.store.credentials(tenant.id))
        left = [p for p in self.hosted if p not in own]
        hosted_left = []
        for provider in left:
            used, limit = await self.quotas.limit(tenant.id, provider)
            if limit < 0 or used < limit:
                hosted_left.append(provider)
        return TenantModels(own, tuple(await self.store.models(tenant.id)), frozenset(hosted_left),
                            await self.store.defaults(tenant.id))

    async def default_choices(self, ref: str) -> dict[str, Any]:
        """Per model type: the current default, whether it is still usable, and every model
        the tenant can pick now (what the console's pickers list)."""
        return choices(await self._tenant_models(await self.tenant(ref)), self.hosted)

    async def clear_default(self, ref: str, model_type: str) -> dict[str, Any]:
        tenant = await self.tenant(ref)
        kind = parse_model_type(model_type)
        await self.store.clear_default(tenant.id, kind.value)
        return {"type": kind.value, "model": None}

    # -- hosted trial quotas ------------------------------------------------------------

    async def show_quota(self, ref: str) -> list[dict[str, Any]]:
        tenant = await self.tenant(ref)
        return await self.quotas.report(tenant.id, await self.store.credentials(tenant.id))

    async def set_quota(self, ref: str, provider: str, limit: int | None) -> dict[str, Any]:
        """The tenant's total number of hosted calls on `provider` (-1: unlimited; None: back
        to the configured quota). Calls already made still count, so raising it grants more."""
        self._operator_only("setting hosted quotas")
        tenant = await self.tenant(ref)
        if provider not in self.hosted:
            hosted = ", ".join(sorted(self.hosted)) or "none"
            raise bad_request(f"provider '{provider}' is not hosted by this gateway (hosted: {hosted}); see the "
                              "`hosted:` section of the configuration", "provider", "not_hosted")
        if limit is not None and limit < -1:
            raise bad_request("the quota is a number of calls, or -1 for unlimited", "limit", "invalid_value")
        await self.quotas.set_limit(tenant.id, provider, limit)
        return next(row for row in await self.show_quota(tenant.name) if row["provider"] == provider)

    # -- usage ----------------------------------------------------------------------------

    async def usage(self, ref: str | None, start: str | None = None, end: str | None = None,
                    group_by: str | None = None) -> dict[str, Any]:
        """One tenant's usage, or every tenant's (ref None: groups per tenant)."""
        ref = ref or self.scope
        tenant_id = (await self.tenant(ref)).id if ref else None
        return await summarize(self.store, tenant_id, start, end, group_by, allowed=ADMIN_GROUPS,
                               per_tenant=tenant_id is None)
