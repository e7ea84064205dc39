"""End-to-end: Hugging Face models through a real `modelport serve`, driven by the official
openai SDK, checked against what the fake Hugging Face received.

The module's own tenant (never acme/beta) gets models added one by one with
`modelport models add T huggingface MODEL --type ... api_token=... base_url=<fake>`, and one
model of each type set as its default."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import openai
import pytest

from tests.e2e.harness import GatewayProcess, provider_tenant
from tests.e2e.test_endpoints import check_schema, wav_bytes
from tests.e2e.test_streaming import sse_frames
from emulators._hf_payloads import token_vectors
from emulators._openai_payloads import embedding_vector
from tests.fakes.huggingface_fixtures import FakeHF
from tests.fixture_data import fixture

TENANT = "hf-e2e"
REPLY = "Deep learning is a subfield of machine learning"
TRANSCRIPT = "A MAN SAID TO THE UNIVERSE SIR I EXIST"
USER = [{"role": "user", "content": "What is deep learning?"}]
CHAT = "meta-llama/Meta-Llama-3-8B-Instruct"      # current TGI Messages API (the default llm)
OLD_TGI = "HuggingFaceH4/zephyr-7b-beta"           # TGI 1.4.3 quirks
NO_CHAT = "openai-community/gpt2"                  # no Messages API: text-generation task
EMBED, TOKEN_LEVEL = "sentence-transformers/all-MiniLM-L6-v2", "google-bert/bert-base-uncased"
WHISPER, WAV2VEC = "openai/whisper-large-v3", "facebook/wav2vec2-base-960h"
MODELS = [(CHAT, "llm"), (OLD_TGI, "llm"), (NO_CHAT, "llm"), (EMBED, "text-embedding"),
          (TOKEN_LEVEL, "text-embedding"), (WHISPER, "speech2text"), (WAV2VEC, "speech2text")]
TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]


@dataclass
class HF:
    gw: GatewayProcess
    fake: FakeHF
    token: str

    def client(self, **kwargs: Any) -> openai.OpenAI:
        return self.gw.client(self.token, **kwargs)

    def http(self) -> httpx.Client:
        return self.gw.http(self.token)

    @property
    def state(self) -> Any:
        return self.fake.state


@pytest.fixture(scope="module")
def hf_tenant(gateway: GatewayProcess, fake_hf_server: FakeHF) -> Iterator[tuple[GatewayProcess, str]]:
    gw, fake = gateway, fake_hf_server
    setup: list[tuple[str, ...]] = [("models", "add", "huggingface", model, "--type", kind, f"api_token={fake.token}",
                                     f"base_url={fake.base_url}") for model, kind in MODELS]
    setup.append(("models", "add", "huggingface", "my-endpoint", "--type", "llm", f"api_token={fake.token}",
                  f"endpoint_url={fake.endpoint('tgi-old')}"))
    setup += [("defaults", "set", kind, f"huggingface/{model}")
              for kind, model in (("llm", CHAT), ("text-embedding", EMBED), ("speech2text", WHISPER))]
    with provider_tenant(gw, TENANT, setup, unique=False, token_name="hf-e2e",
                         listed={m for m, _ in MODELS} | {"my-endpoint"}) as made:
        yield gw, made.token


@pytest.fixture
def hf(hf_tenant: tuple[GatewayProcess, str], fake_hf: FakeHF) -> HF:
    gw, token = hf_tenant
    return HF(gw, fake_hf, token)


def last(hf: HF, suffix: str) -> Any:
    sent = hf.state.requests_to(suffix)
    assert sent, f"nothing reached {suffix}"
    return sent[-1]


def joined(chunks: list[Any]) -> str:
    return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


# -- chat -----------------------------------------------------------------------------------------------


def test_default_chat_non_stream(hf: HF) -> None:
    answer = hf.client().chat.completions.create(model="default", messages=USER)  # type: ignore[arg-type]
    assert answer.choices[0].message.content == REPLY and answer.choices[0].finish_reason == "stop"
    assert answer.usage is not None and answer.usage.completion_tokens == 8 and answer.id.startswith("chatcmpl-")
    sent = last(hf, f"/models/{CHAT}/v1/chat/completions")
    assert sent.headers["authorization"] == f"Bearer {hf.fake.token}"
    assert sent.json["model"] == CHAT and sent.json["messages"] == USER


def test_default_chat_stream_with_usage(hf: HF) -> None:
    hf.state.split_events = True
    chunks = list(hf.client().chat.completions.create(model="default", messages=USER, stream=True,  # type: ignore[arg-type]
                                                      stream_options={"include_usage": True}))
    assert joined(chunks) == REPLY and len({c.id for c in chunks}) == 1
    assert [c.choices[0].delta.role for c in chunks if c.choices].count("assistant") == 1
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["stop"]
    assert chunks[-1].choices == [] and chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 8


@pytest.mark.parametrize("model", [OLD_TGI, "my-endpoint"])
def test_old_tgi_quirks_are_absorbed(hf: HF, model: str) -> None:
    client = hf.client()
    answer = client.chat.completions.create(model=model, messages=USER)  # type: ignore[arg-type]
    assert answer.choices[0].message.content == REPLY and answer.choices[0].finish_reason == "stop"  # eos_token
    assert answer.object == "chat.completion" and answer.id
    with hf.http() as http:
        resp = http.post("/v1/chat/completions", json={"model": model, "messages": USER, "stream": True})
    frames = sse_frames(resp.content)
    assert frames[-1] == b"[DONE]"  # TGI 1.4.x sent none
    events = [json.loads(f) for f in frames[:-1]]
    assert {e["object"] for e in events} == {"chat.completion.chunk"} and len({e["id"] for e in events}) == 1
    assert sum("role" in e["choices"][0]["delta"] for e in events) == 1
    assert "".join(e["choices"][0]["delta"].get("content") or "" for e in events) == REPLY


def test_old_tgi_tool_calls(hf: HF) -> None:
    hf.state.tool_call = ("get_weather", {"city": "Paris"})
    client = hf.client()
    answer = client.chat.completions.create(model=OLD_TGI, messages=USER, tools=TOOLS)  # type: ignore[arg-type]
    (call,) = answer.choices[0].message.tool_calls  # type: ignore[misc]
    assert answer.choices[0].finish_reason == "tool_calls" and call.id.startswith("call_")
    assert call.function.name == "get_weather" and json.loads(call.function.arguments) == {"city": "Paris"}
    chunks = list(client.chat.completions.create(model=OLD_TGI, messages=USER, tools=TOOLS, stream=True))  # type: ignore[arg-type]
    calls = [tc for c in chunks if c.choices for tc in c.choices[0].delta.tool_calls or []]
    assert {tc.index for tc in calls} == {0} and len({tc.id for tc in calls if tc.id}) == 1
    assert [tc.function.name for tc in calls if tc.function and tc.function.name] == ["get_weather"]
    assert json.loads("".join(tc.function.arguments or "" for tc in calls if tc.function)) == {"city": "Paris"}
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


def test_tgi_1_4_stream_replayed_in_pieces(hf: HF) -> None:
    raw = fixture("huggingface", "tgi_chat_stream.sse")  # TGI 1.4: `data:`, no usage, no [DONE]
    hf.state.split_events = True
    hf.state.next_answers.append((200, raw, {"content-type": "text/event-stream"}))
    chunks = list(hf.client().chat.completions.create(model=OLD_TGI, messages=USER, stream=True))  # type: ignore[arg-type]
    expected = "".join(json.loads(line[5:])["choices"][0]["delta"].get("content") or ""
                       for line in raw.decode().splitlines() if line.startswith("data:"))
    assert joined(chunks) == expected and chunks[-1].choices[0].finish_reason == "length"


def test_text_generation_task_with_the_documented_template(hf: HF) -> None:
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
                {"role": "assistant", "content": "Hello!"}, {"role": "user", "content": "What is deep learning?"}]
    client = hf.client()
    answer = client.chat.completions.create(model=NO_CHAT, messages=messages, temperature=0.5, top_p=1,  # type: ignore[arg-type]
                                            max_tokens=20, stop=["\n\nUser:"])
    assert answer.choices[0].message.content == REPLY and answer.choices[0].finish_reason == "stop"
    sent = last(hf, f"/models/{NO_CHAT}").json
    assert sent["inputs"] == ("System: Be brief.\n\nUser: Hi\n\nAssistant: Hello!\n\nUser: What is deep learning?"
                              "\n\nAssistant:")
    assert sent["parameters"] == {"return_full_text": False, "details": True, "max_new_tokens": 20,
                                  "do_sample": True, "temperature": 0.5, "stop": ["\n\nUser:"]}
    chunks = list(client.chat.completions.create(model=NO_CHAT, messages=messages, max_tokens=3, stream=True,  # type: ignore[arg-type]
                                                 stream_options={"include_usage": True}))
    assert joined(chunks) == "Deep learning is" and chunks[-2].choices[0].finish_reason == "length"
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 3


def test_legacy_completions(hf: HF) -> None:
    client = hf.client()
    answer = client.completions.create(model=NO_CHAT, prompt="Once upon a time", max_tokens=2, echo=True)
    assert answer.choices[0].text == "Once upon a timeDeep learning" and answer.choices[0].finish_reason == "length"
    assert last(hf, f"/models/{NO_CHAT}").json["inputs"] == "Once upon a time"
    chunks = list(client.completions.create(model=NO_CHAT, prompt="Once", stream=True))
    assert "".join(c.choices[0].text for c in chunks if c.choices) == REPLY


def test_validation_422_is_a_400_with_the_vendor_message(hf: HF) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        hf.client().chat.completions.create(model=NO_CHAT, messages=USER, max_tokens=2000)  # type: ignore[arg-type]
    assert "must be <= 1512" in caught.value.message and caught.value.code == "validation"


# -- embeddings, transcription ---------------------------------------------------------------------------------


def test_default_embeddings_float_base64_and_batch(hf: HF) -> None:
    client = hf.client()
    single = client.embeddings.create(model="default", input="hello world")  # the SDK asks for base64
    assert single.data[0].embedding == pytest.approx(embedding_vector("hello world", 8), rel=1e-6)
    assert last(hf, f"/models/{EMBED}/pipeline/feature-extraction").json == {"inputs": "hello world"}
    batch = client.embeddings.create(model="default", input=["a", "b c"], encoding_format="float")
    assert [d.embedding for d in batch.data] == [embedding_vector("a", 8), embedding_vector("b c", 8)]
    with hf.http() as http:
        body = http.post("/v1/embeddings", json={"model": "default", "input": ["x", "y"]}).json()
    check_schema("embedding_response.json", body)
    assert [d["index"] for d in body["data"]] == [0, 1] and body["model"] == EMBED


def test_token_level_embeddings_are_mean_pooled(hf: HF) -> None:
    result = hf.client().embeddings.create(model=TOKEN_LEVEL, input=["deep learning", "hi"], encoding_format="float")
    for item, text in zip(result.data, ["deep learning", "hi"], strict=True):
        tokens = token_vectors(text, 8)
        assert item.embedding == pytest.approx([sum(col) / len(tokens) for col in zip(*tokens, strict=True)])
    assert result.usage.prompt_tokens == 4 + 3  # the token vectors, [CLS]/[SEP] included


def test_default_transcription_in_each_format(hf: HF) -> None:
    audio, client = wav_bytes(), hf.client()
    result = client.audio.transcriptions.create(model="default", file=("hello.wav", audio, "audio/wav"))
    assert result.text == TRANSCRIPT
    sent = last(hf, f"/models/{WHISPER}")
    assert sent.body == audio and sent.headers["content-type"] == "audio/wav"
    text = client.audio.transcriptions.create(model="default", file=("hello.wav", audio, "audio/wav"),
                                              response_format="text")
    assert str(text).strip() == TRANSCRIPT
    srt = client.audio.transcriptions.create(model="default", file=("hello.wav", audio, "audio/wav"),
                                             response_format="srt")
    assert str(srt).startswith("1\n00:00:00,000 --> 00:00:01,200\nA MAN SAID\n")
    assert last(hf, f"/models/{WHISPER}").json["parameters"] == {"return_timestamps": True}
    verbose = client.audio.transcriptions.create(model="default", file=("hello.wav", audio, "audio/wav"),
                                                 response_format="verbose_json")
    assert verbose.text == TRANSCRIPT and len(verbose.segments or []) == 3  # type: ignore[attr-defined]


def test_subtitles_without_timestamps_are_a_clear_400(hf: HF) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        hf.client().audio.transcriptions.create(model=WAV2VEC, file=("a.wav", wav_bytes(), "audio/wav"),
                                                response_format="vtt")
    assert caught.value.param == "response_format" and "no timestamps" in caught.value.message


# -- loading, errors -------------------------------------------------------------------------------------------


def test_a_loading_model_is_waited_for(hf: HF) -> None:
    hf.state.loading[CHAT] = [0.3]
    answer = hf.client().chat.completions.create(model="default", messages=USER)  # type: ignore[arg-type]
    assert answer.choices[0].message.content == REPLY and len(hf.state.requests) == 2


def test_a_long_load_is_503_with_the_estimate(hf: HF) -> None:
    hf.state.loading[EMBED] = [20.0]
    with hf.http() as http:
        resp = http.post("/v1/embeddings", json={"model": "default", "input": "x"})
    assert resp.status_code == 503 and resp.headers["retry-after"] == "20"
    assert resp.json()["error"]["code"] == "model_loading" and "20s" in resp.json()["error"]["message"]


@pytest.mark.parametrize("stream", [False, True])
def test_upstream_401_is_403_naming_huggingface(hf: HF, stream: bool) -> None:
    hf.state.tokens = {"hf_some_other_token"}
    with hf.http() as http:
        resp = http.post("/v1/chat/completions", json={"model": "default", "messages": USER, "stream": stream})
    assert resp.status_code == 403, resp.text
    err = resp.json()["error"]
    assert err["code"] == "upstream_credential_rejected" and "huggingface" in err["message"]
    assert hf.fake.token not in resp.text and hf.fake.token not in hf.gw.log()


def test_mid_stream_error_is_one_error_frame(hf: HF) -> None:
    hf.state.stream_error_after = 3
    with hf.http() as http:
        resp = http.post("/v1/chat/completions", json={"model": "default", "messages": USER, "stream": True})
    frames = sse_frames(resp.content)
    assert resp.status_code == 200 and b"[DONE]" not in frames
    assert "CUDA out of memory" in json.loads(frames[-1])["error"]["message"]


def test_client_disconnect_closes_the_upstream(hf: HF) -> None:
    hf.state.reply_text = " ".join(f"word{i}" for i in range(200))
    hf.state.stream_delay = 0.05
    with hf.http() as http, http.stream("POST", "/v1/chat/completions",
                                        json={"model": "default", "messages": USER, "stream": True}) as resp:
        assert resp.status_code == 200 and next(resp.iter_bytes()).startswith(b"data: {")
    assert hf.state.wait_for(lambda s: s.streams_aborted >= 1), "the upstream stream was not closed"
    assert hf.state.streams_finished == 0


@pytest.mark.parametrize(("args", "words"), [
    (["org/name/extra", "--type", "llm"], "not allowed"),
    (["x/y", "--type", "llm", "endpoint_url=https://user:pw@e.cloud"], "endpoint_url"),
    (["x/y", "--type", "llm", "task=summarization"], "unknown huggingface task"),
])
def test_the_cli_refuses_bad_entries(hf: HF, args: list[str], words: str) -> None:
    result = hf.gw.cli("models", "add", TENANT, "huggingface", *args, f"api_token={hf.fake.token}", check=False)
    assert result.code != 0 and words in result.err
    assert "pw@" not in result.err
