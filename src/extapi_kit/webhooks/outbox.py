"""Publishing: events and their deliveries written durably, including the transactional outbox.

:func:`publish_event` writes through any store (the dispatcher's ``publish`` uses the same
logic). :func:`publish_in_transaction` writes into the application's *own* transaction: a SQLite
connection whose database file holds the webhook tables (point the store at it,
``sqlite:///app.db``), or — awaited — an asyncpg, psycopg 3 or SQLAlchemy async connection or
session on the PostgreSQL database of a ``postgresql://`` webhook store. The event row commits or
rolls back with the app's change — an event is never sent for a change that rolled back, nor lost
for one that committed. The dispatcher picks the committed rows up like any other due delivery.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Coroutine, Iterable, Mapping, Sequence
from typing import Any, overload

from extapi_kit.exceptions import ConfigurationError, NotFoundError
from extapi_kit.webhooks.models import Delivery, Endpoint, Event, new_id
from extapi_kit.webhooks.scoping import (
    Grants,
    audience_allows,
    check_resources,
    covers_all,
    owner_resources,
    resources_from,
)
from extapi_kit.webhooks.store import WebhookStore

__all__ = ["EndpointCache", "publish_event", "publish_in_transaction"]


def build_event(
    type: str,
    data: Any,
    *,
    event_id: str | None,
    now: float,
    resources: Mapping[str, Iterable[Any]] | None = None,
    resource_fields: Mapping[str, str] | None = None,
) -> Event:
    """Validate the arguments of a publish and return the event.

    Args:
        type: the event type.
        data: the payload (a dict).
        event_id: an id of the caller's, or None.
        now: the event timestamp.
        resources: the resources it is about (type -> ids), given by the caller.
        resource_fields: payload field -> resource type, read when ``resources`` is None.
    """
    if not isinstance(type, str) or not type or len(type) > 200:
        raise ConfigurationError("event type must be a non-empty string of at most 200 characters")
    if not isinstance(data, dict):
        raise ConfigurationError("event data must be a JSON object (dict)")
    if resources is not None:
        named = check_resources(resources)
    else:
        named = resources_from(data, resource_fields) if resource_fields else {}
    named = owner_resources(type, data, named)  # Z8: a key event's audience is its owner
    return Event(id=event_id or new_id("evt"), type=type, timestamp=now, data=data, resources=named)


def deliveries_for(
    event: Event,
    endpoints: Sequence[Endpoint],
    *,
    now: float,
    grants: Mapping[str, Sequence[Grants | None]] | None = None,
) -> list[Delivery]:
    """Return one delivery, due now, per enabled endpoint subscribed to the event and allowed it.

    Args:
        event: the event.
        endpoints: every endpoint.
        now: the current epoch time.
        grants: endpoint id -> the grants that must all allow the event (absent: the endpoint's
            own ``grants``).
    """
    resolved = grants or {}
    return [
        Delivery(event_id=event.id, endpoint_id=e.id, next_attempt_at=now, created_at=now)
        for e in endpoints
        if e.enabled
        and e.accepts(event.type)
        and audience_allows(e, event.resources)
        and covers_all(resolved.get(e.id, (e.grants,)), event.resources)
    ]


async def publish_event(
    store: WebhookStore,
    type: str,
    data: dict[str, Any],
    *,
    event_id: str | None = None,
    clock: Callable[[], float] = time.time,
    resources: Mapping[str, Iterable[Any]] | None = None,
) -> Event:
    """Store an event and its deliveries without a dispatcher in this process (a worker sends).

    Endpoints are filtered by their own grants here; the dispatcher that sends checks the
    owning keys' current grants before each attempt.

    Args:
        store: the webhook store.
        type: the event type.
        data: the JSON payload.
        event_id: an id of your own; publishing it twice is a no-op.
        clock: returns epoch seconds.
        resources: the resources the event is about (type -> ids).
    """
    event = build_event(type, data, event_id=event_id, now=clock(), resources=resources)
    deliveries = deliveries_for(event, await store.list_endpoints(), now=event.timestamp)
    if not await store.publish(event, deliveries):
        return await store.get_event(event.id)
    return event


@overload
def publish_in_transaction(
    conn: sqlite3.Connection,
    type: str,
    data: dict[str, Any],
    *,
    event_id: str | None = None,
    clock: Callable[[], float] = time.time,
    resources: Mapping[str, Iterable[Any]] | None = None,
    store: Any = None,
    schema: str | None = None,
    table_prefix: str | None = None,
) -> Event: ...


@overload
def publish_in_transaction(
    conn: Any,
    type: str,
    data: dict[str, Any],
    *,
    event_id: str | None = None,
    clock: Callable[[], float] = time.time,
    resources: Mapping[str, Iterable[Any]] | None = None,
    store: Any = None,
    schema: str | None = None,
    table_prefix: str | None = None,
) -> Coroutine[Any, Any, Event]: ...


def publish_in_transaction(
    conn: Any,
    type: str,
    data: dict[str, Any],
    *,
    event_id: str | None = None,
    clock: Callable[[], float] = time.time,
    resources: Mapping[str, Iterable[Any]] | None = None,
    store: Any = None,
    schema: str | None = None,
    table_prefix: str | None = None,
) -> Event | Coroutine[Any, Any, Event]:
    """Write an event and its deliveries in the caller's open transaction (no commit).

    **SQLite** (``sqlite3.Connection``, called without ``await``): the webhook tables must live in
    ``conn``'s database (the webhook store URL is the app's file); they are created on first use.

    **PostgreSQL** (``await`` it): ``conn`` is the application's asyncpg connection, psycopg 3
    ``AsyncConnection``, or SQLAlchemy ``AsyncConnection`` / ``AsyncSession``, inside its
    transaction; the tables are the PostgreSQL webhook store's (name it with ``store=``, or give
    its ``schema`` / ``table_prefix``). The dispatchers are woken by a ``NOTIFY`` that PostgreSQL
    sends only at commit.

    Either way, commit makes the event deliverable; rollback removes it, and nothing is sent.

    Args:
        conn: the application's connection, inside its transaction.
        type: the event type.
        data: the JSON payload.
        event_id: an id of your own; writing it twice is a no-op.
        clock: returns epoch seconds.
        resources: the resources the event is about (type -> ids).
        store: PostgreSQL: the :class:`~extapi_kit.webhooks.store_postgres.PostgresWebhookStore`
            (or its URL) whose tables to write.
        schema: PostgreSQL: the schema of the tables (default ``public``), when no ``store``.
        table_prefix: PostgreSQL: their prefix (default ``extapi_``), when no ``store``.
    """
    if not isinstance(conn, sqlite3.Connection):
        return _publish_postgres(
            conn, type, data, event_id=event_id, clock=clock, resources=resources,
            config=_pg_config(store, schema, table_prefix),
        )  # fmt: skip
    from extapi_kit.webhooks.store_sqlite import ensure_schema, insert_event, load_endpoints

    if not conn.in_transaction:
        raise ConfigurationError(
            "publish_in_transaction needs an open transaction (execute BEGIN or a write first)"
        )
    current = conn.execute(
        "SELECT 1 FROM pragma_table_info('extapi_webhook_events') WHERE name = 'resources'"
    ).fetchone()
    if current is None:  # no tables yet, or tables from before events named resources
        ensure_schema(conn)
    event = build_event(type, data, event_id=event_id, now=clock(), resources=resources)
    insert_event(conn, event, deliveries_for(event, load_endpoints(conn), now=event.timestamp))
    return event


def _pg_config(store: Any, schema: str | None, table_prefix: str | None) -> Any:
    from extapi_kit.stores._postgres import PostgresConfig, parse_postgres_url

    if isinstance(store, str):
        return parse_postgres_url(store)
    config = getattr(store, "config", None)
    if isinstance(config, PostgresConfig):
        return config
    if store is not None:
        raise ConfigurationError("store= must be a PostgresWebhookStore or a postgresql:// URL")
    return PostgresConfig(
        dsn="postgresql://",
        schema=schema or "public",
        table_prefix="extapi_" if table_prefix is None else table_prefix,
    )


async def _publish_postgres(
    conn: Any,
    type: str,
    data: dict[str, Any],
    *,
    event_id: str | None,
    clock: Callable[[], float],
    resources: Mapping[str, Iterable[Any]] | None,
    config: Any,
) -> Event:
    from extapi_kit.webhooks._pg_outbox import publish_on_connection

    def build(endpoints: list[Endpoint]) -> tuple[Event, list[Delivery]]:
        event = build_event(type, data, event_id=event_id, now=clock(), resources=resources)
        return event, deliveries_for(event, endpoints, now=event.timestamp)

    return await publish_on_connection(conn, config, build)


class EndpointCache:
    """Endpoints read from the store, reused for ``ttl`` seconds (publish and send paths).

    Args:
        store: the webhook store.
        ttl: seconds a read is reused; 0 reads every time.
    """

    def __init__(self, store: WebhookStore, *, ttl: float = 1.0) -> None:
        self._store = store
        self._ttl = ttl
        self._one: dict[str, tuple[float, Endpoint | None]] = {}
        self._all: tuple[float, list[Endpoint]] | None = None

    async def all(self) -> list[Endpoint]:
        """Return every endpoint."""
        now = time.monotonic()
        if self._all is None or self._all[0] <= now:
            endpoints = await self._store.list_endpoints()
            self._all = (now + self._ttl, endpoints)
            for e in endpoints:
                self._one[e.id] = (now + self._ttl, e)
        return self._all[1]

    async def get(self, endpoint_id: str) -> Endpoint | None:
        """Return an endpoint, or None when it does not exist.

        Args:
            endpoint_id: its id.
        """
        now = time.monotonic()
        hit = self._one.get(endpoint_id)
        if hit is not None and hit[0] > now:
            return hit[1]
        try:
            endpoint: Endpoint | None = await self._store.get_endpoint(endpoint_id)
        except NotFoundError:
            endpoint = None
        self._one[endpoint_id] = (now + self._ttl, endpoint)
        return endpoint

    def peek(self, endpoint_id: str) -> Endpoint | None:
        """Return the cached endpoint (even if stale), or None.

        Args:
            endpoint_id: its id.
        """
        hit = self._one.get(endpoint_id)
        return None if hit is None else hit[1]

    def put(self, endpoint: Endpoint) -> None:
        """Replace a cached endpoint after this process changed it.

        Args:
            endpoint: the new version.
        """
        self._one[endpoint.id] = (time.monotonic() + self._ttl, endpoint)
        self._all = None

    def forget(self, endpoint_id: str) -> None:
        """Drop an endpoint from the cache.

        Args:
            endpoint_id: its id.
        """
        self._one.pop(endpoint_id, None)
        self._all = None

    def invalidate(self) -> None:
        """Drop everything (after endpoints were added or changed elsewhere)."""
        self._one.clear()
        self._all = None
