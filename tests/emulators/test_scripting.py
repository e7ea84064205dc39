"""How an emulator reads what a request asks (emulators/scripting.py, emulators/inject.py):
the fault names, echo from every vendor's request shape, the automatic tool call."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from emulators.scripting import Fault, auto_tool, echo_text, parse_fault
from tests.emulators._common import WEATHER, WEATHER_ARGUMENTS, serving


@pytest.mark.parametrize(("value", "fault"), [
    ("401", Fault("401")), ("429", Fault("429")), ("429-7", Fault("429", 7.0)), ("500", Fault("500")),
    ("overloaded", Fault("overloaded")), ("reset", Fault("reset")), ("error-200", Fault("error-200")),
    ("slow", Fault("slow", 5.0)), ("slow-0.5", Fault("slow", 0.5)), (" SLOW-2 ", Fault("slow", 2.0)),
    ("", None), ("404", None), ("500-3", None), ("slow-x", None), ("slow-9999", None), ("slow--1", None),
    ("error", None), ("reset-1", None),
])
def test_fault_names(value: str, fault: Fault | None) -> None:
    assert parse_fault(value) == fault


def test_retry_after_is_whole_seconds_at_least_one() -> None:
    assert [Fault("429", s).retry_after for s in (0, 0.2, 1, 7, 7.5)] == ["1", "1", "1", "7", "8"]


@pytest.mark.parametrize("body", [
    {"messages": [{"role": "user", "content": "first"}, {"role": "assistant", "content": "x"},
                  {"role": "user", "content": "Echo me"}]},                                        # OpenAI, ERNIE...
    {"messages": [{"role": "user", "content": [{"type": "text", "text": "Echo me"}]}]},             # Anthropic parts
    {"input": {"messages": [{"role": "user", "content": "Echo me"}]}},                               # DashScope
    {"payload": {"message": {"text": [{"role": "user", "content": "Echo me"}]}}},                    # Spark's frame
    {"input": "Echo me"}, {"prompt": "Echo me"}, {"inputs": "Echo me"},                              # Responses, HF...
    {"input": {"prompt": "Echo me"}},                                                                 # Replicate
    {"input": [{"role": "user", "content": [{"type": "input_text", "text": "Echo me"}]}]},           # Responses items
])
def test_echo_reads_every_vendors_request(body: dict[str, Any]) -> None:
    assert echo_text(body) == "Echo me"


def test_echo_without_a_user_text() -> None:
    assert echo_text(None) == echo_text({"messages": []}) == "(nothing to echo)"


def test_the_automatic_tool_call() -> None:
    asked = {"messages": [{"role": "user", "content": "weather?"}], "tools": [WEATHER]}
    assert auto_tool(asked) == ("get_weather", WEATHER_ARGUMENTS)
    assert auto_tool({**asked, "tool_choice": "none"}) is None
    answered = [*asked["messages"], {"role": "tool", "tool_call_id": "c1", "content": "sunny"}]
    assert auto_tool({**asked, "messages": answered}) is None
    claude = {"messages": [{"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t", "content": "x"}]}],
              "tools": [{"name": "f", "input_schema": {"type": "object", "properties": {}}}]}
    assert auto_tool(claude) is None
    assert auto_tool({"tools": [{"name": "pick", "input_schema": {"type": "object", "required": ["c"], "properties": {
        "c": {"enum": ["red", "blue"]}}}}]}) == ("pick", {"c": "red"})
    assert auto_tool({"messages": []}) is None


def test_a_fixed_reply_in_utf8_from_the_header() -> None:
    """curl and browsers send a header's UTF-8 bytes as they are."""
    with serving(["openai"]) as (served, _):
        answer = httpx.post(served.base_url + "/v1/chat/completions", timeout=10, json={
            "model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]},
            headers={"Authorization": "Bearer sk-test-fake-openai-key", "X-Emulator-Reply": "你好，世界".encode()})
    assert answer.status_code == 200 and answer.json()["choices"][0]["message"]["content"] == "你好，世界"
