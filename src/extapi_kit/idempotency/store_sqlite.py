"""SQLite idempotency store: one row per record, the statements shared with PostgreSQL.

``begin`` runs the shared upsert (:mod:`extapi_kit.idempotency._sql`) and, when a live row holds
the key, reads it, both inside one ``BEGIN IMMEDIATE`` transaction: two processes (two uvicorn
workers) racing on the same key serialise, exactly one gets the token back, the other sees its row.
WAL mode (set by :class:`~extapi_kit.stores._sqlite.SQLiteDatabase`) keeps readers unblocked.
"""

from __future__ import annotations

import secrets
import sqlite3
import time
from typing import Any

from extapi_kit._types import Clock
from extapi_kit.idempotency._base import IN_FLIGHT, BeginResult
from extapi_kit.idempotency._sql import IdempotencySQL, SQLIdempotencyStoreBase, row_to_record
from extapi_kit.stores._sqlite import SQLiteDatabase, SQLiteStatements, sqlite_path_from_url

__all__ = ["SQLiteIdempotencyStore"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS extapi_idempotency (
    record_key TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    token TEXT NOT NULL,
    created_at REAL NOT NULL,
    expires_at REAL NOT NULL,
    status INTEGER,
    headers TEXT,
    body BLOB,
    truncated INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS extapi_idempotency_expiry ON extapi_idempotency (expires_at);
"""
_SQL = IdempotencySQL("extapi_idempotency")


class SQLiteIdempotencyStore(SQLIdempotencyStoreBase):
    """Idempotency records in a SQLite file, safe to share between processes on one host.

    Args:
        path: the database file (``":memory:"`` for a private in-memory database).
        clock: returns epoch seconds; used by ``prune()`` without ``now``.
        busy_timeout: seconds to wait for another process's write lock.
    """

    _q: SQLiteStatements

    def __init__(self, path: str, *, clock: Clock | None = None, busy_timeout: float = 5.0) -> None:
        self._db = SQLiteDatabase(path, busy_timeout=busy_timeout)
        self._q = SQLiteStatements(self._db, lambda c: c.executescript(_SCHEMA))
        self._sql = _SQL
        self._clock: Clock = clock or time.time

    @classmethod
    def from_url(cls, url: str, **options: Any) -> SQLiteIdempotencyStore:
        """Create the store from ``sqlite:///relative.db`` or ``sqlite:////abs/path.db``.

        Args:
            url: the store URL.
            **options: ``clock``, ``busy_timeout``.
        """
        return cls(sqlite_path_from_url(url), **options)

    def __repr__(self) -> str:
        return f"SQLiteIdempotencyStore({self._db.path!r})"

    async def begin(self, key: str, fingerprint: str, *, now: float, lease: float) -> BeginResult:
        """Create an in-flight row unless a live one exists (one write transaction).

        Args:
            key: the record key.
            fingerprint: the request fingerprint.
            now: the current time.
            lease: lock lease in seconds.
        """
        token = secrets.token_hex(16)

        def _begin(c: sqlite3.Connection) -> BeginResult:
            c.execute("BEGIN IMMEDIATE")
            try:
                row = (key, IN_FLIGHT, fingerprint, token, now, now + lease)
                if c.execute(_SQL.begin, row).fetchone() is None:
                    existing = row_to_record(c.execute(_SQL.select, (key,)).fetchone())
                    c.execute("COMMIT")
                    return BeginResult(acquired=False, existing=existing)
            except BaseException:
                c.execute("ROLLBACK")
                raise
            c.execute("COMMIT")
            return BeginResult(acquired=True, token=token)

        return await self._q.run(_begin)

    async def aclose(self) -> None:
        """Close the connection and its thread."""
        await self._db.aclose()
