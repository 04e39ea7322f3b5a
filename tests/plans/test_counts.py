"""Counts survive a plan change, and the headers name the plan's policy (K2).

The rate limiter's storage keys carry the class name and window length, never the limit or the
plan: moving a key to another plan, or changing its plan, keeps what it already used, so a
downgrade applies at once and an upgrade (or a plan hop) never hands out a fresh window.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import httpx
import pytest

from extapi_kit.keys.service import KeyService
from extapi_kit.middleware.api_key import ApiKeyMiddleware
from extapi_kit.middleware.rate_limit import RateLimitMiddleware
from extapi_kit.plans import PlanService
from extapi_kit.testing import FakeClock
from tests.keys.support import RecordingApp, cheap_hasher

pytestmark = pytest.mark.anyio
START = 1_700_000_000.0


@dataclass
class Stack:
    keys: KeyService
    plans: PlanService
    limiter: RateLimitMiddleware
    client: httpx.AsyncClient


@asynccontextmanager
async def stack(storage: str) -> AsyncIterator[Stack]:
    clock = FakeClock(START)
    plans = PlanService("memory://", clock=clock)
    keys = KeyService("memory://", hasher=cheap_hasher(), clock=clock, plans=plans)
    limiter = RateLimitMiddleware(
        RecordingApp(), storage=storage, read="100/minute", strategy="fixed-window", clock=clock
    )
    app = ApiKeyMiddleware(limiter, store=keys)
    transport = httpx.ASGITransport(app, client=("203.0.113.7", 1234))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        try:
            yield Stack(keys, plans, limiter, client)
        finally:
            await limiter.aclose()


async def _use(s: Stack, key: str, n: int) -> list[httpx.Response]:
    return [await s.client.get("/x", headers={"X-API-Key": key}) for _ in range(n)]


@pytest.mark.parametrize("storage", ["memory://", "redis"])
async def test_counts_survive_a_plan_change(storage: str, request: pytest.FixtureRequest) -> None:
    """K2: 3 requests on free (5/minute), then free drops to 4/minute: the next request is the
    4th of 4 and the one after is refused (costing nothing); at 10/minute the next leaves 5."""
    url = request.getfixturevalue("redis_url") if storage == "redis" else storage
    async with stack(url) as s:
        await s.plans.create("free", rate_limits={"read": "5/minute"})
        _, key = await s.keys.create("k", plan="free")
        answers = await _use(s, key, 3)
        assert [r.status_code for r in answers] == [200, 200, 200]
        assert answers[-1].headers["ratelimit-policy"] == '"free.read";q=5;w=60'
        await s.plans.update("free", rate_limits={"read": "4/minute"})
        fourth, fifth = await _use(s, key, 2)
        assert fourth.status_code == 200
        assert fourth.headers["ratelimit"] == '"free.read";r=0;t=60'
        assert fifth.status_code == 429
        await s.plans.update("free", rate_limits={"read": "10/minute"})
        (sixth,) = await _use(s, key, 1)
        assert sixth.headers["ratelimit"] == '"free.read";r=5;t=60'  # 4 + 1 used, not 1


async def test_moving_to_another_plan_keeps_the_count() -> None:
    """K2: a key that used 4 of free's 5 and moves to pro (6/minute) has 1 left, not 5; its
    headers now name pro's policy."""
    async with stack("memory://") as s:
        await s.plans.create("free", rate_limits={"read": "5/minute"})
        await s.plans.create("pro", rate_limits={"read": "6/minute"})
        record, key = await s.keys.create("k", plan="free")
        await _use(s, key, 4)
        await s.keys.update(record.id, plan="pro")
        (r,) = await _use(s, key, 1)
        assert r.headers["ratelimit-policy"] == '"pro.read";q=6;w=60'
        assert r.headers["ratelimit"] == '"pro.read";r=1;t=60'


@pytest.mark.redis
async def test_storage_keys_never_contain_the_limit_or_the_plan(redis_url: str) -> None:
    """K2: the Redis keys the limiter writes for a key on a plan name neither the plan nor its
    limit, and stay the same set across a plan change and a move to another plan."""
    import redis.asyncio as redis

    async with stack(redis_url) as s:
        await s.plans.create("free", rate_limits={"read": "7/minute"})
        await s.plans.create("gold", rate_limits={"read": "9/minute"})
        record, key = await s.keys.create("k", plan="free")
        client = redis.Redis.from_url(redis_url, decode_responses=True)
        try:
            await client.flushdb()
            await _use(s, key, 1)
            first = set(await client.keys("*"))
            assert first and all(record.id in k for k in first), first
            assert not any("free" in k or ":7" in k or "/" in k for k in first), first
            await s.plans.update("free", rate_limits={"read": "8/minute"})
            await _use(s, key, 1)
            await s.keys.update(record.id, plan="gold")
            await _use(s, key, 1)
            assert set(await client.keys("*")) == first
        finally:
            await client.aclose()


async def test_a_key_override_wins_over_its_plan() -> None:
    """A key's own limit for a class wins over its plan's; the plan fills the other classes."""
    async with stack("memory://") as s:
        await s.plans.create("free", rate_limits={"read": "5/minute", "write": "2/minute"})
        _, key = await s.keys.create("k", plan="free", rate_limits={"read": "3/minute"})
        principal = await s.keys.verify(key)
        assert principal.rate_limits == {"read": "3/minute", "write": "2/minute"}
        (r,) = await _use(s, key, 1)
        assert r.headers["ratelimit-policy"] == '"free.read";q=3;w=60'
