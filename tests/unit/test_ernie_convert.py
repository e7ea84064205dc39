"""The ERNIE translator's pure functions against ernie.md and our fixtures: the history
rule (every result checked by the fake's own validation), parameters, answers, streams
with cumulative usage, errors in 200 bodies, embeddings; and the access token, through the
shared token cache. The real recordings are an extra check where ../shared is present."""

from __future__ import annotations

import asyncio
import base64
import struct
from typing import Any

import orjson
import pytest

from keystore.models import Credential
from emulators.ernie import check_chat
from tests.unit._vendor_data import (
    check_schema,
    fixture,
    fixture_json,
    needs_shared,
    shared_json,
    shared_recording,
)
from translators._auth import TokenCache
from translators._http import UpstreamResponse
from translators._sse import SSEDecoder, SSEEvent
from translators.base import CallContext
from translators.ernie import (
    CHAT_ENDPOINTS,
    EMBEDDING_ENDPOINTS,
    ERROR_STATUS,
    access_token,
)
from translators.ernie.codec import (
    ErnieState,
    conversation,
    embedding_batches,
    error_from_response,
    from_embedding_responses,
    from_vendor_event,
    from_vendor_response,
    to_vendor_request,
)
from translators.errors import ApiError
from translators.types import ChatRequest, EmbeddingRequest, StreamChunk

USER = [{"role": "user", "content": "你好"}]
TOOL = {"type": "function", "function": {"name": "light_switch", "description": "Turn the light on or off",
                                         "parameters": {"type": "object", "properties": {"switch": {"type": "boolean"}}}}}
CALL = {"id": "call_7", "type": "function", "function": {"name": "light_switch", "arguments": '{"switch":false}'}}


def ours(name: str) -> Any:
    """Our own fixture `name` (tests/fixtures/ernie/), parsed."""
    return fixture_json("ernie", name)


def request(**body: Any) -> ChatRequest:
    body.setdefault("model", "ernie-4.0")
    body.setdefault("messages", USER)
    return ChatRequest.parse(body)


def vendor(**body: Any) -> dict[str, Any]:
    out = to_vendor_request(request(**body), "ernie-4.0")
    assert check_chat(out) is None, check_chat(out)  # the fake holds ERNIE's validation
    return out


# -- the history rule ---------------------------------------------------------------------------


def u(text: str) -> dict[str, str]:
    return {"role": "user", "content": text}


def a(text: str) -> dict[str, str]:
    return {"role": "assistant", "content": text}


@pytest.mark.parametrize(("messages", "system", "expected"), [
    ([{"role": "system", "content": "S1"}, u("hi"), {"role": "developer", "content": "S2"}], "S1\n\nS2", [u("hi")]),
    ([u("one"), u("two"), a("x"), a("y"), u("three")], "", [u("one\n\ntwo"), a("x\n\ny"), u("three")]),
    ([a("hello, I am a bot"), u("hi")], "", [u("hi")]),                       # leading assistant dropped
    ([u("hi"), a("prefill")], "", [u("hi")]),                                 # trailing assistant dropped
    ([u("hi"), a(""), u("again")], "", [u("hi\n\nagain")]),                   # empty turns are skipped
    ([u("q"), a("a"), u("q2"), a("a2"), u("q3")], "", [u("q"), a("a"), u("q2"), a("a2"), u("q3")]),
])
def test_history_is_made_valid_by_the_documented_rule(messages: list[Any], system: str, expected: list[Any]) -> None:
    got_system, turns = conversation(request(messages=messages))
    assert (got_system, turns) == (system, expected)
    assert check_chat({"messages": turns}) is None


def test_tool_turns_become_function_call_and_function_result() -> None:
    messages = [*USER, {"role": "assistant", "content": None, "tool_calls": [CALL]},
                {"role": "tool", "tool_call_id": "call_7", "content": '{"ok":true}'}]
    body = vendor(messages=messages, tools=[TOOL])
    assert body["messages"][1] == {"role": "assistant", "content": "",
                                   "function_call": {"name": "light_switch", "arguments": '{"switch":false}'}}
    assert body["messages"][2] == {"role": "function", "name": "light_switch", "content": '{"ok":true}'}
    assert body["functions"] == [{"name": "light_switch", "description": "Turn the light on or off",
                                  "parameters": TOOL["function"]["parameters"]}]
    follow = vendor(messages=[*messages, u("thanks")], tools=[TOOL])  # a user turn after a function result
    assert follow["messages"][2] == {"role": "user", "content": '{"ok":true}\n\nthanks'}


def test_a_tool_result_must_answer_a_call() -> None:
    with pytest.raises(ApiError) as caught:
        to_vendor_request(request(messages=[*USER, {"role": "tool", "tool_call_id": "nope", "content": "1"}]), "m")
    assert caught.value.status == 400 and caught.value.param == "messages[1].tool_call_id"


