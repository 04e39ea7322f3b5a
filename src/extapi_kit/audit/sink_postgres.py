"""``postgresql://user@host:5432/db``: the audit trail in PostgreSQL, for many hosts and history.

A batch is one statement and one round trip: the rows travel as typed arrays and are expanded by
``unnest`` into ``INSERT ... ON CONFLICT (id) DO NOTHING``, so a batch re-sent after a spill never
stores a record twice (de-duplication by record id, like the SQLite sink). A failed batch raises
:class:`~extapi_kit.exceptions.StoreUnavailableError`; the :class:`AuditWriter` spills it to its
local file and re-sends it once the database answers again (DESIGN §6: no loss).

Indexes serve the admin queries at tens of millions of rows (``bench/audit_10m.py`` measures them):
``(ts_us, seq)`` for the time range and paging, ``(key_id, ts_us, seq)`` and
``(route, ts_us, seq)`` for the per-key and per-route views; every page is an index range read
walked backwards from the cursor, never a sort of the matching set. :meth:`PostgresSink.prune`
deletes in bounded chunks, so pruning a large backlog never holds one long statement or lock.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from extapi_kit._types import Clock
from extapi_kit.audit._sql import SQLSinkBase
from extapi_kit.audit.record import AuditRecord
from extapi_kit.audit.sink_base import cutoff_us
from extapi_kit.stores._postgres import (
    Migration,
    PostgresConfig,
    PostgresStore,
    register_migrations,
    rowcount,
)

__all__ = ["PostgresSink"]

FEATURE = "audit"
PRUNE_CHUNK = 20_000

register_migrations(
    FEATURE,
    [
        Migration(
            1,
            "audit records",
            "CREATE TABLE {p}audit_records (seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,"
            " id TEXT NOT NULL, ts_us BIGINT NOT NULL, key_id TEXT, route TEXT,"
            " method TEXT NOT NULL, status INTEGER NOT NULL, data TEXT NOT NULL);"
            "CREATE UNIQUE INDEX {prefix}audit_records_id ON {p}audit_records (id);"
            "CREATE INDEX {prefix}audit_records_ts ON {p}audit_records (ts_us, seq);"
            "CREATE INDEX {prefix}audit_records_key_ts ON {p}audit_records (key_id, ts_us, seq);"
            "CREATE INDEX {prefix}audit_records_route_ts ON {p}audit_records (route, ts_us, seq);",
        )
    ],
)


def _columns(records: Sequence[AuditRecord]) -> list[list[Any]]:
    cols: list[list[Any]] = [[], [], [], [], [], [], []]
    for rec in records:
        for col, value in zip(
            cols,
            (
                rec.id,
                rec.timestamp_us,
                rec.key_id,
                rec.route,
                rec.method,
                rec.status,
                rec.to_json(),
            ),
            strict=True,
        ):
            col.append(value)
    return cols


class PostgresSink(PostgresStore, SQLSinkBase):
    """Store audit records in PostgreSQL (``<schema>.<prefix>audit_records``).

    Args:
        config: where the table lives and the connection deadlines
            (:func:`~extapi_kit.stores._postgres.parse_postgres_url`).
        migrate: create or upgrade the table on first use (False when ``extapi-kit db migrate``
            runs ahead of deploys).
        clock: epoch-seconds clock used by :meth:`prune` with an age.
    """

    FEATURE = FEATURE
    OWN_OPTIONS = ("migrate", "clock")
    ROW_VALUES = True

    def __init__(
        self, config: PostgresConfig, *, migrate: bool = True, clock: Clock = time.time
    ) -> None:
        super().__init__(config, migrate=migrate)
        self._q = self._db
        self._clock = clock
        t = config.table("audit_records")
        self._table = t
        # unnest() turns the column arrays back into rows: one statement for the whole batch.
        self._insert = (
            f"INSERT INTO {t} (id, ts_us, key_id, route, method, status, data)"
            " SELECT * FROM unnest($1::text[], $2::bigint[], $3::text[], $4::text[],"
            " $5::text[], $6::int[], $7::text[]) ON CONFLICT (id) DO NOTHING"
        )

    async def write_batch(self, records: Sequence[AuditRecord]) -> None:
        """Insert a batch in one statement (all or nothing); records already stored are skipped.

        Args:
            records: the records.
        """
        if not records:
            return
        cols = _columns(records)
        async with self._db.connection() as conn:
            await conn.execute(self._insert, *cols)

    async def count(self) -> int:
        """Return the number of stored records."""
        async with self._db.connection() as conn:
            return int(await conn.fetchval(f"SELECT count(*) FROM {self._table}"))

    async def prune(self, older_than: datetime | timedelta | float) -> int:
        """Delete records that arrived before the cut-off; return how many.

        Deletes in chunks of ``PRUNE_CHUNK`` rows (each its own short statement), oldest first.

        Args:
            older_than: a datetime, or an age (timedelta or seconds) before now.
        """
        cut = cutoff_us(older_than, self._clock())
        sql = (
            f"DELETE FROM {self._table} WHERE seq IN (SELECT seq FROM {self._table}"
            f" WHERE ts_us < $1 ORDER BY ts_us LIMIT {PRUNE_CHUNK})"
        )
        total = 0
        while True:
            async with self._db.connection() as conn:
                done = rowcount(await conn.execute(sql, cut))
            total += done
            if done < PRUNE_CHUNK:
                return total

    async def ping(self) -> bool:
        """Return True when the database answers."""
        return await self._db.ping()

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._db.aclose()
