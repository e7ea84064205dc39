"""The `modelport` command: `serve`, and management on the same database as the
server (found from --config, else ./modelport-data), whether or not it is running."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, NoReturn

from keystore import MASTER_KEY_ENV, encode_master_key, new_master_key, write_master_key
from keystore.crypto import KeystoreError
from proxy.bootstrap import (
    StartupError,
    ensure_admin_token,
    open_store_and_keystore,
    reset_admin_token,
)
from proxy.hosted import build_offers
from proxy.service import Management
from proxy.settings import CONFIG_ENV, Settings, SettingsError, load_settings
from proxy.usage_report import table
from translators.errors import ApiError


def _settings(args: argparse.Namespace) -> Settings:
    path = args.config or os.environ.get(CONFIG_ENV)
    settings = load_settings(Path(path) if path else None, data_dir=args.data_dir)
    # Workers and the CLI must agree on files whatever their working directory.
    return settings.model_copy(update={"data_dir": settings.data_dir.resolve()})


def _pairs(items: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ApiError(400, f"expected key=value, got '{item.split('=')[0]}'")
        out[key] = value
    return out


async def _with_management(settings: Settings, action: Callable[[Management], Awaitable[Any]]) -> Any:
    store, keystore = await open_store_and_keystore(settings)
    try:
        return await action(Management(store, keystore, build_offers(settings.hosted)))
    finally:
        await store.close()


def _limit(value: str) -> int | None:
    """`quota set`'s N: a number of calls, -1 for unlimited, `default` for the configured quota."""
    if value == "default":
        return None
    try:
        return int(value)
    except ValueError:
        raise argparse.ArgumentTypeError("expected a number of calls, -1 (unlimited) or 'default'") from None


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


def _serve(args: argparse.Namespace, settings: Settings) -> NoReturn:
    from proxy.app import SETTINGS_ENV

    updates = {k: v for k, v in (("host", args.host), ("port", args.port), ("workers", args.workers)) if v}
    settings = settings.model_copy(update=updates)

    async def prepare() -> str | None:
        store, _ = await open_store_and_keystore(settings)
        try:
            return (await ensure_admin_token(store, settings))[1]
        finally:
            await store.close()

    new_admin = asyncio.run(prepare())
    if new_admin:
        print("modelport: created the admin token for /admin/v1 (shown only this once):", flush=True)
        print(new_admin, flush=True)
    os.environ[SETTINGS_ENV] = settings.model_dump_json()
    print(f"modelport: serving on http://{settings.host}:{settings.port} (data in {settings.data_dir})", flush=True)
    sys.stderr.flush()
    # Become a bare uvicorn (same PID): everything this CLI imported (every translator,
    # the keystore) would otherwise stay resident in the supervisor process for nothing;
    # the benchmark counted ~25 MiB. Workers build the app from the environment.
    os.execv(sys.executable, [
        sys.executable, "-m", "uvicorn", "proxy.app:app_from_env", "--factory",
        "--host", settings.host, "--port", str(settings.port), "--workers", str(settings.workers),
        "--log-level", settings.log_level, "--no-access-log", "--no-proxy-headers",
        "--timeout-graceful-shutdown", "10"])


