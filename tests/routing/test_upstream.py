"""The upstream proxy against a real uvicorn upstream and a raw malformed one (A11, W4-W7, W12)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from extapi_kit.routing import ExternalAPI
from extapi_kit.routing.upstream import UpstreamAbortedError
from tests.routing.conftest import ClientFactory, header_map
from tests.routing.upstream_server import RawHTTPServer, UvicornThread, raw_responses, upstream_app

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def upstream() -> Iterator[str]:
    """A uvicorn upstream on 127.0.0.1 for the whole module."""
    server = UvicornThread(upstream_app())
    server.start()
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture(scope="module")
def raw_upstream() -> Iterator[str]:
    """A raw TCP upstream that sends malformed headers."""
    server = RawHTTPServer(raw_responses())
    server.start()
    try:
        yield server.url
    finally:
        server.stop()


def _api(base: str, *, timeout: float = 2.0, cap: int = 100_000) -> ExternalAPI:
    api = ExternalAPI()
    api.add_tool(
        "crm",
        base + "/base",
        credential="tool-secret",
        timeout=timeout,
        connect_timeout=1.0,
        max_response_bytes=cap,
    )
    api.add_tool("custom", base + "/base", header_name="X-Tool-Key", credential=lambda: "rotated")
    api.add_tool("off", base + "/base", enabled=False)
    api.expose(
        ["GET", "POST", "PUT", "DELETE"],
        "/tools/{tool_id}/{path:path}",
        upstream="{tool_id}",
        path="/{path}",
    )
    api.expose("GET", "/crm/{path:path}", upstream="crm", path="/{path}")
    return api


async def test_proxy_forwards_and_strips_credentials(
    upstream: str, client_for: ClientFactory
) -> None:
    """A11: client key, cookies, hop-by-hop headers never reach the tool; its credential does."""
    headers = {
        "Authorization": "Bearer xk_live_client_secret",
        "X-API-Key": "xk_live_client_secret",
        "Cookie": "a=b",
        "Connection": "keep-alive, x-secret-hop",
        "X-Secret-Hop": "1",
        "Keep-Alive": "timeout=5",
        "TE": "trailers",
        "Upgrade": "h2c",
        "Proxy-Authorization": "Basic Zm9vOmJhcg==",
        "X-API-Key-Id": "k_admin",
        "X-Custom": "kept",
    }
    async with client_for(_api(upstream)) as c:
        r = await c.get("/api/v1/tools/crm/echo/a%20b", params={"x": "1"}, headers=headers)
    assert r.status_code == 200
    doc = r.json()
    h = header_map(doc)
    assert doc["path"] == "/base/echo/a b" and doc["query"] == "x=1"
    assert h["authorization"] == ["Bearer tool-secret"]
    for name in (
        "x-api-key",
        "cookie",
        "x-secret-hop",
        "keep-alive",
        "te",
        "upgrade",
        "proxy-authorization",
        "x-api-key-id",
    ):
        assert name not in h, name
    assert h["x-custom"] == ["kept"]
    assert "xk_live_client_secret" not in r.text
    # Hop-by-hop headers of the upstream answer are not passed back either.
    assert "x-internal-hop" not in r.headers and "keep-alive" not in r.headers


async def test_custom_credential_header(upstream: str, client_for: ClientFactory) -> None:
    """A tool with a custom header gets the raw credential (from a callable, for rotation)."""
    api = _api(upstream)
    async with client_for(api) as c:
        r = await c.get("/api/v1/tools/custom/echo/x", headers={"X-Tool-Key": "client-forged"})
    assert header_map(r.json())["x-tool-key"] == ["rotated"]
    assert "tool-secret" not in repr(api.tools["crm"])


async def test_unknown_and_disabled_tools(upstream: str, client_for: ClientFactory) -> None:
    """An unknown tool is a 404 problem, a disabled one a 503 problem."""
    api = _api(upstream)
    async with client_for(api) as c:
        assert (await c.get("/api/v1/tools/nope/echo/x")).status_code == 404
        r = await c.get("/api/v1/tools/off/echo/x")
        assert r.status_code == 503 and r.json()["type"].endswith("/service-unavailable")
        api.set_tool_enabled("crm", False)
        assert (await c.get("/api/v1/tools/crm/echo/x")).status_code == 503


async def test_streaming_both_ways(upstream: str, client_for: ClientFactory) -> None:
    """Request bodies stream up and response bodies stream down in chunks."""

    async def gen() -> AsyncIterator[bytes]:
        for part in (b"one,", b"two,", b"three"):
            yield part

    async with client_for(_api(upstream)) as c:
        r = await c.post("/api/v1/tools/crm/echo/up", content=gen())
        assert r.json()["body"] == "one,two,three"
        async with c.stream("GET", "/api/v1/tools/crm/stream") as s:
            chunks = [chunk async for chunk in s.aiter_raw()]
    assert b"".join(chunks) == b"part0;part1;part2;"


async def test_upstream_error_status_is_passed_through(
    upstream: str, client_for: ClientFactory
) -> None:
    """An upstream 500 is the upstream's answer, passed through (not a gateway error)."""
    async with client_for(_api(upstream)) as c:
        r = await c.get("/api/v1/tools/crm/fail")
    assert r.status_code == 500 and r.json() == {"error": "upstream broke"}


async def test_redirects_are_not_followed(upstream: str, client_for: ClientFactory) -> None:
    """W4: a 302 to an internal address is handed back, never followed by the proxy."""
    async with client_for(_api(upstream)) as c:
        r = await c.get("/api/v1/tools/crm/redirect")
    assert r.status_code == 302
    assert r.headers["location"].startswith("http://169.254.169.254/")


