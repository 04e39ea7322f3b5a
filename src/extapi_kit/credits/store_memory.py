"""In-process credit store: a dict, for tests and single-process deployments.

No method awaits between its read and its write, so on one event loop the spend is atomic.
Balances live as long as the process: with several worker processes use SQLite, PostgreSQL or
Redis, where the spend is exact across processes.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from typing import Any

from extapi_kit.credits._logic import check_change, next_balance
from extapi_kit.credits.models import CreditEntry, Spend

__all__ = ["MemoryCreditStore"]

_HISTORY = 100


class MemoryCreditStore:
    """A :class:`~extapi_kit.credits.store.CreditStore` in process memory."""

    def __init__(self) -> None:
        # subject -> [balance, exhausted mark]
        self._rows: dict[str, list[Any]] = {}
        self._log: dict[str, deque[CreditEntry]] = {}

    @classmethod
    def from_url(cls, url: str, **options: Any) -> MemoryCreditStore:
        """Create the store from ``memory://``.

        Args:
            url: the URL (ignored beyond its scheme).
            **options: none are accepted.
        """
        return cls(**options)

    def __repr__(self) -> str:
        return f"MemoryCreditStore(balances={len(self._rows)})"

    async def spend(self, subjects: Sequence[str], cost: int) -> Spend:
        """Charge ``cost`` to every metered subject, all or nothing.

        Args:
            subjects: the subjects.
            cost: credits to charge.
        """
        rows = self._rows
        if len(subjects) == 1:  # the common case, without lists of rows
            row = rows.get(subjects[0])
            if row is None:
                return Spend(True, [None], [False])
            balance = row[0]
            if balance >= cost:
                balance = row[0] = balance - cost
                mark = balance <= 0 and not row[1]
                if mark:
                    row[1] = True
                return Spend(True, [balance], [mark])
            mark = not row[1]
            row[1] = True
            return Spend(False, [balance], [mark])
        found = [rows.get(s) for s in subjects]
        allowed = all(r is None or r[0] >= cost for r in found)
        balances: list[int | None] = []
        marks: list[bool] = []
        for row in found:
            if row is None:
                balances.append(None)
                marks.append(False)
                continue
            if allowed:
                row[0] -= cost
                mark = row[0] <= 0 and not row[1]
            else:
                mark = row[0] < cost and not row[1]
            if mark:
                row[1] = True
            balances.append(row[0])
            marks.append(mark)
        return Spend(allowed, balances, marks)

    async def get(self, subject: str) -> int | None:
        """Return a subject's balance (None: not metered).

        Args:
            subject: the subject.
        """
        row = self._rows.get(subject)
        return None if row is None else int(row[0])

    async def change(
        self,
        subject: str,
        *,
        action: str,
        amount: int,
        actor: str,
        reason: str | None,
        at: float,
    ) -> CreditEntry:
        """Set, add to or clear a balance and log it.

        Args:
            subject: the subject.
            action: ``set``, ``add`` or ``clear``.
            amount: the amount.
            actor: who.
            reason: why.
            at: epoch seconds.
        """
        check_change(action, amount)
        row = self._rows.get(subject)
        before = None if row is None else int(row[0])
        after = next_balance(action, amount, before)
        if after is None:
            self._rows.pop(subject, None)
        else:
            self._rows[subject] = [after, False]
        entry = CreditEntry(at, subject, action, amount, before, after, actor, reason)
        self._log.setdefault(subject, deque(maxlen=_HISTORY)).appendleft(entry)
        return entry

    async def history(self, subject: str, limit: int = 20) -> list[CreditEntry]:
        """Return the latest changes, newest first.

        Args:
            subject: the subject.
            limit: how many.
        """
        return list(self._log.get(subject, ()))[: max(0, limit)]

    async def ping(self) -> bool:
        """Always True."""
        return True

    async def aclose(self) -> None:
        """Nothing to release."""
