"""Prometheus metrics (issue 16): what the gateway did, summed over every worker.

The facts come from the request's one record (`proxy/usage.py` `RequestRecord`): its
`finish` calls `observe` once, `first_token` calls `stream_opened`. Rarer events come from
where they happen: retries and fallbacks (`proxy/attempts.py`), cooldowns and credentials
marked invalid (`proxy/balancer.py`), usage records dropped (`proxy/usage_writer.py`).
Each of those calls is a module function that does nothing while no `Recorder` is
installed (metrics off, a CLI process).

Cheap on the hot path: `observe` adds to plain Python numbers in a per-worker tally (one
dict lookup by a label tuple, a `bisect` per histogram), and a flush pushes the tallies
into prometheus_client's values about once a second (`FLUSH_INTERVAL`), before this
worker answers a scrape, and when the worker stops. prometheus_client's own `inc()` and
`observe()` write through to a memory-mapped file under a lock each time (3-6 µs per call,
measured here; a request touches about a dozen values): the flush writes each value
once per interval however many requests changed it. The price: another worker's last
second may be missing from a scrape, which Prometheus' scrape interval dwarfs.

Multiprocess mode: `modelport serve` gives every worker the same private directory in
PROMETHEUS_MULTIPROC_DIR (`proxy/metrics_http.py`); each worker's values live in its own
files there and a scrape, answered by any worker, sums them all. Without that variable
(another ASGI server, in-process tests) the values live in this process's own registry.

Label values are bounded: the endpoint and status class are ours, the provider comes
from the registry, the model is the routed one (never the client's text before routing
succeeds), and past `MAX_SERIES` label sets per worker the model (and tenant) labels
become "_other", so a tenant cycling through model names cannot grow the series without
end.
"""

from __future__ import annotations

import os
from bisect import bisect_left
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from proxy.usage import RequestRecord

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
FLUSH_INTERVAL = 1.0  # seconds between pushes of the tallies into prometheus_client
MAX_SERIES = 2000     # request label sets per worker before model and tenant become "_other"
OTHER = "_other"

# Buckets in seconds. Whole requests and upstream calls: from a cached embedding to a long
# stream. Overhead (the gateway's own time): tenths of a millisecond up. Time to first token.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
OVERHEAD_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)
TTFT_BUCKETS = (0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 30.0, 60.0)
# The same in milliseconds: records count in ms, so the hot path divides nothing.
_LATENCY_MS = tuple(b * 1000 for b in LATENCY_BUCKETS)
_OVERHEAD_MS = tuple(b * 1000 for b in OVERHEAD_BUCKETS)
_TTFT_MS = tuple(b * 1000 for b in TTFT_BUCKETS)

_STATUS_CLASSES = {1: "1xx", 2: "2xx", 3: "3xx", 4: "4xx", 5: "5xx"}


class _Hist:
    """Observations since the last flush: a count per bucket (the last one +Inf) and a sum."""

    __slots__ = ("counts", "total")

    def __init__(self, buckets: int) -> None:
        self.counts = [0] * (buckets + 1)
        self.total = 0.0


class _Series:
    """One label set of the request series, and what it gathered since the last flush."""

    __slots__ = ("labels", "children", "dirty", "requests", "latency", "overhead", "ttft", "upstream", "prompt",
                 "completion", "refused")

    def __init__(self, labels: tuple[str, ...]) -> None:
        self.labels = labels  # endpoint, provider, model, status class, billing, tenant
        self.children: tuple[Any, ...] | None = None  # prometheus_client children, made at the first flush
        self.dirty = False
        self.requests = self.prompt = self.completion = self.refused = 0
        self.latency = _Hist(len(LATENCY_BUCKETS))
        self.overhead = _Hist(len(OVERHEAD_BUCKETS))
        self.ttft = _Hist(len(TTFT_BUCKETS))
        self.upstream = _Hist(len(LATENCY_BUCKETS))


