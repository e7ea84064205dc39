"""A fake Baidu ERNIE (Qianfan v1 wenxinworkshop API) as a Starlette app.
Reference: ../shared/vendors/ernie.md.

It checks what ERNIE checks: the OAuth token call (`grant_type=client_credentials`, a
known `client_id`/`client_secret`, else 401 `invalid_client`), `?access_token=` on every
call (unknown -> error 110, expired -> 111), the chat endpoint suffix (unknown -> error 3),
the message rules (odd length, alternating user/assistant starting with the user side,
`function` turns answering a `function_call`, no system role: error 336003), parameter
ranges (temperature (0, 1], top_p, penalty_score [1, 2], max_output_tokens, stop <= 4:
error 336003), and the embedding batch limits (error 336003). Errors come with HTTP 200,
in stream mode as a bare JSON body (`stream_error_content_type` chooses its Content-Type).
Streams carry `result` increments and cumulative `usage`, end with `is_end`, have no
end sentinel, and are written in awkward pieces.

Scripting: `reply_text`, `function_call` (name, arguments JSON) answered when the request
has functions and does not end with a function result (served as an emulator: the request's
echo or fixed reply, and an automatic call to the first function when none is scripted),
`finish_reason`, `need_clear_history`,
`fail_next` (bodies answered with HTTP 200, or (status, body)), `expires_in`, `token_delay`,
`stream_delay`, `stream_error_after` + `stream_error` (an error_code event after N events),
`expire_tokens()`. A reply cut by `max_output_tokens` finishes with "length". Observations: `token_calls`, `requests`, `embedding_batches`,
`streams_started/finished/aborted`. `ernie_faults` says the emulators' injected faults.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from emulators._openai_wire import SSEResponse, text_pieces, word_count
from emulators._vendor_common import FakeState
from emulators.inject import Asked
from emulators.scripting import Fault, call_of, reply_of

__all__ = ["API_KEY", "CHAT_SUFFIXES", "DEFAULT_REPLY", "EMBEDDING_LIMITS", "SECRET_KEY", "FakeErnieState",
           "create_app", "ernie_faults", "vector"]

API_KEY = "fakeErnieApiKey0000000001"
SECRET_KEY = "fakeErnieSecretKey00000000000001"
DEFAULT_REPLY = "您好，我是文心一言的假模型。 Hello from the fake ERNIE."
WORKSHOP = "/rpc/2.0/ai_custom/v1/wenxinworkshop"
CHAT_SUFFIXES = frozenset({"completions_pro", "completions", "eb-instant", "ernie-lite-8k", "ernie_speed",
                           "ernie-speed-128k", "ernie_bot_8k", "ernie-tiny-8k", "ernie-3.5-8k-0205", "bloomz_7b1"})
EMBEDDING_LIMITS = {"embedding-v1": 16, "bge_large_zh": 16, "bge_large_en": 16, "tao_8k": 1}
DIMENSIONS = 6


def vector(text: str) -> list[float]:
    """The fake's deterministic embedding of a text (float32-exact values)."""
    digest = hashlib.sha256(text.encode()).digest()
    return [struct.unpack("<f", struct.pack("<f", (b - 128) / 128))[0] for b in digest[:DIMENSIONS]]


def _err(code: int, message: str) -> dict[str, Any]:
    return {"error_code": code, "error_msg": message}


@dataclass
class FakeErnieState(FakeState):
    # -- scripting --
    credentials: dict[str, str] = field(default_factory=lambda: {API_KEY: SECRET_KEY})
    expires_in: int = 2592000
    token_delay: float = 0.0
    reply_text: str = DEFAULT_REPLY
    function_call: tuple[str, str] | None = None
    finish_reason: str | None = None
    need_clear_history: bool = False
    fail_next: list[Any] = field(default_factory=list)
    stream_delay: float = 0.0
    stream_error_content_type: str = "application/json"
    stream_error_after: int | None = None  # after N events, an error_code event ends the stream
    stream_error: dict[str, Any] = field(default_factory=lambda: _err(336100, "server high load, please retry"))
    # -- observations / server data --
    tokens: dict[str, float] = field(default_factory=dict)  # access_token -> wall-clock expiry
    token_calls: int = 0
    requests: list[dict[str, Any]] = field(default_factory=list)
    embedding_batches: list[int] = field(default_factory=list)
    streams_started: int = 0
    streams_finished: int = 0
    streams_aborted: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def expire_tokens(self) -> None:
        """Every token issued so far is now expired (calls with it answer error 111)."""
        with self.lock:
            for token in self.tokens:
                self.tokens[token] = 0.0

    @property
    def last_request(self) -> dict[str, Any]:
        assert self.requests, "the fake ERNIE received no request"
        return self.requests[-1]


