"""Hugging Face task payloads as OpenAI shapes: text generation (requests, answers, the
`/generate_stream` codec), feature extraction (with the mean-pooling rule) and automatic
speech recognition. Pure functions without I/O; `__init__.py` documents the mapping for
users. Reference: ../shared/vendors/huggingface.md §2b, §2c, §4, §5.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from translators._estimate import TokenTally, estimated_usage
from translators._hosted import (
    Segment,
    dialogue_prompt,
    refuse_chat_features,
    render_transcription,
    split_system,
    stop_list,
)
from translators._shapes import new_id, now
from translators._sse import DONE_DATA, SSEEvent
from translators._stream import Codec, StreamState, event_json
from translators.errors import bad_request, bad_response, incomplete_stream, unsupported
from translators.huggingface.codec import (
    PROVIDER,
    error_event,
    error_from_response,
    error_in_body,
    finish_reason,
    obj,
)
from translators.types import (
    ChatRequest,
    CompletionRequest,
    EmbeddingRequest,
    JSONObject,
    StreamChunk,
    TranscriptionRequest,
    TranscriptionResult,
    Usage,
)

MAX_STOP = 4  # TGI refuses more stop sequences


# -- text generation: requests -------------------------------------------------------------------------


def generation_parameters(max_tokens: int | None, temperature: float | None, top_p: float | None,
                          stop: str | list[str] | None, raw: Mapping[str, Any]) -> JSONObject:
    """OpenAI's sampling fields as TGI parameters (TGI refuses 0 for temperature and top_p,
    and top_p 1: greedy decoding is `do_sample: false`, top_p 1 is simply left out)."""
    params: JSONObject = {"return_full_text": False, "details": True}
    if max_tokens is not None:
        params["max_new_tokens"] = max_tokens
    greedy = temperature == 0 or top_p == 0
    params["do_sample"] = not greedy
    if temperature is not None and temperature > 0 and not greedy:
        params["temperature"] = temperature
    if top_p is not None and 0 < top_p < 1 and not greedy:
        params["top_p"] = top_p
    stops = stop_list(stop)
    if len(stops) > MAX_STOP:
        raise bad_request(f"provider '{PROVIDER}' accepts at most {MAX_STOP} stop sequences", "stop")
    if stops:
        params["stop"] = stops
    for key in ("seed", "top_k"):
        value = raw.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and (key == "seed" or value > 0):
            params[key] = value
    penalty = raw.get("repetition_penalty")
    if isinstance(penalty, int | float) and not isinstance(penalty, bool) and penalty > 0:
        params["repetition_penalty"] = penalty
    return params


def generate_request(req: ChatRequest, model: str) -> JSONObject:
    """A chat request as a text-generation task: the documented template, mapped parameters."""
    refuse_chat_features(req, PROVIDER)
    system, turns = split_system(req.messages, PROVIDER)
    return {"inputs": dialogue_prompt(turns, system),
            "parameters": generation_parameters(req.token_limit, req.temperature, req.top_p, req.stop, req.raw),
            "stream": req.stream}


def completion_request(req: CompletionRequest) -> tuple[JSONObject, str]:
    """A legacy completion as a text-generation task: the prompt goes in verbatim."""
    prompt: Any = req.prompt
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
        prompt = prompt[0]
    if not isinstance(prompt, str):
        raise bad_request(f"provider '{PROVIDER}' accepts one text prompt per request", "prompt")
    if req.suffix:
        raise unsupported(PROVIDER, "suffix", "suffix")
    if (req.n or 1) > 1 or (req.raw.get("best_of") or 1) > 1:
        raise unsupported(PROVIDER, "several choices per request", "n")
    if req.raw.get("logprobs"):
        raise unsupported(PROVIDER, "logprobs", "logprobs")
    if req.max_tokens == 0:
        raise bad_request(f"provider '{PROVIDER}' needs max_tokens >= 1", "max_tokens")
    params = generation_parameters(req.max_tokens, req.temperature, req.top_p, req.stop, req.raw)
    return {"inputs": prompt, "parameters": params, "stream": req.stream}, prompt


# -- text generation: answers --------------------------------------------------------------------------


def _int(value: Any) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return None


def _raise_error_item(item: Any) -> None:
    err = error_in_body(item, None)
    if err is not None:
        raise err


def generated(body: Any) -> tuple[str, str, JSONObject]:
    """(text, finish reason, details) of a /generate answer (an object) or of the serverless
    task (a list with one object)."""
    item = body[0] if isinstance(body, list) and body else body
    _raise_error_item(item)
    if not isinstance(item, dict) or not isinstance(item.get("generated_text"), str):
        raise bad_response(PROVIDER, "a text-generation answer without generated_text")
    details = obj(item.get("details"))
    return item["generated_text"], finish_reason(details.get("finish_reason")) or "stop", details


def generate_usage(prompt: str, text: str | int, details: Mapping[str, Any],
                   headers: Mapping[str, str] | None = None) -> Usage:
    """TGI's counts where it gives them (`details`, `x-prompt-tokens`/`x-generated-tokens`),
    else estimates (`text` may be one already)."""
    headers = headers or {}
    completion = _int(details.get("generated_tokens")) or _int(headers.get("x-generated-tokens"))
    prompt_tokens = _int(details.get("input_length")) or _int(headers.get("x-prompt-tokens"))
    return estimated_usage(prompt if prompt_tokens is None else prompt_tokens,
                           text if completion is None else completion)


def from_generate_response(body: Any, model: str, prompt: str,
                           headers: Mapping[str, str] | None = None) -> JSONObject:
    """A text-generation answer as an OpenAI chat completion."""
    text, finish, details = generated(body)
    return {"id": new_id(), "object": "chat.completion", "created": now(), "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text, "refusal": None},
                         "logprobs": None, "finish_reason": finish}],
            "usage": generate_usage(prompt, text, details, headers).as_dict()}


def completion_response(body: Any, model: str, prompt: str, echo: bool,
                        headers: Mapping[str, str] | None = None) -> JSONObject:
    text, finish, details = generated(body)
    return {"id": new_id("cmpl"), "object": "text_completion", "created": now(), "model": model,
            "choices": [{"text": (prompt if echo else "") + text, "index": 0, "logprobs": None,
                         "finish_reason": "length" if finish == "length" else "stop"}],
            "usage": generate_usage(prompt, text, details, headers).as_dict()}


# -- text generation: streams ------------------------------------------------------------------------------


@dataclass(slots=True)
class GenerateState(StreamState):
    """What translating one `/generate_stream` token stream must remember. TGI sends no end
    marker: the event with `details` (or `generated_text`) is the last (`finished`)."""

    prompt: str = ""
    # Legacy completions want `text_completion` chunks (and the prompt first when echoing).
    completion: bool = False
    echo: bool = False
    generated: TokenTally = field(default_factory=TokenTally)

    def piece(self, text: str | None, finish: str | None = None, role: bool = False) -> StreamChunk:
        if self.completion:
            choice: JSONObject = {"text": text or "", "index": 0, "logprobs": None, "finish_reason": finish}
            return StreamChunk.of({"id": self.id, "object": "text_completion", "created": self.created,
                                   "model": self.model, "choices": [choice]})
        return self.chunk({"role": "assistant", "content": ""} if role else ({"content": text} if text else {}),
                          finish)

    def totals(self, usage: Usage) -> StreamChunk:
        if self.completion:
            return StreamChunk.of({"id": self.id, "object": "text_completion", "created": self.created,
                                   "model": self.model, "choices": [], "usage": usage.as_dict()}, usage)
        return self.usage_chunk(usage)


def from_generate_event(event: SSEEvent, state: GenerateState) -> list[StreamChunk]:
    """One `/generate_stream` event -> chunks: special tokens (`</s>`) are skipped, the last
    event's `details` give the finish reason and the token counts (then the usage chunk)."""
    if not event.data:
        return []
    if event.data == DONE_DATA:  # a marker TGI does not send, before the last event
        raise incomplete_stream(PROVIDER, "its last event")
    body = event_json(event, PROVIDER)
    if not isinstance(body, dict):
        return []
    if body.get("error") is not None:
        raise error_event(body)
    chunks = []
    if not state.started:
        state.started = True
        if not state.completion:
            chunks.append(state.piece(None, role=True))
        elif state.echo and state.prompt:
            chunks.append(state.piece(state.prompt))
    token = obj(body.get("token"))
    text = token.get("text")
    if isinstance(text, str) and text and not token.get("special"):
        state.generated.add(text)
        chunks.append(state.piece(text))
    details = body.get("details")
    if isinstance(details, dict) or body.get("generated_text") is not None:
        details = obj(details)
        state.finished = True
        chunks.append(state.piece(None, finish_reason(details.get("finish_reason")) or "stop"))
        chunks.append(state.totals(generate_usage(state.prompt, state.generated.tokens, details)))
    return chunks


