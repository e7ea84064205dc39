"""pytest fixtures serving the fake vendors (a plugin-style module).

Register in tests/conftest.py with ``pytest_plugins = ["tests.fakes.fixtures"]`` (or import
the fixtures into a test module). Fixtures:

- ``fake_openai_server`` (session): the fake OpenAI vendor, started once per session.
- ``fake_openai`` (function): the same server with its state reset before the test.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from emulators.openai import DEFAULT_API_KEY, FakeOpenAIState, create_app
from emulators.server import ServedApp


@dataclass
class FakeOpenAI:
    """A running fake OpenAI vendor: script/inspect `.state`, call `.v1_url`."""

    state: FakeOpenAIState
    served: ServedApp
    api_key: str = DEFAULT_API_KEY

    @property
    def base_url(self) -> str:
        """`http://127.0.0.1:PORT` (no `/v1`)."""
        return self.served.base_url

    @property
    def v1_url(self) -> str:
        """What an OpenAI client takes as `base_url`."""
        return self.served.base_url + "/v1"

    def reset(self) -> None:
        self.state.reset()

    def client(self, **kwargs: Any) -> Any:
        """An official `openai.OpenAI` client pointed at the fake (kwargs override)."""
        import openai

        options: dict[str, Any] = {"base_url": self.v1_url, "api_key": self.api_key,
                                   "max_retries": 0, "timeout": 10.0}
        options.update(kwargs)
        return openai.OpenAI(**options)


@contextlib.contextmanager
def served_fake_openai() -> Iterator[FakeOpenAI]:
    """A fake OpenAI of its own (another account, another server), stopped on exit."""
    state = FakeOpenAIState()
    with ServedApp(create_app(state)) as served:
        yield FakeOpenAI(state=state, served=served)


@pytest.fixture(scope="session")
def fake_openai_server() -> Iterator[FakeOpenAI]:
    with served_fake_openai() as fake:
        yield fake


@pytest.fixture
def fake_openai(fake_openai_server: FakeOpenAI) -> Iterator[FakeOpenAI]:
    fake_openai_server.reset()
    yield fake_openai_server
    fake_openai_server.reset()
