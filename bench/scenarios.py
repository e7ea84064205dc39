"""The benchmark's scenarios (what is measured, direct and through the gateway), the
tools it needs, and the facts of the machine it ran on."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from typing import Any

from bench import fake
from bench.gateway import FAKE_KEY

SOAK_MODEL = "gpt-4o-mini"
MESSAGES = [{"role": "system", "content": "You are a terse assistant."},
            {"role": "user", "content": "Say hello to the benchmark in one short sentence."}]


@dataclass
class Scenario:
    name: str
    meaning: str
    tenant: str
    gateway_path: str
    gateway_body: dict[str, Any]
    direct_path: str
    direct_body: dict[str, Any]
    conns: tuple[int, ...]
    expect: str                       # bytes every good gateway response contains
    stream: bool = False
    direct_expect: str = ""           # the same for the direct response, when it differs
    direct_headers: dict[str, str] = field(default_factory=lambda: {"Authorization": f"Bearer {FAKE_KEY}"})


def scenarios(anthropic_model: str) -> dict[str, Scenario]:
    chat = {"model": "gpt-4o-mini", "messages": MESSAGES, "max_tokens": 64, "temperature": 0.2}
    stream = {**chat, "stream": True}
    responses = {"model": "gpt-4o-mini", "instructions": MESSAGES[0]["content"], "input": MESSAGES[1]["content"],
                 "max_output_tokens": 64, "temperature": 0.2}
    return {s.name: s for s in [
        Scenario("chat", "non-stream chat completion through the OpenAI (pass-through) provider",
                 "bench", "/v1/chat/completions", chat, "/v1/chat/completions", chat, (1, 64), '"chat.completion"'),
        Scenario("anthropic", "non-stream chat through the translated Anthropic provider (OpenAI in, "
                 "Anthropic /v1/messages upstream, OpenAI out)",
                 "bench", "/v1/chat/completions", {**chat, "model": f"anthropic/{anthropic_model}"},
                 "/v1/messages", {"model": anthropic_model, "max_tokens": 64, "system": MESSAGES[0]["content"],
                                  "messages": [MESSAGES[1]], "temperature": 0.2},
                 (1, 64), '"chat.completion"', direct_expect='"type": "message"',
                 direct_headers={"x-api-key": FAKE_KEY, "anthropic-version": "2023-06-01"}),
        Scenario("messages", "Anthropic's Messages API in (POST /v1/messages), served by the OpenAI provider "
                 "through the chat path (Messages -> chat -> OpenAI upstream -> chat -> Messages): beside `chat`, "
                 "what the inbound codec adds",
                 "bench", "/v1/messages", {"model": "gpt-4o-mini", "max_tokens": 64, "temperature": 0.2,
                                           "system": MESSAGES[0]["content"], "messages": [MESSAGES[1]]},
                 "/v1/chat/completions", chat, (1, 64), '"stop_reason"', direct_expect='"chat.completion"'),
        Scenario("responses", "OpenAI's Responses API (POST /v1/responses, store: false) on the OpenAI provider: "
                 "its own /v1/responses upstream, the answer relayed: beside `chat`, what the Responses path adds",
                 "bench", "/v1/responses", {**responses, "store": False}, "/v1/responses", responses, (1, 64),
                 '"output_text"'),
        Scenario("responses-stored", "the same with store: true (the API's default): each answer is also kept "
                 "for previous_response_id, one database write per request before the answer goes out",
                 "bench", "/v1/responses", responses, "/v1/responses", responses, (1, 64), '"output_text"'),
        Scenario("embeddings", "embeddings through the OpenAI provider",
                 "bench", "/v1/embeddings", {"model": "text-embedding-3-small",
                                             "input": "The food was delicious and the waiter was kind."},
                 "/v1/embeddings", {"model": "text-embedding-3-small",
                                    "input": "The food was delicious and the waiter was kind."},
                 (1, 64), '"embedding"'),
        Scenario("embeddings-1536", "embeddings with a real-sized (1536-float, 32 KB) response: what "
                 "re-encoding a large upstream body costs (not in the default set)",
                 "bench-large", "/v1/embeddings", {"model": "text-embedding-3-small",
                                                   "input": "The food was delicious and the waiter was kind."},
                 "/large/v1/embeddings", {"model": "text-embedding-3-small",
                                          "input": "The food was delicious and the waiter was kind."},
                 (1, 64), '"embedding"'),
        Scenario("stream", f"streamed chat, {fake.STREAM_CHUNKS} chunks + usage + [DONE] from a static upstream; "
                 "TTFB at 1 connection, streams/s at 50 and 64",
                 "bench-stream", "/v1/chat/completions", stream, "/stream/v1/chat/completions", stream,
                 (1, 50, 64), "data: [DONE]", stream=True),
        Scenario("failover", "non-stream chat on a provider with 2 credentials whose upstream answers 503 to 5% "
                 "of requests at random: the gateway retries (on the other credential), the direct run sees them",
                 "bench-flaky", "/v1/chat/completions", chat, "/flaky/v1/chat/completions", chat, (1, 64),
                 '"chat.completion"'),
        Scenario("soak", "N concurrent slow streams (a chunk every 100 ms, ~2 s each): errors and peak RSS",
                 "bench-soak", "/v1/chat/completions", {**stream, "model": SOAK_MODEL}, "/v1/chat/completions",
                 {**stream, "model": SOAK_MODEL}, (1000,), "data: [DONE]", stream=True),
    ]}


def ensure_tools() -> None:
    missing = [pkg for pkg, exe in (("nginx", "nginx"), ("wrk", "wrk"))
               if not (shutil.which(exe) or os.path.exists(f"/usr/sbin/{exe}"))]
    if not missing:
        return
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        sys.exit(f"bench: {' and '.join(missing)} missing; install them (Debian: apt-get install -y {' '.join(missing)})")
    print(f"bench: installing {', '.join(missing)} with apt-get (Debian packages)", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(["apt-get", "install", "-y", "-qq", *missing], check=True, env=env, stdout=subprocess.DEVNULL)


def machine() -> dict[str, Any]:
    def version(argv: list[str]) -> str:
        try:
            out = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
            return (out.stdout + out.stderr).strip().splitlines()[0]
        except (OSError, subprocess.SubprocessError, IndexError):
            return "?"
    return {"cpus": os.cpu_count(), "python": platform.python_version(), "kernel": platform.release(),
            "nginx": version([fake.nginx_binary(), "-v"]), "wrk": version(["wrk", "-v"])}
