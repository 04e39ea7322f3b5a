"""An existing FastAPI app protected by adding extapi_kit middlewares with ``add_middleware``.

The middlewares authenticate, rate-limit, cap bodies and audit every call; the
``require_principal`` dependency reads the verified key in a route (and adds the ``X-API-Key``
scheme to FastAPI's OpenAPI document, so ``/docs`` has an "Authorize" button).

Run it (prints a key) and call it::

    python examples/fastapi_app.py              # http://127.0.0.1:8000 (docs at /docs)
    curl -H "X-API-Key: xk_live_..." http://127.0.0.1:8000/projects

or exercise it in process: ``python examples/fastapi_app.py --check``.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Annotated, Any

import httpx
from fastapi import Depends, FastAPI
from pydantic import BaseModel, Field

from extapi_kit.context import Principal
from extapi_kit.fastapi import require_principal
from extapi_kit.keys.service import KeyService
from extapi_kit.middleware.api_key import ApiKeyMiddleware
from extapi_kit.middleware.audit import AuditMiddleware
from extapi_kit.middleware.body_limit import BodySizeLimitMiddleware
from extapi_kit.middleware.rate_limit import RateLimitMiddleware

STORE = "sqlite:///fastapi-example-keys.db"


class ProjectIn(BaseModel):
    name: str = Field(min_length=1, max_length=100)


def create_app(
    keys: KeyService,
    *,
    audit_sink: Any = "memory://",
    rate_storage: str = "memory://",
    read: str = "100/minute",
    write: str = "10/minute",
) -> FastAPI:
    """Return the FastAPI app with the extapi_kit middlewares added.

    Args:
        keys: the key service.
        audit_sink: audit sink URL or object.
        rate_storage: rate-limit storage URL.
        read: read budget per key.
        write: write budget per key.
    """
    app = FastAPI(title="Projects")
    projects: list[dict[str, Any]] = [{"id": 1, "name": "Launch"}]

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/projects")
    async def list_projects(
        principal: Annotated[Principal, Depends(require_principal("projects:read"))],
    ) -> dict[str, Any]:
        return {"data": projects, "key_id": principal.key_id}

    @app.post("/projects", status_code=201)
    async def create_project(
        body: ProjectIn,
        principal: Annotated[Principal, Depends(require_principal("projects:write"))],
    ) -> dict[str, Any]:
        project = {"id": len(projects) + 1, "name": body.name}
        projects.append(project)
        return project

    # Innermost first: Audit → BodySizeLimit → ApiKey → RateLimit → FastAPI.
    app.add_middleware(RateLimitMiddleware, storage=rate_storage, read=read, write=write)
    app.add_middleware(
        ApiKeyMiddleware, store=keys, public_paths=["/health", "/docs", "/openapi.json"]
    )
    app.add_middleware(BodySizeLimitMiddleware, max_body="64KiB")
    app.add_middleware(AuditMiddleware, sink=audit_sink)
    return app


async def check() -> list[tuple[str, int]]:
    """Call the app in process; return ``(what, status)`` pairs."""
    keys = KeyService("memory://")
    _, reader = await keys.create("reader", scopes=["projects:read"])
    _, writer = await keys.create("writer", scopes=["projects:read", "projects:write"])
    app = create_app(keys, write="2/minute")
    out = []
    transport = httpx.ASGITransport(app, client=("203.0.113.7", 1234))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        out.append(("docs (public)", (await c.get("/openapi.json")).status_code))
        out.append(("no key", (await c.get("/projects")).status_code))
        out.append(("list", (await c.get("/projects", headers={"X-API-Key": reader})).status_code))
        r = await c.post("/projects", json={"name": "x"}, headers={"X-API-Key": reader})
        out.append(("missing scope", r.status_code))
        for i in range(3):
            r = await c.post("/projects", json={"name": f"p{i}"}, headers={"X-API-Key": writer})
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
    app = create_app(KeyService(STORE), audit_sink="sqlite:///fastapi-example-audit.db")
    uvicorn.run(app, host="127.0.0.1", port=8000, proxy_headers=False)


if __name__ == "__main__":
    main()
