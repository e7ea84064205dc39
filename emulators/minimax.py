"""A fake MiniMax vendor: ChatCompletion v2 and embo-01 embeddings in MiniMax's wire format.

    state = FakeMinimaxState()
    with ServedApp(create_app(state)) as served:
        ...  # base URL: served.base_url + "/v1"

Like MiniMax it answers almost everything with HTTP 200 and puts the outcome in
`base_resp`: a missing or wrong key is `1004 login fail`, a GroupId that is not the key's is
1004 as well, a missing GroupId on embeddings, an unknown model, a temperature or top_p
outside (0, 1], a non-positive max_tokens or an embeddings `type` other than db/query are
`2013 invalid params`. Streams are `data: {...}` events: deltas with `usage` zeros (the second
one says `role: ""`), the finish reason on the last delta, then a final `chat.completion`
event that repeats the whole message with the real usage and `base_resp`; no end sentinel
unless `send_done`. A streamed request refused before it starts gets a JSON body (200).
Embeddings answer positional `vectors` (no index).

Scripting knobs: `reply_text`, `tool_call` (name, arguments JSON), `output_sensitive`,
`legacy_usage` (only total_tokens), `send_done`, `fail(code, message)` (a 200 body with that
base_resp), `stream_error_after` + `stream_error` (a base_resp error event after N events),
`embedding_max_batch`, plus the `VendorState` knobs. Served as an emulator, the request's
echo or fixed reply and an automatic call to the first offered tool (when no `tool_call` is
scripted) come from `emulators/scripting.py`; `minimax_faults` says the injected faults.
"""

from __future__ import annotations

import secrets
import time
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
    message_words,
    text_pieces,
    word_count,
)
from emulators._vendor_common import (
    VendorState,
    fake_vector,
    json_response,
    record,
    stream_frames,
)
from emulators.inject import Asked
from emulators.scripting import Fault, call_of, reply_of

__all__ = ["DEFAULT_API_KEY", "DEFAULT_GROUP_ID", "DEFAULT_REPLY", "FakeMinimaxState", "create_app", "event",
           "minimax_faults"]

DEFAULT_API_KEY = "eyJhbGciOiJSUzI1NiJ9.fake-minimax-key-0001"
DEFAULT_GROUP_ID = "1782658868262748467"
DEFAULT_REPLY = "你好！ 我是 MiniMax 的 fake 助手。"
BOT_NAME = "MM智能助理"
MODEL_PREFIXES = ("abab", "MiniMax-")
EMBEDDING_SIZE = 8


