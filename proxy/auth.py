"""Who is calling /v1: the bearer token -> tenant (via the cached directory); the token
helpers the admin API's principals use (`proxy/principals.py`). The only modules that
read the Authorization header are these two. A /v1 request without one may carry its
token as `x-api-key` instead (how clients of the Messages API send their key); the admin
API takes the bearer header only.

Failures are counted per client address (`proxy.limits.FailureLimiter`, kept on the
app's gateway): past the burst, a failure is a 429 with Retry-After instead of a 401.
A valid token is never refused for its address's failures: behind one NAT, one
misconfigured client must not lock out everyone else (and tokens are 256 random bits:
the limit is about load and noise, not about making them guessable).
"""

from __future__ import annotations

import hashlib
from typing import cast

from starlette.requests import Request

from keystore.models import mask
from proxy.limits import FailureLimiter
from proxy.tenants import Caller, Directory
from translators.errors import ApiError

TOKEN_PREFIX = "mp-"
ADMIN_TOKEN_PREFIX = "mpa-"
CONSOLE_TOKEN_PREFIX = "mpc-"   # a tenant administrator's console token (never accepted by /v1)


def unauthorized(message: str) -> ApiError:
    return ApiError(401, message, "authentication_error", "invalid_api_key")


def limited(request: Request, err: ApiError) -> ApiError:
    """`err` (a 401), or a 429 when the caller's address has failed too often."""
    limiter: FailureLimiter | None = getattr(getattr(request.app.state, "gateway", None), "auth_failures", None)
    if limiter is None or request.client is None:
        return err
    retry = limiter.failed(request.client.host)
    if retry is None:
        return err
    return ApiError(429, "Too many failed authentication attempts from this address; retry later.",
                    "rate_limit_error", "too_many_auth_failures", retry_after=retry)


def bearer_token(request: Request) -> str:
    header = request.headers.get("authorization")
    if not header:
        raise unauthorized("You didn't provide an API key. Send it as 'Authorization: Bearer mp-...'.")
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise unauthorized("Malformed Authorization header: expected 'Bearer <token>'.")
    return token


def api_key(request: Request) -> str:
    """The /v1 token: the bearer header's, else `x-api-key`'s."""
    if "authorization" not in request.headers:
        key = request.headers.get("x-api-key", "").strip()
        if key:
            return key
    return bearer_token(request)


_CALLER = "modelport.caller"  # a key of the ASGI scope: the request's caller, once found


async def authenticate(request: Request, directory: Directory) -> Caller:
    """The request's caller; found once per request (a continued answer's lookup asks again)."""
    known = request.scope.get(_CALLER)
    if known is not None:
        return cast(Caller, known)
    try:
        token = api_key(request)
        if not token.startswith(TOKEN_PREFIX) or len(token) > 200:
            raise unauthorized("Malformed API key: modelport keys start with 'mp-'.")
        caller = await directory.caller(token)
        if caller is None:
            raise unauthorized(f"Incorrect or revoked API key provided: {mask(token)}.")
    except ApiError as err:
        raise limited(request, err) from None
    request.scope[_CALLER] = caller
    return caller


def hash_admin_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()
