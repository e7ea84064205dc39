"""Hosted trial offers: providers the operator lends to every tenant with the
operator's own credential, counted in calls, limited to listed models.

The credential comes from the settings (the YAML file, typically `${VAR}` from the
environment) and lives only in this process's memory: it is never written to a
tenant's rows, never returned by an endpoint, and scrubbed from upstream error
messages like any tenant credential (`Credential.secret_values`).

Only providers with one credential for all their models can be hosted: a provider
whose models each need their own credential (deployments, endpoints) has no single
credential to lend.

The credential goes to one place only: the origin (scheme, host, port) of the entry's
`base_url`, or of the provider's default when the operator set none. Every hosted call
runs on a `PinnedClient` that refuses any other destination before connecting, so no
tenant input (a body field, a model name, a URL an upstream hands back) can send the
operator's key elsewhere. What the tenant may put in a request is limited too: see
`proxy/hosted_params.py`.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar
from urllib.parse import urlsplit

from keystore import CredentialError, validate_credential
from keystore.models import Credential
from translators import REGISTRY, Translator
from translators._http import (
    UpstreamClient,
    UpstreamResponse,
    UpstreamStream,
    UpstreamWebSocket,
)
from translators.errors import ApiError, UpstreamError, not_sent
from translators.types import ModelType

log = logging.getLogger("modelport")
T = TypeVar("T")

if TYPE_CHECKING:
    from proxy.settings import HostedSettings


class HostedConfigError(ValueError):
    """A `hosted:` entry that does not fit the registry; the message never holds a secret."""


@dataclass(frozen=True, slots=True)
class HostedOffer:
    provider: str
    translator: Translator
    credential: Credential = field(repr=False)
    quota: int                      # calls per tenant; -1 = unlimited
    models: tuple[str, ...]
    max_tokens: int = 1024          # the most output tokens one call may ask for
    origins: frozenset[Origin] = frozenset()  # where the credential may be sent

    def pinned(self, http: UpstreamClient) -> PinnedClient:
        """The shared upstream client, restricted to this offer's origins, for one call."""
        return PinnedClient(http, self.provider, self.origins)

    def model_type(self, model: str) -> ModelType:
        """What kind of model a listed name is: the provider's catalog and prefixes decide;
        a name they do not know is taken as the provider's first type (usually llm)."""
        kinds = [t for t in ModelType if t in self.translator.model_types]
        return next((t for t in kinds if self.translator.serves(model, t)), kinds[0])

    def setup_hint(self, tenant: str) -> str:
        """The command that gives a tenant its own credential for this provider."""
        fields = " ".join(f"{f.name}=..." for f in self.translator.credential_fields if f.required)
        return (f"`modelport providers set {tenant} {self.provider} {fields}` "
                f"(or PUT /admin/v1/tenants/{tenant}/providers/{self.provider})")


NO_OFFERS: Mapping[str, HostedOffer] = MappingProxyType({})

Origin = tuple[str, str, int]
_DEFAULT_PORTS = {"http": 80, "ws": 80, "https": 443, "wss": 443}


