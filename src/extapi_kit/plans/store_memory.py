"""``memory://``: plans in a dict, for tests and single-process apps."""

from __future__ import annotations

from typing import Any

from extapi_kit.exceptions import ConflictError, NotFoundError
from extapi_kit.plans.models import Plan
from extapi_kit.plans.store import ChangeCallback, Watchers

__all__ = ["MemoryPlanStore"]


class MemoryPlanStore:
    """An in-process :class:`~extapi_kit.plans.store.PlanStore`.

    Args:
        **options: accepted and ignored, so ``memory://`` works wherever a URL does.
    """

    def __init__(self, **options: Any) -> None:
        self._plans: dict[str, Plan] = {}
        self._owners: dict[str, str] = {}
        self._watchers = Watchers()

    @classmethod
    def from_url(cls, url: str, **options: Any) -> MemoryPlanStore:
        """Create a store from ``memory://``.

        Args:
            url: ``memory://``.
            **options: ignored.
        """
        return cls(**options)

    def __repr__(self) -> str:
        return f"MemoryPlanStore({len(self._plans)} plans)"

    async def create(self, plan: Plan) -> None:
        """Insert a plan.

        Args:
            plan: the plan.
        """
        if plan.name in self._plans:
            raise ConflictError(f"plan {plan.name!r} already exists")
        self._plans[plan.name] = plan

    async def get(self, name: str) -> Plan | None:
        """Return a plan or None.

        Args:
            name: the plan name.
        """
        return self._plans.get(name)

    async def list(self) -> list[Plan]:
        """Return every plan by name."""
        return [self._plans[n] for n in sorted(self._plans)]

    async def update(self, plan: Plan) -> None:
        """Replace a plan and notify watchers.

        Args:
            plan: the new state.
        """
        if plan.name not in self._plans:
            raise NotFoundError(f"no plan {plan.name!r}")
        self._plans[plan.name] = plan
        self._watchers.notify(plan.name)

    async def delete(self, name: str) -> bool:
        """Delete a plan and notify watchers.

        Args:
            name: the plan name.
        """
        found = self._plans.pop(name, None) is not None
        if found:
            self._watchers.notify(name)
        return found

    async def get_owner(self, owner: str) -> str | None:
        """Return an owner's plan.

        Args:
            owner: the owner id.
        """
        return self._owners.get(owner)

    async def set_owner(self, owner: str, plan: str | None) -> None:
        """Assign or clear an owner's plan and notify watchers.

        Args:
            owner: the owner id.
            plan: the plan name or None.
        """
        if plan is None:
            self._owners.pop(owner, None)
        else:
            self._owners[owner] = plan
        self._watchers.notify(f"owner:{owner}")

    async def owners(self, plan: str | None = None) -> dict[str, str]:
        """Return owner -> plan.

        Args:
            plan: only owners on this plan.
        """
        return {o: p for o, p in sorted(self._owners.items()) if plan is None or p == plan}

    async def watch(self, callback: ChangeCallback) -> None:
        """Call ``callback`` after every change through this store object.

        Args:
            callback: the change callback.
        """
        self._watchers.add(callback)

    async def ping(self) -> bool:
        """Always True."""
        return True

    async def aclose(self) -> None:
        """Nothing to release."""
