"""A throwaway Redis for the tests: one `redis-server` per test process (xdist worker), on
a free loopback port, nothing saved to disk, stopped at the end of the session.

`.ci/run` installs Debian's redis-server when it is absent; elsewhere the tests that need
it skip, saying why. A password is set (`requirepass`): the tests connect with a URL the
way an operator's gateway does, and can check that it never shows.

Fixtures: `redis_server` (the server, session-wide) and `redis_url` (that server, emptied
for one test).
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.processes import stop_process

PASSWORD = "test-redis-password-not-a-secret"  # a throwaway server on loopback, gone after the session


def _binary() -> str | None:
    return shutil.which("redis-server") or next(
        (p for p in ("/usr/bin/redis-server", "/usr/sbin/redis-server") if Path(p).is_file()), None)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class RedisServer:
    binary: str
    port: int
    dir: Path
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"redis://:{PASSWORD}@127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 15.0) -> None:
        """Start it (again: same port, empty: nothing is saved)."""
        log = (self.dir / "redis.log").open("ab")
        self.proc = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.dir), "--requirepass", PASSWORD, "--protected-mode", "yes"],
            stdout=log, stderr=subprocess.STDOUT)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self.proc.returncode}: "
                                   f"{(self.dir / 'redis.log').read_text(errors='replace')[-2000:]}")
            if self.command("PING") == "+PONG":
                return
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"redis-server did not answer on 127.0.0.1:{self.port} within {timeout} s")

    def stop(self) -> None:
        """Stop it (SIGTERM: open connections are closed, as when Redis goes away)."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        stop_process(proc)

    def command(self, *args: str) -> str | None:
        """One command over a raw connection (RESP); the first line of the answer, or None
        when the server does not answer. Independent of the client under test."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=2) as s:
                payload = [["AUTH", PASSWORD], list(args)]
                s.sendall(b"".join(b"*%d\r\n" % len(cmd) + b"".join(b"$%d\r\n%s\r\n" % (len(a.encode()), a.encode())
                                                                     for a in cmd) for cmd in payload))
                data = b""
                while data.count(b"\r\n") < 2:
                    chunk = s.recv(65536)
                    if not chunk:
                        return None
                    data += chunk
        except OSError:
            return None
        auth, answer = data.split(b"\r\n")[:2]
        return answer.decode() if auth == b"+OK" else auth.decode()


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    pytest.importorskip("redis", reason="redis (redis-py) is a dependency: pip install -e '.[test]'")
    binary = _binary()
    if binary is None:
        pytest.skip("redis-server is not installed (.ci/run installs Debian's redis-server)")
    server = RedisServer(binary, _free_port(), Path(tempfile.mkdtemp(prefix="modelport-redis-")))
    server.start()
    try:
        yield server
    finally:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            server.stop()
        shutil.rmtree(server.dir, ignore_errors=True)


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """The session's Redis, emptied (FLUSHALL) for one test; started again if a test stopped it."""
    if redis_server.proc is None:
        redis_server.start()
    assert redis_server.command("FLUSHALL") == "+OK"
    return redis_server.url
