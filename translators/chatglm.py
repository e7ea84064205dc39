"""Self-hosted ChatGLM servers (ChatGLM2-6B's `api.py` and `openai_api.py`) behind OpenAI's shapes.

Provider `chatglm`. Zhipu's hosted GLM API is the separate provider `zhipu`
(translators/zhipu.py): the issue names both, and they share nothing but the model family.
Reference: ../shared/vendors/chatglm.md §A-§B.

Credential: `base_url` (required: the server's root, e.g. http://gpu-box:8000; a trailing
`/v1` is tolerated), optional `api_key` (sent as `Authorization: Bearer`, for a proxy in
front: the servers have no auth), optional `api`: `openai` (the default: openai_api.py,
`POST {root}/v1/chat/completions`, the spec row `OPENAI_API`) or `native` (api.py,
`POST {root}/`). Chat only (legacy completions through the chat path); neither server
embeds or transcribes.

Token counts: neither server reports usage, so the gateway estimates it with its one
estimator (translators/_estimate.py: a token per CJK character, one per four other
characters) and marks the usage object `"estimated": true`. Prompt tokens count the text
of every message, completion tokens the answer. The codec sees only the server's side, so
the prompt's count is added where the request is known (`estimated`, the stream's state).
Usage a server does send (ChatGLM3's openai_api_demo does) is used as it is.

native (api.py): messages -> `prompt` + `history` pairs by one documented rule:
system/developer texts are joined and put before the first user turn; the other turns pair
each user turn with the assistant turn after it; consecutive turns of one role are joined
with a blank line; an assistant turn with no user turn before it pairs with an empty
question; the last message must be the user's (400 otherwise, as openai_api.py also says).
`max_tokens` -> `max_length` = estimated prompt tokens + max_tokens (api.py's limit is the
total length); a `temperature` or `top_p` of 0 is sent as 0.01 (api.py reads 0 as "use the
default" 0.95 / 0.7). api.py cannot stream: a streamed request gets the one answer as a
stream (role, the whole text, finish, usage). Its failures are plain-text 500s -> 502.
openai (openai_api.py): text content parts are joined into the string the server wants;
its CRLF-framed stream (keep-alive comments, the DONE sentinel) is decoded by the shared decoder; the
missing `id`/`created` are added (one per stream); a stream cut before its finish chunk (how
openai_api.py fails once streaming) -> 502; its 400 `{"detail": ...}` -> 400.

Rejected with a 400 naming the field: `n` > 1, `logprobs`, `top_logprobs`, tools and
functions (neither server calls tools), image parts, `tool`/`function` messages.
Dropped: every other parameter (openai_api.py ignores even the sampling ones, which are sent).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from keystore.models import Credential, CredentialField
from translators._compatible import CHAT, CompatibleSpec, CompatibleTranslator
from translators._estimate import TokenTally, estimate_tokens, estimated_usage
from translators._http import Headers
from translators._refusals import refuse_choices_and_logprobs, text_only
from translators._shapes import chat_chunk, completion, new_id, usage_chunk
from translators._sse import DONE_DATA, SSEEvent
from translators._stream import Codec, StreamState, event_json, exchange, stream_sse
from translators.base import CallContext, Translator
from translators.errors import (
    ApiError,
    bad_request,
    bad_response,
    incomplete_stream,
    parse_retry_after,
    unsupported,
    upstream_status_error,
)
from translators.types import ChatRequest, JSONObject, ModelType, StreamChunk, Usage

PROVIDER = "chatglm"
APIS = ("openai", "native")


# -- requests ---------------------------------------------------------------------------------------


def turns(req: ChatRequest) -> list[tuple[str, str]]:
    """(role, text) of every message, after refusing what neither server can do."""
    refuse_choices_and_logprobs(req, PROVIDER)
    for key in ("tools", "functions"):
        if req.raw.get(key):
            raise unsupported(PROVIDER, "tools", key)
    out: list[tuple[str, str]] = []
    for i, message in enumerate(req.messages):
        if message.role in ("tool", "function"):
            raise unsupported(PROVIDER, f"'{message.role}' messages (no tool calling)", f"messages[{i}].role")
        content = text_only(message.content, f"messages[{i}]", PROVIDER)
        out.append(("system" if message.role == "developer" else message.role, content))
    if out[-1][0] != "user":
        raise bad_request(f"provider '{PROVIDER}' needs the last message to be the user's", "messages")
    return out


def prompt_tokens(req: ChatRequest) -> int:
    return sum(estimate_tokens(m.content if isinstance(m.content, str) else
                               " ".join(p.text or "" for p in m.content or ())) for m in req.messages)


def to_vendor_request(req: ChatRequest, model: str) -> JSONObject:
    """openai_api.py's body: string contents, the parameters it accepts (and ignores)."""
    body: JSONObject = {"model": model, "messages": [{"role": r, "content": t} for r, t in turns(req)],
                        "stream": req.stream}
    for key in ("temperature", "top_p"):
        if getattr(req, key) is not None:
            body[key] = getattr(req, key)
    if req.token_limit:
        body["max_length"] = prompt_tokens(req) + req.token_limit
    return body


