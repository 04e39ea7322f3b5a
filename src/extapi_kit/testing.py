"""Helpers for users' tests (and ours): a controllable clock."""

from __future__ import annotations

import time

__all__ = ["FakeClock"]


class FakeClock:
    """A clock that moves only when told to; pass ``clock=fake`` wherever a clock is accepted.

    Args:
        start: the initial time in epoch seconds (default: now).
    """

    def __init__(self, start: float | None = None) -> None:
        self.now = time.time() if start is None else float(start)

    def __call__(self) -> float:
        return self.now

    def __repr__(self) -> str:
        return f"FakeClock({self.now!r})"

    def advance(self, seconds: float) -> None:
        """Move the clock forward.

        Args:
            seconds: how far.
        """
        self.now += seconds

    def set(self, when: float) -> None:
        """Set the clock.

        Args:
            when: the new epoch time.
        """
        self.now = float(when)
