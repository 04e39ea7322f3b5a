"""AuditMiddleware: one audit record per HTTP call and per websocket session.

Place it outermost (DESIGN §3) so it sees every outcome, including rejections by the layers inside
it, and the latency of the whole stack. It is pure ASGI: response bodies stream through untouched
(M4) and contextvars set here are visible to the endpoint (M3). The request path only builds a
record and appends it to a bounded in-memory queue; :class:`~extapi_kit.audit.writer.AuditWriter`
delivers it (DESIGN §6).
"""

from __future__ import annotations

import itertools
import logging
import os
import re
import time
from collections.abc import Sequence
from contextvars import ContextVar
from typing import Any

from opentelemetry.trace import StatusCode

from extapi_kit import telemetry
from extapi_kit._types import ASGIApp, Clock, Message, Receive, Scope, Send
from extapi_kit.audit import AuditHook, AuditSink, HookSink
from extapi_kit.audit.exchange import HTTPExchange, Snapshot, WebSocketExchange, build_record
from extapi_kit.audit.record import AuditRecord, QueryRedactor
from extapi_kit.audit.writer import AuditWriter
from extapi_kit.clientip import ClientIPResolver
from extapi_kit.context import RequestContext, get_context, new_request_id
from extapi_kit.exceptions import ConfigurationError
from extapi_kit.stores import store_from_url

__all__ = ["AuditMiddleware", "SinkSpec", "request_id_var"]

logger = logging.getLogger("extapi_kit.audit")

SinkSpec = str | AuditSink | AuditHook
# The current request id, for log formatters and endpoints (survives BaseHTTPMiddleware, M3).
request_id_var: ContextVar[str | None] = ContextVar("extapi_kit_request_id", default=None)
# Incoming X-Request-ID values are echoed and logged, so only a conservative shape is accepted.
_REQUEST_ID_RE = re.compile(rb"[A-Za-z0-9._\-]{1,128}")
# Generated ids: a random per-process prefix plus a counter (unique, 32 hex characters, and
# cheaper than 16 fresh random bytes per request; request ids are not secrets).
_RID_PREFIX = new_request_id()[:16]
_rid_counter = itertools.count(1)


def _reseed_request_ids() -> None:
    # A forked worker must not repeat its parent's ids.
    global _RID_PREFIX
    _RID_PREFIX = new_request_id()[:16]


os.register_at_fork(after_in_child=_reseed_request_ids)


def _build_sinks(
    spec: SinkSpec | Sequence[SinkSpec], hook: AuditHook | None
) -> tuple[list[AuditSink], list[AuditSink]]:
    items: Sequence[SinkSpec] = spec if isinstance(spec, list | tuple) else [spec]  # type: ignore[list-item]
    sinks: list[AuditSink] = []
    owned: list[AuditSink] = []
    for item in items:
        if isinstance(item, str):
            made: AuditSink = store_from_url("audit", item)
            sinks.append(made)
            owned.append(made)
        elif isinstance(item, AuditSink):
            sinks.append(item)
        elif callable(item):
            sinks.append(HookSink(item))
        else:
            raise ConfigurationError(f"not an audit sink, URL or callable: {item!r}")
    if hook is not None:
        sinks.append(HookSink(hook))
    if not sinks:
        raise ConfigurationError("AuditMiddleware needs at least one sink")
    return sinks, owned


