"""The app-wide objects a request needs, built once per worker in the lifespan."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass

from keystore.store import Keystore
from proxy.balancer import Balancer
from proxy.hosted import HostedOffer
from proxy.limits import FailureLimiter
from proxy.quotas import Quotas
from proxy.routing import Route
from proxy.settings import Settings
from proxy.store import StoreApi
from proxy.tenants import Directory, TenantState
from proxy.usage_writer import UsageWriter
from translators._http import UpstreamClient
from translators.base import CallContext


@dataclass(slots=True)
class Gateway:
    settings: Settings
    store: StoreApi
    keystore: Keystore
    directory: Directory
    http: UpstreamClient
    admin_hash: str
    hosted: Mapping[str, HostedOffer]
    quotas: Quotas
    usage: UsageWriter
    balancer: Balancer   # which of a provider's credentials serves (proxy/balancer.py)
    auth_failures: FailureLimiter | None = None  # failed authentications per client address (auth.py)

    async def context(self, tenant: TenantState, route: Route, request_id: str,
                      avoid: Collection[str] = ()) -> tuple[CallContext, str]:
        """The call's context and the name of the credential in it ("hosted" for a trial):
        one of the provider's credentials chosen by the balancer, preferring none in `avoid`."""
        if route.billing == "hosted":
            # The platform credential, from memory: never decrypted from (or stored in) tenant rows.
            credential, name = self.hosted[route.provider].credential, "hosted"
        else:
            model = route.model if route.per_model else None  # a per-model entry's credentials, or the provider's
            name = self.balancer.pick(tenant, route.provider, avoid, model)
            credential = await self.directory.credential(tenant, route.provider, model, name)
        base_url = route.translator.base_url_for(credential)
        return CallContext(self.http, credential, route.model, base_url, request_id), name
