"""The fake ChatGLM2-6B servers (api.py, openai_api.py) and the fake Zhipu v4 API check what
the real ones check and answer in their wire formats, driven over raw HTTP."""

from __future__ import annotations

import time

import httpx
import pytest

from emulators.chatglm import DEFAULT_REPLY
from tests.fakes.chatglm_fixtures import FakeChatGLM, FakeZhipu
from translators.zhipu import make_jwt

USER = [{"role": "user", "content": "你好"}]


def test_native_server(fake_chatglm_native: FakeChatGLM) -> None:
    url = fake_chatglm_native.base_url + "/"
    answer = httpx.post(url, json={"prompt": "你好", "history": [["q", "a"]], "temperature": 0}).json()
    assert answer["response"] == DEFAULT_REPLY and answer["history"][-1] == ["你好", DEFAULT_REPLY]
    assert answer["status"] == 200 and "usage" not in answer
    assert fake_chatglm_native.state.effective[-1]["temperature"] == 0.95  # `x if x else default`
    for bad in ({"history": []}, {"prompt": "x", "history": [["only one"]]}):
        resp = httpx.post(url, json=bad)
        assert (resp.status_code, resp.text) == (500, "Internal Server Error")
    assert httpx.post(url, content=b"not json").status_code == 500
    assert httpx.post(fake_chatglm_native.base_url + "/v1/chat/completions", json={}).status_code == 404


def test_native_max_length_is_the_total(fake_chatglm_native: FakeChatGLM) -> None:
    answer = httpx.post(fake_chatglm_native.base_url + "/", json={"prompt": "one two", "max_length": 4}).json()
    assert answer["response"] == " ".join(DEFAULT_REPLY.split()[:2])


def test_openai_server(fake_chatglm_openai: FakeChatGLM) -> None:
    url = fake_chatglm_openai.base_url + "/v1/chat/completions"
    answer = httpx.post(url, json={"model": "chatglm2-6b", "messages": [{"role": "system", "content": "S."}, *USER]})
    body = answer.json()
    assert "id" not in body and "usage" not in body and body["choices"][0]["message"]["content"] == DEFAULT_REPLY
    assert fake_chatglm_openai.state.queries[-1] == ("S.你好", [])
    streamed = httpx.post(url, json={"model": "chatglm2-6b", "messages": USER, "stream": True}).content
    assert streamed.startswith(b": ping") and streamed.endswith(b"data: [DONE]\r\n\r\n")
    assert b'"created"' not in streamed and b'"id"' not in streamed and b"\r\n\r\ndata: {" in streamed
    assert httpx.post(url, json={"model": "m", "messages": [{"role": "assistant", "content": "x"}]}).json() == \
        {"detail": "Invalid request"}
    parts = httpx.post(url, json={"model": "m", "messages": [{"role": "user", "content": [{"type": "text"}]}]})
    assert parts.status_code == 422


def _zhipu(fake: FakeZhipu, token: str, body: dict | None = None) -> httpx.Response:
    return httpx.post(fake.base_url + "/chat/completions", json=body or {"model": "glm-4", "messages": USER},
                      headers={"Authorization": f"Bearer {token}"} if token else {})


@pytest.mark.parametrize(("token", "code"), [
    ("", "1001"), ("not-a-jwt", "1002"), ("raw", "1002"), ("seconds", "1003"), ("wrong-secret", "1004")])
def test_zhipu_auth(fake_zhipu: FakeZhipu, token: str, code: str) -> None:
    token = {"raw": fake_zhipu.api_key, "seconds": make_jwt(fake_zhipu.api_key, time.time() / 1000),
             "wrong-secret": make_jwt("fakekeyid0001.other", time.time())}.get(token, token)
    resp = _zhipu(fake_zhipu, token)
    assert resp.status_code == 401 and resp.json()["error"]["code"] == code


def test_zhipu_answers(fake_zhipu: FakeZhipu) -> None:
    token = make_jwt(fake_zhipu.api_key, time.time())
    body = _zhipu(fake_zhipu, token).json()
    assert "object" not in body and body["usage"]["total_tokens"] > 0
    streamed = _zhipu(fake_zhipu, token, {"model": "glm-4", "messages": USER, "stream": True}).content
    assert streamed.endswith(b"data: [DONE]\n\n") and streamed.count(b'"usage"') == 1
    for changes, code in (({"model": "gpt-4"}, "1211"), ({"top_p": 1}, "1214"), ({"user_id": "u1"}, "1214"),
                          ({"tool_choice": "required"}, "1214")):
        resp = _zhipu(fake_zhipu, token, {"model": "glm-4", "messages": USER, **changes})
        assert resp.status_code == 400 and resp.json()["error"]["code"] == code
    fake_zhipu.state.accept_raw_key = True
    assert _zhipu(fake_zhipu, fake_zhipu.api_key).status_code == 200
