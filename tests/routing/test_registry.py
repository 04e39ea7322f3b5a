"""The registry router: reachability, path tricks, forwarding and identity headers."""

from __future__ import annotations

from typing import Any

import pytest
from starlette.applications import Starlette

from extapi_kit._types import Receive, Scope, Send
from extapi_kit.context import Principal, get_context
from extapi_kit.exceptions import ConfigurationError
from extapi_kit.routing import ExternalAPI
from tests.routing.conftest import ClientFactory, header_map, raw_call

pytestmark = pytest.mark.anyio


def _api(internal: Starlette) -> ExternalAPI:
    api = ExternalAPI(title="T")
    api.expose("GET", "/projects/{id:int}", to=internal, path="/internal/projects/{id}")
    api.expose(["GET", "POST"], "/echo/{rest:path}", to=internal, path="/internal/echo/{rest}")
    api.expose("DELETE", "/echo/{rest:path}", to=internal, path="/internal/echo/{rest}")
    api.expose(
        "GET", "/projects/{id:int}", to=internal, path="/internal/projects/{id}", version="v2"
    )
    return api


def _with_principal(app: Any, principal: Principal | None) -> Any:
    async def wrapper(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            get_context(scope).principal = principal
        await app(scope, receive, send)

    return wrapper


async def test_only_declared_routes_are_reachable(
    internal_app: Starlette, client_for: ClientFactory
) -> None:
    """Z4: declared routes answer; internal paths, unknown paths and /api/v0 are 404 problems."""
    async with client_for(_api(internal_app)) as c:
        assert (await c.get("/api/v1/projects/7")).status_code == 200
        for path in (
            "/internal/admin",
            "/api/v1/admin",
            "/api/v0/projects/7",
            "/api/v3/projects/7",
            "/",
        ):
            r = await c.get(path)
            assert r.status_code == 404, path
            assert r.headers["content-type"] == "application/problem+json"
            assert r.json()["type"].endswith("/not-found")


async def test_versions_have_their_own_route_sets(
    internal_app: Starlette, client_for: ClientFactory
) -> None:
    """Several versions side by side: v2 has only what v2 declares."""
    async with client_for(_api(internal_app)) as c:
        assert (await c.get("/api/v2/projects/7")).status_code == 200
        assert (await c.get("/api/v2/echo/x")).status_code == 404
        assert (await c.get("/api/v1/echo/x")).status_code == 200


async def test_method_not_allowed_lists_allow(
    internal_app: Starlette, client_for: ClientFactory
) -> None:
    """Z4: a known path with another method is a 405 with Allow (HEAD implied by GET)."""
    async with client_for(_api(internal_app)) as c:
        r = await c.put("/api/v1/projects/7")
        assert r.status_code == 405
        assert r.headers["allow"] == "GET, HEAD"
        r = await c.request("OPTIONS", "/api/v1/echo/a")
        assert r.status_code == 405
        assert r.headers["allow"] == "DELETE, GET, HEAD, POST"


async def test_method_override_and_odd_methods(
    internal_app: Starlette, client_for: ClientFactory
) -> None:
    """Z1: method overrides ignored and not forwarded; lowercase verbs 405; HEAD acts as GET."""
    async with client_for(_api(internal_app)) as c:
        r = await c.post("/api/v1/projects/7", headers={"X-HTTP-Method-Override": "GET"})
        assert r.status_code == 405
        r = await c.get(
            "/api/v1/echo/a",
            headers={"X-HTTP-Method-Override": "DELETE", "X-Method-Override": "DELETE"},
        )
        assert r.json()["method"] == "GET"
        assert "x-http-method-override" not in header_map(r.json())
        assert "x-method-override" not in header_map(r.json())
        head = await c.head("/api/v1/projects/7")
        assert head.status_code == 200
        assert head.content == b""
    api = _api(internal_app)
    assert (await raw_call(api, "get", "/api/v1/projects/7"))[0] == 405
    assert (await raw_call(api, "delete", "/api/v1/echo/a"))[0] == 405
    assert (await raw_call(api, "PROPFIND", "/api/v1/echo/a"))[0] == 405


@pytest.mark.parametrize(
    "raw",
    [
        "//api/v1/projects/7",
        "/api//v1/projects/7",
        "/api/v1/./projects/7",
        "/api/v1/projects/./7",
        "/api/v1/projects/7/",
        "/API/v1/projects/7",
        "/api/V1/projects/7",
        "/api/v1/Projects/7",
        "/api/v1/projects/7;x=1",
        "/api/v1/projects/%37x",
        "/api/v1/projects/..%2F..%2Finternal%2Fadmin",
        "/api/v1/echo/../../../internal/admin",
        "/api/v1/echo/%2e%2e/%2e%2e/admin",
        "/api/v1/echo/a/%2e/b",
        "/api/v1/echo//internal/admin",
        "/api/v1/echo/a//b",
        "/api/v1/%2e%2e/internal/admin",
        "/internal/admin",
        "/internal/projects/7",
    ],
)
async def test_path_tricks_never_reach_internal_only_routes(
    raw: str, internal_app: Starlette, client_for: ClientFactory
) -> None:
    """Z2: dot segments, double slashes, case, trailing slash, ;params and encodings end in 404."""
    calls: list[str] = []

    async def spy(scope: Scope, receive: Receive, send: Send) -> None:
        calls.append(scope["path"])
        await internal_app(scope, receive, send)

    api = _api(spy)  # type: ignore[arg-type]
    for method in ("GET", "POST", "DELETE"):
        status, _, body = await raw_call(api, method, raw)
        assert status == 404, (method, raw, body)
    assert calls == []


async def test_encoded_letters_get_the_canonical_decision(internal_app: Starlette) -> None:
    """Z2: /api/v1/%70rojects/7 decodes to the declared path, so it gets that route's decision."""
    status, _, _ = await raw_call(_api(internal_app), "GET", "/api/v1/%70rojects/7")
    assert status == 200


async def test_path_params_and_query_are_carried_over(
    internal_app: Starlette, client_for: ClientFactory
) -> None:
    """Forwarding rewrites the path, keeps the query, encodes raw_path, sets root_path ''."""
    async with client_for(_api(internal_app)) as c:
        r = await c.get("/api/v1/echo/a/b%20c", params={"q": "x y", "n": "1"})
    body = r.json()
    assert body["path"] == "/internal/echo/a/b c"
    assert body["raw_path"] == "/internal/echo/a/b%20c"
    assert body["root_path"] == ""
    assert body["query"] == "q=x+y&n=1"
    assert body["path_params"] == {"rest": "a/b c"}


async def test_identity_headers_replace_client_credentials(
    internal_app: Starlette, client_for: ClientFactory
) -> None:
    """A11: client credentials and spoofed identity headers go; verified identity is added."""
    principal = Principal(
        key_id="k_123",
        owner="acme",
        scopes=frozenset({"b:read", "a:write"}),
        grants={"projects": frozenset({"7"})},
    )
    app = _with_principal(_api(internal_app), principal)
    spoof = {
        "Authorization": "Bearer xk_live_secret",
        "X-API-Key": "xk_live_secret",
        "Cookie": "session=1",
        "X-API-Key-Id": "k_admin",
        "X-Owner-Id": "root",
        "X-User-Id": "root",
        "X-Scopes": "*",
        "X-Resource-Grants": '{"projects":["*"]}',
        "X-Forwarded-For": "10.0.0.1",
        "X-Trace": "keep-me",
    }
    async with client_for(app) as c:
        r = await c.get("/api/v1/echo/x", headers=spoof)
    h = header_map(r.json())
    assert "authorization" not in h and "x-api-key" not in h and "cookie" not in h
    assert h["x-api-key-id"] == ["k_123"]
    assert h["x-owner-id"] == ["acme"] and h["x-user-id"] == ["acme"]
    assert h["x-scopes"] == ["a:write b:read"]
    assert h["x-resource-grants"] == ['{"projects":["7"]}']
    assert h["x-forwarded-for"] == ["203.0.113.7"]
    assert h["x-trace"] == ["keep-me"]
    assert "xk_live_secret" not in r.text


async def test_anonymous_request_gets_no_identity(
    internal_app: Starlette, client_for: ClientFactory
) -> None:
    """Without a principal no identity header is forwarded, and spoofed ones are still removed."""
    async with client_for(_api(internal_app)) as c:
        r = await c.get("/api/v1/echo/x", headers={"X-API-Key-Id": "k_admin"})
    h = header_map(r.json())
    assert "x-api-key-id" not in h and "x-scopes" not in h


async def test_streaming_request_body_is_forwarded(
    internal_app: Starlette, client_for: ClientFactory
) -> None:
    """Without a request model the body streams through untouched."""

    async def gen() -> Any:
        for part in (b"hello ", b"world"):
            yield part

    async with client_for(_api(internal_app)) as c:
        r = await c.post("/api/v1/echo/x", content=gen())
    assert r.json()["body"] == "hello world"


async def test_websocket_is_refused(internal_app: Starlette) -> None:
    """Z7: the registry does not serve websockets: closed before accept (403)."""
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "websocket.connect"}

    async def send(message: Any) -> None:
        sent.append(message)

    await _api(internal_app)(
        {"type": "websocket", "path": "/api/v1/projects/7", "headers": []}, receive, send
    )
    assert sent[0]["type"] == "websocket.close"


