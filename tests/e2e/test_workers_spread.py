"""Connections spread over the workers (issue 14, "Performance"): with `workers: 2` each
worker listens on a SO_REUSEPORT socket of its own, so a burst of keep-alive connections
opened at once lands on both workers instead of on whichever woke first; the supervisor
listens on nothing; and a second `modelport serve` on the same port still fails.

Observed from outside, through /proc only: the listening sockets on the gateway's port and
which process holds them, and for each of our connections the gateway-side socket (found
in /proc/net/tcp by the two ports) and the worker whose descriptors include it. With 32
connections hashed by the kernel over 2 sockets, all on one worker has probability 2**-31.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.harness import GatewayProcess

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="SO_REUSEPORT balancing and /proc: Linux")

CONNECTIONS = 32
LISTEN, ESTABLISHED = "0A", "01"


@pytest.fixture(scope="module")
def two_workers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    with GatewayProcess(tmp_path_factory.mktemp("spread"), workers=2).running() as gw:
        yield gw


def tcp_sockets(port: int) -> list[tuple[str, int, str]]:
    """(state, remote port, inode) of every TCP socket whose local port is `port`."""
    rows = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError), open(table) as f:
            next(f)
            for line in f:
                parts = line.split()
                if int(parts[1].rsplit(":", 1)[1], 16) == port:
                    rows.append((parts[3], int(parts[2].rsplit(":", 1)[1], 16), parts[9]))
    return rows


def socket_inodes(pid: int) -> set[str]:
    out: set[str] = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        with contextlib.suppress(OSError):
            link = os.readlink(f"/proc/{pid}/fd/{fd}")
            if link.startswith("socket:["):
                out.add(link[8:-1])
    return out


def workers(supervisor: int) -> list[int]:
    """uvicorn's workers: the supervisor's children started by multiprocessing's spawn."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                if ppid == supervisor and b"spawn_main" in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
    return sorted(found)


def listening(gw: GatewayProcess) -> dict[int, int]:
    """Process -> listening sockets on the gateway's port it holds (supervisor and workers)."""
    assert gw.proc is not None
    inodes = {inode for state, _, inode in tcp_sockets(gw.port) if state == LISTEN}
    return {pid: len(socket_inodes(pid) & inodes) for pid in [gw.proc.pid, *workers(gw.proc.pid)]}


def wait_all_listening(gw: GatewayProcess, timeout: float = 20.0) -> dict[int, int]:
    """The harness returns once one worker answers; each worker listens once its app is up."""
    deadline = time.monotonic() + timeout
    while True:
        held = listening(gw)
        if sum(held.values()) >= gw.workers or time.monotonic() > deadline:
            return held
        time.sleep(0.05)


async def burst(port: int, n: int) -> tuple[list[int], list[bytes]]:
    """Open n connections at once, send one keep-alive request on each and read its answer;
    returns our local ports (the connections still open) and the status lines."""
    conns = await asyncio.gather(*(asyncio.open_connection("127.0.0.1", port) for _ in range(n)))
    try:
        for _, writer in conns:
            writer.write(f"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
        heads = await asyncio.wait_for(asyncio.gather(*(r.readuntil(b"\r\n\r\n") for r, _ in conns)), 15)
        return [w.get_extra_info("sockname")[1] for _, w in conns], [h.split(b"\r\n", 1)[0] for h in heads]
    finally:
        for _, writer in conns:
            writer.close()


def test_each_worker_listens_on_its_own_socket_and_the_supervisor_on_none(two_workers: GatewayProcess) -> None:
    assert two_workers.proc is not None
    held = wait_all_listening(two_workers)
    supervisor = held.pop(two_workers.proc.pid)
    assert supervisor == 0, "the supervisor must not listen: its share of the connections would never be accepted"
    assert len(held) == 2 and all(n == 1 for n in held.values()), held


def test_connections_opened_at_once_spread_over_both_workers(two_workers: GatewayProcess) -> None:
    assert two_workers.proc is not None
    wait_all_listening(two_workers)
    pids = workers(two_workers.proc.pid)
    assert len(pids) == 2

    async def run() -> Counter[int | None]:
        ports, statuses = await burst(two_workers.port, CONNECTIONS)
        assert all(s.startswith(b"HTTP/1.1 200") for s in statuses), statuses
        # Our connections are still open: each gateway-side end is a socket of one worker.
        ours = {remote: inode for state, remote, inode in tcp_sockets(two_workers.port) if state == ESTABLISHED}
        holder_of_inode = {inode: pid for pid in pids for inode in socket_inodes(pid)}
        return Counter(holder_of_inode.get(ours.get(port, "")) for port in ports)

    by_worker = asyncio.run(run())
    assert None not in by_worker, f"a connection held by no worker: {by_worker}"
    assert set(by_worker) == set(pids), f"{CONNECTIONS} connections opened at once all went to one worker: {by_worker}"


@pytest.mark.parametrize("workers_count", [2, 1])
def test_a_second_serve_on_the_same_port_fails_clearly(two_workers: GatewayProcess, tmp_path: Path,
                                                       workers_count: int) -> None:
    """SO_REUSEPORT would let a second process of the same user join the port's sockets and
    take half the connections; `serve` checks the port first and exits 3."""
    wait_all_listening(two_workers)
    before = listening(two_workers)
    second = GatewayProcess(tmp_path / "second", workers=workers_count)
    second.port = two_workers.port
    second.write_config()
    result = subprocess.run([sys.executable, "-m", "proxy.cli", "--config", str(second.config_path), "serve"],
                            capture_output=True, text=True, timeout=60, cwd=tmp_path, check=False)
    assert result.returncode == 3, result.stdout + result.stderr
    assert "address already in use" in result.stderr.lower(), result.stderr
    assert listening(two_workers) == before  # the first gateway's sockets, and only those
