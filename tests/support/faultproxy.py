"""A pure-Python TCP fault proxy (toxiproxy-lite) for tests.

Listens on ``127.0.0.1:0`` in front of a target (Redis, an HTTP receiver) and forwards bytes in
both directions. The mode can be switched at runtime and applies to data forwarded from then on:

- ``pass``: forward as is.
- ``latency``: delay every chunk by ``latency_ms``.
- ``drip``: forward one byte per ``drip_interval`` seconds (1 B/s by default).
- ``blackhole``: accept and read, never forward (and never connect upstream for new clients).
- ``reset``: close every connection with ``SO_LINGER 0`` (the peer sees a reset).
- ``cut``: forward ``cut_after`` more bytes of the reply (target → client), then close.

Usage::

    async with FaultProxy("127.0.0.1", redis_port) as proxy:
        url = f"redis://127.0.0.1:{proxy.port}/0"
        proxy.set_mode("latency", latency_ms=500)
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from types import TracebackType

MODES = ("pass", "latency", "drip", "blackhole", "reset", "cut")


class FaultProxy:
    """An asyncio TCP proxy whose fault mode can be switched while connections are open.

    Args:
        host: target host.
        port: target port.
        max_connections: connections beyond this are refused at once (bounded).
    """

    def __init__(self, host: str, port: int, *, max_connections: int = 256) -> None:
        self.target = (host, port)
        self.max_connections = max_connections
        self.mode = "pass"
        self.latency_ms = 0.0
        self.drip_interval = 1.0
        self.cut_after = 0
        self.port = 0
        self.connections = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    def set_mode(self, mode: str, *, latency_ms: float = 0.0, cut_after: int = 0) -> None:
        """Switch the fault mode; ``reset`` also resets every open connection at once.

        Args:
            mode: one of :data:`MODES`.
            latency_ms: delay per chunk for ``latency``.
            cut_after: bytes still forwarded per connection for ``cut``.
        """
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}")
        self.mode, self.latency_ms, self.cut_after = mode, latency_ms, cut_after
        if mode == "reset":
            for w in list(self._writers):
                self._reset(w)

    async def start(self) -> FaultProxy:
        """Start listening on a free loopback port (``self.port``)."""
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self

    async def stop(self) -> None:
        """Stop listening and close every open connection."""
        if self._server is not None:
            self._server.close()
        for w in list(self._writers):
            w.close()
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)

    async def __aenter__(self) -> FaultProxy:
        return await self.start()

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    def _reset(self, writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.transport.abort()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.connections >= self.max_connections or self.mode == "reset":
            self._reset(writer)
            return
        self.connections += 1
        self._writers.add(writer)
        up_writer: asyncio.StreamWriter | None = None
        try:
            while self.mode == "blackhole":  # accept, never connect: drain what the client sends
                if not await reader.read(65536):
                    return
            up_reader, up_writer = await asyncio.open_connection(*self.target)
            self._writers.add(up_writer)
            await asyncio.gather(
                self._pipe(reader, up_writer, None), self._pipe(up_reader, writer, [self.cut_after])
            )
        except OSError:
            pass
        finally:
            self.connections -= 1
            for w in (writer, up_writer):
                if w is not None:
                    self._writers.discard(w)
                    w.close()

    async def _pipe(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, budget: list[int] | None
    ) -> None:
        try:
            while data := await reader.read(65536):
                if self.mode == "blackhole":
                    continue
                if self.mode == "reset":
                    self._reset(writer)
                    return
                if self.mode == "latency":
                    await asyncio.sleep(self.latency_ms / 1000)
                left = budget[0] if budget is not None and self.mode == "cut" else None
                if left is not None and budget is not None:
                    data = data[: max(left, 0)]
                    budget[0] = left = left - len(data)
                for i in range(len(data)) if self.mode == "drip" else ():
                    writer.write(data[i : i + 1])
                    await writer.drain()
                    await asyncio.sleep(self.drip_interval)
                if self.mode != "drip":
                    writer.write(data)
                    await writer.drain()
                if left is not None and left <= 0:
                    return
        except OSError:
            pass
        finally:
            with contextlib.suppress(Exception):
                writer.close()
