"""`modelport serve` under test: a temp data dir, tenants set up through the CLI, and
start-up timed to the first served request."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from bench.procs import Procs, free_port

REPO = Path(__file__).resolve().parents[1]
FAKE_KEY = "sk-bench-fake-0000000000000000"


def _env() -> dict[str, str]:
    """The environment for every modelport process: ours without MODELPORT_* settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELPORT_")}
    env["PYTHONUNBUFFERED"] = "1"
    return env


def modelport_argv() -> list[str]:
    script = Path(sys.executable).parent / "modelport"
    if script.exists():
        return [str(script)]
    found = shutil.which("modelport")
    return [found] if found else [sys.executable, "-m", "proxy.cli"]


def anthropic_translator() -> dict[str, object] | None:
    """What the registry says about `anthropic` (None while it is not registered)."""
    code = ("import json, translators\n"
            "t = translators.REGISTRY.get('anthropic')\n"
            "print(json.dumps(None if t is None else {'default_base_url': t.default_base_url,\n"
            "  'fields': [f.name for f in t.credential_fields]}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, env=_env(),
                         timeout=60, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"cannot import the translator registry: {out.stderr.strip()[-500:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


@dataclass
class Tenant:
    name: str
    token: str = ""
    providers: dict[str, str] = field(default_factory=dict)   # provider -> base_url


class Gateway:
    def __init__(self, procs: Procs, root: Path, workers: int = 2, extra_config: str = "") -> None:
        self.procs = procs
        self.root = root
        root.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.data = root / "data"
        self.config = root / "modelport.yaml"
        self.port = free_port()
        self.workers = workers
        self.proc: subprocess.Popen[bytes] | None = None
        self.tenants: dict[str, Tenant] = {}
        self.log = root / "gateway.log"
        self.config.write_text(
            f"host: 127.0.0.1\nport: {self.port}\nworkers: {workers}\ndata_dir: {self.data}\nlog_level: warning\n"
            + extra_config)

    def cli(self, *args: str) -> str:
        argv = [*modelport_argv(), "--config", str(self.config), *args]
        out = subprocess.run(argv, capture_output=True, text=True, cwd=self.root, env=_env(), timeout=120,
                             check=False)
        if out.returncode != 0:
            raise RuntimeError(f"`modelport {' '.join(args[:3])} ...` failed: {out.stderr.strip()}")
        return out.stdout

    def setup(self, upstreams: dict[str, dict[str, str]]) -> None:
        """upstreams: tenant name -> {provider: base_url}; one token per tenant."""
        for name, providers in upstreams.items():
            self.cli("tenants", "create", name)
            token = json.loads(self.cli("--json", "tokens", "create", name, "--name", "bench"))["token"]
            for provider, base_url in providers.items():
                self.cli("providers", "set", name, provider, f"api_key={FAKE_KEY}", f"base_url={base_url}")
            self.tenants[name] = Tenant(name, token, dict(providers))

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def start(self, probe_path: str, probe_body: bytes, token: str, timeout: float = 60.0) -> float:
        """Start `modelport serve`; seconds from spawn to the first 200 on the probe request."""
        if self.proc is not None:
            raise RuntimeError("gateway already running")
        t0 = time.perf_counter()
        self.proc = self.procs.start("gateway", [*modelport_argv(), "--config", str(self.config), "serve"],
                                     log=self.log, env=_env(), cwd=self.root)
        deadline = t0 + timeout
        last = ""
        while time.perf_counter() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"modelport serve exited with {self.proc.returncode}; see {self.log}:\n"
                                   + self.log.read_text()[-2000:])
            req = urllib.request.Request(self.url(probe_path), data=probe_body, method="POST", headers={
                "Content-Type": "application/json", "Authorization": f"Bearer {token}"})
            try:
                with urllib.request.urlopen(req, timeout=5) as resp:
                    if resp.status == 200:
                        resp.read()
                        return time.perf_counter() - t0
            except urllib.error.HTTPError as exc:
                last = f"{exc.code} {exc.read()[:300]!r}"
            except OSError as exc:
                last = repr(exc)
            time.sleep(0.005)
        raise TimeoutError(f"modelport serve did not answer 200 within {timeout} s (last: {last})")

    def stop(self) -> None:
        if self.proc is not None:
            self.procs.stop(self.proc, timeout=15)
            self.proc = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid
