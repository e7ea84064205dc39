"""Who is calling: the bearer token -> tenant (via the cached directory), and the
admin token for /admin. The only module that reads the Authorization header."""

from __future__ import annotations

import hashlib
import hmac

from starlette.requests import Request

from keystore.models import mask
from proxy.tenants import Caller, Directory
from translators.errors import ApiError

TOKEN_PREFIX = "mp-"
ADMIN_TOKEN_PREFIX = "mpa-"


def _unauthorized(message: str) -> ApiError:
    return ApiError(401, message, "authentication_error", "invalid_api_key")


def bearer_token(request: Request) -> str:
    header = request.headers.get("authorization")
    if not header:
        raise _unauthorized("You didn't provide an API key. Send it as 'Authorization: Bearer mp-...'.")
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise _unauthorized("Malformed Authorization header: expected 'Bearer <token>'.")
    return token


async def authenticate(request: Request, directory: Directory) -> Caller:
    token = bearer_token(request)
    if not token.startswith(TOKEN_PREFIX) or len(token) > 200:
        raise _unauthorized("Malformed API key: modelport keys start with 'mp-'.")
    caller = await directory.caller(token)
    if caller is None:
        raise _unauthorized(f"Incorrect or revoked API key provided: {mask(token)}.")
    return caller


def hash_admin_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def check_admin(request: Request, admin_hash: str) -> None:
    token = bearer_token(request)
    if not hmac.compare_digest(hash_admin_token(token), admin_hash):
        raise _unauthorized("Incorrect admin token.")
