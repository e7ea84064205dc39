"""Management of rate limits (issue 13), mixed into `proxy.service.Management`: per
tenant, requests and tokens per minute for the whole tenant or one of its API tokens,
for every model or one (provider/model). Enforced on the request path by
`proxy/ratelimits.py`; every worker picks a change up with the tenant's cached state."""

from __future__ import annotations

import time
from typing import Any

from proxy.ratelimits import minute_of, scope
from proxy.service_fallbacks import provider_model
from proxy.service_tokens import require_api_token
from proxy.store import StoreApi, TenantRow
from proxy.store.limits import LimitRow
from translators.errors import ApiError, bad_request

MAX_PER_MINUTE = 10**12  # far above any vendor's tier; keeps the counters inside SQLite's integers


def _per_minute(value: int | None, param: str) -> int | None:
    if value is not None and not 1 <= value <= MAX_PER_MINUTE:
        raise bad_request(f"'{param}' is a whole number from 1 to {MAX_PER_MINUTE}, or null for no limit", param,
                          "invalid_value")
    return value


class LimitsManagement:
    store: StoreApi
    scope: str | None

    async def tenant(self, ref: str) -> TenantRow:  # provided by Management
        raise NotImplementedError

    async def set_rate_limit(self, ref: str, token_id: str | None, model: str | None, rpm: int | None,
                             tpm: int | None) -> dict[str, Any]:
        """Set (replace) the limit of the tenant or one API token, for every model or one."""
        tenant = await self.tenant(ref)
        row = LimitRow(token_id or "", provider_model(model, "model") if model else "", _per_minute(rpm, "rpm"),
                       _per_minute(tpm, "tpm"))
        if row.rpm is None and row.tpm is None:
            raise bad_request("give rpm (requests per minute), tpm (tokens per minute) or both", "rpm",
                              "missing_required_parameter")
        if row.token_id:
            await require_api_token(self.store, tenant, row.token_id, "rate limits")
        await self.store.set_rate_limit(tenant.id, row)
        return _shown(row, await self._token_names(tenant))

    async def show_rate_limits(self, ref: str) -> list[dict[str, Any]]:
        """Each limit, with what its counters hold in the current minute."""
        tenant = await self.tenant(ref)
        rows = await self.store.rate_limits(tenant.id)
        if not rows:
            return []
        minute = minute_of(time.time())
        used = await self.store.counters.rate_used(minute, [scope(tenant.id, r, kind) for r in rows
                                                   for kind in ("requests", "tokens")])
        names = await self._token_names(tenant)
        return [_shown(r, names) | {"requests_this_minute": used.get(scope(tenant.id, r, "requests"), 0),
                                    "tokens_this_minute": used.get(scope(tenant.id, r, "tokens"), 0)}
                for r in rows]

    async def clear_rate_limit(self, ref: str, token_id: str | None, model: str | None) -> dict[str, Any]:
        tenant = await self.tenant(ref)
        if not await self.store.clear_rate_limit(tenant.id, token_id or "", model or ""):
            what = " and ".join(filter(None, (token_id and f"token '{token_id}'", model and f"model '{model}'")))
            raise ApiError(404, f"no rate limit set for {what or 'the whole tenant'} in tenant '{tenant.name}'",
                           "invalid_request_error", "not_found")
        return {"token_id": token_id or None, "model": model or None, "deleted": True}

    async def _token_names(self, tenant: TenantRow) -> dict[str, str | None]:
        return {t.id: t.name for t in await self.store.list_tokens(tenant.id)}


def _shown(row: LimitRow, names: dict[str, str | None]) -> dict[str, Any]:
    return {"token_id": row.token_id or None, "token_name": names.get(row.token_id) if row.token_id else None,
            "model": row.model or None, "rpm": row.rpm, "tpm": row.tpm}
