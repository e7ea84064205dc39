"""The `modelport` command: `serve`, and management on the same database as the
server (found from --config, else ./modelport-data), whether or not it is running."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, NoReturn

import orjson

from keystore import MASTER_KEY_ENV, master_key_from_env
from keystore.crypto import KeystoreError
from proxy import cli_args, demo
from proxy.bootstrap import (
    StartupError,
    ensure_admin_token,
    open_store_and_keystore,
    reset_admin_token,
)
from proxy.cli_args import pairs
from proxy.cli_args import parser as cli_parser
from proxy.hosted import build_offers
from proxy.rotation import rotate_master
from proxy.service import Management
from proxy.settings import CONFIG_ENV, Settings, SettingsError, load_settings
from proxy.usage_report import table
from translators.errors import ApiError


def _settings(args: argparse.Namespace) -> Settings:
    path = args.config or os.environ.get(CONFIG_ENV)
    settings = load_settings(Path(path) if path else None, data_dir=args.data_dir)
    # Workers and the CLI must agree on files whatever their working directory.
    return settings.model_copy(update={"data_dir": settings.data_dir.resolve()})


async def _with_management(settings: Settings, action: Callable[[Management], Awaitable[Any]]) -> Any:
    store, keystore = await open_store_and_keystore(settings)
    try:
        return await action(Management(store, keystore, build_offers(settings.hosted)))
    finally:
        await store.close()


def _quota_table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "no provider is hosted by this gateway (see the `hosted:` section of the configuration)"
    head = ["PROVIDER", "LIMIT", "USED", "REMAINING", "OWN_CREDENTIAL", "MODELS"]
    lines = [head] + [[r["provider"], "unlimited" if r["limit"] < 0 else str(r["limit"]), str(r["used"]),
                       "unlimited" if r["remaining"] < 0 else str(r["remaining"]),
                       "yes (trial not used)" if r["own_credential"] else "no", ", ".join(r["models"])]
                      for r in rows]
    widths = [max(len(line[i]) for line in lines) for i in range(len(head))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() for line in lines)


def _print(result: Any, as_json: bool) -> None:
    if as_json:
        print(json.dumps(result, indent=2, sort_keys=True))
        return
    rows = result if isinstance(result, list) else [result]
    for row in rows:
        if isinstance(row, dict):
            print("  ".join(f"{k}={json.dumps(v) if isinstance(v, dict) else v}" for k, v in row.items()))
        else:
            print(row)


def _handoff(settings: Settings, emulators_fd: int | None = None) -> tuple[int, dict[str, str]]:
    """The settings and the master key for `proxy.server`, in an anonymous in-memory file
    (a descriptor the exec'd process inherits: no name on disk, nothing in the environment
    or the command line), and the environment to exec with: ours without the master key
    and without any variable holding another secret of the settings (a hosted credential
    given as `${VAR}`, the admin token)."""
    master = master_key_from_env()
    payload = orjson.dumps({"settings": settings.model_dump(mode="json"), "master_key": master,
                            "emulators_fd": emulators_fd})
    if hasattr(os, "memfd_create"):  # Linux: memory only, never a name on any file system
        fd = os.memfd_create("modelport-settings", 0)
    else:  # elsewhere: a 0600 temporary file, unlinked before anything is written to it
        with tempfile.TemporaryFile(dir=settings.data_dir) as f:
            fd = os.dup(f.fileno())
    os.write(fd, payload)  # a regular file or memfd takes it all in one write
    os.lseek(fd, 0, os.SEEK_SET)
    os.set_inheritable(fd, True)
    hidden = {master, settings.admin_token, settings.database_url, settings.redis_url,  # URLs hold passwords
              *(v for h in settings.hosted.values() for v in h.credentials.values())}
    hidden = {v for v in hidden if v and len(v) >= 8}  # short values are no secret and might match PATH-like ones
    env = {k: v for k, v in os.environ.items() if k != MASTER_KEY_ENV and v.strip() not in hidden}
    return fd, env


def _say(settings: Settings, message: str) -> None:
    """A line of `serve` before logging is set up: in the log's format (JSON lines parse)."""
    from proxy.logs import json_line

    print(json_line(message) if settings.log_format == "json" else f"modelport: {message}", flush=True)


