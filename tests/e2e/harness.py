"""A real `modelport serve` for end-to-end tests: a subprocess on a free loopback port,
its own data directory and config, driven by the CLI (in-process, same database) and
called with the official openai SDK.

Fixtures (session-scoped, the server is started once):
- ``gateway``: a 2-worker server; tenant ``acme`` has the fake OpenAI configured and
  defaults for all three model types, tenant ``beta`` a different key and no defaults.
- ``pg_gateway``: the same on PostgreSQL (a fresh database on the throwaway cluster).
- ``backend``: "sqlite" or "postgresql". The store-touching modules (STORE_MODULES) run
  each test that uses ``gw`` or ``backend`` twice, ids ``[sqlite]`` and ``[postgresql]``
  (`pytest_generate_tests` below); a test that checks SQLite itself (its file, its locks)
  carries ``@pytest.mark.sqlite_only`` and runs once, unparametrized.
  ``MODELPORT_TEST_DATABASE=sqlite|postgresql`` restricts those modules to one backend.
  A module fixture that starts its own gateway takes ``backend`` and passes
  ``database=database_for(backend, pg_server)`` (or ``gateway_database``).
"""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from proxy.cli import main as cli_main
from tests.fakes.fixtures import FakeOpenAI
from emulators.server import free_port
from tests.processes import stop_process

REPO = Path(__file__).resolve().parents[2]
ACME_KEY = "sk-test-acme-not-a-real-key-000000000001"
BETA_KEY = "sk-test-beta-not-a-real-key-000000000002"


@dataclass
class CliResult:
    code: int
    out: str
    err: str


@dataclass
class GatewayProcess:
    """One running gateway; `cli()` manages it through its database."""

    root: Path
    workers: int = 2
    settings: dict[str, Any] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None
    tokens: dict[str, str] = field(default_factory=dict)
    database: str | None = None  # a postgresql:// DSN (written to the config); None: SQLite in data_dir

    @property
    def config_path(self) -> Path:
        return self.root / "config.yaml"

    @property
    def log_path(self) -> Path:
        return self.root / "server.log"

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def v1_url(self) -> str:
        return self.base_url + "/v1"

    def write_config(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        config = {"host": "127.0.0.1", "port": self.port, "workers": self.workers,
                  "data_dir": str(self.data_dir), "max_request_bytes": 1_000_000,
                  "change_poll_interval": 0.2, "log_level": "info",
                  # Every test client is 127.0.0.1: the per-address 401 limit would turn
                  # one test's deliberate failures into another's 429s.
                  "auth_failure_limit": 1_000_000,
                  "upstream": {"connect_timeout": 2, "read_timeout": 2, "total_timeout": 5},
                  # One attempt per request: most tests script exactly one upstream failure and
                  # check how it reaches the client; tests/e2e/test_retries.py turns retries on.
                  "routing": {"retries": 0}}
        if self.database:
            config["database"] = self.database  # the CLI reads the same config, so it uses it too
        config.update(self.settings)
        self.config_path.write_text(yaml.safe_dump(config))

    def cli(self, *args: str, check: bool = True, env: dict[str, str] | None = None) -> CliResult:
        """Run `modelport --config ... ARGS` in-process (same code as the console script)."""
        out, err = io.StringIO(), io.StringIO()
        saved = {k: os.environ.get(k) for k in (env or {})}
        os.environ.update(env or {})
        try:
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                code = cli_main(["--config", str(self.config_path), *args])
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
        result = CliResult(code, out.getvalue(), err.getvalue())
        if check and code != 0:
            raise AssertionError(f"modelport {' '.join(args)} failed ({code}): {result.err}")
        return result

    def start(self, timeout: float = 20.0) -> None:
        if not self.port:
            self.port = free_port()
        self.write_config()
        env = {**os.environ, **self.env, "PYTHONUNBUFFERED": "1"}
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "proxy.cli", "--config", str(self.config_path), "serve"],
                                     stdout=log, stderr=subprocess.STDOUT, cwd=self.root, env=env)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"gateway exited with {self.proc.returncode}:\n{self.log()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(self.base_url + "/healthz", timeout=1).status_code == 200:
                    return
            time.sleep(0.1)
        self.stop()
        raise AssertionError(f"gateway did not become healthy in {timeout}s:\n{self.log()}")

    def stop(self) -> None:
        if self.proc is None:
            return
        stop_process(self.proc)
        self.proc = None

    @contextlib.contextmanager
    def running(self) -> Iterator[GatewayProcess]:
        """Started for the block, stopped after it (a module fixture's body)."""
        self.start()
        try:
            yield self
        finally:
            self.stop()

    @property
    def backend(self) -> str:
        return "postgresql" if self.database else "sqlite"

    def sql(self, query: str, params: Sequence[Any] = (), *, dicts: bool = False) -> list[Any]:
        """Rows of one query (SQLite's dialect, `?` placeholders) on this gateway's database,
        whichever engine it is: tests check what is stored without caring where. Tuples, or
        dicts by column name."""
        shape: Any = dict if dicts else tuple
        if self.database is None:
            import sqlite3

            db = sqlite3.connect(self.data_dir / "modelport.db")
            db.row_factory = sqlite3.Row
            try:
                return [shape(row) for row in db.execute(query, tuple(params))]
            finally:
                db.close()
        import asyncio

        import asyncpg  # type: ignore[import-untyped]

        from proxy.store.pg_dialect import to_postgres

        async def fetch() -> list[Any]:
            conn = await asyncpg.connect(self.database)
            try:
                return [shape(row.items()) if dicts else tuple(row)
                        for row in await conn.fetch(to_postgres(query), *params)]
            finally:
                await conn.close()

        return asyncio.run(fetch())

    def stored_bytes(self) -> dict[str, bytes]:
        """Everything the database holds, by where, for "no secret in plaintext" checks:
        SQLite's files (WAL included) as they are on disk; for PostgreSQL every row of every
        table, each value as its bytes or its text."""
        if self.database is None:
            return {path.name: path.read_bytes() for path in sorted(self.data_dir.glob("modelport.db*"))}
        tables = [r[0] for r in self.sql("SELECT table_name FROM information_schema.tables "
                                         "WHERE table_schema = current_schema()")]
        assert "tenants" in tables, tables
        return {table: b"\0".join(value if isinstance(value, bytes) else str(value).encode()
                                   for row in self.sql(f'SELECT * FROM "{table}"') for value in row)
                for table in tables}

    def sql_many(self, statement: str, rows: Sequence[Sequence[Any]]) -> None:
        """One write statement (SQLite's dialect) for each of `rows`, committed together, on
        this gateway's database whichever engine it is (a test planting old rows)."""
        if self.database is None:
            import sqlite3

            db = sqlite3.connect(self.data_dir / "modelport.db")
            try:
                with db:
                    db.executemany(statement, [tuple(r) for r in rows])
            finally:
                db.close()
            return
        import asyncio

        import asyncpg

        from proxy.store.pg_dialect import to_postgres

        async def write() -> None:
            conn = await asyncpg.connect(self.database)
            try:
                async with conn.transaction():
                    await conn.executemany(to_postgres(statement), [tuple(r) for r in rows])
            finally:
                await conn.close()

        asyncio.run(write())

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def admin_token(self) -> str:
        """The admin token the first start wrote to the data directory (never printed)."""
        return (self.data_dir / "admin-token").read_text().strip()

    def new_token(self, tenant: str, name: str | None = None) -> str:
        args = ["tokens", "create", tenant] + (["--name", name] if name else [])
        return self.cli(*args).out.strip()

    def client(self, token: str | None = None, **kwargs: Any) -> Any:
        import openai

        options: dict[str, Any] = {"base_url": self.v1_url, "api_key": token or self.tokens["acme"],
                                   "max_retries": 0, "timeout": 15.0}
        options.update(kwargs)
        return openai.OpenAI(**options)

    def http(self, token: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token or self.tokens['acme']}"}
        return httpx.Client(base_url=self.base_url, headers=headers, timeout=15.0)


