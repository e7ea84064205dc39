"""Contract adapter for `minimax`, driving the fake MiniMax ChatCompletion v2 (emulators/minimax.py).

MiniMax reports errors with HTTP 200 and a `base_resp` status code (minimax.md §1, §4), a
wrong key included, so the HTTP-status capabilities are lacking and the error mapping is
held to the contract through `error_in_200_body`, `mid_stream_error` and the wrong-key test.
Its streams end with an event repeating the whole message, which must not be re-emitted.
"""

from __future__ import annotations

import json
from typing import Any

from tests.contract import Adapter

NO_STATUS = "MiniMax answers errors with HTTP 200 and base_resp.status_code (minimax.md §4), not HTTP statuses"


class MinimaxAdapter(Adapter):
    provider = "minimax"
    fixture = "fake_minimax"
    model = "abab6.5s-chat"
    chat_path = "/v1/text/chatcompletion_v2"
    lacks = frozenset({"http_errors", "overloaded", "retry_after"})
    why = {"http_errors": NO_STATUS, "overloaded": NO_STATUS + "; overload is base_resp 1000/1013",
           "retry_after": NO_STATUS + "; no Retry-After is sent"}

    def credential_values(self, fake: Any, *, valid: bool) -> dict[str, str]:
        key = fake.api_key if valid else "eyJhbGciOiJSUzI1NiJ9.contract-wrong-minimax-key"
        return {"api_key": key, "group_id": fake.group_id, "base_url": fake.base_url}

    def script_text(self, fake: Any, text: str) -> None:
        fake.state.reply_text = text

    def script_tool_call(self, fake: Any, name: str, arguments: dict[str, Any]) -> None:
        fake.state.tool_call = (name, json.dumps(arguments))

    def script_http_error(self, fake: Any, status: int, retry_after: int | None = None) -> None:
        raise AssertionError("MiniMax lacks http_errors: the suite skips these tests")

    def script_error_in_200(self, fake: Any) -> tuple[int, str] | None:
        fake.state.fail(1039, "token rate limit reached")
        return 429, "rate_limit_error"

    def script_stream_error(self, fake: Any) -> tuple[int, str] | None:
        fake.state.stream_error_after = 2  # two deltas, then a base_resp 1039 event
        return 429, "rate_limit_error"

    def script_slow_stream(self, fake: Any, delay: float) -> None:
        fake.state.reply_text = " ".join(f"word{i}" for i in range(60))
        fake.state.stream_delay = delay


ADAPTER = MinimaxAdapter()
