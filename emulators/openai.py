"""A fake OpenAI vendor: a small Starlette app speaking OpenAI's real wire format.

Tests script it and inspect it through `FakeOpenAIState` (shared with the server thread):

    state = FakeOpenAIState(reply_text="Hi there")
    with ServedApp(create_app(state)) as served:
        ...  # point a client at served.base_url + "/v1"
        assert state.requests[-1].json["model"] == "gpt-4o"

It checks what OpenAI checks (bearer key, required fields, parameter types and values)
and answers with OpenAI's error envelope otherwise. Reference: ../shared/vendors/openai.md.
"""

from __future__ import annotations

import asyncio
import secrets
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Union

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from emulators._openai_checks import (
    checked_messages,
    model_param,
    prompt_list,
    stream_params,
    token_limit,
)
from emulators._openai_payloads import (
    check_transcription_request,
    embeddings_response,
    transcription_response,
)
from emulators._openai_responses import responses as responses_api
from emulators._openai_wire import (
    ChatPlan,
    CompletionPlan,
    OpenAIHTTPError,
    SSEResponse,
    error_body,
    invalid_type,
    message_words,
    missing_param,
    sse_stream,
)
from emulators._vendor_common import (
    FakeState,
    RecordedRequest,
    UploadedFile,
    json_response,
    read_form,
    recorded,
)
from emulators.scripting import call_of, reply_of

__all__ = [
    "DEFAULT_API_KEY",
    "FakeOpenAIState",
    "RecordedRequest",
    "UploadedFile",
    "create_app",
    "mask_key",
]

DEFAULT_API_KEY = "sk-test-fake-openai-key"
DEFAULT_STREAM_ERROR: dict[str, Any] = error_body(
    "The server had an error while processing your request. Sorry about that!",
    type="server_error",
)["error"]
NO_KEY_MESSAGE = (
    "You didn't provide an API key. You need to provide your API key in an Authorization "
    "header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY), or as the password "
    "field (with blank username) if you're accessing the API from your browser and are "
    "prompted for a username and password. You can obtain an API key from "
    "https://platform.openai.com/account/api-keys."
)
BAD_JSON_MESSAGE = (
    "We could not parse the JSON body of your request. (HINT: This likely means you aren't "
    "using your HTTP library correctly. The OpenAI API expects a JSON payload, but what was "
    "sent was not valid JSON. If you have trouble figuring out how to fix this, please "
    "contact us through our help center at help.openai.com.)"
)

# (status, body: dict -> JSON | str -> raw text, headers); the headers may be left out.
FailSpec = Union[tuple[int, Union[dict[str, Any], str], dict[str, str]],
                 tuple[int, Union[dict[str, Any], str]]]


