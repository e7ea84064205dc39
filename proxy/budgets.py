"""Budgets on the request path (issue 16): spending limits in US dollars per UTC day or
month, for a whole tenant or one of its API tokens.

`hold` runs after routing (the model, and so its price, is known) and before anything
reaches a vendor. A tenant without budgets never gets here: `routes.py` checks
`tenant.budgets`, a tuple in the cached tenant state, so such a request costs nothing.
Otherwise each budget that matches the request (the tenant's and the caller's token's)
holds the request's estimated cost (`prices.estimate_nanos`: the prompt's estimated
tokens at the input price, the call price, the audio a WAV upload holds) in its period's
spend, all of them or none (`proxy/store/budgets.py`). When the request is over,
`BudgetedRecord.finish` settles the holds with the record's real cost (`RequestRecord.cost_nanos`),
so the spend is what the requests cost.

A request is let through while what is spent and held is below every limit: the
estimate is the least a request can cost, so the last request let through may take the
spend past the limit by what it cost beyond its estimate (a reply's tokens are not known
before it is written), and the next one is refused. With concurrent requests, each holds
its estimate first, so a burst cannot pass a budget by more than its under-estimates.

Spend is counted in the database, so every worker of every instance draws on the same
numbers. Only requests on the tenant's own credentials count: a hosted trial is the
operator's, limited by its quota. A model without a price is refused under a budget
(400 `unpriced_model`: its cost could not be counted; so is a transcription priced by the
minute whose duration nothing will tell) unless the operator allows it
(`budgets.allow_unpriced` in the settings, or the budgets' own flag); allowed, it holds
and costs nothing. A refusal is OpenAI's 429 for a spent quota: type
`insufficient_quota`, code `budget_exceeded`, `x-should-retry: false` (retrying does
not bring money back).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from proxy.errors import HeaderedError
from proxy.prices import Price, estimate_nanos, format_usd, price_of, wav_seconds
from proxy.ratelimits import MeteredRecord
from proxy.routing import Route
from proxy.settings import Settings
from proxy.settlement import Settlement
from proxy.store import StoreApi
from proxy.store.budgets import BudgetRow, SpendCharge
from proxy.tenants import TenantState
from proxy.usage import estimate_prompt_tokens
from translators.errors import ApiError
from translators.types import Usage

Clock = Callable[[], float]
KINDS = ("daily", "monthly")
_PERIOD_NAMES = {"daily": "day", "monthly": "month"}


def periods(now: float) -> dict[str, str]:
    """The UTC day and month `now` falls in, as budget_spend names them."""
    t = time.gmtime(now)
    return {"daily": f"{t.tm_year:04d}-{t.tm_mon:02d}-{t.tm_mday:02d}", "monthly": f"{t.tm_year:04d}-{t.tm_mon:02d}"}


def scope(row: BudgetRow, kind: str) -> str:
    """The spend of one budget's daily or monthly limit (the kind first: see `budget_settle`)."""
    return f"{kind}|{row.token_id}"


def limit_of(row: BudgetRow, kind: str) -> int | None:
    return row.daily if kind == "daily" else row.monthly


def matching(tenant: TenantState, token_id: str) -> list[BudgetRow]:
    return [b for b in tenant.budgets if b.token_id in ("", token_id)]


@dataclass(frozen=True, slots=True)
class _Check:
    row: BudgetRow
    kind: str
    charge: SpendCharge


def _checks(rows: Sequence[BudgetRow], estimate: int, now: float) -> list[_Check]:
    named = periods(now)
    return [_Check(row, kind, SpendCharge(scope(row, kind), named[kind], estimate, limit))
            for row in rows for kind in KINDS if (limit := limit_of(row, kind)) is not None]


def _refusal(check: _Check, spent: int) -> HeaderedError:
    who = "this API token" if check.row.token_id else "this tenant"
    period = _PERIOD_NAMES[check.kind]
    return HeaderedError(
        429, f"Budget exceeded for {who}: {format_usd(spent)} spent of its {check.kind} budget of "
             f"{format_usd(check.charge.limit)} ({check.charge.period}, UTC). Requests are refused until the "
             f"{period} ends or the budget is raised.", "insufficient_quota", "budget_exceeded",
        headers={"x-should-retry": "false"})


