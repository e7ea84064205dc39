"""The Responses API where a vendor serves it itself (`CompatibleSpec.native`: OpenAI): the
client's body goes to the vendor's `/responses` as it came, the routed model in it, and the
answer, or the stream event by event, comes back as the vendor sent it. Pure functions
the compatible translator's `NativeApi` uses:

- `native_body`: the body sent. A request continuing a response the gateway kept
  (`previous_response_id`) carries that conversation as input items instead of the id,
  since the vendor may never have seen it (it may have come from another provider);
- `usage_of`: a whole answer's usage; `observer`: `relay_sse`'s reader of each event (the
  usage at the last event, `response.completed` / `.incomplete` / `.failed`; an `error`
  event raises, so the client gets the gateway's scrubbed error);
- `answer_in_event`: the whole response in the stream's last event (what is kept).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson

from translators._compatible import NativeRoute
from translators._sse import SSEEvent
from translators._stream import StreamState, event_json
from translators.errors import failed_mid_stream
from translators.types import JSONObject, StreamChunk, Usage

__all__ = ["LAST_EVENTS", "RESPONSES_ROUTE", "answer_in_event", "native_body", "observer", "usage_of"]

LAST_EVENTS = frozenset({"response.completed", "response.incomplete", "response.failed"})
_GATEWAY_FIELDS = ("id", "status")  # the gateway's item ids mean nothing to the vendor


def native_body(raw: JSONObject, history: list[JSONObject]) -> JSONObject:
    if not history:
        return raw
    own = raw.get("input")
    items = [{"type": "message", "role": "user", "content": own}] if isinstance(own, str) else list(own or [])
    carried = [{k: v for k, v in item.items() if k not in _GATEWAY_FIELDS} for item in history]
    return {k: v for k, v in raw.items() if k != "previous_response_id"} | {"input": carried + items}


def usage_of(answer: Any) -> Usage | None:
    usage = answer.get("usage") if isinstance(answer, dict) else None
    if not isinstance(usage, dict):
        return None
    prompt, completion = usage.get("input_tokens"), usage.get("output_tokens")
    if not isinstance(prompt, int) or not isinstance(completion, int):
        return None
    return Usage(prompt, completion, prompt + completion)


def observer(provider: str) -> Callable[[SSEEvent, StreamState], Usage | None]:
    def observe(event: SSEEvent, state: StreamState) -> Usage | None:
        if event.event == "error":
            data = event_json(event, provider)
            message = data.get("message") if isinstance(data, dict) else None
            code = data.get("code") if isinstance(data, dict) else None
            raise failed_mid_stream(provider, str(message or "an error event"), code if isinstance(code, str) else None)
        if event.event not in LAST_EVENTS:
            return None
        state.finished = True
        data = event_json(event, provider)
        return usage_of(data.get("response") if isinstance(data, dict) else None)
    return observe


def answer_in_event(chunk: StreamChunk) -> JSONObject | None:
    if chunk.event not in LAST_EVENTS:
        return None
    data = orjson.loads(chunk.data)
    response = data.get("response") if isinstance(data, dict) else None
    return response if isinstance(response, dict) else None


RESPONSES_ROUTE = NativeRoute("responses", usage_of, observer)
