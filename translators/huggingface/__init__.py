"""Hugging Face: the serverless Inference API, Inference Endpoints and self-hosted TGI/TEI.
Reference: ../shared/vendors/huggingface.md. The pure translation is `codec.py` (errors,
TGI's Messages API) and `tasks.py` (the tasks); this module is the wiring: URLs, the
"model is loading" wait, and the task fallback recipe.

Models are added one by one, each with its own credential and model type::

    modelport models add TENANT huggingface ORG/NAME --type llm|text-embedding|speech2text \\
        api_token=hf_... [endpoint_url=https://NAME.REGION.aws.endpoints.huggingface.cloud] [task=...]

- `api_token` (secret): sent as `Authorization: Bearer`.
- `endpoint_url` (optional): the root URL of an Inference Endpoint or a TGI/TEI server; the
  model id is then only a name. Without it the serverless API at `base_url` (default
  https://router.huggingface.co/hf-inference) is called with the model id in the path:
  `/models/{id}` (tasks), `/models/{id}/pipeline/feature-extraction`, `/models/{id}/v1/chat/completions`.
  With it: `{endpoint_url}` (tasks, as huggingface_hub does) and `{endpoint_url}/v1/chat/completions`.
- `task` (optional), where the type alone is ambiguous. For llm: `conversational` (the
  Messages API only), `text-generation` (the text-generation task only), or unset: the
  Messages API first, and if the server has no such route (404/405) the text-generation
  task, remembered per URL for this process. text-embedding: `feature-extraction`;
  speech2text: `automatic-speech-recognition` (the defaults).

llm, Messages API (TGI >= 1.4): the client's JSON is forwarded with the model id;
`max_completion_tokens` becomes `max_tokens`; `response_format` `json_schema` becomes TGI's
grammar `{"type": "json_object", "value": <schema>}` (`json_object` alone: `value` =
`{"type": "object"}`); streams always ask for usage. Older TGI's quirks are absorbed (list
in `codec.py`).

llm, text-generation task (models without the Messages API):
- the messages become `inputs` with the dialogue template of `translators/_hosted.py`:
  `System: ...` (system and developer messages, joined), then `User: ...` / `Assistant: ...`
  blocks a blank line apart, ending with `Assistant:`; text only;
- parameters: `max_completion_tokens`/`max_tokens` -> `max_new_tokens` (unset: the server's
  default); `do_sample: true` (OpenAI samples by default) unless `temperature` or `top_p`
  is 0 (greedy); `temperature` > 0 and `top_p` < 1 are sent, 1 is left out; `stop` (at most
  4) -> `stop`; extra fields `seed`, `top_k`, `repetition_penalty` pass; always
  `return_full_text: false` and `details: true`. The answer is not trimmed: whitespace and a
  matched stop sequence stay as TGI returns them;
- streamed as `/generate_stream` token events (special tokens such as `</s>` skipped; the
  last event's `details` give the finish reason and the counts); finish reasons
  `eos_token`/`stop_sequence` -> `stop`, `length` -> `length`;
- usage: `details.input_length` / `x-prompt-tokens` and `details.generated_tokens` /
  `x-generated-tokens` where given, else estimated (`translators/_estimate.py`: a token per
  four characters, one per CJK character).
- refused with a 400 naming the field: `n` > 1, `logprobs`, `tools`, `response_format`
  other than text, images, tool messages. Dropped: `presence_penalty`, `frequency_penalty`,
  `logit_bias`, `user`, and the rest.
Legacy `/v1/completions` always use the text-generation task: the prompt verbatim, `echo`
prepends it, `suffix` and `n` > 1 are refused.

text-embedding (feature-extraction): `{"inputs": text or [texts]}` (`normalize`, `truncate`,
`prompt_name` pass when given; token arrays and `dimensions` are refused). The answer's
shape varies by model; the mean-pooling rule: a 1-D answer is the vector of the one input;
a 2-D answer with one row per input is one vector per input; a token-level answer (2-D
for a single text, `[input][token][dim]`, or `[input][1][token][dim]`) is averaged over its
token vectors, every token weighing the same, the special tokens the server returns
included, no normalisation. `usage.prompt_tokens` is the number of token vectors when the
answer was token-level, else an estimate. base64 encoding is done here (float32, little-endian).

speech2text (automatic-speech-recognition): the raw audio bytes with their content type
(guessed from the file name when the client sent none) -> `{"text": ...}`; `json` and `text`
formats. `srt`, `vtt` and `verbose_json` send the JSON form with `return_timestamps: true`
and are built from the answer's `chunks`; a model without timestamps -> 400. `language`,
`prompt` and `temperature` are dropped (the task has no such parameters); word timestamps
are refused.

Errors: 503 "model is loading" with `estimated_time`: waited for and retried while the
request's deadline allows, else 503 `model_loading` naming the estimate (and Retry-After);
422 validation errors (JSON or plain text) -> 400 with the vendor's message; 424 -> 502;
401/403 -> 403 `upstream_credential_rejected`; errors inside streams are mapped likewise.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable
from contextlib import aclosing
from typing import Any, TypeVar, cast

from keystore.models import Credential, CredentialField
from translators._estimate import estimate_tokens
from translators._hosted import (
    audio_content_type,
    check_transcription,
    deadline_of,
    needs_timestamps,
    remaining,
    timed_out,
)
from translators._http import Headers
from translators._shapes import embedding_items, new_id
from translators._stream import Codec, StreamState, checked_json, stream_sse
from translators.base import CallContext, Translator
from translators.errors import ApiError, bad_request, unsupported
from translators.huggingface.codec import (
    CODEC,
    PROBE,
    PROVIDER,
    MessagesState,
    ModelLoading,
    NoMessagesAPI,
    endpoint_root,
    error_from_response,
    from_vendor_event,
    from_vendor_response,
    to_vendor_request,
)
from translators.huggingface.tasks import (
    TASK,
    GenerateState,
    asr_timestamp_request,
    completion_request,
    completion_response,
    embedding_inputs,
    from_asr,
    from_generate_response,
    generate_request,
    pool,
)
from translators.types import (
    ChatRequest,
    CompletionRequest,
    EmbeddingRequest,
    JSONObject,
    ModelType,
    StreamChunk,
    TranscriptionRequest,
    TranscriptionResult,
)

__all__ = ["CODEC", "HuggingFaceTranslator", "endpoint_root", "error_from_response", "from_vendor_event",
           "from_vendor_response", "loading_delay", "to_vendor_request"]

T = TypeVar("T")
CONVERSATIONAL, TEXT_GENERATION = "conversational", "text-generation"
FEATURE_EXTRACTION, ASR = "feature-extraction", "automatic-speech-recognition"
TASKS = {ModelType.LLM: (CONVERSATIONAL, TEXT_GENERATION), ModelType.TEXT_EMBEDDING: (FEATURE_EXTRACTION,),
         ModelType.SPEECH2TEXT: (ASR,)}
_ALIASES = {"chat-completion": CONVERSATIONAL}
# Hub repo ids: `name` or `org/name`, letters, digits, '-', '_', '.'.
_REPO = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}(/[A-Za-z0-9][A-Za-z0-9._-]{0,95})?$")
# Chat URLs that answered 404/405 (no Messages API): the text-generation task is used for them.
_WITHOUT_MESSAGES_API: dict[str, None] = {}
_REMEMBER_LIMIT = 4096
_PASSED_EMBEDDING_OPTIONS = ("normalize", "truncate", "prompt_name")
MIN_LOADING_WAIT = 0.2   # seconds: never hammer a loading model, whatever its estimate says


def loading_delay(error: ApiError, deadline: float) -> float | None:
    """Seconds to wait before asking a loading model again; None when `error` is not that, or
    when waiting would pass the request's deadline (the error, with its estimate, is the answer)."""
    if not isinstance(error, ModelLoading):
        return None
    wait = max(MIN_LOADING_WAIT, error.estimate)
    return wait if wait < remaining(deadline) else None


