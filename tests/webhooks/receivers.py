"""Real webhook receivers for tests, served by uvicorn on 127.0.0.1 in the test's own event loop.

``async with serve(app) as base_url:`` runs ``uvicorn.Server`` on a free port and yields
``http://127.0.0.1:<port>``. The apps are plain ASGI callables; each stops work as soon as the
client disconnects, so the server shuts down promptly even after a timed-out attempt.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from extapi_kit._types import ASGIApp, Receive, Scope, Send
from tests.support.serving import serving

__all__ = [
    "CHUNK",
    "HUGE_SIZE",
    "Drip",
    "Huge",
    "Recorded",
    "Recorder",
    "drip",
    "failing",
    "gone",
    "hang_after_headers",
    "huge",
    "ok",
    "rate_limited",
    "redirect",
    "serve",
    "slow",
]

CHUNK = 64 * 1024
HUGE_SIZE = 64 * 1024 * 1024


@asynccontextmanager
async def serve(
    app: ASGIApp, *, ssl_certfile: str | None = None, ssl_keyfile: str | None = None
) -> AsyncIterator[str]:
    """Serve ``app`` with uvicorn on 127.0.0.1 (free port) for the duration of the block.

    Args:
        app: the ASGI app.
        ssl_certfile: serve HTTPS with this certificate (PEM) ...
        ssl_keyfile: ... and this key.

    Yields:
        The base URL, e.g. ``http://127.0.0.1:54321`` (``https://`` with a certificate).
    """
    async with serving(
        app,
        lifespan="off",
        proxy_headers=True,  # uvicorn's default
        access_log=False,
        timeout_graceful_shutdown=2,
        timeout_keep_alive=5,
        ssl_certfile=ssl_certfile,
        ssl_keyfile=ssl_keyfile,
    ) as base:
        yield base


async def _read_body(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


async def _wait_disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


async def _respond(
    send: Send, status: int, body: bytes = b"", headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    raw = [(b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": raw + (headers or [])})
    await send({"type": "http.response.body", "body": body})


def _only_http(scope: Scope) -> None:
    if scope["type"] != "http":  # lifespan is off; anything else is a test bug
        raise RuntimeError(f"unexpected scope type {scope['type']!r}")


async def ok(scope: Scope, receive: Receive, send: Send) -> None:
    """Answer 204 after reading the body.

    Args:
        scope: the ASGI scope.
        receive: the ASGI receive channel.
        send: the ASGI send channel.
    """
    _only_http(scope)
    await _read_body(receive)
    await _respond(send, 204)


def slow(delay: float, status: int = 200) -> ASGIApp:
    """Answer ``status`` after sleeping ``delay`` seconds (hung endpoints: a large delay).

    Args:
        delay: seconds to wait before answering.
        status: the status to answer with.
    """

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        _only_http(scope)
        await _read_body(receive)
        waiter = asyncio.ensure_future(_wait_disconnect(receive))
        try:
            done, _ = await asyncio.wait({waiter}, timeout=delay)
            if not done:
                await _respond(send, status, b"slow")
        finally:
            waiter.cancel()

    return app


def failing(status: int = 500, body: bytes = b"failure") -> ASGIApp:
    """Answer ``status`` with a small body.

    Args:
        status: the status to answer with.
        body: the response body.
    """

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        _only_http(scope)
        await _read_body(receive)
        await _respond(send, status, body)

    return app


gone: ASGIApp = failing(410, b"gone")


def rate_limited(retry_after: str = "120", status: int = 429) -> ASGIApp:
    """Answer 429 (or ``status``) with ``Retry-After``.

    Args:
        retry_after: the header value (seconds or an HTTP date).
        status: the status to answer with.
    """

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        _only_http(scope)
        await _read_body(receive)
        await _respond(send, status, b"slow down", [(b"retry-after", retry_after.encode())])

    return app


def redirect(
    location: str = "http://169.254.169.254/latest/meta-data/", status: int = 302
) -> ASGIApp:
    """Answer a redirect to ``location`` (by default the cloud metadata address).

    Args:
        location: the ``Location`` header.
        status: the 3xx status.
    """

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        _only_http(scope)
        await _read_body(receive)
        await _respond(send, status, b"", [(b"location", location.encode())])

    return app


@dataclass
class Drip:
    """Answers 200 and then sends one body byte every ``interval`` seconds, ``total`` bytes.

    Args:
        interval: seconds between bytes.
        total: body length in bytes.
        sent: bytes sent so far (read it in tests).
    """

    interval: float = 1.0
    total: int = 3600
    sent: int = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        _only_http(scope)
        await _read_body(receive)
        waiter = asyncio.ensure_future(_wait_disconnect(receive))
        try:
            await send({"type": "http.response.start", "status": 200, "headers": []})
            while self.sent < self.total and not waiter.done():
                await send({"type": "http.response.body", "body": b"x", "more_body": True})
                self.sent += 1
                await asyncio.wait({waiter}, timeout=self.interval)
            if not waiter.done():
                await send({"type": "http.response.body", "body": b""})
        finally:
            waiter.cancel()


def drip(interval: float = 1.0, total: int = 3600) -> Drip:
    """A receiver that drips its body (1 byte per ``interval``, W6).

    Args:
        interval: seconds between bytes.
        total: body length in bytes.
    """
    return Drip(interval, total)


@dataclass
class Huge:
    """Streams a 64 MiB body (W7) and records how many bytes it managed to send.

    Args:
        size: body length in bytes.
        sent: bytes handed to the server so far.
        finished: set when the app has returned.
    """

    size: int = HUGE_SIZE
    sent: int = 0
    finished: asyncio.Event = field(default_factory=asyncio.Event)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        _only_http(scope)
        await _read_body(receive)
        waiter = asyncio.ensure_future(_wait_disconnect(receive))
        chunk = b"y" * CHUNK
        try:
            headers = [(b"content-length", str(self.size).encode())]
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            while self.sent < self.size and not waiter.done():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
                self.sent += len(chunk)
                await asyncio.sleep(0)  # let the disconnect be noticed
        finally:
            waiter.cancel()
            self.finished.set()


def huge(size: int = HUGE_SIZE) -> Huge:
    """A receiver that answers 200 with a ``size``-byte streamed body.

    Args:
        size: body length in bytes (64 MiB by default).
    """
    return Huge(size)


async def hang_after_headers(scope: Scope, receive: Receive, send: Send) -> None:
    """Send 200, headers and one byte, then nothing more until the client goes away.

    Args:
        scope: the ASGI scope.
        receive: the ASGI receive channel.
        send: the ASGI send channel.
    """
    _only_http(scope)
    await _read_body(receive)
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"{", "more_body": True})
    await _wait_disconnect(receive)


@dataclass
class Recorded:
    """One received request.

    Args:
        method: the HTTP method.
        path: the path (no query string).
        headers: lowercase header names; repeated headers joined with ", ".
        body: the raw body.
        client: the peer address.
    """

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    client: tuple[str, int] | None


@dataclass
class Recorder:
    """Stores every request it receives and answers ``status`` (default 200).

    Args:
        status: the status to answer with.
        requests: the requests received, in order.
        received: set after each request (``await recorder.wait_for(n)`` uses it).
    """

    status: int = 200
    requests: list[Recorded] = field(default_factory=list)
    received: asyncio.Event = field(default_factory=asyncio.Event)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        _only_http(scope)
        body = await _read_body(receive)
        headers: dict[str, str] = {}
        for raw_name, raw_value in scope["headers"]:
            name = raw_name.decode("latin-1").lower()
            value = raw_value.decode("latin-1")
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
        client = scope.get("client")
        self.requests.append(
            Recorded(
                scope["method"], scope["path"], headers, body, tuple(client) if client else None
            )
        )
        self.received.set()
        await _respond(send, self.status, b"ok")

    async def wait_for(self, count: int, within: float = 10.0) -> None:
        """Wait until ``count`` requests have arrived.

        Args:
            count: how many requests to wait for.
            within: give up (TimeoutError) after this many seconds.
        """
        async with asyncio.timeout(within):
            while len(self.requests) < count:
                self.received.clear()
                await self.received.wait()
