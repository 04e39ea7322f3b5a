"""AuditMiddleware edges: bad config, websocket denial/close, cancellation, tracing, lifespan."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from extapi_kit import telemetry
from extapi_kit._types import Message, Receive, Scope, Send
from extapi_kit.audit import AuditRecord, MemorySink
from extapi_kit.audit.exchange import HTTPExchange
from extapi_kit.context import Principal, RouteSettings, get_context
from extapi_kit.exceptions import ConfigurationError
from extapi_kit.middleware.audit import AuditMiddleware
from tests.middleware.test_audit import _only, _scope, _Server

pytestmark = pytest.mark.anyio


async def _ok(scope: Scope, receive: Receive, send: Send) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"sink": 42}, "not an audit sink"),
        ({"sink": []}, "at least one sink"),
        ({"queue_size": 0}, "must be positive"),
        ({"batch_size": 0}, "must be positive"),
        ({"flush_interval": 0}, "must be positive"),
    ],
)
def test_unusable_configuration_is_refused(kwargs: dict[str, Any], message: str) -> None:
    """A13: an audit layer that could not record anything refuses to start."""
    with pytest.raises(ConfigurationError, match=message):
        AuditMiddleware(_ok, **kwargs)


async def test_callable_sink_and_hook_both_receive_records() -> None:
    """A plain callable is a sink; ``hook`` is one more; both get every record."""
    got: list[str] = []
    mw = AuditMiddleware(
        _ok, sink=lambda r: got.append(f"sink {r.status}"), hook=lambda r: got.append("hook")
    )
    assert len(mw.sinks) == 2
    await mw(_scope(), _Server([]).receive, _Server([]).send)
    await mw.aclose()
    assert sorted(got) == ["hook", "sink 200"]


async def test_scopes_used_set_by_a_layer_win_over_route_scopes() -> None:
    """docs/audit.md: the record's scopes are ctx.extra["scopes_used"] when a layer set them."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        ctx = get_context(scope)
        ctx.principal = Principal(key_id="k1")
        ctx.route = RouteSettings(template="/p", scopes=("projects:read", "projects:write"))
        ctx.extra["scopes_used"] = ["projects:read"]
        ctx.extra["_private"] = "not audit data"
        await _ok(scope, receive, send)

    sink = MemorySink()
    mw = AuditMiddleware(app, sink=sink)
    await mw(_scope(), _Server([]).receive, _Server([]).send)
    rec = await _only(sink, mw)
    assert rec.scopes == ("projects:read",)
    assert "scopes_used" not in rec.extra and "_private" not in rec.extra


async def test_failing_capture_never_breaks_the_request(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The audit layer must never break a request: a capture error is logged, the call is 200."""

    def broken(self: HTTPExchange, ctx: Any) -> Any:
        raise ValueError("capture bug")

    # The untraced path (another test may have installed a global SDK tracer provider for good).
    monkeypatch.setattr(telemetry, "tracing_enabled", lambda: False)
    monkeypatch.setattr(HTTPExchange, "snapshot", broken)
    sink = MemorySink()
    mw = AuditMiddleware(_ok, sink=sink)
    server = _Server([])
    with caplog.at_level(logging.ERROR, logger="extapi_kit.audit"):
        await mw(_scope(), server.receive, server.send)
    await mw.aclose()
    assert server.sent[0]["status"] == 200 and sink.records == []
    assert "capturing the audit record failed" in caplog.text


async def test_cancelled_request_is_a_client_disconnect_not_an_error() -> None:
    """M6: a server cancelling the call (client gone) is recorded as a disconnect and re-raised."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        raise asyncio.CancelledError

    sink = MemorySink()
    mw = AuditMiddleware(app, sink=sink)
    server = _Server([])
    with pytest.raises(asyncio.CancelledError):
        await mw(_scope(), server.receive, server.send)
    rec = await _only(sink, mw)
    assert rec.client_disconnected and not rec.error and rec.status == 200


async def test_websocket_denial_response_is_recorded_with_its_status() -> None:
    """Z7: a websocket refused with an HTTP denial response records that status and bytes."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "websocket.http.response.start", "status": 401, "headers": []})
        await send({"type": "websocket.http.response.body", "body": b"no", "more_body": True})
        await send({"type": "websocket.http.response.body", "body": b"pe"})

    sink = MemorySink()
    mw = AuditMiddleware(app, sink=sink)
    server = _Server([{"type": "websocket.connect"}])
    await mw(_scope("/ws", "websocket"), server.receive, server.send)
    rec = await _only(sink, mw)
    assert (rec.status, rec.bytes_out, rec.client_disconnected) == (401, 4, False)
    assert dict(server.sent[0]["headers"])[b"x-request-id"] == rec.request_id.encode()


async def test_websocket_closed_by_server_after_accept_keeps_its_close_code() -> None:
    """A server-side close after accept is a 101 with its close code, not a client disconnect."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.close", "code": 4003})
        assert (await receive())["type"] == "websocket.disconnect"

    sink = MemorySink()
    mw = AuditMiddleware(app, sink=sink)
    server = _Server(
        [{"type": "websocket.connect"}, {"type": "websocket.disconnect", "code": 1000}]
    )
    await mw(_scope("/ws", "websocket"), server.receive, server.send)
    rec = await _only(sink, mw)
    assert rec.status == 101 and rec.extra["ws_close_code"] == 4003
    assert not rec.client_disconnected


