"""Seeing what the gateway does (issue 16), on real `modelport serve` processes with two
workers: /metrics counts scripted requests once, summed over both workers (each request
on a fresh connection, so both serve some); its auth modes and its own listener; the JSON
log (every line parses, requests and warnings carry their fields, no secret or content);
and x-request-id (the client's round-trips to the fake upstream and comes back on errors,
an insane one is replaced)."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import openai
import orjson
import pytest
from openai.types.chat import ChatCompletionMessageParam
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.harness import ACME_KEY, BETA_KEY, GatewayProcess, seed
from tests.fakes.fixtures import FakeOpenAI
from emulators.server import free_port

HI: list[ChatCompletionMessageParam] = [{"role": "user", "content": "observing-content-never-logged"}]
BAD_KEY = "sk-test-observing-rejected-key-0000000009"
CHAT = {"endpoint": "chat.completions", "provider": "openai", "model": "gpt-4o-mini"}
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@pytest.fixture(scope="module")
def obs(tmp_path_factory: pytest.TempPathFactory, fake_openai_server: FakeOpenAI) -> Iterator[GatewayProcess]:
    gw = GatewayProcess(tmp_path_factory.mktemp("observing"), workers=2,
                        settings={"log_format": "json", "routing": {"retries": 1, "backoff_base": 0.01}})
    gw.port = free_port()
    gw.write_config()
    seed(gw, fake_openai_server)
    gw.cli("tenants", "create", "limited")
    gw.cli("providers", "set", "limited", "openai", f"api_key={ACME_KEY}", f"base_url={fake_openai_server.v1_url}")
    gw.cli("defaults", "set", "limited", "llm", "openai/gpt-4o-mini")
    gw.cli("limits", "set", "limited", "--rpm", "1")
    gw.tokens["limited"] = gw.new_token("limited")
    gw.cli("tenants", "create", "rejected")  # its key is refused upstream: a warning in the log
    gw.cli("providers", "set", "rejected", "openai", f"api_key={BAD_KEY}", f"base_url={fake_openai_server.v1_url}")
    gw.cli("defaults", "set", "rejected", "llm", "openai/gpt-4o-mini")
    gw.tokens["rejected"] = gw.new_token("rejected")
    with gw.running():
        yield gw
    fake_openai_server.state.api_keys.update({ACME_KEY, BETA_KEY})


@pytest.fixture(autouse=True)
def fake_keys(fake_openai: FakeOpenAI) -> FakeOpenAI:
    """The fake reset for each test, with the seeded tenants' keys accepted again."""
    fake_openai.state.api_keys.update({ACME_KEY, BETA_KEY})
    return fake_openai


def scrape(url: str, token: str | None = None) -> Samples:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    response = httpx.get(url, headers=headers, timeout=10)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(response.text) for s in family.samples}


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def wait_for(read: Callable[[], Samples], check: Callable[[Samples], bool], timeout: float = 6.0) -> Samples:
    """Workers flush about once a second: poll until the scrape shows it."""
    deadline = time.monotonic() + timeout
    while True:
        samples = read()
        if check(samples) or time.monotonic() > deadline:
            return samples
        time.sleep(0.2)


def metrics_of(gw: GatewayProcess) -> Callable[[], Samples]:
    return lambda: scrape(gw.base_url + "/metrics", gw.admin_token())


def chat(gw: GatewayProcess, tenant: str = "acme", **kwargs: Any) -> Any:
    """One chat on a connection of its own (a new client), so the kernel picks the worker."""
    with gw.client(gw.tokens[tenant]) as client:
        return client.chat.completions.with_raw_response.create(model="default", messages=HI, **kwargs)


def test_requests_are_counted_once_and_summed_over_both_workers(obs: GatewayProcess, fake_openai: FakeOpenAI) -> None:
    read = metrics_of(obs)
    ok = {**CHAT, "status": "2xx", "billing": "own"}
    before = read()
    workers, prompt, completion = set(), 0, 0
    for _ in range(12):
        raw = chat(obs)
        workers.add(raw.headers["x-request-id"][:16])  # generated ids start with the worker's prefix
        usage = raw.parse().usage
        prompt, completion = prompt + usage.prompt_tokens, completion + usage.completion_tokens
    assert len(workers) == 2, "both workers should have served some of the requests"
    after = wait_for(read, lambda s: value(s, "modelport_requests_total", **ok)
                     >= value(before, "modelport_requests_total", **ok) + 12)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("modelport_requests_total", **ok) == 12
    assert delta("modelport_request_duration_seconds_count", **CHAT) == 12
    assert delta("modelport_gateway_overhead_seconds_count", **CHAT) == 12
    assert delta("modelport_upstream_duration_seconds_count", provider="openai") == 12
    tokens = {"provider": "openai", "model": "gpt-4o-mini", "billing": "own"}
    assert delta("modelport_prompt_tokens_total", **tokens) == prompt > 0
    assert delta("modelport_completion_tokens_total", **tokens) == completion > 0
    # Sub-millisecond buckets exist for the overhead, multi-second ones for whole requests.
    assert ("modelport_gateway_overhead_seconds_bucket", frozenset({**CHAT, "le": "0.0005"}.items())) in after
    assert ("modelport_request_duration_seconds_bucket", frozenset({**CHAT, "le": "60.0"}.items())) in after


