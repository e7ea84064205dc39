"""Alibaba DashScope's native API (Qwen, 通义千问) behind OpenAI's shapes.

Credential: `api_key` (sent as `Authorization: Bearer`), optional `workspace` (sent as
`X-DashScope-WorkSpace`), optional `base_url` (default https://dashscope.aliyuncs.com/api/v1;
international: https://dashscope-intl.aliyuncs.com/api/v1). Reference: ../shared/vendors/qwen.md.

Endpoints:
- chat: `POST {base}/services/aigc/text-generation/generation`; vision models (`qwen-vl-*`,
  `qwen2.5-vl-*`, `qvq-*`, ...) use `.../multimodal-generation/generation`; a stream is the
  same call with the `X-DashScope-SSE: enable` header;
- legacy `/v1/completions`: through the chat path (translators/completions.py);
- embeddings (`text-embedding-v1..v4`): `POST {base}/services/embeddings/text-embedding/
  text-embedding`, split into batches of 25 texts (v1, v2) or 10 (v3, v4), results put back in
  input order by `text_index`; base64 is encoded here;
- no transcriptions: DashScope's recognition is asynchronous and takes public file URLs only.

This module is the wiring (URLs, headers, which recipe of `translators/_stream.py` each call
uses); the codec is pure: `codec.py` (requests, responses, stream events, embeddings, errors,
and the `CODEC` the driver runs) with `request.py` (the pieces of a request: what is mapped,
refused or dropped).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from keystore.models import CredentialField
from translators._shapes import embed_in_batches
from translators._stream import exchange, stream_sse
from translators.base import CallContext, Translator
from translators.qwen.codec import (
    CODEC,
    QwenState,
    error_from_response,
    from_vendor_embeddings,
    from_vendor_event,
    from_vendor_response,
    to_vendor_embeddings_request,
    to_vendor_request,
)
from translators.qwen.request import PROVIDER, embedding_batch_size, is_vision
from translators.types import (
    ChatRequest,
    EmbeddingRequest,
    JSONObject,
    ModelType,
    StreamChunk,
)

__all__ = ["CODEC", "QwenState", "QwenTranslator", "embedding_batch_size", "error_from_response",
           "from_vendor_embeddings", "from_vendor_event", "from_vendor_response", "is_vision",
           "to_vendor_embeddings_request", "to_vendor_request"]

TEXT_PATH = "services/aigc/text-generation/generation"
VISION_PATH = "services/aigc/multimodal-generation/generation"
EMBEDDING_PATH = "services/embeddings/text-embedding/text-embedding"


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
    chat_extras = frozenset({"top_k"})

    def headers(self, ctx: CallContext, stream: bool = False) -> dict[str, str]:
        headers = {"Authorization": f"Bearer {ctx.credential['api_key']}"}
        if ctx.credential.get("workspace"):
            headers["X-DashScope-WorkSpace"] = ctx.credential["workspace"]
        if stream:
            headers.update({"X-DashScope-SSE": "enable", "Accept": "text/event-stream"})
        return headers

    def url(self, ctx: CallContext, path: str) -> str:
        return f"{ctx.base_url}/{path}"

    def chat_url(self, ctx: CallContext) -> str:
        return self.url(ctx, VISION_PATH if is_vision(ctx.model) else TEXT_PATH)

    async def chat(self, req: ChatRequest, ctx: CallContext) -> JSONObject:
        body = to_vendor_request(req, ctx.model)
        body["parameters"].pop("incremental_output", None)
        answer = await exchange(ctx.http, CODEC, self.chat_url(ctx), body, headers=self.headers(ctx))
        return from_vendor_response(answer, ctx.model)

    def chat_stream(self, req: ChatRequest, ctx: CallContext) -> AsyncIterator[StreamChunk]:
        body = to_vendor_request(req, ctx.model)
        body["parameters"]["incremental_output"] = True  # what the state's default (not cumulative) reads
        return stream_sse(ctx.http, CODEC, ctx.model, self.chat_url(ctx), headers=self.headers(ctx, stream=True),
                          json=body)

    async def embed(self, req: EmbeddingRequest, ctx: CallContext) -> JSONObject:
        async def fetch(batch: list[str]) -> tuple[list[list[float]], int]:
            body = to_vendor_embeddings_request(batch, ctx.model, req)
            answer = await exchange(ctx.http, CODEC, self.url(ctx, EMBEDDING_PATH), body, headers=self.headers(ctx))
            return from_vendor_embeddings(answer)

        return await embed_in_batches(req, ctx.model, PROVIDER, embedding_batch_size(ctx.model), fetch)
