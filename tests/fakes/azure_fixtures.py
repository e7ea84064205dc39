"""pytest fixtures serving the fake Azure OpenAI resource (a plugin module, see tests/conftest.py).

- ``fake_azure_server`` (session): the fake, started once per session.
- ``fake_azure`` (function): the same server with its state reset before and after the test.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from emulators.azure_openai import (
    API_VERSION,
    DEFAULT_API_KEY,
    FakeAzureState,
    create_app,
)
from emulators.server import ServedApp


@dataclass
class FakeAzure:
    """A running fake Azure OpenAI resource: script/inspect `.state`, call `.endpoint`."""

    state: FakeAzureState
    served: ServedApp
    api_key: str = DEFAULT_API_KEY
    api_version: str = API_VERSION

    @property
    def endpoint(self) -> str:
        """What Azure calls the resource endpoint: `http://127.0.0.1:PORT` (the fake is loopback)."""
        return self.served.base_url

    def reset(self) -> None:
        self.state.reset()

    def client(self, **kwargs: Any) -> Any:
        """An official `openai.AzureOpenAI` client pointed at the fake (kwargs override)."""
        import openai

        options: dict[str, Any] = {"azure_endpoint": self.endpoint, "api_key": self.api_key,
                                   "api_version": self.api_version, "max_retries": 0, "timeout": 10.0}
        options.update(kwargs)
        return openai.AzureOpenAI(**options)


@pytest.fixture(scope="session")
def fake_azure_server() -> Iterator[FakeAzure]:
    state = FakeAzureState()
    with ServedApp(create_app(state)) as served:
        yield FakeAzure(state=state, served=served)


@pytest.fixture
def fake_azure(fake_azure_server: FakeAzure) -> Iterator[FakeAzure]:
    fake_azure_server.reset()
    yield fake_azure_server
    fake_azure_server.reset()
