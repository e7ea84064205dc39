"""End-to-end: OpenAI's Responses API served by a real `modelport serve` (issue 17), called with
the official openai SDK (`client.responses`) and raw HTTP where the bytes matter.

One tenant of this module's own has four providers: OpenAI (fake, its own /v1/responses:
native), an OpenAI-compatible server (the same fake, reached through the chat path:
translated), Anthropic (fake, translated) and Qwen (fake DashScope, a Chinese provider,
translated); its default llm a Qwen model. Each test checks what the client got and what reached the fake upstream;
streams are checked against OpenAI's documented event order (`documented_order`). Kept
responses: `previous_response_id`, retrieve, delete, input_items, and another tenant's 404.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from tests.e2e.harness import GatewayProcess, ProviderTenant, provider_tenant
from tests.e2e.hosted_setup import usage_rows, wait_until
from tests.e2e.inbound_setup import Fakes, provider_commands
from emulators.anthropic import DEFAULT_REPLY as ANTHROPIC_REPLY
from tests.fakes.anthropic_fixtures import FakeAnthropic
from tests.fakes.fixtures import FakeOpenAI
from emulators.openai import DEFAULT_API_KEY as OPENAI_KEY
from emulators.qwen import DEFAULT_REPLY as QWEN_REPLY
from tests.fakes.qwen_fixtures import FakeQwen

MODELS = {"openai": "openai/gpt-4o-mini", "compatible": "openai_compatible/gpt-4o-mini",
          "anthropic": "anthropic/claude-haiku-4-5", "qwen": "qwen/qwen-plus"}
REPLIES = {"openai": "Hello from the fake!", "compatible": "Hello from the fake!", "anthropic": ANTHROPIC_REPLY,
           "qwen": QWEN_REPLY}
TRANSLATED = ["compatible", "anthropic", "qwen"]
WEATHER_TOOL: Any = {"type": "function", "name": "get_weather", "description": "Weather in a city",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}


@pytest.fixture(scope="module")
def tenant(gateway: GatewayProcess, fake_openai_server: FakeOpenAI, fake_anthropic_server: FakeAnthropic,
           fake_qwen_server: FakeQwen) -> Iterator[ProviderTenant]:
    with provider_tenant(gateway, "resp", [
            *provider_commands(fake_openai_server, fake_anthropic_server, fake_qwen_server),
            ("models", "add", "openai_compatible", "gpt-4o-mini", "--type", "llm",
             f"base_url={fake_openai_server.v1_url}", f"api_key={OPENAI_KEY}"),
            ("defaults", "set", "llm", MODELS["qwen"]),
    ]) as made:
        yield made


@pytest.fixture
def fakes(fake_openai: FakeOpenAI, fake_anthropic: FakeAnthropic, fake_qwen: FakeQwen) -> Fakes:
    return Fakes(fake_openai, fake_anthropic, fake_qwen)


@pytest.fixture
def client(gateway: GatewayProcess, tenant: ProviderTenant) -> Iterator[openai.OpenAI]:
    sdk = openai.OpenAI(base_url=gateway.v1_url, api_key=tenant.token, max_retries=0, timeout=15.0)
    yield sdk
    sdk.close()


def documented_order(events: list[tuple[str, dict[str, Any]]]) -> None:
    """OpenAI's Responses stream grammar: response.created, response.in_progress; per output
    item (output_index from 0) output_item.added, its content (a message: content_part.added,
    output_text.delta ..., output_text.done, content_part.done; a function call:
    function_call_arguments.delta ..., .done), output_item.done; then response.completed or
    response.incomplete last. Every event's data names its type; sequence numbers count from 0."""
    assert all(data["type"] == name for name, data in events), events
    assert [d["sequence_number"] for _, d in events] == list(range(len(events)))
    names = [name for name, _ in events]
    assert names[:2] == ["response.created", "response.in_progress"], names
    assert names[-1] in ("response.completed", "response.incomplete") and names.count(names[-1]) == 1
    expected: list[str] = []
    for index, item in enumerate(events[-1][1]["response"]["output"]):
        added = next(d for n, d in events if n == "response.output_item.added" and d["output_index"] == index)
        assert added["item"]["id"] == item["id"] and added["item"]["type"] == item["type"]
        expected.append("response.output_item.added")
        mine = [n for n, d in events if d.get("output_index") == index and n != "response.output_item.added"
                and n != "response.output_item.done"]
        if item["type"] == "message":
            assert mine[0] == "response.content_part.added" and mine[-2:] == [
                "response.output_text.done", "response.content_part.done"], mine
            assert set(mine[1:-2]) == {"response.output_text.delta"}
        else:
            assert mine[-1] == "response.function_call_arguments.done", mine
            assert set(mine[:-1]) <= {"response.function_call_arguments.delta"}
        expected += mine + ["response.output_item.done"]
    assert names[2:-1] == expected, names


