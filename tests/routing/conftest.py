"""Fixtures for the registry tests: an internal Starlette app and a client factory."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from extapi_kit._types import ASGIApp

ClientFactory = Callable[[ASGIApp], AbstractAsyncContextManager[httpx.AsyncClient]]


async def _echo(request: Request) -> Response:
    body = await request.body()
    return JSONResponse(
        {
            "method": request.method,
            "path": request.scope["path"],
            "raw_path": request.scope["raw_path"].decode(),
            "root_path": request.scope["root_path"],
            "query": request.scope["query_string"].decode(),
            "path_params": request.path_params,
            "headers": [
                [k.decode("latin-1"), v.decode("latin-1")] for k, v in request.scope["headers"]
            ],
            "body": body.decode(errors="replace"),
        }
    )


async def _project(request: Request) -> Response:
    return JSONResponse(
        {
            "id": int(request.path_params["id"]),
            "name": "p",
            "internal_notes": "secret",
            "owner_id": 9,
        }
    )


async def _admin(request: Request) -> Response:
    return JSONResponse({"admin": True})


def make_internal_app() -> Starlette:
    """The internal service: an echo route, a project with internal fields, an admin route."""
    return Starlette(
        routes=[
            Route("/internal/echo/{rest:path}", _echo, methods=["GET", "POST", "PUT", "DELETE"]),
            Route("/internal/projects/{id}", _project, methods=["GET"]),
            Route("/internal/projects", _echo, methods=["POST"]),
            Route("/internal/admin", _admin, methods=["GET", "POST", "DELETE"]),
        ]
    )


@pytest.fixture
def internal_app() -> Starlette:
    """A fresh internal Starlette app."""
    return make_internal_app()


@pytest.fixture
def client_for() -> ClientFactory:
    """Return a factory of httpx clients driving an ASGI app in-process."""

    @asynccontextmanager
    async def factory(app: ASGIApp) -> AsyncIterator[httpx.AsyncClient]:
        transport = httpx.ASGITransport(app, client=("203.0.113.7", 1234))
        try:
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                yield client
        finally:
            aclose = getattr(app, "aclose", None)
            if aclose is not None:
                await aclose()

    return factory


def header_map(echo: dict[str, object]) -> dict[str, list[str]]:
    """Group the echoed request headers by lower-case name."""
    out: dict[str, list[str]] = {}
    raw = echo["headers"]
    assert isinstance(raw, list)
    for k, v in raw:
        out.setdefault(k, []).append(v)
    return out


def dumps(value: object) -> bytes:
    """Compact JSON bytes."""
    return json.dumps(value).encode()


async def raw_call(
    app: ASGIApp, method: str, raw_target: str, headers: list[tuple[bytes, bytes]] | None = None
) -> tuple[int, dict[bytes, bytes], bytes]:
    """Call an ASGI app with a scope built like a server does, without client normalisation.

    ``path`` is the percent-decoded target (as uvicorn passes it), ``raw_path`` the target bytes.
    """
    from urllib.parse import unquote

    path, _, query = raw_target.partition("?")
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": unquote(path),
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": query.encode(),
        "headers": [(b"host", b"t"), *(headers or [])],
        "client": ("203.0.113.7", 1234),
        "server": ("t", 80),
    }
    sent: list[dict[str, object]] = []
    done = False

    async def receive() -> dict[str, object]:
        nonlocal done
        if not done:
            done = True
            return {"type": "http.request", "body": b"", "more_body": False}
        return {"type": "http.disconnect"}

    async def send(message: dict[str, object]) -> None:
        sent.append(message)

    await app(scope, receive, send)  # type: ignore[arg-type]
    start = sent[0]
    body = b"".join(bytes(m.get("body", b"")) for m in sent[1:])  # type: ignore[call-overload]
    hdrs = dict(start["headers"])  # type: ignore[call-overload]
    status = start["status"]
    assert isinstance(status, int)
    return status, hdrs, body
