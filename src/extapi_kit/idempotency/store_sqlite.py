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
from extapi_kit.idempotency._base import (
    COMPLETED,
    IN_FLIGHT,
    BeginResult,
    IdempotencyRecord,
    StoredResponse,
    encode_headers,
)
from extapi_kit.idempotency._sql import IdempotencySQL, row_to_record
from extapi_kit.stores._sqlite import SQLiteDatabase, sqlite_path_from_url

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


class SQLiteIdempotencyStore:
    """Idempotency records in a SQLite file, safe to share between processes on one host.

    Args:
        path: the database file (``":memory:"`` for a private in-memory database).
        clock: returns epoch seconds; used by ``prune()`` without ``now``.
        busy_timeout: seconds to wait for another process's write lock.
    """

    def __init__(self, path: str, *, clock: Clock | None = None, busy_timeout: float = 5.0) -> None:
        self._db = SQLiteDatabase(path, busy_timeout=busy_timeout)
        self._clock: Clock = clock or time.time
        self._ready = False

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

    async def _run(self, fn: Any) -> Any:
        if not self._ready:
            await self._db.run(lambda c: c.executescript(_SCHEMA))
            self._ready = True
        return await self._db.run(fn)

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

        result: BeginResult = await self._run(_begin)
        return result

    async def complete(
        self, key: str, token: str, response: StoredResponse, *, now: float, ttl: float
    ) -> bool:
        """Store the response if ``token`` owns the in-flight row.

        Args:
            key: the record key.
            token: the owner token.
            response: the response to keep.
            now: the current time.
            ttl: retention in seconds.
        """
        params = (
            COMPLETED,
            now + ttl,
            response.status,
            encode_headers(response.headers),
            response.body,
            int(response.truncated),
            key,
            token,
            IN_FLIGHT,
        )

        def _complete(c: sqlite3.Connection) -> int:
            return c.execute(_SQL.complete, params).rowcount

        changed: int = await self._run(_complete)
        return changed == 1

    async def release(self, key: str, token: str) -> bool:
        """Delete the in-flight row if ``token`` owns it.

        Args:
            key: the record key.
            token: the owner token.
        """

        def _release(c: sqlite3.Connection) -> int:
            return c.execute(_SQL.release, (key, token, IN_FLIGHT)).rowcount

        changed: int = await self._run(_release)
        return changed == 1

    async def get(self, key: str) -> IdempotencyRecord | None:
        """Return the record or None.

        Args:
            key: the record key.
        """

        def _get(c: sqlite3.Connection) -> IdempotencyRecord | None:
            row = c.execute(_SQL.select, (key,)).fetchone()
            return None if row is None else row_to_record(row)

        record: IdempotencyRecord | None = await self._run(_get)
        return record

    async def prune(self, *, now: float | None = None) -> int:
        """Delete expired rows (never a row whose lease is still running).

        Args:
            now: the current time (default: the store clock).
        """
        when = self._clock() if now is None else now

        def _prune(c: sqlite3.Connection) -> int:
            return c.execute(_SQL.prune, (when,)).rowcount

        deleted: int = await self._run(_prune)
        return deleted

    async def ping(self) -> bool:
        """Return whether the database answers."""
        return await self._db.ping()

    async def aclose(self) -> None:
        """Close the connection and its thread."""
        await self._db.aclose()
