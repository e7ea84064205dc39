"""The `modelport` command line: its parser, and reading `key=value` fields whose secret
values may come from stdin or a file.

`--config`, `--data-dir` and `--json` are accepted before the verb and after it
(`modelport serve --config FILE`, `modelport tenants list --json`): every subparser
takes them too, with suppressed defaults, so a value given after the verb overrides
one given before it and an absent one leaves it alone.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from translators.errors import ApiError


def _global_options(p: argparse.ArgumentParser, *, suppress: bool) -> None:
    default: dict[str, Any] = {"default": argparse.SUPPRESS} if suppress else {}
    p.add_argument("--config", help="YAML settings file (default: none; env MODELPORT_CONFIG)", **default)
    p.add_argument("--data-dir", help="data directory (default ./modelport-data)", **default)
    p.add_argument("--json", action="store_true", help="print results as JSON", **default)


class _Subparser(argparse.ArgumentParser):
    """Every subparser (and theirs: `add_subparsers` uses the class of its parent) takes
    the global options as well."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _global_options(self, suppress=True)


def _read_secret(source: str, key: str, stdin_used: list[bool]) -> str:
    """`@-`: stdin; `@PATH`: the file. One trailing newline is dropped (`echo` and editors
    add one; a credential never ends with one)."""
    if source == "-":
        if stdin_used[0]:
            raise ApiError(400, f"{key}=@-: only one value can come from stdin")
        stdin_used[0] = True
        text = sys.stdin.read()
    else:
        try:
            text = Path(source).read_text()
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
            raise ApiError(400, f"{key}=@{source}: cannot read the file: {reason}") from None
    return text.removesuffix("\n").removesuffix("\r")


def pairs(items: list[str]) -> dict[str, str]:
    """`key=value` fields. A value `@-` is read from stdin and `@PATH` from a file, so that
    secrets stay out of the command line (`ps`, shell history); `@@...` is a literal `@...`."""
    out: dict[str, str] = {}
    stdin_used = [False]
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ApiError(400, f"expected key=value, got '{item.split('=')[0]}'")
        if value.startswith("@@"):
            value = value[1:]
        elif value.startswith("@") and len(value) > 1:
            value = _read_secret(value[1:], key, stdin_used)
        out[key] = value
    return out


def dsn_argument(value: str) -> str:
    """`db copy --to`: the URL itself, or `@FILE` / `@-` (read like a credential field)."""
    if value.startswith("@") and len(value) > 1:
        return _read_secret(value[1:], "--to", [False]).strip()
    return value


def _limit(value: str) -> int | None:
    """`quota set`'s N: a number of calls, -1 for unlimited, `default` for the configured quota."""
    if value == "default":
        return None
    try:
        return int(value)
    except ValueError:
        raise argparse.ArgumentTypeError("expected a number of calls, -1 (unlimited) or 'default'") from None


