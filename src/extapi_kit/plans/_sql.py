"""The plan stores' SQL, written once for SQLite and PostgreSQL (``?`` placeholders).

Two tables: ``<prefix>plans`` (``name``, the plan as JSON in ``data``) and ``<prefix>plan_owners``
(``owner`` -> ``plan``). :class:`SQLPlanStoreBase` holds what both backends do alike; each backend
adds the writes that announce a change (in process on SQLite, ``pg_notify`` on PostgreSQL).
"""

from __future__ import annotations

import json
from typing import Any

from extapi_kit.exceptions import ConflictError
from extapi_kit.plans.models import Plan
from extapi_kit.plans.store import Watchers
from extapi_kit.stores._sql import SQLStatements

__all__ = ["PlanSQL", "SQLPlanStoreBase", "plan_data"]


def plan_data(plan: Plan) -> str:
    """Return the JSON kept in ``data``.

    Args:
        plan: the plan.
    """
    return json.dumps(plan.to_dict(), separators=(",", ":"), sort_keys=True)


class PlanSQL:
    """The statements over the plan tables.

    Args:
        plans: the (qualified) plans table name.
        owners: the (qualified) owner assignment table name.
    """

    def __init__(self, plans: str, owners: str) -> None:
        self.insert = (
            f"INSERT INTO {plans} (name, data) VALUES (?, ?) ON CONFLICT (name) DO NOTHING"
        )
        self.get = f"SELECT data FROM {plans} WHERE name = ?"
        self.list = f"SELECT data FROM {plans} ORDER BY name"
        self.update = f"UPDATE {plans} SET data = ? WHERE name = ?"
        self.delete = f"DELETE FROM {plans} WHERE name = ?"
        self.get_owner = f"SELECT plan FROM {owners} WHERE owner = ?"
        self.set_owner = (
            f"INSERT INTO {owners} (owner, plan) VALUES (?, ?) "
            "ON CONFLICT (owner) DO UPDATE SET plan = excluded.plan"
        )
        self.clear_owner = f"DELETE FROM {owners} WHERE owner = ?"
        self.owners = f"SELECT owner, plan FROM {owners} ORDER BY owner"
        self.owners_of = f"SELECT owner, plan FROM {owners} WHERE plan = ? ORDER BY owner"


class SQLPlanStoreBase:
    """The plan store methods SQLite and PostgreSQL run alike, over :class:`PlanSQL`."""

    _q: SQLStatements
    _sql: PlanSQL
    _watchers: Watchers

    async def create(self, plan: Plan) -> None:
        """Insert a plan.

        Args:
            plan: the plan.
        """
        if await self._q.execute(self._sql.insert, plan.name, plan_data(plan)) == 0:
            raise ConflictError(f"plan {plan.name!r} already exists")

    async def get(self, name: str) -> Plan | None:
        """Return a plan or None.

        Args:
            name: the plan name.
        """
        row = await self._q.fetchrow(self._sql.get, name)
        return None if row is None else Plan.from_dict(json.loads(row["data"]))

    async def list(self) -> list[Plan]:
        """Return every plan by name."""
        return [Plan.from_dict(json.loads(r["data"])) for r in await self._q.fetch(self._sql.list)]

    async def get_owner(self, owner: str) -> str | None:
        """Return an owner's plan.

        Args:
            owner: the owner id.
        """
        row = await self._q.fetchrow(self._sql.get_owner, owner)
        return None if row is None else str(row["plan"])

    async def owners(self, plan: str | None = None) -> dict[str, str]:
        """Return owner -> plan.

        Args:
            plan: only owners on this plan.
        """
        if plan is None:
            rows: list[Any] = await self._q.fetch(self._sql.owners)
        else:
            rows = await self._q.fetch(self._sql.owners_of, plan)
        return {str(r["owner"]): str(r["plan"]) for r in rows}

    async def ping(self) -> bool:
        """Return whether the database answers."""
        return await self._q.ping()
