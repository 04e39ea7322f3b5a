"""SQLite activity store: one row per key in a SQLite file (the statements: :mod:`._sql`)."""

from __future__ import annotations

import re
import sqlite3
from typing import Any

from extapi_kit.analytics._sql import ActivitySQL, SQLActivityStoreBase
from extapi_kit.exceptions import ConfigurationError
from extapi_kit.stores._sqlite import SQLiteDatabase, SQLiteStatements, sqlite_path_from_url

__all__ = ["SQLiteActivityStore"]

_PREFIX_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,40}")


class SQLiteActivityStore(SQLActivityStoreBase):
    """An :class:`~extapi_kit.analytics.store.ActivityStore` in a SQLite file.

    Args:
        path: the database file (created if missing).
        table_prefix: prefix of the table.
        busy_timeout: seconds to wait for a lock held by another process.
    """

    _q: SQLiteStatements

    def __init__(
        self, path: str, *, table_prefix: str = "extapi_activity", busy_timeout: float = 5.0
    ) -> None:
        if not _PREFIX_RE.fullmatch(table_prefix):
            raise ConfigurationError(f"invalid table prefix {table_prefix!r}")
        self._p = table_prefix
        self._sql = ActivitySQL(table_prefix)
        self._db = SQLiteDatabase(path, busy_timeout=busy_timeout)
        self._q = SQLiteStatements(self._db, self._schema)

    @classmethod
    def from_url(cls, url: str, **options: Any) -> SQLiteActivityStore:
        """Create the store from ``sqlite:///relative.db`` or ``sqlite:////abs/path.db``.

        Args:
            url: the URL.
            **options: ``table_prefix``, ``busy_timeout``.
        """
        return cls(sqlite_path_from_url(url), **options)

    def __repr__(self) -> str:
        return f"SQLiteActivityStore({self._db.path!r})"

    def _schema(self, c: sqlite3.Connection) -> None:
        c.execute(
            f"CREATE TABLE IF NOT EXISTS {self._p}_docs (key_id TEXT PRIMARY KEY, "
            "version INTEGER NOT NULL, doc TEXT NOT NULL, updated_at REAL NOT NULL)"
        )

    async def aclose(self) -> None:
        """Close the connection."""
        await self._db.aclose()
