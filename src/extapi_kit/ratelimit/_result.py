"""The shape every rate-limit backend answers with, and strategy names."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from extapi_kit.exceptions import ConfigurationError

__all__ = ["FIXED", "MOVING", "SLIDING", "Backend", "HitResult", "strategy_code"]

FIXED = 1
SLIDING = 2
MOVING = 3

_STRATEGIES = {
    "fixed-window": FIXED,
    "sliding-window": SLIDING,
    "sliding-window-counter": SLIDING,
    "moving-window": MOVING,
}
# Wait a millisecond past the computed instant so the retry lands after the boundary.
RETRY_EPSILON = 0.001


def strategy_code(name: str) -> int:
    """Return the internal code of a strategy name.

    Args:
        name: ``"sliding-window"`` (alias ``"sliding-window-counter"``), ``"fixed-window"`` or
            ``"moving-window"``.
    """
    try:
        return _STRATEGIES[name]
    except (KeyError, TypeError):
        raise ConfigurationError(
            f"unknown rate-limit strategy {name!r}; use one of: " + ", ".join(sorted(_STRATEGIES))
        ) from None


class HitResult:
    """The outcome of one atomic hit over several windows.

    Args:
        allowed: whether every window admitted the hit (then all were charged).
        windows: per window ``[used, reset_after, retry_after]``: units used after this hit,
            seconds until the window resets, seconds until ``cost`` units fit (0 when they do).
        degraded: True when the in-process fallback decided because the storage failed.

    Attributes:
        quota: when quota counters were charged in the same call (the Redis script), each
            counter's units after the charge (unchanged when refused); else None.
        quota_allowed: False when the windows admitted the hit but a quota refused it (then
            nothing was charged, and ``allowed`` stays True for the windows' sake).
        credits: when credit balances were spent in the same call, per balance its figure
            after the spend (unchanged when refused; -1: not metered) and 1 when this call set
            its exhausted mark: ``[balance_1, mark_1, ...]``; else None.
        credits_allowed: False when windows and quotas admitted the hit but a credit balance
            could not pay (then nothing was charged).
    """

    __slots__ = (
        "allowed",
        "credits",
        "credits_allowed",
        "degraded",
        "quota",
        "quota_allowed",
        "windows",
    )

    def __init__(self, allowed: bool, windows: list[list[float]], degraded: bool = False) -> None:
        self.allowed = allowed
        self.windows = windows
        self.degraded = degraded
        self.quota: list[int] | None = None
        self.quota_allowed = True
        self.credits: list[int] | None = None
        self.credits_allowed = True

    def __repr__(self) -> str:
        return (
            f"HitResult(allowed={self.allowed}, windows={self.windows}, degraded={self.degraded})"
        )


class Backend(Protocol):
    """What the middleware needs from a storage: one atomic multi-window hit."""

    async def hit(
        self, keys: Sequence[str], windows: Sequence[tuple[int, int]], cost: int
    ) -> HitResult:
        """Charge ``cost`` to every window if all of them admit it.

        Args:
            keys: one storage key per window.
            windows: ``(limit, seconds)`` per window.
            cost: units to charge.
        """
        ...

    async def aclose(self) -> None:
        """Release connections."""
        ...
