"""RateLimitMiddleware on memory storage: classes, headers, overrides, keying, exemptions."""

from __future__ import annotations

import logging

import httpx
import pytest

from extapi_kit._types import ASGIApp, Receive, Scope, Send
from extapi_kit.context import Principal, RateLimitInfo, RouteSettings, get_context
from extapi_kit.exceptions import ConfigurationError
from extapi_kit.middleware.rate_limit import RateLimitMiddleware
from extapi_kit.problems import problem_app
from extapi_kit.ratelimit import FlatMemoryStorage, RateLimitRule
from extapi_kit.testing import FakeClock
from tests.ratelimit.helpers import client, ok_app, with_principals

START = 1_000_040.0  # 20 s into a minute, so sliding windows have 40 s left
ALICE = Principal(key_id="alice01", owner="acme")
BOB = Principal(key_id="bob02", owner="acme")
PRINCIPALS = {"alice": ALICE, "bob": BOB}


def ietf(r: httpx.Response) -> str:
    return r.headers["ratelimit"]


@pytest.mark.anyio
@pytest.mark.parametrize("strategy", ["fixed-window", "sliding-window", "moving-window"])
async def test_headers_count_down_and_retry_after_matches_reset(strategy: str) -> None:
    """Sequential requests: remaining L-1..0, then 429, Retry-After == t == legacy reset (L4)."""
    clock = FakeClock(START)
    mw = RateLimitMiddleware(ok_app, read="5/minute", strategy=strategy, clock=clock)
    async with client(mw) as c:
        for expected in range(4, -1, -1):
            r = await c.get("/things")
            assert r.status_code == 200
            assert r.headers["x-ratelimit-limit"] == "5"
            assert r.headers["x-ratelimit-remaining"] == str(expected)
            assert r.headers["ratelimit-policy"] == '"read";q=5;w=60'
            assert ietf(r).startswith(f'"read";r={expected};t=')
            clock.advance(1)
        r = await c.get("/things")
    assert r.status_code == 429
    assert r.headers["content-type"] == "application/problem+json"
    body = r.json()
    assert body["violated-policies"] == ["read"] and "read" in body["detail"]
    retry = int(r.headers["retry-after"])
    assert ietf(r) == f'"read";r=0;t={retry}'
    assert r.headers["x-ratelimit-reset"] == str(retry)
    # Retry-After is never early: one second before it still refused, at it admitted.
    clock.advance(retry - 1)
    async with client(mw) as c:
        assert (await c.get("/things")).status_code == 429
        clock.advance(1)
        assert (await c.get("/things")).status_code == 200


@pytest.mark.anyio
async def test_read_and_write_classes_have_separate_budgets() -> None:
    """GET/HEAD/OPTIONS count against read, other methods against write."""
    mw = RateLimitMiddleware(ok_app, read="2/minute", write="1/minute", clock=FakeClock(START))
    async with client(mw) as c:
        assert (await c.post("/x")).status_code == 200
        assert (await c.delete("/x")).status_code == 429
        assert (await c.get("/x")).status_code == 200
        assert (await c.head("/x")).status_code == 200
        assert (await c.options("/x")).status_code == 429


@pytest.mark.anyio
async def test_multi_window_headers_and_legacy_switch() -> None:
    """Several windows: one IETF item each, legacy headers suffixed; legacy can be turned off."""
    mw = RateLimitMiddleware(ok_app, read="3/minute;10/hour", clock=FakeClock(START))
    async with client(mw) as c:
        r = await c.get("/x")
    assert r.headers["ratelimit-policy"] == '"read-minute";q=3;w=60, "read-hour";q=10;w=3600'
    assert r.headers["ratelimit"].startswith('"read-minute";r=2;t=40, "read-hour";r=9;t=')
    assert r.headers["x-ratelimit-limit-minute"] == "3"
    assert r.headers["x-ratelimit-remaining-hour"] == "9"
    quiet = RateLimitMiddleware(ok_app, legacy_headers=False, ietf_headers=False)
    async with client(quiet) as c:
        r = await c.get("/x")
    assert not [k for k in r.headers if "ratelimit" in k]


@pytest.mark.anyio
async def test_unauthenticated_keyed_by_resolved_ip_not_header() -> None:
    """Without a principal the key is the socket peer; X-Forwarded-For cannot mint new budgets."""
    mw = RateLimitMiddleware(ok_app, read="1/minute", clock=FakeClock(START))
    async with client(mw, ip="198.51.100.1") as c:
        assert (await c.get("/", headers={"x-forwarded-for": "1.1.1.1"})).status_code == 200
        assert (await c.get("/", headers={"x-forwarded-for": "2.2.2.2"})).status_code == 429
    async with client(mw, ip="198.51.100.2") as c:
        assert (await c.get("/")).status_code == 200


