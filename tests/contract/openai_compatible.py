"""Contract adapter for `openai_compatible` (a self-hosted OpenAI-compatible server), driving the
plain fake OpenAI as a vLLM-like server with a key (tests/fakes/compatible_fixtures.py).

Its errors come in the shapes such servers use: vLLM's older top-level `{"object": "error",
"message": ...}`, OpenAI's envelope, and a framework's plain-text 500.
"""

from __future__ import annotations

import json
from typing import Any

from tests.contract import Adapter
from tests.fakes._openai_wire import error_body

ERRORS: dict[int, dict[str, Any] | str] = {
    400: {"object": "error", "message": "This model's maximum context length is 8192 tokens.",
          "type": "BadRequestError", "param": None, "code": 400},
    401: {"error": "Unauthorized"},
    429: error_body("Too many requests", type="rate_limit_error"),
    500: "Internal Server Error",
    503: error_body("The server is overloaded", type="server_error"),
}


class OpenAICompatibleAdapter(Adapter):
    provider = "openai_compatible"
    fixture = "fake_compatible"
    model = "meta-llama/Llama-3.1-8B-Instruct"
    chat_path = "/v1/chat/completions"
    overloaded_status = 503

    def credential_values(self, fake: Any, *, valid: bool) -> dict[str, str]:
        key = fake.api_key if valid else "contract-wrong-server-key-0000000"
        return {"base_url": fake.v1_url, "api_key": key}

    def script_text(self, fake: Any, text: str) -> None:
        fake.state.reply_text = text

    def script_tool_call(self, fake: Any, name: str, arguments: dict[str, Any]) -> None:
        fake.state.tool_call = (name, json.dumps(arguments))

    def script_http_error(self, fake: Any, status: int, retry_after: int | None = None) -> None:
        headers = {"retry-after": str(retry_after)} if retry_after is not None else {}
        fake.state.fail_next.append((status, ERRORS[status], headers))

    def script_error_in_200(self, fake: Any) -> tuple[int, str] | None:
        fake.state.fail_next.append((200, error_body("The model `x` does not exist.", type="NotFoundError",
                                                     code="model_not_found")))
        return None

    def script_stream_error(self, fake: Any) -> tuple[int, str] | None:
        fake.state.fail_after_chunks = 1
        return 502, "server_error"

    def script_slow_stream(self, fake: Any, delay: float) -> None:
        fake.state.reply_text = " ".join(f"word{i}" for i in range(60))
        fake.state.stream_delay = delay


ADAPTER = OpenAICompatibleAdapter()