@dataclass
class ProviderTenant:
    """A tenant a test module made for itself, and a token of it."""

    name: str
    token: str


def wait_until_listed(gw: GatewayProcess, token: str, wanted: set[str]) -> None:
    """Both workers must have seen the new entries (they poll the change counter)."""
    deadline, streak = time.monotonic() + 10, 0
    while streak < 8 and time.monotonic() < deadline:
        listed = {m["id"] for m in httpx.get(gw.v1_url + "/models", timeout=5,
                                              headers={"Authorization": f"Bearer {token}"}).json().get("data", [])}
        streak = streak + 1 if wanted <= listed else 0
        time.sleep(0.05)
    assert streak >= 8, f"the gateway did not pick up {wanted - listed}"


@contextlib.contextmanager
def provider_tenant(gw: GatewayProcess, name_prefix: str, setup_commands: Sequence[Sequence[str]], *,
                    token_name: str | None = None, unique: bool = True,
                    listed: set[str] | None = None) -> Iterator[ProviderTenant]:
    """Create a tenant, run each setup command on it, make a token; delete the tenant on exit.

    A setup command is a CLI command without the tenant: ``("providers", "set", "qwen", "api_key=...")``
    runs ``modelport providers set <tenant> qwen api_key=...``. The name is ``<prefix>-<8 hex>`` unless
    ``unique=False`` (then exactly the prefix); the token is named ``token_name`` (``<prefix>-e2e`` if not
    given). With ``listed``, waits until the gateway's workers list those models for the token.
    """
    name = f"{name_prefix}-{uuid.uuid4().hex[:8]}" if unique else name_prefix
    gw.cli("tenants", "create", name)
    try:
        for verb, action, *rest in setup_commands:
            gw.cli(verb, action, name, *rest)
        token = gw.new_token(name, token_name or f"{name_prefix.removesuffix('-e2e')}-e2e")
        if listed is not None:
            wait_until_listed(gw, token, listed)
        yield ProviderTenant(name, token)
    finally:
        gw.cli("tenants", "delete", name, check=False)


