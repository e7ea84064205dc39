"""A fake Alibaba DashScope (Qwen) vendor speaking the native API's wire format.

    state = FakeQwenState()
    with ServedApp(create_app(state)) as served:
        ...  # base URL for clients: served.base_url + "/api/v1" (what dashscope.base_http_api_url takes)

It checks what DashScope checks: `Authorization: Bearer` (401 InvalidApiKey), the model
(404 ModelNotFound; a vision model only on multimodal-generation and the reverse),
`input.messages` (roles, system only first, string content for text models and
`[{"text"}|{"image"}]` lists for vision models, the last message the user's or a tool's),
parameter ranges (temperature [0, 2), top_p (0, 1) exclusive), embedding batch sizes (25 for
v1/v2, 10 for v3/v4) and dimensions. It answers like DashScope: `result_format` "text" (the
default) gives `output.text`, "message" gives `output.choices`; streaming happens only with
the `X-DashScope-SSE: enable` header, framed `id:N` / `event:result` / `:HTTP_STATUS/200` /
`data:{...}` with no spaces and no end sentinel, cumulative text unless
`incremental_output: true`, `finish_reason: "null"` until the last event, running usage
totals on every event (the first event has `usage: {}`), `event:error` for failures. Embeddings
come back in reverse `text_index` order, so a client must sort them.

Scripting knobs: `reply_text`, `tool_call` (name, arguments JSON: answered when the request
has tools and does not end with a tool result), `fail(status, code, message)` (also status 200:
an error object in a 200 body), `stream_error_after` + `stream_error` (an `event:error` after
N events), plus the `VendorState` knobs. Observations: `requests`, `streams_*`. Served as an
emulator, the request's echo or fixed reply and an automatic call to the first offered tool
(when no `tool_call` is scripted) come from `emulators/scripting.py`; `qwen_faults` says the
injected faults.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from emulators._openai_wire import (
    SSEResponse,
    argument_pieces,
    text_pieces,
    word_count,
)
from emulators._vendor_common import (
    RecordedRequest,
    VendorState,
    fake_vector,
    json_response,
    record,
    stream_frames,
)
from emulators.inject import Asked
from emulators.scripting import Fault, call_of, reply_of

__all__ = ["DEFAULT_API_KEY", "DEFAULT_REPLY", "FakeQwenState", "create_app", "embedding_vector", "frame",
           "qwen_faults"]

DEFAULT_API_KEY = "sk-fake-qwen-0000000000000001"
DEFAULT_REPLY = "你好！ 我是 通义千问， the fake Qwen."
TEXT_PREFIXES = ("qwen", "qwq", "farui")
VISION_PREFIXES = ("qwen-vl", "qwen2-vl", "qwen2.5-vl", "qwen3-vl", "qvq")
EMBEDDING_LIMITS = {"text-embedding-v1": 25, "text-embedding-v2": 25, "text-embedding-v3": 10, "text-embedding-v4": 10}
EMBEDDING_SIZE = 8  # the fake's vectors are short; v3/v4 honour `dimension`
DIMENSIONS = {"text-embedding-v3": (1024, 768, 512, 256, 128, 64, 8),
              "text-embedding-v4": (2048, 1536, 1024, 768, 512, 256, 128, 64, 8)}


class DashScopeError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def invalid(message: str) -> DashScopeError:
    return DashScopeError(400, "InvalidParameter", message)


def error_body(code: str, message: str) -> dict[str, Any]:
    return {"code": code, "message": message, "request_id": str(uuid.uuid4())}


def embedding_vector(text: str, dimension: int = EMBEDDING_SIZE, text_type: str = "document") -> list[float]:
    return fake_vector(text, dimension, text_type)


@dataclass
class FakeQwenState(VendorState):
    api_keys: set[str] = field(default_factory=lambda: {DEFAULT_API_KEY})
    reply_text: str = DEFAULT_REPLY
    tool_call: tuple[str, str] | None = None
    stream_error_after: int | None = None
    stream_error: tuple[int, str, str] = (500, "InternalError", "An internal error has occured, please try again.")

    def fail(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        self.fail_next.append((status, error_body(code, message), headers or {}))


# -- checks -------------------------------------------------------------------------------------


def _check_auth(state: FakeQwenState, headers: dict[str, str]) -> None:
    scheme, _, key = headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        raise DashScopeError(401, "InvalidApiKey", "No API-key provided.")
    if key.strip() not in state.api_keys:
        raise DashScopeError(401, "InvalidApiKey", "Invalid API-key provided.")


def _check_messages(messages: Any, vision: bool) -> None:
    if not isinstance(messages, list) or not messages:
        raise invalid("Input messages must not be empty.")
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in ("system", "user", "assistant", "tool"):
            raise invalid(f"messages[{i}]: role must be one of system, user, assistant, tool")
        if message["role"] == "system" and i != 0:
            raise invalid("System message must be at the beginning.")
        content = message.get("content")
        if vision:
            if not isinstance(content, list) or not all(
                    isinstance(c, dict) and len(c) == 1 and ("text" in c or "image" in c) for c in content):
                raise invalid(f"messages[{i}].content must be a list of {{text}} or {{image}} items")
        elif not isinstance(content, str):
            raise invalid(f"messages[{i}].content: Input should be a valid string")
        if message["role"] == "tool" and (i == 0 or messages[i - 1].get("role") not in ("assistant", "tool")
                                          or not message.get("tool_call_id")):
            raise invalid(f"messages[{i}]: a tool message must answer an assistant's tool_calls")
    if messages[-1]["role"] not in ("user", "tool") and not messages[-1].get("partial"):
        raise invalid("Role must be user or tool for the last message.")


def _check_parameters(parameters: Any) -> dict[str, Any]:
    if parameters is None:
        return {}
    if not isinstance(parameters, dict):
        raise invalid("parameters must be an object")
    temperature, top_p = parameters.get("temperature"), parameters.get("top_p")
    if temperature is not None and not (isinstance(temperature, (int, float)) and 0 <= temperature < 2):
        raise invalid("Range of temperature should be [0.0, 2.0)")
    if top_p is not None and not (isinstance(top_p, (int, float)) and 0 < top_p < 1):
        raise invalid("Range of top_p should be (0.0, 1.0)")
    max_tokens = parameters.get("max_tokens")
    if max_tokens is not None and (not isinstance(max_tokens, int) or max_tokens < 1):
        raise invalid("max_tokens must be a positive integer")
    if parameters.get("result_format", "text") not in ("text", "message"):
        raise invalid("result_format must be text or message")
    return parameters


def _text(content: Any) -> str:
    return content if isinstance(content, str) else " ".join(c.get("text", "") for c in content or ())


# -- answers ------------------------------------------------------------------------------------


class Plan:
    def __init__(self, state: FakeQwenState, body: dict[str, Any], parameters: dict[str, Any], vision: bool) -> None:
        messages = body["input"]["messages"]
        self.request_id = str(uuid.uuid4())
        self.vision = vision
        # multimodal-generation always answers in the message format; text-generation's default is "text"
        self.message_format = vision or parameters.get("result_format") == "message"
        self.incremental = parameters.get("incremental_output") is True
        self.input_tokens = sum(word_count(_text(m.get("content"))) for m in messages)
        offered = bool(parameters.get("tools")) and parameters.get("tool_choice") != "none" \
            and messages[-1]["role"] != "tool"
        self.tool = call_of(state.tool_call) if offered else None
        if self.tool is not None:
            self.pieces = argument_pieces(self.tool[1])
            self.finish = "tool_calls"
            self.call_id = "call_" + uuid.uuid4().hex[:22]
        else:
            self.pieces, truncated = text_pieces(reply_of(state), parameters.get("max_tokens"))
            self.finish = "length" if truncated else "stop"

    def usage(self, output_tokens: int) -> dict[str, Any]:
        return {"total_tokens": self.input_tokens + output_tokens, "input_tokens": self.input_tokens,
                "output_tokens": output_tokens}

    def content(self, text: str) -> Any:
        return [{"text": text}] if self.vision else text

    def message(self, text: str, arguments: str | None = None, first: bool = False) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": self.content(text)}
        if self.tool is not None and arguments is not None:
            message["content"] = self.content("")
            message["tool_calls"] = [{"index": 0, "id": self.call_id if first else "", "type": "function",
                                      "function": {"name": self.tool[0] if first else "", "arguments": arguments}}]
        return message

    def output(self, message: dict[str, Any], finish: str) -> dict[str, Any]:
        if self.message_format:
            return {"choices": [{"finish_reason": finish, "message": message}]}
        return {"text": _text(message["content"]), "finish_reason": finish}

    def response(self) -> dict[str, Any]:
        whole = "".join(self.pieces)
        message = self.message(whole, whole if self.tool else None, first=True)
        return {"output": self.output(message, self.finish), "usage": self.usage(len(self.pieces)),
                "request_id": self.request_id}

    def events(self) -> list[dict[str, Any]]:
        events = [{"output": self.output(self.message("", "" if self.tool else None, first=True), "null"),
                   "usage": {}, "request_id": self.request_id}]
        so_far = ""
        for n, piece in enumerate(self.pieces, 1):
            so_far += piece
            shown = piece if self.incremental else so_far
            message = self.message("" if self.tool else shown, shown if self.tool else None)
            events.append({"output": self.output(message, "null"), "usage": self.usage(n),
                           "request_id": self.request_id})
        last = self.message("" if self.incremental or self.tool else so_far,
                            ("" if self.incremental else so_far) if self.tool else None)
        events.append({"output": self.output(last, self.finish), "usage": self.usage(len(self.pieces)),
                       "request_id": self.request_id})
        return events


def frame(n: int, data: dict[str, Any], event: str = "result", status: int = 200) -> bytes:
    return (f"id:{n}\nevent:{event}\n:HTTP_STATUS/{status}\ndata:".encode() + orjson.dumps(data) + b"\n\n")


def _stream(state: FakeQwenState, plan: Plan) -> SSEResponse:
    frames = [frame(n, event) for n, event in enumerate(plan.events(), 1)]
    errored = state.stream_error_after is not None
    if state.stream_error_after is not None:
        status, code, message = state.stream_error
        frames = frames[:state.stream_error_after]
        frames.append(frame(len(frames) + 1, error_body(code, message), "error", status))
    response = SSEResponse(stream_frames(state, frames, errored))
    response.headers["content-type"] = "text/event-stream;charset=UTF-8"
    return response


# -- app ----------------------------------------------------------------------------------------


def _model(body: dict[str, Any], vision_endpoint: bool) -> str:
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise invalid("Model not specified.")
    vision = model.startswith(VISION_PREFIXES)
    if not vision and not model.startswith(TEXT_PREFIXES):
        raise DashScopeError(404, "ModelNotFound", f"Model not exist: {model}")
    if vision != vision_endpoint:
        raise invalid(f"The model {model} is not supported by this API" +
                      (" (use multimodal-generation)" if vision else " (use text-generation)"))
    return model


Answer = Callable[[RecordedRequest], Response]


def create_app(state: FakeQwenState) -> Starlette:
    async def handle(request: Request, answer: Answer) -> Response:
        recorded = await record(state, request)
        try:
            _check_auth(state, recorded.headers)
            scripted = state.scripted_failure()
            if scripted is not None:
                return scripted
            if not isinstance(recorded.json, dict):
                raise invalid("Request body is not valid JSON.")
            return answer(recorded)
        except DashScopeError as exc:
            return json_response(error_body(exc.code, exc.message), exc.status)

    def generation(vision: bool) -> Callable[[Request], Awaitable[Response]]:
        def answer(recorded: RecordedRequest) -> Response:
            body = recorded.json
            _model(body, vision)
            _check_messages((body.get("input") or {}).get("messages"), vision)
            plan = Plan(state, body, _check_parameters(body.get("parameters")), vision)
            if recorded.headers.get("x-dashscope-sse", "").lower() == "enable":
                return _stream(state, plan)
            return json_response(plan.response())

        async def endpoint(request: Request) -> Response:
            return await handle(request, answer)
        return endpoint

    def embed(recorded: RecordedRequest) -> Response:
        body = recorded.json
        model = body.get("model")
        if model not in EMBEDDING_LIMITS:
            raise DashScopeError(404, "ModelNotFound", f"Model not exist: {model}")
        texts = (body.get("input") or {}).get("texts")
        if not isinstance(texts, list) or not texts or not all(isinstance(t, str) and t for t in texts):
            raise invalid("input.texts must be a non-empty list of non-empty strings")
        if len(texts) > EMBEDDING_LIMITS[model]:
            raise invalid(f"batch size is invalid, it should not be larger than {EMBEDDING_LIMITS[model]}.")
        parameters = body.get("parameters") or {}
        text_type = parameters.get("text_type", "document")
        if text_type not in ("query", "document"):
            raise invalid("text_type must be query or document")
        dimension = parameters.get("dimension", EMBEDDING_SIZE)
        if "dimension" in parameters and dimension not in DIMENSIONS.get(model, ()):
            raise invalid(f"dimension {dimension} is not supported by {model}")
        items = [{"text_index": i, "embedding": embedding_vector(t, dimension, text_type)} for i, t in enumerate(texts)]
        return json_response({"output": {"embeddings": items[::-1]},
                              "usage": {"total_tokens": sum(word_count(t) for t in texts)},
                              "request_id": str(uuid.uuid4())})

    async def embeddings(request: Request) -> Response:
        return await handle(request, embed)

    async def not_found(request: Request) -> Response:
        await record(state, request)
        return json_response(error_body("NotFound", "Not Found"), 404)

    return Starlette(routes=[
        Route("/api/v1/services/aigc/text-generation/generation", generation(False), methods=["POST"]),
        Route("/api/v1/services/aigc/multimodal-generation/generation", generation(True), methods=["POST"]),
        Route("/api/v1/services/embeddings/text-embedding/text-embedding", embeddings, methods=["POST"]),
        Route("/{path:path}", not_found, methods=["GET", "POST", "PUT", "DELETE"]),
    ])


# -- the emulators' injected faults -------------------------------------------------------------

# kind -> (HTTP status, DashScope's code, its message) (qwen.md §6).
FAULT_ERRORS: dict[str, tuple[int, str, str]] = {
    "401": (401, "InvalidApiKey", "Invalid API-key provided."),
    "429": (429, "Throttling.RateQuota", "Requests rate limit exceeded, please try again later."),
    "500": (500, "InternalError", "An internal error has occured, please try again."),
    "overloaded": (503, "ModelUnavailable", "Model is unavailable, please try again later."),
    "error-200": (500, "InternalError", "An internal error has occured, please try again."),
}


def _first_event(asked: Asked) -> dict[str, Any]:
    """The first event of an answer that then fails, in the format the request asked for."""
    body = asked.body if isinstance(asked.body, dict) else {}
    parameters: dict[str, Any] = body["parameters"] if isinstance(body.get("parameters"), dict) else {}
    pieces, _ = text_pieces(reply_of(SimpleNamespace(reply_text=DEFAULT_REPLY)))
    text = pieces[0] if pieces else ""
    vision = asked.path.endswith("/multimodal-generation/generation")
    output: dict[str, Any] = {"text": text, "finish_reason": "null"}
    if vision or parameters.get("result_format") == "message":
        content: Any = [{"text": text}] if vision else text
        output = {"choices": [{"finish_reason": "null", "message": {"role": "assistant", "content": content}}]}
    return {"output": output, "usage": {}, "request_id": str(uuid.uuid4())}


def qwen_faults(fault: Fault, asked: Asked) -> Response:
    """DashScope's errors are `{"code", "message", "request_id"}` with the HTTP status that
    goes with the code (no Retry-After header):

        401         401 InvalidApiKey
        429         429 Throttling.RateQuota
        500         500 InternalError
        overloaded  503 ModelUnavailable
        error-200   a stream (`X-DashScope-SSE: enable`): one `event:result`, then
                    `event:error` with `:HTTP_STATUS/500` and InternalError, in an HTTP 200.
                    DashScope has no error inside a 200 but in a stream (its SDK reads a
                    200 body as an answer), so a request that is not a stream gets the 500
    """
    status, code, message = FAULT_ERRORS[fault.kind]
    if fault.kind != "error-200" or not asked.stream:
        return json_response(error_body(code, message), status)
    frames = [frame(1, _first_event(asked)), frame(2, error_body(code, message), "error", status)]

    async def events() -> Any:
        for one in frames:
            yield one

    response = SSEResponse(events())
    response.headers["content-type"] = "text/event-stream;charset=UTF-8"
    return response
