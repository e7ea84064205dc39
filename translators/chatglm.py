"""Self-hosted ChatGLM servers (ChatGLM2-6B's `api.py` and `openai_api.py`) behind OpenAI's shapes.

Provider `chatglm`. Zhipu's hosted GLM API is the separate provider `zhipu`
(translators/zhipu.py): the issue names both, and they share nothing but the model family.
Reference: ../shared/vendors/chatglm.md §A-§B.

Credential: `base_url` (required: the server's root, e.g. http://gpu-box:8000; a trailing
`/v1` is tolerated), optional `api_key` (sent as `Authorization: Bearer`, for a proxy in
front: the servers have no auth), optional `api`: `openai` (the default: openai_api.py,
`POST {root}/v1/chat/completions`) or `native` (api.py, `POST {root}/`).
Chat only (legacy completions through the chat path); neither server embeds or transcribes.

Token counts: neither server reports usage, so the gateway counts locally and marks the
usage object `"estimated": true`: one token per CJK (or kana, hangul) character, one per
run of other letters and digits, one per other non-space character, which follows
ChatGLM's SentencePiece tokenizer closely on mixed Chinese/English text. Prompt tokens
count the text of every message, completion tokens the answer. Usage a server does send
(ChatGLM3's openai_api_demo does) is used as it is.

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

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import orjson

from keystore.models import Credential, CredentialField
from translators._http import Headers
from translators._json import loads as bounded_json
from translators._refusals import refuse_choices_and_logprobs, text_only
from translators._shapes import chat_chunk, completion, new_id, now, usage_chunk
from translators._sse import DONE_DATA, aiter_sse
from translators.base import CallContext, Translator
from translators.errors import (
    ApiError,
    UpstreamError,
    bad_request,
    body_text,
    parse_retry_after,
    unsupported,
    upstream_status_error,
)
from translators.openai_compatible import OpenAICompatible
from translators.types import ChatRequest, JSONObject, ModelType, StreamChunk, Usage

PROVIDER = "chatglm"
APIS = ("openai", "native")
_ASIAN = "\u2e80-\u9fff\uf900-\ufaff\u3040-\u30ff\uac00-\ud7af"
_TOKEN = re.compile(f"[{_ASIAN}]|[^\\W{_ASIAN}]+|[^\\w\\s]")


def estimate_tokens(text: str) -> int:
    return len(_TOKEN.findall(text))


# -- requests ---------------------------------------------------------------------------------------


def turns(req: ChatRequest) -> list[tuple[str, str]]:
    """(role, text) of every message, after refusing what neither server can do."""
    refuse_choices_and_logprobs(req, PROVIDER)
    for key in ("tools", "functions"):
        if req.raw.get(key):
            raise unsupported(PROVIDER, "tools", key)
    out = []
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


def usage_of(raw: Any, prompt: int, answer: str) -> tuple[JSONObject, Usage]:
    given = Usage.from_openai(raw) if isinstance(raw, dict) and raw.get("total_tokens") else None
    if given is not None:
        return given.as_dict(), given
    usage = Usage(prompt, estimate_tokens(answer), prompt + estimate_tokens(answer))
    return {**usage.as_dict(), "estimated": True}, usage


def from_vendor_response(body: Any, model: str, prompt: int) -> JSONObject:
    """openai_api.py's answer (no id, no usage) as an OpenAI chat completion."""
    choices = body.get("choices") if isinstance(body, dict) else None
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise error_from_response(200, body, None)
    content = str((choices[0].get("message") or {}).get("content") or "")
    usage, _ = usage_of(body.get("usage"), prompt, content)
    return completion(str(body.get("id") or new_id()), str(body.get("model") or model),
                      {"role": "assistant", "content": content, "refusal": None},
                      str(choices[0].get("finish_reason") or "stop"), usage, body.get("created") or None)


def from_native_response(body: Any, model: str, prompt: int) -> JSONObject:
    """api.py's `{"response", "history", "status", "time"}` as an OpenAI chat completion."""
    if not isinstance(body, dict) or not isinstance(body.get("response"), str):
        raise error_from_response(200, body, None)
    usage, _ = usage_of(None, prompt, body["response"])
    return completion(new_id(), model, {"role": "assistant", "content": body["response"], "refusal": None},
                      "stop", usage)


def as_stream(result: JSONObject) -> list[StreamChunk]:
    """A whole answer as a stream: role, the text in one piece, finish, usage."""
    rid, created, model = result["id"], result["created"], result["model"]
    choice = result["choices"][0]
    usage = result["usage"]
    return [chat_chunk(rid, created, model, {"role": "assistant", "content": ""}),
            chat_chunk(rid, created, model, {"content": choice["message"]["content"]}),
            chat_chunk(rid, created, model, {}, choice["finish_reason"]),
            usage_chunk(rid, created, model, usage, Usage.from_openai(usage))]  # type: ignore[arg-type]


@dataclass(slots=True)
class StreamState:
    """What translating one openai_api.py stream must remember between events."""

    model: str
    prompt_tokens: int
    # The server's chunks carry neither `id` nor `created`: one of each for the whole stream.
    id: str = field(default_factory=new_id)
    created: int = field(default_factory=now)
    # The answer so far, to estimate completion tokens (the server reports none).
    text: list[str] = field(default_factory=list)
    usage: Any = None
    finish: str | None = None


