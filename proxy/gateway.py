"""The app-wide objects a request needs, built once per worker in the lifespan."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from keystore.store import Keystore
from proxy.hosted import HostedOffer
from proxy.limits import FailureLimiter
from proxy.quotas import Quotas
from proxy.routing import Route
from proxy.settings import Settings
from proxy.store import Store
from proxy.tenants import Directory, TenantState
from proxy.usage_writer import UsageWriter
from translators._http import UpstreamClient
from translators.base import CallContext


@dataclass(slots=True)
class Gateway:
    settings: Settings
    store: Store
    keystore: Keystore
    directory: Directory
    http: UpstreamClient
    admin_hash: str
    hosted: Mapping[str, HostedOffer]
    quotas: Quotas
    usage: UsageWriter
    auth_failures: FailureLimiter | None = None  # failed authentications per client address (auth.py)

    async def context(self, tenant: TenantState, route: Route, request_id: str) -> CallContext:
        if route.billing == "hosted":
            # The platform credential, from memory: never decrypted from (or stored in) tenant rows.
            credential = self.hosted[route.provider].credential
        else:
            credential = await self.directory.credential(tenant, route.provider, route.model if route.per_model else None)
        base_url = route.translator.base_url_for(credential)
        return CallContext(self.http, credential, route.model, base_url, request_id)
