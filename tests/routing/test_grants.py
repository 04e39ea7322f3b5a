"""Resource grants in the registry: Z3 (BOLA), writes, lists, rotation, revocation, audit ids."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from argon2 import profiles
from pydantic import BaseModel
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from extapi_kit._types import ASGIApp
from extapi_kit.exceptions import ProblemError
from extapi_kit.keys.hashing import Argon2Hasher
from extapi_kit.keys.service import KeyService
from extapi_kit.keys.store_memory import MemoryKeyStore
from extapi_kit.problems import PROBLEMS
from extapi_kit.routing import CursorCodec, ExternalAPI, HandlerRequest, ListParams, paginate
from extapi_kit.testing import FakeClock

pytestmark = pytest.mark.anyio

PROJECTS = ("1", "2", "3", "4", "5")  # ids 6.. do not exist
ASSETS: list[dict[str, Any]] = [
    {"id": f"a{p}{n}", "project_id": int(p), "name": f"asset {n}"} for p in PROJECTS for n in "xyz"
]
CODEC = CursorCodec("grants-test-cursor-secret")


class NewAsset(BaseModel):
    """Body of an asset creation."""

    project_id: int
    name: str


class AssetName(BaseModel):
    """Body of an asset creation under a project path."""

    name: str


@dataclass
class Sample:
    """The sample API, its built stack, and what reached the targets."""

    app: Any
    service: KeyService
    clock: FakeClock
    calls: list[str] = field(default_factory=list)
    headers: list[str] = field(default_factory=list)
    resource_ids: list[dict[str, str]] = field(default_factory=list)


def _query(request: HandlerRequest) -> dict[str, str]:
    return dict(httpx.QueryParams(request.scope.get("query_string", b"").decode()))


def _missing() -> ProblemError:
    return ProblemError(PROBLEMS["not-found"])


def _internal_app(sample: Sample) -> Starlette:
    """The internal service; it filters lists with X-Resource-Grants (except /leaky)."""

    def granted(request: Request) -> frozenset[str] | None:
        raw = request.headers.get("x-resource-grants")
        sample.headers.append(raw or "")
        ids = json.loads(raw).get("projects") if raw else None
        return None if ids is None or "*" in ids else frozenset(ids)

    async def project(request: Request) -> Response:
        sample.calls.append("internal:project")
        pid = request.path_params["project_id"]
        if pid not in PROJECTS:
            return Response("Not Found", status_code=404)  # Starlette's own 404 shape
        return JSONResponse({"id": int(pid), "name": f"project {pid}"})

    async def assets(request: Request) -> Response:
        sample.calls.append("internal:assets")
        ids = granted(request)
        q = dict(request.query_params)
        params = ListParams.from_query(q, filters=("project_id",))
        where = None if ids is None else (lambda a: str(a["project_id"]) in ids)
        return JSONResponse(paginate(ASSETS, params, CODEC, where=where).model_dump())

    async def leaky(request: Request) -> Response:
        sample.calls.append("internal:leaky")
        return JSONResponse({"data": ASSETS, "next_cursor": None, "has_more": False})

    async def asset(request: Request) -> Response:
        sample.calls.append("internal:asset")
        found = [a for a in ASSETS if a["id"] == request.path_params["asset_id"]]
        return JSONResponse(found[0]) if found else JSONResponse({"detail": "gone"}, 404)

    async def approve(request: Request) -> Response:
        sample.calls.append("internal:approve")
        found = [a for a in ASSETS if a["id"] == request.path_params["asset_id"]]
        if not found:
            return JSONResponse({"detail": "gone"}, 404)
        return JSONResponse({**found[0], "approved": True})

    return Starlette(
        routes=[
            Route("/projects/{project_id}", project),
            Route("/assets", assets),
            Route("/leaky", leaky),
            Route("/assets/{asset_id}", asset),
            Route("/assets/{asset_id}/approve", approve, methods=["POST"]),
        ]
    )


def asset_owner(sample: Sample) -> Any:
    """The owner lookup of ``/assets/{asset_id}/...``: the asset's project, or None if missing."""

    def lookup(values: Any) -> dict[str, Any] | None:
        sample.calls.append("lookup")
        found = [a for a in ASSETS if a["id"] == values["asset_id"]]
        return {"projects": found[0]["project_id"]} if found else None

    return lookup


