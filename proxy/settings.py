"""Operator settings: a YAML file (optional) with `${VAR}` taken from the environment.

Every setting has a default, so `modelport serve` runs with no file at all; the
documented version of each lives in `config.example.yaml`.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic_core import PydanticCustomError

CONFIG_ENV = "MODELPORT_CONFIG"
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class SettingsError(Exception):
    pass


class _Strict(BaseModel):
    # hide_input_in_errors: a rejected value may be a platform credential.
    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)


class UpstreamSettings(_Strict):
    connect_timeout: float = Field(10.0, gt=0)
    read_timeout: float = Field(120.0, gt=0)
    total_timeout: float = Field(600.0, gt=0)


class HostedSettings(_Strict):
    """One provider lent to every tenant for a trial (see `proxy/hosted.py`)."""

    # repr=False: the operator's own key must not show up in a repr, a log or a traceback.
    credentials: dict[str, str] = Field(repr=False)
    quota: int = Field(ge=-1)            # calls per tenant; -1 = unlimited
    models: list[str] = Field(min_length=1)


class Settings(_Strict):
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    workers: int = Field(1, ge=1, le=64)
    data_dir: Path = Path("modelport-data")
    database: Path | None = None
    master_key_file: Path | None = None
    admin_token: str | None = None
    max_request_bytes: int = Field(26_214_400, ge=1024)
    log_level: Literal["debug", "info", "warning", "error", "critical"] = "info"
    change_poll_interval: float = Field(0.5, gt=0, le=10)
    upstream: UpstreamSettings = UpstreamSettings()
    hosted: dict[str, HostedSettings] = Field(default_factory=dict)
    usage_retention_days: int = Field(90, ge=0)   # 0 = keep usage records for ever
    usage_flush_interval: float = Field(1.0, gt=0, le=300)

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

    @property
    def database_path(self) -> Path:
        return self.database or self.data_dir / "modelport.db"

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
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise SettingsError(f"invalid configuration: {problems}") from None
