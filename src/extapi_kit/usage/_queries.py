"""Usage queries: daily series, month totals and quota use, for keys and owners."""

from __future__ import annotations

import contextlib
import datetime as _dt
from collections.abc import Mapping, Sequence
from typing import Any

from extapi_kit._types import Clock
from extapi_kit.exceptions import ConfigurationError
from extapi_kit.usage._periods import Calendar, QuotaRule, day_range, month_days, parse_quota
from extapi_kit.usage.quota import plan_checks
from extapi_kit.usage.store import UsageStore, shape_day, shape_total

__all__ = ["UsageQueries"]


class UsageQueries:
    """The read side of :class:`~extapi_kit.usage.tracker.UsageTracker`."""

    store: UsageStore
    clock: Clock
    calendar: Calendar

    def owner_rules(self, owner: str | None) -> tuple[QuotaRule, ...]:
        """Return the parsed quota rules of an owner (the tracker knows them; none here).

        Args:
            owner: the owner id.
        """
        return ()

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

    async def quota_status(
        self, key_id: str | None, quota: Mapping[str, Any] | None, owner: str | None = None
    ) -> list[dict[str, Any]]:
        """Return every quota that applies, with its use in the current period.

        Each item: ``{scope: "key"|"owner", period, period_id, limit, used, remaining,
        resets_at}`` (key quotas first). Reads only; an invalid quota mapping is left out.

        Args:
            key_id: the key id, or None to report the owner's quotas only.
            quota: the key's quota mapping (``KeyRecord.quota``).
            owner: the owner id, whose quotas (``owner_quotas=``) are included.
        """
        key_rules: tuple[QuotaRule, ...] = ()
        owner_rules: tuple[QuotaRule, ...] = ()
        with contextlib.suppress(ConfigurationError):
            key_rules = parse_quota(quota) if key_id is not None else ()
        with contextlib.suppress(ConfigurationError):
            owner_rules = self.owner_rules(owner)
        if not key_rules and not owner_rules:
            return []
        info = self.calendar.at(self.clock())
        out = []
        for line in plan_checks(info, key_id or "", key_rules, owner, owner_rules):
            used = await self.store.quota_used(line.counter)
            resets = _dt.datetime.fromtimestamp(line.reset, tz=_dt.UTC)
            out.append(
                {
                    "scope": line.scope,
                    "period": line.rule.period,
                    "period_id": line.period_id,
                    "limit": line.rule.limit,
                    "used": used,
                    "remaining": max(0, line.rule.limit - used),
                    "resets_at": resets.isoformat().replace("+00:00", "Z"),
                }
            )
        return out
