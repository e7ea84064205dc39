"""iFlytek Spark's words for the injected faults (`emulators/inject.py`), for both of its
APIs. Reference: ../shared/vendors/spark.md §A2, §A6 and §B (codes ⚠ from iFlytek's lists).

The websocket API (`spark_socket_faults`) refuses a bad signature before switching
protocols, with a JSON `{"message"}` and an HTTP status; every other failure arrives after
the handshake as a frame whose `header.code` is not 0, and the socket closes:

    401         handshake refused: HTTP 401 {"message": "Unauthorized"}
    429         error frame 11202 (QPS over the limit) instead of an answer
    500         error frame 10012 (engine internal error)
    overloaded  error frame 10110 (service busy: no free licence)
    error-200   one answer frame (code 0), then error frame 10012: the answer fails midway
    reset       one answer frame, then the socket closes (1011) without the status-2 frame

The HTTP API (`spark_faults`) refuses a bad APIPassword with an HTTP 401 and OpenAI's
error shape; other errors are `code != 0` in an HTTP 200 body (`{"code", "message",
"sid"}`, no Retry-After), the same codes as the websocket's. `error-200` on a stream
sends one chunk and then the error chunk, without `[DONE]`.
"""

from __future__ import annotations

import asyncio
import contextlib
from types import SimpleNamespace
from typing import Any

import orjson
from starlette.responses import JSONResponse, Response
from starlette.websockets import WebSocket

from emulators._openai_wire import SSEResponse, text_pieces
from emulators.inject import Asked
from emulators.scripting import Fault, reply_in
from emulators.spark import DEFAULT_REPLY, error_frame, http_sid, socket_sid

__all__ = ["ERROR_CODES", "spark_faults", "spark_socket_faults"]

# kind -> (Spark's code, its message); the same on both APIs.
ERROR_CODES: dict[str, tuple[int, str]] = {
    "429": (11202, "AppIdQpsOverFlowError: the QPS of this app id is over its limit"),
    "500": (10012, "EngineInternalError: internal error of the engine"),
    "overloaded": (10110, "EngineBusyError: the service is busy, please try again later"),
    "error-200": (10012, "EngineInternalError: internal error of the engine"),
}
UNAUTHORIZED = "Unauthorized"
FRAME_TIMEOUT = 10.0  # as the app waits for the request frame


def _first_piece(body: Any) -> str:
    """The start of the answer a failing answer gets to send: what the request's scripting
    asked for (echo, a fixed reply), else the fake's own reply."""
    text = reply_in(SimpleNamespace(reply_text=DEFAULT_REPLY), body)
    pieces, _ = text_pieces(text, None)
    return pieces[0] if pieces else text


# -- the HTTP API -------------------------------------------------------------------------------


def spark_faults(fault: Fault, asked: Asked) -> Response:
    if fault.kind == "401":
        return JSONResponse({"error": {"message": "invalid user", "type": "api_error", "param": None,
                                       "code": None}}, status_code=401)
    code, message = ERROR_CODES[fault.kind]
    sid = http_sid()
    error = {"code": code, "message": message, "sid": sid}
    if fault.kind != "error-200" or not asked.stream:
        return JSONResponse(error)
    first = {"code": 0, "message": "Success", "sid": sid, "id": sid,
             "choices": [{"delta": {"role": "assistant", "content": _first_piece(asked.body)}, "index": 0}]}

    async def events() -> Any:
        for chunk in (first, error):
            yield b"data:" + orjson.dumps(chunk) + b"\n\n"

    return SSEResponse(events())


# -- the websocket API --------------------------------------------------------------------------


def _answer_frame(sid: str, content: str) -> dict[str, Any]:
    return {"header": {"code": 0, "message": "Success", "sid": sid, "status": 0},
            "payload": {"choices": {"status": 0, "seq": 0,
                                    "text": [{"content": content, "role": "assistant", "index": 0}]}}}


async def _request_frame(websocket: WebSocket) -> Any:
    text = await asyncio.wait_for(websocket.receive_text(), FRAME_TIMEOUT)
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return None


async def spark_socket_faults(fault: Fault, websocket: WebSocket) -> None:
    if fault.kind == "401":
        await websocket.send_denial_response(JSONResponse({"message": UNAUTHORIZED}, status_code=401))
        return
    await websocket.accept()
    sid = socket_sid(websocket)
    close_code = 1000
    try:
        with contextlib.suppress(Exception):  # the client went away or sent nothing
            frame = await _request_frame(websocket)
            if fault.kind in ("error-200", "reset"):
                await websocket.send_text(orjson.dumps(_answer_frame(sid, _first_piece(frame))).decode())
            if fault.kind == "reset":
                close_code = 1011  # no status-2 frame: the answer stops short
            else:
                await websocket.send_text(orjson.dumps(error_frame(sid, *ERROR_CODES[fault.kind])).decode())
    finally:
        with contextlib.suppress(Exception):  # already closed by the client
            await websocket.close(close_code)
