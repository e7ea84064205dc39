"""The settings page: static files from the package (`proxy/console_static/`), served at
/console/ with headers that leave an injected script nothing to run and nowhere to send.

The page is plain HTML, CSS and ES modules (no build step, no CDN, no web font); all it
does is call the admin API (`proxy/admin.py`, `proxy/sessions.py`) on the same origin.
"""

from __future__ import annotations

from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, RedirectResponse, Response
from starlette.routing import Route

from translators.errors import ApiError

STATIC = Path(__file__).resolve().parent / "console_static"

CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "font-src 'self'; manifest-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'")
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=(), payment=()",
}
_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
          ".css": "text/css; charset=utf-8", ".svg": "image/svg+xml", ".png": "image/png", ".ico": "image/x-icon"}


def _not_found() -> ApiError:
    return ApiError(404, "Not found.", "invalid_request_error", "not_found")


def _file(relative: str) -> Path | None:
    """The file under STATIC that `relative` names, or None: nothing outside it, no
    dot-files, only the types the page uses."""
    parts = [p for p in relative.split("/") if p]
    if any(p.startswith(".") or "\\" in p or "\x00" in p for p in parts):
        return None
    path = STATIC.joinpath(*parts) if parts else STATIC / "index.html"
    try:
        resolved = path.resolve(strict=True)
    except (OSError, RuntimeError):
        return None
    if not resolved.is_file() or STATIC not in resolved.parents or resolved.suffix not in _TYPES:
        return None
    return resolved


async def _serve(request: Request) -> Response:
    if not request.app.state.gateway.settings.console.enabled:
        raise _not_found()
    path = _file(str(request.path_params.get("path", "")))
    if path is None:
        raise _not_found()
    response = FileResponse(path, media_type=_TYPES[path.suffix])
    # index.html must be revalidated (it names the assets); assets may be cached briefly.
    response.headers["Cache-Control"] = "no-cache" if path.suffix == ".html" else "max-age=300"
    response.headers.update(SECURITY_HEADERS)
    return response


async def _redirect(request: Request) -> Response:
    return RedirectResponse("/console/", status_code=308)


CONSOLE_ROUTES = [
    Route("/console", _redirect, methods=["GET", "HEAD"]),
    Route("/console/", _serve, methods=["GET", "HEAD"]),
    Route("/console/{path:path}", _serve, methods=["GET", "HEAD"]),
]