def unpriced_model(route: Route, why: str = "has no price") -> ApiError:
    return ApiError(400, f"The model '{route.label}' {why}, and a budget applies to this request: its cost "
                         "could not be counted. The gateway's operator can add the model to `prices` or allow "
                         "unpriced models under the budget.", "invalid_request_error", "unpriced_model", "model")


_NO_DURATION = ("is priced per audio minute but this request's audio duration would stay unknown (ask for "
                "response_format json or verbose_json, or send WAV)")


def _duration_unknowable(price: Price, req: Any) -> bool:
    """A transcription priced by the minute whose duration nothing will tell: a text, srt or
    vtt answer carries none (json's billed seconds and verbose_json's duration do), and the
    upload is not WAV."""
    if price.per_audio_minute is None or getattr(req, "response_format", "json") in ("json", "verbose_json"):
        return False
    upload = getattr(req, "file", None)
    return not (isinstance(upload, bytes) and wav_seconds(upload) is not None)


@dataclass(slots=True, eq=False)
class BudgetHold:
    """A request let through: what it holds, and where, until its cost is known."""

    store: StoreApi
    tenant_id: str
    keys: tuple[tuple[str, str], ...]   # (scope, period) of every budget it holds money of
    estimate: int                       # nano-dollars held in each
    settlement: Settlement = field(default_factory=Settlement, repr=False)

    def settle_soon(self, cost: int | None) -> None:
        """Start replacing the estimate by the real cost (once). None (no price known after
        all: a fallback to an unpriced model) keeps the estimate."""
        delta = 0 if cost is None else cost - self.estimate
        if not delta:
            self.settlement.skip()
            return
        self.settlement.start(lambda: self.store.budget_settle(self.tenant_id, self.keys, delta),
                              f"the budget spend {self.keys} by {delta:+d}")

    async def settled(self) -> None:
        """The settlement done, so the caller's next request sees it."""
        await self.settlement.settled()


@dataclass(slots=True)
class BudgetedRecord(MeteredRecord):
    """A request record that settles its budget hold when it finishes, whoever finishes
    it (`routes.py`, or `sse.py` at the end of a stream). Hosted calls cost the tenant's
    budget nothing (a fallback may land on one)."""

    hold: BudgetHold | None = None

    def finish(self, status: int, usage: Usage | None = None, output: Any = None) -> None:
        MeteredRecord.finish(self, status, usage, output)  # not super(): slots dataclasses are rebuilt classes
        if self.hold is not None:
            self.hold.settle_soon(self.cost_nanos if self.billing == "own" else 0)


def _estimate(price: Price | None, req: Any) -> int:
    if price is None:
        return 0
    tokens = estimate_prompt_tokens(req) if price.input is not None else 0
    upload = getattr(req, "file", None) if price.per_audio_minute is not None else None
    return estimate_nanos(price, tokens, wav_seconds(upload) if isinstance(upload, bytes) else None)


async def hold(store: StoreApi, settings: Settings, tenant: TenantState, token_id: str, route: Route, req: Any,
               clock: Clock = time.time) -> BudgetHold | None:
    """Hold the request's estimated cost in every budget that applies, or raise the 429 of
    the first one used up (or the 400 of an unpriced model). None: no budget applies."""
    if route.billing != "own":
        return None
    rows = matching(tenant, token_id)
    if not rows:
        return None
    price, why = price_of(settings.prices, route.provider, route.model), "has no price"
    if price is not None and _duration_unknowable(price, req):
        price, why = None, _NO_DURATION
    if price is None and not (settings.budgets.allow_unpriced or all(r.allow_unpriced for r in rows)):
        raise unpriced_model(route, why)
    checks = _checks(rows, _estimate(price, req), clock())
    if not checks:
        return None
    taken = await store.budget_take(tenant.id, [c.charge for c in checks])
    if taken.refused is not None:
        raise _refusal(checks[taken.refused], taken.spent[taken.refused])
    return BudgetHold(store, tenant.id, tuple((c.charge.scope, c.charge.period) for c in checks),
                      checks[0].charge.cost)
