"""The webhook tables in PostgreSQL and the statements the store and the outbox share.

Statements use ``?`` placeholders and ``CAST(? AS type[])`` (never ``::``), so the same text runs
on asyncpg (renumbered by :func:`~extapi_kit.stores._postgres.pg_sql`), psycopg (``%s``) and
SQLAlchemy ``text()`` (``:pN``) — the transactional outbox runs them on the application's own
connection, whichever driver it is.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from extapi_kit.stores._postgres import Migration, PostgresConfig, register_migrations
from extapi_kit.webhooks.models import Delivery, DeliveryStatus, Event

FEATURE = "webhooks"

register_migrations(
    FEATURE,
    [
        Migration(
            1,
            "webhook outbox",
            "CREATE TABLE {p}webhook_endpoints (id TEXT PRIMARY KEY,"
            " created_at DOUBLE PRECISION NOT NULL, doc TEXT NOT NULL);"
            "CREATE TABLE {p}webhook_events (id TEXT PRIMARY KEY, type TEXT NOT NULL,"
            " ts DOUBLE PRECISION NOT NULL, data TEXT NOT NULL, resources TEXT,"
            " version TEXT NOT NULL DEFAULT '1');"
            "CREATE INDEX {prefix}webhook_events_type ON {p}webhook_events (type, ts);"
            "CREATE INDEX {prefix}webhook_events_ts ON {p}webhook_events (ts);"
            "CREATE TABLE {p}webhook_deliveries (seq BIGINT GENERATED ALWAYS AS IDENTITY,"
            " id TEXT PRIMARY KEY, event_id TEXT NOT NULL, endpoint_id TEXT NOT NULL,"
            " status TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,"
            " next_attempt_at DOUBLE PRECISION NOT NULL, lease_until DOUBLE PRECISION,"
            " lease_owner TEXT, created_at DOUBLE PRECISION NOT NULL, last_error TEXT,"
            " due_at DOUBLE PRECISION NOT NULL);"
            # What a claim probes: one endpoint's due work, and nothing finished.
            "CREATE INDEX {prefix}webhook_deliveries_ready ON {p}webhook_deliveries"
            " (endpoint_id, due_at) WHERE status IN ('pending', 'delivering');"
            "CREATE INDEX {prefix}webhook_deliveries_ep ON {p}webhook_deliveries"
            " (endpoint_id, created_at, seq);"
            "CREATE INDEX {prefix}webhook_deliveries_created ON {p}webhook_deliveries"
            " (created_at, seq);"
            "CREATE TABLE {p}webhook_attempts (seq BIGINT GENERATED ALWAYS AS IDENTITY,"
            " delivery_id TEXT NOT NULL, attempted_at DOUBLE PRECISION NOT NULL,"
            " duration DOUBLE PRECISION NOT NULL, status INTEGER,"
            " response_excerpt TEXT NOT NULL, error TEXT, manual BOOLEAN NOT NULL DEFAULT false);"
            "CREATE INDEX {prefix}webhook_attempts_d ON {p}webhook_attempts"
            " (delivery_id, attempted_at, seq);",
        ),
        Migration(
            2,
            "test pings recorded as deliveries",
            "ALTER TABLE {p}webhook_deliveries ADD COLUMN test BOOLEAN NOT NULL DEFAULT false;",
        ),
    ],
)

DCOLS = (
    "id",
    "event_id",
    "endpoint_id",
    "status",
    "attempts",
    "next_attempt_at",
    "lease_until",
    "lease_owner",
    "created_at",
    "last_error",
    "test",
)
_DTYPES = (
    "text", "text", "text", "text", "int", "float8", "float8", "text", "float8", "text", "bool",
)  # fmt: skip
ECOLS = ("id", "type", "ts", "data", "resources", "version")


@dataclass(frozen=True, slots=True)
class WebhookSQL:
    """Table names and statements for one schema and prefix.

    Args:
        config: where the tables live.
    """

    config: PostgresConfig

    def t(self, name: str) -> str:
        """Return a qualified table name (``endpoints``, ``events``, ``deliveries``, ``attempts``).

        Args:
            name: the short name.
        """
        return self.config.table(f"webhook_{name}")

    @property
    def channel(self) -> str:
        """The ``LISTEN/NOTIFY`` channel a publish announces new due deliveries on."""
        return f"{self.config.channel}webhooks"

    @property
    def insert_event(self) -> str:
        """Insert an event unless its id exists; returns a row only when it was inserted."""
        return (
            f"INSERT INTO {self.t('events')} ({', '.join(ECOLS)}) VALUES (?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (id) DO NOTHING RETURNING id"
        )

    @property
    def insert_deliveries(self) -> str:
        """Insert deliveries from column arrays (see :func:`delivery_columns`)."""
        arrays = ", ".join(f"CAST(? AS {t}[])" for t in (*_DTYPES, "float8"))
        return (
            f"INSERT INTO {self.t('deliveries')} ({', '.join(DCOLS)}, due_at)"
            f" SELECT * FROM unnest({arrays})"
        )

    @property
    def notify(self) -> str:
        """Wake the dispatchers (sent at commit, never for a rolled-back transaction)."""
        return "SELECT pg_notify(?, '')"

    @property
    def endpoints(self) -> str:
        """Every endpoint document, oldest first."""
        return f"SELECT doc FROM {self.t('endpoints')} ORDER BY created_at, id"

    @property
    def tables_exist(self) -> str:
        """One row: whether the deliveries table exists."""
        return "SELECT to_regclass(?) IS NOT NULL"


def event_params(event: Event) -> tuple[Any, ...]:
    """Return the parameters of :attr:`WebhookSQL.insert_event`.

    Args:
        event: the event.
    """
    return (
        event.id,
        event.type,
        event.timestamp,
        json.dumps(event.data, separators=(",", ":")),
        json.dumps(event.resources, separators=(",", ":")) if event.resources else None,
        event.version,
    )


def delivery_columns(deliveries: Sequence[Delivery]) -> list[list[Any]]:
    """Return the column arrays of :attr:`WebhookSQL.insert_deliveries`.

    Args:
        deliveries: the deliveries.
    """
    cols: list[list[Any]] = [[] for _ in range(len(DCOLS) + 1)]
    for d in deliveries:
        due = d.lease_until if d.status == DeliveryStatus.DELIVERING else d.next_attempt_at
        row = (d.id, d.event_id, d.endpoint_id, d.status.value, d.attempts, d.next_attempt_at,
               d.lease_until, d.lease_owner, d.created_at, d.last_error, d.test, due)  # fmt: skip
        for col, value in zip(cols, row, strict=True):
            col.append(value)
    return cols


def row_delivery(row: Any) -> Delivery:
    """Build a delivery from a row whose first columns are :data:`DCOLS`.

    Args:
        row: the row.
    """
    return Delivery.model_validate({k: row[i] for i, k in enumerate(DCOLS)})


def row_event(row: Any, offset: int = 0) -> Event:
    """Build an event from a row holding :data:`ECOLS` from column ``offset``.

    Args:
        row: the row.
        offset: where the event columns start.
    """
    resources = row[offset + 4]
    return Event(
        id=row[offset],
        type=row[offset + 1],
        timestamp=row[offset + 2],
        data=json.loads(row[offset + 3]),
        resources=json.loads(resources) if resources else {},
        version=row[offset + 5] or "1",
    )
