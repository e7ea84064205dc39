"""The fake Anthropic vendor is faithful: the official `anthropic` SDK is a happy client of
it (create, stream, tool use, errors as the SDK's exception classes), it refuses what the
Messages API refuses, and it streams in Anthropic's framing. The gateway's translator is
then run against it in-process (no gateway server) for what only a live stream shows."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import pytest
from anthropic._constants import ANTHROPIC_API_VERSION as SDK_API_VERSION

from keystore.models import Credential
from emulators.anthropic import (
    DEFAULT_API_KEY,
    DEFAULT_REPLY,
    awkward_pieces,
    error_body,
    event_frame,
)
from tests.fakes.anthropic_fixtures import FakeAnthropic
from translators._http import UpstreamClient
from translators.anthropic import AnthropicTranslator
from translators.base import CallContext
from translators.errors import ApiError
from translators.types import ChatRequest

MODEL = "claude-haiku-4-5"  # one the installed SDK does not warn about
HELLO = [{"role": "user", "content": "Say hello to me"}]
WEATHER_TOOL = {"name": "get_weather", "description": "Weather in a city",
                "input_schema": {"type": "object", "properties": {"location": {"type": "string"}},
                                 "required": ["location"]}}
HEADERS = {"x-api-key": DEFAULT_API_KEY, "anthropic-version": "2023-06-01"}


@pytest.fixture
def fake(fake_anthropic: FakeAnthropic) -> FakeAnthropic:
    # The installed SDK sends its own anthropic-version (the vendor notes document 2023-06-01);
    # the fake accepts it as one more known version.
    fake_anthropic.state.api_versions.add(SDK_API_VERSION)
    return fake_anthropic


@pytest.fixture
def sdk(fake: FakeAnthropic) -> Iterator[anthropic.Anthropic]:
    client = fake.client()
    yield client
    client.close()


def post(fake: FakeAnthropic, body: dict[str, Any], headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.post(fake.base_url + "/v1/messages", json=body, headers=HEADERS if headers is None else headers,
                      timeout=5)


# -- the SDK as a client ---------------------------------------------------------------------------


def test_sdk_create(sdk: anthropic.Anthropic, fake: FakeAnthropic) -> None:
    message = sdk.messages.create(model=MODEL, max_tokens=100, system="Be brief.", messages=HELLO,
                                  metadata={"user_id": "u1"}, stop_sequences=["ZZZ"],
                                  extra_body={"temperature": 0.5})  # this SDK has no `temperature` argument
    assert message.type == "message" and message.role == "assistant" and message.model == MODEL
    assert message.id.startswith("msg_01")
    assert [b.type for b in message.content] == ["text"]
    assert message.content[0].text == DEFAULT_REPLY  # type: ignore[union-attr]
    assert message.stop_reason == "end_turn" and message.stop_sequence is None
    assert message.usage.input_tokens == 6  # "Be brief." + "Say hello to me"
    assert message.usage.output_tokens == len(DEFAULT_REPLY.split())
    seen = fake.state.last_request
    # This SDK sends the key as a bearer token, the documented alternative to x-api-key.
    assert seen.path == "/v1/messages"
    assert DEFAULT_API_KEY in (seen.headers.get("x-api-key"), seen.headers.get("authorization", "")[7:])
    assert seen.headers["anthropic-version"] == SDK_API_VERSION
    assert seen.json["system"] == "Be brief."


def test_sdk_create_max_tokens_and_stop_sequence(sdk: anthropic.Anthropic) -> None:
    cut = sdk.messages.create(model=MODEL, max_tokens=2, messages=HELLO)
    assert cut.stop_reason == "max_tokens" and cut.content[0].text == "Héllo 世界!"  # type: ignore[union-attr]
    stopped = sdk.messages.create(model=MODEL, max_tokens=100, messages=HELLO, stop_sequences=["fake"])
    assert stopped.stop_reason == "stop_sequence" and stopped.stop_sequence == "fake"
    assert stopped.content[0].text == "Héllo 世界! The "  # type: ignore[union-attr]


def test_sdk_stream_text(sdk: anthropic.Anthropic, fake: FakeAnthropic) -> None:
    with sdk.messages.stream(model=MODEL, max_tokens=100, messages=HELLO) as stream:
        pieces = list(stream.text_stream)
        final = stream.get_final_message()
    assert "".join(pieces) == DEFAULT_REPLY and len(pieces) > 3
    assert final.content[0].text == DEFAULT_REPLY  # type: ignore[union-attr]
    assert final.stop_reason == "end_turn"
    assert final.usage.input_tokens == 4 and final.usage.output_tokens == len(pieces)
    state = fake.state
    assert (state.streams_started, state.streams_finished, state.streams_aborted) == (1, 1, 0)
    assert state.pieces_sent > 3 * len(pieces)  # every event went out in several pieces
    assert fake.state.last_request.json["stream"] is True


def test_sdk_stream_tool_use(sdk: anthropic.Anthropic, fake: FakeAnthropic) -> None:
    fake.state.tool_uses = [("get_weather", {"location": "Paris", "unit": "c"})]
    fake.state.tool_preamble = "I'll check."
    with sdk.messages.stream(model=MODEL, max_tokens=100, messages=HELLO, tools=[WEATHER_TOOL]) as stream:
        events = [e.type for e in stream]
        final = stream.get_final_message()
    assert "input_json" in events and "text" in events
    assert [b.type for b in final.content] == ["text", "tool_use"]
    tool = final.content[1]
    assert tool.name == "get_weather" and tool.input == {"location": "Paris", "unit": "c"}  # type: ignore[union-attr]
    assert tool.id.startswith("toolu_")  # type: ignore[union-attr]
    assert final.stop_reason == "tool_use"


def test_sdk_tool_round_trip(sdk: anthropic.Anthropic, fake: FakeAnthropic) -> None:
    fake.state.tool_uses = [("get_weather", {"location": "Paris"})]
    first = sdk.messages.create(model=MODEL, max_tokens=100, messages=HELLO, tools=[WEATHER_TOOL],
                                tool_choice={"type": "any"})
    assert first.stop_reason == "tool_use"
    tool = first.content[0]
    assert tool.type == "tool_use"
    history: list[Any] = [*HELLO, {"role": "assistant", "content": first.content},
                          {"role": "user", "content": [{"type": "tool_result", "tool_use_id": tool.id,
                                                        "content": "18 degrees"}]}]
    final = sdk.messages.create(model=MODEL, max_tokens=100, messages=history, tools=[WEATHER_TOOL])
    assert final.stop_reason == "end_turn" and final.content[0].text == DEFAULT_REPLY  # type: ignore[union-attr]
    # tool_choice none: no tool use even though one is scripted
    none = sdk.messages.create(model=MODEL, max_tokens=100, messages=HELLO, tools=[WEATHER_TOOL],
                               tool_choice={"type": "none"})
    assert none.stop_reason == "end_turn"


@pytest.mark.parametrize(("status", "error_class"), [
    (400, anthropic.BadRequestError), (401, anthropic.AuthenticationError),
    (403, anthropic.PermissionDeniedError), (404, anthropic.NotFoundError),
    (429, anthropic.RateLimitError), (500, anthropic.InternalServerError), (529, anthropic.OverloadedError)])
def test_sdk_scripted_errors(sdk: anthropic.Anthropic, fake: FakeAnthropic, status: int,
                             error_class: type[anthropic.APIStatusError]) -> None:
    fake.state.fail(status, headers={"retry-after": "3"} if status == 429 else None)
    with pytest.raises(error_class) as caught:
        sdk.messages.create(model=MODEL, max_tokens=10, messages=HELLO)
    assert caught.value.status_code == status
    body = caught.value.body
    assert isinstance(body, dict) and body["type"] == "error" and body["request_id"].startswith("req_")
    if status == 429:
        assert caught.value.response.headers["retry-after"] == "3"


def test_sdk_sees_the_checks(sdk: anthropic.Anthropic, fake: FakeAnthropic) -> None:
    with pytest.raises(anthropic.AuthenticationError, match="invalid x-api-key"):
        fake.client(api_key="sk-ant-wrong").messages.create(model=MODEL, max_tokens=10, messages=HELLO)
    with pytest.raises(anthropic.BadRequestError, match="top-level `system`"):
        sdk.messages.create(model=MODEL, max_tokens=10, messages=[{"role": "system", "content": "x"}, *HELLO])
    with pytest.raises(anthropic.BadRequestError, match="alternate"):
        sdk.messages.create(model=MODEL, max_tokens=10, messages=[*HELLO, *HELLO])
    with pytest.raises(anthropic.BadRequestError, match="first message"):
        sdk.messages.create(model=MODEL, max_tokens=10, messages=[{"role": "assistant", "content": "hi"}])
    with pytest.raises(anthropic.BadRequestError, match="temperature"):
        sdk.messages.create(model=MODEL, max_tokens=10, messages=HELLO, extra_body={"temperature": 1.5})
    with pytest.raises(anthropic.BadRequestError, match="not a valid version"):
        fake.client(default_headers={"anthropic-version": "1999-01-01"}).messages.create(
            model=MODEL, max_tokens=10, messages=HELLO)
    pinned = fake.client(default_headers={"anthropic-version": "2023-06-01"})
    assert pinned.messages.create(model=MODEL, max_tokens=10, messages=HELLO).stop_reason == "end_turn"


def test_sdk_mid_stream_error(sdk: anthropic.Anthropic, fake: FakeAnthropic) -> None:
    fake.state.stream_error_after = 5
    received: list[str] = []
    with pytest.raises(anthropic.APIStatusError, match="overloaded_error"):
        with sdk.messages.stream(model=MODEL, max_tokens=100, messages=HELLO) as stream:
            received.extend(stream.text_stream)
    assert received and "".join(received) != DEFAULT_REPLY
    assert fake.state.wait_for(lambda s: s.streams_errored == 1)  # counted after the last write


# -- what the API refuses, on the wire -----------------------------------------------------------


@pytest.mark.parametrize(("change", "status", "message"), [
    ({"headers": {"anthropic-version": "2023-06-01"}}, 401, "x-api-key header is required"),
    ({"headers": {"x-api-key": DEFAULT_API_KEY}}, 400, "anthropic-version: header is required"),
    ({"drop": "max_tokens"}, 400, "max_tokens: Field required"),
    ({"set": {"n": 2}}, 400, "n: Extra inputs are not permitted"),
    ({"set": {"stream_options": {"include_usage": True}}}, 400, "stream_options: Extra inputs"),
    ({"set": {"messages": [{"role": "user", "content": ""}]}}, 400, "non-empty"),
    ({"set": {"messages": []}}, 400, "at least one message"),
    ({"set": {"metadata": {"user": "x"}}}, 400, "metadata.user"),
    ({"set": {"tool_choice": {"type": "auto"}}}, 400, "while providing tools"),
    ({"set": {"tools": [{"name": "f", "input_schema": {"type": "array"}}]}}, 400, "Input should be 'object'"),
    ({"set": {"messages": [*HELLO, {"role": "assistant", "content": [
        {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {}}]}, {"role": "user", "content": "ok"}],
              "tools": [WEATHER_TOOL]}}, 400, "without `tool_result`"),
    ({"set": {"messages": [*HELLO, {"role": "assistant", "content": "x"}, {"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": "toolu_9", "content": "x"}]}], "tools": [WEATHER_TOOL]}}, 400,
     "unexpected `tool_use_id`"),
    ({"set": {"messages": [*HELLO, {"role": "assistant", "content": [
        {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {}}]}, {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "toolu_1"}]}]}}, 400, "must define tools"),
    ({"set": {"messages": [{"role": "user", "content": [{"type": "image", "source": {
        "type": "base64", "media_type": "image/svg+xml", "data": "AAAA"}}]}]}}, 400, "media_type"),
])
def test_wire_refusals(fake: FakeAnthropic, change: dict[str, Any], status: int, message: str) -> None:
    body: dict[str, Any] = {"model": MODEL, "max_tokens": 10, "messages": HELLO}
    body.update(change.get("set", {}))
    body.pop(change.get("drop", ""), None)
    response = post(fake, body, change.get("headers"))
    assert response.status_code == status
    payload = response.json()
    assert payload["type"] == "error" and message in payload["error"]["message"]
    assert response.headers["request-id"].startswith("req_")


def test_stream_framing_on_the_wire(fake: FakeAnthropic) -> None:
    response = post(fake, {"model": MODEL, "max_tokens": 100, "messages": HELLO, "stream": True})
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
    raw = response.content
    assert raw.endswith(b"\n\n") and b"[DONE]" not in raw
    names = []
    for block in raw.decode("utf-8")[:-2].split("\n\n"):
        event_line, data_line = block.split("\n")
        name = event_line.removeprefix("event: ")
        data = json.loads(data_line.removeprefix("data: "))
        assert data["type"] == name
        names.append(name)
    assert names[:3] == ["message_start", "content_block_start", "ping"]
    assert names[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    assert DEFAULT_REPLY not in raw.decode()  # streamed as deltas, not whole


def test_awkward_pieces_cut_lines_and_characters() -> None:
    frame = event_frame("content_block_delta", {"type": "content_block_delta", "index": 0,
                                                "delta": {"type": "text_delta", "text": "héllo 世界"}})
    pieces = awkward_pieces(frame)
    assert b"".join(pieces) == frame and len(pieces) >= 4
    assert pieces[0] == b"eve" and pieces[-1] == b"\n"
    broken = [p for p in pieces if not _decodes(p)]
    assert broken, "no piece ends inside a multi-byte character"


def _decodes(piece: bytes) -> bool:
    try:
        piece.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def test_disconnect_is_counted_as_aborted(fake: FakeAnthropic) -> None:
    fake.state.reply_text = " ".join(f"w{i}" for i in range(200))
    fake.state.stream_delay = 0.05
    body = {"model": MODEL, "max_tokens": 1000, "messages": HELLO, "stream": True}
    with httpx.stream("POST", fake.base_url + "/v1/messages", json=body, headers=HEADERS, timeout=5) as resp:
        next(resp.iter_bytes())
    assert fake.state.wait_for(lambda s: s.streams_aborted == 1, timeout=5)
    assert fake.state.streams_finished == 0


# -- the gateway's translator against the fake, in-process ---------------------------------------


def _ctx(fake: FakeAnthropic, http: UpstreamClient, key: str = DEFAULT_API_KEY) -> CallContext:
    return CallContext(http, Credential({"api_key": key}), MODEL, fake.base_url, "req_test")


async def _collect(body: dict[str, Any], ctx: CallContext) -> list[dict[str, Any]]:
    chunks = []
    async for chunk in AnthropicTranslator().chat_stream(ChatRequest.parse(body), ctx):
        chunks.append(json.loads(chunk.data))
    return chunks


@pytest.mark.parametrize("piece_size", [None, 1, 5])
async def test_translator_stream_over_real_sockets(fake: FakeAnthropic, piece_size: int | None) -> None:
    fake.state.piece_size = piece_size
    http = UpstreamClient()
    try:
        ctx = _ctx(fake, http)
        whole = await AnthropicTranslator().chat(ChatRequest.parse({"model": MODEL, "messages": HELLO}), ctx)
        chunks = await _collect({"model": MODEL, "messages": HELLO, "stream": True}, ctx)
    finally:
        await http.close()
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text == whole["choices"][0]["message"]["content"] == DEFAULT_REPLY
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"] == whole["usage"]
    sent = fake.state.last_request
    assert sent.headers["anthropic-version"] == "2023-06-01" and sent.json["max_tokens"] == 8192


async def test_translator_stream_cut_short_is_an_error(fake: FakeAnthropic) -> None:
    start = event_frame("message_start", {"type": "message_start", "message": {"id": "msg_1", "usage": {}}})
    fake.state.fail_next.append((200, start.decode(), {"content-type": "text/event-stream"}))
    http = UpstreamClient()
    try:
        with pytest.raises(ApiError) as caught:
            await _collect({"model": MODEL, "messages": HELLO, "stream": True}, _ctx(fake, http))
    finally:
        await http.close()
    assert caught.value.status == 502 and caught.value.code == "upstream_incomplete_stream"


async def test_translator_closing_the_generator_closes_the_upstream(fake: FakeAnthropic) -> None:
    fake.state.reply_text = " ".join(f"w{i}" for i in range(200))
    fake.state.stream_delay = 0.05
    http = UpstreamClient()
    started = time.monotonic()
    try:
        stream = AnthropicTranslator().chat_stream(
            ChatRequest.parse({"model": MODEL, "messages": HELLO, "stream": True}), _ctx(fake, http))
        await anext(stream)
        await stream.aclose()  # type: ignore[attr-defined]
        # Poll without blocking this loop: the socket close itself happens on it.
        while fake.state.streams_aborted == 0 and time.monotonic() - started < 5:
            await asyncio.sleep(0.01)
        assert fake.state.streams_aborted == 1
    finally:
        await http.close()
    assert fake.state.streams_finished == 0 and time.monotonic() - started < 5


@pytest.mark.parametrize("stream", [False, True])
async def test_translator_error_inside_a_200_body(fake: FakeAnthropic, stream: bool) -> None:
    fake.state.fail_next.append((200, error_body("overloaded_error", "Overloaded"), {}))
    http = UpstreamClient()
    body = {"model": MODEL, "messages": HELLO, "stream": stream}
    try:
        with pytest.raises(ApiError) as caught:
            if stream:
                await _collect(body, _ctx(fake, http))
            else:
                await AnthropicTranslator().chat(ChatRequest.parse(body), _ctx(fake, http))
    finally:
        await http.close()
    assert caught.value.status == 503 and "Overloaded" in caught.value.message
