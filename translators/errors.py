"""The one error type of the gateway, shaped like OpenAI's error body.

Everything that fails (a bad request, an unknown model, a vendor that said no, a
socket that timed out) ends as an `ApiError`; `proxy/errors.py` renders it. Vendor
modules build these from vendor bodies; they never leak vendor exceptions.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from translators._json import loads as bounded_json

# Secrets a vendor derives from the key and may echo back in an error (a token, a
# signature, a URL it was sent on). The exact values are scrubbed where they are known
# (`scrubbing()` in ernie/zhipu/spark); these shapes catch them wherever they turn up.
_DERIVED = re.compile(
    r"eyJ[\w-]{4,}\.[\w-]{4,}\.[\w-]{4,}"                   # a JWT (Zhipu's tokens)
    r"|\b\d+\.[0-9a-f]{32}\.\d+\.\d+\.\d+-\d+\b"             # a Baidu (ERNIE) access token
    r"|(?P<keep>\bBearer |\bsignature=\"|[?&;](?:access_token|authorization|signature|client_secret|"
    r"client_id|api_key|apikey|token|sig)=)[^&\s\"'<>]+",         # a bearer token, a signed URL's query
    re.IGNORECASE)
_MAX_MESSAGE = 1000  # an upstream message longer than this is cut: it is no longer a message


def _scrub(text: str, secrets: tuple[str, ...]) -> str:
    for secret in sorted(secrets, key=len, reverse=True):  # a URL before the token inside it
        if secret and secret in text:
            text = text.replace(secret, "***")
    return _DERIVED.sub(lambda m: (m.group("keep") or "") + "***", text)


class ApiError(Exception):
    """An error the client sees: HTTP status plus OpenAI's `{"error": {...}}` fields."""

    __slots__ = ("status", "message", "type", "code", "param", "retry_after")

    def __init__(
        self,
        status: int,
        message: str,
        type: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.code = code
        self.param = param
        self.retry_after = retry_after

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}

    def scrubbed(self, secrets: tuple[str, ...]) -> ApiError:
        """A copy whose message contains none of `secrets` (vendors sometimes echo keys), nor
        anything shaped like a derived secret (`_DERIVED`). Same class and attributes
        (`UpstreamError.sent` decides hosted refunds), only the messages differ."""
        message = _scrub(self.message, secrets)
        vendor = getattr(self, "vendor_message", None)
        said = _scrub(vendor, secrets) if vendor else vendor
        if message == self.message and said == vendor:
            return self
        clone = type(self).__new__(type(self))
        for name in ApiError.__slots__:
            setattr(clone, name, getattr(self, name))
        clone.__dict__.update(getattr(self, "__dict__", {}))
        clone.message, clone.args = message, (message,)
        if said != vendor:
            clone.__dict__["vendor_message"] = said
        return clone

    def __repr__(self) -> str:
        return f"ApiError({self.status}, {self.type!r}, code={self.code!r}, {self.message!r})"


class UpstreamError(ApiError):
    """An `ApiError` that came from (or on the way to) a vendor rather than from our own checks."""

    # False only when the request never left the gateway: no connection was made (DNS
    # failure, refused, connect timeout, a destination the policy refused), so the vendor
    # saw nothing and billed nothing. Hosted-trial refunds depend on it (proxy/calls.py);
    # True is the safe default for everything else (the vendor may have done the work).
    sent: bool = True
    # The vendor's own words, where the gateway's message wraps them (a rejected credential:
    # "the X credential configured for this tenant was rejected by X: <vendor's words>"),
    # for callers that word the situation otherwise (validating a credential not saved yet).
    vendor_message: str | None = None


def not_sent(err: UpstreamError) -> UpstreamError:
    """`err`, marked as raised before any byte reached the upstream (see `UpstreamError.sent`)."""
    err.sent = False
    return err


@contextmanager
def scrubbing(*secrets: str) -> Iterator[None]:
    """Errors raised inside carry none of `secrets`: for values a vendor module derives
    from the credential (an access token, a JWT, a signed URL), which the gateway's own
    scrubbing of the stored credential values cannot know."""
    try:
        yield
    except ApiError as err:
        raise err.scrubbed(secrets) from None


def upstream_too_large(what: str, limit: int, setting: str, host: str | None = None) -> UpstreamError:
    source = f"the upstream at {host}" if host else "the upstream"
    return UpstreamError(502, f"{source} sent {what} larger than {limit} bytes (the gateway's upstream.{setting})",
                         "server_error", "upstream_response_too_large")


def upstream_redirect(status: int, host: str) -> UpstreamError:
    # The Location is not quoted: it is the upstream's to know, and may carry tokens.
    return UpstreamError(502, f"the upstream at {host} answered with a redirect (HTTP {status}); upstream "
                              "redirects are never followed: check the provider's base_url", "server_error",
                         "upstream_redirect")


# An upstream's error body that is not JSON is shown as this, not quoted: an HTML page of a
# proxy in between, a captive portal or a metadata document is nothing a client should read.
NON_JSON_BODY = "a body that is not JSON (not shown)"