def sse_events(body: bytes) -> list[tuple[str, dict[str, Any]]]:
    events = []
    for block in body.decode().split("\n\n"):
        if block.strip():
            fields = dict(line.split(": ", 1) for line in block.split("\n"))
            events.append((fields["event"], json.loads(fields["data"])))
    return events


def streamed(client: openai.OpenAI, **params: Any) -> tuple[list[tuple[str, dict[str, Any]]], Any]:
    """The events of a `responses.stream` (the SDK's own checks of their order applied) and its final response."""
    with client.responses.stream(**params) as stream:
        events: list[tuple[str, dict[str, Any]]] = [(str(e.type), e.model_dump()) for e in stream]
        return events, stream.get_final_response()


# -- text ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("provider", list(MODELS))
def test_create_text(client: openai.OpenAI, fakes: Fakes, provider: str) -> None:
    raw = client.responses.with_raw_response.create(
        model=MODELS[provider], instructions="You are terse.", input="say hello", max_output_tokens=200,
        temperature=0.5, top_p=0.9, metadata={"run": "e2e"})
    assert raw.headers["x-modelport-provider"] == MODELS[provider].split("/")[0] and raw.headers["x-request-id"]
    response = raw.parse()
    assert response.object == "response" and response.id.startswith("resp_") and response.status == "completed"
    assert response.output_text == REPLIES[provider]
    assert [item.type for item in response.output] == ["message"]
    assert response.metadata == {"run": "e2e"} and response.instructions == "You are terse."
    assert response.usage is not None and response.usage.input_tokens > 0
    assert response.usage.output_tokens == len(REPLIES[provider].split())
    assert response.usage.total_tokens == response.usage.input_tokens + response.usage.output_tokens
    seen = fakes.seen(provider)
    if provider == "openai":  # native: the client's own body, the routed model in it
        assert fakes.openai.state.last_request.path == "/v1/responses"
        assert seen == {"model": "gpt-4o-mini", "instructions": "You are terse.", "input": "say hello",
                        "max_output_tokens": 200, "temperature": 0.5, "top_p": 0.9, "metadata": {"run": "e2e"}}
    elif provider == "compatible":
        assert seen["messages"] == [{"role": "system", "content": "You are terse."},
                                    {"role": "user", "content": "say hello"}]
        assert (seen["max_tokens"], seen["temperature"], seen["top_p"]) == (200, 0.5, 0.9)
        assert "metadata" not in seen and "store" not in seen
    elif provider == "qwen":
        assert seen["input"]["messages"][0] == {"role": "system", "content": "You are terse."}
    else:
        assert seen["system"] and seen["max_tokens"] == 200


@pytest.mark.parametrize("provider", list(MODELS))
def test_stream_text(client: openai.OpenAI, fakes: Fakes, provider: str) -> None:
    whole = client.responses.create(model=MODELS[provider], input="say hello", store=False)
    events, final = streamed(client, model=MODELS[provider], input="say hello")
    documented_order(events)
    assert final.output_text == REPLIES[provider] and final.status == "completed"
    assert final.usage is not None and whole.usage is not None
    assert (final.usage.input_tokens, final.usage.output_tokens) == (whole.usage.input_tokens,
                                                                     whole.usage.output_tokens)
    deltas = [d["delta"] for n, d in events if n == "response.output_text.delta"]
    assert len(deltas) > 1 and "".join(deltas) == REPLIES[provider]


