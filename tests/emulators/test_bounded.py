"""A long-running emulator (`modelport emulate`, the demo) keeps its memory bounded: what
a state records at every request is capped, what it made by id forgets the oldest."""

from __future__ import annotations

import httpx
import pytest

from emulators import serve
from emulators.catalog import EMULATORS
from emulators.replicate import DEFAULT_TOKEN as REPLICATE_TOKEN
from tests.emulators._common import serving

# A state's lists and dicts that are scripting (set by a test, read or popped by the app),
# not records: they do not grow with requests.
SCRIPTING = {"fail_next", "next_answers", "tool_uses", "handshake_fail", "reply_tokens", "stream_error",
             "deployments", "models", "endpoints", "loading", "versions", "credentials", "api_keys"}


@pytest.mark.parametrize("name", list(EMULATORS))
def test_every_growing_field_is_bounded(name: str) -> None:
    state = serve.build(name).state
    for field, value in vars(state).items():
        if isinstance(value, (list, dict)) and field not in serve.MADE_BY_ID:
            assert field in SCRIPTING, f"{name}: {field} is neither bounded (serve.OBSERVATIONS) nor scripting"


def test_records_keep_the_last_few(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(serve, "RECORDS_KEPT", 3)
    with serving(["openai"]) as (served, states):
        for i in range(8):
            httpx.post(served.base_url + "/v1/chat/completions", timeout=10,
                       headers={"Authorization": "Bearer sk-test-fake-openai-key"},
                       json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": f"n{i}"}]})
        requests = list(states["openai"].state.requests)
    assert [r.json["messages"][0]["content"] for r in requests] == ["n5", "n6", "n7"]


def test_the_oldest_prediction_is_forgotten(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(serve, "ITEMS_KEPT", 2)
    auth = {"Authorization": f"Bearer {REPLICATE_TOKEN}"}
    with serving(["replicate"]) as (served, _), httpx.Client(base_url=served.base_url, headers=auth,
                                                             timeout=10) as client:
        made = [client.post("/v1/models/meta/meta-llama-3-8b-instruct/predictions",
                            json={"input": {"prompt": "hi"}}).json()["id"] for _ in range(3)]
        assert client.get(f"/v1/predictions/{made[0]}").status_code == 404
        assert [client.get(f"/v1/predictions/{pid}").status_code for pid in made[1:]] == [200, 200]
