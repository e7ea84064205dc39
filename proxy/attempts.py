"""Retries and fallbacks around `call_route` (issue 13): one vendor hiccup (a 429, a 503,
a reset) no longer reaches the application.

For the routed model, then for each of its fallbacks (`modelport fallbacks set`, looked
up by the route's provider/model), up to `routing.retries` more attempts are made after
a retryable failure. Retryable: the vendor's (or the connection's) 429, 500, 502, 503,
504 and 529 and "overloaded" answers, resets and connect errors (`UpstreamError`s) —
never one of the gateway's own refusals, a 4xx that is the request's fault, a redirect
or a response too large, and never once a stream has sent its first byte (`call_route`
returns a started stream only after its first chunk).

A retry on another of the provider's credentials (`proxy/balancer.py`) goes at once; one
on the same credential waits a jittered exponential backoff ("full jitter": uniform in
[0, min(max, base·2ⁿ)]), at least the vendor's Retry-After when it gives one. A wait that
would not fit in the request's deadline (`upstream.total_timeout` from the request's
start), or a Retry-After longer than `routing.max_retry_after`, moves on to the next
fallback instead.

Every response says what served it: `x-modelport-provider`, `x-modelport-model`,
`x-modelport-attempts` and `x-modelport-overhead-ms` (time spent in the gateway, without
the upstream's time and the waits between attempts).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Iterator
from typing import Any

from proxy import metrics
from proxy.balancer import rows_of
from proxy.calls import Answer, Call, StreamCall, call_route
from proxy.gateway import Gateway
from proxy.quotas import Reservation
from proxy.routing import Route, resolve
from proxy.tenants import TenantState
from proxy.usage import RequestRecord
from translators.errors import ApiError, UpstreamError
from translators.types import ModelType

log = logging.getLogger("modelport")

RETRYABLE_STATUS = frozenset({429, 500, 502, 503, 504, 529})
# Upstream failures that another attempt would meet again, or that must not be repeated.
_FINAL_CODES = frozenset({"upstream_redirect", "upstream_response_too_large", "upstream_bad_response",
                          "upstream_destination_refused", "insufficient_quota"})


def retryable(err: ApiError) -> bool:
    return isinstance(err, UpstreamError) and err.status in RETRYABLE_STATUS and err.code not in _FINAL_CODES


def _untried_key(tenant: TenantState, route: Route, tried: set[str]) -> bool:
    """Whether the provider has a valid credential this request has not tried yet: the next
    attempt goes there at once (the balancer prefers one not cooling down). Even a cooling
    one beats waiting to retry the key that just failed: the balancer would pick it anyway."""
    if route.billing != "own":
        return False
    rows = rows_of(tenant, route.provider, route.model if route.per_model else None)
    return any(r.name not in tried and r.invalid_at is None for r in rows)


def backoff(attempt: int, base: float, cap: float, retry_after: float | None = None) -> float:
    """The wait before retry number `attempt` (1, 2, ...)."""
    wait = random.uniform(0.0, min(cap, base * 2 ** (attempt - 1)))
    return max(wait, retry_after or 0.0)


def _routes(gateway: Gateway, tenant: TenantState, route: Route, model_type: ModelType) -> Iterator[Route]:
    """The routed model, then its fallbacks that still resolve for this tenant."""
    yield route
    for name in tenant.fallbacks.get(route.label, ()):
        try:
            yield resolve(tenant, model_type, name, gateway.hosted)
        except ApiError as err:  # removed since it was set, or its trial spent: skip it
            log.info("fallback %s of %s skipped for tenant %s: %s", name, route.label, tenant.id, err.code)


def _describe(headers: dict[str, str], route: Route, record: RequestRecord) -> None:
    headers["x-modelport-provider"] = route.provider
    headers["x-modelport-model"] = route.model
    headers["x-modelport-attempts"] = str(record.attempts)


async def serve_route(gateway: Gateway, tenant: TenantState, route: Route, req: Any, record: RequestRecord,
                      call: Call, call_stream: StreamCall | None, headers: dict[str, str]) -> Answer:
    settings = gateway.settings.routing
    deadline = record.started + gateway.settings.upstream.total_timeout
    spent: list[Reservation] = []
    last: ApiError | None = None
    served = False
    try:
        for current in _routes(gateway, tenant, route, ModelType(record.model_type)):
            if current is not route:
                metrics.fell_back(tenant.id, record.provider)  # away from the model that failed last
            tried: set[str] = set()  # this model's credentials tried: a retry prefers another
            for retry in range(settings.retries + 1):
                if retry:
                    # Another key (another account) goes at once; the same key waits its backoff
                    # and Retry-After.
                    other = _untried_key(tenant, current, tried)
                    retry_after = None if other or last is None else last.retry_after
                    wait = 0.0 if other else backoff(retry, settings.backoff_base, settings.backoff_max, retry_after)
                    if (retry_after or 0) > settings.max_retry_after or time.perf_counter() + wait >= deadline:
                        break  # no time for this model: its fallbacks may still answer
                    await asyncio.sleep(wait)
                    record.upstream_ms += wait * 1000
                    metrics.retried(tenant.id, current.provider)
                _describe(headers, current, record)
                headers["x-modelport-attempts"] = str(record.attempts + 1)  # the stream's headers go out with it
                try:
                    answer = await call_route(gateway, tenant, current, req, record, call, call_stream, headers,
                                              spent, tried)
                except ApiError as err:
                    # A rejected key (401/403) is no hiccup, but another of the provider's may serve.
                    rejected = err.code == "upstream_credential_rejected" and _untried_key(tenant, current, tried)
                    if not (retryable(err) or rejected):
                        raise
                    last = err
                    log.info("request %s: attempt %d on %s failed (%d %s)", record.request_id, record.attempts,
                             current.label, err.status, err.code)
                    continue
                _describe(headers, current, record)
                record.overhead = record.overhead_ms()
                overhead = f"{record.overhead:.2f}"
                headers["x-modelport-overhead-ms"] = overhead
                if answer.stream is not None:  # its headers were encoded when it opened
                    answer.stream.raw_headers.append((b"x-modelport-overhead-ms", overhead.encode()))
                served = True
                return answer
        assert last is not None  # the routed model is always tried at least once
        raise last
    finally:
        # Hosted calls spent by attempts that did not serve go back: a request costs one
        # hosted call at most (the attempt that served, or the last spent one if none did).
        for reservation in spent if served else spent[:-1]:
            await reservation.refund()
