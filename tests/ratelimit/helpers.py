"""Shared helpers for the rate-limit tests: a tiny app, a principal-setting wrapper, a client."""

from __future__ import annotations

from collections.abc import Mapping

import httpx

from extapi_kit._asgi import get_header
from extapi_kit._types import ASGIApp, Receive, Scope, Send
from extapi_kit.context import Principal, RouteSettings, get_context


async def ok_app(scope: Scope, receive: Receive, send: Send) -> None:
    """Answer 200 "ok" to HTTP, accept websockets, ignore lifespan."""
    if scope["type"] == "websocket":
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.close", "code": 1000})
        return
    if scope["type"] != "http":
        return
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"text/plain")],
        }
    )
    await send({"type": "http.response.body", "body": b"ok"})


def with_principals(
    app: ASGIApp,
    principals: Mapping[str, Principal],
    routes: Mapping[str, RouteSettings] | None = None,
) -> ASGIApp:
    """Stand in for auth: ``X-Test-Key: <name>`` puts ``principals[name]`` on the context.

    Args:
        app: the app (usually the rate-limit middleware).
        principals: name -> principal.
        routes: path -> route settings to put on the context (stands in for the registry).
    """

    async def wrapper(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            name = get_header(scope, b"x-test-key")
            ctx = get_context(scope)
            if name is not None:
                ctx.principal = principals[name.decode()]
            if routes and scope["path"] in routes:
                ctx.route = routes[scope["path"]]
        await app(scope, receive, send)

    return wrapper


def client(app: ASGIApp, ip: str = "203.0.113.7") -> httpx.AsyncClient:
    """An httpx client driving ``app`` in process from ``ip``.

    Args:
        app: the ASGI app.
        ip: the socket peer address.
    """
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app, client=(ip, 1234)), base_url="http://t"
    )
