"""A fake Azure OpenAI resource: OpenAI's wire format behind Azure's URLs, auth and quirks.

Reference: ../shared/vendors/azure-openai.md and the recordings in
../shared/vendors/recordings/azure-openai/ (error bodies below are copied from them).

It checks what Azure checks, in Azure's order and with Azure's bodies:

- the path `/openai/deployments/{deployment}/{operation}` and an `api-version` query
  (`YYYY-MM-DD[-preview]`): otherwise 404 `{"error":{"code":"404","message":"Resource not found"}}`;
- an `api-key` header from `state.api_keys`: otherwise 401 with code `"401"`; an
  `Authorization` header is refused with 401 too (the fake knows no Entra tokens, and a
  gateway must never send its own bearer token upstream);
- the deployment exists (`state.deployments`): otherwise 404 `DeploymentNotFound`;
  and serves the operation (an embedding model cannot chat): otherwise 400 `OperationNotSupported`;
- `stream_options` only on api-versions from 2024-08-01: otherwise 400 "Unrecognized
  request argument supplied: stream_options";
- OpenAI's own request checks (messages, types, limits), shared with the OpenAI fake.

It answers like Azure: the response's `model` is the deployment's model (not its name),
`prompt_filter_results` and per-choice `content_filter_results`; streams start with the
empty-`choices` prompt-filter chunk (`prompt_annotations` and `usage: null` on every
chunk for api-versions before 2023-10-01 / 2024-08-01), carry an asynchronous-filter
annotation chunk without `delta`, and can be replayed in awkward pieces.
"""

from __future__ import annotations

import asyncio
import re
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Union

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from emulators._openai_checks import (
    checked_messages,
    prompt_list,
    stream_params,
    token_limit,
)
from emulators._openai_payloads import (
    check_transcription_request,
    embeddings_response,
    transcription_response,
)
from emulators._openai_wire import (
    ChatPlan,
    CompletionPlan,
    OpenAIHTTPError,
    SSEResponse,
    message_words,
    sse_stream,
)
from emulators._vendor_common import (
    FakeState,
    RecordedRequest,
    json_response,
    read_form,
    recorded,
)
from emulators.scripting import call_of, reply_of

__all__ = [
    "API_VERSION",
    "DEFAULT_API_KEY",
    "DEFAULT_DEPLOYMENTS",
    "ERROR_400_CONTENT_FILTER",
    "ERROR_404_DEPLOYMENT_NOT_FOUND",
    "FakeAzureState",
    "azure_error",
    "create_app",
    "error_429",
]

DEFAULT_API_KEY = "fake-azure-key-0123456789abcdef"
API_VERSION = "2024-10-21"
STREAM_OPTIONS_SINCE = "2024-08-01"
PROMPT_FILTER_RESULTS_SINCE = "2023-10-01"  # before: `prompt_annotations`
DEFAULT_DEPLOYMENTS = {
    "prod-chat": "gpt-4o-mini-2024-07-18",
    "legacy-chat": "gpt-35-turbo",
    "prod-instruct": "gpt-35-turbo-instruct",
    "prod-embed": "text-embedding-3-small",
    "prod-whisper": "whisper",
}

SAFE: dict[str, Any] = {name: {"filtered": False, "severity": "safe"}
                        for name in ("hate", "self_harm", "sexual", "violence")}
FILTERED: dict[str, Any] = {**SAFE, "violence": {"filtered": True, "severity": "medium"}}
RESOURCE_NOT_FOUND = {"error": {"code": "404", "message": "Resource not found"}}
ACCESS_DENIED = {"error": {"code": "401", "message": (
    "Access denied due to invalid subscription key or wrong API endpoint. Make sure to provide a valid key "
    "for an active subscription and use a correct regional API endpoint for your resource.")}}
BEARER_REFUSED = {"error": {"code": "401", "message": (
    "Unauthorized. Access token is missing, invalid, audience is incorrect "
    "(https://cognitiveservices.azure.com), or have expired.")}}
# recordings/azure-openai/error_404_deployment_not_found.json
ERROR_404_DEPLOYMENT_NOT_FOUND: dict[str, Any] = {"error": {
    "code": "DeploymentNotFound",
    "message": "The API deployment for this resource does not exist. If you created the deployment within "
               "the last 5 minutes, please wait a moment and try again."}}
