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

from extapi_kit._types import Clock
from extapi_kit.exceptions import StoreUnavailableError
from extapi_kit.idempotency._base import IN_FLIGHT, BeginResult
from extapi_kit.idempotency._sql import IdempotencySQL, SQLIdempotencyStoreBase, row_to_record
from extapi_kit.stores._postgres import (
    Migration,
    PostgresConfig,
    PostgresStore,
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


class PostgresIdempotencyStore(PostgresStore, SQLIdempotencyStoreBase):
    """Idempotency records in PostgreSQL.

    Args:
        config: where the table lives and the connection deadlines.
        clock: returns epoch seconds; used by ``prune()`` without ``now``.
        migrate: create or upgrade the table on first use.
    """

    FEATURE = FEATURE
    OWN_OPTIONS = ("clock", "migrate")

    def __init__(
        self, config: PostgresConfig, *, clock: Clock | None = None, migrate: bool = True
    ) -> None:
        super().__init__(config, migrate=migrate)
        self._q = self._db
        self._sql = IdempotencySQL(config.table("idempotency"))
        self._clock: Clock = clock or time.time

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

    async def aclose(self) -> None:
        """Close the pool."""
        await self._db.aclose()