def end_of_generate_stream(state: GenerateState) -> list[StreamChunk]:
    """EOF: nothing more after the last event (the usage went with it); before it, a cut stream."""
    if not state.finished:
        raise incomplete_stream(PROVIDER, "its last event")
    return []


# The tasks' codec: the errors every task shares, and text generation's token stream.
TASK: Codec[GenerateState] = Codec(PROVIDER, error_from_response, error_in_body, GenerateState,
                                       from_generate_event, end_of_generate_stream, plain_text_errors=True)


# -- feature extraction -----------------------------------------------------------------------------------


def embedding_inputs(req: EmbeddingRequest) -> str | list[str]:
    value = req.input
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return [str(v) for v in value]
    raise bad_request(f"provider '{PROVIDER}' embeds text, not token arrays", "input")


def _depth(value: Any) -> int:
    depth = 0
    while isinstance(value, list) and value:
        depth, value = depth + 1, value[0]
    return depth if isinstance(value, int | float) and not isinstance(value, bool) else -1


def _mean(rows: list[Any]) -> list[float]:
    width = len(rows[0])
    if any(not isinstance(r, list) or len(r) != width for r in rows):
        raise bad_response(PROVIDER, "token vectors of different lengths")
    return [sum(col) / len(rows) for col in zip(*rows, strict=True)]


