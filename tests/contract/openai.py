"""Contract adapter for `openai`, driving the fake OpenAI (emulators/openai.py)."""

from __future__ import annotations

from typing import Any

from tests.contract._openai_shaped import OpenAIShapedAdapter
from emulators._openai_wire import error_body

# (message, type, code) of OpenAI's error bodies per status, as ../shared/vendors/openai.md documents them.
ERRORS: dict[int, tuple[str, str, str | None]] = {
    400: ("Invalid value for 'temperature': expected a number.", "invalid_request_error", "invalid_value"),
    401: ("Incorrect API key provided: sk-abc***wxyz.", "invalid_request_error", "invalid_api_key"),
    429: ("Rate limit reached for gpt-4o-mini on requests per min (RPM): Limit 3, Used 3, Requested 1.",
          "requests", "rate_limit_exceeded"),
    500: ("The server had an error while processing your request. Sorry about that!", "server_error", None),
    503: ("The engine is currently overloaded, please try again later.", "server_error", None),
}


class OpenAIAdapter(OpenAIShapedAdapter):
    provider = "openai"
    fixture = "fake_openai"
    model = "gpt-4o-mini"
    wrong_key = "sk-contract-wrong-key-000000000000"
    errors = {status: error_body(message, type=kind, code=code) for status, (message, kind, code) in ERRORS.items()}

    def script_error_in_200(self, fake: Any) -> tuple[int, str] | None:
        # OpenAI itself does not do this, but OpenAI-compatible servers behind the same
        # translator do; the translator must not pass it on as a completion.
        body = error_body("This model's maximum context length is 128000 tokens.",
                          type="invalid_request_error", code="context_length_exceeded")
        fake.state.fail_next.append((200, body))
        return 400, "invalid_request_error"

    def script_stream_error(self, fake: Any) -> tuple[int, str] | None:
        fake.state.fail_after_chunks = 1  # the role chunk, then {"error": {... server_error}}
        return 502, "server_error"


ADAPTER = OpenAIAdapter()