# recordings/azure-openai/error_400_content_filter.json
ERROR_400_CONTENT_FILTER: dict[str, Any] = {"error": {
    "message": "The response was filtered due to the prompt triggering Azure OpenAI's content management "
               "policy. Please modify your prompt and retry. To learn more about our content filtering "
               "policies please read our documentation: https://go.microsoft.com/fwlink/?linkid=2198766",
    "type": None, "param": "prompt", "code": "content_filter", "status": 400,
    "innererror": {"code": "ResponsibleAIPolicyViolation", "content_filter_result": {
        "hate": {"filtered": False, "severity": "safe"},
        "jailbreak": {"filtered": False, "detected": False},
        "self_harm": {"filtered": False, "severity": "safe"},
        "sexual": {"filtered": False, "severity": "safe"},
        "violence": {"filtered": True, "severity": "medium"}}}}}
DEFAULT_STREAM_ERROR: dict[str, Any] = {
    "message": "The server had an error while processing your request. Sorry about that!",
    "type": "server_error", "param": None, "code": None}

_VERSION = re.compile(r"^\d{4}-\d{2}-\d{2}(-preview)?$")
_OPERATIONS = {"chat/completions": "chatCompletion", "completions": "completion", "embeddings": "embeddings",
               "audio/transcriptions": "transcription"}

# (status, body: dict -> JSON | str -> raw text, headers); the headers may be left out.
FailSpec = Union[tuple[int, Union[dict[str, Any], str], dict[str, str]],
                 tuple[int, Union[dict[str, Any], str]]]


def azure_error(code: str | None, message: str, **extra: Any) -> dict[str, Any]:
    """Azure's error envelope: `code` is a string (digits for HTTP-ish errors), no `type` unless given."""
    return {"error": {"code": code, "message": message, **extra}}


def error_429(seconds: int = 7, operation: str = "ChatCompletions_Create",
              version: str = API_VERSION) -> tuple[int, dict[str, Any], dict[str, str]]:
    """A fail_next entry for Azure's throttling answer, with both retry headers."""
    return (429, azure_error("429", (
        f"Requests to the {operation} Operation under Azure OpenAI API version {version} have "
        f"exceeded token rate limit of your current OpenAI S0 pricing tier. Please retry after {seconds} "
        "seconds.")), {"retry-after": str(seconds), "retry-after-ms": str(seconds * 1000)})


class AzureHTTPError(Exception):
    def __init__(self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        super().__init__(status)
        self.status, self.body, self.headers = status, body, headers or {}


@dataclass
class FakeAzureState(FakeState):
    no_request_message = "the fake Azure OpenAI server received no request"

    # -- scripting (set by tests) --
    api_keys: set[str] = field(default_factory=lambda: {DEFAULT_API_KEY})
    deployments: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_DEPLOYMENTS))  # name -> model
    reply_text: str = "Hello from the fake Azure!"
    tool_call: tuple[str, str] | None = None  # (name, arguments JSON string)
    transcript: str = "The quick brown fox."
    prompt_filter_trigger: str | None = None  # a prompt containing it -> 400 content_filter
    filter_completion: bool = False  # cut the answer: finish_reason content_filter
    annotations: bool = True  # streams carry a delta-less asynchronous-filter annotation chunk
    minimal_bodies: bool = False  # answers without object/model, like Azure's spec examples
    split_events: bool = False  # write each SSE event in pieces (mid-line, mid-UTF-8)
    delay: float = 0.0  # seconds before answering any request
    stream_delay: float = 0.0  # seconds between SSE events
    fail_after_chunks: int | None = None  # send an error event after N events (every stream)
    stream_error: dict[str, Any] = field(default_factory=lambda: dict(DEFAULT_STREAM_ERROR))
    fail_next: list[FailSpec] = field(default_factory=list)  # popped one per authorised request
    record_requests: bool = True
    # -- observations (written by the server) --
    requests: list[RecordedRequest] = field(default_factory=list)
    streams_started: int = 0
    streams_finished: int = 0  # sent through [DONE]
    streams_errored: int = 0  # ended by the scripted fail_after_chunks error event
    streams_aborted: int = 0  # the client went away before the end
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def requests_to(self, deployment: str, operation: str = "chat/completions") -> list[RecordedRequest]:
        path = f"/openai/deployments/{deployment}/{operation}"
        return [r for r in list(self.requests) if r.path == path]


# -- wire pieces --------------------------------------------------------------------------------


def _azure_choices(chunk: dict[str, Any], filters: dict[str, Any]) -> dict[str, Any]:
    for choice in chunk.get("choices", []):
        choice["content_filter_results"] = filters
    return chunk


def prompt_filter_chunk(version: str) -> dict[str, Any]:
    key = "prompt_filter_results" if version >= PROMPT_FILTER_RESULTS_SINCE else "prompt_annotations"
    return {"id": "", "choices": [], "created": 0, "model": "", "object": "", "system_fingerprint": None,
            key: [{"prompt_index": 0, "content_filter_results": SAFE}]}


