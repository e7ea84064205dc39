"""The fake Hugging Face driven by the official client (`huggingface_hub.InferenceClient`),
which proves the fake speaks the vendor's wire format: TGI's Messages API (current and 1.4.x),
`text_generation` with details, streamed and not, feature extraction, speech recognition,
and the errors the client raises on the fake's refusals."""

from __future__ import annotations

import io
import wave

import pytest
from huggingface_hub import InferenceClient
from huggingface_hub.errors import HfHubHTTPError, ValidationError

from tests.fakes.huggingface_fixtures import FakeHF

REPLY = "Deep learning is a subfield of machine learning"
USER = [{"role": "user", "content": "What is deep learning?"}]


def wav() -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(8000)
        out.writeframes(b"\x00\x01" * 800)
    return buf.getvalue()


def client(fake: FakeHF, endpoint: str, token: str | None = None) -> InferenceClient:
    return InferenceClient(model=fake.endpoint(endpoint), token=token or fake.token, timeout=10)


@pytest.mark.parametrize("endpoint", ["tgi-current", "tgi-old"])
def test_chat_completion(fake_hf: FakeHF, endpoint: str) -> None:
    answer = client(fake_hf, endpoint).chat_completion(messages=USER, max_tokens=5)
    assert answer.choices[0].message.content == "Deep learning is a subfield"
    assert answer.choices[0].finish_reason == "length" and answer.usage.completion_tokens == 5
    assert answer.object == ("chat.completion" if endpoint == "tgi-current" else "text_completion")
    fake_hf.state.split_events = True
    hub = client(fake_hf, endpoint)  # kept referenced: a collected client closes the stream it opened
    chunks = list(hub.chat_completion(messages=USER, stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == REPLY
    assert chunks[-1].choices[0].finish_reason == ("stop" if endpoint == "tgi-current" else "eos_token")
    assert fake_hf.state.requests[-1].path == f"/endpoints/{endpoint}/v1/chat/completions"


def test_text_generation_with_details(fake_hf: FakeHF) -> None:
    hub = client(fake_hf, "tgi-legacy")
    out = hub.text_generation("Hello there", max_new_tokens=4, details=True)
    assert out.generated_text == "Deep learning is a" and out.details.generated_tokens == 4
    events = list(hub.text_generation("Hello there", stream=True, details=True))
    assert "".join(e.token.text for e in events if not e.token.special) == REPLY
    assert events[-1].generated_text == REPLY and events[-1].details.finish_reason == "eos_token"
    assert fake_hf.state.requests[-1].json["stream"] is True


def test_feature_extraction_and_speech(fake_hf: FakeHF) -> None:
    assert client(fake_hf, "tei").feature_extraction("hello world").shape == (1, 8)
    assert client(fake_hf, "whisper").automatic_speech_recognition(wav()).text == \
        "A MAN SAID TO THE UNIVERSE SIR I EXIST"


def test_the_client_sees_the_fakes_errors(fake_hf: FakeHF) -> None:
    with pytest.raises(HfHubHTTPError) as caught:
        client(fake_hf, "tgi-current", token="hf_wrong").chat_completion(messages=USER)
    assert caught.value.response.status_code == 401
    with pytest.raises(ValidationError, match="must be <= 1512"):  # the client parsed TGI's error_type
        client(fake_hf, "tgi-legacy").text_generation("Hello", max_new_tokens=5000)
    fake_hf.state.loading["tgi-legacy"] = [12.0]
    with pytest.raises(HfHubHTTPError) as caught:
        client(fake_hf, "tgi-legacy").text_generation("Hello")
    assert caught.value.response.status_code == 503 and caught.value.response.json()["estimated_time"] == 12.0
