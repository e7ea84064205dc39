"""`build_app(settings)` -> the Starlette app. The lifespan owns the per-worker objects:
the store, the keystore, the upstream client, the change watcher and the usage writer
(flushed on the way out, after uvicorn has drained the requests)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator
from pathlib import Path

from starlette.applications import Starlette
from starlette.exceptions import HTTPException

from proxy.account import ACCOUNT_ROUTES
from proxy.admin import ADMIN_ROUTES
from proxy.bootstrap import ensure_admin_token, open_store_and_keystore
from proxy.errors import http_exception_handler
from proxy.gateway import Gateway
from proxy.hosted import build_offers
from proxy.quotas import Quotas
from proxy.routes import ROUTES
from proxy.settings import CONFIG_ENV, Settings, load_settings
from proxy.tenants import Directory
from proxy.usage_writer import UsageWriter
from translators._http import Timeouts, UpstreamClient

SETTINGS_ENV = "MODELPORT_SETTINGS_JSON"
log = logging.getLogger("modelport")


async def _watch_changes(gateway: Gateway) -> None:
    """Poll the change counter; when it moves, drop the caches and re-read the admin token
    (another process may have reset it)."""
    while True:
        try:
            if await gateway.directory.refresh_if_changed():
                gateway.admin_hash = (await ensure_admin_token(gateway.store, gateway.settings))[0]
        except Exception:  # a locked or busy database must not end the watcher
            log.warning("could not poll the change counter; will retry", exc_info=True)
        await asyncio.sleep(gateway.settings.change_poll_interval)


def build_app(settings: Settings) -> Starlette:
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        store, keystore = await open_store_and_keystore(settings)
        admin_hash, _ = await ensure_admin_token(store, settings)
        directory = Directory(store, keystore)
        await directory.refresh_if_changed()
        up = settings.upstream
        http = UpstreamClient(Timeouts(up.connect_timeout, up.read_timeout, up.total_timeout))
        offers = build_offers(settings.hosted)  # validated when the settings were loaded
        usage = UsageWriter(store, retention_days=settings.usage_retention_days,
                            interval=settings.usage_flush_interval)
        app.state.gateway = Gateway(settings, store, keystore, directory, http, admin_hash, offers,
                                    Quotas(store, offers), usage)
        watcher = asyncio.create_task(_watch_changes(app.state.gateway))
        usage.start()
        try:
            yield
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
            await usage.close()
            await http.close()
            await store.close()

    return Starlette(routes=[*ROUTES, *ACCOUNT_ROUTES, *ADMIN_ROUTES], lifespan=lifespan,
                     exception_handlers={HTTPException: http_exception_handler})


def _configure_logging(level: str) -> None:
    """Our logger in uvicorn's format, set up in each worker (the factory runs there)."""
    from uvicorn.logging import DefaultFormatter

    logger = logging.getLogger("modelport")
    logger.setLevel(level.upper())
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(DefaultFormatter("%(levelprefix)s %(message)s"))
        logger.addHandler(handler)
        logger.propagate = False


def app_from_env() -> Starlette:
    """uvicorn factory for worker processes: `serve` passes its settings in the environment
    (a config file path in MODELPORT_CONFIG works too, for running under another ASGI server)."""
    raw = os.environ.get(SETTINGS_ENV)
    if raw:
        settings = Settings.model_validate_json(raw)
    else:
        path = os.environ.get(CONFIG_ENV)
        settings = load_settings(Path(path) if path else None)
    _configure_logging(settings.log_level)
    return build_app(settings)
