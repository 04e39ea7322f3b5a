"""A request-body size limit that counts real bytes and cannot be bypassed with chunked bodies.

Mechanism (anchors §0.6, cases R1-R3, M1):

1. ``Content-Length`` is validated first: malformed, negative, duplicated with different values,
   or sent together with ``Transfer-Encoding`` -> 400 ``invalid-content-length``; above the limit
   -> 413 ``request-too-large`` with ``Connection: close`` before the app runs and without reading
   a byte of the body. Write methods without a length -> 411 when ``require_length`` is set.
2. Without a ``Content-Length`` (chunked, HTTP/2) and a limit up to ``read_ahead_limit``, the body
   is read ahead, up to limit + 1 bytes, **before** the app is called: too much -> 413 before the
   app runs; otherwise the buffered body is replayed to the app as one message.
3. Otherwise (bigger limits, or a declared length) ``receive`` is wrapped and counts real bytes,
   so a client whose ``Content-Length`` lies is still held to the limit. When the count passes the
   limit, the app gets ``http.disconnect`` instead of the chunk that crossed it; if the response
   has not started, this middleware sends the 413 itself and drops whatever the app sends
   afterwards (Starlette's and FastAPI's error handlers turn the disconnect into a response that
   is dropped, so the client sees 413, never 500 or a 200 built on a truncated body).

A client that disconnects mid-body reaches the app as ``http.disconnect`` (never as a complete
body). Memory is bounded by the limit: nothing beyond limit + one chunk is ever held.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping

from extapi_kit._types import ASGIApp, Message, Receive, Scope, Send
from extapi_kit._units import parse_duration, parse_size
from extapi_kit.context import SCOPE_KEY, RequestContext, get_context
from extapi_kit.exceptions import ConfigurationError
from extapi_kit.problems import send_problem

__all__ = ["DEFAULT_MAX_BODY", "WRITE_METHODS", "BodySizeLimitMiddleware", "call_with_body_limit"]

logger = logging.getLogger("extapi_kit.body_limit")

DEFAULT_MAX_BODY = "1MiB"
DEFAULT_READ_AHEAD = "1MiB"
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH"})
_CLOSE = ((b"connection", b"close"),)
_MAX_DIGITS = 18  # longer values are above any limit, and int() refuses > 4300 digits anyway


def _parse_rules(rules: Mapping[str, int | str] | None) -> tuple[tuple[str, str, int], ...]:
    parsed: list[tuple[str, str, int]] = []
    for prefix, size in (rules or {}).items():
        if not prefix.startswith("/"):
            raise ConfigurationError(f"body-limit rule path must start with '/': {prefix!r}")
        base = prefix.rstrip("/")
        parsed.append((base or "/", base + "/", parse_size(size)))
    # Longest prefix first, so "/upload/big" beats "/upload".
    parsed.sort(key=lambda rule: len(rule[0]), reverse=True)
    return tuple(parsed)


def _content_length(scope: Scope) -> tuple[int | None, bool]:
    """Return ``(length, valid)``; ``(None, True)`` when there is no Content-Length."""
    values: list[bytes] = []
    chunked = False
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            values.append(value)
        elif name == b"transfer-encoding":
            chunked = True
    if not values:
        return None, True
    if chunked:
        # RFC 9112 §6.3: both headers is a smuggling signal; refuse rather than guess.
        return None, False
    first = values[0]
    if len(values) > 1 or not first.isdigit():
        # Slow path: "5, 5" lists, repeated headers, optional whitespace (RFC 9110 §8.6).
        parts = [part.strip(b" \t") for value in values for part in value.split(b",")]
        first = parts[0]
        if not first.isdigit() or any(part != first for part in parts):
            return None, False
    if len(first) > _MAX_DIGITS:
        return 1 << 62, True
    return int(first), True


class BodySizeLimitMiddleware:
    """Refuse request bodies larger than a limit, counting the bytes actually received.

    The limit for a request is, in order: the matched route's ``RouteSettings.body_limit`` (when a
    registry set one), the longest matching path rule, then ``max_body``. Websocket messages are
    not request bodies (the server's ``ws_max_size`` bounds them) and pass through, as do
    ``lifespan`` and unknown scope types.

    Args:
        app: the ASGI app to protect.
        max_body: the default limit, in bytes or as a size string (``"512KiB"``, ``"10MB"``).
        rules: path prefix -> limit, matched per path segment (``"/upload"`` covers
            ``"/upload/x"``, not ``"/uploads"``); the longest prefix wins.
        require_length: answer 411 to ``POST``/``PUT``/``PATCH`` requests without a
            ``Content-Length`` (chunked uploads are then refused).
        read_ahead_limit: bodies without a length are read ahead before the app runs when the limit
            is at most this size (413 before the app runs); above it they are streamed and counted.
            ``0`` always streams.
        body_timeout: the most time the whole request body may take to arrive (seconds or a
            duration string such as ``"30s"``), counted from the first read. A client that drips
            its body (slowloris, case R4) gets 408 and the connection closed; the app sees a
            disconnect. None (default) sets no deadline.

    Raises:
        ConfigurationError: on a bad size string or rule path.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        max_body: int | str = DEFAULT_MAX_BODY,
        rules: Mapping[str, int | str] | None = None,
        require_length: bool = False,
        read_ahead_limit: int | str = DEFAULT_READ_AHEAD,
        body_timeout: float | str | None = None,
    ) -> None:
        self.app = app
        self.max_body = parse_size(max_body)
        self.rules = _parse_rules(rules)
        self.require_length = bool(require_length)
        self.read_ahead_limit = parse_size(read_ahead_limit)
        self.body_timeout = None if body_timeout is None else parse_duration(body_timeout)
        if self.body_timeout == 0:
            raise ConfigurationError("body_timeout must be positive (or None for no deadline)")

    def __repr__(self) -> str:
        return (
            f"BodySizeLimitMiddleware(max_body={self.max_body}, rules={len(self.rules)}, "
            f"read_ahead_limit={self.read_ahead_limit})"
        )

    def limit_for(self, scope: Scope) -> int:
        """Return the body limit that applies to a request.

        Args:
            scope: an ``http`` scope.
        """
        # Read the context without creating one: most requests have no route settings.
        ctx: RequestContext | None = scope.get(SCOPE_KEY)
        route = ctx.route if ctx is not None else None
        if route is not None and route.body_limit is not None:
            return route.body_limit
        if self.rules:
            path: str = scope.get("path", "")
            for base, prefix, size in self.rules:
                if path == base or path.startswith(prefix):
                    return size
        return self.max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope)
        if self.body_timeout is not None:
            receive = _DeadlineReceive(receive, self.body_timeout).receive
        length, valid = _content_length(scope)
        if not valid:
            await send_problem(
                send,
                "invalid-content-length",
                "Content-Length must be one non-negative integer, without Transfer-Encoding.",
                headers=_CLOSE,
                scope=scope,
            )
            return
        if length is None:
            if self.require_length and scope.get("method", "GET") in WRITE_METHODS:
                await send_problem(
                    send,
                    "length-required",
                    "Send a Content-Length header with the request body.",
                    headers=_CLOSE,
                    scope=scope,
                )
                return
            if limit <= self.read_ahead_limit:
                try:
                    replay = await _read_ahead(receive, limit)
                except _BodyTimeout:
                    await _timed_out(send, scope)
                    return
                if replay is None:
                    await _too_large(send, scope, limit)
                    return
                if replay.disconnected:
                    get_context(scope).extra["client_disconnected"] = True
                await self.app(scope, replay.receive, send)
                return
        elif length > limit:
            await _too_large(send, scope, limit)
            return
        await _CountingResponder(scope, receive, send, limit).run(self.app)


