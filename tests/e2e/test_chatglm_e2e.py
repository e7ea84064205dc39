"""End-to-end: self-hosted ChatGLM2-6B servers behind a real `modelport serve`, called with the
openai SDK. This module's own tenants: one whose `chatglm` credential points at the fake
api.py (`api=native`), one at the fake openai_api.py (the default `api=openai`)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import openai
import pytest

from tests.e2e.harness import GatewayProcess, provider_tenant
from emulators.chatglm import DEFAULT_REPLY
from tests.fakes.chatglm_fixtures import FakeChatGLM
from translators._estimate import estimate_tokens

MODEL = "chatglm2-6b"
USER = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "你好 there"}]
PROMPT_TOKENS = estimate_tokens("Be brief.") + estimate_tokens("你好 there")
COMPLETION_TOKENS = estimate_tokens(DEFAULT_REPLY)


@dataclass
class Tenants:
    native: str
    openai: str
    proxied: str


@pytest.fixture(scope="module")
def tenants(gateway: GatewayProcess, fake_chatglm_native_server: FakeChatGLM,
            fake_chatglm_openai_server: FakeChatGLM) -> Iterator[Tenants]:
    setups = {"native": [f"base_url={fake_chatglm_native_server.base_url}", "api=native"],
              "openai": [f"base_url={fake_chatglm_openai_server.base_url}/v1"],
              "proxied": [f"base_url={fake_chatglm_openai_server.base_url}", "api_key=proxy-secret-0001"]}
    with contextlib.ExitStack() as stack:
        tokens = {kind: stack.enter_context(provider_tenant(
            gateway, f"chatglm-{kind}", [("providers", "set", "chatglm", *setup),
                                         ("defaults", "set", "llm", f"chatglm/{MODEL}")],
            token_name="chatglm-e2e")).token for kind, setup in setups.items()}
        yield Tenants(**tokens)


@pytest.fixture
def native(gateway: GatewayProcess, tenants: Tenants, fake_chatglm_native: FakeChatGLM) -> Iterator[openai.OpenAI]:
    sdk = gateway.client(tenants.native)
    yield sdk
    sdk.close()


@pytest.fixture
def compat(gateway: GatewayProcess, tenants: Tenants, fake_chatglm_openai: FakeChatGLM) -> Iterator[openai.OpenAI]:
    sdk = gateway.client(tenants.openai)
    yield sdk
    sdk.close()


def content_of(chunks: list[Any]) -> str:
    return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


def check_usage(usage: Any, prompt: int = PROMPT_TOKENS, completion: int = COMPLETION_TOKENS) -> None:
    assert usage is not None and (usage.prompt_tokens, usage.completion_tokens) == (prompt, completion)
    assert usage.model_dump().get("estimated") is True


# -- api.py -------------------------------------------------------------------------------------------


def test_native_chat_with_history(native: openai.OpenAI, fake_chatglm_native: FakeChatGLM) -> None:
    history = [*USER, {"role": "assistant", "content": "Hi!"}, {"role": "user", "content": "How are you"}]
    reply = native.chat.completions.create(model=MODEL, messages=history, temperature=0, max_tokens=50)
    assert reply.choices[0].message.content == DEFAULT_REPLY and reply.choices[0].finish_reason == "stop"
    assert reply.id.startswith("chatcmpl-")
    prompt = PROMPT_TOKENS + estimate_tokens("Hi!") + estimate_tokens("How are you")
    check_usage(reply.usage, prompt)
    sent = fake_chatglm_native.state.last_request
    assert sent.path == "/" and "authorization" not in sent.headers
    assert sent.json == {"prompt": "How are you", "history": [["Be brief.\n\n你好 there", "Hi!"]],
                         "temperature": 0.01, "max_length": prompt + 50}
    assert fake_chatglm_native.state.effective[-1]["temperature"] == 0.01  # not api.py's 0.95 default


def test_native_stream_is_the_whole_answer(native: openai.OpenAI, fake_chatglm_native: FakeChatGLM) -> None:
    chunks = list(native.chat.completions.create(model=MODEL, messages=USER, stream=True,
                                                 stream_options={"include_usage": True}))
    assert content_of(chunks) == DEFAULT_REPLY and chunks[-2].choices[0].finish_reason == "stop"
    assert chunks[-1].choices == [] and len({c.id for c in chunks}) == 1
    check_usage(chunks[-1].usage)
    assert native.completions.create(model=MODEL, prompt="Say hi").choices[0].text == DEFAULT_REPLY


def test_native_failure_is_502(native: openai.OpenAI, fake_chatglm_native: FakeChatGLM) -> None:
    for stream in (False, True):
        fake_chatglm_native.state.fail(500, "Internal Server Error")
        with pytest.raises(openai.InternalServerError) as caught:
            native.chat.completions.create(model=MODEL, messages=USER, stream=stream)
        assert caught.value.status_code == 502 and "chatglm" in caught.value.message


def test_last_message_must_be_the_users(native: openai.OpenAI, fake_chatglm_native: FakeChatGLM) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        native.chat.completions.create(model=MODEL, messages=[{"role": "assistant", "content": "x"}])
    assert caught.value.param == "messages" and fake_chatglm_native.state.requests == []


# -- openai_api.py ----------------------------------------------------------------------------------


def test_openai_server_chat(compat: openai.OpenAI, fake_chatglm_openai: FakeChatGLM) -> None:
    reply = compat.chat.completions.create(model=MODEL, messages=USER)
    assert reply.choices[0].message.content == DEFAULT_REPLY and reply.id.startswith("chatcmpl-")
    check_usage(reply.usage)
    sent = fake_chatglm_openai.state.last_request
    assert sent.path == "/v1/chat/completions" and sent.json["messages"] == USER  # the /v1 in base_url is tolerated
    assert fake_chatglm_openai.state.queries[-1] == ("Be brief.你好 there", [])


def test_openai_server_crlf_stream(compat: openai.OpenAI, fake_chatglm_openai: FakeChatGLM) -> None:
    chunks = list(compat.chat.completions.create(model=MODEL, messages=USER, stream=True,
                                                 stream_options={"include_usage": True}))
    assert content_of(chunks) == DEFAULT_REPLY
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["stop"]
    assert len({c.id for c in chunks}) == 1 and all(c.id.startswith("chatcmpl-") and c.created for c in chunks)
    check_usage(chunks[-1].usage)
    assert fake_chatglm_openai.state.wait_for(lambda s: s.streams_finished == 1)  # counted after the last write
    text = list(compat.completions.create(model=MODEL, prompt="Say hi", stream=True))
    assert "".join(c.choices[0].text for c in text if c.choices) == DEFAULT_REPLY


def test_openai_server_errors(compat: openai.OpenAI, fake_chatglm_openai: FakeChatGLM) -> None:
    fake_chatglm_openai.state.fail(400, {"detail": "Invalid request"})
    with pytest.raises(openai.BadRequestError) as caught:
        compat.chat.completions.create(model=MODEL, messages=USER)
    assert caught.value.message.endswith("Invalid request")
    with pytest.raises(openai.BadRequestError) as refused:
        compat.chat.completions.create(model=MODEL, messages=USER, tools=[
            {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}])
    assert refused.value.param == "tools"
    with pytest.raises(openai.BadRequestError):
        compat.embeddings.create(model="chatglm/chatglm2-6b", input="x")


def test_api_key_for_a_proxy_in_front(gateway: GatewayProcess, tenants: Tenants,
                                      fake_chatglm_openai: FakeChatGLM) -> None:
    fake_chatglm_openai.state.required_api_key = "proxy-secret-0001"
    with gateway.client(tenants.proxied) as sdk:
        assert sdk.chat.completions.create(model=MODEL, messages=USER).choices[0].message.content == DEFAULT_REPLY
    with gateway.client(tenants.openai) as sdk, pytest.raises(openai.PermissionDeniedError) as caught:
        sdk.chat.completions.create(model=MODEL, messages=USER)
    assert caught.value.code == "upstream_credential_rejected"
