"""Replicate's words for the injected faults (`emulators/inject.py`): problem+json bodies
`{"title", "detail", "status"}` (as its recorded 401), and a model's own failure as a
prediction that comes back `failed`.

    401         401 the fake's UNAUTHENTICATED
    429         429 "Request was throttled. Expected available in N seconds.", Retry-After
    500         500 "Internal Server Error"
    overloaded  503 "Service Unavailable" (the status Replicate's client retries on a GET)
    error-200   a create: 201 with the prediction already `failed`, its `error` set; a
                prediction's GET or cancel: that failed prediction; its stream
                (`/v1/streams/ID`): one `output` event, then `error` {"detail"} and
                `done` {"reason": "error"}, as the fake's own failing stream
"""

from __future__ import annotations

import secrets
import time
from typing import Any

import orjson
from starlette.responses import Response

from emulators.inject import Asked
from emulators.replicate import HAIKU, PROBLEM, UNAUTHENTICATED, Prediction, _sse_output
from emulators.scripting import CURRENT, Fault

__all__ = ["replicate_faults"]

MODEL_FAILED = "CUDA out of memory. Tried to allocate 2.00 GiB"
_ERRORS: dict[str, dict[str, Any]] = {
    "401": UNAUTHENTICATED,
    "500": {"title": "Internal Server Error", "detail": "An unexpected error occurred, please try again later.",
            "status": 500},
    "overloaded": {"title": "Service Unavailable", "detail": "The service is temporarily unavailable, please try "
                                                             "again later.", "status": 503},
}


def _problem(body: dict[str, Any], headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), int(body["status"]), headers, media_type=PROBLEM)


def _split(path: str) -> tuple[str, list[str]]:
    """(where the API is served: `http://host[/replicate]`, the path's parts after `/v1/`)."""
    at = path.find("/v1/")
    return path[:max(at, 0)], path[at + len("/v1/"):].strip("/").split("/") if at >= 0 else []


def _failed_prediction(asked: Asked) -> Response:
    prefix, parts = _split(asked.path)
    body = asked.body if isinstance(asked.body, dict) else {}
    created = parts == ["predictions"] or parts[:1] == ["models"]  # a create, not a GET or cancel
    pid = secrets.token_hex(13) if created or len(parts) < 2 else parts[1]
    model = "/".join(parts[1:3]) if parts[:1] == ["models"] else ""
    version = body.get("version") if isinstance(body.get("version"), str) else "dp-" + secrets.token_hex(16)
    stream = body.get("stream") is True
    asked_input = body.get("input")
    inputs: dict[str, Any] = asked_input if isinstance(asked_input, dict) else {}
    prediction = Prediction(pid, model, str(version), inputs, stream, stream, None, MODEL_FAILED, status="failed")
    root = f"http://{asked.headers.get('host', '127.0.0.1')}{prefix}"
    return Response(orjson.dumps(prediction.as_json(root)), 201 if created else 200, media_type="application/json")


def _failing_stream() -> Response:
    script = CURRENT.get()
    first = script.reply.split(" ")[0] if script is not None and script.reply else next(t for t in HAIKU if t.strip())
    stamp = str(int(time.time()))
    frames = (_sse_output(stamp, 0, first)
              + f"event: error\nid: {stamp}:1\ndata: ".encode() + orjson.dumps({"detail": MODEL_FAILED}) + b"\n\n"
              + f"event: done\nid: {stamp}:2\ndata: ".encode() + b'{"reason":"error"}\n\n')
    return Response(frames, media_type="text/event-stream")


def replicate_faults(fault: Fault, asked: Asked) -> Response:
    if fault.kind == "error-200":
        return _failing_stream() if _split(asked.path)[1][:1] == ["streams"] else _failed_prediction(asked)
    if fault.kind == "429":
        seconds = fault.retry_after
        return _problem({"title": "Request was throttled.", "status": 429,
                         "detail": f"Request was throttled. Expected available in {seconds} second"
                                   f"{'' if seconds == '1' else 's'}."}, {"retry-after": seconds})
    return _problem(_ERRORS[fault.kind])
