"""`GET /metrics`: the Prometheus text format, summed over every worker.

Served on the main port (`METRICS_ROUTES`), or, with `metrics.listen`, on a listener of
its own that each worker runs beside the main one (`start_listener`: a second uvicorn
server in the worker's event loop, on a SO_REUSEPORT socket per worker as the main port
has, so any worker may answer; each answer sums every worker's files). Either way
`metrics.auth: admin` asks for the admin token as a bearer token (a 401 otherwise, counted
against the caller's address like the admin API's), `none` answers anyone: for a
listener that only the scraper can reach.

Computed at scrape time: the hosted trial calls left per provider, summed over tenants
(one query per hosted provider); a database that cannot answer leaves that gauge out of
this scrape rather than failing it.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp

from proxy import metrics
from proxy.auth import bearer_token, hash_admin_token, limited, unauthorized
from proxy.errors import api_error_handler, http_exception_handler
from proxy.gateway import Gateway
from proxy.request_ids import RequestIds
from proxy.settings import Settings
from proxy.store import StoreBusy, StoreUnavailable
from translators.errors import ApiError

log = logging.getLogger("modelport")

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"  # what generate_latest writes


def _check_auth(request: Request, gateway: Gateway) -> None:
    if gateway.settings.metrics.auth == "none":
        return
    try:
        token = bearer_token(request)
        if not hmac.compare_digest(hash_admin_token(token), gateway.admin_hash):
            raise unauthorized("Incorrect admin token: /metrics takes the admin token as a bearer token.")
    except ApiError as err:
        raise limited(request, err) from None


async def _hosted_remaining(gateway: Gateway) -> list[Any]:
    from prometheus_client.core import GaugeMetricFamily

    if not gateway.hosted:
        return []
    family = GaugeMetricFamily("modelport_hosted_quota_remaining",
                               "Hosted trial calls left, summed over tenants (unlimited tenants add nothing)",
                               labels=["provider"])
    try:
        for provider, offer in sorted(gateway.hosted.items()):
            family.add_metric([provider], await gateway.store.quota_remaining(provider, offer.quota))
    except (StoreBusy, StoreUnavailable) as exc:
        log.warning("metrics: hosted quotas left out of this scrape: %s", exc.message)
        return []
    return [family]


def exposition(exporter: metrics.Exporter) -> bytes:
    """Every worker's values (or this process's)."""
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.multiprocess import MultiProcessCollector

    if exporter.registry is not None:
        return generate_latest(exporter.registry)
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=exporter.multiproc_dir)  # type: ignore[no-untyped-call]
    return generate_latest(registry)


async def metrics_endpoint(request: Request) -> Response:
    gateway: Gateway = request.app.state.gateway
    recorder: metrics.Recorder | None = getattr(request.app.state, "metrics", None)
    _check_auth(request, gateway)
    if recorder is None:  # metrics.enabled: false
        raise HTTPException(404)
    extra = await _hosted_remaining(gateway)
    recorder.flush()  # on the loop, like the requests that add to the tallies
    # Reading every worker's files is file I/O: off the event loop.
    body = await asyncio.to_thread(exposition, recorder.exporter)
    if extra:
        body += metrics.families_text(extra)
    return Response(body, media_type=CONTENT_TYPE, headers={"Cache-Control": "no-store"})


METRICS_ROUTES = [Route("/metrics", metrics_endpoint, methods=["GET"])]


def metrics_app(state: Any) -> ASGIApp:
    """The listener's app: /metrics alone, on the main app's state (gateway, recorder)."""
    app = Starlette(routes=METRICS_ROUTES,
                    exception_handlers={ApiError: api_error_handler, HTTPException: http_exception_handler})
    app.state.gateway = state.gateway
    app.state.metrics = getattr(state, "metrics", None)
    return RequestIds(app)


async def run_flusher(recorder: metrics.Recorder) -> None:
    """This worker's tallies into the shared files about once a second."""
    while True:
        await asyncio.sleep(metrics.FLUSH_INTERVAL)
        try:
            recorder.flush()
        except Exception:  # metrics must never take a worker down
            log.warning("metrics: could not flush this worker's values", exc_info=True)


@contextlib.contextmanager
def _quiet_signals() -> Iterator[None]:
    yield


async def start_listener(state: Any, gateway: Gateway) -> Callable[[], Awaitable[None]]:
    """Serve /metrics on `metrics.listen` from this worker; returns what stops it. Raises
    OSError when the address cannot be bound (the worker's start-up fails, as for the main port)."""
    import uvicorn

    from proxy.server import _tcp_socket, reuse_port

    settings = gateway.settings
    address = settings.metrics.address
    assert address is not None
    host, port = address
    config = uvicorn.Config(metrics_app(state), host=host, port=port, log_config=None, access_log=False,
                            lifespan="off", http="proxy.server:HeaderDeadlineProtocol", limit_concurrency=64,
                            timeout_keep_alive=settings.keep_alive_timeout, proxy_headers=False)
    config.header_timeout = settings.client_header_timeout  # type: ignore[attr-defined]  # HeaderDeadlineProtocol's
    shared = settings.workers > 1 and reuse_port(config)
    sock = _tcp_socket(host, reuse_port=shared)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    server = uvicorn.Server(config)
    # Signals belong to the worker's main server: this one must not take them over.
    server.capture_signals = _quiet_signals  # type: ignore[method-assign]
    task = asyncio.create_task(server.serve(sockets=[sock]), name="metrics-listener")
    while not server.started and not task.done():
        await asyncio.sleep(0.01)
    if task.done():
        task.result()  # raises what stopped it
        raise OSError(f"the metrics listener on {settings.metrics.listen} stopped at start")

    async def stop() -> None:
        server.should_exit = True
        with contextlib.suppress(Exception):
            await task
        sock.close()

    return stop


def open_recorder(settings: Settings, stack: contextlib.AsyncExitStack) -> metrics.Recorder | None:
    """This worker's recorder, installed for the hooks and flushed about once a second; on
    the way out (`stack`), the flusher stops and a last flush writes what is left."""
    if not settings.metrics.enabled:
        return None
    recorder = metrics.Recorder(metrics.exporter_for(settings.metrics.per_tenant, metrics.multiproc_dir()))
    metrics.install(recorder)

    def close() -> None:
        metrics.install(None)
        recorder.close()

    stack.callback(close)
    flusher = asyncio.get_running_loop().create_task(run_flusher(recorder), name="metrics-flusher")

    async def stop_flusher() -> None:
        flusher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await flusher

    stack.push_async_callback(stop_flusher)
    return recorder
