"""Both guards under uvicorn on 127.0.0.1, driven by a raw socket client (R1-R3, M1, M4, M5, Z5).

Raw sockets, because the test client hides what a hostile client sends: chunked bodies, lying
lengths, half-sent bodies and forged forwarding headers.
"""

from __future__ import annotations

import contextlib
import json
import select
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any

import anyio
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from extapi_kit import get_context
from extapi_kit._types import ASGIApp
from extapi_kit.middleware.body_limit import BodySizeLimitMiddleware
from extapi_kit.middleware.ip_allowlist import IPAllowlistMiddleware

LIMIT = 1000
BIG_LIMIT = 200_000  # above read_ahead_limit: the streaming mechanism decides


class State:
    """What the app saw, shared with the test thread."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.events: list[dict[str, Any]] = []
        self.lifespan: list[str] = []
        self.release = threading.Event()

    def record(self, **event: Any) -> None:
        with self.lock:
            self.events.append(event)

    def wait_for(self, count: int) -> list[dict[str, Any]]:
        for _ in range(500):  # bounded: 5 s at most
            with self.lock:
                if len(self.events) >= count:
                    return list(self.events)
            time.sleep(0.01)
        raise AssertionError(f"app recorded {self.events!r}, expected {count} events")


def build_app(state: State, *, allow: tuple[str, ...] = ("127.0.0.1",)) -> ASGIApp:
    async def upload(request: Request) -> Response:
        size = 0
        try:
            async for chunk in request.stream():
                size += len(chunk)
        except ClientDisconnect:
            state.record(path=request.url.path, size=size, complete=False)
            return Response(status_code=400)
        state.record(path=request.url.path, size=size, complete=True)
        return JSONResponse({"size": size})

    async def whoami(request: Request) -> Response:
        return JSONResponse({"ip": get_context(request.scope).client_ip})

    async def sse(request: Request) -> Response:
        async def events() -> AsyncIterator[bytes]:
            yield b"data: first\n\n"
            for _ in range(1000):  # bounded wait for the client to confirm the first event
                if state.release.is_set():
                    break
                await anyio.sleep(0.005)
            yield b"data: second\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        state.lifespan.append("startup")
        yield
        state.lifespan.append("shutdown")

    routes = [
        Route("/upload", upload, methods=["POST"]),
        Route("/big", upload, methods=["POST"]),
        Route("/ip", whoami),
        Route("/sse", sse),
    ]
    inner = IPAllowlistMiddleware(Starlette(routes=routes, lifespan=lifespan), allow=allow)
    return BodySizeLimitMiddleware(
        inner, max_body=LIMIT, rules={"/big": BIG_LIMIT}, read_ahead_limit="64KiB"
    )


@contextlib.contextmanager
def serve(app: ASGIApp, *, proxy_headers: bool = False) -> Iterator[int]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port: int = sock.getsockname()[1]
    config = uvicorn.Config(
        app,
        lifespan="on",
        proxy_headers=proxy_headers,
        http="h11",
        ws="none",
        log_level="warning",
        access_log=False,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        for _ in range(500):
            if server.started:
                break
            time.sleep(0.01)
        assert server.started, "uvicorn did not start"
        yield port
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


@pytest.fixture(scope="module")
def running() -> Iterator[tuple[int, State]]:
    state = State()
    with serve(build_app(state)) as port:
        yield port, state


@pytest.fixture
def server(running: tuple[int, State]) -> tuple[int, State]:
    port, state = running
    with state.lock:
        state.events.clear()
    state.release.clear()
    return port, state


def exchange(
    port: int, head: str, parts: Sequence[bytes] = (), *, source: str = "127.0.0.1"
) -> tuple[int, dict[str, str], bytes]:
    """Send a request head and body parts, stopping early once the server answers."""
    with socket.create_connection(("127.0.0.1", port), timeout=5, source_address=(source, 0)) as s:
        s.sendall(head.replace("\n", "\r\n").encode() + b"\r\n")
        for part in parts:
            if select.select([s], [], [], 0)[0]:
                break  # the server answered already (413 before the body was sent)
            with contextlib.suppress(ConnectionError):
                s.sendall(part)
        data = b""
        while b"\r\n\r\n" not in data or len(data) < expected_length(data):
            try:
                chunk = s.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            data += chunk
    head_bytes, _, body = data.partition(b"\r\n\r\n")
    lines = head_bytes.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return int(lines[0].split()[1]), headers, body


def expected_length(data: bytes) -> int:
    head, sep, _ = data.partition(b"\r\n\r\n")
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return len(head) + len(sep) + int(value)
    return 1 << 40  # no length: read to close


def chunk(data: bytes) -> bytes:
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


CHUNKED = "POST {path} HTTP/1.1\nHost: t\nTransfer-Encoding: chunked\nConnection: close\n"


def test_lifespan_startup_and_shutdown_run_through_both_guards() -> None:
    """M5: under uvicorn lifespan="on" the wrapped app's startup and shutdown both run."""
    state = State()
    with serve(build_app(state)) as port:
        assert state.lifespan == ["startup"]
        status, _, _ = exchange(port, "GET /ip HTTP/1.1\nHost: t\nConnection: close\n")
        assert status == 200
    assert state.lifespan == ["startup", "shutdown"]


