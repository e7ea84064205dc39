"""The nesting check that runs on JSON bytes before orjson parses them (orjson's parser
recurses without a limit: a megabyte of `[` used to crash the worker)."""

from __future__ import annotations

import json
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from translators import anthropic
from translators._json import MAX_DEPTH, TooDeep, loads, too_deep
from translators.errors import ApiError
from translators.types import ChatRequest


def depth(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max((depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((depth(v) for v in value), default=0)
    return 0


def nest(levels: int) -> bytes:
    return b"[" * levels + b"]" * levels


@pytest.mark.parametrize("levels", [1, MAX_DEPTH - 1, MAX_DEPTH, MAX_DEPTH + 1, 10_000, 400_000])
def test_exact_at_the_limit(levels: int) -> None:
    assert too_deep(nest(levels)) is (levels > MAX_DEPTH)
    assert too_deep(b'{"a": [' + nest(levels) + b"]}") is (levels + 2 > MAX_DEPTH)


def test_brackets_inside_strings_are_text() -> None:
    text = json.dumps({"s": "[{" * 1000, "t": '\\"[[[[' * 200, "u": "\\\\" + "]" * 300}).encode()
    assert not too_deep(text)
    assert loads(text)["s"].startswith("[{")
    # A string that ends in an escaped backslash ends there: the brackets after it count.
    tricky = b'["\\\\", ' + nest(MAX_DEPTH) + b"]"
    assert too_deep(tricky)


def test_an_unterminated_deep_prefix_is_refused_before_parsing() -> None:
    with pytest.raises(TooDeep):
        loads(b'{"a": ' + b"[" * 300_000)


@settings(max_examples=200, derandomize=True, database=None, deadline=None)
@given(value=st.recursive(st.one_of(st.none(), st.integers(-9, 9), st.text(alphabet='[]{}"\\ab', max_size=6)),
                          lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                  st.dictionaries(st.text(alphabet='[]{}"\\', max_size=3), inner,
                                                                  max_size=3)), max_leaves=40),
       limit=st.integers(0, 12))
def test_agrees_with_the_parsed_depth(value: Any, limit: int) -> None:
    assert too_deep(orjson.dumps(value), limit) is (depth(value) > limit)


def test_tool_call_arguments_are_checked_before_parsing() -> None:
    req = ChatRequest.parse({"model": "m", "messages": [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "tool_calls": [{"id": "a", "function": {"name": "f", "arguments": "[" * 300_000}}]},
        {"role": "tool", "tool_call_id": "a", "content": "x"}]})
    with pytest.raises(ApiError) as info:
        anthropic.to_vendor_request(req, "claude-3-5-sonnet-20241022")
    assert info.value.status == 400 and info.value.param == "messages[1].tool_calls[0].function.arguments"
