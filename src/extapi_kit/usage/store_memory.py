"""In-process usage store: plain dicts, for tests and single-process deployments.

Every method runs without awaiting in between its read and its write, so on one event loop the
quota check-and-charge is atomic. Counters live as long as the process: with several worker
processes each keeps its own copy (use SQLite or Redis there).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from extapi_kit.usage.store import Counts, QuotaCheck

__all__ = ["MemoryUsageStore"]


class MemoryUsageStore:
    """A :class:`~extapi_kit.usage.store.UsageStore` in process memory."""

    def __init__(self) -> None:
        self._days: dict[tuple[str, str], dict[str, int]] = {}
        self._quota: dict[str, int] = {}
        self._marks: set[str] = set()

    @classmethod
    def from_url(cls, url: str, **options: Any) -> MemoryUsageStore:
        """Create the store from ``memory://``.

        Args:
            url: the URL (ignored beyond its scheme).
            **options: none are accepted.
        """
        return cls(**options)

    def __repr__(self) -> str:
        return f"MemoryUsageStore(days={len(self._days)})"

    async def add(self, counts: Counts, *, ttl: int, batch: str | None = None) -> None:
        """Add a batch of increments (a memory write cannot fail halfway).

        Args:
            counts: ``(subject, day, field) -> n``.
            ttl: retention (pruning is done by :meth:`prune`).
            batch: the batch id (a dict update is never ambiguous, so it is not recorded).
        """
        for (subject, day, name), n in counts.items():
            fields = self._days.setdefault((subject, day), {})
            fields[name] = fields.get(name, 0) + n

    async def days(self, subject: str, days: Sequence[str]) -> dict[str, dict[str, int]]:
        """Return the counters of ``subject`` for each of ``days``.

        Args:
            subject: the subject.
            days: UTC dates.
        """
        return {d: dict(self._days.get((subject, d), {})) for d in days}

    async def consume(self, checks: Sequence[QuotaCheck], cost: int) -> tuple[bool, list[int]]:
        """Charge ``cost`` to every counter if all stay within their limits.

        Args:
            checks: counters and limits.
            cost: units to charge.
        """
        quota = self._quota
        if len(checks) == 1:  # the common case: one quota, no lists to build twice
            check = checks[0]
            u = quota.get(check.counter, 0)
            if u + cost > check.limit:
                return False, [u]
            quota[check.counter] = u + cost
            return True, [u + cost]
        used = [quota.get(c.counter, 0) for c in checks]
        if any(u + cost > c.limit for u, c in zip(used, checks, strict=True)):
            return False, used
        for c in checks:
            quota[c.counter] = quota.get(c.counter, 0) + cost
        return True, [u + cost for u in used]

    async def quota_used(self, counter: str) -> int:
        """Return a quota counter's value.

        Args:
            counter: the counter name.
        """
        return self._quota.get(counter, 0)

    async def mark_once(self, mark: str, *, ttl: int) -> bool:
        """Set a mark unless it exists.

        Args:
            mark: the mark name.
            ttl: ignored in memory.
        """
        if mark in self._marks:
            return False
        self._marks.add(mark)
        return True

    async def prune(self, before_day: str) -> int:
        """Delete day counters older than ``before_day``.

        Args:
            before_day: the first date kept.
        """
        old = [k for k in self._days if k[1] < before_day]
        for k in old:
            del self._days[k]
        return len(old)

    async def ping(self) -> bool:
        """Return True."""
        return True

    async def aclose(self) -> None:
        """Nothing to release."""
