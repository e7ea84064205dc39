"""Contract adapter for `moonshot`, driving the fake OpenAI as Moonshot (emulators/compatibles.py).

Streams carry their usage in the finishing choice, as Moonshot's do; the translator must
still end them with the one usage-only chunk.
"""

from __future__ import annotations

from typing import Any

from tests.contract._openai_shaped import OpenAIShapedAdapter
from emulators.compatibles import moonshot_error

ERRORS: dict[int, dict[str, Any]] = {
    400: moonshot_error("Invalid request: temperature must be in [0, 1]", "invalid_request_error"),
    401: moonshot_error("Invalid Authentication", "invalid_authentication_error"),
    429: moonshot_error("Your account org-contract request reached max request: 3, please try again after 1 seconds",
                        "rate_limit_reached_error"),
    500: moonshot_error("Failed to handle the request, please try again later", "server_error"),
}
# Moonshot says "overloaded" with a 429 of type engine_overloaded_error; the suite asks for it by 503.
OVERLOADED = (429, moonshot_error("The engine is currently overloaded, please try again later",
                                  "engine_overloaded_error"))


class MoonshotAdapter(OpenAIShapedAdapter):
    provider = "moonshot"
    fixture = "fake_moonshot"
    model = "kimi-k2-0905-preview"
    wrong_key = "sk-contract-wrong-moonshot-key-0000"
    errors = ERRORS

    def error_answer(self, status: int) -> tuple[int, Any]:
        return OVERLOADED if status == self.overloaded_status else (status, ERRORS[status])

    def script_error_in_200(self, fake: Any) -> tuple[int, str] | None:
        # Not a documented Moonshot answer, but compatibles do it: it must not pass as a completion.
        fake.state.fail_next.append((200, moonshot_error("Invalid request: messages is empty", "invalid_request_error")))
        return 400, "invalid_request_error"

    def script_stream_error(self, fake: Any) -> tuple[int, str] | None:
        fake.state.stream_error = moonshot_error("Failed to handle the request", "server_error")["error"]
        fake.state.fail_after_chunks = 1
        return 502, "server_error"


ADAPTER = MoonshotAdapter()