def test_a_stream_is_open_while_it_runs_and_has_a_time_to_first_token(
        obs: GatewayProcess, fake_openai: FakeOpenAI) -> None:
    read = metrics_of(obs)
    before = read()
    fake_openai.state.stream_delay = 0.4
    with obs.client() as client:
        stream = client.chat.completions.create(model="default", messages=HI, stream=True)
        next(iter(stream))
        during = wait_for(read, lambda s: value(s, "modelport_open_streams", provider="openai") == 1)
        assert value(during, "modelport_open_streams", provider="openai") == 1
        for _ in stream:
            pass
    after = wait_for(read, lambda s: value(s, "modelport_open_streams", provider="openai") == 0
                     and value(s, "modelport_time_to_first_token_seconds_count", **CHAT)
                     > value(before, "modelport_time_to_first_token_seconds_count", **CHAT))
    assert value(after, "modelport_open_streams", provider="openai") == 0
    assert (value(after, "modelport_time_to_first_token_seconds_count", **CHAT)
            - value(before, "modelport_time_to_first_token_seconds_count", **CHAT)) == 1


def test_retries_refusals_and_rejected_credentials_are_counted(obs: GatewayProcess, fake_openai: FakeOpenAI) -> None:
    read = metrics_of(obs)
    before = read()
    # A 429 (no Retry-After): the key cools down, and the retry goes to it anyway (the only one).
    fake_openai.state.fail_next.append((429, {"error": {"message": "Rate limit reached", "type": "requests",
                                                        "code": "rate_limit_exceeded"}}))
    assert chat(obs).headers["x-modelport-attempts"] == "2"
    statuses = []
    while 429 not in statuses and len(statuses) < 3:  # 1 request per minute: then the gateway's own 429
        try:
            chat(obs, "limited")
            statuses.append(200)
        except openai.RateLimitError:
            statuses.append(429)
    assert statuses.count(429) == 1  # (a third request only if a minute turned between the first two)
    with pytest.raises(openai.APIStatusError):
        chat(obs, "rejected")

    def counted(s: Samples) -> bool:
        return all(value(s, name, **labels) > value(before, name, **labels) for name, labels in (
            ("modelport_retries_total", {"provider": "openai"}),
            ("modelport_cooldowns_total", {"provider": "openai", "reason": "rate_limited"}),
            ("modelport_rate_limited_total", {"endpoint": "chat.completions"}),
            ("modelport_credentials_invalidated_total", {"provider": "openai"})))

    after = wait_for(read, counted)
    assert value(after, "modelport_retries_total", provider="openai") - \
        value(before, "modelport_retries_total", provider="openai") == 1
    assert value(after, "modelport_cooldowns_total", provider="openai", reason="rate_limited") - \
        value(before, "modelport_cooldowns_total", provider="openai", reason="rate_limited") == 1
    assert value(after, "modelport_rate_limited_total", endpoint="chat.completions") - \
        value(before, "modelport_rate_limited_total", endpoint="chat.completions") == 1
    assert value(after, "modelport_credentials_invalidated_total", provider="openai") - \
        value(before, "modelport_credentials_invalidated_total", provider="openai") == 1


def test_metrics_take_the_admin_token(obs: GatewayProcess) -> None:
    url = obs.base_url + "/metrics"
    assert httpx.get(url, timeout=10).status_code == 401
    assert httpx.get(url, headers={"Authorization": f"Bearer {obs.tokens['acme']}"}, timeout=10).status_code == 401
    refused = httpx.get(url, headers={"Authorization": "Bearer wrong", "x-request-id": "scrape-1"}, timeout=10)
    assert refused.status_code == 401 and refused.headers["x-request-id"] == "scrape-1"
    assert "modelport_requests_total" in httpx.get(
        url, headers={"Authorization": f"Bearer {obs.admin_token()}"}, timeout=10).text


def test_a_client_request_id_reaches_the_upstream_and_comes_back(obs: GatewayProcess, fake_openai: FakeOpenAI) -> None:
    rid = "client-trace.42:a_B"
    raw = chat(obs, extra_headers={"x-request-id": rid})
    assert raw.headers["x-request-id"] == rid
    [upstream] = fake_openai.state.requests_to("/v1/chat/completions")
    assert upstream.headers["x-client-request-id"] == rid
    stored = wait_for_usage(obs, rid)
    assert stored == [rid]


