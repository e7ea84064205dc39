"""Alibaba DashScope's native API (Qwen, 通义千问) behind OpenAI's shapes.

Credential: `api_key` (sent as `Authorization: Bearer`), optional `workspace` (sent as
`X-DashScope-WorkSpace`), optional `base_url` (default https://dashscope.aliyuncs.com/api/v1;
international: https://dashscope-intl.aliyuncs.com/api/v1). Reference: ../shared/vendors/qwen.md.
Responses, stream events and errors are translated in `translators/qwen_response.py`.

Endpoints:
- chat: `POST {base}/services/aigc/text-generation/generation`; vision models (`qwen-vl-*`,
  `qwen2.5-vl-*`, `qvq-*`, ...) use `.../multimodal-generation/generation`, where every
  message's content is a list of `{"text": ...}` / `{"image": url}` items;
- legacy `/v1/completions`: through the chat path (translators/completions.py);
- embeddings (`text-embedding-v1..v4`): `POST {base}/services/embeddings/text-embedding/
  text-embedding`, split into batches of 25 texts (v1, v2) or 10 (v3, v4), results put back in
  input order by `text_index`; base64 is encoded here. `dimensions` -> `parameters.dimension`
  (v3/v4 only); DashScope's `text_type` (query|document) may be sent as an extra field.
- no transcriptions: DashScope's recognition is asynchronous and takes public file URLs only.

Request mapping (`to_vendor_request`):
- always `parameters.result_format: "message"` (DashScope's default is the legacy text
  format); streams are asked for with the `X-DashScope-SSE: enable` header (not a body
  field) and `incremental_output: true` (DashScope's default repeats the whole text in
  every event; the stream state handles both);
- `system`/`developer` messages -> one system message, first (joined by a blank line,
  wherever they stood: DashScope accepts a system message only at the start); assistant `tool_calls` and `tool` results
  (`tool_call_id`, `name`) as OpenAI has them; text parts are joined into one string for
  text models; `image_url` parts only for vision models (URLs and data: URLs as given);
- `max_completion_tokens`/`max_tokens` -> `max_tokens`; `temperature` clamped below 2
  (DashScope: [0, 2)); `top_p` clamped into the open interval (0, 1) that DashScope accepts
  (1.0 -> 0.9999); `seed`, `stop`, `presence_penalty`, `tools`, `tool_choice`,
  `parallel_tool_calls`, `response_format` pass; DashScope's own knobs sent as extra fields
  (`top_k`, `repetition_penalty`, `enable_search`, `enable_thinking`, `search_options`) pass.

A client's own `result_format` or `incremental_output` is not passed on (the translator
needs the message format, and streams are always asked for incrementally).
Rejected with a 400 naming the field: `n` > 1, `logprobs`/`top_logprobs`, `audio`,
`functions`/`function_call` (use tools), image parts for a model that is not a vision model.
Dropped: `frequency_penalty` (DashScope's repetition_penalty is multiplicative, not the same
knob), `logit_bias`, `user`, `store`, `metadata`, `service_tier`, a message's `name` (kept on
tool results), an image's `detail`, any other field DashScope does not know.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson

from keystore.models import CredentialField
from translators._json import loads as bounded_json
from translators._refusals import (
    refuse_choices_and_logprobs,
    refuse_deprecated_functions,
)
from translators._shapes import embed_in_batches, embedding_list, input_texts
from translators._sse import SSEDecoder
from translators.base import CallContext, Translator
from translators.errors import UpstreamError, bad_request, body_text, unsupported
from translators.qwen_response import (
    StreamState,
    error_from_response,
    error_in_body,
    from_vendor_embeddings,
    from_vendor_event,
    from_vendor_response,
    parse_event,
)
from translators.types import (
    ChatRequest,
    ContentPart,
    EmbeddingRequest,
    JSONObject,
    Message,
    ModelType,
    StreamChunk,
)

__all__ = ["QwenTranslator", "StreamState", "embedding_batch_size", "error_from_response", "from_vendor_event",
           "from_vendor_response", "is_vision", "to_vendor_embeddings_request", "to_vendor_request"]

PROVIDER = "qwen"
VISION_PREFIXES = ("qwen-vl", "qwen2-vl", "qwen2.5-vl", "qwen3-vl", "qvq")
TEXT_PATH = "services/aigc/text-generation/generation"
VISION_PATH = "services/aigc/multimodal-generation/generation"
EMBEDDING_PATH = "services/embeddings/text-embedding/text-embedding"
TOP_P_MIN, TOP_P_MAX = 0.0001, 0.9999
TEMPERATURE_MAX = 1.99
PASSED = ("seed", "stop", "presence_penalty", "tool_choice", "parallel_tool_calls", "response_format", "top_k",
          "repetition_penalty", "enable_search", "search_options", "enable_thinking", "thinking_budget")


def is_vision(model: str) -> bool:
    return model.startswith(VISION_PREFIXES)


def embedding_batch_size(model: str) -> int:
    return 25 if model in ("text-embedding-v1", "text-embedding-v2") else 10


# -- request: OpenAI -> DashScope -------------------------------------------------------------


def _refuse_unsupported(req: ChatRequest) -> None:
    refuse_choices_and_logprobs(req, PROVIDER)
    if req.raw.get("audio"):
        raise unsupported(PROVIDER, "audio", "audio")
    refuse_deprecated_functions(req, PROVIDER)


def _content(content: str | list[ContentPart] | None, where: str, vision: bool) -> Any:
    if vision:
        if content is None:
            return [{"text": ""}]
        if isinstance(content, str):
            return [{"text": content}]
        items: list[JSONObject] = []
        for j, part in enumerate(content):
            if part.type == "text":
                items.append({"text": part.text or ""})
            elif part.type == "image_url" and part.image_url is not None:
                items.append({"image": part.image_url.url})
            else:
                raise unsupported(PROVIDER, f"'{part.type}' content parts", f"{where}.content[{j}].type")
        return items
    if content is None or isinstance(content, str):
        return content or ""
    texts = []
    for j, part in enumerate(content):
        if part.type != "text":
            what = "images with a model that is not a vision model (qwen-vl-*)" if part.type == "image_url" \
                else f"'{part.type}' content parts"
            raise unsupported(PROVIDER, what, f"{where}.content[{j}].type")
        texts.append(part.text or "")
    return "\n".join(texts)


def _message(message: Message, where: str, vision: bool) -> JSONObject:
    role = message.role
    if role == "function":
        raise unsupported(PROVIDER, "'function' messages (use tools)", f"{where}.role")
    out: JSONObject = {"role": role, "content": _content(message.content, where, vision)}
    if role == "assistant" and message.tool_calls:
        out["tool_calls"] = [{"id": c.id, "type": "function",
                              "function": {"name": c.function.name, "arguments": c.function.arguments}}
                             for c in message.tool_calls]
    if role == "tool":
        if not message.tool_call_id:
            raise bad_request("a tool message needs the tool_call_id it answers", f"{where}.tool_call_id")
        out["tool_call_id"] = message.tool_call_id
        if message.name:
            out["name"] = message.name
    return out


def to_vendor_request(req: ChatRequest, model: str) -> JSONObject:
    """An OpenAI chat request as a DashScope generation body for `model` (see the module docstring)."""
    _refuse_unsupported(req)
    vision = is_vision(model)
    system: list[str] = []
    messages = []
    for i, message in enumerate(req.messages):
        if message.role in ("system", "developer"):  # DashScope takes one system message, first
            system.append(_content(message.content, f"messages[{i}]", vision=False))
        else:
            messages.append(_message(message, f"messages[{i}]", vision))
    if system:
        text = "\n\n".join(system)
        messages.insert(0, {"role": "system", "content": [{"text": text}] if vision else text})
    parameters: JSONObject = {"result_format": "message"}
    if req.stream:
        parameters["incremental_output"] = True
    if req.token_limit:
        parameters["max_tokens"] = req.token_limit
    if req.temperature is not None:
        parameters["temperature"] = min(req.temperature, TEMPERATURE_MAX)
    if req.top_p is not None:
        parameters["top_p"] = min(max(req.top_p, TOP_P_MIN), TOP_P_MAX)
    for key in PASSED:
        if req.raw.get(key) is not None:
            parameters[key] = req.raw[key]
    if req.tools:
        parameters["tools"] = [{"type": t.type, "function": t.function.model_dump(exclude_none=True)}
                               for t in req.tools]
    return {"model": model, "input": {"messages": messages}, "parameters": parameters}


def to_vendor_embeddings_request(texts: list[str], model: str, req: EmbeddingRequest) -> JSONObject:
    parameters: JSONObject = {}
    if req.dimensions is not None:
        if model in ("text-embedding-v1", "text-embedding-v2"):
            raise unsupported(PROVIDER, f"'dimensions' with {model} (only text-embedding-v3 and later)",
                              "dimensions")
        parameters["dimension"] = req.dimensions
    text_type = req.raw.get("text_type", req.raw.get("input_type"))
    if text_type is not None:
        if text_type not in ("query", "document"):
            raise bad_request("text_type must be 'query' or 'document'", "text_type")
        parameters["text_type"] = text_type
    return {"model": model, "input": {"texts": texts}, "parameters": parameters}


def _error_body(payload: bytes) -> Any:
    try:
        return bounded_json(payload) if payload else None
    except orjson.JSONDecodeError:  # an HTML page from a proxy in between, a plain-text 502...
        return {"message": body_text(payload)}


# -- the translator ---------------------------------------------------------------------------


class QwenTranslator(Translator):
    name = PROVIDER
    display_name = "Alibaba Qwen"
    key_url = "https://dashscope.console.aliyun.com/apiKey"
    model_types = frozenset({ModelType.LLM, ModelType.TEXT_EMBEDDING})
    credential_fields = (
        CredentialField("api_key", description="DashScope API key (sk-...)"),
        CredentialField("workspace", required=False, secret=False, label="Workspace ID",
                        description="DashScope workspace id (sent as X-DashScope-WorkSpace)"),
    )
    default_base_url = "https://dashscope.aliyuncs.com/api/v1"
    catalog = {
        ModelType.LLM: ("qwen-turbo", "qwen-plus", "qwen-max", "qwen-long", "qwen3-max", "qwen-vl-plus",
                        "qwen-vl-max", "qwq-plus"),
        ModelType.TEXT_EMBEDDING: ("text-embedding-v1", "text-embedding-v2", "text-embedding-v3",
                                   "text-embedding-v4"),
    }
    model_prefixes = {ModelType.LLM: ("qwen", "qwq-", "qvq-")}

    def headers(self, ctx: CallContext, stream: bool = False) -> dict[str, str]:
        headers = {"Authorization": f"Bearer {ctx.credential['api_key']}"}
        if ctx.credential.get("workspace"):
            headers["X-DashScope-WorkSpace"] = ctx.credential["workspace"]
        if stream:
            headers.update({"X-DashScope-SSE": "enable", "Accept": "text/event-stream"})
        return headers

    def url(self, ctx: CallContext, path: str) -> str:
        return f"{ctx.base_url}/{path}"

    async def chat(self, req: ChatRequest, ctx: CallContext) -> JSONObject:
        body = to_vendor_request(req, ctx.model)
        body["parameters"].pop("incremental_output", None)
        path = VISION_PATH if is_vision(ctx.model) else TEXT_PATH
        resp = await ctx.http.post_json(self.url(ctx, path), body, self.headers(ctx))
        if resp.status != 200:
            raise error_from_response(resp.status, _error_body(resp.body), resp.headers)
        return from_vendor_response(resp.json(), ctx.model)

    async def chat_stream(self, req: ChatRequest, ctx: CallContext) -> AsyncIterator[StreamChunk]:
        body = to_vendor_request(req, ctx.model)
        body["parameters"]["incremental_output"] = True
        path = VISION_PATH if is_vision(ctx.model) else TEXT_PATH
        async with ctx.http.stream("POST", self.url(ctx, path), headers=self.headers(ctx, stream=True),
                                   json=body) as resp:
            if resp.status != 200:
                raise error_from_response(resp.status, _error_body(await resp.read()), resp.headers)
            if "json" in resp.headers.get("Content-Type", ""):  # an error object where a stream belongs
                raise error_in_body(_error_body(await resp.read()))
            state = StreamState(ctx.model, cumulative=not body["parameters"]["incremental_output"])
            decoder = SSEDecoder(resp.max_event_bytes)
            async for data in resp.chunks():
                for event in decoder.feed(data):
                    for chunk in from_vendor_event(parse_event(event), state):
                        yield chunk
                if state.finished:
                    return
            for event in decoder.flush():
                for chunk in from_vendor_event(parse_event(event), state):
                    yield chunk
            if not state.finished:
                raise UpstreamError(502, f"the {PROVIDER} stream ended before its last event", "server_error",
                                    "upstream_incomplete_stream")

    async def embed(self, req: EmbeddingRequest, ctx: CallContext) -> JSONObject:
        async def fetch(batch: list[str]) -> tuple[list[list[float]], int]:
            body = to_vendor_embeddings_request(batch, ctx.model, req)
            resp = await ctx.http.post_json(self.url(ctx, EMBEDDING_PATH), body, self.headers(ctx))
            if resp.status != 200:
                raise error_from_response(resp.status, _error_body(resp.body), resp.headers)
            return from_vendor_embeddings(resp.json())

        texts = input_texts(req, PROVIDER)
        vectors, tokens = await embed_in_batches(texts, embedding_batch_size(ctx.model), PROVIDER, fetch)
        return embedding_list(vectors, ctx.model, tokens, req.encoding_format)
