"""The extra conformance layer: the Anthropic, Hugging Face and Replicate translators and the SSE
decoder on the team's real vendor recordings (../shared/vendors/recordings/). Every test here is
also covered by one on our own fixtures (tests/fixtures/<vendor>/); these only run where
../shared sits beside the repository, and skip, saying so, where it does not."""

from __future__ import annotations

import pytest

from tests.fixture_data import needs_shared
from tests.unit._vendor_data import (
    check_schema,
    content_of,
    events_of,
    finishes,
    parsed,
    shared_json,
    shared_recording,
)
from translators import anthropic
from translators._sse import SSEDecoder
from translators.huggingface import codec as huggingface_codec
from translators.replicate import codec as replicate_codec

pytestmark = needs_shared


@pytest.mark.parametrize(("vendor", "name"), [("openai", "chat_stream_length_with_usage.sse"),
                                              ("anthropic", "chat_stream.sse"), ("replicate", "chat_stream.sse")])
def test_decoder_gives_the_same_events_wherever_a_recording_is_cut(vendor: str, name: str) -> None:
    raw = shared_recording(vendor, name)
    whole = events_of(raw)
    assert whole and events_of(raw, 1) == whole
    for cut in range(0, len(raw) + 1, 7):
        decoder = SSEDecoder()
        assert decoder.feed(raw[:cut]) + decoder.feed(raw[cut:]) + decoder.flush() == whole, cut


@pytest.mark.parametrize("name", ["chat_stream.sse", "chat_stream_tool_use.sse"])
def test_anthropic_recorded_streams(name: str) -> None:
    state = anthropic.AnthropicState("claude-sonnet-4-5")
    chunks = [c for e in events_of(shared_recording("anthropic", name), 11)
              for c in anthropic.from_vendor_event(e, state)]
    for chunk in parsed(chunks):
        check_schema("chat_completion_chunk.json", chunk)
    assert state.finished and chunks[-1].usage is not None and all(c.usage is None for c in chunks[:-1])
    assert finishes(chunks) == (["stop"] if name == "chat_stream.sse" else ["tool_calls"])


@pytest.mark.parametrize("name", ["chat_response.json", "chat_response_tool_use.json"])
def test_anthropic_recorded_responses(name: str) -> None:
    out = anthropic.from_vendor_response(shared_json("anthropic", name), "claude-sonnet-4-5")
    check_schema("chat_completion_response.json", out)


def test_huggingface_recorded_tgi_stream_and_answers() -> None:
    model = "HuggingFaceH4/zephyr-7b-beta"
    state = huggingface_codec.MessagesState(model)
    chunks = [c for e in events_of(shared_recording("huggingface", "tgi_chat_stream.sse"), 7)
              for c in huggingface_codec.from_vendor_event(e, state)]
    chunks += huggingface_codec.end_of_stream(state)
    for event in parsed(chunks):
        check_schema("chat_completion_chunk.json", event)
    assert content_of(chunks).startswith("Deep learning is a subfield") and finishes(chunks) == ["length"]
    for name in ("tgi_chat_response.json", "tgi_chat_response_tool_call_v1.4.5.json"):
        check_schema("chat_completion_response.json",
                     huggingface_codec.from_vendor_response(shared_json("huggingface", name), model))


def test_replicate_recorded_stream_matches_the_recorded_prediction() -> None:
    model = "meta/meta-llama-3-8b-instruct"
    state = replicate_codec.ReplicateState(model, prompt="Hi")
    chunks = [c for e in events_of(shared_recording("replicate", "chat_stream.sse"), 5)
              for c in replicate_codec.from_vendor_event(e, state)]
    chunks += replicate_codec.end_of_stream(state)
    for event in parsed(chunks):
        check_schema("chat_completion_chunk.json", event)
    tokens = shared_json("replicate", "prediction_prefer_wait_processing.json")["output"]
    assert content_of(chunks) == "".join(tokens) and finishes(chunks) == ["stop"]
    out = replicate_codec.from_vendor_response(shared_json("replicate", "prediction_succeeded_llm.json"), model)
    check_schema("chat_completion_response.json", out)