def _remember_without_messages_api(url: str) -> None:
    if len(_WITHOUT_MESSAGES_API) >= _REMEMBER_LIMIT:
        _WITHOUT_MESSAGES_API.clear()
    _WITHOUT_MESSAGES_API[url] = None


class HuggingFaceTranslator(Translator):
    name = PROVIDER
    display_name = "Hugging Face"
    key_url = "https://huggingface.co/settings/tokens"
    model_types = frozenset(ModelType)
    per_model = True
    default_base_url = "https://router.huggingface.co/hf-inference"
    chat_extras = frozenset({"top_k"})
    credential_fields = (
        CredentialField("api_token", description="Hugging Face access token (hf_...)", label="Access token"),
        CredentialField("endpoint_url", required=False, secret=False,
                        description="Root URL of an Inference Endpoint or TGI/TEI server (default: serverless)"),
        CredentialField("task", required=False, secret=False,
                        description="conversational | text-generation (llm; default: detect), "
                                    "feature-extraction, automatic-speech-recognition"),
    )

    def check_model(self, model: str) -> None:
        super().check_model(model)
        if not _REPO.match(model):
            raise bad_request(f"Hugging Face model id {model!r} is not allowed: use NAME or ORG/NAME (letters, "
                              "digits, '-', '_', '.')", "model", "invalid_model_id")

    def check_credential(self, credential: Credential) -> None:
        if credential.get("endpoint_url"):
            endpoint_root(credential["endpoint_url"])
        task = credential.get("task")
        if task and _ALIASES.get(task, task) not in {t for ts in TASKS.values() for t in ts}:
            raise bad_request(f"unknown {PROVIDER} task '{task}'; use one of: conversational, text-generation, "
                              "feature-extraction, automatic-speech-recognition", "task", "invalid_credential")

    # -- plumbing ----------------------------------------------------------------------------------

    def headers(self, ctx: CallContext) -> dict[str, str]:
        return {"Authorization": f"Bearer {ctx.credential['api_token']}"}

    def _task(self, ctx: CallContext, kind: ModelType) -> str | None:
        task = ctx.credential.get("task")
        task = _ALIASES.get(task, task) if task else None
        if task is not None and task not in TASKS[kind]:
            raise bad_request(f"the {PROVIDER} model '{ctx.model}' is configured with task '{task}', which does not "
                              f"serve {kind.value} requests", "model", "invalid_credential")
        return task

    def _root(self, ctx: CallContext) -> str | None:
        endpoint = ctx.credential.get("endpoint_url")
        return endpoint_root(endpoint) if endpoint else None

    def task_url(self, ctx: CallContext, task: str) -> str:
        root = self._root(ctx)
        if root is not None:
            return root
        self.check_model(ctx.model)
        url = f"{ctx.base_url}/models/{ctx.model}"
        return f"{url}/pipeline/{task}" if task == FEATURE_EXTRACTION else url

    def chat_url(self, ctx: CallContext) -> str:
        root = self._root(ctx)
        if root is None:
            self.check_model(ctx.model)
            root = f"{ctx.base_url}/models/{ctx.model}"
        return f"{root}/v1/chat/completions"

    def _messages_api(self, ctx: CallContext) -> tuple[str, Codec[MessagesState]] | None:
        """The task fallback recipe, as data: where the Messages API is asked and with which
        codec (`PROBE` when no task is configured: a 404/405 there means "use the
        text-generation task", remembered per URL); None: the text-generation task at once."""
        task = self._task(ctx, ModelType.LLM)
        url = self.chat_url(ctx)
        if task == TEXT_GENERATION or (task is None and url in _WITHOUT_MESSAGES_API):
            return None
        return url, PROBE if task is None else CODEC

    async def _call(self, ctx: CallContext, codec: Codec[Any], url: str, deadline: float, *, json: Any = None,
                    body: bytes | None = None, content_type: str | None = None) -> tuple[Any, Headers]:
        """One POST and its checked JSON answer (and headers), asked again while the model loads."""
        headers = self.headers(ctx)
        if content_type:
            headers["Content-Type"] = content_type
        while True:
            resp = await ctx.http.request("POST", url, headers=headers, json=json, body=body)
            try:
                return checked_json(codec, resp), resp.headers
            except ModelLoading as exc:
                delay = loading_delay(exc, deadline)
                if delay is None:
                    raise
            await asyncio.sleep(delay)

    @staticmethod
    async def _bounded(deadline: float, call: Awaitable[T]) -> T:
        try:
            async with asyncio.timeout(max(0.0, remaining(deadline))):
                return await call
        except TimeoutError:
            raise timed_out(PROVIDER, "the request's deadline passed") from None

    async def _stream(self, ctx: CallContext, codec: Codec[Any], url: str, payload: JSONObject,
                      state: StreamState, deadline: float) -> AsyncIterator[StreamChunk]:
        """`stream_sse`, asked again while the model loads (said before any event)."""
        while True:
            chunks = cast(AsyncGenerator[StreamChunk, None], stream_sse(
                ctx.http, codec, ctx.model, url, headers=self.headers(ctx), json=payload, state=state))
            try:
                async with aclosing(chunks):
                    async for chunk in chunks:
                        yield chunk
                return
            except ModelLoading as exc:
                delay = None if state.started else loading_delay(exc, deadline)
                if delay is None:
                    raise
            await asyncio.sleep(delay)

    # -- llm -------------------------------------------------------------------------------------

    async def chat(self, req: ChatRequest, ctx: CallContext) -> JSONObject:
        deadline = deadline_of(ctx)
        return await self._bounded(deadline, self._chat(req, ctx, deadline))

    async def _chat(self, req: ChatRequest, ctx: CallContext, deadline: float) -> JSONObject:
        messages_api = self._messages_api(ctx)
        if messages_api is not None:
            url, codec = messages_api
            try:
                answer, _ = await self._call(ctx, codec, url, deadline, json=to_vendor_request(req, ctx.model))
                return from_vendor_response(answer, ctx.model)
            except NoMessagesAPI:
                _remember_without_messages_api(url)
        payload = {**generate_request(req, ctx.model), "stream": False}
        answer, headers = await self._call(ctx, TASK, self.task_url(ctx, TEXT_GENERATION), deadline,
                                           json=payload)
        return from_generate_response(answer, ctx.model, payload["inputs"], headers)

    async def chat_stream(self, req: ChatRequest, ctx: CallContext) -> AsyncIterator[StreamChunk]:
        deadline = deadline_of(ctx)
        messages_api = self._messages_api(ctx)
        if messages_api is not None:
            url, codec = messages_api
            prompt = "\n".join(m.content for m in req.messages if isinstance(m.content, str))
            state = MessagesState(ctx.model, prompt_estimate=estimate_tokens(prompt))
            try:
                async for chunk in self._stream(ctx, codec, url, to_vendor_request(req, ctx.model), state, deadline):
                    yield chunk
                return
            except NoMessagesAPI:  # raised before any chunk
                _remember_without_messages_api(url)
        payload = {**generate_request(req, ctx.model), "stream": True}
        tokens = GenerateState(ctx.model, prompt=payload["inputs"])
        async for chunk in self._stream(ctx, TASK, self.task_url(ctx, TEXT_GENERATION), payload, tokens,
                                        deadline):
            yield chunk

    async def complete(self, req: CompletionRequest, ctx: CallContext) -> JSONObject:
        deadline = deadline_of(ctx)
        payload, prompt = completion_request(req)
        answer, headers = await self._bounded(deadline, self._call(
            ctx, TASK, self.task_url(ctx, TEXT_GENERATION), deadline, json=payload))
        return completion_response(answer, ctx.model, prompt, bool(req.echo), headers)

    async def complete_stream(self, req: CompletionRequest, ctx: CallContext) -> AsyncIterator[StreamChunk]:
        payload, prompt = completion_request(req)
        state = GenerateState(ctx.model, new_id("cmpl"), prompt=prompt, completion=True, echo=bool(req.echo))
        async for chunk in self._stream(ctx, TASK, self.task_url(ctx, TEXT_GENERATION), payload, state,
                                        deadline_of(ctx)):
            yield chunk

    # -- embeddings, transcriptions -------------------------------------------------------------

    async def embed(self, req: EmbeddingRequest, ctx: CallContext) -> JSONObject:
        self._task(ctx, ModelType.TEXT_EMBEDDING)
        if req.dimensions is not None:
            raise unsupported(PROVIDER, "dimensions", "dimensions")
        inputs = embedding_inputs(req)
        payload: JSONObject = {"inputs": inputs}
        payload.update({k: req.raw[k] for k in _PASSED_EMBEDDING_OPTIONS if req.raw.get(k) is not None})
        deadline = deadline_of(ctx)
        answer, _ = await self._bounded(deadline, self._call(ctx, TASK, self.task_url(ctx, FEATURE_EXTRACTION),
                                                              deadline, json=payload))
        texts = [inputs] if isinstance(inputs, str) else inputs
        vectors, tokens = pool(answer, len(texts))
        prompt_tokens = tokens if tokens is not None else sum(estimate_tokens(t) for t in texts)
        return {"object": "list", "data": embedding_items(vectors, req.encoding_format), "model": ctx.model,
                "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens}}

    async def transcribe(self, req: TranscriptionRequest, ctx: CallContext) -> TranscriptionResult:
        self._task(ctx, ModelType.SPEECH2TEXT)
        check_transcription(req.response_format, req.timestamp_granularities, PROVIDER)
        deadline = deadline_of(ctx)
        url = self.task_url(ctx, ASR)
        if needs_timestamps(req.response_format):
            call = self._call(ctx, TASK, url, deadline, json=asr_timestamp_request(req))
        else:
            call = self._call(ctx, TASK, url, deadline, body=req.file, content_type=audio_content_type(req))
        answer, _ = await self._bounded(deadline, call)
        return from_asr(answer, req.response_format, req.language)
