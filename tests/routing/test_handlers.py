"""Handler targets, validation problems, response filtering and deprecation headers."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import BaseModel, Field
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse

from extapi_kit.context import Principal, get_context
from extapi_kit.exceptions import ProblemError
from extapi_kit.problems import PROBLEMS
from extapi_kit.routing import ExternalAPI, HandlerRequest
from tests.routing.conftest import ClientFactory, header_map

pytestmark = pytest.mark.anyio


class ProjectIn(BaseModel):
    name: str = Field(min_length=1, max_length=50)
    budget: int = Field(ge=0)


class ProjectOut(BaseModel):
    id: int
    name: str


class InternalProject(BaseModel):
    id: int
    name: str
    internal_notes: str
    owner_id: int


class Listing(BaseModel):
    limit: int = Field(10, ge=1, le=100)
    tag: list[str] = []
    q: str | None = None


def _api(internal: Starlette | None = None) -> ExternalAPI:
    api = ExternalAPI()

    @api.get("/projects/{id:int}", response_model=ProjectOut, scopes=["projects:read"])
    async def get_project(req: HandlerRequest) -> InternalProject:
        return InternalProject(
            id=int(req.path_params["id"]), name="p", internal_notes="secret", owner_id=9
        )

    @api.post("/projects", request_model=ProjectIn, response_model=ProjectOut, status_code=201)
    async def create(req: HandlerRequest) -> dict[str, Any]:
        return {"id": 1, "name": req.body.name, "internal_notes": "x"}

    @api.get("/search", query_model=Listing)
    async def search(req: HandlerRequest) -> dict[str, Any]:
        return {
            "query": req.query.model_dump(),
            "key": req.principal.key_id if req.principal else None,
        }

    @api.get("/teapot")
    async def teapot(req: HandlerRequest) -> Any:
        raise ProblemError(PROBLEMS["forbidden"], detail="no tea for you")

    @api.get("/text")
    def text(req: HandlerRequest) -> PlainTextResponse:
        return PlainTextResponse("sync handler in a thread")

    @api.delete("/projects/{id:int}")
    async def remove(req: HandlerRequest) -> None:
        return None

    api.expose(
        "GET",
        "/old/{id:int}",
        handler=get_project,
        response_model=ProjectOut,
        deprecated=datetime(2026, 1, 1, tzinfo=UTC),
        sunset=datetime(2027, 1, 1, tzinfo=UTC),
        successor="/api/v2/projects",
    )
    if internal is not None:
        api.expose(
            "GET",
            "/internal-project/{id}",
            to=internal,
            path="/internal/projects/{id}",
            response_model=ProjectOut,
        )
        api.expose(
            "POST", "/forward", to=internal, path="/internal/projects", request_model=ProjectIn
        )
    return api


async def test_response_model_filters_internal_fields(client_for: ClientFactory) -> None:
    """OWASP API3: fields the response model does not declare never leave (handler target)."""
    async with client_for(_api()) as c:
        r = await c.get("/api/v1/projects/3")
    assert r.json() == {"id": 3, "name": "p"}
    assert "secret" not in r.text


async def test_response_model_filters_internal_app_answers(
    internal_app: Starlette, client_for: ClientFactory
) -> None:
    """OWASP API3: an internal app's JSON answer is re-serialised through the response model."""
    async with client_for(_api(internal_app)) as c:
        r = await c.get("/api/v1/internal-project/5")
        head = await c.head("/api/v1/internal-project/5")
    assert r.status_code == 200
    assert r.json() == {"id": 5, "name": "p"}
    assert int(r.headers["content-length"]) == len(r.content)
    assert head.status_code == 200 and head.content == b""


async def test_request_body_is_validated_and_trimmed(
    internal_app: Starlette, client_for: ClientFactory
) -> None:
    """The internal app gets the validated body; undeclared fields (mass assignment) drop."""
    async with client_for(_api(internal_app)) as c:
        r = await c.post("/api/v1/forward", json={"name": "n", "budget": 3, "is_admin": True})
    assert r.status_code == 200
    body = r.json()
    assert body["body"] == '{"name":"n","budget":3}'
    assert header_map(body)["content-length"] == [str(len(body["body"]))]


