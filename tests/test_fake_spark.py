"""The Spark translator against the fake Spark, in-process (no gateway): the signed
handshake, request frames, frame errors before and after the first delta, a socket that
closes early, a client that goes away, TLS verification, and the HTTP API."""

from __future__ import annotations

import asyncio
import datetime
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from keystore.models import Credential
from emulators.spark import API_KEY, API_PASSWORD, API_SECRET, APP_ID, DEFAULT_REPLY
from tests.fakes.spark_fixtures import FakeSpark
from translators._http import UpstreamClient
from translators.base import CallContext
from translators.errors import ApiError
from translators.spark import SparkTranslator
from translators.types import ChatRequest

SPARK = SparkTranslator()
HELLO = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "say hello"}]
TOOL = {"type": "function", "function": {"name": "multiply", "parameters": {"type": "object", "properties": {}}}}


@pytest.fixture
async def http() -> AsyncIterator[UpstreamClient]:
    client = UpstreamClient()
    yield client
    await client.close()


def ws_ctx(http: UpstreamClient, fake: FakeSpark, model: str = "spark-max", **cred: str) -> CallContext:
    values = {"app_id": APP_ID, "api_key": API_KEY, "api_secret": API_SECRET, "base_url": fake.ws_url, **cred}
    return CallContext(http, Credential(values), model, fake.ws_url, "req_test")


def http_ctx(http: UpstreamClient, fake: FakeSpark, password: str = API_PASSWORD) -> CallContext:
    credential = Credential({"api_password": password, "base_url": fake.http_url})
    # Where the gateway sends it (proxy/gateway.py): the translator says, from the credential.
    return CallContext(http, credential, "spark-pro", SPARK.base_url_for(credential), "req_test")


def chat(stream: bool = False, **body: Any) -> ChatRequest:
    return ChatRequest.parse({"model": "spark-max", "messages": HELLO, "stream": stream, **body})


async def collect(ctx: CallContext, req: ChatRequest) -> list[dict[str, Any]]:
    return [orjson.loads(c.data) async for c in SPARK.chat_stream(req, ctx)]


def text_of(chunks: list[dict[str, Any]]) -> str:
    return "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])


async def test_chat_and_stream_agree_and_the_frame_is_signed_and_mapped(http: UpstreamClient,
                                                                       fake_spark: FakeSpark) -> None:
    ctx = ws_ctx(http, fake_spark)
    whole = await SPARK.chat(chat(user="u-7"), ctx)
    chunks = await collect(ctx, chat(stream=True))
    assert whole["choices"][0]["message"]["content"] == text_of(chunks) == DEFAULT_REPLY
    assert whole["id"].startswith("chatcmpl-cht") and whole["usage"] == chunks[-1]["usage"]
    assert whole["usage"]["prompt_tokens"] == 4 and whole["usage"]["completion_tokens"] > 1
    state = fake_spark.state
    assert state.rejected == [] and state.connections_finished == 2
    assert [h["path"] for h in state.handshakes] == ["/v3.5/chat", "/v3.5/chat"]
    frame = state.frames[0]
    assert frame["header"] == {"app_id": APP_ID, "uid": "u-7"}
    assert frame["parameter"]["chat"]["domain"] == "generalv3.5"
    assert frame["payload"]["message"]["text"] == [{"role": "system", "content": "Be brief."},
                                                   {"role": "user", "content": "say hello"}]


@pytest.mark.parametrize(("cred", "status"), [({"api_secret": "wrong-secret"}, 403),
                                              ({"api_key": "unknown-key"}, 401)])
async def test_refused_handshake_is_a_credential_error(http: UpstreamClient, fake_spark: FakeSpark,
                                                       cred: dict[str, str], status: int) -> None:
    for stream in (False, True):
        with pytest.raises(ApiError) as caught:
            if stream:
                await collect(ws_ctx(http, fake_spark, **cred), chat(stream=True))
            else:
                await SPARK.chat(chat(), ws_ctx(http, fake_spark, **cred))
        assert (caught.value.status, caught.value.code) == (403, "upstream_credential_rejected")
    assert [s for s, _ in fake_spark.state.rejected] == [status, status]
    assert fake_spark.state.connections_started == 0


async def test_date_out_of_the_allowed_skew_is_refused(http: UpstreamClient, fake_spark: FakeSpark) -> None:
    fake_spark.state.max_skew = -1  # every date is now too old
    with pytest.raises(ApiError) as caught:
        await SPARK.chat(chat(), ws_ctx(http, fake_spark))
    assert caught.value.status == 403 and "valid date" not in caught.value.message  # body unread: status only
    assert fake_spark.state.rejected[0][0] == 401


async def test_wrong_app_id_is_a_credential_error_frame(http: UpstreamClient, fake_spark: FakeSpark) -> None:
    with pytest.raises(ApiError) as caught:
        await SPARK.chat(chat(), ws_ctx(http, fake_spark, app_id="someone-else"))
    assert (caught.value.status, caught.value.code) == (403, "upstream_credential_rejected")


