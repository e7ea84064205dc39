"""What a request may carry on a hosted trial (`proxy/hosted_params.py`): the allow-list
per endpoint, `n`, nested options, built-in tools and the output-token cap."""

from __future__ import annotations

from typing import Any

import pytest

from proxy.hosted import build_offers
from proxy.hosted_params import restrict
from proxy.settings import HostedSettings, load_settings
from translators.errors import ApiError
from translators.types import (
    ChatRequest,
    CompletionRequest,
    EmbeddingRequest,
    TranscriptionRequest,
)

OFFER = build_offers({"openai": HostedSettings(credentials={"api_key": "sk-platform-0123456789abcdef"}, quota=3,
                                               models=["gpt-3.5-turbo"], max_tokens=256)})["openai"]
HI = [{"role": "user", "content": "hi"}]


def chat(**fields: Any) -> ChatRequest:
    return ChatRequest.parse({"model": "gpt-3.5-turbo", "messages": HI, **fields})


def refused(req: Any) -> ApiError:
    with pytest.raises(ApiError) as exc:
        restrict(OFFER, req)
    assert exc.value.status == 400 and exc.value.type == "invalid_request_error"
    return exc.value


# Each with a value of the type OpenAI documents, so the request itself is valid.
STEERING: dict[str, Any] = {
    "service_tier": "priority", "store": True, "metadata": {"k": "v"}, "user": "someone", "logit_bias": {"50256": 100},
    "logprobs": True, "top_logprobs": 5, "prediction": {"type": "content", "content": "x"},
    "modalities": ["text", "audio"], "audio": {"voice": "alloy", "format": "wav"}, "reasoning_effort": "high",
    "web_search_options": {}, "safety_identifier": "someone", "functions": [{"name": "f"}],
    "base_url": "http://127.0.0.1:1/v1", "api_base": "http://127.0.0.1:1/v1", "endpoint": "http://127.0.0.1:1",
    "endpoint_url": "http://127.0.0.1:1", "extra_body": {"x": 1},
}


@pytest.mark.parametrize("field", sorted(STEERING))
def test_chat_fields_outside_the_allow_list_are_a_400_naming_them(field: str) -> None:
    err = refused(chat(**{field: STEERING[field]}))
    assert err.param == field and err.code == "hosted_parameter_not_allowed"
    assert f"'{field}' is not allowed on the hosted trial of provider 'openai'" in err.message
    assert "Allowed parameters:" in err.message and "messages" in err.message
    assert "filename" not in err.message  # the gateway's own fields are not advertised


def test_every_offending_field_is_listed_the_first_is_the_param() -> None:
    err = refused(chat(user="u", service_tier="priority"))
    assert err.param == "user" and "'user', 'service_tier' are not allowed" in err.message


def test_the_allow_listed_chat_request_passes_unchanged() -> None:
    req = chat(temperature=0.2, top_p=0.9, stream=True, stream_options={"include_usage": True}, stop=["x"],
               max_tokens=100, presence_penalty=0.1, frequency_penalty=0.1, seed=1, n=1,
               tools=[{"type": "function", "function": {"name": "f", "parameters": {}}}], tool_choice="auto",
               parallel_tool_calls=False, response_format={"type": "json_object"})
    assert restrict(OFFER, req) is req


def test_n_above_one_nested_options_and_built_in_tools_are_refused() -> None:
    assert refused(chat(n=2)).param == "n"
    assert refused(chat(stream=True, stream_options={"include_usage": True, "include_obfuscation": False})).param \
        == "stream_options.include_obfuscation"
    assert refused(chat(tools=[{"type": "web_search", "function": {"name": "f"}}])).param == "tools[0].type"


def test_max_tokens_above_the_cap_is_refused_not_clamped() -> None:
    for field in ("max_tokens", "max_completion_tokens"):
        err = refused(chat(**{field: 257}))
        assert (err.param, err.code) == (field, "hosted_max_tokens_exceeded")
        assert "at most 256 output tokens" in err.message
        assert restrict(OFFER, chat(**{field: 256})).token_limit == 256


def test_a_request_without_a_limit_gets_the_cap_in_the_typed_fields_and_the_forwarded_json() -> None:
    out = restrict(OFFER, chat())
    assert out.max_tokens == 256 and out.raw["max_tokens"] == 256 and out.token_limit == 256
    legacy = restrict(OFFER, CompletionRequest.parse({"model": "gpt-3.5-turbo-instruct", "prompt": "x"}))
    assert legacy.max_tokens == 256 and legacy.raw["max_tokens"] == 256
    assert restrict(OFFER, chat(max_completion_tokens=5)).raw.get("max_tokens") is None  # its own limit stands


def test_null_means_not_given_and_is_removed() -> None:
    out = restrict(OFFER, chat(user=None, service_tier=None, max_tokens=10))
    assert "user" not in out.raw and "service_tier" not in out.raw and out.raw["max_tokens"] == 10


def test_completions_embeddings_and_transcriptions_have_their_own_lists() -> None:
    assert refused(CompletionRequest.parse({"model": "m", "prompt": "x", "best_of": 3})).param == "best_of"
    assert refused(CompletionRequest.parse({"model": "m", "prompt": "x", "echo": True})).param == "echo"
    embedding = EmbeddingRequest.parse({"model": "e", "input": "x", "encoding_format": "float", "dimensions": 8})
    assert restrict(OFFER, embedding) is embedding  # no token cap to add: embeddings have no output tokens
    assert refused(EmbeddingRequest.parse({"model": "e", "input": "x", "user": "u"})).param == "user"
    audio = TranscriptionRequest.parse({"model": "whisper-1", "file": b"RIFF", "filename": "a.wav",
                                        "content_type": "audio/wav", "language": "en", "prompt": "p",
                                        "response_format": "json", "temperature": "0.2"})
    assert restrict(OFFER, audio) is audio
    grains = TranscriptionRequest.parse({"model": "whisper-1", "file": b"RIFF", "response_format": "verbose_json",
                                         "timestamp_granularities": ["segment"]})
    assert refused(grains).param == "timestamp_granularities"


def test_max_tokens_is_configurable_per_provider_with_a_default(tmp_path: Any) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("hosted:\n  openai: {credentials: {api_key: sk-x-0123456789}, quota: 1, models: [m]}\n"
                   "  anthropic: {credentials: {api_key: sk-y-0123456789}, quota: 1, models: [m], max_tokens: 64}\n")
    offers = build_offers(load_settings(cfg).hosted)
    assert (offers["openai"].max_tokens, offers["anthropic"].max_tokens) == (1024, 64)
    cfg.write_text("hosted:\n  openai: {credentials: {api_key: sk-x-0123456789}, quota: 1, models: [m], "
                   "max_tokens: 0}\n")
    with pytest.raises(Exception, match="max_tokens"):
        load_settings(cfg)