def annotation_chunk(offset: int) -> dict[str, Any]:
    return {"choices": [{"content_filter_offsets": {"check_offset": 0, "start_offset": 0, "end_offset": offset},
                         "content_filter_results": SAFE, "finish_reason": None, "index": 0}],
            "created": 0, "id": "", "model": "", "object": ""}


def azure_events(chunks: list[dict[str, Any]], version: str, annotations: bool,
                 filtered: bool) -> list[dict[str, Any]]:
    """OpenAI chunks dressed as Azure sends them."""
    events = [prompt_filter_chunk(version)]
    for i, chunk in enumerate(chunks):
        choices = chunk.get("choices", [])
        finish = any(c.get("finish_reason") for c in choices)
        content = any((c.get("delta") or {}).get("content") or (c.get("delta") or {}).get("tool_calls")
                      or c.get("text") for c in choices)
        events.append(_azure_choices(chunk, (FILTERED if filtered else {}) if finish else SAFE if content else {}))
        if annotations and i == 1:
            events.append(annotation_chunk(i))
    if version < STREAM_OPTIONS_SINCE:
        for event in events:
            event.setdefault("usage", None)
    return events


# -- request plumbing -----------------------------------------------------------------------------


async def _record(state: FakeAzureState, request: Request) -> RecordedRequest:
    record = await recorded(request)
    if state.record_requests:
        with state.lock:
            state.requests.append(record)
    return record


def _gate(state: FakeAzureState, request: Request, operation: str) -> tuple[str, str]:
    """Azure's checks before any work: (api-version, the deployment's model)."""
    version = request.query_params.get("api-version")
    if not version or not _VERSION.match(version):
        raise AzureHTTPError(404, RESOURCE_NOT_FOUND)
    if "authorization" in request.headers:
        raise AzureHTTPError(401, BEARER_REFUSED)
    if request.headers.get("api-key", "") not in state.api_keys:
        raise AzureHTTPError(401, ACCESS_DENIED)
    model = state.deployments.get(request.path_params.get("deployment", ""))
    if model is None:
        raise AzureHTTPError(404, ERROR_404_DEPLOYMENT_NOT_FOUND)
    serves = {"embeddings": "embedding" in model, "audio/transcriptions": "whisper" in model,
              "completions": "instruct" in model,
              "chat/completions": "embedding" not in model and "whisper" not in model and "instruct" not in model}
    if not serves[operation]:
        raise AzureHTTPError(400, azure_error("OperationNotSupported", (
            f"The {_OPERATIONS[operation]} operation does not work with the specified model, {model}. Please "
            "choose different model and try again. You can learn more about which models can be used with "
            "each operation here: https://go.microsoft.com/fwlink/?linkid=2197993.")))
    return version, model


Handler = Callable[[Request, RecordedRequest, str, str], Awaitable[Response]]


def _endpoint(state: FakeAzureState, operation: str, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    async def run(request: Request) -> Response:
        record = await _record(state, request)
        try:
            if state.delay:
                await asyncio.sleep(state.delay)
            version, model = _gate(state, request, operation)
            response = state.scripted_failure() or await handler(request, record, version, model)
        except AzureHTTPError as exc:
            response = json_response(exc.body, exc.status, exc.headers)
        except OpenAIHTTPError as exc:
            response = json_response(exc.body, exc.status, exc.headers)
        response.headers.setdefault("apim-request-id", "00000000-0000-0000-0000-000000000000")
        response.headers.setdefault("x-ms-region", "Sweden Central")
        return response

    return run


def _json_object(record: RecordedRequest) -> dict[str, Any]:
    if not isinstance(record.json, dict):
        raise OpenAIHTTPError(400, "Invalid request body: expected a JSON object.")
    return record.json


def _check_stream_options(body: dict[str, Any], version: str) -> tuple[bool, bool]:
    if "stream_options" in body and version[:10] < STREAM_OPTIONS_SINCE:
        raise AzureHTTPError(400, {"error": {"code": None, "param": None, "type": "invalid_request_error",
                                             "message": "Unrecognized request argument supplied: stream_options"}})
    return stream_params(body)


def _prompt_text(body: dict[str, Any]) -> str:
    parts = [str(body.get("prompt") or "")]
    for message in body.get("messages") or ():
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, str):
            parts.append(content)
        elif isinstance(content, list):
            parts.extend(str(p.get("text") or "") for p in content if isinstance(p, dict))
    return "\n".join(parts)


