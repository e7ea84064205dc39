"""Console sign-in: `POST /admin/v1/session` exchanges an admin or console token for a
session cookie; `GET` says who is signed in (and hands the page its CSRF token again
after a reload); `DELETE` signs out.

The cookie is HttpOnly (page scripts cannot read it), SameSite=Strict (no other site's
page can make the browser send it), limited to /admin/v1, and Secure over https. It
holds a random session id; the database keeps only its hash (`proxy/store/console.py`).
The token itself is read from the JSON body of one request and never stored, logged or
put in a URL; an API token cannot sign in.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from proxy.auth import TOKEN_PREFIX, limited, unauthorized
from proxy.body import parse, read_json
from proxy.errors import JSONResponse, internal_errors, response_headers
from proxy.gateway import Gateway
from proxy.principals import (
    COOKIE_PATH,
    SESSION_COOKIE,
    Principal,
    check_same_origin,
    resolve,
    session_hash,
    token_principal,
)
from proxy.store.console import SessionRow
from translators.errors import ApiError

_SIGN_IN_BYTES = 16_384


class SignIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    token: str = Field(min_length=1, max_length=300)

    @classmethod
    def parse(cls, raw: dict[str, Any]) -> SignIn:
        return cls.model_validate(raw)


def _disabled(gateway: Gateway) -> ApiError | None:
    if gateway.settings.console.enabled:
        return None
    return ApiError(404, "The console is disabled on this gateway (console.enabled: false).",
                    "invalid_request_error", "not_found")


async def _describe(gateway: Gateway, principal: Principal) -> dict[str, Any]:
    who: dict[str, Any] = {"kind": "operator"}
    if principal.tenant_id is not None:
        tenant = await gateway.store.find_tenant(principal.tenant_id)
        if tenant is None:  # deleted while signed in (its sessions go with it)
            raise unauthorized("This console session's tenant no longer exists.")
        who = {"kind": "tenant", "tenant": {"id": tenant.id, "name": tenant.name}}
    session = principal.session
    return {"principal": who, "csrf_token": None if session is None else session.csrf,
            "expires_at": None if session is None else session.expires_at}


def _secure(request: Request, gateway: Gateway) -> bool:
    setting = gateway.settings.console.secure_cookie
    return request.url.scheme == "https" if setting == "auto" else bool(setting)


async def _sign_in(request: Request, gateway: Gateway) -> Response:
    check_same_origin(request)  # no sign-in forced on a user by another site's form
    token = parse(SignIn, await read_json(request, _SIGN_IN_BYTES)).token.strip()
    if token.startswith(TOKEN_PREFIX):
        raise limited(request, unauthorized("API tokens cannot sign in to the console: use the admin token or a "
                                            "console token (`modelport tokens create TENANT --console`)."))
    principal = await token_principal(gateway, token)
    if principal is None:
        raise limited(request, unauthorized("Incorrect or revoked token."))
    session_id = secrets.token_urlsafe(32)
    now = int(time.time())
    ttl = int(gateway.settings.console.session_ttl)
    row = SessionRow(session_hash(session_id), principal.tenant_id, principal.token_id,
                     gateway.admin_hash if principal.operator else None, secrets.token_urlsafe(32), now, now + ttl)
    await gateway.store.create_session(row)
    response = JSONResponse(await _describe(gateway, Principal(row.tenant_id, row.token_id, row)))
    response.set_cookie(SESSION_COOKIE, session_id, max_age=ttl, path=COOKIE_PATH, httponly=True,
                        samesite="strict", secure=_secure(request, gateway))
    return response


async def _current(request: Request, gateway: Gateway) -> Response:
    return JSONResponse(await _describe(gateway, await resolve(request, gateway)))


async def _sign_out(request: Request, gateway: Gateway) -> Response:
    principal = await resolve(request, gateway)  # a cookie request: CSRF-checked
    if principal.session is not None:
        await gateway.store.delete_session(principal.session.id_hash)
    response = JSONResponse({"signed_out": principal.session is not None})
    response.delete_cookie(SESSION_COOKIE, path=COOKIE_PATH, httponly=True, samesite="strict",
                           secure=_secure(request, gateway))
    return response


def _endpoint(handler: Callable[[Request, Gateway], Awaitable[Response]]) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        gateway: Gateway = request.app.state.gateway
        headers = response_headers(request)
        headers["Cache-Control"] = "no-store"
        with internal_errors("session", "console session request failed"):
            refused = _disabled(gateway)
            if refused is not None:
                raise refused
            response = await handler(request, gateway)
        response.headers.update(headers)
        return response
    return endpoint


SESSION_ROUTES = [
    Route("/admin/v1/session", _endpoint(_sign_in), methods=["POST"]),
    Route("/admin/v1/session", _endpoint(_current), methods=["GET"]),
    Route("/admin/v1/session", _endpoint(_sign_out), methods=["DELETE"]),
]
