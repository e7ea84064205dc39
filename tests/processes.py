"""Ending a process a test started, so that nothing is left running."""

from __future__ import annotations

import subprocess
from typing import Any


def stop_process(proc: subprocess.Popen[Any]) -> None:
    """SIGTERM (the process shuts down as in production), SIGKILL when it will not."""
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)