def test_parameters_map_into_ernies_ranges() -> None:
    body = vendor(messages=[{"role": "system", "content": "Be brief."}, *USER], temperature=0, top_p=0.5,
                  stop="END", max_tokens=1, user="u-1", presence_penalty=1.5, penalty_score=1.2,
                  response_format={"type": "json_object"}, stream=True)
    assert body["system"] == "Be brief." and body["messages"] == USER
    assert (body["temperature"], body["top_p"], body["stop"], body["max_output_tokens"]) == (0.01, 0.5, ["END"], 2)
    assert (body["user_id"], body["penalty_score"], body["response_format"], body["stream"]) == \
        ("u-1", 1.2, "json_object", True)
    assert "presence_penalty" not in body and vendor(temperature=1.8)["temperature"] == 1.0
    assert "functions" not in vendor(tools=[TOOL], tool_choice="none")


@pytest.mark.parametrize(("body", "param"), [
    ({"n": 2}, "n"), ({"stop": ["a", "b", "c", "d", "e"]}, "stop"), ({"logprobs": True}, "logprobs"),
    ({"tools": [TOOL], "tool_choice": "required"}, "tool_choice"),
    ({"response_format": {"type": "json_schema", "json_schema": {"name": "x"}}}, "response_format"),
    ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://x/a.png"}}]}]},
     "messages[0].content[0].type"),
    ({"messages": [*USER, {"role": "assistant", "content": None, "tool_calls": [CALL, {**CALL, "id": "c2"}]}, u("x")]},
     "messages[1].tool_calls"),
])
def test_what_ernie_cannot_honour_is_a_400_naming_the_field(body: dict[str, Any], param: str) -> None:
    with pytest.raises(ApiError) as caught:
        to_vendor_request(request(**body), "m")
    assert caught.value.status == 400 and caught.value.param == param


def test_endpoint_tables_cover_the_issue() -> None:
    assert CHAT_ENDPOINTS["ernie-4.0"] == "completions_pro" and CHAT_ENDPOINTS["ernie-3.5"] == "completions"
    assert CHAT_ENDPOINTS["ernie-bot-turbo"] == CHAT_ENDPOINTS["eb-instant"] == "eb-instant"
    assert {"ernie-speed", "ernie-lite"} <= set(CHAT_ENDPOINTS)
    assert {m: e.suffix for m, e in EMBEDDING_ENDPOINTS.items()} == {
        "embedding-v1": "embedding-v1", "bge-large-zh": "bge_large_zh", "bge-large-en": "bge_large_en",
        "tao-8k": "tao_8k"}


# -- answers -----------------------------------------------------------------------------------


def test_answer() -> None:
    whole = from_vendor_response(ours("chat_response.json"), "ernie-4.0")
    check_schema("chat_completion_response.json", whole)
    assert whole["id"] == "chatcmpl-as-r7kq2m9vxe" and whole["created"] == 1733450101
    assert whole["choices"][0]["message"]["content"].startswith("好的，已经为你把客厅的空调")
    assert whole["choices"][0]["finish_reason"] == "stop"  # "normal"
    assert whole["usage"] == {"prompt_tokens": 87, "completion_tokens": 23, "total_tokens": 110}


def test_function_call() -> None:
    whole = from_vendor_response(ours("chat_response_function_call.json"), "ernie-4.0")
    check_schema("chat_completion_response.json", whole)
    choice = whole["choices"][0]
    assert choice["finish_reason"] == "tool_calls" and choice["message"]["content"] is None
    [call] = choice["message"]["tool_calls"]
    assert call["id"].startswith("call_") and call["function"] == {"name": "light_switch",
                                                                   "arguments": '{"switch":true}'}


@pytest.mark.parametrize(("fields", "finish"), [
    ({"finish_reason": "length"}, "length"), ({"finish_reason": "content_filter"}, "content_filter"),
    ({"need_clear_history": True, "ban_round": 1}, "content_filter"), ({"is_truncated": True}, "length"),
])
def test_finish_reasons(fields: dict[str, Any], finish: str) -> None:
    body = {k: v for k, v in ours("chat_response.json").items() if k != "finish_reason"} | fields
    assert from_vendor_response(body, "m")["choices"][0]["finish_reason"] == finish


def stream_chunks(raw: bytes, piece: int = 5) -> tuple[list[dict[str, Any]], list[StreamChunk]]:
    decoder, state, out = SSEDecoder(), ErnieState("ernie-4.0"), []
    events = [e for i in range(0, len(raw), piece) for e in decoder.feed(raw[i:i + piece])] + decoder.flush()
    for event in events:
        out += from_vendor_event(event, state)
    assert state.finished
    return [orjson.loads(c.data) for c in out], out


