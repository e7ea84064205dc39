"""A fake Zhipu AI (open.bigmodel.cn v4) vendor: chat completions and embeddings.

    state = FakeZhipuState()
    with ServedApp(create_app(state)) as served:
        ...  # base URL: served.base_url + "/api/paas/v4"

It checks what Zhipu checks. Auth is `Authorization: Bearer <JWT>` (the bare token is
accepted too): HS256 with header `sign_type: SIGN`, payload `api_key` (a known key id),
`exp` and `timestamp` in milliseconds, signed with that key's secret; a missing header is
401 code 1001, a malformed or unknown token 1002, an expired one 1003 (also a token whose
`exp` is in seconds), a bad signature 1004. The raw `id.secret` key is accepted only with
`accept_raw_key`. Chat: a known model (`glm-*`, else 400 1211), messages with valid roles
(tool results need `tool_call_id`), temperature in [0, 1], top_p in (0, 1), `tool_choice`
"auto" only, `user_id` of 6-128 characters (all 400 1214). Answers have no `object`;
streams are `data: {...}` events whose last one carries the finish reason and the usage,
then `data: [DONE]`; errors are `{"error": {"code": "<digits>", "message"}}`.
Embeddings: `embedding-2` (one input per request ⚠, as one-api sends it) and `embedding-3`
(at most 64 inputs ⚠; `dimensions` 256/512/1024/2048), OpenAI-like answers in float only.

Scripting knobs: `reply_text`, `tool_call`, `finish_reason` (force one: "sensitive",
"network_error"), `fail(status, code, message)`, `stream_error_after` + `stream_error`,
plus the `VendorState` knobs. Observations: `requests`, `jwt_payloads`, `streams_*`. Served as
an emulator, the request's echo or fixed reply and an automatic call to the first offered
tool (when no `tool_call` is scripted) come from `emulators/scripting.py`; `zhipu_faults`
says the injected faults.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
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

__all__ = ["DEFAULT_API_KEY", "DEFAULT_REPLY", "FakeZhipuState", "create_app", "zhipu_faults"]

DEFAULT_API_KEY = "fakekeyid0001.fakesecret0000000000000001"
DEFAULT_REPLY = "智谱AI 是 一家 专注于 认知智能 的 fake 公司。"
EMBEDDING_LIMITS = {"embedding-2": 1, "embedding-3": 64}
EMBEDDING_SIZE = 8
DIMENSIONS = (256, 512, 1024, 2048, 8)
STATUS_OF = {"1001": 401, "1002": 401, "1003": 401, "1004": 401, "1211": 400, "1214": 400, "1301": 400,
             "1302": 429, "1113": 429, "500": 500}


class ZhipuError(Exception):
    def __init__(self, code: str, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.code, self.message = code, message
        self.status = status or STATUS_OF.get(code, 400)


def error_body(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}


@dataclass
class FakeZhipuState(VendorState):
    api_keys: set[str] = field(default_factory=lambda: {DEFAULT_API_KEY})
    accept_raw_key: bool = False
    reply_text: str = DEFAULT_REPLY
    tool_call: tuple[str, str] | None = None
    finish_reason: str | None = None
    stream_error_after: int | None = None
    stream_error: tuple[str, str] = ("1302", "您当前使用该API的并发数过高，请降低并发，或联系客服增加限额。")
    jwt_payloads: list[dict[str, Any]] = field(default_factory=list)

    def fail(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        self.fail_next.append((status, error_body(code, message), headers or {}))


def _unb64(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def _authenticate(state: FakeZhipuState, headers: dict[str, str]) -> None:
    value = headers.get("authorization", "").strip()
    if not value:
        raise ZhipuError("1001", "Header中未收到Authentication参数，无法进行身份验证。")
    token = value[7:].strip() if value.lower().startswith("bearer ") else value
    if state.accept_raw_key and token in state.api_keys:
        return
    secrets_by_id = dict(k.split(".", 1) for k in state.api_keys)
    try:
        header_b64, payload_b64, signature_b64 = token.split(".")
        header, payload = json.loads(_unb64(header_b64)), json.loads(_unb64(payload_b64))
        signature = _unb64(signature_b64)
    except (ValueError, binascii.Error):
        raise ZhipuError("1002", "Authentication Token非法，请确认Authentication Token正确传递。") from None
    if header.get("alg") != "HS256" or header.get("sign_type") != "SIGN" or payload.get("api_key") not in secrets_by_id:
        raise ZhipuError("1002", "Authentication Token非法，请确认Authentication Token正确传递。")
    expected = hmac.new(secrets_by_id[payload["api_key"]].encode(), f"{header_b64}.{payload_b64}".encode(),
                        hashlib.sha256).digest()
    if not hmac.compare_digest(expected, signature):
        raise ZhipuError("1004", "Authentication Token验证失败。")
    with state.lock:
        state.jwt_payloads.append(payload)
    if not isinstance(payload.get("exp"), int) or payload["exp"] < time.time() * 1000:
        raise ZhipuError("1003", "Authentication Token已过期，请重新生成/获取。")


def _check_chat(body: dict[str, Any]) -> list[dict[str, Any]]:
    if not isinstance(body.get("model"), str) or not body["model"].startswith("glm-"):
        raise ZhipuError("1211", "模型不存在，请检查模型代码。")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise ZhipuError("1214", "messages 参数非法。请检查文档。")
    for message in messages:
        if not isinstance(message, dict) or message.get("role") not in ("system", "user", "assistant", "tool"):
            raise ZhipuError("1214", "messages 参数非法。请检查文档。")
        if message["role"] == "tool" and not message.get("tool_call_id"):
            raise ZhipuError("1214", "tool 消息需要 tool_call_id。")
    temperature, top_p = body.get("temperature"), body.get("top_p")
    if temperature is not None and not (isinstance(temperature, (int, float)) and 0 <= temperature <= 1):
        raise ZhipuError("1214", "temperature 取值范围是：[0.0, 1.0]。")
    if top_p is not None and not (isinstance(top_p, (int, float)) and 0 < top_p < 1):
        raise ZhipuError("1214", "top_p 取值范围是：(0.0, 1.0)。")
    if body.get("tool_choice") not in (None, "auto"):
        raise ZhipuError("1214", "tool_choice 只支持 auto。")
    user_id = body.get("user_id")
    if user_id is not None and not (isinstance(user_id, str) and 6 <= len(user_id) <= 128):
        raise ZhipuError("1214", "user_id 长度为 6-128 个字符。")
    return messages


class Plan:
    def __init__(self, state: FakeZhipuState, body: dict[str, Any], messages: list[dict[str, Any]]) -> None:
        self.id = str(8313807536837492492 + secrets.randbelow(10**6))
        self.created = int(time.time())
        self.model = body["model"]
        self.prompt_tokens = message_words(messages)
        offered = bool(body.get("tools")) and messages[-1]["role"] != "tool"
        self.tool = call_of(state.tool_call) if offered else None
        if self.tool is not None:
            self.pieces, self.finish = argument_pieces(self.tool[1]), "tool_calls"
            self.call = {"id": f"call_{self.id}", "type": "function", "index": 0,
                         "function": {"name": self.tool[0], "arguments": self.tool[1]}}
        else:
            self.pieces, truncated = text_pieces(reply_of(state), body.get("max_tokens"))
            self.finish = "length" if truncated else "stop"
        self.finish = state.finish_reason or self.finish

    def usage(self) -> dict[str, Any]:
        return {"prompt_tokens": self.prompt_tokens, "completion_tokens": len(self.pieces),
                "total_tokens": self.prompt_tokens + len(self.pieces)}

    def response(self) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": "" if self.tool else "".join(self.pieces)}
        if self.tool is not None:
            message["tool_calls"] = [self.call]
        return {"id": self.id, "request_id": self.id, "created": self.created, "model": self.model,
                "choices": [{"index": 0, "finish_reason": self.finish, "message": message}], "usage": self.usage()}

    def events(self) -> list[dict[str, Any]]:
        head = {"id": self.id, "created": self.created, "model": self.model}
        if self.tool is not None:
            deltas = [{"role": "assistant", "tool_calls": [self.call]}]
        else:
            deltas = [{"role": "assistant", "content": p} for p in self.pieces]
        events = [{**head, "choices": [{"index": 0, "delta": d}]} for d in deltas[:-1]]
        events.append({**head, "choices": [{"index": 0, "finish_reason": self.finish, "delta": deltas[-1]}],
                       "usage": self.usage()})
        return events


def event(data: Any) -> bytes:
    return b"data: " + (data if isinstance(data, bytes) else orjson.dumps(data)) + b"\n\n"


def create_app(state: FakeZhipuState) -> Starlette:
    async def handle(request: Request, answer: Callable[[dict[str, Any]], Response]) -> Response:
        recorded = await record(state, request)
        try:
            _authenticate(state, recorded.headers)
            scripted = state.scripted_failure()
            if scripted is not None:
                return scripted
            if not isinstance(recorded.json, dict):
                raise ZhipuError("1214", "请求体不是合法的 JSON。")
            return answer(recorded.json)
        except ZhipuError as exc:
            return json_response(error_body(exc.code, exc.message), exc.status)

    def chat_answer(body: dict[str, Any]) -> Response:
        plan = Plan(state, body, _check_chat(body))
        if not body.get("stream"):
            return json_response(plan.response())
        frames = [event(e) for e in plan.events()]
        errored = state.stream_error_after is not None
        if state.stream_error_after is not None:
            frames = frames[:state.stream_error_after] + [event(error_body(*state.stream_error))]
        else:
            frames.append(event(b"[DONE]"))
        return SSEResponse(stream_frames(state, frames, errored))

    def embeddings_answer(body: dict[str, Any]) -> Response:
        model = body.get("model")
        if model not in EMBEDDING_LIMITS:
            raise ZhipuError("1211", "模型不存在，请检查模型代码。")
        texts = body.get("input")
        texts = [texts] if isinstance(texts, str) else texts
        if not isinstance(texts, list) or not texts or not all(isinstance(t, str) and t for t in texts):
            raise ZhipuError("1214", "input 参数非法。")
        if len(texts) > EMBEDDING_LIMITS[model]:
            raise ZhipuError("1214", f"input 数组最多 {EMBEDDING_LIMITS[model]} 条。")
        dimensions = body.get("dimensions", EMBEDDING_SIZE)
        if "dimensions" in body and (model != "embedding-3" or dimensions not in DIMENSIONS):
            raise ZhipuError("1214", "dimensions 参数非法。")
        tokens = sum(word_count(t) for t in texts)
        return json_response({"model": model, "object": "list",
                              "data": [{"index": i, "object": "embedding", "embedding": fake_vector(t, dimensions)}
                                       for i, t in enumerate(texts)],
                              "usage": {"prompt_tokens": tokens, "completion_tokens": 0, "total_tokens": tokens}})

    async def chat(request: Request) -> Response:
        return await handle(request, chat_answer)

    async def embeddings(request: Request) -> Response:
        return await handle(request, embeddings_answer)

    async def not_found(request: Request) -> Response:
        await record(state, request)
        return json_response(error_body("404", "Not Found"), 404)

    return Starlette(routes=[
        Route("/api/paas/v4/chat/completions", chat, methods=["POST"]),
        Route("/api/paas/v4/embeddings", embeddings, methods=["POST"]),
        Route("/{path:path}", not_found, methods=["GET", "POST", "PUT", "DELETE"]),
    ])


# -- the emulators' injected faults -------------------------------------------------------------

# kind -> (HTTP status, Zhipu's code, its message) (chatglm.md §C7: a string of digits).
FAULT_ERRORS: dict[str, tuple[int, str, str]] = {
    "401": (401, "1002", "Authentication Token非法，请确认Authentication Token正确传递。"),
    "429": (429, "1302", "您当前使用该API的并发数过高，请降低并发，或联系客服增加限额。"),
    "500": (500, "500", "服务内部错误，请稍后重试。"),
    "overloaded": (503, "1305", "当前API请求过多，请稍后重试。"),
    "error-200": (200, "500", "服务内部错误，请稍后重试。"),
}


def zhipu_faults(fault: Fault, asked: Asked) -> Response:
    """Zhipu's errors are `{"error": {"code": "<digits>", "message"}}` with the HTTP status
    that goes with the code (no Retry-After header):

        401         401 code 1002 (the token is not valid)
        429         429 code 1302 (too many concurrent requests)
        500         500 code 500
        overloaded  503 code 1305 (too many requests for the service now)
        error-200   a stream: one delta event, then `data: {"error": {"code": "500", ...}}`
                    and the end, no `[DONE]`; else a 200 completion whose finish_reason is
                    "network_error" (how Zhipu reports a failed inference in a 200)
    """
    status, code, message = FAULT_ERRORS[fault.kind]
    if fault.kind != "error-200":
        return json_response(error_body(code, message), status)
    body = asked.body if isinstance(asked.body, dict) else {}
    answer_id = str(8313807536837492492 + secrets.randbelow(10**6))
    head = {"id": answer_id, "created": int(time.time()), "model": str(body.get("model", ""))}
    if not asked.stream:
        return json_response({**head, "request_id": answer_id, "choices": [
            {"index": 0, "finish_reason": "network_error", "message": {"role": "assistant", "content": ""}}],
            "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}})
    pieces, _ = text_pieces(reply_of(SimpleNamespace(reply_text=DEFAULT_REPLY)))
    first = {**head, "choices": [{"index": 0, "delta": {"role": "assistant", "content": pieces[0] if pieces else ""}}]}

    async def events() -> Any:
        yield event(first)
        yield event(error_body(code, message))

    return SSEResponse(events())
