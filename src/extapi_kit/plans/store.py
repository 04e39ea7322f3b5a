"""The :class:`PlanStore` protocol: plans by name, and which plan each owner is on.

Built-ins: ``memory://`` (one process), ``sqlite:///file.db`` (one host; other processes see a
change within the plan cache TTL), ``redis://`` and ``postgresql://`` (any number of processes; a
change is announced on the store's channel, like a key revocation, and every process drops what it
cached within a second). ``watch()`` is optional for stores of your own.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, runtime_checkable

from extapi_kit.plans.models import Plan

__all__ = ["ChangeCallback", "PlanStore", "Watchers"]

ChangeCallback = Callable[[str], None]
"""Called with a changed plan name, ``"owner:<owner>"``, or ``"*"`` (drop everything)."""


@runtime_checkable
class PlanStore(Protocol):
    """Async storage for plans and owner assignments."""

    async def create(self, plan: Plan) -> None:
        """Insert a plan; ConflictError if the name exists.

        Args:
            plan: the plan.
        """

    async def get(self, name: str) -> Plan | None:
        """Return a plan or None.

        Args:
            name: the plan name.
        """

    async def list(self) -> list[Plan]:
        """Return every plan, ordered by name."""

    async def update(self, plan: Plan) -> None:
        """Replace a plan and announce the change; NotFoundError if it does not exist.

        Args:
            plan: the new state.
        """

    async def delete(self, name: str) -> bool:
        """Delete a plan and announce it; return whether it existed.

        Args:
            name: the plan name.
        """

    async def get_owner(self, owner: str) -> str | None:
        """Return the plan an owner is on, or None.

        Args:
            owner: the owner id.
        """

    async def set_owner(self, owner: str, plan: str | None) -> None:
        """Put an owner on a plan (None removes the assignment) and announce it.

        Args:
            owner: the owner id.
            plan: the plan name or None.
        """

    async def owners(self, plan: str | None = None) -> dict[str, str]:
        """Return owner -> plan, for every owner or those on ``plan``.

        Args:
            plan: only owners on this plan.
        """

    async def ping(self) -> bool:
        """Return whether the backend answers."""

    async def aclose(self) -> None:
        """Release connections and background tasks."""


class Watchers:
    """In-process change callbacks (what ``watch()`` registers)."""

    def __init__(self) -> None:
        self._callbacks: list[ChangeCallback] = []

    def add(self, callback: ChangeCallback) -> None:
        """Register a callback.

        Args:
            callback: called with what changed.
        """
        if callback not in self._callbacks:
            self._callbacks.append(callback)

    def notify(self, what: str) -> None:
        """Call every callback.

        Args:
            what: a plan name, ``"owner:<owner>"`` or ``"*"``.
        """
        for cb in list(self._callbacks):
            cb(what)
