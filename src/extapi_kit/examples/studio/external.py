"""The curated public ``/api/v1`` of the studio, declared with :class:`ExternalAPI`.

Only what is declared here is reachable: the internal app's users, billing and maintenance
endpoints are never exposed, and the response models drop internal fields
(``internal_cost_center``). List routes are handler targets reading the internal database with
the keyset-pagination helpers; single resources and writes are forwarded to the internal app;
the render farm is proxied under ``/api/v1/tools/{tool_id}/...`` with its own token injected.

Every route declares what it answers (list routes the page envelope of their items, the job
progress route its server-sent events), so a client generated from ``/api/v1/openapi.json`` is
typed end to end; :data:`STUDIO_EVENTS`, the webhook event catalogue the dispatcher checks every
publish against, is the document's ``webhooks`` and is listed at ``/api/v1/webhooks/event-types``.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, Field

from extapi_kit.examples.studio.internal import StudioDB
from extapi_kit.routing import (
    CursorCodec,
    ExternalAPI,
    HandlerRequest,
    ListParams,
    Page,
    paginate,
)
from extapi_kit.routing.pagination import keyset_sql, page_from_rows
from extapi_kit.webhooks import EventCatalogue, WebhookManager
from extapi_kit.webhooks.catalogue import API_KEY_NEW_IP, KEY_LEAKED
from extapi_kit.webhooks.selfservice import add_self_service_routes

__all__ = ["ALL_SCOPES", "STUDIO_EVENTS", "build_external_api"]

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


class JobProgress(BaseModel):
    """One ``progress`` event of ``GET /jobs/{id}/events`` (its ``data`` line)."""

    status: str
    progress: int


def studio_events() -> EventCatalogue:
    """Return the studio's webhook event catalogue (every type its dispatcher publishes)."""
    catalogue = EventCatalogue()
    catalogue.register("project.created", "A project was created", schema=ProjectOut)
    catalogue.register("asset.approved", "An asset was approved", schema=AssetOut)
    catalogue.register("job.completed", "A generation job finished", schema=JobOut)
    catalogue.register("job.failed", "A generation job failed", schema=JobOut)
    for name, text in (
        ("api_key.created", "An API key was created"),
        ("api_key.updated", "An API key was changed"),
        ("api_key.rotated", "An API key was rotated (the new key's record)"),
        ("api_key.revoked", "An API key was revoked"),
        ("api_key.quota_warning", "A key used 80% of a quota"),
        ("api_key.quota_exhausted", "A key used all of a quota"),
        ("credits.low", "A key's or owner's credit balance fell to its low threshold"),
        ("credits.exhausted", "A key's or owner's credit balance ran out"),
        ("webhook.endpoint.disabled", "A webhook endpoint was disabled after failing"),
    ):
        catalogue.register(name, text)
    catalogue.add(API_KEY_NEW_IP)  # key analytics: a watched key used from a new address
    catalogue.add(KEY_LEAKED)  # leaked-key reports (docs/leaked-keys.md)
    return catalogue


STUDIO_EVENTS = studio_events()


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
        contact={"name": "Studio platform team", "email": "api@studio.example"},
        license="MIT",
        events=STUDIO_EVENTS,
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

    @api.get(
        "/projects",
        scopes=["projects:read"],
        response_model=Page[ProjectOut],
        summary="List projects",
        tags=["projects"],
    )
    def list_projects(req: HandlerRequest) -> Any:
        # from_request binds the cursor to this path and key: a cursor from another list (or
        # another key) is a 400, never a position read with the wrong types.
        params = ListParams.from_request(
            req,
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
        response_model=Page[AssetOut],
        summary="List a project's assets",
        tags=["assets"],
    )
    def list_assets(req: HandlerRequest) -> Any:
        params = ListParams.from_request(
            req, sortable=["id", "name"], filters=["kind"], max_limit=100
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
        scopes=["jobs:read"], resource_lookup=project_of_job, response_model=JobProgress,
        response_media_type="text/event-stream",
        summary="Job progress (text/event-stream)", tags=["jobs"],
    )  # fmt: skip

    @api.get(
        "/models",
        scopes=["models:read"],
        response_model=Page[ModelOut],
        summary="List models",
        tags=["models"],
    )
    def list_models(req: HandlerRequest) -> Any:
        params = ListParams.from_request(req, sortable=["id", "name"], max_limit=100)
        rows = db.query("SELECT * FROM models")
        serialize = lambda r: ModelOut.model_validate(r).model_dump()  # noqa: E731
        return paginate(rows, params, cursors, serialize=serialize).model_dump()

    # The same projects, assets and jobs as GraphQL (issue 21), with the same scopes and grants,
    # at /api/v1/graphql (explorer: /api/v1/graphql/explorer); needs the graphql extra.
    if importlib.util.find_spec("graphql") is not None:
        from extapi_kit.examples.studio.graphql_api import build_studio_schema

        api.graphql(schema=build_studio_schema(db, internal))

    if webhooks is not None:
        add_self_service_routes(api, webhooks)

    api.add_tool("renderfarm", farm_url, credential=farm_token, timeout=30, connect_timeout=5)
    api.expose(
        ["GET", "POST"], "/tools/{tool_id}/{path:path}", upstream="{tool_id}", path="/{path}",
        scopes=["tools:use"], body_limit="64KiB", idempotent=False,
        request_model=dict[str, Any],  # a tool call's POST body is a JSON object
        summary="Call an integrated tool", tags=["tools"],
    )  # fmt: skip
    return api