_FIELDS_HELP = "credential fields; a value @- is read from stdin, @FILE from a file (keeps secrets out of ps)"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="modelport", description="A multi-tenant, OpenAI-compatible LLM gateway.")
    _global_options(p, suppress=False)
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Subparser)

    serve = sub.add_parser("serve", help="run the gateway")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument("--workers", type=int)
    serve.add_argument("--demo", action="store_true",
                       help="no vendor key needed: a 'demo' tenant on vendor emulators run in-process")
    serve.add_argument("--demo-data-dir", help="where the demo keeps its data (default ./modelport-demo)")

    emulate = sub.add_parser("emulate", help="serve a vendor's API locally (an emulator), or all of them")
    emulate.add_argument("vendor", help="an emulator (`modelport emulate list` names them), or `all`")
    emulate.add_argument("--host", default="127.0.0.1")
    emulate.add_argument("--port", type=int, default=8100)
    emulate.add_argument("--reply", help="answer every request with this text, or `echo` the last user message")

    def group(name: str, help: str) -> Any:
        return sub.add_parser(name, help=help).add_subparsers(dest="action", required=True)

    tenants = group("tenants", "create, list, delete tenants")
    tenants.add_parser("create").add_argument("name")
    tenants.add_parser("list")
    tenants.add_parser("delete").add_argument("tenant")

    tokens = group("tokens", "API and console tokens of a tenant")
    create = tokens.add_parser("create")
    create.add_argument("tenant")
    create.add_argument("--name")
    create.add_argument("--console", action="store_true",
                        help="a console token: signs the tenant's administrator in to /console/, not an API token")
    tokens.add_parser("list").add_argument("tenant")
    tokens.add_parser("revoke").add_argument("token_id")

    providers = group("providers", "provider credentials of a tenant")
    pset = providers.add_parser("set")
    pset.add_argument("tenant")
    pset.add_argument("provider")
    pset.add_argument("--name", default="default", help="one of several credentials of the provider")
    pset.add_argument("--weight", type=int, default=1, help="its share of the requests (default 1)")
    pset.add_argument("fields", nargs="*", metavar="key=value", help=_FIELDS_HELP)
    providers.add_parser("list").add_argument("tenant")
    premove = providers.add_parser("remove")
    premove.add_argument("tenant")
    premove.add_argument("provider")
    premove.add_argument("--name", help="one credential (default: all of the provider's)")

    models = group("models", "models added one by one, each with its own credentials (hosted-model providers)")
    madd = models.add_parser("add")
    madd.add_argument("tenant")
    madd.add_argument("provider")
    madd.add_argument("model")
    madd.add_argument("--type", required=True, choices=["llm", "text-embedding", "speech2text"])
    madd.add_argument("--name", default="default", help="one of several credentials of the model")
    madd.add_argument("--weight", type=int, default=1, help="its share of the model's requests (default 1)")
    madd.add_argument("fields", nargs="*", metavar="key=value", help=_FIELDS_HELP)
    models.add_parser("list").add_argument("tenant")
    mremove = models.add_parser("remove")
    mremove.add_argument("tenant")
    mremove.add_argument("provider")
    mremove.add_argument("model")
    mremove.add_argument("--name", help="one credential (default: the whole entry)")

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

    fallbacks = group("fallbacks", "models tried, in order, when a model's provider keeps failing")
    fset = fallbacks.add_parser("set")
    fset.add_argument("tenant")
    fset.add_argument("model", metavar="PROVIDER/MODEL")
    fset.add_argument("fallbacks", nargs="+", metavar="PROVIDER/MODEL")
    fallbacks.add_parser("show").add_argument("tenant")
    fclear = fallbacks.add_parser("clear")
    fclear.add_argument("tenant")
    fclear.add_argument("model", metavar="PROVIDER/MODEL")

    limits = group("limits", "requests and tokens per minute, per tenant or API token")
    lset = limits.add_parser("set")
    lset.add_argument("tenant")
    lset.add_argument("--token", metavar="TOKEN_ID", help="one API token (default: the whole tenant)")
    lset.add_argument("--model", metavar="PROVIDER/MODEL", help="one model (default: every model)")
    lset.add_argument("--rpm", type=int, metavar="N", help="requests per minute")
    lset.add_argument("--tpm", type=int, metavar="N", help="tokens per minute (prompt + completion)")
    limits.add_parser("show").add_argument("tenant")
    lclear = limits.add_parser("clear")
    lclear.add_argument("tenant")
    lclear.add_argument("--token", metavar="TOKEN_ID")
    lclear.add_argument("--model", metavar="PROVIDER/MODEL")

    budgets = group("budgets", "spending limits in US dollars per UTC day or month, per tenant or API token")
    bset = budgets.add_parser("set", help="set (replace) the budget of the tenant or one API token")
    bset.add_argument("tenant")
    bset.add_argument("--token", metavar="TOKEN_ID", help="one API token (default: the whole tenant)")
    bset.add_argument("--daily", type=float, metavar="USD", help="US dollars per UTC day")
    bset.add_argument("--monthly", type=float, metavar="USD", help="US dollars per UTC month")
    bset.add_argument("--allow-unpriced", action="store_true",
                      help="let models without a price through (their cost is not counted)")
    budgets.add_parser("show", help="each budget with what it spent this day and month").add_argument("tenant")
    bclear = budgets.add_parser("clear")
    bclear.add_argument("tenant")
    bclear.add_argument("--token", metavar="TOKEN_ID")

    usage = sub.add_parser("usage", help="requests, tokens and cost per model, provider or day")
    usage.add_argument("tenant", nargs="?", help="one tenant (default: every tenant)")
    usage.add_argument("--since", help="unix seconds, ISO date or date-time (default: oldest record kept)")
    usage.add_argument("--until", help="same forms; a date includes the whole day (default: now)")
    usage.add_argument("--by", choices=["model", "provider", "day", "tenant"], default="model")

    db = group("db", "the database: schema version, migrations, copying a SQLite install to PostgreSQL")
    db.add_parser("status", help="the backend, its schema version, the latest one, pending migrations")
    db.add_parser("migrate", help="apply pending migrations (one transaction: a failure changes nothing)")
    dcopy = db.add_parser("copy", help="copy this SQLite install into an empty PostgreSQL database")
    dcopy.add_argument("--to", required=True, metavar="postgresql://USER:PASSWORD@HOST:PORT/DB",
                       help="the target; @FILE reads the URL from a file and @- from stdin (keeps the "
                            "password out of ps and the shell history)")

    keys = group("keys", "the master key")
    keys.add_parser("rotate-master", help="re-wrap every tenant key under a new master key")
    admin = group("admin-token", "the admin API token")
    admin.add_parser("reset", help="replace the admin token and print the new one")
    return p