def make_api(sample: Sample) -> ExternalAPI:
    """Handler targets and `to=` targets over the same projects and assets."""
    api = ExternalAPI()
    internal = _internal_app(sample)
    res = {"project_id": "projects"}

    def seen(request: HandlerRequest, name: str) -> None:
        sample.calls.append(name)
        sample.resource_ids.append(dict(request.ctx.resource_ids))

    @api.get("/projects/{project_id}", resource_params=res)
    async def get_project(request: HandlerRequest) -> Any:
        seen(request, "handler:project")
        pid = request.path_params["project_id"]
        if pid not in PROJECTS:
            raise _missing()
        return {"id": int(pid), "name": f"project {pid}"}

    @api.get("/projects/{project_id}/assets", resource_params=res)
    async def project_assets(request: HandlerRequest) -> Any:
        seen(request, "handler:project_assets")
        pid = request.path_params["project_id"]
        if pid not in PROJECTS:
            raise _missing()
        params = ListParams.from_query(_query(request))
        rows = [a for a in ASSETS if str(a["project_id"]) == pid]
        return paginate(rows, params, CODEC)

    @api.post("/projects/{project_id}/assets", resource_params=res, request_model=AssetName)
    async def create_under(request: HandlerRequest) -> Any:
        seen(request, "handler:create_under")
        if request.path_params["project_id"] not in PROJECTS:
            raise _missing()
        return {"project_id": int(request.path_params["project_id"]), "name": request.body.name}

    @api.get("/assets", filter_field={"projects": "project_id"})
    async def list_assets(request: HandlerRequest) -> Any:
        seen(request, "handler:assets")
        params = ListParams.from_query(_query(request))
        return paginate(ASSETS, params, CODEC, where=request.grant_filter("projects", "project_id"))

    @api.post("/assets", request_model=NewAsset, resource_body_fields=res)
    async def create_asset(request: HandlerRequest) -> Any:
        seen(request, "handler:create_asset")
        if str(request.body.project_id) not in PROJECTS:
            raise _missing()
        return {"project_id": request.body.project_id, "name": request.body.name}

    @api.get("/public/projects/{project_id}", resource_params=res, public=True)
    async def public_project(request: HandlerRequest) -> Any:
        seen(request, "handler:public")
        return {"id": int(request.path_params["project_id"])}

    api.expose(
        "GET",
        "/svc/projects/{project_id}",
        to=internal,
        path="/projects/{project_id}",
        resource_params=res,
    )
    api.expose(
        "GET",
        "/svc/assets",
        to=internal,
        path="/assets",
        resource_params=res,
        filter_field={"projects": "project_id"},
    )
    api.expose(
        "GET", "/svc/leaky", to=internal, path="/leaky", filter_field={"projects": "project_id"}
    )
    api.expose(
        "GET",
        "/svc/asset/{asset_id}",
        to=internal,
        path="/assets/{asset_id}",
        filter_field={"projects": "project_id"},
    )
    # A write addressed by the object's own id: the response filter would come too late, so the
    # owner lookup checks the asset's project before the internal service runs.
    api.expose(
        "POST",
        "/svc/asset/{asset_id}/approve",
        to=internal,
        path="/assets/{asset_id}/approve",
        resource_lookup=asset_owner(sample),
    )
    sync_lookup = asset_owner(sample)

    async def async_lookup(values: Any) -> dict[str, Any] | None:
        owners: dict[str, Any] | None = sync_lookup(values)
        return owners

    @api.post("/asset/{asset_id}/archive", resource_lookup=async_lookup)
    async def archive(request: HandlerRequest) -> Any:
        seen(request, "handler:archive")
        found = [a for a in ASSETS if a["id"] == request.path_params["asset_id"]]
        if not found:
            raise _missing()
        return {**found[0], "archived": True}

    return api


def make_sample(cache_ttl: float = 10.0, store: MemoryKeyStore | str | None = None) -> Sample:
    """Return the sample API built with the real stack (KeyService + ApiKeyMiddleware)."""
    clock = FakeClock(1_800_000_000)
    service = KeyService(
        store or MemoryKeyStore(),
        hasher=Argon2Hasher(profiles.CHEAPEST),
        clock=clock,
        cache_ttl=cache_ttl,
    )
    sample = Sample(app=None, service=service, clock=clock)
    sample.app = make_api(sample).build(key_store=service, idempotency_store="memory://")
    return sample


