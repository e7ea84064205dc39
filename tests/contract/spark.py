"""Contract adapter for `spark`, driving the fake Spark websocket API (emulators/spark.py).

The websocket transport is the one held to the contract (the HTTP API, used when a
credential has `api_password`, is covered by tests/test_fake_spark.py and the e2e tests).
Errors arrive two ways: an HTTP status refusing the websocket handshake (401/403 from
Spark itself; 400/429/5xx as a gateway in front of it answers) and, after the handshake,
frames with `header.code != 0`, which is Spark's "error in a 200 body".
"""

from __future__ import annotations

import json
from typing import Any

from tests.contract import Adapter

MESSAGES: dict[int, str] = {
    400: "Bad Request",
    401: "HMAC signature cannot be verified, a valid date or x-date header is required for HMAC Authentication",
    429: "Too Many Requests",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


class SparkAdapter(Adapter):
    provider = "spark"
    fixture = "fake_spark"
    model = "generalv3.5"   # Spark Max: function calling included
    chat_path = "/v3.5/chat"
    overloaded_status = 503
    lacks = frozenset({"length"})
    why = {"length": "Spark sends no finish reason and does not signal a reply cut by max_tokens (spark.md §A4)"}

    def credential_values(self, fake: Any, *, valid: bool) -> dict[str, str]:
        secret = fake.api_secret if valid else "contract-wrong-api-secret-000000"
        return {"app_id": fake.app_id, "api_key": fake.api_key, "api_secret": secret, "base_url": fake.ws_url}

    def script_text(self, fake: Any, text: str) -> None:
        fake.state.reply_text = text

    def script_tool_call(self, fake: Any, name: str, arguments: dict[str, Any]) -> None:
        fake.state.function_call = (name, json.dumps(arguments))

    def script_http_error(self, fake: Any, status: int, retry_after: int | None = None) -> None:
        headers = {"retry-after": str(retry_after)} if retry_after is not None else {}
        fake.state.handshake_fail.append((status, MESSAGES[status], headers))

    def script_error_in_200(self, fake: Any) -> tuple[int, str] | None:
        fake.state.error_code, fake.state.error_message = 10110, "service busy, please retry"
        return 503, "server_error"

    def script_stream_error(self, fake: Any) -> tuple[int, str] | None:
        fake.state.error_after, fake.state.error_code = 1, 10110  # one text frame, then an error frame
        return 503, "server_error"

    def script_slow_stream(self, fake: Any, delay: float) -> None:
        fake.state.reply_text = " ".join(f"word{i}" for i in range(60))
        fake.state.frame_delay = delay

    def aborted_streams(self, fake: Any) -> int:
        return int(fake.state.connections_aborted)

    def request_paths(self, fake: Any) -> list[str]:
        return [h["path"] for h in list(fake.state.handshakes)] + ["/v1/chat/completions"
                                                                    for _ in list(fake.state.http_requests)]


ADAPTER = SparkAdapter()
