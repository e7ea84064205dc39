"""The fake upstream: nginx serving vendor-shaped responses as static files, and the
slow-dribble server (bench/dribble.py) for the soak. The bodies are the repository's own
fixtures (tests/fixtures/<vendor>/, written from the vendors' wire formats), so the bench
needs nothing beside the repository.

nginx answers by path suffix, whatever the prefix (so any base_url layout works):
  .../chat/completions -> openai/chat_response.json        (application/json)
  .../embeddings       -> openai/embeddings_response.json
  .../messages         -> anthropic/chat_response.json
  .../responses        -> openai/responses_response.json (a Responses API `response`)
  /stream/.../chat/completions -> a ~20-chunk OpenAI SSE stream (text/event-stream)
  /stream/.../messages         -> anthropic/chat_stream.sse
  /large/.../embeddings        -> the embeddings fixture with a 1536-float vector
  /flaky/.../chat/completions  -> like .../chat/completions, but 5% of answers are a 503
Static files refuse POST with 405; `error_page 405 =200 $uri` turns that into an
internal GET redirect (to the file's own URI after try_files) that serves the file
with status 200 and the type its extension says (checked at start).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import urllib.request
from pathlib import Path

from bench.procs import Procs, free_port, wait_port

DATA = Path(__file__).resolve().parents[1] / "tests" / "fixtures"
STREAM_CHUNKS = 20

NGINX_CONF = """
daemon off;
master_process on;
worker_processes 2;
pid {root}/nginx.pid;
error_log {root}/nginx-error.log warn;
events {{ worker_connections 8192; multi_accept on; }}
http {{
  access_log off;
  server_tokens off;
  sendfile on;
  tcp_nodelay on;
  etag off;
  gzip off;
  keepalive_timeout 120s;
  keepalive_requests 10000000;
  open_file_cache max=64 inactive=300s;
  open_file_cache_valid 300s;
  client_body_buffer_size 64k;
  client_body_temp_path {root}/tmp/body;
  proxy_temp_path {root}/tmp/proxy;
  fastcgi_temp_path {root}/tmp/fastcgi;
  uwsgi_temp_path {root}/tmp/uwsgi;
  scgi_temp_path {root}/tmp/scgi;
  types {{ application/json json; text/event-stream sse; }}
  default_type application/octet-stream;
  # /flaky/: an upstream that answers 503 to 5% of requests, at random (the failover scenario).
  split_clients "${{request_id}}" $flaky {{ 5% 1; * 0; }}
  server {{
    listen 127.0.0.1:{port} backlog=4096 reuseport;
    root {root}/www;
    error_page 405 =200 $uri;
    location ~ ^/stream/.*/chat/completions$ {{ try_files /openai_stream.sse =404; }}
    location ~ ^/stream/.*messages$          {{ try_files /anthropic_stream.sse =404; }}
    location ~ ^/large/.*/embeddings$        {{ try_files /openai_embeddings_1536.json =404; }}
    location ~ ^/flaky/.*/chat/completions$ {{
      if ($flaky) {{ return 503 '{{"error":{{"message":"The engine is overloaded.","type":"server_error"}}}}'; }}
      try_files /openai_chat.json =404;
    }}
    location ~ /chat/completions$ {{ try_files /openai_chat.json =404; }}
    location ~ /embeddings$       {{ try_files /openai_embeddings.json =404; }}
    location ~ /messages$         {{ try_files /anthropic_chat.json =404; }}
    location ~ /responses$        {{ try_files /openai_responses.json =404; }}
    location = /healthz {{ default_type text/plain; return 200 "ok"; }}
  }}
}}
"""


def openai_stream(chunks: int = STREAM_CHUNKS) -> bytes:
    """~`chunks` OpenAI chunks built on the fixture stream's first chunk, then usage and [DONE]."""
    text = (DATA / "openai" / "chat_stream_length_with_usage.sse").read_text()
    events = [json.loads(line[6:]) for line in text.splitlines() if line.startswith("data: {")]
    first = events[0]
    usage = next(e for e in events if e.get("usage"))
    out = []
    for i in range(chunks):
        ev = json.loads(json.dumps(first))
        choice = ev["choices"][0]
        if i == 0:
            pass  # the role chunk as OpenAI sends it
        elif i == chunks - 1:
            choice["delta"], choice["finish_reason"] = {}, "stop"
        else:
            choice["delta"] = {"content": f" word{i}"}
        out.append(ev)
    usage = {**usage, "usage": {**usage["usage"], "completion_tokens": chunks - 2,
                                "total_tokens": usage["usage"]["prompt_tokens"] + chunks - 2}}
    out.append(usage)
    body = "".join(f"data: {json.dumps(e, separators=(',', ':'))}\n\n" for e in out) + "data: [DONE]\n\n"
    return body.encode()