def test_stream_with_cumulative_usage_never_summed() -> None:
    parsed, chunks = stream_chunks(fixture("ernie", "chat_stream.sse"))
    for chunk in parsed:
        check_schema("chat_completion_chunk.json", chunk)
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in parsed if c["choices"]) == \
        "早上好！今天北京晴，出门记得带上墨镜。"
    assert [c["choices"][0]["delta"].get("role") for c in parsed if c["choices"]].count("assistant") == 1
    assert {c["id"] for c in parsed} == {"chatcmpl-as-m5tq0c8hyu"}
    assert [c["choices"][0]["finish_reason"] for c in parsed if c["choices"]][-1] == "stop"
    assert parsed[-1]["choices"] == [] and parsed[-1]["usage"] == {"prompt_tokens": 6, "completion_tokens": 17,
                                                                   "total_tokens": 23}  # the last running total
    assert [c.usage is not None for c in chunks].count(True) == 1


def test_function_call_in_a_stream() -> None:
    event = {"id": "as-1", "is_end": True, "result": "", "finish_reason": "function_call",
             "function_call": {"name": "light_switch", "arguments": '{"switch":true}'},
             "usage": {"prompt_tokens": 3, "completion_tokens": 5, "total_tokens": 8}}
    parsed = [orjson.loads(c.data) for c in from_vendor_event(SSEEvent("message", orjson.dumps(event)),
                                                              ErnieState("m"))]
    assert parsed[1]["choices"][0]["delta"]["tool_calls"][0]["function"]["name"] == "light_switch"
    assert parsed[2]["choices"][0]["finish_reason"] == "tool_calls" and parsed[3]["usage"]["total_tokens"] == 8


# -- errors ------------------------------------------------------------------------------------


def test_errors_in_200_bodies() -> None:
    token = error_from_response(200, ours("error_200_access_token.json"), None)
    assert (token.status, token.code) == (403, "upstream_credential_rejected") and "ernie" in token.message
    stream_error = orjson.loads(fixture("ernie", "chat_stream_error_body.txt"))
    with pytest.raises(ApiError) as caught:
        from_vendor_event(SSEEvent("message", orjson.dumps(stream_error)), ErnieState("m"))
    assert (caught.value.status, caught.value.code) == (400, "336003") and "must alternate" in caught.value.message
    with pytest.raises(ApiError):
        from_vendor_response(stream_error, "m")
    oauth = error_from_response(401, ours("oauth_token_error.json"), None)
    assert oauth.code == "upstream_credential_rejected" and "unknown client id" in oauth.message


@pytest.mark.parametrize(("code", "status"), [
    (1, 502), (2, 503), (3, 404), (4, 429), (6, 403), (13, 403), (17, 429), (18, 429), (100, 400), (110, 403),
    (111, 403), (336000, 502), (336003, 400), (336005, 404), (336100, 503), (336501, 429), (336502, 429),
    (123456, 502),
])
def test_error_codes_map_by_meaning(code: int, status: int) -> None:
    assert error_from_response(200, {"error_code": code, "error_msg": "m"}, None).status == status
    assert code in ERROR_STATUS or code == 123456


# -- embeddings --------------------------------------------------------------------------------


def test_embeddings_as_float_and_base64() -> None:
    body = ours("embeddings_response.json")
    floats = from_embedding_responses([body], "embedding-v1", "float")
    check_schema("embedding_response.json", floats)
    assert [d["embedding"] for d in floats["data"]] == [d["embedding"] for d in body["data"]]
    assert floats["usage"] == {"prompt_tokens": 9, "total_tokens": 9} and floats["model"] == "embedding-v1"
    encoded = from_embedding_responses([body], "embedding-v1", "base64")  # a string, as OpenAI sends it
    assert all(isinstance(d["embedding"], str) for d in encoded["data"])
    raw = base64.b64decode(encoded["data"][1]["embedding"])
    assert struct.unpack(f"<{len(raw) // 4}f", raw) == pytest.approx(body["data"][1]["embedding"], rel=1e-6)


def test_batches_are_split_and_joined_in_order() -> None:
    texts = [f"text {i}" for i in range(35)]
    batches = embedding_batches(EmbeddingRequest.parse({"model": "embedding-v1", "input": texts}), 16)
    assert [len(b) for b in batches] == [16, 16, 3] and sum(batches, []) == texts
    answers = [{"data": [{"embedding": [float(i)], "index": i - start} for i in reversed(range(start, start + len(b)))],
                "usage": {"prompt_tokens": len(b), "total_tokens": len(b)}}
               for start, b in zip((0, 16, 32), batches, strict=True)]
    joined = from_embedding_responses(answers, "embedding-v1", "float")
    assert [d["embedding"][0] for d in joined["data"]] == [float(i) for i in range(35)]
    assert [d["index"] for d in joined["data"]] == list(range(35)) and joined["usage"]["total_tokens"] == 35
    with pytest.raises(ApiError) as caught:
        embedding_batches(EmbeddingRequest.parse({"model": "embedding-v1", "input": [[1, 2, 3]]}), 16)
    assert caught.value.param == "input"


