"""Management of budgets (issue 16), mixed into `proxy.service.Management`: per tenant,
spending limits in US dollars per UTC day and month, for the whole tenant or one of its
API tokens. Enforced on the request path by `proxy/budgets.py`; every worker picks a
change up with the tenant's cached state. Amounts go in and out as dollars; the store
keeps nano-dollars (`proxy/prices.py`)."""

from __future__ import annotations

import math
import time
from typing import Any

from proxy.budgets import KINDS, limit_of, periods, scope
from proxy.prices import NANOS_PER_USD, usd
from proxy.service_tokens import require_api_token
from proxy.store import StoreApi, TenantRow
from proxy.store.budgets import BudgetRow
from translators.errors import ApiError, bad_request

MAX_BUDGET_USD = 1e9  # a billion dollars a period: keeps the nano-dollar sums inside 64-bit integers


def _nanos(value: float | None, param: str) -> int | None:
    if value is None:
        return None
    if not (math.isfinite(value) and 0 <= value <= MAX_BUDGET_USD):
        raise bad_request(f"'{param}' is an amount of US dollars from 0 to {MAX_BUDGET_USD:.0f}, or null for no "
                          "limit", param, "invalid_value")
    return round(value * NANOS_PER_USD)


class BudgetsManagement:
    store: StoreApi
    scope: str | None

    async def tenant(self, ref: str) -> TenantRow:  # provided by Management
        raise NotImplementedError

    async def set_budget(self, ref: str, token_id: str | None, daily: float | None, monthly: float | None,
                         allow_unpriced: bool = False) -> dict[str, Any]:
        """Set (replace) the budget of the tenant or one API token."""
        tenant = await self.tenant(ref)
        row = BudgetRow(token_id or "", _nanos(daily, "daily"), _nanos(monthly, "monthly"), allow_unpriced)
        if row.daily is None and row.monthly is None:
            raise bad_request("give daily, monthly or both (US dollars)", "monthly", "missing_required_parameter")
        if row.token_id:
            await require_api_token(self.store, tenant, row.token_id, "budgets")
        await self.store.set_budget(tenant.id, row)
        return (await self._shown(tenant, (row,)))[0]

    async def show_budgets(self, ref: str) -> list[dict[str, Any]]:
        """Each budget, with what it spent (and holds for requests running) this UTC day and month."""
        tenant = await self.tenant(ref)
        return await self._shown(tenant, await self.store.budgets(tenant.id))

    async def clear_budget(self, ref: str, token_id: str | None) -> dict[str, Any]:
        tenant = await self.tenant(ref)
        if not await self.store.clear_budget(tenant.id, token_id or ""):
            what = f"token '{token_id}'" if token_id else "the whole tenant"
            raise ApiError(404, f"no budget set for {what} in tenant '{tenant.name}'", "invalid_request_error",
                           "not_found")
        return {"token_id": token_id or None, "deleted": True}

    async def _shown(self, tenant: TenantRow, rows: tuple[BudgetRow, ...]) -> list[dict[str, Any]]:
        if not rows:
            return []
        named = periods(time.time())
        keys = [(scope(r, kind), named[kind]) for r in rows for kind in KINDS if limit_of(r, kind) is not None]
        spent = await self.store.budget_spent(tenant.id, keys)
        names = {t.id: t.name for t in await self.store.list_tokens(tenant.id)}
        out = []
        for r in rows:
            shown: dict[str, Any] = {"token_id": r.token_id or None, "token_name": names.get(r.token_id)
                                     if r.token_id else None, "daily": usd(r.daily), "monthly": usd(r.monthly),
                                     "allow_unpriced": r.allow_unpriced}
            for kind, label in (("daily", "spent_today"), ("monthly", "spent_this_month")):
                limited = limit_of(r, kind) is not None
                shown[label] = usd(spent.get((scope(r, kind), named[kind]), 0)) if limited else None
            out.append(shown)
        return out
