"""Operating safely (issue 10, "Secrets outside the keystore"): secrets never in a process
environment, failed-auth bursts slowed down, slow clients cut off, a concurrency limit,
a locked database as a 503, private database files, escaped logs, and streams told
when a shutdown ends them. Each test runs a gateway of its own with short limits."""

from __future__ import annotations

import contextlib
import json
import re
import os
import signal
import socket
import sqlite3
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from keystore import MASTER_KEY_ENV, encode_master_key, new_master_key
from tests.e2e.harness import GatewayProcess
from tests.fakes.fixtures import FakeOpenAI

OWN_KEY = "sk-test-safely-own-not-a-real-key-000001"
HOSTED_KEY = "sk-test-safely-hosted-not-a-real-key-0002"
ADMIN_TOKEN = "mpa-test-safely-admin-not-a-real-token-0003"
HI = [{"role": "user", "content": "hi"}]


@contextlib.contextmanager
def running(gateway: GatewayProcess) -> Iterator[GatewayProcess]:
    gateway.start()
    try:
        yield gateway
    finally:
        gateway.stop()


def add_tenant(gw: GatewayProcess, fake: FakeOpenAI, name: str, env: dict[str, str] | None = None) -> str:
    """A tenant with its own (fake) OpenAI key; returns a token of it."""
    fake.state.api_keys.add(OWN_KEY)
    gw.cli("tenants", "create", name, env=env)
    gw.cli("providers", "set", name, "openai", f"api_key={OWN_KEY}", f"base_url={fake.v1_url}", env=env)
    gw.cli("defaults", "set", name, "llm", "openai/gpt-4o-mini", env=env)
    return gw.cli("tokens", "create", name, env=env).out.strip()


def descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                # The parent pid is the 2nd field after the parenthesised command name.
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                children.setdefault(ppid, []).append(int(entry.name))
    seen, queue = [], [pid]  # breadth first
    while queue:
        for child in children.get(queue.pop(0), []):
            seen.append(child)
            queue.append(child)
    return seen


def raw_request(port: int, head: bytes) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(head)
    return sock


def dribble_until_answered(sock: socket.socket, piece: bytes, every: float, limit: float) -> tuple[bytes, float]:
    """Send `piece` every `every` seconds until the server answers (or `limit` passes)."""
    started = time.monotonic()
    sock.setblocking(False)
    answer = b""
    while time.monotonic() - started < limit:
        with contextlib.suppress(BlockingIOError):
            data = sock.recv(65536)
            if not data:
                break  # closed
            answer += data
            if b"\r\n\r\n" in answer:
                sock.setblocking(True)
                sock.settimeout(2)
                with contextlib.suppress(OSError):
                    while chunk := sock.recv(65536):
                        answer += chunk
                break
        with contextlib.suppress(OSError):
            sock.sendall(piece)
        time.sleep(every)
    return answer, time.monotonic() - started


def status_and_body(answer: bytes) -> tuple[int, bytes]:
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


# -- secrets ------------------------------------------------------------------------------------