def _serve(args: argparse.Namespace, settings: Settings) -> NoReturn:
    updates = {k: v for k, v in (("host", args.host), ("port", args.port), ("workers", args.workers)) if v}
    settings = settings.model_copy(update=updates)
    if args.demo:
        settings = demo.demo_settings(settings, args)
    elif args.demo_data_dir:
        raise StartupError("--demo-data-dir goes with --demo")
    else:
        demo.check_not_demo(settings)

    async def prepare() -> Path | None:
        store, _ = await open_store_and_keystore(settings)
        try:
            return (await ensure_admin_token(store, settings))[1]
        finally:
            await store.close()

    token_file = asyncio.run(prepare())
    if token_file:
        # The path, never the token: logs are kept and shared far longer than a secret should be.
        _say(settings, f"created the admin token for /admin/v1 in {token_file} (mode 0600)")
    emulators = demo.emulator_socket() if args.demo else None
    if emulators is not None:
        setup = asyncio.run(demo.set_up(settings, emulators.getsockname()[1]))
        for line in demo.describe(setup, settings):
            _say(settings, line)
    fd, env = _handoff(settings, emulators.fileno() if emulators is not None else None)
    _say(settings, f"serving on http://{settings.host}:{settings.port} (data in {settings.data_dir})")
    sys.stderr.flush()
    # Become a bare uvicorn supervisor (same PID): everything this CLI imported (every
    # translator, the keystore) would otherwise stay resident in it for nothing; the
    # benchmark counted ~25 MiB. Workers build the app from the handoff (proxy/server.py).
    os.execve(sys.executable, [sys.executable, "-m", "proxy.server", "--handoff-fd", str(fd)], env)


def _emulate(args: argparse.Namespace) -> int:
    from emulators.catalog import EMULATORS  # the emulators load only for this command
    from emulators.serve import ALL, serve_forever

    if args.vendor == "list":
        for name, emulator in EMULATORS.items():
            print(f"{name:<18} {emulator.title}")
        return 0
    if args.vendor != ALL and args.vendor not in EMULATORS:
        print(f"modelport emulate: no emulator named {args.vendor!r}; one of: {', '.join(EMULATORS)}, or all",
              file=sys.stderr)
        return 2
    names = list(EMULATORS) if args.vendor == ALL else [args.vendor]
    try:
        return serve_forever(names, args.host, args.port, reply=args.reply)
    except KeyboardInterrupt:
        return 0


def _db(args: argparse.Namespace, settings: Settings) -> int:
    """`db status`, `db migrate`, `db copy`: the master key is not needed for any of them."""
    from proxy import dbcopy, dbschema  # asyncpg and the copy only for these commands

    try:
        if args.action == "status":
            state = asyncio.run(dbschema.status(settings))
            print(json.dumps(state.as_dict(), indent=2, sort_keys=True) if args.json else state.describe())
        elif args.action == "migrate":
            before, after = asyncio.run(dbschema.migrate(settings))
            if args.json:
                print(json.dumps({"before": before.as_dict(), "after": after.as_dict()}, indent=2, sort_keys=True))
            elif before.version == after.version:
                print(f"{after.engine} {after.database}: schema version {after.version}, up to date")
            else:
                print(f"{after.engine} {after.database}: migrated from schema version {before.version} "
                      f"to {after.version}")
        else:
            if settings.database_url:
                raise dbschema.DatabaseCommandError(
                    f"db copy moves a SQLite install; this configuration's database is already PostgreSQL "
                    f"({settings.database_label})")
            report = asyncio.run(dbcopy.copy_to_postgres(settings.database_path, cli_args.dsn_argument(args.to),
                                                         busy_timeout=settings.database_busy_timeout))
            print(json.dumps({"source": report.source, "target": report.target, "version": report.version,
                              "rows": report.rows}, indent=2) if args.json else dbcopy.describe(report))
    except dbschema.DatabaseCommandError as exc:
        print(f"modelport: {exc}", file=sys.stderr)
        return 1
    return 0


