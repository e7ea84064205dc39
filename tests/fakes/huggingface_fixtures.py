"""pytest fixtures serving the fake Hugging Face (a plugin module, see tests/conftest.py).

- ``fake_hf_server`` (session): the fake, started once per session.
- ``fake_hf`` (function): the same server with its state reset before and after the test.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from emulators.huggingface import DEFAULT_TOKEN, FakeHFState, create_app
from emulators.server import ServedApp


@dataclass
class FakeHF:
    """A running fake Hugging Face: script/inspect `.state`; `.base_url` is the serverless
    API's base, `.endpoint(name)` a dedicated endpoint's URL."""

    state: FakeHFState
    served: ServedApp
    token: str = DEFAULT_TOKEN

    @property
    def base_url(self) -> str:
        return self.served.base_url

    def endpoint(self, name: str) -> str:
        return f"{self.served.base_url}/endpoints/{name}"

    def reset(self) -> None:
        self.state.reset()


@pytest.fixture(scope="session")
def fake_hf_server() -> Iterator[FakeHF]:
    state = FakeHFState()
    with ServedApp(create_app(state)) as served:
        yield FakeHF(state=state, served=served)


@pytest.fixture
def fake_hf(fake_hf_server: FakeHF) -> Iterator[FakeHF]:
    fake_hf_server.reset()
    yield fake_hf_server
    fake_hf_server.reset()
