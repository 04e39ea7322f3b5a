"""build(usage=...): the usage layer's place in the stack, route cost feeding quotas, closers."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import httpx
import pytest

from extapi_kit._types import ASGIApp, Message
from extapi_kit.keys.service import KeyService
from extapi_kit.middleware.usage import UsageMiddleware
from extapi_kit.routing import ExternalAPI, HandlerRequest, StackSettings
from extapi_kit.routing.build import LAYER_ORDER
from extapi_kit.testing import FakeClock
from extapi_kit.usage import UsageTracker
from tests.keys.support import cheap_hasher
from tests.routing.conftest import ClientFactory
from tests.routing.test_build import _recorder

pytestmark = pytest.mark.anyio

MID_NOVEMBER = dt.datetime(2026, 11, 15, 12, 0, tzinfo=dt.UTC).timestamp()
DEC_FIRST = dt.datetime(2026, 12, 1, tzinfo=dt.UTC).timestamp()


@pytest.fixture(params=["sqlite", "redis"])
def usage_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A durable usage store URL: a SQLite file, or the private test Redis."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/usage.db"
    return str(request.getfixturevalue("redis_url"))


def _api() -> ExternalAPI:
    api = ExternalAPI()

    @api.get("/search", scopes=["s"], rate_class="search", cost=3)
    async def search(req: HandlerRequest) -> dict[str, Any]:
        return {"ok": True}

    @api.get("/ping", scopes=["s"], cost=0)
    async def ping(req: HandlerRequest) -> dict[str, Any]:
        return {"pong": True}

    @api.post("/items", scopes=["s"], status_code=201)
    async def create(req: HandlerRequest) -> dict[str, Any]:
        return {"id": 1}

    @api.get("/status", public=True)
    async def status(req: HandlerRequest) -> dict[str, Any]:
        return {"up": True}

    return api


async def _lifespan(app: ASGIApp) -> list[str]:
    """Run a full lifespan (startup then shutdown) and return the messages the app sent."""
    inbox = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]
    sent: list[str] = []

    async def receive() -> Message:
        return inbox.pop(0)

    async def send(message: Message) -> None:
        sent.append(message["type"])

    await app({"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}, receive, send)
    return sent


def _find(app: Any, cls: type) -> Any:
    layer = app
    while layer is not None and not isinstance(layer, cls):
        layer = getattr(layer, "app", None)
    return layer


async def test_usage_layer_sits_between_rate_limit_and_idempotency(
    client_for: ClientFactory,
) -> None:
    """DESIGN §3 plus issue 9: ... → ApiKey → RateLimit → Usage → Idempotency → router."""
    log: list[tuple[str, Any]] = []
    layers = {name: _recorder(name, log) for name in LAYER_ORDER}
    assert LAYER_ORDER.index("rate_limit") < LAYER_ORDER.index("usage")
    assert LAYER_ORDER.index("usage") < LAYER_ORDER.index("idempotency")
    app = _api().build(
        key_store="memory://",
        rate_limit_storage="memory://",
        audit_sink="memory://",
        idempotency_store="memory://",
        usage="memory://",
        credits="memory://",
        ip_allow=["203.0.113.0/24"],
        layers=layers,
    )
    async with client_for(app) as c:
        assert (await c.get("/api/v1/status")).status_code == 200
    assert [n for n, _ in log if n != "init"] == list(LAYER_ORDER)
    init = [n for kind, n in log if kind == "init"]
    assert init == list(reversed(LAYER_ORDER))
    # Without usage= the layer is left out.
    log.clear()
    _api().build(key_store="memory://", layers=layers)
    assert "usage" not in [n for kind, n in log if kind == "init"]


async def test_route_cost_feeds_the_quota_and_counters(
    usage_url: str, client_for: ClientFactory
) -> None:
    """A registry route's cost is charged to the key's monthly quota; the refusal is a 429
    quota-exhausted with Retry-After to the month's end; counts use the route's rate class."""
    clock = FakeClock(MID_NOVEMBER)
    tracker = UsageTracker(usage_url, clock=clock)
    keys = KeyService("memory://", hasher=cheap_hasher(), cache_ttl=0)
    rec, key = await keys.create("partner", owner="acme", scopes=["s"], quota={"monthly": 7})
    app = _api().build(
        key_store=keys,
        rate_limit_storage="memory://",
        idempotency_store="memory://",
        usage=tracker,
    )
    h = {"X-API-Key": key}
    async with client_for(app) as c:
        for _ in range(2):
            r = await c.get("/api/v1/search", headers=h)
            assert r.status_code == 200, r.text
            assert '"quota";q=7;w=2592000' in r.headers["ratelimit-policy"]
        assert (await c.get("/api/v1/ping", headers=h)).status_code == 200  # cost 0: free
        assert (await c.post("/api/v1/items", headers=h, json={})).status_code == 201
        refused = await c.get("/api/v1/search", headers=h)
        assert refused.status_code == 429
        assert refused.json()["type"].endswith("quota-exhausted")
        assert int(refused.headers["retry-after"]) == int(DEC_FIRST - MID_NOVEMBER)
        assert (await c.get("/api/v1/status")).status_code == 200  # public: not counted
    assert (await tracker.quota_used(rec.id))["monthly"] == 3 + 3 + 0 + 1
    await tracker.flush()
    (today,) = await tracker.get_usage(rec.id, days=1)
    assert today["classes"] == {"search": 3, "read": 1, "write": 1}
    assert (today["served"], today["rejected"]) == (4, {"quota-exhausted": 1})
    assert (await tracker.get_owner_month("acme"))["total"] == 5
    # The quota resets with the month.
    clock.set(DEC_FIRST)
    async with client_for(app) as c:
        assert (await c.get("/api/v1/search", headers=h)).status_code == 200
    await tracker.aclose()
    await keys.aclose()


async def test_rate_limited_requests_do_not_spend_quota(client_for: ClientFactory) -> None:
    """The rate limiter sits outside the usage layer: its 429s charge no quota and count nothing."""
    tracker = UsageTracker("memory://")
    keys = KeyService("memory://", hasher=cheap_hasher(), cache_ttl=0)
    rec, key = await keys.create("k", scopes=["s"], quota={"monthly": 100})
    app = _api().build(
        key_store=keys, rate_limit_storage="memory://", write="2/minute", usage=tracker
    )
    async with client_for(app) as c:
        codes = [
            (await c.post("/api/v1/items", json={}, headers={"X-API-Key": key})).status_code
            for _ in range(4)
        ]
    assert codes == [201, 201, 429, 429]
    assert (await tracker.quota_used(rec.id))["monthly"] == 2
    await tracker.flush()
    assert (await tracker.get_usage(rec.id, days=1))[0]["total"] == 2
    await tracker.aclose()
    await keys.aclose()


async def test_url_form_creates_and_closes_its_own_tracker(tmp_path: Path) -> None:
    """usage="sqlite:///..." makes a tracker the stack owns: lifespan shutdown flushes and closes
    it, and the counts are on disk for the next process (M5)."""
    url = f"sqlite:///{tmp_path}/usage.db"
    keys = KeyService("memory://", hasher=cheap_hasher(), cache_ttl=0)
    rec, key = await keys.create("k", scopes=["s"])
    app = _api().build(key_store=keys, usage=url, options={"usage": {"flush_interval": 3600}})
    layer = _find(app, UsageMiddleware)
    assert layer is not None and layer.tracker.store is not None
    transport = httpx.ASGITransport(app, client=("203.0.113.7", 1234))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        assert (await c.get("/api/v1/ping", headers={"X-API-Key": key})).status_code == 200
    assert layer.tracker.pending  # the long flush interval kept it in memory
    sent = await _lifespan(app)
    assert sent == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    assert layer.tracker._closed
    again = UsageTracker(url)
    assert (await again.get_usage(rec.id, days=1))[0]["served"] == 1
    await again.aclose()
    await keys.aclose()


async def test_shared_tracker_is_flushed_but_left_open(tmp_path: Path) -> None:
    """A tracker passed in (shared with an admin API) is flushed at shutdown, never closed, and
    StackSettings(usage=...) on the registry works like the keyword."""
    tracker = UsageTracker(f"sqlite:///{tmp_path}/usage.db", flush_interval=3600)
    keys = KeyService("memory://", hasher=cheap_hasher(), cache_ttl=0)
    rec, key = await keys.create("k", scopes=["s"])
    api = _api()
    api.settings = StackSettings(key_store=keys, usage=tracker)
    app = api.build()
    transport = httpx.ASGITransport(app, client=("203.0.113.7", 1234))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        assert (await c.get("/api/v1/ping", headers={"X-API-Key": key})).status_code == 200
    await _lifespan(app)
    assert not tracker.pending and not tracker._closed
    assert (await tracker.get_usage(rec.id, days=1))[0]["served"] == 1  # store still open
    await tracker.aclose()
    await keys.aclose()
