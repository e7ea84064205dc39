"""`modelport emulate`: the command a user runs to test an application offline, started
as a real process and called with the vendors' official SDKs; README's example runs as
written against it."""

from __future__ import annotations

import contextlib
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import anthropic
import httpx
import openai
import pytest

from emulators.catalog import EMULATORS
from tests.processes import stop_process

REPO = Path(__file__).resolve().parents[2]


@contextlib.contextmanager
def emulate(*args: str) -> Iterator[tuple[str, str]]:
    """`modelport emulate ARGS --port 0`, until its listing is printed: (root URL, output)."""
    proc = subprocess.Popen([sys.executable, "-m", "proxy.cli", "emulate", *args, "--port", "0"], cwd=REPO,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"}, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    assert proc.stdout is not None
    os.set_blocking(proc.stdout.fileno(), False)
    output = b""
    try:
        deadline = time.monotonic() + 30
        while b"base_url=" not in output or not output.endswith(b"\n"):
            assert proc.poll() is None and time.monotonic() < deadline, output.decode()
            output += proc.stdout.read() or b""
            time.sleep(0.05)
        time.sleep(0.2)
        output += proc.stdout.read() or b""
        root = re.search(rb"on (http://127\.0\.0\.1:\d+)", output)
        assert root is not None, output.decode()
        yield root.group(1).decode(), output.decode()
    finally:
        stop_process(proc)


def _field(output: str, name: str, key: str) -> str:
    line = next(ln for ln in output.splitlines() if ln.strip().startswith(name + " "))
    found = re.search(rf"{key}=(\S+)", line)
    assert found is not None, line
    return found.group(1)


def test_one_vendor_with_failure_injection() -> None:
    with emulate("openai") as (root, output):
        base_url, key = _field(output, "openai", "base_url"), _field(output, "openai", "api_key")
        assert base_url == root + "/v1"
        client = openai.OpenAI(base_url=base_url, api_key=key, max_retries=0, timeout=10)
        reply = client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}],
                                               extra_headers={"X-Emulator-Reply": "echo"})
        assert reply.choices[0].message.content == "hi"
        with pytest.raises(openai.RateLimitError) as limited:
            client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}],
                                           extra_headers={"X-Emulator-Fault": "429-7"})
        assert limited.value.response.headers["retry-after"] == "7"
        with pytest.raises(openai.InternalServerError):
            client.chat.completions.create(model="fault-500", messages=[{"role": "user", "content": "hi"}])
        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(base_url=base_url, api_key="sk-wrong", max_retries=0).models.list()


def test_all_on_one_port_under_prefixes() -> None:
    with emulate("all") as (root, output):
        for name in EMULATORS:
            assert _field(output, name, "base_url").startswith(f"{root}/{name}")
        index = httpx.get(root + "/", timeout=5).json()["emulators"]
        assert [row["name"] for row in index] == list(EMULATORS)
        claude = anthropic.Anthropic(base_url=_field(output, "anthropic", "base_url"), max_retries=0,
                                     api_key=_field(output, "anthropic", "api_key"))
        message = claude.messages.create(model="claude-sonnet-4-5", max_tokens=64,
                                         messages=[{"role": "user", "content": "ping"}],
                                         extra_headers={"X-Emulator-Reply": "pong"})
        assert message.content[0].type == "text" and message.content[0].text == "pong"
        with pytest.raises(anthropic.APIStatusError) as overloaded:
            claude.messages.create(model="claude-sonnet-4-5", max_tokens=64, messages=[{"role": "user", "content": "x"}],
                                   extra_headers={"X-Emulator-Fault": "overloaded"})
        assert overloaded.value.status_code == 529


def test_list_unknown_and_a_taken_port() -> None:
    listed = subprocess.run([sys.executable, "-m", "proxy.cli", "emulate", "list"], cwd=REPO, capture_output=True,
                            text=True, timeout=30)
    assert listed.returncode == 0 and [ln.split()[0] for ln in listed.stdout.splitlines()] == list(EMULATORS)
    unknown = subprocess.run([sys.executable, "-m", "proxy.cli", "emulate", "nonesuch"], cwd=REPO,
                             capture_output=True, text=True, timeout=30)
    assert unknown.returncode == 2 and "no emulator named 'nonesuch'" in unknown.stderr
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = str(taken.getsockname()[1])
        busy = subprocess.run([sys.executable, "-m", "proxy.cli", "emulate", "openai", "--port", port], cwd=REPO,
                              capture_output=True, text=True, timeout=30)
    assert busy.returncode == 3 and "cannot listen" in busy.stdout


def test_readme_example_runs_against_the_emulator() -> None:
    readme = (REPO / "README.md").read_text()
    section = readme[readme.index("## Emulators"):]
    code = re.search(r"```python\n(.*?)```", section, re.S)
    assert code is not None, "README's Emulators section has a python example"
    with emulate("openai") as (root, _):
        example = code.group(1).replace("http://127.0.0.1:8100", root)
        result = subprocess.run([sys.executable, "-c", example], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
