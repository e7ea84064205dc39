"""Contract adapters: one module per vendor, found by discovery, and the `Adapter` base.

The suite (tests/test_translator_contract.py) knows nothing about any vendor; everything
vendor-specific it needs (which fake, which credential, how to make the fake misbehave,
what the vendor cannot do at all) comes from one `Adapter` subclass per provider.

Every module of this package whose name does not start with `_` is imported and must
define `ADAPTER`, an instance of `Adapter`. Adding a vendor to the contract suite is
dropping one file here (see README.md); nothing else is edited.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, ClassVar

import pytest

from keystore.models import Credential, validate_credential

__all__ = ["CAPABILITIES", "Adapter", "discover"]

# The capability table: every name an adapter may put in `lacks`, and what it means.
# A lacking capability turns the tests that need it into visible skips (with the
# adapter's reason), never into silent passes. A name not listed here is an error.
CAPABILITIES: Mapping[str, str] = MappingProxyType({
    "stream": "streamed chat completions",
    "tools": "tool (function) calling, streamed and not",
    "usage": "token usage on responses and at the end of streams",
    "length": "a reply cut by the token limit (finish_reason 'length'), scriptable on the fake",
    "http_errors": "errors as HTTP statuses (400, 401, 429, 500)",
    "overloaded": "an 'overloaded' HTTP status (503, or 529 for Anthropic)",
    "retry_after": "a Retry-After header on 429 answers",
    "error_in_200_body": "an error object inside a 200 response (scriptable on the fake)",
    "mid_stream_error": "an error event after a stream has started",
    "disconnect": "the fake counts streams whose client went away (streams_aborted)",
})


class Adapter:
    """One vendor's fake, as the contract suite drives it.

    `fake` below is whatever `start()` returned (for the existing fakes: the object of the
    `fake_*` pytest fixture, with its scripting knobs on `.state`). Scripting methods
    change what the fake's *next* request(s) answer; the suite scripts before each call.
    """

    # -- identity --------------------------------------------------------------------------
    provider: ClassVar[str]          # the REGISTRY key
    fixture: ClassVar[str]           # the pytest fixture giving a started, reset fake
    model: ClassVar[str]             # the vendor's model id (CallContext.model)
    chat_path: ClassVar[str]         # the URL path a chat call for `model` reaches on the fake
    # -- capabilities ----------------------------------------------------------------------
    lacks: ClassVar[frozenset[str]] = frozenset()    # names from CAPABILITIES
    why: ClassVar[Mapping[str, str]] = MappingProxyType({})  # a reason for every name in `lacks`
    overloaded_status: ClassVar[int] = 503           # the vendor's "overloaded" HTTP status

    # -- the fake --------------------------------------------------------------------------
    def start(self, request: pytest.FixtureRequest) -> Any:
        """The running fake for this test, reset. Default: the `fixture` fixture's value."""
        fake = request.getfixturevalue(self.fixture)
        self.reset(fake)
        return fake

    def reset(self, fake: Any) -> None:
        fake.reset()

    def credential_values(self, fake: Any, *, valid: bool) -> dict[str, str]:
        """The credential's fields (with `base_url` or the vendor's endpoint field pointing at
        the fake); with `valid=False`, a well-formed credential the fake refuses (a wrong key)."""
        raise NotImplementedError

    def credential(self, fake: Any, *, valid: bool = True) -> Credential:
        from translators import REGISTRY

        spec = REGISTRY[self.provider].credential_fields
        return validate_credential(self.provider, spec, self.credential_values(fake, valid=valid))

    # -- scripting -------------------------------------------------------------------------
    def script_text(self, fake: Any, text: str) -> None:
        """Plain text replies of exactly `text` (streamed in several deltas)."""
        raise NotImplementedError

    def script_tool_call(self, fake: Any, name: str, arguments: dict[str, Any]) -> None:
        """Replies to requests with tools: one call of `name` with `arguments` (a JSON object)."""
        raise NotImplementedError

    def script_length(self, fake: Any, text: str) -> dict[str, Any]:
        """Replies cut by the token limit; returns the request fields that make it happen."""
        self.script_text(fake, text)
        return {"max_tokens": 2}

    def script_http_error(self, fake: Any, status: int, retry_after: int | None = None) -> None:
        """The next request fails with HTTP `status` and the vendor's own error body
        (with a `retry-after` header of `retry_after` seconds when given)."""
        raise NotImplementedError

    def script_error_in_200(self, fake: Any) -> tuple[int, str] | None:
        """The next request answers 200 with an error object where the answer belongs
        (streamed requests too). Returns the (status, type) the translator must raise, or
        None for "some 4xx/5xx"."""
        raise NotImplementedError

    def script_stream_error(self, fake: Any) -> tuple[int, str] | None:
        """Streams fail with the vendor's error event after the translator yielded at least
        one chunk (the first byte). Returns the expected (status, type) or None."""
        raise NotImplementedError

    def script_slow_stream(self, fake: Any, delay: float) -> None:
        """Long replies (dozens of deltas) with `delay` seconds between stream events."""
        raise NotImplementedError

    # -- observations ----------------------------------------------------------------------
    def aborted_streams(self, fake: Any) -> int:
        """Streams the fake saw its client abandon before the end."""
        return int(fake.state.streams_aborted)

    def request_paths(self, fake: Any) -> list[str]:
        """URL paths of the requests the fake received since the reset."""
        return [r.path for r in list(fake.state.requests)]

    def __repr__(self) -> str:
        return f"<contract adapter {self.provider}>"


def discover() -> tuple[dict[str, Adapter], list[str]]:
    """(provider -> adapter, problems). A module that fails to import, defines no ADAPTER
    or repeats a provider is a problem the suite reports as a failing test, so one broken
    adapter does not hide the others."""
    adapters: dict[str, Adapter] = {}
    problems: list[str] = []
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda i: i.name):
        if info.name.startswith("_"):
            continue
        name = f"{__name__}.{info.name}"
        try:
            module = importlib.import_module(name)
        except Exception as exc:  # noqa: BLE001 - reported by the suite
            problems.append(f"{name} does not import: {type(exc).__name__}: {exc}")
            continue
        adapter = getattr(module, "ADAPTER", None)
        if not isinstance(adapter, Adapter):
            problems.append(f"{name} defines no ADAPTER (an instance of tests.contract.Adapter)")
            continue
        provider = getattr(adapter, "provider", None)
        if not isinstance(provider, str) or not provider:
            problems.append(f"{name}: ADAPTER.provider is not set")
        elif provider in adapters:
            problems.append(f"{name}: a second adapter for provider {provider!r}")
        else:
            adapters[provider] = adapter
    return adapters, problems
