"""Typed provider credentials: a per-provider field schema and a value that hides its secrets.

Each provider declares its fields as a tuple of CredentialField (the admin API validates
with it, a settings page can render it). Every credential also accepts an optional,
non-secret ``base_url`` that overrides the provider's default endpoint.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, NoReturn
from urllib.parse import urlsplit

import orjson

__all__ = [
    "BASE_URL_FIELD",
    "Credential",
    "CredentialError",
    "CredentialField",
    "deserialize_credential",
    "label_for",
    "mask",
    "serialize_credential",
    "validate_credential",
    "with_base_url",
]


@dataclass(frozen=True)
class CredentialField:
    name: str
    required: bool = True
    secret: bool = True
    description: str = ""
    # What a form shows beside the input; empty: derived from `name` (see `label_for`).
    # Set where the derivation reads badly or the vendor's console uses another word.
    label: str = ""

    @property
    def display_label(self) -> str:
        return self.label or label_for(self.name)


# Words shown upper-cased in a derived label; whole names whose derivation reads badly.
_ACRONYMS = frozenset({"api", "url", "uri", "id", "ak", "sk", "jwt", "http", "https", "ws"})
_WHOLE_LABELS = {"base_url": "API base URL"}


def label_for(name: str) -> str:
    """A human label for a field name: ``api_key`` -> "API key", ``group_id`` -> "Group ID",
    ``secret_key`` -> "Secret key" (sentence case, acronyms upper-cased)."""
    if name in _WHOLE_LABELS:
        return _WHOLE_LABELS[name]
    words = [w.upper() if w.lower() in _ACRONYMS else w.lower() for w in name.replace("-", "_").split("_") if w]
    if not words:
        return name
    return " ".join([words[0][:1].upper() + words[0][1:], *words[1:]])


BASE_URL_FIELD = CredentialField(
    "base_url",
    required=False,
    secret=False,
    description="Overrides the provider's API endpoint (http, https, ws or wss URL).",
    label="API base URL",
)

_URL_SCHEMES = frozenset({"http", "https", "ws", "wss"})
_MASKED = "***"


class CredentialError(ValueError):
    """A credential does not fit its provider's schema; ``field`` names the culprit."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


def mask(value: str) -> str:
    """A recognisable but useless form of a secret: ``sk-abcdef123456a1b2`` -> ``sk-...a1b2``.

    Only a vendor tag (``sk-``, ``hf_``, ``r8_``: a separator within the first four
    characters) and the last four characters are kept; short values show nothing.
    """
    if len(value) < 12:
        return _MASKED
    prefix = ""
    for i, ch in enumerate(value[:4]):
        if ch in "-_":
            prefix = value[: i + 1]
            break
    return f"{prefix}...{value[-4:]}"


class Credential(Mapping[str, str]):
    """An immutable mapping of field name to value whose repr never shows a secret."""

    __slots__ = ("_values", "_spec", "_secret", "_secret_values")
    _values: MappingProxyType[str, str]
    _spec: tuple[CredentialField, ...]
    _secret: frozenset[str]
    _secret_values: tuple[str, ...]

    def __init__(self, values: Mapping[str, str], spec: tuple[CredentialField, ...] = ()) -> None:
        object.__setattr__(self, "_values", MappingProxyType(dict(values)))
        object.__setattr__(self, "_spec", tuple(spec))
        # A field the spec does not describe is treated as secret: the safe mistake.
        public = {f.name for f in spec if not f.secret}
        object.__setattr__(self, "_secret", frozenset(k for k in self._values if k not in public))
        # Read on every request (to scrub error messages), so computed once.
        object.__setattr__(self, "_secret_values",
                           tuple(v for k, v in self._values.items() if k in self._secret and v))

    def __setattr__(self, name: str, value: object) -> NoReturn:
        raise AttributeError("Credential is immutable")

    def __delattr__(self, name: str) -> NoReturn:
        raise AttributeError("Credential is immutable")

    def __getitem__(self, name: str) -> str:
        return self._values[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __hash__(self) -> int:
        # Hashable so derived tokens (ERNIE OAuth, Zhipu JWT) can be cached per credential.
        return hash(frozenset(self._values.items()))

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (dict(self._values), self._spec))

    def __repr__(self) -> str:
        inner = ", ".join(f"{k}={v!r}" for k, v in self.masked().items())
        return f"Credential({inner})"

    __str__ = __repr__

    @property
    def spec(self) -> tuple[CredentialField, ...]:
        return self._spec

    @property
    def base_url(self) -> str | None:
        return self._values.get("base_url") or None

    def secret_values(self) -> tuple[str, ...]:
        """Values to scrub from any text that might leave the process (errors, logs)."""
        return self._secret_values

    def masked(self) -> dict[str, str]:
        return {k: mask(v) if k in self._secret else v for k, v in self._values.items()}


