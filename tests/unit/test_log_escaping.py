"""Client text in logs (issue 10): one escaping formatter for every line we write, so a
model name with a newline or an ANSI escape cannot forge or hide a log line. Also the
per-address failed-authentication limiter's window and memory bound."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import pytest

from proxy.limits import FailureLimiter
from proxy.logs import SafeFormatter, escape, uvicorn_log_config
from proxy.usage import RequestRecord

FORGED = "INFO:     request req_x chat.completions tenant=admin status=200"


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    """What the `modelport` loggers write, through the formatter the workers use."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(SafeFormatter("%(levelprefix)s %(message)s", use_colors=False))
    logger = logging.getLogger("modelport")
    saved = (logger.level, logger.propagate)
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        yield out
    finally:
        logger.removeHandler(handler)
        logger.setLevel(saved[0])
        logger.propagate = saved[1]


def test_escape_makes_one_printable_line() -> None:
    assert escape("a\nb\r\tc\x1b[2J\x00\x7f\x85\u2028\u2029é") == "a\\nb\\r\\tc\\x1b[2J\\x00\\x7f\\x85\\u2028\\u2029é"
    assert escape("plain text, ünïcode and 'quotes'") == "plain text, ünïcode and 'quotes'"


def test_the_request_line_escapes_the_model_name(captured: io.StringIO) -> None:
    record = RequestRecord("req_1", "chat.completions", "llm")
    record.tenant_id, record.model = "tn_1", f"gpt-4o\n{FORGED}\x1b[2J"
    record.finish(404)
    lines = captured.getvalue().splitlines()
    assert len(lines) == 1 and lines[0].startswith("INFO:     request req_1 chat.completions tenant=tn_1")
    assert f"gpt-4o\\n{FORGED}\\x1b[2J" in lines[0] and "\x1b" not in captured.getvalue()


def test_arguments_and_messages_are_escaped_wherever_the_call_is(captured: io.StringIO) -> None:
    log = logging.getLogger("modelport")
    log.warning("could not refund a hosted call of tenant %s on %s", "acme\r\nERROR:    x", "openai")
    log.info(f"f-string with client text: {FORGED}\nsecond")
    lines = captured.getvalue().splitlines()
    assert lines == ["WARNING:  could not refund a hosted call of tenant acme\\r\\nERROR:    x on openai",
                     f"INFO:     f-string with client text: {FORGED}\\nsecond"]


def test_a_traceback_cannot_start_a_line_of_its_own(captured: io.StringIO) -> None:
    try:
        raise ValueError(f"upstream said:\n{FORGED}\x1b[31m")
    except ValueError:
        logging.getLogger("modelport").exception("stream failed after the first byte")
    first, *rest = captured.getvalue().splitlines()
    assert first == "ERROR:    stream failed after the first byte"
    assert rest and all(line[:1].isspace() for line in rest), rest  # continuation lines only
    assert "\x1b" not in captured.getvalue() and "\\x1b[31m" in captured.getvalue()


def test_other_handlers_see_the_record_unchanged(captured: io.StringIO) -> None:
    plain = io.StringIO()
    handler = logging.StreamHandler(plain)
    logger = logging.getLogger("modelport")
    logger.addHandler(handler)
    try:
        logger.info("model %s", "a\nb")
    finally:
        logger.removeHandler(handler)
    assert plain.getvalue() == "model a\nb\n" and captured.getvalue() == "INFO:     model a\\nb\n"


def test_uvicorns_own_log_goes_through_the_same_formatter() -> None:
    config = uvicorn_log_config()
    assert config["formatters"]["default"]["()"] == "proxy.logs.SafeFormatter"
    from uvicorn.config import LOGGING_CONFIG

    assert LOGGING_CONFIG["formatters"]["default"]["()"] != "proxy.logs.SafeFormatter"  # a copy was changed


def test_failure_limiter_window_and_memory_bound() -> None:
    limiter = FailureLimiter(limit=3, window=60, max_addresses=100)
    assert [limiter.failed("10.0.0.1", now=t) for t in (0, 1, 2)] == [None, None, None]
    assert limiter.failed("10.0.0.1", now=10) == 50  # the 4th in the window: wait for its end
    assert limiter.failed("10.0.0.2", now=10) is None  # per address
    assert limiter.failed("10.0.0.1", now=61) is None  # a new window
    for n in range(1000):
        limiter.failed(f"192.0.2.{n}", now=70)
    assert len(limiter._windows) == 100  # bounded: the least recently failing are forgotten
    assert "10.0.0.1" not in limiter._windows
