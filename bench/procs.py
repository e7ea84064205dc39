"""Child processes and /proc accounting.

Every process the benchmark starts goes through `Procs.start`: it runs in its own
process group (new session), so `Procs.stop_all` can end it and everything it forked
(uvicorn's workers, nginx's workers) by that group's id, also on Ctrl-C or an error.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Self

CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


def prioritize(pid: int, nice: int) -> None:
    """Give a new session (process group) priority `nice`: the group's nice value, and the
    value of its scheduler autogroup, which is what counts between sessions when the
    kernel groups by session (sched_autogroup_enabled=1); best effort."""
    if not nice:
        return
    try:
        os.setpriority(os.PRIO_PGRP, pid, nice)
    except OSError:
        pass
    try:
        Path(f"/proc/{pid}/autogroup").write_text(str(nice))
    except OSError:
        pass


class Procs:
    """The registry of started process groups; stop_all() is idempotent."""

    def __init__(self, nice: int = 0) -> None:
        self._procs: list[tuple[str, subprocess.Popen[bytes]]] = []
        self.nice = nice

    def run(self, argv: Sequence[str], timeout: float, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
        """Run a load generator to completion in its own prioritized session; on any
        exception (Ctrl-C included) its whole group is killed."""
        proc = subprocess.Popen(list(argv), stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                                text=True, cwd=cwd, start_new_session=True)
        prioritize(proc.pid, self.nice)
        try:
            out, err = proc.communicate(timeout=timeout)
        except BaseException:
            _killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            raise
        return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)

    def start(self, name: str, argv: Sequence[str], *, log: Path | None = None, env: dict[str, str] | None = None,
              cwd: Path | None = None, stdout: int | IO[Any] | None = None,
              user: str | None = None) -> subprocess.Popen[bytes]:
        """user: run as that system user (root only; PostgreSQL refuses to run as root)."""
        out: Any = stdout
        if out is None:
            out = open(log, "ab") if log is not None else subprocess.DEVNULL  # noqa: SIM115
        proc = subprocess.Popen(list(argv), stdout=out, stderr=subprocess.STDOUT if log is not None else None,
                                stdin=subprocess.DEVNULL, env=env, cwd=cwd, start_new_session=True,
                                user=user, group=user, extra_groups=[] if user else None)
        if log is not None and out is not None and hasattr(out, "close"):
            out.close()  # the child holds its own descriptor
        self._procs.append((name, proc))
        prioritize(proc.pid, self.nice)
        return proc

    def stop(self, proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM, timeout: float = 10.0) -> None:
        """Signal the process group, wait, then SIGKILL the group if it is still there."""
        if proc.poll() is None:
            _killpg(proc.pid, sig)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                _killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
        # Leftover members of the group (a worker whose parent died first).
        _killpg(proc.pid, signal.SIGKILL)
        self._procs = [(n, p) for n, p in self._procs if p is not proc]

    def stop_all(self) -> None:
        for _, proc in reversed(list(self._procs)):
            try:
                self.stop(proc)
            except (OSError, subprocess.SubprocessError) as exc:  # keep stopping the others
                print(f"bench: could not stop pid {proc.pid}: {exc}", flush=True)


def _killpg(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float, proc: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process {proc.args[0] if proc.args else '?'} exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.02)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


# -- /proc -------------------------------------------------------------------------


def _children_map() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        ppid = int(stat[stat.rfind(b")") + 2:].split()[1])
        kids.setdefault(ppid, []).append(int(entry.name))
    return kids


def tree(pid: int) -> list[int]:
    """pid and all its descendants."""
    kids = _children_map()
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(kids.get(p, ()))
    return out


def cpu_seconds(pids: Sequence[int]) -> float:
    """utime+stime (+ reaped children's) of these processes, in seconds."""
    ticks = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
        except OSError:
            continue
        # fields[0] is state (field 3); utime..cstime are fields 14..17.
        ticks += sum(int(x) for x in fields[11:15])
    return ticks / CLK_TCK


def rss_bytes(pids: Sequence[int]) -> int:
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/statm", "rb") as f:
                total += int(f.read().split()[1]) * PAGE
        except OSError:
            continue
    return total


def machine_busy_seconds() -> float:
    """CPU seconds all cores spent busy since boot (/proc/stat: everything but idle and iowait)."""
    with open("/proc/stat", "rb") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return (sum(fields[:8]) - idle) / CLK_TCK


def background_cores(window: float, ours: Sequence[int] = ()) -> float:
    """Cores that processes other than `ours` (pids, with their trees) keep busy over `window` s."""
    pids = [p for root in ours for p in tree(root)]
    b0, o0, s0, t0 = machine_busy_seconds(), cpu_seconds(pids), _self_cpu(), time.perf_counter()
    time.sleep(window)
    b1, o1, s1, t1 = machine_busy_seconds(), cpu_seconds(pids), _self_cpu(), time.perf_counter()
    return max(0.0, ((b1 - b0) - (o1 - o0) - (s1 - s0)) / (t1 - t0))


def _self_cpu() -> float:
    import resource
    r = resource.getrusage(resource.RUSAGE_SELF)
    c = resource.getrusage(resource.RUSAGE_CHILDREN)  # reaped children: the load generators
    return r.ru_utime + r.ru_stime + c.ru_utime + c.ru_stime


def wait_quiet(max_wait: float, threshold: float, ours: Sequence[int]) -> float:
    """Wait (up to max_wait s) until other processes use < threshold cores; returns the last reading."""
    deadline = time.perf_counter() + max_wait
    told = False
    while True:
        bg = background_cores(0.5, ours)
        if bg < threshold or time.perf_counter() >= deadline:
            if told:
                print(f"    ...{'quiet' if bg < threshold else 'still busy, measuring anyway'} "
                      f"(other processes: {bg:.2f} cores)", flush=True)
            return bg
        if not told:
            print(f"    waiting up to {max_wait:.0f} s for the machine to quiet down "
                  f"(other processes use {bg:.2f} cores)", flush=True)
            told = True


@dataclass
class Usage:
    cpu_s: float
    peak_rss: int
    peak_rss_pids: dict[int, int]


class Watch:
    """CPU used by process trees between start() and stop(), and the peak of the
    summed RSS of each tree, sampled every `interval` seconds by a thread."""

    def __init__(self, roots: dict[str, int], interval: float = 0.05) -> None:
        self.roots = roots
        self.interval = interval
        self._pids = {name: tree(pid) for name, pid in roots.items()}
        self._cpu0: dict[str, float] = {}
        self._peak: dict[str, int] = {name: 0 for name in roots}
        self._peak_pids: dict[str, dict[int, int]] = {name: {} for name in roots}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> None:
        for name, pids in self._pids.items():
            per = {pid: rss_bytes([pid]) for pid in pids}
            total = sum(per.values())
            if total > self._peak[name]:
                self._peak[name] = total
                self._peak_pids[name] = per

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def __enter__(self) -> Self:
        # Re-read the trees: a worker may have been replaced since the last watch.
        self._pids = {name: tree(pid) for name, pid in self.roots.items()}
        self._cpu0 = {name: cpu_seconds(pids) for name, pids in self._pids.items()}
        self._machine0, self._self0, self._t0 = machine_busy_seconds(), _self_cpu(), time.perf_counter()
        self._sample()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()
        self.result = {name: Usage(cpu_seconds(self._pids[name]) - self._cpu0[name], self._peak[name],
                                   self._peak_pids[name]) for name in self.roots}
        self.wall = time.perf_counter() - self._t0
        self.client_cpu = _self_cpu() - self._self0   # this process and the load generator it ran
        ours = sum(u.cpu_s for u in self.result.values()) + self.client_cpu
        self.background_cores = max(0.0, (machine_busy_seconds() - self._machine0 - ours) / self.wall)
