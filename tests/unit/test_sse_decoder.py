"""The upstream SSE decoder: WHATWG rules, arbitrary read boundaries, vendor quirks."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterable

import pytest

from tests.fixture_data import fixture
from translators._sse import SSEDecoder, SSEEvent, aiter_sse

# Vendor-shaped streams from tests/fixtures/: OpenAI's `data: ` + [DONE], Anthropic's named events
# without a final blank line, Replicate's multi-line data.
OPENAI_STREAM = fixture("openai", "chat_stream_length_with_usage.sse")
ANTHROPIC_STREAM = fixture("anthropic", "chat_stream.sse")
REPLICATE_STREAM = fixture("replicate", "chat_stream.sse")


def decode(chunks: Iterable[bytes]) -> list[SSEEvent]:
    decoder = SSEDecoder()
    events: list[SSEEvent] = []
    for chunk in chunks:
        events += decoder.feed(chunk)
    return events + decoder.flush()


def one(raw: bytes) -> list[SSEEvent]:
    return decode([raw])


def bytewise(raw: bytes) -> list[bytes]:
    return [raw[i : i + 1] for i in range(len(raw))]


# --- vendor streams: every read boundary gives the same events ----------------------


@pytest.mark.parametrize("raw", [OPENAI_STREAM, ANTHROPIC_STREAM, REPLICATE_STREAM],
                         ids=["openai", "anthropic", "replicate"])
def test_stream_split_at_every_offset(raw: bytes) -> None:
    whole = one(raw)
    assert whole
    assert decode(bytewise(raw)) == whole
    for cut in range(len(raw) + 1):
        assert decode([raw[:cut], raw[cut:]]) == whole, cut


def test_openai_stream_events() -> None:
    events = one(OPENAI_STREAM)
    assert {e.event for e in events} == {"message"}
    assert events[-1].data == b"[DONE]"
    chunks = [json.loads(e.data) for e in events[:-1]]
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["total_tokens"] == 32


def test_anthropic_stream_events() -> None:
    assert not ANTHROPIC_STREAM.endswith(b"\n")
    events = one(ANTHROPIC_STREAM)
    names = [e.event for e in events]
    assert names[0] == "message_start" and "ping" in names
    # The stream ends without its final blank line: flush still delivers message_stop.
    assert names[-1] == "message_stop"
    for e in events:
        assert json.loads(e.data)["type"] == e.event


def test_replicate_multiline_stream() -> None:
    events = one(REPLICATE_STREAM)
    assert events[0] == SSEEvent("output", b"\n\n", "1739285530:0")  # three empty `data:` lines
    assert events[3].data == b" on stone\n"  # only ONE leading space is stripped
    assert events[-1] == SSEEvent("done", b"{}", "1739285530:15")


# --- line endings -------------------------------------------------------------------


@pytest.mark.parametrize("eol", [b"\n", b"\r\n", b"\r"], ids=["lf", "crlf", "cr"])
def test_line_endings(eol: bytes) -> None:
    raw = eol.join([b"event: a", b"data: 1", b"data: 2", b"", b"data: 3", b"", b""])
    expected = [SSEEvent("a", b"1\n2"), SSEEvent("message", b"3")]
    assert one(raw) == expected
    assert decode(bytewise(raw)) == expected


def test_mixed_line_endings() -> None:
    raw = b"data: 1\r\ndata: 2\rdata: 3\n\r\ndata: 4\r\r"
    assert one(raw) == [SSEEvent(data=b"1\n2\n3"), SSEEvent(data=b"4")]


def test_cr_at_end_of_chunk_then_lf() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"data: 1\r") == []
    # The LF completes the CRLF; it must not be read as a blank line dispatching early.
    assert decoder.feed(b"\ndata: 2\r") == []
    assert decoder.feed(b"\n\r") == [SSEEvent(data=b"1\n2")]
    assert decoder.feed(b"\n") == []
    assert decoder.flush() == []


def test_blank_line_as_cr_dispatches_without_waiting_for_next_read() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"data: x\r\n\r") == [SSEEvent(data=b"x")]
    assert decoder.feed(b"\n") == []


def test_lone_lf_chunk_after_cr_and_empty_feeds() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"data: x\r") == []
    assert decoder.feed(b"") == []
    assert decoder.feed(b"\n") == []
    assert decoder.feed(b"\n") == [SSEEvent(data=b"x")]


# --- fields -------------------------------------------------------------------------


def test_comments_are_ignored() -> None:
    raw = b": ping\n\n:HTTP_STATUS/200\nid:1\nevent:result\n:HTTP_STATUS/200\ndata:{}\n\n"
    assert one(raw) == [SSEEvent("result", b"{}", "1")]


def test_data_with_and_without_space() -> None:
    raw = b'data:{"a":1}\n\ndata: {"a":2}\n\ndata:  {"a":3}\n\n'
    assert [e.data for e in one(raw)] == [b'{"a":1}', b'{"a":2}', b' {"a":3}']


def test_value_containing_colons() -> None:
    assert one(b"data: a: b:c\n\n") == [SSEEvent(data=b"a: b:c")]


def test_field_without_colon_has_empty_value() -> None:
    # A bare `data` line contributes an empty line to the data buffer.
    assert one(b"data\ndata\n\n") == [SSEEvent(data=b"\n")]


def test_empty_data_line_is_dispatched() -> None:
    assert one(b"data:\n\n") == [SSEEvent(data=b"")]


def test_event_name_applies_to_next_dispatch_only() -> None:
    raw = b"event: message_start\ndata: 1\n\ndata: 2\n\nevent:\ndata: 3\n\n"
    assert [(e.event, e.data) for e in one(raw)] == [
        ("message_start", b"1"),
        ("message", b"2"),
        ("message", b"3"),
    ]


def test_event_name_without_data_is_dispatched() -> None:
    # Deviation from WHATWG (which would drop it): `event: done` is a signal in itself.
    assert one(b"event: done\n\n") == [SSEEvent("done", b"")]
    assert one(b"event: done\ndata:\n\n") == [SSEEvent("done", b"")]
    assert one(b"event: done\ndata: {}\n\n") == [SSEEvent("done", b"{}")]


def test_block_without_data_or_event_is_not_dispatched() -> None:
    assert one(b"\n\n\nid: 7\n\nfoo: bar\n\ndata: x\n\n") == [SSEEvent(data=b"x", id="7")]


def test_id_persists_across_events() -> None:
    raw = b"id: 1\ndata: a\n\ndata: b\n\nid: 2\ndata: c\n\nid\ndata: d\n\n"
    assert [e.id for e in one(raw)] == ["1", "1", "2", ""]


def test_id_with_nul_is_ignored() -> None:
    assert one(b"id: 1\n\nid: 2\x003\ndata: x\n\n") == [SSEEvent(data=b"x", id="1")]


def test_retry_digits_only() -> None:
    events = one(b"retry: 3000\ndata: a\n\ndata: b\n\nretry: 1s\ndata: c\n\nretry: -1\ndata: d\n\n")
    assert [e.retry for e in events] == [3000, None, None, None]


def test_unknown_fields_are_ignored() -> None:
    assert one(b"foo: bar\nData: no\ndata: yes\n\n") == [SSEEvent(data=b"yes")]


# --- BOM ----------------------------------------------------------------------------


def test_leading_bom_is_stripped() -> None:
    raw = b"\xef\xbb\xbfdata: x\n\n"
    assert one(raw) == [SSEEvent(data=b"x")]
    assert decode(bytewise(raw)) == [SSEEvent(data=b"x")]


def test_only_the_first_bom_is_stripped() -> None:
    # A second BOM is part of the first field's name, which is then unknown.
    assert one(b"\xef\xbb\xbf\xef\xbb\xbfdata: x\n\ndata: y\n\n") == [SSEEvent(data=b"y")]
    assert one(b"data: \xef\xbb\xbfx\n\n") == [SSEEvent(data=b"\xef\xbb\xbfx")]


def test_short_first_reads() -> None:
    # The first bytes are held back only while they could still be a BOM.
    assert decode([b"d", b"a", b"ta: x\n\n"]) == [SSEEvent(data=b"x")]
    assert decode([b"\xef", b"\xbb", b"\xbfdata: x\n\n"]) == [SSEEvent(data=b"x")]


def test_bom_prefix_that_is_not_a_bom() -> None:
    raw = b"\xef\xbbdata: x\n\ndata: y\n\n"
    assert one(raw) == [SSEEvent(data=b"y")]
    assert decode(bytewise(raw)) == [SSEEvent(data=b"y")]
    assert decode([b"\xef"]) == []


# --- end of stream ------------------------------------------------------------------


def test_flush_dispatches_unterminated_event() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b'data: {"is_end":false}\n\ndata: {"is_end":true}') == [
        SSEEvent(data=b'{"is_end":false}')
    ]
    assert decoder.flush() == [SSEEvent(data=b'{"is_end":true}')]


def test_flush_dispatches_event_missing_only_the_blank_line() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"event: x\ndata: 1\n") == []
    assert decoder.flush() == [SSEEvent("x", b"1")]


def test_flush_drops_event_without_data() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"data: 1\n\nevent: content_block_delta\n") == [SSEEvent(data=b"1")]
    assert decoder.flush() == []


def test_flush_on_clean_end_and_empty_stream() -> None:
    assert decode([]) == []
    assert one(b"data: 1\n\n") == [SSEEvent(data=b"1")]


# --- bytes --------------------------------------------------------------------------


def test_multibyte_utf8_split_across_feeds() -> None:
    raw = 'event: ответ\ndata: {"text":"你好🌍"}\n\n'.encode()
    for cut in range(len(raw) + 1):
        events = decode([raw[:cut], raw[cut:]])
        assert len(events) == 1
        assert events[0].event == "ответ"
        assert json.loads(events[0].data) == {"text": "你好🌍"}


def test_long_line_in_many_small_reads() -> None:
    payload = b"x" * 100_000
    raw = b"data: " + payload + b"\n\n"
    chunks = [raw[i : i + 7] for i in range(0, len(raw), 7)]
    assert decode(chunks) == [SSEEvent(data=payload)]


# --- async helper -------------------------------------------------------------------


async def test_aiter_sse() -> None:
    async def source() -> AsyncIterator[bytes]:
        yield b"event: a\nda"
        yield b"ta: 1\n\n: ping\n"
        yield b"data: 2"

    assert [e async for e in aiter_sse(source())] == [SSEEvent("a", b"1"), SSEEvent(data=b"2")]


async def test_aiter_sse_vendor_stream() -> None:
    raw = ANTHROPIC_STREAM

    async def source() -> AsyncIterator[bytes]:
        for i in range(0, len(raw), 13):
            yield raw[i : i + 13]

    assert [e async for e in aiter_sse(source())] == one(raw)
