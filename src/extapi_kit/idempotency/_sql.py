"""The idempotency stores' SQL, written once for SQLite and PostgreSQL (``?`` placeholders).

The in-flight lock is one row insert: ``INSERT ... ON CONFLICT DO UPDATE ... WHERE <expired>
RETURNING token`` creates the row, or takes over one whose lease or retention has ended, and
returns nothing when a live row holds the key, all in one atomic statement on both databases (two
workers racing on a key: exactly one gets the token back). Only the DDL differs (column types).
"""

from __future__ import annotations

from typing import Any

from extapi_kit.idempotency._base import (
    COMPLETED,
    IN_FLIGHT,
    IdempotencyRecord,
    StoredResponse,
    decode_headers,
)

__all__ = ["IdempotencySQL", "row_to_record"]


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
