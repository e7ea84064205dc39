"""End-to-end: iFlytek Spark behind a real `modelport serve`, called with the openai SDK.

Two tenants of this module's own (acme and beta stay as the harness seeded them): one with
the websocket credential (app_id, api_key, api_secret), one with the HTTP API's
api_password, both pointed at the fake Spark.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import openai
import pytest

from tests.e2e.harness import GatewayProcess, provider_tenant
from emulators.spark import API_KEY, API_PASSWORD, API_SECRET, APP_ID, DEFAULT_REPLY
from tests.fakes.spark_fixtures import FakeSpark

USER = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "say hello to me"}]
TOOLS = [{"type": "function", "function": {"name": "multiply", "description": "a times b", "parameters": {
    "type": "object", "properties": {"a": {"type": "number"}, "b": {"type": "number"}}}}}]


@dataclass
class SparkTenants:
    ws: str       # token of the websocket tenant
    http: str     # token of the HTTP-API tenant


@pytest.fixture(scope="module")
def tenants(gateway: GatewayProcess, fake_spark_server: FakeSpark) -> Iterator[SparkTenants]:
    with contextlib.ExitStack() as stack:
        ws = stack.enter_context(provider_tenant(gateway, "spark-ws", [
            ("providers", "set", "spark", f"app_id={APP_ID}", f"api_key={API_KEY}", f"api_secret={API_SECRET}",
             f"base_url={fake_spark_server.ws_url}"),
            ("defaults", "set", "llm", "spark/spark-max"),
        ], token_name="spark-e2e"))
        http = stack.enter_context(provider_tenant(gateway, "spark-http", [
            ("providers", "set", "spark", f"api_password={API_PASSWORD}", f"base_url={fake_spark_server.http_url}"),
        ], token_name="spark-e2e"))
        yield SparkTenants(ws.token, http.token)


@pytest.fixture
def client(gateway: GatewayProcess, tenants: SparkTenants, fake_spark: FakeSpark) -> Iterator[openai.OpenAI]:
    sdk = gateway.client(tenants.ws)
    yield sdk
    sdk.close()


@pytest.fixture
def http_client(gateway: GatewayProcess, tenants: SparkTenants, fake_spark: FakeSpark) -> Iterator[openai.OpenAI]:
    sdk = gateway.client(tenants.http)
    yield sdk
    sdk.close()


def content_of(chunks: list[Any]) -> str:
    return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


def finishes(chunks: list[Any]) -> list[str]:
    return [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]


# -- chat ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("model", "domain"), [("spark-max", "generalv3.5"), ("spark/spark-lite", "lite"),
                                               ("default", "generalv3.5"), ("spark/4.0Ultra", "4.0Ultra")])
def test_chat(client: openai.OpenAI, fake_spark: FakeSpark, model: str, domain: str) -> None:
    reply = client.chat.completions.create(model=model, messages=USER, temperature=1.5, user="u-1")
    assert reply.choices[0].message.content == DEFAULT_REPLY and reply.choices[0].finish_reason == "stop"
    assert reply.id.startswith("chatcmpl-cht") and reply.usage is not None
    assert (reply.usage.prompt_tokens, reply.usage.completion_tokens) == (6, len(DEFAULT_REPLY.split()))
    frame = fake_spark.state.frames[-1]
    assert frame["parameter"]["chat"] == {"domain": domain, "temperature": 1.0}
    assert frame["header"] == {"app_id": APP_ID, "uid": "u-1"}
    assert fake_spark.state.connections_finished == 1 and fake_spark.state.rejected == []


def test_chat_stream_with_and_without_usage(client: openai.OpenAI, fake_spark: FakeSpark) -> None:
    whole = client.chat.completions.create(model="spark-max", messages=USER)
    chunks = list(client.chat.completions.create(model="spark-max", messages=USER, stream=True,
                                                 stream_options={"include_usage": True}))
    assert content_of(chunks) == whole.choices[0].message.content == DEFAULT_REPLY
    assert [c.choices[0].delta.role for c in chunks if c.choices and c.choices[0].delta.role] == ["assistant"]
    assert finishes(chunks) == ["stop"] and len({c.id for c in chunks}) == 1
    last = chunks[-1]
    assert last.choices == [] and last.usage is not None and whole.usage is not None
    assert last.usage.model_dump() == whole.usage.model_dump()
    plain = list(client.chat.completions.create(model="spark-max", messages=USER, stream=True))
    assert content_of(plain) == DEFAULT_REPLY and all(c.usage is None and c.choices for c in plain)


def test_legacy_completions_through_the_chat_path(client: openai.OpenAI, fake_spark: FakeSpark) -> None:
    whole = client.completions.create(model="spark-pro", prompt="Say hi")
    assert whole.object == "text_completion" and whole.choices[0].text == DEFAULT_REPLY
    assert fake_spark.state.frames[-1]["payload"]["message"]["text"] == [{"role": "user", "content": "Say hi"}]
    chunks = list(client.completions.create(model="spark-pro", prompt="Say hi", stream=True,
                                            stream_options={"include_usage": True}))
    assert "".join(c.choices[0].text for c in chunks if c.choices) == DEFAULT_REPLY
    assert chunks[-1].usage is not None and chunks[-1].usage.prompt_tokens == 2


@pytest.mark.parametrize("stream", [False, True])
def test_function_call_becomes_a_tool_call(client: openai.OpenAI, fake_spark: FakeSpark, stream: bool) -> None:
    fake_spark.state.function_call = ("multiply", '{"a":12,"b":12}')
    if stream:
        chunks = list(client.chat.completions.create(model="spark-max", messages=USER, tools=TOOLS, stream=True))
        [call] = [d for c in chunks if c.choices for d in c.choices[0].delta.tool_calls or ()]
        name, arguments, call_id = call.function.name, call.function.arguments, call.id  # type: ignore[union-attr]
        assert finishes(chunks) == ["tool_calls"]
    else:
        reply = client.chat.completions.create(model="spark-max", messages=USER, tools=TOOLS)
        [tool_call] = reply.choices[0].message.tool_calls or []
        name, arguments, call_id = tool_call.function.name, tool_call.function.arguments, tool_call.id
        assert reply.choices[0].finish_reason == "tool_calls"
    assert (name, json.loads(arguments or "")) == ("multiply", {"a": 12, "b": 12})
    assert call_id is not None and call_id.startswith("call_")
    assert fake_spark.state.frames[-1]["payload"]["functions"]["text"][0]["name"] == "multiply"


# -- errors ----------------------------------------------------------------------------------------


def test_unknown_model_is_404_listing_the_known_ones(client: openai.OpenAI, fake_spark: FakeSpark) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        client.chat.completions.create(model="spark/spark-9-giga", messages=USER)
    assert "spark-lite" in caught.value.message and "spark-4.0-ultra" in caught.value.message
    assert fake_spark.state.handshakes == []


def test_refused_signature_is_403_naming_the_provider(client: openai.OpenAI, fake_spark: FakeSpark) -> None:
    fake_spark.state.credentials = {API_KEY: ("another-secret", APP_ID)}  # our signature no longer matches
    for stream in (False, True):
        with pytest.raises(openai.PermissionDeniedError) as caught:
            client.chat.completions.create(model="spark-max", messages=USER, stream=stream)
        assert caught.value.code == "upstream_credential_rejected" and "spark" in caught.value.message
        assert API_SECRET not in caught.value.message
    assert [status for status, _ in fake_spark.state.rejected] == [403, 403]


@pytest.mark.parametrize(("code", "error", "status"), [
    (11202, openai.RateLimitError, 429), (10013, openai.BadRequestError, 400),
    (11200, openai.PermissionDeniedError, 403), (10110, openai.InternalServerError, 503)])
@pytest.mark.parametrize("stream", [False, True])
def test_error_frame_becomes_a_real_status(client: openai.OpenAI, fake_spark: FakeSpark, code: int,
                                           error: type[openai.APIStatusError], status: int, stream: bool) -> None:
    fake_spark.state.error_code = code
    with pytest.raises(error) as caught:
        client.chat.completions.create(model="spark-max", messages=USER, stream=stream)
    assert caught.value.status_code == status
    if code == 10013:
        assert caught.value.code == "content_filter"


def test_error_frame_mid_stream_raises_during_iteration(client: openai.OpenAI, fake_spark: FakeSpark) -> None:
    fake_spark.state.error_after, fake_spark.state.error_code = 2, 10110
    received: list[str] = []
    with pytest.raises(openai.APIError) as caught:
        for chunk in client.chat.completions.create(model="spark-max", messages=USER, stream=True):
            received.append(chunk.choices[0].delta.content or "")
    assert "".join(received) == "你好！我是讯飞星火的假模型。 Hello"
    assert "10110" in str(caught.value)


def test_socket_closed_early_is_502(client: openai.OpenAI, fake_spark: FakeSpark) -> None:
    fake_spark.state.close_early = True
    with pytest.raises(openai.InternalServerError) as caught:
        client.chat.completions.create(model="spark-max", messages=USER)
    assert caught.value.status_code == 502


def test_client_disconnect_closes_the_websocket(gateway: GatewayProcess, tenants: SparkTenants,
                                                fake_spark: FakeSpark) -> None:
    state = fake_spark.state
    state.reply_text = " ".join(f"word{i}" for i in range(400))  # ~20 s at 0.05 s per frame
    state.frame_delay = 0.05
    started = time.monotonic()
    body = {"model": "spark-max", "messages": USER, "stream": True}
    with httpx.Client(base_url=gateway.base_url, headers={"Authorization": f"Bearer {tenants.ws}"},
                      timeout=15) as http, http.stream("POST", "/v1/chat/completions", json=body) as resp:
        assert resp.status_code == 200
        assert next(resp.iter_bytes()).startswith(b"data: {")
    assert state.wait_for(lambda s: s.connections_aborted >= 1, timeout=5.0), \
        f"websocket not closed: started={state.connections_started} aborted={state.connections_aborted}"
    assert state.connections_finished == 0 and time.monotonic() - started < 6.0


# -- the HTTP API (api_password) -------------------------------------------------------------------


def test_http_api_chat_and_stream(http_client: openai.OpenAI, fake_spark: FakeSpark) -> None:
    whole = http_client.chat.completions.create(model="spark-pro", messages=USER)
    chunks = list(http_client.chat.completions.create(model="spark-pro", messages=USER, stream=True,
                                                      stream_options={"include_usage": True}))
    assert whole.choices[0].message.content == content_of(chunks) == DEFAULT_REPLY
    assert whole.model == "spark-pro" and whole.id.startswith("chatcmpl-cha") and finishes(chunks) == ["stop"]
    assert chunks[-1].usage is not None and whole.usage is not None
    assert chunks[-1].usage.total_tokens == whole.usage.total_tokens
    assert [r["json"]["model"] for r in fake_spark.state.http_requests] == ["generalv3", "generalv3"]
    assert fake_spark.state.handshakes == []


@pytest.mark.parametrize("stream", [False, True])
def test_http_api_error_in_a_200_body(http_client: openai.OpenAI, fake_spark: FakeSpark, stream: bool) -> None:
    fake_spark.state.error_code = 11202
    with pytest.raises(openai.RateLimitError) as caught:
        http_client.chat.completions.create(model="spark-pro", messages=USER, stream=stream)
    assert "11202" in caught.value.message


def test_http_api_refused_password_is_403(http_client: openai.OpenAI, fake_spark: FakeSpark) -> None:
    fake_spark.state.api_passwords = set()
    with pytest.raises(openai.PermissionDeniedError) as caught:
        http_client.chat.completions.create(model="spark-pro", messages=USER)
    assert caught.value.code == "upstream_credential_rejected" and API_PASSWORD not in caught.value.message