async def test_validation_error_shape(client_for: ClientFactory) -> None:
    """Field-level 422 problem: errors carry loc, msg and type, with loc rooted at body/query."""
    async with client_for(_api()) as c:
        r = await c.post("/api/v1/projects", json={"name": "", "budget": -1})
        assert r.status_code == 422
        doc = r.json()
        assert doc["type"].endswith("/validation-error")
        locs = sorted(tuple(e["loc"]) for e in doc["errors"])
        assert locs == [("body", "budget"), ("body", "name")]
        assert all(set(e) == {"loc", "msg", "type"} for e in doc["errors"])
        r = await c.get("/api/v1/search", params={"limit": "1000"})
        assert r.status_code == 422
        assert r.json()["errors"][0]["loc"] == ["query", "limit"]
        r = await c.get("/api/v1/search?limit=1&limit=2")
        assert r.status_code == 422
        assert r.json()["errors"][0]["type"] == "duplicate"


async def test_body_content_type_and_malformed_json(client_for: ClientFactory) -> None:
    """Wrong content type is a 415, malformed JSON a 400, a good body a 201 through the model."""
    async with client_for(_api()) as c:
        r = await c.post(
            "/api/v1/projects", content=b"name=x", headers={"content-type": "text/plain"}
        )
        assert r.status_code == 415
        r = await c.post(
            "/api/v1/projects", content=b"{nope", headers={"content-type": "application/json"}
        )
        assert r.status_code == 400
        r = await c.post("/api/v1/projects", json={"name": "n", "budget": 1})
        assert r.status_code == 201
        assert r.json() == {"id": 1, "name": "n"}


async def test_query_model_and_principal_reach_handler(client_for: ClientFactory) -> None:
    """Handlers get the validated query instance (repeatable list fields) and the principal."""

    api = _api()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            get_context(scope).principal = Principal(key_id="k1")
        await api(scope, receive, send)

    async with client_for(app) as c:
        r = await c.get("/api/v1/search?tag=a&tag=b&q=x")
    assert r.json() == {"query": {"limit": 10, "tag": ["a", "b"], "q": "x"}, "key": "k1"}


async def test_problem_error_response_and_none(client_for: ClientFactory) -> None:
    """ProblemError becomes its problem; a Response is sent as is (sync handler); None is 204."""
    async with client_for(_api()) as c:
        r = await c.get("/api/v1/teapot")
        assert r.status_code == 403 and r.json()["detail"] == "no tea for you"
        r = await c.get("/api/v1/text")
        assert r.text == "sync handler in a thread"
        r = await c.delete("/api/v1/projects/1")
        assert r.status_code == 204


async def test_deprecation_headers(client_for: ClientFactory) -> None:
    """RFC 9745 Deprecation (@epoch), RFC 8594 Sunset (HTTP-date) and a successor Link."""
    async with client_for(_api()) as c:
        r = await c.get("/api/v1/old/1")
        assert r.headers["deprecation"] == "@1767225600"
        assert r.headers["sunset"] == "Fri, 01 Jan 2027 00:00:00 GMT"
        assert r.headers["link"] == '</api/v2/projects>; rel="successor-version"'
        fresh = await c.get("/api/v1/projects/1")
        assert "deprecation" not in fresh.headers and "sunset" not in fresh.headers


async def test_oversized_body_for_validation_is_413(client_for: ClientFactory) -> None:
    """A body read for validation is capped even without the body-limit middleware."""
    api = ExternalAPI(max_json_body=64)

    @api.post("/p", request_model=ProjectIn)
    async def create(req: HandlerRequest) -> dict[str, str]:
        return {}

    async with client_for(api) as c:
        r = await c.post("/api/v1/p", json={"name": "x" * 100, "budget": 1})
    assert r.status_code == 413


async def test_internal_server_errors_are_masked(client_for: ClientFactory) -> None:
    """A10: an internal 5xx body (tracebacks, hostnames) is replaced by a generic problem."""

    async def leaky(scope: Any, receive: Any, send: Any) -> None:
        status = 503 if scope["path"].endswith("busy") else 500
        headers = [(b"content-type", b"text/plain"), (b"retry-after", b"7"), (b"x-db-host", b"db1")]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send(
            {"type": "http.response.body", "body": b"Traceback: db1.internal", "more_body": True}
        )
        await send({"type": "http.response.body", "body": b"...", "more_body": False})

    api = ExternalAPI()
    api.expose("GET", "/{what}", to=leaky, path="/{what}")
    async with client_for(api) as c:
        r = await c.get("/api/v1/crash")
        busy = await c.get("/api/v1/busy")
    assert r.status_code == 500 and r.json()["type"].endswith("/internal-error")
    assert "db1" not in r.text and "x-db-host" not in r.headers
    assert busy.status_code == 503 and busy.headers["retry-after"] == "7"
