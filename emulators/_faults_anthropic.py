"""Anthropic's words for the injected faults (`emulators/inject.py`): its error envelope
`{"type": "error", "error": {"type", "message"}, "request_id"}` and a `request-id` header
on every answer.

    401         401 authentication_error "invalid x-api-key"
    429         429 rate_limit_error, with retry-after and the anthropic-ratelimit-* headers
    500         500 api_error "Internal server error"
    overloaded  529 overloaded_error "Overloaded"
    error-200   a stream: `message_start`, then `event: error` (overloaded_error, what Anthropic
                sends when a stream fails after it began) and nothing more; a plain request
                (Anthropic has no error in a 200 there): that same error body with status 200
"""

from __future__ import annotations

import time
from typing import Any

from starlette.responses import Response

from emulators._vendor_common import json_response
from emulators.anthropic import OVERLOADED, error_body, event_frame
from emulators.inject import Asked
from emulators.scripting import Fault

__all__ = ["anthropic_faults"]

RATE_LIMITED = ("This request would exceed the rate limit for your organization of 50 requests per minute. "
                "For details, refer to: https://docs.claude.com/en/api/rate-limits. You can see the response "
                "headers for current usage. Please reduce the prompt length or the maximum tokens requested, "
                "or try again later.")
_ERRORS: dict[str, tuple[int, str, str]] = {
    "401": (401, "authentication_error", "invalid x-api-key"),
    "429": (429, "rate_limit_error", RATE_LIMITED),
    "500": (500, "api_error", "Internal server error"),
    "overloaded": (529, "overloaded_error", "Overloaded"),
}


def _json(body: dict[str, Any], status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """The error body with its request id in the header too, as Anthropic sends both."""
    return json_response(body, status, {**(headers or {}), "request-id": str(body["request_id"])})


def _rate_headers(fault: Fault) -> dict[str, str]:
    reset = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + int(fault.retry_after)))
    return {"retry-after": fault.retry_after, "anthropic-ratelimit-requests-limit": "50",
            "anthropic-ratelimit-requests-remaining": "0", "anthropic-ratelimit-requests-reset": reset}


def _message_start(asked: Asked) -> dict[str, Any]:
    model = asked.body.get("model", "") if isinstance(asked.body, dict) else ""
    usage = {"input_tokens": 1, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0, "output_tokens": 1,
             "service_tier": "standard"}
    return {"type": "message_start", "message": {
        "model": str(model), "id": "msg_01emulated", "type": "message", "role": "assistant", "content": [],
        "stop_reason": None, "stop_sequence": None, "usage": usage}}


def anthropic_faults(fault: Fault, asked: Asked) -> Response:
    if fault.kind == "error-200":
        body = error_body(OVERLOADED["type"], OVERLOADED["message"])
        if not asked.stream:
            return _json(body)
        frames = event_frame("message_start", _message_start(asked)) + event_frame(
            "error", {"type": "error", "error": dict(OVERLOADED)})
        return Response(frames, media_type="text/event-stream", headers={"request-id": body["request_id"]})
    status, kind, message = _ERRORS[fault.kind]
    return _json(error_body(kind, message), status, _rate_headers(fault) if fault.kind == "429" else None)