def to_native_request(req: ChatRequest) -> JSONObject:
    """api.py's body: `prompt` + `history` pairs (the rule is in the module docstring)."""
    system: list[str] = []
    pairs: list[list[str]] = []
    pending: list[str] = []  # user texts waiting for their answer
    answer: list[str] = []
    for role, text in turns(req):
        if role == "system":
            system.append(text)
        elif role == "user":
            if answer:
                pairs.append(["\n\n".join(pending), "\n\n".join(answer)])
                pending, answer = [], []
            pending.append(text)
        else:
            answer.append(text)
    if system:
        first = pairs[0] if pairs else None
        prefix = "\n\n".join(system)
        if first is not None:
            first[0] = f"{prefix}\n\n{first[0]}" if first[0] else prefix
        else:
            pending.insert(0, prefix)
    body: JSONObject = {"prompt": "\n\n".join(pending), "history": pairs}
    for key in ("temperature", "top_p"):
        value = getattr(req, key)
        if value is not None:
            body[key] = value or 0.01
    if req.token_limit:
        body["max_length"] = prompt_tokens(req) + req.token_limit
    return body


# -- responses --------------------------------------------------------------------------------------


def error_from_response(status: int, body: Any, headers: Headers | None) -> ApiError:
    """FastAPI's `{"detail": ...}` (a string, or 422's list), plain text, or (a status below
    400) a 200 that is no answer."""
    detail = body.get("detail") if isinstance(body, dict) else None
    if isinstance(detail, list):
        detail = "; ".join(str(d.get("msg", d)) if isinstance(d, dict) else str(d) for d in detail)
    err = body.get("error") if isinstance(body, dict) else None
    if isinstance(err, dict):  # `error_body`'s shape for a plain-text body
        err = err.get("message")
    message = str(detail or err or (body if isinstance(body, str) and body else f"HTTP {status} from {PROVIDER}"))
    if status < 400:
        return bad_response(PROVIDER, f"something that is not an answer: {message[:200]}")
    return upstream_status_error(PROVIDER, status, message, None, None, parse_retry_after(headers))


def _no_error_in_body(body: Any, headers: Headers | None) -> ApiError | None:
    return None  # neither server answers an error with a 200: a 200 that is no answer is a 502 (converters)


def _given_usage(raw: Any) -> Usage | None:
    return Usage.from_openai(raw) if isinstance(raw, dict) and raw.get("total_tokens") else None


def from_vendor_response(body: Any, model: str) -> JSONObject:
    """openai_api.py's answer (no id, no usage) as an OpenAI chat completion; usage only if
    the server counted (see `estimated`)."""
    choices = body.get("choices") if isinstance(body, dict) else None
    if not isinstance(body, dict) or not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise error_from_response(200, body, None)
    content = str((choices[0].get("message") or {}).get("content") or "")
    given = _given_usage(body.get("usage"))
    return completion(str(body.get("id") or new_id()), str(body.get("model") or model),
                      {"role": "assistant", "content": content, "refusal": None},
                      str(choices[0].get("finish_reason") or "stop"), None if given is None else given.as_dict(),
                      body.get("created") or None)