def test_small_chunked_body_is_delivered(server: tuple[int, State]) -> None:
    """R2: a chunked body under the limit reaches the app complete."""
    port, state = server
    status, _, body = exchange(
        port, CHUNKED.format(path="/upload"), [chunk(b"a" * 300), chunk(b"b" * 300), b"0\r\n\r\n"]
    )
    assert (status, json.loads(body)) == (200, {"size": 600})
    assert state.wait_for(1) == [{"path": "/upload", "size": 600, "complete": True}]


def test_chunked_over_limit_is_413_before_the_app_runs(server: tuple[int, State]) -> None:
    """R2: a chunked body over a read-ahead limit gets 413 + Connection: close; app never runs."""
    port, state = server
    parts = [chunk(b"x" * 400) for _ in range(5)] + [b"0\r\n\r\n"]
    status, headers, body = exchange(port, CHUNKED.format(path="/upload"), parts)
    assert status == 413
    assert headers["connection"] == "close"
    assert json.loads(body)["type"].endswith("/request-too-large")
    assert state.events == []


def test_chunked_over_large_limit_is_413_via_streaming(server: tuple[int, State]) -> None:
    """R2: above read_ahead_limit the streamed count stops the app at <= limit bytes; 413."""
    port, state = server
    parts = [chunk(b"x" * 16384) for _ in range(40)] + [b"0\r\n\r\n"]
    status, _, _ = exchange(port, CHUNKED.format(path="/big"), parts)
    assert status == 413
    (event,) = state.wait_for(1)
    assert event["complete"] is False
    assert event["size"] <= BIG_LIMIT


def test_content_length_over_limit_is_413_without_reading_the_body(
    server: tuple[int, State],
) -> None:
    """R1: only the head is sent; a Content-Length over the limit is answered 413 at once."""
    port, state = server
    head = "POST /upload HTTP/1.1\nHost: t\nContent-Length: 10000000\n"
    status, headers, _ = exchange(port, head)
    assert (status, headers["connection"]) == (413, "close")
    assert state.events == []


def test_lying_content_length_never_gives_the_app_more_than_declared(
    server: tuple[int, State],
) -> None:
    """R3: Content-Length: 10 followed by 5,000 bytes: the app sees 10 bytes, never the rest."""
    port, state = server
    head = "POST /upload HTTP/1.1\nHost: t\nContent-Length: 10\n"
    status, _, body = exchange(port, head, [b"y" * 5000])
    assert (status, json.loads(body)) == (200, {"size": 10})
    assert state.wait_for(1) == [{"path": "/upload", "size": 10, "complete": True}]


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_disconnect_mid_body_is_not_a_complete_body(
    server: tuple[int, State], framing: str
) -> None:
    """M1: the client sends 300 of 900 bytes and closes: the app sees a disconnect, not a body."""
    port, state = server
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        if framing == "chunked":
            s.sendall(CHUNKED.format(path="/upload").replace("\n", "\r\n").encode() + b"\r\n")
            s.sendall(chunk(b"z" * 300))
        else:
            head = "POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: 900\r\n\r\n"
            s.sendall(head.encode() + b"z" * 300)
        time.sleep(0.05)  # let the server read the partial body before the connection drops
    (event,) = state.wait_for(1)
    assert event["complete"] is False
    assert event["size"] <= 300


def test_spoofed_forwarded_for_cannot_reach_an_allowlisted_address(
    server: tuple[int, State],
) -> None:
    """Z5: from 127.0.0.2, X-Forwarded-For: 127.0.0.1 (allowlisted) is ignored -> 403."""
    port, _ = server
    head = "GET /ip HTTP/1.1\nHost: t\nX-Forwarded-For: 127.0.0.1\nConnection: close\n"
    status, _, body = exchange(port, head, source="127.0.0.2")
    assert status == 403
    assert b"127.0.0" not in body
    status, _, body = exchange(port, head)
    assert (status, json.loads(body)) == (200, {"ip": "127.0.0.1"})


def test_uvicorn_proxy_headers_would_let_the_spoof_through() -> None:
    """Z5: why the docs say --no-proxy-headers: uvicorn's default rewrites the client from XFF."""
    state = State()
    with serve(build_app(state, allow=("10.0.0.1",)), proxy_headers=True) as port:
        head = "GET /ip HTTP/1.1\nHost: t\nX-Forwarded-For: 10.0.0.1\nConnection: close\n"
        status, _, _ = exchange(port, head)
    assert status == 200  # fooled: uvicorn trusts 127.0.0.1 by default and rewrote scope["client"]


def test_sse_streams_first_event_before_the_response_completes(server: tuple[int, State]) -> None:
    """M4: an SSE response passes through both guards unbuffered: event 1 arrives before event 2."""
    port, state = server
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"GET /sse HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        data = b""
        while b"data: first" not in data:
            piece = s.recv(65536)
            assert piece, "connection closed before the first event"
            data += piece
        assert b"data: second" not in data
        state.release.set()
        while piece := s.recv(65536):
            data += piece
    assert b"text/event-stream" in data
    assert b"data: second" in data
