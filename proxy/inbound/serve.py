"""Serving one inbound API (`translators/_inbound.py`) with the chat endpoints' machinery.

Per request: the body is parsed with the API's model and converted to its chat form
(`prepare`); `routes.serve_request` does the rest as for chat completions, calling `call` or
`call_stream` once per attempt. Each attempt looks at the translator it landed on: one with
the API natively (`Translator.native[api.name]`) gets the client's own body and its answer
or events are passed on as they came (`RelayFraming`); any other gets the chat form, and
the chat answer or chunks are converted by the API's codec (`from_chat`, `EventFraming`
over the API's encoder). A fallback from one kind of provider to the other just works.

The token counter (`count_path`) answers the native count where the routed provider has
one (own credential only: a trial's calls are for generating), else the codec's estimate,
flagged `x-modelport-tokens-estimated: true`. It spends no quota, is not rate limited and
writes no usage row: it generates nothing.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import orjson
from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route as HTTPRoute

from proxy.auth import authenticate
from proxy.body import parse, read_json
from proxy.calls import Answer, Call, StreamCall
from proxy.errors import (
    JSONResponse,
    from_validation_error,
    response_headers,
    shape_errors,
)
from proxy.gateway import Gateway
from proxy.inbound.kept import continued, keeper, kept_routes
from proxy.inbound.side import side_endpoint
from proxy.routes import serve_request
from proxy.routing import resolve
from proxy.sse import EventFraming, Framed, RelayFraming, SSEResponse
from proxy.tenants import Caller
from translators import INBOUND
from translators._inbound import InboundApi, InboundChatRequest
from translators.base import CallContext, Translator
from translators.errors import ApiError
from translators.types import ModelType, StreamChunk, Usage

__all__ = ["INBOUND_ROUTES"]

ESTIMATED = "x-modelport-tokens-estimated"


def _forwarded(request: Request, api: InboundApi) -> dict[str, str]:
    return {name: value for name in api.forward_headers if (value := request.headers.get(name))}


def _prepare(api: InboundApi) -> Callable[[Request, Gateway], Awaitable[InboundChatRequest]]:
    async def prepare(request: Request, gateway: Gateway) -> InboundChatRequest:
        parsed = parse(api.request, await read_json(request, gateway.settings.max_request_bytes))
        if api.keeping is not None:  # the conversation it continues, before the chat form is made
            parsed = await continued(api, api.keeping, parsed, request, gateway)
        try:
            req = api.to_chat(parsed)
        except ValidationError as exc:  # the chat form holds what the API's model let through
            raise from_validation_error(exc) from None
        if api.keeping is not None:
            caller = await authenticate(request, gateway.directory)  # cached: the request's own, again
            req.answering(keeper(api, api.keeping, req, caller.tenant.id, gateway))
        forwarded = _forwarded(request, api)
        return req.forwarding(forwarded) if forwarded else req
    return prepare


def _call(api: InboundApi) -> Call:
    async def call(translator: Translator, req: InboundChatRequest, ctx: CallContext) -> Answer:
        native = translator.native.get(api.name)
        body = req.native_body
        if native is not None and body is not None:
            answer, usage = await native.call(body, req.forwarded, ctx)
            if req.on_answer is not None:
                await req.on_answer(answer)
            return Answer(body=orjson.dumps(answer), usage=usage)
        chat = await translator.chat(req.for_chat(translator.chat_extras), ctx)
        answer = api.from_chat(chat, req)
        if req.on_answer is not None:
            await req.on_answer(answer)
        return Answer(body=orjson.dumps(answer), usage=Usage.from_openai(chat.get("usage")), output=chat)
    return call


def _call_stream(api: InboundApi) -> StreamCall:
    def call_stream(translator: Translator, req: InboundChatRequest, ctx: CallContext) -> Framed:
        native = translator.native.get(api.name)
        body = req.native_body
        chunks: AsyncIterator[StreamChunk]
        if native is not None and body is not None:
            chunks = native.stream(body, req.forwarded, ctx)
            keeping = api.keeping
            return Framed(chunks, RelayFraming(api.error_events, req.on_answer,
                                               keeping.answer_in_event if keeping is not None else None))
        chunks = translator.chat_stream(req.for_chat(translator.chat_extras), ctx)
        return Framed(chunks, EventFraming(api.encoder(req), req.on_answer))
    return call_stream


def _endpoint(api: InboundApi) -> Callable[[Request], Awaitable[Response | SSEResponse]]:
    prepare, call, call_stream = _prepare(api), _call(api), _call_stream(api)

    async def endpoint(request: Request) -> Response | SSEResponse:
        shape_errors(request, api.error)
        return await serve_request(request, api.name, ModelType.LLM, prepare, call, call_stream)
    return endpoint


def _count_endpoint(api: InboundApi) -> Callable[[Request], Awaitable[Response]]:
    assert api.count_request is not None and api.count_estimate is not None
    model, estimate = api.count_request, api.count_estimate

    async def count(request: Request, gateway: Gateway, caller: Caller, rid: str) -> Response:
        raw = await read_json(request, gateway.settings.max_request_bytes)
        parsed = parse(model, raw)
        route = resolve(caller.tenant, ModelType.LLM, parsed.model, gateway.hosted)
        headers = response_headers(request)
        headers["x-modelport-provider"], headers["x-modelport-model"] = route.provider, route.model
        native = route.translator.native.get(api.name)
        if native is None or native.count is None or route.billing != "own":
            headers[ESTIMATED] = "true"
            return JSONResponse(estimate(parsed), headers=headers)
        ctx, _ = await gateway.context(caller.tenant, route, rid)
        try:
            answer = await native.count(raw, _forwarded(request, api), ctx)
        except ApiError as err:
            raise err.scrubbed(ctx.credential.secret_values()) from None
        return JSONResponse(answer, headers=headers)
    return side_endpoint(api, "a token count", count)


def _routes(api: InboundApi) -> list[HTTPRoute]:
    routes = [HTTPRoute(api.path, _endpoint(api), methods=["POST"])]
    if api.count_path is not None:
        routes.append(HTTPRoute(api.count_path, _count_endpoint(api), methods=["POST"]))
    if api.keeping is not None:
        routes += kept_routes(api, api.keeping)
    return routes


INBOUND_ROUTES = [route for api in INBOUND.values() for route in _routes(api)]
