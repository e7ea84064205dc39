"""Contract adapter for `deepseek`, driving the fake OpenAI as DeepSeek (emulators/compatibles.py).

The model is `deepseek-reasoner`, so every stream the suite checks opens with the reasoner's
`reasoning_content` deltas before the answer (they must pass through untouched).
"""

from __future__ import annotations

from typing import Any

from tests.contract._openai_shaped import OpenAIShapedAdapter
from emulators.compatibles import DEEPSEEK_KEY, deepseek_error

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


class DeepSeekAdapter(OpenAIShapedAdapter):
    provider = "deepseek"
    fixture = "fake_deepseek"
    model = "deepseek-reasoner"
    wrong_key = "sk-contract-wrong-deepseek-key-00"
    errors = ERRORS

    def script_error_in_200(self, fake: Any) -> tuple[int, str] | None:
        fake.state.fail_next.append((200, deepseek_error("Content Exists Risk")))
        return 400, "invalid_request_error"

    def script_stream_error(self, fake: Any) -> tuple[int, str] | None:
        fake.state.stream_error = deepseek_error("Internal Server Error", "internal_error")["error"]
        fake.state.fail_after_chunks = 2  # the role chunk, one thought, then the error
        return 502, "server_error"


ADAPTER = DeepSeekAdapter()
