"""Replicate <-> OpenAI: prediction inputs, predictions, stream events and errors. Pure
functions without I/O; `translators/replicate/__init__.py` documents the mapping for users
and runs the predictions. Reference: ../shared/vendors/replicate.md.
"""

from __future__ import annotations

import base64
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from translators._estimate import TokenTally, estimated_usage
from translators._hosted import (
    Segment,
    audio_content_type,
    dialogue_prompt,
    refuse_chat_features,
    render_transcription,
    split_system,
    stop_list,
)
from translators._http import Headers
from translators._json import loads as bounded_json
from translators._shapes import now
from translators._sse import SSEEvent
from translators._stream import Codec, StreamState
from translators.errors import (
    ApiError,
    UpstreamError,
    bad_request,
    bad_response,
    body_text,
    incomplete_stream,
    parse_retry_after,
    upstream_status_error,
)
from translators.types import (
    ChatRequest,
    JSONObject,
    StreamChunk,
    TranscriptionRequest,
    TranscriptionResult,
    Usage,
)

PROVIDER = "replicate"
DATA_URI_SCHEME = "data"
TERMINAL = frozenset({"succeeded", "failed", "canceled"})


def new_id(prediction: Mapping[str, Any] | None = None) -> str:
    pid = prediction.get("id") if prediction else None
    return f"chatcmpl-{pid}" if isinstance(pid, str) and pid else f"chatcmpl-r8{secrets.token_hex(12)}"


def _obj(value: Any) -> JSONObject:
    return value if isinstance(value, dict) else {}


# -- requests ------------------------------------------------------------------------------------------


def to_vendor_request(req: ChatRequest, model: str) -> JSONObject:
    """A chat request as an LLM prediction's `input` (the template of the module docstring of
    `translators/replicate/__init__.py`)."""
    refuse_chat_features(req, PROVIDER)
    system, turns = split_system(req.messages, PROVIDER)
    single = len(turns) == 1 and turns[0][0] == "user"
    inputs: JSONObject = {"prompt": turns[0][1] if single else dialogue_prompt(turns)}
    if system:
        inputs["system_prompt"] = system
    if req.token_limit is not None:
        inputs["max_tokens"] = req.token_limit
    if req.temperature is not None:
        inputs["temperature"] = req.temperature
    if req.top_p is not None:
        inputs["top_p"] = req.top_p
    stops = stop_list(req.stop)
    if any("," in s for s in stops):
        raise bad_request(f"provider '{PROVIDER}' takes stop sequences as one comma-separated string, so a stop "
                          "sequence cannot contain a comma", "stop")
    if stops:
        inputs["stop_sequences"] = ",".join(stops)
    seed = req.raw.get("seed")
    if isinstance(seed, int) and not isinstance(seed, bool):
        inputs["seed"] = seed
    return inputs


def transcription_input(req: TranscriptionRequest) -> JSONObject:
    """A whisper-style prediction input: the audio as a data URI (nothing is uploaded elsewhere)."""
    audio = base64.b64encode(req.file).decode()
    inputs: JSONObject = {"audio": f"{DATA_URI_SCHEME}:{audio_content_type(req)};base64,{audio}"}
    if req.language:
        inputs["language"] = req.language
    if req.temperature is not None:
        inputs["temperature"] = req.temperature
    if req.prompt:
        inputs["initial_prompt"] = req.prompt
    return inputs


def prediction_body(inputs: JSONObject, version: str | None, stream: bool) -> JSONObject:
    body: JSONObject = {"version": version, "input": inputs} if version else {"input": inputs}
    if stream:
        body["stream"] = True
    return body


def prompt_text(inputs: Mapping[str, Any]) -> str:
    return "\n\n".join(str(inputs[k]) for k in ("system_prompt", "prompt") if inputs.get(k))


# -- predictions ---------------------------------------------------------------------------------------


def output_text(output: Any) -> str:
    """An LLM's output: a token list joined with "" (not " "), or a plain string as is."""
    if output is None:
        return ""
    if isinstance(output, str):
        return output
    if isinstance(output, list):
        return "".join(item if isinstance(item, str) else orjson.dumps(item).decode() for item in output
                       if item is not None)
    return orjson.dumps(output).decode()


def _count(metrics: Any, *keys: str) -> int | None:
    for key in keys:
        value = _obj(metrics).get(key)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    return None


