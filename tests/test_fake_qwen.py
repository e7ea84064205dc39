"""The fake DashScope driven by the official `dashscope` SDK (pointed at it through
`dashscope.base_http_api_url`), proving the fake speaks DashScope's wire format, plus the
raw framing and the checks the SDK does not exercise."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import dashscope
import httpx
import pytest

from emulators.qwen import DEFAULT_API_KEY, DEFAULT_REPLY, embedding_vector
from tests.fakes.qwen_fixtures import FakeQwen

USER = [{"role": "user", "content": "你好"}]


@pytest.fixture
def qwen(fake_qwen: FakeQwen, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeQwen]:
    monkeypatch.setattr(dashscope, "base_http_api_url", fake_qwen.base_url)
    yield fake_qwen


def call(**kwargs: Any) -> Any:
    kwargs.setdefault("model", "qwen-plus")
    kwargs.setdefault("messages", USER)
    kwargs.setdefault("api_key", DEFAULT_API_KEY)
    return dashscope.Generation.call(**kwargs)


def test_sdk_message_format(qwen: FakeQwen) -> None:
    reply = call(result_format="message", max_tokens=100)
    assert reply.status_code == 200 and reply.output.choices[0].message.content == DEFAULT_REPLY
    assert reply.output.choices[0].finish_reason == "stop"
    assert reply.usage.input_tokens == 1 and reply.usage.output_tokens == len(DEFAULT_REPLY.split())
    sent = qwen.state.last_request
    assert sent.path == "/api/v1/services/aigc/text-generation/generation"
    assert sent.headers["authorization"] == f"Bearer {DEFAULT_API_KEY}" and "x-dashscope-sse" not in sent.headers


def test_sdk_default_text_format(qwen: FakeQwen) -> None:
    reply = call()
    assert reply.output.text == DEFAULT_REPLY and reply.output.choices is None


@pytest.mark.parametrize("incremental", [True, False])
def test_sdk_stream(qwen: FakeQwen, incremental: bool) -> None:
    responses = list(call(result_format="message", stream=True, incremental_output=incremental))
    contents = [r.output.choices[0].message.content for r in responses]
    reasons = [r.output.choices[0].finish_reason for r in responses]
    assert reasons[:-1] == ["null"] * (len(reasons) - 1) and reasons[-1] == "stop"
    if incremental:
        assert "".join(contents) == DEFAULT_REPLY and contents[-1] == ""
    else:
        assert contents[-1] == contents[-2] == DEFAULT_REPLY  # each event repeats the text so far
    assert qwen.state.last_request.headers["x-dashscope-sse"] == "enable"
    assert responses[-1].usage.output_tokens == len(DEFAULT_REPLY.split())


def test_sdk_sees_the_error_event(qwen: FakeQwen) -> None:
    qwen.state.stream_error_after = 2
    qwen.state.stream_error = (400, "DataInspectionFailed", "Output data may contain inappropriate content.")
    responses = list(call(result_format="message", stream=True, incremental_output=True))
    assert responses[-1].code == "DataInspectionFailed" and "inappropriate" in responses[-1].message
    assert qwen.state.wait_for(lambda s: s.streams_errored == 1)  # counted after the last write


def test_sdk_errors(qwen: FakeQwen) -> None:
    refused = call(api_key="sk-wrong")
    assert (refused.status_code, refused.code) == (401, "InvalidApiKey")
    bad = call(result_format="message", top_p=1.0)
    assert (bad.status_code, bad.code) == (400, "InvalidParameter") and "top_p" in bad.message
    missing = call(model="no-such-model")
    assert (missing.status_code, missing.code) == (404, "ModelNotFound")


def test_sdk_embeddings_and_batch_limit(qwen: FakeQwen) -> None:
    reply = dashscope.TextEmbedding.call(model="text-embedding-v3", input=["风急天高", "渚清沙白"],
                                         api_key=DEFAULT_API_KEY, text_type="query")
    items = reply.output["embeddings"]
    assert [i["text_index"] for i in items] == [1, 0]  # out of order: clients must sort
    assert items[1]["embedding"] == embedding_vector("风急天高", text_type="query")
    assert reply.usage["total_tokens"] == 2
    too_many = dashscope.TextEmbedding.call(model="text-embedding-v3", input=[f"t{i}" for i in range(11)],
                                            api_key=DEFAULT_API_KEY)
    assert too_many.status_code == 400 and "larger than 10" in too_many.message


def test_sdk_multimodal(qwen: FakeQwen) -> None:
    reply = dashscope.MultiModalConversation.call(model="qwen-vl-plus", api_key=DEFAULT_API_KEY, messages=[
        {"role": "user", "content": [{"image": "https://example.com/cat.png"}, {"text": "What is it?"}]}])
    assert reply.status_code == 200
    assert reply.output.choices[0].message.content == [{"text": DEFAULT_REPLY}]
    assert qwen.state.last_request.path.endswith("/multimodal-generation/generation")


def test_raw_framing_and_stream_header(fake_qwen: FakeQwen) -> None:
    body = {"model": "qwen-plus", "input": {"messages": USER},
            "parameters": {"result_format": "message", "incremental_output": True}}
    headers = {"Authorization": f"Bearer {DEFAULT_API_KEY}"}
    url = fake_qwen.base_url + "/services/aigc/text-generation/generation"
    plain = httpx.post(url, json=body, headers=headers)
    assert plain.headers["content-type"] == "application/json"  # no SSE header: no stream
    streamed = httpx.post(url, json=body, headers={**headers, "X-DashScope-SSE": "enable"})
    assert streamed.headers["content-type"].startswith("text/event-stream")
    first = streamed.content.split(b"\n\n")[0].split(b"\n")
    assert first[:3] == [b"id:1", b"event:result", b":HTTP_STATUS/200"] and first[3].startswith(b'data:{"output"')
    assert b"[DONE]" not in streamed.content


@pytest.mark.parametrize(("messages", "fragment"), [
    ([{"role": "user", "content": "a"}, {"role": "system", "content": "late"}, {"role": "user", "content": "b"}],
     "System message must be at the beginning"),
    ([{"role": "user", "content": [{"text": "a"}]}], "valid string"),
    ([{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}], "last message"),
])
def test_message_checks(fake_qwen: FakeQwen, messages: list[dict[str, Any]], fragment: str) -> None:
    resp = httpx.post(fake_qwen.base_url + "/services/aigc/text-generation/generation",
                      json={"model": "qwen-plus", "input": {"messages": messages}},
                      headers={"Authorization": f"Bearer {DEFAULT_API_KEY}"})
    assert resp.status_code == 400 and resp.json()["code"] == "InvalidParameter" and fragment in resp.json()["message"]