def test_raw_stream_framing_and_create_stream_true(gateway: GatewayProcess, tenant: ProviderTenant,
                                                   client: openai.OpenAI) -> None:
    reply = httpx.post(f"{gateway.v1_url}/responses", headers={"Authorization": f"Bearer {tenant.token}"},
                       json={"model": "default", "input": "hi", "stream": True}, timeout=15)
    assert reply.status_code == 200 and reply.headers["content-type"].startswith("text/event-stream")
    events = sse_events(reply.content)
    documented_order(events)
    assert b"[DONE]" not in reply.content
    names = [e.type for e in client.responses.create(model="default", input="hi", stream=True)]
    assert names[0] == "response.created" and names[-1] == "response.completed"


def test_default_model_and_max_output_tokens_cut(client: openai.OpenAI, fakes: Fakes) -> None:
    response = client.responses.create(model="default", input="say hello", max_output_tokens=2)
    assert fakes.seen("qwen")["model"] == "qwen-plus"
    assert response.status == "incomplete" and response.incomplete_details is not None
    assert response.incomplete_details.reason == "max_output_tokens" and response.usage is not None
    assert response.usage.output_tokens == 2
    with client.responses.stream(model="default", input="say hello", max_output_tokens=2) as stream:
        events: list[tuple[str, dict[str, Any]]] = [(str(e.type), e.model_dump()) for e in stream]
    assert events[-1][0] == "response.incomplete"
    assert events[-1][1]["response"]["incomplete_details"] == {"reason": "max_output_tokens"}
    documented_order(events)


def test_text_format_json_schema(client: openai.OpenAI, fakes: Fakes) -> None:
    schema = {"type": "object", "properties": {"greeting": {"type": "string"}}, "required": ["greeting"],
              "additionalProperties": False}
    client.responses.create(model=MODELS["compatible"], input="hi", text={"format": {
        "type": "json_schema", "name": "greeting", "schema": schema, "strict": True}})
    assert fakes.seen("compatible")["response_format"] == {"type": "json_schema", "json_schema": {
        "name": "greeting", "schema": schema, "strict": True}}


# -- tools -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True], ids=["create", "stream"])
@pytest.mark.parametrize("provider", list(MODELS))
def test_function_tool_round_trip(client: openai.OpenAI, fakes: Fakes, provider: str, stream: bool) -> None:
    fakes.script_tool(provider)
    params: dict[str, Any] = {"model": MODELS[provider], "tools": [WEATHER_TOOL], "tool_choice": "required",
                              "input": "What is the weather in Paris?"}
    if stream:
        events, first = streamed(client, **params)
        documented_order(events)
        pieces = [d["delta"] for n, d in events if n == "response.function_call_arguments.delta"]
        assert json.loads("".join(pieces)) == {"city": "Paris"}
    else:
        first = client.responses.create(**params)
    [call] = [item for item in first.output if item.type == "function_call"]
    assert call.name == "get_weather" and json.loads(call.arguments) == {"city": "Paris"} and call.call_id
    if provider == "compatible":
        seen = fakes.seen("compatible")
        assert seen["tool_choice"] == "required"
        assert seen["tools"] == [{"type": "function", "function": {
            "name": "get_weather", "description": "Weather in a city", "parameters": WEATHER_TOOL["parameters"]}}]
    fakes.unscript_tool()
    # The round trip: the call and its output as input items, the earlier turn by previous_response_id.
    final = client.responses.create(model=MODELS[provider], tools=[WEATHER_TOOL], previous_response_id=first.id,
                                    input=[{"type": "function_call_output", "call_id": call.call_id,
                                            "output": "18 degrees and sunny"}])
    assert final.status == "completed" and final.output_text == REPLIES[provider]
    # OpenAI's own endpoint gets the kept conversation instead of the id (below): it echoes none.
    assert final.previous_response_id == (None if provider == "openai" else first.id)
    seen = fakes.seen(provider)
    if provider == "openai":  # native: the kept conversation as input items, not the id
        assert "previous_response_id" not in seen
        assert [i.get("type") for i in seen["input"]] == ["message", "function_call", "function_call_output"]
        assert seen["input"][1]["call_id"] == call.call_id
    elif provider == "compatible":
        assert seen["messages"][0] == {"role": "user", "content": "What is the weather in Paris?"}
        assert seen["messages"][1]["tool_calls"] == [{"id": call.call_id, "type": "function", "function": {
            "name": "get_weather", "arguments": call.arguments}}]
        assert seen["messages"][2] == {"role": "tool", "tool_call_id": call.call_id, "content": "18 degrees and sunny"}
    elif provider == "qwen":
        assert seen["input"]["messages"][-1]["role"] == "tool"
        assert seen["input"]["messages"][-1]["content"] == "18 degrees and sunny"
    else:
        assert seen["messages"][-1]["content"][0]["type"] == "tool_result"


