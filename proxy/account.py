"""What a tenant can learn about its own account with its API token:
`GET /v1/quota` (its hosted trials), `GET /v1/usage` (what it used and what that cost)
and `GET /v1/prices` (the operator's price table, which the costs are computed from)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from proxy.auth import authenticate
from proxy.errors import JSONResponse, internal_errors
from proxy.gateway import Gateway
from proxy.prices import listing
from proxy.tenants import Caller
from proxy.usage_report import summarize

Handler = Callable[[Gateway, Caller, Request], Awaitable[Any]]


def _tenant_endpoint(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        gateway: Gateway = request.app.state.gateway
        with internal_errors("account", "account request failed"):
            caller = await authenticate(request, gateway.directory)
            return JSONResponse(await handler(gateway, caller, request))
    return endpoint


async def _quota(gateway: Gateway, caller: Caller, request: Request) -> Any:
    rows = await gateway.quotas.report(caller.tenant.id, caller.tenant.credentials)
    return {"object": "list", "data": rows}


async def _usage(gateway: Gateway, caller: Caller, request: Request) -> Any:
    q = request.query_params
    return await summarize(gateway.store, caller.tenant.id, q.get("start"), q.get("end"), q.get("group_by"))


async def _prices(gateway: Gateway, caller: Caller, request: Request) -> Any:
    # Amounts in US dollars: per million tokens (input, output), per call, per audio minute.
    return {"object": "list", "currency": "usd", "data": listing(gateway.settings.prices)}


ACCOUNT_ROUTES = [
    Route("/v1/quota", _tenant_endpoint(_quota), methods=["GET"]),
    Route("/v1/usage", _tenant_endpoint(_usage), methods=["GET"]),
    Route("/v1/prices", _tenant_endpoint(_prices), methods=["GET"]),
]
