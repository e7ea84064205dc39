"""The APIs clients speak besides chat completions (Anthropic's Messages API, OpenAI's
Responses API), served by the chat path on every provider.

An inbound API is a codec of pure functions, the reverse direction of a vendor's codec:
its request -> the chat form (`InboundChatRequest`, which every translator serves), a chat
completion -> its answer, a stream's chat chunks -> its events (`EventEncoder`, one per
stream), an `ApiError` -> its error status and body. `translators.INBOUND` lists them;
`proxy/inbound/` serves each at its path with the chat endpoints' machinery (tenancy,
routing, limits, quota, retries and fallbacks, usage).

Where a vendor has the API itself, its translator says so by data (`Translator.native`,
keyed by the API's `name`): an attempt on that translator sends the client's own body
there instead (`InboundChatRequest.native_body`) and relays the vendor's answer or events
as they came. On a hosted trial the chat form goes instead (`proxy/hosted_params.py`): only
it is checked against the trial's parameter allow-list.

An API whose answers are kept for later requests (the Responses API's `store` and
`previous_response_id`) says how by a `Keeping`: pure functions from a request to the kept
answer it continues and from an answer to what is kept (`Kept`); the gateway's store keeps
them per tenant and `proxy/inbound/kept.py` serves them back.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, Self

from pydantic import PrivateAttr

from translators.errors import ApiError, bad_request
from translators.types import ChatRequest, JSONObject, StreamChunk

__all__ = ["Conversion", "Event", "EventEncoder", "InboundApi", "InboundChatRequest", "Kept", "Keeping",
           "ChatAnswer", "as_object", "count", "read_chat_answer"]

# One event of a stream in the API's own framing: its name and its JSON data.
Event = tuple[str, bytes]


class EventEncoder(Protocol):
    """A stream's chat chunks (OpenAI chunk JSON, the usage chunk included) as the API's
    events; stateful, one per stream. `end` closes a stream that finished, `error` one that
    failed after its first byte."""

    def chunk(self, chunk: StreamChunk) -> list[Event]: ...

    def end(self) -> list[Event]: ...

    def error(self, err: ApiError) -> list[Event]: ...

    def answer(self) -> JSONObject | None:
        """The whole answer once the stream ended (for an API that keeps answers), else None."""
        ...


class InboundChatRequest(ChatRequest):
    """The chat form of a request that came in another API's shape, carrying what only
    some attempts use: the client's own body (for a translator with a native endpoint),
    the client's headers that go with it, vendor knobs outside OpenAI's shape (`top_k`)
    that only translators reading them get (`Translator.chat_extras`), and the refusal
    of what the chat form could not carry (a built-in tool), raised only by an attempt
    that takes the chat path (`for_chat`).

    `chat_only()` is the same request without its native body (a hosted trial's)."""

    _native: JSONObject | None = PrivateAttr(default=None)
    _forward: Mapping[str, str] | None = PrivateAttr(default=None)
    _extras: JSONObject | None = PrivateAttr(default=None)
    _refusal: ApiError | None = PrivateAttr(default=None)
    # What the gateway does with the whole answer (an API that keeps answers: keep it).
    _on_answer: Callable[[JSONObject], Awaitable[None]] | None = PrivateAttr(default=None)

    def carrying(self, native: JSONObject | None, extras: JSONObject | None = None,
                 refusal: ApiError | None = None) -> InboundChatRequest:
        self._native, self._extras, self._refusal = native, extras or None, refusal
        return self

    def chat_only(self) -> InboundChatRequest:
        clone = self.model_copy()
        clone._native = None
        return clone

    def forwarding(self, headers: Mapping[str, str]) -> InboundChatRequest:
        self._forward = headers
        return self

    def answering(self, hook: Callable[[JSONObject], Awaitable[None]]) -> InboundChatRequest:
        self._on_answer = hook
        return self

    @property
    def on_answer(self) -> Callable[[JSONObject], Awaitable[None]] | None:
        return self._on_answer

    @property
    def native_body(self) -> JSONObject | None:
        return self._native

    @property
    def forwarded(self) -> Mapping[str, str]:
        return self._forward or {}

    def for_chat(self, accepted: frozenset[str]) -> ChatRequest:
        """The chat form for a translator that reads the extra fields `accepted`; raises the
        refusal of what the chat form could not carry."""
        if self._refusal is not None:
            raise self._refusal
        if not self._extras or not accepted:
            return self
        extras = {k: v for k, v in self._extras.items() if k in accepted}
        return self.with_raw({**self.raw, **extras}) if extras else self

    def with_raw(self, raw: JSONObject) -> Self:
        """The same request with another chat body (a hosted trial's, restricted), parsed
        again and still carrying what it carried (refusal, hooks, a codec's own fields)."""
        clone = type(self).parse(raw)
        private = dict(self.__pydantic_private__ or {})
        private["_raw"] = clone._raw
        object.__setattr__(clone, "__pydantic_private__", private)
        return clone


@dataclass(frozen=True, slots=True)
class Kept:
    """An answer kept for later requests: its id, the answer as the client got it, the
    request's own input items, and the conversation before them (what it continued)."""

    id: str
    answer: JSONObject
    items: list[JSONObject]
    context: list[JSONObject]


@dataclass(frozen=True, slots=True)
class Keeping:
    """How an API keeps answers, as pure functions; the store and the routes are the gateway's."""

    # (parsed request) -> the id of the kept answer it continues, if any.
    previous: Callable[[Any], str | None]
    # (parsed request, the kept answer it names) -> the request with that conversation in it.
    resume: Callable[[Any, Kept], Any]
    # (chat form, the API's whole answer) -> what to keep; None when the request asked not to.
    keep: Callable[[InboundChatRequest, JSONObject], Kept | None]
    # The 404 of an id that is not (or no more, or not this tenant's) kept.
    not_found: Callable[[str], ApiError]
    # DELETE's answer for an id.
    deleted: Callable[[str], JSONObject]
    # (kept answer, the query's parameters) -> the page of its input items.
    items_page: Callable[[Kept, Mapping[str, str]], JSONObject]
    # The whole answer a native stream's event carries (its last), else None.
    answer_in_event: Callable[[StreamChunk], JSONObject | None] | None = None


@dataclass(frozen=True, slots=True)
class InboundApi:
    """One client API as data: where it is served and its codec (pure functions)."""

    name: str   # "messages": the usage rows' endpoint, the key of `Translator.native`
    path: str   # "/v1/messages"
    # The request's pydantic model (`.parse(raw)`; a ValidationError is the client's 400).
    request: type[Any]
    to_chat: Callable[[Any], InboundChatRequest]
    # (a chat completion, the request) -> the API's answer.
    from_chat: Callable[[JSONObject, InboundChatRequest], JSONObject]
    encoder: Callable[[InboundChatRequest], EventEncoder]
    # An error before the answer started: (HTTP status, body) in the API's shape.
    error: Callable[[ApiError], tuple[int, JSONObject]]
    # An error after a stream's first byte (a native relay's end too), as the API's events.
    error_events: Callable[[ApiError], list[Event]]
    # Client headers a native endpoint gets (lower case); the chat path ignores them.
    forward_headers: tuple[str, ...] = ()
    # The API's token counter, when it has one: its path, request model, and the estimate
    # answered where the routed translator has no native counter.
    count_path: str | None = None
    count_request: type[Any] | None = None
    count_estimate: Callable[[Any], JSONObject] | None = None
    # Answers kept for later requests, served at `{path}/{id}` (GET, DELETE) and
    # `{path}/{id}/input_items`.
    keeping: Keeping | None = None


# -- shared by the inbound codecs (pure) ---------------------------------------------------


def as_object(value: Any) -> JSONObject:
    """`value` when it is a JSON object, else an empty one (a chat answer's optional parts)."""
    return value if isinstance(value, dict) else {}


def count(value: Any) -> int:
    """A token count from a chat answer: a positive int, else 0 (never a bool)."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


@dataclass(frozen=True, slots=True)
class ToolCall:
    id: str | None    # the vendor's, when it gave one
    name: str
    arguments: Any    # as the vendor sent them (a JSON string, usually)


@dataclass(frozen=True, slots=True)
class ChatAnswer:
    """What an inbound API's answer is made of, read once from a chat completion."""

    text: str
    calls: list[ToolCall]
    finish_reason: Any


@dataclass(frozen=True, slots=True)
class ToolDelta:
    """One chat stream chunk's piece of a tool call."""

    position: int     # which call of the answer: the chunk's index, else the next one
    id: str | None    # the vendor's, on the call's first piece
    name: str
    arguments: str    # this piece of the arguments ("" when none)


def read_tool_delta(call: Any, calls_so_far: int) -> ToolDelta | None:
    if not isinstance(call, dict):
        return None
    index = call.get("index")
    function = as_object(call.get("function"))
    piece = function.get("arguments")
    return ToolDelta(index if isinstance(index, int) else calls_so_far, str(call["id"]) if call.get("id") else None,
                     str(function.get("name") or ""), piece if isinstance(piece, str) else "")


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # a few vendors answer with parts
        return "".join(str(p.get("text") or "") for p in content if isinstance(p, dict))
    return ""


def read_chat_answer(body: JSONObject) -> ChatAnswer:
    """The first choice's text, tool calls and finish reason, whatever the vendor left out."""
    choices = body.get("choices")
    choice = as_object(choices[0]) if isinstance(choices, list) and choices else {}
    message = as_object(choice.get("message"))
    calls = []
    for call in message.get("tool_calls") or ():
        if isinstance(call, dict):
            function = as_object(call.get("function"))
            calls.append(ToolCall(str(call["id"]) if call.get("id") else None, str(function.get("name") or ""),
                                  function.get("arguments")))
    return ChatAnswer(_text_of(message.get("content")), calls, choice.get("finish_reason"))


class Conversion:
    """One request's chat form being built; `refusal` is the first thing it cannot carry,
    raised only if the attempt takes the chat path (a native provider may serve it)."""

    def __init__(self, why: str) -> None:
        self.refusal: ApiError | None = None
        self._why = why  # completes "<what> ..." in the refusal

    def refuse(self, what: str, param: str) -> None:
        if self.refusal is None:
            self.refusal = bad_request(f"{what} {self._why}", param, "unsupported_on_chat_path")

    def chat_body(self, model: str, messages: list[JSONObject], empty: str, param: str, **given: Any) -> JSONObject:
        """The chat form's body: `messages`, and each of `given` the client gave (None, False
        and an empty list are not given; 0 is). Without any message but the system's, the
        client's 400 `empty`; unless all it sent is what the chat form cannot carry: then a
        stand-in user message, since a native attempt sends the client's body and any
        other raises the refusal before sending."""
        if not any(m["role"] != "system" for m in messages):
            if self.refusal is None:
                raise bad_request(empty, param)
            messages.append({"role": "user", "content": ""})
        body: JSONObject = {"model": model, "messages": messages}
        body.update({k: v for k, v in given.items() if v is not None and v is not False and v != []})
        return body
