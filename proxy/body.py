"""Reading request bodies within the configured size limit, with the right 4xx for
each way a body can be wrong (413 too big, 415 wrong type, 400 not JSON)."""

from __future__ import annotations

from typing import Any, TypeVar

import orjson
from pydantic import BaseModel, ValidationError
from starlette.datastructures import UploadFile
from starlette.requests import Request

from proxy.errors import from_validation_error
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
    async for part in request.stream():
        size += len(part)
        if size > limit:
            raise _too_large(limit)
        parts.append(part)
    body = b"".join(parts)
    request._body = body  # Starlette's form parser reads the cached body from here
    return body


def _media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


async def read_json(request: Request, limit: int) -> dict[str, Any]:
    media = _media_type(request)
    if media != "application/json" and not media.endswith("+json"):
        raise ApiError(415, f"Content-Type must be application/json (got '{media or 'none'}').",
                       "invalid_request_error", "unsupported_media_type")
    body = await read_limited(request, limit)
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise bad_request("We could not parse the JSON body of your request.", None, "invalid_json") from None
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
