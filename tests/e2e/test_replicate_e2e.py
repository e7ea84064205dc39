"""End-to-end: Replicate models through a real `modelport serve`, driven by the official openai
SDK, checked against what the fake Replicate received.

The module's own tenant (never acme/beta) gets models added one by one with
`modelport models add T replicate OWNER/NAME --type ... api_token=... base_url=<fake>/v1`,
an LLM and a whisper model set as its defaults."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import openai
import pytest

from tests.e2e.harness import GatewayProcess, provider_tenant
from tests.e2e.test_endpoints import wav_bytes
from tests.e2e.test_streaming import sse_frames
from emulators.replicate import HAIKU, LLAMA_VERSION
from tests.fakes.replicate_fixtures import FakeReplicate

TENANT = "replicate-e2e"
LLM, PINNED, NO_STREAM, WHISPER = ("meta/meta-llama-3-8b-instruct", "meta/llama-2-70b-chat", "replicate/flan-t5-xl",
                                   "openai/whisper")
TRANSCRIPT = "A MAN SAID TO THE UNIVERSE SIR I EXIST"
USER = [{"role": "user", "content": "Please write a haiku about llamas"}]
HAIKU_TEXT = "".join(HAIKU)


@dataclass
class Rep:
    gw: GatewayProcess
    fake: FakeReplicate
    token: str

    def client(self, **kwargs: Any) -> openai.OpenAI:
        return self.gw.client(self.token, **kwargs)

    def http(self) -> httpx.Client:
        return self.gw.http(self.token)

    @property
    def state(self) -> Any:
        return self.fake.state


@pytest.fixture(scope="module")
def replicate_tenant(gateway: GatewayProcess,
                     fake_replicate_server: FakeReplicate) -> Iterator[tuple[GatewayProcess, str]]:
    gw, fake = gateway, fake_replicate_server
    common = [f"api_token={fake.token}", f"base_url={fake.v1_url}"]
    with provider_tenant(gw, TENANT, [
        ("models", "add", "replicate", LLM, "--type", "llm", *common),
        ("models", "add", "replicate", PINNED, "--type", "llm", *common, f"version={LLAMA_VERSION}"),
        ("models", "add", "replicate", NO_STREAM, "--type", "llm", *common),
        ("models", "add", "replicate", WHISPER, "--type", "speech2text", *common),
        ("defaults", "set", "llm", f"replicate/{LLM}"),
        ("defaults", "set", "speech2text", f"replicate/{WHISPER}"),
    ], unique=False, token_name="replicate-e2e", listed={LLM, PINNED, NO_STREAM, WHISPER}) as made:
        yield gw, made.token


@pytest.fixture
def rep(replicate_tenant: tuple[GatewayProcess, str], fake_replicate: FakeReplicate) -> Rep:
    gw, token = replicate_tenant
    return Rep(gw, fake_replicate, token)


def joined(chunks: list[Any]) -> str:
    return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


# -- chat ---------------------------------------------------------------------------------------------------


def test_default_chat_waits_and_polls(rep: Rep) -> None:
    messages = [{"role": "system", "content": "You are a poet."}, *USER]
    answer = rep.client().chat.completions.create(model="default", messages=messages, max_tokens=64,  # type: ignore[arg-type]
                                                  temperature=0.6, top_p=0.9, stop=["\n\n\n", "END"])
    assert answer.choices[0].message.content == HAIKU_TEXT  # tokens joined with "", whitespace kept
    assert answer.choices[0].finish_reason == "stop"
    assert answer.usage is not None and answer.usage.completion_tokens == (len(HAIKU_TEXT) + 3) // 4  # estimated
    create, *polls = rep.state.requests
    assert create.path == f"/v1/models/{LLM}/predictions" and create.headers["prefer"] == "wait=1"
    assert create.headers["authorization"] == f"Bearer {rep.fake.token}"
    assert create.json == {"input": {"prompt": USER[0]["content"], "system_prompt": "You are a poet.",
                                     "max_tokens": 64, "temperature": 0.6, "top_p": 0.9,
                                     "stop_sequences": "\n\n\n,END"}}
    assert [p.method for p in polls] == ["GET"] * 3  # the fake finishes after 3 polls of urls.get


def test_default_chat_stream_keeps_whitespace(rep: Rep) -> None:
    rep.state.split_events = True
    chunks = list(rep.client().chat.completions.create(model="default", messages=USER, stream=True,  # type: ignore[arg-type]
                                                       stream_options={"include_usage": True}))
    assert joined(chunks) == HAIKU_TEXT and len({c.id for c in chunks}) == 1
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["stop"]
    assert chunks[-1].choices == [] and chunks[-1].usage is not None and chunks[-1].usage.total_tokens > 0
    assert rep.state.creates[-1].json["stream"] is True
    assert rep.state.wait_for(lambda s: s.streams_finished == 1) and rep.state.canceled == []


def test_conversation_prompt_template(rep: Rep) -> None:
    messages = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}, *USER]
    rep.client().chat.completions.create(model=LLM, messages=messages)  # type: ignore[arg-type]
    assert rep.state.creates[-1].json["input"]["prompt"] == (
        "User: Hi\n\nAssistant: Hello!\n\nUser: Please write a haiku about llamas\n\nAssistant:")


def test_a_pinned_version_and_a_model_that_cannot_stream(rep: Rep) -> None:
    client = rep.client()
    assert client.chat.completions.create(model=PINNED, messages=USER).choices[0].message.content == HAIKU_TEXT  # type: ignore[arg-type]
    create = rep.state.creates[-1]
    assert create.path == "/v1/predictions" and create.json["version"] == LLAMA_VERSION
    # "replicate/flan-t5-xl" alone reads as provider "replicate", model "flan-t5-xl": name the provider.
    chunks = list(client.chat.completions.create(model=f"replicate/{NO_STREAM}", messages=USER, stream=True))  # type: ignore[arg-type]
    assert joined(chunks) == HAIKU_TEXT and chunks[-1].choices[0].finish_reason == "stop"


def test_legacy_completions_go_through_the_prompt(rep: Rep) -> None:
    answer = rep.client().completions.create(model=LLM, prompt="Write a haiku", max_tokens=30)
    assert answer.choices[0].text == HAIKU_TEXT
    assert rep.state.creates[-1].json["input"] == {"prompt": "Write a haiku", "max_tokens": 30}


def test_leaving_a_stream_cancels_the_prediction(rep: Rep) -> None:
    rep.state.reply_tokens = [f" word{i}" for i in range(200)]
    rep.state.stream_delay = 0.05
    with rep.http() as http, http.stream("POST", "/v1/chat/completions",
                                         json={"model": "default", "messages": USER, "stream": True}) as resp:
        assert resp.status_code == 200 and next(resp.iter_bytes()).startswith(b"data: {")
    assert rep.state.wait_for(lambda s: len(s.canceled) == 1 and s.streams_aborted == 1), \
        f"canceled={rep.state.canceled} aborted={rep.state.streams_aborted}"
    assert rep.state.predictions[rep.state.canceled[0]].status == "canceled"


def test_a_prediction_past_the_deadline_is_504_and_canceled(rep: Rep) -> None:
    rep.state.polls_to_finish = 10_000
    started = time.monotonic()
    with rep.http() as http:
        resp = http.post("/v1/chat/completions", json={"model": "default", "messages": USER})
    assert resp.status_code == 504 and resp.json()["error"]["code"] == "upstream_timeout"
    assert time.monotonic() - started < 8  # the e2e gateway's deadline (total_timeout) is 5 s
    assert rep.state.wait_for(lambda s: len(s.canceled) == 1)


# -- transcription -------------------------------------------------------------------------------------------------


def test_default_transcription_in_each_format(rep: Rep) -> None:
    audio, client = wav_bytes(), rep.client()
    result = client.audio.transcriptions.create(model="default", file=("hello.wav", audio, "audio/wav"),
                                                language="en", prompt="Names: Ada")
    assert result.text == TRANSCRIPT
    sent = rep.state.creates[-1].json["input"]
    header, _, data = sent["audio"].partition(",")
    assert header == "data:audio/wav;base64" and base64.b64decode(data) == audio
    assert (sent["language"], sent["initial_prompt"]) == ("en", "Names: Ada")
    srt = client.audio.transcriptions.create(model="default", file=("hello.wav", audio, "audio/wav"),
                                             response_format="srt")
    assert str(srt).startswith("1\n00:00:00,000 --> 00:00:01,600\nA MAN SAID TO\n")
    vtt = client.audio.transcriptions.create(model="default", file=("hello.wav", audio, "audio/wav"),
                                             response_format="vtt")
    assert str(vtt).startswith("WEBVTT\n\n00:00:00.000 --> 00:00:01.600")
    verbose = client.audio.transcriptions.create(model="default", file=("hello.wav", audio, "audio/wav"),
                                                 response_format="verbose_json")
    assert verbose.language == "english" and len(verbose.segments or []) == 3  # type: ignore[attr-defined]


def test_replicate_has_no_embedding_models(rep: Rep) -> None:
    result = rep.gw.cli("models", "add", TENANT, "replicate", "replicate/all-mpnet-base-v2", "--type",
                        "text-embedding", f"api_token={rep.fake.token}", check=False)
    assert result.code != 0 and "no text-embedding models" in result.err


# -- errors ----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True])
def test_upstream_401_is_403_naming_replicate(rep: Rep, stream: bool) -> None:
    rep.state.tokens = {"r8_another_token"}
    with rep.http() as http:
        resp = http.post("/v1/chat/completions", json={"model": "default", "messages": USER, "stream": stream})
    assert resp.status_code == 403, resp.text
    err = resp.json()["error"]
    assert err["code"] == "upstream_credential_rejected" and "replicate" in err["message"]
    assert rep.fake.token not in resp.text and rep.fake.token not in rep.gw.log()


@pytest.mark.parametrize(("status", "headers", "expected"), [
    (402, {}, (429, "insufficient_quota")),
    (429, {"retry-after": "7"}, (429, "rate_limit_exceeded")),
    (422, {}, (400, "invalid_input")),
])
def test_problem_json_errors(rep: Rep, status: int, headers: dict[str, str], expected: tuple[int, str]) -> None:
    rep.state.next_answers.append((status, {"title": "Problem", "detail": f"detail of {status}", "status": status},
                                   headers))
    with rep.http() as http:
        resp = http.post("/v1/chat/completions", json={"model": "default", "messages": USER})
    assert (resp.status_code, resp.json()["error"]["code"]) == expected
    assert f"detail of {status}" in resp.json()["error"]["message"]
    if status == 429:
        assert resp.headers["retry-after"] == "7"


def test_a_failed_prediction_and_a_stream_error(rep: Rep) -> None:
    rep.state.fail_with = "CUDA out of memory"
    with pytest.raises(openai.APIStatusError) as caught:
        rep.client().chat.completions.create(model="default", messages=USER)  # type: ignore[arg-type]
    assert caught.value.status_code == 502 and "CUDA out of memory" in caught.value.message
    rep.state.fail_with, rep.state.stream_error = None, "Prediction failed: NaN in logits"
    with rep.http() as http:
        resp = http.post("/v1/chat/completions", json={"model": "default", "messages": USER, "stream": True})
    frames = sse_frames(resp.content)
    assert resp.status_code == 200 and b"[DONE]" not in frames
    assert "NaN in logits" in json.loads(frames[-1])["error"]["message"]


def test_a_stop_sequence_with_a_comma_is_refused(rep: Rep) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        rep.client().chat.completions.create(model="default", messages=USER, stop=["a, b"])  # type: ignore[arg-type]
    assert caught.value.param == "stop" and rep.state.requests == []
