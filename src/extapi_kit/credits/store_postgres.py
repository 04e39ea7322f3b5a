"""``postgresql://user@host:5432/db``: credit balances in PostgreSQL.

The spend is one transaction that locks the request's balance rows ``FOR UPDATE`` in subject
order (two processes spending overlapping subjects never deadlock), checks every balance and
charges all or none: exact across any number of processes and hosts. The statements are the
SQLite store's (:mod:`extapi_kit.credits._sql`).
"""

from __future__ import annotations

from collections.abc import Sequence

from extapi_kit.credits._logic import check_change, decide, next_balance
from extapi_kit.credits._sql import CreditSQL, entry_from_row
from extapi_kit.credits.models import CreditEntry, Spend
from extapi_kit.stores._postgres import (
    Migration,
    PostgresConfig,
    PostgresStore,
    pg_sql,
    register_migrations,
)

__all__ = ["PostgresCreditStore"]

FEATURE = "credits"

register_migrations(
    FEATURE,
    [
        Migration(
            1,
            "credit balances and their change log",
            "CREATE TABLE {p}credits_balances (subject TEXT PRIMARY KEY, "
            "remaining BIGINT NOT NULL, exhausted INTEGER NOT NULL DEFAULT 0);"
            "CREATE TABLE {p}credits_log (id BIGSERIAL PRIMARY KEY, "
            "at DOUBLE PRECISION NOT NULL, subject TEXT NOT NULL, action TEXT NOT NULL, "
            "amount BIGINT NOT NULL, before BIGINT, after BIGINT, actor TEXT NOT NULL, "
            "reason TEXT);"
            "CREATE INDEX {prefix}credits_log_subject ON {p}credits_log (subject, at);",
        )
    ],
)


class PostgresCreditStore(PostgresStore):
    """A :class:`~extapi_kit.credits.store.CreditStore` in PostgreSQL.

    Args:
        config: where the tables live and the connection deadlines.
        migrate: create or upgrade the tables on first use.
    """

    FEATURE = FEATURE

    def __init__(self, config: PostgresConfig, *, migrate: bool = True) -> None:
        super().__init__(config, migrate=migrate)
        sql = CreditSQL(config.table("credits"))
        self._get = pg_sql(sql.get)
        self._lock = pg_sql(sql.get + " FOR UPDATE")
        self._charge = pg_sql(sql.charge)
        self._mark = pg_sql(sql.mark)
        self._put = pg_sql(sql.put)
        self._delete = pg_sql(sql.delete)
        self._log = pg_sql(sql.log)
        self._history = pg_sql(sql.history)

    async def spend(self, subjects: Sequence[str], cost: int) -> Spend:
        """Charge ``cost`` to every metered subject, all or nothing (one transaction).

        Args:
            subjects: the subjects.
            cost: credits to charge.
        """
        found: dict[str, tuple[int, bool] | None] = {}
        async with self._db.transaction() as conn:
            for subject in sorted(set(subjects)):
                row = await conn.fetchrow(self._lock, subject)
                found[subject] = None if row is None else (int(row[0]), bool(row[1]))
            rows = [found[s] for s in subjects]
            allowed, balances, marks = decide(rows, cost)
            for subject, row, mark in zip(subjects, rows, marks, strict=True):
                if row is not None and allowed and cost:
                    await conn.execute(self._charge, cost, subject)
                if mark:
                    await conn.execute(self._mark, subject)
        return Spend(allowed, balances, marks)

    async def get(self, subject: str) -> int | None:
        """Return a subject's balance (None: not metered).

        Args:
            subject: the subject.
        """
        async with self._db.connection() as conn:
            row = await conn.fetchrow(self._get, subject)
        return None if row is None else int(row[0])

    async def change(
        self,
        subject: str,
        *,
        action: str,
        amount: int,
        actor: str,
        reason: str | None,
        at: float,
    ) -> CreditEntry:
        """Set, add to or clear a balance and log it (one transaction).

        Args:
            subject: the subject.
            action: ``set``, ``add`` or ``clear``.
            amount: the amount.
            actor: who.
            reason: why.
            at: epoch seconds.
        """
        check_change(action, amount)
        async with self._db.transaction() as conn:
            # A row lock cannot guard a balance that does not exist yet: two concurrent adds to
            # a new subject would both start from 0. The transaction-scoped advisory lock on the
            # subject serialises every change of it.
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", subject)
            row = await conn.fetchrow(self._lock, subject)
            before = None if row is None else int(row[0])
            after = next_balance(action, amount, before)
            if after is None:
                await conn.execute(self._delete, subject)
            else:
                await conn.execute(self._put, subject, after)
            await conn.execute(self._log, at, subject, action, amount, before, after, actor, reason)
        return CreditEntry(at, subject, action, amount, before, after, actor, reason)

    async def history(self, subject: str, limit: int = 20) -> list[CreditEntry]:
        """Return the latest changes, newest first.

        Args:
            subject: the subject.
            limit: how many.
        """
        async with self._db.connection() as conn:
            rows = await conn.fetch(self._history, subject, max(0, limit))
        return [entry_from_row(tuple(r)) for r in rows]

    async def ping(self) -> bool:
        """Return True when the database answers."""
        return await self._db.ping()

    async def aclose(self) -> None:
        """Close the pool."""
        await self._db.aclose()
