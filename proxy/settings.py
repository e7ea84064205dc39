"""Operator settings: a YAML file (optional) with `${VAR}` taken from the environment.

Every setting has a default, so `modelport serve` runs with no file at all; the
documented version of each lives in `config.example.yaml`.
"""

from __future__ import annotations

import importlib.util
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic_core import PydanticCustomError

from proxy.prices import Price

if TYPE_CHECKING:
    from translators._http import UpstreamClient

CONFIG_ENV = "MODELPORT_CONFIG"
DATABASE_URL_ENV = "MODELPORT_DATABASE_URL"  # a PostgreSQL DSN, when the configuration names no database
REDIS_URL_ENV = "MODELPORT_REDIS_URL"  # Redis (counters, cooldowns), when the configuration names none
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class SettingsError(Exception):
    pass


def is_postgres_url(value: str) -> bool:
    return value.startswith(("postgresql://", "postgres://"))


def masked_dsn(dsn: str) -> str:
    """The DSN with its password replaced by ***: what any message may show."""
    from urllib.parse import urlsplit

    parts = urlsplit(dsn)
    if parts.password is None:
        return dsn
    host = parts.netloc.rpartition("@")[2]
    return parts._replace(netloc=f"{parts.username or ''}:***@{host}").geturl()


def without_password(text: str, dsn: str | None) -> str:
    """`text` (a driver's error, a message naming the DSN) with the DSN's password, as given
    and percent-decoded, replaced by ***: the one place messages lose it."""
    from urllib.parse import unquote, urlsplit

    try:
        password = urlsplit(dsn).password if dsn else None
    except ValueError:
        password = None
    if password:
        text = text.replace(password, "***").replace(unquote(password), "***")
    return text


class _Strict(BaseModel):
    # hide_input_in_errors: a rejected value may be a platform credential.
    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)


class UpstreamSettings(_Strict):
    connect_timeout: float = Field(10.0, gt=0)
    read_timeout: float = Field(120.0, gt=0)
    total_timeout: float = Field(600.0, gt=0)
    # Where upstream calls may connect (translators/_destinations.py): loopback, private
    # and unique-local addresses follow `private_networks` unless listed in `allow_hosts`
    # (host names or CIDRs); link-local/metadata addresses and the gateway itself never.
    private_networks: Literal["allow", "deny"] = "allow"
    allow_hosts: list[str] = Field(default_factory=list)
    # Bounded reads: past these an upstream answer is a 502, memory per call stays bounded.
    max_body_bytes: int = Field(8 * 1024 * 1024, ge=1024)
    max_event_bytes: int = Field(4 * 1024 * 1024, ge=1024)

    @field_validator("allow_hosts")
    @classmethod
    def _check_allow_hosts(cls, value: list[str]) -> list[str]:
        for entry in value:  # a CIDR, an address or a host name; a typo must stop `serve`
            if not re.fullmatch(r"[A-Za-z0-9.:\[\]/_-]+", entry):
                raise PydanticCustomError("allow_hosts", "{entry!r} is not a host name, address or CIDR",
                                          {"entry": entry})
        return value

    def client(self, own_host: str, own_port: int) -> UpstreamClient:
        """The app's upstream client under these settings; `own_host`/`own_port` are the
        gateway's listening address, which upstream calls must never reach."""
        from translators._destinations import DestinationPolicy
        from translators._http import Limits, Timeouts, UpstreamClient

        return UpstreamClient(Timeouts(self.connect_timeout, self.read_timeout, self.total_timeout),
                              Limits(self.max_body_bytes, self.max_event_bytes),
                              DestinationPolicy(self.private_networks, self.allow_hosts, own_host, own_port))


class HostedSettings(_Strict):
    """One provider lent to every tenant for a trial (see `proxy/hosted.py`)."""

    # repr=False: the operator's own key must not show up in a repr, a log or a traceback.
    credentials: dict[str, str] = Field(repr=False)
    quota: int = Field(ge=-1)            # calls per tenant; -1 = unlimited
    models: list[str] = Field(min_length=1)
    # The most output tokens one trial call may ask for (`proxy/hosted_params.py`): a call
    # without a limit is sent with this one, a larger one is refused. Bounds what one
    # counted call can cost the operator.
    max_tokens: int = Field(default=1024, ge=1, le=1_000_000)  # default=: mypy sees a default


