"""The Zhipu translator's pure parts against our fixtures of Zhipu's payloads: the HS256 JWT (checked
by the fake's verifier) and its cache, request mapping, responses, the stream whose last chunk
carries finish reason and usage together, error codes. No I/O; the real recordings are an
extra check where ../shared is present."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from typing import Any

import orjson
import pytest

from keystore.models import Credential
from emulators.zhipu import FakeZhipuState, ZhipuError, _authenticate
from tests.unit._vendor_data import (
    check_schema,
    content_of,
    events_of,
    finishes,
    fixture,
    fixture_json,
    needs_shared,
    parsed,
    shared_json,
    shared_recording,
)
from translators import REGISTRY
from translators._auth import TokenCache
from translators._compatible import CompatibleTranslator
from translators._sse import SSEEvent
from translators.errors import ApiError
from translators.types import ChatRequest, StreamChunk
from translators.zhipu import (
    CODEC,
    SPEC,
    TOKEN_REUSE,
    TOKEN_TTL,
    error_from_response,
    from_vendor_embeddings,
    from_vendor_response,
    jwt,
    make_jwt,
    to_vendor_request,
)

KEY = "fakekeyid0001.fakesecret0000000000000001"
MODEL = "glm-4"
T = REGISTRY["zhipu"]


def vendor(**body: Any) -> dict[str, Any]:
    body.setdefault("model", MODEL)
    body.setdefault("messages", [{"role": "user", "content": "你好"}])
    return to_vendor_request(ChatRequest.parse(body), MODEL)


def _part(token: str, i: int) -> dict[str, Any]:
    piece = token.split(".")[i]
    return json.loads(base64.urlsafe_b64decode(piece + "=" * (-len(piece) % 4)))


# -- the JWT ----------------------------------------------------------------------------------------


def test_jwt_is_what_zhipu_verifies() -> None:
    issued = 1_700_000_000.5
    token = make_jwt(KEY, issued)
    assert _part(token, 0) == {"alg": "HS256", "sign_type": "SIGN"}
    assert _part(token, 1) == {"api_key": "fakekeyid0001", "exp": 1_700_000_000_500 + int(TOKEN_TTL * 1000),
                               "timestamp": 1_700_000_000_500}
    state = FakeZhipuState(api_keys={KEY})
    fresh = make_jwt(KEY, time.time())
    _authenticate(state, {"authorization": f"Bearer {fresh}"})  # the fake's verifier accepts it
    with pytest.raises(ZhipuError) as caught:
        _authenticate(state, {"authorization": f"Bearer {make_jwt('fakekeyid0001.wrongsecret', issued + 10**6)}"})
    assert caught.value.code == "1004"
    with pytest.raises(ZhipuError) as caught:
        _authenticate(state, {"authorization": f"Bearer {token}"})  # issued long ago: expired
    assert caught.value.code == "1003"


def test_malformed_keys_are_refused_when_saved() -> None:
    assert isinstance(T, CompatibleTranslator) and T.spec is SPEC
    T.check_credential(Credential({"api_key": KEY}))
    for bad in ("nodot", ".secret", "id."):
        with pytest.raises(ApiError) as caught:
            T.check_credential(Credential({"api_key": bad}))
        assert caught.value.param == "api_key"


def test_token_cache_reuses_refreshes_and_is_single_flight() -> None:
    now = [1000.0]
    cache = TokenCache(clock=lambda: now[0], max_entries=2)  # the shared cache, as Zhipu uses it
    first = jwt(KEY, cache)
    assert _part(first, 1)["timestamp"] == 1_000_000  # the cache's clock dates the token
    now[0] += TOKEN_REUSE - 1
    assert jwt(KEY, cache) == first and cache.minted == 1
    now[0] += 2
    assert jwt(KEY, cache) != first and cache.minted == 2  # refreshed before the token expires

    async def burst() -> set[str]:
        async def one() -> str:
            await asyncio.sleep(0)
            return jwt("other.key", cache)
        return set(await asyncio.gather(*(one() for _ in range(100))))
    assert len(asyncio.run(burst())) == 1 and cache.minted == 3  # 100 concurrent first calls: one token
    jwt("third.key", cache)
    assert len(cache._tokens) == 2  # bounded


# -- requests ---------------------------------------------------------------------------------------


def test_request_mapping() -> None:
    body = vendor(messages=[{"role": "developer", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
                  temperature=0, top_p=1, user="user-123456", presence_penalty=1, max_completion_tokens=7,
                  stream_options={"include_usage": True})
    assert body["messages"][0] == {"role": "system", "content": "Be brief."}
    assert body["do_sample"] is False and "temperature" not in body and body["top_p"] == 0.99
    assert body["user_id"] == "user-123456" and body["max_tokens"] == 7
    assert not {"user", "presence_penalty", "stream_options", "max_completion_tokens"} & set(body)
    assert vendor(temperature=1.5, user="u1")["temperature"] == 0.99 and "user_id" not in vendor(user="u1")
    tools = [{"type": "function", "function": {"name": "f"}}]
    assert "tools" not in vendor(tools=tools, tool_choice="none") and vendor(tools=tools)["tools"] == tools
    with pytest.raises(ApiError) as caught:
        vendor(tools=tools, tool_choice="required")
    assert caught.value.param == "tool_choice"


# -- responses and streams --------------------------------------------------------------------------


def test_response() -> None:
    out = from_vendor_response(fixture_json("zhipu", "chat_response.json"), MODEL)
    check_schema("chat_completion_response.json", out)
    assert out["object"] == "chat.completion" and out["id"] == "8724519063318805761"
    assert out["usage"] == {"prompt_tokens": 9, "completion_tokens": 18, "total_tokens": 27}
    assert out["choices"][0]["message"]["content"] == "杭州的龙井茶以色绿、香郁、味甘、形美闻名。"


def test_sensitive_and_network_error_finish_reasons() -> None:
    body = fixture_json("zhipu", "chat_response.json")
    body["choices"][0]["finish_reason"] = "sensitive"
    assert from_vendor_response(body, MODEL)["choices"][0]["finish_reason"] == "content_filter"
    body["choices"][0]["finish_reason"] = "network_error"
    with pytest.raises(ApiError) as caught:
        from_vendor_response(body, MODEL)
    assert caught.value.status == 502


def _stream(events: list[bytes]) -> list[StreamChunk]:
    """What the stream driver does with Zhipu's codec: each event, then the end of the stream."""
    assert CODEC.new_state is not None and CODEC.from_vendor_event is not None and CODEC.at_eof is not None
    state = CODEC.new_state(MODEL)
    chunks = [c for data in events for c in CODEC.from_vendor_event(SSEEvent("message", data), state)]
    return chunks + list(CODEC.at_eof(state))


