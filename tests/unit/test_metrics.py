"""proxy/metrics.py without a server: the tallies a flush pushes read back exactly as
prometheus_client's own `observe`/`inc` would have left them, label sets stay bounded,
open streams go up and down, and in multiprocess mode two processes' values are summed
(and a dead one's open streams dropped)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, Histogram

from proxy import metrics
from proxy.usage import RequestRecord
from translators.types import Usage

REPO = Path(__file__).resolve().parents[2]
ROUTED = {"endpoint": "chat.completions", "provider": "openai", "model": "gpt-4o-mini"}


def record(status: int = 200, *, provider: str = "openai", model: str = "gpt-4o-mini", tenant: str = "t1",
           upstream_ms: float = 0.0, ttft_ms: float | None = None, stream: bool = False,
           usage: Usage | None = None, attempts: int = 1, error_code: str | None = None) -> RequestRecord:
    r = RequestRecord("req_test", "chat.completions", "llm", tenant_id=tenant, provider=provider, model=model,
                      billing="own" if provider else "", stream=stream, status=status, usage=usage,
                      attempts=attempts, upstream_ms=upstream_ms, ttft_ms=ttft_ms)
    r.error_code = error_code
    return r


def recorder(per_tenant: bool = False, max_series: int = metrics.MAX_SERIES) -> metrics.Recorder:
    return metrics.Recorder(metrics.Exporter(per_tenant, None), max_series)


def value(rec: metrics.Recorder, name: str, labels: dict[str, str]) -> float | None:
    assert rec.exporter.registry is not None
    return rec.exporter.registry.get_sample_value(name, labels)


def test_flushed_histograms_equal_prometheus_clients_own_observations() -> None:
    rec = recorder()
    latencies = [0.3, 4.9, 5.0, 5.1, 42.0, 700.0, 9000.0, 400_000.0]  # ms, on and around bucket bounds
    for ms in latencies:
        rec.observe(record(upstream_ms=ms / 2), ms)
    assert value(rec, "modelport_request_duration_seconds_count", ROUTED) is None  # nothing before a flush
    rec.flush()

    reference = CollectorRegistry()
    direct = Histogram("ref", "", buckets=metrics.LATENCY_BUCKETS, registry=reference)
    for ms in latencies:
        direct.observe(ms / 1000)
    for bound in [*metrics.LATENCY_BUCKETS, float("inf")]:
        le = "+Inf" if bound == float("inf") else repr(float(bound))
        ours = value(rec, "modelport_request_duration_seconds_bucket", {**ROUTED, "le": le})
        assert ours == reference.get_sample_value("ref_bucket", {"le": le}), le
    total = value(rec, "modelport_request_duration_seconds_sum", ROUTED)
    assert total is not None and abs(total - sum(latencies) / 1000) < 1e-9
    assert value(rec, "modelport_upstream_duration_seconds_count", {"provider": "openai"}) == len(latencies)


def test_requests_tokens_and_status_classes_accumulate_across_flushes() -> None:
    rec = recorder()
    rec.observe(record(usage=Usage(10, 5, 15)), 12.0)
    rec.flush()
    rec.observe(record(usage=Usage(1, 2, 3)), 12.0)
    rec.observe(record(502, usage=None), 3.0)
    rec.observe(record(401, provider="", model="a model the client typed", tenant="", attempts=0), 1.0)
    rec.flush()
    labels = {**ROUTED, "billing": "own"}
    assert value(rec, "modelport_requests_total", {**labels, "status": "2xx"}) == 2
    assert value(rec, "modelport_requests_total", {**labels, "status": "5xx"}) == 1
    # Not routed: no provider, and never the client's model text as a label.
    assert value(rec, "modelport_requests_total", {"endpoint": "chat.completions", "provider": "", "model": "",
                                                   "status": "4xx", "billing": ""}) == 1
    tokens = {"provider": "openai", "model": "gpt-4o-mini", "billing": "own"}
    assert value(rec, "modelport_prompt_tokens_total", tokens) == 11
    assert value(rec, "modelport_completion_tokens_total", tokens) == 7


def test_overhead_is_the_records_own_when_served_else_latency_less_upstream() -> None:
    rec = recorder()
    served = record(upstream_ms=50.0)
    served.overhead = 0.3  # set when the answer started (attempts.py)
    rec.observe(served, 900.0)  # a stream: most of the latency came after the answer started
    rec.observe(record(404, upstream_ms=0.0), 2.0)
    rec.flush()
    assert value(rec, "modelport_gateway_overhead_seconds_bucket", {**ROUTED, "le": "0.0005"}) == 1
    assert value(rec, "modelport_gateway_overhead_seconds_bucket", {**ROUTED, "le": "0.0025"}) == 2
    assert value(rec, "modelport_gateway_overhead_seconds_count", ROUTED) == 2


def test_open_streams_rise_and_fall_and_ttft_is_counted() -> None:
    rec = recorder()
    a, b = record(stream=True), record(stream=True)
    for r in (a, b):
        r.ttft_ms = 120.0
        rec.stream_opened(r)
    rec.flush()
    assert value(rec, "modelport_open_streams", {"provider": "openai"}) == 2
    rec.observe(a, 2000.0)
    rec.flush()
    assert value(rec, "modelport_open_streams", {"provider": "openai"}) == 1
    assert value(rec, "modelport_time_to_first_token_seconds_count", ROUTED) == 1
    rec.close()  # the worker stops: nothing it served is open any more
    assert value(rec, "modelport_open_streams", {"provider": "openai"}) == 0


def test_rate_limit_refusals_are_the_gateways_own_429s_only() -> None:
    rec = recorder()
    rec.observe(record(429, provider="openai", attempts=0, error_code="rate_limit_exceeded"), 1.0)
    rec.observe(record(429, attempts=1, error_code="rate_limit_exceeded"), 1.0)  # the vendor's 429
    rec.flush()
    assert value(rec, "modelport_rate_limited_total", {"endpoint": "chat.completions"}) == 1


def test_tenant_label_only_when_per_tenant() -> None:
    shared, per_tenant = recorder(), recorder(per_tenant=True)
    for rec in (shared, per_tenant):
        rec.observe(record(tenant="t1"), 5.0)
        rec.observe(record(tenant="t2"), 5.0)
        rec.event("retries", ("openai",), "t1")
        rec.flush()
    labels = {**ROUTED, "status": "2xx", "billing": "own"}
    assert value(shared, "modelport_requests_total", labels) == 2
    assert value(per_tenant, "modelport_requests_total", labels) is None
    assert value(per_tenant, "modelport_requests_total", {**labels, "tenant": "t1"}) == 1
    assert value(per_tenant, "modelport_retries_total", {"provider": "openai", "tenant": "t1"}) == 1
    assert value(shared, "modelport_retries_total", {"provider": "openai"}) == 1


def test_label_sets_are_bounded() -> None:
    rec = recorder(per_tenant=True, max_series=3)
    for i in range(50):
        rec.observe(record(model=f"model-{i}", tenant=f"tenant-{i}"), 5.0)
    rec.flush()
    assert len(rec._series) <= 4  # three, then the one "_other" series
    other = {"endpoint": "chat.completions", "provider": "openai", "model": metrics.OTHER, "status": "2xx",
             "billing": "own", "tenant": metrics.OTHER}
    assert value(rec, "modelport_requests_total", other) == 47


def test_hooks_do_nothing_without_a_recorder_and_reach_the_installed_one() -> None:
    metrics.install(None)
    metrics.observe(record(), 1.0)  # no recorder: nothing happens, nothing raises
    metrics.usage_dropped(3)
    rec = recorder()
    metrics.install(rec)
    try:
        metrics.usage_dropped(3)
        metrics.cooldown_entered("t1", "openai", "rate_limited")
        metrics.credential_invalidated("t1", "openai")
        metrics.fell_back("t1", "openai")
        rec.flush()
    finally:
        metrics.install(None)
    assert value(rec, "modelport_usage_records_dropped_total", {}) == 3
    assert value(rec, "modelport_cooldowns_total", {"provider": "openai", "reason": "rate_limited"}) == 1
    assert value(rec, "modelport_credentials_invalidated_total", {"provider": "openai"}) == 1
    assert value(rec, "modelport_fallbacks_total", {"provider": "openai"}) == 1


_WORKER = textwrap.dedent("""
    import sys
    from proxy import metrics
    from proxy.usage import RequestRecord
    rec = metrics.Recorder(metrics.exporter_for(False, metrics.multiproc_dir()))
    for _ in range(int(sys.argv[1])):
        r = RequestRecord("r", "chat.completions", "llm", tenant_id="t", provider="openai", model="m",
                          billing="own", stream=True, ttft_ms=5.0)
        rec.stream_opened(r)
        rec.observe(r, 10.0)
    rec.stream_opened(r)  # one stream still open when this process ends
    rec.flush()
    print(__import__("os").getpid())
