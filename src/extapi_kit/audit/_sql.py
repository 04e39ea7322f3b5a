"""The audit sinks' query, written once for SQLite and PostgreSQL (``?`` placeholders).

Both keep one row per record (``seq``, ``id``, ``ts_us``, ``key_id``, ``route``, ``method``,
``status`` and the record as JSON in ``data``) and page newest first by ``(ts_us, seq)``. The page
condition is the one visible difference: PostgreSQL compares the row value ``(ts_us, seq)``, which
its planner reads as a backwards range on the ``(…, ts_us, seq)`` indexes; SQLite spells it out.
Writing (a transaction of ``executemany`` vs one ``unnest`` statement), counting and pruning stay
with each sink.
"""

from __future__ import annotations

import json
from typing import Any, ClassVar

from extapi_kit.audit.record import AuditRecord
from extapi_kit.audit.sink_base import AuditFilter, QueryableSink, split_cursor
from extapi_kit.stores._sql import SQLStatements

__all__ = ["SQLSinkBase", "query_sql"]


def query_sql(
    table: str, flt: AuditFilter, cursor: str | None, *, row_values: bool
) -> tuple[str, list[Any]]:
    """Return the query for one page of ``flt`` after ``cursor``, and its parameters.

    Args:
        table: the (qualified) table name.
        flt: the filter.
        cursor: the previous page's cursor (``"<ts_us>.<seq>"``) or None.
        row_values: compare ``(ts_us, seq)`` as a row value (PostgreSQL).
    """
    where: list[str] = []
    params: list[Any] = []
    for column, value in (
        ("key_id", flt.key_id),
        ("route", flt.route),
        ("method", flt.method),
        ("status", flt.status),
    ):
        if value is not None:
            where.append(f"{column} = ?")
            params.append(value)
    if flt.since_us is not None:
        where.append("ts_us >= ?")
        params.append(flt.since_us)
    if flt.until_us is not None:
        where.append("ts_us < ?")
        params.append(flt.until_us)
    after = split_cursor(cursor)
    if after is not None and row_values:
        where.append("(ts_us, seq) < (?, ?)")
        params.extend(after)
    elif after is not None:
        where.append("(ts_us < ? OR (ts_us = ? AND seq < ?))")
        params.extend((after[0], after[0], after[1]))
    sql = f"SELECT seq, ts_us, data FROM {table}"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY ts_us DESC, seq DESC LIMIT ?"
    params.append(flt.limit + 1)
    return sql, params


class SQLSinkBase(QueryableSink):
    """The query both SQL sinks run alike: one page, newest first, and the next cursor."""

    #: compare ``(ts_us, seq)`` as a row value in the page condition (PostgreSQL).
    ROW_VALUES: ClassVar[bool] = False
    _q: SQLStatements
    _table: str

    async def _query(
        self, flt: AuditFilter, cursor: str | None
    ) -> tuple[list[AuditRecord], str | None]:
        sql, params = query_sql(self._table, flt, cursor, row_values=self.ROW_VALUES)
        rows = await self._q.fetch(sql, *params)
        records = [AuditRecord.from_dict(json.loads(r["data"])) for r in rows[: flt.limit]]
        next_cursor = None
        if len(rows) > flt.limit:
            last = rows[flt.limit - 1]
            next_cursor = f"{last['ts_us']}.{last['seq']}"
        return records, next_cursor