@asynccontextmanager
async def client(app: ASGIApp) -> AsyncIterator[httpx.AsyncClient]:
    """An in-process client."""
    transport = httpx.ASGITransport(app, client=("203.0.113.7", 1234))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        yield c


def same_404(a: httpx.Response, b: httpx.Response) -> bool:
    """Whether two answers are the same not-found problem (status, body, content headers)."""
    keys = ("content-type", "content-length")
    return (
        a.status_code == b.status_code == 404
        and a.content == b.content
        and [a.headers.get(k) for k in keys] == [b.headers.get(k) for k in keys]
    )


async def test_z3_tenant_b_cannot_read_tenant_a_project() -> None:
    """Z3: B's request for A's project is the same 404 as a missing one and reaches nothing."""
    s = make_sample()
    _, key_a = await s.service.create("a", owner="A", grants={"projects": ["1"]})
    _, key_b = await s.service.create("b", owner="B", grants={"projects": ["2"]})
    async with client(s.app) as c:
        for base in ("/api/v1/projects", "/api/v1/svc/projects"):
            own = await c.get(f"{base}/1", headers={"X-API-Key": key_a})
            assert own.status_code == 200 and own.json()["id"] == 1
            s.calls.clear()
            foreign = await c.get(f"{base}/1", headers={"X-API-Key": key_b})
            assert s.calls == []  # denied before the target ran
            missing_b = await c.get(f"{base}/9", headers={"X-API-Key": key_b})
            unknown_route = await c.get("/api/v1/nothing/here", headers={"X-API-Key": key_b})
            # A's own key on a missing id: the target's 404 is normalised to the same problem.
            missing_a = await c.get(f"{base}/9", headers={"X-API-Key": key_a})
            for other in (missing_b, unknown_route, missing_a):
                assert same_404(foreign, other), (foreign.content, other.content)
            assert foreign.json()["type"].endswith("/not-found")


async def test_writes_under_or_naming_a_foreign_project_are_404() -> None:
    """Z3 writes: a path or body naming a foreign project is 404 before the handler runs."""
    s = make_sample()
    _, key = await s.service.create("k", grants={"projects": ["1", "2"]})
    h = {"X-API-Key": key}
    async with client(s.app) as c:
        ok = await c.post("/api/v1/assets", json={"project_id": 2, "name": "n"}, headers=h)
        assert ok.status_code == 200 and s.calls == ["handler:create_asset"]
        assert s.resource_ids[-1] == {"projects": "2"}
        s.calls.clear()
        body = await c.post("/api/v1/assets", json={"project_id": 3, "name": "n"}, headers=h)
        under = await c.post("/api/v1/projects/3/assets", json={"name": "n"}, headers=h)
        assert body.status_code == under.status_code == 404 and s.calls == []
        ok2 = await c.post("/api/v1/projects/1/assets", json={"name": "n"}, headers=h)
        assert ok2.status_code == 200 and s.resource_ids[-1] == {"projects": "1"}


async def test_owner_lookup_guards_writes_addressed_by_object_id() -> None:
    """Z3 writes by object id: approving another project's asset is the missing-object 404 and
    the internal service never runs; the lookup is skipped for unrestricted keys."""
    s = make_sample()
    _, key = await s.service.create("k", grants={"projects": ["1"]})
    _, full = await s.service.create("full")
    h = {"X-API-Key": key}
    async with client(s.app) as c:
        for url in ("/api/v1/svc/asset/{}/approve", "/api/v1/asset/{}/archive"):
            s.calls.clear()
            foreign = await c.post(url.format("a2x"), headers=h)
            assert foreign.status_code == 404 and s.calls == ["lookup"]
            missing = await c.post(url.format("nope"), headers=h)
            assert same_404(foreign, missing)
            s.calls.clear()
            own = await c.post(url.format("a1y"), headers=h)
            assert own.status_code == 200 and s.calls[0] == "lookup", own.text
            assert s.calls[1] in ("internal:approve", "handler:archive")
            s.calls.clear()
            other = await c.post(url.format("a2x"), headers={"X-API-Key": full})
            assert other.status_code == 200 and "lookup" not in s.calls
        assert s.resource_ids[-2] == {"projects": "1"}  # recorded for the audit trail


