"""The :class:`CreditStore` protocol: balances, the atomic spend, and the change log.

Every backend spends all-or-nothing over the subjects of one request (the key's balance and its
owner's), exactly across processes sharing the store: SQLite serialises the check-and-charge in
``BEGIN IMMEDIATE``, PostgreSQL locks the balance rows ``FOR UPDATE``, Redis runs one Lua script.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from extapi_kit.credits.models import CreditEntry, Spend

__all__ = ["CreditStore"]


@runtime_checkable
class CreditStore(Protocol):
    """Where credit balances and their change log live."""

    async def spend(self, subjects: Sequence[str], cost: int) -> Spend:
        """Charge ``cost`` to every metered subject if each has at least ``cost`` left.

        Subjects without a balance are not metered and never refuse. A refusal charges nothing.

        Args:
            subjects: the request's subjects (``"k:<id>"``, then ``"o:<owner>"``).
            cost: credits to charge (0 checks without charging).
        """
        ...

    async def get(self, subject: str) -> int | None:
        """Return a subject's balance, None when it is not metered.

        Args:
            subject: the subject.
        """
        ...

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
        """Set, add to, or clear a balance atomically, and log the change in the same step.

        ``set`` and ``add`` re-arm the exhausted mark; ``clear`` removes the balance (the
        subject is no longer metered). An ``add`` on an unmetered subject starts from 0.

        Args:
            subject: the subject.
            action: ``"set"``, ``"add"`` or ``"clear"``.
            amount: the new balance (set) or the amount to add (add, may be negative; the
                balance never goes below 0).
            actor: who makes the change.
            reason: free text recorded with it.
            at: epoch seconds.
        """
        ...

    async def history(self, subject: str, limit: int = 20) -> list[CreditEntry]:
        """Return a subject's latest changes, newest first.

        Args:
            subject: the subject.
            limit: how many.
        """
        ...

    async def ping(self) -> bool:
        """Return True when the backend answers."""
        ...

    async def aclose(self) -> None:
        """Release connections and threads."""
        ...