def origin_of(url: str) -> Origin | None:
    """(scheme, host, port) of an absolute URL, as browsers scope credentials; None if it has none."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:  # a port that is not a number
        return None
    scheme = parts.scheme.lower()
    if not parts.hostname or scheme not in _DEFAULT_PORTS:
        return None
    return scheme, parts.hostname.lower(), port or _DEFAULT_PORTS[scheme]


class PinnedClient(UpstreamClient):
    """The app's `UpstreamClient` for one hosted call: every request, stream and websocket
    is checked against the offer's origins before it is handed on, and `attempts` counts
    the ones that may have reached the upstream (a connection that was never made gives
    its attempt back), which decides whether the call is refunded (`proxy/calls.py`).

    Everything else is the shared client's (timeouts, the connection pool). Its session is
    not reachable from here: a new method of `UpstreamClient` that goes to the session
    directly fails loudly on hosted calls instead of skipping the check.
    """

    def __init__(self, inner: UpstreamClient, provider: str, origins: frozenset[Origin]) -> None:
        # No super().__init__(): this object owns no session; attributes come from `inner`.
        self._inner = inner
        self._provider = provider
        self._origins = origins
        self.attempts = 0

    def __getattr__(self, name: str) -> Any:
        # Only reached for what is not found on this object, i.e. the shared client's
        # instance attributes (`timeouts`, ...): the methods are this class's.
        return getattr(self._inner, name)

    @property
    def session(self) -> NoReturn:
        raise RuntimeError("hosted calls go through request/stream/websocket, which check the destination")

    async def close(self) -> None:
        """Nothing to close: the shared client belongs to the app."""

    def _check(self, url: str) -> None:
        if origin_of(url) not in self._origins:
            host = (origin_of(url) or ("", "an unparsable URL", 0))[1]
            log.warning("refused to send the hosted credential of provider %s to %s: not its configured "
                        "base_url (set hosted.%s.credentials.base_url if the provider really lives there)",
                        self._provider, host, self._provider)
            raise not_sent(UpstreamError(
                502, f"The hosted trial of provider '{self._provider}' is unavailable: the call was to go "
                     "somewhere other than the platform's configured upstream. This is for the gateway's "
                     "operator to fix.", "server_error", "hosted_destination_refused"))

    def _given_back(self, exc: BaseException) -> None:
        if isinstance(exc, UpstreamError) and not exc.sent:
            self.attempts -= 1

    async def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> UpstreamResponse:
        self._check(url)
        self.attempts += 1
        try:
            return await self._inner.request(method, url, *args, **kwargs)
        except Exception as exc:
            self._given_back(exc)
            raise

    @asynccontextmanager
    async def _attempt(self, url: str, opening: AbstractAsyncContextManager[T]) -> AsyncIterator[T]:
        """One counted attempt to open a stream or websocket: given back if it never opened
        (an error from the caller's block, after it opened, is no news about the connection)."""
        self._check(url)
        self.attempts += 1
        opened = False
        try:
            async with opening as value:
                opened = True
                yield value
        except Exception as exc:
            if not opened:
                self._given_back(exc)
            raise

    @asynccontextmanager
    async def stream(self, method: str, url: str, *args: Any, **kwargs: Any) -> AsyncIterator[UpstreamStream]:
        async with self._attempt(url, self._inner.stream(method, url, *args, **kwargs)) as resp:
            yield resp

    @asynccontextmanager
    async def websocket(self, url: str, *args: Any, **kwargs: Any) -> AsyncIterator[UpstreamWebSocket]:
        async with self._attempt(url, self._inner.websocket(url, *args, **kwargs)) as ws:
            yield ws


def _offer(provider: str, entry: HostedSettings) -> HostedOffer:
    where = provider  # the settings loader prefixes "hosted: "
    translator = REGISTRY.get(provider)
    if translator is None:
        raise HostedConfigError(f"{where}: unknown provider '{provider}' (known: {', '.join(sorted(REGISTRY))})")
    if translator.per_model:
        raise HostedConfigError(f"{where}: provider '{provider}' takes a credential per model, so it cannot be "
                                "hosted with one platform credential")
    try:
        credential = validate_credential(provider, translator.credential_fields, entry.credentials)
        translator.check_credential(credential)
    except CredentialError as exc:
        raise HostedConfigError(f"{where}.credentials: {exc}") from None
    except ApiError as exc:
        raise HostedConfigError(f"{where}.credentials: {exc.message}") from None
    models: list[str] = []
    for model in entry.models:
        try:
            translator.check_model(model)
        except ApiError as exc:
            raise HostedConfigError(f"{where}.models: {exc.message}") from None
        if model not in models:
            models.append(model)
    base_url = translator.base_url_for(credential)
    origin = origin_of(base_url)
    if origin is None:
        raise HostedConfigError(f"{where}.credentials.base_url: not an absolute http(s) or ws(s) URL")
    return HostedOffer(provider, translator, credential, entry.quota, tuple(models), entry.max_tokens,
                       frozenset({origin}))


def build_offers(config: Mapping[str, HostedSettings]) -> Mapping[str, HostedOffer]:
    """The validated offers of a `hosted:` section; `HostedConfigError` names the bad entry."""
    return MappingProxyType({provider: _offer(provider, entry) for provider, entry in config.items()})
