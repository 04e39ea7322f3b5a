"""The three window algorithms of ``limits``, decided over several windows at once.

Semantics shared with the Redis Lua script (``redis.py``):

* every window is evaluated first; only if **all** admit ``cost`` are they all charged, so a
  request rejected by one window consumes nothing anywhere (all or nothing);
* fixed window: a counter that starts at the first admitted hit and lasts ``seconds``
  (``limits`` ``FixedWindowRateLimiter``); bursts of up to 2 x limit around a boundary are possible;
* sliding window counter: epoch-aligned windows, the previous window's count weighted by the
  share of it still inside the sliding window (``limits`` ``SlidingWindowCounterRateLimiter``):
  admitted iff ``floor(previous * (seconds - elapsed) / seconds) + current + cost <= limit``;
* moving window: a log of admission times; admitted iff fewer than ``limit - cost + 1`` entries
  are younger than ``seconds`` (``limits`` ``MovingWindowRateLimiter``).
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Sequence
from math import floor

from extapi_kit.ratelimit._result import FIXED, MOVING, RETRY_EPSILON, SLIDING, HitResult

__all__ = ["fixed_hit", "moving_hit", "sliding_hit", "sliding_retry"]


def sliding_retry(
    limit: int, seconds: float, elapsed: float, current: int, previous: int, cost: int
) -> float:
    """Seconds until ``cost`` units fit in a sliding-window counter.

    Args:
        limit: the window's limit.
        seconds: the window length.
        elapsed: seconds since the current aligned window began.
        current: count in the current aligned window.
        previous: count in the previous aligned window.
        cost: units wanted.
    """
    if cost > limit:
        return float(seconds)
    need = limit - cost - current
    if need >= 0 and previous > 0:
        # floor(previous * (1 - f)) <= need  <=>  f > 1 - (need + 1) / previous
        target = (1 - (need + 1) / previous) * seconds
        return max(target - elapsed, 0.0) + RETRY_EPSILON
    # The current window alone is full: wait for it to become the previous one, then for its
    # weight to fall enough.
    lag = max(0.0, 1 - (limit - cost + 1) / current) * seconds if current else 0.0
    return seconds - elapsed + lag + RETRY_EPSILON


def fixed_hit(
    table: dict[str, list[float]],
    heap: list[tuple[float, str, int]],
    keys: Sequence[str],
    windows: Sequence[tuple[int, int]],
    cost: int,
    now: float,
) -> HitResult:
    ok = True
    states: list[list[float]] = []
    for key, (limit, seconds) in zip(keys, windows, strict=True):
        entry = table.get(key)
        if entry is None or entry[1] <= now:
            count, reset = 0, float(seconds)
        else:
            count, reset = int(entry[0]), entry[1] - now
        if count + cost > limit:
            ok = False
            states.append([count, reset, reset])
        else:
            states.append([count, reset, 0.0])
    if ok:
        for key, (_, seconds), state in zip(keys, windows, states, strict=True):
            entry = table.get(key)
            if entry is None:
                table[key] = [cost, now + seconds]
                heapq.heappush(heap, (now + seconds, key, FIXED))
            elif entry[1] <= now:
                entry[0], entry[1] = cost, now + seconds
            else:
                entry[0] += cost
            state[0] += cost
    return HitResult(ok, states)


def sliding_hit(
    table: dict[str, list[float]],
    heap: list[tuple[float, str, int]],
    keys: Sequence[str],
    windows: Sequence[tuple[int, int]],
    cost: int,
    now: float,
) -> HitResult:
    ok = True
    states: list[list[float]] = []
    shifted: list[tuple[int, int, int]] = []
    for key, (limit, seconds) in zip(keys, windows, strict=True):
        idx = int(now // seconds)
        elapsed = now - idx * seconds
        entry = table.get(key)
        current = previous = 0
        if entry is not None:
            if entry[0] == idx:
                current, previous = int(entry[1]), int(entry[2])
            elif entry[0] == idx - 1:
                previous = int(entry[1])
        weighted = floor(previous * (seconds - elapsed) / seconds) + current
        reset = seconds - elapsed
        if weighted + cost > limit:
            ok = False
            retry = sliding_retry(limit, seconds, elapsed, current, previous, cost)
            states.append([weighted, reset, retry])
        else:
            states.append([weighted, reset, 0.0])
        shifted.append((idx, current, previous))
    if ok:
        for key, (_, seconds), state, (idx, current, previous) in zip(
            keys, windows, states, shifted, strict=True
        ):
            entry = table.get(key)
            if entry is None:
                table[key] = [idx, current + cost, previous, seconds]
                heapq.heappush(heap, ((idx + 2) * seconds, key, SLIDING))
            else:
                entry[0], entry[1], entry[2] = idx, current + cost, previous
            state[0] += cost
    return HitResult(ok, states)


def moving_hit(
    table: dict[str, tuple[deque[float], float]],
    heap: list[tuple[float, str, int]],
    keys: Sequence[str],
    windows: Sequence[tuple[int, int]],
    cost: int,
    now: float,
) -> HitResult:
    ok = True
    states: list[list[float]] = []
    for key, (limit, seconds) in zip(keys, windows, strict=True):
        entry = table.get(key)
        times = entry[0] if entry is not None else None
        if times:
            cutoff = now - seconds
            while times and times[0] <= cutoff:
                times.popleft()
        count = len(times) if times else 0
        reset = times[0] + seconds - now if times else float(seconds)
        if count + cost > limit:
            ok = False
            if cost > limit or times is None:
                retry = float(seconds)
            else:
                retry = times[count + cost - limit - 1] + seconds - now
            states.append([count, reset, retry])
        else:
            states.append([count, reset, 0.0])
    if ok and cost > 0:
        for key, (_, seconds), state in zip(keys, windows, states, strict=True):
            entry = table.get(key)
            if entry is None:
                times = deque()
                table[key] = (times, float(seconds))
                heapq.heappush(heap, (now + seconds, key, MOVING))
            else:
                times = entry[0]
            if not times:
                state[1] = float(seconds)
            times.extend([now] * cost)
            state[0] += cost
    return HitResult(ok, states)
