"""Usage queries: daily series, month totals and quota use, for keys and owners."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from extapi_kit._types import Clock
from extapi_kit.exceptions import ConfigurationError
from extapi_kit.usage._periods import Calendar, day_range, month_days
from extapi_kit.usage.store import UsageStore, shape_day, shape_total

__all__ = ["UsageQueries"]


class UsageQueries:
    """The read side of :class:`~extapi_kit.usage.tracker.UsageTracker`."""

    store: UsageStore
    clock: Clock
    calendar: Calendar

    # -- queries -----------------------------------------------------------------------------

    async def _series(self, subject: str, days: int) -> list[dict[str, Any]]:
        if not isinstance(days, int) or not 1 <= days <= 3660:
            raise ConfigurationError(f"days must be between 1 and 3660: {days!r}")
        dates = day_range(self.clock(), days)
        raw = await self.store.days(subject, dates)
        return [shape_day(d, raw[d]) for d in dates]

    async def _month(self, subject: str, month: str | None) -> dict[str, Any]:
        month = month or self.calendar.at(self.clock()).month
        raw = await self.store.days(subject, month_days(month))
        return shape_total("month", month, raw.values())

    async def get_usage(self, key_id: str, days: int = 30) -> list[dict[str, Any]]:
        """Return a key's daily counters for the last ``days`` UTC days, oldest first.

        Each item: ``{date, read, write, total, served, errors, rejected: {slug: n}, classes}``.

        Args:
            key_id: the key id.
            days: how many days (today included).
        """
        return await self._series("k:" + key_id, days)

    async def get_month(self, key_id: str, month: str | None = None) -> dict[str, Any]:
        """Return a key's totals for a ``"YYYY-MM"`` month (default: the current one).

        Args:
            key_id: the key id.
            month: the month.
        """
        return await self._month("k:" + key_id, month)

    async def get_owner_usage(self, owner: str, days: int = 30) -> list[dict[str, Any]]:
        """Return an owner's daily counters (all its keys) for the last ``days`` days.

        Args:
            owner: the owner id.
            days: how many days.
        """
        return await self._series("o:" + owner, days)

    async def get_owner_month(self, owner: str, month: str | None = None) -> dict[str, Any]:
        """Return an owner's totals for a month (default: the current one).

        Args:
            owner: the owner id.
            month: the month.
        """
        return await self._month("o:" + owner, month)

    async def quota_used(
        self, key_id: str, periods: Sequence[str] = ("monthly", "daily")
    ) -> dict[str, int]:
        """Return the units a key has charged to its quota counters in the current periods.

        Args:
            key_id: the key id.
            periods: which periods.
        """
        info = self.calendar.at(self.clock())
        out = {}
        for period in periods:
            period_id, _ = info.period(period)
            out[period] = await self.store.quota_used(f"k:{key_id}:{period}:{period_id}")
        return out
