"""The usage stores' SQL, written once for SQLite and PostgreSQL (``?`` placeholders).

Four tables under one prefix: ``<prefix>_days`` (one row per subject, day and field, upserted),
``<prefix>_quota`` (exact quota counters), ``<prefix>_marks`` (notification marks, inserted once)
and ``<prefix>_batches`` (ids of applied batches, so a re-sent batch never counts twice). The
check-and-charge differs in one word: PostgreSQL reads the counters ``FOR UPDATE`` (row locks, taken
in counter order) where SQLite's ``BEGIN IMMEDIATE`` already holds the database write lock.
:class:`SQLUsageStoreBase` holds the store methods both run alike; each backend adds the two
transactions (``add`` and ``consume``) and ``aclose``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from extapi_kit.stores._sql import SQLStatements

__all__ = ["BATCH_MEMORY", "SQLUsageStoreBase", "UsageSQL"]

# Batch ids only guard re-sends, which happen within minutes.
BATCH_MEMORY = 2 * 86400


class UsageSQL:
    """The statements over one set of usage tables.

    Args:
        prefix: the (qualified) table prefix, e.g. ``extapi_usage`` or ``extapi.extapi_usage``.
    """

    def __init__(self, prefix: str) -> None:
        p = prefix
        self.add_day = (
            f"INSERT INTO {p}_days AS d (subject, day, field, n) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (subject, day, field) DO UPDATE SET n = d.n + excluded.n"
        )
        self.mark_batch = f"INSERT INTO {p}_batches (id, at) VALUES (?, ?) ON CONFLICT DO NOTHING"
        self.days = (
            f"SELECT day, field, n FROM {p}_days WHERE subject = ? AND day >= ? AND day <= ?"
        )
        self.quota_used = f"SELECT used FROM {p}_quota WHERE counter = ?"
        self.quota_seed = (
            f"INSERT INTO {p}_quota (counter, used) VALUES (?, 0) ON CONFLICT DO NOTHING"
        )
        self.quota_charge = (
            f"INSERT INTO {p}_quota AS q (counter, used) VALUES (?, ?) "
            "ON CONFLICT (counter) DO UPDATE SET used = q.used + excluded.used"
        )
        self.mark = f"INSERT INTO {p}_marks (mark) VALUES (?) ON CONFLICT DO NOTHING"
        self.prune_days = f"DELETE FROM {p}_days WHERE day < ?"
        self.prune_batches = f"DELETE FROM {p}_batches WHERE at < ?"


class SQLUsageStoreBase:
    """The usage store methods SQLite and PostgreSQL run alike, over :class:`UsageSQL`."""

    _q: SQLStatements
    _sql: UsageSQL

    async def days(self, subject: str, days: Sequence[str]) -> dict[str, dict[str, int]]:
        """Return the counters of ``subject`` for each of ``days``.

        Args:
            subject: the subject.
            days: UTC dates.
        """
        out: dict[str, dict[str, int]] = {d: {} for d in days}
        if not days:
            return out
        for day, name, n in await self._q.fetch(self._sql.days, subject, min(days), max(days)):
            if day in out:
                out[day][name] = int(n)
        return out

    async def quota_used(self, counter: str) -> int:
        """Return a quota counter's value.

        Args:
            counter: the counter name.
        """
        row = await self._q.fetchrow(self._sql.quota_used, counter)
        return int(row[0]) if row else 0

    async def mark_once(self, mark: str, *, ttl: int) -> bool:
        """Insert a mark unless it exists (``ON CONFLICT DO NOTHING``).

        Args:
            mark: the mark name.
            ttl: unused (marks name their period, so stale ones never match again).
        """
        return await self._q.execute(self._sql.mark, mark) == 1

    async def prune(self, before_day: str) -> int:
        """Delete day counters older than ``before_day``.

        Args:
            before_day: the first date kept.
        """
        await self._q.execute(self._sql.prune_batches, time.time() - BATCH_MEMORY)
        return await self._q.execute(self._sql.prune_days, before_day)

    async def ping(self) -> bool:
        """Return True when the database answers."""
        return await self._q.ping()
