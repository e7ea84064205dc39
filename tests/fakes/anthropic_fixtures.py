"""pytest fixtures serving the fake Anthropic vendor (a plugin-style module).

Registered in tests/conftest.py's ``pytest_plugins``. Fixtures:

- ``fake_anthropic_server`` (session): the fake Messages API, started once per session.
- ``fake_anthropic`` (function): the same server with its state reset before and after the test.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from emulators.anthropic import DEFAULT_API_KEY, FakeAnthropicState, create_app
from emulators.server import ServedApp


@dataclass
class FakeAnthropic:
    """A running fake Anthropic vendor: script/inspect `.state`, point clients at `.base_url`."""

    state: FakeAnthropicState
    served: ServedApp
    api_key: str = DEFAULT_API_KEY

    @property
    def base_url(self) -> str:
        """`http://127.0.0.1:PORT`: what the anthropic SDK and the gateway's `base_url` take."""
        return self.served.base_url

    def reset(self) -> None:
        self.state.reset()

    def client(self, **kwargs: Any) -> Any:
        """An official `anthropic.Anthropic` client pointed at the fake (kwargs override)."""
        import anthropic

        options: dict[str, Any] = {"base_url": self.base_url, "api_key": self.api_key,
                                   "max_retries": 0, "timeout": 10.0}
        options.update(kwargs)
        return anthropic.Anthropic(**options)


@pytest.fixture(scope="session")
def fake_anthropic_server() -> Iterator[FakeAnthropic]:
    state = FakeAnthropicState()
    with ServedApp(create_app(state)) as served:
        yield FakeAnthropic(state=state, served=served)


@pytest.fixture
def fake_anthropic(fake_anthropic_server: FakeAnthropic) -> Iterator[FakeAnthropic]:
    fake_anthropic_server.reset()
    yield fake_anthropic_server
    fake_anthropic_server.reset()
