"""UTC calendar arithmetic for usage counters and quota periods, cached per day.

Every request needs its UTC day (for the counters) and, for quota'd keys, its month and the next
reset; computing them with :mod:`datetime` per request would cost more than the whole accounting
budget, so :class:`Calendar` keeps the answer for the current day index (``int(now // 86400)``).
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from extapi_kit.exceptions import ConfigurationError

__all__ = [
    "DAILY",
    "MONTHLY",
    "Calendar",
    "DayInfo",
    "QuotaRule",
    "day_range",
    "month_days",
    "parse_quota",
]

DAY = 86400
MONTHLY = "monthly"
DAILY = "daily"
# The RateLimit-Policy ``w`` of each period: a nominal 30-day month, as the brief's example
# ``"quota";q=10000;w=2592000``; the exact reset is in ``RateLimit``'s ``t`` and Retry-After.
PERIOD_WINDOW = {MONTHLY: 30 * DAY, DAILY: DAY}


@dataclass(frozen=True, slots=True)
class DayInfo:
    """The calendar facts of one UTC day.

    Args:
        index: days since the epoch.
        day: ``"YYYY-MM-DD"``.
        month: ``"YYYY-MM"``.
        day_reset: epoch seconds of the next UTC midnight.
        month_reset: epoch seconds of the first instant of the next UTC month.
    """

    index: int
    day: str
    month: str
    day_reset: float
    month_reset: float

    def period(self, kind: str) -> tuple[str, float]:
        """Return ``(period id, reset time)`` for ``"monthly"`` or ``"daily"``.

        Args:
            kind: the period kind.
        """
        if kind == MONTHLY:
            return self.month, self.month_reset
        return self.day, self.day_reset


def _info(index: int) -> DayInfo:
    date = _dt.date(1970, 1, 1) + _dt.timedelta(days=index)
    nxt = _dt.date(date.year + date.month // 12, date.month % 12 + 1, 1)
    month_reset = float((nxt - _dt.date(1970, 1, 1)).days * DAY)
    return DayInfo(
        index, date.isoformat(), date.isoformat()[:7], float((index + 1) * DAY), month_reset
    )


class Calendar:
    """Returns the :class:`DayInfo` of an epoch time, recomputed only when the day changes."""

    __slots__ = ("_last",)

    def __init__(self) -> None:
        self._last = _info(0)

    def at(self, now: float) -> DayInfo:
        """Return the facts of the UTC day containing ``now``.

        Args:
            now: epoch seconds.
        """
        index = int(now // DAY)
        last = self._last
        if last.index != index:
            last = self._last = _info(index)
        return last


def day_range(now: float, days: int) -> list[str]:
    """Return the ``days`` UTC dates ending with today's, oldest first.

    Args:
        now: epoch seconds.
        days: how many days.
    """
    today = int(now // DAY)
    return [_info(i).day for i in range(today - days + 1, today + 1)]


def month_days(month: str) -> list[str]:
    """Return every date of a ``"YYYY-MM"`` month.

    Args:
        month: the month.
    """
    try:
        year, mon = (int(p) for p in month.split("-"))
        first = _dt.date(year, mon, 1)
    except ValueError:
        raise ConfigurationError(f"invalid month {month!r}: use YYYY-MM") from None
    out = []
    d = first
    while d.month == mon:
        out.append(d.isoformat())
        d += _dt.timedelta(days=1)
    return out


@dataclass(frozen=True, slots=True)
class QuotaRule:
    """One quota: at most ``limit`` units per ``period``.

    Args:
        period: ``"monthly"`` or ``"daily"``.
        limit: units allowed per period.
    """

    period: str
    limit: int


def parse_quota(spec: Mapping[str, Any] | None) -> tuple[QuotaRule, ...]:
    """Parse quota settings such as ``{"monthly": 10000}`` or ``{"daily": 500}``.

    Unknown members are ignored (the dict may carry other settings).

    Args:
        spec: the quota mapping (``Principal.quota`` or an owner's entry).

    Raises:
        ConfigurationError: a period's limit is not a non-negative integer.
    """
    if not spec:
        return ()
    rules = []
    for period in (MONTHLY, DAILY):
        value = spec.get(period)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ConfigurationError(f"quota {period!r} must be a non-negative integer: {value!r}")
        rules.append(QuotaRule(period, value))
    return tuple(rules)
