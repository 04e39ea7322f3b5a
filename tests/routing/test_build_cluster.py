"""build() with every store on a Redis Cluster: keys, rate limits, quotas, idempotency (R1)."""

from __future__ import annotations

from typing import Any

import pytest

from extapi_kit.keys.service import KeyService
from extapi_kit.routing import ExternalAPI, HandlerRequest
from extapi_kit.usage import UsageTracker
from tests.keys.support import cheap_hasher
from tests.routing.conftest import ClientFactory

pytestmark = [pytest.mark.redis, pytest.mark.anyio]


def _api() -> ExternalAPI:
    api = ExternalAPI()
    created = iter(range(1, 1000))

    @api.post("/items", scopes=["s"], status_code=201)
    async def create(req: HandlerRequest) -> dict[str, Any]:
        return {"id": next(created)}

    return api


@pytest.mark.parametrize("backend", ["redis", "redis-cluster"])
async def test_full_stack_on_a_cluster(
    backend: str, request: pytest.FixtureRequest, client_for: ClientFactory
) -> None:
    """L13: the whole stack on redis+cluster:// (keys, rate limits, a quota, idempotency) answers
    exactly as on one server: a replay is not run twice, the quota refuses the fourth request,
    a revoked key is refused at once."""
    url = str(request.getfixturevalue("redis_url" if backend == "redis" else "redis_cluster_url"))
    tracker = UsageTracker(url, flush_interval=3600)
    keys = KeyService(url, hasher=cheap_hasher(), cache_ttl=0)
    rec, key = await keys.create("k", scopes=["s"], quota={"daily": 3})
    app = _api().build(
        key_store=keys,
        rate_limit_storage=url,
        idempotency_store=url,
        write="5/minute",
        usage=tracker,
        audit_sink=None,
    )
    try:
        async with client_for(app) as c:
            headers = {"X-API-Key": key, "Idempotency-Key": "once"}
            first = await c.post("/api/v1/items", json={}, headers=headers)
            replay = await c.post("/api/v1/items", json={}, headers=headers)
            other = await c.post("/api/v1/items", json={}, headers={"X-API-Key": key})
            over = await c.post("/api/v1/items", json={}, headers={"X-API-Key": key})
            await keys.revoke(rec.id)
            revoked = await c.post("/api/v1/items", json={}, headers={"X-API-Key": key})
    finally:
        for close in getattr(app, "closers", ()):  # what lifespan shutdown runs
            await close()
        await keys.aclose()
    try:
        assert first.status_code == 201 and replay.status_code == 201
        assert replay.json() == first.json()  # replayed, not run again
        assert other.status_code == 201 and other.json() != first.json()
        assert over.status_code == 429  # the daily quota of 3 (a replay counts as a request)
        assert revoked.status_code == 401
        assert (await tracker.quota_used(rec.id))["daily"] == 3
    finally:
        await tracker.aclose()
