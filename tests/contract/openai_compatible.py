"""Contract adapter for `openai_compatible` (a self-hosted OpenAI-compatible server), driving the
plain fake OpenAI as a vLLM-like server with a key (tests/fakes/compatible_fixtures.py).

Its errors come in the shapes such servers use: vLLM's older top-level `{"object": "error",
"message": ...}`, OpenAI's envelope, and a framework's plain-text 500.
"""

from __future__ import annotations

from typing import Any

from tests.contract._openai_shaped import OpenAIShapedAdapter
from emulators._openai_wire import error_body

ERRORS: dict[int, dict[str, Any] | str] = {
    400: {"object": "error", "message": "This model's maximum context length is 8192 tokens.",
          "type": "BadRequestError", "param": None, "code": 400},
    401: {"error": "Unauthorized"},
    429: error_body("Too many requests", type="rate_limit_error"),
    500: "Internal Server Error",
    503: error_body("The server is overloaded", type="server_error"),
}


class OpenAICompatibleAdapter(OpenAIShapedAdapter):
    provider = "openai_compatible"
    fixture = "fake_compatible"
    model = "meta-llama/Llama-3.1-8B-Instruct"
    wrong_key = "contract-wrong-server-key-0000000"
    errors = ERRORS

    def script_error_in_200(self, fake: Any) -> tuple[int, str] | None:
        fake.state.fail_next.append((200, error_body("The model `x` does not exist.", type="NotFoundError",
                                                     code="model_not_found")))
        return None

    def script_stream_error(self, fake: Any) -> tuple[int, str] | None:
        fake.state.fail_after_chunks = 1
        return 502, "server_error"


ADAPTER = OpenAICompatibleAdapter()
