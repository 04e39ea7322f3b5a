"""Helpers for usage tests: principals set by header, a tiny app, and an ASGI client."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

import httpx

from extapi_kit._types import ASGIApp, Receive, Scope, Send
from extapi_kit.context import Principal, RouteSettings, get_context
from extapi_kit.problems import send_problem

MID_NOVEMBER = dt.datetime(2026, 11, 15, 12, 0, tzinfo=dt.UTC).timestamp()
DEC_FIRST = dt.datetime(2026, 12, 1, tzinfo=dt.UTC).timestamp()


async def ok_app(scope: Scope, receive: Receive, send: Send) -> None:
    """Answer 200, 404 for /missing, and a recorded problem for /conflict."""
    if scope["type"] == "websocket":
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.close", "code": 1000})
        return
    if scope["path"] == "/missing":
        status = 404
    elif scope["path"] == "/conflict":
        await send_problem(send, "idempotency-key-in-use", scope=scope)
        return
    else:
        status = 200
    await send({"type": "http.response.start", "status": status, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


def with_principals(
    app: ASGIApp,
    principals: Mapping[str, Principal],
    routes: Mapping[str, RouteSettings] | None = None,
) -> ASGIApp:
    """Wrap ``app`` so the ``x-who`` header picks a principal and the path picks route settings."""

    async def outer(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            ctx = get_context(scope)
            for name, value in scope.get("headers", ()):
                if name == b"x-who":
                    ctx.principal = principals.get(value.decode())
            if routes and scope["path"] in routes:
                ctx.route = routes[scope["path"]]
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


def who(name: str) -> dict[str, str]:
    """Return the header that makes :func:`with_principals` pick principal ``name``."""
    return {"x-who": name}
