"""The part of a contract adapter every vendor served by the fake OpenAI shares: its
credential, its scripted replies, tool calls, slow streams and HTTP errors. A vendor's
adapter (openai, deepseek, moonshot, openai_compatible) keeps only its error bodies and
what it does differently. Not discovered (the name starts with `_`): it defines no ADAPTER."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, ClassVar

from tests.contract import Adapter


class OpenAIShapedAdapter(Adapter):
    chat_path = "/v1/chat/completions"
    overloaded_status = 503
    wrong_key: ClassVar[str]  # an obviously fake key the fake refuses
    # The body the fake answers per status, in the vendor's own shape.
    errors: ClassVar[Mapping[int, Any]]

    def credential_values(self, fake: Any, *, valid: bool) -> dict[str, str]:
        return {"api_key": fake.api_key if valid else self.wrong_key, "base_url": fake.v1_url}

    def script_text(self, fake: Any, text: str) -> None:
        fake.state.reply_text = text

    def script_tool_call(self, fake: Any, name: str, arguments: dict[str, Any]) -> None:
        fake.state.tool_call = (name, json.dumps(arguments))

    def error_answer(self, status: int) -> tuple[int, Any]:
        """The (status, body) the fake sends when the suite asks for `status`."""
        return status, self.errors[status]

    def script_http_error(self, fake: Any, status: int, retry_after: int | None = None) -> None:
        headers = {"retry-after": str(retry_after)} if retry_after is not None else {}
        fake.state.fail_next.append((*self.error_answer(status), headers))

    def script_slow_stream(self, fake: Any, delay: float) -> None:
        fake.state.reply_text = " ".join(f"word{i}" for i in range(60))
        fake.state.stream_delay = delay
