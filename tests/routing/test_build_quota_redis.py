"""build() on Redis: rate limits and quotas decided in one script, all or nothing (issue 16)."""

from __future__ import annotations

from typing import Any

import pytest
import redis

from extapi_kit.keys.service import KeyService
from extapi_kit.middleware.rate_limit import RateLimitMiddleware
from extapi_kit.ratelimit.redis import LUA
from extapi_kit.routing import ExternalAPI, HandlerRequest
from extapi_kit.usage import UsageTracker
from tests.keys.support import cheap_hasher
from tests.routing.conftest import ClientFactory

pytestmark = [pytest.mark.redis, pytest.mark.anyio]


def _api() -> ExternalAPI:
    api = ExternalAPI()

    @api.post("/items", scopes=["s"], status_code=201)
    async def create(req: HandlerRequest) -> dict[str, Any]:
        return {"id": 1}

    return api


def _script_calls(sync: redis.Redis) -> int:
    stats: dict[str, Any] = sync.info("commandstats")
    return sum(int(stats.get(f"cmdstat_{c}", {}).get("calls", 0)) for c in ("evalsha", "eval"))


async def _post_codes(
    redis_url: str, client_for: ClientFactory, *, write: str, quota: dict[str, int], n: int
) -> tuple[list[int], str, UsageTracker, int]:
    tracker = UsageTracker(redis_url, flush_interval=3600)
    keys = KeyService("memory://", hasher=cheap_hasher(), cache_ttl=0)
    rec, key = await keys.create("k", scopes=["s"], quota=quota)
    app = _api().build(key_store=keys, rate_limit_storage=redis_url, write=write, usage=tracker)
    sync = redis.Redis.from_url(redis_url)
    try:
        sync.script_load(LUA)  # a fresh server's first call would add a NOSCRIPT + EVAL
        sync.config_resetstat()
        async with client_for(app) as c:
            codes = [
                (await c.post("/api/v1/items", json={}, headers={"X-API-Key": key})).status_code
                for _ in range(n)
            ]
        calls = _script_calls(sync)
    finally:
        sync.close()
        for close in getattr(app, "closers", ()):  # what lifespan shutdown runs
            await close()
    await keys.aclose()
    return codes, rec.id, tracker, calls


async def test_quota_refusal_costs_no_rate_limit_budget_in_one_round_trip(
    redis_url: str, client_for: ClientFactory
) -> None:
    """L2: a request the quota refuses costs no rate-limit budget; one script call per request."""
    codes, key_id, tracker, calls = await _post_codes(
        redis_url, client_for, write="5/minute", quota={"daily": 2}, n=4
    )
    try:
        assert codes == [201, 201, 429, 429]
        assert calls == 4  # rate limit and quota together: one EVALSHA per request
        assert (await tracker.quota_used(key_id))["daily"] == 2
        sync = redis.Redis.from_url(redis_url)
        try:
            # Sliding-window hash of the write class: only the two admitted requests count.
            assert int(sync.hget(f"extapi:s:write:60:{{k:{key_id}}}", "c") or 0) == 2
        finally:
            sync.close()
    finally:
        await tracker.aclose()


async def test_rate_limit_refusal_costs_no_quota_in_the_combined_script(
    redis_url: str, client_for: ClientFactory
) -> None:
    """L2: a request the rate limiter refuses costs no quota when both share one script."""
    codes, key_id, tracker, calls = await _post_codes(
        redis_url, client_for, write="2/minute", quota={"daily": 100}, n=4
    )
    try:
        assert codes == [201, 201, 429, 429]
        assert calls == 4
        assert (await tracker.quota_used(key_id))["daily"] == 2
    finally:
        await tracker.aclose()


async def test_quotas_on_another_redis_database_are_not_merged(redis_url: str) -> None:
    """L2: the rate limiter charges quotas only when the usage store is the same Redis database."""
    other = redis_url.rsplit("/", 1)[0] + "/1"
    for url, linked in ((redis_url, True), (other, False)):
        tracker = UsageTracker(url)
        mw = RateLimitMiddleware(lambda s, r, se: None, storage=redis_url, quotas=tracker)  # type: ignore[arg-type, return-value]
        try:
            assert (mw._quotas is tracker) is linked
        finally:
            await mw.aclose()
            await tracker.aclose()
