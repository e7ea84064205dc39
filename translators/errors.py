"""The one error type of the gateway, shaped like OpenAI's error body.

Everything that fails (a bad request, an unknown model, a vendor that said no, a
socket that timed out) ends as an `ApiError`; `proxy/errors.py` renders it. Vendor
modules build these from vendor bodies; they never leak vendor exceptions.
"""

from __future__ import annotations

from typing import Any


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
        """A copy whose message contains none of `secrets` (vendors sometimes echo keys)."""
        message = self.message
        for secret in secrets:
            if secret and secret in message:
                message = message.replace(secret, "***")
        if message is self.message:
            return self
        return ApiError(self.status, message, self.type, self.code, self.param, self.retry_after)

    def __repr__(self) -> str:
        return f"ApiError({self.status}, {self.type!r}, code={self.code!r}, {self.message!r})"


class UpstreamError(ApiError):
    """An `ApiError` that came from (or on the way to) a vendor rather than from our own checks."""


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
    if status in (401, 403):
        return UpstreamError(
            403,
            f"the {provider} credential configured for this tenant was rejected by {provider}: {message}",
            "permission_error", "upstream_credential_rejected", None)
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
