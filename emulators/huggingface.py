"""A fake Hugging Face: the serverless Inference API (tasks and the Messages API per model)
and dedicated endpoints running TGI (current or 1.4.x), TEI or a speech model.

Reference: ../shared/vendors/huggingface.md and ../shared/vendors/recordings/huggingface/.

URLs (the serverless API's base is the fake's root, as `https://router.huggingface.co/hf-inference`):
- `POST /models/{org}/{name}`: the model's task (text-generation, feature-extraction,
  automatic-speech-recognition); `.../pipeline/feature-extraction`; `.../v1/chat/completions`
  (Messages API, 404 for models without one);
- `POST /endpoints/{endpoint}` (the task, as Inference Endpoints take it), `/generate`,
  `/generate_stream`, `/v1/chat/completions` (TGI's routes; 404 on a TGI older than 1.4).

It checks what Hugging Face checks: `Authorization: Bearer` with a known token (401
`{"error": ...}`), the model (404), TGI's validation of `parameters` (temperature, top_p,
top_k, repetition_penalty strictly positive, top_p < 1, at most 4 stop sequences, input
tokens + max_new_tokens <= 1512, all 422 `{"error", "error_type": "validation"}`), a
Messages API body whose `messages` is not a list (plain-text 422, as recorded), the raw
audio's content type and bytes. It answers in the vendor's shapes: serverless
text-generation is a list and echoes the prompt unless `return_full_text: false`;
`/generate` is an object with `x-prompt-tokens`/`x-generated-tokens` headers; streams are
`data:{...}` without a space, token events without an end marker; 1.4.x quirks as recorded.
Scripting: `loading` (503 with `estimated_time`), `next_answers` (any status and raw body,
e.g. a recording replayed verbatim), `split_events`, `stream_delay`, `stream_error_after`.
Served as an emulator, a request's own reply and, when tools are offered and none is
scripted, an automatic tool call (`emulators/scripting.py`) stand in for the state's.
"""

from __future__ import annotations

import base64
import threading
from dataclasses import dataclass, field
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from emulators import _hf_payloads as hf
from emulators._openai_wire import SSEResponse, word_count
from emulators._replay import write_events
from emulators._vendor_common import (
    FakeState,
    RecordedRequest,
    json_response,
    local_path,
    recorded,
)
from emulators.scripting import reply_of, tool_of

__all__ = ["DEFAULT_REPLY", "DEFAULT_TOKEN", "FakeHFState", "HFModel", "create_app"]

DEFAULT_TOKEN = "hf_fake_NOT_A_REAL_TOKEN_0123456789"
DEFAULT_REPLY = "Deep learning is a subfield of machine learning"
MAX_TOTAL_TOKENS = 1512
TEXT_GENERATION, FEATURE_EXTRACTION, ASR = "text-generation", "feature-extraction", "automatic-speech-recognition"


@dataclass(frozen=True)
class HFModel:
    task: str
    chat: str | None = None       # Messages API flavour (hf.CURRENT / hf.OLD), None: no Messages API
    pooling: str = "pooled"       # feature-extraction: pooled | tokens | batch2d
    timestamps: bool = False      # ASR: `chunks` when asked for timestamps
    dim: int = 8


