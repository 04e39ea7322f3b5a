"""WebhookSender keep-alive pool against real sockets: reuse, idle closes, SNI isolation, caps.

Most tests use a raw asyncio HTTP/1.1 server whose answer per request is scripted (answer, close
without answering, reset, partial answer), so the pool's reuse and retry rules can be pinned
exactly; one uses uvicorn to show reuse against a real server.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import ssl
import struct
import subprocess
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import h11
import pytest

from extapi_kit.webhooks._http11 import ConnectionPool, Progress, open_connection
from extapi_kit.webhooks.sender import WebhookSender
from extapi_kit.webhooks.ssrf import URLGuard
from tests.webhooks.receivers import Recorder, serve

pytestmark = pytest.mark.anyio
BODY = b'{"type":"ping","data":{}}'
LOOPBACK = URLGuard(allow_loopback=True)
OK = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"
# What the server does with request ``n`` on connection ``c``.
Plan = Callable[[int, int], str]
ANSWERS = {
    "ok": OK,
    "ok-close": OK,  # keep-alive answer, then the server closes the idle connection
    "close-header": b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 2\r\n\r\nok",
    "ok+junk": OK + b"HTTP/1.1 408 Request Timeout\r\ncontent-length: 0\r\n\r\n",
    "big": b"HTTP/1.1 200 OK\r\ncontent-length: 30000\r\n\r\n" + b"z" * 30_000,
    "partial": b"HTTP/1.1 200 OK\r\n",
}


@dataclass
class RawServer:
    """Counts connections, requests (connection number, request number) and client closes."""

    plan: Plan
    hold: int = 0  # answer nothing until this many requests have arrived
    connections: int = 0
    requests: list[tuple[int, int]] = field(default_factory=list)
    closed_by_client: int = 0
    ended: int = 0
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    async def wait(self, ready: Callable[[], bool]) -> None:
        async with asyncio.timeout(10):
            while not ready():
                self.changed.clear()
                await self.changed.wait()

    def _note(self) -> None:
        self.changed.set()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = self.connections
        self.connections += 1
        number = 0
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    self.closed_by_client += 1
                    return
                length = 0
                for line in head.split(b"\r\n"):
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                await reader.readexactly(length)
                self.requests.append((conn, number))
                self._note()
                await self.wait(lambda: len(self.requests) >= self.hold)
                action = self.plan(conn, number)
                number += 1
                if action == "drop":
                    return
                if action == "reset":
                    sock = writer.get_extra_info("socket")
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    writer.transport.abort()
                    return
                writer.write(ANSWERS[action])
                await writer.drain()
                if action in ("ok-close", "close-header", "partial"):
                    return
        finally:
            writer.close()
            self.ended += 1
            self._note()


@asynccontextmanager
async def raw_server(
    plan: Plan = lambda conn, n: "ok", *, context: ssl.SSLContext | None = None, hold: int = 0
) -> AsyncIterator[tuple[RawServer, int]]:
    state = RawServer(plan, hold=hold)
    tasks: set[asyncio.Task[None]] = set()

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            tasks.add(task)
        await state.handle(reader, writer)

    server = await asyncio.start_server(on_connect, "127.0.0.1", 0, ssl=context)
    try:
        yield state, server.sockets[0].getsockname()[1]
    finally:
        server.close()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await server.wait_closed()


async def _send_n(sender: WebhookSender, url: str, n: int) -> list[bool]:
    return [(await sender.send(url, {}, BODY)).ok for _ in range(n)]


async def test_keepalive_one_connection_carries_many_deliveries() -> None:
    """Sequential deliveries to one uvicorn endpoint share a single kept-alive TCP connection."""
    recorder = Recorder()
    async with serve(recorder) as base, WebhookSender(guard=LOOPBACK) as sender:
        assert await _send_n(sender, f"{base}/in", 20) == [True] * 20
    clients = {req.client for req in recorder.requests}
    assert len(recorder.requests) == 20 and len(clients) == 1


async def test_keepalive_raw_count() -> None:
    """The raw server sees one connection for many deliveries (keep-alive reuse)."""
    async with raw_server() as (srv, port), WebhookSender(guard=LOOPBACK) as sender:
        assert await _send_n(sender, f"http://127.0.0.1:{port}/", 10) == [True] * 10
    assert srv.connections == 1 and srv.requests == [(0, n) for n in range(10)]


async def test_server_closing_idle_connection_is_not_a_failure() -> None:
    """A receiver that closes the keep-alive connection after answering costs no failure."""
    plan: Plan = lambda conn, n: "ok-close"  # noqa: E731
    async with raw_server(plan) as (srv, port), WebhookSender(guard=LOOPBACK) as sender:
        url = f"http://127.0.0.1:{port}/"
        first = await sender.send(url, {}, BODY)
        await srv.wait(lambda: srv.ended == 1)  # the server has closed the idle connection
        second = await sender.send(url, {}, BODY)
        third = await sender.send(url, {}, BODY)
    assert first.ok and second.ok and third.ok, (first, second, third)
    assert srv.connections == 3 and len(srv.requests) == 3


@pytest.mark.parametrize("action", ["drop", "reset"])
async def test_keepalive_race_retried_once_on_fresh_connection(action: str) -> None:
    """A reused connection closed (or reset) before any answer byte is retried once, fresh."""
    plan: Plan = lambda conn, n: action if (conn, n) == (0, 1) else "ok"  # noqa: E731
    async with raw_server(plan) as (srv, port), WebhookSender(guard=LOOPBACK) as sender:
        url = f"http://127.0.0.1:{port}/"
        first = await sender.send(url, {}, BODY)
        second = await sender.send(url, {}, BODY)
    assert first.ok and second.ok, second
    assert srv.connections == 2 and srv.requests == [(0, 0), (0, 1), (1, 0)]


async def test_retry_happens_at_most_once() -> None:
    """When the fresh connection also closes without an answer, the attempt fails; no third try."""
    plan: Plan = lambda conn, n: "ok" if (conn, n) == (0, 0) else "drop"  # noqa: E731
    async with raw_server(plan) as (srv, port), WebhookSender(guard=LOOPBACK) as sender:
        url = f"http://127.0.0.1:{port}/"
        assert (await sender.send(url, {}, BODY)).ok
        failed = await sender.send(url, {}, BODY)
    assert failed.error == "connection_error" and failed.status is None
    assert srv.connections == 2 and srv.requests == [(0, 0), (0, 1), (1, 0)]


async def test_fresh_connection_closed_without_answer_is_not_retried() -> None:
    """On a new connection a close without answer is a connection_error, not a retry."""
    plan: Plan = lambda conn, n: "drop"  # noqa: E731
    async with raw_server(plan) as (srv, port), WebhookSender(guard=LOOPBACK) as sender:
        result = await sender.send(f"http://127.0.0.1:{port}/", {}, BODY)
    assert result.error == "connection_error" and srv.connections == 1


async def test_reused_connection_failing_mid_answer_is_not_retried() -> None:
    """Once answer bytes arrived, a broken reused connection fails the attempt (no resend)."""
    plan: Plan = lambda conn, n: "partial" if n == 1 else "ok"  # noqa: E731
    async with raw_server(plan) as (srv, port), WebhookSender(guard=LOOPBACK) as sender:
        url = f"http://127.0.0.1:{port}/"
        assert (await sender.send(url, {}, BODY)).ok
        failed = await sender.send(url, {}, BODY)
    assert failed.error == "connection_error" and not failed.ok
    assert srv.connections == 1 and srv.requests == [(0, 0), (0, 1)]


@pytest.mark.parametrize("action", ["close-header", "ok+junk", "big"])
async def test_connection_not_reused_unless_exchange_was_clean(action: str) -> None:
    """Connection: close, bytes after the answer, or a truncated body (W7) retire the connection."""
    plan: Plan = lambda conn, n: action  # noqa: E731
    async with raw_server(plan) as (srv, port), WebhookSender(guard=LOOPBACK) as sender:
        results = [await sender.send(f"http://127.0.0.1:{port}/", {}, BODY) for _ in range(3)]
    assert all(r.ok and r.status == 200 for r in results), results
    assert srv.connections == 3 and srv.requests == [(0, 0), (1, 0), (2, 0)]
    if action == "big":
        assert all(r.response_excerpt.endswith("[truncated]") for r in results)
    else:
        assert all(r.response_excerpt == "ok" for r in results)


async def test_pool_keeps_at_most_max_connections_idle() -> None:
    """With max_connections=2, four parallel deliveries leave two idle connections, not four."""
    async with raw_server(hold=4) as (srv, port):
        async with WebhookSender(guard=LOOPBACK, max_connections=2) as sender:
            url = f"http://127.0.0.1:{port}/"
            first = await asyncio.gather(*(sender.send(url, {}, BODY) for _ in range(4)))
            assert all(r.ok for r in first) and srv.connections == 4
            await srv.wait(lambda: srv.closed_by_client == 2)
            again = await asyncio.gather(*(sender.send(url, {}, BODY) for _ in range(2)))
            assert all(r.ok for r in again)
            assert srv.connections == 4 and srv.closed_by_client == 2
        await srv.wait(lambda: srv.closed_by_client == 4)  # aclose() closes the idle ones


async def test_idle_connections_expire() -> None:
    """An idle connection older than the expiry is closed instead of reused (fake clock)."""
    now = [0.0]
    pool = ConnectionPool(max_idle=4, expiry=30.0, clock=lambda: now[0])
    async with raw_server() as (srv, port):
        key = ("http", "127.0.0.1", port, "127.0.0.1")
        conn = await open_connection(key, None)
        assert await conn.request(_request_head(port), b"", Progress(), 100, reused=False)
        pool.put(conn)
        now[0] = 29.0
        again = pool.take([key])
        assert again is conn
        assert await conn.request(_request_head(port), b"", Progress(), 100, reused=True)
        pool.put(conn)
        now[0] = 59.5
        assert pool.take([key]) is None and len(pool) == 0
        await srv.wait(lambda: srv.closed_by_client == 1)
    assert srv.connections == 1


async def test_idle_connection_closed_by_peer_is_not_handed_out() -> None:
    """A pooled connection whose peer closed it while idle is dropped by take(), not reused."""
    plan: Plan = lambda conn, n: "ok-close"  # noqa: E731
    pool = ConnectionPool(max_idle=4)
    async with raw_server(plan) as (_srv, port):
        key = ("http", "127.0.0.1", port, "127.0.0.1")
        conn = await open_connection(key, None)
        assert await conn.request(_request_head(port), b"", Progress(), 100, reused=False)
        pool.put(conn)
        async with asyncio.timeout(10):
            assert await conn.reader.read(1) == b""  # wait for the server's FIN
        assert pool.take([key]) is None and len(pool) == 0
    assert conn.writer.transport.is_closing()


def _request_head(port: int) -> h11.Request:
    return h11.Request(
        method="POST", target="/", headers=[("host", f"127.0.0.1:{port}"), ("content-length", "0")]
    )


# TLS: one certificate valid for a.example and b.example, served on one IP and port.
@dataclass
class TLSSetup:
    cert: str
    server: ssl.SSLContext  # a fresh server context per test (tests set sni_callback)
    resolved: list[str] = field(default_factory=list)

    def sender(self) -> WebhookSender:
        """A sender resolving every name to 127.0.0.1 and trusting the throwaway certificate."""

        async def resolve(host: str, port: int) -> list[str]:
            self.resolved.append(host)
            return ["127.0.0.1"]

        sender = WebhookSender(guard=URLGuard(allow_loopback=True, resolver=resolve))
        sender._ssl = ssl.create_default_context(cafile=self.cert)  # test-only trust
        return sender


@pytest.fixture(scope="module")
def two_names_pem(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    if shutil.which("openssl") is None:
        pytest.skip("openssl CLI not available to make a test certificate")
    tmp = tmp_path_factory.mktemp("tls2")
    cert, key = str(tmp / "cert.pem"), str(tmp / "key.pem")
    args = "req -x509 -nodes -days 2 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1"
    san = "subjectAltName=DNS:a.example,DNS:b.example"
    command = ["openssl", *args.split(), "-keyout", key, "-out", cert, "-subj", "/CN=a.example"]
    subprocess.run([*command, "-addext", san], check=True, capture_output=True)
    return cert, key


@pytest.fixture
def tls(two_names_pem: tuple[str, str]) -> TLSSetup:
    cert, key = two_names_pem
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(cert, key)
    return TLSSetup(cert, server)


async def test_tls_connection_never_reused_for_another_name(tls: TLSSetup) -> None:
    """A TLS connection opened with SNI a.example never carries b.example's request (W3)."""
    names: list[str | None] = []

    def on_sni(obj: ssl.SSLObject, name: str | None, context: ssl.SSLContext) -> None:
        names.append(name)

    tls.server.sni_callback = on_sni
    async with raw_server(context=tls.server) as (srv, port), tls.sender() as sender:
        results = [
            await sender.send(f"https://{name}.example:{port}/", {}, BODY)
            for name in ("a", "b", "a", "b")
        ]
    assert all(r.ok for r in results), results
    assert names == ["a.example", "b.example"] and srv.connections == 2
    assert srv.requests == [(0, 0), (1, 0), (0, 1), (1, 1)]
    assert tls.resolved == ["a.example", "b.example", "a.example", "b.example"]


@pytest.mark.parametrize("action", ["drop", "reset", "ok-close"])
async def test_tls_keepalive_race_retried_once(tls: TLSSetup, action: str) -> None:
    """Over TLS too, a reused connection the receiver closed or reset costs no failure."""
    at = (0, 0) if action == "ok-close" else (0, 1)
    plan: Plan = lambda conn, n: action if (conn, n) == at else "ok"  # noqa: E731
    async with raw_server(plan, context=tls.server) as (srv, port), tls.sender() as sender:
        results = [await sender.send(f"https://a.example:{port}/", {}, BODY) for _ in range(3)]
    assert all(r.ok for r in results), results
    assert srv.connections == 2
