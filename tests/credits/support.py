"""Helpers for credits tests: principals and routes set by header/path, a tiny app, a client."""

from __future__ import annotations

from typing import Any

import httpx

from extapi_kit._types import ASGIApp, Receive, Scope, Send
from extapi_kit.context import Principal, RouteSettings, get_context

PRINCIPALS = {
    "a": Principal(key_id="ka", owner="acme"),
    "b": Principal(key_id="kb", owner="acme"),
    "solo": Principal(key_id="solo"),
}
ROUTES = {"/render": RouteSettings(template="/render", method="POST", cost=5)}


async def ok_app(scope: Scope, receive: Receive, send: Send) -> None:
    """Answer 200 (accept a websocket and close it)."""
    if scope["type"] == "websocket":
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.close", "code": 1000})
        return
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


def with_principals(app: ASGIApp) -> ASGIApp:
    """Wrap ``app`` so ``x-who`` picks a principal of :data:`PRINCIPALS` and the path a route."""

    async def outer(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            ctx = get_context(scope)
            for name, value in scope.get("headers", ()):
                if name == b"x-who":
                    ctx.principal = PRINCIPALS.get(value.decode())
            ctx.route = ROUTES.get(scope["path"])
        await app(scope, receive, send)

    return outer


def client(app: ASGIApp) -> httpx.AsyncClient:
    """Return an httpx client driving ``app`` in process."""
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app, client=("203.0.113.7", 1234)), base_url="http://t"
    )


class Events:
    """Collects ``on_event`` calls."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []

    async def __call__(self, kind: str, data: dict[str, Any]) -> None:
        self.calls.append((kind, data))

    def kinds(self) -> list[str]:
        """Return the event types seen, in order."""
        return [k for k, _ in self.calls]