def test_stream_gets_object_and_usage_last() -> None:
    events = [e.data for e in events_of(fixture("zhipu", "chat_stream.sse"), piece=3)]
    assert events[-1] == b"[DONE]"
    chunks = _stream(events[:-1])
    out = parsed(chunks)
    for chunk in out:
        check_schema("chat_completion_chunk.json", chunk)
    assert content_of(chunks) == "西湖醋鱼很鲜" and finishes(chunks) == ["stop"]
    assert not any("role" in c["choices"][0]["delta"] for c in out[1:] if c["choices"])  # Zhipu repeats it: dropped
    assert out[0]["choices"][0]["delta"] == {"role": "assistant", "content": "西湖"}  # sent once, first
    assert out[-1]["choices"] == [] and chunks[-1].usage is not None and chunks[-1].usage.total_tokens == 10
    assert all("usage" not in c for c in out[:-1])


def test_sensitive_stream_and_error_events() -> None:
    data = orjson.dumps({"id": "1", "created": 1, "model": MODEL,
                         "choices": [{"index": 0, "finish_reason": "sensitive", "delta": {"content": ""}}]})
    assert finishes(_stream([data])) == ["content_filter"]
    with pytest.raises(ApiError) as caught:
        _stream([orjson.dumps({"error": {"code": "1302", "message": "并发数过高"}})])
    assert caught.value.status == 429


@pytest.mark.parametrize(("status", "code", "expected", "ours"), [
    (400, "1301", 400, "content_filter"), (401, "1002", 403, "upstream_credential_rejected"),
    (429, "1302", 429, "rate_limit_exceeded"), (429, "1113", 429, "insufficient_quota"),
    (400, "1211", 404, "model_not_found"), (400, "1214", 400, "invalid_parameter"),
    (500, "500", 502, "upstream_error"), (503, None, 503, "upstream_unavailable"),
    (200, "1004", 403, "upstream_credential_rejected"),
])
def test_errors_mapped_by_meaning(status: int, code: str | None, expected: int, ours: str) -> None:
    body = fixture_json("zhipu", "error_400_1301.json") if code == "1301" else \
        {"error": {"code": code, "message": "m"}}
    err = error_from_response(status, body, {})
    assert (err.status, err.code) == (expected, ours)


def test_embeddings() -> None:
    vectors, tokens = from_vendor_embeddings(fixture_json("zhipu", "embeddings_response.json"))
    assert vectors == [[0.0418301, -0.0127754, 0.0063329, -0.0209918]] and tokens == 4


# -- conformance with the team's real recordings (only where ../shared is present) ---------------


@needs_shared
def test_the_real_recordings_translate_the_same_way() -> None:
    body = shared_json("chatglm", "zhipu_chat_response.json")  # shared keeps Zhipu beside ChatGLM
    out = from_vendor_response(body, MODEL)
    check_schema("chat_completion_response.json", out)
    assert out["usage"] == body["usage"]
    events = [e.data for e in events_of(shared_recording("chatglm", "zhipu_chat_stream.sse"), piece=3)]
    chunks = _stream(events[:-1])
    assert content_of(chunks) and finishes(chunks) == ["stop"] and chunks[-1].usage is not None
    err = error_from_response(400, shared_json("chatglm", "zhipu_error_400_1301.json"), {})
    assert err.code == "content_filter"
    vectors, tokens = from_vendor_embeddings(shared_json("chatglm", "zhipu_embeddings_response.json"))
    assert len(vectors) == 1 and tokens > 0
