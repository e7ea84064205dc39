"""`log_format: json` (issue 16): every record one JSON object on one line, the request's
line with its fields and nothing of its content, uvicorn's own records in the same shape;
and request ids (`proxy/request_ids.py`): the client's when sane, else a new one, on
every answer."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from proxy import logs, request_ids
from proxy.logs import JsonFormatter, configure_logging, uvicorn_log_config
from proxy.usage import RequestRecord
from translators.types import ChatRequest, Usage

REQUEST_FIELDS = {"request_id", "tenant_id", "token_id", "endpoint", "provider", "model", "credential", "attempts",
                  "status", "latency_ms", "overhead_ms", "ttft_ms", "prompt_tokens", "completion_tokens", "cost"}


@pytest.fixture
def json_lines() -> Iterator[io.StringIO]:
    """The `modelport` loggers as a worker sets them up with `log_format: json`, into a buffer."""
    logger = logging.getLogger("modelport")
    saved = (logger.level, logger.propagate, list(logger.handlers), logs.structured)
    out = io.StringIO()
    logger.handlers = [logging.StreamHandler(out)]
    configure_logging("info", "json")
    try:
        yield out
    finally:
        logger.handlers = saved[2]
        logger.setLevel(saved[0])
        logger.propagate = saved[1]
        logs.structured = saved[3]
        for handler in logger.handlers:
            handler.setFormatter(logs.formatter("text"))


def parsed(out: io.StringIO) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in out.getvalue().splitlines()]


def test_the_request_line_is_one_object_with_its_fields_and_no_content(json_lines: io.StringIO) -> None:
    record = RequestRecord("req_1", "chat.completions", "llm", tenant_id="tn_1", token_id="tk_1",
                           provider="openai", model="gpt-4o-mini\n{\"forged\": 1}", billing="own", attempts=2,
                           credential="second", upstream_ms=40.0)
    record.request = ChatRequest.model_validate({"model": "default", "messages": [
        {"role": "user", "content": "the secret plan sk-not-in-logs"}]})
    record.first_token()
    record.overhead = 0.42
    record.finish(200, Usage(7, 3, 10))
    [line] = parsed(json_lines)
    assert REQUEST_FIELDS <= line.keys()
    assert line["level"] == "info" and line["logger"] == "modelport.requests" and line["message"] == "request"
    assert line["time"].endswith("Z") and line["request_id"] == "req_1" and line["credential"] == "second"
    assert (line["status"], line["attempts"], line["prompt_tokens"], line["completion_tokens"]) == (200, 2, 7, 3)
    assert line["overhead_ms"] == 0.42 and line["ttft_ms"] is not None and line["model"].startswith("gpt-4o-mini\n")
    text = json_lines.getvalue()
    assert "secret plan" not in text and "sk-not-in-logs" not in text
    assert text.count("\n") == 1  # the model's newline is escaped inside the JSON string


def test_warnings_and_errors_carry_level_message_logger_time_and_the_traceback(json_lines: io.StringIO) -> None:
    log = logging.getLogger("modelport")
    log.warning("could not share a cooldown: %s", "redis away\r\nERROR: forged")
    try:
        raise ValueError("boom")
    except ValueError:
        log.exception("request %s failed", "req_2")
    warning, error = parsed(json_lines)
    assert warning == {"time": warning["time"], "level": "warning", "logger": "modelport",
                       "message": "could not share a cooldown: redis away\r\nERROR: forged"}
    assert error["level"] == "error" and error["message"] == "request req_2 failed"
    assert "ValueError: boom" in error["exception"]
    assert len(json_lines.getvalue().splitlines()) == 2


def test_uvicorns_records_use_the_same_formatter() -> None:
    config = uvicorn_log_config("json")
    assert config["formatters"]["default"]["()"] == "proxy.logs.JsonFormatter"
    assert uvicorn_log_config()["formatters"]["default"]["()"] == "proxy.logs.SafeFormatter"
    # The way logging.config builds it: with uvicorn's fmt/use_colors arguments.
    formatter = JsonFormatter(fmt="%(levelprefix)s %(message)s", use_colors=None)
    entry = logging.LogRecord("uvicorn.error", logging.INFO, __file__, 1, "Started server process [%d]", (7,), None)
    assert orjson.loads(formatter.format(entry))["message"] == "Started server process [7]"


def test_terminal_controls_json_leaves_raw_are_escaped() -> None:
    line = logs.json_line("a\x9b[2Jb\u2028c\x1b")
    assert "\x9b" not in line and "\u2028" not in line and "\x1b" not in line
    assert orjson.loads(line)["message"] == "a\x9b[2Jb\u2028c\x1b"


@pytest.mark.parametrize(("sent", "kept"), [
    (b"abc-123", True), (b"trace.id:42_A-b", True), (b"x" * 128, True),
    (b"x" * 129, False), (b"", False), (b"a b", False), (b"a\nb", False), (b"a;b", False),
    ("caf\u00e9".encode(), False), (b"a\x00", False)])
def test_client_request_ids_are_kept_only_when_sane(sent: bytes, kept: bool) -> None:
    rid = request_ids.from_headers([(b"x-other", b"1"), (b"x-request-id", sent)])
    assert (rid == sent.decode("latin-1")) is kept
    if not kept:
        assert rid.startswith("req_") and len(rid) > 16


def test_every_answer_carries_the_request_id() -> None:
    async def ok(request: Request) -> PlainTextResponse:
        return PlainTextResponse(request_ids.request_id(request.scope))

    app = request_ids.RequestIds(Starlette(routes=[Route("/ok", ok)]))
    with TestClient(app) as client:
        answer = client.get("/ok", headers={"x-request-id": "mine-1"})
        assert answer.headers["x-request-id"] == "mine-1" and answer.text == "mine-1"
        missing = client.get("/nowhere", headers={"x-request-id": "mine-2"})
        assert missing.status_code == 404 and missing.headers["x-request-id"] == "mine-2"
        fresh = client.get("/ok", headers={"x-request-id": "bad id"})
        assert fresh.headers["x-request-id"] == fresh.text != "bad id"
        assert len(fresh.headers.get_list("x-request-id")) == 1
