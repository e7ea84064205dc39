"""OpenTelemetry traces (issue 16): a gateway with `tracing: true` exports, over OTLP/HTTP
to an in-process collector named by the standard OTEL_* variables, one span per request
with a child per upstream attempt and the GenAI semantic-convention attributes; no span
carries message content or a credential. Without the option nothing is exported."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import openai
import pytest

from tests.e2e.harness import GatewayProcess
from tests.fakes.fixtures import FakeOpenAI
from emulators.openai import DEFAULT_API_KEY as OPENAI_KEY
from emulators.server import free_port

trace_service = pytest.importorskip("opentelemetry.proto.collector.trace.v1.trace_service_pb2",
                                    reason="the otel extra is not installed (pip install -e '.[test]' brings it)")
SECRET_WORDS = "purple-elephant-secret-words"


class Collector:
    """An OTLP/HTTP trace receiver: POST /v1/traces with a protobuf ExportTraceServiceRequest."""

    def __init__(self) -> None:
        self.spans: list[dict[str, Any]] = []
        self.raw: list[bytes] = []
        collector = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                collector.receive(self.path, body)
                reply = trace_service.ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("content-type", "application/x-protobuf")
                self.send_header("content-length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1/traces"

    def receive(self, path: str, body: bytes) -> None:
        assert path == "/v1/traces"
        self.raw.append(body)
        request = trace_service.ExportTraceServiceRequest.FromString(body)
        for resource_spans in request.resource_spans:
            service = {a.key: a.value.string_value for a in resource_spans.resource.attributes}.get("service.name")
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    self.spans.append({
                        "service": service, "name": span.name, "kind": span.kind, "trace": span.trace_id.hex(),
                        "id": span.span_id.hex(), "parent": span.parent_span_id.hex(),
                        "status": span.status.code, "start": span.start_time_unix_nano,
                        "attrs": {a.key: _value(a.value) for a in span.attributes}})

    def wait_for(self, request_id: str, children: int, timeout: float = 10.0) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            roots = [s for s in self.spans if s["attrs"].get("modelport.request_id") == request_id]
            if roots:
                kids = sorted((s for s in self.spans if s["parent"] == roots[0]["id"]), key=lambda s: s["start"])
                if len(kids) >= children:
                    return roots[0], kids
            time.sleep(0.05)
        raise AssertionError(f"no trace of {request_id} with {children} attempts; got {self.spans}")


def _value(v: Any) -> Any:
    return getattr(v, v.WhichOneof("value")) if v.WhichOneof("value") else None


@pytest.fixture(scope="module")
def collector() -> Iterator[Collector]:
    c = Collector()
    c.thread.start()
    try:
        yield c
    finally:
        c.server.shutdown()
        c.server.server_close()


@pytest.fixture(scope="module")
def traced(tmp_path_factory: pytest.TempPathFactory, fake_openai_server: FakeOpenAI,
           collector: Collector) -> Iterator[GatewayProcess]:
    gateway = GatewayProcess(tmp_path_factory.mktemp("traced"), workers=2, settings={
        "tracing": True, "routing": {"retries": 2, "backoff_base": 0.01, "backoff_max": 0.02}},
        env={"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": collector.endpoint, "OTEL_BSP_SCHEDULE_DELAY": "50",
             "OTEL_SERVICE_NAME": "gateway-under-test"})
    gateway.port = free_port()
    gateway.write_config()
    gateway.cli("tenants", "create", "tr")
    gateway.cli("providers", "set", "tr", "openai", f"api_key={OPENAI_KEY}", f"base_url={fake_openai_server.v1_url}")
    gateway.cli("defaults", "set", "tr", "llm", "openai/gpt-4o-mini")
    gateway.tokens["tr"] = gateway.new_token("tr")
    with gateway.running():
        yield gateway
    assert "Traceback" not in gateway.log(), gateway.log()


def sdk(gw: GatewayProcess) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.v1_url, api_key=gw.tokens["tr"], max_retries=0, timeout=20)


def test_a_request_is_a_span_with_a_child_per_attempt(traced: GatewayProcess, fake_openai: FakeOpenAI,
                                                       collector: Collector) -> None:
    fake_openai.state.fail_next.append((503, {"error": {"message": "overloaded", "type": "server_error",
                                                        "param": None, "code": None}}))
    raw = sdk(traced).chat.completions.with_raw_response.create(
        model="default", messages=[{"role": "user", "content": SECRET_WORDS}])
    assert raw.headers["x-modelport-attempts"] == "2"
    completion = raw.parse()
    root, attempts = collector.wait_for(raw.headers["x-request-id"], children=2)

    assert root["service"] == "gateway-under-test"
    assert root["name"] == "chat.completions" and root["kind"] == 2  # SERVER
    assert root["parent"] == ""
    attrs = root["attrs"]
    assert attrs["gen_ai.operation.name"] == "chat"
    assert attrs["gen_ai.system"] == "openai" and attrs["gen_ai.request.model"] == "gpt-4o-mini"
    assert completion.usage is not None
    assert attrs["gen_ai.usage.input_tokens"] == completion.usage.prompt_tokens
    assert attrs["gen_ai.usage.output_tokens"] == completion.usage.completion_tokens
    assert attrs["modelport.attempts"] == 2 and attrs["http.response.status_code"] == 200
    assert root["status"] != 2  # not ERROR

    first, second = attempts
    assert {s["trace"] for s in attempts} == {root["trace"]}
    assert [s["kind"] for s in attempts] == [3, 3]  # CLIENT
    assert first["attrs"]["gen_ai.system"] == "openai" and first["attrs"]["gen_ai.request.model"] == "gpt-4o-mini"
    assert first["status"] == 2 and first["attrs"]["http.response.status_code"] == 503  # the failed attempt
    assert second["status"] != 2
    assert [s["attrs"]["modelport.attempt"] for s in attempts] == [1, 2]

    exported = b"".join(collector.raw)
    assert SECRET_WORDS.encode() not in exported and OPENAI_KEY.encode() not in exported


def test_a_refused_request_is_an_error_span(traced: GatewayProcess, collector: Collector) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        sdk(traced).chat.completions.create(model="anthropic/claude-not-configured-here", messages=[{"role": "user", "content": "x"}])
    request_id = caught.value.response.headers["x-request-id"]
    root, _ = collector.wait_for(request_id, children=0)
    assert root["status"] == 2 and root["attrs"]["http.response.status_code"] == 404


def test_without_the_option_nothing_is_exported(tmp_path: Path, fake_openai_server: FakeOpenAI) -> None:
    quiet = Collector()
    quiet.thread.start()
    try:
        gateway = GatewayProcess(tmp_path, workers=1, env={"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": quiet.endpoint,
                                                           "OTEL_BSP_SCHEDULE_DELAY": "50"})
        gateway.port = free_port()
        gateway.write_config()
        gateway.cli("tenants", "create", "quiet")
        gateway.cli("providers", "set", "quiet", "openai", f"api_key={OPENAI_KEY}",
                    f"base_url={fake_openai_server.v1_url}")
        token = gateway.new_token("quiet")
        with gateway.running():
            client = openai.OpenAI(base_url=gateway.v1_url, api_key=token, max_retries=0, timeout=20)
            client.chat.completions.create(model="openai/gpt-4o-mini", messages=[{"role": "user", "content": "x"}])
        assert quiet.raw == []  # the server stopped: a batch would have been flushed by now
    finally:
        quiet.server.shutdown()
        quiet.server.server_close()
