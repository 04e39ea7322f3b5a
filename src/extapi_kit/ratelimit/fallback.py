"""Failure policy for shared storages (DESIGN §6): a deadline on every call, then fail open to an
in-process limiter at a reduced budget, or fail closed.

While the storage is failing, requests do not wait for it: the breaker sends them straight to the
fallback (or to a 503) and lets one request probe the storage at most every ``probe_interval``
seconds; the first successful probe switches back. Each switch is logged once; failures while
degraded produce at most one warning per ``warn_interval`` and a telemetry counter
(``extapi.ratelimit.storage_failures``), never a 500.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

from extapi_kit import telemetry
from extapi_kit._types import Clock
from extapi_kit.exceptions import StoreUnavailableError
from extapi_kit.ratelimit._result import Backend, HitResult
from extapi_kit.ratelimit.memory import FlatMemoryStorage

__all__ = ["FailoverBackend"]

logger = logging.getLogger("extapi_kit.ratelimit")

DEFAULT_PROBE_INTERVAL = 2.0
DEFAULT_WARN_INTERVAL = 30.0
DEFAULT_MAX_CONCURRENCY = 32
# A request may wait this many deadlines for a free slot before it is decided in process.
QUEUE_FACTOR = 10


class FailoverBackend:
    """Wrap a shared backend with a deadline, a breaker and the configured failure mode.

    Args:
        primary: the shared backend (Redis, or a ``limits`` storage).
        strategy: the strategy code (for the in-process fallback).
        clock: epoch-seconds callable (drives the breaker and the fallback windows).
        deadline: seconds a decision may take before the failure policy applies.
        failure_mode: ``"open"`` (fallback limiter) or ``"closed"`` (raise, the middleware
            answers 503).
        fallback_divisor: the fallback admits ``limit // fallback_divisor`` (at least 1).
        probe_interval: seconds between attempts to reach a failing storage.
        warn_interval: seconds between two warnings while degraded.
        max_concurrency: storage calls in flight at once; later ones wait for a slot (up to
            ``QUEUE_FACTOR`` deadlines) instead of exhausting the connection pool.
    """

    def __init__(
        self,
        primary: Backend,
        strategy: int,
        *,
        clock: Clock,
        deadline: float,
        failure_mode: str = "open",
        fallback_divisor: int = 1,
        probe_interval: float = DEFAULT_PROBE_INTERVAL,
        warn_interval: float = DEFAULT_WARN_INTERVAL,
        max_concurrency: int = DEFAULT_MAX_CONCURRENCY,
    ) -> None:
        self.primary = primary
        self.fallback = FlatMemoryStorage(clock=clock)
        self.strategy = strategy
        self.clock = clock
        self.deadline = deadline
        self.fail_open = failure_mode == "open"
        self.divisor = max(1, int(fallback_divisor))
        self.probe_interval = probe_interval
        self.warn_interval = warn_interval
        self._slots = asyncio.Semaphore(max_concurrency)
        # A multiplexed primary (one auto-pipelined connection that keeps the deadline itself)
        # has no pool to exhaust: its callers skip the slots and share round trips instead.
        self._multiplexed = bool(getattr(primary, "multiplexed", False))
        self._down_until = 0.0
        self._degraded = False
        self._last_warning = float("-inf")
        self._failures = telemetry.counter(
            "extapi.ratelimit.storage_failures", "rate-limit storage calls that failed or timed out"
        )

    def __repr__(self) -> str:
        return f"FailoverBackend({self.primary!r}, degraded={self._degraded})"

    @property
    def degraded(self) -> bool:
        """Whether the storage is currently considered down."""
        return self._degraded

    async def hit(
        self,
        keys: Sequence[str],
        windows: Sequence[tuple[int, int]],
        cost: int,
        quota: Any = None,
    ) -> HitResult:
        """Decide on the primary within the deadline, else apply the failure policy.

        Args:
            keys: one key per window.
            windows: ``(limit, seconds)`` per window.
            cost: units to charge.
            quota: quota counters the primary charges in the same call (only for a primary
                that takes them); a degraded decision leaves them uncharged (``quota`` None).

        Raises:
            StoreUnavailableError: in ``failure_mode="closed"`` when the storage failed.
        """
        now = self.clock()
        if now < self._down_until:
            return self._degrade(keys, windows, cost, None)
        probe = self._degraded
        if probe:
            # One probe per interval: later requests keep using the fallback meanwhile.
            self._down_until = now + self.probe_interval
        if self._multiplexed:
            # The primary keeps the deadline itself (one watchdog per batch, not a timer per
            # call) and fails every waiter of a late batch with a TimeoutError.
            primary: Any = self.primary
            try:
                if quota is None:
                    result: HitResult = await primary.hit(keys, windows, cost)
                else:
                    result = await primary.hit(keys, windows, cost, quota)
            except Exception as exc:  # any storage failure -> policy, never a 500
                self._down_until = self.clock() + self.probe_interval
                return self._degrade(keys, windows, cost, exc)
            if self._degraded:
                self._recovered()
            return result
        try:
            # Waiting for a slot is our own queueing, not storage slowness: bounded separately,
            # and a request that cannot get one is decided locally without tripping the breaker.
            async with asyncio.timeout(self.deadline * QUEUE_FACTOR):
                await self._slots.acquire()
        except TimeoutError:
            return self._degrade(keys, windows, cost, None)
        try:
            if not probe and self.clock() < self._down_until:
                # The storage failed while this request queued: do not wait for it again.
                return self._degrade(keys, windows, cost, None)
            try:
                async with asyncio.timeout(self.deadline):
                    result = await self.primary.hit(keys, windows, cost)
            except Exception as exc:  # any storage failure -> policy, never a 500
                self._down_until = self.clock() + self.probe_interval
                return self._degrade(keys, windows, cost, exc)
        finally:
            self._slots.release()
        if self._degraded:
            self._recovered()
        return result

    def _recovered(self) -> None:
        self._degraded = False
        self._down_until = 0.0
        logger.warning("rate-limit storage is answering again; leaving degraded mode")

    def _degrade(
        self,
        keys: Sequence[str],
        windows: Sequence[tuple[int, int]],
        cost: int,
        exc: BaseException | None,
    ) -> HitResult:
        if exc is not None:
            reason = type(exc).__name__ if not isinstance(exc, TimeoutError) else "deadline"
            self._failures.add(
                1, {"reason": reason, "mode": "open" if self.fail_open else "closed"}
            )
            now = self.clock()
            if not self._degraded or now - self._last_warning >= self.warn_interval:
                self._last_warning = now
                logger.warning(
                    "rate-limit storage failed (%s); %s until it answers (probe every %.1fs)",
                    reason,
                    f"falling back to in-process limits / {self.divisor}"
                    if self.fail_open
                    else "refusing requests with 503",
                    self.probe_interval,
                )
            self._degraded = True
        if not self.fail_open:
            raise StoreUnavailableError("rate-limit storage unavailable") from exc
        reduced = [(max(1, limit // self.divisor) if limit else 0, s) for limit, s in windows]
        result = self.fallback.decide(self.strategy, keys, reduced, cost)
        result.degraded = True
        return result

    async def aclose(self) -> None:
        """Close the primary backend."""
        await self.primary.aclose()
