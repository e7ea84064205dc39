"""End-to-end streaming: SSE through a real `modelport serve` with the official openai SDK,
the raw frames on the wire, failures after the first byte, and client disconnects."""

from __future__ import annotations

import json
import secrets
import socket
import threading
import time
from typing import Any

import openai
import pytest

from tests.e2e.harness import GatewayProcess
from tests.e2e.test_endpoints import REPLY, USER, check_schema
from tests.fakes.fixtures import FakeOpenAI

TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}}}}}]


def sse_frames(raw: bytes) -> list[bytes]:
    """The `data:` payloads of an SSE body, asserting our framing (one data line per event)."""
    text = raw.decode()
    assert text.endswith("\n\n"), text[-200:]
    frames = []
    for event in text[:-2].split("\n\n"):
        assert event.startswith("data: ") and "\n" not in event, event
        frames.append(event[len("data: "):].encode())
    return frames


def raw_stream(gw: GatewayProcess, path: str, body: dict[str, Any]) -> tuple[int, str, list[bytes]]:
    with gw.http() as http:
        resp = http.post(path, json=body)
    assert "Traceback" not in resp.text
    return resp.status_code, resp.headers.get("content-type", ""), sse_frames(resp.content)


# -- chat ---------------------------------------------------------------------------------------


def test_chat_stream_reassembles_the_non_stream_text(gw: GatewayProcess, fake_openai: FakeOpenAI) -> None:
    client = gw.client()
    whole = client.chat.completions.create(model="default", messages=USER)
    chunks = list(client.chat.completions.create(model="default", messages=USER, stream=True))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content == REPLY
    assert len(chunks) > 3  # really streamed, word by word
    assert {c.model for c in chunks} == {"gpt-4o-mini"}
    assert chunks[0].choices[0].delta.role == "assistant"
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["stop"]
    # Without include_usage no chunk carries usage, although the gateway asked upstream for it.
    assert all(c.usage is None for c in chunks)
    assert all(c.choices for c in chunks)
    upstream = fake_openai.state.last_request.json
    assert upstream["stream"] is True
    assert upstream["stream_options"] == {"include_usage": True}
    assert upstream["model"] == "gpt-4o-mini"


def test_chat_stream_include_usage(gw: GatewayProcess) -> None:
    client = gw.client()
    whole = client.chat.completions.create(model="default", messages=USER)
    chunks = list(client.chat.completions.create(model="default", messages=USER, stream=True,
                                                 stream_options={"include_usage": True}))
    last = chunks[-1]
    assert last.choices == []
    assert last.usage is not None and whole.usage is not None
    assert (last.usage.prompt_tokens, last.usage.completion_tokens, last.usage.total_tokens) == \
        (whole.usage.prompt_tokens, whole.usage.completion_tokens, whole.usage.total_tokens)
    assert all(c.usage is None for c in chunks[:-1])
    assert "".join(c.choices[0].delta.content or "" for c in chunks[:-1]) == REPLY


def test_chat_stream_wire_format(gw: GatewayProcess) -> None:
    status, content_type, frames = raw_stream(gw, "/v1/chat/completions", {
        "model": "default", "messages": USER, "stream": True, "stream_options": {"include_usage": True}})
    assert status == 200
    assert content_type.startswith("text/event-stream")
    assert frames[-1] == b"[DONE]"
    assert frames.count(b"[DONE]") == 1
    chunks = [json.loads(f) for f in frames[:-1]]
    for chunk in chunks:
        check_schema("chat_completion_chunk.json", chunk)
        assert chunk["object"] == "chat.completion.chunk"
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["total_tokens"] == 8
    assert len({c["id"] for c in chunks}) == 1


def test_chat_stream_without_include_usage_has_no_usage_on_the_wire(gw: GatewayProcess) -> None:
    status, _, frames = raw_stream(gw, "/v1/chat/completions",
                                   {"model": "default", "messages": USER, "stream": True})
    assert status == 200
    assert frames[-1] == b"[DONE]" and frames.count(b"[DONE]") == 1
    chunks = [json.loads(f) for f in frames[:-1]]
    assert all("usage" not in c or c["usage"] is None for c in chunks)
    assert all(c["choices"] for c in chunks)


