"""FlatMemoryStorage: limits compatibility, isolation, bounded memory with 100k live keys."""

from __future__ import annotations

import copy
import pickle

import pytest
from limits import parse
from limits.aio.strategies import (
    FixedWindowRateLimiter,
    MovingWindowRateLimiter,
    SlidingWindowCounterRateLimiter,
)
from limits.storage import storage_from_string
from limits.storage.base import TimestampedSlidingWindow

from extapi_kit.ratelimit import FlatMemoryStorage
from extapi_kit.ratelimit._result import FIXED, MOVING, SLIDING
from extapi_kit.ratelimit.memory import HEAP_SLACK
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


@pytest.mark.anyio
async def test_fixed_window_keys_through_limits_strategy_are_reclaimed() -> None:
    """L12: keys hit through limits' FixedWindowRateLimiter (incr/get/get_expiry) are reclaimed,
    so 10,000 expired keys plus 10,000 new ones leave 10,000 live entries, not 20,000."""
    clock = FakeClock(1_000_000)
    storage = FlatMemoryStorage(clock=clock)
    limiter = FixedWindowRateLimiter(storage)
    item = parse("5/minute")
    for i in range(10_000):
        assert await limiter.hit(item, f"old{i}")
        await limiter.get_window_stats(item, f"old{i}")
    assert len(storage) == 10_000
    clock.advance(61)
    for i in range(10_000):
        assert await limiter.hit(item, f"new{i}")
        await limiter.get_window_stats(item, f"new{i}")
    assert len(storage) == 10_000
    assert storage.heap_size <= 2 * 10_000 + 64


@pytest.mark.anyio
@pytest.mark.parametrize("limiter_cls", LIMITERS)
async def test_clear_and_hit_churn_keeps_the_heap_bounded(limiter_cls: type) -> None:
    """L12: hitting and clearing one key 10,000 times within its window leaves a heap bounded by
    the live keys (cleared keys' expiry records do not pile up until they are due)."""
    storage = FlatMemoryStorage(clock=FakeClock(1_000_000))
    limiter = limiter_cls(storage)
    item = parse("5/minute")
    for _ in range(10_000):
        assert await limiter.hit(item, "k")
        await limiter.clear(item, "k")
    assert len(storage) == 0
    assert storage.heap_size <= 2 + HEAP_SLACK


def _populated(clock: FakeClock) -> FlatMemoryStorage:
    storage = FlatMemoryStorage(clock=clock)
    for strategy in (FIXED, SLIDING, MOVING):
        for _ in range(2):
            assert storage.decide(strategy, [f"k{strategy}"], [(2, 60)], 1).allowed
    return storage


@pytest.mark.parametrize("how", ["pickle", "deepcopy"])
def test_storage_pickles_and_deep_copies_like_limits_memory(how: str) -> None:
    """L12: like limits' memory storage, the storage survives pickle and deepcopy with its
    counters, and the copy has its own lock and keeps deciding."""
    clock = FakeClock(1_000_000)
    storage = _populated(clock)
    copy_ = pickle.loads(pickle.dumps(storage)) if how == "pickle" else copy.deepcopy(storage)
    assert isinstance(copy_, FlatMemoryStorage)
    assert len(copy_) == 3
    for strategy in (FIXED, SLIDING, MOVING):
        assert not copy_.decide(strategy, [f"k{strategy}"], [(2, 60)], 1).allowed
    assert copy_.decide(FIXED, ["fresh"], [(2, 60)], 1).allowed
    assert len(storage) == 3  # the original is untouched
    copy_.clock.advance(200)  # type: ignore[attr-defined]
    assert copy_.reclaim() == 4
    assert len(copy_) == 0


@pytest.mark.anyio
async def test_carries_the_timestamped_sliding_window_marker() -> None:
    """L12: the storage uses epoch-aligned sliding windows and says so with limits'
    TimestampedSlidingWindow marker, so readers of the marker compute the right reset time."""
    clock = FakeClock(1_000_030)
    storage = FlatMemoryStorage(clock=clock)
    assert isinstance(storage, TimestampedSlidingWindow)
    assert await storage.acquire_sliding_window_entry("k", 5, 60)
    _, _, current, current_expires_in = await storage.get_sliding_window("k", 60)
    assert current == 1
    # What a marker reader expects: the current window ends at the next multiple of 60 s.
    assert current_expires_in % 60 == pytest.approx(60 - clock() % 60)
    _, current_key = storage.sliding_window_keys("k", 60, clock())
    assert current_key == f"k/{int(clock() // 60)}"