def from_native_response(body: Any, model: str) -> JSONObject:
    """api.py's `{"response", "history", "status", "time"}` as an OpenAI chat completion (no usage)."""
    if not isinstance(body, dict) or not isinstance(body.get("response"), str):
        raise error_from_response(200, body, None)
    return completion(new_id(), model, {"role": "assistant", "content": body["response"], "refusal": None},
                      "stop", None)


def estimated(answer: JSONObject, prompt: int) -> JSONObject:
    """`answer` with the gateway's estimate (`prompt` tokens for the request) where the server
    counted nothing."""
    if answer.get("usage") is None:
        text = answer["choices"][0]["message"]["content"] or ""
        answer["usage"] = {**estimated_usage(prompt, text).as_dict(), "estimated": True}
    return answer


def as_stream(result: JSONObject) -> list[StreamChunk]:
    """A whole answer as a stream: role, the text in one piece, finish, usage."""
    rid, created, model = result["id"], result["created"], result["model"]
    choice = result["choices"][0]
    body = result["usage"]
    return [chat_chunk(rid, created, model, {"role": "assistant", "content": ""}),
            chat_chunk(rid, created, model, {"content": choice["message"]["content"]}),
            chat_chunk(rid, created, model, {}, choice["finish_reason"]),
            usage_chunk(rid, created, model, body, Usage.from_openai(body) or Usage(0, 0, 0))]


# -- the openai_api.py stream -------------------------------------------------------------------------


@dataclass(slots=True)
class ChatGLMState(StreamState):
    """One openai_api.py stream (its chunks carry neither `id` nor `created`: the base's are used)."""

    prompt_tokens: int = 0  # the request's estimate: the codec never sees the request
    # The answer so far, to estimate completion tokens (the server reports none).
    tally: TokenTally = field(default_factory=TokenTally)
    usage: Any = None
    finish: str | None = None


def finish_stream(state: ChatGLMState, done: bool) -> list[StreamChunk]:
    """The end of the stream; `done`: the DONE sentinel came. openai_api.py reports a failure
    once streaming by closing the connection, so an end with neither is an error."""
    if state.finish is None and not (done and not state.tally.empty):
        raise incomplete_stream(PROVIDER, "its last chunk")
    state.finished = True
    chunks = [] if state.finish is not None else [state.chunk({}, "stop")]
    usage = _given_usage(state.usage)
    if usage is not None:
        return [*chunks, state.usage_chunk(usage)]
    usage = estimated_usage(state.prompt_tokens, state.tally.tokens)
    return [*chunks, state.usage_chunk(usage, {**usage.as_dict(), "estimated": True})]


def from_vendor_event(event: SSEEvent, state: ChatGLMState) -> list[StreamChunk]:
    if event.data == DONE_DATA:
        return finish_stream(state, done=True)
    if not event.data:
        return []
    body = event_json(event, PROVIDER)
    if not isinstance(body, dict) or (body.get("detail") or body.get("error")) and not body.get("choices"):
        raise error_from_response(200, body, None)
    if isinstance(body.get("usage"), dict):
        state.usage = body["usage"]
    chunks = []
    for choice in body.get("choices") or ():
        if not isinstance(choice, dict):
            continue
        delta = {k: v for k, v in (choice.get("delta") or {}).items() if k in ("role", "content")}
        if isinstance(delta.get("content"), str):
            state.tally.add(delta["content"])
        finish = choice.get("finish_reason")
        if finish is not None:
            state.finish = str(finish)
        if delta or finish is not None:
            chunks.append(state.chunk(delta, None if finish is None else str(finish)))
    return chunks


def _at_eof(state: ChatGLMState) -> list[StreamChunk]:
    return finish_stream(state, done=False)


# uvicorn's plain "Internal Server Error" is the one line api.py's failures say.
CODEC = Codec(PROVIDER, error_from_response, _no_error_in_body, ChatGLMState, from_vendor_event, _at_eof,
              plain_text_errors=True)