class Exporter:
    """prometheus_client's metric objects. In multiprocess mode one per process (their values
    are files keyed by name and labels: two sets of objects would overwrite each other)."""

    def __init__(self, per_tenant: bool, multiproc_dir: str | None) -> None:
        from prometheus_client import (
            CollectorRegistry,
            Counter,
            Gauge,
            Histogram,
            values,
        )

        self.per_tenant = per_tenant
        self.multiproc_dir = multiproc_dir
        if multiproc_dir is not None and not getattr(values.ValueClass, "_multiprocess", False):
            # prometheus_client chose its value class when first imported, before the variable
            # was seen: hand it the file-backed one (what it would have chosen).
            values.ValueClass = values.MultiProcessValue()  # type: ignore[no-untyped-call]
        # In multiprocess mode the values are read back from the files, not from a registry.
        self.registry = None if multiproc_dir is not None else CollectorRegistry()
        t = ("tenant",) if per_tenant else ()
        r = self.registry

        def counter(name: str, doc: str, labels: tuple[str, ...]) -> Any:
            return Counter(f"modelport_{name}", doc, labels, registry=r)

        def histogram(name: str, doc: str, labels: tuple[str, ...], buckets: Sequence[float]) -> Any:
            return Histogram(f"modelport_{name}", doc, labels, buckets=buckets, registry=r)

        self.requests = counter("requests", "Requests answered, by endpoint, provider, model, status class "
                                "and billing (own credential or hosted trial)",
                                ("endpoint", "provider", "model", "status", "billing", *t))
        self.latency = histogram("request_duration_seconds", "Whole request, received to last byte (streams "
                                 "included)", ("endpoint", "provider", "model", *t), LATENCY_BUCKETS)
        self.overhead = histogram("gateway_overhead_seconds", "Time spent in the gateway itself: the request's "
                                  "time to its answer less upstream time and retry waits",
                                  ("endpoint", "provider", "model", *t), OVERHEAD_BUCKETS)
        self.ttft = histogram("time_to_first_token_seconds", "Streams: received to the first chunk",
                              ("endpoint", "provider", "model", *t), TTFT_BUCKETS)
        self.upstream = histogram("upstream_duration_seconds", "Time a request waited on upstreams (to the "
                                  "first chunk for streams; retry waits included)", ("provider", *t),
                                  LATENCY_BUCKETS)
        self.prompt = counter("prompt_tokens", "Prompt tokens (the vendor's count, else the gateway's estimate)",
                              ("provider", "model", "billing", *t))
        self.completion = counter("completion_tokens", "Completion tokens (the vendor's count, else the "
                                  "gateway's estimate)", ("provider", "model", "billing", *t))
        self.refused = counter("rate_limited", "Requests refused by a rate limit (rpm/tpm) before any upstream call",
                               ("endpoint", *t))
        self.open_streams = Gauge("modelport_open_streams", "Streams being sent to clients now", ("provider", *t),
                                  multiprocess_mode="livesum", registry=r)
        self.events = {
            "retries": counter("retries", "Upstream attempts repeated on the same model", ("provider", *t)),
            "fallbacks": counter("fallbacks", "Requests moved on to a fallback model (labelled with the provider "
                                 "moved away from)", ("provider", *t)),
            "cooldowns": counter("cooldowns", "Credentials sent to cool down (reason: rate_limited or failing)",
                                 ("provider", "reason", *t)),
            "credentials_invalid": counter("credentials_invalidated", "Credentials marked invalid after the "
                                           "vendor rejected them", ("provider", *t)),
            "usage_dropped": counter("usage_records_dropped", "Usage records dropped (queue full or refused by "
                                     "the database)", ()),
        }


_process_exporters: dict[tuple[bool, str], Exporter] = {}


def exporter_for(per_tenant: bool, multiproc_dir: str | None) -> Exporter:
    if multiproc_dir is None:
        return Exporter(per_tenant, None)
    key = (per_tenant, multiproc_dir)
    found = _process_exporters.get(key)
    if found is None:
        found = _process_exporters[key] = Exporter(per_tenant, multiproc_dir)
    return found


