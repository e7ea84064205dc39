"""A gateway of its own with a `hosted:` section pointing at the fake vendors, for the
quota and usage tests (the session `gateway` and its tenants stay as they are).

The platform keys reach the config as `${VAR}` from the environment, the way an
operator is told to do it; the test process sets the variables too, because the
CLI reads the same config file.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tests.e2e.harness import GatewayProcess
from tests.fakes.anthropic_fixtures import FakeAnthropic
from tests.fakes.fixtures import FakeOpenAI

HOSTED_OPENAI_KEY = "sk-hosted-platform-" + secrets.token_hex(12)
HOSTED_ANTHROPIC_KEY = "sk-ant-hosted-platform-" + secrets.token_hex(12)
ADMIN_TOKEN = "mpa-test-admin-" + secrets.token_hex(12)
ENV = {"HOSTED_OPENAI_API_KEY": HOSTED_OPENAI_KEY, "HOSTED_ANTHROPIC_API_KEY": HOSTED_ANTHROPIC_KEY}
OPENAI_MODELS = ["gpt-3.5-turbo", "gpt-3.5-turbo-16k", "text-embedding-3-small"]
ANTHROPIC_MODELS = ["claude-haiku-4-5"]
HI = [{"role": "user", "content": "hi there"}]


def hosted_settings(fake_openai: FakeOpenAI, fake_anthropic: FakeAnthropic, quota: int = 5,
                    **extra: Any) -> dict[str, Any]:
    return {
        "admin_token": ADMIN_TOKEN,
        "hosted": {
            "openai": {"credentials": {"api_key": "${HOSTED_OPENAI_API_KEY}", "base_url": fake_openai.v1_url},
                       "quota": quota, "models": OPENAI_MODELS},
            "anthropic": {"credentials": {"api_key": "${HOSTED_ANTHROPIC_API_KEY}",
                                          "base_url": fake_anthropic.base_url},
                          "quota": quota, "models": ANTHROPIC_MODELS},
        },
        **extra,
    }


@contextlib.contextmanager
def hosted_env() -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in ENV}
    os.environ.update(ENV)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@contextlib.contextmanager
def hosted_gateway(root: Path, fake_openai: FakeOpenAI, fake_anthropic: FakeAnthropic, *, workers: int = 2,
                   database: str | None = None, **settings: Any) -> Iterator[GatewayProcess]:
    """`database`: a PostgreSQL DSN (None: SQLite in the data directory)."""
    with hosted_env():
        gw = GatewayProcess(root, workers=workers, settings=hosted_settings(fake_openai, fake_anthropic, **settings),
                            database=database)
        gw.start()
        try:
            yield gw
        finally:
            gw.stop()


def accept_hosted_keys(fake_openai: FakeOpenAI, fake_anthropic: FakeAnthropic) -> None:
    """The fakes' state is reset per test; the platform keys must be accepted again."""
    fake_openai.state.api_keys.add(HOSTED_OPENAI_KEY)
    fake_anthropic.state.api_keys.add(HOSTED_ANTHROPIC_KEY)


def new_tenant(gw: GatewayProcess) -> tuple[str, str]:
    """(name, token) of a fresh tenant with no credential of its own."""
    name = "q-" + uuid.uuid4().hex[:8]
    gw.cli("tenants", "create", name)
    return name, gw.new_token(name)


def give_own_openai(gw: GatewayProcess, fake: FakeOpenAI, tenant: str) -> str:
    key = "sk-own-" + secrets.token_hex(12)
    fake.state.api_keys.add(key)
    gw.cli("providers", "set", tenant, "openai", f"api_key={key}", f"base_url={fake.v1_url}")
    time.sleep(0.6)  # every worker notices within the change poll (0.2 s in the harness)
    return key


def wait_until(check: Any, timeout: float = 3.0) -> None:
    """Worker caches learn of a CLI change within the change poll; usage rows within a flush."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition still false after {timeout}s")
        time.sleep(0.05)


def usage_rows(gw: GatewayProcess, tenant: str) -> list[dict[str, Any]]:
    """A tenant's rows in the order the requests came in (not by id: two workers write
    their batches independently). On either backend."""
    return gw.sql("SELECT u.* FROM usage u JOIN tenants t ON t.id = u.tenant_id WHERE t.name = ? "
                  "ORDER BY u.created_at", (tenant,), dicts=True)
