"""A throwaway PostgreSQL cluster for the `postgres` scenario, the way tests/pg.py makes
one for the tests (the bench does not import the test suite): Debian's server binaries
(`pg_config --bindir`, else the newest `/usr/lib/postgresql/<version>/bin`, else PATH), a
temp directory, password authentication (scram-sha-256) over TCP on 127.0.0.1 only, and
under root the `postgres` system user (PostgreSQL refuses to run as root).

Unlike the tests' cluster, this one is durable the way a real server is: fsync,
synchronous_commit and full_page_writes keep PostgreSQL's defaults (on), so every
committed write waits for its WAL flush. The other settings are PostgreSQL's defaults
too (shared_buffers 128MB, max_connections 100), nothing tuned.

`postgres` itself runs as a child of the benchmark through `Procs.start` (its own
process group, no pg_ctl daemon), so `Procs.stop_all` ends it even on Ctrl-C or an
error; `stop()` asks for a fast shutdown and removes the data directory.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

from bench.procs import Procs, free_port

USER = "modelport"
PASSWORD = "bench-password-not-a-secret"  # a throwaway cluster on loopback, removed at the end
DATABASE = "modelport"
SETTINGS = {"listen_addresses": "127.0.0.1", "fsync": "on", "synchronous_commit": "on", "full_page_writes": "on"}


def bindir() -> Path | None:
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True, timeout=10, check=True)
        if (Path(out.stdout.strip()) / "initdb").exists():
            return Path(out.stdout.strip())
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"),
                      key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0)
    if versions:
        return versions[-1].parent
    found = shutil.which("initdb")
    return Path(found).resolve().parent if found else None


class Cluster:
    def __init__(self, procs: Procs, root: Path) -> None:
        self.procs, self.root = procs, root
        self.data = root / "data"
        self.log = root / "postgres.log"
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.user = "postgres" if os.geteuid() == 0 else None
        self.version = ""

    @property
    def dsn(self) -> str:
        return f"postgresql://{USER}:{PASSWORD}@127.0.0.1:{self.port}/{DATABASE}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self, timeout: float = 60.0) -> float:
        """initdb, start, create the database; seconds it took."""
        t0 = time.perf_counter()
        bins = bindir()
        if bins is None:
            raise RuntimeError("PostgreSQL's server binaries are not installed (Debian: apt-get install postgresql; "
                               ".ci/run does it)")
        if self.user is not None and not _has_user(self.user):
            raise RuntimeError("running as root without a `postgres` system user: PostgreSQL refuses to run as root")
        self.root.mkdir(parents=True, exist_ok=True)
        pwfile = self.root / "pw"
        pwfile.write_text(PASSWORD + "\n")
        run = self.root / "run"
        run.mkdir()
        if self.user is not None:
            for path in (self.root, pwfile, run):
                shutil.chown(path, self.user, self.user)
        # Its own session, so an interrupt ends initdb and the `postgres --single` it runs.
        init = subprocess.Popen([str(bins / "initdb"), "-D", str(self.data), "-U", USER, f"--pwfile={pwfile}",
                                 "--auth=scram-sha-256", "-E", "UTF8", "--locale=C", "--no-instructions"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
                                cwd=self.root, start_new_session=True, user=self.user, group=self.user,
                                extra_groups=[] if self.user else None)
        try:
            _, err = init.communicate(timeout=120)
        except BaseException:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(init.pid, signal.SIGKILL)
            init.wait()
            raise
        finally:
            pwfile.unlink(missing_ok=True)
        if init.returncode != 0:
            raise RuntimeError(f"initdb failed: {err.strip()[-1000:]}")
        self.version = subprocess.run([str(bins / "postgres"), "--version"], capture_output=True, text=True,
                                      timeout=10, check=False).stdout.strip()
        self.port = free_port()
        options = [f"-c{k}={v}" for k, v in {**SETTINGS, "port": str(self.port),
                                              "unix_socket_directories": str(run)}.items()]
        self.proc = self.procs.start("postgres", [str(bins / "postgres"), "-D", str(self.data), *options],
                                     log=self.log, cwd=self.root, user=self.user)
        asyncio.run(self._create_database(t0 + timeout))
        return time.perf_counter() - t0

    async def _create_database(self, deadline: float) -> None:
        import asyncpg

        last: BaseException | None = None
        while time.perf_counter() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"postgres exited with {self.proc.returncode}: {self.log.read_text()[-1500:]}")
            try:
                conn = await asyncpg.connect(f"postgresql://{USER}:{PASSWORD}@127.0.0.1:{self.port}/postgres",
                                             timeout=2)
            except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
                last = exc
                await asyncio.sleep(0.05)
                continue
            try:
                await conn.execute(f'CREATE DATABASE "{DATABASE}"')
                return
            finally:
                await conn.close()
        raise TimeoutError(f"PostgreSQL did not accept connections on 127.0.0.1:{self.port} (last: {last!r})")

    def query(self, *statements: str) -> object:
        """Run statements on a new session of the bench's database; the last one's first value."""
        import asyncpg

        async def go() -> object:
            conn = await asyncpg.connect(self.dsn, timeout=10)
            try:
                value: object = None
                for sql in statements:
                    value = await conn.fetchval(sql)
                return value
            finally:
                await conn.close()

        return asyncio.run(go())

    def counters(self) -> tuple[int, int]:
        """(the next transaction id, the WAL position in bytes), read at once: their growth is
        the write transactions committed or aborted meanwhile and the WAL they wrote (exact,
        unlike the statistics views, which backends flush about once a second)."""
        row = self.query("SELECT pg_snapshot_xmax(pg_current_snapshot())::text || ' ' || "
                         "(pg_current_wal_lsn() - '0/0'::pg_lsn)::bigint::text")
        xid, lsn = str(row).split()
        return int(xid), int(lsn)

    def synchronous_commit(self, on: bool) -> None:
        """Set synchronous_commit for every session (existing ones too: a reload)."""
        self.query(f"ALTER SYSTEM SET synchronous_commit = {'on' if on else 'off'}", "SELECT pg_reload_conf()")
        time.sleep(0.2)

    def stop(self) -> None:
        """Fast shutdown (SIGINT: sessions ended, a clean checkpoint), then remove the data."""
        if self.proc is not None:
            self.procs.stop(self.proc, sig=signal.SIGINT, timeout=30)
            self.proc = None
        shutil.rmtree(self.data, ignore_errors=True)


def _has_user(name: str) -> bool:
    import pwd

    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True