DEFAULT_MODELS = {
    "HuggingFaceH4/zephyr-7b-beta": HFModel(TEXT_GENERATION, chat=hf.OLD),
    "meta-llama/Meta-Llama-3-8B-Instruct": HFModel(TEXT_GENERATION, chat=hf.CURRENT),
    "openai-community/gpt2": HFModel(TEXT_GENERATION),
    "sentence-transformers/all-MiniLM-L6-v2": HFModel(FEATURE_EXTRACTION),
    "google-bert/bert-base-uncased": HFModel(FEATURE_EXTRACTION, pooling="tokens"),
    "facebook/wav2vec2-base-960h": HFModel(ASR),
    "openai/whisper-large-v3": HFModel(ASR, timestamps=True),
}
DEFAULT_ENDPOINTS = {
    "tgi-current": HFModel(TEXT_GENERATION, chat=hf.CURRENT),
    "tgi-old": HFModel(TEXT_GENERATION, chat=hf.OLD),
    "tgi-legacy": HFModel(TEXT_GENERATION),
    "tei": HFModel(FEATURE_EXTRACTION, pooling="batch2d"),
    "whisper": HFModel(ASR, timestamps=True),
}
AUDIO_MAGIC = (b"RIFF", b"fLaC", b"ID3", b"OggS", b"\x1aE\xdf\xa3", b"\xff\xfb")
UNAUTHORIZED = {"error": "Invalid credentials in Authorization header"}
# TGI's error event when generation fails midway (a stream's last event).
GENERATION_FAILED = {"error": "Request failed during generation: Server error: CUDA out of memory",
                     "error_type": "generation"}

# (status, body, headers): dict/list -> JSON, str/bytes -> raw (content-type from headers)
Answer = tuple[int, Any, dict[str, str]]


