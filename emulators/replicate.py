"""A fake Replicate: predictions created, waited for (`Prefer: wait`), polled, streamed and
canceled. Reference: ../shared/vendors/replicate.md and ../shared/vendors/recordings/replicate/.

Routes (the fake's root plays https://api.replicate.com):
- `POST /v1/models/{owner}/{name}/predictions` `{input, stream?}` and `POST /v1/predictions`
  `{version, input, stream?}` -> 201 with the prediction and its `urls` (absolute, on this fake);
- `GET /v1/predictions/{id}` (`urls.get`), `POST /v1/predictions/{id}/cancel` (`urls.cancel`);
- `GET /v1/streams/{id}` (`urls.stream`): SSE with `event:`/`id:`/`data:`; `output` events
  carry the token text, a token with newlines as several `data:` lines; `done` `{}` (or
  `{"reason": "canceled"|"error"}`), `error` `{"detail": ...}`.

It checks what Replicate checks: `Authorization: Bearer` with a known token (401
problem+json, as recorded), the model or version (404 / 422), `Prefer` (`wait` or `wait=1..60`),
the input against the model's schema (unknown fields, types, `stop_sequences` a string, the
whisper `audio` a URI whose data decodes): 422 problem+json. A prediction is `processing`
after a create that waited, and `succeeded` after `polls_to_finish` polls of `urls.get`,
its output growing meanwhile (a token list for LLMs, the whisper object for speech).
Served as an emulator, a request's own reply (echo or fixed, `emulators/scripting.py`)
replaces the scripted tokens.
"""

from __future__ import annotations

import base64
import secrets
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from emulators._openai_wire import SSEResponse, text_pieces
from emulators._replay import write_events
from emulators._vendor_common import FakeState, RecordedRequest, local_path, public_root, recorded
from emulators.scripting import reply_of

__all__ = ["DEFAULT_TOKEN", "FakeReplicateState", "HAIKU", "create_app"]

DEFAULT_TOKEN = "r8_fake_NOT_A_REAL_TOKEN_0123456789"
# recordings/replicate/prediction_prefer_wait_processing.json
HAIKU = ["\n\n", "Fuzzy", ", gentle", " soul\n", "Llama", "'s soft", " eyes meet", " my", " gaze", "\nPeace", "ful,",
         " gentle", " friend", ""]
LLAMA_VERSION = "5c7d5dc6dd8bf75c1acaa8565735e7986bc5b66206b55cca93cb72c9bf15ccaa"
NUMBER, INTEGER, STRING, BOOLEAN = (int, float), (int,), (str,), (bool,)
LLM_INPUT: dict[str, tuple[type, ...]] = {
    "prompt": STRING, "system_prompt": STRING, "max_tokens": INTEGER, "min_tokens": INTEGER, "temperature": NUMBER,
    "top_p": NUMBER, "top_k": INTEGER, "stop_sequences": STRING, "presence_penalty": NUMBER,
    "frequency_penalty": NUMBER, "seed": INTEGER, "prompt_template": STRING, "max_new_tokens": INTEGER}
WHISPER_INPUT: dict[str, tuple[type, ...]] = {
    "audio": STRING, "transcription": STRING, "language": STRING, "temperature": NUMBER, "initial_prompt": STRING,
    "translate": BOOLEAN, "condition_on_previous_text": BOOLEAN}


@dataclass(frozen=True)
class RModel:
    schema: dict[str, tuple[type, ...]]
    required: str                 # the one required input
    streams: bool = True          # has a `urls.stream`


DEFAULT_MODELS = {
    "meta/meta-llama-3-8b-instruct": RModel(LLM_INPUT, "prompt"),
    "meta/llama-2-70b-chat": RModel(LLM_INPUT, "prompt"),
    "replicate/flan-t5-xl": RModel(LLM_INPUT, "prompt", streams=False),
    "openai/whisper": RModel(WHISPER_INPUT, "audio", streams=False),
}
UNAUTHENTICATED = {"title": "Unauthenticated", "detail": "You did not pass a valid authentication token",
                   "status": 401}   # recordings/replicate/error_401_problem.json