def test_chat_stream_tool_call(gw: GatewayProcess, fake_openai: FakeOpenAI) -> None:
    arguments = '{"city": "New York", "unit": "celsius"}'
    fake_openai.state.tool_call = ("get_weather", arguments)
    stream = gw.client().chat.completions.create(model="openai/gpt-4o", messages=USER, tools=TOOLS, stream=True)
    calls: dict[int, dict[str, str]] = {}
    finish = None
    argument_chunks = 0
    for chunk in stream:
        if not chunk.choices:
            continue
        choice = chunk.choices[0]
        finish = choice.finish_reason or finish
        for delta in choice.delta.tool_calls or ():
            call = calls.setdefault(delta.index, {"id": "", "name": "", "arguments": ""})
            call["id"] += delta.id or ""
            if delta.function is not None:
                call["name"] += delta.function.name or ""
                if delta.function.arguments:
                    argument_chunks += 1
                    call["arguments"] += delta.function.arguments
    assert list(calls) == [0]
    assert calls[0]["name"] == "get_weather"
    assert calls[0]["id"].startswith("call_")
    assert calls[0]["arguments"] == arguments
    assert argument_chunks > 1
    assert finish == "tool_calls"
    assert fake_openai.state.last_request.json["tools"] == TOOLS


# -- legacy completions ---------------------------------------------------------------------


def test_completions_stream(gw: GatewayProcess) -> None:
    client = gw.client()
    whole = client.completions.create(model="default", prompt="Say hi", max_tokens=20)
    chunks = list(client.completions.create(model="default", prompt="Say hi", max_tokens=20, stream=True))
    assert "".join(c.choices[0].text for c in chunks if c.choices) == whole.choices[0].text == REPLY
    assert all(c.usage is None for c in chunks)
    assert {c.model for c in chunks} == {"gpt-4o-mini"}


def test_completions_stream_include_usage(gw: GatewayProcess) -> None:
    chunks = list(gw.client().completions.create(model="default", prompt="Say hi there", max_tokens=20,
                                                 stream=True, stream_options={"include_usage": True}))
    last = chunks[-1]
    assert last.choices == []
    assert last.usage is not None
    assert (last.usage.prompt_tokens, last.usage.completion_tokens, last.usage.total_tokens) == (3, 4, 7)
    assert "".join(c.choices[0].text for c in chunks[:-1]) == REPLY
    status, content_type, frames = raw_stream(gw, "/v1/completions", {
        "model": "default", "prompt": "Say hi", "stream": True, "stream_options": {"include_usage": True}})
    assert status == 200 and content_type.startswith("text/event-stream")
    assert frames[-1] == b"[DONE]" and frames.count(b"[DONE]") == 1
    for frame in frames[:-1]:
        assert json.loads(frame)["object"] == "text_completion"


# -- failures after the first byte ------------------------------------------------------------


def test_mid_stream_failure_raises_in_the_sdk(gw: GatewayProcess, fake_openai: FakeOpenAI) -> None:
    fake_openai.state.fail_after_chunks = 3
    stream = gw.client().chat.completions.create(model="default", messages=USER, stream=True)
    received: list[str] = []
    with pytest.raises(openai.APIError) as caught:
        for chunk in stream:
            received.append(chunk.choices[0].delta.content or "")
    assert "".join(received) == "Hello from"  # role chunk + two words, then the failure
    assert "error" in str(caught.value).lower()
    # The fake counts the error after writing it, so the client can get there first.
    assert fake_openai.state.wait_for(lambda state: state.streams_errored == 1, timeout=5)


def test_mid_stream_failure_on_the_wire(gw: GatewayProcess, fake_openai: FakeOpenAI) -> None:
    fake_openai.state.fail_after_chunks = 2
    for path, body in [("/v1/chat/completions", {"model": "default", "messages": USER, "stream": True}),
                       ("/v1/completions", {"model": "default", "prompt": "hi", "stream": True})]:
        status, content_type, frames = raw_stream(gw, path, body)
        assert status == 200 and content_type.startswith("text/event-stream")
        assert b"[DONE]" not in frames
        errors = [json.loads(f) for f in frames if f.startswith(b'{"error"')]
        assert len(errors) == 1 and frames[-1].startswith(b'{"error"')
        assert len(frames) == 3  # two chunks passed through, then the error
        check_schema("error_response.json", errors[0])
        assert set(errors[0]["error"]) == {"message", "type", "param", "code"}
        assert "openai" in errors[0]["error"]["message"]
        assert errors[0]["error"]["type"] == "server_error"