def test_builtin_tools_are_a_400_naming_the_tool(client: openai.OpenAI, fakes: Fakes) -> None:
    tools: list[Any] = [{"type": "web_search"}, {"type": "file_search", "vector_store_ids": ["vs_1"]},
                        {"type": "code_interpreter", "container": {"type": "auto"}}]
    for provider in TRANSLATED:
        for tool in tools:
            with pytest.raises(openai.BadRequestError) as caught:
                client.responses.create(model=MODELS[provider], input="hi", tools=[tool])
            assert tool["type"] in caught.value.message
    assert not fakes.openai.state.requests and not fakes.qwen.state.requests and not fakes.anthropic.state.requests
    # ... unless the provider serves them natively: OpenAI's own endpoint gets the tool as sent.
    answer = client.responses.create(model=MODELS["openai"], input="hi", tools=[tools[0]])
    assert answer.status == "completed" and fakes.seen("openai")["tools"] == [tools[0]]


# -- kept responses --------------------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True], ids=["create", "stream"])
@pytest.mark.parametrize("provider", list(MODELS))
def test_previous_response_id_follow_up(client: openai.OpenAI, fakes: Fakes, provider: str, stream: bool) -> None:
    if stream:
        _, first = streamed(client, model=MODELS[provider], instructions="Be brief.", input="My name is Ada.")
    else:
        first = client.responses.create(model=MODELS[provider], instructions="Be brief.", input="My name is Ada.")
    follow = client.responses.create(model=MODELS[provider], previous_response_id=first.id, input="What is my name?")
    assert follow.previous_response_id == (None if provider == "openai" else first.id)
    assert follow.output_text == REPLIES[provider]
    seen = fakes.seen(provider)
    texts = json.dumps(seen, ensure_ascii=False)
    assert "My name is Ada." in texts and REPLIES[provider] in texts and "What is my name?" in texts
    assert "Be brief." not in texts  # instructions are not carried over, as OpenAI does
    again = client.responses.retrieve(first.id)
    assert again.id == first.id and again.output_text == REPLIES[provider]


@pytest.mark.parametrize("first_on, then_on", [("qwen", "openai"), ("openai", "anthropic")])
def test_a_conversation_moves_between_providers(client: openai.OpenAI, fakes: Fakes, first_on: str,
                                                then_on: str) -> None:
    first = client.responses.create(model=MODELS[first_on], input="My name is Ada.")
    follow = client.responses.create(model=MODELS[then_on], previous_response_id=first.id, input="My name?")
    assert follow.output_text == REPLIES[then_on]
    texts = json.dumps(fakes.seen(then_on), ensure_ascii=False)
    assert "My name is Ada." in texts and REPLIES[first_on] in texts and "My name?" in texts


