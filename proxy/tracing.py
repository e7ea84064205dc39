"""OpenTelemetry traces (issue 16): off by default, and an optional extra
(`pip install 'modelport[otel]'`), so a gateway that does not trace neither imports nor
pays for OpenTelemetry.

With `tracing: true`, each worker exports, over OTLP/HTTP, a span per request (kind
SERVER, named after the endpoint) with a child per upstream attempt (kind CLIENT: a retry
or a fallback is a second child). Attributes follow OpenTelemetry's GenAI semantic
conventions (`gen_ai.operation.name`, `gen_ai.system` and its newer name
`gen_ai.provider.name`, `gen_ai.request.model`, `gen_ai.usage.input_tokens`,
`gen_ai.usage.output_tokens`), plus the gateway's own under `modelport.*`. Never message
content, never a secret: what a span carries is what the request log line carries.

Where the spans go is OpenTelemetry's business: the standard `OTEL_*` variables
(`OTEL_EXPORTER_OTLP_ENDPOINT` or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`,
`OTEL_EXPORTER_OTLP_HEADERS`, `OTEL_SERVICE_NAME`, `OTEL_BSP_*`, `OTEL_TRACES_SAMPLER`...),
read by the SDK itself. Spans are batched and exported off the request path; whatever is
left is flushed when the worker stops.

The hot path, tracing off: one `is None` test per request and per attempt.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from proxy.routing import Route
    from proxy.usage import RequestRecord

# The operation names of the GenAI conventions, by endpoint (transcription has none yet).
_OPERATIONS = {"chat.completions": "chat", "completions": "text_completion", "embeddings": "embeddings",
               "audio.transcriptions": "transcription"}
_tracer: Any = None  # an opentelemetry Tracer once `start` ran with tracing on


class TracingUnavailable(Exception):
    """`tracing: true` without the extra installed."""


def start(enabled: bool) -> Callable[[], None] | None:
    """Set up this process's exporter; returns what flushes and stops it (None when off)."""
    global _tracer
    if not enabled:
        return None
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
            OTLPSpanExporter,
        )
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError as exc:
        raise TracingUnavailable("tracing: true needs OpenTelemetry: pip install 'modelport[otel]' "
                                 f"({exc.name or exc} is missing)") from None
    service = os.environ.get("OTEL_SERVICE_NAME") or "modelport"
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    _tracer = provider.get_tracer("modelport")

    def stop() -> None:
        global _tracer
        _tracer = None
        provider.shutdown()  # exports what is still batched

    return stop


def request_span(endpoint: str) -> Any:
    """The request's span (None when tracing is off); `end_request` ends it."""
    if _tracer is None:
        return None
    from opentelemetry.trace import SpanKind

    return _tracer.start_span(endpoint, kind=SpanKind.SERVER,
                              attributes={"gen_ai.operation.name": _OPERATIONS.get(endpoint, endpoint)})


def start_attempt(record: RequestRecord, route: Route) -> Any:
    """A child of the request's span for one upstream attempt (None when not traced)."""
    if record.span is None or _tracer is None:
        return None
    from opentelemetry.trace import SpanKind, set_span_in_context

    return _tracer.start_span(f"{_OPERATIONS.get(record.endpoint, record.endpoint)} {route.model}",
                              context=set_span_in_context(record.span), kind=SpanKind.CLIENT,
                              attributes={"gen_ai.operation.name": _OPERATIONS.get(record.endpoint, record.endpoint),
                                          "gen_ai.system": route.provider, "gen_ai.provider.name": route.provider,
                                          "gen_ai.request.model": route.model, "modelport.billing": route.billing,
                                          "modelport.attempt": record.attempts,
                                          "modelport.credential": record.credential or ""})


def end_attempt(span: Any, error: BaseException | None) -> None:
    if span is None:
        return
    if error is not None:
        _failed(span, getattr(error, "code", None) or type(error).__name__, getattr(error, "status", None))
    span.end()


def end_request(record: RequestRecord, latency_ms: float) -> None:
    span = record.span
    record.span = None
    u = record.usage
    attributes: dict[str, Any] = {
        "modelport.request_id": record.request_id, "modelport.tenant_id": record.tenant_id,
        "modelport.token_id": record.token_id, "modelport.attempts": record.attempts,
        "modelport.billing": record.billing, "modelport.stream": record.stream,
        "modelport.latency_ms": round(latency_ms, 2), "http.response.status_code": record.status}
    if record.provider:
        attributes |= {"gen_ai.system": record.provider, "gen_ai.provider.name": record.provider,
                       "gen_ai.request.model": record.model}
    if u is not None:
        attributes |= {"gen_ai.usage.input_tokens": u.prompt_tokens, "gen_ai.usage.output_tokens": u.completion_tokens,
                       "modelport.usage_estimated": record.estimated}
    if record.ttft_ms is not None:
        attributes["modelport.ttft_ms"] = round(record.ttft_ms, 2)
    span.set_attributes(attributes)
    if record.status >= 400:
        _failed(span, str(record.status), record.status)
    span.end()


def _failed(span: Any, error_type: str, status: object) -> None:
    from opentelemetry.trace import Status, StatusCode

    span.set_attribute("error.type", error_type)
    if isinstance(status, int):
        span.set_attribute("http.response.status_code", status)
    span.set_status(Status(StatusCode.ERROR))
