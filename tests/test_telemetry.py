"""Telemetry: the extapi.request span, the span helper, audit and request metrics (OTel SDK)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from extapi_kit import telemetry
from extapi_kit._types import ASGIApp, Receive, Scope, Send
from extapi_kit.audit import AuditRecord, MemorySink
from extapi_kit.context import Principal, get_context
from extapi_kit.exceptions import StoreUnavailableError
from extapi_kit.middleware.audit import AuditMiddleware
from extapi_kit.problems import send_problem


class OTel:
    def __init__(self, spans: InMemorySpanExporter, reader: InMemoryMetricReader | None) -> None:
        self.spans = spans
        self.reader = reader

    def points(self, name: str) -> list[tuple[dict[str, Any], float]]:
        if self.reader is None:
            pytest.skip("another test installed the global MeterProvider first")
        out: list[tuple[dict[str, Any], float]] = []
        data = self.reader.get_metrics_data()
        for rm in data.resource_metrics if data else ():
            for sm in rm.scope_metrics:
                for metric in sm.metrics:
                    if metric.name == name:
                        for p in metric.data.data_points:
                            out.append((dict(p.attributes or {}), p.value))  # type: ignore[union-attr]
        return out

    def total(self, name: str, **attrs: Any) -> float:
        return sum(v for a, v in self.points(name) if all(a.get(k) == x for k, x in attrs.items()))


@pytest.fixture(scope="session")
def otel() -> OTel:
    """Install SDK providers once per session (global providers can be set only once)."""
    exporter = InMemorySpanExporter()
    current = trace.get_tracer_provider()
    if isinstance(current, TracerProvider):
        current.add_span_processor(SimpleSpanProcessor(exporter))
    else:
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        trace.set_tracer_provider(provider)
    reader: InMemoryMetricReader | None = None
    if not isinstance(metrics.get_meter_provider(), MeterProvider):
        reader = InMemoryMetricReader()
        metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
    return OTel(exporter, reader)


async def inner(scope: Scope, receive: Receive, send: Send) -> None:
    ctx = get_context(scope)
    with telemetry.span("extapi.auth", {"extapi.outcome": "checked"}) as span:
        if scope["path"] == "/deny":
            span.set_attribute("extapi.reason", "unauthorized")
            await send_problem(send, "unauthorized", scope=scope)
            return
        ctx.principal = Principal(key_id="key-t", prefix="xk_test_t")
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


async def _get(app: ASGIApp, *paths: str) -> None:
    transport = httpx.ASGITransport(app, client=("203.0.113.7", 1234))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        for path in paths:
            await client.get(path)


@pytest.mark.anyio
async def test_request_span_carries_key_route_status_outcome(otel: OTel) -> None:
    """AuditMiddleware opens extapi.request with key id, route, status and outcome attributes."""
    otel.spans.clear()
    mw = AuditMiddleware(inner, sink=MemorySink())
    await _get(mw, "/ok", "/deny")
    await mw.aclose()
    requests = [s for s in otel.spans.get_finished_spans() if s.name == "extapi.request"]
    assert len(requests) == 2
    ok, deny = (dict(s.attributes or {}) for s in requests)
    assert ok["extapi.key_id"] == "key-t" and ok["http.response.status_code"] == 200
    assert ok["extapi.outcome"] == "ok" and ok["extapi.route"] == "/ok"
    assert deny["extapi.outcome"] == "rejected" and deny["extapi.rejection"] == "unauthorized"
    assert "extapi.key_id" not in deny


@pytest.mark.anyio
async def test_span_helper_nests_decisions_under_the_request_span(otel: OTel) -> None:
    """telemetry.span() inside the stack creates a child of extapi.request with its attributes."""
    otel.spans.clear()
    mw = AuditMiddleware(inner, sink=MemorySink())
    await _get(mw, "/deny")
    await mw.aclose()
    spans = {s.name: s for s in otel.spans.get_finished_spans()}
    auth, request = spans["extapi.auth"], spans["extapi.request"]
    assert auth.parent is not None and auth.parent.span_id == request.context.span_id
    assert dict(auth.attributes or {}) == {
        "extapi.outcome": "checked",
        "extapi.reason": "unauthorized",
    }


@pytest.mark.anyio
async def test_requests_counted_by_outcome_and_reason(otel: OTel) -> None:
    """extapi.requests counts each call with its outcome and reason (problem slug or status)."""
    before_rej = otel.total("extapi.requests", outcome="rejected", reason="unauthorized")
    before_ok = otel.total("extapi.requests", outcome="ok", reason="200")
    mw = AuditMiddleware(inner, sink=MemorySink())
    await _get(mw, "/ok", "/deny", "/deny", "/ok", "/ok")
    await mw.aclose()
    assert (
        otel.total("extapi.requests", outcome="rejected", reason="unauthorized") - before_rej == 2
    )
    assert otel.total("extapi.requests", outcome="ok", reason="200") - before_ok == 3


class _Down(MemorySink):
    async def write_batch(self, records: Sequence[AuditRecord]) -> None:
        raise StoreUnavailableError("down")


@pytest.mark.anyio
async def test_audit_queue_depth_drops_and_spills_are_exported(otel: OTel, tmp_path: Path) -> None:
    """extapi.audit.queue.depth, extapi.audit.dropped and extapi.audit.spilled are reported."""
    dropped0 = otel.total("extapi.audit.dropped")
    spilled0 = otel.total("extapi.audit.spilled")
    mw = AuditMiddleware(
        inner, sink=_Down(), queue_size=3, flush_interval=3600, spill_path=str(tmp_path)
    )
    await _get(mw, *["/ok"] * 5)
    assert otel.total("extapi.audit.queue.depth") >= 3
    await mw.flush()
    assert otel.total("extapi.audit.dropped") - dropped0 == 2
    assert otel.total("extapi.audit.spilled") - spilled0 == 3
    await mw.aclose()


def test_without_sdk_span_is_a_shared_no_op() -> None:
    """With opentelemetry-api only, tracing_enabled() is False and span() yields INVALID_SPAN."""
    code = (
        "from opentelemetry import trace\n"
        "from extapi_kit import telemetry\n"
        "assert not telemetry.tracing_enabled()\n"
        "cm = telemetry.span('x', {'a': 1})\n"
        "assert cm is telemetry.span('y')\n"
        "with cm as s:\n"
        "    assert s is trace.INVALID_SPAN and not s.is_recording()\n"
        "telemetry.counter('extapi.requests').add(1)\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "ok"
