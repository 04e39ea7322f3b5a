"""The transactional outbox on PostgreSQL: the webhook rows written with the application's own
connection (asyncpg, psycopg 3, or SQLAlchemy ``AsyncConnection`` / ``AsyncSession``).

The statements are :mod:`extapi_kit.webhooks._pg_sql`'s; only how they are executed differs per
driver. The object's type is recognised lazily (by its module), so none of those packages is
imported unless the caller already uses it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from extapi_kit.exceptions import ConfigurationError
from extapi_kit.stores._postgres import PostgresConfig, pg_sql
from extapi_kit.webhooks._pg_sql import WebhookSQL, delivery_columns, event_params
from extapi_kit.webhooks.models import Endpoint, Event

__all__ = ["publish_on_connection"]

Fetch = Callable[[str, Sequence[Any]], Awaitable[list[Sequence[Any]]]]
_READY: set[str] = set()


def _asyncpg_fetch(conn: Any) -> Fetch:
    if not conn.is_in_transaction():
        raise ConfigurationError(
            "publish_in_transaction needs an open transaction (async with conn.transaction())"
        )

    async def fetch(sql: str, args: Sequence[Any]) -> list[Sequence[Any]]:
        return list(await conn.fetch(pg_sql(sql), *args))

    return fetch


def _psycopg_fetch(conn: Any) -> Fetch:
    from psycopg.pq import TransactionStatus

    if conn.autocommit and conn.info.transaction_status == TransactionStatus.IDLE:
        raise ConfigurationError(
            "publish_in_transaction needs an open transaction (async with conn.transaction())"
        )
    # Shared statements contain no literal '%' or '?', so the placeholders map one to one.
    cache: dict[str, str] = {}

    async def fetch(sql: str, args: Sequence[Any]) -> list[Sequence[Any]]:
        text = cache.setdefault(sql, sql.replace("?", "%s"))
        cur = await conn.execute(text, tuple(args))
        return list(await cur.fetchall()) if cur.description is not None else []

    return fetch


def _sqlalchemy_fetch(conn: Any) -> Fetch:
    from sqlalchemy import text

    # AsyncConnection and AsyncSession both begin a transaction on first use (autobegin), and
    # AsyncSession.execute runs in the session's transaction: the rows commit with the app's.
    async def fetch(sql: str, args: Sequence[Any]) -> list[Sequence[Any]]:
        parts = sql.split("?")
        named = parts[0] + "".join(f":p{i}{p}" for i, p in enumerate(parts[1:]))
        result = await conn.execute(text(named), {f"p{i}": a for i, a in enumerate(args)})
        return list(result.fetchall()) if result.returns_rows else []

    return fetch


def driver_fetch(conn: Any) -> Fetch:
    """Return ``fetch(sql, args)`` running ``?``-placeholder SQL on the application's connection.

    Args:
        conn: an asyncpg connection, a psycopg ``AsyncConnection``, or a SQLAlchemy
            ``AsyncConnection`` / ``AsyncSession``.

    Raises:
        ConfigurationError: for any other object, or a connection outside a transaction.
    """
    module = type(conn).__module__.split(".", 1)[0]
    if module == "asyncpg":
        return _asyncpg_fetch(conn)
    if module == "psycopg":
        return _psycopg_fetch(conn)
    if module == "sqlalchemy":
        return _sqlalchemy_fetch(conn)
    raise ConfigurationError(
        "publish_in_transaction takes a sqlite3.Connection, an asyncpg connection, a psycopg"
        f" AsyncConnection or a SQLAlchemy AsyncConnection/AsyncSession, not {type(conn).__name__}"
    )


async def publish_on_connection(
    conn: Any,
    config: PostgresConfig,
    build: Callable[[list[Endpoint]], tuple[Event, list[Any]]],
) -> Event:
    """Write an event and its deliveries with ``conn``, in its open transaction (no commit).

    Args:
        conn: the application's connection or session, inside its transaction.
        config: where the webhook tables live (the store's schema and prefix).
        build: endpoints -> (event, deliveries).

    Raises:
        ConfigurationError: unsupported object, no transaction, or the tables do not exist yet
            (start the store once or run ``extapi-kit db migrate``).
    """
    fetch = driver_fetch(conn)
    sql = WebhookSQL(config)
    where = sql.t("deliveries")
    if where not in _READY:
        # Checked before anything else: a failed statement would abort the app's transaction.
        [(exists,)] = await fetch(sql.tables_exist, (where,))
        if not exists:
            raise ConfigurationError(
                f"the webhook tables do not exist in schema {config.schema!r}: run"
                " 'extapi-kit db migrate' (or start the webhook store once) first"
            )
        _READY.add(where)
    endpoints = [Endpoint.model_validate_json(r[0]) for r in await fetch(sql.endpoints, ())]
    event, deliveries = build(endpoints)
    if not await fetch(sql.insert_event, event_params(event)):
        return event  # the id exists: publishing it twice is a no-op
    if deliveries:
        await fetch(sql.insert_deliveries, delivery_columns(deliveries))
        # NOTIFY is queued in the transaction: sent at commit, dropped with a rollback.
        await fetch(sql.notify, (sql.channel,))
    return event