def wait_for_usage(gw: GatewayProcess, rid: str) -> list[str]:
    deadline = time.monotonic() + 5
    while True:
        rows = [r[0] for r in gw.sql("SELECT request_id FROM usage WHERE request_id = ?", (rid,))]
        if rows or time.monotonic() > deadline:
            return rows
        time.sleep(0.1)


def test_errors_carry_the_request_id(obs: GatewayProcess) -> None:
    with httpx.Client(base_url=obs.base_url, timeout=10) as client:
        def post(path: str, rid: str, token: str, headers: dict[str, str] | None = None,
                 **kwargs: Any) -> httpx.Response:
            return client.post(path, headers={"Authorization": f"Bearer {token}", "x-request-id": rid,
                                              **(headers or {})}, **kwargs)

        cases = {
            401: post("/v1/chat/completions", "err-401", "mp-not-a-token", json={"model": "default", "messages": HI}),
            400: post("/v1/chat/completions", "err-400", obs.tokens["acme"], json={"model": "default"}),
            413: post("/v1/chat/completions", "err-413", obs.tokens["acme"], content=b"x" * 1_100_000,
                      headers={"content-type": "application/json"}),
            404: post("/v1/nowhere", "err-404", obs.tokens["acme"], json={}),
        }
        listing = client.get("/v1/models", headers={"Authorization": "Bearer mp-nope", "x-request-id": "err-models"})
    for status, response in cases.items():
        assert response.status_code == status, response.text
        assert response.headers["x-request-id"] == f"err-{status}"
    assert listing.status_code == 401 and listing.headers["x-request-id"] == "err-models"


