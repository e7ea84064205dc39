"""Fakes of the two self-hosted ChatGLM2-6B servers: `api.py` and `openai_api.py`.

    state = FakeChatGLMState()
    with ServedApp(create_app(state, "native")) as served:   # or "openai"
        ...  # the server's root: served.base_url

`api.py` (native): one route, `POST /`, no auth, no streaming. It reads the JSON itself, so a
body that is not JSON, a missing `prompt` or a `history` that is not a list of
[question, answer] pairs fail the way the real one does: a plain-text 500 "Internal Server
Error". Falsy sampling values fall back to the defaults (`x if x else default`: temperature 0
becomes 0.95), `max_length` is the total length (prompt and history included) and cuts the
answer. Answers `{"response", "history", "status": 200, "time"}`; no usage.

`openai_api.py` (openai): `GET /v1/models` and `POST /v1/chat/completions`, any bearer
accepted. The request is a pydantic model: roles user/assistant/system and string contents
only (anything else: FastAPI's 422 `{"detail": [...]}`), extra fields ignored. The last
message must be the user's (400 `{"detail": "Invalid request"}`); a leading system message is
glued onto the query; history is built from user/assistant pairs. Answers have no `id` and no
usage; streams are sse-starlette's: `data: {...}` frames separated by CRLF CRLF, pydantic v1's
`.json()` spacing, no `created`/`id`, a `: ping` comment first, then `data: [DONE]`.

Scripting knobs: `reply_text`, `required_api_key` (a proxy in front that wants a bearer),
`fail(status, body)`, `stream_error_after` (openai_api.py's stream ends after N chunks, no
`[DONE]`: how it reports a failure once streaming), plus the `VendorState` knobs. Observations: `requests`,
`queries` (what the model was asked: (query, history) per call), `effective` (api.py's
sampling values after its defaults). Served as an emulator, the request's echo or fixed reply
comes from `emulators/scripting.py` (neither server has tools); `chatglm_faults` says the
injected faults.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from emulators._openai_wire import SSEResponse, text_pieces, word_count
from emulators._vendor_common import VendorState, json_response, record, stream_frames
from emulators.inject import Asked
from emulators.scripting import Fault, reply_of

__all__ = ["DEFAULT_REPLY", "FakeChatGLMState", "chatglm_faults", "create_app"]

DEFAULT_REPLY = "你好👋！ 我是 人工智能助手 ChatGLM2-6B， 很高兴见到你。"
SERVER_ERROR = "Internal Server Error"


@dataclass
class FakeChatGLMState(VendorState):
    reply_text: str = DEFAULT_REPLY
    required_api_key: str | None = None
    stream_error_after: int | None = None  # openai_api.py fails mid-stream by closing the connection
    queries: list[tuple[str, list[list[str]]]] = field(default_factory=list)
    effective: list[dict[str, Any]] = field(default_factory=list)

    def fail(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        self.fail_next.append((status, body, headers or {}))


def _words(query: str, history: list[list[str]]) -> int:
    return word_count(query) + sum(word_count(q) + word_count(a) for q, a in history)


def _answer(state: FakeChatGLMState, query: str, history: list[list[str]], max_length: int | None) -> list[str]:
    limit = None if max_length is None else max(0, max_length - _words(query, history))
    with state.lock:
        state.queries.append((query, history))
    return text_pieces(reply_of(state), limit)[0]


def _unauthorized(state: FakeChatGLMState, headers: dict[str, str]) -> Response | None:
    if state.required_api_key and headers.get("authorization") != f"Bearer {state.required_api_key}":
        return json_response({"detail": "Not authenticated"}, 401)
    return None


# -- api.py ---------------------------------------------------------------------------------------


def _native(state: FakeChatGLMState, body: Any) -> Response:
    try:
        prompt = body["prompt"]
        history = body.get("history") or []
        if not isinstance(prompt, str) or not all(isinstance(p, list) and len(p) == 2 and
                                                  all(isinstance(s, str) for s in p) for p in history):
            raise TypeError("bad prompt or history")
    except (KeyError, TypeError, AttributeError):
        return Response(SERVER_ERROR, status_code=500, media_type="text/plain")
    max_length, top_p, temperature = body.get("max_length"), body.get("top_p"), body.get("temperature")
    effective: dict[str, Any] = {"max_length": max_length if max_length else 2048,
                                 "top_p": top_p if top_p else 0.7, "temperature": temperature if temperature else 0.95}
    with state.lock:
        state.effective.append(effective)
    reply = "".join(_answer(state, prompt, history, effective["max_length"]))
    return json_response({"response": reply, "history": [*history, [prompt, reply]], "status": 200,
                          "time": time.strftime("%Y-%m-%d %H:%M:%S")})


# -- openai_api.py --------------------------------------------------------------------------------


def _validation_error(loc: list[Any], msg: str) -> Response:
    return json_response({"detail": [{"loc": ["body", *loc], "msg": msg, "type": "value_error"}]}, 422)


PING = b": ping - 2023-07-26 10:00:00.000000\r\n\r\n"


def _chunk(model: str, delta: dict[str, Any], finish: str | None = None) -> bytes:
    """sse-starlette's framing of pydantic v1's `.json()`: spaces after separators, CRLF CRLF."""
    payload = {"model": model, "object": "chat.completion.chunk",
               "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
    return b"data: " + json.dumps(payload, ensure_ascii=False).encode() + b"\r\n\r\n"


def _openai(state: FakeChatGLMState, body: Any) -> Response:
    if not isinstance(body, dict) or not isinstance(body.get("model"), str):
        return _validation_error(["model"], "field required")
    messages = body.get("messages")
    if not isinstance(messages, list):
        return _validation_error(["messages"], "field required")
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in ("user", "assistant", "system"):
            return _validation_error(["messages", i, "role"], "unexpected value; permitted: 'user', 'assistant', "
                                                               "'system'")
        if not isinstance(message.get("content"), str):
            return _validation_error(["messages", i, "content"], "str type expected")
    if not messages or messages[-1]["role"] != "user":
        return json_response({"detail": "Invalid request"}, 400)
    query, previous = messages[-1]["content"], messages[:-1]
    if previous and previous[0]["role"] == "system":
        query = previous.pop(0)["content"] + query
    history = []
    if len(previous) % 2 == 0:
        for q, a in zip(previous[::2], previous[1::2]):
            if q["role"] == "user" and a["role"] == "assistant":
                history.append([q["content"], a["content"]])
    pieces = _answer(state, query, history, None)
    model = body["model"]
    if not body.get("stream"):
        return json_response({"model": model, "object": "chat.completion", "created": int(time.time()),
                              "choices": [{"index": 0, "message": {"role": "assistant", "content": "".join(pieces)},
                                           "finish_reason": "stop"}]})

    frames = [PING, _chunk(model, {"role": "assistant"})]
    frames += [_chunk(model, {"content": p}) for p in pieces]
    frames += [_chunk(model, {}, "stop"), b"data: [DONE]\r\n\r\n"]
    if state.stream_error_after is not None:
        return SSEResponse(stream_frames(state, frames[:state.stream_error_after + 1], errored=True))
    return SSEResponse(stream_frames(state, frames))


def create_app(state: FakeChatGLMState, api: str) -> Starlette:
    async def handle(request: Request) -> Response:
        recorded = await record(state, request)
        refused = _unauthorized(state, recorded.headers) or state.scripted_failure()
        if refused is not None:
            return refused
        return _native(state, recorded.json) if api == "native" else _openai(state, recorded.json)

    async def models(request: Request) -> Response:
        await record(state, request)
        return json_response({"object": "list", "data": [{"id": "gpt-3.5-turbo", "object": "model",
                                                          "created": int(time.time()), "owned_by": "owner"}]})

    async def not_found(request: Request) -> Response:
        await record(state, request)
        return json_response({"detail": "Not Found"}, 404)

    every = ["GET", "POST", "PUT", "DELETE"]
    if api == "native":
        routes = [Route("/", handle, methods=["POST"])]
    else:
        routes = [Route("/v1/chat/completions", handle, methods=["POST"]), Route("/v1/models", models)]
    return Starlette(routes=[*routes, Route("/{path:path}", not_found, methods=every)])


# -- the emulators' injected faults -------------------------------------------------------------


def chatglm_faults(fault: Fault, asked: Asked) -> Response:
    """A self-hosted ChatGLM2-6B server has no keys and no limits of its own: its errors are
    FastAPI's, and a 401 or 429 comes from what guards it (an API-key check, a rate limiter):

        401         401 {"detail": "Not authenticated"} (FastAPI's HTTPBearer)
        429         429 {"detail": "Too Many Requests"} with Retry-After
        500         500 text/plain "Internal Server Error" (an unhandled exception: CUDA out
                    of memory, a bad body)
        overloaded  503 {"detail": "Service Unavailable"}
        error-200   openai_api.py's stream: the ping, the role chunk and one content chunk,
                    then the connection ends without a finish chunk or `[DONE]` (how it
                    fails once streaming); neither server has an error inside a 200 otherwise,
                    so a request that is not a stream gets the 500
    """
    if fault.kind == "401":
        return json_response({"detail": "Not authenticated"}, 401)
    if fault.kind == "429":
        return json_response({"detail": "Too Many Requests"}, 429, {"retry-after": fault.retry_after})
    if fault.kind == "overloaded":
        return json_response({"detail": "Service Unavailable"}, 503)
    if fault.kind == "500" or not asked.stream:
        return Response(SERVER_ERROR, status_code=500, media_type="text/plain")
    body = asked.body if isinstance(asked.body, dict) else {}
    model = str(body.get("model", ""))
    pieces = text_pieces(reply_of(SimpleNamespace(reply_text=DEFAULT_REPLY)))[0]
    frames = [PING, _chunk(model, {"role": "assistant"}), _chunk(model, {"content": pieces[0] if pieces else ""})]

    async def events() -> Any:
        for one in frames:
            yield one

    return SSEResponse(events())
