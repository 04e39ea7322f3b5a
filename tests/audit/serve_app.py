"""A small app for the uvicorn end-to-end audit tests (run as ``python -m tests.audit.serve_app``).

Usage: ``python -m tests.audit.serve_app PORT SQLITE_PATH``. Paths simulate the stack's outcomes:
``/ok`` (200, authenticated), ``/unauth`` (401), ``/forbidden`` (403), ``/large`` (413),
``/limited`` (429), plus ``/stream`` and ``/sse`` that hold after their first chunk until
``/release?name=...`` is called, so a test can prove the first byte arrives before the body ends.
"""

from __future__ import annotations

import asyncio
import sys

import uvicorn

from extapi_kit._types import ASGIApp, Receive, Scope, Send
from extapi_kit.context import Principal, RateLimitInfo, get_context
from extapi_kit.middleware.audit import AuditMiddleware
from extapi_kit.problems import send_problem

STREAM_CHUNKS = 64
CHUNK = b"x" * 65536
_REJECT = {
    "/unauth": "unauthorized",
    "/forbidden": "forbidden",
    "/large": "request-too-large",
    "/limited": "quota-exceeded",
}
_gates: dict[str, asyncio.Event] = {}


def _gate(name: str) -> asyncio.Event:
    return _gates.setdefault(name, asyncio.Event())


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        msg = await receive()
        if msg["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif msg["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def inner(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        await _lifespan(receive, send)
        return
    path = scope["path"]
    ctx = get_context(scope)
    slug = _REJECT.get(path)
    if slug is not None:
        if path == "/limited":
            ctx.principal = Principal(key_id="key-2", prefix="xk_test_key2")
            ctx.rate_limit = RateLimitInfo("per-key", 10, 0, 30.0, allowed=False)
        await send_problem(send, slug, scope=scope)
        return
    ctx.principal = Principal(key_id="key-1", prefix="xk_test_key1", owner="acme")
    if path == "/release":
        _gate(scope["query_string"].decode().partition("=")[2]).set()
        await _text(send, b"released")
    elif path == "/stream":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"first\n", "more_body": True})
        await _gate("stream").wait()
        for _ in range(STREAM_CHUNKS):
            await send({"type": "http.response.body", "body": CHUNK, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})
    elif path == "/sse":
        headers = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"data: one\n\n", "more_body": True})
        await _gate("sse").wait()
        await send({"type": "http.response.body", "body": b"data: two\n\n", "more_body": False})
    else:
        await _text(send, b"ok")


async def _text(send: Send, body: bytes) -> None:
    headers = [(b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def build(db_path: str) -> ASGIApp:
    """Return the audited app writing to a SQLite file.

    Args:
        db_path: the SQLite file.
    """
    return AuditMiddleware(inner, sink=f"sqlite:///{db_path}", queue_size=20_000)


def main(argv: list[str]) -> None:
    """Serve on 127.0.0.1 until SIGTERM.

    Args:
        argv: ``[PORT, SQLITE_PATH]``.
    """
    config = uvicorn.Config(
        build(argv[1]),
        host="127.0.0.1",
        port=int(argv[0]),
        lifespan="on",
        log_level="warning",
        proxy_headers=False,
        access_log=False,
    )
    uvicorn.Server(config).run()


if __name__ == "__main__":
    main(sys.argv[1:])
