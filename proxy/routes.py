"""The OpenAI-compatible endpoints. Each one: authenticate, read and check the body,
resolve the route, call it once (`proxy/calls.py`), write the answer (JSON or SSE),
and finish the request's record (log line and usage row)."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route as HTTPRoute

from proxy import tracing
from proxy.attempts import serve_route
from proxy.auth import authenticate
from proxy.body import parse, read_form, read_json
from proxy.budgets import BudgetedRecord, hold
from proxy.calls import Answer, Call, StreamCall
from proxy.errors import JSONResponse, internal_error, response_headers
from proxy.gateway import Gateway
from proxy.ratelimits import admit
from proxy.request_ids import request_id
from proxy.routing import listed_models, model_not_found, resolve
from proxy.sse import SSEResponse
from proxy.tenants import Caller
from translators.errors import ApiError, bad_request
from translators.types import (
    ChatRequest,
    CompletionRequest,
    EmbeddingRequest,
    JSONObject,
    ModelType,
    TranscriptionRequest,
    TranscriptionResult,
)

log = logging.getLogger("modelport")


async def serve_request(request: Request, endpoint: str, model_type: ModelType,
                 prepare: Callable[[Request, Gateway], Awaitable[Any]], call: Call,
                 call_stream: StreamCall | None = None) -> Response | SSEResponse:
    gateway: Gateway = request.app.state.gateway
    # The client's x-request-id when sane (proxy/request_ids.py adds it to every answer).
    record = BudgetedRecord(request_id(request.scope), endpoint, model_type.value, gateway.usage.submit,
                            prices=gateway.settings.prices)
    headers = response_headers(request)  # the error's too: x-modelport-*, x-ratelimit-*
    record.span = tracing.request_span(endpoint)
    try:
        caller = await authenticate(request, gateway.directory)
        record.tenant_id, record.token_id = caller.tenant.id, caller.token_id
        req = await prepare(request, gateway)
        record.request, record.model = req, req.model
        route = resolve(caller.tenant, model_type, req.model, gateway.hosted)
        if caller.tenant.budgets:  # before the rate limits: a request they refuse gives its hold back
            record.hold = await hold(gateway.store, gateway.settings, caller.tenant, caller.token_id, route, req)
        if caller.tenant.limits:  # checked here so that a tenant without limits pays nothing
            record.admission = await admit(gateway.store, caller.tenant, caller.token_id, route.label, req)
            if record.admission is not None:
                headers.update(record.admission.headers)
        streaming = call_stream is not None and getattr(req, "stream", False)
        answer = await serve_route(gateway, caller.tenant, route, req, record, call,
                                   call_stream if streaming else None, headers)
    except ApiError as err:
        record.error_code = err.code
        record.finish(err.status)
        raise
    except Exception:
        log.exception("request %s failed", record.request_id)
        record.error_code = "internal_error"
        record.finish(500)
        raise internal_error(record.request_id) from None
    if answer.stream is not None:
        return answer.stream  # its record finishes when the stream ends
    record.finish(200, answer.usage, answer.output)
    if record.admission is not None:
        await record.admission.settled()  # the caller's next request sees the real usage
    if record.hold is not None:
        await record.hold.settled()  # and its real cost
    return Response(answer.body, media_type=answer.media_type, headers=headers)


async def _json(body: Awaitable[JSONObject]) -> Answer:
    return Answer.of_json(await body)


async def _transcription(result: Awaitable[TranscriptionResult]) -> Answer:
    return Answer.of_transcription(await result)


def _json_prepare(model: type[Any]) -> Callable[[Request, Gateway], Awaitable[Any]]:
    async def prepare(request: Request, gateway: Gateway) -> Any:
        return parse(model, await read_json(request, gateway.settings.max_request_bytes))
    return prepare


async def _transcription_prepare(request: Request, gateway: Gateway) -> TranscriptionRequest:
    fields, upload = await read_form(request, gateway.settings.max_request_bytes)
    if upload is None:
        raise bad_request("Missing required parameter: 'file'.", "file", "missing_required_parameter")
    content = await upload.read()
    if not content:
        raise bad_request("The uploaded file is empty.", "file")
    fields["file"] = content
    fields["filename"] = upload.filename or "audio"
    fields["content_type"] = upload.content_type or "application/octet-stream"
    return parse(TranscriptionRequest, fields)


async def chat_completions(request: Request) -> Response | SSEResponse:
    return await serve_request(request, "chat.completions", ModelType.LLM, _json_prepare(ChatRequest),
                        lambda t, r, c: _json(t.chat(r, c)), lambda t, r, c: t.chat_stream(r, c))


async def completions(request: Request) -> Response | SSEResponse:
    return await serve_request(request, "completions", ModelType.LLM, _json_prepare(CompletionRequest),
                        lambda t, r, c: _json(t.complete(r, c)), lambda t, r, c: t.complete_stream(r, c))


async def embeddings(request: Request) -> Response | SSEResponse:
    return await serve_request(request, "embeddings", ModelType.TEXT_EMBEDDING, _json_prepare(EmbeddingRequest),
                        lambda t, r, c: _json(t.embed(r, c)))


async def transcriptions(request: Request) -> Response | SSEResponse:
    return await serve_request(request, "audio.transcriptions", ModelType.SPEECH2TEXT, _transcription_prepare,
                        lambda t, r, c: _transcription(t.transcribe(r, c)))


def _model_entries(gateway: Gateway, caller: Caller) -> list[dict[str, Any]]:
    tenant = caller.tenant
    created = int(time.time())
    data = [{"id": "default", "object": "model", "created": created, "owned_by": "modelport"}] \
        if tenant.defaults else []
    for name, owner, t in listed_models(tenant, gateway.hosted):
        entry = {"id": name, "object": "model", "created": created, "owned_by": owner, "type": t.value}
        if owner in gateway.hosted and owner not in tenant.credentials:
            entry["hosted"] = True  # on the operator's trial quota (GET /v1/quota)
        data.append(entry)
    return data


async def list_models(request: Request) -> Response:
    gateway: Gateway = request.app.state.gateway
    caller = await authenticate(request, gateway.directory)
    return JSONResponse({"object": "list", "data": _model_entries(gateway, caller)})


async def retrieve_model(request: Request) -> Response:
    gateway: Gateway = request.app.state.gateway
    caller = await authenticate(request, gateway.directory)
    wanted = request.path_params["model"]
    for entry in _model_entries(gateway, caller):
        if entry["id"] == wanted:
            return JSONResponse(entry)
    raise model_not_found(wanted)


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


ROUTES = [
    HTTPRoute("/v1/chat/completions", chat_completions, methods=["POST"]),
    HTTPRoute("/v1/completions", completions, methods=["POST"]),
    HTTPRoute("/v1/embeddings", embeddings, methods=["POST"]),
    HTTPRoute("/v1/audio/transcriptions", transcriptions, methods=["POST"]),
    HTTPRoute("/v1/models", list_models, methods=["GET"]),
    HTTPRoute("/v1/models/{model:path}", retrieve_model, methods=["GET"]),
    HTTPRoute("/healthz", healthz, methods=["GET"]),
]