def test_upstream_silence_mid_stream_is_a_504_frame(gw: GatewayProcess, fake_openai: FakeOpenAI) -> None:
    fake_openai.state.stream_delay = 2.6  # first event at once, then longer than read_timeout (2 s)
    status, _, frames = raw_stream(gw, "/v1/chat/completions",
                                   {"model": "default", "messages": USER, "stream": True})
    assert status == 200
    assert len(frames) == 2 and b"[DONE]" not in frames
    assert json.loads(frames[0])["choices"][0]["delta"]["role"] == "assistant"
    error = json.loads(frames[1])["error"]
    assert (error["type"], error["code"]) == ("server_error", "upstream_timeout")


def _cut_off_upstream() -> socket.socket:
    """An 'OpenAI' that sends one chunked SSE event and then drops the connection."""
    server = socket.create_server(("127.0.0.1", 0))
    event = b'data: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"gpt-4o","choices":' \
            b'[{"index":0,"delta":{"content":"Hi"},"finish_reason":null}]}\n\n'

    def run() -> None:
        with server:
            conn, _ = server.accept()
            with conn:
                request = b""
                while b"\r\n\r\n" not in request:
                    request += conn.recv(65536)
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                             b"Transfer-Encoding: chunked\r\n\r\n" + b"%x\r\n" % len(event) + event + b"\r\n")
                time.sleep(0.2)

    threading.Thread(target=run, daemon=True).start()
    return server


def test_upstream_connection_lost_mid_stream_is_an_error_frame(gw: GatewayProcess) -> None:
    upstream = _cut_off_upstream()
    name = "cutoff-" + secrets.token_hex(4)
    gw.cli("tenants", "create", name)
    gw.cli("providers", "set", name, "openai", "api_key=sk-cutoff-" + secrets.token_hex(12),
           f"base_url=http://127.0.0.1:{upstream.getsockname()[1]}/v1")
    token = gw.new_token(name)
    try:
        with gw.http(token) as http:
            deadline = time.monotonic() + 5
            while http.get("/v1/models").status_code != 200:  # every worker learns of the new tenant
                assert time.monotonic() < deadline
                time.sleep(0.1)
            resp = http.post("/v1/chat/completions", json={"model": "gpt-4o", "messages": USER, "stream": True})
        assert resp.status_code == 200 and "Traceback" not in resp.text
        frames = sse_frames(resp.content)
        assert json.loads(frames[0])["choices"][0]["delta"]["content"] == "Hi"
        assert len(frames) == 2 and b"[DONE]" not in frames
        assert json.loads(frames[1])["error"]["type"] == "server_error"
    finally:
        gw.cli("tenants", "delete", name)


# -- client disconnects ---------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/completions"])
def test_client_disconnect_closes_the_upstream(gw: GatewayProcess, fake_openai: FakeOpenAI, path: str) -> None:
    state = fake_openai.state
    state.reply_text = " ".join(f"word{i}" for i in range(400))  # ~20 s at 0.05 s per event
    state.stream_delay = 0.05
    body: dict[str, Any] = {"model": "default", "stream": True, "max_tokens": 1000}
    body.update({"messages": USER} if "chat" in path else {"prompt": "go"})
    started = time.monotonic()
    with gw.http() as http, http.stream("POST", path, json=body) as resp:
        assert resp.status_code == 200
        first = next(resp.iter_bytes())
        assert first.startswith(b"data: {")
    # The client is gone: the gateway must abandon the upstream stream promptly.
    assert state.wait_for(lambda s: s.streams_aborted >= 1, timeout=5.0), \
        f"upstream stream not closed: started={state.streams_started} aborted={state.streams_aborted}"
    assert state.streams_finished == 0
    assert time.monotonic() - started < 6.0