def test_retrieve_delete_input_items_and_other_tenants(gateway: GatewayProcess, client: openai.OpenAI,
                                                      fake_openai_server: FakeOpenAI) -> None:
    made = client.responses.create(model=MODELS["openai"], input=[
        {"role": "user", "content": "first"}, {"role": "user", "content": [{"type": "input_text", "text": "second"}]}])
    got = client.responses.retrieve(made.id)
    assert got.model_dump() == made.model_dump()
    items = client.responses.input_items.list(made.id, order="asc")
    assert [i.model_dump()["content"][0]["text"] for i in items.data] == ["first", "second"]
    assert [i.model_dump()["content"][0]["text"] for i in client.responses.input_items.list(made.id).data] == [
        "second", "first"]
    with provider_tenant(gateway, "resp-other", [
            ("providers", "set", "openai", f"api_key={OPENAI_KEY}", f"base_url={fake_openai_server.v1_url}")]) as other:
        stranger = openai.OpenAI(base_url=gateway.v1_url, api_key=other.token, max_retries=0)
        for attempt in (lambda: stranger.responses.retrieve(made.id),
                        lambda: stranger.responses.input_items.list(made.id),
                        lambda: stranger.responses.delete(made.id),
                        lambda: stranger.responses.create(model=MODELS["openai"], input="hi",
                                                          previous_response_id=made.id)):
            with pytest.raises(openai.NotFoundError):
                attempt()
    client.responses.delete(made.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(made.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.delete(made.id)
    unstored = client.responses.create(model=MODELS["openai"], input="hi", store=False)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(unstored.id)


# -- errors and usage ------------------------------------------------------------------------------------


def test_errors_are_openai_shaped(gateway: GatewayProcess, tenant: ProviderTenant, fakes: Fakes) -> None:
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=gateway.v1_url, api_key="mp-not-a-key", max_retries=0).responses.create(
            model="default", input="hi")
    url, headers = f"{gateway.v1_url}/responses", {"Authorization": f"Bearer {tenant.token}"}
    reply = httpx.post(url, headers=headers, json={"model": "default", "input": "hi", "temperature": 9})
    assert reply.status_code == 400 and reply.json()["error"]["param"] == "temperature"
    reply = httpx.post(url, headers=headers, json={"model": "no-such-model", "input": "hi"})
    assert reply.status_code == 404 and reply.json()["error"]["message"]


def test_failure_mid_stream_is_response_failed(gateway: GatewayProcess, tenant: ProviderTenant,
                                               fakes: Fakes) -> None:
    fakes.openai.state.fail_after_chunks = 2
    reply = httpx.post(f"{gateway.v1_url}/responses", headers={"Authorization": f"Bearer {tenant.token}"},
                       json={"model": MODELS["compatible"], "input": "hi", "stream": True}, timeout=15)
    events = sse_events(reply.content)
    assert events[0][0] == "response.created" and events[-1][0] == "response.failed"
    assert "response.completed" not in [n for n, _ in events]
    assert events[-1][1]["response"]["error"]["message"]


def test_usage_rows_say_responses(gateway: GatewayProcess, fake_openai_server: FakeOpenAI, fakes: Fakes) -> None:
    with provider_tenant(gateway, "resp-usage", [
            ("providers", "set", "openai", f"api_key={OPENAI_KEY}", f"base_url={fake_openai_server.v1_url}")]) as made:
        sdk = openai.OpenAI(base_url=gateway.v1_url, api_key=made.token, max_retries=0)
        sdk.responses.create(model=MODELS["openai"], input="hi")
        streamed(sdk, model=MODELS["openai"], input="hi")
        wait_until(lambda: len(usage_rows(gateway, made.name)) == 2, timeout=10)
        rows = sorted(usage_rows(gateway, made.name), key=lambda r: r["stream"])
    assert [(r["endpoint"], r["provider"], r["stream"], r["status"]) for r in rows] == [
        ("responses", "openai", 0, 200), ("responses", "openai", 1, 200)]
    assert all(r["completion_tokens"] == len(REPLIES["openai"].split()) for r in rows)
