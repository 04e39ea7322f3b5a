"""What the credit stores answer with, and the names shared by every part of the feature.

A *subject* is ``"k:<key id>"`` (one key) or ``"o:<owner>"`` (every key of an owner). A subject
with a balance is *metered*; one without is not limited by credits at all. A balance only ever
goes down by itself (one spend per admitted request, by the route's ``cost``); it goes up only
through an explicit top-up (``set``/``add``), which also re-arms the ``credits.exhausted``
notification.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "EVENT_EXHAUSTED",
    "EVENT_LOW",
    "FUSED",
    "CreditEntry",
    "Spend",
    "key_subject",
    "owner_subject",
    "subject_label",
]

EVENT_LOW = "credits.low"
EVENT_EXHAUSTED = "credits.exhausted"
# ``RequestContext.extra`` member where the rate limiter leaves the decision it took in its own
# Redis script (None: the key is not metered); private ("_"), so the audit record skips it.
FUSED = "_credits"


def key_subject(key_id: str) -> str:
    """Return the subject of one key.

    Args:
        key_id: the key id.
    """
    return "k:" + key_id


def owner_subject(owner: str) -> str:
    """Return the subject of an owner (every key it owns).

    Args:
        owner: the owner id.
    """
    return "o:" + owner


def subject_label(subject: str) -> tuple[str, str]:
    """Return ``("key" | "owner", id)`` of a subject.

    Args:
        subject: ``"k:<key id>"`` or ``"o:<owner>"``.
    """
    return ("key" if subject.startswith("k:") else "owner"), subject[2:]


class Spend:
    """The outcome of one atomic spend over a request's subjects.

    A plain slotted class rather than a dataclass: one is built per metered request.

    Args:
        allowed: whether every metered subject had ``cost`` credits (then all were charged).
        balances: per subject its balance after the charge (unchanged when refused), None when
            the subject is not metered.
        exhausted: per subject, True for the one spend that marked it exhausted (it reached 0,
            or could not pay) since its last top-up: the ``credits.exhausted`` notification
            fires exactly once per crossing, across processes.
    """

    __slots__ = ("allowed", "balances", "exhausted")

    def __init__(self, allowed: bool, balances: list[int | None], exhausted: list[bool]) -> None:
        self.allowed = allowed
        self.balances = balances
        self.exhausted = exhausted

    def __repr__(self) -> str:
        return f"Spend(allowed={self.allowed}, balances={self.balances})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Spend):
            return NotImplemented
        return (self.allowed, self.balances, self.exhausted) == (
            other.allowed,
            other.balances,
            other.exhausted,
        )

    __hash__ = None  # type: ignore[assignment]

    @property
    def metered(self) -> bool:
        """Whether any subject has a balance."""
        for b in self.balances:
            if b is not None:
                return True
        return False


@dataclass(frozen=True, slots=True)
class CreditEntry:
    """One change of a balance made by an operator (the credits audit trail).

    Args:
        at: epoch seconds.
        subject: the subject changed.
        action: ``"set"``, ``"add"`` or ``"clear"``.
        amount: the amount set or added (0 for ``clear``).
        before: the balance before (None: not metered).
        after: the balance after (None: not metered any more).
        actor: who made the change (an admin key id, ``"cli"``, ...).
        reason: free text given with the change, if any.
    """

    at: float
    subject: str
    action: str
    amount: int
    before: int | None
    after: int | None
    actor: str
    reason: str | None = None

    def as_dict(self) -> dict[str, object]:
        """Return the entry as JSON-able data."""
        scope, ident = subject_label(self.subject)
        return {
            "at": self.at,
            "scope": scope,
            "id": ident,
            "action": self.action,
            "amount": self.amount,
            "before": self.before,
            "after": self.after,
            "actor": self.actor,
            "reason": self.reason,
        }