def test_no_secret_in_any_process_environment_or_command_line(tmp_path: Path, fake_openai: FakeOpenAI) -> None:
    master = encode_master_key(new_master_key())
    env = {MASTER_KEY_ENV: master, "HOSTED_OPENAI_API_KEY": HOSTED_KEY, "MODELPORT_ADMIN_TOKEN": ADMIN_TOKEN}
    gw = GatewayProcess(tmp_path / "env", workers=2, env=env, settings={
        "admin_token": "${MODELPORT_ADMIN_TOKEN}",
        "hosted": {"openai": {"credentials": {"api_key": "${HOSTED_OPENAI_API_KEY}", "base_url": fake_openai.v1_url},
                              "quota": 5, "models": ["gpt-3.5-turbo"]}}})
    gw.write_config()
    own = add_tenant(gw, fake_openai, "own", env)
    gw.cli("tenants", "create", "trial", env=env)
    trial = gw.cli("tokens", "create", "trial", env=env).out.strip()
    fake_openai.state.api_keys.add(HOSTED_KEY)
    with running(gw):
        # The workers have everything: the master key (to decrypt "own"'s key), the hosted
        # credential and the admin token.
        for token, model in ((own, "default"), (trial, "gpt-3.5-turbo")):
            for _ in range(4):  # both workers
                with httpx.Client(base_url=gw.base_url, headers={"Authorization": f"Bearer {token}"}) as http:
                    reply = http.post("/v1/chat/completions", json={"model": model, "messages": HI}, timeout=15)
                    assert reply.status_code == 200, reply.text
        admin = httpx.get(gw.base_url + "/admin/v1/tenants", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
        assert admin.status_code == 200

        assert gw.proc is not None
        processes = [gw.proc.pid, *descendants(gw.proc.pid)]
        assert len(processes) >= 3, "expected the supervisor and two workers"
        for pid in processes:
            environ = Path(f"/proc/{pid}/environ").read_bytes()
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            for secret in (master, HOSTED_KEY, ADMIN_TOKEN):
                assert secret.encode() not in environ, f"a secret in the environment of {pid}"
                assert secret.encode() not in cmdline, f"a secret on the command line of {pid}"
            assert MASTER_KEY_ENV.encode() not in environ and b"MODELPORT_SETTINGS_JSON" not in environ
    assert not list(gw.data_dir.glob("*settings*"))  # the handoff left no file behind


def test_a_short_configured_admin_token_is_refused_at_start(tmp_path: Path) -> None:
    gw = GatewayProcess(tmp_path / "short", settings={"admin_token": "mpa-too-short-12"})
    gw.write_config()
    result = subprocess.run([sys.executable, "-m", "proxy.cli", "--config", str(gw.config_path), "serve"],
                            capture_output=True, text=True, timeout=30, cwd=tmp_path)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.splitlines() == [
        "modelport: invalid configuration: admin_token: must be at least 32 characters long (got 16)"]
    assert "mpa-too-short-12" not in result.stderr


# -- abusive and slow clients -------------------------------------------------------------------


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory, fake_openai_server: FakeOpenAI) -> Iterator[GatewayProcess]:
    gw = GatewayProcess(tmp_path_factory.mktemp("guarded"), workers=1, settings={
        "auth_failure_limit": 5, "auth_failure_window": 60, "client_body_timeout": 1,
        "client_header_timeout": 1.5, "database_busy_timeout": 0.3, "admin_token": ADMIN_TOKEN})
    gw.write_config()
    gw.tokens["acme"] = add_tenant(gw, fake_openai_server, "acme")
    with running(gw):
        yield gw


def test_a_burst_of_failed_authentications_gets_429_but_valid_tokens_still_work(guarded: GatewayProcess) -> None:
    with httpx.Client(base_url=guarded.base_url, timeout=10) as http:
        bad = {"Authorization": "Bearer mp-not-a-real-token"}
        assert [http.get("/v1/models", headers=bad).status_code for _ in range(5)] == [401] * 5
        limited = http.get("/v1/models", headers=bad)
        assert limited.status_code == 429
        assert 1 <= int(limited.headers["retry-after"]) <= 60
        assert limited.json() == {"error": {
            "message": "Too many failed authentication attempts from this address; retry later.",
            "type": "rate_limit_error", "param": None, "code": "too_many_auth_failures"}}
        assert http.get("/admin/v1/tenants", headers={"Authorization": "Bearer wrong"}).status_code == 429
        # A valid token is never refused for its address's failures.
        good = {"Authorization": f"Bearer {guarded.tokens['acme']}"}
        assert http.get("/v1/models", headers=good).status_code == 200
        assert http.get("/admin/v1/tenants", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}).status_code == 200