class MinimaxError(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


def base_resp(code: int = 0, message: str = "") -> dict[str, Any]:
    return {"base_resp": {"status_code": code, "status_msg": message}}


def error_body(code: int, message: str) -> dict[str, Any]:
    return {"id": "", "choices": None, **base_resp(code, message)}


@dataclass
class FakeMinimaxState(VendorState):
    api_keys: dict[str, str] = field(default_factory=lambda: {DEFAULT_API_KEY: DEFAULT_GROUP_ID})
    reply_text: str = DEFAULT_REPLY
    tool_call: tuple[str, str] | None = None
    output_sensitive: bool = False
    legacy_usage: bool = False
    send_done: bool = False
    stream_error_after: int | None = None
    stream_error: tuple[int, str] = (1039, "token rate limit reached")
    embedding_max_batch: int = 4096  # per langchainjs's MiniMax embeddings

    def fail(self, code: int, message: str) -> None:
        self.fail_next.append((200, error_body(code, message)))


def _authenticate(state: FakeMinimaxState, headers: dict[str, str], query: dict[str, str], need_group: bool) -> None:
    scheme, _, key = headers.get("authorization", "").partition(" ")
    group = state.api_keys.get(key.strip()) if scheme.lower() == "bearer" else None
    if group is None:
        raise MinimaxError(1004, "login fail: Please carry the API secret key in the 'Authorization' field of "
                                 "the request header")
    if "GroupId" not in query and need_group:
        raise MinimaxError(2013, "invalid params, GroupId is required")
    if "GroupId" in query and query["GroupId"] != group:
        raise MinimaxError(1004, "login fail: GroupId does not match the API key")


def _number(body: dict[str, Any], name: str) -> None:
    value = body.get(name)
    if value is not None and not (isinstance(value, (int, float)) and 0 < value <= 1):
        raise MinimaxError(2013, f"invalid params, {name} must be in (0, 1]")


def _check_chat(body: dict[str, Any]) -> list[dict[str, Any]]:
    model = body.get("model")
    if not isinstance(model, str) or not model.startswith(MODEL_PREFIXES):
        raise MinimaxError(2013, f"invalid params, unknown model '{model}'")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise MinimaxError(2013, "invalid params, messages is empty")
    for message in messages:
        if not isinstance(message, dict) or message.get("role") not in ("system", "user", "assistant", "tool"):
            raise MinimaxError(2013, "invalid params, role must be system, user, assistant or tool")
    _number(body, "temperature")
    _number(body, "top_p")
    max_tokens = body.get("max_tokens")
    if max_tokens is not None and (not isinstance(max_tokens, int) or max_tokens < 1):
        raise MinimaxError(2013, "invalid params, max_tokens must be a positive integer")
    return messages


class Plan:
    def __init__(self, state: FakeMinimaxState, body: dict[str, Any], messages: list[dict[str, Any]]) -> None:
        self.id = secrets.token_hex(16)
        self.created = int(time.time())
        self.model = body["model"]
        self.state = state
        self.prompt_tokens = message_words(messages)
        offered = bool(body.get("tools")) and messages[-1]["role"] != "tool"
        self.tool = call_of(state.tool_call) if offered else None
        if self.tool is not None:
            self.pieces, self.finish = argument_pieces(self.tool[1]), "tool_calls"
            self.call_id = "call_function_" + secrets.token_hex(6)
        else:
            self.pieces, truncated = text_pieces(reply_of(state), body.get("max_tokens"))
            self.finish = "length" if truncated else "stop"

    def usage(self) -> dict[str, Any]:
        total = self.prompt_tokens + len(self.pieces)
        if self.state.legacy_usage:
            return {"total_tokens": total}
        return {"total_tokens": total, "total_characters": 0, "prompt_tokens": self.prompt_tokens,
                "completion_tokens": len(self.pieces)}

    def _head(self, obj: str) -> dict[str, Any]:
        return {"id": self.id, "created": self.created, "model": self.model, "object": obj}

    def _flags(self) -> dict[str, Any]:
        return {"input_sensitive": False, "output_sensitive": self.state.output_sensitive}

    def message(self) -> dict[str, Any]:
        message: dict[str, Any] = {"content": "" if self.tool else "".join(self.pieces), "role": "assistant",
                                   "name": BOT_NAME, "audio_content": ""}
        if self.tool is not None:
            message["tool_calls"] = [{"id": self.call_id, "type": "function",
                                      "function": {"name": self.tool[0], "arguments": self.tool[1]}}]
        return message

    def response(self) -> dict[str, Any]:
        return {**self._head("chat.completion"),
                "choices": [{"finish_reason": self.finish, "index": 0, "message": self.message()}],
                "usage": self.usage(), **self._flags(), "input_sensitive_type": 0, "output_sensitive_type": 0,
                "output_sensitive_int": 0, **base_resp()}

    def events(self) -> list[dict[str, Any]]:
        deltas: list[dict[str, Any]] = []
        for n, piece in enumerate(self.pieces):
            role = "assistant" if n != 1 else ""  # MiniMax sometimes says role "" (seen in public reports)
            if self.tool is not None:
                call: dict[str, Any] = {"index": 0, "function": {"arguments": piece}}
                if n == 0:
                    call.update(id=self.call_id, type="function", function={"name": self.tool[0], "arguments": piece})
                deltas.append({"role": role, "content": "", "tool_calls": [call]})
            else:
                deltas.append({"content": piece, "role": role})
        events = []
        for n, delta in enumerate(deltas):
            choice: dict[str, Any] = {"index": 0, "delta": delta}
            if n == len(deltas) - 1:
                choice = {"finish_reason": self.finish, **choice}
            events.append({**self._head("chat.completion.chunk"), "choices": [choice],
                           "usage": {"total_tokens": 0, "total_characters": 0}, **self._flags()})
        events.append(self.response())
        return events


def event(data: Any) -> bytes:
    return b"data: " + (data if isinstance(data, bytes) else orjson.dumps(data)) + b"\n\n"


def create_app(state: FakeMinimaxState) -> Starlette:
    async def chat(request: Request) -> Response:
        recorded = await record(state, request)
        try:
            _authenticate(state, recorded.headers, recorded.query, need_group=False)
            scripted = state.scripted_failure()
            if scripted is not None:
                return scripted
            if not isinstance(recorded.json, dict):
                raise MinimaxError(2013, "invalid params, body is not JSON")
            plan = Plan(state, recorded.json, _check_chat(recorded.json))
        except MinimaxError as exc:
            return json_response(error_body(exc.code, exc.message))
        if not recorded.json.get("stream"):
            return json_response(plan.response())
        frames = [event(e) for e in plan.events()]
        errored = state.stream_error_after is not None
        if state.stream_error_after is not None:
            frames = frames[:state.stream_error_after] + [event(error_body(*state.stream_error))]
        elif state.send_done:
            frames.append(event(b"[DONE]"))
        return SSEResponse(stream_frames(state, frames, errored))

    async def embeddings(request: Request) -> Response:
        recorded = await record(state, request)
        try:
            _authenticate(state, recorded.headers, recorded.query, need_group=True)
            scripted = state.scripted_failure()
            if scripted is not None:
                return scripted
            body = recorded.json if isinstance(recorded.json, dict) else {}
            texts = body.get("texts")
            if body.get("model") != "embo-01":
                raise MinimaxError(2013, f"invalid params, unknown model '{body.get('model')}'")
            if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
                raise MinimaxError(2013, "invalid params, texts must be a non-empty list of strings")
            if len(texts) > state.embedding_max_batch:
                raise MinimaxError(2013, f"invalid params, at most {state.embedding_max_batch} texts")
            if body.get("type") not in ("db", "query"):
                raise MinimaxError(2013, "invalid params, type must be db or query")
        except MinimaxError as exc:
            return json_response(error_body(exc.code, exc.message))
        return json_response({"vectors": [fake_vector(t, EMBEDDING_SIZE, body["type"]) for t in texts],
                              "total_tokens": sum(word_count(t) for t in texts), **base_resp(0, "success")})

    async def not_found(request: Request) -> Response:
        await record(state, request)
        return json_response({"error": "not found"}, 404)

    return Starlette(routes=[
        Route("/v1/text/chatcompletion_v2", chat, methods=["POST"]),
        Route("/v1/embeddings", embeddings, methods=["POST"]),
        Route("/{path:path}", not_found, methods=["GET", "POST", "PUT", "DELETE"]),
    ])


# -- the emulators' injected faults -------------------------------------------------------------

# kind -> MiniMax's base_resp (minimax.md §4). MiniMax has no overload code of its own: a busy
# service answers 1000 "unknown error".
FAULT_CODES: dict[str, tuple[int, str]] = {
    "401": (1004, ("login fail: Please carry the API secret key in the 'Authorization' field of the request "
                   "header")),
    "429": (1002, "rate limit exceeded(RPM)"),
    "500": (1013, "internal service error"),
    "overloaded": (1000, "unknown error"),
    "error-200": (1013, "internal service error"),
}


def minimax_faults(fault: Fault, asked: Asked) -> Response:
    """MiniMax answers every error with HTTP 200 and `base_resp.status_code` (no Retry-After),
    a stream refused before it starts included (a JSON body, not an event):

        401         1004 login fail
        429         1002 rate limit exceeded(RPM)
        500         1013 internal service error
        overloaded  1000 unknown error
        error-200   a stream: one delta event, then `data: {"base_resp": {"status_code": 1013,
                    ...}}` and the end (the stream fails midway); else the 500's body
    """
    code, message = FAULT_CODES[fault.kind]
    if fault.kind != "error-200" or not asked.stream:
        return json_response(error_body(code, message))
    body = asked.body if isinstance(asked.body, dict) else {}
    pieces, _ = text_pieces(reply_of(SimpleNamespace(reply_text=DEFAULT_REPLY)))
    first = {"id": secrets.token_hex(16), "created": int(time.time()), "model": str(body.get("model", "")),
             "object": "chat.completion.chunk",
             "choices": [{"index": 0, "delta": {"content": pieces[0] if pieces else "", "role": "assistant"}}],
             "usage": {"total_tokens": 0, "total_characters": 0}, "input_sensitive": False,
             "output_sensitive": False}

    async def events() -> Any:
        yield event(first)
        yield event(error_body(code, message))

    return SSEResponse(events())
