"""The generic path over any limits.aio storage, and the failover wrapper around it."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

import pytest
from limits.aio.storage import MemoryStorage

from extapi_kit.exceptions import StoreUnavailableError
from extapi_kit.middleware.rate_limit import RateLimitMiddleware
from extapi_kit.ratelimit import FailoverBackend, HitResult, LimitsBackend
from extapi_kit.ratelimit._result import FIXED, SLIDING
from extapi_kit.testing import FakeClock
from tests.ratelimit.helpers import client, ok_app


@pytest.mark.anyio
@pytest.mark.parametrize("strategy", ["fixed-window", "sliding-window", "moving-window"])
async def test_limits_storage_instance_is_exact(strategy: str) -> None:
    """A limits.aio storage through the limits strategies still admits exactly L of 300 (L1)."""
    mw = RateLimitMiddleware(ok_app, storage=MemoryStorage(), read="50/minute", strategy=strategy)
    assert isinstance(mw.backend.primary, LimitsBackend)
    async with client(mw) as c:
        codes = [r.status_code for r in await asyncio.gather(*(c.get("/") for _ in range(300)))]
        r = await c.get("/")
    assert codes.count(200) == 50
    assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1


@pytest.mark.anyio
async def test_generic_path_charges_earlier_windows_on_later_rejection() -> None:
    """Documented difference: windows are hit in order, so a rejection by the long window has
    already charged the short one (no multi-key transaction in generic storages)."""
    backend = LimitsBackend(MemoryStorage(), FIXED)
    windows = [(10, 60), (1, 3600)]
    assert (await backend.hit(["s", "l"], windows, 1)).allowed
    refused = await backend.hit(["s", "l"], windows, 1)
    assert not refused.allowed
    assert refused.windows[0][0] == 2  # charged anyway


class Broken:
    """A backend that always fails."""

    async def hit(
        self, keys: Sequence[str], windows: Sequence[tuple[int, int]], cost: int
    ) -> HitResult:
        raise ConnectionError("down")

    async def aclose(self) -> None:
        return None


@pytest.mark.anyio
async def test_failover_probes_at_most_once_per_interval() -> None:
    """While down, calls skip the storage until the probe interval passes (breaker)."""
    calls = 0

    class Counting(Broken):
        async def hit(
            self, keys: Sequence[str], windows: Sequence[tuple[int, int]], cost: int
        ) -> HitResult:
            nonlocal calls
            calls += 1
            return await super().hit(keys, windows, cost)

    clock = FakeClock(1_000_000)
    fo = FailoverBackend(Counting(), SLIDING, clock=clock, deadline=1, probe_interval=5)
    for _ in range(10):
        assert (await fo.hit(["k"], [(100, 60)], 1)).degraded
    assert calls == 1
    clock.advance(5)
    await fo.hit(["k"], [(100, 60)], 1)
    assert calls == 2
    closed = FailoverBackend(Broken(), SLIDING, clock=clock, deadline=1, failure_mode="closed")
    with pytest.raises(StoreUnavailableError):
        await closed.hit(["k"], [(100, 60)], 1)
    await fo.aclose()


@pytest.mark.anyio
@pytest.mark.redis
@pytest.mark.parametrize("strategy", ["fixed-window", "sliding-window", "moving-window"])
async def test_limits_redis_url_uses_redispy_and_is_exact(strategy: str, redis_url: str) -> None:
    """'async+redis://...' runs limits' own Redis storage (redis-py) and stays exact (L1)."""
    url = "async+" + redis_url
    mw = RateLimitMiddleware(ok_app, storage=url, read="50/minute", strategy=strategy, deadline=5)
    try:
        async with client(mw) as c:
            responses = await asyncio.gather(*(c.get("/") for _ in range(300)))
    finally:
        await mw.aclose()
    codes = [r.status_code for r in responses]
    assert codes.count(200) == 50 and not mw.backend.degraded


@pytest.mark.anyio
async def test_warnings_throttled_while_degraded(caplog: pytest.LogCaptureFixture) -> None:
    """Failed probes while degraded warn at most once per warn_interval; metric every time."""
    clock = FakeClock(1_000_000)
    fo = FailoverBackend(
        Broken(), SLIDING, clock=clock, deadline=1, probe_interval=5, warn_interval=30
    )
    with caplog.at_level(logging.WARNING, "extapi_kit.ratelimit"):
        for _ in range(12):  # 12 probes, 5 s apart = 55 s
            await fo.hit(["k"], [(100, 60)], 1)
            clock.advance(5)
    assert caplog.text.count("rate-limit storage failed") == 2


@pytest.mark.anyio
async def test_queued_requests_skip_a_storage_that_failed_meanwhile() -> None:
    """Calls queued for a slot behind a hung call go to the fallback once it times out, instead
    of each waiting a full deadline on the hung storage (L9)."""
    calls = 0

    class Hung(Broken):
        async def hit(
            self, keys: Sequence[str], windows: Sequence[tuple[int, int]], cost: int
        ) -> HitResult:
            nonlocal calls
            calls += 1
            await asyncio.Event().wait()
            raise AssertionError("unreachable")

    fo = FailoverBackend(
        Hung(), SLIDING, clock=FakeClock(1_000_000), deadline=0.05, max_concurrency=1
    )
    results = await asyncio.gather(*(fo.hit(["k"], [(100, 60)], 1) for _ in range(5)))
    assert all(r.degraded and r.allowed for r in results)
    assert calls == 1 and fo.degraded