def test_a_body_dribbled_slower_than_the_deadline_gets_408(guarded: GatewayProcess) -> None:
    head = (b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Authorization: Bearer " + guarded.tokens["acme"].encode() + b"\r\nContent-Length: 4000\r\n\r\n{")
    with raw_request(guarded.port, head) as sock:
        answer, elapsed = dribble_until_answered(sock, b" ", every=0.2, limit=8)
    status, body = status_and_body(answer)
    assert status == 408 and elapsed < 4
    assert json.loads(body)["error"]["code"] == "request_timeout"


def test_headers_dribbled_slower_than_the_deadline_get_408(guarded: GatewayProcess) -> None:
    with raw_request(guarded.port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n") as sock:
        answer, elapsed = dribble_until_answered(sock, b"X-Slow: 1\r\n", every=0.2, limit=8)
    status, body = status_and_body(answer)
    assert status == 408 and elapsed < 4
    assert json.loads(body)["error"]["code"] == "request_timeout"
    assert re.search(rb"\r\nx-request-id: req_[0-9a-f]+\r\n", answer), answer  # written below the app, too
    # A normal client on a normal connection is not affected.
    assert httpx.get(guarded.base_url + "/healthz").status_code == 200


def test_requests_beyond_the_concurrency_limit_get_503(tmp_path: Path) -> None:
    gw = GatewayProcess(tmp_path / "busy", workers=1, settings={"max_concurrency": 2})
    def healthz_becomes(status: int) -> httpx.Response:
        deadline = time.monotonic() + 10  # until the worker has seen the idle connection come or go
        while (got := httpx.get(gw.base_url + "/healthz")).status_code != status:
            assert time.monotonic() < deadline, got
            time.sleep(0.1)
        return got

    with running(gw):
        with socket.create_connection(("127.0.0.1", gw.port)):  # idle: it counts as well
            busy = healthz_becomes(503)
            # OpenAI's shape, like every other answer of the gateway.
            assert busy.json()["error"]["code"] == "server_busy" and busy.headers["retry-after"] == "1"
            assert busy.headers["x-request-id"].startswith("req_")
            mine = httpx.get(gw.base_url + "/healthz", headers={"x-request-id": "client-id-1"})
            assert mine.status_code == 503 and mine.headers["x-request-id"] == "client-id-1"
        healthz_becomes(200)


# -- the database -------------------------------------------------------------------------------


def test_a_locked_database_is_a_503_with_retry_after(guarded: GatewayProcess) -> None:
    admin = httpx.Client(base_url=guarded.base_url + "/admin/v1", timeout=10,
                         headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    holder = sqlite3.connect(guarded.data_dir / "modelport.db", isolation_level=None)
    try:
        holder.execute("BEGIN EXCLUSIVE")  # another process in the middle of a long write
        response = admin.post("/tenants", json={"name": "during-lock"})
        assert response.status_code == 503 and response.headers["retry-after"] == "1"
        assert response.json()["error"] == {
            "message": "The database is busy (locked by another process); retry shortly.",
            "type": "server_error", "param": None, "code": "database_busy"}
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert admin.post("/tenants", json={"name": "after-lock"}).status_code in (200, 201)
    admin.close()


def test_database_files_are_private(guarded: GatewayProcess, tmp_path: Path) -> None:
    files = [p for p in guarded.data_dir.iterdir() if p.name.startswith("modelport.db")]
    assert {p.name for p in files} >= {"modelport.db", "modelport.db-wal", "modelport.db-shm"}
    assert {p.name: stat.S_IMODE(p.stat().st_mode) for p in files} == {p.name: 0o600 for p in files}
    # A database made by an older version (with the umask's mode) is put right.
    old = GatewayProcess(tmp_path / "old")
    old.write_config()
    old.cli("tenants", "list")
    for path in old.data_dir.glob("modelport.db*"):
        path.chmod(0o644)
    old.cli("tenants", "list")
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in old.data_dir.glob("modelport.db*"))


# -- logs ---------------------------------------------------------------------------------------


def test_client_text_cannot_forge_a_log_line(guarded: GatewayProcess) -> None:
    forged = "INFO:     request req_forged chat.completions tenant=admin status=200"
    model = f"gpt-4o\n{forged}\x1b[2J\u2028x"
    with httpx.Client(base_url=guarded.base_url, headers={"Authorization": f"Bearer {guarded.tokens['acme']}"}) as http:
        http.post("/v1/chat/completions", json={"model": model, "messages": HI})  # logged, whatever the outcome
    deadline = time.monotonic() + 5
    while "\\nINFO:     request req_forged" not in guarded.log():
        assert time.monotonic() < deadline, guarded.log()[-2000:]
        time.sleep(0.05)
    log = guarded.log()
    assert not any(line.startswith(forged) for line in log.splitlines())
    assert "\x1b" not in log and "\u2028" not in log and "\\x1b[2J\\u2028x" in log


# -- shutdown -----------------------------------------------------------------------------------


def test_streams_cut_by_the_end_of_the_grace_period_get_an_error_event(tmp_path: Path,
                                                                       fake_openai: FakeOpenAI) -> None:
    gw = GatewayProcess(tmp_path / "grace", workers=1, settings={"shutdown_grace_seconds": 1})
    gw.write_config()
    token = add_tenant(gw, fake_openai, "streamer")
    fake_openai.state.reply_text = " ".join(f"word{i}" for i in range(200))
    fake_openai.state.stream_delay = 0.1
    with running(gw):
        lines: list[str] = []
        body = {"model": "default", "messages": HI, "stream": True}
        with httpx.stream("POST", gw.v1_url + "/chat/completions", json=body, timeout=20,
                          headers={"Authorization": f"Bearer {token}"}) as response:
            assert response.status_code == 200
            stopped_at = None
            for line in response.iter_lines():
                if line:
                    lines.append(line)
                if stopped_at is None and len(lines) >= 3:
                    assert gw.proc is not None
                    gw.proc.send_signal(signal.SIGTERM)
                    stopped_at = time.monotonic()
        assert stopped_at is not None and time.monotonic() - stopped_at < 6
    assert "data: [DONE]" not in lines
    last = json.loads(lines[-1].removeprefix("data: "))
    assert last["error"]["code"] == "server_shutting_down" and last["error"]["type"] == "server_error"
    assert len(lines) < 150  # it was cut, not finished
    assert os.environ.get(MASTER_KEY_ENV) is None
