"""The embedded audit sink (``sqlite:///audit.db``): indexed for queries by key, route and time."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from extapi_kit._types import Clock
from extapi_kit.audit._sql import SQLSinkBase
from extapi_kit.audit.record import AuditRecord
from extapi_kit.audit.sink_base import cutoff_us
from extapi_kit.stores._sqlite import SQLiteDatabase, SQLiteStatements, sqlite_path_from_url

__all__ = ["SQLiteSink"]

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS audit_records (
        seq INTEGER PRIMARY KEY,
        id TEXT NOT NULL,
        ts_us INTEGER NOT NULL,
        key_id TEXT,
        route TEXT,
        method TEXT NOT NULL,
        status INTEGER NOT NULL,
        data TEXT NOT NULL
    )""",
    "CREATE UNIQUE INDEX IF NOT EXISTS audit_records_id ON audit_records (id)",
    "CREATE INDEX IF NOT EXISTS audit_records_ts ON audit_records (ts_us)",
    "CREATE INDEX IF NOT EXISTS audit_records_key_ts ON audit_records (key_id, ts_us)",
    "CREATE INDEX IF NOT EXISTS audit_records_route_ts ON audit_records (route, ts_us)",
)
# A re-sent batch (after a spill) may repeat records already stored: the unique id absorbs them.
_INSERT = (
    "INSERT OR IGNORE INTO audit_records (id, ts_us, key_id, route, method, status, data) "
    "VALUES (?, ?, ?, ?, ?, ?, ?)"
)


def _row(rec: AuditRecord) -> tuple[Any, ...]:
    return (rec.id, rec.timestamp_us, rec.key_id, rec.route, rec.method, rec.status, rec.to_json())


class SQLiteSink(SQLSinkBase):
    """Store audit records in a SQLite file (WAL mode, one writer thread).

    Args:
        path: the database file.
        busy_timeout: seconds to wait for a lock held by another connection before the write
            fails (and the batch is spilled).
        clock: epoch-seconds clock used by :meth:`prune` with an age.
    """

    def __init__(self, path: str, *, busy_timeout: float = 2.0, clock: Clock = time.time) -> None:
        self.path = path
        self._db = SQLiteDatabase(path, busy_timeout=busy_timeout)
        self._q = SQLiteStatements(self._db, self._ensure)
        self._table = "audit_records"
        self._clock = clock
        self._ready = False

    @classmethod
    def from_url(cls, url: str, **options: Any) -> SQLiteSink:
        """Create from ``sqlite:///relative.db`` or ``sqlite:////abs/path.db``.

        Args:
            url: the URL.
            **options: constructor keyword arguments.
        """
        return cls(sqlite_path_from_url(url), **options)

    def __repr__(self) -> str:
        return f"SQLiteSink({self.path!r})"

    def _ensure(self, conn: sqlite3.Connection) -> None:
        if not self._ready:
            for stmt in _SCHEMA:
                conn.execute(stmt)
            self._ready = True

    async def write_batch(self, records: Sequence[AuditRecord]) -> None:
        """Insert a batch in one transaction (all or nothing).

        Args:
            records: the records.
        """
        records = list(records)

        def _do(conn: sqlite3.Connection) -> None:
            # Encoding happens on the database thread, off the event loop.
            rows = [_row(r) for r in records]
            self._ensure(conn)
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.executemany(_INSERT, rows)
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

        await self._db.run(_do)

    def write_batch_sync(self, records: Sequence[AuditRecord]) -> None:
        """Insert a batch from synchronous code (benchmarks, CLI imports).

        Args:
            records: the records.
        """
        rows = [_row(r) for r in records]

        def _do(conn: sqlite3.Connection) -> None:
            self._ensure(conn)
            with conn:
                conn.execute("BEGIN IMMEDIATE")
                conn.executemany(_INSERT, rows)

        self._db.call_sync(_do)

    async def count(self) -> int:
        """Return the number of stored records."""

        def _do(conn: sqlite3.Connection) -> int:
            self._ensure(conn)
            return int(conn.execute("SELECT COUNT(*) FROM audit_records").fetchone()[0])

        return await self._db.run(_do)

    async def prune(self, older_than: datetime | timedelta | float) -> int:
        """Delete records that arrived before the cut-off; return how many.

        Args:
            older_than: a datetime, or an age (timedelta or seconds) before now.
        """
        cut = cutoff_us(older_than, self._clock())

        def _do(conn: sqlite3.Connection) -> int:
            self._ensure(conn)
            return int(conn.execute("DELETE FROM audit_records WHERE ts_us < ?", (cut,)).rowcount)

        return await self._db.run(_do)

    async def ping(self) -> bool:
        """Return True when the database answers."""
        return await self._db.ping()

    async def aclose(self) -> None:
        """Close the connection and its thread."""
        await self._db.aclose()

    def close_sync(self) -> None:
        """Close from synchronous code."""
        self._db.close_sync()