class CacheSettings(_Strict):
    """Per worker, least recently used first out (README "Scaling to many tenants")."""

    tenants: int = Field(default=10_000, ge=1)        # tenant states: still-encrypted credentials, models, defaults
    tokens: int = Field(default=100_000, ge=1)        # token hashes seen, valid and refused
    private_keys: int = Field(default=10_000, ge=1)   # tenants' unwrapped private keys (~1.2 KB each)


class CryptoSettings(_Strict):
    """Where RSA runs: never on the event loop (see `keystore/offload.py`)."""

    processes: int = Field(default=1, ge=0, le=16)      # helper processes per worker; 0 = inline (tests, tiny installs)
    pregenerated_keys: int = Field(default=2, ge=0, le=64)  # tenant key pairs kept ready, refilled in the background


class RoutingSettings(_Strict):
    """Retries and fallbacks (`proxy/attempts.py`, README "Staying up when vendors fail")."""

    retries: int = Field(default=2, ge=0, le=10)               # more attempts per model after the first
    backoff_base: float = Field(default=0.25, gt=0, le=30)     # seconds; doubled per retry, full jitter
    backoff_max: float = Field(default=4.0, gt=0, le=120)      # one wait is never longer
    max_retry_after: float = Field(default=10.0, ge=0, le=600)  # a longer Retry-After moves on to a fallback
    # A provider's credentials (proxy/balancer.py): how long one sits out after a 429
    # without Retry-After, or after `failures_to_cool` failures in a row within `failure_window`.
    cooldown: float = Field(default=60.0, ge=0, le=86_400)
    failures_to_cool: int = Field(default=3, ge=1, le=100)
    failure_window: float = Field(default=60.0, gt=0, le=3600)


class ConsoleSettings(_Strict):
    """The settings page at /console/ (README "The console")."""

    enabled: bool = True
    session_ttl: float = Field(default=8 * 3600.0, ge=60, le=30 * 86400)  # seconds a sign-in lasts
    # Secure cookies: "auto" when the request came over https (as uvicorn sees it: behind
    # a TLS-terminating proxy, set true).
    secure_cookie: Literal["auto"] | bool = "auto"


class MetricsSettings(_Strict):
    """`GET /metrics` in Prometheus' text format (proxy/metrics.py, README "Observing")."""

    enabled: bool = True
    # "host:port" ("[::1]:9464" for IPv6): a listener of its own; None: on the main port.
    listen: str | None = None
    auth: Literal["admin", "none"] = "admin"  # admin: the admin token as a bearer token
    per_tenant: bool = False  # a `tenant` label on the request series (one series per tenant: cardinality)

    @field_validator("listen")
    @classmethod
    def _check_listen(cls, value: str | None) -> str | None:
        if not value:
            return None
        host, _, port = value.rpartition(":")
        if not (host and port.isdigit() and 0 < int(port) < 65536 and re.fullmatch(r"[A-Za-z0-9.:\[\]_-]+", host)):
            raise PydanticCustomError("listen", "must be host:port, e.g. 127.0.0.1:9464", {})
        return value

    @property
    def address(self) -> tuple[str, int] | None:
        """(host, port) of the listener of its own, brackets off an IPv6 host; None: the main port."""
        if self.listen is None:
            return None
        host, _, port = self.listen.rpartition(":")
        return host.strip("[]"), int(port)


class BudgetSettings(_Strict):
    """Spending limits (`proxy/budgets.py`, README "Cost and budgets")."""

    # Under a budget, a model missing from `prices` is refused (its cost cannot be
    # counted) unless this is true or the budget itself allows it.
    allow_unpriced: bool = False