class Recorder:
    """A worker's tallies since the last flush, and the flush into prometheus_client."""

    def __init__(self, exporter: Exporter, max_series: int = MAX_SERIES) -> None:
        self.exporter = exporter
        self.per_tenant = exporter.per_tenant
        self.max_series = max_series
        self._series: dict[tuple[str, str, str, int, str, str], _Series] = {}
        self._dirty: list[_Series] = []
        self._open: dict[tuple[str, str], int] = {}         # (provider, tenant) -> streams open now
        self._open_changed = False
        self._events: dict[tuple[str, tuple[str, ...]], int] = {}

    # -- the hot path ------------------------------------------------------------------

    def observe(self, r: RequestRecord, latency_ms: float) -> None:
        provider = r.provider
        tenant = r.tenant_id if self.per_tenant else ""
        key = (r.endpoint, provider, r.model if provider else "", r.status // 100, r.billing, tenant)
        s = self._series.get(key)
        if s is None:
            s = self._new_series(key)
        if not s.dirty:
            s.dirty = True
            self._dirty.append(s)
        s.requests += 1
        h = s.latency
        h.counts[bisect_left(_LATENCY_MS, latency_ms)] += 1
        h.total += latency_ms
        overhead = r.overhead if r.overhead is not None else max(0.0, latency_ms - r.upstream_ms)
        h = s.overhead
        h.counts[bisect_left(_OVERHEAD_MS, overhead)] += 1
        h.total += overhead
        if r.upstream_ms:
            h = s.upstream
            h.counts[bisect_left(_LATENCY_MS, r.upstream_ms)] += 1
            h.total += r.upstream_ms
        if r.ttft_ms is not None:
            h = s.ttft
            h.counts[bisect_left(_TTFT_MS, r.ttft_ms)] += 1
            h.total += r.ttft_ms
            if r.stream:  # it was counted open by `stream_opened`
                self._open[(provider, tenant)] = self._open.get((provider, tenant), 0) - 1
                self._open_changed = True
        u = r.usage
        if u is not None:
            s.prompt += u.prompt_tokens
            s.completion += u.completion_tokens
        if r.status == 429 and not r.attempts and r.error_code == "rate_limit_exceeded":
            s.refused += 1

    def stream_opened(self, r: RequestRecord) -> None:
        key = (r.provider, r.tenant_id if self.per_tenant else "")
        self._open[key] = self._open.get(key, 0) + 1
        self._open_changed = True

    def event(self, name: str, labels: tuple[str, ...], tenant_id: str, n: int = 1) -> None:
        key = (name, (*labels, tenant_id) if self.per_tenant and name != "usage_dropped" else labels)
        self._events[key] = self._events.get(key, 0) + n

    def _new_series(self, key: tuple[str, str, str, int, str, str]) -> _Series:
        if len(self._series) >= self.max_series:  # bounded: further models (and tenants) share one series
            endpoint, provider, model, status, billing, tenant = key
            key = (endpoint, provider, OTHER if model else "", status, billing, OTHER if tenant else "")
            found = self._series.get(key)
            if found is not None:
                return found
        endpoint, provider, model, status, billing, tenant = key
        labels = (endpoint, provider, model, _STATUS_CLASSES.get(status, f"{status}xx"), billing)
        s = self._series[key] = _Series((*labels, tenant) if self.per_tenant else labels)
        return s

    # -- off the hot path --------------------------------------------------------------

    def flush(self) -> None:
        """Push everything gathered since the last flush into prometheus_client's values."""
        dirty, self._dirty = self._dirty, []
        for s in dirty:
            s.dirty = False
            if s.children is None:
                s.children = self._children(s.labels)
            requests, latency, overhead, ttft, upstream, prompt, completion, refused = s.children
            requests.inc(s.requests)
            _push(latency, s.latency)
            _push(overhead, s.overhead)
            _push(ttft, s.ttft)
            _push(upstream, s.upstream)
            if s.prompt:
                prompt.inc(s.prompt)
            if s.completion:
                completion.inc(s.completion)
            if s.refused:
                refused.inc(s.refused)
            s.requests = s.prompt = s.completion = s.refused = 0
        if self._open_changed:
            self._open_changed = False
            for (provider, tenant), n in self._open.items():
                self.exporter.open_streams.labels(provider, *((tenant,) if self.per_tenant else ())).set(n)
        events, self._events = self._events, {}
        for (name, labels), n in events.items():
            counter = self.exporter.events[name]
            (counter.labels(*labels) if labels else counter).inc(n)

    def _children(self, labels: tuple[str, ...]) -> tuple[Any, ...]:
        e = self.exporter
        endpoint, provider, model, status, billing = labels[:5]
        t = labels[5:]  # the tenant, when per tenant
        return (e.requests.labels(*labels), e.latency.labels(endpoint, provider, model, *t),
                e.overhead.labels(endpoint, provider, model, *t), e.ttft.labels(endpoint, provider, model, *t),
                e.upstream.labels(provider, *t), e.prompt.labels(provider, model, billing, *t),
                e.completion.labels(provider, model, billing, *t), e.refused.labels(endpoint, *t))

    def close(self) -> None:
        """The worker stops: its streams are over, its tallies written."""
        for key in self._open:
            self._open[key] = 0
        self._open_changed = True
        self.flush()


def _push(child: Any, h: _Hist) -> None:
    """Add a tally's observations to a prometheus_client histogram child: each bucket's count
    and the sum, once (what `observe` would have done per observation). The child's
    `_buckets` (non-cumulative counts, +Inf last) and `_sum` are the values `observe` itself
    increments; tests/unit/test_metrics.py checks the output matches `observe`'s."""
    counts = h.counts
    if not any(counts):
        return
    for i, n in enumerate(counts):
        if n:
            child._buckets[i].inc(n)
            counts[i] = 0
    child._sum.inc(h.total / 1000)
    h.total = 0.0


# -- the worker's recorder and the hooks ------------------------------------------------

_active: Recorder | None = None


def install(recorder: Recorder | None) -> None:
    global _active
    _active = recorder


def active() -> Recorder | None:
    return _active


def observe(record: RequestRecord, latency_ms: float) -> None:
    if _active is not None:
        _active.observe(record, latency_ms)


def stream_opened(record: RequestRecord) -> None:
    if _active is not None:
        _active.stream_opened(record)


def retried(tenant_id: str, provider: str) -> None:
    if _active is not None:
        _active.event("retries", (provider,), tenant_id)


def fell_back(tenant_id: str, provider: str) -> None:
    if _active is not None:
        _active.event("fallbacks", (provider,), tenant_id)


def cooldown_entered(tenant_id: str, provider: str, reason: str) -> None:
    if _active is not None:
        _active.event("cooldowns", (provider, reason), tenant_id)


def credential_invalidated(tenant_id: str, provider: str) -> None:
    if _active is not None:
        _active.event("credentials_invalid", (provider,), tenant_id)


def usage_dropped(count: int) -> None:
    if _active is not None and count:
        _active.event("usage_dropped", (), "", count)


def multiproc_dir() -> str | None:
    """The multiprocess directory this process writes to, when `modelport serve` (or the
    operator) set one."""
    path = os.environ.get(MULTIPROC_ENV)
    return path if path and os.path.isdir(path) else None


def families_text(families: Iterable[Any]) -> bytes:
    """Extra metric families (computed at scrape time) in the text format."""
    from prometheus_client import generate_latest
    from prometheus_client.registry import Collector

    class _Static(Collector):
        def collect(self) -> Iterable[Any]:
            return families

    return generate_latest(_Static())
