"""`tracing: true` without OpenTelemetry installed is a one-line settings error, and with
tracing off the request path gets no span (nothing imported, nothing exported)."""

from __future__ import annotations

import importlib.util
import sys

import pytest
from pydantic import ValidationError

from proxy import tracing
from proxy.settings import Settings


def test_tracing_without_the_extra_is_refused_with_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "opentelemetry" else real(name, *a))
    with pytest.raises(ValidationError) as caught:
        Settings(tracing=True)
    assert "pip install 'modelport[otel]'" in str(caught.value)
    assert Settings().tracing is False


def test_tracing_off_means_no_span_and_no_import() -> None:
    assert tracing.start(False) is None
    assert tracing.request_span("chat.completions") is None
    assert "opentelemetry.sdk.trace" not in sys.modules or tracing._tracer is None
