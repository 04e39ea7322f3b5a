"""The credit stores' SQL, written once for SQLite and PostgreSQL (``?`` placeholders).

Two tables under one prefix: ``<prefix>_balances`` (one row per metered subject: its balance and
its exhausted mark) and ``<prefix>_log`` (every operator change, the credits audit trail). The
spend differs in one clause: PostgreSQL reads the balances ``FOR UPDATE`` (row locks, taken in
subject order so two processes never deadlock) where SQLite's ``BEGIN IMMEDIATE`` already holds
the database write lock.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from extapi_kit.credits.models import CreditEntry

__all__ = ["CreditSQL", "entry_from_row"]


class CreditSQL:
    """The statements over one set of credit tables.

    Args:
        prefix: the (qualified) table prefix, e.g. ``extapi_credits`` or
            ``extapi.extapi_credits``.
    """

    def __init__(self, prefix: str) -> None:
        p = prefix
        self.get = f"SELECT remaining, exhausted FROM {p}_balances WHERE subject = ?"
        self.charge = f"UPDATE {p}_balances SET remaining = remaining - ? WHERE subject = ?"
        self.mark = f"UPDATE {p}_balances SET exhausted = 1 WHERE subject = ?"
        self.put = (
            f"INSERT INTO {p}_balances (subject, remaining, exhausted) VALUES (?, ?, 0) "
            "ON CONFLICT (subject) DO UPDATE SET remaining = excluded.remaining, exhausted = 0"
        )
        self.delete = f"DELETE FROM {p}_balances WHERE subject = ?"
        self.log = (
            f"INSERT INTO {p}_log (at, subject, action, amount, before, after, actor, reason) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
        )
        self.history = (
            f"SELECT at, subject, action, amount, before, after, actor, reason FROM {p}_log "
            "WHERE subject = ? ORDER BY at DESC, id DESC LIMIT ?"
        )


def entry_from_row(row: Sequence[Any]) -> CreditEntry:
    """Return a log row as a :class:`CreditEntry`.

    Args:
        row: ``(at, subject, action, amount, before, after, actor, reason)``.
    """
    at, subject, action, amount, before, after, actor, reason = row
    return CreditEntry(
        float(at),
        str(subject),
        str(action),
        int(amount),
        None if before is None else int(before),
        None if after is None else int(after),
        str(actor),
        reason,
    )
