"""Contract adapter for `anthropic`, driving the fake Messages API (emulators/anthropic.py).

The fake cuts every stream event in awkward pieces (inside lines and UTF-8 characters),
and tool calls come after a text preamble, so Anthropic's content-block index (1) must
be renumbered to the tool-call index 0.
"""

from __future__ import annotations

from typing import Any

from tests.contract import Adapter
from emulators.anthropic import error_body

MESSAGES: dict[int, str] = {
    400: "messages: roles must alternate between \"user\" and \"assistant\"",
    401: "invalid x-api-key",
    429: "Number of request tokens has exceeded your per-minute rate limit",
    500: "Internal server error",
    529: "Overloaded",
}


class AnthropicAdapter(Adapter):
    provider = "anthropic"
    fixture = "fake_anthropic"
    model = "claude-sonnet-4-5"
    chat_path = "/v1/messages"
    overloaded_status = 529

    def credential_values(self, fake: Any, *, valid: bool) -> dict[str, str]:
        key = fake.api_key if valid else "sk-ant-contract-wrong-key-0000000"
        return {"api_key": key, "base_url": fake.base_url}

    def script_text(self, fake: Any, text: str) -> None:
        fake.state.reply_text = text

    def script_tool_call(self, fake: Any, name: str, arguments: dict[str, Any]) -> None:
        fake.state.tool_uses = [(name, arguments)]
        fake.state.tool_preamble = "Let me check that."

    def script_http_error(self, fake: Any, status: int, retry_after: int | None = None) -> None:
        headers = {"retry-after": str(retry_after)} if retry_after is not None else None
        fake.state.fail(status, MESSAGES[status], headers)

    def script_error_in_200(self, fake: Any) -> tuple[int, str] | None:
        fake.state.fail_next.append((200, error_body("overloaded_error", "Overloaded")))
        return 503, "server_error"

    def script_stream_error(self, fake: Any) -> tuple[int, str] | None:
        fake.state.stream_error_after = 1  # message_start (the role chunk), then `event: error` overloaded
        return 503, "server_error"

    def script_slow_stream(self, fake: Any, delay: float) -> None:
        fake.state.reply_text = " ".join(f"word{i}" for i in range(60))
        fake.state.stream_delay = delay


ADAPTER = AnthropicAdapter()
