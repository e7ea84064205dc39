"""The ERNIE translator against the fake ERNIE, in-process (no gateway): the access token
(single-flight, cached until shortly before expiry, refreshed once on 110/111), errors in
200 bodies including the bare JSON body of a failed stream, embeddings in batches, and a
client that goes away."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest

from keystore.models import Credential
from emulators.ernie import API_KEY, DEFAULT_REPLY, SECRET_KEY, vector
from tests.fakes.ernie_fixtures import FakeErnie
from translators import ernie
from translators._http import UpstreamClient
from translators.base import CallContext
from translators.ernie import ErnieTranslator
from translators.errors import ApiError
from translators.types import ChatRequest, EmbeddingRequest

ERNIE = ErnieTranslator()
HELLO = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "say hello"}]


@pytest.fixture
async def http() -> AsyncIterator[UpstreamClient]:
    ernie.TOKENS.clear()  # module state: each test starts without a cached token
    client = UpstreamClient()
    yield client
    await client.close()


def ctx_for(http: UpstreamClient, fake: FakeErnie, model: str = "ernie-4.0", **cred: str) -> CallContext:
    values = {"api_key": API_KEY, "secret_key": SECRET_KEY, "base_url": fake.base_url, **cred}
    return CallContext(http, Credential(values), model, fake.base_url, "req_test")


def chat(stream: bool = False, **body: Any) -> ChatRequest:
    return ChatRequest.parse({"model": "ernie-4.0", "messages": HELLO, "stream": stream, **body})


async def collect(ctx: CallContext, req: ChatRequest) -> list[dict[str, Any]]:
    return [orjson.loads(c.data) async for c in ERNIE.chat_stream(req, ctx)]


def text_of(chunks: list[dict[str, Any]]) -> str:
    return "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])


async def test_chat_and_stream_agree(http: UpstreamClient, fake_ernie: FakeErnie) -> None:
    ctx = ctx_for(http, fake_ernie)
    whole = await ERNIE.chat(chat(), ctx)
    chunks = await collect(ctx, chat(stream=True))
    assert whole["choices"][0]["message"]["content"] == text_of(chunks) == DEFAULT_REPLY
    assert chunks[-1]["usage"] == whole["usage"] == {"prompt_tokens": 4, "completion_tokens": 6, "total_tokens": 10}
    sent = fake_ernie.state.requests
    assert [r["path"].rsplit("/", 1)[1] for r in sent] == ["completions_pro", "completions_pro"]
    assert sent[0]["json"]["system"] == "Be brief." and "stream" not in sent[0]["json"]
    assert sent[1]["json"]["stream"] is True and fake_ernie.state.token_calls == 1


async def test_hundred_concurrent_first_requests_make_one_token_call(http: UpstreamClient,
                                                                     fake_ernie: FakeErnie) -> None:
    fake_ernie.state.token_delay = 0.3  # every caller arrives while the first token call is still out
    ctx = ctx_for(http, fake_ernie)
    replies = await asyncio.gather(*(ERNIE.chat(chat(), ctx) for _ in range(100)))
    assert all(r["choices"][0]["message"]["content"] == DEFAULT_REPLY for r in replies)
    assert fake_ernie.state.token_calls == 1
    tokens = {r["query"]["access_token"] for r in fake_ernie.state.requests}
    assert len(tokens) == 1 and len(fake_ernie.state.requests) == 100


async def test_token_is_refreshed_shortly_before_it_expires(http: UpstreamClient, fake_ernie: FakeErnie) -> None:
    fake_ernie.state.expires_in = 2  # refreshed a tenth of its lifetime early: after 1.8 s
    ctx = ctx_for(http, fake_ernie)
    await ERNIE.chat(chat(), ctx)
    await ERNIE.chat(chat(), ctx)
    assert fake_ernie.state.token_calls == 1
    await asyncio.sleep(1.85)
    await ERNIE.chat(chat(), ctx)
    assert fake_ernie.state.token_calls == 2


@pytest.mark.parametrize("stream", [False, True])
async def test_expired_token_code_refreshes_once_and_retries(http: UpstreamClient, fake_ernie: FakeErnie,
                                                             stream: bool) -> None:
    ctx = ctx_for(http, fake_ernie)
    await ERNIE.chat(chat(), ctx)
    fake_ernie.state.expire_tokens()  # the cached token now answers error 111
    if stream:
        assert text_of(await collect(ctx, chat(stream=True))) == DEFAULT_REPLY
    else:
        assert (await ERNIE.chat(chat(), ctx))["choices"][0]["message"]["content"] == DEFAULT_REPLY
    assert fake_ernie.state.token_calls == 2 and len(fake_ernie.state.requests) == 3


@pytest.mark.parametrize("stream", [False, True])
async def test_a_second_token_error_is_not_retried_again(http: UpstreamClient, fake_ernie: FakeErnie,
                                                         stream: bool) -> None:
    fake_ernie.state.fail_next = [{"error_code": 111, "error_msg": "Access token expired"}] * 2
    with pytest.raises(ApiError) as caught:
        if stream:
            await collect(ctx_for(http, fake_ernie), chat(stream=True))
        else:
            await ERNIE.chat(chat(), ctx_for(http, fake_ernie))
    assert (caught.value.status, caught.value.code) == (403, "upstream_credential_rejected")
    assert fake_ernie.state.token_calls == 2 and len(fake_ernie.state.requests) == 2


async def test_refused_api_key_is_a_credential_error(http: UpstreamClient, fake_ernie: FakeErnie) -> None:
    with pytest.raises(ApiError) as caught:
        await ERNIE.chat(chat(), ctx_for(http, fake_ernie, secret_key="not-the-secret"))
    assert (caught.value.status, caught.value.code) == (403, "upstream_credential_rejected")
    assert "Client authentication failed" in caught.value.message and "not-the-secret" not in caught.value.message
    assert fake_ernie.state.requests == []


@pytest.mark.parametrize("content_type", ["application/json", "text/event-stream"])
async def test_stream_error_as_a_bare_json_body(http: UpstreamClient, fake_ernie: FakeErnie,
                                                content_type: str) -> None:
    fake_ernie.state.stream_error_content_type = content_type
    fake_ernie.state.fail_next = [{"error_code": 336003, "error_msg": "the length of messages must be an odd number"}]
    stream = ERNIE.chat_stream(chat(stream=True), ctx_for(http, fake_ernie))
    with pytest.raises(ApiError) as caught:
        await anext(stream)  # before any chunk: the proxy can still send a real status
    assert (caught.value.status, caught.value.code) == (400, "336003") and "odd number" in caught.value.message


@pytest.mark.parametrize(("code", "status"), [(336100, 503), (18, 429), (336501, 429), (3, 404), (336000, 502)])
async def test_errors_in_200_bodies(http: UpstreamClient, fake_ernie: FakeErnie, code: int, status: int) -> None:
    fake_ernie.state.fail_next = [{"error_code": code, "error_msg": "scripted"}]
    with pytest.raises(ApiError) as caught:
        await ERNIE.chat(chat(), ctx_for(http, fake_ernie))
    assert caught.value.status == status


async def test_custom_endpoint_and_unknown_one(http: UpstreamClient, fake_ernie: FakeErnie) -> None:
    reply = await ERNIE.chat(chat(), ctx_for(http, fake_ernie, model="bloomz_7b1"))
    assert reply["model"] == "bloomz_7b1" and fake_ernie.state.last_request["path"].endswith("/chat/bloomz_7b1")
    with pytest.raises(ApiError) as caught:
        await ERNIE.chat(chat(), ctx_for(http, fake_ernie, model="no-such-endpoint"))
    assert caught.value.status == 404


async def test_embeddings_in_batches(http: UpstreamClient, fake_ernie: FakeErnie) -> None:
    texts = [f"文本 {i}" for i in range(20)]
    result = await ERNIE.embed(EmbeddingRequest.parse({"model": "embedding-v1", "input": texts}),
                               ctx_for(http, fake_ernie, model="embedding-v1"))
    assert sorted(fake_ernie.state.embedding_batches) == [4, 16]
    assert [d["embedding"] for d in result["data"]] == [vector(t) for t in texts]
    assert result["usage"] == {"prompt_tokens": 40, "total_tokens": 40}
    await ERNIE.embed(EmbeddingRequest.parse({"model": "tao-8k", "input": ["a", "b", "c"]}),
                      ctx_for(http, fake_ernie, model="tao-8k"))
    assert fake_ernie.state.embedding_batches[-3:] == [1, 1, 1]
    with pytest.raises(ApiError) as caught:
        await ERNIE.embed(EmbeddingRequest.parse({"model": "embo-01", "input": "x"}),
                          ctx_for(http, fake_ernie, model="embo-01"))
    assert caught.value.status == 404 and "embedding-v1" in caught.value.message


async def test_closing_the_stream_closes_the_upstream(http: UpstreamClient, fake_ernie: FakeErnie) -> None:
    fake_ernie.state.reply_text = " ".join(f"w{i}" for i in range(300))
    fake_ernie.state.stream_delay = 0.05
    stream = ERNIE.chat_stream(chat(stream=True), ctx_for(http, fake_ernie))
    assert b'"role":"assistant"' in (await anext(stream)).data
    await stream.aclose()  # type: ignore[attr-defined]
    await asyncio.to_thread(fake_ernie.state.wait_for, lambda s: s.streams_aborted == 1, 3.0)
    assert (fake_ernie.state.streams_aborted, fake_ernie.state.streams_finished) == (1, 0)
