"""Leak report stores: ``sqlite:///leaks.db``, ``postgresql://...`` and ``redis://...``.

SQLite and PostgreSQL run the same statements (``?`` placeholders): one row per report, its id as
primary key, so ``INSERT ... ON CONFLICT DO NOTHING`` decides which of two concurrent reporters
acts (the row count says whether this one inserted). Redis uses ``SET NX`` for the same decision
and sorted sets (score = report time) as newest-first indexes. No store ever holds a token.
"""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from extapi_kit.exceptions import ConfigurationError, StoreError
from extapi_kit.keys.leaks import LeakReport, check_page, decode_cursor, encode_cursor
from extapi_kit.stores._postgres import (
    Migration,
    PostgresConfig,
    PostgresStore,
    register_migrations,
)
from extapi_kit.stores._redis import pop_client_options, redis_call, redis_from_url
from extapi_kit.stores._sql import SQLStatements
from extapi_kit.stores._sqlite import SQLiteDatabase, SQLiteStatements, sqlite_path_from_url

__all__ = ["PostgresLeakStore", "RedisLeakStore", "SQLiteLeakStore"]

T = TypeVar("T")
_TABLE_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_.]{0,62}")
FEATURE = "leaks"

register_migrations(
    FEATURE,
    [
        Migration(
            1,
            "leak reports",
            "CREATE TABLE {p}leak_reports (id TEXT PRIMARY KEY, key_id TEXT NOT NULL, "
            "owner TEXT, reported_at DOUBLE PRECISION NOT NULL, data TEXT NOT NULL);"
            "CREATE INDEX {prefix}leak_reports_at ON {p}leak_reports (reported_at, id);",
        )
    ],
)


def _data(report: LeakReport) -> str:
    return json.dumps(report.to_dict(), separators=(",", ":"), sort_keys=True)


class _SQLLeakStore:
    """The statements both SQL backends run alike."""

    _q: SQLStatements
    _t: str

    async def add(self, report: LeakReport) -> bool:
        """Insert unless present; return whether this call inserted it.

        Args:
            report: the report.
        """
        changed = await self._q.execute(
            f"INSERT INTO {self._t} (id, key_id, owner, reported_at, data) "
            "VALUES (?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING",
            report.id,
            report.key_id,
            report.owner,
            report.reported_at,
            _data(report),
        )
        return changed == 1

    async def get(self, report_id: str) -> LeakReport | None:
        """Return a report by id, or None.

        Args:
            report_id: the id.
        """
        row = await self._q.fetchrow(f"SELECT data FROM {self._t} WHERE id = ?", report_id)
        return None if row is None else LeakReport.from_dict(json.loads(row["data"]))

    async def list(
        self,
        *,
        key_id: str | None = None,
        owner: str | None = None,
        cursor: str | None = None,
        limit: int = 100,
    ) -> tuple[list[LeakReport], str | None]:
        """Return one page, newest first, and the next cursor.

        Args:
            key_id: key filter.
            owner: owner filter.
            cursor: from a previous page.
            limit: page size (1-1000).
        """
        check_page(limit)
        sql = f"SELECT data FROM {self._t} WHERE 1 = 1"
        args: list[Any] = []
        if cursor is not None:
            at, rid = decode_cursor(cursor)
            sql += " AND (reported_at < ? OR (reported_at = ? AND id < ?))"
            args += [at, at, rid]
        if key_id is not None:
            sql += " AND key_id = ?"
            args.append(key_id)
        if owner is not None:
            sql += " AND owner = ?"
            args.append(owner)
        sql += " ORDER BY reported_at DESC, id DESC LIMIT ?"
        args.append(limit + 1)
        rows = await self._q.fetch(sql, *args)
        page = [LeakReport.from_dict(json.loads(r["data"])) for r in rows[:limit]]
        more = len(rows) > limit
        return page, encode_cursor(page[-1]) if more and page else None

    async def ping(self) -> bool:
        """Return True when the database answers."""
        return await self._q.ping()


class SQLiteLeakStore(_SQLLeakStore):
    """Leak reports in a SQLite file (WAL; several processes on one host may share it).

    Args:
        path: the database file.
        table: the table name.
        busy_timeout: seconds to wait for another process's lock.
    """

    def __init__(self, path: str, *, table: str = "extapi_leak_reports", busy_timeout: float = 5.0):
        if not _TABLE_RE.fullmatch(table) or "." in table:
            raise ConfigurationError(f"invalid table name {table!r}")
        self._t = table
        self._db = SQLiteDatabase(path, busy_timeout=busy_timeout)
        self._q = SQLiteStatements(self._db, self._schema)

    @classmethod
    def from_url(cls, url: str, **options: Any) -> SQLiteLeakStore:
        """Create a store from ``sqlite:///leaks.db``.

        Args:
            url: the URL.
            **options: ``table``, ``busy_timeout``.
        """
        return cls(sqlite_path_from_url(url), **options)

    def __repr__(self) -> str:
        return f"SQLiteLeakStore({self._db.path!r})"

    def _schema(self, conn: sqlite3.Connection) -> None:
        conn.execute(
            f"CREATE TABLE IF NOT EXISTS {self._t} (id TEXT PRIMARY KEY, key_id TEXT NOT NULL, "
            "owner TEXT, reported_at REAL NOT NULL, data TEXT NOT NULL)"
        )
        conn.execute(f"CREATE INDEX IF NOT EXISTS {self._t}_at ON {self._t} (reported_at, id)")

    async def aclose(self) -> None:
        """Close the database."""
        await self._db.aclose()