def head_request_id(port: int, value: bytes) -> bytes | None:
    """The x-request-id a raw request with this header value gets back (None: no header)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Request-Id: " + value + b"\r\n\r\n")
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head = answer.split(b"\r\n\r\n", 1)[0]
    found = [line.split(b":", 1)[1].strip() for line in head.split(b"\r\n")[1:]
             if line.lower().startswith(b"x-request-id:")]
    assert len(found) <= 1
    return found[0] if found else None


def test_an_insane_client_request_id_is_replaced(obs: GatewayProcess) -> None:
    for bad in (b"x" * 129, b"two words", b"semi;colon", "caf\u00e9".encode(), b"tab\there"):
        got = head_request_id(obs.port, bad)
        assert got is not None and got != bad and got.startswith(b"req_"), (bad, got)
    # A newline cannot pass inside a header; one hidden in an obsolete folded line must not
    # come back either.
    folded = head_request_id(obs.port, b"first\r\n second")
    assert folded is None or (b"\n" not in folded and folded.startswith(b"req_"))
    assert head_request_id(obs.port, b"ok-id") == b"ok-id"


def test_every_log_line_is_json_with_its_fields_and_no_secret(obs: GatewayProcess, fake_openai: FakeOpenAI) -> None:
    rid = "log-check-1"
    chat(obs, extra_headers={"x-request-id": rid})
    deadline = time.monotonic() + 5
    while f'"request_id":"{rid}"' not in obs.log() and time.monotonic() < deadline:
        time.sleep(0.1)
    text = obs.log()
    lines = [orjson.loads(line) for line in text.splitlines() if line.strip()]  # every line parses
    for line in lines:
        assert {"time", "level", "logger", "message"} <= line.keys(), line
    [mine] = [line for line in lines if line.get("request_id") == rid]
    assert mine["logger"] == "modelport.requests" and mine["status"] == 200 and mine["provider"] == "openai"
    assert {"tenant_id", "token_id", "endpoint", "model", "credential", "attempts", "latency_ms", "overhead_ms",
            "ttft_ms", "prompt_tokens", "completion_tokens", "cost"} <= mine.keys()
    assert mine["cost"] is None  # no price configured for the model: unpriced, never a silent 0
    assert mine["credential"] == "default" and mine["attempts"] == 1 and mine["tenant_id"]
    assert any(line["logger"].startswith("uvicorn") for line in lines), "uvicorn's own records are JSON too"
    if not any(line["level"] == "warning" for line in lines):  # the rejected key's warning, if not there yet
        with pytest.raises(openai.APIStatusError):
            chat(obs, "rejected")
        time.sleep(0.5)
        lines = [orjson.loads(line) for line in obs.log().splitlines() if line.strip()]
    warnings = [line for line in lines if line["level"] == "warning"]
    assert warnings and all(w["message"] and w["time"].endswith("Z") for w in warnings)
    text = obs.log()
    for secret in (ACME_KEY, BAD_KEY, obs.admin_token(), *obs.tokens.values(), "observing-content-never-logged"):
        assert secret not in text


HOSTED_KEY = "sk-hosted-observing-platform-key-000000001"


@pytest.fixture(scope="module")
def own_port(tmp_path_factory: pytest.TempPathFactory,
             fake_openai_server: FakeOpenAI) -> Iterator[tuple[GatewayProcess, int]]:
    """Metrics on a listener of their own, open; a hosted trial of 3 calls per tenant."""
    port = free_port()
    gw = GatewayProcess(tmp_path_factory.mktemp("metrics-port"), workers=2, settings={
        "metrics": {"listen": f"127.0.0.1:{port}", "auth": "none"},
        "hosted": {"openai": {"credentials": {"api_key": HOSTED_KEY, "base_url": fake_openai_server.v1_url},
                              "quota": 3, "models": ["gpt-3.5-turbo"]}}})
    gw.port = free_port()
    gw.write_config()
    for tenant in ("trial-a", "trial-b"):
        gw.cli("tenants", "create", tenant)
    gw.tokens["trial-a"] = gw.new_token("trial-a")
    with gw.running():
        yield gw, port


def test_metrics_on_their_own_port_open_when_configured(own_port: tuple[GatewayProcess, int]) -> None:
    gw, port = own_port
    assert httpx.get(gw.base_url + "/metrics", timeout=10).status_code == 404  # not on the main port
    for _ in range(4):  # 401s, counted by whichever worker took each
        assert httpx.post(gw.v1_url + "/embeddings", json={}, timeout=10).status_code == 401
    unauthenticated = {"endpoint": "embeddings", "provider": "", "model": "", "status": "4xx", "billing": ""}
    samples = wait_for(lambda: scrape(f"http://127.0.0.1:{port}/metrics"),
                       lambda s: value(s, "modelport_requests_total", **unauthenticated) == 4)
    assert value(samples, "modelport_requests_total", **unauthenticated) == 4
    assert httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=10).status_code == 404  # /metrics only there


def test_the_metrics_directory_is_private_and_removed_at_exit(tmp_path_factory: pytest.TempPathFactory) -> None:
    import glob
    import os
    import tempfile

    gw = GatewayProcess(tmp_path_factory.mktemp("metrics-dir"), workers=2)
    with gw.running():
        assert gw.proc is not None
        # Named after its supervisor (gateways of other tests may run meanwhile).
        [directory] = glob.glob(os.path.join(tempfile.gettempdir(), f"modelport-metrics-{gw.proc.pid}-*"))
        assert httpx.post(gw.v1_url + "/embeddings", json={}, timeout=10).status_code == 401
        assert os.stat(directory).st_mode & 0o777 == 0o700
        deadline = time.monotonic() + 5  # a worker writes its files at its first flush
        while not any(name.startswith("counter_") for name in os.listdir(directory)):
            assert time.monotonic() < deadline, os.listdir(directory)
            time.sleep(0.1)
    assert not os.path.exists(directory)


def test_hosted_calls_left_are_summed_over_tenants(own_port: tuple[GatewayProcess, int],
                                                   fake_openai: FakeOpenAI) -> None:
    gw, port = own_port
    fake_openai.state.api_keys.add(HOSTED_KEY)
    read = lambda: scrape(f"http://127.0.0.1:{port}/metrics")  # noqa: E731
    assert value(read(), "modelport_hosted_quota_remaining", provider="openai") == 6  # 2 tenants x 3
    with gw.client(gw.tokens["trial-a"]) as client:
        client.chat.completions.create(model="openai/gpt-3.5-turbo", messages=HI)
    assert value(read(), "modelport_hosted_quota_remaining", provider="openai") == 5
    hosted = {**CHAT, "model": "gpt-3.5-turbo", "status": "2xx", "billing": "hosted"}
    assert value(wait_for(read, lambda s: value(s, "modelport_requests_total", **hosted) == 1),
                 "modelport_requests_total", **hosted) == 1


def test_one_worker_counts_in_its_own_registry_and_leaves_no_directory(
        tmp_path_factory: pytest.TempPathFactory) -> None:
    import glob
    import os
    import tempfile

    gw = GatewayProcess(tmp_path_factory.mktemp("metrics-one"), workers=1)
    with gw.running():
        assert gw.proc is not None
        # Its own would be named after its supervisor (gateways of other tests may run meanwhile).
        pattern = os.path.join(tempfile.gettempdir(), f"modelport-metrics-{gw.proc.pid}-*")
        assert httpx.post(gw.v1_url + "/embeddings", json={}, timeout=10).status_code == 401
        samples = metrics_of(gw)()
        assert value(samples, "modelport_requests_total", endpoint="embeddings", provider="", model="",
                     status="4xx", billing="") == 1
        assert glob.glob(pattern) == []
    assert glob.glob(pattern) == []
