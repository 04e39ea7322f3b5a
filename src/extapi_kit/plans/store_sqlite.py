"""``sqlite:///plans.db``: plans and owner assignments in a SQLite file.

Several processes on one host may share the file. There is no change notification between
processes: another process sees a changed plan when its plan cache entry (and the key cache
entries built from it) run out, ``cache_ttl`` of :class:`~extapi_kit.plans.PlanService` (10 s by
default). Changes made through this store object reach this process's watchers at once.
"""

from __future__ import annotations

import re
import sqlite3
from typing import Any

from extapi_kit.exceptions import ConfigurationError, NotFoundError
from extapi_kit.plans._sql import PlanSQL, SQLPlanStoreBase, plan_data
from extapi_kit.plans.models import Plan
from extapi_kit.plans.store import ChangeCallback, Watchers
from extapi_kit.stores._sqlite import SQLiteDatabase, SQLiteStatements, sqlite_path_from_url

__all__ = ["SQLitePlanStore"]

_TABLE_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,40}")


class SQLitePlanStore(SQLPlanStoreBase):
    """A :class:`~extapi_kit.plans.store.PlanStore` in a SQLite file.

    Args:
        path: the database file (created if missing).
        table_prefix: prefix of the two table names.
        busy_timeout: seconds to wait for a lock held by another process.
    """

    def __init__(self, path: str, *, table_prefix: str = "extapi_", busy_timeout: float = 5.0):
        if not _TABLE_RE.fullmatch(table_prefix):
            raise ConfigurationError(f"invalid table prefix {table_prefix!r}")
        self._plans_t = f"{table_prefix}plans"
        self._owners_t = f"{table_prefix}plan_owners"
        self._sql = PlanSQL(self._plans_t, self._owners_t)
        self._db = SQLiteDatabase(path, busy_timeout=busy_timeout)
        self._q = SQLiteStatements(self._db, self._schema)
        self._watchers = Watchers()

    @classmethod
    def from_url(cls, url: str, **options: Any) -> SQLitePlanStore:
        """Create a store from ``sqlite:///relative.db`` or ``sqlite:////abs/path.db``.

        Args:
            url: the URL.
            **options: ``table_prefix``, ``busy_timeout``.
        """
        return cls(sqlite_path_from_url(url), **options)

    def __repr__(self) -> str:
        return f"SQLitePlanStore({self._db.path!r})"

    def _schema(self, conn: sqlite3.Connection) -> None:
        conn.execute(
            f"CREATE TABLE IF NOT EXISTS {self._plans_t} "
            "(name TEXT PRIMARY KEY, data TEXT NOT NULL)"
        )
        conn.execute(
            f"CREATE TABLE IF NOT EXISTS {self._owners_t} "
            "(owner TEXT PRIMARY KEY, plan TEXT NOT NULL)"
        )
        conn.execute(
            f"CREATE INDEX IF NOT EXISTS {self._owners_t}_plan ON {self._owners_t} (plan, owner)"
        )

    async def update(self, plan: Plan) -> None:
        """Replace a plan and notify in-process watchers.

        Args:
            plan: the new state.
        """
        if await self._q.execute(self._sql.update, plan_data(plan), plan.name) == 0:
            raise NotFoundError(f"no plan {plan.name!r}")
        self._watchers.notify(plan.name)

    async def delete(self, name: str) -> bool:
        """Delete a plan and notify in-process watchers.

        Args:
            name: the plan name.
        """
        found = await self._q.execute(self._sql.delete, name) > 0
        if found:
            self._watchers.notify(name)
        return found

    async def set_owner(self, owner: str, plan: str | None) -> None:
        """Assign or clear an owner's plan and notify in-process watchers.

        Args:
            owner: the owner id.
            plan: the plan name or None.
        """
        if plan is None:
            await self._q.execute(self._sql.clear_owner, owner)
        else:
            await self._q.execute(self._sql.set_owner, owner, plan)
        self._watchers.notify(f"owner:{owner}")

    async def watch(self, callback: ChangeCallback) -> None:
        """Call ``callback`` after changes made through this store object.

        Args:
            callback: the change callback.
        """
        self._watchers.add(callback)

    async def aclose(self) -> None:
        """Close the database."""
        await self._db.aclose()
