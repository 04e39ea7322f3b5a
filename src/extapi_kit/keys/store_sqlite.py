"""``sqlite:///keys.db``: key records in one SQLite table (WAL mode, driven from a worker thread).

Several processes on one host may share the file. There is no change notification between
processes: another process drops a revoked key from its positive cache when the entry's TTL runs
out (default 10 s). Only hashes are stored, never secrets.
"""

from __future__ import annotations

import re
import sqlite3
from typing import Any

from extapi_kit.exceptions import ConfigurationError, ConflictError, NotFoundError
from extapi_kit.keys._sql import KeySQL, row_to_record
from extapi_kit.keys.models import KeyRecord
from extapi_kit.keys.store import (
    InvalidationCallback,
    Watchers,
    check_page_args,
    decode_cursor,
    encode_cursor,
    filter_records,
)
from extapi_kit.stores._sqlite import SQLiteDatabase, sqlite_path_from_url

__all__ = ["SQLiteKeyStore"]

_TABLE_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")


class SQLiteKeyStore:
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
        self._ready = False
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
        if not self._ready:
            conn.execute(
                f"CREATE TABLE IF NOT EXISTS {self._t} (id TEXT PRIMARY KEY, owner TEXT, "
                "env TEXT NOT NULL, last_used_at REAL, data TEXT NOT NULL)"
            )
            conn.execute(f"CREATE INDEX IF NOT EXISTS {self._t}_owner ON {self._t} (owner, id)")
            self._ready = True

    async def create(self, record: KeyRecord) -> None:
        """Insert a record.

        Args:
            record: the record.
        """

        def _do(conn: sqlite3.Connection) -> int:
            self._schema(conn)
            return conn.execute(self._sql.insert, KeySQL.row(record)).rowcount

        if await self._db.run(_do) == 0:
            raise ConflictError(f"key {record.id} already exists")

    async def get(self, key_id: str) -> KeyRecord | None:
        """Return a record or None.

        Args:
            key_id: the key id.
        """

        def _do(conn: sqlite3.Connection) -> sqlite3.Row | None:
            self._schema(conn)
            row: sqlite3.Row | None = conn.execute(self._sql.get, (key_id,)).fetchone()
            return row

        row = await self._db.run(_do)
        return None if row is None else row_to_record(row)

    async def list(
        self,
        *,
        owner: str | None = None,
        env: str | None = None,
        status: str | None = None,
        now: float = 0.0,
        cursor: str | None = None,
        limit: int = 100,
    ) -> tuple[list[KeyRecord], str | None]:
        """Return one page of records ordered by id.

        Args:
            owner: owner filter.
            env: env filter.
            status: status filter (applied in Python; it depends on ``now``).
            now: time for the status filter.
            cursor: from a previous page.
            limit: page size.
        """
        check_page_args(status, limit)
        after = decode_cursor(cursor)

        def _do(conn: sqlite3.Connection) -> list[KeyRecord]:
            self._schema(conn)
            found: list[KeyRecord] = []
            last = after
            while len(found) <= limit:
                sql, params = self._sql.page(last, owner, env)
                rows = conn.execute(sql, params).fetchall()
                if not rows:
                    break
                batch = [row_to_record(r) for r in rows]
                last = batch[-1].id
                found += filter_records(batch, owner=None, env=None, status=status, now=now)
            return found

        matched = await self._db.run(_do)
        page = matched[:limit]
        return page, (encode_cursor(page[-1].id) if len(matched) > limit else None)

    async def update(self, record: KeyRecord) -> None:
        """Replace a record (not its ``last_used_at``) and notify in-process watchers.

        Args:
            record: the new state.
        """

        def _do(conn: sqlite3.Connection) -> int:
            self._schema(conn)
            return conn.execute(self._sql.update, KeySQL.update_params(record)).rowcount

        if await self._db.run(_do) == 0:
            raise NotFoundError(f"no key {record.id}")
        self._watchers.notify(record.id)

    async def touch(self, key_id: str, when: float) -> None:
        """Move ``last_used_at`` forward.

        Args:
            key_id: the key id.
            when: epoch seconds.
        """

        def _do(conn: sqlite3.Connection) -> None:
            self._schema(conn)
            conn.execute(self._sql.touch, (when, key_id, when))

        await self._db.run(_do)

    async def watch(self, callback: InvalidationCallback) -> None:
        """Call ``callback(key_id)`` after updates made through this store object.

        Args:
            callback: the invalidation callback.
        """
        self._watchers.add(callback)

    async def ping(self) -> bool:
        """Return whether the database answers."""
        return await self._db.ping()

    async def aclose(self) -> None:
        """Close the database."""
        await self._db.aclose()

    def close_sync(self) -> None:
        """Close from synchronous code."""
        self._db.close_sync()
