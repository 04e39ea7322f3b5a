"""The spend and change rules every backend applies (Redis restates them in Lua)."""

from __future__ import annotations

from collections.abc import Sequence

from extapi_kit.exceptions import ConfigurationError

__all__ = ["MAX_BALANCE", "check_change", "decide", "next_balance"]

# Fits a signed 64-bit column and a Redis integer with room for one more add.
MAX_BALANCE = 2**62
ACTIONS = ("set", "add", "clear")


def check_change(action: str, amount: int) -> None:
    """Refuse an unknown action or an amount out of range.

    Args:
        action: ``set``, ``add`` or ``clear``.
        amount: the amount.
    """
    if action not in ACTIONS:
        raise ConfigurationError(f"unknown credits action {action!r}; use one of {ACTIONS}")
    if isinstance(amount, bool) or not isinstance(amount, int):
        raise ConfigurationError(f"credits amount must be an integer: {amount!r}")
    if action == "set" and not 0 <= amount <= MAX_BALANCE:
        raise ConfigurationError(f"a balance is 0..{MAX_BALANCE}: {amount}")
    if action == "add" and not (amount != 0 and abs(amount) <= MAX_BALANCE):
        raise ConfigurationError(f"add a non-zero amount within +-{MAX_BALANCE}: {amount}")


def next_balance(action: str, amount: int, before: int | None) -> int | None:
    """Return the balance after a change (None: not metered).

    Args:
        action: ``set``, ``add`` or ``clear``.
        amount: the amount.
        before: the balance before.
    """
    if action == "clear":
        return None
    if action == "set":
        return amount
    return min(MAX_BALANCE, max(0, (before or 0) + amount))


def decide(
    rows: Sequence[tuple[int, bool] | None], cost: int
) -> tuple[bool, list[int | None], list[bool]]:
    """Decide a spend from each subject's ``(balance, exhausted mark)`` (None: not metered).

    Returns ``(allowed, balances after, marks newly set)``.

    Args:
        rows: per subject its row.
        cost: credits to charge.
    """
    allowed = all(r is None or r[0] >= cost for r in rows)
    balances: list[int | None] = []
    marks: list[bool] = []
    for row in rows:
        if row is None:
            balances.append(None)
            marks.append(False)
            continue
        balance, marked = row
        if allowed:
            balance -= cost
            marks.append(balance <= 0 and not marked)
        else:
            marks.append(balance < cost and not marked)
        balances.append(balance)
    return allowed, balances, marks
