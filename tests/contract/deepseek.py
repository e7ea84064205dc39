"""Contract adapter for `deepseek`, driving the fake OpenAI as DeepSeek (tests/fakes/compatibles.py).

The model is `deepseek-reasoner`, so every stream the suite checks opens with the reasoner's
`reasoning_content` deltas before the answer (they must pass through untouched).
"""

from __future__ import annotations

import json
from typing import Any

from tests.contract import Adapter
from tests.fakes.compatibles import DEEPSEEK_KEY, deepseek_error

# Bodies per status, in DeepSeek's shape (type + code "invalid_request_error"), its documented statuses.
ERRORS: dict[int, dict[str, Any]] = {
    400: deepseek_error("Failed to deserialize the JSON body into the target type: messages[0]: missing field "
                        "`role`"),
    401: deepseek_error(f"Authentication Fails, Your api key: ****{DEEPSEEK_KEY[-4:]}x is invalid",
                        "authentication_error"),
    429: deepseek_error("Rate Limit Reached", "rate_limit_error"),
    500: deepseek_error("Internal Server Error", "internal_error"),
    503: deepseek_error("Server overloaded, please try again later", "service_unavailable_error"),
}


class DeepSeekAdapter(Adapter):
    provider = "deepseek"
    fixture = "fake_deepseek"
    model = "deepseek-reasoner"
    chat_path = "/v1/chat/completions"
    overloaded_status = 503

    def credential_values(self, fake: Any, *, valid: bool) -> dict[str, str]:
        key = fake.api_key if valid else "sk-contract-wrong-deepseek-key-00"
        return {"api_key": key, "base_url": fake.v1_url}

    def script_text(self, fake: Any, text: str) -> None:
        fake.state.reply_text = text

    def script_tool_call(self, fake: Any, name: str, arguments: dict[str, Any]) -> None:
        fake.state.tool_call = (name, json.dumps(arguments))

    def script_http_error(self, fake: Any, status: int, retry_after: int | None = None) -> None:
        headers = {"retry-after": str(retry_after)} if retry_after is not None else {}
        fake.state.fail_next.append((status, ERRORS[status], headers))

    def script_error_in_200(self, fake: Any) -> tuple[int, str] | None:
        fake.state.fail_next.append((200, deepseek_error("Content Exists Risk")))
        return 400, "invalid_request_error"

    def script_stream_error(self, fake: Any) -> tuple[int, str] | None:
        fake.state.stream_error = deepseek_error("Internal Server Error", "internal_error")["error"]
        fake.state.fail_after_chunks = 2  # the role chunk, one thought, then the error
        return 502, "server_error"

    def script_slow_stream(self, fake: Any, delay: float) -> None:
        fake.state.reply_text = " ".join(f"word{i}" for i in range(60))
        fake.state.stream_delay = delay


ADAPTER = DeepSeekAdapter()