@pytest.mark.anyio
async def test_keyed_on_key_id_and_keys_never_contain_secrets() -> None:
    """Each key id has its own budget; storage keys hold the key id, not any secret."""
    mw = RateLimitMiddleware(ok_app, read="1/minute", clock=FakeClock(START))
    app = with_principals(mw, PRINCIPALS)
    async with client(app) as c:
        assert (await c.get("/", headers={"x-test-key": "alice"})).status_code == 200
        assert (await c.get("/", headers={"x-test-key": "alice"})).status_code == 429
        assert (await c.get("/", headers={"x-test-key": "bob"})).status_code == 200
    keys = set(mw.backend.storage._sliding)
    assert keys == {"extapi:s:read:60:{k:alice01}", "extapi:s:read:60:{k:bob02}"}


@pytest.mark.anyio
async def test_per_key_override_changes_at_runtime() -> None:
    """A limit stored on the key record applies on the next request, no restart."""
    principals = {"a": Principal(key_id="k1", rate_limits={"read": "3/minute"})}
    mw = RateLimitMiddleware(ok_app, read="100/minute", clock=FakeClock(START))
    app = with_principals(mw, principals)
    async with client(app) as c:
        r = await c.get("/", headers={"x-test-key": "a"})
        assert r.headers["ratelimit-policy"] == '"read";q=3;w=60'
        principals["a"] = Principal(key_id="k1", rate_limits={"read": "1/minute"})
        r = await c.get("/", headers={"x-test-key": "a"})
        assert r.status_code == 429  # count kept (1 used), new limit 1
        principals["a"] = Principal(key_id="k1", rate_limits={"read": "garbage"})
        r = await c.get("/", headers={"x-test-key": "a"})
        assert r.status_code == 200 and r.headers["ratelimit-policy"] == '"read";q=100;w=60'


@pytest.mark.anyio
async def test_per_owner_shared_budget() -> None:
    """Keys of one owner share the owner budget on top of their own."""
    mw = RateLimitMiddleware(ok_app, read="5/minute", per_owner="3/minute", clock=FakeClock(START))
    app = with_principals(mw, PRINCIPALS)
    async with client(app) as c:
        for who in ("alice", "bob", "alice"):
            r = await c.get("/", headers={"x-test-key": who})
            assert r.status_code == 200
        r = await c.get("/", headers={"x-test-key": "bob"})
    assert r.status_code == 429
    assert r.json()["violated-policies"] == ["owner"]
    assert '"owner";q=3;w=60' in r.headers["ratelimit-policy"]
    assert r.headers["x-ratelimit-remaining"] == "4"  # legacy = the key's own class policy


@pytest.mark.anyio
async def test_exempt_paths_scopes_and_rules() -> None:
    """Exempt paths, scopes and rules bypass limiting and send no headers."""
    staff = {"s": Principal(key_id="s1", scopes=frozenset({"ratelimit:exempt"}))}
    mw = RateLimitMiddleware(
        ok_app,
        read="1/minute",
        exempt_paths=["/health/"],
        exempt_scopes=["ratelimit:exempt"],
        rules=[RateLimitRule("/static", exempt=True)],
        clock=FakeClock(START),
    )
    app = with_principals(mw, staff)
    async with client(app) as c:
        for path in ("/health", "/health/db", "/static/a.css", "/static/b.css"):
            r = await c.get(path)
            assert r.status_code == 200 and "ratelimit" not in r.headers
        for _ in range(3):
            assert (await c.get("/", headers={"x-test-key": "s"})).status_code == 200
        assert (await c.get("/healthz")).status_code == 200
        assert (await c.get("/healthz")).status_code == 429


@pytest.mark.anyio
async def test_rules_and_route_settings_pick_class_and_cost() -> None:
    """Path rules set class/cost/own limits; the registry's RouteSettings win over rules."""
    mw = RateLimitMiddleware(
        ok_app,
        read="10/minute",
        rules={
            "/search": RateLimitRule("/search", rate_class="search", limits="2/minute"),
            "/export": 4,
        },
        clock=FakeClock(START),
    )
    routes = {"/search": RouteSettings(template="/search", rate_class="read", cost=5)}
    async with client(mw) as c:
        r = await c.get("/export")
        assert '"read";r=6' in r.headers["ratelimit"]
        assert (await c.get("/search")).status_code == 200
        assert (await c.get("/search")).status_code == 200
        r = await c.get("/search")
        assert r.status_code == 429 and r.json()["violated-policies"] == ["search"]
    async with client(with_principals(mw, {}, routes)) as c:
        r = await c.get("/search")
        assert r.status_code == 200 and '"read";r=1' in r.headers["ratelimit"]


