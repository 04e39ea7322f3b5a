"""``postgresql://user@host:5432/db``: usage counters and quotas in PostgreSQL.

The statements are the SQLite store's (:mod:`extapi_kit.usage._sql`): day counters are upserted
in one transaction per batch (with the batch id, so a re-sent batch never counts twice). The quota
check-and-charge is one transaction that seeds missing counters, locks them ``FOR UPDATE`` in
counter order (two processes charging overlapping counters never deadlock), checks every limit and
charges all or none: exact across any number of processes.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Sequence

from extapi_kit.stores._postgres import (
    Migration,
    PostgresConfig,
    PostgresStore,
    pg_sql,
    register_migrations,
)
from extapi_kit.usage._sql import SQLUsageStoreBase, UsageSQL
from extapi_kit.usage.store import Counts, QuotaCheck

__all__ = ["PostgresUsageStore"]

FEATURE = "usage"

register_migrations(
    FEATURE,
    [
        Migration(
            1,
            "usage counters, quotas, marks and batches",
            "CREATE TABLE {p}usage_days (subject TEXT NOT NULL, day TEXT NOT NULL, "
            "field TEXT NOT NULL, n BIGINT NOT NULL, PRIMARY KEY (subject, day, field));"
            "CREATE TABLE {p}usage_quota (counter TEXT PRIMARY KEY, used BIGINT NOT NULL);"
            "CREATE TABLE {p}usage_marks (mark TEXT PRIMARY KEY);"
            "CREATE TABLE {p}usage_batches (id TEXT PRIMARY KEY, at DOUBLE PRECISION NOT NULL);"
            "CREATE INDEX {prefix}usage_days_day ON {p}usage_days (day);",
        )
    ],
)


class PostgresUsageStore(PostgresStore, SQLUsageStoreBase):
    """A :class:`~extapi_kit.usage.store.UsageStore` in PostgreSQL.

    Args:
        config: where the tables live and the connection deadlines.
        migrate: create or upgrade the tables on first use.
    """

    FEATURE = FEATURE

    def __init__(self, config: PostgresConfig, *, migrate: bool = True) -> None:
        super().__init__(config, migrate=migrate)
        self._q = self._db
        sql = self._sql = UsageSQL(config.table("usage"))
        self._add_day = pg_sql(sql.add_day)
        self._mark_batch = pg_sql(sql.mark_batch)
        self._seed = pg_sql(sql.quota_seed)
        self._lock = pg_sql(sql.quota_used + " FOR UPDATE")
        self._charge = pg_sql(sql.quota_charge)

    async def add(self, counts: Counts, *, ttl: int, batch: str | None = None) -> None:
        """Add a batch of increments in one transaction, at most once per ``batch`` id.

        Args:
            counts: ``(subject, day, field) -> n``.
            ttl: retention (pruning is done by :meth:`prune`).
            batch: a unique id recorded in the same transaction; a known id is skipped.
        """
        # Sorted, so two processes upserting overlapping rows lock them in one order.
        rows = sorted((s, d, f, n) for (s, d, f), n in counts.items())
        if not rows:
            return
        batch_id = batch or secrets.token_hex(12)
        async with self._db.transaction() as conn:
            if await conn.execute(self._mark_batch, batch_id, time.time()) == "INSERT 0 1":
                await conn.executemany(self._add_day, rows)

    async def consume(self, checks: Sequence[QuotaCheck], cost: int) -> tuple[bool, list[int]]:
        """Charge ``cost`` to every counter if all stay within their limits (one transaction).

        Args:
            checks: counters and limits.
            cost: units to charge.
        """
        order = sorted({chk.counter for chk in checks})
        async with self._db.transaction() as conn:
            await conn.executemany(self._seed, [(c,) for c in order])
            used_by = {c: int(await conn.fetchval(self._lock, c)) for c in order}
            used = [used_by[chk.counter] for chk in checks]
            if any(used_by[chk.counter] + cost > chk.limit for chk in checks):
                return False, used
            if cost:
                await conn.executemany(self._charge, [(c, cost) for c in order])
        return True, [u + cost for u in used]

    async def aclose(self) -> None:
        """Close the pool."""
        await self._db.aclose()
