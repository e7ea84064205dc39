"""The fake MiniMax checks what MiniMax checks and answers in its wire format (errors in 200
bodies, the v2 stream's final full-message event), driven over raw HTTP."""

from __future__ import annotations

from typing import Any

import httpx
import orjson
import pytest

from emulators.minimax import DEFAULT_API_KEY, DEFAULT_GROUP_ID, DEFAULT_REPLY
from tests.fakes.minimax_fixtures import FakeMinimax

BODY = {"model": "abab6.5s-chat", "messages": [{"role": "user", "content": "你好"}]}


def post(fake: FakeMinimax, path: str, body: dict[str, Any], key: str = DEFAULT_API_KEY,
         group: str | None = DEFAULT_GROUP_ID) -> httpx.Response:
    params = {"GroupId": group} if group is not None else {}
    return httpx.post(fake.base_url + path, json=body, params=params, headers={"Authorization": f"Bearer {key}"})


def code_of(resp: httpx.Response) -> int:
    assert resp.status_code == 200  # MiniMax reports failures inside 200 bodies
    return int(resp.json()["base_resp"]["status_code"])


def test_answer(fake_minimax: FakeMinimax) -> None:
    body = post(fake_minimax, "/text/chatcompletion_v2", BODY).json()
    assert body["choices"][0]["message"]["content"] == DEFAULT_REPLY and body["base_resp"]["status_code"] == 0
    assert body["usage"]["total_tokens"] == body["usage"]["prompt_tokens"] + body["usage"]["completion_tokens"]


@pytest.mark.parametrize(("changes", "key", "group", "code"), [
    ({}, "wrong", DEFAULT_GROUP_ID, 1004), ({}, DEFAULT_API_KEY, "123", 1004),
    ({"model": "gpt-4o"}, DEFAULT_API_KEY, None, 2013), ({"temperature": 0}, DEFAULT_API_KEY, None, 2013),
    ({"top_p": 1.5}, DEFAULT_API_KEY, None, 2013), ({"messages": []}, DEFAULT_API_KEY, None, 2013),
])
def test_checks(fake_minimax: FakeMinimax, changes: dict[str, Any], key: str, group: str | None, code: int) -> None:
    assert code_of(post(fake_minimax, "/text/chatcompletion_v2", {**BODY, **changes}, key, group)) == code


def test_stream_final_event_repeats_the_message(fake_minimax: FakeMinimax) -> None:
    raw = post(fake_minimax, "/text/chatcompletion_v2", {**BODY, "stream": True}).content
    events = [orjson.loads(line[6:]) for line in raw.split(b"\n\n") if line.startswith(b"data: ")]
    deltas = [e["choices"][0]["delta"] for e in events[:-1]]
    assert "".join(d["content"] for d in deltas) == DEFAULT_REPLY and deltas[1]["role"] == ""
    assert all(e["usage"]["total_tokens"] == 0 for e in events[:-1])
    final = events[-1]
    assert final["object"] == "chat.completion" and final["choices"][0]["message"]["content"] == DEFAULT_REPLY
    assert final["usage"]["total_tokens"] > 0 and b"[DONE]" not in raw


def test_embeddings(fake_minimax: FakeMinimax) -> None:
    body = {"model": "embo-01", "texts": ["a", "b c"], "type": "query"}
    answer = post(fake_minimax, "/embeddings", body).json()
    assert len(answer["vectors"]) == 2 and answer["total_tokens"] == 3
    assert code_of(post(fake_minimax, "/embeddings", body, group=None)) == 2013  # GroupId required here
    assert code_of(post(fake_minimax, "/embeddings", {**body, "type": "passage"})) == 2013
