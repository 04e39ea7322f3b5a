"""A minimal RESP2 client on asyncio's protocol API with automatic pipelining, for hot scripts.

Why not redis-py here: its call path (connection pool checkout, command packing, a reader
coroutine per reply, optional ``wait_for`` per command) costs more than the loopback round trip
itself, and every concurrent caller pays a full round trip on its own connection. This client:

* keeps **one connection** (per Redis server) and never checks anything out;
* takes **pre-encoded command bytes** (callers cache the constant parts of their command);
* **coalesces** every command issued in the same event-loop iteration into one ``write``
  (auto-pipelining, as ioredis and Lettuce do): the first caller schedules a flush with
  ``call_soon``; the others only append. Replies come back in order and resolve futures;
* creates no task, no ``wait_for`` and no timer per call: the deadline is kept per batch (all
  its commands were issued in the same loop iteration, so they share it) by one watchdog timer
  armed at the oldest unanswered batch's deadline.

Failure semantics: a command is never re-sent after it was written (so a decision is never
applied twice). When the connection fails, every pending command fails at once with
:class:`RespConnectionError`. When the oldest unanswered batch passes its deadline (a hung or
overloaded server), the connection is closed and every pending command fails at once with
:class:`RespTimeoutError`: replies come in order, so a later command cannot be answered before
the late one, and nobody waits past its own deadline. A caller that is cancelled (its own
timeout, a client gone) leaves its slot in the queue; its reply is read and dropped, so every
other caller still gets its own reply (the pairing redis-py lost in CVE-2023-28858). The next
call after a failure reconnects.

Cluster (later): the client talks to one node; a cluster-aware version keeps one
:class:`AutoPipeline` per node and routes each command by the slot of its hash tag, so batches
are still formed per connection.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from typing import Any, cast
from urllib.parse import parse_qs, unquote, urlsplit

__all__ = [
    "CLUSTER_REDIRECTS",
    "AutoPipeline",
    "ReplyError",
    "RespConnectionError",
    "RespTimeoutError",
    "encode_command",
    "encode_part",
]


# Error-reply codes of a Redis Cluster meaning "the command did not run on this node": safe to
# send once more to the node that owns the slot.
CLUSTER_REDIRECTS = ("MOVED", "ASK", "TRYAGAIN", "CLUSTERDOWN")


class RespConnectionError(ConnectionError):
    """The connection to Redis failed or was closed while a command waited."""


class RespTimeoutError(TimeoutError):
    """A command was not answered within the deadline; the connection was closed."""


class ReplyError:
    """An error reply (``-ERR ...``), returned as a value (never raised by the parser).

    Args:
        message: the error text.
    """

    __slots__ = ("message",)

    def __init__(self, message: str) -> None:
        self.message = message

    def __repr__(self) -> str:
        return f"ReplyError({self.message!r})"


def encode_part(value: bytes | str | int) -> bytes:
    """Return one RESP bulk string.

    Args:
        value: bytes, text (UTF-8) or an integer.
    """
    if isinstance(value, int):
        value = str(value).encode()
    elif isinstance(value, str):
        value = value.encode()
    return b"$%d\r\n%b\r\n" % (len(value), value)


def encode_command(*parts: bytes | str | int) -> bytes:
    """Return a whole RESP command (an array of bulk strings).

    Args:
        *parts: the command name and its arguments.
    """
    return b"*%d\r\n" % len(parts) + b"".join(encode_part(p) for p in parts)


_INCOMPLETE: Any = object()


def _parse(buf: bytearray, pos: int) -> tuple[Any, int]:
    end = buf.find(b"\r\n", pos)
    if end < 0:
        return _INCOMPLETE, pos
    kind = buf[pos]
    if kind == 58:  # ':' integer
        return int(buf[pos + 1 : end]), end + 2
    if kind == 42:  # '*' array
        n = int(buf[pos + 1 : end])
        if n < 0:
            return None, end + 2
        out = []
        at = end + 2
        for _ in range(n):
            item, nxt = _parse(buf, at)
            if item is _INCOMPLETE:
                return _INCOMPLETE, pos
            out.append(item)
            at = nxt
        return out, at
    if kind == 36:  # '$' bulk string
        n = int(buf[pos + 1 : end])
        if n < 0:
            return None, end + 2
        stop = end + 2 + n
        if len(buf) < stop + 2:
            return _INCOMPLETE, pos
        return bytes(buf[end + 2 : stop]), stop + 2
    if kind == 43:  # '+' simple string
        return bytes(buf[pos + 1 : end]), end + 2
    if kind == 45:  # '-' error
        return ReplyError(buf[pos + 1 : end].decode(errors="replace")), end + 2
    raise RespConnectionError(f"unexpected RESP type byte {kind!r}")


class _Protocol(asyncio.Protocol):
    def __init__(self, owner: AutoPipeline) -> None:
        self.owner = owner
        self.transport: asyncio.Transport | None = None
        self.waiters: deque[asyncio.Future[Any]] = deque()
        self.out: list[bytes] = []
        self.scheduled = False
        self.closed = False
        self.buf = bytearray()
        # Per written batch: [deadline (loop time), commands not answered yet].
        self.inflight: deque[list[float]] = deque()
        self.watchdog: asyncio.Handle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        buf = self.buf
        buf += data
        waiters = self.waiters
        inflight = self.inflight
        pos = 0
        try:
            while waiters and pos < len(buf):
                value, nxt = _parse(buf, pos)
                if value is _INCOMPLETE:
                    break
                pos = nxt
                fut = waiters.popleft()
                if not fut.done():  # a cancelled caller's reply is dropped here
                    fut.set_result(value)
                if inflight:
                    head = inflight[0]
                    head[1] -= 1
                    if head[1] <= 0:
                        inflight.popleft()
        except (ValueError, RespConnectionError) as exc:  # a corrupt stream: start over
            self.fail(RespConnectionError(f"bad reply from redis: {type(exc).__name__}"))
            return
        if pos:
            del buf[:pos]

    def connection_lost(self, exc: Exception | None) -> None:
        self.fail(RespConnectionError("redis connection lost"))

    def flush(self) -> None:
        self.scheduled = False
        out = self.out
        if not out:
            return
        self.out = []
        owner = self.owner
        owner.batches += 1
        owner.commands += len(out)
        if self.closed or self.transport is None:
            return
        self.transport.write(out[0] if len(out) == 1 else b"".join(out))
        deadline = owner.deadline
        if deadline is not None:
            loop = asyncio.get_running_loop()
            at = loop.time() + deadline
            self.inflight.append([at, len(out)])
            if self.watchdog is None:
                self.watchdog = loop.call_at(at, self.check_deadline)

    def check_deadline(self, head: list[float] | None = None, hops: int = 0) -> None:
        self.watchdog = None
        if self.closed or not self.inflight:
            return
        loop = asyncio.get_running_loop()
        first = self.inflight[0]
        if first[0] > loop.time():
            self.watchdog = loop.call_at(first[0], self.check_deadline)
        elif first is not head or hops < 2:
            # After a stalled loop (GC, CPU starvation) the reply may be sitting in the socket:
            # let the loop poll once before calling it late (libuv runs timers before I/O,
            # and call_soon callbacks before the poll of the same iteration).
            self.watchdog = loop.call_soon(
                self.check_deadline, first, hops + 1 if first is head else 1
            )
        else:
            self.fail(RespTimeoutError("redis did not answer within the deadline"))

    def fail(self, exc: Exception) -> None:
        if not self.closed:
            self.closed = True
            if self.transport is not None:
                self.transport.abort()
            if self.watchdog is not None:
                self.watchdog.cancel()
                self.watchdog = None
            self.inflight.clear()
        waiters, self.waiters = self.waiters, deque()
        self.out = []
        for fut in waiters:
            if not fut.done():
                fut.set_exception(exc)


class AutoPipeline:
    """One Redis connection shared by every caller, with commands coalesced per loop iteration.

    Args:
        url: ``redis://[user:password@]host[:port][/db]`` or ``unix:///path?db=N``.
        connect_timeout: seconds a connection (and its ``AUTH``/``SELECT``) may take.
        deadline: seconds a written command may wait for its reply before the connection is
            closed and every pending command fails with :class:`RespTimeoutError`; None: no
            deadline (callers bound their waits themselves).

    Attributes:
        batches: writes sent (each carrying one or more commands).
        commands: commands sent; ``commands / batches`` is the mean batch size.
    """

    def __init__(
        self, url: str, *, connect_timeout: float = 0.5, deadline: float | None = None
    ) -> None:
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in ("redis", "unix"):
            raise ValueError(f"AutoPipeline supports redis:// and unix:// URLs, not {scheme}://")
        query = parse_qs(parts.query)
        db = query.get("db", [""])[0]
        self.path = unquote(parts.path) if scheme == "unix" else None
        if scheme == "redis" and parts.path.strip("/"):
            db = parts.path.strip("/")
        self.host = parts.hostname or "localhost"
        self.port = parts.port or 6379
        self.db = int(db or 0)
        self._username = unquote(parts.username) if parts.username else None
        self._password = unquote(parts.password) if parts.password else None
        self.connect_timeout = connect_timeout
        self.deadline = deadline
        self.batches = 0
        self.commands = 0
        self._proto: _Protocol | None = None
        self._connecting: asyncio.Future[_Protocol] | None = None

    def __repr__(self) -> str:
        where = self.path or f"{self.host}:{self.port}"
        return f"AutoPipeline({where}, db={self.db})"

    @property
    def address(self) -> tuple[str | None, str, int, int]:
        """``(unix path, host, port, db)``: what identifies the server and database."""
        return (self.path, self.host, self.port, self.db)

    def send(self, payload: bytes) -> asyncio.Future[Any]:
        """Queue one pre-encoded command on the live connection; return its reply's future.

        The caller must have a connection (:meth:`execute` makes sure). Error replies resolve
        to :class:`ReplyError`; a connection failure sets :class:`RespConnectionError`.

        Args:
            payload: the whole RESP command.
        """
        proto = self._proto
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        if proto is None or proto.closed:
            fut.set_exception(RespConnectionError("redis connection closed"))
            return fut
        proto.waiters.append(fut)
        proto.out.append(payload)
        if not proto.scheduled:
            proto.scheduled = True
            loop.call_soon(proto.flush)
        return fut

    async def execute(self, payload: bytes) -> Any:
        """Send one pre-encoded command (coalesced with this iteration's others); await its reply.

        The wait is bounded by ``deadline`` (when set); a cancelled caller leaves the others'
        replies paired (see the module docstring).

        Args:
            payload: the whole RESP command.

        Raises:
            RespConnectionError: the connection failed (the command may or may not have run).
            RespTimeoutError: no reply within ``deadline`` (the command may or may not run).
            OSError, TimeoutError: connecting failed.
        """
        proto = self._proto
        if proto is None or proto.closed:
            await self._connect()
        return await self.send(payload)

    @property
    def connected(self) -> bool:
        """Whether a live connection is open (a call will not have to connect first)."""
        proto = self._proto
        return proto is not None and not proto.closed

    async def _connect(self) -> _Protocol:
        connecting = self._connecting
        if connecting is not None:
            return await asyncio.shield(connecting)
        loop = asyncio.get_running_loop()
        connecting = self._connecting = loop.create_future()
        try:
            async with asyncio.timeout(self.connect_timeout):
                proto = await self._open()
        except BaseException as exc:
            self._connecting = None
            if not connecting.done():
                if isinstance(exc, Exception):
                    connecting.set_exception(exc)
                else:
                    connecting.cancel()
                connecting.exception()  # mark retrieved: nobody else may be waiting
            raise
        self._proto = proto
        self._connecting = None
        connecting.set_result(proto)
        return proto

    async def _open(self) -> _Protocol:
        loop = asyncio.get_running_loop()
        proto: _Protocol
        if self.path is not None:
            _, proto = await loop.create_unix_connection(lambda: _Protocol(self), self.path)
        else:
            _, proto = await loop.create_connection(lambda: _Protocol(self), self.host, self.port)
        hello: list[bytes] = []
        if self._password is not None:
            user = () if self._username is None else (self._username,)
            hello.append(encode_command(b"AUTH", *user, self._password))
        if self.db:
            hello.append(encode_command(b"SELECT", self.db))
        try:
            for payload in hello:
                self._proto = proto
                reply = await self.send(payload)
                if isinstance(reply, ReplyError):
                    # Name the failing step only: the server's text may echo a user name.
                    raise RespConnectionError("redis refused the connection handshake")
        except BaseException:
            proto.fail(RespConnectionError("handshake failed"))
            self._proto = None
            raise
        return proto

    async def aclose(self) -> None:
        """Close the connection; pending commands fail."""
        proto, self._proto = self._proto, None
        if proto is not None and not proto.closed:
            proto.fail(RespConnectionError("client closed"))
        with contextlib.suppress(Exception):
            await asyncio.sleep(0)
