"""The pass-through codec's chunk handling and error mapping, without I/O."""

from __future__ import annotations

import orjson
import pytest

from translators import REGISTRY
from translators._compatible import CompatibleTranslator, PassState
from translators._sse import SSEEvent
from translators.errors import ApiError, upstream_status_error
from translators.types import StreamChunk

T = REGISTRY["openai"]
assert isinstance(T, CompatibleTranslator)
CODEC = T.codec


def events(*data: bytes) -> tuple[PassState, list[StreamChunk]]:
    """The chunks of these events, then of the end of the stream ([DONE])."""
    state = PassState("gpt-4o-mini")
    assert CODEC.from_vendor_event is not None
    out = [c for d in (*data, b"[DONE]") for c in CODEC.from_vendor_event(SSEEvent(data=d), state)]
    assert state.finished
    return state, out


def test_plain_chunks_pass_through_as_the_same_bytes() -> None:
    data = b'{"id":"c","choices":[{"index":0,"delta":{"content":"say \\"usage\\""}}]}'
    _, [out] = events(data)
    assert out.data is data and out.usage is None


def test_usage_only_chunk_is_marked() -> None:
    _, [out] = events(b'{"id":"c","choices":[],"usage":{"prompt_tokens":2,"completion_tokens":3,"total_tokens":5}}')
    assert out.usage is not None and out.usage.total_tokens == 5


def test_usage_on_a_content_chunk_is_split_off() -> None:
    content, _, last = events(b'{"id":"c","choices":[{"index":0,"delta":{"content":"x"}}],'
                              b'"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}',
                              b'{"id":"c","choices":[{"index":0,"delta":{"content":"y"}}]}')[1]
    assert "usage" not in orjson.loads(content.data) and content.usage is None
    assert orjson.loads(last.data) == {"id": "c", "choices": [], "usage": {"prompt_tokens": 1, "completion_tokens": 1,
                                                                         "total_tokens": 2}}
    assert last.usage is not None and last.usage.total_tokens == 2  # sent last, after all content


def test_null_usage_is_not_usage() -> None:
    _, [out] = events(b'{"id":"c","choices":[{"index":0,"delta":{}}],"usage":null}')
    assert out.usage is None


def test_error_event_raises() -> None:
    with pytest.raises(ApiError) as exc:
        events(b'{"error":{"message":"overloaded","type":"server_error","code":null}}')
    assert exc.value.status == 502 and "overloaded" in exc.value.message


@pytest.mark.parametrize(("status", "expected", "code"), [
    (400, 400, None), (401, 403, "upstream_credential_rejected"), (403, 403, "upstream_credential_rejected"),
    (404, 404, None), (422, 400, None), (429, 429, "rate_limit_exceeded"), (500, 502, "upstream_error"),
    (503, 503, "upstream_unavailable"), (529, 503, "upstream_unavailable"), (504, 504, "upstream_timeout")])
def test_status_mapping(status: int, expected: int, code: str | None) -> None:
    err = upstream_status_error("openai", status, "msg")
    assert err.status == expected and err.code == code
    if status in (401, 403):
        assert err.type == "permission_error" and "openai" in err.message


def test_error_from_response_keeps_message_code_param_and_retry_after() -> None:
    body = {"error": {"message": "Rate limit reached", "type": "requests", "param": None, "code": "rate_limit"}}
    err = CODEC.error_from_response(429, body, {"retry-after": "7"})
    assert (err.status, err.message, err.code, err.retry_after) == (429, "Rate limit reached", "rate_limit", 7.0)
