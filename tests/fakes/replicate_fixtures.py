"""pytest fixtures serving the fake Replicate (a plugin module, see tests/conftest.py).

- ``fake_replicate_server`` (session): the fake, started once per session.
- ``fake_replicate`` (function): the same server with its state reset before and after the test.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from emulators.replicate import DEFAULT_TOKEN, FakeReplicateState, create_app
from emulators.server import ServedApp


@dataclass
class FakeReplicate:
    """A running fake Replicate: script/inspect `.state`; `.v1_url` is what the gateway takes
    as `base_url`, `.base_url` what the official client takes."""

    state: FakeReplicateState
    served: ServedApp
    token: str = DEFAULT_TOKEN

    @property
    def base_url(self) -> str:
        return self.served.base_url

    @property
    def v1_url(self) -> str:
        return self.served.base_url + "/v1"

    def reset(self) -> None:
        self.state.reset()


@pytest.fixture(scope="session")
def fake_replicate_server() -> Iterator[FakeReplicate]:
    state = FakeReplicateState()
    with ServedApp(create_app(state)) as served:
        yield FakeReplicate(state=state, served=served)


@pytest.fixture
def fake_replicate(fake_replicate_server: FakeReplicate) -> Iterator[FakeReplicate]:
    fake_replicate_server.reset()
    yield fake_replicate_server
    fake_replicate_server.reset()
