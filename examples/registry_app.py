"""A curated external API over an internal Starlette service, built with ExternalAPI.

Run the server (creates a demo key and prints it)::

    python examples/registry_app.py [--port 8000]   # serves on http://127.0.0.1:8000
    curl -H "X-API-Key: <key>" http://127.0.0.1:8000/api/v1/projects/1
    curl http://127.0.0.1:8000/api/v1/openapi.json

or exercise it in-process without a server::

    python examples/registry_app.py --check

The internal app has more routes (``/internal/admin/...``) and more fields (``internal_notes``)
than the external API exposes; neither is reachable or visible from outside.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import httpx
from pydantic import BaseModel, Field
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from extapi_kit.routing import CursorCodec, ExternalAPI, HandlerRequest, ListParams, paginate

# --- the internal service (never exposed as a whole) -----------------------------------------

PROJECTS: dict[int, dict[str, Any]] = {
    i: {
        "id": i,
        "name": f"project {i}",
        "status": "open" if i % 2 else "closed",
        "internal_notes": "do not leak",
        "owner": "acme",
    }
    for i in range(1, 26)
}


async def get_project(request: Request) -> Response:
    project = PROJECTS.get(int(request.path_params["id"]))
    if project is None:
        return JSONResponse({"detail": "no such project"}, status_code=404)
    return JSONResponse(project)


async def create_project(request: Request) -> Response:
    data = await request.json()
    new_id = max(PROJECTS) + 1
    PROJECTS[new_id] = {
        "id": new_id,
        "status": "open",
        "internal_notes": "",
        "owner": request.headers.get("x-owner-id", "?"),
        **data,
    }
    return JSONResponse(PROJECTS[new_id], status_code=201)


async def wipe(request: Request) -> Response:
    PROJECTS.clear()
    return JSONResponse({"wiped": True})


internal = Starlette(
    routes=[
        Route("/internal/projects/{id:int}", get_project),
        Route("/internal/projects", create_project, methods=["POST"]),
        Route("/internal/admin/wipe", wipe, methods=["POST"]),
    ]
)

# --- the external contract ------------------------------------------------------------------


class ProjectOut(BaseModel):
    id: int
    name: str
    status: str


class ProjectIn(BaseModel):
    name: str = Field(min_length=1, max_length=100)


api = ExternalAPI(title="Acme public API", version="1.0.0")
api.expose(
    "GET",
    "/projects/{id:int}",
    to=internal,
    path="/internal/projects/{id}",
    scopes=["projects:read"],
    response_model=ProjectOut,
    summary="Get a project",
    resource_params={"id": "projects"},
)
api.expose(
    "POST",
    "/projects",
    to=internal,
    path="/internal/projects",
    scopes=["projects:write"],
    request_model=ProjectIn,
    response_model=ProjectOut,
    summary="Create a project",
)
cursors = CursorCodec("example-cursor-secret-change-me")


@api.get("/projects", scopes=["projects:read"], summary="List projects")
async def list_projects(req: HandlerRequest) -> Any:
    params = ListParams.from_request(req, sortable=["id", "name"], filters=["status"], max_limit=50)
    page = paginate(
        PROJECTS.values(),
        params,
        cursors,
        serialize=lambda p: ProjectOut.model_validate(p).model_dump(),
    )
    return page.model_dump()


async def make_app() -> tuple[Any, str]:
    """Build the stack with in-memory stores and return it with a demo key."""
    from extapi_kit.keys.service import KeyService

    keys = KeyService("memory://")
    _, key = await keys.create("demo", scopes=["projects:read", "projects:write"], owner="acme")
    app = api.build(
        key_store=keys,
        rate_limit_storage="memory://",
        audit_sink="memory://",
        idempotency_store="memory://",
    )
    return app, key


async def check() -> list[tuple[str, int]]:
    """Call the API in-process and return ``(what, status)`` pairs."""
    app, key = await make_app()
    transport = httpx.ASGITransport(app, client=("203.0.113.7", 1234))
    out = []
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        h = {"X-API-Key": key}
        out.append(("get project", (await c.get("/api/v1/projects/1", headers=h)).status_code))
        out.append(("no key", (await c.get("/api/v1/projects/1")).status_code))
        out.append(
            ("internal route", (await c.post("/internal/admin/wipe", headers=h)).status_code)
        )
        page = await c.get("/api/v1/projects", params={"limit": 10, "status": "open"}, headers=h)
        out.append(("list page", page.status_code))
        nxt = page.json()["next_cursor"]
        more = await c.get(
            "/api/v1/projects", params={"limit": 10, "status": "open", "cursor": nxt}, headers=h
        )
        out.append(("next page", more.status_code))
        created = await c.post(
            "/api/v1/projects",
            json={"name": "new", "internal_notes": "x"},
            headers={**h, "Idempotency-Key": "demo-1"},
        )
        out.append(("create", created.status_code))
        out.append(("openapi", (await c.get("/api/v1/openapi.json")).status_code))
    return out


def main() -> None:
    """Run the check, or serve with uvicorn on 127.0.0.1:8000."""
    if "--check" in sys.argv:
        for what, status in asyncio.run(check()):
            print(f"{what:15} {status}")
        return
    import uvicorn

    port = int(sys.argv[sys.argv.index("--port") + 1]) if "--port" in sys.argv else 8000
    app, key = asyncio.run(make_app())
    print(f"demo key (shown once): {key}", flush=True)
    # proxy_headers=False: only extapi_kit's resolver decides what the client address is.
    uvicorn.run(app, host="127.0.0.1", port=port, proxy_headers=False)


if __name__ == "__main__":
    main()
