"""End-to-end: Baidu ERNIE behind a real `modelport serve`, called with the openai SDK.

A tenant of this module's own (acme and beta stay as the harness seeded them) has the
`ernie` provider pointed at the fake ERNIE. The fake forgets its issued tokens between
tests, so the gateway's cached token is refused with error 110 at the start of most tests
and refreshed: the refresh-once path runs all the time.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import openai
import pytest

from tests.e2e.harness import GatewayProcess, ProviderTenant, provider_tenant
from emulators.ernie import API_KEY, DEFAULT_REPLY, SECRET_KEY, vector
from tests.fakes.ernie_fixtures import FakeErnie

USER = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "say hello to me"}]
TOOLS = [{"type": "function", "function": {"name": "light_switch", "description": "Switch the light",
                                           "parameters": {"type": "object",
                                                          "properties": {"switch": {"type": "boolean"}}}}}]


def _tenant(gateway: GatewayProcess, base_url: str, api_key: str,
            secret_key: str) -> contextlib.AbstractContextManager[ProviderTenant]:
    return provider_tenant(gateway, "ernie", [
        ("providers", "set", "ernie", f"api_key={api_key}", f"secret_key={secret_key}", f"base_url={base_url}"),
        ("defaults", "set", "llm", "ernie/ernie-4.0"),
        ("defaults", "set", "text-embedding", "ernie/embedding-v1"),
    ])


@pytest.fixture(scope="module")
def tenant(gateway: GatewayProcess, fake_ernie_server: FakeErnie) -> Iterator[ProviderTenant]:
    with _tenant(gateway, fake_ernie_server.base_url, API_KEY, SECRET_KEY) as made:
        yield made


@pytest.fixture
def client(gateway: GatewayProcess, tenant: ProviderTenant, fake_ernie: FakeErnie) -> Iterator[openai.OpenAI]:
    sdk = gateway.client(tenant.token)
    yield sdk
    sdk.close()


def content_of(chunks: list[Any]) -> str:
    return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


def chat_requests(fake: FakeErnie) -> list[dict[str, Any]]:
    return [r for r in fake.state.requests if "/chat/" in r["path"]]


# -- chat ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("model", "suffix"), [("ernie-4.0", "completions_pro"), ("ernie/ernie-3.5", "completions"),
                                               ("default", "completions_pro"), ("eb-instant", "eb-instant"),
                                               ("ernie-bot-turbo", "eb-instant")])
def test_chat(client: openai.OpenAI, fake_ernie: FakeErnie, model: str, suffix: str) -> None:
    reply = client.chat.completions.create(model=model, messages=USER, temperature=0, user="u-1")
    assert reply.choices[0].message.content == DEFAULT_REPLY and reply.choices[0].finish_reason == "stop"
    assert reply.id.startswith("chatcmpl-as-") and reply.usage is not None
    assert (reply.usage.prompt_tokens, reply.usage.completion_tokens) == (6, len(DEFAULT_REPLY.split()))
    sent = chat_requests(fake_ernie)[-1]
    assert sent["path"].endswith(f"/wenxinworkshop/chat/{suffix}") and sent["query"]["access_token"]
    assert sent["json"]["system"] == "Be brief." and sent["json"]["messages"] == USER[1:]
    assert (sent["json"]["temperature"], sent["json"]["user_id"]) == (0.01, "u-1")


def test_chat_stream_with_usage_not_summed(client: openai.OpenAI, fake_ernie: FakeErnie) -> None:
    whole = client.chat.completions.create(model="ernie-4.0", messages=USER)
    chunks = list(client.chat.completions.create(model="ernie-4.0", messages=USER, stream=True,
                                                 stream_options={"include_usage": True}))
    assert content_of(chunks) == whole.choices[0].message.content == DEFAULT_REPLY
    assert [c.choices[0].delta.role for c in chunks if c.choices and c.choices[0].delta.role] == ["assistant"]
    assert len({c.id for c in chunks}) == 1 and chunks[-1].choices == []
    assert chunks[-1].usage is not None and whole.usage is not None
    assert chunks[-1].usage.model_dump() == whole.usage.model_dump()  # the last running total, not a sum
    plain = list(client.chat.completions.create(model="ernie-4.0", messages=USER, stream=True))
    assert content_of(plain) == DEFAULT_REPLY and all(c.usage is None for c in plain)


def test_history_is_made_valid_before_it_reaches_ernie(client: openai.OpenAI, fake_ernie: FakeErnie) -> None:
    messages = [{"role": "assistant", "content": "I am a bot."}, {"role": "user", "content": "one"},
                {"role": "user", "content": "two"}, {"role": "assistant", "content": "ok"},
                {"role": "user", "content": "three"}, {"role": "assistant", "content": "prefill"}]
    reply = client.chat.completions.create(model="ernie-4.0", messages=messages)  # type: ignore[arg-type]
    assert reply.choices[0].message.content == DEFAULT_REPLY
    assert chat_requests(fake_ernie)[-1]["json"]["messages"] == [
        {"role": "user", "content": "one\n\ntwo"}, {"role": "assistant", "content": "ok"},
        {"role": "user", "content": "three"}]


def test_legacy_completions_through_the_chat_path(client: openai.OpenAI, fake_ernie: FakeErnie) -> None:
    whole = client.completions.create(model="ernie-3.5", prompt="Say hi")
    assert whole.object == "text_completion" and whole.choices[0].text == DEFAULT_REPLY
    chunks = list(client.completions.create(model="ernie-3.5", prompt="Say hi", stream=True,
                                            stream_options={"include_usage": True}))
    assert "".join(c.choices[0].text for c in chunks if c.choices) == DEFAULT_REPLY
    assert chunks[-1].usage is not None and chunks[-1].usage.prompt_tokens == 2


def test_tool_call_round_trip(client: openai.OpenAI, fake_ernie: FakeErnie) -> None:
    fake_ernie.state.function_call = ("light_switch", '{"switch":false}')
    ask = [{"role": "user", "content": "turn off the light"}]
    first = client.chat.completions.create(model="ernie-4.0", messages=ask, tools=TOOLS)  # type: ignore[arg-type]
    [call] = first.choices[0].message.tool_calls or []
    assert first.choices[0].finish_reason == "tool_calls" and call.function.name == "light_switch"
    assert json.loads(call.function.arguments) == {"switch": False}
    chunks = list(client.chat.completions.create(model="ernie-4.0", messages=ask, tools=TOOLS, stream=True))  # type: ignore[arg-type]
    streamed = [d for c in chunks if c.choices for d in c.choices[0].delta.tool_calls or ()]
    assert [d.function.name for d in streamed] == ["light_switch"]  # type: ignore[union-attr]
    history = [*ask, {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
               {"role": "tool", "tool_call_id": call.id, "content": '{"done":true}'}]
    final = client.chat.completions.create(model="ernie-4.0", messages=history, tools=TOOLS)  # type: ignore[arg-type]
    assert final.choices[0].message.content == DEFAULT_REPLY
    sent = chat_requests(fake_ernie)[-1]["json"]["messages"]
    assert sent[1]["function_call"] == {"name": "light_switch", "arguments": '{"switch":false}'}
    assert sent[2] == {"role": "function", "name": "light_switch", "content": '{"done":true}'}


# -- embeddings ------------------------------------------------------------------------------------


def test_embeddings_float_and_base64_in_batches(client: openai.OpenAI, fake_ernie: FakeErnie) -> None:
    texts = [f"文本 number {i}" for i in range(20)]
    floats = client.embeddings.create(model="embedding-v1", input=texts, encoding_format="float")
    assert [d.embedding for d in floats.data] == [vector(t) for t in texts]
    assert [d.index for d in floats.data] == list(range(20)) and floats.model == "embedding-v1"
    assert sorted(fake_ernie.state.embedding_batches) == [4, 16]
    assert floats.usage.prompt_tokens == 60
    encoded = client.embeddings.create(model="default", input="你好 world")  # the SDK asks for base64
    assert encoded.data[0].embedding == pytest.approx(vector("你好 world"))
    raw = httpx.post(f"{client.base_url}embeddings", headers={"Authorization": f"Bearer {client.api_key}"},
                     json={"model": "embedding-v1", "input": "x", "encoding_format": "base64"}).json()
    assert isinstance(raw["data"][0]["embedding"], str)


# -- errors ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("code", "error", "status"), [
    (336003, openai.BadRequestError, 400), (18, openai.RateLimitError, 429),
    (336100, openai.InternalServerError, 503), (6, openai.PermissionDeniedError, 403)])
@pytest.mark.parametrize("stream", [False, True])
def test_error_in_a_200_body_becomes_a_real_status(client: openai.OpenAI, fake_ernie: FakeErnie, code: int,
                                                   error: type[openai.APIStatusError], status: int,
                                                   stream: bool) -> None:
    client.chat.completions.create(model="ernie-4.0", messages=USER)  # a valid token is cached now
    fake_ernie.state.fail_next = [{"error_code": code, "error_msg": "scripted failure"}]
    with pytest.raises(error) as caught:
        client.chat.completions.create(model="ernie-4.0", messages=USER, stream=stream)
    assert caught.value.status_code == status and "scripted failure" in caught.value.message


def test_embedding_error_in_a_200_body(client: openai.OpenAI, fake_ernie: FakeErnie) -> None:
    client.embeddings.create(model="embedding-v1", input="warm up")
    fake_ernie.state.fail_next = [{"error_code": 17, "error_msg": "Open api daily request limit reached"}]
    with pytest.raises(openai.RateLimitError):
        client.embeddings.create(model="embedding-v1", input="x")


def test_refused_credential_is_403(gateway: GatewayProcess, fake_ernie: FakeErnie) -> None:
    with _tenant(gateway, fake_ernie.base_url, API_KEY, "not-the-secret-key") as bad:
        with gateway.client(bad.token) as sdk, pytest.raises(openai.PermissionDeniedError) as caught:
            sdk.chat.completions.create(model="ernie-4.0", messages=USER)  # type: ignore[arg-type]
        assert caught.value.code == "upstream_credential_rejected" and "not-the-secret-key" not in caught.value.message


def test_concurrent_first_requests_share_one_token_call_per_worker(gateway: GatewayProcess,
                                                                    fake_ernie: FakeErnie) -> None:
    fake_ernie.state.credentials["freshKey0002"] = "freshSecret0002"  # a credential no worker has a token for
    fake_ernie.state.token_delay = 0.5
    with _tenant(gateway, fake_ernie.base_url, "freshKey0002", "freshSecret0002") as fresh:
        def one(_: int) -> str | None:
            with gateway.client(fresh.token) as sdk:
                return sdk.chat.completions.create(model="ernie-4.0", messages=USER).choices[0].message.content  # type: ignore[arg-type]

        with ThreadPoolExecutor(20) as pool:
            replies = list(pool.map(one, range(20)))
        assert replies == [DEFAULT_REPLY] * 20
        # Each worker process has its own cache; the harness runs 2 workers.
        assert 1 <= fake_ernie.state.token_calls <= gateway.workers
        fake_ernie.state.expire_tokens()  # error 111 on the next call: refreshed once, then answered
        with gateway.client(fresh.token) as sdk:
            assert sdk.chat.completions.create(model="ernie-4.0", messages=USER).choices[0].message.content \
                == DEFAULT_REPLY  # type: ignore[arg-type]
        assert fake_ernie.state.token_calls <= gateway.workers + 1


def test_client_disconnect_closes_the_upstream(gateway: GatewayProcess, tenant: ProviderTenant,
                                               fake_ernie: FakeErnie) -> None:
    state = fake_ernie.state
    state.reply_text = " ".join(f"word{i}" for i in range(400))
    state.stream_delay = 0.05
    started = time.monotonic()
    body = {"model": "ernie-4.0", "messages": USER, "stream": True}
    with httpx.Client(base_url=gateway.base_url, headers={"Authorization": f"Bearer {tenant.token}"},
                      timeout=15) as http, http.stream("POST", "/v1/chat/completions", json=body) as resp:
        assert resp.status_code == 200
        assert next(resp.iter_bytes()).startswith(b"data: {")
    assert state.wait_for(lambda s: s.streams_aborted >= 1, timeout=5.0), \
        f"upstream stream not closed: started={state.streams_started} aborted={state.streams_aborted}"
    assert state.streams_finished == 0 and time.monotonic() - started < 6.0
