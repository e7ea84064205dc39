"""Calling one route once: take the hosted call (if the route is billed to a trial),
build the call context, call the translator (or open the stream, which pulls the
first chunk), and give the hosted call back only if nothing reached the upstream.

Hosted calls first pass `proxy/hosted_params.py` (the parameters a trial allows, the
output-token cap) and then run on the offer's `PinnedClient`, which only talks to the
operator's configured upstream and counts the requests that may have reached it.

This is the one place a request reaches an upstream. Retries, fallbacks across
models and load balancing across credentials will call `call_route` again with
another route: each attempt reserves and refunds its own hosted call, and the
record always describes the route that answered.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson

from proxy import sse, tracing
from proxy.gateway import Gateway
from proxy.hosted import PinnedClient
from proxy.hosted_params import restrict
from proxy.quotas import Reservation
from proxy.routing import Route
from proxy.tenants import TenantState
from proxy.usage import RequestRecord
from translators.base import CallContext, Translator
from translators.errors import ApiError
from translators.types import JSONObject, StreamChunk, TranscriptionResult, Usage

log = logging.getLogger("modelport")


@dataclass(frozen=True, slots=True)
class Answer:
    """What the attempt that served gives the route: a started stream (`stream`, whose record
    finishes when it ends), or a whole answer: its encoded body, the vendor's token counts,
    and the decoded output that token estimates read when the vendor sent no counts."""

    stream: sse.SSEResponse | None = None
    body: bytes = b""
    media_type: str = "application/json"
    usage: Usage | None = None
    output: JSONObject | TranscriptionResult | None = None

    @classmethod
    def of_json(cls, body: JSONObject) -> Answer:
        return cls(body=orjson.dumps(body), usage=Usage.from_openai(body.get("usage")), output=body)

    @classmethod
    def of_transcription(cls, result: TranscriptionResult) -> Answer:
        return cls(body=result.content, media_type=result.media_type, output=result)


# The request is the endpoint's own type (ChatRequest, EmbeddingRequest, ...); each
# endpoint's call turns the translator's result into an `Answer`. A stream is chat chunks,
# or (an endpoint of another API, proxy/inbound/) a `Framed` stream written in its framing.
Call = Callable[[Translator, Any, CallContext], Awaitable[Answer]]
StreamCall = Callable[[Translator, Any, CallContext], AsyncIterator[StreamChunk] | sse.Framed]


async def call_route(gateway: Gateway, tenant: TenantState, route: Route, req: Any, record: RequestRecord,
                     call: Call, call_stream: StreamCall | None, headers: dict[str, str],
                     spent: list[Reservation] | None = None, tried: set[str] | None = None) -> Answer:
    """The answer, or (when `call_stream` is given) the started stream. Raises `ApiError` (secrets
    scrubbed) when the call fails, including the 429 of a spent trial. A hosted call that
    failed after reaching the upstream stays spent, and its reservation is added to
    `spent`: the caller gives it back if another attempt follows (a request costs at most
    one hosted call, the one that served or failed last). The credential used is added to
    `tried`, and the next attempt prefers another; what failed is reported to the balancer."""
    record.provider, record.model, record.billing = route.provider, route.model, route.billing
    record.attempts += 1
    ctx, record.credential = await gateway.context(tenant, route, record.request_id, tried or ())
    entry = route.model if route.per_model else None  # whose credentials the balancer learns about
    if tried is not None:
        tried.add(record.credential)
    secret_values = ctx.credential.secret_values()
    reservation: Reservation | None = None
    pinned: PinnedClient | None = None
    if route.billing == "hosted":
        offer = gateway.hosted[route.provider]
        req = restrict(offer, req)  # before reserving: a refused request costs no call
        pinned = offer.pinned(ctx.http)
        ctx = dataclasses.replace(ctx, http=pinned)
        reservation = await gateway.quotas.reserve(tenant.id, tenant.name, route.provider)
    attempt = tracing.start_attempt(record, route)
    failure: Exception | None = None
    started = time.perf_counter()
    try:
        if call_stream is not None:
            record.stream = True
            # open_stream returns once the first chunk is in: the stream has started and
            # counts; a failure before that raises here (and is refunded below only if
            # nothing reached the upstream).
            response = await sse.open_stream(
                call_stream(route.translator, req, ctx), include_usage=req.include_usage, secrets=secret_values,
                headers=headers, on_end=lambda outcome: record.finish(outcome.status, outcome.usage, outcome.chunks))
            record.first_token()
            gateway.balancer.succeeded(tenant.id, route.provider, record.credential, entry)
            return Answer(stream=response)
        try:
            answer = await call(route.translator, req, ctx)
        except ApiError as err:
            raise err.scrubbed(secret_values) from None
        gateway.balancer.succeeded(tenant.id, route.provider, record.credential, entry)
        return answer
    except Exception as exc:
        failure = exc
        if isinstance(exc, ApiError) and route.billing == "own":
            await gateway.balancer.failed(tenant, route.provider, record.credential, exc, entry)
        if reservation is None or pinned is None:
            raise
        # Spent once anything may have reached the vendor: a timeout after sending, a 5xx,
        # a 4xx (even for the platform key) may all have been billed or counted against
        # the operator's account. Given back only when no request left the gateway
        # (refused before sending, no connection made). A client that leaves is no
        # `Exception` (cancellation): spent too.
        if pinned.attempts == 0:
            await reservation.refund()
        elif spent is not None:
            spent.append(reservation)
        if isinstance(exc, ApiError) and exc.code == "upstream_credential_rejected":
            raise _platform_rejected(route) from None
        raise
    finally:
        # Upstream time (to the first chunk, for a stream): what x-modelport-overhead-ms leaves out.
        record.upstream_ms += (time.perf_counter() - started) * 1000
        if attempt is not None:
            tracing.end_attempt(attempt, failure)


def _platform_rejected(route: Route) -> ApiError:
    """The vendor refused the operator's hosted credential: nothing the tenant can fix, and
    the vendor's message (which may quote part of the key) is not the tenant's to read."""
    log.warning("the hosted credential of provider %s was rejected upstream; check the `hosted:` settings",
                route.provider)
    return ApiError(502, f"The hosted trial of provider '{route.provider}' is unavailable: the platform's "
                         "credential was rejected upstream. This is for the gateway's operator to fix.",
                    "server_error", "hosted_credential_rejected")