@dataclass
class FakeOpenAIState(FakeState):
    no_request_message = "the fake OpenAI server received no request"

    # -- scripting (set by tests) --
    api_keys: set[str] = field(default_factory=lambda: {DEFAULT_API_KEY})
    allowed_organizations: set[str] | None = None  # None: any OpenAI-Organization is fine
    reply_text: str = "Hello from the fake!"
    tool_call: tuple[str, str] | None = None  # (name, arguments JSON string)
    transcript: str = "The quick brown fox."
    delay: float = 0.0  # seconds before answering any request
    stream_delay: float = 0.0  # seconds between SSE events
    split_events: bool = False  # write each SSE event in pieces (mid-line, mid-UTF-8)
    fail_after_chunks: int | None = None  # send an error event after N events (every stream)
    stream_error: dict[str, Any] = field(default_factory=lambda: dict(DEFAULT_STREAM_ERROR))
    fail_next: list[FailSpec] = field(default_factory=list)  # popped one per request
    record_requests: bool = True  # False for long benchmark runs (requests list stays empty)
    # -- OpenAI-compatible vendors this fake plays (emulators/compatibles.py) --
    require_key: bool = True  # False: a server started without a key (vLLM, Ollama) ignores Authorization
    reasoning_models: frozenset[str] = frozenset()  # models that think aloud first (DeepSeek's reasoner)
    reasoning_text: str = "The user wants a greeting. One short line will do."
    usage_in_choice: bool = False  # Moonshot: a stream's usage in its finishing choice, always
    responses: dict[str, Any] = field(default_factory=dict)  # Responses API answers made, by id
    # -- observations (written by the server) --
    requests: list[RecordedRequest] = field(default_factory=list)
    organizations: list[str] = field(default_factory=list)  # OpenAI-Organization headers seen
    streams_started: int = 0
    streams_finished: int = 0  # sent through [DONE]
    streams_errored: int = 0  # ended by the scripted fail_after_chunks error event
    streams_aborted: int = 0  # the client went away before the end
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def requests_to(self, path: str) -> list[RecordedRequest]:
        return [r for r in list(self.requests) if r.path == path]

    def unauthorized(self, key: str | None) -> OpenAIHTTPError:
        """The 401 for a missing (None) or unknown key, in the vendor's words."""
        if key is None:
            return OpenAIHTTPError(401, NO_KEY_MESSAGE)
        return OpenAIHTTPError(
            401,
            f"Incorrect API key provided: {mask_key(key)}. You can find your API key at "
            "https://platform.openai.com/account/api-keys.",
            code="invalid_api_key",
        )


def mask_key(key: str) -> str:
    """Mask a key the way OpenAI's 401 message does: `sk-tes*******-key`."""
    if len(key) <= 8:
        return key[:2] + "*" * (len(key) - 2)
    return key[:6] + "*" * (len(key) - 10) + key[-4:]


# -- request plumbing -------------------------------------------------------------------

Handler = Callable[[Request, RecordedRequest], Awaitable[Response]]


async def _record(state: FakeOpenAIState, request: Request) -> RecordedRequest:
    record = await recorded(request)
    organization = request.headers.get("openai-organization")
    if state.record_requests:
        with state.lock:
            state.requests.append(record)
            if organization:
                state.organizations.append(organization)
    return record


def _check_auth(state: FakeOpenAIState, request: Request) -> None:
    if not state.require_key:
        return
    scheme, _, key = request.headers.get("authorization", "").partition(" ")
    key = key.strip()
    if scheme.lower() != "bearer" or not key:
        raise state.unauthorized(None)
    if key not in state.api_keys:
        raise state.unauthorized(key)
    organization = request.headers.get("openai-organization")
    allowed = state.allowed_organizations
    if organization and allowed is not None and organization not in allowed:
        raise OpenAIHTTPError(
            401,
            "OpenAI-Organization header should match organization for API key",
            code="mismatched_organization",
        )