# -- the spec row and the translator ----------------------------------------------------------------


def _root(ctx: CallContext) -> str:
    return ctx.base_url.removesuffix("/v1")


def _headers(ctx: CallContext) -> dict[str, str]:
    key = ctx.credential.get("api_key")
    return {"Authorization": f"Bearer {key}"} if key else {}


def _check_credential(credential: Credential) -> None:
    if credential.get("api", "openai") not in APIS:
        raise bad_request("the chatglm credential's api must be 'openai' or 'native'", "api", "invalid_credential")


DISPLAY_NAME = "ChatGLM"
# Self-hosted: no vendor issues keys; where the API server is documented.
KEY_URL = "https://github.com/THUDM/ChatGLM2-6B/blob/main/README_EN.md#api-deployment"
CREDENTIAL_FIELDS = (
    CredentialField("base_url", secret=False, description="The server's root URL, e.g. http://gpu-box:8000",
                    label="Server URL"),
    CredentialField("api_key", required=False, description="Bearer token for a proxy in front (optional)"),
    CredentialField("api", required=False, secret=False, label="Server API",
                    description="'openai' (openai_api.py, the default) or 'native' (api.py)"),
)
DEFAULT_BASE_URL = "http://127.0.0.1:8000"  # never used: base_url is required

OPENAI_API = CompatibleSpec(
    name=PROVIDER, display_name=DISPLAY_NAME, key_url=KEY_URL, credential_fields=CREDENTIAL_FIELDS,
    default_base_url=DEFAULT_BASE_URL,
    url=lambda ctx, path: f"{_root(ctx)}/v1/{path}",
    headers=_headers,
    codec=CODEC,
    to_vendor_request=to_vendor_request,
    from_vendor_response=lambda body, ctx: from_vendor_response(body, ctx.model),
    stream_usage_option=False,  # usage is estimated here: no server of these counts it
    check_credential=_check_credential,
)


class ChatGLMTranslator(Translator):
    """Two servers behind one provider: `api=openai` is the spec row `OPENAI_API`, `api=native`
    api.py's own format through the same codec's errors."""

    name = PROVIDER
    display_name = DISPLAY_NAME
    key_url = KEY_URL
    model_types = frozenset({ModelType.LLM})
    credential_fields = CREDENTIAL_FIELDS
    default_base_url = DEFAULT_BASE_URL
    catalog = {ModelType.LLM: ("chatglm2-6b", "chatglm3-6b", "chatglm-6b")}
    model_prefixes = {ModelType.LLM: ("chatglm",)}

    def __init__(self) -> None:
        self.openai_api = CompatibleTranslator(OPENAI_API)

    def check_credential(self, credential: Credential) -> None:
        _check_credential(credential)

    async def chat(self, req: ChatRequest, ctx: CallContext) -> JSONObject:
        if ctx.credential.get("api") != "native":
            return estimated(await self.openai_api.chat(req, ctx), prompt_tokens(req))
        body = await exchange(ctx.http, CODEC, f"{_root(ctx)}/", to_native_request(req), headers=_headers(ctx))
        return estimated(from_native_response(body, ctx.model), prompt_tokens(req))

    def chat_stream(self, req: ChatRequest, ctx: CallContext) -> AsyncIterator[StreamChunk]:
        if ctx.credential.get("api") == "native":
            return self._native_stream(req, ctx)
        # The spec row's URL, headers and codec; the recipe is called here because the state
        # needs the request (the prompt's estimate), which a spec row's stream never sees.
        body = to_vendor_request(req, ctx.model)
        state = ChatGLMState(ctx.model, prompt_tokens=prompt_tokens(req))
        return stream_sse(ctx.http, CODEC, ctx.model, self.openai_api.url(ctx, CHAT), headers=_headers(ctx),
                          json=body, state=state)

    async def _native_stream(self, req: ChatRequest, ctx: CallContext) -> AsyncIterator[StreamChunk]:
        for chunk in as_stream(await self.chat(req, ctx)):  # api.py cannot stream
            yield chunk