async def _rotate_master(settings: Settings) -> str:
    store, keystore = await open_store_and_keystore(settings)
    try:
        new_key = new_master_key()
        from keystore.store import MASTER_CHECK_META, Keystore
        rewrapped = keystore.rewrap_all(await store.all_wrapped_private_keys(), new_key)
        from_env = bool(os.environ.get(MASTER_KEY_ENV))
        staged = settings.master_key_path.with_suffix(".key.new")
        if not from_env:
            write_master_key(staged, new_key)  # on disk before the database needs it
        await store.replace_wrapped_private_keys(rewrapped, {MASTER_CHECK_META: Keystore(new_key).master_check()})
        if from_env:
            return ("master key rotated. Set this new value in MODELPORT_MASTER_KEY and restart the servers:\n"
                    + encode_master_key(new_key))
        os.replace(staged, settings.master_key_path)
        return f"master key rotated; {len(rewrapped)} tenant key(s) re-wrapped; key file {settings.master_key_path}"
    finally:
        await store.close()


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="modelport", description="A multi-tenant, OpenAI-compatible LLM gateway.")
    p.add_argument("--config", help="YAML settings file (default: none; env MODELPORT_CONFIG)")
    p.add_argument("--data-dir", help="data directory (default ./modelport-data)")
    p.add_argument("--json", action="store_true", help="print results as JSON")
    sub = p.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the gateway")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument("--workers", type=int)

    def group(name: str, help: str) -> Any:
        return sub.add_parser(name, help=help).add_subparsers(dest="action", required=True)

    tenants = group("tenants", "create, list, delete tenants")
    tenants.add_parser("create").add_argument("name")
    tenants.add_parser("list")
    tenants.add_parser("delete").add_argument("tenant")

    tokens = group("tokens", "API tokens of a tenant")
    create = tokens.add_parser("create")
    create.add_argument("tenant")
    create.add_argument("--name")
    tokens.add_parser("list").add_argument("tenant")
    tokens.add_parser("revoke").add_argument("token_id")

    providers = group("providers", "provider credentials of a tenant")
    pset = providers.add_parser("set")
    pset.add_argument("tenant")
    pset.add_argument("provider")
    pset.add_argument("fields", nargs="*", metavar="key=value")
    providers.add_parser("list").add_argument("tenant")
    premove = providers.add_parser("remove")
    premove.add_argument("tenant")
    premove.add_argument("provider")

    models = group("models", "models added one by one, each with its own credentials (hosted-model providers)")
    madd = models.add_parser("add")
    madd.add_argument("tenant")
    madd.add_argument("provider")
    madd.add_argument("model")
    madd.add_argument("--type", required=True, choices=["llm", "text-embedding", "speech2text"])
    madd.add_argument("fields", nargs="*", metavar="key=value")
    models.add_parser("list").add_argument("tenant")
    mremove = models.add_parser("remove")
    mremove.add_argument("tenant")
    mremove.add_argument("provider")
    mremove.add_argument("model")

    defaults = group("defaults", "default model per model type")
    dset = defaults.add_parser("set")
    dset.add_argument("tenant")
    dset.add_argument("type")
    dset.add_argument("model", metavar="PROVIDER/MODEL")
    defaults.add_parser("show").add_argument("tenant")
    dclear = defaults.add_parser("clear")
    dclear.add_argument("tenant")
    dclear.add_argument("type")

    quota = group("quota", "hosted trial quotas of a tenant")
    quota.add_parser("show", help="limit, used and remaining calls per hosted provider").add_argument("tenant")
    qset = quota.add_parser("set", help="a tenant's total hosted calls on a provider (raise it to grant more)")
    qset.add_argument("tenant")
    qset.add_argument("provider")
    qset.add_argument("limit", type=_limit, metavar="N", help="calls in total; -1 unlimited; 'default'")

    usage = sub.add_parser("usage", help="requests and tokens per model, provider or day")
    usage.add_argument("tenant", nargs="?", help="one tenant (default: every tenant)")
    usage.add_argument("--since", help="unix seconds, ISO date or date-time (default: oldest record kept)")
    usage.add_argument("--until", help="same forms; a date includes the whole day (default: now)")
    usage.add_argument("--by", choices=["model", "provider", "day", "tenant"], default="model")

    keys = group("keys", "the master key")
    keys.add_parser("rotate-master", help="re-wrap every tenant key under a new master key")
    admin = group("admin-token", "the admin API token")
    admin.add_parser("reset", help="replace the admin token and print the new one")
    return p


_ACTIONS: dict[tuple[str, str | None], Callable[[argparse.Namespace], Callable[[Management], Awaitable[Any]]]] = {
    ("tenants", "create"): lambda a: lambda m: m.create_tenant(a.name),
    ("tenants", "list"): lambda a: lambda m: m.list_tenants(),
    ("tenants", "delete"): lambda a: lambda m: m.delete_tenant(a.tenant),
    ("tokens", "create"): lambda a: lambda m: m.create_token(a.tenant, a.name),
    ("tokens", "list"): lambda a: lambda m: m.list_tokens(a.tenant),
    ("tokens", "revoke"): lambda a: lambda m: m.revoke_token(a.token_id),
    ("providers", "set"): lambda a: lambda m: m.set_provider(a.tenant, a.provider, _pairs(a.fields)),
    ("providers", "list"): lambda a: lambda m: m.list_providers(a.tenant),
    ("providers", "remove"): lambda a: lambda m: m.remove_provider(a.tenant, a.provider),
    ("models", "add"): lambda a: lambda m: m.add_model(a.tenant, a.provider, a.model, a.type, _pairs(a.fields)),
    ("models", "list"): lambda a: lambda m: m.list_models(a.tenant),
    ("models", "remove"): lambda a: lambda m: m.remove_model(a.tenant, a.provider, a.model),
    ("defaults", "set"): lambda a: lambda m: m.set_default(a.tenant, a.type, a.model),
    ("defaults", "show"): lambda a: lambda m: m.show_defaults(a.tenant),
    ("defaults", "clear"): lambda a: lambda m: m.clear_default(a.tenant, a.type),
    ("quota", "show"): lambda a: lambda m: m.show_quota(a.tenant),
    ("quota", "set"): lambda a: lambda m: m.set_quota(a.tenant, a.provider, a.limit),
    ("usage", None): lambda a: lambda m: m.usage(a.tenant, a.since, a.until, a.by),
}


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    # `models add T P M --type llm key=value ...`: argparse does not give positionals that
    # follow an option to an earlier nargs="*" positional, so collect them here.
    args, extra = parser.parse_known_args(argv)
    if extra:
        if isinstance(getattr(args, "fields", None), list) and not any(e.startswith("-") for e in extra):
            args.fields.extend(extra)
        else:
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        settings = _settings(args)
        if args.command == "serve":
            return _serve(args, settings)
        if args.command == "keys":
            print(asyncio.run(_rotate_master(settings)))
            return 0
        if args.command == "admin-token":
            async def reset() -> str:
                store, _ = await open_store_and_keystore(settings)
                try:
                    return await reset_admin_token(store)
                finally:
                    await store.close()
            print(asyncio.run(reset()))
            return 0
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
