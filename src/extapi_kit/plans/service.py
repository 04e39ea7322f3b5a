"""PlanService: create, change and delete plans, assign owners, and resolve a key's plan.

Resolution happens once, when the key service builds a principal for its positive cache (a cache
miss), never per request: a request served from the cache pays nothing for plans. Resolved plans
and owner assignments are kept in process for ``cache_ttl`` seconds; a change through any
process's store drops them at once here (in-process watchers) and, on Redis and PostgreSQL, in
every other process within a second (the store's change channel, as for a key revocation). Each
drop is passed on to the registered listeners, which the key service uses to drop its cached
principals, so a plan change reaches every key on it at runtime (case K1).
"""

from __future__ import annotations

import builtins
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from extapi_kit._types import Clock
from extapi_kit.context import Principal
from extapi_kit.exceptions import ConfigurationError, ConflictError, NotFoundError
from extapi_kit.keys import _validation as v
from extapi_kit.plans.models import (
    Plan,
    UnknownPlanError,
    apply_plan,
    check_plan_name,
    exceeding_scopes,
)
from extapi_kit.plans.store import PlanStore
from extapi_kit.stores import store_from_url

__all__ = ["PlanService", "plan_out"]

logger = logging.getLogger("extapi_kit.plans")

_UNSET: Any = object()
_MAX_CACHED = 100_000