def _endpoint(state: FakeOpenAIState, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    async def run(request: Request) -> Response:
        started = time.monotonic()
        record = await _record(state, request)
        try:
            if state.delay:
                await asyncio.sleep(state.delay)
            _check_auth(state, request)
            response = state.scripted_failure() or await handler(request, record)
        except OpenAIHTTPError as exc:
            response = json_response(exc.body, exc.status, exc.headers)
        standard = {
            "x-request-id": "req_" + secrets.token_hex(16),
            "openai-version": "2020-10-01",
            "openai-organization": request.headers.get("openai-organization", "user-fake"),
            "openai-processing-ms": str(int((time.monotonic() - started) * 1000)),
        }
        for name, value in standard.items():
            if name not in response.headers:
                response.headers[name] = value
        return response

    return run


def _json_object(record: RecordedRequest) -> dict[str, Any]:
    if record.json is None and record.body.strip() not in (b"null",):
        raise OpenAIHTTPError(400, BAD_JSON_MESSAGE)
    if not isinstance(record.json, dict):
        raise OpenAIHTTPError(400, "Invalid request body: expected a JSON object.")
    return record.json


# -- app --------------------------------------------------------------------------------


def create_app(state: FakeOpenAIState) -> Starlette:
    """The fake's ASGI app; every request is recorded in `state.requests`."""

    async def chat_completions(request: Request, record: RecordedRequest) -> Response:
        body = _json_object(record)
        model = model_param(body)
        messages = checked_messages(body.get("messages"))
        stream, include_usage = stream_params(body)
        limit = token_limit(body, "max_completion_tokens", "max_tokens")
        tools = body.get("tools")
        if tools is not None and not isinstance(tools, list):
            raise invalid_type("tools", "an array", tools)
        use_tool = bool(tools) and body.get("tool_choice") != "none"
        plan = ChatPlan(
            model=model,
            prompt_tokens=message_words(messages),
            reply_text=reply_of(state),
            limit=limit,
            tool_call=call_of(state.tool_call) if use_tool else None,
            reasoning=state.reasoning_text if model in state.reasoning_models else None,
            usage_in_choice=state.usage_in_choice,
        )
        if stream:
            return SSEResponse(sse_stream(state, plan.chunks(include_usage)))
        return json_response(plan.response())

    async def completions(request: Request, record: RecordedRequest) -> Response:
        body = _json_object(record)
        model = model_param(body)
        prompts = prompt_list(body.get("prompt"))
        stream, include_usage = stream_params(body)
        if stream and body.get("best_of") not in (None, 1):
            raise OpenAIHTTPError(400, "Cannot stream results with best_of > 1.",
                                  param="best_of")
        suffix = body.get("suffix")
        plan = CompletionPlan(
            model=model,
            prompts=prompts,
            reply_text=reply_of(state),
            limit=token_limit(body, "max_tokens") or 16,
            echo=bool(body.get("echo")),
            suffix=suffix if isinstance(suffix, str) else None,
        )
        if stream:
            return SSEResponse(sse_stream(state, plan.chunks(include_usage)))
        return json_response(plan.response())

    async def embeddings(request: Request, record: RecordedRequest) -> Response:
        return json_response(embeddings_response(_json_object(record)))

    async def transcriptions(request: Request, record: RecordedRequest) -> Response:
        content_type = request.headers.get("content-type", "")
        if not content_type.startswith("multipart/form-data"):
            raise OpenAIHTTPError(
                400, f"Invalid Content-Type header ({content_type}), expected "
                "multipart/form-data. (HINT: If you're using curl, you can pass "
                "-H 'Content-Type: multipart/form-data')")
        form_fields = await read_form(request, record)
        upload = record.files.get("file")
        if upload is None:
            raise missing_param("file")

        def text_field(name: str) -> str | None:
            value = form_fields.get(name)
            return value if isinstance(value, str) else None

        model = text_field("model")
        response_format = text_field("response_format") or "json"
        granularities = [str(g) for g in form_fields.get("timestamp_granularities[]", [])]
        check_transcription_request(
            filename=upload.filename, model=model, response_format=response_format,
            granularities=granularities, temperature=text_field("temperature"))
        assert model is not None
        return transcription_response(
            text=state.transcript, model=model, audio=upload.data,
            language=text_field("language"), response_format=response_format,
            granularities=granularities)

    async def responses(request: Request, record: RecordedRequest) -> Response:
        return await responses_api(state, _json_object(record), record)

    async def not_found(request: Request, record: RecordedRequest) -> Response:
        raise OpenAIHTTPError(404, f"Invalid URL ({request.method} {request.url.path})")

    post = ["POST"]
    every = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
    return Starlette(routes=[
        Route("/v1/chat/completions", _endpoint(state, chat_completions), methods=post),
        Route("/v1/completions", _endpoint(state, completions), methods=post),
        Route("/v1/embeddings", _endpoint(state, embeddings), methods=post),
        Route("/v1/audio/transcriptions", _endpoint(state, transcriptions), methods=post),
        Route("/v1/responses", _endpoint(state, responses), methods=post),
        # Anything else, including a wrong method on a known path, is OpenAI's 404.
        Route("/{path:path}", _endpoint(state, not_found), methods=every),
    ])
