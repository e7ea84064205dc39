"""Replicate <-> OpenAI: prediction inputs, predictions, stream events and errors. Pure
functions without I/O; `translators/replicate.py` documents the mapping for users and
re-exports them. Reference: ../shared/vendors/replicate.md.
"""

from __future__ import annotations

import base64
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from translators._hosted import (
    Segment,
    audio_content_type,
    dialogue_prompt,
    estimated_usage,
    refuse_chat_features,
    render_transcription,
    split_system,
    stop_list,
)
from translators._http import Headers
from translators._json import loads as bounded_json
from translators._shapes import chat_chunk, now
from translators._sse import SSEEvent
from translators.errors import (
    ApiError,
    UpstreamError,
    bad_request,
    body_text,
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


# -- requests ------------------------------------------------------------------------------------------


def to_vendor_request(req: ChatRequest, model: str) -> JSONObject:
    """A chat request as an LLM prediction's `input` (the template of the module docstring of
    `translators/replicate.py`)."""
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
    if not isinstance(metrics, dict):
        return None
    for key in keys:
        value = metrics.get(key)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    return None


def usage_of(prediction: Mapping[str, Any], prompt: str, text: str) -> Usage:
    """Token counts from `metrics` when the model reports them, else estimated (see `_hosted`)."""
    metrics = prediction.get("metrics")
    given_in, given_out = _count(metrics, "input_token_count"), _count(metrics, "output_token_count")
    estimate = estimated_usage(prompt, text)
    p = given_in if given_in is not None else estimate.prompt_tokens
    c = given_out if given_out is not None else estimate.completion_tokens
    return Usage(p, c, p + c)


def prediction_error(prediction: Mapping[str, Any]) -> ApiError:
    """A prediction that ended `failed` or `canceled` (or never ended) as an error."""
    status = prediction.get("status")
    if status == "failed":
        detail = prediction.get("error") or "no reason given"
        return UpstreamError(502, f"the {PROVIDER} prediction failed: {str(detail)[:1000]}", "server_error",
                             "prediction_failed")
    if status == "canceled":
        return UpstreamError(502, f"the {PROVIDER} prediction was canceled", "server_error", "prediction_canceled")
    return UpstreamError(502, f"{PROVIDER} returned a prediction with status {status!r}", "server_error",
                         "upstream_bad_response")


def succeeded(prediction: Any) -> Mapping[str, Any]:
    if not isinstance(prediction, dict) or not isinstance(prediction.get("status"), str):
        raise UpstreamError(502, f"{PROVIDER} returned something that is not a prediction", "server_error",
                            "upstream_bad_response")
    if prediction["status"] != "succeeded":
        raise prediction_error(prediction)
    return prediction


def from_vendor_response(prediction: Any, model: str, max_tokens: int | None = None) -> JSONObject:
    """A succeeded LLM prediction as an OpenAI chat completion. Replicate gives no finish
    reason: `stop`, or `length` when the model counted `max_tokens` output tokens."""
    prediction = succeeded(prediction)
    inputs = prediction.get("input") if isinstance(prediction.get("input"), dict) else {}
    text = output_text(prediction.get("output"))
    usage = usage_of(prediction, prompt_text(inputs), text)
    given_out = _count(prediction.get("metrics"), "output_token_count")
    finish = "length" if max_tokens and given_out is not None and given_out >= max_tokens else "stop"
    return {"id": new_id(prediction), "object": "chat.completion", "created": now(),
            "model": model, "choices": [{"index": 0, "logprobs": None, "finish_reason": finish,
                                         "message": {"role": "assistant", "content": text, "refusal": None}}],
            "usage": usage.as_dict()}


def transcription_output(prediction: Any, response_format: str) -> TranscriptionResult:
    """A whisper-style output (`transcription` or `text`, `segments` or `chunks`) in OpenAI's format."""
    output = succeeded(prediction).get("output")
    if isinstance(output, str):
        return render_transcription(output, None, response_format, PROVIDER)
    if not isinstance(output, dict):
        raise UpstreamError(502, f"the {PROVIDER} model returned no transcription", "server_error",
                            "upstream_bad_response")
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
class StreamState:
    """What translating one Replicate `urls.stream` must remember."""

    model: str
    prompt: str = ""
    id: str = field(default_factory=new_id)
    created: int = field(default_factory=now)
    started: bool = False
    # `done` arrived: the stream is complete (Replicate's end marker, with a reason).
    finished: bool = False
    text: list[str] = field(default_factory=list)

    def chunk(self, delta: JSONObject, finish: str | None = None) -> StreamChunk:
        return chat_chunk(self.id, self.created, self.model, delta, finish)


def _detail(data: bytes) -> str:
    try:
        body = bounded_json(data) if data else None
    except orjson.JSONDecodeError:
        return body_text(data, plain_text=True)  # Replicate's error events are plain text
    detail = body.get("detail") or body.get("error") or body.get("reason") if isinstance(body, dict) else None
    return str(detail) if isinstance(detail, str | int | float) and detail else "no detail given"


def from_vendor_event(event: SSEEvent, state: StreamState) -> list[StreamChunk]:
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
            state.text.append(text)
            chunks.append(state.chunk({"content": text}))
    elif event.event == "error":
        raise UpstreamError(502, f"the {PROVIDER} prediction failed: {_detail(event.data)}", "server_error",
                            "prediction_failed")
    elif event.event == "done":
        reason = ""
        try:
            body = bounded_json(event.data) if event.data else {}
            reason = str(body.get("reason") or "") if isinstance(body, dict) else ""
        except orjson.JSONDecodeError:
            pass
        if reason in ("canceled", "error"):
            raise prediction_error({"status": "canceled" if reason == "canceled" else "failed",
                                    "error": "the stream ended with an error"})
        state.finished = True
        chunks.append(state.chunk({}, "stop"))
    return chunks


def end_of_stream(state: StreamState) -> list[StreamChunk]:
    """The usage chunk (estimated: Replicate's streams carry no counts), after `done` only."""
    if not state.finished:
        raise UpstreamError(502, f"the {PROVIDER} stream ended before its done event", "server_error",
                            "upstream_incomplete_stream")
    usage = estimated_usage(state.prompt, "".join(state.text))
    return [StreamChunk.of({"id": state.id, "object": "chat.completion.chunk", "created": state.created,
                            "model": state.model, "choices": [], "usage": usage.as_dict()}, usage)]


# -- errors ------------------------------------------------------------------------------------------------


def error_from_response(status: int, body: Any, headers: Headers | None) -> ApiError:
    """`application/problem+json` (`{title, detail, status}`), older `{"detail": ...}` or text.
    401/403 -> 403 upstream_credential_rejected; 402 (billing) and 429 -> 429; 422 -> 400
    `invalid_input`; 404 -> 404 model_not_found."""
    message, title = f"HTTP {status} from {PROVIDER}", None
    if isinstance(body, dict):
        title = body.get("title") if isinstance(body.get("title"), str) else None
        detail = body.get("detail") or body.get("error") or title
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
