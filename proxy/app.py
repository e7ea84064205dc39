"""`build_app(settings)` -> the Starlette app. The lifespan owns the per-worker objects:
the store, the keystore, the upstream client, the change watcher and the usage writer
(flushed on the way out, after uvicorn has drained the requests).

Workers of `modelport serve` get their settings from `proxy/server.py` (never from the
environment: `app_from_handoff`); `app_from_env` is for running under another ASGI
server with a config file named in MODELPORT_CONFIG."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path

import orjson
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware

from keystore import MASTER_KEY_ENV
from proxy import tracing
from proxy.account import ACCOUNT_ROUTES
from proxy.admin import ADMIN_ROUTES
from proxy.balancer import Balancer
from proxy.bootstrap import ensure_admin_token, open_store_and_keystore
from proxy.console import CONSOLE_ROUTES
from proxy.errors import api_error_handler, http_exception_handler
from proxy.gateway import Gateway
from proxy.hosted import build_offers
from proxy.inbound import INBOUND_ROUTES
from proxy.limits import BodyDeadline, FailureLimiter
from proxy.logs import configure_logging
from proxy.metrics_http import METRICS_ROUTES, open_recorder, start_listener
from proxy.quotas import Quotas
from proxy.request_ids import RequestIds
from proxy.routes import ROUTES
from proxy.sessions import SESSION_ROUTES
from proxy.settings import CONFIG_ENV, Settings, load_settings
from proxy.store import StoreBusy, StoreUnavailable
from proxy.store.changes import Kind
from proxy.tenants import Directory
from proxy.usage_writer import UsageWriter
from translators.errors import ApiError

log = logging.getLogger("modelport")


async def _watch_changes(gateway: Gateway) -> None:
    """Poll the change log; drop what each change names, re-read the admin token when a
    setting changed (another process may have reset it), and prune old log rows now and then."""
    settings = gateway.settings
    prune_every = max(1, int(60 / settings.change_poll_interval))  # about once a minute per worker
    down_since: float | None = None  # the database unreachable since (monotonic): logged once, and its end
    for polls in itertools.count():
        try:
            if Kind.META in await gateway.directory.refresh_if_changed():
                gateway.admin_hash = (await ensure_admin_token(gateway.store, settings))[0]
            await gateway.balancer.refresh()  # credentials cooling down, as any worker saw them
            if polls % prune_every == prune_every - 1:
                await gateway.store.prune_changes(time.time() - settings.change_log_retention)
                await gateway.store.counters.prune_cooldowns(time.time())
        except (StoreBusy, StoreUnavailable) as exc:  # PostgreSQL restarting, a lock held: keep polling
            if down_since is None:
                down_since = time.monotonic()
                log.warning("could not poll the change log: %s; serving from the caches, will retry", exc.message)
        except Exception:  # a bad moment of the database must not end the watcher
            log.warning("could not poll the change log; will retry", exc_info=True)
        else:
            if down_since is not None:
                log.warning("the change log is readable again after %.1f s; caches caught up",
                            time.monotonic() - down_since)
                down_since = None
        await gateway.store.wait_for_change(settings.change_poll_interval)


async def _cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def build_app(settings: Settings) -> Starlette:
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with contextlib.AsyncExitStack() as stack:  # closed in reverse, also when start-up fails
            stop_tracing = tracing.start(settings.tracing)
            if stop_tracing is not None:
                stack.callback(stop_tracing)  # last out: the spans of the drained requests are exported
            # Closed after the usage writer (pushed before it): its last drops are counted.
            app.state.metrics = open_recorder(settings, stack)
            store, keystore = await open_store_and_keystore(settings, serving=True)
            stack.push_async_callback(store.close)
            # The RSA helper processes and the key-pair pool start with the first need for them.
            stack.push_async_callback(keystore.close)
            admin_hash, _ = await ensure_admin_token(store, settings)
            directory = Directory(store, keystore, tenants=settings.cache.tenants, tokens=settings.cache.tokens)
            await directory.refresh_if_changed()
            http = settings.upstream.client(settings.host, settings.port)  # destination policy, limits
            stack.push_async_callback(http.close)
            offers = build_offers(settings.hosted)  # validated when the settings were loaded
            usage = UsageWriter(store, retention_days=settings.usage_retention_days,
                                interval=settings.usage_flush_interval)
            app.state.gateway = Gateway(settings, store, keystore, directory, http, admin_hash, offers,
                                        Quotas(store, offers), usage, Balancer(store, settings.routing),
                                        FailureLimiter(settings.auth_failure_limit, settings.auth_failure_window))
            usage.start()
            stack.push_async_callback(usage.close)  # flushed after uvicorn drained the requests
            watcher = asyncio.create_task(_watch_changes(app.state.gateway))
            stack.push_async_callback(_cancel, watcher)
            if app.state.metrics is not None and settings.metrics.listen:
                stack.push_async_callback(await start_listener(app.state, app.state.gateway))
            yield

    # /metrics on the main port unless it has a listener of its own (proxy/metrics_http.py).
    metrics_routes = METRICS_ROUTES if settings.metrics.enabled and not settings.metrics.listen else []
    return Starlette(routes=[*ROUTES, *INBOUND_ROUTES, *ACCOUNT_ROUTES, *SESSION_ROUTES, *ADMIN_ROUTES,
                             *CONSOLE_ROUTES, *metrics_routes],
                     lifespan=lifespan,
                     exception_handlers={ApiError: api_error_handler, HTTPException: http_exception_handler},
                     middleware=[Middleware(RequestIds),  # outermost: every answer gets its x-request-id
                                 Middleware(BodyDeadline, timeout=settings.client_body_timeout)])


def app_from_handoff(handoff: bytes) -> Starlette:
    """The worker's app from what `proxy/server.py` handed over: the settings and, when
    `serve` found it in the environment, the master key."""
    data = orjson.loads(handoff)
    settings = Settings.model_validate(data["settings"])
    if data.get("master_key"):
        # The keystore reads $MODELPORT_MASTER_KEY. Setting it here changes this process's
        # own copy of the environment only, not the exec-time block that /proc/PID/environ
        # shows to other processes, and a worker starts no processes that could inherit it.
        os.environ[MASTER_KEY_ENV] = data["master_key"]
    configure_logging(settings.log_level, settings.log_format)
    return build_app(settings)


def app_from_env() -> Starlette:
    """uvicorn factory for running under another ASGI server: settings from the config file
    named in MODELPORT_CONFIG (else the defaults)."""
    path = os.environ.get(CONFIG_ENV)
    settings = load_settings(Path(path) if path else None)
    configure_logging(settings.log_level, settings.log_format)
    return build_app(settings)
