"""The fake OpenAI (emulators/openai.py) as the OpenAI-compatible vendors it can play:
a state subclass each, whose defaults are the vendor's ways (they survive `reset()`), and
the vendor's error bodies for tests to script.

- DeepSeek: `deepseek-reasoner` thinks aloud first (`reasoning_content` on the message and
  in stream deltas); its 401 reads "Authentication Fails ..." (type `authentication_error`,
  code `invalid_request_error`); 402 is a spent balance. Per api-docs.deepseek.com's error
  codes page (400, 401, 402, 422, 429, 500, 503).
- Moonshot (Kimi): a stream's usage sits in its finishing choice, always; errors carry
  `message` and `type` only ("Invalid Authentication", `exceeded_current_quota_error`,
  `engine_overloaded_error`, ...), per platform.moonshot's error page.
- A generic OpenAI-compatible server (vLLM, Ollama, ...): the plain fake; `require_key=False`
  plays one started without a key.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from emulators._openai_wire import OpenAIHTTPError
from emulators.openai import FakeOpenAIState

__all__ = ["DEEPSEEK_KEY", "MOONSHOT_KEY", "FakeDeepSeekState", "FakeMoonshotState", "deepseek_error",
           "moonshot_error"]

DEEPSEEK_KEY = "sk-fake-deepseek-0000000000000000"
MOONSHOT_KEY = "sk-fake-moonshot-000000000000000000000000"


def deepseek_error(message: str, type: str = "invalid_request_error") -> dict[str, Any]:  # noqa: A002
    return {"error": {"message": message, "type": type, "param": None, "code": "invalid_request_error"}}


def moonshot_error(message: str, type: str) -> dict[str, Any]:  # noqa: A002
    return {"error": {"message": message, "type": type}}


def _masked(key: str) -> str:
    return "****" + key[-4:]


@dataclass
class FakeDeepSeekState(FakeOpenAIState):
    no_request_message = "the fake DeepSeek server received no request"

    api_keys: set[str] = field(default_factory=lambda: {DEEPSEEK_KEY})
    reasoning_models: frozenset[str] = frozenset({"deepseek-reasoner"})

    def unauthorized(self, key: str | None) -> OpenAIHTTPError:
        message = ("Authentication Fails (auth header format should be Bearer sk-...)" if key is None
                   else f"Authentication Fails, Your api key: {_masked(key)} is invalid")
        return OpenAIHTTPError(401, message, type="authentication_error", code="invalid_request_error")


@dataclass
class FakeMoonshotState(FakeOpenAIState):
    no_request_message = "the fake Moonshot server received no request"

    api_keys: set[str] = field(default_factory=lambda: {MOONSHOT_KEY})
    usage_in_choice: bool = True

    def unauthorized(self, key: str | None) -> OpenAIHTTPError:
        error = OpenAIHTTPError(401, "Invalid Authentication")
        error.body = moonshot_error("Invalid Authentication", "invalid_authentication_error")  # no param, no code
        return error
