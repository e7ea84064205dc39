"""Replicate: models run as asynchronous predictions. Reference: ../shared/vendors/replicate.md.
The pure translation is `translators/replicate/codec.py`; this module runs predictions
(the create-then-poll and create-then-stream recipes).

Models are added one by one, each with its own credential and model type::

    modelport models add TENANT replicate OWNER/NAME --type llm|speech2text api_token=r8_... [version=HASH]

- `api_token` (secret): sent as `Authorization: Bearer`.
- `version` (optional): a version id; predictions then go to `POST {base_url}/predictions`
  with `{"version", "input"}`. Without it, to the model's latest deployment at
  `POST {base_url}/models/{owner}/{name}/predictions`. `base_url` defaults to
  https://api.replicate.com/v1.

llm. The messages become the prediction's `input` (text only):
- `system_prompt`: the system and developer messages, joined by a blank line;
- `prompt`: a single user message as it is (the model applies its own chat template);
  a longer conversation in the dialogue template of `translators/_hosted.py`:
  `User: ...` / `Assistant: ...` blocks a blank line apart, ending with `Assistant:`;
- `max_completion_tokens`/`max_tokens` -> `max_tokens`; `temperature`, `top_p` as they are;
  `stop` -> `stop_sequences`, one comma-separated string (a stop sequence containing a
  comma is refused); the extra field `seed` passes;
- refused with a 400 naming the field: `n` > 1, `logprobs`, `tools`, `response_format`
  other than text, images, tool messages. Dropped: `presence_penalty`,
  `frequency_penalty`, `logit_bias`, `user` and the rest (input schemas differ per model).
- Not streamed: the prediction is created with `Prefer: wait=N` (N <= 60, and below the
  upstream read timeout); a prediction still `starting`/`processing` is polled at its
  `urls.get` (every 0.25 s, growing to 2 s) until it ends or the request's deadline passes,
  when it is canceled and the answer is a 504. The output token list is joined with "".
- Streamed: the prediction is created with `"stream": true` and its `urls.stream` read:
  `output` events are the content (multi-line data joined by a newline, whitespace kept),
  `logs` are skipped, `error` and `done` with reason `error`/`canceled` become an error,
  `done` finishes. A model without `urls.stream` is polled and its output sent in one piece.
- A client that goes away mid-stream (or a deadline that passes) cancels the prediction
  (`POST urls.cancel`, in the background).
- finish reason: always `stop` (Replicate does not say why a model stopped), `length` only
  when the model reported `output_token_count` >= the input's `max_tokens`.
- usage: Replicate reports no reliable token counts. `metrics.input_token_count` /
  `output_token_count` are used where a model gives them; otherwise, and always for
  streams, the counts are ESTIMATES (`translators/_estimate.py`: a token per four
  characters, one per CJK character).

speech2text: a whisper-style model (e.g. openai/whisper): `{"audio": <the upload as a base64
data URI with its content type>, "language"?, "temperature"?, "initial_prompt"? (from
`prompt`)}`; the output's `transcription` (or `text`) gives `json`/`text`, its `segments`
(or `chunks`) `srt`, `vtt` and `verbose_json`; a model without timestamps -> 400 for those.
Word timestamps are refused.

Errors: `application/problem+json` `{title, detail, status}`: 401/403 -> 403
`upstream_credential_rejected`, 402 and 429 -> 429, 422 -> 400 `invalid_input` with the
detail, 404 -> 404 `model_not_found`; a `failed` prediction -> 502 `prediction_failed` with
its error, `canceled` -> 502 `prediction_canceled`.
URLs that Replicate returns (`urls.get/cancel/stream`) receive the token, so they are
followed only on Replicate's own hosts over https (api.replicate.com, stream*.replicate.com,
streaming-api.*.replicate.net) or on `base_url`'s own origin (self-hosted, tests); any
other get/cancel URL is replaced by our own `{base_url}/predictions/{id}`, a stream URL
elsewhere means the output is polled instead.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing
from typing import Any, cast
from urllib.parse import urlsplit

from keystore.models import Credential, CredentialField
from translators._hosted import check_transcription, deadline_of, remaining, timed_out
from translators._http import UpstreamResponse
from translators._stream import checked_json, exchange, stream_sse
from translators.base import CallContext, Translator
from translators.errors import ApiError, bad_request, bad_response
from translators.replicate.codec import (
    CODEC,
    PROVIDER,
    TERMINAL,
    ReplicateState,
    error_from_response,
    from_vendor_event,
    from_vendor_response,
    is_prediction,
    new_id,
    prediction_body,
    prompt_text,
    succeeded,
    to_vendor_request,
    transcription_input,
    transcription_output,
    whole_output,
)
from translators.types import (
    ChatRequest,
    JSONObject,
    ModelType,
    StreamChunk,
    TranscriptionRequest,
    TranscriptionResult,
)

__all__ = ["CODEC", "ReplicateTranslator", "error_from_response", "from_vendor_event", "from_vendor_response",
           "to_vendor_request"]

FIRST_POLL, MAX_POLL, POLL_GROWTH = 0.25, 2.0, 1.5   # seconds between polls of urls.get
MAX_WAIT = 60   # Replicate holds a `Prefer: wait` request for at most 60 s
_MODEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}/[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
_VERSION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,199}$")
_PREDICTION_ID = re.compile(r"[A-Za-z0-9_-]{1,100}")
# Cancel requests outlive the call that started them (a client that left); kept referenced here.
_BACKGROUND: set[asyncio.Task[None]] = set()


def _may_follow(url: str, base_url: str) -> bool:
    """May a URL from a prediction receive the token? (See the module docstring.)"""
    try:
        parts, base = urlsplit(url), urlsplit(base_url)
        port = parts.port
    except ValueError:
        return False
    if (parts.scheme, parts.netloc) == (base.scheme, base.netloc):
        return True
    host = (parts.hostname or "").lower()
    return (parts.scheme == "https" and "@" not in parts.netloc and port in (None, 443)
            and (host == "api.replicate.com"
                 or (host.startswith("stream") and host.endswith((".replicate.com", ".replicate.net")))))


def _prediction(body: Any) -> JSONObject:
    if not is_prediction(body):
        raise bad_response(PROVIDER, "something that is not a prediction")
    return cast(JSONObject, body)


def _created(resp: UpstreamResponse) -> JSONObject:
    # A create is answered 201, or 200 when `Prefer: wait` saw the prediction end: both are answers.
    answer = UpstreamResponse(200, resp.headers, resp.body) if resp.status == 201 else resp
    return _prediction(checked_json(CODEC, answer))


class ReplicateTranslator(Translator):
    name = PROVIDER
    display_name = "Replicate"
    key_url = "https://replicate.com/account/api-tokens"
    model_types = frozenset({ModelType.LLM, ModelType.SPEECH2TEXT})
    per_model = True
    default_base_url = "https://api.replicate.com/v1"
    credential_fields = (
        CredentialField("api_token", description="Replicate API token (r8_...)"),
        CredentialField("version", required=False, secret=False, label="Model version",
                        description="Model version id (default: the model's latest deployment)"),
    )

    def check_model(self, model: str) -> None:
        super().check_model(model)
        if not _MODEL.match(model):
            raise bad_request(f"Replicate model {model!r} is not allowed: use OWNER/NAME (letters, digits, '-', "
                              "'_', '.')", "model", "invalid_model_id")

    def check_credential(self, credential: Credential) -> None:
        version = credential.get("version")
        if version and not _VERSION.match(version):
            raise bad_request(f"the {PROVIDER} credential's version is not a version id", "version",
                              "invalid_credential")

    # -- plumbing ----------------------------------------------------------------------------------

    def headers(self, ctx: CallContext) -> dict[str, str]:
        return {"Authorization": f"Bearer {ctx.credential['api_token']}"}

    def create_url(self, ctx: CallContext) -> str:
        if ctx.credential.get("version"):
            return f"{ctx.base_url}/predictions"
        self.check_model(ctx.model)
        return f"{ctx.base_url}/models/{ctx.model}/predictions"

    def _url(self, ctx: CallContext, prediction: Any, kind: str) -> str | None:
        """The prediction's `urls[kind]` if it may receive the token, else (get/cancel) our own."""
        urls = prediction.get("urls") if isinstance(prediction, dict) else None
        url = urls.get(kind) if isinstance(urls, dict) else None
        if isinstance(url, str) and _may_follow(url, ctx.base_url):
            return url
        pid = prediction.get("id") if isinstance(prediction, dict) else None
        if kind == "stream" or not isinstance(pid, str) or not _PREDICTION_ID.fullmatch(pid):
            return None
        return f"{ctx.base_url}/predictions/{pid}" + ("/cancel" if kind == "cancel" else "")

    def cancel_in_background(self, ctx: CallContext, prediction: Any) -> None:
        url = self._url(ctx, prediction, "cancel")
        if url is None:
            return

        async def cancel() -> None:
            try:
                await ctx.http.request("POST", url, headers=self.headers(ctx))
            except ApiError:
                pass  # best effort: the prediction ends by itself anyway

        task = asyncio.get_running_loop().create_task(cancel())
        _BACKGROUND.add(task)
        task.add_done_callback(_BACKGROUND.discard)

    # -- the recipe: create, then poll or stream ------------------------------------------------------

    async def _create(self, ctx: CallContext, inputs: JSONObject, deadline: float, stream: bool) -> JSONObject:
        headers = self.headers(ctx)
        if not stream:
            wait = int(min(remaining(deadline), ctx.http.timeouts.read) - 1)
            headers["Prefer"] = f"wait={max(1, min(MAX_WAIT, wait))}"
        body = prediction_body(inputs, ctx.credential.get("version"), stream)
        return _created(await ctx.http.request("POST", self.create_url(ctx), headers=headers, json=body))

    async def _poll(self, ctx: CallContext, prediction: JSONObject, deadline: float) -> JSONObject:
        """Poll `urls.get` until the prediction ends; past the deadline, cancel it and 504."""
        interval = FIRST_POLL
        while prediction.get("status") not in TERMINAL:
            if remaining(deadline) <= interval:
                self.cancel_in_background(ctx, prediction)
                raise timed_out(PROVIDER, f"the prediction was still {prediction.get('status')!r}; it was canceled")
            await asyncio.sleep(interval)
            interval = min(MAX_POLL, interval * POLL_GROWTH)
            url = self._url(ctx, prediction, "get")
            if url is None:
                raise bad_response(PROVIDER, "a prediction without an id")
            prediction = _prediction(await exchange(ctx.http, CODEC, url, None, headers=self.headers(ctx),
                                                    method="GET"))
        return prediction

    async def _run(self, ctx: CallContext, inputs: JSONObject, deadline: float) -> JSONObject:
        """Create, wait and poll, all within the request's deadline; an abandoned or
        timed-out prediction is canceled."""
        prediction: JSONObject | None = None
        try:
            async with asyncio.timeout(max(0.0, remaining(deadline))):
                prediction = await self._create(ctx, inputs, deadline, stream=False)
                return await self._poll(ctx, prediction, deadline)
        except TimeoutError:
            if prediction is not None:
                self.cancel_in_background(ctx, prediction)
            raise timed_out(PROVIDER, "the prediction did not end before the request's deadline") from None
        except asyncio.CancelledError:
            if prediction is not None and prediction.get("status") not in TERMINAL:
                self.cancel_in_background(ctx, prediction)
            raise

    # -- endpoints ----------------------------------------------------------------------------------

    async def chat(self, req: ChatRequest, ctx: CallContext) -> JSONObject:
        inputs = to_vendor_request(req, ctx.model)
        prediction = await self._run(ctx, inputs, deadline_of(ctx))
        if not isinstance(prediction.get("input"), dict):  # echoed by Replicate: the answer reads max_tokens there
            prediction = {**prediction, "input": inputs}
        return from_vendor_response(prediction, ctx.model)

    async def chat_stream(self, req: ChatRequest, ctx: CallContext) -> AsyncIterator[StreamChunk]:
        inputs = to_vendor_request(req, ctx.model)
        deadline = deadline_of(ctx)
        try:
            async with asyncio.timeout(max(0.0, remaining(deadline))):
                prediction = await self._create(ctx, inputs, deadline, stream=True)
        except TimeoutError:
            raise timed_out(PROVIDER, "the prediction was not created before the request's deadline") from None
        if prediction["status"] in TERMINAL:  # failed (or canceled) before it started
            succeeded(prediction)
        state = ReplicateState(ctx.model, new_id(prediction), prompt=prompt_text(inputs))
        try:
            url = self._url(ctx, prediction, "stream")
            if url is None:  # a model that cannot stream: wait for it, send the output whole
                for chunk in whole_output(succeeded(await self._poll(ctx, prediction, deadline)), state):
                    yield chunk
                return
            headers = {**self.headers(ctx), "Accept": "text/event-stream", "Cache-Control": "no-store"}
            chunks = stream_sse(ctx.http, CODEC, ctx.model, url, headers=headers, method="GET", state=state)
            async with aclosing(cast(AsyncGenerator[StreamChunk, None], chunks)):
                async for chunk in chunks:
                    yield chunk
        finally:
            if not state.ended:  # the client left, or the stream broke: the prediction may run on
                self.cancel_in_background(ctx, prediction)

    async def transcribe(self, req: TranscriptionRequest, ctx: CallContext) -> TranscriptionResult:
        check_transcription(req.response_format, req.timestamp_granularities, PROVIDER)
        prediction = await self._run(ctx, transcription_input(req), deadline_of(ctx))
        return transcription_output(prediction, req.response_format)
