"""The one stream driver: every vendor's upstream stream, and every JSON exchange, runs here.

A vendor brings a `Codec` (pure functions: its error mapping, the state of one stream and
`from_vendor_event`, what an end without its last event means) and picks a transport
recipe by the call it makes: `stream_sse` (SSE over HTTP, the usual), `stream_frames` (a
websocket's text frames), `exchange` (one JSON request and answer). What every stream
shares lives here once, so a streaming bug has one home:
- a non-200 status is the vendor's error, its body parsed tolerantly (`error_body`);
- a 200 that holds no event at all is an error object where the stream belongs (vendors
  do this) or something that is not a stream: passed on as an empty stream it would tell
  the client the call succeeded with no output;
- events are decoded (`_sse.SSEDecoder`, bounded), each handed to `from_vendor_event`;
  the stream stops at the vendor's last event (`state.finished`), reading nothing after;
- at EOF the decoder is flushed, and a stream that never finished is the codec's to judge
  (`at_eof`): most call it incomplete (a 502), lenient vendors close it themselves.

The loops are written out (not layered generators): the OpenAI pass-through is the hot
path, and each generator hop costs per chunk.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from translators._http import (
    Headers,
    UpstreamClient,
    UpstreamResponse,
    UpstreamWebSocket,
)
from translators._json import loads as bounded_json
from translators._shapes import chat_chunk, new_id, now, usage_chunk
from translators._sse import SSEDecoder, SSEEvent
from translators.errors import (
    ApiError,
    bad_response,
    error_body,
    incomplete_stream,
    status_for_error_body,
)
from translators.types import JSONObject, StreamChunk, Usage

__all__ = ["Codec", "StreamState", "event_json", "exchange", "openai_error_in_body", "relay_sse", "stream_frames",
           "stream_sse"]

_HEAD_LIMIT = 65536  # how much of a stream that shows no event is kept to explain it


@dataclass(slots=True)
class StreamState:
    """What every stream translation remembers; a vendor's state adds its own fields."""

    # Chunks name the routed model unless the vendor says which snapshot answers.
    model: str
    # OpenAI repeats one id and one `created` on every chunk; vendors send theirs once, or never.
    id: str = field(default_factory=new_id)
    created: int = field(default_factory=now)
    started: bool = False   # the first (role) chunk went out
    finished: bool = False  # the vendor's last event was seen: nothing after it is read

    def chunk(self, delta: JSONObject, finish: str | None = None, index: int = 0) -> StreamChunk:
        return chat_chunk(self.id, self.created, self.model, delta, finish, index)

    def usage_chunk(self, usage: Usage, body: JSONObject | None = None) -> StreamChunk:
        """The last chunk: no choices, the totals (`body` when the vendor reports more than
        `Usage` holds, e.g. cached tokens)."""
        return usage_chunk(self.id, self.created, self.model, body if body is not None else usage.as_dict(), usage)


S = TypeVar("S", bound=StreamState)


def event_json(event: SSEEvent, provider: str) -> Any:
    """One stream event's data as JSON; data that is not JSON is the vendor's broken stream."""
    try:
        return bounded_json(event.data)
    except ValueError:  # orjson's decode errors (and TooDeep) are ValueErrors
        raise bad_response(provider, "a stream event that is not JSON") from None


def openai_error_in_body(error_from_response: Callable[[int, Any, Headers | None], ApiError],
                         ) -> Callable[[Any, Headers | None], ApiError | None]:
    """The usual `error_in_body`: an object with an `error` member and no answer in it."""
    def error_in_body(body: Any, headers: Headers | None) -> ApiError | None:
        if isinstance(body, dict) and body.get("error") and not body.get("choices") and not body.get("data"):
            return error_from_response(status_for_error_body(body), body, headers)
        return None
    return error_in_body


def _incomplete(provider: str) -> Callable[[Any], Iterable[StreamChunk]]:
    def at_eof(state: Any) -> Iterable[StreamChunk]:
        raise incomplete_stream(provider)
    return at_eof


@dataclass(frozen=True, slots=True)
class Codec(Generic[S]):
    """A vendor's wire format as data: pure functions the driver calls."""

    provider: str
    # (status, parsed body, headers) -> the error the client sees. A status below 400 means
    # the error came inside a 200 (a body, a stream event).
    error_from_response: Callable[[int, Any, Headers | None], ApiError]
    # The error a 200 body holds, or None when it holds an answer.
    error_in_body: Callable[[Any, Headers | None], ApiError | None]
    # For streams: a fresh state for the routed model, and one event -> the chunks it becomes.
    new_state: Callable[[str], S] | None = None
    from_vendor_event: Callable[[SSEEvent, S], Iterable[StreamChunk]] | None = None
    # EOF before `state.finished`: the chunks that close the stream, or raise. None: incomplete.
    at_eof: Callable[[S], Iterable[StreamChunk]] | None = None
    # The vendor's servers answer errors in plain text (TGI, FastAPI): show one short line.
    plain_text_errors: bool = False

    def error_of(self, status: int, payload: bytes, headers: Headers | None) -> ApiError:
        return self.error_from_response(status, error_body(payload, plain_text=self.plain_text_errors), headers)

    def stream_parts(self, model: str) -> tuple[S, Callable[[SSEEvent, S], Iterable[StreamChunk]],
                                                Callable[[S], Iterable[StreamChunk]]]:
        if self.new_state is None or self.from_vendor_event is None:
            raise TypeError(f"the {self.provider} codec has no stream functions")
        return self.new_state(model), self.from_vendor_event, self.at_eof or _incomplete(self.provider)


