"""Azure OpenAI's words for the injected faults (`emulators/inject.py`): Azure's own error
envelope `{"error": {"code": "...", "message": "..."}}` (a string code, no `type`), and
the headers its gateway adds to every answer.

    401         401 the fake's ACCESS_DENIED (an invalid subscription key)
    429         429 code "429": "Requests to the <Operation> Operation under Azure OpenAI API
                version ... have exceeded token rate limit ... Please retry after N seconds.",
                with retry-after and retry-after-ms
    500         500 code "InternalServerError": "Backend returned unexpected response..."
    overloaded  503 code "ServiceUnavailable"
    error-200   a plain request: OpenAI's server_error body in a 200 (what the models behind
                Azure send); a stream: the prompt-filter chunk Azure opens with, then
                `data: {"error": ...}` and no [DONE]
"""

from __future__ import annotations

from typing import Any

from starlette.responses import Response

from emulators._faults_openai import error_in_200
from emulators._vendor_common import json_response
from emulators.azure_openai import (
    ACCESS_DENIED,
    API_VERSION,
    DEFAULT_STREAM_ERROR,
    azure_error,
    error_429,
    prompt_filter_chunk,
)
from emulators.inject import Asked
from emulators.scripting import Fault

__all__ = ["azure_faults"]

# The operation an Azure throttling message names, by the path's last part.
_OPERATIONS = {"chat/completions": "ChatCompletions_Create", "completions": "Completions_Create",
               "embeddings": "Embeddings_Create", "audio/transcriptions": "Transcriptions_Create"}
_ERRORS: dict[str, tuple[int, dict[str, Any]]] = {
    "401": (401, ACCESS_DENIED),
    "500": (500, azure_error("InternalServerError",
                             "Backend returned unexpected response. Please contact Microsoft for help.")),
    "overloaded": (503, azure_error("ServiceUnavailable", "The service is temporarily unable to process your "
                                    "request. Please try again later.")),
}
# What Azure's gateway puts on every answer (as the fake's own answers carry them).
_GATEWAY = {"apim-request-id": "00000000-0000-0000-0000-000000000000", "x-ms-region": "Sweden Central"}


def _operation(path: str) -> str:
    for suffix, operation in _OPERATIONS.items():  # chat/completions is tried before completions
        if path.endswith("/" + suffix):
            return operation
    return _OPERATIONS["chat/completions"]


def azure_faults(fault: Fault, asked: Asked) -> Response:
    if fault.kind == "error-200":
        return error_in_200(asked, {"error": DEFAULT_STREAM_ERROR}, prompt_filter_chunk(API_VERSION), dict(_GATEWAY))
    if fault.kind == "429":
        status, body, headers = error_429(int(fault.retry_after), _operation(asked.path))
        return json_response(body, status, {**headers, **_GATEWAY})
    status, body = _ERRORS[fault.kind]
    return json_response(body, status, dict(_GATEWAY))
