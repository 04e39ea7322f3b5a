"""The usage stores' SQL, written once for SQLite and PostgreSQL (``?`` placeholders).

Four tables under one prefix: ``<prefix>_days`` (one row per subject, day and field, upserted),
``<prefix>_quota`` (exact quota counters), ``<prefix>_marks`` (notification marks, inserted once)
and ``<prefix>_batches`` (ids of applied batches, so a re-sent batch never counts twice). The
check-and-charge differs in one word: PostgreSQL reads the counters ``FOR UPDATE`` (row locks, taken
in counter order) where SQLite's ``BEGIN IMMEDIATE`` already holds the database write lock.
"""

from __future__ import annotations

__all__ = ["UsageSQL"]


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
