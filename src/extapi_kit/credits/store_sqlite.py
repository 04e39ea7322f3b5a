"""SQLite credit store: the spend in one ``BEGIN IMMEDIATE`` transaction, exact across processes.

``BEGIN IMMEDIATE`` takes the database's write lock before the balances are read, so two
processes sharing the file can never both spend the last credit. The statements are shared
with PostgreSQL (:mod:`extapi_kit.credits._sql`).
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Sequence
from typing import Any

from extapi_kit.credits._logic import check_change, decide, next_balance
from extapi_kit.credits._sql import CreditSQL, entry_from_row
from extapi_kit.credits.models import CreditEntry, Spend
from extapi_kit.exceptions import ConfigurationError
from extapi_kit.stores._sqlite import SQLiteDatabase, SQLiteStatements, sqlite_path_from_url

__all__ = ["SQLiteCreditStore"]

_PREFIX_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,40}")


class SQLiteCreditStore:
    """A :class:`~extapi_kit.credits.store.CreditStore` in a SQLite file.

    Args:
        path: the database file (created if missing).
        table_prefix: prefix of the two tables.
        busy_timeout: seconds to wait for a lock held by another process.
    """

    def __init__(
        self, path: str, *, table_prefix: str = "extapi_credits", busy_timeout: float = 5.0
    ) -> None:
        if not _PREFIX_RE.fullmatch(table_prefix):
            raise ConfigurationError(f"invalid table prefix {table_prefix!r}")
        self._p = table_prefix
        self._sql = CreditSQL(table_prefix)
        self._db = SQLiteDatabase(path, busy_timeout=busy_timeout)
        self._q = SQLiteStatements(self._db, self._schema)

    @classmethod
    def from_url(cls, url: str, **options: Any) -> SQLiteCreditStore:
        """Create the store from ``sqlite:///relative.db`` or ``sqlite:////abs/path.db``.

        Args:
            url: the URL.
            **options: ``table_prefix``, ``busy_timeout``.
        """
        return cls(sqlite_path_from_url(url), **options)

    def __repr__(self) -> str:
        return f"SQLiteCreditStore({self._db.path!r})"

    def _schema(self, c: sqlite3.Connection) -> None:
        p = self._p
        c.execute(
            f"CREATE TABLE IF NOT EXISTS {p}_balances (subject TEXT PRIMARY KEY, "
            "remaining INTEGER NOT NULL, exhausted INTEGER NOT NULL DEFAULT 0)"
        )
        c.execute(
            f"CREATE TABLE IF NOT EXISTS {p}_log (id INTEGER PRIMARY KEY AUTOINCREMENT, "
            "at REAL NOT NULL, subject TEXT NOT NULL, action TEXT NOT NULL, "
            "amount INTEGER NOT NULL, before INTEGER, after INTEGER, actor TEXT NOT NULL, "
            "reason TEXT)"
        )
        c.execute(f"CREATE INDEX IF NOT EXISTS {p}_log_subject ON {p}_log (subject, at)")

    async def spend(self, subjects: Sequence[str], cost: int) -> Spend:
        """Charge ``cost`` to every metered subject, all or nothing (one transaction).

        Args:
            subjects: the subjects.
            cost: credits to charge.
        """
        sql = self._sql

        def do(c: sqlite3.Connection) -> Spend:
            c.execute("BEGIN IMMEDIATE")
            try:
                rows: list[tuple[int, bool] | None] = []
                for subject in subjects:
                    row = c.execute(sql.get, (subject,)).fetchone()
                    rows.append(None if row is None else (int(row[0]), bool(row[1])))
                allowed, balances, marks = decide(rows, cost)
                for subject, row, mark in zip(subjects, rows, marks, strict=True):
                    if row is not None and allowed and cost:
                        c.execute(sql.charge, (cost, subject))
                    if mark:
                        c.execute(sql.mark, (subject,))
            except BaseException:
                c.execute("ROLLBACK")
                raise
            c.execute("COMMIT")
            return Spend(allowed, balances, marks)

        return await self._q.run(do)

    async def get(self, subject: str) -> int | None:
        """Return a subject's balance (None: not metered).

        Args:
            subject: the subject.
        """
        row = await self._q.fetchrow(self._sql.get, subject)
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
        sql = self._sql

        def do(c: sqlite3.Connection) -> CreditEntry:
            c.execute("BEGIN IMMEDIATE")
            try:
                row = c.execute(sql.get, (subject,)).fetchone()
                before = None if row is None else int(row[0])
                after = next_balance(action, amount, before)
                if after is None:
                    c.execute(sql.delete, (subject,))
                else:
                    c.execute(sql.put, (subject, after))
                entry = CreditEntry(at, subject, action, amount, before, after, actor, reason)
                c.execute(sql.log, (at, subject, action, amount, before, after, actor, reason))
            except BaseException:
                c.execute("ROLLBACK")
                raise
            c.execute("COMMIT")
            return entry

        return await self._q.run(do)

    async def history(self, subject: str, limit: int = 20) -> list[CreditEntry]:
        """Return the latest changes, newest first.

        Args:
            subject: the subject.
            limit: how many.
        """
        rows = await self._q.fetch(self._sql.history, subject, max(0, limit))
        return [entry_from_row(tuple(r)) for r in rows]

    async def ping(self) -> bool:
        """Return True when the database answers."""
        return await self._db.ping()

    async def aclose(self) -> None:
        """Close the connection."""
        await self._db.aclose()
