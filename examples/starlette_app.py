"""An existing Starlette app protected by adding extapi_kit middlewares with ``add_middleware``.

No route registry: the app keeps its own routes, and four middlewares protect all of them —
API keys, per-key rate limits (read/write classes), a request body cap and the audit trail.
``add_middleware`` puts the last one added outermost, so they are added innermost first to get
the recommended order ``Audit → BodySizeLimit → ApiKey → RateLimit → app``.

Run it (prints a key for the demo store) and call it::

    python examples/starlette_app.py            # http://127.0.0.1:8000
    curl -H "X-API-Key: xk_live_..." http://127.0.0.1:8000/projects
    extapi-kit audit query --store sqlite:///starlette-example-audit.db

or exercise it in process: ``python examples/starlette_app.py --check``.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from extapi_kit.context import get_context
from extapi_kit.keys.service import KeyService
from extapi_kit.middleware.api_key import ApiKeyMiddleware
from extapi_kit.middleware.audit import AuditMiddleware
from extapi_kit.middleware.body_limit import BodySizeLimitMiddleware
from extapi_kit.middleware.rate_limit import RateLimitMiddleware

STORE = "sqlite:///starlette-example-keys.db"
PROJECTS: list[dict[str, Any]] = [{"id": 1, "name": "Launch"}, {"id": 2, "name": "Docs"}]


async def health(request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok"})


async def list_projects(request: Request) -> JSONResponse:
    return JSONResponse({"data": PROJECTS})


async def create_project(request: Request) -> JSONResponse:
    body = await request.json()
    owner = get_context(request.scope).principal
    project = {"id": len(PROJECTS) + 1, "name": str(body["name"])[:100]}
    project["created_by"] = owner.key_id if owner else None
    PROJECTS.append(project)
    return JSONResponse(project, status_code=201)


def create_app(
    keys: KeyService,
    *,
    audit_sink: Any = "memory://",
    rate_storage: str = "memory://",
    read: str = "100/minute",
    write: str = "10/minute",
) -> Starlette:
    """Return the existing app with the extapi_kit middlewares added.

    Args:
        keys: the key service (``KeyService("sqlite:///keys.db")``).
        audit_sink: audit sink URL or object.
        rate_storage: rate-limit storage URL (``memory://`` or ``redis://...``).
        read: read budget per key.
        write: write budget per key.
    """
    app = Starlette(
        routes=[
            Route("/health", health),
            Route("/projects", list_projects),
            Route("/projects", create_project, methods=["POST"]),
        ]
    )
    # Innermost first: add_middleware wraps what was added before.
    app.add_middleware(RateLimitMiddleware, storage=rate_storage, read=read, write=write)
    app.add_middleware(ApiKeyMiddleware, store=keys, public_paths=["/health"])
    app.add_middleware(BodySizeLimitMiddleware, max_body="64KiB")
    app.add_middleware(AuditMiddleware, sink=audit_sink)
    return app


async def check() -> list[tuple[str, int]]:
    """Call the app in process; return ``(what, status)`` pairs."""
    keys = KeyService("memory://")
    _, key = await keys.create("example", scopes=["projects:read", "projects:write"])
    app = create_app(keys, write="2/minute")
    out = []
    transport = httpx.ASGITransport(app, client=("203.0.113.7", 1234))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        h = {"X-API-Key": key}
        out.append(("health (public)", (await c.get("/health")).status_code))
        out.append(("no key", (await c.get("/projects")).status_code))
        out.append(("list", (await c.get("/projects", headers=h)).status_code))
        out.append(
            ("too big", (await c.post("/projects", content=b"x" * 70_000, headers=h)).status_code)
        )
        for i in range(3):
            r = await c.post("/projects", json={"name": f"p{i}"}, headers=h)
            out.append((f"create {i}", r.status_code))
    return out


async def new_key(store: str) -> str:
    """Create a key in ``store`` and return it (the secret is shown once).

    Args:
        store: the key store URL.
    """
    keys = KeyService(store)
    try:
        _, key = await keys.create("example", scopes=["projects:read", "projects:write"])
    finally:
        await keys.aclose()
    return key


def main() -> None:
    """Run the check, or serve on 127.0.0.1:8000 with SQLite stores and a fresh key."""
    if "--check" in sys.argv:
        for what, status in asyncio.run(check()):
            print(f"{what:16} {status}")
        return
    import uvicorn

    print(f"API key (shown once): {asyncio.run(new_key(STORE))}", flush=True)
    keys = KeyService(STORE)
    app = create_app(keys, audit_sink="sqlite:///starlette-example-audit.db")
    uvicorn.run(app, host="127.0.0.1", port=8000, proxy_headers=False)


if __name__ == "__main__":
    main()
