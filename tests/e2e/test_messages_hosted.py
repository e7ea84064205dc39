"""End-to-end: the Messages API (and the Responses API, last test) on a hosted trial (issue 17): a gateway of its own lends the
fake Anthropic on the operator's key with a quota of 2 calls. Checked with the anthropic SDK:
a trial request goes through the chat path (its chat form is what the trial's allow-list
checks: the client's own body never reaches the vendor as it is), costs one call however it
is answered (JSON or stream), and a spent quota is Anthropic's 429 rate_limit_error."""

from __future__ import annotations

from collections.abc import Iterator

import anthropic
import openai
import pytest

from tests.e2e.harness import GatewayProcess
from tests.e2e.hosted_setup import (
    HOSTED_ANTHROPIC_KEY,
    accept_hosted_keys,
    hosted_gateway,
    new_tenant,
)
from emulators.anthropic import DEFAULT_REPLY
from tests.fakes.anthropic_fixtures import FakeAnthropic
from tests.fakes.fixtures import FakeOpenAI

SYSTEM = [{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}]
HELLO = [{"role": "user", "content": "say hello"}]


@pytest.fixture(scope="module")
def hosted(tmp_path_factory: pytest.TempPathFactory, fake_openai_server: FakeOpenAI,
           fake_anthropic_server: FakeAnthropic) -> Iterator[GatewayProcess]:
    with hosted_gateway(tmp_path_factory.mktemp("messages-hosted"), fake_openai_server, fake_anthropic_server,
                        workers=1, quota=2) as gw:
        yield gw


def test_a_trial_serves_the_chat_form_and_counts_one_call_per_request(
        hosted: GatewayProcess, fake_openai: FakeOpenAI, fake_anthropic: FakeAnthropic) -> None:
    accept_hosted_keys(fake_openai, fake_anthropic)
    _, token = new_tenant(hosted)
    client = anthropic.Anthropic(base_url=hosted.base_url, api_key=token, max_retries=0, timeout=15.0)
    with pytest.raises(anthropic.BadRequestError) as caught:  # above the trial's cap: refused, no call spent
        client.messages.create(model="claude-haiku-4-5", max_tokens=32000, messages=HELLO)
    assert caught.value.body["error"]["type"] == "invalid_request_error"
    assert not fake_anthropic.state.requests

    reply = client.messages.with_raw_response.create(model="claude-haiku-4-5", max_tokens=100, system=SYSTEM,
                                                     messages=HELLO)
    assert reply.headers["x-modelport-provider"] == "anthropic" and reply.parse().content[0].text == DEFAULT_REPLY
    seen = fake_anthropic.state.last_request
    assert seen.headers["x-api-key"] == HOSTED_ANTHROPIC_KEY
    assert seen.json["system"] == "Be brief."  # the chat form, translated back: not the client's blocks

    with client.messages.stream(model="claude-haiku-4-5", max_tokens=100, messages=HELLO) as stream:
        assert stream.get_final_message().content[0].text == DEFAULT_REPLY
    with pytest.raises(anthropic.RateLimitError) as spent:
        client.messages.create(model="claude-haiku-4-5", max_tokens=100, messages=HELLO)
    assert spent.value.body["error"]["type"] == "rate_limit_error"
    assert spent.value.response.headers["x-should-retry"] == "false"
    assert len(fake_anthropic.state.requests) == 2


def test_responses_on_a_trial_take_the_chat_path_and_count_one_call_per_request(
        hosted: GatewayProcess, fake_openai: FakeOpenAI, fake_anthropic: FakeAnthropic) -> None:
    """OpenAI's Responses API on the trial of the provider that serves it natively: the chat
    form goes (checked by the allow-list, its output capped), never the client's body to the
    vendor's /v1/responses; kept responses and follow-ups work; one call per request."""
    accept_hosted_keys(fake_openai, fake_anthropic)
    _, token = new_tenant(hosted)
    client = openai.OpenAI(base_url=hosted.v1_url, api_key=token, max_retries=0, timeout=15.0)
    first = client.responses.create(model="gpt-3.5-turbo", input="say hello", metadata={"k": "v"})
    assert first.output_text == "Hello from the fake!" and first.metadata == {"k": "v"}
    seen = fake_openai.state.last_request
    assert seen.path == "/v1/chat/completions" and "metadata" not in seen.json and seen.json["max_tokens"] > 0
    with client.responses.stream(model="gpt-3.5-turbo", previous_response_id=first.id, input="again") as stream:
        follow = stream.get_final_response()
    assert follow.previous_response_id == first.id
    assert [m["content"] for m in fake_openai.state.last_request.json["messages"]] == [
        "say hello", "Hello from the fake!", "again"]
    assert client.responses.retrieve(follow.id).id == follow.id
    with pytest.raises(openai.RateLimitError):
        client.responses.create(model="gpt-3.5-turbo", input="one more")
    assert [r.path for r in fake_openai.state.requests] == ["/v1/chat/completions"] * 2
