"""Hugging Face: the serverless Inference API, Inference Endpoints and self-hosted TGI/TEI.
Reference: ../shared/vendors/huggingface.md. Pure translation lives in
`huggingface_wire.py` (errors, TGI's Messages API) and `huggingface_tasks.py` (tasks).

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
in `huggingface_wire.py`).

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
  `x-generated-tokens` where given, else estimated (`translators/_hosted.py`).
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
from collections.abc import AsyncIterator
from typing import Any

import orjson

from keystore.models import Credential, CredentialField
from translators._hosted import (
    audio_content_type,
    check_transcription,
    deadline_of,
    embedding_items,
    estimate_tokens,
    needs_timestamps,
    remaining,
    timed_out,
)
from translators._http import UpstreamResponse
from translators._json import loads as bounded_json
from translators._sse import DONE_DATA, SSEDecoder
from translators.base import CallContext, Translator
from translators.errors import bad_request, unsupported
from translators.huggingface_tasks import (
    GenerateState,
    asr_timestamp_request,
    completion_request,
    completion_response,
    embedding_inputs,
    end_of_generate_stream,
    from_asr,
    pool,
    to_vendor_request,
)
from translators.huggingface_tasks import from_vendor_event as from_generate_event
from translators.huggingface_tasks import from_vendor_response as from_generate_response
from translators.huggingface_wire import (
    PROVIDER,
    StreamState,
    bad_response,
    end_of_stream,
    endpoint_root,
    error_body,
    error_from_response,
    error_in_body,
    from_vendor_event,
    from_vendor_response,
    loading_delay,
    messages_api_request,
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

__all__ = ["HuggingFaceTranslator", "error_from_response", "from_generate_event", "from_generate_response",
           "from_vendor_event", "from_vendor_response", "messages_api_request", "pool", "to_vendor_request"]

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


class _NoMessagesAPI(Exception):
    """The server has no Messages API route (auto-detection falls back to text generation)."""


def _parse(data: bytes) -> Any:
    try:
        return bounded_json(data)
    except orjson.JSONDecodeError:
        raise bad_response("a stream event that is not JSON") from None


class HuggingFaceTranslator(Translator):
    name = PROVIDER
    display_name = "Hugging Face"
    key_url = "https://huggingface.co/settings/tokens"
    model_types = frozenset(ModelType)
    per_model = True
    default_base_url = "https://router.huggingface.co/hf-inference"
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

    def _messages_api(self, ctx: CallContext) -> tuple[bool, bool, str]:
        """(use the Messages API, fall back on 404/405, its URL)."""
        task = self._task(ctx, ModelType.LLM)
        url = self.chat_url(ctx)
        if task == TEXT_GENERATION or (task is None and url in _WITHOUT_MESSAGES_API):
            return False, False, url
        return True, task is None, url

    @staticmethod
    def _remember_without_messages_api(url: str) -> None:
        if len(_WITHOUT_MESSAGES_API) >= _REMEMBER_LIMIT:
            _WITHOUT_MESSAGES_API.clear()
        _WITHOUT_MESSAGES_API[url] = None

    async def _post(self, ctx: CallContext, url: str, deadline: float, *, json: Any = None,
                    body: bytes | None = None, content_type: str | None = None) -> UpstreamResponse:
        """One POST, retried while the model loads; any non-200 but a 404/405 is raised."""
        headers = self.headers(ctx)
        if content_type:
            headers["Content-Type"] = content_type
        while True:
            resp = await ctx.http.request("POST", url, headers=headers, json=json, body=body)
            delay = loading_delay(resp.status, resp.body, resp.headers, deadline)
            if delay is None:
                break
            await asyncio.sleep(delay)
        if resp.status != 200 and resp.status not in (404, 405):
            raise error_from_response(resp.status, error_body(resp.body), resp.headers)
        return resp

    @staticmethod
    def _ok(resp: UpstreamResponse) -> Any:
        if resp.status != 200:
            raise error_from_response(resp.status, error_body(resp.body), resp.headers)
        body = resp.json()
        if body is None:
            raise bad_response("an answer that is not JSON")
        return body

    async def _bounded(self, deadline: float, call: Any) -> Any:
        try:
            async with asyncio.timeout(max(0.0, remaining(deadline))):
                return await call
        except TimeoutError:
            raise timed_out(PROVIDER, "the request's deadline passed") from None

    async def _events(self, ctx: CallContext, url: str, payload: JSONObject, deadline: float,
                      fallback: bool = False) -> AsyncIterator[Any]:
        """The parsed events of a streamed call (`data:` JSON, no end marker needed),
        retried while the model loads; 404/405 raise `_NoMessagesAPI` when `fallback`."""
        while True:
            async with ctx.http.stream("POST", url, headers=self.headers(ctx), json=payload) as resp:
                if resp.status != 200:
                    raw = await resp.read()
                    if fallback and resp.status in (404, 405):
                        raise _NoMessagesAPI
                    delay = loading_delay(resp.status, raw, resp.headers, deadline)
                    if delay is None:
                        raise error_from_response(resp.status, error_body(raw), resp.headers)
                elif "json" in resp.headers.get("Content-Type", ""):  # an error where a stream belongs
                    body = error_body(await resp.read())
                    if isinstance(body, dict) and body.get("error") is not None:
                        raise error_in_body(body)
                    raise bad_response("a JSON answer to a streamed request")
                else:
                    decoder = SSEDecoder(resp.max_event_bytes)
                    async for data in resp.chunks():
                        for event in decoder.feed(data):
                            if event.data == DONE_DATA:
                                return
                            if event.data:
                                yield _parse(event.data)
                    for event in decoder.flush():
                        if event.data and event.data != DONE_DATA:
                            yield _parse(event.data)
                    return
            await asyncio.sleep(delay)

    # -- llm -------------------------------------------------------------------------------------

    async def chat(self, req: ChatRequest, ctx: CallContext) -> JSONObject:
        deadline = deadline_of(ctx)
        return await self._bounded(deadline, self._chat(req, ctx, deadline))

    async def _chat(self, req: ChatRequest, ctx: CallContext, deadline: float) -> JSONObject:
        use_api, fallback, url = self._messages_api(ctx)
        if use_api:
            resp = await self._post(ctx, url, deadline, json=messages_api_request(req, ctx.model))
            if not (fallback and resp.status in (404, 405)):
                return from_vendor_response(self._ok(resp), ctx.model)
            self._remember_without_messages_api(url)
        body = to_vendor_request(req, ctx.model)
        body["stream"] = False
        resp = await self._post(ctx, self.task_url(ctx, TEXT_GENERATION), deadline, json=body)
        return from_generate_response(self._ok(resp), ctx.model, body["inputs"], resp.headers)

    async def chat_stream(self, req: ChatRequest, ctx: CallContext) -> AsyncIterator[StreamChunk]:
        deadline = deadline_of(ctx)
        use_api, fallback, url = self._messages_api(ctx)
        if use_api:
            prompt = "\n".join(m.content for m in req.messages if isinstance(m.content, str))
            state = StreamState(ctx.model, prompt_estimate=estimate_tokens(prompt))
            events = self._events(ctx, url, messages_api_request(req, ctx.model), deadline, fallback)
            try:
                async for event in events:
                    for chunk in from_vendor_event(event, state):
                        yield chunk
                for chunk in end_of_stream(state):
                    yield chunk
                return
            except _NoMessagesAPI:
                self._remember_without_messages_api(url)
            finally:
                await events.aclose()  # type: ignore[attr-defined]
        body = to_vendor_request(req, ctx.model)
        body["stream"] = True
        async for chunk in self._generate_stream(ctx, body, GenerateState(ctx.model, body["inputs"]), deadline):
            yield chunk

    async def _generate_stream(self, ctx: CallContext, body: JSONObject, state: GenerateState,
                               deadline: float) -> AsyncIterator[StreamChunk]:
        events = self._events(ctx, self.task_url(ctx, TEXT_GENERATION), body, deadline)
        try:
            async for event in events:
                for chunk in from_generate_event(event, state):
                    yield chunk
                if state.finished:
                    break
        finally:
            await events.aclose()  # type: ignore[attr-defined]
        for chunk in end_of_generate_stream(state):
            yield chunk

    async def complete(self, req: CompletionRequest, ctx: CallContext) -> JSONObject:
        deadline = deadline_of(ctx)
        body, prompt = completion_request(req)
        resp = await self._bounded(deadline, self._post(ctx, self.task_url(ctx, TEXT_GENERATION), deadline,
                                                        json=body))
        return completion_response(self._ok(resp), ctx.model, prompt, bool(req.echo), resp.headers)

    async def complete_stream(self, req: CompletionRequest, ctx: CallContext) -> AsyncIterator[StreamChunk]:
        body, prompt = completion_request(req)
        state = GenerateState(ctx.model, prompt, completion=True, echo=bool(req.echo))
        async for chunk in self._generate_stream(ctx, body, state, deadline_of(ctx)):
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
        resp = await self._bounded(deadline, self._post(ctx, self.task_url(ctx, FEATURE_EXTRACTION), deadline,
                                                        json=payload))
        texts = [inputs] if isinstance(inputs, str) else inputs
        vectors, tokens = pool(self._ok(resp), len(texts))
        prompt_tokens = tokens if tokens is not None else sum(estimate_tokens(t) for t in texts)
        return {"object": "list", "data": embedding_items(vectors, req.encoding_format), "model": ctx.model,
                "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens}}

    async def transcribe(self, req: TranscriptionRequest, ctx: CallContext) -> TranscriptionResult:
        self._task(ctx, ModelType.SPEECH2TEXT)
        check_transcription(req.response_format, req.timestamp_granularities, PROVIDER)
        deadline = deadline_of(ctx)
        url = self.task_url(ctx, ASR)
        if needs_timestamps(req.response_format):
            call = self._post(ctx, url, deadline, json=asr_timestamp_request(req))
        else:
            call = self._post(ctx, url, deadline, body=req.file, content_type=audio_content_type(req))
        resp = await self._bounded(deadline, call)
        return from_asr(self._ok(resp), req.response_format, req.language)
