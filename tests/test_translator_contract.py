"""The translator contract (DESIGN §10, issue 4): one suite over every registered provider.

Each provider's translator is called directly, with a real `UpstreamClient`, against its
vendor fake; where framing matters the stream also goes through `proxy.sse.open_stream`,
the one downstream SSE writer. Vendor knowledge lives in one adapter per provider in
`tests/contract/` (see its README.md); a capability a vendor lacks is an entry in its
adapter's `lacks` and shows here as a skip with the reason, never as a pass.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any

import orjson
import pytest
import pytest_asyncio

from keystore.models import Credential
from proxy.sse import DONE, StreamOutcome, open_stream
from tests.contract import CAPABILITIES, Adapter, discover
from tests.fixture_data import check_schema
from translators import REGISTRY
from translators._http import Timeouts, UpstreamClient
from translators.base import CallContext, Translator
from translators.errors import ApiError
from translators.types import ChatRequest, StreamChunk

# Providers whose translators are being added right now by other engineers. While one of
# them is registered without an adapter in tests/contract/, the coverage test below is an
# expected failure (xfail, not strict) and its contract tests skip; every other registered
# provider without an adapter fails the suite. Remove a name when its adapter lands.
PENDING: set[str] = set()

ADAPTERS, PROBLEMS = discover()
PROVIDERS = sorted(REGISTRY)

TEXT = "Hello from the contract suite, twelve words of plain text for you."
TOOL_NAME = "get_weather"
TOOL_ARGS: dict[str, Any] = {"city": "Paris", "unit": "celsius", "days": 3}
WEATHER_TOOL = {"type": "function", "function": {
    "name": TOOL_NAME, "description": "The weather forecast for a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}, "unit": {"type": "string"},
                                                    "days": {"type": "integer"}},
                   "required": ["city"]}}}
# upstream status -> (status, type, code) the client must see; None: any code.
HTTP_ERRORS: dict[str, tuple[int, str, str | None]] = {
    "400": (400, "invalid_request_error", None),
    "401": (403, "permission_error", "upstream_credential_rejected"),
    "429": (429, "rate_limit_error", None),
    "500": (502, "server_error", None),
    "overloaded": (503, "server_error", None),
}
BAD_MODEL_IDS = ["../x", "a/../b", "%2e%2e", "%2e%2e/x", "x/%2E%2E/y"]
DISCONNECT_POLL = 5.0  # seconds the fake gets to notice a client that went away


# -- schemas ---------------------------------------------------------------------------------


# -- fixtures --------------------------------------------------------------------------------


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def http() -> AsyncIterator[UpstreamClient]:
    client = UpstreamClient(Timeouts(connect=5.0, read=10.0, total=15.0))
    yield client
    await client.close()


@dataclass
class Upstream:
    """One provider's translator, its adapter and its running fake, for one test."""

    provider: str
    adapter: Adapter
    translator: Translator
    fake: Any
    credential: Credential
    http: UpstreamClient

    def needs(self, *capabilities: str) -> None:
        for cap in capabilities:
            assert cap in CAPABILITIES, f"the suite asked for an unknown capability {cap!r}"
            if cap in self.adapter.lacks:
                pytest.skip(f"{self.provider} lacks {cap!r} ({CAPABILITIES[cap]}): "
                            f"{self.adapter.why.get(cap, 'no reason given')}")

    def ctx(self, *, model: str | None = None, credential: Credential | None = None) -> CallContext:
        cred = credential or self.credential
        # As proxy/gateway.py builds it: the credential's base_url, else the provider's default.
        base_url = cred.base_url or self.translator.default_base_url
        return CallContext(self.http, cred, model or self.adapter.model, base_url, "req_contract")

    def request(self, *, stream: bool, include_usage: bool = True, tools: bool = False,
                **extra: Any) -> ChatRequest:
        body: dict[str, Any] = {"model": self.adapter.model, "messages": [
            {"role": "system", "content": "You answer briefly."},
            {"role": "user", "content": "Please say hello to the contract suite"}]}
        if stream:
            body["stream"] = True
            body["stream_options"] = {"include_usage": include_usage}
        if tools:
            body["tools"] = [WEATHER_TOOL]
        body.update(extra)
        return ChatRequest.parse(body)

    async def chat(self, **kw: Any) -> dict[str, Any]:
        response = await self.translator.chat(self.request(stream=False, **kw), self.ctx())
        check_schema("chat_completion_response.json", response)
        return response

    def stream(self, **kw: Any) -> AsyncIterator[StreamChunk]:
        return self.translator.chat_stream(self.request(stream=True, **kw), self.ctx())


