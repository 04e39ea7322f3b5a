"""The idempotency stores' SQL, written once for SQLite and PostgreSQL (``?`` placeholders).

The in-flight lock is one row insert: ``INSERT ... ON CONFLICT DO UPDATE ... WHERE <expired>
RETURNING token`` creates the row, or takes over one whose lease or retention has ended, and
returns nothing when a live row holds the key, all in one atomic statement on both databases (two
workers racing on a key: exactly one gets the token back). Only the DDL differs (column types).
:class:`SQLIdempotencyStoreBase` holds the store methods both run alike; each backend adds
``begin`` (SQLite reads a lost race's row in the same ``BEGIN IMMEDIATE`` transaction, PostgreSQL
re-reads until the row is stable) and ``aclose``.
"""

from __future__ import annotations

from typing import Any

from extapi_kit._types import Clock
from extapi_kit.idempotency._base import (
    COMPLETED,
    IN_FLIGHT,
    IdempotencyRecord,
    StoredResponse,
    decode_headers,
    encode_headers,
)
from extapi_kit.stores._sql import SQLStatements

__all__ = ["IdempotencySQL", "SQLIdempotencyStoreBase", "row_to_record"]


def row_to_record(row: Any) -> IdempotencyRecord:
    """Return the record of a row selected by :attr:`IdempotencySQL.select`.

    Args:
        row: a sqlite3.Row or asyncpg.Record.
    """
    response = None
    if row["state"] == COMPLETED:
        response = StoredResponse(
            status=int(row["status"]),
            headers=decode_headers(row["headers"]),
            body=bytes(row["body"] or b""),
            truncated=bool(row["truncated"]),
        )
    return IdempotencyRecord(
        state=COMPLETED if row["state"] == COMPLETED else IN_FLIGHT,
        fingerprint=row["fingerprint"],
        token=row["token"],
        created_at=float(row["created_at"]),
        expires_at=float(row["expires_at"]),
        response=response,
    )


class IdempotencySQL:
    """The statements over one idempotency table.

    Args:
        table: the (qualified) table name.
    """

    def __init__(self, table: str) -> None:
        t = table
        # Parameters: key, state, fingerprint, token, now, now + lease.
        self.begin = (
            f"INSERT INTO {t} AS r (record_key, state, fingerprint, token, created_at, expires_at) "
            "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (record_key) DO UPDATE SET "
            "state = excluded.state, fingerprint = excluded.fingerprint, token = excluded.token, "
            "created_at = excluded.created_at, expires_at = excluded.expires_at, status = NULL, "
            "headers = NULL, body = NULL, truncated = 0 "
            "WHERE r.expires_at <= excluded.created_at RETURNING token"
        )
        self.select = (
            "SELECT state, fingerprint, token, created_at, expires_at, status, headers, body, "
            f"truncated FROM {t} WHERE record_key = ?"
        )
        # Parameters: state, expires_at, status, headers, body, truncated, key, token, IN_FLIGHT.
        self.complete = (
            f"UPDATE {t} SET state = ?, expires_at = ?, status = ?, headers = ?, body = ?, "
            "truncated = ? WHERE record_key = ? AND token = ? AND state = ?"
        )
        self.release = f"DELETE FROM {t} WHERE record_key = ? AND token = ? AND state = ?"
        self.prune = f"DELETE FROM {t} WHERE expires_at <= ?"


class SQLIdempotencyStoreBase:
    """The idempotency store methods SQLite and PostgreSQL run alike (:class:`IdempotencySQL`)."""

    _q: SQLStatements
    _sql: IdempotencySQL
    _clock: Clock

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
        changed = await self._q.execute(
            self._sql.complete,
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
        return changed == 1

    async def release(self, key: str, token: str) -> bool:
        """Delete the in-flight row if ``token`` owns it.

        Args:
            key: the record key.
            token: the owner token.
        """
        return await self._q.execute(self._sql.release, key, token, IN_FLIGHT) == 1

    async def get(self, key: str) -> IdempotencyRecord | None:
        """Return the record or None.

        Args:
            key: the record key.
        """
        row = await self._q.fetchrow(self._sql.select, key)
        return None if row is None else row_to_record(row)

    async def prune(self, *, now: float | None = None) -> int:
        """Delete expired rows (never a row whose lease is still running).

        Args:
            now: the current time (default: the store clock).
        """
        return await self._q.execute(self._sql.prune, self._clock() if now is None else now)

    async def ping(self) -> bool:
        """Return whether the database answers."""
        return await self._q.ping()