@pytest.mark.parametrize(("code", "status"), [(11202, 429), (10013, 400), (10907, 400), (10110, 503), (11200, 403)])
async def test_error_frame_before_the_first_delta_raises_on_the_first_chunk(
        http: UpstreamClient, fake_spark: FakeSpark, code: int, status: int) -> None:
    fake_spark.state.error_code = code
    stream = SPARK.chat_stream(chat(stream=True), ws_ctx(http, fake_spark))
    with pytest.raises(ApiError) as caught:
        await anext(stream)  # the proxy pulls this one before it commits the HTTP status
    assert caught.value.status == status and str(code) in caught.value.message
    with pytest.raises(ApiError) as again:
        await SPARK.chat(chat(), ws_ctx(http, fake_spark))
    assert again.value.status == status


async def test_error_frame_mid_stream_raises_after_the_text(http: UpstreamClient, fake_spark: FakeSpark) -> None:
    fake_spark.state.error_after, fake_spark.state.error_code = 2, 10110
    received: list[str] = []
    with pytest.raises(ApiError) as caught:
        async for chunk in SPARK.chat_stream(chat(stream=True), ws_ctx(http, fake_spark)):
            received.append(chunk.data.decode())
    assert len(received) == 2 and caught.value.status == 503


async def test_socket_closed_before_the_last_frame_is_an_error(http: UpstreamClient, fake_spark: FakeSpark) -> None:
    fake_spark.state.close_early = True
    with pytest.raises(ApiError) as caught:
        await SPARK.chat(chat(), ws_ctx(http, fake_spark))
    assert caught.value.code == "upstream_incomplete_stream"
    with pytest.raises(ApiError) as streamed:
        await collect(ws_ctx(http, fake_spark), chat(stream=True))
    assert streamed.value.status == 502


async def test_function_call_becomes_a_tool_call(http: UpstreamClient, fake_spark: FakeSpark) -> None:
    fake_spark.state.function_call = ("multiply", '{"a":12,"b":12}')
    whole = await SPARK.chat(chat(tools=[TOOL]), ws_ctx(http, fake_spark))
    assert whole["choices"][0]["finish_reason"] == "tool_calls"
    assert whole["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"] == '{"a":12,"b":12}'
    assert fake_spark.state.frames[0]["payload"]["functions"]["text"][0]["name"] == "multiply"


async def test_closing_the_stream_closes_the_websocket(http: UpstreamClient, fake_spark: FakeSpark) -> None:
    fake_spark.state.reply_text = " ".join(f"w{i}" for i in range(300))
    fake_spark.state.frame_delay = 0.05
    stream = SPARK.chat_stream(chat(stream=True), ws_ctx(http, fake_spark))
    assert b'"role":"assistant"' in (await anext(stream)).data
    await stream.aclose()  # type: ignore[attr-defined]
    await asyncio.to_thread(fake_spark.state.wait_for, lambda s: s.connections_aborted == 1, 3.0)
    assert (fake_spark.state.connections_aborted, fake_spark.state.connections_finished) == (1, 0)


def _self_signed(tmp: Path) -> ssl.SSLContext:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=1)).sign(key, hashes.SHA256()))
    (tmp / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp / "key.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                    serialization.NoEncryption()))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tmp / "cert.pem", tmp / "key.pem")
    return context


async def test_tls_is_verified(http: UpstreamClient, tmp_path: Path) -> None:
    reached: list[bool] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        reached.append(True)  # only after a completed TLS handshake
        writer.close()

    server = await asyncio.start_server(handler, "127.0.0.1", 0, ssl=_self_signed(tmp_path))
    port = server.sockets[0].getsockname()[1]
    try:
        ctx = CallContext(http, Credential({"app_id": "a", "api_key": "k", "api_secret": "s"}), "spark-max",
                          f"wss://127.0.0.1:{port}", "req_tls")
        with pytest.raises(ApiError) as caught:
            await SPARK.chat(chat(), ctx)
    finally:
        server.close()
        await server.wait_closed()
    assert (caught.value.status, caught.value.code) == (502, "upstream_unreachable") and reached == []


# -- the HTTP API -----------------------------------------------------------------------------------


async def test_http_api_chat_and_stream(http: UpstreamClient, fake_spark: FakeSpark) -> None:
    whole = await SPARK.chat(chat(), http_ctx(http, fake_spark))
    chunks = await collect(http_ctx(http, fake_spark), chat(stream=True))
    assert whole["choices"][0]["message"]["content"] == text_of(chunks) == DEFAULT_REPLY
    assert whole["model"] == "spark-pro" and whole["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["usage"] == whole["usage"] and chunks[-2]["choices"][0]["finish_reason"] == "stop"
    seen = fake_spark.state.http_requests
    assert [r["json"]["model"] for r in seen] == ["generalv3", "generalv3"]
    assert seen[0]["headers"]["authorization"] == f"Bearer {API_PASSWORD}"
    assert fake_spark.state.handshakes == []  # the password wins over the websocket


async def test_http_api_errors(http: UpstreamClient, fake_spark: FakeSpark) -> None:
    with pytest.raises(ApiError) as caught:
        await SPARK.chat(chat(), http_ctx(http, fake_spark, password="wrong"))
    assert caught.value.code == "upstream_credential_rejected" and "invalid user" in caught.value.message
    fake_spark.state.error_code = 11202
    for stream in (False, True):
        with pytest.raises(ApiError) as caught:
            if stream:
                await collect(http_ctx(http, fake_spark), chat(stream=True))
            else:
                await SPARK.chat(chat(), http_ctx(http, fake_spark))
        assert caught.value.status == 429
