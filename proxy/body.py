"""Reading request bodies within the configured size limit, with the right 4xx for
each way a body can be wrong (413 too big, 415 wrong type, 400 not JSON, nested too
deeply, or holding an integer beyond 64 bits)."""

from __future__ import annotations

import json
from typing import Any, TypeVar

import orjson
from pydantic import BaseModel, ValidationError
from starlette.datastructures import UploadFile
from starlette.requests import ClientDisconnect, Request

from proxy.errors import from_validation_error, param_path
from translators._json import MAX_DEPTH, too_deep
from translators.errors import ApiError, bad_request

M = TypeVar("M", bound=BaseModel)


def _too_large(limit: int) -> ApiError:
    return ApiError(413, f"Request body is larger than the limit of {limit} bytes.", "invalid_request_error",
                    "request_too_large")


async def read_limited(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    parts: list[bytes] = []
    size = 0
    try:
        async for part in request.stream():
            size += len(part)
            if size > limit:
                raise _too_large(limit)
            parts.append(part)
    except ClientDisconnect:
        # The client left mid-upload: nothing failed here, so no traceback; nginx's 499
        # is what the request's record (log line, usage row) says.
        raise ApiError(499, "The client closed the connection before the request body was read.",
                       "invalid_request_error", "client_closed_request") from None
    body = b"".join(parts)
    request._body = body  # Starlette's form parser reads the cached body from here
    return body


def _nesting_error(limit: int) -> ApiError:
    return bad_request(f"The JSON body is nested more than {limit} levels deep.", None, "invalid_json")


# Integers: orjson reads one beyond 64 bits as a float (older versions) or refuses it
# (newer ones), and SQLite and most vendors stop at 64 bits. A run of 19+ digits is rare
# in a body, so only then is the body read again, exactly, to name the field.
INT_MIN, INT_MAX = -(2**63), 2**63 - 1
# Digits as "0", anything else as " ": then a run is a plain substring search (a regex
# `\d{19}` costs several times more, on every request).
_DIGITS = bytes(0x30 if 0x30 <= b <= 0x39 else 0x20 for b in range(256))
_LONG_RUN = b"0" * 19


def _huge_int(value: Any, path: list[str | int]) -> str | None:
    """The path of the first integer outside the signed 64-bit range, if any."""
    if isinstance(value, int) and not isinstance(value, bool):
        return None if INT_MIN <= value <= INT_MAX else (param_path(path) or "body")
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, item in items:
        found = _huge_int(item, [*path, key])
        if found is not None:
            return found
    return None


def _check_integers(body: bytes) -> None:
    if _LONG_RUN not in body.translate(_DIGITS):
        return
    try:
        exact = json.loads(body)  # depth already checked, so the stdlib's recursion is safe
    except (ValueError, RecursionError):
        return  # orjson says what is wrong with it
    param = _huge_int(exact, [])
    if param is not None:
        raise bad_request(f"Invalid value for '{param}': integers must fit in 64 bits "
                          f"({INT_MIN} to {INT_MAX}).", None if param == "body" else param, "invalid_value")


def loads(body: bytes) -> Any:
    """orjson.loads behind the nesting and integer checks: a 400 for what it cannot take."""
    if too_deep(body):
        raise _nesting_error(MAX_DEPTH)
    _check_integers(body)
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        raise bad_request("We could not parse the JSON body of your request.", None, "invalid_json") from None


def _media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


async def read_json(request: Request, limit: int) -> dict[str, Any]:
    media = _media_type(request)
    if media != "application/json" and not media.endswith("+json"):
        raise ApiError(415, f"Content-Type must be application/json (got '{media or 'none'}').",
                       "invalid_request_error", "unsupported_media_type")
    data = loads(await read_limited(request, limit))
    if not isinstance(data, dict):
        raise bad_request("The request body must be a JSON object.", None, "invalid_json")
    return data


def parse(model: type[M], raw: dict[str, Any]) -> M:
    try:
        return model.parse(raw)  # type: ignore[attr-defined,no-any-return]
    except ValidationError as exc:
        raise from_validation_error(exc) from None


async def read_form(request: Request, limit: int) -> tuple[dict[str, Any], UploadFile | None]:
    """Multipart fields (lists for `name[]` fields) and the uploaded `file`."""
    if _media_type(request) != "multipart/form-data":
        raise ApiError(415, "Content-Type must be multipart/form-data for this endpoint.",
                       "invalid_request_error", "unsupported_media_type")
    await read_limited(request, limit)
    try:
        form = await request.form(max_files=1, max_fields=64, max_part_size=limit)
    except Exception as exc:  # the parser's own errors carry no secrets, but no traceback goes out
        raise bad_request(f"Malformed multipart body: {exc}", None, "invalid_multipart") from None
    fields: dict[str, Any] = {}
    upload: UploadFile | None = None
    for key, value in form.multi_items():
        if isinstance(value, UploadFile):
            if key != "file":
                raise bad_request(f"Unexpected file field '{key}'.", key)
            upload = value
        elif key.endswith("[]"):
            fields.setdefault(key[:-2], []).append(value)
        else:
            fields[key] = value
    return fields, upload