def _json(body: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type="application/json")


def check_token(state: FakeErnieState, token: str | None) -> dict[str, Any] | None:
    if not token or token not in state.tokens:
        return _err(110, "Access token invalid or no longer valid")
    if state.tokens[token] < time.time():
        return _err(111, "Access token expired")
    return None


def check_chat(body: Any) -> dict[str, Any] | None:
    """ERNIE's validation of a chat body: None when good, else the error body."""
    if not isinstance(body, dict) or not isinstance(body.get("messages"), list) or not body["messages"]:
        return _err(336003, "messages is required")
    messages = body["messages"]
    if len(messages) % 2 == 0:
        return _err(336003, "the length of messages must be an odd number")
    for i, m in enumerate(messages):
        role = m.get("role") if isinstance(m, dict) else None
        expected = ("assistant",) if i % 2 else ("user", "function") if i else ("user",)
        if role not in expected:
            return _err(336003, f"invalid role in message {i}")
        if not isinstance(m.get("content"), str) or (not m["content"] and not m.get("function_call")):
            return _err(336003, f"message {i} content must be a non-empty string")
        if role == "function" and (not m.get("name") or not messages[i - 1].get("function_call")):
            return _err(336003, f"function message {i} must name the function called just before")
    if "system" in body and not isinstance(body["system"], str):
        return _err(336104, "system must be a string")
    checks: dict[str, Callable[[float], bool]] = {"temperature": lambda v: 0 < v <= 1, "top_p": lambda v: 0 <= v <= 1,
              "penalty_score": lambda v: 1 <= v <= 2, "max_output_tokens": lambda v: 2 <= v <= 2048}
    for key, ok in checks.items():
        value = body.get(key)
        if value is not None and (not isinstance(value, int | float) or not ok(value)):
            return _err(336003, f"invalid argument {key}")
    if body.get("stop") is not None and (not isinstance(body["stop"], list) or len(body["stop"]) > 4):
        return _err(336003, "stop must be a list of at most 4 strings")
    for f in body.get("functions") or ():
        if not isinstance(f, dict) or not f.get("name") or not isinstance(f.get("parameters"), dict):
            return _err(336003, "invalid functions")
    return None


def _answer(state: FakeErnieState, body: dict[str, Any]) -> tuple[list[str], dict[str, Any] | None, int, str]:
    """(text pieces, function_call, prompt tokens, finish_reason) of the answer to a good request."""
    prompt = sum(word_count(m["content"]) for m in body["messages"]) + word_count(body.get("system", ""))
    offered = bool(body.get("functions")) and body["messages"][-1]["role"] != "function"
    call = call_of(state.function_call) if offered else None
    if call is not None:
        name, arguments = call
        return [], {"name": name, "arguments": arguments}, prompt, state.finish_reason or "function_call"
    pieces, truncated = text_pieces(reply_of(state), body.get("max_output_tokens"))
    return pieces, None, prompt, state.finish_reason or ("length" if truncated else "normal")


