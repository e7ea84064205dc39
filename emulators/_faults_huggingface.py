"""Hugging Face's words for the injected faults (`emulators/inject.py`): the Inference API's
and TGI's `{"error": "..."}` bodies (an `error_type` only where TGI sends one, since
`huggingface_hub` turns an `error_type` into its own TextGenerationError classes).

    401         401 {"error": "Invalid credentials in Authorization header"}
    429         429 {"error": "Rate limit reached. You reached free usage limit ..."}, Retry-After
    500         500 {"error": "Internal Server Error"}
    overloaded  503 {"error": "Model X is currently loading", "estimated_time": 20.0}, X the
                model (or endpoint) the path names, as the serverless API answers a cold model
    error-200   a stream: its first event (a chat chunk, or a `/generate_stream` token), then
                TGI's `data:{"error": ..., "error_type": "generation"}` event; a plain request
                (no error in a 200 there): that same error body with status 200
"""

from __future__ import annotations

import time
from typing import Any

from starlette.responses import Response

from emulators._hf_payloads import CURRENT as CURRENT_TGI
from emulators._hf_payloads import FINGERPRINTS, sse
from emulators._openai_wire import text_pieces
from emulators._vendor_common import json_response
from emulators.huggingface import DEFAULT_REPLY, GENERATION_FAILED, UNAUTHORIZED
from emulators.inject import Asked
from emulators.scripting import CURRENT, Fault

__all__ = ["huggingface_faults"]

LOADING_ESTIMATE = 20.0  # seconds, as the serverless API guesses for a mid-sized model
_ERRORS: dict[str, tuple[int, dict[str, Any]]] = {
    "401": (401, UNAUTHORIZED),
    "429": (429, {"error": "Rate limit reached. You reached free usage limit (reset hourly). Please subscribe to "
                           "a plan at https://huggingface.co/pricing to use the API at this rate"}),
    "500": (500, {"error": "Internal Server Error"}),
}
_CHAT = "/v1/chat/completions"


def _model(asked: Asked) -> str:
    """The model the path names (`.../models/ORG/NAME[/...]`, `.../endpoints/NAME[/...]`),
    else the body's, else TGI's placeholder."""
    for marker in ("/models/", "/endpoints/"):
        at = asked.path.find(marker)
        if at >= 0:
            model = asked.path[at + len(marker):]
            for suffix in (_CHAT, "/pipeline/feature-extraction", "/generate_stream", "/generate"):
                model = model.removesuffix(suffix)
            return model
    named = asked.body.get("model") if isinstance(asked.body, dict) else None
    return named if isinstance(named, str) and named else "tgi"


def _first_event(asked: Asked) -> dict[str, Any]:
    """What a stream says before it fails: the role, or the first generated token."""
    if asked.path.endswith(_CHAT):
        return {"id": "", "object": "chat.completion.chunk", "created": int(time.time()), "model": _model(asked),
                "system_fingerprint": FINGERPRINTS[CURRENT_TGI],
                "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "logprobs": None,
                             "finish_reason": None}]}
    script = CURRENT.get()
    reply = script.reply if script is not None and script.reply else DEFAULT_REPLY
    token = {"id": 100, "text": text_pieces(reply)[0][0], "logprob": -0.5, "special": False}
    return {"index": 1, "token": token, "top_tokens": None, "generated_text": None, "details": None}


def huggingface_faults(fault: Fault, asked: Asked) -> Response:
    if fault.kind == "error-200":
        if not asked.stream:
            return json_response(GENERATION_FAILED)
        return Response(sse(_first_event(asked)) + sse(GENERATION_FAILED), media_type="text/event-stream")
    if fault.kind == "overloaded":
        return json_response({"error": f"Model {_model(asked)} is currently loading",
                              "estimated_time": LOADING_ESTIMATE}, 503)
    status, body = _ERRORS[fault.kind]
    return json_response(body, status, {"retry-after": fault.retry_after} if fault.kind == "429" else None)