def seed(gw: GatewayProcess, fake: FakeOpenAI) -> None:
    """acme: the fake OpenAI with every default set; beta: another key, no defaults."""
    fake.state.api_keys.update({ACME_KEY, BETA_KEY})
    gw.cli("tenants", "create", "acme")
    gw.cli("providers", "set", "acme", "openai", f"api_key={ACME_KEY}", f"base_url={fake.v1_url}")
    gw.cli("defaults", "set", "acme", "llm", "openai/gpt-4o-mini")
    gw.cli("defaults", "set", "acme", "text-embedding", "openai/text-embedding-3-small")
    gw.cli("defaults", "set", "acme", "speech2text", "openai/whisper-1")
    gw.cli("tenants", "create", "beta")
    gw.cli("providers", "set", "beta", "openai", f"api_key={BETA_KEY}", f"base_url={fake.v1_url}")
    gw.tokens["acme"] = gw.new_token("acme", "e2e")
    gw.tokens["beta"] = gw.new_token("beta", "e2e")


@pytest.fixture(scope="session")
def gateway(tmp_path_factory: pytest.TempPathFactory, fake_openai_server: FakeOpenAI) -> Iterator[GatewayProcess]:
    gw = GatewayProcess(tmp_path_factory.mktemp("gateway"))
    gw.port = free_port()
    gw.write_config()
    seed(gw, fake_openai_server)
    gw.start()
    try:
        yield gw
    finally:
        gw.stop()
        # The fake keeps its keys across tests; put them back for the next session user.
        fake_openai_server.state.api_keys.update({ACME_KEY, BETA_KEY})


@pytest.fixture(scope="session")
def pg_gateway(tmp_path_factory: pytest.TempPathFactory, fake_openai_server: FakeOpenAI,
               pg_server: Any) -> Iterator[GatewayProcess]:
    """The session gateway on PostgreSQL: same seed, a fresh database of the throwaway cluster."""
    gw = GatewayProcess(tmp_path_factory.mktemp("pg-gateway"), database=pg_server.create_database())
    gw.port = free_port()
    gw.write_config()
    seed(gw, fake_openai_server)
    gw.start()
    try:
        yield gw
    finally:
        gw.stop()
        fake_openai_server.state.api_keys.update({ACME_KEY, BETA_KEY})


# -- the backend a store-touching test runs on -------------------------------------------------

BACKENDS = ("sqlite", "postgresql")
BACKEND_ENV = "MODELPORT_TEST_DATABASE"  # sqlite | postgresql: run STORE_MODULES on that one only
# The e2e modules whose tests run on both engines (issue 15: tenancy, keystore, quota, usage,
# admin, CLI; issue 16: costs and budgets). Elsewhere `backend` is "sqlite" and no id is added.
STORE_MODULES = frozenset({"test_tenancy", "test_keystore_e2e", "test_quota", "test_usage", "test_admin_api",
                           "test_cli", "test_costs"})


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "sqlite_only(reason): checks SQLite itself (its file, its locking); "
                                       "runs as [sqlite] only in the modules that run on both backends")


def _backends() -> tuple[str, ...]:
    wanted = os.environ.get(BACKEND_ENV, "").strip().lower()
    if not wanted:
        return BACKENDS
    if wanted not in BACKENDS:
        raise pytest.UsageError(f"{BACKEND_ENV} must be one of {', '.join(BACKENDS)} (got {wanted!r})")
    return (wanted,)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "backend" not in metafunc.fixturenames or metafunc.module.__name__.rpartition(".")[2] not in STORE_MODULES:
        return
    # sqlite_only tests still get the [sqlite] id: they share the module's SQLite gateway
    # (same parameter), and the id says where they ran.
    backends = ("sqlite",) if metafunc.definition.get_closest_marker("sqlite_only") else _backends()
    metafunc.parametrize("backend", backends, indirect=True, scope="module")


@pytest.fixture(scope="module")
def backend(request: pytest.FixtureRequest) -> str:
    return str(getattr(request, "param", "sqlite"))


@pytest.fixture(scope="module")
def fresh_database(request: pytest.FixtureRequest, backend: str) -> Callable[[], str | None]:
    """A maker of databases for a gateway a test starts itself: None (SQLite in its data
    dir) or the DSN of a fresh, empty PostgreSQL database."""
    if backend == "sqlite":
        return lambda: None
    server = request.getfixturevalue("pg_server")
    return server.create_database  # type: ignore[no-any-return]


@pytest.fixture
def gw(request: pytest.FixtureRequest, backend: str, fake_openai: FakeOpenAI) -> GatewayProcess:
    """The session gateway of the test's backend with the fake's script reset (and the
    tenants' keys accepted)."""
    gateway: GatewayProcess = request.getfixturevalue("pg_gateway" if backend == "postgresql" else "gateway")
    fake_openai.state.api_keys.update({ACME_KEY, BETA_KEY})
    return gateway
