"""``postgresql://user@host:5432/db``: idempotency records in PostgreSQL, shared by many hosts.

The statements are the SQLite store's (:mod:`extapi_kit.idempotency._sql`): the in-flight lock is
one ``INSERT ... ON CONFLICT DO UPDATE ... WHERE <expired> RETURNING token``, atomic across every
process, so two workers with one key get one side effect. A database that is down or past its
deadline raises :class:`~extapi_kit.exceptions.StoreUnavailableError`, which the middleware turns
into a 503 (fail closed): a write whose key cannot be recorded is never executed.
"""

from __future__ import annotations

import secrets
import time
from typing import Any

from extapi_kit._types import Clock
from extapi_kit.exceptions import StoreUnavailableError
from extapi_kit.idempotency._base import (
    COMPLETED,
    IN_FLIGHT,
    BeginResult,
    IdempotencyRecord,
    StoredResponse,
    encode_headers,
)
from extapi_kit.idempotency._sql import IdempotencySQL, row_to_record
from extapi_kit.stores._postgres import (
    Migration,
    PostgresConfig,
    PostgresDatabase,
    parse_postgres_url,
    register_migrations,
)

__all__ = ["PostgresIdempotencyStore"]

FEATURE = "idempotency"
# begin() re-reads when the live row it lost to was deleted in between; a few rounds suffice.
_BEGIN_ROUNDS = 5

register_migrations(
    FEATURE,
    [
        Migration(
            1,
            "idempotency records",
            "CREATE TABLE {p}idempotency (record_key TEXT PRIMARY KEY, state TEXT NOT NULL, "
            "fingerprint TEXT NOT NULL, token TEXT NOT NULL, "
            "created_at DOUBLE PRECISION NOT NULL, expires_at DOUBLE PRECISION NOT NULL, "
            "status INTEGER, headers TEXT, body BYTEA, truncated INTEGER NOT NULL DEFAULT 0);"
            "CREATE INDEX {prefix}idempotency_expiry ON {p}idempotency (expires_at);",
        )
    ],
)


class PostgresIdempotencyStore:
    """Idempotency records in PostgreSQL.

    Args:
        config: where the table lives and the connection deadlines.
        clock: returns epoch seconds; used by ``prune()`` without ``now``.
        migrate: create or upgrade the table on first use.
    """

    def __init__(
        self, config: PostgresConfig, *, clock: Clock | None = None, migrate: bool = True
    ) -> None:
        self._db = PostgresDatabase(config, features=[FEATURE], migrate_on_start=migrate)
        self._sql = IdempotencySQL(config.table("idempotency"))
        self._clock: Clock = clock or time.time

    @classmethod
    def from_url(cls, url: str, **options: Any) -> PostgresIdempotencyStore:
        """Create the store from ``postgresql://`` / ``postgres://`` (``?schema=`` and deadlines).

        Args:
            url: the store URL.
            **options: ``clock``, ``migrate``; the rest go to
                :func:`~extapi_kit.stores._postgres.parse_postgres_url`.
        """
        clock = options.pop("clock", None)
        migrate = bool(options.pop("migrate", True))
        return cls(parse_postgres_url(url, **options), clock=clock, migrate=migrate)

    def __repr__(self) -> str:
        return f"PostgresIdempotencyStore({self._db.config!r})"

    async def begin(self, key: str, fingerprint: str, *, now: float, lease: float) -> BeginResult:
        """Insert the in-flight row, or take over an expired one (one atomic statement).

        Args:
            key: the record key.
            fingerprint: the request fingerprint.
            now: the current time.
            lease: lock lease in seconds.
        """
        token = secrets.token_hex(16)
        for _ in range(_BEGIN_ROUNDS):
            got = await self._db.fetchrow(
                self._sql.begin, key, IN_FLIGHT, fingerprint, token, now, now + lease
            )
            if got is not None:
                return BeginResult(acquired=True, token=token)
            row = await self._db.fetchrow(self._sql.select, key)
            if row is not None:
                return BeginResult(acquired=False, existing=row_to_record(row))
        # A key released and re-taken between our two statements, five times over.
        raise StoreUnavailableError("idempotency begin did not settle")  # pragma: no cover

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
        changed = await self._db.execute(
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
        return await self._db.execute(self._sql.release, key, token, IN_FLIGHT) == 1

    async def get(self, key: str) -> IdempotencyRecord | None:
        """Return the record or None.

        Args:
            key: the record key.
        """
        row = await self._db.fetchrow(self._sql.select, key)
        return None if row is None else row_to_record(row)

    async def prune(self, *, now: float | None = None) -> int:
        """Delete expired rows (never a row whose lease is still running).

        Args:
            now: the current time (default: the store clock).
        """
        return await self._db.execute(self._sql.prune, self._clock() if now is None else now)

    async def ping(self) -> bool:
        """Return whether the database answers."""
        return await self._db.ping()

    async def aclose(self) -> None:
        """Close the pool."""
        await self._db.aclose()