async def test_lifespan_is_answered(internal_app: Starlette) -> None:
    """M5: the router completes lifespan startup and shutdown."""
    messages = iter([{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}])
    sent: list[str] = []

    async def receive() -> Any:
        return next(messages)

    async def send(message: Any) -> None:
        sent.append(message["type"])

    await _api(internal_app)({"type": "lifespan"}, receive, send)
    assert sent == ["lifespan.startup.complete", "lifespan.shutdown.complete"]


def test_declaration_errors(internal_app: Starlette) -> None:
    """Bad declarations fail at declaration time with ConfigurationError."""
    api = ExternalAPI()
    with pytest.raises(ConfigurationError):
        api.expose("GET", "/x", to=internal_app, handler=lambda r: r)
    with pytest.raises(ConfigurationError):
        api.expose("get", "/x", to=internal_app)
    with pytest.raises(ConfigurationError):
        api.expose("GET", "/x/{id}", to=internal_app, path="/internal/{other}")
    with pytest.raises(ConfigurationError):
        api.expose("GET", "/x", upstream="nope")
    with pytest.raises(ConfigurationError):
        api.expose("GET", "/x", to=internal_app, version="v/1")
    api.expose("GET", "/x", to=internal_app)
    with pytest.raises(ConfigurationError):
        api.expose("GET", "/x", to=internal_app)
        _ = api.router
    api2 = ExternalAPI()
    api2.expose("GET", "/y", to=internal_app)
    _ = api2.router
    with pytest.raises(ConfigurationError):
        api2.expose("GET", "/z", to=internal_app)
