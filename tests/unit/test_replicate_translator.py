"""The Replicate translator against the fake (real `UpstreamClient`, loopback): create with
`Prefer: wait`, polling within the request's deadline, cancellation of abandoned
predictions, streams, and which URLs the token may be sent to."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator

import pytest

from keystore.models import Credential
from emulators.replicate import HAIKU, LLAMA_VERSION
from tests.fakes.replicate_fixtures import FakeReplicate
from translators._http import Timeouts, UpstreamClient
from translators.base import CallContext
from translators.errors import ApiError
from translators.replicate import ReplicateTranslator
from translators.types import ChatRequest

REP = ReplicateTranslator()
MODEL = "meta/meta-llama-3-8b-instruct"
USER = [{"role": "user", "content": "Write a haiku about llamas"}]


@pytest.fixture
async def http() -> AsyncIterator[UpstreamClient]:
    client = UpstreamClient(Timeouts(connect=2.0, read=3.0, total=2.0))  # the request's deadline: 2 s
    yield client
    await client.close()


def ctx(http: UpstreamClient, fake: FakeReplicate, model: str = MODEL, **fields: str) -> CallContext:
    return CallContext(http, Credential({"api_token": fake.token, **fields}), model, fake.v1_url, "req_t")


def chat(stream: bool = False) -> ChatRequest:
    return ChatRequest.parse({"model": "m", "messages": USER, "stream": stream})


async def test_waits_then_polls_until_succeeded(http: UpstreamClient, fake_replicate: FakeReplicate) -> None:
    out = await REP.chat(chat(), ctx(http, fake_replicate))
    assert out["choices"][0]["message"]["content"] == "".join(HAIKU)
    create, *polls = fake_replicate.state.requests
    assert create.path == f"/v1/models/{MODEL}/predictions" and create.headers["prefer"] == "wait=1"
    assert create.json == {"input": {"prompt": USER[0]["content"]}}
    assert [p.method for p in polls] == ["GET"] * 3 and polls[0].path.startswith("/v1/predictions/")


async def test_a_finished_wait_needs_no_poll(http: UpstreamClient, fake_replicate: FakeReplicate) -> None:
    fake_replicate.state.finish_within_wait = True
    await REP.chat(chat(), ctx(http, fake_replicate))
    assert len(fake_replicate.state.requests) == 1


async def test_a_version_goes_to_the_predictions_endpoint(http: UpstreamClient,
                                                          fake_replicate: FakeReplicate) -> None:
    await REP.chat(chat(), ctx(http, fake_replicate, "meta/llama-2-70b-chat", version=LLAMA_VERSION))
    create = fake_replicate.state.requests[0]
    assert create.path == "/v1/predictions" and create.json["version"] == LLAMA_VERSION


async def test_polling_stops_at_the_deadline_and_cancels(http: UpstreamClient,
                                                         fake_replicate: FakeReplicate) -> None:
    fake_replicate.state.polls_to_finish = 1000
    started = time.monotonic()
    with pytest.raises(ApiError) as caught:
        await REP.chat(chat(), ctx(http, fake_replicate))
    assert (caught.value.status, caught.value.code) == (504, "upstream_timeout")
    assert time.monotonic() - started < 3.5  # deadline 2 s, some slack
    assert await asyncio.to_thread(fake_replicate.state.wait_for, lambda s: len(s.canceled) == 1)
    (pid,) = fake_replicate.state.canceled
    assert fake_replicate.state.predictions[pid].status == "canceled"


async def test_a_failed_prediction_is_a_502_with_its_error(http: UpstreamClient,
                                                           fake_replicate: FakeReplicate) -> None:
    fake_replicate.state.fail_with = "prompt too long"
    with pytest.raises(ApiError) as caught:
        await REP.chat(chat(), ctx(http, fake_replicate))
    assert (caught.value.status, caught.value.code) == (502, "prediction_failed")
    assert "prompt too long" in caught.value.message


async def test_stream(http: UpstreamClient, fake_replicate: FakeReplicate) -> None:
    fake_replicate.state.split_events = True
    chunks = [json.loads(c.data) async for c in REP.chat_stream(chat(True), ctx(http, fake_replicate))]
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"]) == "".join(HAIKU)
    create, stream = fake_replicate.state.requests
    assert create.json["stream"] is True and "prefer" not in create.headers
    assert stream.headers["accept"] == "text/event-stream" and stream.headers["cache-control"] == "no-store"
    assert fake_replicate.state.canceled == []


async def test_a_model_without_a_stream_url_is_polled(http: UpstreamClient, fake_replicate: FakeReplicate) -> None:
    chunks = [json.loads(c.data) async for c in REP.chat_stream(chat(True), ctx(http, fake_replicate,
                                                                                 "replicate/flan-t5-xl"))]
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"]) == "".join(HAIKU)
    assert chunks[-1]["choices"] == [] and chunks[-2]["choices"][0]["finish_reason"] == "stop"


async def test_leaving_a_stream_cancels_the_prediction(http: UpstreamClient, fake_replicate: FakeReplicate) -> None:
    fake_replicate.state.stream_delay = 0.1
    stream = REP.chat_stream(chat(True), ctx(http, fake_replicate))
    await anext(stream)
    await stream.aclose()  # type: ignore[attr-defined]
    assert await asyncio.to_thread(fake_replicate.state.wait_for,
                                   lambda s: len(s.canceled) == 1 and s.streams_aborted == 1)


def test_only_https_or_base_url_hosts_receive_the_token() -> None:
    context = CallContext(None, Credential({"api_token": "r8_x"}), MODEL, "http://127.0.0.1:9/v1", "r")  # type: ignore[arg-type]
    prediction = {"id": "abc", "urls": {"get": "http://evil.example/v1/predictions/abc",
                                        "cancel": "https://api.replicate.com/v1/predictions/abc/cancel",
                                        "stream": "http://evil.example/stream"}}
    assert REP._url(context, prediction, "get") == "http://127.0.0.1:9/v1/predictions/abc"
    assert REP._url(context, prediction, "cancel") == "https://api.replicate.com/v1/predictions/abc/cancel"
    assert REP._url(context, prediction, "stream") is None
    assert REP._url(context, {"id": "../x", "urls": {}}, "get") is None
