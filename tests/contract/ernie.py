"""Contract adapter for `ernie`, driving the fake ERNIE v1 API (emulators/ernie.py).

ERNIE reports API errors inside HTTP 200 bodies (`error_code`, in streams as a bare JSON
body), never as HTTP statuses (ernie.md §6), so the HTTP-status capabilities are lacking
and the error mapping is held to the contract through `error_in_200_body` and
`mid_stream_error`. The fake forgets its issued tokens at every reset, so the translator's
cached token is refused (error 110) at the start of each test and refreshed: the
refresh-once path runs throughout the suite.
"""

from __future__ import annotations

import json
from typing import Any

from tests.contract import Adapter

NO_STATUS = "ERNIE v1 answers API errors with HTTP 200 and an error_code body, not with HTTP statuses (ernie.md §6)"


class ErnieAdapter(Adapter):
    provider = "ernie"
    fixture = "fake_ernie"
    model = "ernie-4.0"
    chat_path = "/rpc/2.0/ai_custom/v1/wenxinworkshop/chat/completions_pro"
    lacks = frozenset({"http_errors", "overloaded", "retry_after"})
    why = {"http_errors": NO_STATUS, "overloaded": NO_STATUS + "; overload is error_code 336100 in a 200 body",
           "retry_after": NO_STATUS + "; no Retry-After is sent"}

    def credential_values(self, fake: Any, *, valid: bool) -> dict[str, str]:
        secret = fake.secret_key if valid else "contractWrongSecretKey000000001"
        return {"api_key": fake.api_key, "secret_key": secret, "base_url": fake.base_url}

    def script_text(self, fake: Any, text: str) -> None:
        fake.state.reply_text = text

    def script_tool_call(self, fake: Any, name: str, arguments: dict[str, Any]) -> None:
        fake.state.function_call = (name, json.dumps(arguments))

    def script_http_error(self, fake: Any, status: int, retry_after: int | None = None) -> None:
        raise AssertionError("ERNIE lacks http_errors: the suite skips these tests")

    def script_error_in_200(self, fake: Any) -> tuple[int, str] | None:
        fake.state.fail_next.append({"error_code": 336100, "error_msg": "server high load, please retry"})
        return 503, "server_error"

    def script_stream_error(self, fake: Any) -> tuple[int, str] | None:
        fake.state.stream_error_after = 1
        return 503, "server_error"

    def script_slow_stream(self, fake: Any, delay: float) -> None:
        fake.state.reply_text = " ".join(f"word{i}" for i in range(60))
        fake.state.stream_delay = delay

    def request_paths(self, fake: Any) -> list[str]:
        return [r["path"] for r in list(fake.state.requests)]


ADAPTER = ErnieAdapter()