def validate_credential(
    provider: str, spec: tuple[CredentialField, ...], values: Mapping[str, str]
) -> Credential:
    """Check values against the provider's fields; return a clean Credential.

    Values are stripped of surrounding whitespace (a pasted key often ends in a
    newline); blank optional fields are dropped. A value that still holds a control
    character (CR, LF, NUL, ...) is refused: it would end up in an HTTP header or a
    signed string, where a line break splits the header (request smuggling) and a NUL
    truncates. The error names the field, never the value.
    """
    who = f"provider {provider!r}"
    credential = _validate(who, with_base_url(spec), values, allow_unknown=False)
    for name, value in credential.items():
        if any(ch < " " or ch == "\x7f" for ch in value):
            raise CredentialError(f"{who} field {name!r} must not contain line breaks, NUL or other control "
                                  "characters", field=name)
    return credential


def serialize_credential(cred: Credential) -> bytes:
    """The plaintext that the keystore encrypts."""
    return orjson.dumps(dict(cred), option=orjson.OPT_SORT_KEYS)


def deserialize_credential(data: bytes, spec: tuple[CredentialField, ...]) -> Credential:
    """Rebuild a stored credential; errors never echo the (secret) content.

    Fields the provider no longer declares are dropped rather than rejected, so a
    schema change does not make already stored credentials unreadable.
    """
    try:
        values = orjson.loads(data)
    except orjson.JSONDecodeError:
        raise CredentialError("stored credential is not valid JSON") from None
    return _validate("stored credential", with_base_url(spec), values, allow_unknown=True)


def with_base_url(spec: tuple[CredentialField, ...]) -> tuple[CredentialField, ...]:
    """A provider's fields as a form shows them: its own, then the optional base_url."""
    if any(f.name == BASE_URL_FIELD.name for f in spec):
        return tuple(spec)
    return (*spec, BASE_URL_FIELD)


def _validate(
    who: str, spec: tuple[CredentialField, ...], values: object, *, allow_unknown: bool
) -> Credential:
    if not isinstance(values, Mapping):
        raise CredentialError(f"{who} credential must be an object mapping field names to strings")
    accepted = [f.name for f in spec]
    unknown = sorted(str(k) for k in values if k not in accepted)
    if unknown and not allow_unknown:
        raise CredentialError(
            f"{who} does not accept field {unknown[0]!r} (accepted: {', '.join(accepted)})",
            field=unknown[0],
        )
    clean: dict[str, str] = {}
    for f in spec:
        raw = values.get(f.name)
        if raw is not None and not isinstance(raw, str):
            raise CredentialError(
                f"{who} field {f.name!r} must be a string, not {type(raw).__name__}", field=f.name
            )
        value = (raw or "").strip()
        if not value:
            if not f.required:
                continue
            if raw is None:
                raise CredentialError(f"{who} needs field {f.name!r}", field=f.name)
            raise CredentialError(f"{who} field {f.name!r} must not be empty", field=f.name)
        if f.name == BASE_URL_FIELD.name:
            value = _check_base_url(who, value)
        clean[f.name] = value
    return Credential(clean, spec)


def _check_base_url(who: str, url: str) -> str:
    # Messages never echo the URL: a rejected one may carry a password or a token.
    def bad(reason: str) -> CredentialError:
        return CredentialError(f"{who} field 'base_url' {reason}", field="base_url")

    # urlsplit silently drops tabs and newlines, which would hide a pasted mistake.
    if any(ch.isspace() or not ch.isprintable() for ch in url):
        raise bad("must not contain whitespace or control characters")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a malformed port
    except ValueError:
        raise bad("is not a valid URL") from None
    if parts.scheme.lower() not in _URL_SCHEMES or not parts.hostname:
        raise bad("must be an http, https, ws or wss URL with a host")
    if "@" in parts.netloc:
        raise bad("must not contain user info (user:password@); put secrets in the credential's fields")
    # Translators append paths to it; a query or fragment would end up in the wrong place.
    if parts.query or parts.fragment or url.endswith(("?", "#")):
        raise bad("must not contain a query string or fragment")
    return url.rstrip("/")
