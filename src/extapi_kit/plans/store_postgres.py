"""``postgresql://user@host:5432/db``: plans in PostgreSQL, shared by any number of hosts.

Tables ``<schema>.<prefix>plans`` and ``<prefix>plan_owners`` run the SQLite store's statements
(:mod:`extapi_kit.plans._sql`). Every change is announced with ``pg_notify`` on the store's channel
once it committed; ``watch()`` keeps one ``LISTEN`` connection (the key store's revocation
mechanism, :class:`~extapi_kit.stores._pg_listener.PostgresListener`), so every process drops its
cached plans and the key principals built from them well within a second. When that connection
breaks, watchers are told to drop everything (``"*"``).
"""

from __future__ import annotations

import logging

from extapi_kit.exceptions import NotFoundError
from extapi_kit.plans._sql import PlanSQL, SQLPlanStoreBase, plan_data
from extapi_kit.plans.models import Plan
from extapi_kit.plans.store import ChangeCallback, Watchers
from extapi_kit.stores._pg_listener import PostgresListener
from extapi_kit.stores._postgres import (
    Migration,
    PostgresConfig,
    PostgresStore,
    register_migrations,
)

__all__ = ["PostgresPlanStore"]

logger = logging.getLogger("extapi_kit.plans")

FEATURE = "plans"

register_migrations(
    FEATURE,
    [
        Migration(
            1,
            "plans and owner assignments",
            "CREATE TABLE {p}plans (name TEXT PRIMARY KEY, data TEXT NOT NULL);"
            "CREATE TABLE {p}plan_owners (owner TEXT PRIMARY KEY, plan TEXT NOT NULL);"
            "CREATE INDEX {prefix}plan_owners_plan ON {p}plan_owners (plan, owner);",
        )
    ],
)


class PostgresPlanStore(PostgresStore, SQLPlanStoreBase):
    """A :class:`~extapi_kit.plans.store.PlanStore` in PostgreSQL with ``LISTEN/NOTIFY``.

    Args:
        config: where the tables live and the connection deadlines.
        migrate: create or upgrade the tables on first use.
    """

    FEATURE = FEATURE

    def __init__(self, config: PostgresConfig, *, migrate: bool = True) -> None:
        super().__init__(config, migrate=migrate)
        self._q = self._db
        self._sql = PlanSQL(config.table("plans"), config.table("plan_owners"))
        self.channel = f"{config.channel}plans"
        self._watchers = Watchers()
        self._listener = PostgresListener(
            config,
            self.channel,
            on_notify=self._watchers.notify,
            on_connected=self._reconnected,
            on_lost=self._drop_all,
            name="plan change listener",
            logger=logger,
        )

    async def _announce(self, what: str) -> None:
        self._watchers.notify(what)
        await self._db.execute("SELECT pg_notify(?, ?)", self.channel, what)

    async def update(self, plan: Plan) -> None:
        """Replace a plan and notify every listening process.

        Args:
            plan: the new state.
        """
        if await self._db.execute(self._sql.update, plan_data(plan), plan.name) == 0:
            raise NotFoundError(f"no plan {plan.name!r}")
        await self._announce(plan.name)

    async def delete(self, name: str) -> bool:
        """Delete a plan and notify every listening process.

        Args:
            name: the plan name.
        """
        found = await self._db.execute(self._sql.delete, name) > 0
        if found:
            await self._announce(name)
        return found

    async def set_owner(self, owner: str, plan: str | None) -> None:
        """Assign or clear an owner's plan and notify every listening process.

        Args:
            owner: the owner id.
            plan: the plan name or None.
        """
        if plan is None:
            await self._db.execute(self._sql.clear_owner, owner)
        else:
            await self._db.execute(self._sql.set_owner, owner, plan)
        await self._announce(f"owner:{owner}")

    async def watch(self, callback: ChangeCallback) -> None:
        """Register ``callback`` and make sure this process listens (waits up to ~1 s).

        Args:
            callback: called with what changed, or ``"*"`` after the connection broke.
        """
        self._watchers.add(callback)
        await self._listener.start()

    def _drop_all(self) -> None:
        self._watchers.notify("*")

    def _reconnected(self, after_break: bool) -> None:
        if after_break:
            self._drop_all()

    async def aclose(self) -> None:
        """Stop the listener and close the pool."""
        await self._listener.aclose()
        await self._db.aclose()
