"""HTTP/1.1 for the webhook sender: h11 over asyncio streams, with a small keep-alive pool.

httpx/httpcore cost ~0.8 ms of CPU per POST here (anyio socket wrappers, per-request pool
bookkeeping, readability polls); a pinned stream plus h11 does the same exchange for a fraction.
Connections are pooled by ``(scheme, ip, port, host name)``: a TLS connection is only ever reused
for the name it verified (SNI), and a connection goes back to the pool only when h11 says both
sides finished the exchange cleanly and the response was read to its end.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

import h11

__all__ = [
    "Connection",
    "ConnectionPool",
    "PoolKey",
    "Progress",
    "StaleConnectionError",
    "open_connection",
]

# (scheme, ip, port, host name); the name is the SNI and certificate name for https.
PoolKey = tuple[str, str, int, str]
READ_SIZE = 64 * 1024
# Response heads larger than this are a protocol error (httpcore uses the same bound).
MAX_HEAD_SIZE = 100 * 1024


class StaleConnectionError(ConnectionError):
    """A reused keep-alive connection was closed by the peer before any byte of the response."""


@dataclass
class Progress:
    """What arrived of one response so far (kept when the exchange fails half-way)."""

    status: int | None = None
    raw_headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    body: bytearray = field(default_factory=bytearray)
    truncated: bool = False


class Connection:
    """One pinned HTTP/1.1 connection (plain or TLS) and its h11 state machine."""

    __slots__ = ("h11", "idle_since", "key", "reader", "writer")

    def __init__(
        self, key: PoolKey, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.key = key
        self.reader = reader
        self.writer = writer
        self.h11 = h11.Connection(h11.CLIENT, max_incomplete_event_size=MAX_HEAD_SIZE)
        self.idle_since = 0.0

    def abort(self) -> None:
        """Drop the connection at once (no TLS close_notify, no flush)."""
        self.writer.transport.abort()

    def usable_after_idle(self) -> bool:
        """False when the peer closed the idle connection or sent something unasked."""
        if self.reader.at_eof() or self.reader.exception() is not None:
            return False
        if self.writer.transport.is_closing():
            return False
        # Bytes arriving on an idle connection (e.g. an unsolicited 408 before the close) would
        # be taken for the answer to the next request; StreamReader has no public peek.
        return not getattr(self.reader, "_buffer", b"")

    async def request(
        self, head: h11.Request, body: bytes, progress: Progress, cap: int, *, reused: bool
    ) -> bool:
        """Send one request and read its response into ``progress`` (at most ``cap`` body bytes).

        Args:
            head: the request line and headers (with ``content-length``).
            body: the body bytes.
            progress: filled in as the response arrives.
            cap: the most response body bytes read; beyond it the connection is given up.
            reused: this connection carried an earlier exchange; a reset or EOF before any
                response byte then raises :class:`StaleConnectionError` (safe to retry).

        Returns:
            True when the connection can carry another request.
        """
        conn = self.h11
        out = conn.send(head) or b""
        if body:
            out += conn.send(h11.Data(data=body)) or b""
        out += conn.send(h11.EndOfMessage()) or b""
        received = False
        try:
            self.writer.write(out)
            await self.writer.drain()
        except ConnectionError as exc:
            if reused:
                raise StaleConnectionError("keep-alive connection closed by the peer") from exc
            raise
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                try:
                    chunk = await self.reader.read(READ_SIZE)
                except ConnectionError as exc:
                    if reused and not received:
                        raise StaleConnectionError("keep-alive connection reset") from exc
                    raise
                if chunk:
                    received = True
                elif reused and not received:
                    raise StaleConnectionError("keep-alive connection closed by the peer")
                conn.receive_data(chunk)
            elif isinstance(event, h11.Response):
                progress.status = event.status_code
                progress.raw_headers = list(event.headers)
            elif isinstance(event, h11.Data):
                room = cap - len(progress.body)
                if len(event.data) > room:
                    progress.body += event.data[:room]
                    progress.truncated = True
                    return False  # the rest is never read; the caller drops the connection (W7)
                progress.body += event.data
            elif isinstance(event, h11.EndOfMessage):
                return (
                    conn.our_state is h11.DONE
                    and conn.their_state is h11.DONE
                    and conn.trailing_data == (b"", False)
                )
            elif isinstance(event, h11.InformationalResponse):
                if event.status_code == 101:  # never asked for: record it, keep nothing
                    progress.status = event.status_code
                    progress.raw_headers = list(event.headers)
                    return False
            else:  # ConnectionClosed or PAUSED: nothing more for this request
                return False


async def open_connection(key: PoolKey, context: ssl.SSLContext | None) -> Connection:
    """Connect to the pinned IP of ``key``; for https verify the certificate for its host name.

    Args:
        key: ``(scheme, ip, port, host name)``; the IP is a checked address, never resolved again.
        context: the TLS context (required for https).
    """
    scheme, ip, port, name = key
    if scheme == "https":
        reader, writer = await asyncio.open_connection(
            ip, port, ssl=context, server_hostname=name, limit=READ_SIZE
        )
    else:
        reader, writer = await asyncio.open_connection(ip, port, limit=READ_SIZE)
    sock = writer.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return Connection(key, reader, writer)


class ConnectionPool:
    """Idle keep-alive connections by :data:`PoolKey`, at most ``max_idle`` in all.

    Args:
        max_idle: the most idle connections kept (the least recently used go first).
        expiry: idle connections older than this many seconds are closed.
        clock: monotonic time source.
    """

    def __init__(
        self, *, max_idle: int, expiry: float = 30.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.max_idle = max_idle
        self.expiry = expiry
        self._clock = clock
        self._idle: dict[PoolKey, list[Connection]] = {}
        self._order: OrderedDict[Connection, None] = OrderedDict()  # oldest release first

    def __len__(self) -> int:
        return len(self._order)

    def take(self, keys: list[PoolKey]) -> Connection | None:
        """Return a live idle connection for the first of ``keys`` that has one, or None."""
        self._expire(self._clock())
        for key in keys:
            stack = self._idle.get(key)
            while stack:
                conn = stack.pop()  # most recently used: least likely to have been closed
                del self._order[conn]
                if not stack:
                    del self._idle[key]
                if conn.usable_after_idle():
                    return conn
                conn.abort()
        return None

    def put(self, conn: Connection) -> None:
        """Keep a connection whose exchange completed cleanly for the next request."""
        conn.h11.start_next_cycle()
        now = self._clock()
        conn.idle_since = now
        self._idle.setdefault(conn.key, []).append(conn)
        self._order[conn] = None
        while len(self._order) > self.max_idle:
            self._evict(next(iter(self._order)))
        self._expire(now)

    def close(self) -> None:
        """Close every idle connection."""
        for conn in self._order:
            conn.abort()
        self._order.clear()
        self._idle.clear()

    def _expire(self, now: float) -> None:
        limit = now - self.expiry
        while self._order:
            oldest = next(iter(self._order))
            if oldest.idle_since > limit:
                return
            self._evict(oldest)

    def _evict(self, conn: Connection) -> None:
        del self._order[conn]
        stack = self._idle[conn.key]
        stack.remove(conn)
        if not stack:
            del self._idle[conn.key]
        conn.abort()