async def call_with_body_limit(
    app: ASGIApp, scope: Scope, receive: Receive, send: Send, limit: int
) -> None:
    """Call ``app`` holding the request body to ``limit`` bytes, once the caller is known.

    The body-size middleware runs before authentication (a cheap refusal before any key work);
    a limit that depends on who is calling (a plan's ``body_limit``, issue 20) is applied after
    it by the auth layer with this: a declared ``Content-Length`` above ``limit`` is a 413 before
    the app runs, and the bytes really received are counted (a lying or absent length is still
    held to it, as in :class:`BodySizeLimitMiddleware`).

    Args:
        app: the ASGI app to call.
        scope: the ``http`` scope.
        receive: the ASGI receive callable.
        send: the ASGI send callable.
        limit: the largest body in bytes.
    """
    length, valid = _content_length(scope)
    if valid and length is not None and length > limit:
        await _too_large(send, scope, limit)
        return
    await _CountingResponder(scope, receive, send, limit).run(app)


class _BodyTimeout(Exception):
    """The request body did not arrive within ``body_timeout``."""


class _DeadlineReceive:
    """Bounds the time the whole body may take; later reads (waiting for a disconnect) are free."""

    __slots__ = ("_deadline", "_done", "_receive", "_timeout")

    def __init__(self, receive: Receive, timeout: float) -> None:
        self._receive = receive
        self._timeout = timeout
        self._deadline: float | None = None
        self._done = False

    async def receive(self) -> Message:
        if self._done:
            return await self._receive()
        loop = asyncio.get_running_loop()
        if self._deadline is None:
            self._deadline = loop.time() + self._timeout
        try:
            async with asyncio.timeout_at(self._deadline):
                message = await self._receive()
        except TimeoutError:
            raise _BodyTimeout from None
        if message["type"] != "http.request" or not message.get("more_body", False):
            self._done = True
        return message


