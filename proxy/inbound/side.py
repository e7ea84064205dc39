"""An inbound API's endpoints beside its main one (the token counter, a kept answer's
GET and DELETE): one preamble for all of them."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response

from proxy.auth import authenticate
from proxy.errors import internal_errors, shape_errors
from proxy.gateway import Gateway
from proxy.request_ids import request_id
from proxy.tenants import Caller
from translators._inbound import InboundApi

Handler = Callable[[Request, Gateway, Caller, str], Awaitable[Response]]


def side_endpoint(api: InboundApi, what: str, handle: Handler) -> Callable[[Request], Awaitable[Response]]:
    """`handle(request, gateway, caller, request id)` with errors in the API's shape and
    anything unexpected logged as `what` failing and answered as a 500, once the caller is
    authenticated."""
    async def endpoint(request: Request) -> Response:
        shape_errors(request, api.error)
        gateway: Gateway = request.app.state.gateway
        rid = request_id(request.scope)
        with internal_errors(rid, f"{what} ({rid}) failed"):
            caller = await authenticate(request, gateway.directory)
            return await handle(request, gateway, caller, rid)
    return endpoint
