"""pytest fixtures serving the fake MiniMax vendor; registered in tests/conftest.py.

- ``fake_minimax_server`` (session): the fake, started once per session.
- ``fake_minimax`` (function): the same server with its script reset before and after the test.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from emulators.minimax import (
    DEFAULT_API_KEY,
    DEFAULT_GROUP_ID,
    FakeMinimaxState,
    create_app,
)
from emulators.server import ServedApp


@dataclass
class FakeMinimax:
    state: FakeMinimaxState
    served: ServedApp
    api_key: str = DEFAULT_API_KEY
    group_id: str = DEFAULT_GROUP_ID

    @property
    def base_url(self) -> str:
        """`http://127.0.0.1:PORT/v1`: what the gateway's `base_url` takes."""
        return self.served.base_url + "/v1"

    def reset(self) -> None:
        self.state.reset()


@pytest.fixture(scope="session")
def fake_minimax_server() -> Iterator[FakeMinimax]:
    state = FakeMinimaxState()
    with ServedApp(create_app(state)) as served:
        yield FakeMinimax(state=state, served=served)


@pytest.fixture
def fake_minimax(fake_minimax_server: FakeMinimax) -> Iterator[FakeMinimax]:
    fake_minimax_server.reset()
    yield fake_minimax_server
    fake_minimax_server.reset()
