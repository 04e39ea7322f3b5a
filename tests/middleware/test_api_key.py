"""ApiKeyMiddleware over raw ASGI: identical 401s, 403 for scope/network, query keys, 429, 503."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from extapi_kit._types import ASGIApp, Receive, Scope, Send
from extapi_kit.clientip import ClientIPResolver
from extapi_kit.context import RouteSettings, get_context
from extapi_kit.exceptions import ConfigurationError
from extapi_kit.keys.format import generate_key
from extapi_kit.keys.service import KeyService
from extapi_kit.keys.store_memory import MemoryKeyStore
from extapi_kit.middleware.api_key import ApiKeyMiddleware
from extapi_kit.problems import problem_app
from extapi_kit.testing import FakeClock
from tests.keys.support import RecordingApp, SpyHasher, forge

pytestmark = pytest.mark.anyio
CHALLENGE = 'Bearer realm="api", ApiKey header="X-API-Key"'


class Env:
    """A protected app with a memory-backed service, a spy hasher and a fake clock."""

    def __init__(self, **mw: Any) -> None:
        self.clock = FakeClock(1_800_000_000)
        self.spy = SpyHasher()
        self.store = MemoryKeyStore()
        self.service = KeyService(
            self.store, hasher=self.spy, clock=self.clock, failures_per_ip=1000
        )
        self.app = RecordingApp()
        self.mw = ApiKeyMiddleware(self.app, store=self.service, **mw)

    def client(self, app: ASGIApp | None = None, ip: str = "203.0.113.7") -> httpx.AsyncClient:
        transport = httpx.ASGITransport(app or self.mw, client=(ip, 1234))
        return httpx.AsyncClient(transport=transport, base_url="http://t")


@pytest.fixture
async def env() -> AsyncIterator[Env]:
    e = Env(required_scopes=["read"], exempt_paths=["/health"], public_paths=["/docs"])
    yield e
    await e.service.aclose()


async def test_valid_key_via_header_or_bearer_sets_principal(env: Env) -> None:
    """A valid key in X-API-Key or Authorization: Bearer reaches the app with ctx.principal set."""
    rec, key = await env.service.create("k", scopes=["read"])
    async with env.client() as c:
        assert (await c.get("/x", headers={"X-API-Key": key})).status_code == 200
        assert (await c.get("/x", headers={"Authorization": f"bearer {key}"})).status_code == 200
        both = {"X-API-Key": key, "Authorization": f"Bearer {key}"}
        assert (await c.get("/x", headers=both)).status_code == 200
    assert [getattr(p, "key_id", None) for p in env.app.principals] == [rec.id] * 3


async def test_every_auth_failure_is_the_same_401(env: Env) -> None:
    """Missing, empty, malformed, unknown, revoked, expired, wrong and conflicting keys: one 401."""
    live, key = await env.service.create("live", scopes=["read"])
    rev, revoked = await env.service.create("rev", scopes=["read"])
    await env.service.revoke(rev.id)
    _, expired = await env.service.create("exp", scopes=["read"], expires_in=5)
    _, other = await env.service.create("other", scopes=["read"])
    env.clock.advance(6)
    cases: list[list[tuple[str, str]]] = [
        [],
        [("X-API-Key", "")],
        [("Authorization", "Bearer")],
        [("Authorization", "Bearer ")],
        [("Authorization", "Basic dXNlcjpwYXNz")],
        [("X-API-Key", "garbage")],
        [("X-API-Key", generate_key())],
        [("X-API-Key", revoked)],
        [("X-API-Key", expired)],
        [("X-API-Key", forge(live.display_prefix))],
        [("X-API-Key", key), ("X-API-Key", key)],
        [("X-API-Key", key), ("Authorization", f"Bearer {other}")],
        [("Authorization", f"Bearer {key}"), ("Authorization", f"Bearer {key}")],
    ]
    seen = set()
    async with env.client() as c:
        for headers in cases:
            r = await c.get("/x", headers=httpx.Headers(headers))
            assert r.status_code == 401, headers
            assert r.headers["www-authenticate"] == CHALLENGE
            assert r.headers["content-type"] == "application/problem+json"
            seen.add((r.content, tuple(sorted(r.headers.items()))))
    assert len(seen) == 1
    assert env.app.calls == 0


async def test_malformed_keys_cost_no_hash_and_no_lookup(env: Env) -> None:
    """10 KB keys, NUL bytes, wrong prefix, bad checksum, duplicates: 401, zero hash calls (A3)."""
    _, key = await env.service.create("k", scopes=["read"])
    verifies = env.spy.verify_calls
    bad = [
        "k" * 10_240,
        key[:30] + "\x00" + key[31:],
        key.replace("xk_", "ab_", 1),
        key[:-1] + ("0" if key[-1] != "0" else "1"),
        key.replace("_", "__", 1),
    ]
    async with env.client() as c:
        for value in bad:
            r = await c.get("/x", headers={"X-API-Key": value})
            assert r.status_code == 401
        r = await c.get("/x", headers=httpx.Headers([("X-API-Key", key), ("X-API-Key", key)]))
        assert r.status_code == 401
        raw = [(b"x-api-key", "é".encode() + key.encode())]
        r = await c.get("/x", headers=raw)
        assert r.status_code == 401
    assert env.spy.verify_calls == verifies


async def test_scopes_give_403(env: Env) -> None:
    """A key lacking the required scope gets 403 insufficient-scope; empty scopes deny (A8)."""
    _, writer = await env.service.create("w", scopes=["write"])
    _, nothing = await env.service.create("n")
    _, wildcard = await env.service.create("all", scopes=["*"])
    async with env.client() as c:
        for key in (writer, nothing):
            r = await c.get("/x", headers={"X-API-Key": key})
            assert r.status_code == 403
            assert r.json()["type"].endswith("/insufficient-scope")
            assert "www-authenticate" not in r.headers
        assert (await c.get("/x", headers={"X-API-Key": wildcard})).status_code == 200
    assert env.app.calls == 1


async def test_route_settings_from_registry_decide(env: Env) -> None:
    """When ctx.route is set, its scopes and public flag replace the middleware defaults."""
    _, reader = await env.service.create("r", scopes=["read"])

    def with_route(route: RouteSettings) -> ASGIApp:
        async def outer(scope: Scope, receive: Receive, send: Send) -> None:
            get_context(scope).route = route
            await env.mw(scope, receive, send)

        return outer

    write_route = with_route(
        RouteSettings(template="/p", method="POST", scopes=("projects:write",))
    )
    public_route = with_route(RouteSettings(template="/open", public=True))
    async with env.client(write_route) as c:
        r = await c.post("/p", headers={"X-API-Key": reader})
        assert r.status_code == 403
    async with env.client(public_route) as c:
        assert (await c.get("/open")).status_code == 200
        assert (await c.get("/open", headers={"X-API-Key": generate_key()})).status_code == 401


async def test_exempt_and_public_paths(env: Env) -> None:
    """Exempt paths skip auth entirely; public paths allow no key but verify a sent one."""
    _, key = await env.service.create("k", scopes=["read"])
    async with env.client() as c:
        assert (await c.get("/health")).status_code == 200
        assert (await c.get("/health/live")).status_code == 200
        assert (await c.get("/healthz")).status_code == 401
        assert (await c.get("/docs")).status_code == 200
        assert (await c.get("/docs", headers={"X-API-Key": "nope"})).status_code == 401
        assert (await c.get("/docs", headers={"X-API-Key": key})).status_code == 200
    assert env.app.principals[0] is None and env.app.principals[-1] is not None


async def test_key_in_query_string_is_refused(env: Env, caplog: pytest.LogCaptureFixture) -> None:
    """?api_key=<key> (or any param holding a key) is refused with 400 and never logged (A9)."""
    caplog.set_level("DEBUG")
    _, key = await env.service.create("k", scopes=["read"])
    async with env.client() as c:
        for query in (
            {"api_key": key},
            {"apikey": key},
            {"access_token": key},
            {"q": key},
            {"key": "xk_live_short"},
        ):
            r = await c.get("/x", params=query, headers={"X-API-Key": key})
            assert r.status_code == 400
            assert r.json()["type"].endswith("/api-key-in-query")
            assert key not in r.text
        assert (
            await c.get("/x", params={"key": "cat"}, headers={"X-API-Key": key})
        ).status_code == 200
    server_side = [r.getMessage() for r in caplog.records if not r.name.startswith("httpx")]
    assert not any(key in line for line in server_side)  # httpx logs the client's own URL
    assert env.app.calls == 1


async def test_per_key_networks_and_ip_normalisation() -> None:
    """Keys with allowed_cidrs get 403 elsewhere; XFF from untrusted peers is ignored (Z5, Z6)."""
    env = Env(client_ip=ClientIPResolver())
    _, key = await env.service.create("k", allowed_cidrs=["10.0.0.0/8", "2001:db8::/32"])
    hdr = {"X-API-Key": key}
    async with env.client(ip="10.1.2.3") as c:
        assert (await c.get("/", headers=hdr)).status_code == 200
    async with env.client(ip="::ffff:10.0.0.1") as c:
        assert (await c.get("/", headers=hdr)).status_code == 200
    async with env.client(ip="2001:db8::5") as c:
        assert (await c.get("/", headers=hdr)).status_code == 200
    async with env.client(ip="203.0.113.7") as c:
        r = await c.get("/", headers={**hdr, "X-Forwarded-For": "10.0.0.1"})
        assert r.status_code == 403 and r.json()["type"].endswith("/ip-not-allowed")
    trusted = Env(client_ip=ClientIPResolver(["203.0.113.0/24"]))
    _, key2 = await trusted.service.create("k", allowed_cidrs=["10.0.0.0/8"])
    async with trusted.client(ip="203.0.113.7") as c:
        r = await c.get("/", headers={"X-API-Key": key2, "X-Forwarded-For": "10.0.0.1"})
        assert r.status_code == 200
        r = await c.get("/", headers={"X-API-Key": key2, "X-Forwarded-For": "10.0.0.1, 8.8.8.8"})
        assert r.status_code == 403


async def test_failed_attempt_flood_gets_429_before_verifying() -> None:
    """A flood of well-formed random keys from one IP gets 429 with Retry-After (A4)."""
    env = Env()
    env.service = KeyService(MemoryKeyStore(), hasher=env.spy, failures_per_ip=10)
    env.mw = ApiKeyMiddleware(env.app, store=env.service)
    async with env.client() as c:
        statuses = [
            (await c.get("/", headers={"X-API-Key": generate_key()})).status_code for _ in range(30)
        ]
        r = await c.get("/", headers={"X-API-Key": generate_key()})
    assert statuses[:10] == [401] * 10 and set(statuses[10:]) == {429}
    assert r.json()["type"].endswith("/too-many-failed-attempts")
    assert 1 <= int(r.headers["retry-after"]) <= 60
    assert env.spy.verify_calls == 0


async def test_store_down_gives_503_but_cached_keys_pass() -> None:
    """Store failures give 503 + Retry-After for uncached keys; cached keys keep working (§6)."""

    class FlakyStore(MemoryKeyStore):
        down = False

        async def get(self, key_id: str) -> Any:
            if self.down:
                from extapi_kit.exceptions import StoreUnavailableError

                raise StoreUnavailableError("down")
            return await super().get(key_id)

    store = FlakyStore()
    service = KeyService(store, hasher=SpyHasher())
    app = RecordingApp()
    mw = ApiKeyMiddleware(app, store=service, retry_after=7)
    _, warm = await service.create("warm")
    _, cold = await service.create("cold")
    transport = httpx.ASGITransport(mw, client=("203.0.113.7", 1))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        assert (await c.get("/", headers={"X-API-Key": warm})).status_code == 200
        store.down = True
        assert (await c.get("/", headers={"X-API-Key": warm})).status_code == 200
        r = await c.get("/", headers={"X-API-Key": cold})
        assert r.status_code == 503 and r.headers["retry-after"] == "7"
        assert r.json()["type"].endswith("/service-unavailable")


async def test_no_store_refuses_to_start() -> None:
    """Building the middleware without a store raises instead of passing requests through (A13)."""
    with pytest.raises(ConfigurationError):
        ApiKeyMiddleware(RecordingApp())
    with pytest.raises(ConfigurationError):
        ApiKeyMiddleware(RecordingApp(), store="memory://", exempt_paths=["health"])
    with pytest.raises(ConfigurationError):
        ApiKeyMiddleware(RecordingApp(), store="ftp://x")
    with pytest.raises(ConfigurationError):
        ApiKeyMiddleware(RecordingApp(), store="memory://", header="bad header")


async def test_lifespan_and_unknown_scopes_pass_through() -> None:
    """lifespan and unknown scope types reach the app untouched (M5)."""
    seen: list[str] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append(scope["type"])

    mw = ApiKeyMiddleware(app, store="memory://")

    async def receive() -> dict[str, Any]:
        return {"type": "lifespan.startup"}

    async def send(message: Any) -> None:
        raise AssertionError("nothing should be sent")

    await mw({"type": "lifespan"}, receive, send)
    await mw({"type": "custom"}, receive, send)
    assert seen == ["lifespan", "custom"]
    await mw.aclose()


async def test_websocket_is_authenticated(env: Env) -> None:
    """A websocket without a valid key is closed (1008) before accept; a valid key connects (Z7)."""
    _, key = await env.service.create("k", scopes=["read"])

    async def run(headers: list[tuple[bytes, bytes]]) -> list[dict[str, Any]]:
        sent: list[dict[str, Any]] = []

        async def receive() -> dict[str, Any]:
            return {"type": "websocket.connect"}

        async def send(message: Any) -> None:
            sent.append(dict(message))

        scope = {"type": "websocket", "path": "/ws", "headers": headers, "client": ("10.0.0.1", 1)}
        await env.mw(scope, receive, send)
        return sent

    assert await run([]) == [{"type": "websocket.close", "code": 1008, "reason": ""}]
    bad = [(b"x-api-key", generate_key().encode())]
    assert (await run(bad))[0]["code"] == 1008
    ok = await run([(b"x-api-key", key.encode())])
    assert ok[0] == {"type": "websocket.accept"}


async def test_on_reject_hook_replaces_the_body(env: Env) -> None:
    """on_reject returns the app that answers a refusal; the context still records why."""
    reasons: list[str | None] = []

    def hook(scope: Scope) -> ASGIApp:
        reasons.append(get_context(scope).rejection)
        return problem_app("forbidden", "custom")

    mw = ApiKeyMiddleware(env.app, store=env.service, on_reject=hook)
    async with env.client(mw) as c:
        r = await c.get("/")
    assert r.status_code == 403 and r.json()["detail"] == "custom"
    assert reasons == ["unauthorized"]


async def test_concurrent_flood_keeps_loop_responsive_and_serves_healthy_keys() -> None:
    """200 concurrent wrong-secret keys for a real id: bounded hash work, loop lag < 50 ms (A4)."""
    import asyncio
    import time

    env = Env()
    env.service = KeyService(
        MemoryKeyStore(), hasher=env.spy, failures_per_ip=10_000, failures_per_key=20
    )
    env.mw = ApiKeyMiddleware(env.app, store=env.service)
    target, _ = await env.service.create("target")
    _, healthy = await env.service.create("healthy")
    max_gap = 0.0
    done = False

    async def probe() -> None:
        nonlocal max_gap
        last = time.perf_counter()
        while not done:
            await asyncio.sleep(0.001)
            now = time.perf_counter()
            max_gap, last = max(max_gap, now - last), now

    async def call(key: str) -> int:
        # Raw ASGI calls: an HTTP client would itself hold the loop for 200 requests at once.
        statuses: list[int] = []

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: Any) -> None:
            if message["type"] == "http.response.start":
                statuses.append(message["status"])

        scope = {
            "type": "http",
            "method": "GET",
            "path": "/",
            "query_string": b"",
            "headers": [(b"x-api-key", key.encode())],
            "client": ("203.0.113.7", 1),
        }
        await env.mw(scope, receive, send)
        return statuses[0]

    probe_task = asyncio.create_task(probe())
    attacks = [call(forge(target.display_prefix)) for _ in range(200)]
    good = [call(healthy) for _ in range(20)]
    codes = await asyncio.gather(*attacks, *good)
    done = True
    await probe_task
    assert set(codes[:200]) == {401, 429}
    assert codes[200:] == [200] * 20
    assert env.spy.verify_calls <= 20 + 1  # per-key limit on the attacked id + one shared verify
    assert max_gap < 0.05, f"event loop stalled for {max_gap * 1000:.1f} ms"
