"""pytest fixtures serving the fake OpenAI as DeepSeek, Moonshot and a generic OpenAI-compatible
server (emulators/compatibles.py; a plugin module, see tests/conftest.py). Each is a
`FakeOpenAI` (script/inspect `.state`, point a credential at `.v1_url`):

- ``fake_deepseek_server`` / ``fake_deepseek``
- ``fake_moonshot_server`` / ``fake_moonshot``
- ``fake_compatible_server`` / ``fake_compatible`` (a vLLM-like server; ``state.require_key = False``
  plays one started without a key)

The ``_server`` fixtures live for the session; the others reset the state before and after the test.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pytest

from emulators.compatibles import DEEPSEEK_KEY, MOONSHOT_KEY, FakeDeepSeekState, FakeMoonshotState
from tests.fakes.fixtures import FakeOpenAI
from emulators.openai import DEFAULT_API_KEY, FakeOpenAIState, create_app
from emulators.server import ServedApp


@contextlib.contextmanager
def _served(state: FakeOpenAIState, key: str) -> Iterator[FakeOpenAI]:
    with ServedApp(create_app(state)) as served:
        yield FakeOpenAI(state=state, served=served, api_key=key)


def _fresh(fake: FakeOpenAI) -> Iterator[FakeOpenAI]:
    fake.reset()
    yield fake
    fake.reset()


@pytest.fixture(scope="session")
def fake_deepseek_server() -> Iterator[FakeOpenAI]:
    with _served(FakeDeepSeekState(), DEEPSEEK_KEY) as fake:
        yield fake


@pytest.fixture
def fake_deepseek(fake_deepseek_server: FakeOpenAI) -> Iterator[FakeOpenAI]:
    yield from _fresh(fake_deepseek_server)


@pytest.fixture(scope="session")
def fake_moonshot_server() -> Iterator[FakeOpenAI]:
    with _served(FakeMoonshotState(), MOONSHOT_KEY) as fake:
        yield fake


@pytest.fixture
def fake_moonshot(fake_moonshot_server: FakeOpenAI) -> Iterator[FakeOpenAI]:
    yield from _fresh(fake_moonshot_server)


@pytest.fixture(scope="session")
def fake_compatible_server() -> Iterator[FakeOpenAI]:
    with _served(FakeOpenAIState(), DEFAULT_API_KEY) as fake:
        yield fake


@pytest.fixture
def fake_compatible(fake_compatible_server: FakeOpenAI) -> Iterator[FakeOpenAI]:
    yield from _fresh(fake_compatible_server)
