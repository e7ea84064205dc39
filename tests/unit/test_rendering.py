"""How answers and errors leave the gateway (issue 14): endpoints raise `ApiError` and the one
handler registered on the app renders it, with the headers the request gathered; what an
attempt that served returns is an `Answer` whose usage was read once, where it was made."""

from __future__ import annotations

import logging

import orjson
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.testclient import TestClient

from proxy.app import build_app
from proxy.calls import Answer
from proxy.errors import (
    HeaderedError,
    api_error_handler,
    internal_errors,
    response_headers,
)
from proxy.settings import Settings
from translators.errors import ApiError, UpstreamError
from translators.types import TranscriptionResult, Usage

SECRET = "sk-test-rendering-never-shown-0001"


async def _limited(request: Request) -> Response:
    response_headers(request)["x-request-id"] = "req_test"
    raise HeaderedError(429, "Rate limit reached.", "requests", "rate_limit_exceeded",
                        headers={"x-ratelimit-limit-requests": "1"}, retry_after=1.2)


async def _upstream(request: Request) -> Response:
    raise UpstreamError(403, "the openai credential was rejected", "permission_error", "upstream_credential_rejected")


async def _unauthorized(request: Request) -> Response:
    raise ApiError(401, "Incorrect API key provided.", "invalid_request_error", "invalid_api_key")


async def _broken(request: Request) -> Response:
    response_headers(request)["Cache-Control"] = "no-store"
    with internal_errors("admin", "admin request failed"):
        raise RuntimeError(f"bug holding {SECRET}")


async def _fine(request: Request) -> Response:
    with internal_errors("admin", "admin request failed"):
        return Response("ok")


@pytest.fixture
def client() -> TestClient:
    app = Starlette(routes=[Route("/limited", _limited), Route("/upstream", _upstream),
                            Route("/unauthorized", _unauthorized), Route("/broken", _broken), Route("/fine", _fine)],
                    exception_handlers={ApiError: api_error_handler})
    return TestClient(app, raise_server_exceptions=False)


def test_the_app_renders_api_errors_with_the_one_handler() -> None:
    assert build_app(Settings()).exception_handlers[ApiError] is api_error_handler


def test_an_error_carries_its_own_headers_and_the_requests(client: TestClient) -> None:
    resp = client.get("/limited")
    assert resp.status_code == 429
    assert resp.json() == {"error": {"message": "Rate limit reached.", "type": "requests", "param": None,
                                     "code": "rate_limit_exceeded"}}
    assert resp.headers["retry-after"] == "2"  # whole seconds, rounded up
    assert resp.headers["x-ratelimit-limit-requests"] == "1"
    assert resp.headers["x-request-id"] == "req_test"


def test_subclasses_and_401s_render_alike(client: TestClient) -> None:
    upstream = client.get("/upstream")
    assert upstream.status_code == 403 and upstream.json()["error"]["code"] == "upstream_credential_rejected"
    assert "x-request-id" not in upstream.headers  # nothing gathered: nothing added
    unauthorized = client.get("/unauthorized")
    assert unauthorized.status_code == 401 and unauthorized.headers["www-authenticate"] == "Bearer"


def test_an_unexpected_exception_is_logged_and_becomes_a_bare_500(client: TestClient,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR, logger="modelport"):
        resp = client.get("/broken")
    assert resp.status_code == 500
    assert resp.json()["error"]["code"] == "internal_error" and SECRET not in resp.text
    assert resp.headers["cache-control"] == "no-store"
    assert [r.getMessage() for r in caplog.records] == ["admin request failed"]
    assert caplog.records[0].exc_info is not None  # the traceback is in the log, not the answer
    assert client.get("/fine").text == "ok"


def test_a_json_answer_reads_its_usage_once() -> None:
    body = {"object": "chat.completion", "choices": [],
            "usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}}
    answer = Answer.of_json(body)
    assert answer.stream is None and answer.media_type == "application/json"
    assert orjson.loads(answer.body) == body and answer.output is body
    assert answer.usage == Usage(3, 4, 7)
    assert Answer.of_json({"object": "list", "data": []}).usage is None  # estimated later from `output`


def test_a_transcription_answer_is_its_bytes() -> None:
    result = TranscriptionResult(b"hello", "text/plain; charset=utf-8")
    answer = Answer.of_transcription(result)
    assert (answer.body, answer.media_type, answer.usage, answer.output) == (
        b"hello", "text/plain; charset=utf-8", None, result)