_ACTIONS: dict[tuple[str, str | None], Callable[[argparse.Namespace], Callable[[Management], Awaitable[Any]]]] = {
    ("tenants", "create"): lambda a: lambda m: m.create_tenant(a.name),
    ("tenants", "list"): lambda a: lambda m: m.list_tenants(),
    ("tenants", "delete"): lambda a: lambda m: m.delete_tenant(a.tenant),
    ("tokens", "create"): lambda a: lambda m: m.create_token(a.tenant, a.name, "console" if a.console else "api"),
    ("tokens", "list"): lambda a: lambda m: m.list_tokens(a.tenant),
    ("tokens", "revoke"): lambda a: lambda m: m.revoke_token(a.token_id),
    ("providers", "set"): lambda a: lambda m: m.set_provider(a.tenant, a.provider, pairs(a.fields), name=a.name,
                                                             weight=a.weight),
    ("providers", "list"): lambda a: lambda m: m.list_providers(a.tenant),
    ("providers", "remove"): lambda a: lambda m: m.remove_provider(a.tenant, a.provider, a.name),
    ("models", "add"): lambda a: lambda m: m.add_model(a.tenant, a.provider, a.model, a.type, pairs(a.fields),
                                                       name=a.name, weight=a.weight),
    ("models", "list"): lambda a: lambda m: m.list_models(a.tenant),
    ("models", "remove"): lambda a: lambda m: m.remove_model(a.tenant, a.provider, a.model, a.name),
    ("defaults", "set"): lambda a: lambda m: m.set_default(a.tenant, a.type, a.model),
    ("defaults", "show"): lambda a: lambda m: m.show_defaults(a.tenant),
    ("defaults", "clear"): lambda a: lambda m: m.clear_default(a.tenant, a.type),
    ("quota", "show"): lambda a: lambda m: m.show_quota(a.tenant),
    ("quota", "set"): lambda a: lambda m: m.set_quota(a.tenant, a.provider, a.limit),
    ("fallbacks", "set"): lambda a: lambda m: m.set_fallbacks(a.tenant, a.model, a.fallbacks),
    ("fallbacks", "show"): lambda a: lambda m: m.show_fallbacks(a.tenant),
    ("fallbacks", "clear"): lambda a: lambda m: m.clear_fallbacks(a.tenant, a.model),
    ("limits", "set"): lambda a: lambda m: m.set_rate_limit(a.tenant, a.token, a.model, a.rpm, a.tpm),
    ("limits", "show"): lambda a: lambda m: m.show_rate_limits(a.tenant),
    ("limits", "clear"): lambda a: lambda m: m.clear_rate_limit(a.tenant, a.token, a.model),
    ("budgets", "set"): lambda a: lambda m: m.set_budget(a.tenant, a.token, a.daily, a.monthly, a.allow_unpriced),
    ("budgets", "show"): lambda a: lambda m: m.show_budgets(a.tenant),
    ("budgets", "clear"): lambda a: lambda m: m.clear_budget(a.tenant, a.token),
    ("usage", None): lambda a: lambda m: m.usage(a.tenant, a.since, a.until, a.by),
}


def main(argv: list[str] | None = None) -> int:
    parser = cli_parser()
    # `models add T P M --type llm key=value ...`: argparse does not give positionals that
    # follow an option to an earlier nargs="*" positional, so collect them here.
    args, extra = parser.parse_known_args(argv)
    if extra:
        if isinstance(getattr(args, "fields", None), list) and not any(e.startswith("-") for e in extra):
            args.fields.extend(extra)
        else:
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if args.command == "emulate":
        return _emulate(args)
    try:
        settings = _settings(args)
        if args.command == "serve":
            return _serve(args, settings)
        if args.command == "keys":
            asyncio.run(rotate_master(settings))  # prints its outcome before committing
            return 0
        if args.command == "admin-token":
            async def reset() -> str:
                store, _ = await open_store_and_keystore(settings)
                try:
                    return await reset_admin_token(store, settings)
                finally:
                    await store.close()
            print(asyncio.run(reset()))
            return 0
        if args.command == "db":
            return _db(args, settings)
        action = getattr(args, "action", None)
        result = asyncio.run(_with_management(settings, _ACTIONS[(args.command, action)](args)))
    except (SettingsError, StartupError, KeystoreError) as exc:
        print(f"modelport: {exc}", file=sys.stderr)
        return 2
    except ApiError as exc:
        print(f"modelport: {exc.message}", file=sys.stderr)
        return 1
    if args.json:
        _print(result, True)
    elif (args.command, action) == ("tenants", "create"):
        print(result["id"])
    elif args.command == "usage":
        print(table(result))
    elif args.command == "quota":
        print(_quota_table(result if isinstance(result, list) else [result]))
    elif (args.command, action) == ("tokens", "create"):
        print(f"token {result['id']} for tenant {result['tenant']} (shown only this once):", file=sys.stderr)
        print(result["token"])
    else:
        _print(result, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
