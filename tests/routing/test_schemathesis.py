"""schemathesis against the generated OpenAPI of a sample registry: no server error, no
undocumented status, answers match their schemas, bad input and missing keys are refused."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Literal

import anyio
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from pydantic import BaseModel, Field
from schemathesis.checks import not_a_server_error
from schemathesis.python.asgi import shutdown_lifespans
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    ignored_auth,
    missing_required_header,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
    unsupported_method,
)
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from extapi_kit._types import ASGIApp
from extapi_kit.keys.service import KeyService
from extapi_kit.routing import ExternalAPI, HandlerRequest
from tests.keys.support import cheap_hasher

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,
    missing_required_header,
    unsupported_method,
    ignored_auth,
]


class Project(BaseModel):
    id: int
    name: str
    tags: list[str] = []


class ProjectIn(BaseModel):
    name: str = Field(min_length=1, max_length=40)
    tags: list[str] = Field(default_factory=list, max_length=5)


class ListQuery(BaseModel):
    limit: int = Field(default=10, ge=1, le=100)
    q: str | None = Field(default=None, max_length=20)
    status: Literal["active", "archived"] = "active"
    tag: list[str] = Field(default_factory=list, max_length=3)


class ProjectPatch(BaseModel):
    name: str | None = Field(default=None, min_length=1, max_length=40)
    archived: bool | None = None


async def _internal_project(request: Request) -> Response:
    return JSONResponse({"id": int(request.path_params["id"]), "name": "p", "secret": "x"})


async def _internal_create(request: Request) -> Response:
    body = await request.json()
    return JSONResponse({"id": 7, "name": body["name"]}, status_code=201)


def _internal_app() -> Starlette:
    return Starlette(
        routes=[
            Route("/internal/projects/{id}", _internal_project),
            Route("/internal/projects", _internal_create, methods=["POST"]),
        ]
    )


def sample_api() -> ExternalAPI:
    """A registry: handler and ``to=`` targets, models, path params, idempotency, deprecation."""
    api = ExternalAPI(title="Sample", version="1.0.0")
    api.expose(
        "GET",
        "/internal-projects/{id:int}",
        to=_internal_app(),
        path="/internal/projects/{id}",
        scopes=["projects:read"],
        response_model=Project,
    )

    api.expose(
        "POST",
        "/internal-projects",
        to=_internal_app(),
        path="/internal/projects",
        scopes=["projects:write"],
        request_model=ProjectIn,
        response_model=Project,
        status_code=201,
    )

    @api.get("/status", public=True)
    async def status(req: HandlerRequest) -> dict[str, Any]:
        return {"ok": True}

    @api.patch("/projects/{id:int}", scopes=["projects:write"], request_model=ProjectPatch)
    async def patch_project(req: HandlerRequest) -> dict[str, Any]:
        return {"id": req.path_params["id"], **req.body.model_dump(exclude_none=True)}

    @api.get("/projects", scopes=["projects:read"], query_model=ListQuery)
    async def list_projects(req: HandlerRequest) -> list[dict[str, Any]]:
        items = [{"id": i, "name": "p", "tags": req.query.tag} for i in range(req.query.limit)]
        return items[:3]

    @api.get("/projects/{id:int}", scopes=["projects:read"], response_model=Project)
    async def get_project(req: HandlerRequest) -> dict[str, Any]:
        return {"id": req.path_params["id"], "name": "p", "internal": 1}

    @api.post(
        "/projects",
        scopes=["projects:write"],
        request_model=ProjectIn,
        response_model=Project,
        status_code=201,
        idempotent=True,
    )
    async def create_project(req: HandlerRequest) -> dict[str, Any]:
        return {"id": 1, "name": req.body.name, "tags": req.body.tags}

    @api.delete("/projects/{id:int}", scopes=["projects:write"], deprecated=True, status_code=204)
    async def delete_project(req: HandlerRequest) -> None:
        return None

    @api.get("/files/{name}/{rest:path}", scopes=["projects:read"], public=False)
    async def get_file(req: HandlerRequest) -> dict[str, Any]:
        return {"name": req.path_params["name"], "rest": req.path_params["rest"]}

    return api


def _build() -> tuple[ASGIApp, str]:
    keys = KeyService("memory://", hasher=cheap_hasher(), failures_per_ip=1_000_000)

    async def make_key() -> str:
        _, key = await keys.create("st", scopes=["projects:read", "projects:write"])
        return key

    key = anyio.run(make_key)
    app = sample_api().build(
        key_store=keys,
        rate_limit_storage="memory://",
        audit_sink="memory://",
        idempotency_store="memory://",
        read="1000000/minute",
        write="1000000/minute",
    )
    return app, key


# Loaded at import: the pytest plugin parametrizes from a schema object, and the stack's memory
# stores need no lifespan of their own (schemathesis runs the app's lifespan in its portal).
APP, KEY = _build()
schema = schemathesis.openapi.from_asgi("/api/v1/openapi.json", APP)


@pytest.fixture(scope="module", autouse=True)
def _stop_lifespans() -> Iterator[None]:
    """Stop the lifespans schemathesis started in its event-loop thread after this module."""
    yield
    shutdown_lifespans()


@schema.parametrize()
@settings(
    max_examples=30,
    deadline=None,
    derandomize=True,
    suppress_health_check=list(HealthCheck),
)
def test_registry_conforms_to_its_openapi(case: Any) -> None:
    """G1/Z4: every operation of the generated document answers without 5xx, with documented
    statuses, content types, headers and bodies; invalid input and missing keys are refused."""
    # The document offers X-API-Key or Bearer; the generator fills Authorization with junk that
    # would hide every call behind a 401, so the valid key goes in X-API-Key and junk is dropped.
    if case.headers:
        case.headers.pop("Authorization", None)
    response = case.call_and_validate(headers={"X-API-Key": KEY}, checks=CHECKS)
    assert response.status_code != 401, "the key must authenticate every generated call"