class Settings(_Strict):
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    workers: int = Field(1, ge=1, le=64)
    data_dir: Path = Path("modelport-data")
    # A SQLite file (default: data_dir/modelport.db) or a PostgreSQL DSN
    # (postgresql://user:password@host:5432/db); repr=False: the DSN holds a password.
    database: str | None = Field(default=None, repr=False)
    database_pool: int = Field(10, ge=1, le=1000)     # PostgreSQL connections per worker (and per CLI run)
    # Rate-limit counters and credential cooldowns in Redis instead of the database
    # (redis://[:password@]host:6379/0, rediss://, unix://); repr=False: it may hold a password.
    redis_url: str | None = Field(default=None, repr=False)
    master_key_file: Path | None = None
    admin_token: str | None = None
    max_request_bytes: int = Field(26_214_400, ge=1024)
    log_level: Literal["debug", "info", "warning", "error", "critical"] = "info"
    # text: uvicorn's look, client strings escaped; json: one object per line (proxy/logs.py).
    log_format: Literal["text", "json"] = "text"
    metrics: MetricsSettings = MetricsSettings()
    change_poll_interval: float = Field(0.5, gt=0, le=10)
    upstream: UpstreamSettings = UpstreamSettings()
    hosted: dict[str, HostedSettings] = Field(default_factory=dict)
    # US dollars per million tokens (or per call, per audio minute) by provider and model
    # (proxy/prices.py); a model left out is "unpriced": its cost is null, never 0.
    prices: dict[str, dict[str, Price]] = Field(default_factory=dict)
    budgets: BudgetSettings = BudgetSettings()
    usage_retention_days: int = Field(90, ge=0)   # 0 = keep usage records for ever
    # Responses kept with `store: true` (the Responses API), per tenant, then deleted.
    responses_retention_days: int = Field(30, ge=1)
    usage_flush_interval: float = Field(1.0, gt=0, le=300)
    # Slow and abusive clients (README "Operating safely"). Timeouts in seconds.
    client_header_timeout: float = Field(30.0, gt=0)   # request line + headers must arrive within it
    client_body_timeout: float = Field(60.0, gt=0)     # the whole body must arrive within it (else 408)
    keep_alive_timeout: int = Field(5, ge=1)           # idle keep-alive connections are closed after it
    max_concurrency: int | None = Field(2048, ge=1)    # per worker: connections + requests; beyond: 503
    shutdown_grace_seconds: float = Field(10.0, ge=0)  # SIGTERM: time running requests get to finish
    auth_failure_limit: int = Field(20, ge=1)          # 401s per client address and window, then 429
    auth_failure_window: float = Field(60.0, gt=0)
    database_busy_timeout: float = Field(10.0, gt=0)   # waiting for another writer, then 503
    cache: CacheSettings = CacheSettings()
    crypto: CryptoSettings = CryptoSettings()
    console: ConsoleSettings = ConsoleSettings()
    routing: RoutingSettings = RoutingSettings()
    change_log_retention: float = Field(3600.0, ge=60)  # seconds a change-log row is kept for slow workers
    # OpenTelemetry spans over OTLP/HTTP (proxy/tracing.py): the `otel` extra, the OTEL_* variables.
    tracing: bool = False

    @field_validator("tracing")
    @classmethod
    def _check_tracing(cls, value: bool) -> bool:
        if value and importlib.util.find_spec("opentelemetry") is None:
            raise PydanticCustomError("tracing", "needs OpenTelemetry: pip install 'modelport[otel]'")
        return value

    @field_validator("admin_token")
    @classmethod
    def _check_admin_token(cls, value: str | None) -> str | None:
        # A short token can be guessed; the generated ones are 47 characters. Empty (an
        # unset `${VAR:-}`) means none is configured: one is generated, as without the key.
        if not value:
            return None
        if len(value) < 32:
            raise PydanticCustomError("admin_token", "must be at least 32 characters long (got {n})",
                                      {"n": len(value)})
        return value

    @field_validator("hosted")
    @classmethod
    def _check_hosted(cls, value: dict[str, HostedSettings]) -> dict[str, HostedSettings]:
        """Against the provider registry and each provider's credential schema, at start-up:
        a typo here must stop `serve`, not surface as a 500 on a tenant's first call."""
        # Imported here: proxy.hosted imports this module (for HostedSettings).
        from proxy.hosted import HostedConfigError, build_offers

        try:
            build_offers(value)
        except HostedConfigError as exc:
            raise PydanticCustomError("hosted", "{detail}", {"detail": str(exc)}) from None
        return value

    @field_validator("prices")
    @classmethod
    def _check_prices(cls, value: dict[str, dict[str, Price]]) -> dict[str, dict[str, Price]]:
        """Providers against the registry: a misspelt one would leave its models unpriced."""
        from translators import REGISTRY

        unknown = sorted(set(value) - set(REGISTRY))
        if unknown:
            raise PydanticCustomError("prices", "unknown provider(s) {names}; known: {known}",
                                      {"names": ", ".join(unknown), "known": ", ".join(sorted(REGISTRY))})
        return value

    @field_validator("database")
    @classmethod
    def _check_database(cls, value: str | None) -> str | None:
        if value and is_postgres_url(value):
            from urllib.parse import urlsplit

            try:
                parts = urlsplit(value)
                parts.port  # noqa: B018 (raises on a bad port)
            except ValueError:
                raise PydanticCustomError("database", "is not a valid postgresql:// URL", {}) from None
            if not parts.hostname or parts.path in ("", "/"):
                raise PydanticCustomError("database", "a postgresql:// URL needs a host and a database name", {})
        return value or None

    @field_validator("redis_url")
    @classmethod
    def _check_redis_url(cls, value: str | None) -> str | None:
        if not value:
            return None
        from urllib.parse import urlsplit

        try:
            parts = urlsplit(value)
            parts.port  # noqa: B018 (raises on a bad port)
        except ValueError:
            raise PydanticCustomError("redis_url", "is not a valid redis:// URL", {}) from None
        if parts.scheme not in ("redis", "rediss", "unix"):
            raise PydanticCustomError("redis_url", "must start with redis://, rediss:// or unix://", {})
        if parts.scheme != "unix" and not parts.hostname:
            raise PydanticCustomError("redis_url", "a redis:// URL needs a host", {})
        return value

    @property
    def database_url(self) -> str | None:
        """The PostgreSQL DSN, or None: SQLite at `database_path`."""
        return self.database if self.database and is_postgres_url(self.database) else None

    @property
    def database_path(self) -> Path:
        if self.database and not is_postgres_url(self.database):
            return Path(self.database)
        return self.data_dir / "modelport.db"

    @property
    def database_label(self) -> str:
        """The database as a message may name it (a DSN's password masked)."""
        return masked_dsn(self.database_url) if self.database_url else str(self.database_path)

    @property
    def master_key_path(self) -> Path:
        return self.master_key_file or self.data_dir / "master.key"


