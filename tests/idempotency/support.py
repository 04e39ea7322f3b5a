"""Shared pieces for the idempotency tests: a counting app, a principal layer, a client factory."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import anyio
import httpx

from extapi_kit._types import ASGIApp, Message, Receive, Scope, Send
from extapi_kit.context import Principal, RouteSettings, get_context

KEY = '"8e03978e-40d5-43e8-bc93-6894a57f9324"'


@dataclass
class Recorder:
    """Counts side effects and remembers what the stack decided for each request."""

    calls: int = 0
    bodies: list[bytes] = field(default_factory=list)
    outcomes: list[str | None] = field(default_factory=list)
    status: int = 201
    gate: anyio.Event | None = None
    entered: anyio.Event | None = None  # set when the app starts running
    crash: str | None = None  # "before_start" | "after_start"
    response_size: int = 0


def counting_app(rec: Recorder) -> ASGIApp:
    """An ASGI app whose side effect is ``rec.calls += 1``; it echoes the body it received."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body", False):
                break
        rec.calls += 1
        rec.bodies.append(body)
        n = rec.calls
        if rec.entered is not None:
            rec.entered.set()
        if rec.gate is not None:
            await rec.gate.wait()
        if rec.crash == "before_start":
            raise RuntimeError("boom before start")
        payload = json.dumps({"n": n, "len": len(body)}).encode()
        if rec.response_size:
            payload = b"x" * rec.response_size
        await send(
            {
                "type": "http.response.start",
                "status": rec.status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(payload)).encode()),
                    (b"x-custom", b"kept"),
                    (b"date", b"Sat, 21 Nov 2026 23:00:00 GMT"),
                    (b"ratelimit", b'"write";r=9;t=60'),
                    (b"x-ratelimit-remaining", b"9"),
                ],
            }
        )
        if rec.crash == "after_start":
            raise RuntimeError("boom after start")
        await send({"type": "http.response.body", "body": payload, "more_body": False})

    return app


def outer_layer(app: ASGIApp, rec: Recorder, route: RouteSettings | None = None) -> ASGIApp:
    """Sets the principal from ``x-test-key`` (as auth does) and records the idempotency outcome."""

    async def wrapper(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        ctx = get_context(scope)
        for name, value in scope["headers"]:
            if name == b"x-test-key":
                ctx.principal = Principal(key_id=value.decode())
        if route is not None:
            ctx.route = route
        try:
            await app(scope, receive, send)
        finally:
            rec.outcomes.append(ctx.idempotency)

    return wrapper


def client(app: ASGIApp, ip: str = "203.0.113.7") -> httpx.AsyncClient:
    """An httpx client calling the ASGI app in-process."""
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app, client=(ip, 1234)), base_url="http://t"
    )


def scripted_receive(messages: list[Message]) -> Receive:
    """A receive callable that returns the given messages, then disconnects forever."""
    queue = list(messages)

    async def receive() -> Message:
        if queue:
            return queue.pop(0)
        return {"type": "http.disconnect"}

    return receive


def http_scope(path: str = "/orders", key: str = KEY, method: str = "POST") -> Scope:
    """A minimal HTTP scope carrying an Idempotency-Key."""
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"t"), (b"idempotency-key", key.encode())],
        "client": ("203.0.113.7", 1234),
        "server": ("t", 80),
    }