class AuditMiddleware:
    """Record every HTTP call and websocket session, including rejections by inner layers.

    Args:
        app: the ASGI app to wrap (the rest of the stack).
        sink: where records go: a URL (``"memory://"``, ``"sqlite:///audit.db"``,
            ``"redis://host:6379/0"``), an :class:`AuditSink`, a callable taking a record, or a
            list of those.
        hook: a sync or async callable receiving each record (off the request path); its
            exceptions are logged, never raised into the request.
        client_ip: resolves the client address (default: the socket peer).
        redact_query: query parameter names to redact in addition to the defaults.
        request_id_header: the header read for an incoming request id and set on responses.
        queue_size: records held in memory at most; beyond it records are dropped and counted.
        batch_size: records per sink write.
        flush_interval: seconds between background deliveries.
        spill_path: directory for spill files when a sink fails (default: next to a SQLite
            file, else the temp directory).
        clock: epoch-seconds clock for record timestamps (latency always uses a monotonic one).
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        sink: SinkSpec | Sequence[SinkSpec] = "memory://",
        hook: AuditHook | None = None,
        client_ip: ClientIPResolver | None = None,
        redact_query: Sequence[str] = (),
        request_id_header: str = "x-request-id",
        queue_size: int = 10_000,
        batch_size: int = 500,
        flush_interval: float = 0.2,
        spill_path: str | None = None,
        clock: Clock | None = None,
    ) -> None:
        if queue_size < 1 or batch_size < 1 or flush_interval <= 0:
            raise ConfigurationError("queue_size, batch_size and flush_interval must be positive")
        self.app = app
        self._sink_spec = sink
        self._hook = hook
        self._writer_options: dict[str, Any] = {
            "queue_size": queue_size,
            "batch_size": batch_size,
            "flush_interval": flush_interval,
            "spill_dir": spill_path,
        }
        self.writer = self._new_writer()
        self._resolver = client_ip if client_ip is not None else ClientIPResolver()
        self._redactor = QueryRedactor(redact_query)
        self._rid_header = request_id_header.lower().encode("latin-1")
        self._clock: Clock = clock if clock is not None else time.time

    def __repr__(self) -> str:
        return f"AuditMiddleware(sinks={self.writer.sinks!r})"

    def _new_writer(self) -> AuditWriter:
        sinks, owned = _build_sinks(self._sink_spec, self._hook)
        return AuditWriter(sinks, owned=owned, builder=self._build, **self._writer_options)

    def _start_writer(self) -> None:
        # A new lifespan after a shutdown (e.g. a second TestClient block) gets a fresh writer;
        # sinks created from URLs are created again, sink objects passed in are reused.
        if self.writer.closed:
            self.writer = self._new_writer()
        self.writer.ensure_started()

    @property
    def sinks(self) -> list[AuditSink]:
        """The sinks records are delivered to."""
        return self.writer.sinks

    @property
    def dropped(self) -> int:
        """Records dropped because the queue was full (also metric ``extapi.audit.dropped``)."""
        return self.writer.dropped

    async def flush(self) -> None:
        """Deliver every queued record now (and re-send spills if the sinks are back)."""
        await self.writer.flush()

    async def aclose(self) -> None:
        """Flush and close the sinks this middleware created (done on lifespan shutdown)."""
        await self.writer.aclose()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind != "http" and kind != "websocket":
            if kind == "lifespan":
                await self._lifespan(scope, receive, send)
            else:
                await self.app(scope, receive, send)
            return
        # The request path: observe, then enqueue the observer; the record is built off-path.
        self.writer.ensure_started()
        ctx = get_context(scope)
        rid = ctx.request_id or self._request_id(scope)
        ctx.request_id = rid
        token = request_id_var.set(rid)
        ex = (HTTPExchange if kind == "http" else WebSocketExchange)(
            scope,
            receive,
            send,
            (self._rid_header, rid.encode("ascii", "replace")),
            int(self._clock() * 1_000_000),
        )
        try:
            if telemetry.tracing_enabled():
                await self._traced(ex)
            else:
                try:
                    await self.app(scope, ex.receive, ex.send)
                except BaseException as exc:
                    if not ex.swallow(exc):
                        raise
                finally:
                    ex.end_ns = time.perf_counter_ns()
                    snap = self._snapshot(ex, ctx, scope)
                    if snap is not None:
                        self.writer.put(snap)
        finally:
            request_id_var.reset(token)

    def _request_id(self, scope: Scope) -> str:
        for name, value in scope.get("headers", ()):
            if name == self._rid_header:
                if _REQUEST_ID_RE.fullmatch(value):
                    return bytes(value).decode("ascii")
                break
        return f"{_RID_PREFIX}{next(_rid_counter):016x}"

    def _snapshot(
        self, ex: HTTPExchange | WebSocketExchange, ctx: RequestContext, scope: Scope
    ) -> Snapshot | None:
        # The request path copies a few fields into a tuple; the record is built by the writer.
        try:
            return ex.snapshot(ctx)
        except Exception:  # the audit layer must never break a request
            logger.exception("capturing the audit record failed")
            return None

    async def _traced(self, ex: HTTPExchange | WebSocketExchange) -> None:
        with telemetry.span("extapi.request") as span:
            try:
                await ex.run(self.app)
            finally:
                ex.end_ns = time.perf_counter_ns()
                self._finish_span(ex, span)

    def _build(self, snap: Snapshot) -> AuditRecord:
        # Runs on the writer, off the request path: client IP, query redaction, the record. The
        # resolver reads only the peer and the headers, which the snapshot kept.
        qs = snap[4]
        client_ip = self._resolver.resolve(
            {"type": snap[20], "client": snap[10], "headers": snap[5]}
        )
        return build_record(snap, self._redactor.redact(qs) if qs else "", client_ip)

    def _finish_span(self, ex: HTTPExchange | WebSocketExchange, span: Any) -> None:
        # With tracing on, the record is built now so the span can carry its attributes.
        try:
            rec = self._build(ex.snapshot(get_context(ex.scope)))
        except Exception:  # the audit layer must never break a request
            logger.exception("building the audit record failed")
            return
        self.writer.put(rec)
        span.set_attribute("http.response.status_code", rec.status)
        span.set_attribute("extapi.outcome", rec.outcome)
        span.set_attribute("extapi.route", rec.route or "")
        if rec.key_id is not None:
            span.set_attribute("extapi.key_id", rec.key_id)
            span.set_attribute("extapi.auth", rec.auth or "key")
        if rec.rejection is not None:
            span.set_attribute("extapi.rejection", rec.rejection)
        if rec.error:
            span.set_status(StatusCode.ERROR)

    async def _lifespan(self, scope: Scope, receive: Receive, send: Send) -> None:
        state: dict[str, Any] = {"unanswered": None, "started": False, "closed": False}

        async def lreceive() -> Message:
            msg = await receive()
            if msg["type"] == "lifespan.startup":
                self._start_writer()
            state["unanswered"] = msg
            return msg

        async def lsend(msg: Message) -> None:
            kind = msg["type"]
            if kind.startswith("lifespan.startup."):
                state["started"] = True
            elif kind.startswith("lifespan.shutdown.") and not state["closed"]:
                # Flush before the server is told shutdown is done: uvicorn exits right after.
                state["closed"] = True
                await self.aclose()
            state["unanswered"] = None
            await send(msg)

        try:
            await self.app(scope, lreceive, lsend)
        except Exception:
            if state["started"]:
                raise
            logger.debug("wrapped app does not support lifespan; audit handles it alone")
        if not state["started"]:
            await self._own_lifespan(receive, send, state["unanswered"])
        elif not state["closed"] and state["unanswered"] is not None:
            await self.aclose()

    async def _own_lifespan(self, receive: Receive, send: Send, pending: Message | None) -> None:
        msg = pending if pending is not None else await receive()
        while True:
            if msg["type"] == "lifespan.startup":
                self._start_writer()
                await send({"type": "lifespan.startup.complete"})
            elif msg["type"] == "lifespan.shutdown":
                await self.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return
            msg = await receive()
