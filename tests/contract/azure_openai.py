"""Contract adapter for `azure_openai`, driving the fake Azure resource (emulators/azure_openai.py).

The credential points `endpoint` (not `base_url`) at the fake, so the translator's own
endpoint handling is exercised. Streams carry Azure's prompt-filter chunk (empty
`choices`, dropped by the translator) and annotation chunks, and are written in pieces.
"""

from __future__ import annotations

import json
from typing import Any

from tests.contract import Adapter
from emulators.azure_openai import ACCESS_DENIED, API_VERSION, azure_error, error_429

DEPLOYMENT = "prod-chat"
ERRORS: dict[int, dict[str, Any]] = {
    400: {"error": {"message": "Invalid value for 'temperature': expected a number.", "type": "invalid_request_error",
                    "param": "temperature", "code": None}},
    401: ACCESS_DENIED,
    500: azure_error("InternalServerError", "The server had an error while processing your request."),
    503: azure_error("ServiceUnavailable", "The service is temporarily unable to process your request. "
                                           "Please try again later."),
}


class AzureOpenAIAdapter(Adapter):
    provider = "azure_openai"
    fixture = "fake_azure"
    model = DEPLOYMENT
    chat_path = f"/openai/deployments/{DEPLOYMENT}/chat/completions"
    overloaded_status = 503

    def credential_values(self, fake: Any, *, valid: bool) -> dict[str, str]:
        key = fake.api_key if valid else "contract-wrong-azure-key-000000"
        return {"endpoint": fake.endpoint, "api_key": key, "api_version": API_VERSION}

    def script_text(self, fake: Any, text: str) -> None:
        fake.state.reply_text = text
        fake.state.split_events = True

    def script_tool_call(self, fake: Any, name: str, arguments: dict[str, Any]) -> None:
        fake.state.tool_call = (name, json.dumps(arguments))

    def script_http_error(self, fake: Any, status: int, retry_after: int | None = None) -> None:
        if status == 429:
            status_, body, headers = error_429(retry_after or 7)
            if retry_after is None:
                headers = {}
            fake.state.fail_next.append((status_, body, headers))
            return
        fake.state.fail_next.append((status, ERRORS[status]))

    def script_error_in_200(self, fake: Any) -> tuple[int, str] | None:
        fake.state.fail_next.append((200, azure_error("BadRequest", "The request is invalid.")))
        return 400, "invalid_request_error"

    def script_stream_error(self, fake: Any) -> tuple[int, str] | None:
        # Event 0 is the prompt-filter chunk (dropped), event 1 the role chunk, then the error.
        fake.state.fail_after_chunks = 2
        return 502, "server_error"

    def script_slow_stream(self, fake: Any, delay: float) -> None:
        fake.state.reply_text = " ".join(f"word{i}" for i in range(60))
        fake.state.stream_delay = delay


ADAPTER = AzureOpenAIAdapter()
