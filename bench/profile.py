"""py-spy on the gateway's workers while a load runs; top costs from the collapsed stacks.

py-spy leaves out samples where a thread is idle (blocked in epoll), so the shares
below are shares of the event-loop thread's busy time. `Runner.run` as a leaf is
uvloop's own C code (I/O, callbacks), which py-spy sees only as its caller.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from bench.procs import tree

FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::\d+)?\)$")

# Self time is grouped by where the code lives.
CATEGORIES = [
    ("gateway code (proxy/, translators/, keystore/)", ("proxy/", "translators/", "keystore/")),
    ("uvicorn + httptools (server HTTP)", ("uvicorn/", "httptools")),
    ("starlette (routing, Request, responses)", ("starlette/",)),
    ("aiohttp (upstream client)", ("aiohttp/", "multidict", "yarl/", "aiohappyeyeballs", "propcache")),
    ("pydantic (request validation)", ("pydantic",)),
    ("asyncio / uvloop (event loop, tasks)", ("asyncio/", "uvloop", "contextlib.py", "contextvars")),
    ("logging", ("logging/",)),
]


def py_spy() -> str | None:
    return shutil.which("py-spy") or (str(Path(sys.executable).parent / "py-spy")
                                      if (Path(sys.executable).parent / "py-spy").exists() else None)


def ensure_py_spy() -> str:
    found = py_spy()
    if found is None:
        print("bench: installing py-spy from PyPI (pip install py-spy) for the profile", flush=True)
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "py-spy"], check=True)
        found = py_spy()
    if found is None:
        raise RuntimeError("py-spy is not available")
    return found


def workers(gateway_pid: int) -> list[int]:
    out = []
    for pid in tree(gateway_pid)[1:]:
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if b"spawn_main" in cmd or b"uvicorn" in cmd or b"modelport" in cmd:
            out.append(pid)
    return out or [gateway_pid]


def start(pids: list[int], seconds: int, out_dir: Path, label: str, rate: int = 250) -> list[tuple[subprocess.Popen[bytes], Path]]:
    exe = ensure_py_spy()
    started = []
    for pid in pids:
        path = out_dir / f"{label}-{pid}.collapsed.txt"
        proc = subprocess.Popen([exe, "record", "--pid", str(pid), "--rate", str(rate), "--duration", str(seconds),
                                 "--format", "raw", "--function", "--output", str(path)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        started.append((proc, path))
    return started


def finish(started: list[tuple[subprocess.Popen[bytes], Path]], timeout: float) -> list[Path]:
    paths = []
    for proc, path in started:
        try:
            _, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate()
        if proc.returncode != 0 or not path.exists():
            print(f"bench: py-spy failed ({proc.returncode}): {err.decode(errors='replace').strip()[-500:]}",
                  flush=True)
            continue
        paths.append(path)
    return paths


def compress(paths: list[Path]) -> list[Path]:
    """gzip the collapsed stacks (10x smaller; `zcat` them into speedscope or flamegraph.pl)."""
    import gzip
    out = []
    for path in paths:
        gz = path.with_name(path.name + ".gz")
        gz.write_bytes(gzip.compress(path.read_bytes()))
        path.unlink()
        out.append(gz)
    return out


def _frame(raw: str) -> tuple[str, str]:
    m = FRAME.match(raw.strip())
    if not m:
        return raw.strip(), ""
    return m.group("func"), m.group("file")


_REPO = str(Path(__file__).resolve().parents[1]) + "/"  # frames in the checkout, wherever it is


def _short(file: str) -> str:
    for marker in ("site-packages/", "lib/python3", _REPO):
        if marker in file:
            file = file.split(marker, 1)[1]
    for repo_dir in ("/proxy/", "/translators/", "/keystore/"):
        if repo_dir in file:
            file = repo_dir[1:] + file.split(repo_dir, 1)[1]
    return file


def summarize(paths: list[Path], top: int = 25) -> dict[str, Any]:
    self_time: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    categories: Counter[str] = Counter()
    total = 0
    for path in paths:
        for line in path.read_text(errors="replace").splitlines():
            stack, _, count = line.rpartition(" ")
            if not stack or not count.isdigit():
                continue
            n = int(count)
            frames = [_frame(f) for f in stack.split(";")]
            # py-spy's first frame is the thread ("process 123:..." / "<thread>"); keep Python frames.
            frames = [f for f in frames if f[1]]
            # Only the event-loop thread serves requests. Helper threads (aiosqlite's worker,
            # uvicorn's ping thread) sleep in blocking calls that py-spy does not always
            # recognise as idle here, so their stacks are left out.
            if not frames or any(fl.endswith("threading.py") or "multiprocessing/connection" in fl
                                 for _, fl in frames):
                continue
            total += n
            func, file = frames[-1]
            self_time[f"{func} ({_short(file)})"] += n
            for name in {f"{fn} ({_short(fl)})" for fn, fl in frames}:
                inclusive[name] += n
            # Category of the innermost frame that is not the standard library's plumbing.
            cat = "other (stdlib, C extensions)"
            for fn, fl in reversed(frames):
                hit = next((c for c, markers in CATEGORIES
                            if any(fl.startswith(m) or "/" + m in fl for m in markers)), None)
                if hit is not None:
                    cat = hit
                    break
            categories[cat] += n
    pct = (lambda n: round(100.0 * n / total, 1)) if total else (lambda n: 0.0)
    return {
        "samples": total,
        "self": [(name, pct(n)) for name, n in self_time.most_common(top)],
        "inclusive": [(name, pct(n)) for name, n in inclusive.most_common(top * 2)],
        "categories": [(name, pct(n)) for name, n in categories.most_common()],
    }


def render(label: str, summary: dict[str, Any]) -> str:
    lines = [f"### profile: {label} ({summary['samples']} samples on the CPU)", "",
             "Self time by library (innermost frame that belongs to a known library):", ""]
    lines += [f"- {pct:5.1f}%  {name}" for name, pct in summary["categories"]]
    lines += ["", "Top self time (function):", ""]
    lines += [f"- {pct:5.1f}%  {name}" for name, pct in summary["self"]]
    lines += ["", "Top inclusive time (function and everything it calls):", ""]
    lines += [f"- {pct:5.1f}%  {name}" for name, pct in summary["inclusive"]]
    return "\n".join(lines)
