"""Contract adapter for `zhipu`, driving the fake Zhipu v4 API (emulators/zhipu.py).

Every request carries a JWT the fake verifies (HS256, millisecond timestamps); Zhipu's last
stream chunk holds the finish reason and the usage together, and its deltas all repeat the
role, so the one-role-chunk and usage-last rules are exercised here.
"""

from __future__ import annotations

import json
from typing import Any

from tests.contract import Adapter

CODES: dict[int, tuple[str, str]] = {
    400: ("1214", "messages 参数非法。请检查文档。"),
    401: ("1002", "Authentication Token非法，请确认Authentication Token正确传递。"),
    429: ("1302", "您当前使用该API的并发数过高，请降低并发，或联系客服增加限额。"),
    500: ("500", "内部错误。"),
    503: ("1234", "网络错误，请联系客服。"),
}


class ZhipuAdapter(Adapter):
    provider = "zhipu"
    fixture = "fake_zhipu"
    model = "glm-4"
    chat_path = "/api/paas/v4/chat/completions"

    def credential_values(self, fake: Any, *, valid: bool) -> dict[str, str]:
        key = fake.api_key if valid else "fakekeyid0001.contractWrongSecret000000"
        return {"api_key": key, "base_url": fake.base_url}

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
        fake.state.stream_error_after = 2  # two chunks, then `data: {"error": {"code": "1302"}}`
        return 429, "rate_limit_error"

    def script_slow_stream(self, fake: Any, delay: float) -> None:
        fake.state.reply_text = " ".join(f"word{i}" for i in range(60))
        fake.state.stream_delay = delay


ADAPTER = ZhipuAdapter()
