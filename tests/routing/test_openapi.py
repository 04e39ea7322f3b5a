"""The OpenAPI document lists exactly the reachable surface (Z4) with security and problems."""

from __future__ import annotations

import re
from typing import Any

import pytest
from pydantic import BaseModel
from starlette.applications import Starlette

from extapi_kit.routing import ExternalAPI, HandlerRequest
from tests.routing.conftest import ClientFactory, raw_call

pytestmark = pytest.mark.anyio

_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


class Item(BaseModel):
    id: int
    name: str


class ItemIn(BaseModel):
    name: str


class Query(BaseModel):
    limit: int = 10


def _api(internal: Starlette) -> ExternalAPI:
    api = ExternalAPI(title="Sample", version="2.1.0")
    api.expose(
        "GET",
        "/projects/{id:int}",
        to=internal,
        path="/internal/projects/{id}",
        scopes=["projects:read"],
        response_model=Item,
        summary="Get a project",
    )
    api.expose(
        "POST",
        "/projects",
        to=internal,
        path="/internal/projects",
        scopes=["projects:write"],
        request_model=ItemIn,
        response_model=Item,
        idempotent=True,
    )
    api.expose(
        "DELETE",
        "/projects/{id:int}",
        to=internal,
        path="/internal/admin",
        scopes=["projects:admin"],
        deprecated=True,
    )
    api.expose(
        "GET", "/items", to=internal, path="/internal/echo/items", query_model=Query, public=True
    )
    api.expose("GET", "/v2only", to=internal, path="/internal/echo/x", version="v2")

    @api.get("/hidden", include_in_schema=True)
    async def hidden(req: HandlerRequest) -> dict[str, Any]:
        return {}

    return api


def _sample(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "1", path)


async def test_document_equals_reachable_set(internal_app: Starlette) -> None:
    """Z4: every (method, path) in the document answers; every other method on it is a 405."""
    api = _api(internal_app)
    doc = api.openapi("v1")
    listed = {(m.upper(), p) for p, item in doc["paths"].items() for m in item}
    declared = {
        (m, r.template.replace(":int", ""))
        for r in api.router.routes_for("v1")
        for m in r.methods
        if r.include_in_schema  # the reference page's script and stylesheet are not API
    }
    assert listed == declared
    for path, item in doc["paths"].items():
        for method in _METHODS:
            status, _, _ = await raw_call(api, method, _sample(path))
            documented = method.lower() in item or (method == "HEAD" and "get" in item)
            assert (status != 405) == documented, (method, path, status)
    assert (await raw_call(api, "GET", "/api/v1/v2only"))[0] == 404
    assert {p for p in api.openapi("v2")["paths"]} == {
        "/api/v2/v2only",
        "/api/v2/openapi.json",
        "/api/v2/docs",
    }


async def test_security_scopes_and_problems(internal_app: Starlette) -> None:
    """Security schemes, required scopes, problem responses with rate headers, Idempotency-Key."""
    doc = _api(internal_app).openapi("v1")
    schemes = doc["components"]["securitySchemes"]
    assert schemes["ApiKeyHeader"] == {"type": "apiKey", "in": "header", "name": "X-API-Key"}
    assert schemes["BearerKey"]["scheme"] == "bearer"
    get = doc["paths"]["/api/v1/projects/{id}"]["get"]
    assert get["x-required-scopes"] == ["projects:read"]
    assert "`projects:read`" in get["description"]
    assert get["security"] == [
        {"ApiKeyHeader": ["projects:read"]},
        {"BearerKey": ["projects:read"]},
    ]
    for code in ("401", "403", "404", "413", "429"):
        assert get["responses"][code]["content"]["application/problem+json"]["schema"] == {
            "$ref": "#/components/schemas/Problem"
        }
    assert {"RateLimit", "RateLimit-Policy", "Retry-After"} <= set(
        get["responses"]["429"]["headers"]
    )
    assert get["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Item"
    }
    post = doc["paths"]["/api/v1/projects"]["post"]
    assert "422" in post["responses"]
    assert any(p["name"] == "Idempotency-Key" and p["in"] == "header" for p in post["parameters"])
    assert post["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ItemIn"
    }
    assert doc["paths"]["/api/v1/projects/{id}"]["delete"]["deprecated"] is True
    items = doc["paths"]["/api/v1/items"]["get"]
    assert items["security"] == [] and "401" not in items["responses"]
    assert items["parameters"][0]["name"] == "limit" and items["parameters"][0]["in"] == "query"
    assert doc["openapi"] == "3.1.0" and doc["info"]["title"] == "Sample"


