"""MiniMax's ChatCompletion v2 (OpenAI-like) and embo-01 embeddings behind OpenAI's shapes.

Credential: `api_key` (sent as `Authorization: Bearer`), `group_id` (sent as `?GroupId=`,
which v2 does not need but the embeddings endpoint does; it is harmless on v2), optional
`base_url` (default https://api.minimax.chat/v1; newer hosts: https://api.minimaxi.com/v1,
international https://api.minimax.io/v1). Reference: ../shared/vendors/minimax.md.

Chat is a `CompatibleSpec` row (`SPEC`) with MiniMax's own codec (`CODEC`): v2 is OpenAI's
shape, but its errors and its final event do not fit a pass-through. It uses
`POST {base}/text/chatcompletion_v2` only, as the issue asks: the legacy `chatcompletion_pro`
API (bot_setting/sender_type, full `reply` on its last chunk) is not spoken; v2 serves every
model pro did. Legacy `/v1/completions` goes through the chat path.

What is absorbed:
- errors arrive as HTTP 200 with `base_resp.status_code != 0` (bodies, stream events and a
  JSON body answering a streamed request): 1004/2049 (auth) -> 403
  upstream_credential_rejected, 1008 (balance) -> 429 insufficient_quota, 1002/1039 (rate)
  -> 429, 2013 (parameters) -> 400, 1026/1027 (sensitive) -> 400 content_filter, 1001 -> 504,
  1000/1013 -> 502;
- the stream's final event (object `chat.completion`) repeats the whole message with the
  real usage: only its finish reason and usage are used (plus any tail the deltas did not
  carry), its text is never re-emitted; a stream ends on the DONE sentinel, that event, or EOF;
- `usage` on every chunk (zeros until the end) is not forwarded; chunks with `role: ""`
  are normalised (role once, on the first chunk); `name`, `audio_content`,
  `*_sensitive*`, `base_resp`, `usage.total_characters` are stripped;
- `output_sensitive: true` -> finish_reason `content_filter`; `max_output` -> `length`;
  usage with only `total_tokens` (older models) -> all of it as completion tokens.

Request mapping (`to_vendor_request`): `max_tokens` is always sent (`max_completion_tokens`,
else `max_tokens`, else 2048: MiniMax's own default is 256 for abab6.5); `temperature`
and `top_p` are clamped into MiniMax's (0, 1] (0 -> 0.01); `developer` -> `system`.
Rejected with a 400: `n` > 1, `logprobs`, `top_logprobs`, `functions`/`function_call`.
Dropped: `presence_penalty`, `frequency_penalty`, `logit_bias`, `seed`, `user`,
`parallel_tool_calls`, `store`, `metadata`, `service_tier`, `stream_options` (the gateway's).

Embeddings: `POST {base}/embeddings?GroupId=` with `{model: "embo-01", texts, type}`;
`type` is `db` (documents) unless the request says `"input_type": "query"` (e.g. the openai
SDK's `extra_body`); batches of 512 texts (MiniMax allows 4096 per langchainjs); `vectors`
are positional; base64 encoded here; `dimensions` is refused (fixed 1536 dimensions).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from keystore.models import CredentialField
from translators._compatible import (
    CHAT,
    EMBEDDINGS,
    CompatibleSpec,
    openai_error_fields,
)
from translators._http import Headers
from translators._refusals import (
    refuse_choices_and_logprobs,
    refuse_deprecated_functions,
)
from translators._shapes import (
    as_int,
    embed_in_batches,
    new_id,
    now,
    vendor_error,
)
from translators._sse import DONE_DATA, SSEEvent
from translators._stream import Codec, StreamState, event_json
from translators.base import CallContext
from translators.errors import (
    ApiError,
    bad_request,
    bad_response,
    failed_mid_stream,
    incomplete_stream,
    parse_retry_after,
    unsupported,
    upstream_status_error,
)
from translators.types import (
    ChatRequest,
    EmbeddingRequest,
    JSONObject,
    ModelType,
    StreamChunk,
    Usage,
)

PROVIDER = "minimax"
DEFAULT_MAX_TOKENS = 2048
EMBEDDING_BATCH = 512
DROPPED = frozenset({"presence_penalty", "frequency_penalty", "logit_bias", "seed", "user", "parallel_tool_calls",
                     "store", "metadata", "service_tier", "stream_options", "max_completion_tokens", "n", "logprobs",
                     "top_logprobs"})
FINISH_REASONS: Mapping[str, str] = {"stop": "stop", "length": "length", "max_output": "length",
                                     "tool_calls": "tool_calls", "function_call": "tool_calls",
                                     "content_filter": "content_filter"}
# base_resp.status_code -> (status, the code our client sees)
ERROR_CODES: Mapping[int, tuple[int, str | None]] = {
    1000: (500, None), 1001: (504, None), 1002: (429, "rate_limit_exceeded"), 1004: (401, None),
    1008: (429, "insufficient_quota"), 1013: (500, None), 1026: (400, "content_filter"),
    1027: (400, "content_filter"), 1039: (429, "rate_limit_exceeded"), 2013: (400, "invalid_parameter"),
    2049: (401, None),
}


# -- errors -------------------------------------------------------------------------------------


def base_resp_error(body: Any) -> ApiError | None:
    """The error a `base_resp` with a non-zero status_code stands for (None when it is success)."""
    base = body.get("base_resp") if isinstance(body, dict) else None
    code = base.get("status_code") if isinstance(base, dict) else None
    if not isinstance(base, dict) or not isinstance(code, int) or code == 0:
        return None
    message = f"{base.get('status_msg') or 'error'} (base_resp {code})"
    status, ours = ERROR_CODES.get(code, (400 if 2000 <= code < 3000 else 500, None))
    return vendor_error(PROVIDER, status, message, ours)


def error_from_response(status: int, body: Any, headers: Headers | None) -> ApiError:
    """An HTTP error, or (a status below 400) a body that is not an answer: `base_resp` decides first."""
    err = base_resp_error(body)
    if err is not None and status < 500:
        return err
    if status < 400:
        return bad_response(PROVIDER, "a response without choices")
    message, code, param = openai_error_fields(body, f"HTTP {status} from {PROVIDER}")
    return upstream_status_error(PROVIDER, status, message, code, param, parse_retry_after(headers))


def error_in_body(body: Any, headers: Headers | None) -> ApiError | None:
    return base_resp_error(body)  # a 200 without choices is left to the converters (a 502)


# -- request ------------------------------------------------------------------------------------


def to_vendor_request(req: ChatRequest, model: str) -> JSONObject:
    refuse_choices_and_logprobs(req, PROVIDER)
    refuse_deprecated_functions(req, PROVIDER)
    raw = req.raw
    body = {k: v for k, v in raw.items() if k not in DROPPED}
    body.update(model=model, stream=req.stream, max_tokens=req.token_limit or DEFAULT_MAX_TOKENS)
    body["messages"] = [{**m, "role": "system"} if m.get("role") == "developer" else m for m in raw["messages"]]
    for key in ("temperature", "top_p"):
        if getattr(req, key) is not None:
            body[key] = min(max(getattr(req, key), 0.01), 1.0)
    return body


# -- responses ------------------------------------------------------------------------------------


def usage_of(raw: Any) -> tuple[JSONObject, Usage]:
    raw = raw if isinstance(raw, dict) else {}
    prompt, completion, total = (as_int(raw.get(k)) for k in ("prompt_tokens", "completion_tokens", "total_tokens"))
    if not prompt and not completion:
        completion = total  # older models report only total_tokens
    usage = Usage(prompt, completion, total or prompt + completion)
    return usage.as_dict(), usage


def finish_reason(value: Any, body: Any) -> str | None:
    if not isinstance(value, str):
        return None
    if isinstance(body, dict) and body.get("output_sensitive") is True:
        return "content_filter"
    return FINISH_REASONS.get(value, "stop")


def _clean(message: Any) -> JSONObject:
    items = message.items() if isinstance(message, dict) else ()
    out = {k: v for k, v in items if k not in ("name", "audio_content")}
    if out.get("role") == "":
        out["role"] = "assistant"
    return out


def from_vendor_response(body: Any, model: str) -> JSONObject:
    if not isinstance(body, dict) or base_resp_error(body) or not body.get("choices"):
        raise error_from_response(200, body, None)
    choices = [{"index": c.get("index", i), "message": {**_clean(c.get("message")), "refusal": None},
                "logprobs": None, "finish_reason": finish_reason(c.get("finish_reason"), body) or "stop"}
               for i, c in enumerate(body["choices"]) if isinstance(c, dict)]
    return {"id": body.get("id") or new_id(), "object": "chat.completion", "created": body.get("created") or now(),
            "model": body.get("model") or model, "choices": choices, "usage": usage_of(body.get("usage"))[0]}


# -- the stream -------------------------------------------------------------------------------------


@dataclass(slots=True)
class MinimaxState(StreamState):
    """What translating one MiniMax v2 stream remembers between events (`started`: the role,
    said once although chunks may say `role: ""`)."""

    id_taken: bool = False  # the first event's id/created are kept for every chunk
    # The streamed text: the final event repeats the whole message, only a tail it adds is new.
    text: list[str] = field(default_factory=list)
    tools_sent: bool = False
    # The finish chunk went out (deltas may carry finish_reason before the final event does).
    finish: str | None = None
    # The real usage arrives with the final event; chunks before it carry zeros.
    usage: Any = None


def finish_stream(state: MinimaxState, done: bool = True) -> list[StreamChunk]:
    """The end of the stream (`done`: the DONE sentinel or the final event; else EOF): the
    finish and usage chunks not yet sent. EOF before any finish reason is a cut stream."""
    if state.finished:
        return []
    if state.finish is None and not (done and (state.text or state.tools_sent)):
        raise incomplete_stream(PROVIDER)
    state.finished = True
    chunks = [] if state.finish is not None else [state.chunk({}, "stop")]
    body, usage = usage_of(state.usage)
    return [*chunks, state.usage_chunk(usage, body)]


def _delta(choice: JSONObject, final: bool, state: MinimaxState) -> JSONObject:
    if not final:
        delta = _clean(choice.get("delta"))
        delta.pop("role", None)
        return delta
    message = _clean(choice.get("message"))
    content, streamed = message.get("content") or "", "".join(state.text)
    delta = {}
    if isinstance(content, str) and content.startswith(streamed) and len(content) > len(streamed):
        delta["content"] = content[len(streamed):]
    if message.get("tool_calls") and not state.tools_sent:
        delta["tool_calls"] = [{**c, "index": i} for i, c in enumerate(message["tool_calls"])]
    return delta


def from_vendor_event(event: SSEEvent, state: MinimaxState) -> list[StreamChunk]:
    if event.data == DONE_DATA:
        return finish_stream(state)
    if not event.data:
        return []
    body = event_json(event, PROVIDER)
    if body is None:
        return []
    if not isinstance(body, dict) or base_resp_error(body):
        raise error_from_response(200, body, None)
    if body.get("error"):
        message, code, _ = openai_error_fields(body, "error")
        raise failed_mid_stream(PROVIDER, message, code)
    if state.finished:
        return []
    if not state.id_taken and body.get("id"):
        state.id, state.created, state.id_taken = str(body["id"]), as_int(body.get("created")) or state.created, True
    usage = body.get("usage")
    if isinstance(usage, dict) and as_int(usage.get("total_tokens")):
        state.usage = usage
    choices = [c for c in body.get("choices") or () if isinstance(c, dict)]
    final = body.get("object") == "chat.completion" or any("message" in c and "delta" not in c for c in choices)
    chunks: list[StreamChunk] = []
    for choice in choices[:1]:
        delta = _delta(choice, final, state)
        if not state.started:
            state.started = True
            delta = {"role": "assistant", **delta}
        if isinstance(delta.get("content"), str) and delta["content"]:
            state.text.append(delta["content"])
        state.tools_sent = state.tools_sent or bool(delta.get("tool_calls"))
        finish = finish_reason(choice.get("finish_reason"), body)
        send_finish = finish if state.finish is None else None
        state.finish = state.finish or send_finish
        if delta or send_finish:
            chunks.append(state.chunk(delta, send_finish))
    if final:
        chunks += finish_stream(state)
    return chunks


def _at_eof(state: MinimaxState) -> list[StreamChunk]:
    return finish_stream(state, done=False)


CODEC = Codec(PROVIDER, error_from_response, error_in_body, MinimaxState, from_vendor_event, _at_eof)


# -- embeddings -----------------------------------------------------------------------------------


def to_vendor_embeddings_request(texts: list[str], model: str, req: EmbeddingRequest) -> JSONObject:
    if req.dimensions is not None:
        raise unsupported(PROVIDER, "'dimensions' (embo-01 vectors have a fixed size)", "dimensions")
    kind = req.raw.get("input_type", req.raw.get("type", "db"))
    if kind not in ("db", "query", "document"):
        raise bad_request("input_type must be 'db' (or 'document') for documents or 'query' for queries",
                          "input_type")
    return {"model": model, "texts": texts, "type": "query" if kind == "query" else "db"}


def from_vendor_embeddings(body: Any) -> tuple[list[list[float]], int]:
    if not isinstance(body, dict) or base_resp_error(body) or not isinstance(body.get("vectors"), list):
        raise error_from_response(200, body, None)
    return [list(v or ()) for v in body["vectors"]], as_int(body.get("total_tokens"))


# -- the spec row and its translator ----------------------------------------------------------------


def _url(ctx: CallContext, path: str) -> str:
    return f"{ctx.base_url}/{path}?GroupId={quote(ctx.credential['group_id'], safe='')}"


def _answer(body: JSONObject, ctx: CallContext) -> JSONObject:
    return from_vendor_response(body, ctx.model)


async def embed(req: EmbeddingRequest, model: str, post: Callable[[JSONObject], Awaitable[JSONObject]]) -> JSONObject:
    """embo-01 embeddings are not OpenAI's shape (texts in, positional vectors out, in
    batches): converted here rather than passed through."""
    async def fetch(batch: list[str]) -> tuple[list[list[float]], int]:
        return from_vendor_embeddings(await post(to_vendor_embeddings_request(batch, model, req)))

    return await embed_in_batches(req, model, PROVIDER, EMBEDDING_BATCH, fetch)


SPEC = CompatibleSpec(
    name=PROVIDER,
    display_name="MiniMax",
    key_url="https://platform.minimaxi.com/user-center/basic-information/interface-key",
    model_types=frozenset({ModelType.LLM, ModelType.TEXT_EMBEDDING}),
    credential_fields=(
        CredentialField("api_key", description="MiniMax API key"),
        CredentialField("group_id", secret=False, description="MiniMax GroupId (account page)"),
    ),
    default_base_url="https://api.minimax.chat/v1",
    catalog={
        ModelType.LLM: ("MiniMax-M1", "MiniMax-Text-01", "abab6.5s-chat", "abab6.5-chat", "abab6.5g-chat",
                        "abab5.5-chat", "abab5.5s-chat"),
        ModelType.TEXT_EMBEDDING: ("embo-01",),
    },
    model_prefixes={ModelType.LLM: ("abab", "MiniMax-")},
    paths={CHAT: "text/chatcompletion_v2", EMBEDDINGS: "embeddings"},
    url=_url,
    codec=CODEC,
    to_vendor_request=to_vendor_request,
    from_vendor_response=_answer,
    stream_usage_option=False,  # `stream_options` is one of the fields MiniMax does not take
    embed=embed,
)