def body_text(payload: bytes, *, plain_text: bool = False) -> str:
    """What of a non-JSON upstream error body may reach the client: only the fact, unless
    the vendor's own servers do answer in plain text (TGI's 422s, FastAPI's 500) and it is
    one short printable line without markup; then that line is the vendor's message."""
    if plain_text:
        text = payload[:400].decode("utf-8", "replace").strip()
        if 0 < len(text) <= 300 and text.isprintable() and "<" not in text:
            return text
    return NON_JSON_BODY


def bad_response(provider: str, what: str = "a response that is not JSON") -> UpstreamError:
    """The vendor answered, but not in a shape the gateway can read (`what` says how)."""
    return UpstreamError(502, f"{provider} returned {what}", "server_error", "upstream_bad_response")


def incomplete_stream(provider: str, before: str = "its last event") -> UpstreamError:
    """The vendor's stream ended (EOF, a closed socket) before the event that ends it."""
    return UpstreamError(502, f"the {provider} stream ended before {before}", "server_error",
                         "upstream_incomplete_stream")


def failed_mid_stream(provider: str, message: str, code: str | None = None) -> UpstreamError:
    """An error event inside a stream whose status was already 200."""
    return UpstreamError(502, f"{provider} failed mid-stream: {message}", "server_error", code or "upstream_error")


def error_body(payload: bytes, *, plain_text: bool = False) -> Any:
    """An upstream error body, parsed tolerantly: its JSON, None when empty, and for anything
    else (an HTML page of a proxy in between, a plain-text 502) an object that carries what
    may be shown (`body_text`) under both keys vendors use, `error.message` and `message`,
    so each vendor's own `error_from_response` reads it like one of its own bodies."""
    if not payload:
        return None
    try:
        return bounded_json(payload)
    except ValueError:  # orjson.JSONDecodeError (and TooDeep) are ValueErrors
        text = body_text(payload, plain_text=plain_text)
        return {"error": {"message": text}, "message": text}


def bad_request(message: str, param: str | None = None, code: str | None = None) -> ApiError:
    return ApiError(400, message, "invalid_request_error", code, param)


def unsupported(provider: str, what: str, param: str | None = None) -> ApiError:
    return ApiError(400, f"provider '{provider}' does not support {what}", "invalid_request_error",
                    "unsupported_by_provider", param)


_STATUS_TYPES: dict[int, str] = {
    400: "invalid_request_error",
    404: "invalid_request_error",
    409: "invalid_request_error",
    413: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
}


def upstream_status_error(
    provider: str,
    status: int,
    message: str,
    code: str | None = None,
    param: str | None = None,
    retry_after: float | None = None,
) -> UpstreamError:
    """Map a vendor's HTTP status (trusted before its message text) to what our client sees.

    A vendor 401/403 means the *tenant's provider credential* was refused. Passing on
    401 would make the openai SDK blame the gateway token, so it becomes a 403 that
    names the provider.
    """
    if message == NON_JSON_BODY:
        message = f"{provider} answered HTTP {status} with {NON_JSON_BODY}"
    elif len(message) > _MAX_MESSAGE:
        message = message[:_MAX_MESSAGE] + "..."
    if status in (401, 403):
        rejected = UpstreamError(
            403,
            f"the {provider} credential configured for this tenant was rejected by {provider}: {message}",
            "permission_error", "upstream_credential_rejected", None)
        rejected.vendor_message = message
        return rejected
    if status == 429:
        return UpstreamError(429, message, "rate_limit_error", code or "rate_limit_exceeded", param, retry_after)
    if status in (503, 529):
        return UpstreamError(503, f"{provider} is overloaded or unavailable: {message}", "server_error",
                             code or "upstream_unavailable", None, retry_after)
    if status == 504:
        return UpstreamError(504, f"{provider} timed out: {message}", "server_error", code or "upstream_timeout")
    if status >= 500:
        return UpstreamError(502, f"{provider} failed: {message}", "server_error", code or "upstream_error")
    if status == 422:
        status = 400
    return UpstreamError(status, message, _STATUS_TYPES.get(status, "invalid_request_error"), code, param)


# For errors a vendor reports inside an HTTP 200 body: the status their type implies.
_TYPE_STATUS: dict[str, int] = {
    "invalid_request_error": 400, "authentication_error": 401, "permission_error": 403,
    "not_found_error": 404, "rate_limit_error": 429, "insufficient_quota": 429, "server_error": 500,
    "api_error": 500, "overloaded_error": 529, "timeout_error": 504,
}


def status_for_error_body(body: Any, default: int = 400) -> int:
    """The HTTP status an error object in a 200 body stands for (by its `type`, then `code`)."""
    err = body.get("error") if isinstance(body, dict) else None
    if isinstance(err, dict):
        for key in ("type", "code"):
            status = _TYPE_STATUS.get(str(err.get(key)))
            if status is not None:
                return status
    return default


def parse_retry_after(headers: Any) -> float | None:
    value = headers.get("retry-after") if headers is not None else None
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None
