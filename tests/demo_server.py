"""`modelport serve --demo` as a newcomer starts it (a fresh directory, no configuration,
none of a developer's MODELPORT_* variables), for the demo's end-to-end and browser tests."""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import openai

from emulators.server import free_port
from tests.processes import stop_process

# The variables a developer's shell (or another test module) may hold: the demo must not see them.
_SCRUBBED = ("MODELPORT_CONFIG", "MODELPORT_DATABASE_URL", "MODELPORT_REDIS_URL", "MODELPORT_MASTER_KEY")


def scrubbed_env() -> dict[str, str]:
    return {**{k: v for k, v in os.environ.items() if k not in _SCRUBBED}, "PYTHONUNBUFFERED": "1"}


def serve(cwd: Path, *args: str) -> subprocess.Popen[bytes]:
    """`modelport serve ARGS` in `cwd`, its output on a pipe."""
    return subprocess.Popen([sys.executable, "-m", "proxy.cli", "serve", *args], cwd=cwd, env=scrubbed_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


@dataclass
class Demo:
    base_url: str
    token: str
    console_token: str
    output: str
    cwd: Path

    def client(self) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.base_url + "/v1", api_key=self.token, max_retries=0, timeout=20)


def _wait_until_serving(proc: subprocess.Popen[bytes], base_url: str) -> str:
    assert proc.stdout is not None
    os.set_blocking(proc.stdout.fileno(), False)
    output = b""
    deadline = time.monotonic() + 40
    while time.monotonic() < deadline:
        output += proc.stdout.read() or b""
        if proc.poll() is not None:
            raise AssertionError(f"serve --demo exited with {proc.returncode}:\n{output.decode()}")
        with contextlib.suppress(httpx.HTTPError):
            if b"serving on" in output and httpx.get(base_url + "/healthz", timeout=1).status_code == 200:
                return output.decode()
        time.sleep(0.1)
    raise AssertionError(f"serve --demo did not come up:\n{output.decode()}")


@contextlib.contextmanager
def served_demo(cwd: Path) -> Iterator[Demo]:
    """`serve --demo` on a free port in `cwd`, with the tokens it printed; stopped on exit."""
    port = free_port()
    proc = serve(cwd, "--demo", "--port", str(port))
    try:
        output = _wait_until_serving(proc, f"http://127.0.0.1:{port}")
        token = re.search(r"API token (mp-\S+)", output)
        console = re.search(r"console token (mpc-\S+)", output)
        assert token and console, output
        yield Demo(f"http://127.0.0.1:{port}", token.group(1), console.group(1), output, cwd)
    finally:
        stop_process(proc)
