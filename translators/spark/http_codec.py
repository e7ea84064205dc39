"""Spark's HTTP API (APIPassword) as pure functions: its requests, answers and stream events.

The API is OpenAI-compatible, so the wiring serves it as a `CompatibleSpec` row with this
codec (`HTTP_CODEC`); no I/O here. Reference: ../shared/vendors/spark.md §B.

- Requests: the websocket's mapping (`codec.messages_for`, `codec.sampling`), with OpenAI's
  tool turns as sent and the model's domain as `model`.
- Answers are OpenAI-like without `id/object/created/model/finish_reason`: those are added.
- `code != 0` in a 200 (a body, an event, a JSON body where a stream belongs) is an error,
  mapped by the websocket's `ERROR_CODES`.
- The stream repeats `role` in every delta (OpenAI sends it once, first), puts usage on its
  last content chunk and sends no finish reason: the finish chunk and the usage chunk go
  out when the stream ends (the DONE sentinel, or EOF).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from translators._shapes import now
from translators._sse import DONE_DATA, SSEEvent
from translators._stream import Codec, StreamState, event_json
from translators.spark.codec import (
    PROVIDER,
    UID_LENGTH,
    as_int,
    chat_id,
    error_from_response,
    error_in_body,
    messages_for,
    refuse_unsupported,
    resolve_model,
    sampling,
)
from translators.types import ChatRequest, JSONObject, StreamChunk, Usage

__all__ = ["HTTP_CODEC", "SparkHTTPState", "from_http_event", "from_http_response", "http_stream_end",
           "to_http_request"]


def to_http_request(req: ChatRequest, model: str) -> JSONObject:
    """The HTTP API's body: OpenAI-like, with the domain as `model`."""
    spark_model = resolve_model(model)
    refuse_unsupported(req, spark_model)
    body: JSONObject = {"model": spark_model.domain, "messages": messages_for(req, spark_model, http=True),
                        **sampling(req)}
    if req.user:
        body["user"] = req.user[:UID_LENGTH]
    if req.tools and req.tool_choice != "none":
        body["tools"] = [t.model_dump(exclude_none=True) for t in req.tools]
    if req.stream:
        body["stream"] = True
    return body


def from_http_response(body: Any, model: str) -> JSONObject:
    """An HTTP-API answer (no id/object/created/model/finish_reason) as a chat completion."""
    if not isinstance(body, dict) or as_int(body.get("code")) != 0 or not isinstance(body.get("choices"), list):
        raise error_from_response(200, body, None)
    choices = []
    for i, choice in enumerate(body["choices"]):
        choice = choice if isinstance(choice, dict) else {}
        message = dict(choice.get("message") or {})
        message.setdefault("role", "assistant")
        message.setdefault("content", None)
        message.setdefault("refusal", None)
        finish = choice.get("finish_reason") or ("tool_calls" if message.get("tool_calls") else "stop")
        choices.append({"index": choice.get("index", i), "message": message, "logprobs": None,
                        "finish_reason": finish})
    usage = Usage.from_openai(body.get("usage")) or Usage(0, 0, 0)
    return {"id": chat_id(body.get("id") or body.get("sid")), "object": "chat.completion",
            "created": as_int(body.get("created")) or now(), "model": model,
            "choices": choices, "usage": usage.as_dict()}


@dataclass(slots=True)
class SparkHTTPState(StreamState):
    """One HTTP-API stream. Usage (on the last content chunk) and the finish reason (Spark
    sends none) are held for the end."""

    named: bool = False  # id and created are the first event's
    tool_call: bool = False
    usage: Usage | None = None
    finish: str | None = None


def from_http_event(event: SSEEvent, state: SparkHTTPState) -> list[StreamChunk]:
    """One HTTP-API stream event -> OpenAI chunks (the end comes from `http_stream_end`)."""
    if event.data == DONE_DATA:
        return http_stream_end(state)
    if not event.data:
        return []
    body = event_json(event, PROVIDER)
    if not isinstance(body, dict) or as_int(body.get("code")) != 0 or isinstance(body.get("error"), dict):
        raise error_from_response(200, body, None)
    if not state.named:
        state.id, state.named = chat_id(body.get("id") or body.get("sid")), True
        state.created = as_int(body.get("created")) or state.created
    state.usage = Usage.from_openai(body.get("usage")) or state.usage
    chunks = []
    for choice in body.get("choices") or ():
        if not isinstance(choice, dict):
            continue
        delta = dict(choice.get("delta") or {})
        delta.pop("role", None)
        if delta.get("tool_calls"):
            state.tool_call = True
        if not state.started:
            delta = {"role": "assistant", **delta}
            delta.setdefault("content", "")
            state.started = True
        elif not delta.get("content") and not delta.get("tool_calls"):
            delta = {}
        if delta:
            chunks.append(state.chunk(delta))
        if choice.get("finish_reason"):
            state.finish = str(choice["finish_reason"])
    return chunks


def http_stream_end(state: SparkHTTPState) -> list[StreamChunk]:
    """The end of the stream (the DONE sentinel, or EOF: Spark's streams may simply end)."""
    state.finished = True
    chunks = [] if state.started else [state.chunk({"role": "assistant", "content": ""})]
    finish = state.finish or ("tool_calls" if state.tool_call else "stop")
    return [*chunks, state.chunk({}, finish), state.usage_chunk(state.usage or Usage(0, 0, 0))]


HTTP_CODEC = Codec(PROVIDER, error_from_response, error_in_body, SparkHTTPState, from_http_event, http_stream_end)