class HFError(Exception):
    def __init__(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        super().__init__(status)
        self.status, self.body, self.headers = status, body, headers or {}


def validation(message: str) -> HFError:
    return HFError(422, {"error": f"Input validation error: {message}", "error_type": "validation"})


@dataclass
class FakeHFState(FakeState):
    # -- scripting --
    tokens: set[str] = field(default_factory=lambda: {DEFAULT_TOKEN})
    models: dict[str, HFModel] = field(default_factory=lambda: dict(DEFAULT_MODELS))
    endpoints: dict[str, HFModel] = field(default_factory=lambda: dict(DEFAULT_ENDPOINTS))
    reply_text: str = DEFAULT_REPLY
    tool_call: tuple[str, dict[str, Any]] | None = None
    transcript: str = "A MAN SAID TO THE UNIVERSE SIR I EXIST"
    loading: dict[str, list[float]] = field(default_factory=dict)  # model/endpoint -> estimates of 503s to come
    next_answers: list[Answer] = field(default_factory=list)        # popped one per authorised request
    split_events: bool = False
    stream_delay: float = 0.0
    stream_error_after: int | None = None  # a `data:{"error"...}` event after N events
    # -- observations --
    requests: list[RecordedRequest] = field(default_factory=list)
    streams_started: int = 0
    streams_finished: int = 0
    streams_aborted: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def requests_to(self, suffix: str) -> list[RecordedRequest]:
        return [r for r in list(self.requests) if r.path.endswith(suffix)]


# -- request parsing -----------------------------------------------------------------------------------


def _json(record: RecordedRequest) -> dict[str, Any]:
    if not isinstance(record.json, dict):
        raise HFError(400, {"error": "Invalid JSON body"})
    return record.json


def _positive(params: dict[str, Any], name: str) -> None:
    value = params.get(name)
    if value is not None and (not isinstance(value, int | float) or value <= 0):
        raise validation(f"`{name}` must be strictly positive")


def generation_params(body: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """TGI's validation of a text-generation request (router/src/validation.rs, simplified)."""
    inputs = body.get("inputs")
    if not isinstance(inputs, str):
        raise HFError(422, "Failed to deserialize the JSON body into the target type: inputs: invalid type: "
                           f"{type(inputs).__name__}, expected a string at line 1 column 10")
    params = body.get("parameters") or {}
    if not isinstance(params, dict):
        raise HFError(422, "Failed to deserialize the JSON body into the target type: parameters: invalid type")
    for name in ("temperature", "top_p", "top_k", "repetition_penalty"):
        _positive(params, name)
    if isinstance(params.get("top_p"), int | float) and params["top_p"] >= 1:
        raise validation("`top_p` must be > 0.0 and < 1.0")
    stop = params.get("stop") or []
    if len(stop) > 4:
        raise validation(f"`stop` supports up to 4 stop sequences. Given: {len(stop)}")
    max_new = params.get("max_new_tokens")
    if max_new is not None and (not isinstance(max_new, int) or max_new < 1):
        raise validation("`max_new_tokens` must be strictly positive")
    prompt_tokens = max(1, word_count(inputs))
    if max_new is not None and prompt_tokens + max_new > MAX_TOTAL_TOKENS:
        raise validation(f"`inputs` tokens + `max_new_tokens` must be <= {MAX_TOTAL_TOKENS}. Given: {prompt_tokens} "
                         f"`inputs` tokens and {max_new} `max_new_tokens`")
    return inputs, params


def _messages_text(messages: list[Any]) -> str:
    parts = []
    for message in messages:
        if not isinstance(message, dict) or "role" not in message:
            raise HFError(422, "Failed to deserialize the JSON body into the target type: messages[0]: missing "
                               "field `role`")
        content = message.get("content")
        parts.append(content if isinstance(content, str) else orjson.dumps(content).decode())
    return "\n".join(parts)


# -- app -----------------------------------------------------------------------------------------------------


def create_app(state: FakeHFState) -> Starlette:

    def events_response(events: list[bytes]) -> Response:
        after = state.stream_error_after
        if after is not None:
            events = events[:after] + [hf.sse(GENERATION_FAILED)]
        return SSEResponse(write_events(state, events))

    def chat(spec: HFModel, model: str, record: RecordedRequest) -> Response:
        if spec.chat is None:
            raise HFError(404, b"")
        body = _json(record)
        messages = body.get("messages")
        if not isinstance(messages, list):
            raise HFError(422, "Failed to deserialize the JSON body into the target type: messages: invalid type: "
                               f"{type(messages).__name__}, expected a sequence at line 1 column 58")
        prompt = _messages_text(messages)
        limit = body.get("max_tokens")
        if limit is not None and max(1, word_count(prompt)) + limit > MAX_TOTAL_TOKENS:
            raise validation(f"`inputs` tokens + `max_new_tokens` must be <= {MAX_TOTAL_TOKENS}")
        stop = body.get("stop") or []
        gen = hf.generate(reply_of(state), prompt, limit, [stop] if isinstance(stop, str) else stop)
        # Served as an emulator, the offered tool is called when the state scripts none.
        scripted = state.tool_call or tool_of(state.tool_call)
        tool = scripted if body.get("tools") and body.get("tool_choice") != "none" else None
        if body.get("stream"):
            include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
            return events_response(hf.chat_events(spec.chat, model, gen, tool, include_usage))
        return json_response(hf.chat_response(spec.chat, model, gen, tool))

    def text_generation(record: RecordedRequest, serverless: bool, stream: bool | None) -> Response:
        body = _json(record)
        prompt, params = generation_params(body)
        stream = bool(body.get("stream")) if stream is None else stream
        full_text = params.get("return_full_text", serverless)
        gen = hf.generate(reply_of(state), prompt, params.get("max_new_tokens"), params.get("stop") or [])
        with_details = bool(params.get("details"))
        if stream:
            return events_response(hf.generate_events(gen, prompt, full_text, with_details, not serverless))
        answer = hf.generate_response(gen, prompt, full_text, with_details)
        if serverless:
            return json_response([answer])
        headers = {"x-prompt-tokens": str(gen.prompt_tokens), "x-generated-tokens": str(gen.tokens),
                   "x-compute-type": "gpu+optimized"}
        return json_response(answer, headers=headers)

    def feature_extraction(spec: HFModel, record: RecordedRequest) -> Response:
        inputs = _json(record).get("inputs")
        if not (isinstance(inputs, str) or (isinstance(inputs, list) and inputs
                                            and all(isinstance(i, str) for i in inputs))):
            raise HFError(400, {"error": "Input should be a valid string or a list of strings"})
        return json_response(hf.features(inputs, spec.pooling, spec.dim))

    def speech(spec: HFModel, request: Request, record: RecordedRequest) -> Response:
        ctype = request.headers.get("content-type", "")
        timestamps = False
        if ctype.startswith("application/json"):
            body = _json(record)
            audio = base64.b64decode(body.get("inputs") or "", validate=True)
            timestamps = bool((body.get("parameters") or {}).get("return_timestamps"))
        elif ctype.startswith(("audio/", "video/", "application/octet-stream")) or not ctype:
            audio = record.body  # no type (huggingface_hub sends none for bytes): the bytes are sniffed
        else:
            raise HFError(400, {"error": f"Content type {ctype} is not an audio type"})
        if not audio.startswith(AUDIO_MAGIC) or (ctype in ("audio/wav", "audio/x-wav") and audio[:4] != b"RIFF"):
            raise HFError(400, {"error": "Malformed soundfile"})
        answer: dict[str, Any] = {"text": state.transcript}
        if timestamps and spec.timestamps:
            answer["chunks"] = hf.asr_chunks(state.transcript)
        return json_response(answer)

    def task(spec: HFModel, request: Request, record: RecordedRequest, serverless: bool) -> Response:
        if spec.task == TEXT_GENERATION:
            return text_generation(record, serverless, None)
        if spec.task == FEATURE_EXTRACTION:
            return feature_extraction(spec, record)
        return speech(spec, request, record)

    def route(request: Request, record: RecordedRequest) -> Response:
        path = local_path(request)
        if path.startswith("/endpoints/"):
            name, _, rest = path[len("/endpoints/"):].partition("/")
            spec = state.endpoints.get(name)
            if spec is None:
                raise HFError(404, b"")
            key, model = name, "tgi"
        elif path.startswith("/models/"):
            rest = ""
            model = path[len("/models/"):]
            for suffix in ("/v1/chat/completions", "/pipeline/feature-extraction"):
                if model.endswith(suffix):
                    model, rest = model[:-len(suffix)], suffix.lstrip("/")
            spec = state.models.get(model)
            if spec is None:
                raise HFError(404, {"error": f"Model {model} does not exist"})
            key = model
        else:
            raise HFError(404, b"")
        with state.lock:
            estimates = state.loading.get(key)
            estimate = estimates.pop(0) if estimates else None
        if estimate is not None:
            raise HFError(503, {"error": f"Model {model} is currently loading", "estimated_time": estimate})
        serverless = path.startswith("/models/")
        if rest == "v1/chat/completions":
            return chat(spec, model, record)
        if rest == "pipeline/feature-extraction" and spec.task == FEATURE_EXTRACTION:
            return feature_extraction(spec, record)
        if rest in ("generate", "generate_stream") and spec.task == TEXT_GENERATION and not serverless:
            return text_generation(record, False, rest == "generate_stream")
        if rest == "":
            return task(spec, request, record, serverless)
        raise HFError(404, b"" if not serverless else {"error": "Not Found"})

    async def handle(request: Request) -> Response:
        record = await recorded(request)
        with state.lock:
            state.requests.append(record)
        try:
            auth = request.headers.get("authorization", "")
            if not auth.startswith("Bearer ") or auth[len("Bearer "):] not in state.tokens:
                raise HFError(401, UNAUTHORIZED)
            with state.lock:
                scripted = state.next_answers.pop(0) if state.next_answers else None
            if scripted is not None:
                return scripted_answer(state, *scripted)
            return route(request, record)
        except HFError as exc:
            if isinstance(exc.body, dict | list):
                return json_response(exc.body, exc.status, exc.headers)
            return Response(exc.body, exc.status, exc.headers, media_type="text/plain")

    return Starlette(routes=[Route("/{path:path}", handle, methods=["POST", "GET"])])


def scripted_answer(state: FakeHFState, status: int, body: Any, headers: dict[str, str]) -> Response:
    if isinstance(body, dict | list):
        return json_response(body, status, headers)
    data = body.encode() if isinstance(body, str) else body
    if headers.get("content-type", "").startswith("text/event-stream"):
        events = [e + b"\n\n" for e in data.split(b"\n\n") if e.strip()]
        return SSEResponse(write_events(state, events), status_code=status)
    return Response(data, status, headers)
