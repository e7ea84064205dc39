"""pytest fixtures serving the fake Baidu ERNIE (a plugin-style module, registered in
tests/conftest.py's ``pytest_plugins``). Fixtures:

- ``fake_ernie_server`` (session): the fake token, chat and embeddings endpoints.
- ``fake_ernie`` (function): the same server with its state reset before and after the test
  (issued tokens are forgotten too, so a cached token is refused with error 110).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from emulators.ernie import API_KEY, SECRET_KEY, FakeErnieState, create_app
from emulators.server import ServedApp


@dataclass
class FakeErnie:
    """A running fake ERNIE: script/inspect `.state`; `.base_url` is the credential's base_url."""

    state: FakeErnieState
    served: ServedApp
    api_key: str = API_KEY
    secret_key: str = SECRET_KEY

    @property
    def base_url(self) -> str:
        return self.served.base_url

    def reset(self) -> None:
        self.state.reset()


@pytest.fixture(scope="session")
def fake_ernie_server() -> Iterator[FakeErnie]:
    state = FakeErnieState()
    with ServedApp(create_app(state)) as served:
        yield FakeErnie(state=state, served=served)


@pytest.fixture
def fake_ernie(fake_ernie_server: FakeErnie) -> Iterator[FakeErnie]:
    fake_ernie_server.reset()
    yield fake_ernie_server
    fake_ernie_server.reset()