class PostgresLeakStore(PostgresStore, _SQLLeakStore):
    """Leak reports in PostgreSQL (``<schema>.<prefix>leak_reports``, versioned migrations).

    Args:
        config: where the table lives and the deadlines.
        migrate: create the table on first use.
    """

    FEATURE = FEATURE

    def __init__(self, config: PostgresConfig, *, migrate: bool = True) -> None:
        super().__init__(config, migrate=migrate)
        self._q = self._db
        self._t = config.table("leak_reports")

    async def aclose(self) -> None:
        """Close the pool."""
        await self._db.aclose()


class RedisLeakStore:
    """Leak reports in Redis: one string per report (``SET NX``) and sorted-set indexes.

    Args:
        client: a ``redis.asyncio.Redis`` client (with timeouts).
        prefix: prepended to every key.
    """

    def __init__(self, client: Any, *, prefix: str = "extapi:leaks:") -> None:
        self._redis = client
        self._prefix = prefix

    @classmethod
    def from_url(cls, url: str, **options: Any) -> RedisLeakStore:
        """Create the store from ``redis://host:port/db`` (or a cluster/sentinel URL).

        Args:
            url: the Redis URL.
            **options: ``prefix``, ``socket_timeout``, ``connect_timeout``.
        """
        return cls(redis_from_url(url, **pop_client_options(options)), **options)

    def __repr__(self) -> str:
        return f"RedisLeakStore(prefix={self._prefix!r})"

    async def _call(self, fn: Callable[[], Awaitable[T]]) -> T:
        return await redis_call(fn, self._redis)

    def _index(self, key_id: str | None, owner: str | None) -> str:
        if key_id is not None:
            return f"{self._prefix}by-key:{key_id}"
        if owner is not None:
            return f"{self._prefix}by-owner:{owner}"
        return f"{self._prefix}all"

    async def add(self, report: LeakReport) -> bool:
        """Insert unless present (``SET NX``); return whether this call inserted it.

        Args:
            report: the report.
        """
        key = f"{self._prefix}r:{report.id}"
        inserted = await self._call(lambda: self._redis.set(key, _data(report), nx=True))
        if not inserted:
            return False
        # The indexes may sit in other cluster slots: one command each (a crash between them
        # leaves a report that get() finds but a listing misses; never a double action).
        member = {report.id: report.reported_at}
        for index in {self._index(None, None), self._index(report.key_id, None)} | (
            {self._index(None, report.owner)} if report.owner else set()
        ):
            await self._call(lambda i=index: self._redis.zadd(i, member))  # type: ignore[misc]
        return True

    async def get(self, report_id: str) -> LeakReport | None:
        """Return a report by id, or None.

        Args:
            report_id: the id.
        """
        raw = await self._call(lambda: self._redis.get(f"{self._prefix}r:{report_id}"))
        return None if raw is None else LeakReport.from_dict(json.loads(raw))

    async def list(
        self,
        *,
        key_id: str | None = None,
        owner: str | None = None,
        cursor: str | None = None,
        limit: int = 100,
    ) -> tuple[list[LeakReport], str | None]:
        """Return one page, newest first, and the next cursor.

        Args:
            key_id: key filter (combined with ``owner``: both must match).
            owner: owner filter.
            cursor: from a previous page.
            limit: page size (1-1000).
        """
        check_page(limit)
        index = self._index(key_id, owner)
        top: float | str = "+inf"
        after: tuple[float, str] | None = None
        if cursor is not None:
            after = decode_cursor(cursor)
            top = after[0]
        found: list[LeakReport] = []
        offset = 0
        while len(found) <= limit:
            batch = limit + 1
            rows = await self._call(
                lambda o=offset, b=batch: self._redis.zrevrangebyscore(  # type: ignore[misc]
                    index, top, "-inf", start=o, num=b, withscores=True
                )
            )
            if not rows:
                break
            offset += len(rows)
            for member, score in rows:
                rid = member.decode() if isinstance(member, bytes) else str(member)
                if after is not None and (float(score), rid) >= after:
                    continue
                report = await self.get(rid)
                if report is None:
                    continue
                if owner is not None and report.owner != owner:
                    continue
                found.append(report)
        found.sort(key=lambda r: (r.reported_at, r.id), reverse=True)
        page = found[:limit]
        more = len(found) > limit
        return page, encode_cursor(page[-1]) if more and page else None

    async def ping(self) -> bool:
        """Return True when Redis answers."""
        try:
            return bool(await self._call(self._redis.ping))
        except StoreError:
            return False

    async def aclose(self) -> None:
        """Close the client's connections."""
        await self._redis.aclose()
