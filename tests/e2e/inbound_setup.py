"""What the Messages and Responses API suites share: the three fake vendors behind them
(OpenAI, Anthropic, Qwen; `compatible` is the fake OpenAI as an openai_compatible server)
and the tenant's provider commands."""

from __future__ import annotations

from typing import Any

from emulators.anthropic import DEFAULT_API_KEY as ANTHROPIC_KEY
from emulators.openai import DEFAULT_API_KEY as OPENAI_KEY
from emulators.qwen import DEFAULT_API_KEY as QWEN_KEY
from tests.fakes.anthropic_fixtures import FakeAnthropic
from tests.fakes.fixtures import FakeOpenAI
from tests.fakes.qwen_fixtures import FakeQwen


class Fakes:
    def __init__(self, openai: FakeOpenAI, anthropic: FakeAnthropic, qwen: FakeQwen) -> None:
        self.openai, self.anthropic, self.qwen = openai, anthropic, qwen

    def fake(self, provider: str) -> Any:
        return self.openai if provider == "compatible" else getattr(self, provider)

    def script_tool(self, provider: str) -> None:
        if provider == "anthropic":
            self.anthropic.state.tool_uses = [("get_weather", {"city": "Paris"})]
        else:
            self.fake(provider).state.tool_call = ("get_weather", '{"city": "Paris"}')

    def unscript_tool(self) -> None:
        self.openai.state.tool_call = None  # the fake OpenAI calls a tool whenever tools are given

    def seen(self, provider: str) -> dict[str, Any]:
        body = self.fake(provider).state.last_request.json
        assert isinstance(body, dict)
        return body


def provider_commands(openai: FakeOpenAI, anthropic: FakeAnthropic, qwen: FakeQwen) -> list[tuple[str, ...]]:
    """The CLI commands that give a tenant the three providers, each on its fake."""
    return [("providers", "set", "openai", f"api_key={OPENAI_KEY}", f"base_url={openai.v1_url}"),
            ("providers", "set", "anthropic", f"api_key={ANTHROPIC_KEY}", f"base_url={anthropic.base_url}"),
            ("providers", "set", "qwen", f"api_key={QWEN_KEY}", f"base_url={qwen.base_url}")]
