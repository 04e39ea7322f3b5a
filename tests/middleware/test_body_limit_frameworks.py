"""Body limit around real Starlette/FastAPI apps; 100 MB bodies and streamed responses (R2, M4)."""

from __future__ import annotations

import tracemalloc
from collections.abc import AsyncIterator, Callable

import anyio
import httpx
import pytest
from fastapi import FastAPI
from pydantic import BaseModel
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from extapi_kit._types import ASGIApp, Message, Receive, Scope, Send
from extapi_kit.middleware.body_limit import BodySizeLimitMiddleware
from extapi_kit.middleware.ip_allowlist import IPAllowlistMiddleware

pytestmark = pytest.mark.anyio

MiB = 1024 * 1024
CHUNK = b"z" * (64 * 1024)


class Item(BaseModel):
    name: str


def starlette_app(middleware: list[Middleware] | None = None) -> Starlette:
    async def upload(request: Request) -> Response:
        body = await request.body()
        return JSONResponse({"size": len(body)})

    return Starlette(routes=[Route("/", upload, methods=["POST"])], middleware=middleware)


def fastapi_app(middleware: list[Middleware] | None = None) -> FastAPI:
    api = FastAPI(middleware=middleware)

    @api.post("/")
    async def upload(request: Request) -> dict[str, int]:
        return {"size": len(await request.body())}

    @api.post("/items")
    async def items(item: Item) -> dict[str, int]:
        return {"size": len(item.name)}

    return api


async def chunks(total: int, counter: list[int] | None = None) -> AsyncIterator[bytes]:
    """Yield ``total`` bytes lazily, reusing one 64 KiB object (so the client holds no body)."""
    sent = 0
    while sent < total:
        piece = CHUNK if total - sent >= len(CHUNK) else CHUNK[: total - sent]
        sent += len(piece)
        if counter is not None:
            counter[0] = sent
        yield piece


async def post(app: ASGIApp, path: str, content: AsyncIterator[bytes] | bytes) -> httpx.Response:
    transport = httpx.ASGITransport(app, client=("203.0.113.7", 1234))
    headers = {"content-type": "application/json"}
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        return await client.post(path, content=content, headers=headers)


Factory = Callable[[list[Middleware] | None], ASGIApp]
FRAMEWORKS: list[Factory] = [starlette_app, fastapi_app]


@pytest.mark.parametrize("framework", FRAMEWORKS, ids=["starlette", "fastapi"])
@pytest.mark.parametrize("read_ahead", [0, "1MiB"], ids=["streamed", "read-ahead"])
@pytest.mark.parametrize("placement", ["outside", "add_middleware"])
async def test_chunked_over_limit_is_413_not_500_in_frameworks(
    framework: Factory, read_ahead: int | str, placement: str
) -> None:
    """R2: a chunked body over the limit inside Starlette/FastAPI gets 413, never 500 or 200."""
    app: ASGIApp
    if placement == "outside":
        app = BodySizeLimitMiddleware(
            framework(None), max_body=100_000, read_ahead_limit=read_ahead
        )
    else:
        mw = Middleware(BodySizeLimitMiddleware, max_body=100_000, read_ahead_limit=read_ahead)
        app = framework([mw])
    response = await post(app, "/", chunks(300_000))
    assert response.status_code == 413
    assert response.json()["type"].endswith("/request-too-large")
    ok = await post(app, "/", chunks(99_000))
    assert (ok.status_code, ok.json()) == (200, {"size": 99_000})


@pytest.mark.parametrize("read_ahead", [0, "1MiB"], ids=["streamed", "read-ahead"])
async def test_fastapi_model_body_over_limit_is_413(read_ahead: int | str) -> None:
    """R2: FastAPI's own body parsing (pydantic model) also ends in 413, not 400 or 500."""
    app = BodySizeLimitMiddleware(fastapi_app(), max_body=1000, read_ahead_limit=read_ahead)
    response = await post(app, "/items", chunks(5000))
    assert response.status_code == 413
    ok = await post(app, "/items", b'{"name": "abc"}')
    assert ok.json() == {"size": 3}


async def test_100mb_body_with_1mib_limit_keeps_memory_flat() -> None:
    """R2: 100 MB streamed at a 1 MiB limit: 413, <= limit + 1 chunk pulled, memory peak small."""
    pulled = [0]
    app = BodySizeLimitMiddleware(starlette_app(), max_body="1MiB")
    tracemalloc.start()
    try:
        response = await post(app, "/", chunks(100 * 1000 * 1000, pulled))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert response.status_code == 413
    assert pulled[0] <= MiB + 2 * len(CHUNK)
    assert peak < 4 * MiB


async def test_100mb_body_under_a_larger_limit_streams_without_buffering() -> None:
    """M4: in streaming mode a 100 MB body passes through chunk by chunk; memory stays flat."""
    seen = 0

    async def sink(scope: Scope, receive: Receive, send: Send) -> None:
        nonlocal seen
        more = True
        while more:
            message = await receive()
            seen += len(message.get("body", b""))
            more = message.get("more_body", False)
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    app = BodySizeLimitMiddleware(sink, max_body="200MB")
    tracemalloc.start()
    try:
        response = await post(app, "/", chunks(100 * 1000 * 1000))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert response.status_code == 204
    assert seen == 100 * 1000 * 1000
    assert peak < 4 * MiB


def guarded(app: ASGIApp) -> ASGIApp:
    """Both guards in the documented order, generous enough to let the test traffic through."""
    inner = IPAllowlistMiddleware(app, allow=["203.0.113.0/24"])
    return BodySizeLimitMiddleware(inner, max_body="1MiB")


async def test_streamed_response_passes_through_unchanged_and_unbuffered() -> None:
    """M4: each response message reaches the server as sent, the first before the app finishes."""
    gate = anyio.Event()
    sent: list[Message] = []
    produced: list[Message] = [
        {"type": "http.response.start", "status": 200, "headers": [(b"x-a", b"1")]},
        {"type": "http.response.body", "body": b"data: 1\n\n", "more_body": True},
        {"type": "http.response.body", "body": b"data: 2\n\n", "more_body": False},
    ]

    async def sse(scope: Scope, receive: Receive, send: Send) -> None:
        await send(produced[0])
        await send(produced[1])
        await gate.wait()  # released only once the first event has reached the server
        await send(produced[2])

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)
        if len(sent) == 2:
            gate.set()

    scope: Scope = {"type": "http", "method": "GET", "path": "/", "headers": []}
    scope["client"] = ("203.0.113.7", 1)
    with anyio.fail_after(5):
        await guarded(sse)(scope, receive, send)
    assert sent == produced
    assert all(a is b for a, b in zip(sent, produced, strict=True))


async def test_100mb_streamed_response_keeps_memory_flat() -> None:
    """M4: a 100 MB streamed response through both guards is never buffered."""
    total = 0

    async def big(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for _ in range(1600):
            await send({"type": "http.response.body", "body": CHUNK, "more_body": True})
        await send({"type": "http.response.body", "body": b""})

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        nonlocal total
        total += len(message.get("body", b""))

    scope: Scope = {"type": "http", "method": "GET", "path": "/", "headers": []}
    scope["client"] = ("203.0.113.7", 1)
    tracemalloc.start()
    try:
        await guarded(big)(scope, receive, send)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert total == 1600 * len(CHUNK)
    assert peak < MiB
