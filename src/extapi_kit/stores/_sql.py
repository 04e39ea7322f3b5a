"""What a feature's shared SQL code needs from a database, SQLite or PostgreSQL.

A feature writes its statements once (``?`` placeholders, in its ``_sql.py``) and, where both
backends run them the same way, the store logic once too, against :class:`SQLStatements`. The
backend part is only how a statement runs: :class:`~extapi_kit.stores._sqlite.SQLiteStatements`
on the database thread, :class:`~extapi_kit.stores._postgres.PostgresDatabase` on a pooled asyncpg
connection. What differs between the backends (transactions, locks, notifications) stays in each
store module, small and visible.
"""

from __future__ import annotations

from typing import Any, Protocol

__all__ = ["SQLStatements"]


class SQLStatements(Protocol):
    """Run one statement with ``?`` placeholders; errors come out as :class:`StoreError`."""

    async def execute(self, sql: str, *args: Any) -> int:
        """Execute a statement and return the number of rows it changed."""
        ...

    async def fetch(self, sql: str, *args: Any) -> list[Any]:
        """Run a query and return all rows (rows index by column name and position)."""
        ...

    async def fetchrow(self, sql: str, *args: Any) -> Any:
        """Run a query and return the first row, or None."""
        ...

    async def ping(self) -> bool:
        """Return True when the database answers."""
        ...
