"""Generic backend over any ``limits.aio`` storage, through the ``limits.aio`` strategies.

Used when ``storage=`` is a ``limits`` storage instance or an ``async+...://`` URL (Memcached,
MongoDB, Redis Cluster/Sentinel via ``limits``). Each window is decided by the strategy's atomic
``hit()`` (never test-then-hit, case L2). Differences from the built-in backends, documented in
docs/rate-limiting.md: windows are hit one after another, so when a later window rejects, the
earlier ones have already been charged (these storages offer no multi-key transaction); the
header figures need a second call (``get_window_stats``); and a key's counter restarts when its
limit changes, because ``limits`` puts the amount into the storage key.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from limits import RateLimitItem, parse
from limits.aio.strategies import (
    FixedWindowRateLimiter,
    MovingWindowRateLimiter,
    SlidingWindowCounterRateLimiter,
)

from extapi_kit.ratelimit._result import FIXED, MOVING, HitResult

__all__ = ["LimitsBackend"]


class LimitsBackend:
    """Decide with a ``limits.aio`` strategy over a ``limits.aio.storage.Storage``.

    Args:
        storage: the ``limits`` async storage.
        strategy: the strategy code.
        owned: close the storage's client in :meth:`aclose` (we created it from a URL).
    """

    def __init__(self, storage: Any, strategy: int, *, owned: bool = False) -> None:
        self.storage = storage
        self.strategy = strategy
        self.owned = owned
        limiter_cls: Any
        if strategy == FIXED:
            limiter_cls = FixedWindowRateLimiter
        elif strategy == MOVING:
            limiter_cls = MovingWindowRateLimiter
        else:
            limiter_cls = SlidingWindowCounterRateLimiter
        self.limiter = limiter_cls(storage)
        self._items: dict[tuple[int, int], RateLimitItem] = {}

    def __repr__(self) -> str:
        return f"LimitsBackend({type(self.storage).__name__}, strategy={self.strategy})"

    def _item(self, limit: int, seconds: int) -> RateLimitItem:
        item = self._items.get((limit, seconds))
        if item is None:
            item = parse(f"{limit}/{seconds} second")
            self._items[(limit, seconds)] = item
        return item

    async def hit(
        self, keys: Sequence[str], windows: Sequence[tuple[int, int]], cost: int
    ) -> HitResult:
        """Hit each window in order; stop at the first rejection.

        Args:
            keys: one key per window.
            windows: ``(limit, seconds)`` per window.
            cost: units to charge.
        """
        ok = True
        rejected: set[int] = set()
        for i, (key, (limit, seconds)) in enumerate(zip(keys, windows, strict=True)):
            if not await self.limiter.hit(self._item(limit, seconds), key, cost=cost):
                ok = False
                rejected.add(i)
                break
        states: list[list[float]] = []
        for i, (key, (limit, seconds)) in enumerate(zip(keys, windows, strict=True)):
            stats = await self.limiter.get_window_stats(self._item(limit, seconds), key)
            reset = max(0.0, float(stats.reset_time) - time.time())
            if reset == 0.0:
                reset = float(seconds)
            states.append([limit - int(stats.remaining), reset, reset if i in rejected else 0.0])
        return HitResult(ok, states)

    async def aclose(self) -> None:
        """Close the client of a storage we created from a URL (a passed-in one is yours)."""
        if not self.owned:
            return
        client = getattr(getattr(self.storage, "bridge", None), "storage", None)
        close = getattr(client, "aclose", None)
        if close is not None:
            await close()
