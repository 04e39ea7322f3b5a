"""Per-request observers used by AuditMiddleware: wrap receive/send, count, build the record.

One object per request holds what the wire showed (status, bytes, disconnects, errors); nothing
per request lives on the middleware. Messages pass through unchanged except that the request id
header is added to the response start (or websocket accept), so streaming is untouched (M4).
"""

from __future__ import annotations

import time
from typing import Any

import anyio
from starlette.requests import ClientDisconnect

from extapi_kit._types import ASGIApp, Message, Receive, Scope, Send
from extapi_kit.audit.record import AuditRecord, redact_keys, redact_path
from extapi_kit.context import RequestContext

__all__ = ["CLIENT_CLOSED_REQUEST", "HTTPExchange", "Snapshot", "WebSocketExchange", "build_record"]

# What an app raises when the client has gone (M6): handled quietly once we saw the disconnect.
_DISCONNECT_ERRORS = (
    OSError,
    ClientDisconnect,
    anyio.BrokenResourceError,
    anyio.ClosedResourceError,
)
_MAX_USER_AGENT = 512
# Recorded when the client left before any response was sent (nginx's convention).
CLIENT_CLOSED_REQUEST = 499


def _with_header(headers: Any, header: tuple[bytes, bytes]) -> list[tuple[bytes, bytes]]:
    # ASGI header names are lower-case (the spec requires it of apps), so no .lower() per header.
    out = list(headers or ())
    name = header[0]
    for key, _ in out:
        if key == name:
            return out
    out.append(header)
    return out


# What the writer needs of one finished request, as a flat tuple: the queue then holds no scope,
# context, receive or send (less live memory, less GC work), and the record is built off-path.
Snapshot = tuple[Any, ...]


def build_record(snap: Snapshot, query: str, client_ip: str | None) -> AuditRecord:
    """Build the audit record from an exchange's :meth:`_Exchange.snapshot` (off the request path).

    Args:
        snap: the snapshot.
        query: the redacted query string.
        client_ip: the resolved client address.
    """
    (
        ts_us,
        request_id,
        method,
        path,
        _qs,
        headers,
        status,
        latency_ns,
        principal,
        route,
        _client,
        bytes_in,
        bytes_out,
        rl,
        idempotency,
        rejection,
        error,
        disconnected,
        resource_ids,
        ctx_extra,
        protocol,
        close_code,
    ) = snap
    # Keys starting with "_" are other layers' private bookkeeping, not audit data.
    extra = {k: v for k, v in ctx_extra.items() if not k.startswith("_")} if ctx_extra else {}
    scopes_used = extra.pop("scopes_used", None)
    if scopes_used is None:
        scopes_used = route.scopes if route is not None and principal is not None else ()
    if close_code is not None:
        extra["ws_close_code"] = close_code
    ua = None
    for name, value in headers:
        if name == b"user-agent":
            ua = bytes(value[:_MAX_USER_AGENT]).decode("latin-1")
            break
    # A key pasted into the path or the user agent is redacted like one in the query (A17).
    path = redact_path(path)
    ua = redact_keys(ua)
    return AuditRecord(
        timestamp_us=ts_us,
        request_id=request_id,
        method=method,
        path=path,
        route=route.template if route is not None else path,
        query=query,
        status=status or (CLIENT_CLOSED_REQUEST if disconnected else 0),
        latency_ms=latency_ns / 1e6,
        key_id=principal.key_id if principal is not None else None,
        key_prefix=(principal.prefix or None) if principal is not None else None,
        owner=principal.owner if principal is not None else None,
        scopes=tuple(scopes_used),
        client_ip=client_ip,
        user_agent=ua,
        bytes_in=bytes_in,
        bytes_out=bytes_out,
        rate_limit=(
            {
                "policy": rl.policy,
                "limit": rl.limit,
                "remaining": rl.remaining,
                "reset_after": rl.reset_after,
                "allowed": rl.allowed,
                "degraded": rl.degraded,
            }
            if rl is not None
            else None
        ),
        idempotency=idempotency,
        rejection=rejection,
        error=error,
        client_disconnected=disconnected,
        resource_ids=dict(resource_ids),
        protocol=protocol,
        extra=extra,
        auth=principal.auth if principal is not None else None,
        token_id=principal.token_id if principal is not None else None,
    )


