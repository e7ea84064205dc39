"""pytest fixtures serving the fake ChatGLM servers and the fake Zhipu vendor; registered in
tests/conftest.py.

- ``fake_chatglm_native_server`` / ``fake_chatglm_openai_server`` (session): ChatGLM2-6B's
  api.py and openai_api.py; ``fake_chatglm_native`` / ``fake_chatglm_openai`` reset them per test.
- ``fake_zhipu_server`` (session) / ``fake_zhipu`` (function): Zhipu's hosted v4 API.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from emulators import chatglm, zhipu
from emulators.server import ServedApp


@dataclass
class FakeChatGLM:
    state: chatglm.FakeChatGLMState
    served: ServedApp
    api: str

    @property
    def base_url(self) -> str:
        """The server's root, what the chatglm credential's `base_url` takes."""
        return self.served.base_url

    def reset(self) -> None:
        self.state.reset()


@dataclass
class FakeZhipu:
    state: zhipu.FakeZhipuState
    served: ServedApp
    api_key: str = zhipu.DEFAULT_API_KEY

    @property
    def base_url(self) -> str:
        return self.served.base_url + "/api/paas/v4"

    def reset(self) -> None:
        self.state.reset()


def _serve_chatglm(api: str) -> Iterator[FakeChatGLM]:
    state = chatglm.FakeChatGLMState()
    with ServedApp(chatglm.create_app(state, api)) as served:
        yield FakeChatGLM(state=state, served=served, api=api)


@pytest.fixture(scope="session")
def fake_chatglm_native_server() -> Iterator[FakeChatGLM]:
    yield from _serve_chatglm("native")


@pytest.fixture(scope="session")
def fake_chatglm_openai_server() -> Iterator[FakeChatGLM]:
    yield from _serve_chatglm("openai")


@pytest.fixture(scope="session")
def fake_zhipu_server() -> Iterator[FakeZhipu]:
    state = zhipu.FakeZhipuState()
    with ServedApp(zhipu.create_app(state)) as served:
        yield FakeZhipu(state=state, served=served)


@pytest.fixture
def fake_chatglm_native(fake_chatglm_native_server: FakeChatGLM) -> Iterator[FakeChatGLM]:
    fake_chatglm_native_server.reset()
    yield fake_chatglm_native_server
    fake_chatglm_native_server.reset()


@pytest.fixture
def fake_chatglm_openai(fake_chatglm_openai_server: FakeChatGLM) -> Iterator[FakeChatGLM]:
    fake_chatglm_openai_server.reset()
    yield fake_chatglm_openai_server
    fake_chatglm_openai_server.reset()


@pytest.fixture
def fake_zhipu(fake_zhipu_server: FakeZhipu) -> Iterator[FakeZhipu]:
    fake_zhipu_server.reset()
    yield fake_zhipu_server
    fake_zhipu_server.reset()
