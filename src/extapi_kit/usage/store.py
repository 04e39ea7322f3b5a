"""The :class:`UsageStore` protocol and the shape of the counters it keeps.

Counters are integers addressed by ``(subject, day, field)``: the subject is ``"k:<key id>"`` or
``"o:<owner>"``, the day a UTC ``"YYYY-MM-DD"``, and the field one of ``"c:<rate class>"``
(``c:read``, ``c:write``, ...), ``"served"``, ``"errors"`` (the app answered >= 400 without a
recorded rejection) or ``"r:<problem slug>"`` (rejected). Month totals are sums of days.

Quota counters are separate: one exact counter per subject and period (``"k:abc:monthly:2026-11"``),
charged atomically at decision time by :meth:`UsageStore.consume`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

__all__ = ["Counts", "QuotaCheck", "UsageStore", "shape_day", "shape_total"]

Counts = Mapping[tuple[str, str, str], int]


@dataclass(frozen=True, slots=True)
class QuotaCheck:
    """One quota counter to charge, and its limit.

    Args:
        counter: the counter name (subject, period kind and period id).
        limit: the most units the counter may reach.
        ttl: seconds the counter must outlive its period by (Redis expiry).
    """

    counter: str
    limit: int
    ttl: int


@runtime_checkable
class UsageStore(Protocol):
    """Where usage counters, quota counters and notification marks live."""

    async def add(self, counts: Counts, *, ttl: int, batch: str | None = None) -> None:
        """Add a batch of increments, at most once per ``batch`` id.

        Args:
            counts: ``(subject, day, field) -> n``.
            ttl: seconds each day's counters are kept (retention).
            batch: a unique id; a batch already applied is skipped, so re-sending one whose
                first write failed ambiguously never counts twice.
        """

    async def days(self, subject: str, days: Sequence[str]) -> dict[str, dict[str, int]]:
        """Return the counters of ``subject`` for each of ``days`` (missing days: empty).

        Args:
            subject: ``"k:<key id>"`` or ``"o:<owner>"``.
            days: UTC dates ``"YYYY-MM-DD"``.
        """

    async def consume(self, checks: Sequence[QuotaCheck], cost: int) -> tuple[bool, list[int]]:
        """Atomically charge ``cost`` to every counter if all stay within their limits.

        Returns ``(allowed, used)``: ``used`` holds each counter after the charge when allowed,
        and its unchanged value when refused. Exact across processes sharing the store.

        Args:
            checks: the counters and limits.
            cost: units to charge (0 checks without charging).
        """

    async def quota_used(self, counter: str) -> int:
        """Return a quota counter's value (0 if it does not exist).

        Args:
            counter: the counter name.
        """

    async def mark_once(self, mark: str, *, ttl: int) -> bool:
        """Set a mark unless it exists; True for the one caller that set it.

        Args:
            mark: the mark name (subject, period and threshold).
            ttl: seconds it must live.
        """

    async def prune(self, before_day: str) -> int:
        """Delete day counters older than ``before_day``; return how many rows went.

        Args:
            before_day: the first UTC date to keep.
        """

    async def ping(self) -> bool:
        """Return True when the backend answers."""

    async def aclose(self) -> None:
        """Release connections and threads."""


def _merge(fields: Mapping[str, int], into: dict[str, Any]) -> None:
    classes: dict[str, int] = into["classes"]
    rejected: dict[str, int] = into["rejected"]
    for name, n in fields.items():
        if name.startswith("c:"):
            cls = name[2:]
            classes[cls] = classes.get(cls, 0) + n
            into["total"] += n
            if cls in ("read", "write"):
                into[cls] += n
        elif name.startswith("r:"):
            slug = name[2:]
            rejected[slug] = rejected.get(slug, 0) + n
        elif name in ("served", "errors"):
            into[name] += n


def _empty() -> dict[str, Any]:
    return {
        "read": 0,
        "write": 0,
        "total": 0,
        "served": 0,
        "errors": 0,
        "rejected": {},
        "classes": {},
    }


def shape_day(day: str, fields: Mapping[str, int]) -> dict[str, Any]:
    """Return one day's counters as ``{date, read, write, total, served, errors, rejected, ...}``.

    Args:
        day: the UTC date.
        fields: the raw counters of that day.
    """
    out = {"date": day, **_empty()}
    _merge(fields, out)
    return out


def shape_total(label: str, value: str, days: Iterable[Mapping[str, int]]) -> dict[str, Any]:
    """Return the sum of several days' raw counters, labelled (e.g. ``month="2026-11"``).

    Args:
        label: the label member's name.
        value: its value.
        days: the raw counters of each day.
    """
    out = {label: value, **_empty()}
    for fields in days:
        _merge(fields, out)
    return out