@pytest.mark.anyio
async def test_context_records_decision() -> None:
    """ctx.rate_limit carries the policy, figures and outcome for audit."""
    seen: list[RateLimitInfo | None] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append(get_context(scope).rate_limit)
        await ok_app(scope, receive, send)

    mw = RateLimitMiddleware(app, read="2/minute", strategy="fixed-window", clock=FakeClock(START))
    async with client(mw) as c:
        await c.get("/")
    assert seen == [
        RateLimitInfo(policy="read", limit=2, remaining=1, reset_after=60.0, allowed=True)
    ]


@pytest.mark.anyio
async def test_on_reject_hook_gets_headers() -> None:
    """on_reject answers the 429 itself; our headers and Retry-After are added."""

    def on_reject(scope: Scope, info: RateLimitInfo) -> ASGIApp:
        return problem_app("forbidden", f"slow down ({info.policy})")

    mw = RateLimitMiddleware(ok_app, read="1/minute", on_reject=on_reject, clock=FakeClock(START))
    async with client(mw) as c:
        await c.get("/")
        r = await c.get("/")
    assert r.status_code == 403 and r.json()["detail"] == "slow down (read)"
    assert "retry-after" in r.headers and "ratelimit" in r.headers


@pytest.mark.anyio
async def test_websocket_handshake_counts_and_closes_1008() -> None:
    """A websocket handshake costs one read (headers on the accept); over budget: close 1008."""
    mw = RateLimitMiddleware(ok_app, read="1/minute", clock=FakeClock(START))
    sent: list[dict[str, object]] = []

    async def receive() -> dict[str, object]:
        return {"type": "websocket.connect"}

    async def send(message: dict[str, object]) -> None:
        sent.append(message)

    scope = {"type": "websocket", "path": "/ws", "headers": [], "client": ("203.0.113.9", 1)}
    await mw(dict(scope), receive, send)  # type: ignore[arg-type]
    await mw(dict(scope), receive, send)  # type: ignore[arg-type]
    assert sent[0]["type"] == "websocket.accept"
    assert dict(sent[0]["headers"])[b"ratelimit"] == b'"read";r=0;t=40'  # type: ignore[call-overload]
    assert sent[-1]["type"] == "websocket.close" and sent[-1]["code"] == 1008


@pytest.mark.anyio
async def test_lifespan_passes_through_untouched() -> None:
    """Lifespan scopes reach the app as they are (M5)."""
    seen: list[Scope] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append(scope)

    mw = RateLimitMiddleware(app)
    scope: Scope = {"type": "lifespan", "asgi": {"version": "3.0"}}

    async def receive() -> dict[str, object]:
        return {}

    async def send(message: object) -> None:
        return None

    await mw(scope, receive, send)
    assert seen == [scope] and "extapi_kit" not in scope


def test_configuration_errors() -> None:
    """Bad strategy, failure mode, deadline, storage or prefix fail at construction."""
    for kwargs in (
        {"strategy": "token-bucket"},
        {"failure_mode": "maybe"},
        {"deadline": 0},
        {"storage": "ftp://x"},
        {"storage": object()},
        {"key_prefix": ""},
        {"read": "fast"},
    ):
        with pytest.raises(ConfigurationError):
            RateLimitMiddleware(ok_app, **kwargs)


def test_memory_storage_warns_when_workers_detected(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Memory storage with WEB_CONCURRENCY>1 logs a loud warning; Redis would not (L3)."""
    monkeypatch.setenv("WEB_CONCURRENCY", "4")
    with caplog.at_level(logging.WARNING, "extapi_kit.ratelimit"):
        RateLimitMiddleware(ok_app)
    assert "WEB_CONCURRENCY=4" in caplog.text and "N x the limit" in caplog.text


@pytest.mark.anyio
async def test_memory_storage_by_scheme_or_shared_instance() -> None:
    """'extapi-memory://' selects the flat storage; one instance can back two middlewares."""
    by_url = RateLimitMiddleware(ok_app, storage="extapi-memory://")
    assert isinstance(by_url.backend.storage, FlatMemoryStorage)
    shared = FlatMemoryStorage(clock=FakeClock(START))
    first = RateLimitMiddleware(ok_app, storage=shared, read="1/minute")
    second = RateLimitMiddleware(ok_app, storage=shared, read="1/minute")
    async with client(first) as c:
        assert (await c.get("/")).status_code == 200
    async with client(second) as c:
        assert (await c.get("/")).status_code == 429
    await first.aclose()


@pytest.mark.parametrize(
    "kwargs",
    [{"fallback_divisor": 0}, {"fallback_divisor": True}, {"probe_interval": 0}],
)
def test_failure_policy_arguments_validated(kwargs: dict[str, object]) -> None:
    """fallback_divisor must be an int >= 1 and probe_interval positive."""
    with pytest.raises(ConfigurationError):
        RateLimitMiddleware(ok_app, **kwargs)  # type: ignore[arg-type]
