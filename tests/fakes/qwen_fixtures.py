"""pytest fixtures serving the fake DashScope (Qwen) vendor; registered in tests/conftest.py.

- ``fake_qwen_server`` (session): the fake, started once per session.
- ``fake_qwen`` (function): the same server with its script reset before and after the test.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from emulators.qwen import DEFAULT_API_KEY, FakeQwenState, create_app
from emulators.server import ServedApp


@dataclass
class FakeQwen:
    state: FakeQwenState
    served: ServedApp
    api_key: str = DEFAULT_API_KEY

    @property
    def base_url(self) -> str:
        """`http://127.0.0.1:PORT/api/v1`: the gateway's `base_url` and `dashscope.base_http_api_url`."""
        return self.served.base_url + "/api/v1"

    def reset(self) -> None:
        self.state.reset()


@pytest.fixture(scope="session")
def fake_qwen_server() -> Iterator[FakeQwen]:
    state = FakeQwenState()
    with ServedApp(create_app(state)) as served:
        yield FakeQwen(state=state, served=served)


@pytest.fixture
def fake_qwen(fake_qwen_server: FakeQwen) -> Iterator[FakeQwen]:
    fake_qwen_server.reset()
    yield fake_qwen_server
    fake_qwen_server.reset()
