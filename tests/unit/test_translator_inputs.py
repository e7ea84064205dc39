"""Every translator's request builders, fed requests that passed the gateway's checks but
carry odd values (wrong types in fields a translator reads, odd unicode, nulls, huge
numbers): each builder either builds a body or raises `ApiError` (a 4xx for the client),
never another exception (which would be a 500).

Property-based (hypothesis) with a fixed seed and a bounded number of examples, so a run
is reproducible and quick; pure functions only, no I/O.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from translators import (
    anthropic,
    chatglm,
    minimax,
    qwen,
    spark,
    zhipu,
)
from translators.completions import _as_chat
from translators.ernie import codec as ernie_codec
from translators.errors import ApiError
from translators.huggingface import codec as huggingface_codec
from translators.huggingface import tasks as huggingface_tasks
from translators.replicate import codec as replicate_codec
from translators.types import ChatRequest, CompletionRequest, EmbeddingRequest

# Fields some translator reads (from the typed request or from `raw`), plus vendor knobs.
READ_FIELDS = ["modalities", "audio", "response_format", "logprobs", "top_logprobs", "seed", "top_k",
               "repetition_penalty", "best_of", "stop", "tools", "tool_choice", "parallel_tool_calls",
               "functions", "function_call", "n", "max_tokens", "max_completion_tokens", "temperature",
               "top_p", "presence_penalty", "frequency_penalty", "user", "stream", "stream_options",
               "penalty_score", "disable_search", "enable_citation", "enable_search", "text_type",
               "input_type", "type", "normalize", "truncate", "prompt_name", "echo", "suffix"]

_scalars = st.one_of(st.none(), st.booleans(), st.integers(min_value=-(2**63), max_value=2**63 - 1),
                     st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=12),
                     st.sampled_from(["auto", "none", "required", "function", "text", "json_object", "audio",
                                      "query", "document", "db", "", "\x00", "\u202e", "\ud7ff", "😀"]))
JSON = st.recursive(_scalars, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                      st.dictionaries(st.sampled_from(
                                                          ["type", "function", "name", "text", "url",
                                                           "image_url", "arguments", "parameters",
                                                           "include_usage", "x"]), inner, max_size=3)),
                    max_leaves=8)

_part = st.one_of(st.fixed_dictionaries({"type": st.just("text"), "text": st.text(max_size=8)}),
                  st.fixed_dictionaries({"type": st.sampled_from(["image_url", "input_audio", "x"]),
                                         "image_url": st.fixed_dictionaries({"url": st.sampled_from(
                                             ["https://example.test/a.png", "data:image/png;base64,AAAA",
                                              "data:,", "ftp://x", ""])})}))
_message = st.fixed_dictionaries(
    {"role": st.sampled_from(["system", "developer", "user", "assistant", "tool", "function"])},
    optional={"content": st.one_of(st.none(), st.text(max_size=10), st.lists(_part, max_size=2)),
              "name": st.text(max_size=5), "tool_call_id": st.text(max_size=5),
              "tool_calls": st.lists(st.fixed_dictionaries(
                  {"id": st.text(max_size=4), "function": st.fixed_dictionaries(
                      {"name": st.text(max_size=4), "arguments": st.text(max_size=6)})}), max_size=2)})
# One field a translator reads, always set (to anything), and a few others.
_extras = st.builds(lambda key, value, more: {**more, key: value}, st.sampled_from(READ_FIELDS), JSON,
                    st.dictionaries(st.sampled_from(READ_FIELDS), JSON, max_size=3))


def _chat_bodies() -> st.SearchStrategy[dict[str, Any]]:
    base = st.fixed_dictionaries({"model": st.just("m"),
                                  "messages": st.lists(_message, min_size=1, max_size=3)})
    return st.builds(lambda b, e: {**b, **e}, base, _extras)


def _parsed(model: type[Any], body: dict[str, Any]) -> Any:
    try:
        return model.parse(body)
    except ValidationError:
        return None  # the gateway answers these with a 400 naming the field


def _safely(build: Callable[[], Any], sendable: bool = True) -> None:
    try:
        out = build()
    except ApiError as err:
        assert 400 <= err.status < 500, err
        return
    if sendable:
        orjson.dumps(out)  # what a translator builds must be sendable


CHAT_BUILDERS: dict[str, Callable[[ChatRequest], Any]] = {
    "anthropic": lambda r: anthropic.to_vendor_request(r, "claude-3-5-sonnet-20241022"),
    "chatglm": lambda r: chatglm.to_vendor_request(r, "chatglm3-6b"),
    "chatglm-native": chatglm.to_native_request,
    "ernie": lambda r: ernie_codec.to_vendor_request(r, "ernie-4.0"),
    "huggingface": lambda r: huggingface_tasks.generate_request(r, "m"),
    "huggingface-messages": lambda r: huggingface_codec.to_vendor_request(r, "m"),
    "minimax": lambda r: minimax.to_vendor_request(r, "abab6.5s-chat"),
    "qwen": lambda r: qwen.to_vendor_request(r, "qwen-plus"),
    "qwen-vl": lambda r: qwen.to_vendor_request(r, "qwen-vl-plus"),
    "replicate": lambda r: replicate_codec.to_vendor_request(r, "meta/llama"),
    "spark": lambda r: spark.with_app_id(spark.to_vendor_request(r, "generalv3.5"), "app"),
    "spark-http": lambda r: spark.to_http_request(r, "generalv3.5"),
    "zhipu": lambda r: zhipu.to_vendor_request(r, "glm-4"),
}


@pytest.mark.parametrize("provider", sorted(CHAT_BUILDERS))
@seed(20261206)
@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True, database=None)
@given(body=_chat_bodies())
def test_chat_builders_refuse_with_4xx_only(provider: str, body: dict[str, Any]) -> None:
    req = _parsed(ChatRequest, body)
    if req is not None:
        _safely(lambda: CHAT_BUILDERS[provider](req))


@seed(20261206)
@settings(max_examples=120, deadline=None, derandomize=True, database=None)
@given(prompt=st.one_of(st.text(max_size=8), st.lists(st.text(max_size=4), max_size=2),
                        st.lists(st.integers(0, 100), max_size=3)), extras=_extras)
def test_completion_builders_refuse_with_4xx_only(prompt: Any, extras: dict[str, Any]) -> None:
    req = _parsed(CompletionRequest, {"model": "m", "prompt": prompt, **extras})
    if req is not None:
        _safely(lambda: _as_chat(req, "p"), sendable=False)
        _safely(lambda: huggingface_tasks.completion_request(req))


@seed(20261206)
@settings(max_examples=120, deadline=None, derandomize=True, database=None)
@given(text=st.one_of(st.text(max_size=8), st.lists(st.text(max_size=4), min_size=1, max_size=2)), extras=_extras)
def test_embedding_builders_refuse_with_4xx_only(text: Any, extras: dict[str, Any]) -> None:
    req = _parsed(EmbeddingRequest, {"model": "m", "input": text, **extras})
    if req is None:
        return
    texts = [text] if isinstance(text, str) else text
    _safely(lambda: qwen.to_vendor_embeddings_request(texts, "text-embedding-v3", req))
    _safely(lambda: minimax.to_vendor_embeddings_request(texts, "embo-01", req))
    _safely(lambda: huggingface_tasks.embedding_inputs(req))
    _safely(lambda: ernie_codec.embedding_batches(req, 16))


@pytest.mark.parametrize("field, value", [
    ("modalities", 1), ("modalities", "audio"), ("audio", "x"), ("response_format", "json"), ("logprobs", 1),
    ("top_logprobs", "2"), ("seed", 1.5), ("functions", {}), ("function_call", 3), ("stop", 5), ("tools", "x"),
    ("presence_penalty", "high"),
])
def test_wrong_types_on_read_fields_are_refused_at_the_edge(field: str, value: Any) -> None:
    with pytest.raises(ValidationError) as info:
        ChatRequest.parse({"model": "m", "messages": [{"role": "user", "content": "hi"}], field: value})
    assert info.value.errors()[0]["loc"][0] == field


@pytest.mark.parametrize("field, value", [("best_of", "2"), ("logprobs", True), ("seed", "1")])
def test_wrong_types_on_completion_fields_are_refused(field: str, value: Any) -> None:
    with pytest.raises(ValidationError):
        CompletionRequest.parse({"model": "m", "prompt": "hi", field: value})
