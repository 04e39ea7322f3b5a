"""The activity stores' SQL, written once for SQLite and PostgreSQL (``?`` placeholders).

One table, ``<prefix>_docs``: a row per key with its document, a version for compare-and-set
writes and the time of the last write (for pruning keys that went quiet).
"""

from __future__ import annotations

import time

from extapi_kit.stores._sql import SQLStatements

__all__ = ["ActivitySQL", "SQLActivityStoreBase"]


class ActivitySQL:
    """The statements over one activity table.

    Args:
        prefix: the (qualified) table prefix, e.g. ``extapi_activity``.
    """

    def __init__(self, prefix: str) -> None:
        p = prefix
        self.load = f"SELECT version, doc FROM {p}_docs WHERE key_id = ?"
        self.insert = (
            f"INSERT INTO {p}_docs (key_id, version, doc, updated_at) VALUES (?, 1, ?, ?) "
            "ON CONFLICT (key_id) DO NOTHING"
        )
        self.update = (
            f"UPDATE {p}_docs SET version = version + 1, doc = ?, updated_at = ? "
            "WHERE key_id = ? AND version = ?"
        )
        self.prune = f"DELETE FROM {p}_docs WHERE updated_at < ?"


class SQLActivityStoreBase:
    """The activity store methods SQLite and PostgreSQL run alike, over :class:`ActivitySQL`."""

    _q: SQLStatements
    _sql: ActivitySQL

    async def load(self, key_id: str) -> tuple[int, str | None]:
        """Return ``(version, document)``; ``(0, None)`` when the key has none.

        Args:
            key_id: the key id.
        """
        row = await self._q.fetchrow(self._sql.load, key_id)
        return (0, None) if row is None else (int(row[0]), str(row[1]))

    async def save(self, key_id: str, version: int, doc: str, *, ttl: int) -> bool:
        """Insert (version 0) or update the row if its version is still ``version``.

        Args:
            key_id: the key id.
            version: the version read.
            doc: the new document.
            ttl: unused (:meth:`prune` drops idle documents).
        """
        now = time.time()
        if version == 0:
            return await self._q.execute(self._sql.insert, key_id, doc, now) == 1
        return await self._q.execute(self._sql.update, doc, now, key_id, version) == 1

    async def prune(self, before: float) -> int:
        """Delete documents last written before ``before``.

        Args:
            before: epoch seconds.
        """
        return await self._q.execute(self._sql.prune, before)

    async def ping(self) -> bool:
        """Return True when the database answers."""
        return await self._q.ping()