async def test_served_openapi_and_docs_are_public(
    internal_app: Starlette, client_for: ClientFactory
) -> None:
    """openapi.json and the docs page are served per version and marked public for the stack."""
    api = _api(internal_app)
    async with client_for(api) as c:
        r = await c.get("/api/v1/openapi.json")
        assert r.status_code == 200 and r.json() == api.openapi("v1")
        page = await c.get("/api/v1/docs")
        assert page.headers["content-type"].startswith("text/html")
        assert "<script src='docs/swagger-ui-bundle.js'>" in page.text
    match = api.router.matcher.match("/api/v1/openapi.json", "GET")[0]
    assert match.settings.public is True


class Progress(BaseModel):
    percent: int


async def test_metadata_webhooks_and_declared_answers(client_for: ClientFactory) -> None:
    """Z4: servers, contact and license as configured; info.version is the release (a version a
    client package can carry); the event catalogue is the document's webhooks (schema and
    version per type) and a public route; 204, SSE and page answers are declared."""
    from extapi_kit.exceptions import ConfigurationError
    from extapi_kit.routing import Page
    from extapi_kit.webhooks import EventCatalogue

    events = EventCatalogue()
    events.register("item.created", "An item was created", schema=Item, version="3")
    events.register("item.gone", "An item was removed")
    api = ExternalAPI(
        title="Sample",
        version="2.1.0",
        servers=["https://api.example.com", {"url": "http://127.0.0.1:8000", "description": "l"}],
        contact={"name": "Team", "email": "api@example.com"},
        license="Apache-2.0",
        events=events,
    )

    async def nothing(req: HandlerRequest) -> None:
        return None

    async def page(req: HandlerRequest) -> Page[Item]:
        return Page[Item](data=[Item(id=1, name="a")])

    api.expose("DELETE", "/items/{id:int}", handler=nothing, status_code=204, public=True)
    api.expose("GET", "/items", handler=page, response_model=Page[Item], public=True)
    api.expose(
        "GET", "/items/{id:int}/events", handler=nothing, public=True,
        response_model=Progress, response_media_type="text/event-stream",
    )  # fmt: skip
    doc = api.openapi("v1")
    assert doc["info"]["version"] == "2.1.0" and doc["info"]["x-api-version"] == "v1"
    assert doc["info"]["contact"] == {"name": "Team", "email": "api@example.com"}
    assert doc["info"]["license"] == {"name": "Apache-2.0", "identifier": "Apache-2.0"}
    assert doc["servers"][0] == {"url": "https://api.example.com"}
    delete = doc["paths"]["/api/v1/items/{id}"]["delete"]
    assert delete["operationId"] == "delete_api_v1_items_id"
    assert "content" not in delete["responses"]["204"]
    listed = doc["paths"]["/api/v1/items"]["get"]["responses"]["200"]["content"]
    assert listed["application/json"]["schema"] == {"$ref": "#/components/schemas/Page_Item"}
    assert doc["components"]["schemas"]["Page_Item"]["properties"]["data"]["items"] == {
        "$ref": "#/components/schemas/Item"
    }
    sse = doc["paths"]["/api/v1/items/{id}/events"]["get"]["responses"]["200"]["content"]
    assert sse["text/event-stream"]["x-event-schema"] == {"$ref": "#/components/schemas/Progress"}
    created = doc["webhooks"]["item.created"]["post"]
    envelope = created["requestBody"]["content"]["application/json"]["schema"]
    assert envelope["properties"]["version"] == {
        "const": "3",
        "description": "Payload version; bumped on a breaking change of data",
    }
    assert envelope["properties"]["data"] == {"$ref": "#/components/schemas/Item"}
    assert {p["name"] for p in created["parameters"]} >= {"webhook-id", "webhook-signature"}
    assert set(doc["webhooks"]) == {"item.created", "item.gone"}
    async with client_for(api) as c:
        served = (await c.get("/api/v1/webhooks/event-types")).json()["data"]
    assert [(t["type"], t["version"]) for t in served] == [
        ("item.created", "3"),
        ("item.gone", "1"),
    ]
    assert served[0]["data_schema"]["properties"]["id"] == {"title": "Id", "type": "integer"}
    for bad in ({"servers": [{"description": "no url"}]}, {"license": {"identifier": "MIT"}}):
        with pytest.raises(ConfigurationError):
            ExternalAPI(**bad)
