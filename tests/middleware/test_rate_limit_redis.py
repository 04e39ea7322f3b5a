"""RateLimitMiddleware on real Redis: header figures from the one script call (L4), no secrets
in Redis key names, keys expiring with their windows."""

from __future__ import annotations

import pytest
import redis

from extapi_kit.context import Principal
from extapi_kit.middleware.rate_limit import RateLimitMiddleware
from tests.ratelimit.helpers import client, ok_app, with_principals

pytestmark = [pytest.mark.redis, pytest.mark.anyio]


@pytest.mark.parametrize("strategy", ["fixed-window", "sliding-window", "moving-window"])
async def test_headers_count_down_on_redis(strategy: str, redis_url: str) -> None:
    """Remaining 4..0 on the IETF and legacy fields, then 429 with Retry-After == t >= 1 (L4)."""
    mw = RateLimitMiddleware(ok_app, storage=redis_url, read="5/minute", strategy=strategy)
    try:
        async with client(mw) as c:
            for expected in range(4, -1, -1):
                r = await c.get("/")
                assert r.status_code == 200
                assert r.headers["x-ratelimit-remaining"] == str(expected)
                assert r.headers["ratelimit"].startswith(f'"read";r={expected};t=')
            r = await c.get("/")
    finally:
        await mw.aclose()
    assert r.status_code == 429
    retry = int(r.headers["retry-after"])
    assert 1 <= retry <= 60
    assert r.headers["ratelimit"] == f'"read";r=0;t={retry}'


@pytest.mark.parametrize("strategy", ["fixed-window", "sliding-window", "moving-window"])
async def test_redis_keys_hold_key_id_only_and_expire(strategy: str, redis_url: str) -> None:
    """Redis key names carry the public key id (never a secret) and every key has a TTL."""
    secret = "xk_live_k1_" + "s" * 43
    principal = Principal(key_id="k1", prefix="xk_live_k1", owner="acme", metadata={"s": secret})
    mw = RateLimitMiddleware(
        ok_app, storage=redis_url, read="5/minute;100/hour", per_owner="50/hour", strategy=strategy
    )
    app = with_principals(mw, {"a": principal})
    try:
        async with client(app) as c:
            assert (await c.get("/", headers={"x-test-key": "a"})).status_code == 200
    finally:
        await mw.aclose()
    sync = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        names = sorted(str(k) for k in sync.keys("*"))
        ttls = [sync.pttl(k) for k in names]
    finally:
        sync.close()
    code = strategy[0]
    assert names == [
        f"extapi:{code}:owner:3600:{{o:acme}}",
        # The key's windows take its owner's tag: one cluster slot for the whole script.
        f"extapi:{code}:read:3600:{{o:acme}}k:k1",
        f"extapi:{code}:read:60:{{o:acme}}k:k1",
    ]
    assert all(0 < t <= 2 * 3600 * 1000 for t in ttls)
    assert not any(secret in n for n in names)
