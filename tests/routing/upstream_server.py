"""A real upstream for proxy tests: uvicorn on 127.0.0.1 in a thread, plus a raw TCP server."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import AsyncIterator

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Route

from extapi_kit._types import ASGIApp


async def _echo(request: Request) -> Response:
    body = b""
    chunks = 0
    async for chunk in request.stream():
        body += chunk
        chunks += 1 if chunk else 0
    return JSONResponse(
        {
            "method": request.method,
            "path": request.url.path,
            "raw_path": request.scope["raw_path"].decode(),
            "query": request.scope["query_string"].decode(),
            "headers": [[k.decode(), v.decode()] for k, v in request.scope["headers"]],
            "body": body.decode(errors="replace"),
        },
        headers={
            "Connection": "close, x-internal-hop",
            "X-Internal-Hop": "1",
            "Keep-Alive": "timeout=5",
        },
    )


async def _slow(request: Request) -> Response:
    await asyncio.sleep(10)
    return Response("late")


async def _drip(request: Request) -> Response:
    async def gen() -> AsyncIterator[bytes]:
        for _ in range(100):
            yield b"x"
            await asyncio.sleep(0.2)

    return StreamingResponse(gen())


async def _huge(request: Request) -> Response:
    async def gen() -> AsyncIterator[bytes]:
        block = b"y" * 65536
        for _ in range(1024):  # 64 MiB if nobody stops reading
            yield block

    return StreamingResponse(gen())


async def _huge_declared(request: Request) -> Response:
    return Response(b"z" * 300_000)


async def _stream(request: Request) -> Response:
    async def gen() -> AsyncIterator[bytes]:
        for i in range(3):
            yield f"part{i};".encode()
            await asyncio.sleep(0.05)

    return StreamingResponse(gen(), media_type="text/plain")


async def _fail(request: Request) -> Response:
    return JSONResponse({"error": "upstream broke"}, status_code=500)


async def _redirect(request: Request) -> Response:
    return RedirectResponse("http://169.254.169.254/latest/meta-data/", status_code=302)


def upstream_app() -> Starlette:
    """The upstream tool's app."""
    return Starlette(
        routes=[
            Route(
                "/base/echo/{rest:path}", _echo, methods=["GET", "POST", "PUT", "DELETE", "HEAD"]
            ),
            Route("/base/slow", _slow),
            Route("/base/drip", _drip),
            Route("/base/huge", _huge),
            Route("/base/huge-declared", _huge_declared),
            Route("/base/stream", _stream),
            Route("/base/fail", _fail),
            Route("/base/redirect", _redirect),
        ]
    )


class UvicornThread:
    """Serve an ASGI app with uvicorn on 127.0.0.1 (random port) in a daemon thread.

    Args:
        app: the ASGI app.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        config = uvicorn.Config(
            app,
            log_level="critical",
            lifespan="off",
            ws="none",
            proxy_headers=False,
            timeout_graceful_shutdown=1,
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True
        )

    @property
    def url(self) -> str:
        """The server's base URL."""
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        """Start and wait until the server accepts connections."""
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started and time.monotonic() < deadline:
            time.sleep(0.02)

    def stop(self) -> None:
        """Stop the server."""
        self.server.should_exit = True
        self.thread.join(5)
        self.sock.close()


class RawHTTPServer:
    """A TCP server that answers every connection with fixed raw bytes (malformed on purpose).

    Args:
        responses: path -> raw HTTP response bytes.
    """

    def __init__(self, responses: dict[str, bytes]) -> None:
        self.responses = responses
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self._stop = False
        self.thread = threading.Thread(target=self._serve, daemon=True)

    @property
    def url(self) -> str:
        """The server's base URL."""
        return f"http://127.0.0.1:{self.port}"

    def _serve(self) -> None:
        self.sock.settimeout(0.2)
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            with conn:
                conn.settimeout(2)
                data = b""
                try:
                    while b"\r\n\r\n" not in data:
                        chunk = conn.recv(65536)
                        if not chunk:
                            break
                        data += chunk
                    path = data.split(b" ", 2)[1].decode() if data.count(b" ") >= 2 else "/"
                    conn.sendall(
                        self.responses.get(
                            path, b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"
                        )
                    )
                except OSError:
                    pass

    def start(self) -> None:
        """Start serving."""
        self.thread.start()

    def stop(self) -> None:
        """Stop serving."""
        self._stop = True
        self.thread.join(2)
        self.sock.close()


def raw_responses() -> dict[str, bytes]:
    """Malformed upstream answers for W12."""

    def resp(headers: bytes) -> bytes:
        return (
            b"HTTP/1.1 200 OK\r\n" + headers + b"Content-Length: 2\r\nConnection: close\r\n\r\nok"
        )

    return {
        "/crlf": resp(b"X-Evil: a\rSet-Cookie: pwned=1\r\n"),
        "/lf": resp(b"X-Evil: a\nSet-Cookie: pwned=1\r\n"),
        "/nul": resp(b"X-Evil: a\x00b\r\n"),
        "/big-value": resp(b"X-Big: " + b"v" * 10_000 + b"\r\n"),
        "/huge-headers": resp(b"".join(b"X-H%d: %s\r\n" % (i, b"v" * 1000) for i in range(80))),
        "/many-headers": resp(b"".join(b"X-H%d: 1\r\n" % i for i in range(150))),
        "/ok": resp(b"X-Fine: yes\r\n"),
        "/te-cl": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n"
        b"2\r\nok\r\n0\r\n\r\n",
        "/json": json.dumps({}).encode(),
    }
