"""The usage tracker: in-process aggregation, a batching flusher, quota charges and queries.

The hot path only adds 1 to an in-process dict entry keyed by ``(key id, owner, day, class,
outcome)``; a background task turns the dict into store increments about once a second (and on
:meth:`UsageTracker.flush`/:meth:`UsageTracker.aclose`), so counting never waits on a store.
Quotas are the exception by design: a quota'd request is charged at decision time with one
atomic store call, so a quota is exact across processes; requests of keys without any quota
never touch the store on the hot path.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from extapi_kit._types import Clock
from extapi_kit.exceptions import ConfigurationError, ExtAPIKitError
from extapi_kit.stores import store_from_url
from extapi_kit.usage._periods import DAY, Calendar
from extapi_kit.usage._queries import UsageQueries
from extapi_kit.usage.quota import (
    EVENT_EXHAUSTED,
    EVENT_WARNING,
    WARNING_PERCENT,
    OwnerQuotas,
    QuotaDecision,
    QuotaLine,
    QuotaPlan,
    RuleCache,
    plan_checks,
)
from extapi_kit.usage.store import UsageStore

__all__ = ["EventCallback", "UsageTracker"]

logger = logging.getLogger("extapi_kit.usage")

EventCallback = Callable[[str, dict[str, Any]], Awaitable[Any] | Any]
Pending = dict[tuple[str, str | None, str, str, str], int]
# Batches kept for re-sending while the store is failing (about 2 minutes at 1 flush/s).
MAX_RETRY_BATCHES = 120


class UsageTracker(UsageQueries):
    """Counts requests per key and owner, enforces quotas, and answers usage queries.

    Args:
        store: a :class:`UsageStore` or a URL (``memory://``, ``sqlite:///usage.db``,
            ``redis://host:6379/0``).
        owner_quotas: owner id -> quota mapping (``{"acme": {"monthly": 100000}}``), or a
            callable ``owner -> mapping or None``.
        on_event: ``(type, data)`` callback, sync or async, called once per period when a quota
            reaches 80% (``api_key.quota_warning``) and 100% (``api_key.quota_exhausted``);
            ``WebhookDispatcher.publish`` fits.
        retention_months: how many calendar months of daily counters to keep (current included).
        clock: returns epoch seconds (tests pass a FakeClock).
        flush_interval: seconds between background flushes.
    """

    def __init__(
        self,
        store: UsageStore | str = "memory://",
        *,
        owner_quotas: OwnerQuotas | None = None,
        on_event: EventCallback | None = None,
        retention_months: int = 13,
        clock: Clock | None = None,
        flush_interval: float = 1.0,
    ) -> None:
        if not isinstance(retention_months, int) or retention_months < 1:
            raise ConfigurationError(f"retention_months must be >= 1: {retention_months!r}")
        if not flush_interval > 0:
            raise ConfigurationError(f"flush_interval must be positive: {flush_interval!r}")
        self._owns_store = isinstance(store, str)
        self.store: UsageStore = store_from_url("usage", store) if isinstance(store, str) else store
        self._on_event = on_event
        self._retention_months = retention_months
        self._ttl = (retention_months * 31 + 1) * DAY
        self.clock: Clock = clock or time.time
        self._interval = flush_interval
        self.calendar = Calendar()
        self._rules = RuleCache()
        self._owner_map: dict[str, Any] | None = None
        self._owner_fn: Callable[[str], Mapping[str, Any] | None] | None = None
        if callable(owner_quotas):
            self._owner_fn = owner_quotas
        elif owner_quotas is not None:
            self._owner_map = {o: self._rules.get(q) for o, q in owner_quotas.items()}
        self._owner_quotas = owner_quotas is not None
        self._plans: dict[tuple[Any, ...], QuotaPlan] = {}
        self.pending: Pending = {}
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._stopping = False
        self._lock = asyncio.Lock()
        self._retry: list[tuple[str, dict[tuple[str, str, str], int]]] = []
        self._jobs: set[asyncio.Task[None]] = set()
        self._fired: set[str] = set()
        self._pruned: str = ""
        self._closed = False

    def __repr__(self) -> str:
        return f"UsageTracker(store={self.store!r})"

    # -- hot path ----------------------------------------------------------------------------

    def record(self, key_id: str, owner: str | None, day: str, cls: str, outcome: str) -> None:
        """Count one request (in process; flushed in the background).

        Args:
            key_id: the key id.
            owner: its owner, if any.
            day: the UTC date.
            cls: the rate class (``read``, ``write``, ...).
            outcome: ``served``, ``errors`` or ``r:<problem slug>``.
        """
        k = (key_id, owner, day, cls, outcome)
        pending = self.pending
        pending[k] = pending.get(k, 0) + 1
        if self._task is None:
            self._start()

    @property
    def idle(self) -> bool:
        """True while no background flusher runs (the next record starts one)."""
        return self._task is None

    def record_started(self) -> None:
        """Start the background flusher if none runs (after adding to :attr:`pending`)."""
        if self._task is None:
            self._start()

    def owner_rules(self, owner: str | None) -> tuple[Any, ...]:
        """Return the parsed quota rules of an owner (empty when none).

        Args:
            owner: the owner id.
        """
        if owner is None:
            return ()
        if self._owner_map is not None:
            return tuple(self._owner_map.get(owner, ()))
        if self._owner_fn is not None:
            spec = self._owner_fn(owner)
            return self._rules.get(spec) if spec else ()
        return ()

    def quota_plan(
        self, now: float, key_id: str, quota: Mapping[str, Any] | None, owner: str | None
    ) -> QuotaPlan | None:
        """Return the quotas a request is subject to (None: no store call needed).

        Args:
            now: epoch seconds.
            key_id: the key id.
            quota: the key's quota mapping (``Principal.quota``).
            owner: the owner id.
        """
        key_rules = self._rules.get(quota) if quota else ()
        owner_rules = self.owner_rules(owner) if self._owner_quotas else ()
        if not key_rules and not owner_rules:
            return None
        info = self.calendar.at(now)
        cache_key = (key_id, key_rules, owner, owner_rules, info.index)
        plan = self._plans.get(cache_key)
        if plan is None:
            if len(self._plans) >= 10_000:
                self._plans.clear()
            lines = plan_checks(info, key_id, key_rules, owner, owner_rules)
            plan = self._plans[cache_key] = QuotaPlan(lines, now)
        return plan

    async def charge(
        self, plan: QuotaPlan, cost: int, now: float, key_id: str, owner: str | None
    ) -> QuotaDecision:
        """Charge a request's quotas atomically (one store call) and queue notifications.

        Args:
            plan: the quotas (from :meth:`quota_plan`).
            cost: units the request costs.
            now: epoch seconds.
            key_id: the key id (for the event payload).
            owner: its owner.
        """
        allowed, used = await self.store.consume(plan.checks, cost)
        return self.settle(plan, allowed, used, cost, now, key_id, owner)

    def settle(
        self,
        plan: QuotaPlan,
        allowed: bool,
        used: list[int],
        cost: int,
        now: float,
        key_id: str,
        owner: str | None,
    ) -> QuotaDecision:
        """Turn a charge's figures into a decision and queue the 80%/100% notifications.

        The rate limiter calls this when it charged the quotas in its own Redis script.

        Args:
            plan: the quotas charged.
            allowed: whether every quota had room (then all were charged).
            used: each counter's units after the charge (unchanged when refused).
            cost: units the request costs.
            now: epoch seconds.
            key_id: the key id (for the event payload).
            owner: its owner.
        """
        decision = QuotaDecision(allowed, plan, used, now)
        if self._on_event is not None:
            for line, u, warn in zip(plan.lines, used, plan.warn_at, strict=True):
                limit = line.rule.limit
                full = u >= limit or (not allowed and u + cost > limit)
                if full:
                    self._maybe_fire(line, 100, key_id, owner, u, now)
                elif limit > 0 and u >= warn:
                    self._maybe_fire(line, WARNING_PERCENT, key_id, owner, u, now)
        return decision

    def _maybe_fire(
        self, line: QuotaLine, pct: int, key_id: str, owner: str | None, used: int, now: float
    ) -> None:
        if pct == 100:  # reaching 100% also crosses 80%, which must not be skipped
            self._maybe_fire(line, WARNING_PERCENT, key_id, owner, used, now)
        mark = f"{line.counter}:{pct}"
        if mark in self._fired:  # this process already settled it: no store call
            return
        if len(self._fired) >= 100_000:
            self._fired.clear()
        self._fired.add(mark)
        data = {**line.event_data(key_id, owner, used), "threshold": pct}
        kind = EVENT_EXHAUSTED if pct == 100 else EVENT_WARNING
        self._spawn(self._notify(mark, int(line.reset - now) + DAY, kind, data))

    async def _notify(self, mark: str, ttl: int, kind: str, data: dict[str, Any]) -> None:
        try:
            if not await self.store.mark_once(mark, ttl=ttl):
                return
            if not (self._on_event is not None):  # an internal invariant, not user input
                raise RuntimeError("internal invariant broken")
            result = self._on_event(kind, data)
            if inspect.isawaitable(result):
                await result
        except Exception:
            self._fired.discard(mark)
            logger.exception("usage notification %s failed", kind)

    # -- background work ---------------------------------------------------------------------

    def _spawn(self, coro: Awaitable[None]) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        self._jobs.add(task)
        task.add_done_callback(self._jobs.discard)

    def _start(self) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no loop (sync caller): flush() will be called explicitly
            return
        self._stopping = False
        self._wake = asyncio.Event()
        self._task = loop.create_task(self._run(self._wake))

    async def _run(self, wake: asyncio.Event) -> None:
        # Never cancelled: a flush cut short after Redis applied it would be retried and count
        # twice, so stopping wakes the loop and lets the last flush finish.
        while not self._stopping:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), self._interval)
            try:
                await self.flush()
            except ExtAPIKitError as exc:
                logger.warning("usage flush failed, will retry: %s", exc)

    def _expand(self, pending: Pending) -> dict[tuple[str, str, str], int]:
        counts: dict[tuple[str, str, str], int] = {}
        for (key_id, owner, day, cls, outcome), n in pending.items():
            subjects = ["k:" + key_id] if owner is None else ["k:" + key_id, "o:" + owner]
            for s in subjects:
                for name in ("c:" + cls, outcome):
                    k = (s, day, name)
                    counts[k] = counts.get(k, 0) + n
        return counts

    async def flush(self) -> None:
        """Write the pending counts to the store and finish queued notifications.

        Each batch carries a random id that the store applies at most once, so a batch whose
        write failed (or timed out after Redis applied it) is re-sent later, unchanged, and never
        counts twice; the error is raised to the caller.
        """
        if self._jobs:
            await asyncio.gather(*list(self._jobs), return_exceptions=True)
        async with self._lock:
            while self._retry:
                batch, counts = self._retry[0]
                await self.store.add(counts, ttl=self._ttl, batch=batch)
                self._retry.pop(0)
            pending = self.pending
            if pending:
                self.pending = {}
                counts = self._expand(pending)
                batch = secrets.token_hex(12)
                try:
                    await self.store.add(counts, ttl=self._ttl, batch=batch)
                except BaseException:
                    if len(self._retry) >= MAX_RETRY_BATCHES:
                        dropped = self._retry.pop(0)[1]
                        logger.error("usage: dropped %d unsent counters", len(dropped))
                    self._retry.append((batch, counts))
                    raise
            await self._maybe_prune()

    async def _maybe_prune(self) -> None:
        info = self.calendar.at(self.clock())
        if info.day == self._pruned:
            return
        self._pruned = info.day
        year, month = int(info.month[:4]), int(info.month[5:])
        first = year * 12 + month - 1 - (self._retention_months - 1)
        await self.store.prune(f"{first // 12:04d}-{first % 12 + 1:02d}-01")

    async def stop(self) -> None:
        """Stop the flusher after a last flush (the next request starts it again)."""
        task, self._task = self._task, None
        if task is not None:
            self._stopping = True
            self._wake.set()
            await asyncio.gather(task, return_exceptions=True)
        await self.flush()

    async def aclose(self) -> None:
        """Stop the flusher, flush what is pending, and close a store this tracker opened."""
        if self._closed:
            return
        self._closed = True
        try:
            await self.stop()
        finally:
            if self._owns_store:
                await self.store.aclose()
