"""The listing queries the SQLite and PostgreSQL webhook stores build alike (``?`` placeholders).

The two schemas name a few columns differently (SQLite's ``timestamp`` and ``rowid`` are
PostgreSQL's ``ts`` and ``seq``), so each store passes its own column names and order; the shape
of a listing (a time floor, optional equality filters, an order and a limit) is written once here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from extapi_kit.webhooks.models import DeliveryStatus

__all__ = ["delivery_filters", "listing_sql"]


def listing_sql(
    select: str,
    *,
    since_column: str,
    since: float | None,
    filters: Sequence[tuple[str, Any]],
    order: str,
    limit: int,
) -> tuple[str, list[Any]]:
    """Return ``<select> WHERE <since_column> >= ? [AND <column> = ?]... ORDER BY ... LIMIT ?``.

    Args:
        select: ``SELECT <columns> FROM <table>``.
        since_column: the time column of the floor.
        since: the floor (None: everything).
        filters: ``(column, value)`` pairs; a None value is no filter.
        order: the ``ORDER BY`` list.
        limit: the most rows.
    """
    sql = f"{select} WHERE {since_column} >= ?"
    params: list[Any] = [since if since is not None else float("-inf")]
    for column, value in filters:
        if value is not None:
            sql += f" AND {column} = ?"
            params.append(value)
    params.append(limit)
    return f"{sql} ORDER BY {order} LIMIT ?", params


def delivery_filters(
    endpoint_id: str | None, status: DeliveryStatus | None
) -> list[tuple[str, Any]]:
    """Return the :func:`listing_sql` filters of ``list_deliveries``.

    Args:
        endpoint_id: only this endpoint's deliveries.
        status: only deliveries in this status.
    """
    return [
        ("endpoint_id", endpoint_id),
        ("status", None if status is None else DeliveryStatus(status).value),
    ]
