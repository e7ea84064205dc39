"""`modelport serve --demo`: the gateway with no vendor key at all.

The emulators (`emulators/`) run in the server's own process on a loopback socket bound
here, before the server starts, so its port is known while the demo tenant is written;
every provider of the catalog is configured against them, with defaults for the three
model types. The demo keeps its data in a directory of its own, marked as the demo's: a
demo never writes into a real database, and `serve` without `--demo` refuses a demo's.
"""

from __future__ import annotations

import argparse
import socket
from dataclasses import dataclass
from pathlib import Path

from proxy.bootstrap import StartupError, open_store_and_keystore
from proxy.hosted import build_offers
from proxy.service import Management
from proxy.settings import Settings
from translators.errors import ApiError

__all__ = ["DEFAULT_DEMO_DIR", "DEMO_MARKER", "DEMO_TENANT", "DemoSetup", "check_not_demo", "demo_settings",
           "emulator_socket", "set_up"]

DEFAULT_DEMO_DIR = Path("modelport-demo")
DEFAULT_DATA_DIR = Settings.model_fields["data_dir"].default  # a real install's
DEMO_MARKER = ".modelport-demo"
DEMO_TENANT = "demo"
_DB_NAME = "modelport.db"


@dataclass(frozen=True)
class DemoSetup:
    token: str
    console_token: str | None
    emulators_url: str
    providers: list[str]


def check_not_demo(settings: Settings) -> None:
    """A plain `serve` on the demo's directory would mix real tenants into it."""
    if settings.database_url is None and (settings.data_dir / DEMO_MARKER).exists():
        raise StartupError(f"{settings.data_dir} holds the demo's data: run `modelport serve --demo`, "
                           "or choose another data_dir for real tenants")


def demo_settings(settings: Settings, args: argparse.Namespace) -> Settings:
    """The settings a demo runs with: its own SQLite directory, no Redis, no operator keys
    lent to tenants, loopback upstreams allowed."""
    given = getattr(args, "demo_data_dir", None)
    chosen = settings.database or settings.redis_url or settings.data_dir != Path(DEFAULT_DATA_DIR).resolve()
    if given is None and chosen:
        raise StartupError(f"this configuration uses the database {settings.database_label}: --demo keeps its "
                           "tenant apart from real ones, so give it a directory of its own with --demo-data-dir DIR")
    directory = Path(given) if given else DEFAULT_DEMO_DIR
    if (directory / _DB_NAME).exists() and not (directory / DEMO_MARKER).exists():
        raise StartupError(f"{directory} holds a database that is not the demo's: choose another --demo-data-dir")
    directory.mkdir(parents=True, exist_ok=True)
    (directory / DEMO_MARKER).write_text("modelport serve --demo keeps its data here\n")
    upstream = settings.upstream.model_copy(update={"allow_hosts": [*settings.upstream.allow_hosts, "127.0.0.1"]})
    return settings.model_copy(update={"data_dir": directory.resolve(), "database": None, "redis_url": None,
                                       "hosted": {}, "upstream": upstream})


def emulator_socket() -> socket.socket:
    """Bound now, served by the server process (it inherits the descriptor)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.set_inheritable(True)
    return sock


async def _replace_model(m: Management, provider: str, model: str, kind: str, fields: dict[str, str]) -> None:
    try:
        await m.add_model(DEMO_TENANT, provider, model, kind, fields)
    except ApiError as exc:
        if exc.status != 409:
            raise
        await m.remove_model(DEMO_TENANT, provider, model)
        await m.add_model(DEMO_TENANT, provider, model, kind, fields)


async def _configure(m: Management, root: str, console: bool) -> DemoSetup:
    from emulators.catalog import DEMO_DEFAULTS, EMULATORS  # only a demo loads the emulators

    if not any(t["name"] == DEMO_TENANT for t in await m.list_tenants()):
        await m.create_tenant(DEMO_TENANT)
    for name, emulator in EMULATORS.items():
        fields = emulator.gateway_credential(f"{root}/{name}")
        if emulator.per_model:
            for demo in emulator.demo:
                await _replace_model(m, emulator.provider, demo.model, demo.type, {**fields, **demo.fields})
        else:
            await m.set_provider(DEMO_TENANT, emulator.provider, fields)
    for kind, target in DEMO_DEFAULTS.items():
        await m.set_default(DEMO_TENANT, kind, target)
    token = (await m.create_token(DEMO_TENANT, "demo"))["token"]
    console_token = (await m.create_token(DEMO_TENANT, "demo-console", "console"))["token"] if console else None
    return DemoSetup(str(token), console_token, root, sorted({e.provider for e in EMULATORS.values()}))


async def set_up(settings: Settings, emulators_port: int) -> DemoSetup:
    """The demo tenant, configured against emulators at `emulators_port` (a new port each
    run: the credentials are rewritten), and a new API token for it."""
    store, keystore = await open_store_and_keystore(settings)
    try:
        return await _configure(Management(store, keystore, build_offers(settings.hosted)),
                                f"http://127.0.0.1:{emulators_port}", settings.console.enabled)
    finally:
        await store.close()


def describe(setup: DemoSetup, settings: Settings) -> list[str]:
    """What `serve --demo` prints: the token and a first call (the token is the demo's,
    on a loopback-only emulated vendor: printing it is the point)."""
    base = f"http://{settings.host}:{settings.port}/v1"
    lines = [f"demo: tenant '{DEMO_TENANT}' on emulated vendors at {setup.emulators_url}/NAME "
             f"({', '.join(setup.providers)})",
             f"demo: API token {setup.token}",
             f"demo: try  curl {base}/chat/completions -H 'Authorization: Bearer {setup.token}' "
             "-H 'Content-Type: application/json' -d '{\"model\": \"default\", "
             "\"messages\": [{\"role\": \"user\", \"content\": \"Hello\"}]}'"]
    if setup.console_token:
        lines.append(f"demo: console token {setup.console_token} (sign in at http://{settings.host}:"
                     f"{settings.port}/console/)")
    return lines