async def _timed_out(send: Send, scope: Scope) -> None:
    await send_problem(
        send,
        "request-timeout",
        "The request body did not arrive in time.",
        headers=_CLOSE,
        scope=scope,
    )


async def _too_large(send: Send, scope: Scope, limit: int) -> None:
    await send_problem(
        send,
        "request-too-large",
        f"The request body exceeds the limit of {limit} bytes.",
        headers=_CLOSE,
        extensions={"max_body": limit},
        scope=scope,
    )


_DISCONNECT: Message = {"type": "http.disconnect"}


class _Replay:
    """Replays a body read ahead, then hands ``receive`` back to the server."""

    __slots__ = ("_body", "_pending", "_receive", "disconnected")

    def __init__(self, body: bytes, disconnected: bool, receive: Receive) -> None:
        self._body = body
        self._pending = True
        self._receive = receive
        self.disconnected = disconnected

    async def receive(self) -> Message:
        if self._pending:
            self._pending = False
            if not self.disconnected:
                return {"type": "http.request", "body": self._body, "more_body": False}
            if self._body:
                # What arrived before the client left, flagged as incomplete (M1).
                return {"type": "http.request", "body": self._body, "more_body": True}
        if self.disconnected:
            return dict(_DISCONNECT)
        # Later calls wait for the disconnect (StreamingResponse listens for it).
        return await self._receive()


async def _read_ahead(receive: Receive, limit: int) -> _Replay | None:
    """Read the whole body if it fits in ``limit``; None when it does not."""
    first = b""
    buf: bytearray | None = None
    size = 0
    while True:
        message = await receive()
        kind = message["type"]
        if kind == "http.request":
            chunk: bytes = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                return None
            if chunk:
                if not first and buf is None:
                    first = chunk
                else:
                    if buf is None:
                        buf = bytearray(first)
                    buf += chunk
            if not message.get("more_body", False):
                return _Replay(first if buf is None else bytes(buf), False, receive)
        elif kind == "http.disconnect":
            return _Replay(first if buf is None else bytes(buf), True, receive)


class _CountingResponder:
    """Counts received bytes; past the limit the app sees a disconnect and the client a 413."""

    __slots__ = (
        "_receive",
        "_send",
        "answered",
        "exceeded",
        "limit",
        "received",
        "scope",
        "started",
    )

    def __init__(self, scope: Scope, receive: Receive, send: Send, limit: int) -> None:
        self.scope = scope
        self._receive = receive
        self._send = send
        self.limit = limit
        self.received = 0
        self.exceeded = False
        self.started = False
        self.answered = False

    async def run(self, app: ASGIApp) -> None:
        try:
            await app(self.scope, self.receive, self.send)
        except Exception:
            if not self.answered:
                raise
            # The app reacted to the disconnect we gave it; the client already has its 413.
            logger.debug("app raised after the body limit answered 413", exc_info=True)

    async def receive(self) -> Message:
        if self.exceeded:
            return dict(_DISCONNECT)
        try:
            message = await self._receive()
        except _BodyTimeout:
            self.exceeded = True
            if self.started:
                ctx = get_context(self.scope)
                if ctx.rejection is None:
                    ctx.rejection = "request-timeout"
            else:
                self.answered = True
                await _timed_out(self._send, self.scope)
            return dict(_DISCONNECT)
        if message["type"] == "http.request":
            self.received += len(message.get("body", b""))
            if self.received > self.limit:
                self.exceeded = True
                if self.started:
                    ctx = get_context(self.scope)
                    if ctx.rejection is None:
                        ctx.rejection = "request-too-large"
                else:
                    self.answered = True
                    await _too_large(self._send, self.scope, self.limit)
                return dict(_DISCONNECT)
        return message

    async def send(self, message: Message) -> None:
        if self.answered:
            return
        if message["type"] == "http.response.start":
            self.started = True
        await self._send(message)
