"""End-to-end: the three providers that are nothing but a spec row (DeepSeek, Moonshot / Kimi, a
generic OpenAI-compatible server) behind a real `modelport serve`, called with the openai SDK,
checked against what their fakes received (emulators/compatibles.py).

The module's own tenant gets `deepseek` and `moonshot` credentials, and models added one by
one on the generic server: a chat model without a key, one with a key, an embedding model."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from tests.e2e.harness import GatewayProcess, ProviderTenant, provider_tenant
from emulators.compatibles import DEEPSEEK_KEY, MOONSHOT_KEY
from tests.fakes.fixtures import FakeOpenAI
from emulators.openai import DEFAULT_API_KEY

USER = [{"role": "user", "content": "say hello to me"}]
REPLY = "Hello from the fake!"  # the fake OpenAI's default reply
OPEN_MODEL, KEYED_MODEL, EMBED_MODEL = "llama3.1:8b", "Qwen/Qwen2.5-7B-Instruct", "nomic-embed-text"


@pytest.fixture(scope="module")
def tenant(gateway: GatewayProcess, fake_deepseek_server: FakeOpenAI, fake_moonshot_server: FakeOpenAI,
           fake_compatible_server: FakeOpenAI) -> Iterator[ProviderTenant]:
    server = f"base_url={fake_compatible_server.v1_url}"
    with provider_tenant(gateway, "compat", [
            ("providers", "set", "deepseek", f"api_key={DEEPSEEK_KEY}", f"base_url={fake_deepseek_server.v1_url}"),
            ("providers", "set", "moonshot", f"api_key={MOONSHOT_KEY}", f"base_url={fake_moonshot_server.v1_url}"),
            ("models", "add", "openai_compatible", OPEN_MODEL, "--type", "llm", server),
            ("models", "add", "openai_compatible", KEYED_MODEL, "--type", "llm", server, f"api_key={DEFAULT_API_KEY}"),
            ("models", "add", "openai_compatible", EMBED_MODEL, "--type", "text-embedding", server),
    ], listed={"deepseek-reasoner", "kimi-k2-0905-preview", OPEN_MODEL, KEYED_MODEL, EMBED_MODEL}) as made:
        yield made


@pytest.fixture
def client(gateway: GatewayProcess, tenant: ProviderTenant) -> Iterator[openai.OpenAI]:
    sdk = gateway.client(tenant.token)
    yield sdk
    sdk.close()


def sent(fake: FakeOpenAI, path: str = "/v1/chat/completions") -> Any:
    seen = fake.state.requests_to(path)
    assert seen, f"nothing reached {path}"
    return seen[-1]


def deltas(chunks: list[Any], name: str) -> str:
    return "".join(getattr(c.choices[0].delta, name, None) or "" for c in chunks if c.choices)


# -- the registry is the provider list: nothing else had to learn the new names ----------------------


def test_the_admin_api_lists_them_from_the_registry(gateway: GatewayProcess) -> None:
    listed = httpx.get(gateway.base_url + "/admin/v1/providers", timeout=10,
                       headers={"Authorization": f"Bearer {gateway.admin_token()}"}).json()["data"]
    by_name = {p["name"]: p for p in listed}
    assert by_name["deepseek"]["catalog"]["llm"] == ["deepseek-chat", "deepseek-reasoner"]
    assert "kimi-k2-0905-preview" in by_name["moonshot"]["catalog"]["llm"]
    server = by_name["openai_compatible"]
    assert server["per_model"] and set(server["model_types"]) == {"llm", "text-embedding", "speech2text"}
    fields = {f["name"]: f for f in server["credential_fields"]}
    assert fields["base_url"]["required"] and not fields["api_key"]["required"] and fields["api_key"]["secret"]


# -- DeepSeek ---------------------------------------------------------------------------------------------


def test_deepseek_chat(client: openai.OpenAI, fake_deepseek: FakeOpenAI) -> None:
    answer = client.chat.completions.create(model="deepseek-chat", messages=USER)  # type: ignore[arg-type]
    assert answer.choices[0].message.content == REPLY and answer.model == "deepseek-chat"
    assert "reasoning_content" not in answer.choices[0].message.model_dump(exclude_none=True)
    upstream = sent(fake_deepseek)
    assert upstream.headers["authorization"] == f"Bearer {DEEPSEEK_KEY}"
    assert upstream.json == {"model": "deepseek-chat", "messages": USER}


def test_deepseek_reasoner_thinks_aloud(client: openai.OpenAI, fake_deepseek: FakeOpenAI) -> None:
    thought = fake_deepseek.state.reasoning_text
    answer = client.chat.completions.create(model="deepseek/deepseek-reasoner", messages=USER)  # type: ignore[arg-type]
    message = answer.choices[0].message.model_dump()
    assert message["content"] == REPLY and message["reasoning_content"] == thought
    assert answer.usage is not None and answer.usage.completion_tokens_details is not None
    reasoning_tokens = answer.usage.completion_tokens_details.reasoning_tokens
    assert reasoning_tokens == len(thought.split()) and answer.usage.completion_tokens > reasoning_tokens

    chunks = list(client.chat.completions.create(model="deepseek-reasoner", messages=USER, stream=True,  # type: ignore[arg-type]
                                                 stream_options={"include_usage": True}))
    assert deltas(chunks, "reasoning_content") == thought and deltas(chunks, "content") == REPLY
    assert [c.choices[0].delta.role for c in chunks if c.choices and c.choices[0].delta.role] == ["assistant"]
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == answer.usage.completion_tokens
    assert sent(fake_deepseek).json["stream_options"] == {"include_usage": True}


# -- Moonshot (Kimi) ----------------------------------------------------------------------------------------


def test_moonshot_chat_and_stream_usage_from_the_choice(client: openai.OpenAI, fake_moonshot: FakeOpenAI) -> None:
    answer = client.chat.completions.create(model="kimi-k2-0905-preview", messages=USER)  # type: ignore[arg-type]
    assert answer.choices[0].message.content == REPLY and answer.usage is not None
    assert sent(fake_moonshot).headers["authorization"] == f"Bearer {MOONSHOT_KEY}"

    chunks = list(client.chat.completions.create(model="moonshot/moonshot-v1-8k", messages=USER, stream=True,  # type: ignore[arg-type]
                                                 stream_options={"include_usage": True}))
    assert deltas(chunks, "content") == REPLY
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.total_tokens == answer.usage.total_tokens
    assert all(c.usage is None and "usage" not in c.choices[0].model_dump(exclude_none=True) for c in chunks[:-1])

    plain = list(client.chat.completions.create(model="kimi-k2-0905-preview", messages=USER, stream=True))  # type: ignore[arg-type]
    assert deltas(plain, "content") == REPLY and all(c.choices and c.usage is None for c in plain)
    assert "stream_options" not in sent(fake_moonshot).json  # Moonshot sends its usage unasked


# -- a generic OpenAI-compatible server -----------------------------------------------------------------------


def test_server_without_a_key_gets_no_authorization(client: openai.OpenAI, fake_compatible: FakeOpenAI) -> None:
    fake_compatible.state.require_key = False  # started without --api-key
    answer = client.chat.completions.create(model=OPEN_MODEL, messages=USER)  # type: ignore[arg-type]
    assert answer.choices[0].message.content == REPLY
    chunks = list(client.chat.completions.create(model=f"openai_compatible/{OPEN_MODEL}", messages=USER,  # type: ignore[arg-type]
                                                 stream=True, stream_options={"include_usage": True}))
    assert deltas(chunks, "content") == REPLY and chunks[-1].usage is not None
    requests = fake_compatible.state.requests_to("/v1/chat/completions")
    assert len(requests) == 2 and all("authorization" not in r.headers for r in requests)
    assert [r.json["model"] for r in requests] == [OPEN_MODEL, OPEN_MODEL]


def test_server_with_a_key_gets_it_as_a_bearer(client: openai.OpenAI, fake_compatible: FakeOpenAI) -> None:
    chunks = list(client.chat.completions.create(model=KEYED_MODEL, messages=USER, stream=True))  # type: ignore[arg-type]
    assert deltas(chunks, "content") == REPLY
    upstream = sent(fake_compatible)
    assert upstream.headers["authorization"] == f"Bearer {DEFAULT_API_KEY}" and upstream.json["model"] == KEYED_MODEL


def test_server_embeddings_per_model(client: openai.OpenAI, fake_compatible: FakeOpenAI) -> None:
    fake_compatible.state.require_key = False
    reply = client.embeddings.create(model=EMBED_MODEL, input=["first text", "second"], encoding_format="float")
    assert [d.index for d in reply.data] == [0, 1] and all(len(d.embedding) > 1 for d in reply.data)
    upstream = sent(fake_compatible, "/v1/embeddings")
    assert upstream.json["model"] == EMBED_MODEL and "authorization" not in upstream.headers
    with pytest.raises(openai.BadRequestError):  # added as an embedding model: not a chat model
        client.chat.completions.create(model=f"openai_compatible/{EMBED_MODEL}", messages=USER)  # type: ignore[arg-type]
