"""SQLite usage store: one row per (subject, day, field), upserted in batches.

The statements are shared with PostgreSQL (:mod:`extapi_kit.usage._sql`).

Batches arrive from the tracker's flusher (about once a second), so a write transaction per batch
is cheap. Quota charges run in ``BEGIN IMMEDIATE`` transactions, which serialise writers across
processes sharing the file, so the check-and-charge is exact; notification marks use
``ON CONFLICT DO NOTHING`` so exactly one caller sees its row inserted.
"""

from __future__ import annotations

import re
import secrets
import sqlite3
import time
from collections.abc import Sequence
from typing import Any

from extapi_kit.exceptions import ConfigurationError
from extapi_kit.stores._sqlite import SQLiteDatabase, SQLiteStatements, sqlite_path_from_url
from extapi_kit.usage._sql import SQLUsageStoreBase, UsageSQL
from extapi_kit.usage.store import Counts, QuotaCheck

__all__ = ["SQLiteUsageStore"]

_PREFIX_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,40}")


class SQLiteUsageStore(SQLUsageStoreBase):
    """A :class:`~extapi_kit.usage.store.UsageStore` in a SQLite file.

    Args:
        path: the database file (created if missing).
        table_prefix: prefix of the three tables.
        busy_timeout: seconds to wait for a lock held by another process.
    """

    _q: SQLiteStatements

    def __init__(
        self, path: str, *, table_prefix: str = "extapi_usage", busy_timeout: float = 5.0
    ) -> None:
        if not _PREFIX_RE.fullmatch(table_prefix):
            raise ConfigurationError(f"invalid table prefix {table_prefix!r}")
        self._p = table_prefix
        self._sql = UsageSQL(table_prefix)
        self._db = SQLiteDatabase(path, busy_timeout=busy_timeout)
        self._q = SQLiteStatements(self._db, self._schema)

    @classmethod
    def from_url(cls, url: str, **options: Any) -> SQLiteUsageStore:
        """Create the store from ``sqlite:///relative.db`` or ``sqlite:////abs/path.db``.

        Args:
            url: the URL.
            **options: ``table_prefix``, ``busy_timeout``.
        """
        return cls(sqlite_path_from_url(url), **options)

    def __repr__(self) -> str:
        return f"SQLiteUsageStore({self._db.path!r})"

    def _schema(self, c: sqlite3.Connection) -> None:
        p = self._p
        c.execute(
            f"CREATE TABLE IF NOT EXISTS {p}_days (subject TEXT NOT NULL, day TEXT NOT NULL, "
            "field TEXT NOT NULL, n INTEGER NOT NULL, PRIMARY KEY (subject, day, field))"
        )
        c.execute(
            f"CREATE TABLE IF NOT EXISTS {p}_quota (counter TEXT PRIMARY KEY, "
            "used INTEGER NOT NULL)"
        )
        c.execute(f"CREATE TABLE IF NOT EXISTS {p}_marks (mark TEXT PRIMARY KEY)")
        c.execute(f"CREATE TABLE IF NOT EXISTS {p}_batches (id TEXT PRIMARY KEY, at REAL NOT NULL)")

    async def add(self, counts: Counts, *, ttl: int, batch: str | None = None) -> None:
        """Add a batch of increments in one transaction, at most once per ``batch`` id.

        Args:
            counts: ``(subject, day, field) -> n``.
            ttl: retention (pruning is done by :meth:`prune`).
            batch: a unique id recorded in the same transaction; a known id is skipped.
        """
        rows = [(s, d, f, n) for (s, d, f), n in counts.items()]
        if not rows:
            return
        sql, mark = self._sql.add_day, self._sql.mark_batch
        batch_id = batch or secrets.token_hex(12)
        now = time.time()

        def do(c: sqlite3.Connection) -> None:
            c.execute("BEGIN IMMEDIATE")
            try:
                if c.execute(mark, (batch_id, now)).rowcount:
                    c.executemany(sql, rows)
            except BaseException:
                c.execute("ROLLBACK")
                raise
            c.execute("COMMIT")

        await self._q.run(do)

    async def consume(self, checks: Sequence[QuotaCheck], cost: int) -> tuple[bool, list[int]]:
        """Charge ``cost`` to every counter if all stay within their limits (one transaction).

        Args:
            checks: counters and limits.
            cost: units to charge.
        """
        sql = self._sql

        def do(c: sqlite3.Connection) -> tuple[bool, list[int]]:
            c.execute("BEGIN IMMEDIATE")
            try:
                used = []
                for chk in checks:
                    row = c.execute(sql.quota_used, (chk.counter,)).fetchone()
                    used.append(int(row[0]) if row else 0)
                if any(u + cost > chk.limit for u, chk in zip(used, checks, strict=True)):
                    c.execute("ROLLBACK")
                    return False, used
                c.executemany(sql.quota_charge, [(chk.counter, cost) for chk in checks])
            except BaseException:
                c.execute("ROLLBACK")
                raise
            c.execute("COMMIT")
            return True, [u + cost for u in used]

        return await self._q.run(do)

    async def aclose(self) -> None:
        """Close the connection."""
        await self._db.aclose()