# -- conformance with the team's real recordings (only where ../shared is present) ---------------


@needs_shared
def test_the_real_recordings_translate_the_same_way() -> None:
    whole = from_vendor_response(shared_json("ernie", "chat_response.json"), "ernie-4.0")
    check_schema("chat_completion_response.json", whole)
    assert whole["choices"][0]["message"]["content"] and whole["choices"][0]["finish_reason"] == "stop"
    call = from_vendor_response(shared_json("ernie", "chat_response_function_call.json"), "ernie-4.0")
    assert call["choices"][0]["finish_reason"] == "tool_calls"
    parsed, chunks = stream_chunks(shared_recording("ernie", "chat_stream.sse"))
    last = [orjson.loads(line[6:]) for line in shared_recording("ernie", "chat_stream.sse").splitlines()
            if line.startswith(b"data: ")][-1]
    assert parsed[-1]["usage"]["total_tokens"] == last["usage"]["total_tokens"]  # cumulative: the last, not a sum
    assert [c.usage is not None for c in chunks].count(True) == 1
    with pytest.raises(ApiError):
        from_vendor_event(SSEEvent("message", shared_recording("ernie", "chat_stream_error_body.txt")), ErnieState("m"))
    assert error_from_response(200, shared_json("ernie", "error_200_access_token.json"), None).status == 403
    assert error_from_response(401, shared_json("ernie", "oauth_token_error.json"), None).code == \
        "upstream_credential_rejected"
    floats = from_embedding_responses([shared_json("ernie", "embeddings_response.json")], "embedding-v1", "float")
    check_schema("embedding_response.json", floats)


# -- the access token, in the shared token cache -----------------------------------------------


class TokenEndpoint:
    """Stands in for the upstream client: answers ERNIE's token exchange, slowly, counting calls."""

    def __init__(self, expires_in: float = 3600.0, fail_first: bool = False) -> None:
        self.calls: list[str] = []
        self.expires_in, self.fail_first = expires_in, fail_first

    async def request(self, method: str, url: str, *, headers: Any = None, json: Any = None) -> UpstreamResponse:
        self.calls.append(url)
        await asyncio.sleep(0.05)
        if self.fail_first and len(self.calls) == 1:
            return UpstreamResponse(401, {}, b'{"error": "invalid_client", "error_description": "refused"}')
        answer = {"access_token": f"token-{len(self.calls)}", "expires_in": self.expires_in}
        return UpstreamResponse(200, {}, orjson.dumps(answer))


def token_ctx(http: TokenEndpoint, api_key: str = "ak") -> CallContext:
    credential = Credential({"api_key": api_key, "secret_key": "sk"})
    return CallContext(http, credential, "ernie-4.0", "https://aip.example", "req")  # type: ignore[arg-type]


async def test_token_cache_is_single_flight_and_refreshes_a_stale_token() -> None:
    cache_, http = TokenCache(), TokenEndpoint()
    ctx = token_ctx(http)
    calls = http.calls

    tokens = await asyncio.gather(*(access_token(ctx, cache=cache_) for _ in range(100)))
    assert set(tokens) == {"token-1"} and len(calls) == 1
    assert await access_token(ctx, cache=cache_) == "token-1" and len(calls) == 1
    refreshed = await asyncio.gather(*(access_token(ctx, "token-1", cache_) for _ in range(10)))
    assert set(refreshed) == {"token-2"} and len(calls) == 2
    assert await access_token(ctx, "token-1", cache_) == "token-2"  # someone else already refreshed it
    assert await access_token(token_ctx(http, "other"), cache=cache_) == "token-3"
    assert "client_secret=sk" in calls[0] and cache_.minted == 3


async def test_token_cache_refreshes_shortly_before_expiry_and_never_caches_failures() -> None:
    # refreshed a tenth of the lifetime early: after 0.45 s
    cache_, http = TokenCache(), TokenEndpoint(expires_in=0.5, fail_first=True)
    ctx = token_ctx(http)
    with pytest.raises(ApiError):
        await access_token(ctx, cache=cache_)
    assert await access_token(ctx, cache=cache_) == "token-2"
    assert await access_token(ctx, cache=cache_) == "token-2"
    await asyncio.sleep(0.46)
    assert await access_token(ctx, cache=cache_) == "token-3" and len(http.calls) == 3