async def test_repeated_and_validated_query_values_are_all_checked() -> None:
    """Z3: `?project_id=1&project_id=3` is 404 for a key granted only 1 (parameter pollution)."""
    s = make_sample()
    _, key = await s.service.create("k", grants={"projects": ["1"]})
    h = {"X-API-Key": key}
    async with client(s.app) as c:
        ok = await c.get("/api/v1/svc/assets?project_id=1", headers=h)
        assert ok.status_code == 200 and {a["project_id"] for a in ok.json()["data"]} == {1}
        for q in ("project_id=1&project_id=3", "project_id=3", "project%5Fid=3", "project_id=%33"):
            r = await c.get(f"/api/v1/svc/assets?{q}", headers=h)
            assert r.status_code == 404, q


async def test_internal_service_receives_trusted_grants_header() -> None:
    """A11: X-Resource-Grants carries the key's grants; a client-sent copy never gets through."""
    s = make_sample()
    _, key = await s.service.create("k", grants={"projects": ["2", "1"], "orgs": ["*"]})
    async with client(s.app) as c:
        r = await c.get(
            "/api/v1/svc/assets",
            headers={"X-API-Key": key, "X-Resource-Grants": '{"projects":["*"]}'},
        )
    assert r.status_code == 200
    assert json.loads(s.headers[-1]) == {"projects": ["1", "2"], "orgs": ["*"]}
    assert {a["project_id"] for a in r.json()["data"]} == {1, 2}


async def test_post_filter_drops_foreign_items_and_hides_foreign_objects() -> None:
    """Z3 defence in depth: a service ignoring grants still never leaks a foreign item."""
    s = make_sample()
    _, key = await s.service.create("k", grants={"projects": ["4"]})
    _, full = await s.service.create("full")
    async with client(s.app) as c:
        r = await c.get("/api/v1/svc/leaky", headers={"X-API-Key": key})
        assert r.status_code == 200 and {a["project_id"] for a in r.json()["data"]} == {4}
        everything = await c.get("/api/v1/svc/leaky", headers={"X-API-Key": full})
        assert len(everything.json()["data"]) == len(ASSETS)
        own = await c.get("/api/v1/svc/asset/a4x", headers={"X-API-Key": key})
        foreign = await c.get("/api/v1/svc/asset/a1x", headers={"X-API-Key": key})
        gone = await c.get("/api/v1/svc/asset/nope", headers={"X-API-Key": key})
    assert own.status_code == 200 and own.json()["project_id"] == 4
    assert same_404(foreign, gone)


async def test_public_route_checks_grants_only_when_a_key_is_sent() -> None:
    """Public routes: no key, no grant check; a restricted key sent there is still checked."""
    s = make_sample()
    _, key = await s.service.create("k", grants={"projects": ["1"]})
    async with client(s.app) as c:
        assert (await c.get("/api/v1/public/projects/3")).status_code == 200
        r = await c.get("/api/v1/public/projects/3", headers={"X-API-Key": key})
        assert r.status_code == 404


def test_openapi_documents_resource_routes() -> None:
    """Integrators read in the document which parameters name resources and that a foreign id
    is a 404 (never 403); routes without grants keep the plain 404 text."""
    doc = make_api(Sample(app=None, service=None, clock=FakeClock())).openapi()  # type: ignore[arg-type]
    op = doc["paths"]["/api/v1/projects/{project_id}"]["get"]
    assert op["x-resource-grants"] == {"parameters": {"project_id": "projects"}}
    assert "resource grants" in op["responses"]["404"]["description"]
    assert "403" not in op["responses"] or "scope" in op["responses"]["403"]["description"]
    approve = doc["paths"]["/api/v1/svc/asset/{asset_id}/approve"]["post"]
    assert approve["x-resource-grants"] == {"owner_checked": True}
    body = doc["paths"]["/api/v1/assets"]["post"]["x-resource-grants"]
    assert body == {"body_fields": {"project_id": "projects"}}
    listed = doc["paths"]["/api/v1/svc/assets"]["get"]["x-resource-grants"]
    assert listed["filtered_by"] == {"projects": "project_id"}
    leaky = doc["paths"]["/api/v1/svc/leaky"]["get"]["x-resource-grants"]
    assert leaky == {"filtered_by": {"projects": "project_id"}}
