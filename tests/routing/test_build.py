"""build(): layer order, one match per request, and the real stack end to end."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

from extapi_kit._types import ASGIApp, Receive, Scope, Send
from extapi_kit.context import get_context
from extapi_kit.exceptions import ConfigurationError
from extapi_kit.routing import ExternalAPI, HandlerRequest, StackSettings
from extapi_kit.routing.build import LAYER_ORDER
from extapi_kit.routing.matcher import Matcher
from tests.routing.conftest import ClientFactory

pytestmark = pytest.mark.anyio


def _recorder(name: str, log: list[tuple[str, Any]]) -> Any:
    class Layer:
        def __init__(self, app: ASGIApp, **kwargs: Any) -> None:
            self.app = app
            self.kwargs = kwargs
            log.append(("init", name))

        async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] == "http":
                route = get_context(scope).route
                log.append((name, route.template if route else None))
            await self.app(scope, receive, send)

    return Layer


def _api(internal: Starlette) -> ExternalAPI:
    api = ExternalAPI()
    api.expose(
        "GET",
        "/projects/{id}",
        to=internal,
        path="/internal/projects/{id}",
        ip_allow=["203.0.113.0/24"],
    )
    return api


async def test_layer_order_and_settings_before_first_layer(
    internal_app: Starlette, client_for: ClientFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """DESIGN §3 order; RouteSettings set before the first layer; one match per request."""
    log: list[tuple[str, Any]] = []
    layers = {name: _recorder(name, log) for name in LAYER_ORDER}
    calls = 0
    original = Matcher.match

    def counting(self: Matcher, path: str, method: str) -> Any:
        nonlocal calls
        calls += 1
        return original(self, path, method)

    monkeypatch.setattr(Matcher, "match", counting)
    app = _api(internal_app).build(
        key_store="memory://",
        rate_limit_storage="memory://",
        audit_sink="memory://",
        idempotency_store="memory://",
        usage="memory://",
        credits="memory://",
        layers=layers,
    )
    async with client_for(app) as c:
        r = await c.get("/api/v1/projects/4")
    assert r.status_code == 200
    assert calls == 1
    calls_in_order = [entry for entry in log if entry[0] != "init"]
    assert calls_in_order == [(name, "/api/v1/projects/{id}") for name in LAYER_ORDER]


async def test_layers_are_optional(internal_app: Starlette, client_for: ClientFactory) -> None:
    """None disables a layer; auth needs a key store or auth=False (deny by default, A13)."""
    log: list[tuple[str, Any]] = []
    layers = {name: _recorder(name, log) for name in LAYER_ORDER}
    with pytest.raises(ConfigurationError):
        _api(internal_app).build(layers=layers)
    app = _api(internal_app).build(
        auth=False, body_limit=None, rate_limit_storage=None, audit_sink=None, layers=layers
    )
    async with client_for(app) as c:
        assert (await c.get("/api/v1/projects/4")).status_code == 200
    assert [n for kind, n in log if kind == "init"] == ["ip_allowlist"]
    with pytest.raises(ConfigurationError):
        _api(internal_app).build(auth=False, bogus=1)


async def test_settings_object_and_shared_resolver(internal_app: Starlette) -> None:
    """StackSettings on the API are defaults for build(); all layers share one ClientIPResolver."""
    log: list[tuple[str, Any]] = []
    layers = {name: _recorder(name, log) for name in LAYER_ORDER}
    api = ExternalAPI(
        settings=StackSettings(key_store="memory://", audit_sink="memory://", layers=layers)
    )
    api.expose("GET", "/x", to=internal_app, path="/internal/admin")
    app: Any = api.build(rate_limit_storage="memory://", trusted_proxies=["10.0.0.0/8"])
    found = []
    layer = app.app
    while hasattr(layer, "kwargs"):
        found.append(layer.kwargs.get("client_ip"))
        layer = layer.app
    resolvers = {id(r) for r in found if r is not None}
    assert len(resolvers) == 1
    assert api.router.client_ip is next(r for r in found if r is not None)


class Note(BaseModel):
    text: str


def _real_api() -> ExternalAPI:
    async def internal_note(request: Any) -> JSONResponse:
        return JSONResponse({"id": request.path_params["id"], "text": "hi", "secret": "s"})

    internal = Starlette(routes=[Route("/internal/notes/{id}", internal_note)])
    api = ExternalAPI()
    api.expose(
        "GET",
        "/notes/{id}",
        to=internal,
        path="/internal/notes/{id}",
        scopes=["notes:read"],
        response_model=Note,
    )
    created: list[str] = []

    @api.post("/notes", request_model=Note, scopes=["notes:write"], status_code=201)
    async def create(req: HandlerRequest) -> dict[str, Any]:
        created.append(req.body.text)
        return {"n": len(created)}

    return api


async def test_real_stack_end_to_end(client_for: ClientFactory) -> None:
    """Z4, Z1, A8 via the real stack: probes 401, scopes 403, docs public, replay once."""
    try:
        from argon2 import profiles

        from extapi_kit.keys.hashing import Argon2Hasher
        from extapi_kit.keys.service import KeyService
    except ImportError as exc:  # pragma: no cover - depends on sibling modules
        pytest.skip(f"key service not available: {exc}")
    service = KeyService("memory://", hasher=Argon2Hasher(profiles.CHEAPEST))
    _, reader = await service.create("reader", scopes=["notes:read"], owner="acme")
    _, writer = await service.create("writer", scopes=["notes:read", "notes:write"], owner="acme")
    app = _real_api().build(
        key_store=service,
        rate_limit_storage="memory://",
        audit_sink="memory://",
        idempotency_store="memory://",
    )
    async with client_for(app) as c:
        # No route enumeration: unknown and known paths look the same without a key (Z4).
        unknown = await c.get("/api/v1/nope")
        known = await c.get("/api/v1/notes/1")
        assert unknown.status_code == known.status_code == 401
        assert (await c.get("/api/v1/nope", headers={"X-API-Key": reader})).status_code == 404
        ok = await c.get("/api/v1/notes/1", headers={"Authorization": f"Bearer {reader}"})
        assert ok.status_code == 200 and ok.json() == {"text": "hi"}
        denied = await c.post("/api/v1/notes", json={"text": "x"}, headers={"X-API-Key": reader})
        assert denied.status_code == 403
        # Z1: an override header does not turn a read key's GET into a write.
        z1 = await c.get(
            "/api/v1/notes/1", headers={"X-API-Key": reader, "X-HTTP-Method-Override": "POST"}
        )
        assert z1.status_code == 200
        assert (await c.get("/api/v1/openapi.json")).status_code == 200
        hdrs = {"X-API-Key": writer, "Idempotency-Key": "k-1"}
        first = await c.post("/api/v1/notes", json={"text": "x"}, headers=hdrs)
        again = await c.post("/api/v1/notes", json={"text": "x"}, headers=hdrs)
        assert first.status_code == 201 and again.status_code == 201
        assert first.json() == again.json() == {"n": 1}
        assert again.headers.get("idempotent-replayed") == "true"


async def test_mount_into_existing_app(internal_app: Starlette, client_for: ClientFactory) -> None:
    """mount_into() serves the built stack under the prefix of an existing Starlette app."""
    api = ExternalAPI()
    api.expose("GET", "/projects/{id}", to=internal_app, path="/internal/projects/{id}")
    host = Starlette()
    api.mount_into(host, auth=False)
    async with client_for(host) as c:
        r = await c.get("/api/v1/projects/3")
        assert r.status_code == 200 and r.json()["id"] == 3
        assert (await c.get("/api/v1/projects/3/")).status_code == 404


async def test_route_settings_published_for_middlewares(
    internal_app: Starlette, client_for: ClientFactory
) -> None:
    """The resolver publishes every declared setting (and issue 8 resource params)."""
    seen: list[Any] = []

    class Capture:
        def __init__(self, app: ASGIApp, **kwargs: Any) -> None:
            self.app = app

        async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] == "http":
                seen.append(get_context(scope).route)
            await self.app(scope, receive, send)

    api = ExternalAPI()
    api.expose(
        "POST",
        "/projects/{project_id}/assets",
        to=internal_app,
        path="/internal/echo/{project_id}",
        scopes=["assets:write"],
        rate_class="uploads",
        cost=5,
        body_limit="64KiB",
        ip_allow=["203.0.113.0/24"],
        resource_params={"project_id": "projects"},
    )
    api.expose("GET", "/projects", to=internal_app, path="/internal/echo/list", public=True)
    app = api.build(
        auth=False, body_limit=None, idempotency_store="memory://", layers={"idempotency": Capture}
    )
    async with client_for(app) as c:
        assert (await c.post("/api/v1/projects/7/assets", content=b"x")).status_code == 200
        assert (await c.get("/api/v1/projects")).status_code == 200
        assert (await c.get("/api/v1/unknown")).status_code == 404
    post, get, unknown = seen
    assert post.template == "/api/v1/projects/{project_id}/assets" and post.method == "POST"
    assert post.scopes == ("assets:write",) and post.rate_class == "uploads" and post.cost == 5
    assert post.body_limit == 65536 and post.idempotent is True and post.public is False
    assert post.ip_allow == ("203.0.113.0/24",) and post.path_params == {"project_id": "7"}
    assert post.extra["resources"] == {"project_id": "projects"} and post.extra["version"] == "v1"
    assert get.public is True and get.idempotent is False and get.path_params == {}
    assert unknown is None
