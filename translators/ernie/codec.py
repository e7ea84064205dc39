"""Baidu ERNIE (v1 wenxinworkshop) <-> OpenAI: the pure half (requests, answers, stream
events, errors, embeddings, the OAuth token answer); no I/O. `translators/ernie/__init__.py`
wires it to the access token and the transport. Reference: ../shared/vendors/ernie.md §3-§7.

The history rule (ERNIE wants `user, assistant, user, ...`: odd length, strictly
alternating, starting and ending with the user side, or it answers error 336003):
1. `system`/`developer` turns are lifted, in order, into the top-level `system` (joined by
   a blank line). Empty turns are left out.
2. An assistant turn's tool call becomes its `function_call` (ERNIE holds one per turn; more
   is a 400); a `tool` result becomes `{"role": "function", "name": <the call's name>}`,
   which stands on the user side.
3. Consecutive turns of the same side are merged into one, their texts joined by a blank
   line; a `function` turn followed by user text becomes one user turn holding both texts.
4. Turns before the first user turn are dropped (ERNIE must open with the user), and so is a
   trailing assistant turn (ERNIE cannot continue one): the conversation ends on the user side.

Errors come with HTTP 200 as `{"error_code": N, "error_msg": ...}`, in streams as a bare
JSON body instead of events (the driver reads it as the error where a stream belongs).
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from translators._auth import refresh_margin
from translators._http import Headers
from translators._refusals import (
    refuse_choices_and_logprobs,
    refuse_non_function_tools,
    refuse_response_format,
    text_only,
)
from translators._shapes import as_int, embedding_items, now
from translators._sse import SSEEvent
from translators._stream import Codec, StreamState, event_json
from translators.errors import (
    ApiError,
    UpstreamError,
    bad_request,
    bad_response,
    incomplete_stream,
    parse_retry_after,
    unsupported,
    upstream_status_error,
)
from translators.types import (
    ChatRequest,
    EmbeddingRequest,
    JSONObject,
    StreamChunk,
    Usage,
)

PROVIDER = "ernie"
DEFAULT_EXPIRES_IN = 2592000  # 30 days, when the token answer does not say

FINISH_REASONS: Mapping[str, str] = {"normal": "stop", "stop": "stop", "length": "length",
                                     "content_filter": "content_filter", "function_call": "tool_calls"}

# error_code -> HTTP status (ernie.md §6). Statuses go through `upstream_status_error`:
# 401/403 -> 403 upstream_credential_rejected, 5xx -> 502, 503 stays. Unknown codes: 502.
ERROR_STATUS: Mapping[int, int] = {
    1: 500, 2: 503, 3: 404, 4: 429, 6: 403, 13: 401, 14: 401, 15: 401, 17: 429, 18: 429, 19: 429,
    100: 400, 110: 401, 111: 401, 336000: 500, 336001: 400, 336002: 400, 336003: 400, 336004: 403,
    336005: 404, 336100: 503, 336101: 500, 336103: 400, 336104: 400, 336105: 400, 336501: 429, 336502: 429,
}
# "Access token invalid or no longer valid" / "Access token expired": refresh and retry once.
TOKEN_ERRORS = frozenset({110, 111})


# -- errors -------------------------------------------------------------------------------


class AccessTokenRefused(UpstreamError):
    """Error 110/111: the access token sent is invalid or expired. What the client sees if it
    stays so; the wiring catches it once to fetch a new token and retry."""


def error_code(body: Any) -> int | None:
    """The `error_code` of an error body (ERNIE's errors come with HTTP 200), else None."""
    code = body.get("error_code") if isinstance(body, dict) else None
    if isinstance(code, str) and code.strip().isdigit():
        code = int(code)
    if code is None or code == 0:
        return None
    return code if isinstance(code, int) and not isinstance(code, bool) else -1


def error_from_response(status: int, body: Any, headers: Headers | None) -> ApiError:
    """`{"error_code": N, "error_msg": ...}` or a non-ERNIE failure body. With HTTP 200 (ERNIE's
    way) the code decides the status; any other HTTP status is trusted before the body."""
    code = error_code(body)
    retry_after = parse_retry_after(headers)
    if code is not None:
        message = f"{body.get('error_msg') or 'error'} (ERNIE error_code {code})"
        mapped = ERROR_STATUS.get(code, 502) if status == 200 else status
        err = upstream_status_error(PROVIDER, mapped, message, str(code), None, retry_after)
        if code in TOKEN_ERRORS:
            return AccessTokenRefused(err.status, err.message, err.type, err.code, err.param, err.retry_after)
        return err
    message = f"HTTP {status} from {PROVIDER}"
    if isinstance(body, dict):
        message = str(body.get("error_description") or body.get("error_msg") or body.get("error") or message)
    if isinstance(body, dict) and body.get("error") in ("invalid_client", "unknown client id"):
        status = 401  # the token endpoint refused the API key / secret key
    if status == 200:
        return bad_response(PROVIDER, "a response that is not an answer")
    return upstream_status_error(PROVIDER, status, message, None, None, retry_after)


def error_in_body(body: Any, headers: Headers | None) -> ApiError | None:
    return error_from_response(200, body, headers) if error_code(body) is not None else None


def token_answer(body: Any) -> tuple[str, float]:
    """The OAuth answer -> (access token, seconds it may be handed out: its lifetime, less a
    tenth of it, at most an hour, so that it is never sent about to expire)."""
    token = body.get("access_token") if isinstance(body, dict) else None
    if not isinstance(token, str):
        raise error_from_response(200, body, None)
    expires_in = body.get("expires_in")
    if not isinstance(expires_in, int | float) or isinstance(expires_in, bool) or expires_in <= 0:
        expires_in = DEFAULT_EXPIRES_IN
    return token, expires_in - refresh_margin(float(expires_in))


# -- request: OpenAI -> ERNIE -------------------------------------------------------------------


def _side(turn: JSONObject) -> str:
    return "assistant" if turn["role"] == "assistant" else "user"


def _merge(prev: JSONObject, turn: JSONObject, where: str) -> None:
    if prev.get("function_call") and turn.get("function_call"):
        raise unsupported(PROVIDER, "two assistant tool calls without a tool result between them", where)
    if prev["role"] == "function" or turn["role"] == "function":  # rule 3: one user turn with both texts
        prev.pop("name", None)
        prev["role"] = "user"
    prev["content"] = "\n\n".join(t for t in (prev["content"], turn["content"]) if t)
    if turn.get("function_call"):
        prev["function_call"] = turn["function_call"]


def conversation(req: ChatRequest) -> tuple[str, list[JSONObject]]:
    """(system, messages) following the history rule of the module docstring."""
    system: list[str] = []
    turns: list[JSONObject] = []
    call_names: dict[str, str] = {}
    for i, message in enumerate(req.messages):
        where = f"messages[{i}]"
        text = text_only(message.content, where, PROVIDER)
        if message.role in ("system", "developer"):
            if text:
                system.append(text)
            continue
        if message.role == "user":
            turn: JSONObject = {"role": "user", "content": text}
        elif message.role == "assistant":
            turn = {"role": "assistant", "content": text}
            calls = message.tool_calls or []
            if len(calls) > 1:
                raise unsupported(PROVIDER, "several tool calls in one assistant turn", f"{where}.tool_calls")
            if calls:
                call_names[calls[0].id] = calls[0].function.name
                turn["function_call"] = {"name": calls[0].function.name, "arguments": calls[0].function.arguments}
        else:  # tool (or the deprecated function) result
            name = message.name if message.role == "function" else call_names.get(message.tool_call_id or "")
            if not name:
                raise bad_request("a tool message must answer a tool call of an earlier assistant turn",
                                  f"{where}.tool_call_id")
            turn = {"role": "function", "name": name, "content": text}
        if not text and not turn.get("function_call"):
            continue
        if turns and _side(turns[-1]) == _side(turn):
            _merge(turns[-1], turn, where)
        else:
            turns.append(turn)
    while turns and turns[0]["role"] != "user":
        turns.pop(0)
    if turns and turns[-1]["role"] == "assistant":
        turns.pop()
    if not turns:
        raise bad_request(f"provider '{PROVIDER}' needs at least one non-empty user message", "messages")
    return "\n\n".join(system), turns


def _refuse_unsupported(req: ChatRequest) -> None:
    refuse_choices_and_logprobs(req, PROVIDER)
    refuse_response_format(req, PROVIDER, "response_format other than text or json_object",
                           allowed=("text", "json_object"))
    stop = [req.stop] if isinstance(req.stop, str) else (req.stop or [])
    if len(stop) > 4:
        raise bad_request(f"provider '{PROVIDER}' accepts at most 4 stop sequences", "stop")
    refuse_non_function_tools(req, PROVIDER)
    if req.tool_choice == "required":
        raise unsupported(PROVIDER, "tool_choice 'required'", "tool_choice")


def to_vendor_request(req: ChatRequest, model: str) -> JSONObject:
    """An OpenAI chat request as an ERNIE v1 chat body (the model is in the URL, not the body)."""
    _refuse_unsupported(req)
    system, messages = conversation(req)
    body: JSONObject = {"messages": messages}
    if system:
        body["system"] = system
    if req.temperature is not None:
        body["temperature"] = min(max(req.temperature, 0.01), 1.0)  # ERNIE: (0, 1]
    if req.top_p is not None:
        body["top_p"] = req.top_p
    stop = [req.stop] if isinstance(req.stop, str) else (req.stop or [])
    if any(stop):
        body["stop"] = [s for s in stop if s]
    if req.token_limit is not None:
        body["max_output_tokens"] = max(req.token_limit, 2)
    if req.user:
        body["user_id"] = req.user
    fmt = req.raw.get("response_format")
    if isinstance(fmt, dict) and fmt.get("type") == "json_object":
        body["response_format"] = "json_object"
    if req.tools and req.tool_choice != "none":
        body["functions"] = [{"name": t.function.name, "description": t.function.description or "",
                              "parameters": t.function.parameters or {"type": "object", "properties": {}}}
                             for t in req.tools]
        if isinstance(req.tool_choice, dict):
            body["tool_choice"] = req.tool_choice
    for key in ("penalty_score", "disable_search", "enable_citation"):  # ERNIE's own knobs, as extra fields
        if key in req.raw:
            body[key] = req.raw[key]
    if req.stream:
        body["stream"] = True
    return body


# -- answers ----------------------------------------------------------------------------------


def tool_call(function_call: Any) -> JSONObject | None:
    if not isinstance(function_call, dict) or not function_call.get("name"):
        return None
    arguments = function_call.get("arguments")
    if not isinstance(arguments, str):
        arguments = orjson.dumps(arguments if arguments is not None else {}).decode()
    return {"id": "call_" + secrets.token_hex(12), "type": "function",
            "function": {"name": str(function_call["name"]), "arguments": arguments}}


def finish_reason(body: JSONObject, tool: bool) -> str:
    if body.get("need_clear_history"):
        return "content_filter"
    reason = body.get("finish_reason")
    if isinstance(reason, str) and reason in FINISH_REASONS:
        return FINISH_REASONS[reason]
    return "tool_calls" if tool else "length" if body.get("is_truncated") else "stop"


def chat_id(value: Any) -> str:
    return f"chatcmpl-{value}" if isinstance(value, str) and value else "chatcmpl-ernie-" + secrets.token_hex(8)


def from_vendor_response(body: Any, model: str) -> JSONObject:
    """A v1 chat answer as an OpenAI chat completion; an `error_code` body raises."""
    if error_code(body) is not None or not isinstance(body, dict) or "result" not in body:
        raise error_from_response(200, body, None)
    call = tool_call(body.get("function_call"))
    result = body.get("result") if isinstance(body.get("result"), str) else ""
    message: JSONObject = {"role": "assistant", "content": result if result or call is None else None,
                           "refusal": None}
    if call is not None:
        message["tool_calls"] = [call]
    usage = Usage.from_openai(body.get("usage")) or Usage(0, 0, 0)
    return {"id": chat_id(body.get("id")), "object": "chat.completion",
            "created": as_int(body.get("created")) or now(), "model": model,
            "choices": [{"index": 0, "message": message, "logprobs": None,
                         "finish_reason": finish_reason(body, call is not None)}],
            "usage": usage.as_dict()}


@dataclass(slots=True)
class ErnieState(StreamState):
    # ERNIE's usage is cumulative on every chunk: the latest replaces, never adds up.
    usage: Usage | None = None
    # A function_call arrived whole on some chunk: finish as tool_calls.
    tool_call: bool = False


def from_vendor_event(event: SSEEvent, state: ErnieState) -> list[StreamChunk]:
    """One stream event -> OpenAI chunks: `result` increments become content deltas, a
    `function_call` a tool-call delta, `is_end` (ERNIE v1 sends no sentinel after it) the
    finish chunk and then the usage chunk last. An `error_code` event raises ApiError."""
    if state.finished:
        return []
    body = event_json(event, PROVIDER)
    if error_code(body) is not None or not isinstance(body, dict):
        raise error_from_response(200, body, None)
    chunks = []
    text = body.get("result") if isinstance(body.get("result"), str) else ""
    if not state.started:  # the first event names the stream; the first delta carries `role`
        state.id = chat_id(body.get("id"))
        state.created = as_int(body.get("created")) or state.created
        chunks.append(state.chunk({"role": "assistant", "content": text}))
        state.started = True
    elif text:
        chunks.append(state.chunk({"content": text}))
    state.usage = Usage.from_openai(body.get("usage")) or state.usage
    call = tool_call(body.get("function_call"))
    if call is not None and not state.tool_call:
        state.tool_call = True
        chunks.append(state.chunk({"tool_calls": [{"index": 0, **call}]}))
    if body.get("is_end"):
        state.finished = True
        chunks.append(state.chunk({}, finish_reason(body, state.tool_call)))
        chunks.append(state.usage_chunk(state.usage or Usage(0, 0, 0)))
    return chunks


def at_eof(state: ErnieState) -> Iterable[StreamChunk]:
    raise incomplete_stream(PROVIDER, "its is_end event")


CODEC: Codec[ErnieState] = Codec(PROVIDER, error_from_response, error_in_body, ErnieState, from_vendor_event, at_eof)


# -- embeddings ---------------------------------------------------------------------------------


def embedding_batches(req: EmbeddingRequest, batch: int) -> list[list[str]]:
    """The request's texts in batches of at most `batch` (ERNIE's per-call limit)."""
    texts = [req.input] if isinstance(req.input, str) else req.input
    if not texts or not all(isinstance(t, str) for t in texts):
        raise unsupported(PROVIDER, "token arrays as embedding input (send text)", "input")
    if any(not t for t in texts):
        raise bad_request("embedding input must not contain empty strings", "input")
    if req.dimensions is not None:
        raise unsupported(PROVIDER, "choosing the embedding dimensions", "dimensions")
    return [texts[i:i + batch] for i in range(0, len(texts), batch)]  # type: ignore[misc]


def from_embedding_responses(bodies: list[Any], model: str, encoding_format: str) -> JSONObject:
    """One OpenAI embeddings answer from the batches' answers, in order; usage summed over the
    batches (separate calls, so these totals do add up)."""
    vectors: list[list[float]] = []
    prompt = total = 0
    for body in bodies:
        if error_code(body) is not None or not isinstance(body, dict) or not isinstance(body.get("data"), list):
            raise error_from_response(200, body, None)
        items = sorted(body["data"], key=lambda d: as_int(d.get("index")))
        vectors += [item.get("embedding") or [] for item in items]
        usage = body.get("usage") or {}
        prompt += as_int(usage.get("prompt_tokens"))
        total += as_int(usage.get("total_tokens")) or as_int(usage.get("prompt_tokens"))
    return {"object": "list", "data": embedding_items(vectors, encoding_format), "model": model,
            "usage": {"prompt_tokens": prompt, "total_tokens": total}}