@pytest.fixture(params=PROVIDERS)
def up(request: pytest.FixtureRequest, http: UpstreamClient) -> Upstream:
    provider: str = request.param
    adapter = ADAPTERS.get(provider)
    if adapter is None:
        pytest.skip(f"no contract adapter for {provider!r} (see test_every_registered_provider_has_an_adapter)")
    fake = adapter.start(request)
    translator = REGISTRY[provider]
    credential = adapter.credential(fake)
    translator.check_credential(credential)
    return Upstream(provider, adapter, translator, fake, credential, http)


# -- helpers ---------------------------------------------------------------------------------


async def collect(chunks: AsyncIterator[StreamChunk]) -> list[StreamChunk]:
    async with aclosing(chunks):  # type: ignore[type-var]
        return [chunk async for chunk in chunks]


def parsed(chunks: list[StreamChunk]) -> list[dict[str, Any]]:
    out = []
    for chunk in chunks:
        body = orjson.loads(chunk.data)
        check_schema("chat_completion_chunk.json", body)
        out.append(body)
    return out


def deltas(bodies: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [choice.get("delta") or {} for body in bodies for choice in body.get("choices") or ()]


def stream_text(bodies: list[dict[str, Any]]) -> str:
    return "".join(d.get("content") or "" for d in deltas(bodies))


def finish_reasons(bodies: list[dict[str, Any]]) -> list[str]:
    return [c["finish_reason"] for b in bodies for c in b.get("choices") or () if c.get("finish_reason")]


def check_stream_shape(bodies: list[dict[str, Any]]) -> None:
    roles = [d for d in deltas(bodies) if "role" in d]
    assert len(roles) == 1, f"expected exactly one role chunk, got {len(roles)}: {bodies[:3]}"
    assert roles[0]["role"] == "assistant"
    first_role = next(i for i, b in enumerate(bodies) if any("role" in (c.get("delta") or {}) for c in b["choices"]))
    before = [b for b in bodies[:first_role] if b.get("choices")]
    assert not before, f"chunks with choices before the role chunk: {before}"
    ids = {b["id"] for b in bodies}
    assert len(ids) == 1, f"one stream, one id (as OpenAI does): {ids}"
    for body in bodies:
        assert body["object"] == "chat.completion.chunk"
        assert all(c["index"] == 0 for c in body["choices"])


def check_usage_chunk(chunks: list[StreamChunk], bodies: list[dict[str, Any]]) -> dict[str, Any]:
    """The usage-only chunk: exactly one, the last, `choices: []`; returns its usage."""
    marked = [i for i, c in enumerate(chunks) if c.usage is not None]
    assert marked == [len(chunks) - 1], f"usage chunk(s) at {marked} of {len(chunks)}: only one, and last"
    last = bodies[-1]
    assert last["choices"] == [], f"the usage chunk carries no choices: {last}"
    with_usage = [i for i, b in enumerate(bodies) if b.get("usage") is not None]
    assert with_usage == [len(bodies) - 1], f"usage appears on chunks {with_usage}, not only on the last"
    usage = last["usage"]
    marked_usage = chunks[-1].usage
    assert marked_usage is not None
    assert (usage["prompt_tokens"], usage["completion_tokens"], usage["total_tokens"]) == (
        marked_usage.prompt_tokens, marked_usage.completion_tokens, marked_usage.total_tokens)
    return usage


def tool_calls_of(bodies: list[dict[str, Any]]) -> dict[int, dict[str, Any]]:
    """Streamed tool-call deltas reassembled by index: {index: {ids, names, types, arguments}}."""
    calls: dict[int, dict[str, Any]] = {}
    for delta in deltas(bodies):
        for piece in delta.get("tool_calls") or ():
            call = calls.setdefault(piece["index"], {"ids": [], "names": [], "types": [], "arguments": ""})
            if piece.get("id"):
                call["ids"].append(piece["id"])
            if piece.get("type"):
                call["types"].append(piece["type"])
            function = piece.get("function") or {}
            if function.get("name"):
                call["names"].append(function["name"])
            call["arguments"] += function.get("arguments") or ""
    return calls


async def through_proxy(chunks: AsyncIterator[StreamChunk], *, include_usage: bool,
                        secrets: tuple[str, ...] = ()) -> tuple[list[bytes], StreamOutcome]:
    outcomes: list[StreamOutcome] = []
    response = await open_stream(chunks, include_usage=include_usage, secrets=secrets, headers={},
                                 on_end=outcomes.append)
    body = b"".join([part async for part in response.body_iterator])  # type: ignore[misc]
    assert len(outcomes) == 1, "on_end is called exactly once"
    return [frame + b"\n\n" for frame in body.split(b"\n\n") if frame], outcomes[0]


def frame_json(frame: bytes) -> dict[str, Any]:
    assert frame.startswith(b"data: ") and frame.endswith(b"\n\n"), frame
    return orjson.loads(frame[6:-2])


async def eventually(predicate: Any, timeout: float = DISCONNECT_POLL) -> bool:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            return bool(predicate())
        await asyncio.sleep(0.02)
    return True


def check_error(err: ApiError, status: int, kind: str, code: str | None = None) -> None:
    assert (err.status, err.type) == (status, kind), f"expected {status} {kind}, got {err!r}"
    if code is not None:
        assert err.code == code, f"expected code {code!r}, got {err!r}"
    assert err.message, "an error needs a message"
    check_schema("error_response.json", err.body())


# -- the adapters themselves ------------------------------------------------------------------


@pytest.mark.parametrize("provider", [
    pytest.param(p, marks=pytest.mark.xfail(reason=f"{p}: adapter pending (PENDING)", strict=False))
    if p in PENDING else p for p in PROVIDERS])
def test_every_registered_provider_has_an_adapter(provider: str) -> None:
    assert provider in ADAPTERS, (f"provider {provider!r} is registered but tests/contract/ has no adapter for it; "
                                  "add one (tests/contract/README.md)")


def test_adapters_load_and_name_registered_providers() -> None:
    assert not PROBLEMS, "\n".join(PROBLEMS)
    unknown = sorted(set(ADAPTERS) - set(REGISTRY))
    assert not unknown, f"adapters for providers that are not registered: {unknown}"


@pytest.mark.parametrize("provider", sorted(ADAPTERS))
def test_adapter_capability_table(provider: str) -> None:
    adapter = ADAPTERS[provider]
    unknown = sorted(set(adapter.lacks) - set(CAPABILITIES))
    assert not unknown, f"{provider}: unknown capabilities in lacks: {unknown} (known: {sorted(CAPABILITIES)})"
    unexplained = sorted(set(adapter.lacks) - set(adapter.why))
    assert not unexplained, f"{provider}: give a reason in `why` for every lacking capability: {unexplained}"
    assert adapter.model and adapter.chat_path.startswith("/") and adapter.fixture


# -- text, finish reasons, usage ----------------------------------------------------------------


async def test_non_stream_text_equals_joined_stream_deltas(up: Upstream) -> None:
    up.needs("stream")
    up.adapter.script_text(up.fake, TEXT)
    response = await up.chat()
    assert response["object"] == "chat.completion" and len(response["choices"]) == 1
    choice = response["choices"][0]
    assert choice["message"]["role"] == "assistant"
    assert choice["message"]["content"] == TEXT
    assert choice["finish_reason"] == "stop"

    chunks = await collect(up.stream())
    bodies = parsed(chunks)
    check_stream_shape(bodies)
    text_chunks = [d for d in deltas(bodies) if d.get("content")]
    assert len(text_chunks) > 1, "the reply should arrive in several deltas"
    assert stream_text(bodies) == choice["message"]["content"]
    assert finish_reasons(bodies) == ["stop"]


async def test_usage_chunk_is_last_single_and_not_summed(up: Upstream) -> None:
    up.needs("stream", "usage")
    up.adapter.script_text(up.fake, TEXT)
    response = await up.chat()
    usage = response.get("usage")
    assert isinstance(usage, dict), f"a non-streamed response carries usage: {response}"
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert usage["prompt_tokens"] > 0 and usage["completion_tokens"] > 0

    for include_usage in (True, False):
        chunks = await collect(up.stream(include_usage=include_usage))
        bodies = parsed(chunks)
        streamed = check_usage_chunk(chunks, bodies)
        assert (streamed["prompt_tokens"], streamed["completion_tokens"]) == (
            usage["prompt_tokens"], usage["completion_tokens"]), \
            f"stream usage {streamed} differs from the non-stream usage {usage} (summed running totals?)"


async def test_stream_frames_through_open_stream(up: Upstream) -> None:
    up.needs("stream")
    up.adapter.script_text(up.fake, TEXT)
    usage_expected = "usage" not in up.adapter.lacks
    for include_usage in (True, False):
        frames, outcome = await through_proxy(up.stream(include_usage=include_usage), include_usage=include_usage)
        assert frames[-1] == DONE and frames.count(DONE) == 1
        bodies = [frame_json(f) for f in frames[:-1]]
        for body in bodies:
            assert "error" not in body, body
            check_schema("chat_completion_chunk.json", body)
        check_stream_shape(bodies)
        assert stream_text(bodies) == TEXT
        usage_frames = [i for i, b in enumerate(bodies) if b.get("usage") is not None]
        if include_usage and usage_expected:
            assert usage_frames == [len(bodies) - 1] and bodies[-1]["choices"] == []
        else:
            assert usage_frames == [], "usage frames only when the client asked (include_usage)"
        assert outcome.status == 200 and outcome.error is None
        if usage_expected:
            assert outcome.usage is not None and outcome.usage.completion_tokens > 0


async def test_finish_reason_length(up: Upstream) -> None:
    up.needs("length")
    extra = up.adapter.script_length(up.fake, TEXT)
    response = await up.chat(**extra)
    choice = response["choices"][0]
    assert choice["finish_reason"] == "length"
    assert choice["message"]["content"] and len(choice["message"]["content"]) < len(TEXT)
    if "stream" in up.adapter.lacks:
        return
    bodies = parsed(await collect(up.stream(**extra)))
    check_stream_shape(bodies)
    assert finish_reasons(bodies) == ["length"]
    assert stream_text(bodies) == choice["message"]["content"]


# -- tool calls -------------------------------------------------------------------------------


async def test_tool_call_non_stream(up: Upstream) -> None:
    up.needs("tools")
    up.adapter.script_tool_call(up.fake, TOOL_NAME, TOOL_ARGS)
    response = await up.chat(tools=True)
    choice = response["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    calls = choice["message"].get("tool_calls")
    assert isinstance(calls, list) and len(calls) == 1, choice
    call = calls[0]
    assert isinstance(call["id"], str) and call["id"]
    assert call["type"] == "function" and call["function"]["name"] == TOOL_NAME
    assert json.loads(call["function"]["arguments"]) == TOOL_ARGS


async def test_tool_call_survives_streaming(up: Upstream) -> None:
    up.needs("tools", "stream")
    up.adapter.script_tool_call(up.fake, TOOL_NAME, TOOL_ARGS)
    response = await up.chat(tools=True)
    chunks = await collect(up.stream(tools=True))
    bodies = parsed(chunks)
    check_stream_shape(bodies)
    assert finish_reasons(bodies) == ["tool_calls"]
    calls = tool_calls_of(bodies)
    assert list(calls) == [0], f"one tool call, on index 0 (renumbered from the vendor's own index): {calls}"
    call = calls[0]
    assert len(call["ids"]) == 1 and call["ids"][0], f"the call's id arrives once: {call}"
    assert call["names"] == [TOOL_NAME], f"the function name arrives once, whole: {call}"
    assert call["types"] in ([], ["function"]), call
    assert json.loads(call["arguments"]) == TOOL_ARGS, call["arguments"]
    text = response["choices"][0]["message"]["content"] or ""
    assert stream_text(bodies) == text, "text beside the tool call matches the non-streamed answer"
    if "usage" not in up.adapter.lacks:
        check_usage_chunk(chunks, bodies)


# -- errors -------------------------------------------------------------------------------------


def _upstream_status(up: Upstream, which: str) -> int:
    if which == "overloaded":
        up.needs("overloaded")
        return up.adapter.overloaded_status
    up.needs("http_errors")
    return int(which)


@pytest.mark.parametrize("which", list(HTTP_ERRORS))
async def test_upstream_http_error_maps(up: Upstream, which: str) -> None:
    status = _upstream_status(up, which)
    expected = HTTP_ERRORS[which]
    up.adapter.script_http_error(up.fake, status)
    with pytest.raises(ApiError) as exc:
        await up.chat()
    check_error(exc.value, *expected)
    if which == "401":
        assert up.provider in exc.value.message, "a rejected credential names the provider that rejected it"


@pytest.mark.parametrize("which", list(HTTP_ERRORS))
async def test_upstream_http_error_maps_before_the_first_byte(up: Upstream, which: str) -> None:
    up.needs("stream")
    status = _upstream_status(up, which)
    up.adapter.script_http_error(up.fake, status)
    chunks = up.stream()
    with pytest.raises(ApiError) as exc:
        await open_stream(chunks, include_usage=True, secrets=up.credential.secret_values(), headers={},
                          on_end=lambda outcome: None)
    check_error(exc.value, *HTTP_ERRORS[which])


async def test_retry_after_is_kept(up: Upstream) -> None:
    up.needs("http_errors", "retry_after")
    up.adapter.script_http_error(up.fake, 429, retry_after=7)
    with pytest.raises(ApiError) as exc:
        await up.chat()
    check_error(exc.value, 429, "rate_limit_error")
    assert exc.value.retry_after == 7


async def test_wrong_credential_is_403_naming_the_provider(up: Upstream) -> None:
    wrong = up.adapter.credential(up.fake, valid=False)
    secrets = wrong.secret_values()
    for streamed in (False, True):
        if streamed and "stream" in up.adapter.lacks:
            continue
        with pytest.raises(ApiError) as exc:
            if streamed:
                await open_stream(up.translator.chat_stream(up.request(stream=True), up.ctx(credential=wrong)),
                                  include_usage=True, secrets=secrets, headers={}, on_end=lambda outcome: None)
            else:
                await up.translator.chat(up.request(stream=False), up.ctx(credential=wrong))
        err = exc.value.scrubbed(secrets)
        check_error(err, 403, "permission_error", "upstream_credential_rejected")
        assert up.provider in err.message
        assert not any(s in err.message for s in secrets)


async def test_error_in_200_body_is_an_error(up: Upstream) -> None:
    up.needs("error_in_200_body")
    expected = up.adapter.script_error_in_200(up.fake)
    with pytest.raises(ApiError) as exc:
        await up.chat()
    err = exc.value
    assert 400 <= err.status < 600, err
    if expected is not None:
        check_error(err, *expected)
    if "stream" in up.adapter.lacks:
        return
    expected = up.adapter.script_error_in_200(up.fake)
    chunks = up.stream()
    with pytest.raises(ApiError) as exc:
        await open_stream(chunks, include_usage=True, secrets=(), headers={}, on_end=lambda outcome: None)
    assert 400 <= exc.value.status < 600, exc.value
    if expected is not None:
        check_error(exc.value, *expected)


async def test_error_after_the_first_chunk_is_raised(up: Upstream) -> None:
    up.needs("stream", "mid_stream_error")
    expected = up.adapter.script_stream_error(up.fake)
    got: list[StreamChunk] = []
    agen = up.stream()
    with pytest.raises(ApiError) as exc:
        async with aclosing(agen):  # type: ignore[type-var]
            async for chunk in agen:
                got.append(chunk)
    assert got, "the adapter scripts the error after the first chunk"
    parsed(got)
    assert 400 <= exc.value.status < 600
    if expected is not None:
        check_error(exc.value, *expected)


async def test_error_after_the_first_byte_is_one_error_frame(up: Upstream) -> None:
    up.needs("stream", "mid_stream_error")
    expected = up.adapter.script_stream_error(up.fake)
    frames, outcome = await through_proxy(up.stream(), include_usage=True, secrets=up.credential.secret_values())
    assert DONE not in frames, "no [DONE] after an error"
    bodies = [frame_json(f) for f in frames]
    errors = [b for b in bodies if "error" in b]
    assert len(errors) == 1 and bodies[-1] is errors[0], f"exactly one error frame, last: {frames}"
    check_schema("error_response.json", errors[0])
    for body in bodies[:-1]:
        check_schema("chat_completion_chunk.json", body)
    assert len(bodies) >= 2, "at least one chunk went out before the error"
    assert outcome.error is not None and outcome.status == outcome.error.status
    if expected is not None:
        assert (outcome.status, errors[0]["error"]["type"]) == expected


# -- client disconnect ---------------------------------------------------------------------------


async def test_closing_the_stream_closes_the_upstream(up: Upstream) -> None:
    up.needs("stream", "disconnect")
    up.adapter.script_slow_stream(up.fake, 0.05)
    before = up.adapter.aborted_streams(up.fake)
    agen = up.stream()
    parsed([await anext(agen)])
    await agen.aclose()  # type: ignore[attr-defined]
    assert await eventually(lambda: up.adapter.aborted_streams(up.fake) > before), \
        f"{up.provider}: the fake did not see the upstream stream closed within {DISCONNECT_POLL}s"


async def test_client_disconnect_through_open_stream_closes_the_upstream(up: Upstream) -> None:
    up.needs("stream", "disconnect")
    up.adapter.script_slow_stream(up.fake, 0.05)
    before = up.adapter.aborted_streams(up.fake)
    outcomes: list[StreamOutcome] = []
    response = await open_stream(up.stream(), include_usage=True, secrets=(), headers={}, on_end=outcomes.append)
    body = response.body_iterator
    check_schema("chat_completion_chunk.json", frame_json(await anext(body)))  # type: ignore[call-overload]
    await body.aclose()  # type: ignore[attr-defined]  # what Starlette does when the client goes away
    assert await eventually(lambda: up.adapter.aborted_streams(up.fake) > before), \
        f"{up.provider}: the fake did not see the upstream stream closed within {DISCONNECT_POLL}s"
    assert [o.status for o in outcomes] == [499]


# -- model ids ----------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", BAD_MODEL_IDS)
async def test_path_changing_model_id_is_rejected(up: Upstream, bad: str) -> None:
    with pytest.raises(ApiError) as exc:
        up.translator.check_model(bad)
    assert exc.value.status == 400 and exc.value.type == "invalid_request_error", exc.value
    # Dispatch as the routing layer does it (check_model, then the call): nothing reaches the fake.
    with pytest.raises(ApiError):
        up.translator.check_model(bad)
        await up.translator.chat(up.request(stream=False), up.ctx(model=bad))
    assert up.adapter.request_paths(up.fake) == []
    # Defence in depth: called directly, a translator refuses the id itself or keeps it out
    # of the URL path.
    try:
        await up.translator.chat(up.request(stream=False), up.ctx(model=bad))
    except ApiError:
        pass
    paths = up.adapter.request_paths(up.fake)
    assert all(p == up.adapter.chat_path for p in paths), f"model id {bad!r} changed the upstream path: {paths}"