def usage_of(prediction: Mapping[str, Any], prompt: str, text: str) -> Usage:
    """Token counts from `metrics` when the model reports them, else estimated."""
    metrics = prediction.get("metrics")
    given_in, given_out = _count(metrics, "input_token_count"), _count(metrics, "output_token_count")
    return estimated_usage(prompt if given_in is None else given_in, text if given_out is None else given_out)


def is_prediction(body: Any) -> bool:
    return isinstance(body, dict) and isinstance(body.get("status"), str)


def prediction_error(prediction: Mapping[str, Any]) -> ApiError:
    """A prediction that ended `failed` or `canceled` (or never ended) as an error."""
    status = prediction.get("status")
    if status == "failed":
        detail = prediction.get("error") or "no reason given"
        return UpstreamError(502, f"the {PROVIDER} prediction failed: {str(detail)[:1000]}", "server_error",
                             "prediction_failed")
    if status == "canceled":
        return UpstreamError(502, f"the {PROVIDER} prediction was canceled", "server_error", "prediction_canceled")
    return bad_response(PROVIDER, f"a prediction with status {status!r}")


def succeeded(prediction: Any) -> Mapping[str, Any]:
    if not isinstance(prediction, dict) or not isinstance(prediction.get("status"), str):
        raise bad_response(PROVIDER, "something that is not a prediction")
    if prediction["status"] != "succeeded":
        raise prediction_error(prediction)
    return prediction


def from_vendor_response(body: Any, model: str) -> JSONObject:
    """A succeeded LLM prediction as an OpenAI chat completion. Replicate gives no finish
    reason: `stop`, or `length` when the model counted as many output tokens as the
    prediction's input allowed (`max_tokens`, echoed back in the prediction)."""
    prediction = succeeded(body)
    inputs = _obj(prediction.get("input"))
    text = output_text(prediction.get("output"))
    usage = usage_of(prediction, prompt_text(inputs), text)
    given_out = _count(prediction.get("metrics"), "output_token_count")
    limit = inputs.get("max_tokens")
    at_limit = isinstance(limit, int) and limit > 0 and given_out is not None and given_out >= limit
    return {"id": new_id(prediction), "object": "chat.completion", "created": now(),
            "model": model, "choices": [{"index": 0, "logprobs": None, "finish_reason": "length" if at_limit
                                         else "stop",
                                         "message": {"role": "assistant", "content": text, "refusal": None}}],
            "usage": usage.as_dict()}


def transcription_output(prediction: Any, response_format: str) -> TranscriptionResult:
    """A whisper-style output (`transcription` or `text`, `segments` or `chunks`) in OpenAI's format."""
    output = succeeded(prediction).get("output")
    if isinstance(output, str):
        return render_transcription(output, None, response_format, PROVIDER)
    if not isinstance(output, dict):
        raise bad_response(PROVIDER, "no transcription")
    text = output.get("transcription") if isinstance(output.get("transcription"), str) else output.get("text")
    segments = []
    for item in output.get("segments") or output.get("chunks") or ():
        if not isinstance(item, dict):
            continue
        start, end = item.get("start"), item.get("end")
        if isinstance(item.get("timestamp"), list) and len(item["timestamp"]) == 2:
            start, end = item["timestamp"]
        if isinstance(start, int | float) and isinstance(end, int | float):
            segments.append(Segment(float(start), float(end), str(item.get("text") or "")))
    if not isinstance(text, str):
        text = "".join(s.text for s in segments).strip()
    language = output.get("detected_language") if isinstance(output.get("detected_language"), str) else None
    return render_transcription(text, segments or None, response_format, PROVIDER, language)


# -- streams ---------------------------------------------------------------------------------------------


@dataclass(slots=True)
class ReplicateState(StreamState):
    """What translating one Replicate `urls.stream` must remember (`finished`: `done` arrived)."""

    prompt: str = ""
    # The prediction ended on its own (`done` or `error`): nothing is left to cancel.
    ended: bool = False
    completion: TokenTally = field(default_factory=TokenTally)

    def last_chunks(self) -> list[StreamChunk]:
        """The finish chunk and the usage chunk (estimated: Replicate's streams carry no counts)."""
        self.finished = self.ended = True
        usage = estimated_usage(self.prompt, self.completion.tokens)
        return [self.chunk({}, "stop"), self.usage_chunk(usage)]


