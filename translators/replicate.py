"""Replicate: models run as asynchronous predictions. Reference: ../shared/vendors/replicate.md.
Pure translation lives in `translators/replicate_wire.py`.

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
  when the model reported `output_token_count` >= `max_tokens`.
- usage: Replicate reports no reliable token counts. `metrics.input_token_count` /
  `output_token_count` are used where a model gives them; otherwise, and always for
  streams, the counts are ESTIMATES (`ceil(characters / 4)`, `translators/_hosted.py`).

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
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

import orjson

from keystore.models import Credential, CredentialField
from translators._hosted import check_transcription, deadline_of, remaining, timed_out
from translators._json import loads as bounded_json
from translators._sse import SSEDecoder
from translators.base import CallContext, Translator
from translators.errors import ApiError, UpstreamError, bad_request, body_text
from translators.replicate_wire import (
    PROVIDER,
    TERMINAL,
    StreamState,
    end_of_stream,
    error_from_response,
    from_vendor_event,
    from_vendor_response,
    output_text,
    prediction_body,
    prompt_text,
    succeeded,
    to_vendor_request,
    transcription_input,
    transcription_output,
)
from translators.types import (
    ChatRequest,
    JSONObject,
    ModelType,
    StreamChunk,
    TranscriptionRequest,
    TranscriptionResult,
)

__all__ = ["ReplicateTranslator", "error_from_response", "from_vendor_event", "from_vendor_response",
           "to_vendor_request"]

FIRST_POLL, MAX_POLL, POLL_GROWTH = 0.25, 2.0, 1.5   # seconds between polls of urls.get
MAX_WAIT = 60   # Replicate holds a `Prefer: wait` request for at most 60 s
_MODEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}/[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
_VERSION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,199}$")
# Cancel requests outlive the call that started them (a client that left); kept referenced here.
_BACKGROUND: set[asyncio.Task[None]] = set()


def _body(payload: bytes) -> Any:
    try:
        return bounded_json(payload) if payload else None
    except orjson.JSONDecodeError:
        return body_text(payload)


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
        if kind == "stream" or not isinstance(pid, str) or not re.fullmatch(r"[A-Za-z0-9_-]{1,100}", pid):
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

    async def _create(self, ctx: CallContext, inputs: JSONObject, deadline: float, stream: bool) -> Any:
        headers = self.headers(ctx)
        if not stream:
            wait = int(min(remaining(deadline), ctx.http.timeouts.read) - 1)
            headers["Prefer"] = f"wait={max(1, min(MAX_WAIT, wait))}"
        body = prediction_body(inputs, ctx.credential.get("version"), stream)
        resp = await ctx.http.request("POST", self.create_url(ctx), headers=headers, json=body)
        if resp.status not in (200, 201):
            raise error_from_response(resp.status, _body(resp.body), resp.headers)
        prediction = resp.json()
        if not isinstance(prediction, dict) or not isinstance(prediction.get("status"), str):
            raise UpstreamError(502, f"{PROVIDER} answered a create with something that is not a prediction",
                                "server_error", "upstream_bad_response")
        return prediction

    async def _poll(self, ctx: CallContext, prediction: Any, deadline: float) -> Any:
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
                raise UpstreamError(502, f"{PROVIDER} returned a prediction without an id", "server_error",
                                    "upstream_bad_response")
            resp = await ctx.http.request("GET", url, headers=self.headers(ctx))
            if resp.status != 200:
                raise error_from_response(resp.status, _body(resp.body), resp.headers)
            polled = resp.json()
            if not isinstance(polled, dict) or not isinstance(polled.get("status"), str):
                raise UpstreamError(502, f"{PROVIDER} returned something that is not a prediction", "server_error",
                                    "upstream_bad_response")
            prediction = polled
        return prediction

    async def _run(self, ctx: CallContext, inputs: JSONObject, deadline: float) -> Any:
        """Create, wait and poll, all within the request's deadline; an abandoned or
        timed-out prediction is canceled."""
        prediction: Any = None
        try:
            async with asyncio.timeout(max(0.0, remaining(deadline))):
                prediction = await self._create(ctx, inputs, deadline, stream=False)
                prediction = await self._poll(ctx, prediction, deadline)
                return prediction
        except TimeoutError:
            if prediction is not None:
                self.cancel_in_background(ctx, prediction)
            raise timed_out(PROVIDER, "the prediction did not end before the request's deadline") from None
        except asyncio.CancelledError:
            if isinstance(prediction, dict) and prediction.get("status") not in TERMINAL:
                self.cancel_in_background(ctx, prediction)
            raise

    # -- endpoints ----------------------------------------------------------------------------------

    async def chat(self, req: ChatRequest, ctx: CallContext) -> JSONObject:
        inputs = to_vendor_request(req, ctx.model)
        prediction = await self._run(ctx, inputs, deadline_of(ctx))
        return from_vendor_response(prediction, ctx.model, req.token_limit)

    async def chat_stream(self, req: ChatRequest, ctx: CallContext) -> AsyncIterator[StreamChunk]:
        inputs = to_vendor_request(req, ctx.model)
        deadline = deadline_of(ctx)
        try:
            async with asyncio.timeout(max(0.0, remaining(deadline))):
                prediction = await self._create(ctx, inputs, deadline, stream=True)
        except TimeoutError:
            raise timed_out(PROVIDER, "the prediction was not created before the request's deadline") from None
        state = StreamState(ctx.model, prompt_text(inputs))
        if prediction["status"] in TERMINAL:  # failed (or canceled) before it started
            succeeded(prediction)
        ended = False
        try:
            url = self._url(ctx, prediction, "stream")
            if url is None:  # a model that cannot stream: wait for it, send the output whole
                prediction = succeeded(await self._poll(ctx, prediction, deadline))
                ended = True
                text = output_text(prediction.get("output"))
                chunks = [state.chunk({"role": "assistant", "content": ""}), state.chunk({"content": text}),
                          state.chunk({}, "stop")]
                state.text.append(text)
                state.finished = True
                for chunk in chunks + end_of_stream(state):
                    yield chunk
                return
            headers = {**self.headers(ctx), "Accept": "text/event-stream", "Cache-Control": "no-store"}
            async with ctx.http.stream("GET", url, headers=headers) as resp:
                if resp.status != 200:
                    raise error_from_response(resp.status, _body(await resp.read()), resp.headers)
                decoder = SSEDecoder(resp.max_event_bytes)
                async for data in resp.chunks():
                    for event in decoder.feed(data):
                        ended = ended or event.event in ("done", "error")
                        for chunk in from_vendor_event(event, state):
                            yield chunk
                    if state.finished:
                        break
                else:
                    for event in decoder.flush():
                        for chunk in from_vendor_event(event, state):
                            yield chunk
            for chunk in end_of_stream(state):
                yield chunk
        finally:
            if not ended and not state.finished:
                self.cancel_in_background(ctx, prediction)

    async def transcribe(self, req: TranscriptionRequest, ctx: CallContext) -> TranscriptionResult:
        check_transcription(req.response_format, req.timestamp_granularities, PROVIDER)
        prediction = await self._run(ctx, transcription_input(req), deadline_of(ctx))
        return transcription_output(prediction, req.response_format)