def large_embeddings(dims: int = 1536) -> bytes:
    """The embeddings fixture with a real-sized vector (text-embedding-3-small: 1536)."""
    import random
    body = json.loads((DATA / "openai" / "embeddings_response.json").read_text())
    rng = random.Random(1536)
    body["data"][0]["embedding"] = [round(rng.uniform(-0.08, 0.08), 9) for _ in range(dims)]
    return json.dumps(body).encode()


def write_site(root: Path) -> Path:
    www = root / "www"
    www.mkdir(parents=True, exist_ok=True)
    for sub in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (root / "tmp" / sub).mkdir(parents=True, exist_ok=True)
    shutil.copyfile(DATA / "openai" / "chat_response.json", www / "openai_chat.json")
    shutil.copyfile(DATA / "openai" / "embeddings_response.json", www / "openai_embeddings.json")
    shutil.copyfile(DATA / "anthropic" / "chat_response.json", www / "anthropic_chat.json")
    shutil.copyfile(DATA / "openai" / "responses_response.json", www / "openai_responses.json")
    shutil.copyfile(DATA / "anthropic" / "chat_stream.sse", www / "anthropic_stream.sse")
    (www / "openai_stream.sse").write_bytes(openai_stream())
    (www / "openai_embeddings_1536.json").write_bytes(large_embeddings())
    # nginx's workers drop root to `nobody` and must read these.
    for path in [root, *root.rglob("*")]:
        os.chmod(path, 0o755 if path.is_dir() else 0o644)
    return www


def nginx_binary() -> str:
    found = shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx", "/sbin/nginx") if os.path.exists(p)), None)
    if found is None:
        raise RuntimeError("nginx is not installed")
    return found


def post(url: str, body: bytes, headers: dict[str, str] | None = None, timeout: float = 10.0
         ) -> tuple[int, str, bytes]:
    req = urllib.request.Request(url, data=body, method="POST",
                                 headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.headers.get("Content-Type", ""), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("Content-Type", ""), exc.read()


class Upstream:
    """nginx and the dribble server, started under `procs` (stopped by procs.stop_all)."""

    def __init__(self, procs: Procs, root: Path) -> None:
        self.procs, self.root = procs, root
        self.port = 0
        self.dribble_port = 0
        self.nginx: subprocess.Popen[bytes] | None = None
        self.dribble: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        write_site(self.root)
        self.port = free_port()
        conf = self.root / "nginx.conf"
        conf.write_text(NGINX_CONF.format(root=self.root, port=self.port))
        nginx = nginx_binary()
        check = subprocess.run([nginx, "-t", "-q", "-p", str(self.root), "-c", str(conf)],
                               capture_output=True, text=True, check=False)
        if check.returncode != 0:
            raise RuntimeError(f"nginx rejected its configuration: {check.stderr.strip()}")
        self.nginx = self.procs.start("nginx", [nginx, "-p", str(self.root), "-c", str(conf)],
                                      log=self.root / "nginx-stdout.log")
        wait_port(self.port, 10, self.nginx)
        self.dribble_port = free_port()
        self.dribble = self.procs.start("dribble", [_python(), "-m", "bench.dribble", "--port", str(self.dribble_port),
                                                    "--chunks", str(STREAM_CHUNKS), "--interval", "0.1"],
                                        log=self.root / "dribble.log", cwd=_repo())
        wait_port(self.dribble_port, 10, self.dribble)
        self.check()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def check(self) -> None:
        """POSTs get the fixture bodies with 200 and the right content type."""
        cases = [("/v1/chat/completions", "application/json", b'"chat.completion"'),
                 ("/v1/embeddings", "application/json", b'"embedding"'),
                 ("/v1/messages", "application/json", b'"type": "message"'),
                 ("/v1/responses", "application/json", b'"object": "response"'),
                 ("/stream/v1/chat/completions", "text/event-stream", b"data: [DONE]"),
                 ("/large/v1/embeddings", "application/json", b'"embedding"')]
        for path, ctype, needle in cases:
            for _ in range(2):  # twice: keep-alive and the redirect both hold
                status, got_type, body = post(self.url(path), b'{"model":"x"}')
                if status != 200 or not got_type.startswith(ctype) or needle not in body:
                    raise RuntimeError(f"fake upstream {path}: status {status}, type {got_type!r}, "
                                       f"body {body[:120]!r}")
        status, got_type, body = post(f"http://127.0.0.1:{self.dribble_port}/v1/chat/completions", b"{}")
        if status != 200 or b"data: [DONE]" not in body or body.count(b"data: ") != STREAM_CHUNKS + 2:
            raise RuntimeError(f"dribble server: status {status}, {body.count(b'data: ')} events")


def _python() -> str:
    import sys
    return sys.executable


def _repo() -> Path:
    return Path(__file__).resolve().parents[1]