def _detail(data: bytes) -> str:
    try:
        body = bounded_json(data) if data else None
    except orjson.JSONDecodeError:
        return body_text(data, plain_text=True)  # Replicate's error events are plain text
    detail = body.get("detail") or body.get("error") or body.get("reason") if isinstance(body, dict) else None
    return str(detail) if isinstance(detail, str | int | float) and detail else "no detail given"


def from_vendor_event(event: SSEEvent, state: ReplicateState) -> list[StreamChunk]:
    """One stream event -> chunks. `output` data is the token text itself (several `data:`
    lines joined by a newline, whitespace kept); `logs` are skipped; `error` raises; `done`
    finishes (`{}` = success, a `reason` of `canceled`/`error` raises)."""
    if state.finished:
        return []
    chunks = []
    if not state.started:
        state.started = True
        chunks.append(state.chunk({"role": "assistant", "content": ""}))
    if event.event == "output":
        text = event.data.decode("utf-8", "replace")
        if text:
            state.completion.add(text)
            chunks.append(state.chunk({"content": text}))
    elif event.event == "error":
        state.ended = True
        raise UpstreamError(502, f"the {PROVIDER} prediction failed: {_detail(event.data)}", "server_error",
                            "prediction_failed")
    elif event.event == "done":
        state.ended = True
        try:
            reason = str(_obj(bounded_json(event.data) if event.data else {}).get("reason") or "")
        except orjson.JSONDecodeError:
            reason = ""
        if reason in ("canceled", "error"):
            raise prediction_error({"status": "canceled" if reason == "canceled" else "failed",
                                    "error": "the stream ended with an error"})
        chunks += state.last_chunks()
    return chunks


def end_of_stream(state: ReplicateState) -> list[StreamChunk]:
    """EOF: nothing more after `done` (the usage went with it); before it, a cut stream."""
    if not state.finished:
        raise incomplete_stream(PROVIDER, "its done event")
    return []


def whole_output(prediction: Mapping[str, Any], state: ReplicateState) -> list[StreamChunk]:
    """A succeeded prediction of a model that cannot stream, as one stream's chunks."""
    text = output_text(prediction.get("output"))
    state.started = True
    state.completion.add(text)
    return [state.chunk({"role": "assistant", "content": ""}), state.chunk({"content": text}), *state.last_chunks()]


# -- errors ------------------------------------------------------------------------------------------------


def error_from_response(status: int, body: Any, headers: Headers | None) -> ApiError:
    """`application/problem+json` (`{title, detail, status}`), older `{"detail": ...}` or text.
    401/403 -> 403 upstream_credential_rejected; 402 (billing) and 429 -> 429; 422 -> 400
    `invalid_input`; 404 -> 404 model_not_found."""
    message = f"HTTP {status} from {PROVIDER}"
    if isinstance(body, dict):
        title = body.get("title") if isinstance(body.get("title"), str) else None
        error = body.get("error")
        detail = body.get("detail") or (error.get("message") if isinstance(error, dict) else error) or title
        if detail:
            message = str(detail)
    elif isinstance(body, str) and body.strip():
        message = body.strip()[:500]
    retry_after = parse_retry_after(headers)
    if retry_after is None and isinstance(body, dict) and isinstance(body.get("retry_after"), int | float):
        retry_after = float(body["retry_after"])
    if status == 402:
        return UpstreamError(429, f"{PROVIDER} refused the request for billing reasons: {message}",
                             "rate_limit_error", "insufficient_quota", None, retry_after)
    if status == 404:
        return UpstreamError(404, f"{PROVIDER}: {message}", "invalid_request_error", "model_not_found", "model")
    code = "invalid_input" if status in (400, 422) else None
    return upstream_status_error(PROVIDER, status, message, code, None, retry_after)


def error_in_body(body: Any, headers: Headers | None) -> ApiError | None:
    """A problem document where a prediction (or a stream) belongs."""
    if isinstance(body, dict) and not is_prediction(body) and (body.get("detail") or body.get("title")):
        status = body.get("status")
        return error_from_response(status if isinstance(status, int) and status >= 400 else 502, body, headers)
    return None


CODEC: Codec[ReplicateState] = Codec(PROVIDER, error_from_response, error_in_body, ReplicateState,
                                     from_vendor_event, end_of_stream)
