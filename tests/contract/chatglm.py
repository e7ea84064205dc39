"""Contract adapter for `chatglm`, driving the fake ChatGLM2-6B openai_api.py server
(emulators/chatglm.py; `api=openai`, the credential's default).

openai_api.py has no function calling, ignores max_length (so a reply is never cut by the
token limit) and never answers 200 with an error object; its streams are CRLF-framed without
`id`/`created`, and once streaming it reports a failure only by closing the connection.
It has no auth of its own: the credential's `api_key` is for a reverse proxy in front, which
is also where 401, 429 and 503 come from (the fake plays that proxy).
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.contract import Adapter

PROXY_KEY = "chatglm-contract-proxy-key-0001"
ERRORS: dict[int, Any] = {
    400: {"detail": "Invalid request"},
    401: {"detail": "Not authenticated"},
    429: {"detail": "Too Many Requests"},
    500: "Internal Server Error",
    503: "Service Unavailable",
}


class ChatGLMAdapter(Adapter):
    provider = "chatglm"
    fixture = "fake_chatglm_openai"
    model = "chatglm2-6b"
    chat_path = "/v1/chat/completions"
    lacks = frozenset({"tools", "length", "error_in_200_body"})
    why = {"tools": "ChatGLM2-6B's openai_api.py has no function calling (chatglm.md §B)",
           "length": "openai_api.py ignores max_length/max_tokens and always finishes with 'stop' (chatglm.md §B)",
           "error_in_200_body": "openai_api.py fails with HTTP 400/422/500 or by closing a stream, never in a 200"}

    def start(self, request: pytest.FixtureRequest) -> Any:
        fake = super().start(request)
        fake.state.required_api_key = PROXY_KEY
        return fake

    def credential_values(self, fake: Any, *, valid: bool) -> dict[str, str]:
        return {"base_url": fake.base_url, "api_key": PROXY_KEY if valid else "chatglm-contract-wrong-key-01"}

    def script_text(self, fake: Any, text: str) -> None:
        fake.state.reply_text = text

    def script_tool_call(self, fake: Any, name: str, arguments: dict[str, Any]) -> None:
        raise AssertionError("ChatGLM lacks tools: the suite skips these tests")

    def script_http_error(self, fake: Any, status: int, retry_after: int | None = None) -> None:
        headers = {"retry-after": str(retry_after)} if retry_after is not None else None
        fake.state.fail(status, ERRORS[status], headers)

    def script_error_in_200(self, fake: Any) -> tuple[int, str] | None:
        raise AssertionError("ChatGLM lacks error_in_200_body: the suite skips these tests")

    def script_stream_error(self, fake: Any) -> tuple[int, str] | None:
        fake.state.stream_error_after = 2  # the role chunk and one piece, then the connection closes
        return 502, "server_error"

    def script_slow_stream(self, fake: Any, delay: float) -> None:
        fake.state.reply_text = " ".join(f"word{i}" for i in range(60))
        fake.state.stream_delay = delay


ADAPTER = ChatGLMAdapter()
