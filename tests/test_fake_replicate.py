"""The fake Replicate driven by the official client (`replicate.Client`), which proves the fake
speaks the vendor's wire format: predictions created and polled, `Prefer: wait`, the
`urls.stream` SSE (multi-line data, `done`), whisper-style inputs, and problem+json errors."""

from __future__ import annotations

import base64
import io
import wave

import pytest
import replicate
from replicate.exceptions import ModelError, ReplicateError

from emulators.replicate import HAIKU, LLAMA_VERSION
from tests.fakes.replicate_fixtures import FakeReplicate

LLM = "meta/meta-llama-3-8b-instruct"


def client(fake: FakeReplicate, token: str | None = None) -> replicate.Client:
    c = replicate.Client(api_token=token or fake.token, base_url=fake.base_url, timeout=10)
    c.poll_interval = 0.02
    return c


def test_run_polls_until_succeeded(fake_replicate: FakeReplicate) -> None:
    out = client(fake_replicate).run(LLM, input={"prompt": "haiku", "max_tokens": 50}, wait=False)
    assert "".join(out) == "".join(HAIKU)
    assert [r.method for r in fake_replicate.state.requests] == ["POST", "GET", "GET", "GET"]


def test_prefer_wait_and_a_version(fake_replicate: FakeReplicate) -> None:
    fake_replicate.state.finish_within_wait = True
    prediction = client(fake_replicate).predictions.create(version=LLAMA_VERSION, input={"prompt": "haiku"},
                                                           wait=True)
    assert prediction.status == "succeeded" and "".join(prediction.output) == "".join(HAIKU)
    create = fake_replicate.state.requests[0]
    assert create.path == "/v1/predictions" and create.headers["prefer"] == "wait"


def test_stream(fake_replicate: FakeReplicate) -> None:
    fake_replicate.state.split_events = True
    events = list(client(fake_replicate).stream(LLM, input={"prompt": "haiku"}))
    assert "".join(str(e) for e in events) == "".join(HAIKU)
    assert events[-1].event.value == "done"


def test_whisper(fake_replicate: FakeReplicate) -> None:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(8000)
        out.writeframes(b"\x00\x01" * 800)
    uri = "data:audio/wav;base64," + base64.b64encode(buf.getvalue()).decode()
    result = client(fake_replicate).run("openai/whisper", input={"audio": uri}, wait=False)
    assert result["transcription"] == "A MAN SAID TO THE UNIVERSE SIR I EXIST" and result["segments"]


def test_errors(fake_replicate: FakeReplicate) -> None:
    with pytest.raises(ReplicateError) as caught:
        client(fake_replicate, token="r8_wrong").run(LLM, input={"prompt": "x"})
    assert caught.value.status == 401 and caught.value.title == "Unauthenticated"
    with pytest.raises(ReplicateError) as caught:
        client(fake_replicate).run(LLM, input={"prompt": "x", "stop_sequences": ["a"]})
    assert caught.value.status == 422 and "stop_sequences" in (caught.value.detail or "")
    fake_replicate.state.fail_with = "CUDA out of memory"
    with pytest.raises(ModelError):
        client(fake_replicate).run(LLM, input={"prompt": "x"}, wait=False)
