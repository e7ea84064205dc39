"""Contract adapter for `huggingface`, driving the fake Hugging Face (emulators/huggingface.py).

The model is a serverless one served by a current TGI's Messages API (tools, include_usage,
`data:` without a space, the `[DONE]` marker); streams are written in awkward pieces.
Errors are TGI's `{"error", "error_type"}` bodies with their statuses.
"""

from __future__ import annotations

from typing import Any

from tests.contract import Adapter

MODEL = "meta-llama/Meta-Llama-3-8B-Instruct"
ERRORS: dict[int, Any] = {
    400: {"error": "Template error: conversation roles must alternate user/assistant", "error_type": "template_error"},
    401: {"error": "Invalid credentials in Authorization header"},
    429: {"error": "Model is overloaded", "error_type": "overloaded"},
    500: {"error": "Request failed during generation: Server error: unexpected EOF", "error_type":
          "incomplete_generation"},
    503: {"error": "Service Unavailable"},
}


class HuggingFaceAdapter(Adapter):
    provider = "huggingface"
    fixture = "fake_hf"
    model = MODEL
    chat_path = f"/models/{MODEL}/v1/chat/completions"
    overloaded_status = 503

    def credential_values(self, fake: Any, *, valid: bool) -> dict[str, str]:
        token = fake.token if valid else "hf_contract_WRONG_token_00000000"
        return {"api_token": token, "base_url": fake.base_url}

    def script_text(self, fake: Any, text: str) -> None:
        fake.state.reply_text = text
        fake.state.split_events = True

    def script_tool_call(self, fake: Any, name: str, arguments: dict[str, Any]) -> None:
        fake.state.tool_call = (name, arguments)

    def script_http_error(self, fake: Any, status: int, retry_after: int | None = None) -> None:
        headers = {"retry-after": str(retry_after)} if retry_after is not None else {}
        fake.state.next_answers.append((status, ERRORS[status], headers))

    def script_error_in_200(self, fake: Any) -> tuple[int, str] | None:
        fake.state.next_answers.append((200, {"error": "Input validation error: `inputs` must not be empty",
                                              "error_type": "validation"}, {}))
        return 400, "invalid_request_error"

    def script_stream_error(self, fake: Any) -> tuple[int, str] | None:
        fake.state.stream_error_after = 2  # after the first two content events
        return 502, "server_error"

    def script_slow_stream(self, fake: Any, delay: float) -> None:
        fake.state.reply_text = " ".join(f"word{i}" for i in range(60))
        fake.state.stream_delay = delay


ADAPTER = HuggingFaceAdapter()
