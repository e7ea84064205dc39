"""Hosted-trial quotas: one call = one reservation, taken before the upstream is
called and given back only if no request ever reached the upstream.

The count lives in the database (`hosted_quota`), never in a worker's memory, and a
reservation is one conditional UPDATE (see `proxy/store/accounting.py`), so with N
calls left, any number of concurrent requests on any number of workers get exactly
N successes. A tenant's limit is the configured `quota` unless `modelport quota set`
gave it its own.

What counts: every call that may have cost the operator something. A reservation is
given back only when the call failed and no request left the gateway: refused by the
gateway before sending (a bad parameter, a refused destination) or no connection made
(DNS failure, connection refused, connect timeout; `UpstreamError.sent` is False).
Everything else is spent, whatever the outcome:
- the vendor answered with an error (a 4xx, including a rejected platform key, or a
  5xx): the request reached the operator's account, which may bill or rate it;
- a timeout or a reset after the request was sent: the vendor may have done the work;
- a stream that fails after it started, or a client that leaves mid-call (cancellation).
`proxy/calls.py` decides, from the attempts its `PinnedClient` counted.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping
from typing import Any

from proxy.hosted import HostedOffer
from proxy.store import StoreApi
from translators.errors import ApiError

log = logging.getLogger("modelport")


def exhausted(offer: HostedOffer, limit: int, tenant: str) -> ApiError:
    """The 429 OpenAI itself sends for a spent quota (type and code insufficient_quota):
    OpenAI's SDKs raise it as RateLimitError; `proxy/errors.py` marks it not worth retrying."""
    return ApiError(429, f"The hosted trial of provider '{offer.provider}' is used up for this tenant "
                         f"({limit} of {limit} calls). To keep using {offer.provider}, configure this tenant's own "
                         f"{offer.provider} credential: {offer.setup_hint(tenant)}.",
                    "insufficient_quota", "insufficient_quota")


class Reservation:
    """One reserved hosted call; `refund()` gives it back at most once."""

    __slots__ = ("_refunded", "_store", "provider", "tenant_id")

    def __init__(self, store: StoreApi, tenant_id: str, provider: str) -> None:
        self._store = store
        self.tenant_id = tenant_id
        self.provider = provider
        self._refunded = False

    async def refund(self) -> None:
        if self._refunded:
            return
        self._refunded = True
        try:
            await self._store.quota_refund(self.tenant_id, self.provider)
        except Exception:  # the request already failed; a lost refund must not hide why
            log.warning("could not refund a hosted call of tenant %s on %s", self.tenant_id, self.provider,
                        exc_info=True)


class Quotas:
    def __init__(self, store: StoreApi, offers: Mapping[str, HostedOffer]) -> None:
        self.store = store
        self.offers = offers

    async def limit(self, tenant_id: str, provider: str) -> tuple[int, int]:
        """(used, limit) of a tenant on a hosted provider."""
        used, override = (await self.store.quota_counters(tenant_id)).get(provider, (0, None))
        return used, self.offers[provider].quota if override is None else override

    async def reserve(self, tenant_id: str, tenant_name: str, provider: str) -> Reservation:
        """Take one call or raise the 429 that says the trial is used up."""
        offer = self.offers[provider]
        if not await self.store.quota_reserve(tenant_id, provider, offer.quota):
            _, limit = await self.limit(tenant_id, provider)
            raise exhausted(offer, max(limit, 0), tenant_name)
        return Reservation(self.store, tenant_id, provider)

    async def report(self, tenant_id: str, own: Collection[str]) -> list[dict[str, Any]]:
        """Per hosted provider: limit, used, remaining (-1 both when unlimited), the allowed
        models, and whether the tenant's own credential is used instead of the trial."""
        counters = await self.store.quota_counters(tenant_id)
        rows: list[dict[str, Any]] = []
        for provider, offer in sorted(self.offers.items()):
            used, override = counters.get(provider, (0, None))
            limit = offer.quota if override is None else override
            rows.append({"provider": provider, "limit": limit, "used": used,
                         "remaining": -1 if limit < 0 else max(limit - used, 0),
                         "models": list(offer.models), "own_credential": provider in own})
        return rows

    async def set_limit(self, tenant_id: str, provider: str, limit: int | None) -> None:
        await self.store.quota_set_limit(tenant_id, provider, limit)