def pool(body: Any, count: int) -> tuple[list[list[float]], int | None]:
    """(one vector per input, token count when the answer was token-level) -- the mean-pooling
    rule of the module docstring of `translators/huggingface/__init__.py`."""
    if isinstance(body, dict) and body.get("error") is not None:
        raise error_event(body)
    depth = _depth(body)
    tokens: int | None = None
    if depth == 1 and count == 1:
        vectors = [body]
    elif depth == 2 and len(body) == count:
        vectors = body
    elif depth == 2 and count == 1:          # one text, one vector per token
        vectors, tokens = [_mean(body)], len(body)
    elif depth == 3 and len(body) == count:  # [input][token][dim]
        vectors, tokens = [_mean(item) for item in body], sum(len(item) for item in body)
    elif depth == 4 and len(body) == count and all(len(item) == 1 for item in body):  # [input][1][token][dim]
        vectors, tokens = [_mean(item[0]) for item in body], sum(len(item[0]) for item in body)
    else:
        raise bad_response(PROVIDER, f"a feature-extraction answer of unexpected shape for {count} input(s)")
    width = len(vectors[0])
    if any(not isinstance(v, list) or len(v) != width for v in vectors):
        raise bad_response(PROVIDER, "embeddings of different lengths")
    return vectors, tokens


# -- speech recognition --------------------------------------------------------------------------------


def asr_timestamp_request(req: TranscriptionRequest) -> JSONObject:
    """The JSON form of the task (base64 audio), used when timestamps are needed."""
    return {"inputs": base64.b64encode(req.file).decode(), "parameters": {"return_timestamps": True}}


def asr_segments(body: Mapping[str, Any]) -> list[Segment] | None:
    chunks = body.get("chunks")
    if not isinstance(chunks, list) or not chunks:
        return None
    segments = []
    for i, chunk in enumerate(chunks):
        stamp = chunk.get("timestamp") if isinstance(chunk, dict) else None
        if not isinstance(stamp, list | tuple) or len(stamp) != 2 or not isinstance(stamp[0], int | float):
            return None
        end = stamp[1]
        if not isinstance(end, int | float):  # the last chunk of a cut-off file has no end
            nxt = chunks[i + 1].get("timestamp") if i + 1 < len(chunks) else None
            end = nxt[0] if isinstance(nxt, list) and nxt else stamp[0]
        segments.append(Segment(float(stamp[0]), float(end), str(chunk.get("text") or "")))
    return segments


def from_asr(body: Any, response_format: str, language: str | None = None) -> TranscriptionResult:
    item = body[0] if isinstance(body, list) and body else body
    _raise_error_item(item)
    if not isinstance(item, dict) or not isinstance(item.get("text"), str):
        raise bad_response(PROVIDER, "a speech-recognition answer without text")
    return render_transcription(item["text"], asr_segments(item), response_format, PROVIDER, language)
