"""Credits through ``build()`` under uvicorn on 127.0.0.1: N-use keys and route costs over HTTP."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest

from extapi_kit._types import ASGIApp
from extapi_kit.credits import CreditLedger
from extapi_kit.exceptions import StoreError
from extapi_kit.keys.service import KeyService
from extapi_kit.routing.api import ExternalAPI
from extapi_kit.routing.handlers import HandlerRequest
from tests.keys.support import cheap_hasher
from tests.support.redis_server import RedisServer
from tests.support.serving import serving as serve_loopback

pytestmark = pytest.mark.anyio


def _api() -> ExternalAPI:
    api = ExternalAPI(prefix="/api")

    @api.get("/ping")
    async def ping(req: HandlerRequest) -> dict[str, Any]:
        return {"ok": True}

    @api.post("/render", cost=10)
    async def render(req: HandlerRequest) -> dict[str, Any]:
        return {"rendered": True}

    return api


@asynccontextmanager
async def serving(app: ASGIApp) -> AsyncIterator[str]:
    async with serve_loopback(app, lifespan="on", access_log=False) as base:
        yield base


async def test_a_two_use_key_works_twice_over_http(tmp_path: Any) -> None:
    """K10: a key created with uses=2 answers 200 twice, then 402 credits-exhausted."""
    keys = KeyService(f"sqlite:///{tmp_path}/keys.db", hasher=cheap_hasher(), cache_ttl=0)
    ledger = CreditLedger(f"sqlite:///{tmp_path}/credits.db")
    record, secret = await ledger.create_key(keys, "trial", uses=2)
    app = _api().build(key_store=keys, audit_sink=None, credits=ledger)
    try:
        async with serving(app) as base, httpx.AsyncClient(base_url=base) as c:
            h = {"X-API-Key": secret}
            statuses = [(await c.get("/api/v1/ping", headers=h)).status_code for _ in range(3)]
            last = await c.get("/api/v1/ping", headers=h)
        assert statuses == [200, 200, 402]
        assert last.headers["credits-remaining"] == "0"
        assert last.json()["type"] == "https://extapi-kit.dev/problems/credits-exhausted"
        assert [e.reason for e in await ledger.history(key_id=record.id)] == ["created with uses=2"]
    finally:
        await ledger.aclose()
        await keys.aclose()


async def test_route_cost_and_rate_limit_headers_together_over_http(tmp_path: Any) -> None:
    """A cost-10 route spends 10; the answer carries Credits-Remaining and the RateLimit fields."""
    keys = KeyService("memory://", hasher=cheap_hasher(), cache_ttl=0)
    ledger = CreditLedger()
    _, secret = await keys.create("partner", owner="acme")
    await ledger.set(15, owner="acme")
    app = _api().build(key_store=keys, audit_sink=None, credits=ledger, write="100/minute")
    try:
        async with serving(app) as base, httpx.AsyncClient(base_url=base) as c:
            h = {"X-API-Key": secret}
            first = await c.post("/api/v1/render", headers=h)
            second = await c.post("/api/v1/render", headers=h)
        assert first.status_code == 200 and first.headers["credits-remaining"] == "5"
        assert "ratelimit" in first.headers
        assert second.status_code == 402 and second.json()["balance"] == "owner"
    finally:
        await ledger.aclose()


async def test_served_openapi_documents_402_and_route_costs(tmp_path: Any) -> None:
    """The served OpenAPI document (fetched over HTTP) lists 402 credits-exhausted with its
    Credits-Remaining header on keyed routes when a credits layer is built, and each route's cost
    as x-cost; without credits no operation mentions 402."""
    keys = KeyService("memory://", hasher=cheap_hasher(), cache_ttl=0)
    ledger = CreditLedger()
    with_credits = _api().build(key_store=keys, audit_sink=None, credits=ledger)
    without = _api().build(key_store=keys, audit_sink=None)
    try:
        async with serving(with_credits) as base, httpx.AsyncClient(base_url=base) as c:
            doc = (await c.get("/api/v1/openapi.json")).json()
        async with serving(without) as base, httpx.AsyncClient(base_url=base) as c:
            plain = (await c.get("/api/v1/openapi.json")).json()
        render = doc["paths"]["/api/v1/render"]["post"]
        ping = doc["paths"]["/api/v1/ping"]["get"]
        for op in (render, ping):
            refused = op["responses"]["402"]
            assert "Credits exhausted" in refused["description"]
            assert "Credits-Remaining" in refused["headers"]
        assert render["x-cost"] == 10 and "x-cost" not in ping
        assert all(
            "402" not in op["responses"] for item in plain["paths"].values() for op in item.values()
        )
    finally:
        await ledger.aclose()


@pytest.mark.redis
async def test_a_key_whose_balance_cannot_be_written_is_revoked(
    private_redis: RedisServer,
) -> None:
    """K10: when the uses cannot be recorded, the new key is revoked, never left unlimited."""
    keys = KeyService("memory://", hasher=cheap_hasher(), cache_ttl=0)
    ledger = CreditLedger(private_redis.url)
    private_redis.kill()
    try:
        with pytest.raises(StoreError):
            await ledger.create_key(keys, "trial", uses=1)
        page, _ = await keys.list()
        assert len(page) == 1 and page[0].revoked_at is not None
    finally:
        await ledger.aclose()
