"""The Hugging Face translator against the fake (real `UpstreamClient`, loopback): which URL
each task reaches, the Messages API detection, and the "model is loading" wait, which must
stay within the request's deadline."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from keystore.models import Credential
from tests.fakes.huggingface_fixtures import FakeHF
from translators._http import Timeouts, UpstreamClient
from translators.base import CallContext
from translators.errors import ApiError
from translators.huggingface import _WITHOUT_MESSAGES_API, HuggingFaceTranslator
from translators.types import ChatRequest, EmbeddingRequest

HF = HuggingFaceTranslator()
USER = [{"role": "user", "content": "What is deep learning?"}]
REPLY = "Deep learning is a subfield of machine learning"


@pytest.fixture
async def http() -> AsyncIterator[UpstreamClient]:
    client = UpstreamClient(Timeouts(connect=2.0, read=2.0, total=2.0))  # the request's deadline: 2 s
    yield client
    await client.close()


def ctx(http: UpstreamClient, fake: FakeHF, model: str, **fields: str) -> CallContext:
    return CallContext(http, Credential({"api_token": fake.token, **fields}), model, fake.base_url, "req_t")


async def joined(stream: AsyncIterator[Any]) -> str:
    text = ""
    async for chunk in stream:
        for choice in json.loads(chunk.data)["choices"]:
            text += choice["delta"].get("content") or ""
    return text


async def test_loading_model_is_waited_for(http: UpstreamClient, fake_hf: FakeHF) -> None:
    fake_hf.state.loading["openai-community/gpt2"] = [0.3, 0.3]
    started = time.monotonic()
    out = await HF.chat(ChatRequest.parse({"model": "m", "messages": USER}),
                        ctx(http, fake_hf, "openai-community/gpt2", task="text-generation"))
    assert out["choices"][0]["message"]["content"] == REPLY
    assert len(fake_hf.state.requests) == 3 and time.monotonic() - started >= 0.6


async def test_loading_stream_is_waited_for(http: UpstreamClient, fake_hf: FakeHF) -> None:
    fake_hf.state.loading["tgi-current"] = [0.2]
    text = await joined(HF.chat_stream(ChatRequest.parse({"model": "m", "messages": USER, "stream": True}),
                                       ctx(http, fake_hf, "tgi", endpoint_url=fake_hf.endpoint("tgi-current"))))
    assert text == REPLY and len(fake_hf.state.requests) == 2


async def test_an_estimate_past_the_deadline_fails_at_once(http: UpstreamClient, fake_hf: FakeHF) -> None:
    fake_hf.state.loading["sentence-transformers/all-MiniLM-L6-v2"] = [20.0]
    started = time.monotonic()
    with pytest.raises(ApiError) as caught:
        await HF.embed(EmbeddingRequest.parse({"model": "m", "input": "hi"}),
                       ctx(http, fake_hf, "sentence-transformers/all-MiniLM-L6-v2"))
    assert (caught.value.status, caught.value.code, caught.value.retry_after) == (503, "model_loading", 20.0)
    assert "20s" in caught.value.message and time.monotonic() - started < 1.5
    assert len(fake_hf.state.requests) == 1


@pytest.mark.parametrize("stream", [False, True])
async def test_a_model_that_keeps_loading_stops_at_the_deadline(http: UpstreamClient, fake_hf: FakeHF,
                                                                stream: bool) -> None:
    fake_hf.state.loading["tgi-legacy"] = [0.5] * 50
    started = time.monotonic()
    context = ctx(http, fake_hf, "tgi", endpoint_url=fake_hf.endpoint("tgi-legacy"), task="text-generation")
    req = ChatRequest.parse({"model": "m", "messages": USER, "stream": stream})
    with pytest.raises(ApiError) as caught:
        if stream:
            await joined(HF.chat_stream(req, context))
        else:
            await HF.chat(req, context)
    assert caught.value.status == 503 and time.monotonic() - started < 3.5  # deadline 2 s, some slack
    assert 2 <= len(fake_hf.state.requests) <= 5


async def test_messages_api_is_detected_once_per_url(http: UpstreamClient, fake_hf: FakeHF) -> None:
    _WITHOUT_MESSAGES_API.clear()  # what this process learnt before
    context = ctx(http, fake_hf, "openai-community/gpt2")
    req = ChatRequest.parse({"model": "m", "messages": USER})
    assert (await HF.chat(req, context))["choices"][0]["message"]["content"] == REPLY
    paths = [r.path for r in fake_hf.state.requests]
    assert paths == ["/models/openai-community/gpt2/v1/chat/completions", "/models/openai-community/gpt2"]
    assert await joined(HF.chat_stream(ChatRequest.parse({"model": "m", "messages": USER, "stream": True}),
                                       context)) == REPLY
    assert [r.path for r in fake_hf.state.requests][2:] == ["/models/openai-community/gpt2"]  # remembered
    sent = fake_hf.state.requests[-1].json
    assert sent["inputs"] == "User: What is deep learning?\n\nAssistant:" and sent["stream"] is True
    assert sent["parameters"]["return_full_text"] is False and sent["parameters"]["details"] is True


async def test_task_conversational_never_falls_back(http: UpstreamClient, fake_hf: FakeHF) -> None:
    with pytest.raises(ApiError) as caught:
        await HF.chat(ChatRequest.parse({"model": "m", "messages": USER}),
                      ctx(http, fake_hf, "openai-community/gpt2", task="conversational"))
    assert caught.value.status == 404 and len(fake_hf.state.requests) == 1


async def test_task_text_generation_skips_the_messages_api(http: UpstreamClient, fake_hf: FakeHF) -> None:
    await HF.chat(ChatRequest.parse({"model": "m", "messages": USER}),
                  ctx(http, fake_hf, "HuggingFaceH4/zephyr-7b-beta", task="text-generation"))
    assert [r.path for r in fake_hf.state.requests] == ["/models/HuggingFaceH4/zephyr-7b-beta"]


async def test_a_task_of_the_wrong_type_is_a_400(http: UpstreamClient, fake_hf: FakeHF) -> None:
    with pytest.raises(ApiError) as caught:
        await HF.embed(EmbeddingRequest.parse({"model": "m", "input": "hi"}),
                       ctx(http, fake_hf, "openai-community/gpt2", task="text-generation"))
    assert caught.value.status == 400 and caught.value.code == "invalid_credential"
    assert fake_hf.state.requests == []


async def test_plain_text_422_from_the_messages_api(http: UpstreamClient, fake_hf: FakeHF) -> None:
    text = "Failed to deserialize the JSON body into the target type: messages: invalid type: string"
    fake_hf.state.next_answers.append((422, text, {"content-type": "text/plain"}))
    with pytest.raises(ApiError) as caught:
        await HF.chat(ChatRequest.parse({"model": "m", "messages": USER}),
                      ctx(http, fake_hf, "meta-llama/Meta-Llama-3-8B-Instruct"))
    assert caught.value.status == 400 and caught.value.message == text


async def test_endpoint_urls(http: UpstreamClient, fake_hf: FakeHF) -> None:
    await HF.chat(ChatRequest.parse({"model": "m", "messages": USER}),
                  ctx(http, fake_hf, "tgi", endpoint_url=fake_hf.endpoint("tgi-old") + "/"))
    await HF.embed(EmbeddingRequest.parse({"model": "m", "input": ["a", "b"], "truncate": True}),
                   ctx(http, fake_hf, "tei", endpoint_url=fake_hf.endpoint("tei")))
    assert [r.path for r in fake_hf.state.requests] == ["/endpoints/tgi-old/v1/chat/completions", "/endpoints/tei"]
    assert fake_hf.state.requests[-1].json == {"inputs": ["a", "b"], "truncate": True}
    assert {r.headers["authorization"] for r in fake_hf.state.requests} == {f"Bearer {fake_hf.token}"}
