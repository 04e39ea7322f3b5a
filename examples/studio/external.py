"""The curated public ``/api/v1`` of the studio, declared with :class:`ExternalAPI`.

Only what is declared here is reachable: the internal app's users, billing and maintenance
endpoints are never exposed, and the response models drop internal fields
(``internal_cost_center``). List routes are handler targets reading the internal database with
the keyset-pagination helpers; single resources and writes are forwarded to the internal app;
the render farm is proxied under ``/api/v1/tools/{tool_id}/...`` with its own token injected.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx
from pydantic import BaseModel, Field

from examples.studio.internal import StudioDB
from extapi_kit.routing import CursorCodec, ExternalAPI, HandlerRequest, ListParams, paginate
from extapi_kit.routing.pagination import keyset_sql, page_from_rows
from extapi_kit.webhooks import WebhookManager
from extapi_kit.webhooks.selfservice import add_self_service_routes

__all__ = ["ALL_SCOPES", "build_external_api"]

ALL_SCOPES = (
    "projects:read",
    "projects:write",
    "assets:write",
    "jobs:read",
    "jobs:write",
    "models:read",
    "tools:use",
    "webhooks:read",
    "webhooks:write",
)


class ProjectOut(BaseModel):
    """A project as partners see it (no internal cost centre)."""

    id: int
    org_id: str
    name: str
    status: str
    created_at: float


class ProjectIn(BaseModel):
    """Body of ``POST /projects``: only these fields reach the internal app."""

    name: str = Field(min_length=1, max_length=100)
    org_id: str = Field(default="acme", pattern=r"^[a-z0-9-]{1,32}$")


class AssetOut(BaseModel):
    """An asset and its approval state."""

    id: int
    project_id: int
    name: str
    kind: str
    approved: bool
    created_at: float


class JobIn(BaseModel):
    """Body of ``POST /jobs``."""

    project_id: int = Field(ge=1, le=2**63 - 1)  # SQLite INTEGER range
    model: str = Field(min_length=1, max_length=64)
    prompt: str = Field(min_length=1, max_length=2000)


class JobOut(BaseModel):
    """A generation job and its progress (0-100)."""

    id: int
    project_id: int
    model: str
    prompt: str
    status: str
    progress: int
    created_at: float
    updated_at: float


class ModelOut(BaseModel):
    """A generation model."""

    id: str
    name: str
    version: str


def _query(req: HandlerRequest) -> dict[str, str]:
    return dict(httpx.QueryParams(req.scope["query_string"].decode("latin-1")))


def build_external_api(
    internal: Any,
    db: StudioDB,
    *,
    cursor_secret: str,
    farm_url: str,
    farm_token: str,
    webhooks: WebhookManager | None = None,
) -> ExternalAPI:
    """Declare the public API over the internal app.

    Args:
        internal: the internal ASGI app (forward target).
        db: the internal app's database (read by the list handlers).
        cursor_secret: signs pagination cursors (shared by every worker).
        farm_url: base URL of the render-farm tool.
        farm_token: the farm's bearer token, injected on proxied calls.
        webhooks: when given, integrators manage their own webhook endpoints under
            ``/webhooks/endpoints`` (scoped to their key's projects).
    """
    api = ExternalAPI(
        title="Studio public API",
        version="1.0.0",
        prefix="/api",
        description="Projects, assets, generation jobs and tools of the studio platform.",
    )
    cursors = CursorCodec(cursor_secret)

    # Routes addressed by an asset's or a job's own id name no project in the request; these
    # lookups tell the registry which project owns the object, so a project-scoped key gets the
    # missing-object 404 before the internal service runs (writes on foreign objects never run).
    def project_of_asset(values: Mapping[str, Any]) -> dict[str, Any] | None:
        rows = db.query("SELECT project_id FROM assets WHERE id = ?", (int(values["id"]),))
        return {"projects": rows[0]["project_id"]} if rows else None

    def project_of_job(values: Mapping[str, Any]) -> dict[str, Any] | None:
        rows = db.query("SELECT project_id FROM jobs WHERE id = ?", (int(values["id"]),))
        return {"projects": rows[0]["project_id"]} if rows else None

    @api.get("/projects", scopes=["projects:read"], summary="List projects", tags=["projects"])
    def list_projects(req: HandlerRequest) -> Any:
        params = ListParams.from_query(
            _query(req),
            sortable=["id", "name", "created_at"],
            filters=["org_id", "status"],
            default_sort="id",
            max_limit=100,
        )
        # A project-scoped key (grants {"projects": [...]}) only ever sees its own projects.
        allowed = {"id": req.allowed_ids("projects")}
        sql, args = keyset_sql(params, cursors, allowed=allowed)
        rows = db.query(f"SELECT * FROM projects {sql}", tuple(args))
        page = page_from_rows(rows, params, cursors)
        page.data = [ProjectOut.model_validate(r).model_dump() for r in page.data]
        return page.model_dump()

    api.expose(
        "POST", "/projects", to=internal, path="/internal/projects", scopes=["projects:write"],
        request_model=ProjectIn, response_model=ProjectOut, body_limit="8KiB",
        status_code=201, summary="Create a project", tags=["projects"],
    )  # fmt: skip
    api.expose(
        "GET", "/projects/{id:int}", to=internal, path="/internal/projects/{id}",
        scopes=["projects:read"], response_model=ProjectOut, summary="Get a project",
        resource_params={"id": "projects"},
        tags=["projects"],
    )  # fmt: skip

    @api.get(
        "/projects/{id:int}/assets",
        scopes=["projects:read"],
        resource_params={"id": "projects"},
        summary="List a project's assets",
        tags=["assets"],
    )
    def list_assets(req: HandlerRequest) -> Any:
        params = ListParams.from_query(
            _query(req), sortable=["id", "name"], filters=["kind"], max_limit=100
        )
        rows = db.query("SELECT * FROM assets WHERE project_id = ?", (int(req.path_params["id"]),))
        page = paginate(
            rows, params, cursors, serialize=lambda r: AssetOut.model_validate(r).model_dump()
        )
        return page.model_dump()

    api.expose(
        "POST", "/assets/{id:int}/approve", to=internal, path="/internal/assets/{id}/approve",
        scopes=["assets:write"], response_model=AssetOut, body_limit="1KiB",
        idempotent=False, resource_lookup=project_of_asset,
        summary="Approve an asset", tags=["assets"],
    )  # fmt: skip
    api.expose(
        "POST", "/jobs", to=internal, path="/internal/jobs", scopes=["jobs:write"],
        request_model=JobIn, response_model=JobOut, body_limit="16KiB", idempotent=True,
        status_code=201, resource_body_fields={"project_id": "projects"},
        summary="Submit a generation job (send an Idempotency-Key)", tags=["jobs"],
    )  # fmt: skip
    api.expose(
        "GET", "/jobs/{id:int}", to=internal, path="/internal/jobs/{id}", scopes=["jobs:read"],
        response_model=JobOut, resource_lookup=project_of_job, summary="Get a job",
        tags=["jobs"],
    )  # fmt: skip
    api.expose(
        "GET", "/jobs/{id:int}/events", to=internal, path="/internal/jobs/{id}/events",
        scopes=["jobs:read"], resource_lookup=project_of_job,
        summary="Job progress (text/event-stream)", tags=["jobs"],
    )  # fmt: skip

    @api.get("/models", scopes=["models:read"], summary="List models", tags=["models"])
    def list_models(req: HandlerRequest) -> Any:
        params = ListParams.from_query(_query(req), sortable=["id", "name"], max_limit=100)
        rows = db.query("SELECT * FROM models")
        serialize = lambda r: ModelOut.model_validate(r).model_dump()  # noqa: E731
        return paginate(rows, params, cursors, serialize=serialize).model_dump()

    if webhooks is not None:
        add_self_service_routes(api, webhooks)

    api.add_tool("renderfarm", farm_url, credential=farm_token, timeout=30, connect_timeout=5)
    api.expose(
        ["GET", "POST"], "/tools/{tool_id}/{path:path}", upstream="{tool_id}", path="/{path}",
        scopes=["tools:use"], body_limit="64KiB", idempotent=False,
        summary="Call an integrated tool", tags=["tools"],
    )  # fmt: skip
    return api
