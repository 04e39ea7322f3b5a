"""Redis faults: killed, SIGSTOPped, restarted, scripts flushed, clocks skewed (L6, L8-L11)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator

import httpx
import pytest
import redis

from extapi_kit._types import Receive, Scope, Send
from extapi_kit.context import RateLimitInfo, get_context
from extapi_kit.middleware.rate_limit import RateLimitMiddleware
from extapi_kit.testing import FakeClock
from tests.ratelimit.helpers import client, ok_app
from tests.support.redis_server import RedisServer

pytestmark = [pytest.mark.redis, pytest.mark.anyio]


def recording_app(seen: list[RateLimitInfo | None]):  # type: ignore[no-untyped-def]
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append(get_context(scope).rate_limit)
        await ok_app(scope, receive, send)

    return app


@pytest.fixture
async def closing() -> AsyncIterator[list[RateLimitMiddleware]]:
    """Middlewares to close at teardown, even when the test fails."""
    made: list[RateLimitMiddleware] = []
    yield made
    for mw in made:
        await mw.aclose()


def last(seen: list[RateLimitInfo | None]) -> RateLimitInfo:
    info = seen[-1]
    assert info is not None
    return info


async def get(c: httpx.AsyncClient) -> httpx.Response:
    # A hung limiter would hang here; the bound turns that into a failure, not a stuck suite.
    async with asyncio.timeout(5):
        return await c.get("/")


async def test_killed_redis_fails_open_then_recovers(
    private_redis: RedisServer,
    caplog: pytest.LogCaptureFixture,
    closing: list[RateLimitMiddleware],
) -> None:
    """Redis killed: 200 from the fallback at limit/divisor, metric+one warning, never 500;
    restarted: back on Redis after the probe interval without an app restart (L8, L10)."""
    clock = FakeClock()
    seen: list[RateLimitInfo | None] = []
    mw = RateLimitMiddleware(
        recording_app(seen),
        storage=private_redis.url,
        read="4/minute",
        deadline=0.25,
        fallback_divisor=2,
        probe_interval=5,
        clock=clock,
    )
    closing.append(mw)
    async with client(mw) as c:
        assert (await get(c)).status_code == 200
        assert not last(seen).degraded
        private_redis.kill()
        with caplog.at_level(logging.WARNING, "extapi_kit.ratelimit"):
            codes = [(await get(c)).status_code for _ in range(4)]
        assert codes == [200, 200, 429, 429]  # fallback budget 4 // 2
        assert last(seen).degraded
        assert caplog.text.count("rate-limit storage failed") == 1
        private_redis.start()
        clock.advance(5)
        r = await get(c)
        assert r.status_code == 200 and not last(seen).degraded
        assert '"read";r=3' in r.headers["ratelimit"]  # counters restarted with Redis (L10)
    assert "answering again" in caplog.text


async def test_closed_mode_answers_503_with_retry_after(
    private_redis: RedisServer, closing: list[RateLimitMiddleware]
) -> None:
    """failure_mode='closed': Redis down gives 503 problem + Retry-After, websocket 1013 (L8)."""
    clock = FakeClock()
    mw = RateLimitMiddleware(
        ok_app, storage=private_redis.url, failure_mode="closed", deadline=0.25, clock=clock
    )
    closing.append(mw)
    private_redis.kill()
    async with client(mw) as c:
        r = await get(c)
    assert r.status_code == 503
    assert r.json()["type"].endswith("/service-unavailable")
    assert r.headers["retry-after"] == "2"
    sent: list[dict[str, object]] = []

    async def receive() -> dict[str, object]:
        return {"type": "websocket.connect"}

    async def send(message: dict[str, object]) -> None:
        sent.append(message)

    scope = {"type": "websocket", "path": "/ws", "headers": [], "client": ("203.0.113.9", 1)}
    await mw(scope, receive, send)  # type: ignore[arg-type]
    assert sent == [{"type": "websocket.close", "code": 1013, "reason": "rate limiter unavailable"}]


async def test_sigstopped_redis_decided_within_deadline(
    private_redis: RedisServer, closing: list[RateLimitMiddleware]
) -> None:
    """A hung (SIGSTOP) Redis costs one deadline, then the fallback answers; after SIGCONT the
    next probe returns to Redis and later calls get their own replies (L9, L11)."""
    clock = FakeClock()
    seen: list[RateLimitInfo | None] = []
    mw = RateLimitMiddleware(
        recording_app(seen), storage=private_redis.url, read="100/minute", deadline=0.2, clock=clock
    )
    closing.append(mw)
    async with client(mw) as c:
        assert (await get(c)).status_code == 200
        private_redis.pause()
        try:
            started = time.monotonic()
            r = await get(c)
            waited = time.monotonic() - started
        finally:
            private_redis.resume()
        assert r.status_code == 200 and last(seen).degraded
        assert waited < 3  # bounded by the deadline, not by the OS socket default
        clock.advance(2)
        remaining = []
        for _ in range(5):
            r = await get(c)
            assert not last(seen).degraded
            remaining.append(last(seen).remaining)
    # Each call gets its own reply (no cross-talk after the cancelled command). The hung call's
    # script may still run once Redis resumes, so the count starts at 98 or 97.
    assert remaining[0] in (97, 98)
    assert remaining == list(range(remaining[0], remaining[0] - 5, -1))


async def test_script_flush_heals_without_restart(
    private_redis: RedisServer, closing: list[RateLimitMiddleware]
) -> None:
    """After SCRIPT FLUSH (as after a restart/failover) the script reloads itself on NOSCRIPT."""
    seen: list[RateLimitInfo | None] = []
    mw = RateLimitMiddleware(recording_app(seen), storage=private_redis.url, read="10/minute")
    closing.append(mw)
    async with client(mw) as c:
        await get(c)
        sync = redis.Redis(host="127.0.0.1", port=private_redis.port)
        sync.script_flush()
        sync.close()
        await get(c)
    assert not last(seen).degraded and last(seen).remaining == 8


@pytest.mark.parametrize("strategy", ["fixed-window", "sliding-window", "moving-window"])
async def test_clock_skew_between_nodes_does_not_widen_windows(
    strategy: str, redis_url: str, closing: list[RateLimitMiddleware]
) -> None:
    """Two nodes whose clocks differ by 61 s share one exact limit: the script uses Redis time,
    so no strategy (moving window included) lets the skewed node through (L6)."""
    now = time.time()
    nodes = [
        RateLimitMiddleware(
            ok_app, storage=redis_url, read="10/minute", strategy=strategy, clock=FakeClock(t)
        )
        for t in (now, now + 61)
    ]
    codes = []
    for i in range(20):
        async with client(nodes[i % 2]) as c:
            codes.append((await get(c)).status_code)
    assert codes.count(200) == 10
    closing.extend(nodes)
