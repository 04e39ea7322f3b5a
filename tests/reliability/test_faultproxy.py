"""The fault proxy itself: every mode does what the fault tests rely on."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from tests.support.faultproxy import FaultProxy

pytestmark = pytest.mark.anyio


@pytest.fixture
async def echo() -> AsyncIterator[int]:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(1024):
            writer.write(data)
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    yield int(server.sockets[0].getsockname()[1])
    server.close()


async def _roundtrip(port: int, payload: bytes, wait: float = 2.0) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(payload)
        await writer.drain()
        got = b""
        async with asyncio.timeout(wait):
            while len(got) < len(payload) and (chunk := await reader.read(1024)):
                got += chunk
        return got
    finally:
        writer.close()


async def test_modes(echo: int) -> None:
    """L9, W6 tooling: pass and latency forward, drip delivers byte by byte, cut stops after N
    bytes, black hole never answers, reset drops the connection."""
    async with FaultProxy("127.0.0.1", echo) as proxy:
        assert await _roundtrip(proxy.port, b"hello") == b"hello"
        proxy.set_mode("latency", latency_ms=50)
        assert await _roundtrip(proxy.port, b"slow") == b"slow"
        proxy.set_mode("drip")
        proxy.drip_interval = 0.01
        assert await _roundtrip(proxy.port, b"drip") == b"drip"
        proxy.set_mode("cut", cut_after=3)
        assert await _roundtrip(proxy.port, b"abcdef") == b"abc"
        proxy.set_mode("blackhole")
        with pytest.raises(TimeoutError):
            await _roundtrip(proxy.port, b"void", wait=0.3)
        proxy.set_mode("reset")
        try:
            got = await _roundtrip(proxy.port, b"x")
        except ConnectionError:
            got = b""
        assert got == b""
        proxy.set_mode("pass")
        assert await _roundtrip(proxy.port, b"back") == b"back"
