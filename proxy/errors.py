"""Rendering errors: every failure leaves the gateway as OpenAI's error body with a real
status; an unexpected exception becomes a 500 that names the request id and nothing else.

Endpoints raise `ApiError` and `api_error_handler`, registered on the app, renders it: one
place decides an error's status, body and headers. Headers that every answer to a request
carries, its error included (x-modelport-*, x-ratelimit-*, the admin API's Cache-Control),
go in `response_headers(request)`; the handler adds them. x-request-id goes on every
answer whatever made it (`proxy/request_ids.py`, a middleware). An endpoint of another
API (`proxy/inbound/`) names its error shape once (`shape_errors`): the same handler then
renders that API's status and body, with the same headers.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, cast

import orjson
from pydantic import ValidationError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from translators.errors import ApiError

log = logging.getLogger("modelport")


class JSONResponse(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


class HeaderedError(ApiError):
    """An `ApiError` whose response carries headers of its own (a rate limit's
    x-ratelimit-*, which OpenAI sends with its 429s too)."""

    def __init__(self, status: int, message: str, type: str, code: str | None, *, headers: dict[str, str],
                 retry_after: float | None = None) -> None:
        super().__init__(status, message, type, code, None, retry_after)
        self.headers = headers


# An error's (HTTP status, body) in another API's shape.
ErrorShape = Callable[[ApiError], tuple[int, dict[str, Any]]]


def error_response(err: ApiError, shape: ErrorShape | None = None) -> JSONResponse:
    headers = dict(err.headers) if isinstance(err, HeaderedError) else {}
    if err.retry_after is not None:
        headers["Retry-After"] = str(int(err.retry_after + 0.999))
    if err.status == 401:
        headers["WWW-Authenticate"] = "Bearer"
    if err.code == "insufficient_quota":
        # A spent quota does not come back by retrying; OpenAI's SDKs skip their automatic
        # retries of a 429 when the server says so.
        headers["x-should-retry"] = "false"
    status, body = shape(err) if shape is not None else (err.status, err.body())
    return JSONResponse(body, status_code=status, headers=headers)


_RESPONSE_HEADERS = "modelport.response_headers"  # a key of the ASGI scope
_ERROR_SHAPE = "modelport.error_shape"  # likewise


def shape_errors(request: Request, shape: ErrorShape) -> None:
    """This request's errors are rendered in `shape` (its endpoint speaks another API)."""
    request.scope[_ERROR_SHAPE] = shape


def response_headers(request: Request) -> dict[str, str]:
    """The headers this request's answer carries whatever it is. The dict is the request's
    own: filled in as the request goes on, it is read when the answer is made."""
    headers = request.scope.get(_RESPONSE_HEADERS)
    if headers is None:
        headers = request.scope[_RESPONSE_HEADERS] = {}
    return cast(dict[str, str], headers)


async def api_error_handler(request: Request, exc: Exception) -> Response:
    if not isinstance(exc, ApiError):  # registered for ApiError only
        raise exc
    response = error_response(exc, request.scope.get(_ERROR_SHAPE))
    headers = request.scope.get(_RESPONSE_HEADERS)
    if headers:
        response.headers.update(headers)
    return response


def internal_error(request_id: str) -> ApiError:
    return ApiError(500, f"the gateway hit an internal error (request {request_id}); it has been logged",
                    "server_error", "internal_error")


@contextmanager
def internal_errors(what: str, log_message: str) -> Iterator[None]:
    """Inside, an exception other than `ApiError` is logged with its traceback and becomes
    the 500 naming `what`: a client never reads a traceback or Starlette's plain-text 500."""
    try:
        yield
    except ApiError:
        raise
    except Exception:
        log.exception(log_message)
        raise internal_error(what) from None


def param_path(loc: tuple[int | str, ...] | list[int | str]) -> str:
    """`("messages", 0, "content")` -> `messages[0].content`, as OpenAI names a parameter."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def from_validation_error(exc: ValidationError) -> ApiError:
    """Pydantic's error list becomes one OpenAI-style 400 naming the first bad field."""
    first = exc.errors()[0]
    # Union members add their type names to the location; they say nothing to a client.
    loc = tuple(p for p in first["loc"] if not (isinstance(p, str) and ("[" in p or p in _TYPE_NAMES)))
    param = param_path(loc) or None
    if first["type"] == "missing":
        return ApiError(400, f"Missing required parameter: '{param}'.", "invalid_request_error",
                        "missing_required_parameter", param)
    code = "invalid_type" if first["type"].endswith("_type") else "invalid_value"
    return ApiError(400, f"Invalid value for '{param}': {first['msg']}.", "invalid_request_error", code, param)


_TYPE_NAMES = {"str", "int", "float", "bool", "list", "dict", "function-after", "literal", "list[int]",
               "list[str]", "list[list[int]]", "ContentPart", "JSONObject"}


async def http_exception_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404:
        err = ApiError(404, f"Unknown request URL: {request.method} {request.url.path}.", "invalid_request_error",
                       "unknown_url")
    elif exc.status_code == 405:
        err = ApiError(405, f"Method {request.method} is not allowed for {request.url.path}.",
                       "invalid_request_error", "method_not_allowed")
    else:
        err = ApiError(exc.status_code, str(exc.detail), "invalid_request_error")
    return error_response(err, request.scope.get(_ERROR_SHAPE) or _shape_of_path(request.url.path))


def _shape_of_path(path: str) -> ErrorShape | None:
    """The router's 404 and 405 under another API's path (`/v1/messages/...`) in that API's
    shape: its clients' SDKs read no other."""
    from translators import INBOUND

    for api in INBOUND.values():
        if path == api.path or path.startswith(api.path + "/"):
            return api.error
    return None
