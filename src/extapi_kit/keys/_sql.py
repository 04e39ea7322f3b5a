"""The key stores' SQL, written once for SQLite and PostgreSQL (``?`` placeholders).

Both backends keep one row per key: ``id``, ``owner`` and ``env`` as columns for lookups and
filters, ``last_used_at`` as its own column (written only by ``touch``, so a touch can never undo
a revocation), and the rest of the record as JSON text. Only the DDL differs (column types), and
the PostgreSQL update is wrapped to announce the change with ``pg_notify`` in the same statement.
:class:`SQLKeyStoreBase` holds what both stores do alike; each backend adds ``update`` and
``watch`` (how a change reaches other processes) and ``aclose``.
"""

from __future__ import annotations

import json
from typing import Any

from extapi_kit.exceptions import ConflictError
from extapi_kit.keys.models import KeyRecord
from extapi_kit.keys.store import (
    Watchers,
    check_page_args,
    decode_cursor,
    encode_cursor,
    filter_records,
)
from extapi_kit.stores._sql import SQLStatements

__all__ = ["KeySQL", "SQLKeyStoreBase", "record_data", "row_to_record"]

PAGE_ROWS = 200


def row_to_record(row: Any) -> KeyRecord:
    """Return the record of a ``(last_used_at, data)`` row.

    Args:
        row: a row with ``last_used_at`` and ``data`` (sqlite3.Row or asyncpg.Record).
    """
    data = json.loads(row["data"])
    data["last_used_at"] = row["last_used_at"]
    return KeyRecord.from_dict(data)


def record_data(record: KeyRecord) -> str:
    """Return the JSON kept in ``data`` (``last_used_at`` left to its own column).

    Args:
        record: the record.
    """
    data = record.to_dict()
    data["last_used_at"] = None  # owned by the column, written only by touch()
    return json.dumps(data, separators=(",", ":"), sort_keys=True)


class KeySQL:
    """The statements over one key table.

    Args:
        table: the (qualified) table name.
    """

    def __init__(self, table: str) -> None:
        t = table
        self.insert = (
            f"INSERT INTO {t} (id, owner, env, last_used_at, data) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT (id) DO NOTHING"
        )
        self.get = f"SELECT last_used_at, data FROM {t} WHERE id = ?"
        self.update = f"UPDATE {t} SET owner = ?, env = ?, data = ? WHERE id = ?"
        self.touch = (
            f"UPDATE {t} SET last_used_at = ? WHERE id = ? "
            "AND (last_used_at IS NULL OR last_used_at < ?)"
        )
        self._page = f"SELECT last_used_at, data FROM {t} WHERE id > ?"

    def page(self, after: str, owner: str | None, env: str | None) -> tuple[str, list[Any]]:
        """Return the query for the next rows after ``after`` (by id), and its parameters.

        Args:
            after: the last id seen ("" for the first page).
            owner: owner filter.
            env: env filter.
        """
        sql = self._page
        params: list[Any] = [after]
        if owner is not None:
            sql += " AND owner = ?"
            params.append(owner)
        if env is not None:
            sql += " AND env = ?"
            params.append(env)
        params.append(PAGE_ROWS)
        return sql + " ORDER BY id LIMIT ?", params

    @staticmethod
    def row(record: KeyRecord) -> tuple[Any, ...]:
        """Return the parameters of :attr:`insert` for a record.

        Args:
            record: the record.
        """
        return (record.id, record.owner, record.env, record.last_used_at, record_data(record))

    @staticmethod
    def update_params(record: KeyRecord) -> tuple[Any, ...]:
        """Return the parameters of :attr:`update` for a record.

        Args:
            record: the new state.
        """
        return (record.owner, record.env, record_data(record), record.id)


class SQLKeyStoreBase:
    """The key store methods SQLite and PostgreSQL run alike, over :class:`KeySQL`."""

    _q: SQLStatements
    _sql: KeySQL
    _watchers: Watchers

    async def create(self, record: KeyRecord) -> None:
        """Insert a record.

        Args:
            record: the record.
        """
        if await self._q.execute(self._sql.insert, *KeySQL.row(record)) == 0:
            raise ConflictError(f"key {record.id} already exists")

    async def get(self, key_id: str) -> KeyRecord | None:
        """Return a record or None.

        Args:
            key_id: the key id.
        """
        row = await self._q.fetchrow(self._sql.get, key_id)
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
        last = decode_cursor(cursor)
        found: list[KeyRecord] = []
        while len(found) <= limit:
            sql, params = self._sql.page(last, owner, env)
            rows = await self._q.fetch(sql, *params)
            if not rows:
                break
            batch = [row_to_record(r) for r in rows]
            last = batch[-1].id
            found += filter_records(batch, owner=None, env=None, status=status, now=now)
        page = found[:limit]
        return page, (encode_cursor(page[-1].id) if len(found) > limit else None)

    async def touch(self, key_id: str, when: float) -> None:
        """Move ``last_used_at`` forward.

        Args:
            key_id: the key id.
            when: epoch seconds.
        """
        await self._q.execute(self._sql.touch, when, key_id, when)

    async def ping(self) -> bool:
        """Return whether the database answers."""
        return await self._q.ping()