def checked_json(codec: Codec[Any], resp: UpstreamResponse) -> Any:
    """The JSON answer of a whole exchange: the vendor's error for a non-200 or for an error
    object in a 200, a 502 for a body that is not JSON."""
    if resp.status != 200:
        raise codec.error_of(resp.status, resp.body, resp.headers)
    body = resp.json()
    if body is None:
        raise bad_response(codec.provider)
    err = codec.error_in_body(body, resp.headers)
    if err is not None:
        raise err
    return body


async def exchange(http: UpstreamClient, codec: Codec[Any], url: str, payload: Any, *,
                   headers: Headers | None = None, method: str = "POST") -> Any:
    """One JSON request and its checked JSON answer (see `checked_json`)."""
    resp = await http.request(method, url, headers=headers, json=payload)
    return checked_json(codec, resp)


async def stream_sse(http: UpstreamClient, codec: Codec[S], model: str, url: str, *,
                     headers: Headers | None = None, json: Any = None, method: str = "POST",
                     state: S | None = None) -> AsyncIterator[StreamChunk]:
    """The chunks of an SSE stream (see the module docstring for what is checked)."""
    fresh, from_event, at_eof = codec.stream_parts(model)
    state = state if state is not None else fresh
    async with http.stream(method, url, headers=headers, json=json) as resp:
        if resp.status != 200:
            raise codec.error_of(resp.status, await resp.read(), resp.headers)
        decoder = SSEDecoder(resp.max_event_bytes)
        seen = False
        head = b""  # the body's first bytes, kept until an event shows it really is a stream
        async for data in resp.chunks():
            if not seen and len(head) < _HEAD_LIMIT:
                head += data
            for event in decoder.feed(data):
                seen = True
                for chunk in from_event(event, state):
                    yield chunk
                if state.finished:
                    return
        for event in decoder.flush():
            seen = True
            for chunk in from_event(event, state):
                yield chunk
            if state.finished:
                return
        if not seen:
            raise _not_a_stream(codec, head, resp.headers)
        for chunk in at_eof(state):
            yield chunk


async def relay_sse(http: UpstreamClient, codec: Codec[S], model: str, url: str,
                    observe: Callable[[SSEEvent, S], Usage | None], *, headers: Headers | None = None,
                    json: Any = None) -> AsyncIterator[StreamChunk]:
    """A vendor's stream passed on as it came, for a client speaking the vendor's own API: one
    chunk per event (`StreamChunk.event` its name, `data` its data unchanged), checked as
    `stream_sse` checks. `observe` reads each event before it goes on (the usage; an error
    event raises, so the client gets the gateway's scrubbed error instead) and returns the
    totals at the vendor's last event; they follow as the usage chunk, and the stream ends."""
    state = codec.stream_parts(model)[0]
    at_eof = codec.at_eof or _incomplete(codec.provider)
    async with http.stream("POST", url, headers=headers, json=json) as resp:
        if resp.status != 200:
            raise codec.error_of(resp.status, await resp.read(), resp.headers)
        decoder = SSEDecoder(resp.max_event_bytes)
        seen = False
        head = b""
        async for data in resp.chunks():
            if not seen and len(head) < _HEAD_LIMIT:
                head += data
            for event in decoder.feed(data):
                seen = True
                usage = observe(event, state)
                yield StreamChunk(event.data, None, event.event)
                if usage is not None:
                    yield StreamChunk(b"", usage)
                if state.finished:
                    return
        for event in decoder.flush():
            seen = True
            usage = observe(event, state)
            yield StreamChunk(event.data, None, event.event)
            if usage is not None:
                yield StreamChunk(b"", usage)
            if state.finished:
                return
        if not seen:
            raise _not_a_stream(codec, head, resp.headers)
        for chunk in at_eof(state):
            yield chunk


async def stream_frames(ws: UpstreamWebSocket, codec: Codec[S], model: str,
                        state: S | None = None) -> AsyncIterator[StreamChunk]:
    """The chunks of a websocket whose text frames are the events (each one JSON document)."""
    fresh, from_event, at_eof = codec.stream_parts(model)
    state = state if state is not None else fresh
    async for text in ws.texts():
        for chunk in from_event(SSEEvent("message", text.encode()), state):
            yield chunk
        if state.finished:
            return
    for chunk in at_eof(state):
        yield chunk


def _not_a_stream(codec: Codec[Any], head: bytes, headers: Headers) -> ApiError:
    try:
        body = bounded_json(head) if head else None
    except ValueError:  # not JSON either: nothing the vendor meant as an error
        body = None
    if isinstance(body, dict):
        err = codec.error_in_body(body, headers)
        if err is not None:
            return err
    return bad_response(codec.provider, "no event where a stream was asked for")