class PlanService:
    """Plans (tiers) over any :class:`~extapi_kit.plans.store.PlanStore`.

    Args:
        store: a PlanStore or a store URL (``memory://``, ``sqlite:///plans.db``,
            ``redis://...``, ``postgresql://...``).
        cache_ttl: seconds a resolved plan or owner assignment is trusted without a store read;
            with stores that cannot announce changes across processes (SQLite) it bounds how
            long another process keeps using an old plan. Match the key service's ``cache_ttl``.
        clock: returns epoch seconds.
    """

    def __init__(
        self, store: PlanStore | str, *, cache_ttl: float = 10.0, clock: Clock = time.time
    ) -> None:
        if store is None:
            raise ConfigurationError("PlanService needs a store (URL or PlanStore)")
        if cache_ttl < 0:
            raise ConfigurationError("cache_ttl must be >= 0")
        self._owns_store = isinstance(store, str)
        self.store: PlanStore = store_from_url("plans", store) if isinstance(store, str) else store
        self.cache_ttl = cache_ttl
        self._clock = clock
        self._plans: dict[str, tuple[Plan | None, float]] = {}
        self._owners: dict[str, tuple[str | None, float]] = {}
        self._listeners: list[Callable[[str], None]] = []
        self._watching = False
        self._key_store: Any = None
        #: bumped on every drop, so a resolve that raced with a change does not cache.
        self.generation = 0

    def __repr__(self) -> str:
        return f"PlanService(store={self.store!r})"

    def bind_keys(self, key_store: Any) -> None:
        """Tell the service which key store holds the keys (for "plan in use" checks).

        Args:
            key_store: the :class:`~extapi_kit.keys.store.KeyStore`.
        """
        self._key_store = key_store

    async def listen(self, callback: Callable[[str], None]) -> None:
        """Call ``callback("*")`` whenever a plan or an owner assignment changed anywhere.

        Args:
            callback: e.g. the key service's cache invalidation.
        """
        if callback not in self._listeners:
            self._listeners.append(callback)
        await self._ensure_watch()

    async def _ensure_watch(self) -> None:
        if self._watching:
            return
        self._watching = True
        watch = getattr(self.store, "watch", None)
        if watch is None:
            return
        try:
            await watch(self._changed)
        except Exception as exc:
            logger.warning("could not watch plan changes: %s", type(exc).__name__)

    def _changed(self, what: str) -> None:
        self.generation += 1
        if what.startswith("owner:"):
            self._owners.pop(what[6:], None)
        elif what == "*":
            self._plans.clear()
            self._owners.clear()
        else:
            self._plans.pop(what, None)
        # Which keys are on the plan is not known here: their principals are all dropped.
        for cb in list(self._listeners):
            cb("*")

    # -- resolution (off the hot path: runs when a principal is built) ------------------------

    async def plan(self, name: str) -> Plan | None:
        """Return a plan from the in-process cache or the store (None: no such plan).

        Args:
            name: the plan name.
        """
        now = self._clock()
        found = self._plans.get(name)
        if found is not None and now < found[1]:
            return found[0]
        generation = self.generation
        plan = await self.store.get(name)
        if generation == self.generation and self.cache_ttl > 0:
            if len(self._plans) >= _MAX_CACHED:
                self._plans.clear()
            self._plans[name] = (plan, now + self.cache_ttl)
        return plan

    async def owner_plan(self, owner: str) -> str | None:
        """Return the plan an owner is on (cached like plans).

        Args:
            owner: the owner id.
        """
        now = self._clock()
        found = self._owners.get(owner)
        if found is not None and now < found[1]:
            return found[0]
        generation = self.generation
        name = await self.store.get_owner(owner)
        if generation == self.generation and self.cache_ttl > 0:
            if len(self._owners) >= _MAX_CACHED:
                self._owners.clear()
            self._owners[owner] = (name, now + self.cache_ttl)
        return name

    async def effective_name(self, plan: str | None, owner: str | None) -> str | None:
        """Return the plan a key is on: its own, else its owner's, else None.

        Args:
            plan: the key's own plan.
            owner: the key's owner.
        """
        if plan is not None:
            return plan
        if owner is not None:
            return await self.owner_plan(owner)
        return None

    async def principal(
        self, principal: Principal, plan: str | None, owner: str | None
    ) -> tuple[Principal, float]:
        """Return a key's principal with its plan applied, and until when it may be cached.

        Args:
            principal: the key's own principal.
            plan: the key's own plan, or None.
            owner: the key's owner, or None.
        """
        await self._ensure_watch()
        until = self._clock() + self.cache_ttl
        name = await self.effective_name(plan, owner)
        if name is None:
            return principal, until
        found = await self.plan(name)
        if found is None:
            logger.warning("key %s is on plan %r, which does not exist", principal.key_id, name)
        return apply_plan(principal, found, name), until

    # -- management ---------------------------------------------------------------------------

    async def get(self, name: str) -> Plan:
        """Return a plan from the store.

        Args:
            name: the plan name.

        Raises:
            NotFoundError: no such plan.
        """
        found = await self.store.get(name)
        if found is None:
            raise NotFoundError(f"no plan {name!r}")
        return found

    async def list(self) -> list[Plan]:
        """Return every plan, by name."""
        return await self.store.list()

    async def create(
        self,
        name: str,
        *,
        description: str = "",
        rate_limits: Mapping[str, str] | None = None,
        quota: Mapping[str, Any] | None = None,
        scopes: Iterable[str] | str | None = None,
        body_limit: int | str | None = None,
    ) -> Plan:
        """Create a plan.

        Args:
            name: the plan name (``free``, ``pro`` ...).
            description: free text.
            rate_limits: class -> rate string (``{"read": "1000/minute"}``).
            quota: ``{"daily": N}`` and/or ``{"monthly": N}``.
            scopes: the scope ceiling (None: no ceiling).
            body_limit: largest request body (bytes or ``"1MiB"``), or None.

        Raises:
            ConfigurationError: a value is invalid (nothing is stored).
            ConflictError: a plan of this name exists.
        """
        now = self._clock()
        plan = Plan.build(
            name,
            description=description,
            rate_limits=rate_limits,
            quota=quota,
            scopes=scopes,
            body_limit=body_limit,
            created_at=now,
            updated_at=now,
        )
        await self.store.create(plan)
        return plan

    async def update(
        self,
        name: str,
        *,
        description: str = _UNSET,
        rate_limits: Mapping[str, str] | None = _UNSET,
        quota: Mapping[str, Any] | None = _UNSET,
        scopes: Iterable[str] | str | None = _UNSET,
        body_limit: int | str | None = _UNSET,
    ) -> Plan:
        """Change a plan; only the arguments given change. Every key on it follows at runtime.

        Args:
            name: the plan name.
            description: new description.
            rate_limits: new limits (replaces).
            quota: new quotas (replaces).
            scopes: new ceiling (replaces; None removes the ceiling).
            body_limit: new body limit (None removes it).

        Raises:
            NotFoundError: no such plan.
            ConfigurationError: a value is invalid (nothing is stored).
        """
        current = await self.get(name)
        values = current.to_dict()
        for field_name, value in (
            ("description", description),
            ("rate_limits", rate_limits),
            ("quota", quota),
            ("scopes", scopes),
            ("body_limit", body_limit),
        ):
            if value is not _UNSET:
                values[field_name] = value
        values["updated_at"] = self._clock()
        plan = Plan.build(**values)
        await self.store.update(plan)
        return plan

    async def delete(self, name: str) -> None:
        """Delete a plan that no key and no owner is on.

        Args:
            name: the plan name.

        Raises:
            NotFoundError: no such plan.
            ConflictError: keys or owners are on it (move them first).
        """
        await self.get(name)
        users = await self.users(name, limit=5)
        if users:
            raise ConflictError(
                f"plan {name!r} is in use by {', '.join(users)}; move them to another plan first"
            )
        if not await self.store.delete(name):
            raise NotFoundError(f"no plan {name!r}")

    async def users(self, name: str, *, limit: int = 5) -> builtins.list[str]:
        """Return up to ``limit`` owners (``owner:<id>``) and keys (``key:<id>``) on a plan.

        Args:
            name: the plan name.
            limit: how many to return at most.
        """
        found = [f"owner:{o}" for o in await self.store.owners(name)][:limit]
        keys = self._key_store
        cursor: str | None = None
        while keys is not None and len(found) < limit:
            page, cursor = await keys.list(cursor=cursor, limit=1000)
            found += [f"key:{r.id}" for r in page if getattr(r, "plan", None) == name]
            if cursor is None:
                break
        return found[:limit]

    async def assign_owner(self, owner: str, plan: str | None) -> None:
        """Put an owner on a plan (None: off any plan); its keys without a plan of their own follow.

        Args:
            owner: the owner id.
            plan: the plan name, or None.

        Raises:
            UnknownPlanError: no such plan (422 naming ``plan``).
        """
        owner = v.check_name(owner, "owner")
        if plan is not None:
            await self.require(plan)
        await self.store.set_owner(owner, plan)

    async def owner_plan_now(self, owner: str) -> str | None:
        """Return an owner's plan from the store (not the cache).

        Args:
            owner: the owner id.
        """
        return await self.store.get_owner(owner)

    async def owners(self, plan: str | None = None) -> dict[str, str]:
        """Return owner -> plan assignments.

        Args:
            plan: only owners on this plan.
        """
        return await self.store.owners(plan)

    async def require(self, name: str, field: str = "plan") -> Plan:
        """Return the plan ``name`` from the store, or raise UnknownPlanError naming ``field``.

        Args:
            name: the plan name.
            field: the field that named it.
        """
        check_plan_name(name, field)
        found = await self.store.get(name)
        if found is None:
            raise UnknownPlanError(name, field)
        return found

    async def check_key(self, plan: str | None, owner: str | None, scopes: Iterable[str]) -> None:
        """Refuse a key whose own scopes go beyond the ceiling of the plan it would be on.

        Args:
            plan: the key's own plan (None: its owner's, if any).
            owner: the key's owner.
            scopes: the key's scopes.

        Raises:
            UnknownPlanError: ``plan`` does not exist.
            ConfigurationError: a scope exceeds the plan's ceiling (names ``scopes``).
        """
        if plan is not None:
            found: Plan | None = await self.require(plan)
        elif owner is not None:
            name = await self.store.get_owner(owner)
            found = None if name is None else await self.store.get(name)
        else:
            return
        if found is None:
            return
        over = exceeding_scopes(scopes, found.scopes)
        if over:
            raise ConfigurationError(
                f"scopes: {', '.join(repr(s) for s in over)} exceed the ceiling of plan "
                f"{found.name!r} ({', '.join(found.scopes or ())})"
            )

    async def aclose(self) -> None:
        """Close the store if this service created it."""
        if self._owns_store:
            await self.store.aclose()


def plan_out(plan: Plan) -> dict[str, Any]:
    """Return a plan as the admin API and CLI show it.

    Args:
        plan: the plan.
    """
    data = plan.to_dict()
    data["policy_names"] = plan.policy_names()
    return data