class _Exchange:
    __slots__ = (
        "_receive",
        "_send",
        "bytes_in",
        "bytes_out",
        "close_code",
        "disconnected",
        "done",
        "end_ns",
        "error",
        "rid_header",
        "scope",
        "start_ns",
        "started",
        "status",
        "ts_us",
    )

    def __init__(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        rid_header: tuple[bytes, bytes],
        ts_us: int,
    ) -> None:
        self.scope = scope
        self._receive = receive
        self._send = send
        self.rid_header = rid_header
        self.ts_us = ts_us
        self.start_ns = time.perf_counter_ns()
        self.end_ns = 0
        self.status = 0
        self.started = False
        self.done = False
        self.error = False
        self.disconnected = False
        self.bytes_in = 0
        self.bytes_out = 0
        self.close_code: int | None = None

    async def receive(self) -> Message:
        raise NotImplementedError

    async def send(self, message: Message) -> None:
        raise NotImplementedError

    async def run(self, app: ASGIApp) -> None:
        """Call the app with the observing receive/send; classify how it ended.

        Args:
            app: the wrapped app.
        """
        try:
            await app(self.scope, self.receive, self.send)
        except BaseException as exc:
            if not self.swallow(exc):
                raise

    def swallow(self, exc: BaseException) -> bool:
        """Classify an exception from the app; return True when it must not propagate.

        A disconnect error after the client left is swallowed (M6: nothing to tell the server);
        any other error sets the error flag (status 500 if nothing was sent); cancellation means
        the server gave up on the connection.

        Args:
            exc: what the app raised.
        """
        if isinstance(exc, _DISCONNECT_ERRORS) and self.disconnected:
            return True
        if isinstance(exc, Exception):
            self._failed()
        elif not self.done:
            self.disconnected = True
        return False

    def _failed(self) -> None:
        self.error = True
        if not self.started:
            self.status = 500

    def snapshot(self, ctx: RequestContext) -> Snapshot:
        """Copy what the record needs into a flat tuple (cheap; see :func:`build_record`).

        The socket peer (``scope["client"]``) and the headers are kept so the client address can
        be resolved off the request path.

        Args:
            ctx: the request context filled by the inner layers.
        """
        scope = self.scope
        return (
            self.ts_us,
            ctx.request_id,
            scope.get("method", "GET"),
            scope.get("path", ""),
            scope.get("query_string", b""),
            scope.get("headers", ()),
            self.status,
            (self.end_ns or time.perf_counter_ns()) - self.start_ns,
            ctx.principal,
            ctx.route,
            scope.get("client"),
            self.bytes_in,
            self.bytes_out,
            ctx.rate_limit,
            ctx.idempotency,
            ctx.rejection,
            self.error,
            self.disconnected,
            ctx.resource_ids,
            ctx.extra,
            scope["type"],
            self.close_code,
        )


class HTTPExchange(_Exchange):
    """Observe one HTTP request/response.

    Args:
        scope: the request scope.
        receive: the server's receive.
        send: the server's send.
        rid_header: the request id header to add to the response.
        ts_us: the arrival time in epoch microseconds.
    """

    __slots__ = ()

    async def receive(self) -> Message:
        """Receive from the server, counting body bytes and noting an early disconnect."""
        msg = await self._receive()
        kind = msg["type"]
        if kind == "http.request":
            self.bytes_in += len(msg.get("body", b""))
        elif kind == "http.disconnect" and not self.done:
            self.disconnected = True  # M1: the client left before the exchange completed
        return msg

    async def send(self, message: Message) -> None:
        """Send to the server, adding the request id header and counting body bytes.

        Args:
            message: the ASGI message.
        """
        kind = message["type"]
        if kind == "http.response.start":
            self.status = message["status"]
            self.started = True
            message = dict(message)
            message["headers"] = _with_header(message.get("headers"), self.rid_header)
        elif kind == "http.response.body":
            self.bytes_out += len(message.get("body", b""))
            if not message.get("more_body", False):
                self.done = True
        try:
            await self._send(message)
        except OSError:
            self.disconnected = True
            raise


class WebSocketExchange(_Exchange):
    """Observe one websocket session (one record for the whole session).

    Args:
        scope: the websocket scope.
        receive: the server's receive.
        send: the server's send.
        rid_header: the request id header to add to the accept.
        ts_us: the arrival time in epoch microseconds.
    """

    __slots__ = ()

    async def receive(self) -> Message:
        """Receive from the server, counting message bytes and noting a client disconnect."""
        msg = await self._receive()
        kind = msg["type"]
        if kind == "websocket.receive":
            data = msg.get("bytes") or msg.get("text") or b""
            self.bytes_in += len(data)
        elif kind == "websocket.disconnect":
            if not self.done:
                self.disconnected = True
                self.close_code = msg.get("code")
            self.done = True
        return msg

    async def send(self, message: Message) -> None:
        """Send to the server, recording accept/close/denial and counting message bytes.

        Args:
            message: the ASGI message.
        """
        kind = message["type"]
        if kind == "websocket.send":
            data = message.get("bytes") or message.get("text") or b""
            self.bytes_out += len(data)
        elif kind == "websocket.accept":
            self.status = 101
            self.started = True
            message = dict(message)
            message["headers"] = _with_header(message.get("headers"), self.rid_header)
        elif kind == "websocket.close":
            if not self.started:
                self.status = 403  # closing before accept is an HTTP 403 denial
                self.started = True
            self.close_code = message.get("code", 1000)
            self.done = True
        elif kind == "websocket.http.response.start":
            self.status = message["status"]
            self.started = True
            message = dict(message)
            message["headers"] = _with_header(message.get("headers"), self.rid_header)
        elif kind == "websocket.http.response.body":
            self.bytes_out += len(message.get("body", b""))
            if not message.get("more_body", False):
                self.done = True
        try:
            await self._send(message)
        except OSError:
            self.disconnected = True
            raise