""")


def test_multiprocess_values_are_summed_and_a_dead_workers_streams_dropped(tmp_path: Path) -> None:
    from prometheus_client import generate_latest
    from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
    from prometheus_client.parser import text_string_to_metric_families

    env = {**os.environ, metrics.MULTIPROC_ENV: str(tmp_path), "PYTHONPATH": str(REPO)}
    pids = [int(subprocess.run([sys.executable, "-c", _WORKER, str(n)], env=env, check=True, capture_output=True,
                               text=True).stdout) for n in (3, 4)]

    def samples() -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=str(tmp_path))
        return {(s.name, tuple(sorted(s.labels.items()))): s.value
                for f in text_string_to_metric_families(generate_latest(registry).decode()) for s in f.samples}

    found = samples()
    key = (("billing", "own"), ("endpoint", "chat.completions"), ("model", "m"), ("provider", "openai"),
           ("status", "2xx"))
    assert found[("modelport_requests_total", key)] == 7  # 3 + 4, from two processes
    assert found[("modelport_open_streams", (("provider", "openai"),))] == 2
    mark_process_dead(pids[0], str(tmp_path))
    assert samples()[("modelport_open_streams", (("provider", "openai"),))] == 1
    assert samples()[("modelport_requests_total", key)] == 7  # counters of a dead worker stay


def test_metrics_settings_parse_the_listen_address() -> None:
    from proxy.settings import MetricsSettings, SettingsError, load_settings

    assert MetricsSettings().address is None and MetricsSettings().auth == "admin"
    assert MetricsSettings(listen="127.0.0.1:9464").address == ("127.0.0.1", 9464)
    assert MetricsSettings(listen="[::1]:9464").address == ("::1", 9464)
    for bad in ("9464", "host:", "host:99999", "a b:1", "host:port"):
        with pytest.raises(SettingsError, match="metrics.listen"):
            load_settings(None, metrics={"listen": bad})
    with pytest.raises(SettingsError, match="metrics.auth"):
        load_settings(None, metrics={"auth": "token"})
    with pytest.raises(SettingsError, match="log_format"):
        load_settings(None, log_format="yaml")


def test_each_serve_run_gets_a_fresh_private_directory_and_dead_runs_leftovers_go(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import tempfile

    from proxy import server

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.delenv(metrics.MULTIPROC_ENV, raising=False)
    dead = tmp_path / "modelport-metrics-999999999-old"  # no such pid: a run killed outright
    live = tmp_path / f"modelport-metrics-{os.getpid()}-old"  # a running supervisor's: kept
    unrelated = tmp_path / "modelport-metrics-notapid"
    for path in (dead, live, unrelated):
        path.mkdir()
        (path / "counter_1.db").write_bytes(b"")
    made = Path(server.metrics_directory())
    assert os.environ[metrics.MULTIPROC_ENV] == str(made)
    assert made.is_dir() and not any(made.iterdir()) and made.stat().st_mode & 0o777 == 0o700
    assert not dead.exists() and live.exists() and unrelated.exists()