async def _stream(state: FakeErnieState, pieces: list[str], call: dict[str, Any] | None, prompt: int,
                  finish: str) -> Any:
    with state.lock:
        state.streams_started += 1
    chat_id = "as-" + secrets.token_hex(5)
    events: list[dict[str, Any]] = [{"result": p, "function_call": None} for p in pieces] \
        or [{"result": "", "function_call": call}]
    outcome = "streams_aborted"
    try:
        for n, event in enumerate(events):
            if state.stream_error_after is not None and n >= state.stream_error_after:
                yield b"data: " + orjson.dumps(state.stream_error) + b"\n\n"
                outcome = "streams_finished"
                return
            last = n == len(events) - 1
            body = {"id": chat_id, "object": "chat.completion", "created": int(time.time()), "sentence_id": n,
                    "is_end": last, "is_truncated": last and finish == "length", "result": event["result"],
                    "need_clear_history": state.need_clear_history and last, "finish_reason": finish,
                    "usage": {"prompt_tokens": prompt, "completion_tokens": n + 1, "total_tokens": prompt + n + 1}}
            if event["function_call"]:
                body["function_call"] = event["function_call"]
            frame = b"data: " + orjson.dumps(body) + b"\n\n"
            if n:
                await asyncio.sleep(state.stream_delay)
            for cut in (frame[:3], frame[3:len(frame) // 2], frame[len(frame) // 2:-1], frame[-1:]):
                yield cut
                await asyncio.sleep(0)
        outcome = "streams_finished"
    finally:
        with state.lock:
            setattr(state, outcome, getattr(state, outcome) + 1)


def _scripted(state: FakeErnieState, stream: bool) -> Response | None:
    with state.lock:
        if not state.fail_next:
            return None
        spec = state.fail_next.pop(0)
    status, body = spec if isinstance(spec, tuple) else (200, spec)
    if stream and status == 200:
        return Response(orjson.dumps(body), media_type=state.stream_error_content_type)
    return _json(body, status)


def create_app(state: FakeErnieState) -> Starlette:
    async def token(request: Request) -> Response:
        query = request.query_params
        with state.lock:
            state.token_calls += 1
        if state.token_delay:
            await asyncio.sleep(state.token_delay)
        if query.get("grant_type") != "client_credentials":
            return _json({"error": "unsupported_grant_type", "error_description": "unsupported grant type"}, 400)
        if state.credentials.get(query.get("client_id", "")) != query.get("client_secret") \
                or not query.get("client_secret"):
            return _json({"error": "invalid_client", "error_description": "Client authentication failed"}, 401)
        access = f"24.{secrets.token_hex(16)}.{state.expires_in}.{int(time.time())}.282335-8574074"
        with state.lock:
            state.tokens[access] = time.time() + state.expires_in
        return _json({"refresh_token": "25." + secrets.token_hex(8), "expires_in": state.expires_in,
                      "session_key": secrets.token_hex(8), "access_token": access,
                      "scope": "public brain_all_scope ai_custom_yiyan_com_eb_instant wenxinworkshop_mgr",
                      "session_secret": secrets.token_hex(8)})

    async def record(request: Request) -> tuple[Any, dict[str, Any] | None]:
        raw = await request.body()
        try:
            body = orjson.loads(raw) if raw else None
        except orjson.JSONDecodeError:
            body = None
        with state.lock:
            state.requests.append({"path": request.url.path, "query": dict(request.query_params), "json": body})
        return body, check_token(state, request.query_params.get("access_token"))

    async def chat(request: Request) -> Response:
        body, problem = await record(request)
        stream = isinstance(body, dict) and body.get("stream") is True
        scripted = None if problem else _scripted(state, stream)
        if scripted is not None:
            return scripted
        if problem is None and request.path_params["suffix"] not in CHAT_SUFFIXES:
            problem = _err(3, "Unsupported openapi method")
        problem = problem or check_chat(body)
        if problem is not None:
            if stream:
                return Response(orjson.dumps(problem), media_type=state.stream_error_content_type)
            return _json(problem)
        pieces, call, prompt, finish = _answer(state, body)
        if stream:
            return SSEResponse(_stream(state, pieces, call, prompt, finish))
        answer = {"id": "as-" + secrets.token_hex(5), "object": "chat.completion", "created": int(time.time()),
                  "result": "".join(pieces), "is_truncated": finish == "length",
                  "need_clear_history": state.need_clear_history,
                  "finish_reason": finish,
                  "usage": {"prompt_tokens": prompt, "completion_tokens": len(pieces) or 1,
                            "total_tokens": prompt + (len(pieces) or 1)}}
        if call:
            answer["function_call"] = call
        return _json(answer)

    async def embeddings(request: Request) -> Response:
        body, problem = await record(request)
        scripted = None if problem else _scripted(state, False)
        if scripted is not None:
            return scripted
        limit = EMBEDDING_LIMITS.get(request.path_params["suffix"])
        given = body.get("input") if isinstance(body, dict) else None
        texts: list[str] = [t for t in given if isinstance(t, str) and t] if isinstance(given, list) else []
        if problem is None and limit is None:
            problem = _err(3, "Unsupported openapi method")
        if problem is None and (not texts or len(texts) != len(given or ())):
            problem = _err(336003, "input must be a non-empty list of strings")
        if problem is None and limit is not None and len(texts) > limit:
            problem = _err(336003, f"embeddings input length exceeds the limit of {limit}")
        if problem is not None:
            return _json(problem)
        with state.lock:
            state.embedding_batches.append(len(texts))
        tokens = sum(word_count(t) for t in texts)
        return _json({"id": "as-" + secrets.token_hex(5), "object": "embedding_list", "created": int(time.time()),
                      "data": [{"object": "embedding", "embedding": vector(t), "index": i}
                               for i, t in reversed(list(enumerate(texts)))],
                      "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})

    return Starlette(routes=[
        Route("/oauth/2.0/token", token, methods=["POST"]),
        Route(WORKSHOP + "/chat/{suffix}", chat, methods=["POST"]),
        Route(WORKSHOP + "/embeddings/{suffix}", embeddings, methods=["POST"]),
    ])


# -- the emulators' injected faults -------------------------------------------------------------

# kind -> ERNIE's error (ernie.md §6): QPS limit 18, a bad access token 110, internal 336000,
# high load 336100.
FAULT_ERRORS: dict[str, dict[str, Any]] = {
    "401": _err(110, "Access token invalid or no longer valid"),
    "429": _err(18, "Open api qps request limit reached"),
    "500": _err(336000, "Internal error"),
    "overloaded": _err(336100, "server high load, please retry"),
    "error-200": _err(336000, "Internal error"),
}


def _first_event() -> bytes:
    """The first event of an answer that then fails: the start of the reply the request's
    scripting asked for."""
    pieces, _ = text_pieces(reply_of(SimpleNamespace(reply_text=DEFAULT_REPLY)))
    body = {"id": "as-" + secrets.token_hex(5), "object": "chat.completion", "created": int(time.time()),
            "sentence_id": 0, "is_end": False, "is_truncated": False, "result": pieces[0] if pieces else "",
            "need_clear_history": False, "finish_reason": "normal",
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}
    return b"data: " + orjson.dumps(body) + b"\n\n"


def ernie_faults(fault: Fault, asked: Asked) -> Response:
    """ERNIE answers nearly every error with HTTP 200 and `{"error_code", "error_msg"}`, a
    stream's too (a bare JSON body, not an event), and sends no Retry-After:

        401         200 {"error_code": 110, ...}: the access token is not valid (the token
                    endpoint itself, /oauth/2.0/token, answers 401 `invalid_client`)
        429         200 {"error_code": 18, "error_msg": "Open api qps request limit reached"}
        500         200 {"error_code": 336000, "error_msg": "Internal error"}
        overloaded  200 {"error_code": 336100, "error_msg": "server high load, please retry"}
        error-200   a stream: one `result` event, then a `data: {"error_code": 336000, ...}`
                    event and the end (the stream fails midway); else the 500's body
    """
    if asked.path.endswith("/oauth/2.0/token") and fault.kind == "401":
        return _json({"error": "invalid_client", "error_description": "Client authentication failed"}, 401)
    error = FAULT_ERRORS[fault.kind]
    if fault.kind == "error-200" and asked.stream:
        async def events() -> Any:
            yield _first_event()
            yield b"data: " + orjson.dumps(error) + b"\n\n"
        return SSEResponse(events())
    return _json(error)
