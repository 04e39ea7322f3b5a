"""``sqlite:///keys.db``: key records in one SQLite table (WAL mode, driven from a worker thread).

Several processes on one host may share the file. There is no change notification between
processes: another process drops a revoked key from its positive cache when the entry's TTL runs
out (default 10 s). Only hashes are stored, never secrets.
"""

from __future__ import annotations

import re
import sqlite3
from typing import Any

from extapi_kit.exceptions import ConfigurationError, NotFoundError
from extapi_kit.keys._sql import KeySQL, SQLKeyStoreBase
from extapi_kit.keys.models import KeyRecord
from extapi_kit.keys.store import InvalidationCallback, Watchers
from extapi_kit.stores._sqlite import SQLiteDatabase, SQLiteStatements, sqlite_path_from_url

__all__ = ["SQLiteKeyStore"]

_TABLE_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")


class SQLiteKeyStore(SQLKeyStoreBase):
    """A :class:`~extapi_kit.keys.store.KeyStore` in a SQLite file.

    Args:
        path: the database file (created if missing).
        table: the table name.
        busy_timeout: seconds to wait for a lock held by another process.
    """

    def __init__(self, path: str, *, table: str = "extapi_api_keys", busy_timeout: float = 5.0):
        if not _TABLE_RE.fullmatch(table):
            raise ConfigurationError(f"invalid table name {table!r}")
        self._t = table
        self._sql = KeySQL(table)
        self._db = SQLiteDatabase(path, busy_timeout=busy_timeout)
        self._q = SQLiteStatements(self._db, self._schema)
        self._watchers = Watchers()

    @classmethod
    def from_url(cls, url: str, **options: Any) -> SQLiteKeyStore:
        """Create a store from ``sqlite:///relative.db`` or ``sqlite:////abs/path.db``.

        Args:
            url: the URL.
            **options: ``table``, ``busy_timeout``.
        """
        return cls(sqlite_path_from_url(url), **options)

    def __repr__(self) -> str:
        return f"SQLiteKeyStore({self._db.path!r})"

    def _schema(self, conn: sqlite3.Connection) -> None:
        conn.execute(
            f"CREATE TABLE IF NOT EXISTS {self._t} (id TEXT PRIMARY KEY, owner TEXT, "
            "env TEXT NOT NULL, last_used_at REAL, data TEXT NOT NULL)"
        )
        conn.execute(f"CREATE INDEX IF NOT EXISTS {self._t}_owner ON {self._t} (owner, id)")

    async def update(self, record: KeyRecord) -> None:
        """Replace a record (not its ``last_used_at``) and notify in-process watchers.

        Args:
            record: the new state.
        """
        if await self._q.execute(self._sql.update, *KeySQL.update_params(record)) == 0:
            raise NotFoundError(f"no key {record.id}")
        self._watchers.notify(record.id)

    async def watch(self, callback: InvalidationCallback) -> None:
        """Call ``callback(key_id)`` after updates made through this store object.

        Args:
            callback: the invalidation callback.
        """
        self._watchers.add(callback)

    async def aclose(self) -> None:
        """Close the database."""
        await self._db.aclose()

    def close_sync(self) -> None:
        """Close from synchronous code."""
        self._db.close_sync()