async def test_websocket_send_to_a_gone_client_is_a_quiet_disconnect(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """M6: an OSError from a websocket send is recorded as a disconnect, without error logs."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "websocket.accept"})

    sink = MemorySink()
    mw = AuditMiddleware(app, sink=sink)
    server = _Server([], send_error=BrokenPipeError("gone"))
    with caplog.at_level(logging.WARNING):
        await mw(_scope("/ws", "websocket"), server.receive, server.send)
    rec = await _only(sink, mw)
    assert rec.client_disconnected and not rec.error
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


@pytest.fixture
def spans(monkeypatch: pytest.MonkeyPatch) -> Iterator[InMemorySpanExporter]:
    """An SDK tracer provider for this test only (restored afterwards)."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    monkeypatch.setattr(trace, "_TRACER_PROVIDER", provider)
    monkeypatch.setattr(telemetry, "_tracing_on", False)
    yield exporter
    provider.shutdown()


async def test_traced_app_error_marks_the_span_and_the_record(
    spans: InMemorySpanExporter,
) -> None:
    """With tracing on, an app error is a 500 record and an ERROR span, and still propagates."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        raise RuntimeError("bug")

    sink = MemorySink()
    mw = AuditMiddleware(app, sink=sink)
    with pytest.raises(RuntimeError):
        await mw(_scope(), _Server([]).receive, _Server([]).send)
    rec = await _only(sink, mw)
    assert rec.error and rec.status == 500
    (span,) = [s for s in spans.get_finished_spans() if s.name == "extapi.request"]
    assert span.status.status_code is StatusCode.ERROR
    assert dict(span.attributes or {})["http.response.status_code"] == 500


async def test_traced_record_build_failure_keeps_the_answer(
    spans: InMemorySpanExporter,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """With tracing on, a record that cannot be built is logged; the client still gets its 200."""
    sink = MemorySink()
    mw = AuditMiddleware(_ok, sink=sink)

    def broken(snap: Any) -> AuditRecord:
        raise ValueError("build bug")

    monkeypatch.setattr(mw, "_build", broken)
    server = _Server([])
    with caplog.at_level(logging.ERROR, logger="extapi_kit.audit"):
        await mw(_scope(), server.receive, server.send)
    await mw.aclose()
    assert server.sent[0]["status"] == 200 and sink.records == []
    assert "building the audit record failed" in caplog.text


class _Lifespan:
    def __init__(self) -> None:
        self.inbox = ["lifespan.startup", "lifespan.shutdown"]
        self.sent: list[str] = []

    async def receive(self) -> Message:
        return {"type": self.inbox.pop(0)}

    async def send(self, message: Message) -> None:
        self.sent.append(message["type"])


async def test_lifespan_error_after_startup_propagates() -> None:
    """M5: an app failing after it answered startup is not hidden by the audit layer."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "lifespan.startup.complete"})
        await receive()
        raise RuntimeError("shutdown hook failed")

    mw = AuditMiddleware(app, sink=MemorySink())
    server = _Lifespan()
    with pytest.raises(RuntimeError, match="shutdown hook failed"):
        await mw({"type": "lifespan"}, server.receive, server.send)
    assert server.sent == ["lifespan.startup.complete"]


async def test_lifespan_app_returning_without_answering_shutdown_still_flushes() -> None:
    """M5: an app that returns on shutdown without answering still gets the records flushed."""
    sink = MemorySink()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await receive()
            await send({"type": "lifespan.startup.complete"})
            await receive()
            return
        await _ok(scope, receive, send)

    mw = AuditMiddleware(app, sink=sink, flush_interval=3600)
    server = _Lifespan()

    async def lifespan_receive() -> Message:
        if server.inbox == ["lifespan.shutdown"]:
            await mw(_scope(), _Server([]).receive, _Server([]).send)
        return await server.receive()

    await mw({"type": "lifespan"}, lifespan_receive, server.send)
    assert server.sent == ["lifespan.startup.complete"]
    assert [r.status for r in sink.records] == [200]