def substitute_env(text: str, env: dict[str, str] | None = None) -> str:
    """Replace `${VAR}` / `${VAR:-default}`; an unset variable without default is an error."""
    env = dict(os.environ) if env is None else env

    def repl(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        if name in env:
            return env[name]
        if default is not None:
            return default
        raise SettingsError(f"configuration refers to ${{{name}}}, which is not set in the environment")

    return "\n".join(line if line.lstrip().startswith("#") else _VAR.sub(repl, line) for line in text.splitlines())


def load_settings(path: Path | None = None, **overrides: Any) -> Settings:
    data: dict[str, Any] = {}
    if path is not None:
        try:
            text = path.read_text()
        except OSError as exc:
            raise SettingsError(f"cannot read configuration file {path}: {exc.strerror}") from None
        try:
            loaded = yaml.safe_load(substitute_env(text))
        except yaml.YAMLError as exc:
            raise SettingsError(f"configuration file {path} is not valid YAML: {exc}") from None
        if loaded is not None and not isinstance(loaded, dict):
            raise SettingsError(f"configuration file {path} must hold a mapping of settings")
        data = loaded or {}
    data.update({k: v for k, v in overrides.items() if v is not None})
    if not data.get("database") and os.environ.get(DATABASE_URL_ENV):
        data["database"] = os.environ[DATABASE_URL_ENV]
    if not data.get("redis_url") and os.environ.get(REDIS_URL_ENV):
        data["redis_url"] = os.environ[REDIS_URL_ENV]
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise SettingsError(f"invalid configuration: {problems}") from None