def _check_prompt(state: FakeAzureState, body: dict[str, Any]) -> None:
    trigger = state.prompt_filter_trigger
    if trigger and trigger in _prompt_text(body):
        raise AzureHTTPError(400, ERROR_400_CONTENT_FILTER)


def _minimal(state: FakeAzureState, body: dict[str, Any]) -> dict[str, Any]:
    if state.minimal_bodies:
        body.pop("object", None)
        body.pop("model", None)
        for item in body.get("data") or ():
            item.pop("object", None)
    return body


# -- app ------------------------------------------------------------------------------------------


def create_app(state: FakeAzureState) -> Starlette:
    """The fake's ASGI app; every request is recorded in `state.requests`."""

    async def chat_completions(request: Request, record: RecordedRequest, version: str, model: str) -> Response:
        body = _json_object(record)
        messages = checked_messages(body.get("messages"))
        stream, include_usage = _check_stream_options(body, version)
        _check_prompt(state, body)
        tools = body.get("tools")
        use_tool = bool(tools) and body.get("tool_choice") != "none"
        plan = ChatPlan(model=model, prompt_tokens=message_words(messages), reply_text=reply_of(state),
                        limit=token_limit(body, "max_completion_tokens", "max_tokens"),
                        tool_call=call_of(state.tool_call) if use_tool else None)
        if state.filter_completion:
            plan.pieces = plan.pieces[:max(1, len(plan.pieces) // 2)]
            plan.finish_reason = "content_filter"
        if stream:
            events = azure_events(plan.chunks(include_usage), version, state.annotations, state.filter_completion)
            return SSEResponse(sse_stream(state, events))
        answer = plan.response()
        answer["prompt_filter_results"] = [{"prompt_index": 0, "content_filter_results": SAFE}]
        _azure_choices(answer, FILTERED if state.filter_completion else SAFE)
        return json_response(_minimal(state, answer))

    async def completions(request: Request, record: RecordedRequest, version: str, model: str) -> Response:
        body = _json_object(record)
        prompts = prompt_list(body.get("prompt"))
        stream, include_usage = _check_stream_options(body, version)
        _check_prompt(state, body)
        suffix = body.get("suffix")
        plan = CompletionPlan(model=model, prompts=prompts, reply_text=reply_of(state),
                              limit=token_limit(body, "max_tokens") or 16, echo=bool(body.get("echo")),
                              suffix=suffix if isinstance(suffix, str) else None)
        if stream:
            events = azure_events(plan.chunks(include_usage), version, state.annotations, False)
            return SSEResponse(sse_stream(state, events))
        answer = plan.response()
        answer["prompt_filter_results"] = [{"prompt_index": 0, "content_filter_results": SAFE}]
        return json_response(_minimal(state, _azure_choices(answer, SAFE)))

    async def embeddings(request: Request, record: RecordedRequest, version: str, model: str) -> Response:
        body = _json_object(record)
        return json_response(_minimal(state, embeddings_response({**body, "model": model})))

    async def transcriptions(request: Request, record: RecordedRequest, version: str, model: str) -> Response:
        if not request.headers.get("content-type", "").startswith("multipart/form-data"):
            raise OpenAIHTTPError(400, "Invalid Content-Type header, expected multipart/form-data.")
        form_fields = await read_form(request, record)
        upload = record.files.get("file")
        if upload is None:
            raise OpenAIHTTPError(400, "Missing required parameter: 'file'.", param="file",
                                  code="missing_required_parameter")

        def text_field(name: str) -> str | None:
            value = form_fields.get(name)
            return value if isinstance(value, str) else None

        response_format = text_field("response_format") or "json"
        granularities = [str(g) for g in form_fields.get("timestamp_granularities[]", [])]
        # Azure takes the model from the deployment; a `model` form field is optional.
        check_transcription_request(filename=upload.filename, model=model, response_format=response_format,
                                    granularities=granularities, temperature=text_field("temperature"))
        return transcription_response(text=state.transcript, model=model, audio=upload.data,
                                      language=text_field("language"), response_format=response_format,
                                      granularities=granularities)

    async def not_found(request: Request) -> Response:
        await _record(state, request)
        return json_response(RESOURCE_NOT_FOUND, 404)

    post = ["POST"]
    base = "/openai/deployments/{deployment}/"
    every = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
    return Starlette(routes=[
        *(Route(base + operation, _endpoint(state, operation, handler), methods=post)
          for operation, handler in (("chat/completions", chat_completions), ("completions", completions),
                                     ("embeddings", embeddings), ("audio/transcriptions", transcriptions))),
        Route("/{path:path}", not_found, methods=every),
    ])
