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

Their words for the emulators' injected faults (`emulators/inject.py`), in their own bodies:

    kind        DeepSeek                                  Moonshot
    401         401 authentication_error                  401 invalid_authentication_error
    429         429 "Rate Limit Reached", Retry-After     429 rate_limit_reached_error, Retry-After
    500         500 "Server Error"                        500 server_error
    overloaded  503 "Server Overloaded"                   429 engine_overloaded_error (Moonshot's own)
    error-200   the error body in a 200; a stream: one chunk, then the error event, no [DONE]

DeepSeek's messages are its error-codes page's headings and causes; the page shows no body,
so the shape is its 401's and the types other than authentication_error are ours. Moonshot's
types are its error page's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from starlette.responses import Response

from emulators._faults_openai import error_in_200
from emulators._openai_wire import OpenAIHTTPError
from emulators._vendor_common import json_response
from emulators.inject import Asked
from emulators.openai import FakeOpenAIState
from emulators.scripting import Fault

__all__ = ["DEEPSEEK_KEY", "MOONSHOT_KEY", "FakeDeepSeekState", "FakeMoonshotState", "deepseek_error",
           "deepseek_faults", "moonshot_error", "moonshot_faults"]

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


# -- the emulators' injected faults -------------------------------------------------------------------

_FAULT_KEY = "sk-emulator-fault"  # the key a 401 names: the request's own is not at hand here


def _answer(fault: Fault, asked: Asked, errors: dict[str, tuple[int, dict[str, Any]]],
            in_200: dict[str, Any]) -> Response:
    if fault.kind == "error-200":
        return error_in_200(asked, in_200)
    status, body = errors[fault.kind]
    # Only a rate limit says when to come back (Moonshot's overload is a 429 too, without it).
    headers = {"retry-after": fault.retry_after} if fault.kind == "429" else None
    return json_response(body, status, headers)


def deepseek_faults(fault: Fault, asked: Asked) -> Response:
    errors = {
        "401": (401, deepseek_error(f"Authentication Fails, Your api key: {_masked(_FAULT_KEY)} is invalid",
                                    "authentication_error")),
        "429": (429, deepseek_error("Rate Limit Reached: you are sending requests too quickly.",
                                    "rate_limit_reached_error")),
        "500": (500, deepseek_error("Server Error: our server encountered an issue.", "server_error")),
        "overloaded": (503, deepseek_error("Server Overloaded: the server is overloaded due to high traffic.",
                                           "server_overloaded_error")),
    }
    return _answer(fault, asked, errors, deepseek_error("Server Error: our server encountered an issue.",
                                                        "server_error"))


def moonshot_faults(fault: Fault, asked: Asked) -> Response:
    errors = {
        "401": (401, moonshot_error("Invalid Authentication", "invalid_authentication_error")),
        "429": (429, moonshot_error("Your account org-emulator<ak-emulator> request reached organization max RPM: "
                                    f"3, please try again after {fault.retry_after} seconds",
                                    "rate_limit_reached_error")),
        "500": (500, moonshot_error("Failed to get a response from the model, please try again later",
                                    "server_error")),
        "overloaded": (429, moonshot_error("The engine is currently overloaded, please try again later",
                                           "engine_overloaded_error")),
    }
    return _answer(fault, asked, errors, moonshot_error("Failed to get a response from the model, please try "
                                                        "again later", "server_error"))
