"""OpenAI's words for the injected faults (`emulators/inject.py`), shared by every
emulator that speaks OpenAI's API (OpenAI, DeepSeek, Moonshot, the compatible servers)."""

from __future__ import annotations

import time
from typing import Any

import orjson
from starlette.responses import Response

from emulators._openai_wire import error_body
from emulators._vendor_common import json_response
from emulators.inject import Asked
from emulators.scripting import Fault

__all__ = ["error_in_200", "first_chunk", "openai_faults"]

_ERRORS: dict[str, tuple[int, dict[str, object]]] = {
    "401": (401, error_body("Incorrect API key provided: sk-emu*****ault. You can find your API key at "
                            "https://platform.openai.com/account/api-keys.", code="invalid_api_key")),
    "429": (429, error_body("Rate limit reached for requests per min (RPM): Limit 3, Used 3, Requested 1. "
                            "Please try again in 20s.", type="requests", code="rate_limit_exceeded")),
    "500": (500, error_body("The server had an error while processing your request. Sorry about that!",
                            type="server_error")),
    "overloaded": (503, error_body("The engine is currently overloaded, please try again later",
                                   type="server_error")),
}
_IN_200 = error_body("The server had an error while processing your request. Sorry about that!",
                     type="server_error")


def first_chunk(asked: Asked) -> dict[str, Any]:
    """A stream's opening chunk (the role, no text yet), for the request's model."""
    model = asked.body.get("model", "") if isinstance(asked.body, dict) else ""
    return {"id": "chatcmpl-emulated", "object": "chat.completion.chunk", "created": int(time.time()),
            "model": str(model),
            "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]}


def error_in_200(asked: Asked, error: dict[str, Any], first: dict[str, Any] | None = None,
                 headers: dict[str, str] | None = None) -> Response:
    """An OpenAI-shaped vendor's error inside an HTTP 200: the error body itself for a plain
    request; for a stream, what OpenAI sends when a stream fails after it began: a first
    chunk (`first`, else `first_chunk`), then the error event and no [DONE]."""
    if not asked.stream:
        return json_response(error, headers=headers)
    opening = first_chunk(asked) if first is None else first
    frames = b"data: " + orjson.dumps(opening) + b"\n\ndata: " + orjson.dumps(error) + b"\n\n"
    return Response(frames, headers=headers, media_type="text/event-stream")


def openai_faults(fault: Fault, asked: Asked) -> Response:
    if fault.kind == "error-200":
        return error_in_200(asked, _IN_200)
    status, body = _ERRORS[fault.kind]
    headers = {"retry-after": fault.retry_after, "x-ratelimit-remaining-requests": "0"} if fault.kind == "429" else None
    return json_response(body, status, headers)
