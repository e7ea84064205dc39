"""Contract adapter for `replicate`, driving the fake Replicate (emulators/replicate.py).

Non-streamed calls create a prediction with `Prefer: wait` and poll `urls.get` until the
fake finishes it (a few polls); streamed calls read `urls.stream`, written in awkward
pieces. Errors are `application/problem+json`.
"""

from __future__ import annotations

from typing import Any

from tests.contract import Adapter
from emulators._openai_wire import text_pieces
from emulators.replicate import UNAUTHENTICATED

MODEL = "meta/meta-llama-3-8b-instruct"
ERRORS: dict[int, Any] = {
    400: {"title": "Invalid request", "detail": "The request body could not be parsed", "status": 400},
    401: UNAUTHENTICATED,
    429: {"title": "Request was throttled", "detail": "Request was throttled. Expected available in 7 seconds.",
          "status": 429},
    500: {"title": "Internal server error", "detail": "Something went wrong", "status": 500},
    503: {"title": "Service unavailable", "detail": "Replicate is temporarily unavailable", "status": 503},
}


class ReplicateAdapter(Adapter):
    provider = "replicate"
    fixture = "fake_replicate"
    model = MODEL
    chat_path = f"/v1/models/{MODEL}/predictions"
    overloaded_status = 503
    lacks = frozenset({"tools", "length"})
    why = {"tools": "Replicate's LLM predictions take a text prompt; there is no function calling",
           "length": "Replicate does not say why a model stopped (no finish reason in outputs or streams)"}

    def credential_values(self, fake: Any, *, valid: bool) -> dict[str, str]:
        token = fake.token if valid else "r8_contract_WRONG_token_00000000"
        return {"api_token": token, "base_url": fake.v1_url}

    def reset(self, fake: Any) -> None:
        fake.reset()
        fake.state.polls_to_finish = 2

    def script_text(self, fake: Any, text: str) -> None:
        fake.state.reply_tokens = text_pieces(text)[0]
        fake.state.split_events = True

    def script_tool_call(self, fake: Any, name: str, arguments: dict[str, Any]) -> None:
        raise NotImplementedError("Replicate has no tool calls")

    def script_http_error(self, fake: Any, status: int, retry_after: int | None = None) -> None:
        headers = {"retry-after": str(retry_after)} if retry_after is not None else {}
        fake.state.next_answers.append((status, ERRORS[status], headers))

    def script_error_in_200(self, fake: Any) -> tuple[int, str] | None:
        fake.state.fail_at_create = "CUDA error: an illegal memory access was encountered"
        return 502, "server_error"

    def script_stream_error(self, fake: Any) -> tuple[int, str] | None:
        fake.state.stream_error = "Prediction failed: CUDA out of memory"
        return 502, "server_error"

    def script_slow_stream(self, fake: Any, delay: float) -> None:
        fake.state.reply_tokens = [f" word{i}" for i in range(60)]
        fake.state.stream_delay = delay


ADAPTER = ReplicateAdapter()
