"""A fake iFlytek Spark: the websocket API (signed URL, one request frame, response frames)
and the OpenAI-like HTTP API, as a Starlette app. Reference: ../shared/vendors/spark.md.

It checks what Spark checks: the handshake's `authorization`/`date`/`host` query (a known
APIKey, the HMAC-SHA256 signature over host, date and request line with that key's
APISecret, `host` equal to the Host header, a date within `max_skew` seconds) and refuses
with an HTTP 401/403 JSON body instead of switching protocols; then the request frame
(`header.app_id` belongs to the APIKey, `domain` matches the URL path, roles, content,
parameter ranges, functions only on v3+ domains), answering a bad one with an error frame
(`header.code != 0`). The HTTP API checks `Authorization: Bearer <APIPassword>`.

Scripting (on `FakeSparkState`): `handshake_fail` (refuse the next handshakes with a status,
a message and headers, as a gateway in front of Spark does), `reply_text`, `function_call` (name, arguments JSON) used
when the request has functions, `error_code`/`error_message` (an error frame instead of an
answer; for the HTTP API `code != 0` in a 200 body), `error_after` (that many text frames,
then the error frame), `close_early` (close after the text frames without the status-2
frame), `frame_delay`, `last_frame_text` (the last piece rides in the status-2 frame).
Observations: `handshakes`, `rejected`, `frames` (request frames), `http_requests`,
`connections_started/finished/errored/aborted` (aborted: the client closed first).

Served as an emulator (`emulators/inject.py`), a request's echo and automatic function call
come from `emulators/scripting.py`; the websocket's frame is read here, so echo and the
automatic call are worked out from it here too. Faults: `emulators/_faults_spark.py`.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import re
import threading
import time
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

from emulators._openai_wire import SSEResponse, text_pieces, word_count
from emulators._vendor_common import FakeState
from emulators.scripting import call_of, reply_in, reply_of

__all__ = ["API_KEY", "API_PASSWORD", "API_SECRET", "APP_ID", "DEFAULT_REPLY", "PATH_DOMAINS", "FakeSparkState",
           "create_app", "error_frame", "http_sid", "sign", "socket_sid"]

APP_ID = "fa4e0001"
API_KEY = "fake-spark-api-key-0000000000000001"
API_SECRET = "fake-spark-api-secret-00000000000001"
API_PASSWORD = "fake-spark-api-password-000000000001"
DEFAULT_REPLY = "你好！我是讯飞星火的假模型。 Hello from the fake Spark."
# spark.md §A1: the URL path and the domains it accepts.
PATH_DOMAINS: dict[str, frozenset[str]] = {
    "/v1.1/chat": frozenset({"lite", "general"}), "/v2.1/chat": frozenset({"generalv2"}),
    "/v3.1/chat": frozenset({"generalv3"}), "/chat/pro-128k": frozenset({"pro-128k"}),
    "/v3.5/chat": frozenset({"generalv3.5"}), "/chat/max-32k": frozenset({"max-32k"}),
    "/v4.0/chat": frozenset({"4.0Ultra"}),
}
HTTP_MODELS = frozenset({"lite", "general", "generalv3", "pro-128k", "generalv3.5", "max-32k", "4.0Ultra"})
NO_FUNCTIONS = frozenset({"lite", "general", "generalv2"})
DATE_REQUIRED = ("HMAC signature cannot be verified, a valid date or x-date header is required for HMAC "
                 "Authentication")


def sign(api_secret: str, host: str, date: str, path: str) -> str:
    origin = f"host: {host}\ndate: {date}\nGET {path} HTTP/1.1"
    return base64.b64encode(hmac.new(api_secret.encode(), origin.encode(), hashlib.sha256).digest()).decode()


@dataclass
class FakeSparkState(FakeState):
    # -- scripting --
    credentials: dict[str, tuple[str, str]] = field(default_factory=lambda: {API_KEY: (API_SECRET, APP_ID)})
    api_passwords: set[str] = field(default_factory=lambda: {API_PASSWORD})
    max_skew: float = 300.0
    reply_text: str = DEFAULT_REPLY
    function_call: tuple[str, str] | None = None
    error_code: int | None = None
    error_message: str = "scripted error"
    error_after: int | None = None
    close_early: bool = False
    frame_delay: float = 0.0
    last_frame_text: bool = True
    handshake_fail: list[tuple[int, str, dict[str, str]]] = field(default_factory=list)  # popped per handshake
    # -- observations --
    handshakes: list[dict[str, str]] = field(default_factory=list)
    rejected: list[tuple[int, str]] = field(default_factory=list)
    frames: list[Any] = field(default_factory=list)
    http_requests: list[dict[str, Any]] = field(default_factory=list)
    connections_started: int = 0
    connections_finished: int = 0
    connections_errored: int = 0
    connections_aborted: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def count(self, name: str) -> None:
        with self.lock:
            setattr(self, name, getattr(self, name) + 1)


# -- the handshake ------------------------------------------------------------------------------


def _auth_fields(authorization: str) -> dict[str, str]:
    decoded = base64.b64decode(authorization, validate=True).decode()
    decoded = decoded.removeprefix("hmac ")  # one-api's `hmac username="..."` form
    return dict(re.findall(r'(\w+)="([^"]*)"', decoded))


def check_handshake(state: FakeSparkState, query: dict[str, str], host_header: str, path: str) -> tuple[int, str] | None:
    """None when the signed URL is good, else (HTTP status, message) as Spark refuses it."""
    authorization, date, host = query.get("authorization"), query.get("date"), query.get("host")
    if not authorization or not host:
        return 401, "Unauthorized"
    if not date:
        return 401, DATE_REQUIRED
    try:
        when = parsedate_to_datetime(date).timestamp()
    except (TypeError, ValueError):
        return 401, DATE_REQUIRED
    if abs(time.time() - when) > state.max_skew:
        return 401, DATE_REQUIRED
    try:
        auth = _auth_fields(authorization)
    except (ValueError, UnicodeDecodeError):
        return 401, "Unauthorized"
    api_key = auth.get("api_key") or auth.get("username") or ""
    if api_key not in state.credentials:
        return 401, "Unauthorized"
    if auth.get("algorithm") != "hmac-sha256" or auth.get("headers") != "host date request-line":
        return 403, "HMAC signature does not match"
    if host != host_header or not hmac.compare_digest(auth.get("signature", ""),
                                                      sign(state.credentials[api_key][0], host, date, path)):
        return 403, "HMAC signature does not match"
    return None


# -- the request frame --------------------------------------------------------------------------


def check_frame(state: FakeSparkState, frame: Any, path: str, api_key: str) -> tuple[int, str] | None:
    """None when the request frame is good, else (Spark error code, message)."""
    if not isinstance(frame, dict):
        return 10003, "invalid message: not a JSON object"
    header, chat = frame.get("header") or {}, (frame.get("parameter") or {}).get("chat") or {}
    if header.get("app_id") != state.credentials[api_key][1]:
        return 11200, "AppIdNoAuthError: app_id does not match the API key"
    if len(str(header.get("uid", ""))) > 32:
        return 10005, "uid is longer than 32 characters"
    if chat.get("domain") not in PATH_DOMAINS[path]:
        return 10163, f"domain {chat.get('domain')!r} does not match {path}"
    temperature = chat.get("temperature", 0.5)
    if not isinstance(temperature, int | float) or not 0 < temperature <= 1:
        return 10163, "temperature must be in (0, 1]"
    if not 1 <= chat.get("max_tokens", 4096) <= 8192 or not 1 <= chat.get("top_k", 4) <= 6:
        return 10163, "max_tokens or top_k out of range"
    payload = frame.get("payload") or {}
    texts = (payload.get("message") or {}).get("text")
    if not isinstance(texts, list) or not texts:
        return 10004, "payload.message.text is required"
    for item in texts:
        if not isinstance(item, dict) or item.get("role") not in ("system", "user", "assistant") \
                or not isinstance(item.get("content"), str) or not item["content"]:
            return 10004, f"invalid message item {item!r}"
    if texts[-1]["role"] != "user":
        return 10004, "the last message must be the user's"
    if payload.get("functions") is not None:
        functions = (payload["functions"] or {}).get("text")
        if chat["domain"] in NO_FUNCTIONS:
            return 10163, f"functions are not supported by {chat['domain']}"
        if not isinstance(functions, list) or not all(isinstance(f, dict) and f.get("name") for f in functions):
            return 10004, "payload.functions.text must be a list of functions with names"
    return None


def _frame(sid: str, status: int, seq: int, content: str, **extra: Any) -> dict[str, Any]:
    text = {"content": content, "role": "assistant", "index": 0, **extra}
    return {"header": {"code": 0, "message": "Success", "sid": sid, "status": status},
            "payload": {"choices": {"status": status, "seq": seq, "text": [text]}}}


def _usage(texts: list[dict[str, Any]], completion: int) -> dict[str, int]:
    prompt = sum(word_count(t["content"]) for t in texts)
    question = word_count(texts[-1]["content"])
    return {"question_tokens": question, "prompt_tokens": prompt, "completion_tokens": completion,
            "total_tokens": prompt + completion}


def answer_frames(state: FakeSparkState, frame: dict[str, Any], sid: str) -> list[dict[str, Any]]:
    """The frames that answer a good request (without scripted errors)."""
    texts = frame["payload"]["message"]["text"]
    call = call_of(state.function_call, frame) if frame["payload"].get("functions") else None
    if call is not None:
        name, arguments = call
        last = _frame(sid, 2, 0, "", content_type="text", function_call={"arguments": arguments, "name": name})
        last["payload"]["usage"] = {"text": _usage(texts, 0)}
        return [last]
    pieces, _ = text_pieces(reply_in(state, frame), frame["parameter"]["chat"].get("max_tokens"))
    tail = pieces.pop() if state.last_frame_text and pieces else ""
    frames = [_frame(sid, 0 if i == 0 else 1, i, p) for i, p in enumerate(pieces)]
    last = _frame(sid, 2, len(frames), tail)
    last["payload"]["usage"] = {"text": _usage(texts, len(pieces) + (1 if tail else 0))}
    return [*frames, last]


def error_frame(sid: str, code: int, message: str) -> dict[str, Any]:
    return {"header": {"code": code, "message": message, "sid": sid, "status": 2}}


def socket_sid(websocket: WebSocket) -> str:
    return f"cht000{int(time.time() * 1000) % 10**8:08x}@dx18fake{id(websocket) % 10**6:06d}"


def _route_path(websocket: WebSocket) -> str:
    """The path within the app (`/v3.5/chat`) when it is mounted under a prefix (`/spark`):
    the domain goes with it, while the signature covers the whole request line."""
    path, root = websocket.url.path, str(websocket.scope.get("root_path", ""))
    return path[len(root):] if root and path.startswith(root) else path


async def _serve_socket(state: FakeSparkState, websocket: WebSocket) -> None:
    path = websocket.url.path
    query = dict(websocket.query_params)
    with state.lock:
        state.handshakes.append({"path": path, "host": websocket.headers.get("host", ""), **query})
    refused = check_handshake(state, query, websocket.headers.get("host", ""), path)
    headers: dict[str, str] = {}
    with state.lock:
        if refused is None and state.handshake_fail:
            status, message, headers = state.handshake_fail.pop(0)
            refused = (status, message)
        if refused is not None:
            state.rejected.append(refused)
    if refused is not None:
        await websocket.send_denial_response(JSONResponse({"message": refused[1]}, status_code=refused[0],
                                                          headers=headers))
        return
    api_key = _auth_fields(query["authorization"]).get("api_key") or _auth_fields(query["authorization"])["username"]
    await websocket.accept()
    state.count("connections_started")
    sid = socket_sid(websocket)
    outcome = "connections_aborted"
    try:
        text = await asyncio.wait_for(websocket.receive_text(), 10)
        try:
            frame = orjson.loads(text)
        except orjson.JSONDecodeError:
            frame = None
        with state.lock:
            state.frames.append(frame)
        problem = check_frame(state, frame, _route_path(websocket), api_key)
        if problem is None and state.error_code is not None and state.error_after is None:
            problem = (state.error_code, state.error_message)
        if problem is not None:
            await websocket.send_text(orjson.dumps(error_frame(sid, *problem)).decode())
            outcome = "connections_errored"
            return
        frames = answer_frames(state, frame, sid)
        if state.error_after is not None:
            frames = frames[:state.error_after] + [error_frame(sid, state.error_code or 10110, state.error_message)]
        elif state.close_early:
            frames = frames[:-1]
        watcher = asyncio.ensure_future(websocket.receive())  # a close from the client
        try:
            for n, out in enumerate(frames):
                if n:
                    await asyncio.wait({watcher}, timeout=state.frame_delay)
                if watcher.done():
                    return
                await websocket.send_text(orjson.dumps(out).decode())
        finally:
            watcher.cancel()
        outcome = ("connections_errored" if state.error_after is not None or state.close_early
                   else "connections_finished")
    except Exception:  # noqa: BLE001 - the client went away mid-send
        outcome = "connections_aborted"
    finally:
        state.count(outcome)
        with contextlib.suppress(Exception):  # already closed by the client
            await websocket.close()


# -- the HTTP API -------------------------------------------------------------------------------


def http_sid() -> str:
    return f"cha000b{int(time.time() * 1000) % 10**6:06d}@dx1905fake"


async def _http_chat(state: FakeSparkState, request: Request) -> Response:
    body = orjson.loads(await request.body() or b"null")
    auth = request.headers.get("authorization", "")
    with state.lock:
        state.http_requests.append({"headers": dict(request.headers), "json": body})
    if not auth.startswith("Bearer ") or auth[7:] not in state.api_passwords:
        return JSONResponse({"error": {"message": "invalid user", "type": "api_error", "param": None,
                                       "code": None}}, status_code=401)
    sid = http_sid()
    if state.error_code is not None:
        return JSONResponse({"code": state.error_code, "message": state.error_message, "sid": sid})
    if not isinstance(body, dict) or body.get("model") not in HTTP_MODELS or not body.get("messages"):
        return JSONResponse({"code": 10163, "message": "invalid model or messages", "sid": sid})
    words = [m.get("content") or "" for m in body["messages"]]
    pieces, _ = text_pieces(reply_of(state), body.get("max_tokens"))
    prompt = sum(word_count(w) for w in words)
    usage = {"prompt_tokens": prompt, "completion_tokens": len(pieces), "total_tokens": prompt + len(pieces)}
    if not body.get("stream"):
        return JSONResponse({"code": 0, "message": "Success", "sid": sid, "choices": [
            {"message": {"role": "assistant", "content": "".join(pieces)}, "index": 0}], "usage": usage})
    created = int(time.time())

    async def events() -> Any:
        for i, piece in enumerate([*pieces, ""]):
            chunk: dict[str, Any] = {"code": 0, "message": "Success", "sid": sid, "id": sid, "created": created,
                                     "choices": [{"delta": {"role": "assistant", "content": piece}, "index": 0}]}
            if i == len(pieces):
                chunk["usage"] = usage
            yield b"data:" + orjson.dumps(chunk) + b"\n\n"
            await asyncio.sleep(state.frame_delay)
        yield b"data: [DONE]\n\n"

    return SSEResponse(events())


def create_app(state: FakeSparkState) -> Starlette:
    async def socket(websocket: WebSocket) -> None:
        await _serve_socket(state, websocket)

    async def http_chat(request: Request) -> Response:
        return await _http_chat(state, request)

    routes: list[Any] = [WebSocketRoute(path, socket) for path in PATH_DOMAINS]
    routes.append(Route("/v1/chat/completions", http_chat, methods=["POST"]))
    return Starlette(routes=routes)
