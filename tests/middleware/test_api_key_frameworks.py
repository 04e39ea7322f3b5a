"""ApiKeyMiddleware inside Starlette and FastAPI apps, and end to end under uvicorn."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated, Any

import httpx
import pytest
from fastapi import Depends, FastAPI
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

from extapi_kit.context import Principal, get_context
from extapi_kit.fastapi import get_principal, require_principal
from extapi_kit.keys.service import KeyService
from extapi_kit.keys.store_memory import MemoryKeyStore
from extapi_kit.middleware.api_key import ApiKeyMiddleware
from tests.keys.support import cheap_hasher
from tests.support.serving import serving


async def whoami(request: Request) -> JSONResponse:
    principal = get_context(request.scope).principal
    return JSONResponse({"key_id": principal.key_id if principal else None})


async def echo_ws(websocket: WebSocket) -> None:
    await websocket.accept()
    await websocket.send_text("hello")
    await websocket.close()


ReadPrincipal = Annotated[Principal, Depends(require_principal("projects:read"))]
WritePrincipal = Annotated[Principal, Depends(require_principal("projects:write"))]
AnyPrincipal = Annotated[Principal, Depends(require_principal())]
MaybePrincipal = Annotated[Principal | None, Depends(get_principal())]


def routes() -> list[Any]:
    return [Route("/whoami", whoami), WebSocketRoute("/ws", echo_ws)]


@pytest.mark.anyio
async def test_starlette_middleware_list_and_add_middleware() -> None:
    """The middleware works both via Middleware(...) and app.add_middleware(...)."""
    svc = KeyService(MemoryKeyStore(), hasher=cheap_hasher())
    rec, key = await svc.create("k")
    app1 = Starlette(routes=routes(), middleware=[Middleware(ApiKeyMiddleware, store=svc)])
    app2 = Starlette(routes=routes())
    app2.add_middleware(ApiKeyMiddleware, store=svc)
    for app in (app1, app2):
        transport = httpx.ASGITransport(app, client=("203.0.113.7", 1))
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            assert (await c.get("/whoami")).status_code == 401
            r = await c.get("/whoami", headers={"Authorization": f"Bearer {key}"})
            assert r.json() == {"key_id": rec.id}


@pytest.mark.anyio
async def test_starlette_websocket_refused_then_accepted() -> None:
    """Via Starlette, a websocket without a key is closed before accept; with one it opens (Z7)."""
    svc = KeyService(MemoryKeyStore(), hasher=cheap_hasher())
    _, key = await svc.create("k")
    app = Starlette(routes=routes(), middleware=[Middleware(ApiKeyMiddleware, store=svc)])

    async def connect(headers: list[tuple[bytes, bytes]]) -> list[dict[str, Any]]:
        sent: list[dict[str, Any]] = []
        inbox = [{"type": "websocket.connect"}]

        async def receive() -> dict[str, Any]:
            return inbox.pop(0) if inbox else {"type": "websocket.disconnect", "code": 1000}

        async def send(message: Any) -> None:
            sent.append(dict(message))

        scope = {
            "type": "websocket",
            "path": "/ws",
            "raw_path": b"/ws",
            "query_string": b"",
            "headers": headers,
            "client": ("203.0.113.7", 1),
            "server": ("t", 80),
            "scheme": "ws",
            "subprotocols": [],
        }
        await app(scope, receive, send)
        return sent

    refused = await connect([])
    assert refused == [{"type": "websocket.close", "code": 1008, "reason": ""}]
    opened = await connect([(b"x-api-key", key.encode())])
    assert [m["type"] for m in opened] == ["websocket.accept", "websocket.send", "websocket.close"]


@pytest.mark.anyio
async def test_fastapi_dependencies_and_openapi_security_scheme() -> None:
    """FastAPI routes read the principal; /openapi.json declares the ApiKey header scheme."""
    svc = KeyService(MemoryKeyStore(), hasher=cheap_hasher())
    _, reader = await svc.create("r", scopes=["projects:read"])
    app = FastAPI()
    app.add_middleware(
        ApiKeyMiddleware, store=svc, public_paths=["/openapi.json", "/docs", "/open"]
    )

    @app.get("/projects")
    async def projects(p: ReadPrincipal) -> dict[str, str]:
        return {"name": p.name}

    @app.post("/projects")
    async def create(p: WritePrincipal) -> dict[str, str]:
        return {"name": p.name}  # pragma: no cover - refused

    @app.get("/open")
    async def open_(p: MaybePrincipal) -> dict[str, Any]:
        return {"who": p.name if p else None}

    @app.get("/must")
    async def must(p: AnyPrincipal) -> dict[str, str]:
        return {"name": p.name}

    transport = httpx.ASGITransport(app, client=("203.0.113.7", 1))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        spec = (await c.get("/openapi.json")).json()
        assert spec["components"]["securitySchemes"]["ApiKey"] == {
            "type": "apiKey",
            "in": "header",
            "name": "X-API-Key",
            "description": spec["components"]["securitySchemes"]["ApiKey"]["description"],
        }
        assert spec["paths"]["/projects"]["get"]["security"] == [{"ApiKey": []}]
        hdr = {"X-API-Key": reader}
        assert (await c.get("/projects", headers=hdr)).json() == {"name": "r"}
        assert (await c.post("/projects", headers=hdr)).status_code == 403
        assert (await c.get("/projects")).status_code == 401
        assert (await c.get("/open")).json() == {"who": None}
        assert (await c.get("/open", headers=hdr)).json() == {"who": "r"}
        app.user_middleware.clear()
    bare = FastAPI()
    bare.add_api_route("/must", must)
    transport = httpx.ASGITransport(bare, client=("203.0.113.7", 1))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        r = await c.get("/must")
        assert r.status_code == 401 and "ApiKey" in r.headers["www-authenticate"]


@contextlib.asynccontextmanager
async def serve(app: Any) -> AsyncIterator[str]:
    async with serving(app, lifespan="on", log_level="error") as base:
        yield base


@pytest.mark.anyio
async def test_full_app_under_uvicorn_runs_wrapped_lifespan(tmp_path: Path) -> None:
    """Under uvicorn with lifespan="on" the wrapped app's startup/shutdown run; keys work (M5)."""
    url = f"sqlite:///{tmp_path}/keys.db"
    admin = KeyService(url, hasher=cheap_hasher())
    rec, key = await admin.create("e2e")
    await admin.aclose()
    events: list[str] = []

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        events.append("startup")
        yield
        events.append("shutdown")

    app = Starlette(routes=routes(), lifespan=lifespan)
    app.add_middleware(ApiKeyMiddleware, store=url, exempt_paths=["/health"])
    async with serve(app) as base:
        assert events == ["startup"]
        async with httpx.AsyncClient(base_url=base) as c:
            r = await c.get("/whoami", headers={"X-API-Key": key})
            assert r.json() == {"key_id": rec.id}
            r = await c.get("/whoami", params={"api_key": key})
            assert r.status_code == 400
            r = await c.get("/whoami", headers={"X-API-Key": "x" * 10_000})
            assert r.status_code == 401
    assert events == ["startup", "shutdown"]