def from_vendor_event(event: Any, state: StreamState) -> list[StreamChunk]:
    if not isinstance(event, dict) or (event.get("detail") or event.get("error")) and not event.get("choices"):
        raise error_from_response(200, event, None)
    if isinstance(event.get("usage"), dict):
        state.usage = event["usage"]
    chunks = []
    for choice in event.get("choices") or ():
        delta = {k: v for k, v in (choice.get("delta") or {}).items() if k in ("role", "content")}
        if isinstance(delta.get("content"), str):
            state.text.append(delta["content"])
        finish = choice.get("finish_reason")
        if finish is not None:
            state.finish = str(finish)
        if delta or finish is not None:
            chunks.append(chat_chunk(state.id, state.created, state.model, delta, finish))
    return chunks


def finish_stream(state: StreamState, done: bool) -> list[StreamChunk]:
    """The end of the stream; `done`: the DONE sentinel came. openai_api.py reports a failure
    once streaming by closing the connection, so an end with neither is an error."""
    if state.finish is None and not (done and state.text):
        raise UpstreamError(502, f"the {PROVIDER} stream ended before its last chunk", "server_error",
                            "upstream_incomplete_stream")
    chunks = [] if state.finish is not None else [chat_chunk(state.id, state.created, state.model, {}, "stop")]
    body, usage = usage_of(state.usage, state.prompt_tokens, "".join(state.text))
    return [*chunks, usage_chunk(state.id, state.created, state.model, body, usage)]


def error_from_response(status: int, body: Any, headers: Headers | None) -> ApiError:
    """FastAPI's `{"detail": ...}` (a string, or 422's list), plain text, or a 200 that is no answer."""
    detail = body.get("detail") if isinstance(body, dict) else None
    if isinstance(detail, list):
        detail = "; ".join(str(d.get("msg", d)) if isinstance(d, dict) else str(d) for d in detail)
    message = str(detail or (body.get("error") if isinstance(body, dict) else None) or
                  (body if isinstance(body, str) and body else f"HTTP {status} from {PROVIDER}"))
    if status == 200:
        return UpstreamError(502, f"{PROVIDER} returned something that is not an answer: {message[:200]}",
                             "server_error", "upstream_bad_response")
    return upstream_status_error(PROVIDER, status, message, None, None, parse_retry_after(headers))


def _parsed(payload: bytes) -> Any:
    try:
        return bounded_json(payload) if payload else None
    except orjson.JSONDecodeError:
        return body_text(payload, plain_text=True)  # uvicorn's plain "Internal Server Error"


# -- the translator ---------------------------------------------------------------------------------


class ChatGLMTranslator(OpenAICompatible):
    name = PROVIDER
    display_name = "ChatGLM"
    # Self-hosted: no vendor issues keys; where the API server is documented.
    key_url = "https://github.com/THUDM/ChatGLM2-6B/blob/main/README_EN.md#api-deployment"
    model_types = frozenset({ModelType.LLM})
    credential_fields = (
        CredentialField("base_url", secret=False, description="The server's root URL, e.g. http://gpu-box:8000",
                        label="Server URL"),
        CredentialField("api_key", required=False, description="Bearer token for a proxy in front (optional)"),
        CredentialField("api", required=False, secret=False, label="Server API",
                        description="'openai' (openai_api.py, the default) or 'native' (api.py)"),
    )
    default_base_url = "http://127.0.0.1:8000"  # never used: base_url is required
    catalog = {ModelType.LLM: ("chatglm2-6b", "chatglm3-6b", "chatglm-6b")}
    model_prefixes = {ModelType.LLM: ("chatglm",)}

    complete = Translator.complete
    complete_stream = Translator.complete_stream
    embed = Translator.embed
    transcribe = Translator.transcribe

    def check_credential(self, credential: Credential) -> None:
        if credential.get("api", "openai") not in APIS:
            raise bad_request("the chatglm credential's api must be 'openai' or 'native'", "api",
                              "invalid_credential")

    def headers(self, ctx: CallContext) -> dict[str, str]:
        key = ctx.credential.get("api_key")
        return {"Authorization": f"Bearer {key}"} if key else {}

    def url(self, ctx: CallContext, endpoint: str) -> str:
        root = ctx.base_url.removesuffix("/v1")
        return f"{root}/" if ctx.credential.get("api") == "native" else f"{root}/v1/{endpoint}"

    async def _call(self, req: ChatRequest, ctx: CallContext) -> JSONObject:
        native = ctx.credential.get("api") == "native"
        body = to_native_request(req) if native else {**to_vendor_request(req, ctx.model), "stream": False}
        resp = await ctx.http.post_json(self.url(ctx, "chat/completions"), body, self.headers(ctx))
        if resp.status != 200:
            raise error_from_response(resp.status, _parsed(resp.body), resp.headers)
        convert = from_native_response if native else from_vendor_response
        return convert(_parsed(resp.body), ctx.model, prompt_tokens(req))

    async def chat(self, req: ChatRequest, ctx: CallContext) -> JSONObject:
        return await self._call(req, ctx)

    async def chat_stream(self, req: ChatRequest, ctx: CallContext) -> AsyncIterator[StreamChunk]:
        if ctx.credential.get("api") == "native":
            for chunk in as_stream(await self._call(req, ctx)):
                yield chunk
            return
        body = {**to_vendor_request(req, ctx.model), "stream": True}
        async with ctx.http.stream("POST", self.url(ctx, "chat/completions"), headers=self.headers(ctx),
                                   json=body) as resp:
            if resp.status != 200 or "json" in resp.headers.get("Content-Type", ""):
                raise error_from_response(resp.status, _parsed(await resp.read()), resp.headers)
            state = StreamState(ctx.model, prompt_tokens(req))
            done = False
            async for event in aiter_sse(resp.chunks(), resp.max_event_bytes):
                if event.data == DONE_DATA:
                    done = True
                    break
                for chunk in from_vendor_event(_parsed(event.data), state) if event.data else ():
                    yield chunk
            for chunk in finish_stream(state, done):
                yield chunk
