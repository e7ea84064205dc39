"""Rate limits on the request path (issue 13): requests and tokens per minute, per tenant
or per API token, for every model or for one.

`admit` runs after routing (the model is known) and before anything reaches a vendor.
A tenant without limits never gets here: `routes.py` checks `tenant.limits`, a tuple in
the cached tenant state, so such a request costs no database access, no estimate, no
call. Otherwise each limit that matches the request (the tenant's and the caller's
token's, for every model or for the routed one) gives one charge per kind it limits
(requests: 1; tokens: the prompt's estimate), and all of them are taken or none
(`proxy/store/limits.py`): a request that one limit refuses spends nothing of another.

Windows are fixed UTC minutes, counted in the database (or in Redis with `redis_url`:
`store.counters`, `proxy/counters.py`), so every worker of every instance draws on the
same counters and the limits are exact across them. The price of a fixed window: a
client may fit up to twice a limit into the two seconds around a minute's turn.

Token limits count the prompt's estimate (`proxy/usage.py`) up front; once the request
is over, `MeteredRecord.finish` settles the counters with the real total (the vendor's
usage, or the record's own estimate of prompt and completion), and a failed request
gives its estimate back. Fallbacks (`proxy/attempts.py`) are not counted again: limits
apply to the model the request was routed to.

Refusals are OpenAI's own 429: type "requests" or "tokens", code "rate_limit_exceeded",
`retry-after`, and the `x-ratelimit-*` headers every admitted response carries too.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from proxy.errors import HeaderedError
from proxy.settlement import Settlement
from proxy.store import StoreApi
from proxy.store.limits import Charge, LimitRow
from proxy.tenants import TenantState
from proxy.usage import RequestRecord, estimate_prompt_tokens
from translators.types import Usage

WINDOW = 60.0  # seconds: one counter per limit, kind and UTC minute
Clock = Callable[[], float]
LimitKind = Literal["requests", "tokens"]
_UNITS: dict[LimitKind, str] = {"requests": "requests per min (RPM)", "tokens": "tokens per min (TPM)"}


def minute_of(now: float) -> int:
    return int(now // WINDOW)


def scope(tenant_id: str, row: LimitRow, kind: LimitKind) -> str:
    """The counter of one limit's requests or tokens (the model last: it may hold '|')."""
    return f"{kind}|{tenant_id}|{row.token_id}|{row.model}"


def matching(tenant: TenantState, token_id: str, route_label: str) -> list[LimitRow]:
    return [r for r in tenant.limits if r.token_id in ("", token_id) and r.model in ("", route_label)]


@dataclass(frozen=True, slots=True)
class _Check:
    row: LimitRow
    kind: LimitKind
    charge: Charge


def _checks(tenant_id: str, rows: Sequence[LimitRow], estimate: int) -> list[_Check]:
    checks = []
    for row in rows:
        if row.rpm is not None:
            checks.append(_Check(row, "requests", Charge(scope(tenant_id, row, "requests"), 1, row.rpm)))
        if row.tpm is not None:
            checks.append(_Check(row, "tokens", Charge(scope(tenant_id, row, "tokens"), estimate, row.tpm)))
    return checks


def _headers(checks: Sequence[_Check], used: Sequence[int], reset: int) -> dict[str, str]:
    """The x-ratelimit-* headers OpenAI sends, per kind from the limit with the least left."""
    headers = {}
    for kind in _UNITS:
        left = [(max(c.charge.limit - u, 0), c.charge.limit) for c, u in zip(checks, used, strict=True)
                if c.kind == kind]
        if left:
            remaining, limit = min(left)
            headers[f"x-ratelimit-limit-{kind}"] = str(limit)
            headers[f"x-ratelimit-remaining-{kind}"] = str(remaining)
            headers[f"x-ratelimit-reset-{kind}"] = f"{reset}s"
    return headers


def _whose(row: LimitRow) -> str:
    who = "this API token" if row.token_id else "this tenant"
    return f"{row.model} for {who}" if row.model else who


def _refusal(check: _Check, used: int, reset: int, headers: dict[str, str]) -> HeaderedError:
    limit, cost, unit = check.charge.limit, check.charge.cost, _UNITS[check.kind]
    if cost > limit:  # can never fit into one minute: waiting would not help
        return HeaderedError(
            429, f"Request too large for {_whose(check.row)} on {unit}: Limit {limit}, Requested {cost}. "
                 "The input must be reduced in order to run successfully.", check.kind, "rate_limit_exceeded",
            headers=headers | {"x-should-retry": "false"})
    return HeaderedError(
        429, f"Rate limit reached for {_whose(check.row)} on {unit}: Limit {limit}, Used {used}, Requested {cost}. "
             f"Please try again in {reset}s.", check.kind, "rate_limit_exceeded", headers=headers, retry_after=reset)


@dataclass(slots=True, eq=False)
class Admission:
    """A request let through: its headers, and what to correct once its usage is known."""

    store: StoreApi
    minute: int
    estimated: int                  # prompt tokens taken from each token counter
    token_scopes: tuple[str, ...]   # the token counters it drew on
    headers: dict[str, str]
    settlement: Settlement = field(default_factory=Settlement, repr=False)

    def settle_soon(self, actual_tokens: int) -> None:
        """Start correcting the token counters by the real total (once)."""
        delta = actual_tokens - self.estimated
        if not delta or not self.token_scopes:
            self.settlement.skip()
            return
        self.settlement.start(lambda: self.store.counters.rate_settle(self.minute, self.token_scopes, delta),
                              f"the token counters {self.token_scopes} by {delta:+d}")

    async def settled(self) -> None:
        """The correction done, so the caller's next request sees it."""
        await self.settlement.settled()


@dataclass(slots=True)
class MeteredRecord(RequestRecord):
    """A request record that settles its admission's token counters when it finishes,
    whoever finishes it (`routes.py`, or `sse.py` at the end of a stream)."""

    admission: Admission | None = None

    def finish(self, status: int, usage: Usage | None = None, output: Any = None) -> None:
        RequestRecord.finish(self, status, usage, output)  # not super(): slots dataclasses are rebuilt classes
        if self.admission is not None:
            self.admission.settle_soon(self.usage.total_tokens if self.usage is not None else 0)


async def admit(store: StoreApi, tenant: TenantState, token_id: str, route_label: str, req: Any,
                clock: Clock = time.time) -> Admission | None:
    """Take one request (and its prompt's estimated tokens) from every limit that
    matches, or raise the 429 of the first one it would pass. None: no limit applies."""
    rows = matching(tenant, token_id, route_label)
    estimate = estimate_prompt_tokens(req) if any(r.tpm is not None for r in rows) else 0
    checks = _checks(tenant.id, rows, estimate)
    if not checks:
        return None
    now = clock()
    minute = minute_of(now)
    reset = max(1, math.ceil((minute + 1) * WINDOW - now))
    taken = await store.counters.rate_take(minute, [c.charge for c in checks])
    if taken.refused is not None:
        raise _refusal(checks[taken.refused], taken.used[taken.refused], reset, _headers(checks, taken.used, reset))
    after = [u + c.charge.cost for c, u in zip(checks, taken.used, strict=True)]
    tokens = tuple(c.charge.scope for c in checks if c.kind == "tokens")
    return Admission(store, minute, estimate, tokens, _headers(checks, after, reset))
