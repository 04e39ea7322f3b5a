"""FlatMemoryStorage: limits compatibility, isolation, bounded memory with 100k live keys."""

from __future__ import annotations

import pytest
from limits import parse
from limits.aio.strategies import (
    FixedWindowRateLimiter,
    MovingWindowRateLimiter,
    SlidingWindowCounterRateLimiter,
)
from limits.storage import storage_from_string

from extapi_kit.ratelimit import FlatMemoryStorage
from extapi_kit.ratelimit._result import FIXED, MOVING, SLIDING
from extapi_kit.testing import FakeClock

LIMITERS = [FixedWindowRateLimiter, MovingWindowRateLimiter, SlidingWindowCounterRateLimiter]


def test_registered_with_limits_under_its_own_scheme() -> None:
    """limits.storage_from_string('extapi-memory://') builds our storage."""
    assert isinstance(storage_from_string("extapi-memory://"), FlatMemoryStorage)


@pytest.mark.anyio
@pytest.mark.parametrize("limiter_cls", LIMITERS)
async def test_limits_strategies_run_on_it_with_injected_clock(limiter_cls: type) -> None:
    """Each limits.aio strategy admits exactly L per window on it, and the clock frees it (L5)."""
    clock = FakeClock(1_000_020)
    storage = FlatMemoryStorage(clock=clock)
    limiter = limiter_cls(storage)
    item = parse("5/minute")
    results = [await limiter.hit(item, "k") for _ in range(8)]
    assert results == [True] * 5 + [False] * 3
    stats = await limiter.get_window_stats(item, "k")
    assert stats.remaining == 0
    clock.advance(121)
    assert await limiter.hit(item, "k")
    assert (await limiter.get_window_stats(item, "k")).remaining == 4
    await limiter.clear(item, "k")
    assert await storage.check()
    assert await storage.reset() is not None
    assert len(storage) == 0


@pytest.mark.anyio
async def test_fixed_counter_api_expires_by_clock() -> None:
    """incr/get/get_expiry follow the injected clock (no timers, no sleeps)."""
    clock = FakeClock(1000.0)
    storage = FlatMemoryStorage(clock=clock)
    assert await storage.incr("a", 10) == 1
    assert await storage.incr("a", 10, amount=2) == 3
    assert await storage.get("a") == 3
    assert await storage.get_expiry("a") == 1010.0
    clock.advance(10)
    assert await storage.get("a") == 0
    assert await storage.incr("a", 10) == 1
    assert await storage.get_moving_window("none", 5, 10) == (clock(), 0)


@pytest.mark.parametrize("strategy", [FIXED, SLIDING, MOVING])
def test_keys_are_isolated(strategy: int) -> None:
    """Exhausting key A leaves key B's budget untouched (L7)."""
    storage = FlatMemoryStorage(clock=FakeClock(1_000_000))
    for _ in range(3):
        assert storage.decide(strategy, ["a"], [(3, 60)], 1).allowed
    assert not storage.decide(strategy, ["a"], [(3, 60)], 1).allowed
    assert storage.decide(strategy, ["b"], [(3, 60)], 1).allowed


@pytest.mark.parametrize("strategy", [FIXED, SLIDING, MOVING])
def test_rejection_charges_no_window(strategy: int) -> None:
    """All or nothing: a hit the long window refuses does not consume the short window."""
    clock = FakeClock(1_000_000)
    storage = FlatMemoryStorage(clock=clock)
    windows = [(2, 10), (3, 3600)]
    assert storage.decide(strategy, ["s", "l"], windows, 1).allowed
    assert storage.decide(strategy, ["s", "l"], windows, 1).allowed
    clock.advance(25)
    assert storage.decide(strategy, ["s", "l"], windows, 1).allowed
    clock.advance(25)
    refused = storage.decide(strategy, ["s", "l"], windows, 1)
    assert not refused.allowed
    assert refused.windows[0][0] == 0  # the short window was not charged
    assert refused.windows[0][2] == 0.0 and refused.windows[1][2] > 0


@pytest.mark.parametrize("strategy", [FIXED, SLIDING, MOVING])
def test_cost_larger_than_limit_never_admitted(strategy: int) -> None:
    """A request costing more than the limit is refused with a full-window retry."""
    storage = FlatMemoryStorage(clock=FakeClock(1_000_000))
    result = storage.decide(strategy, ["k"], [(3, 60)], 4)
    assert not result.allowed
    assert result.windows[0][2] >= 60


@pytest.mark.parametrize("strategy", [FIXED, SLIDING, MOVING])
def test_100k_live_keys_stay_bounded_and_are_reclaimed(strategy: int) -> None:
    """100,000 live keys: one expiry record each; after expiry, hits reclaim them a few at a
    time until memory is back to the live set (L7)."""
    clock = FakeClock(1_000_000)
    storage = FlatMemoryStorage(clock=clock, sweep=8)
    for i in range(100_000):
        storage.decide(strategy, [f"k{i}"], [(5, 60)], 1)
    assert len(storage) == 100_000
    assert storage.heap_size == 100_000
    clock.advance(181)
    storage.decide(strategy, ["hot"], [(5, 60)], 1)
    assert len(storage) == 100_000 + 1 - 8  # one call reclaims at most `sweep` entries
    for _ in range(100_000 // 8 + 1):
        storage.decide(strategy, ["hot"], [(10**9, 60)], 1)
    assert len(storage) == 1
    assert storage.heap_size == 1


def test_reclaim_rearms_keys_still_alive() -> None:
    """A due record whose key was extended is re-armed, not dropped."""
    clock = FakeClock(1_000_000)
    storage = FlatMemoryStorage(clock=clock)
    storage.decide(MOVING, ["m"], [(5, 60)], 1)
    clock.advance(50)
    storage.decide(MOVING, ["m"], [(5, 60)], 1)
    clock.advance(15)
    assert storage.reclaim() == 0
    assert len(storage) == 1
    clock.advance(60)
    assert storage.reclaim() == 1
    assert len(storage) == 0
