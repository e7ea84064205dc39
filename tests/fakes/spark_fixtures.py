"""pytest fixtures serving the fake iFlytek Spark (a plugin-style module, registered in
tests/conftest.py's ``pytest_plugins``). Fixtures:

- ``fake_spark_server`` (session): the fake websocket + HTTP API, started once per session.
- ``fake_spark`` (function): the same server with its state reset before and after the test.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from emulators.server import ServedApp
from emulators.spark import (
    API_KEY,
    API_PASSWORD,
    API_SECRET,
    APP_ID,
    FakeSparkState,
    create_app,
)


@dataclass
class FakeSpark:
    """A running fake Spark: script/inspect `.state`; `.ws_url` and `.http_url` are base URLs."""

    state: FakeSparkState
    served: ServedApp
    app_id: str = APP_ID
    api_key: str = API_KEY
    api_secret: str = API_SECRET
    api_password: str = API_PASSWORD

    @property
    def ws_url(self) -> str:
        """`ws://127.0.0.1:PORT`: the websocket credential's `base_url`."""
        return self.served.base_url.replace("http://", "ws://", 1)

    @property
    def http_url(self) -> str:
        """`http://127.0.0.1:PORT/v1`: the HTTP-API credential's `base_url`."""
        return self.served.base_url + "/v1"

    def reset(self) -> None:
        self.state.reset()


@pytest.fixture(scope="session")
def fake_spark_server() -> Iterator[FakeSpark]:
    state = FakeSparkState()
    with ServedApp(create_app(state)) as served:
        yield FakeSpark(state=state, served=served)


@pytest.fixture
def fake_spark(fake_spark_server: FakeSpark) -> Iterator[FakeSpark]:
    fake_spark_server.reset()
    yield fake_spark_server
    fake_spark_server.reset()