PROBLEM = "application/problem+json"


class ReplicateError(Exception):
    def __init__(self, status: int, title: str, detail: str) -> None:
        super().__init__(status)
        self.status, self.title, self.detail = status, title, detail


def invalid(detail: str) -> ReplicateError:
    return ReplicateError(422, "Input validation failed", detail)


@dataclass
class Prediction:
    id: str
    model: str
    version: str
    input: dict[str, Any]
    stream: bool
    streams: bool
    result: Any                   # the final output: token list or whisper object
    fail_with: str | None = None
    status: str = "starting"
    polls: int = 0
    created_at: str = field(default_factory=lambda: time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime()))

    def advance(self, done: bool) -> None:
        if self.status in ("succeeded", "failed", "canceled"):
            return
        self.status = ("failed" if self.fail_with else "succeeded") if done else "processing"

    def output(self) -> Any:
        if self.status == "succeeded":
            return self.result
        if self.status == "processing" and isinstance(self.result, list):
            return self.result[:max(1, len(self.result) // 2)]
        return None

    def as_json(self, root: str) -> dict[str, Any]:
        urls = {"get": f"{root}/v1/predictions/{self.id}", "cancel": f"{root}/v1/predictions/{self.id}/cancel"}
        if self.streams:
            urls["stream"] = f"{root}/v1/streams/{self.id}"
        body: dict[str, Any] = {
            "id": self.id, "model": self.model, "version": self.version, "input": self.input, "logs": "",
            "output": self.output(), "data_removed": False,
            "error": self.fail_with if self.status == "failed" else None,
            "status": self.status, "created_at": self.created_at, "urls": urls}
        if self.stream:
            body["stream"] = True
        if self.status == "succeeded":
            body["metrics"] = {"predict_time": 0.9, "total_time": 1.1}
        return body


@dataclass
class FakeReplicateState(FakeState):
    # -- scripting --
    tokens: set[str] = field(default_factory=lambda: {DEFAULT_TOKEN})
    models: dict[str, RModel] = field(default_factory=lambda: dict(DEFAULT_MODELS))
    versions: dict[str, str] = field(default_factory=lambda: {LLAMA_VERSION: "meta/llama-2-70b-chat"})
    reply_tokens: list[str] = field(default_factory=lambda: list(HAIKU))
    transcript: str = "A MAN SAID TO THE UNIVERSE SIR I EXIST"
    polls_to_finish: int = 3          # GETs of urls.get until the prediction has succeeded
    finish_within_wait: bool = False  # `Prefer: wait` returns the finished prediction
    fail_with: str | None = None      # predictions end `failed` with this error
    stream_error: str | None = None   # streams send an `error` event after the first token
    fail_at_create: str | None = None  # the create answers 201 with a prediction already `failed`
    # (status, body, headers?) answered instead, one per request: a dict as problem+json
    next_answers: list[tuple[Any, ...]] = field(default_factory=list)
    split_events: bool = False
    stream_delay: float = 0.0
    # -- observations --
    predictions: dict[str, Prediction] = field(default_factory=dict)
    canceled: list[str] = field(default_factory=list)
    requests: list[RecordedRequest] = field(default_factory=list)
    streams_started: int = 0
    streams_finished: int = 0
    streams_aborted: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    @property
    def creates(self) -> list[RecordedRequest]:
        return [r for r in list(self.requests) if r.method == "POST" and r.path.endswith("/predictions")]

    @property
    def reply_text(self) -> str:
        """The scripted tokens as one text: what `scripting.reply_of` falls back to."""
        return "".join(self.reply_tokens)


def reply_tokens(state: FakeReplicateState) -> list[str]:
    """The scripted tokens, or a request's own reply (echo or fixed, through the emulator's
    middleware) cut in word pieces and ended by Replicate's empty last token."""
    text = reply_of(state)
    if text == state.reply_text:
        return list(state.reply_tokens)
    return [*text_pieces(text)[0], ""]


def whisper_result(transcript: str) -> dict[str, Any]:
    words = transcript.split()
    segments: list[dict[str, Any]] = []
    t = 0.0
    for i in range(0, len(words), 4):
        text = " " + " ".join(words[i:i + 4])
        end = round(t + 0.4 * len(words[i:i + 4]), 2)
        segments.append({"id": len(segments), "seek": 0, "start": t, "end": end, "text": text, "tokens": [50364],
                         "temperature": 0.0, "avg_logprob": -0.2, "compression_ratio": 1.1, "no_speech_prob": 0.01})
        t = end
    return {"segments": segments, "transcription": transcript, "translation": None, "txt_file": None,
            "srt_file": None, "detected_language": "english"}


def check_input(model: RModel, inputs: Any) -> None:
    if not isinstance(inputs, dict):
        raise invalid("- input: Invalid type. Expected: object, given: " + type(inputs).__name__)
    for name, value in inputs.items():
        types = model.schema.get(name)
        if types is None:
            raise invalid(f"- input: Additional property {name} is not allowed")
        if not isinstance(value, types) or (isinstance(value, bool) and types is not BOOLEAN):
            names: dict[tuple[type, ...], str] = {NUMBER: "number", INTEGER: "integer", STRING: "string",
                                                  BOOLEAN: "boolean"}
            expected = names[types]
            given = "array" if isinstance(value, list) else type(value).__name__
            raise invalid(f"- input.{name}: Invalid type. Expected: {expected}, given: {given}")
    if model.required not in inputs:
        raise invalid(f"- input: {model.required} is required")
    if model.required == "audio":
        audio = inputs["audio"]
        if audio.startswith("data:"):
            header, _, payload = audio.partition(",")
            try:
                data = base64.b64decode(payload, validate=True)
            except ValueError:
                data = b""
            if ";base64" not in header or not data or ("wav" in header and not data.startswith(b"RIFF")):
                raise invalid("- input.audio: the data URI holds no audio")
        elif not audio.startswith(("http://", "https://")):
            raise invalid("- input.audio: Does not match format 'uri'")


def _sse_output(pid: str, n: int, token: str) -> bytes:
    data = b"".join(b"data: " + line.encode() + b"\n" if line else b"data:\n" for line in token.split("\n"))
    return f"event: output\nid: {pid}:{n}\n".encode() + data + b"\n"


def create_app(state: FakeReplicateState) -> Starlette:

    def stream_events(p: Prediction) -> Iterator[bytes]:
        tokens = p.result if isinstance(p.result, list) else [orjson.dumps(p.result).decode()]
        stamp = str(int(time.time()))
        n = 0
        for n, token in enumerate(tokens):
            if p.status == "canceled":
                break
            yield _sse_output(stamp, n, token)
            if state.stream_error and n == 0:
                yield f"event: error\nid: {stamp}:{n + 1}\ndata: ".encode() + orjson.dumps(
                    {"detail": state.stream_error}) + b"\n\n"
                p.status = "failed"
                yield f"event: done\nid: {stamp}:{n + 2}\ndata: ".encode() + b'{"reason":"error"}\n\n'
                return
        reason = b'{"reason":"canceled"}' if p.status == "canceled" else b"{}"
        p.advance(True)
        yield f"event: done\nid: {stamp}:{n + 1}\ndata: ".encode() + reason + b"\n\n"

    def create(request: Request, record: RecordedRequest, model_name: str | None) -> Response:
        body = record.json
        if not isinstance(body, dict):
            raise ReplicateError(400, "Invalid request", "The request body must be a JSON object")
        version = ""
        if model_name is None:
            asked = body.get("version")
            version = asked if isinstance(asked, str) else ""
            model_name = state.versions.get(version)
            if model_name is None:
                raise invalid("Invalid version or not permitted")
        model = state.models.get(model_name)
        if model is None:
            raise ReplicateError(404, "Not found", f"The model {model_name} does not exist")
        prefer = request.headers.get("prefer")
        if prefer is not None and prefer != "wait" and not (
                prefer.startswith("wait=") and prefer[5:].isdigit() and 1 <= int(prefer[5:]) <= 60):
            raise ReplicateError(400, "Invalid Prefer header", f"Invalid Prefer header value: {prefer}")
        check_input(model, body.get("input"))
        result = whisper_result(state.transcript) if model.required == "audio" else reply_tokens(state)
        p = Prediction(secrets.token_hex(13), model_name, version or "dp-" + secrets.token_hex(16), body["input"],
                       bool(body.get("stream")), model.streams, result, state.fail_with)
        if prefer is not None:
            p.advance(state.finish_within_wait or state.polls_to_finish == 0)
        if state.fail_at_create:
            p.fail_with, p.status = state.fail_at_create, "failed"
        with state.lock:
            state.predictions[p.id] = p
        return _json(p.as_json(_root(request)), 201)

    def lookup(pid: str) -> Prediction:
        p = state.predictions.get(pid)
        if p is None:
            raise ReplicateError(404, "Not found", "The requested resource could not be found.")
        return p

    def route(request: Request, record: RecordedRequest) -> Response:
        parts = local_path(request).strip("/").split("/")
        method = request.method
        if method == "POST" and len(parts) == 5 and parts[:2] == ["v1", "models"] and parts[4] == "predictions":
            return create(request, record, f"{parts[2]}/{parts[3]}")
        if method == "POST" and parts == ["v1", "predictions"]:
            return create(request, record, None)
        if method == "GET" and len(parts) == 3 and parts[:2] == ["v1", "predictions"]:
            p = lookup(parts[2])
            p.polls += 1
            p.advance(p.polls >= state.polls_to_finish)
            return _json(p.as_json(_root(request)))
        if method == "POST" and len(parts) == 4 and parts[:2] == ["v1", "predictions"] and parts[3] == "cancel":
            p = lookup(parts[2])
            with state.lock:
                state.canceled.append(p.id)
            if p.status not in ("succeeded", "failed"):
                p.status = "canceled"
            return _json(p.as_json(_root(request)))
        if method == "GET" and len(parts) == 3 and parts[:2] == ["v1", "streams"]:
            p = lookup(parts[2])
            if not p.stream:
                raise ReplicateError(400, "Not streaming", "This prediction was not created with stream: true")
            return SSEResponse(write_events(state, stream_events(p)))
        raise ReplicateError(404, "Not found", "The requested resource could not be found.")

    async def handle(request: Request) -> Response:
        record = await recorded(request)
        with state.lock:
            state.requests.append(record)
        try:
            auth = request.headers.get("authorization", "")
            if not auth.startswith("Bearer ") or auth[len("Bearer "):] not in state.tokens:
                return _json(UNAUTHENTICATED, 401, PROBLEM)
            with state.lock:
                scripted = state.next_answers.pop(0) if state.next_answers else None
            if scripted is not None:
                status, body, *rest = scripted
                response = _json(body, status, PROBLEM)
                response.headers.update(rest[0] if rest else {})
                return response
            return route(request, record)
        except ReplicateError as exc:
            return _json({"title": exc.title, "detail": exc.detail, "status": exc.status}, exc.status, PROBLEM)

    return Starlette(routes=[Route("/{path:path}", handle, methods=["GET", "POST"])])


def _root(request: Request) -> str:
    return public_root(request)


def _json(body: Any, status: int = 200, media_type: str = "application/json") -> Response:
    return Response(orjson.dumps(body), status, media_type=media_type)
