"""Contract adapter for `qwen`, driving the fake DashScope native API (emulators/qwen.py).

The fake frames streams as DashScope does (`id:`/`event:result`/`:HTTP_STATUS/200`/`data:`,
no spaces, no end sentinel, cut in awkward pieces), with `finish_reason: "null"` until the
last event and running usage totals on every event, so summing them would show.
"""

from __future__ import annotations

import json
from typing import Any

from tests.contract import Adapter

CODES: dict[int, tuple[str, str]] = {
    400: ("InvalidParameter", "Range of top_p should be (0.0, 1.0)"),
    401: ("InvalidApiKey", "Invalid API-key provided."),
    429: ("Throttling.RateQuota", "Requests rate limit exceeded, please try again later."),
    500: ("InternalError", "An internal error has occured, please try again."),
    503: ("ServiceUnavailable", "The service is temporarily unavailable."),
}


class QwenAdapter(Adapter):
    provider = "qwen"
    fixture = "fake_qwen"
    model = "qwen-plus"
    chat_path = "/api/v1/services/aigc/text-generation/generation"

    def credential_values(self, fake: Any, *, valid: bool) -> dict[str, str]:
        return {"api_key": fake.api_key if valid else "sk-contract-wrong-qwen-key-0001", "base_url": fake.base_url}

    def script_text(self, fake: Any, text: str) -> None:
        fake.state.reply_text = text

    def script_tool_call(self, fake: Any, name: str, arguments: dict[str, Any]) -> None:
        fake.state.tool_call = (name, json.dumps(arguments))

    def script_http_error(self, fake: Any, status: int, retry_after: int | None = None) -> None:
        headers = {"retry-after": str(retry_after)} if retry_after is not None else None
        fake.state.fail(status, *CODES[status], headers)

    def script_error_in_200(self, fake: Any) -> tuple[int, str] | None:
        fake.state.fail(200, *CODES[429])
        return 429, "rate_limit_error"

    def script_stream_error(self, fake: Any) -> tuple[int, str] | None:
        fake.state.stream_error_after = 2  # the role event and one piece, then `event:error` (InternalError)
        return 502, "server_error"

    def script_slow_stream(self, fake: Any, delay: float) -> None:
        fake.state.reply_text = " ".join(f"word{i}" for i in range(60))
        fake.state.stream_delay = delay


ADAPTER = QwenAdapter()
