"""Who is calling the admin API, and what they may manage.

Three ways in, one `Principal` out:
- `Authorization: Bearer <admin token>`: the operator (scripts, the CLI's peers);
- `Authorization: Bearer <console token>`: that tenant's administrator (scripts);
- the console's session cookie (`proxy/sessions.py`): whoever signed in. A cookie is sent
  by the browser on its own, so every state-changing request made with it must also
  carry the session's CSRF token in a header (which another site cannot read or set),
  and must not come from another origin (Origin / Sec-Fetch-Site, when the browser
  sends them). Bearer requests need neither: nothing attaches a bearer token by itself.

A tenant principal's `Management` is scoped to its tenant (`proxy/service.py`).
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from urllib.parse import urlsplit

from starlette.requests import Request

from proxy.auth import (
    CONSOLE_TOKEN_PREFIX,
    bearer_token,
    hash_admin_token,
    limited,
    unauthorized,
)
from proxy.gateway import Gateway
from proxy.store.console import SessionRow
from proxy.tenants import hash_token
from translators.errors import ApiError

SESSION_COOKIE = "mp_console"
COOKIE_PATH = "/admin/v1"      # the cookie goes to the admin API only, never to /v1 or the page
CSRF_HEADER = "x-csrf-token"
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_MAX_TOKEN = 200


@dataclass(frozen=True, slots=True)
class Principal:
    tenant_id: str | None                # None: the operator
    token_id: str | None = None          # the console token, for a tenant administrator
    session: SessionRow | None = None    # when signed in through the console

    @property
    def operator(self) -> bool:
        return self.tenant_id is None


def session_hash(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


def forbidden(message: str, code: str) -> ApiError:
    return ApiError(403, message, "permission_error", code)


def check_same_origin(request: Request) -> None:
    """Refuse a request a browser says came from another site. Browsers send
    Sec-Fetch-Site and Origin on cross-site requests; scripts send neither, and pass."""
    site = request.headers.get("sec-fetch-site")
    if site is not None and site not in ("same-origin", "none"):
        raise forbidden("Cross-site requests to the admin API are refused.", "cross_site_request")
    origin = request.headers.get("origin")
    if origin is not None and (origin == "null" or urlsplit(origin).netloc != request.headers.get("host", "")):
        raise forbidden("Cross-origin requests to the admin API are refused.", "cross_site_request")


async def token_principal(gateway: Gateway, token: str) -> Principal | None:
    """The operator for the admin token, a tenant for a live console token, else None.
    API tokens are not looked up at all: they cannot manage anything."""
    if len(token) > _MAX_TOKEN:
        return None
    if token.startswith(CONSOLE_TOKEN_PREFIX):
        found = await gateway.store.find_token(hash_token(token), "console")
        return None if found is None else Principal(found[1], found[0])
    if hmac.compare_digest(hash_admin_token(token), gateway.admin_hash):
        return Principal(None)
    return None


async def _from_bearer(request: Request, gateway: Gateway) -> Principal:
    try:
        principal = await token_principal(gateway, bearer_token(request))
        if principal is None:
            raise unauthorized("Incorrect admin or console token.")
    except ApiError as err:
        raise limited(request, err) from None
    if principal.token_id is not None:
        await gateway.store.touch_token(principal.token_id)
    return principal


async def live_session(request: Request, gateway: Gateway) -> SessionRow | None:
    cookie = request.cookies.get(SESSION_COOKIE)
    if not cookie or len(cookie) > 100:
        return None
    row = await gateway.store.session(session_hash(cookie))
    # An operator session lasts only as long as the admin token it was opened with.
    if row is None or (row.tenant_id is None and not hmac.compare_digest(row.admin_hash or "", gateway.admin_hash)):
        return None
    return row


async def resolve(request: Request, gateway: Gateway) -> Principal:
    if "authorization" in request.headers:
        return await _from_bearer(request, gateway)
    row = await live_session(request, gateway)
    if row is None:
        message = ("Your console session has expired or was ended; sign in again." if SESSION_COOKIE in request.cookies
                   else "Send 'Authorization: Bearer <admin or console token>', or sign in to the console.")
        raise limited(request, unauthorized(message))
    if request.method not in _SAFE_METHODS:
        check_same_origin(request)
        sent = request.headers.get(CSRF_HEADER, "")
        if not hmac.compare_digest(sent.encode(), row.csrf.encode()):
            raise forbidden(f"Missing or wrong CSRF token: send the session's csrf_token in the {CSRF_HEADER} header.",
                            "csrf_failed")
    return Principal(row.tenant_id, row.token_id, row)
