"""telemetry.py edges: an explicit no-op provider keeps tracing off; instruments are cached."""

from __future__ import annotations

import pytest
from opentelemetry import trace

from extapi_kit import telemetry


@pytest.mark.parametrize("provider", [trace.NoOpTracerProvider(), trace.ProxyTracerProvider()])
def test_explicit_no_op_provider_keeps_spans_free(
    monkeypatch: pytest.MonkeyPatch, provider: trace.TracerProvider
) -> None:
    """A host app that installs a NoOp/Proxy provider gets the shared non-recording span."""
    monkeypatch.setattr(telemetry, "_tracing_on", False)
    monkeypatch.setattr(trace, "_TRACER_PROVIDER", provider)
    assert not telemetry.tracing_enabled()
    cm = telemetry.span("extapi.auth", {"extapi.outcome": "checked"})
    assert cm is telemetry.span("extapi.ratelimit")
    with pytest.raises(KeyError):  # the no-op span never swallows the caller's exception
        with cm as sp:
            assert sp is trace.INVALID_SPAN and not sp.is_recording()
            raise KeyError("boom")
    assert telemetry._tracing_on is False  # not cached as on: a real SDK may still come later


def test_instruments_are_created_once_per_name(monkeypatch: pytest.MonkeyPatch) -> None:
    """Asking twice for an instrument returns the same object (no per-request creation)."""
    monkeypatch.setattr(telemetry, "_instruments", {})
    updown = telemetry.up_down_counter("extapi.test.inflight", "in flight")
    assert telemetry.up_down_counter("extapi.test.inflight") is updown
    updown.add(1)
    updown.add(-1)
    hist = telemetry.histogram("extapi.test.latency", "latency")
    assert telemetry.histogram("extapi.test.latency") is hist
    count = telemetry.counter("extapi.test.count")
    assert telemetry.counter("extapi.test.count") is count
    assert set(telemetry._instruments) == {
        "extapi.test.inflight",
        "extapi.test.latency",
        "extapi.test.count",
    }