async def test_environment_proxies_are_ignored(
    upstream: str, client_for: ClientFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """W5: HTTP_PROXY and friends in the environment do not divert upstream traffic."""
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "all_proxy"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    async with client_for(_api(upstream)) as c:
        r = await c.get("/api/v1/tools/crm/echo/x")
    assert r.status_code == 200


async def test_slow_upstream_is_a_504(upstream: str, client_for: ClientFactory) -> None:
    """W6: an upstream that never answers is a 504 problem at the total deadline, no hang."""
    async with client_for(_api(upstream, timeout=0.5)) as c:
        r = await c.get("/api/v1/tools/crm/slow")
    assert r.status_code == 504 and r.json()["type"].endswith("/gateway-timeout")


async def test_dripping_upstream_is_cut_at_the_deadline(upstream: str) -> None:
    """W6: a body dripping a byte at a time is aborted at the total deadline (dropped)."""
    api = _api(upstream, timeout=0.5)
    transport = httpx.ASGITransport(api)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        with pytest.raises(UpstreamAbortedError):
            await c.get("/api/v1/tools/crm/drip")
    await api.aclose()


async def test_connect_failure_is_a_502(client_for: ClientFactory) -> None:
    """A refused connection is a 502 bad-gateway problem."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    async with client_for(_api(f"http://127.0.0.1:{port}")) as c:
        r = await c.get("/api/v1/tools/crm/x")
    assert r.status_code == 502 and r.json()["type"].endswith("/bad-gateway")


async def test_huge_declared_response_is_refused(upstream: str, client_for: ClientFactory) -> None:
    """W7: a Content-Length over the cap is a 502 before anything is sent."""
    async with client_for(_api(upstream, cap=100_000)) as c:
        r = await c.get("/api/v1/tools/crm/huge-declared")
    assert r.status_code == 502


async def test_endless_response_is_cut_at_the_cap(upstream: str) -> None:
    """W7: a streamed body with no length is cut once the cap is passed, never read to the end."""
    sent = 0

    async def receive() -> dict[str, object]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, object]) -> None:
        nonlocal sent
        if message["type"] == "http.response.body":
            sent += len(message.get("body", b""))  # type: ignore[arg-type]

    scope = {
        "type": "http",
        "method": "GET",
        "path": "/api/v1/tools/crm/huge",
        "raw_path": b"/api/v1/tools/crm/huge",
        "query_string": b"",
        "headers": [],
        "client": ("203.0.113.7", 1),
    }
    api = _api(upstream, cap=200_000)
    with pytest.raises(UpstreamAbortedError):
        await api(scope, receive, send)  # type: ignore[arg-type]
    assert sent <= 200_000
    await api.aclose()


async def test_bare_lf_cannot_set_cookies(raw_upstream: str, client_for: ClientFactory) -> None:
    """W12: a bare LF that a lenient parser splits into a second header never sets a cookie."""
    api = ExternalAPI()
    api.add_tool("raw", raw_upstream, timeout=2.0)
    api.expose("GET", "/raw/{path:path}", upstream="raw", path="/{path}")
    async with client_for(api) as c:
        r = await c.get("/api/v1/raw/lf")
    assert r.status_code in (200, 502)
    assert "set-cookie" not in r.headers


@pytest.mark.parametrize(
    "path", ["/crlf", "/nul", "/big-value", "/huge-headers", "/many-headers", "/te-cl"]
)
async def test_malformed_upstream_headers_are_not_reflected(
    path: str, raw_upstream: str, client_for: ClientFactory
) -> None:
    """W12: CR/LF/NUL in values, oversized or too many headers, TE+CL: 502, not reflected."""
    api = ExternalAPI()
    api.add_tool("raw", raw_upstream, timeout=2.0)
    api.expose("GET", "/raw/{path:path}", upstream="raw", path="/{path}")
    async with client_for(api) as c:
        r = await c.get("/api/v1/raw" + path)
        assert r.status_code == 502, r.headers
        assert "set-cookie" not in r.headers and "x-evil" not in r.headers
        ok = await c.get("/api/v1/raw/ok")
        assert ok.status_code == 200 and ok.headers["x-fine"] == "yes"


async def test_fixed_url_upstream(upstream: str, client_for: ClientFactory) -> None:
    """An upstream given as a URL works like a tool without credential."""
    api = ExternalAPI()
    api.expose(
        "GET", "/status/{path:path}", upstream=upstream + "/base", path="/{path}", public=True
    )
    async with client_for(api) as c:
        r = await c.get("/api/v1/status/echo/z", headers={"Authorization": "Bearer client"})
    assert r.status_code == 200
    assert "authorization" not in header_map(r.json())


async def test_date_and_server_headers_are_not_duplicated(upstream: str) -> None:
    """Issue 18 §6: through the proxy under uvicorn, a client gets one ``date`` and one
    ``server`` header (the gateway's), not the tool's as well."""
    proxy = UvicornThread(_api(upstream))
    proxy.start()
    try:
        async with httpx.AsyncClient() as client:
            direct = await client.get(upstream + "/base/echo/x")
            r = await client.get(proxy.url + "/api/v1/tools/crm/echo/x")
    finally:
        proxy.stop()
    assert direct.headers.get_list("date") and direct.headers.get_list("server")  # tool sends both
    assert r.status_code == 200
    assert len(r.headers.get_list("date")) == 1 and len(r.headers.get_list("server")) == 1
