"""A throwaway PostgreSQL cluster for the tests: one per test process (xdist worker), on
loopback, in a temporary directory, stopped at the end of the session.

`.ci/run` installs Debian's PostgreSQL when it is absent; elsewhere the tests that need
it skip, saying why. The server binaries are found through `pg_config`, then Debian's
`/usr/lib/postgresql/<version>/bin`, then PATH. PostgreSQL refuses to run as root, so
under root the cluster belongs to the `postgres` system user (Debian's package creates it)
and its commands run through `runuser`. Password authentication is on, over TCP only:
the tests connect with a DSN the way an operator's gateway does.

Fixtures: `pg_server` (the cluster, session-wide) and `pg_dsn` (a fresh, empty database
on it for one test).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from bench.pg_cluster import (
    bindir as find_bindir,  # the one lookup of the server binaries (the bench's cluster too)
)

USER = "modelport"
PASSWORD = "test-password-not-a-secret"  # a throwaway cluster on loopback, gone after the session


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class PgServer:
    host: str
    port: int
    # `pg_ctl -D DATA` (under runuser when root) and its start options: `stop()`/`start()`
    # take THE cluster down and up again on the same port with the same data.
    ctl: tuple[str, ...] = ()
    options: str = ""
    logfile: str = ""

    def stop(self) -> None:
        """Stop the cluster (fast: open connections are terminated, as in a restart)."""
        subprocess.run([*self.ctl, "-m", "fast", "-w", "-t", "60", "stop"], check=True, capture_output=True,
                       timeout=90)

    def start(self) -> None:
        """Start it again: same port, same data."""
        subprocess.run([*self.ctl, "-o", self.options, "-l", self.logfile, "-w", "-t", "60", "start"],
                       check=True, capture_output=True, timeout=90)

    def restart(self) -> None:
        self.stop()
        self.start()

    def dsn(self, database: str = "postgres") -> str:
        return f"postgresql://{USER}:{PASSWORD}@{self.host}:{self.port}/{database}"

    def create_database(self) -> str:
        """A new empty database; its DSN."""
        import asyncio

        import asyncpg  # type: ignore[import-untyped]

        name = f"t_{secrets.token_hex(6)}"

        async def create() -> None:
            conn = await asyncpg.connect(self.dsn())
            try:
                await conn.execute(f'CREATE DATABASE "{name}"')
            finally:
                await conn.close()

        asyncio.run(create())
        return self.dsn(name)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    pytest.importorskip("asyncpg", reason="asyncpg is a dependency: pip install -e '.[test]'")
    bindir = find_bindir()
    if bindir is None:
        pytest.skip("PostgreSQL's server binaries are not installed (.ci/run installs Debian's postgresql)")
    as_root = os.geteuid() == 0
    if as_root and shutil.which("runuser") is None:
        pytest.skip("running as root without runuser: PostgreSQL refuses to run as root")
    prefix = ["runuser", "-u", "postgres", "--"] if as_root else []
    base = Path(tempfile.mkdtemp(prefix="modelport-pg-"))
    data, sockets, pwfile = base / "data", base / "run", base / "pw"
    sockets.mkdir()
    pwfile.write_text(PASSWORD + "\n")
    if as_root:
        shutil.chown(base, "postgres")
        shutil.chown(sockets, "postgres")
        shutil.chown(pwfile, "postgres")
    port = _free_port()

    def run(*args: str, timeout: float = 60) -> None:
        subprocess.run([*prefix, *args], check=True, capture_output=True, timeout=timeout)

    run(str(bindir / "initdb"), "-D", str(data), "-U", USER, f"--pwfile={pwfile}", "--auth=scram-sha-256",
        "-E", "UTF8", "--no-sync")
    options = (f"-p {port} -k {sockets} -c listen_addresses=127.0.0.1 -c fsync=off "
               "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200")
    server = PgServer("127.0.0.1", port, ctl=(*prefix, str(bindir / "pg_ctl"), "-D", str(data)), options=options,
                      logfile=str(base / "log"))
    server.start()
    try:
        yield server
    finally:
        with contextlib.suppress(subprocess.SubprocessError, OSError):
            run(str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def pg_dsn(pg_server: PgServer) -> str:
    """A fresh, empty database for one test."""
    return pg_server.create_database()
