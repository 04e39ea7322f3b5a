"""``sqlite:///file.db`` webhook store: the outbox as tables with a lease column, in WAL mode.

Claiming is one ``UPDATE ... WHERE id IN (SELECT ... LIMIT n) RETURNING`` inside ``BEGIN
IMMEDIATE``, so several dispatcher processes on one file never take the same due delivery. A
``delivering`` row's ``due_at`` is its lease expiry, so an expired lease is simply due again.

The tables can live in the application's own database file: :func:`publish_in_transaction` in
:mod:`extapi_kit.webhooks.outbox` writes an event into the app's transaction (the transactional
outbox), and the dispatcher picks the rows up like any other.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Collection, Sequence
from typing import Any

from extapi_kit.exceptions import NotFoundError
from extapi_kit.stores._sqlite import SQLiteDatabase, sqlite_path_from_url
from extapi_kit.webhooks._finish import FinishBatcher
from extapi_kit.webhooks._sql import delivery_filters, listing_sql
from extapi_kit.webhooks.models import Attempt, Delivery, DeliveryStatus, Endpoint, Event
from extapi_kit.webhooks.store import Claimed

__all__ = ["SQLiteWebhookStore", "ensure_schema", "insert_event"]

_P = "extapi_webhook"
_EVENT_SELECT = f"SELECT id, type, timestamp, data, resources, version FROM {_P}_events"
SCHEMA = f"""
CREATE TABLE IF NOT EXISTS {_P}_endpoints (id TEXT PRIMARY KEY, created_at REAL, doc TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS {_P}_events (
    id TEXT PRIMARY KEY, type TEXT NOT NULL, timestamp REAL NOT NULL, data TEXT NOT NULL,
    resources TEXT, version TEXT);
CREATE INDEX IF NOT EXISTS {_P}_events_type ON {_P}_events(type, timestamp);
CREATE INDEX IF NOT EXISTS {_P}_events_ts ON {_P}_events(timestamp);
CREATE TABLE IF NOT EXISTS {_P}_deliveries (
    id TEXT PRIMARY KEY, event_id TEXT NOT NULL, endpoint_id TEXT NOT NULL, status TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0, next_attempt_at REAL NOT NULL, lease_until REAL,
    lease_owner TEXT, created_at REAL NOT NULL, last_error TEXT, due_at REAL NOT NULL,
    test INTEGER NOT NULL DEFAULT 0);
CREATE INDEX IF NOT EXISTS {_P}_deliveries_due ON {_P}_deliveries(status, next_attempt_at);
CREATE INDEX IF NOT EXISTS {_P}_deliveries_ready ON {_P}_deliveries(endpoint_id, due_at)
    WHERE status IN ('pending', 'delivering');
CREATE INDEX IF NOT EXISTS {_P}_deliveries_ep ON {_P}_deliveries(endpoint_id, created_at);
CREATE TABLE IF NOT EXISTS {_P}_attempts (
    delivery_id TEXT NOT NULL, time REAL NOT NULL, duration REAL NOT NULL, status INTEGER,
    response_excerpt TEXT NOT NULL, error TEXT, manual INTEGER NOT NULL DEFAULT 0);
CREATE INDEX IF NOT EXISTS {_P}_attempts_d ON {_P}_attempts(delivery_id, time);
"""
_DCOLS = (
    "id, event_id, endpoint_id, status, attempts, next_attempt_at, lease_until, lease_owner,"
    " created_at, last_error, test"
)


def ensure_schema(conn: sqlite3.Connection) -> None:
    """Create the webhook tables in ``conn``'s database if they do not exist.

    Args:
        conn: an open connection (the app's own, for the transactional outbox).
    """
    # One statement at a time: executescript() would COMMIT the caller's open transaction.
    for statement in SCHEMA.split(";"):
        if statement.strip():
            conn.execute(statement)
    columns = {r[1] for r in conn.execute(f"PRAGMA table_info({_P}_events)").fetchall()}
    if "resources" not in columns:  # a database written before events named their resources
        conn.execute(f"ALTER TABLE {_P}_events ADD COLUMN resources TEXT")
    if "version" not in columns:  # a database written before events carried their version
        conn.execute(f"ALTER TABLE {_P}_events ADD COLUMN version TEXT")
    delivery_columns = {
        r[1] for r in conn.execute(f"PRAGMA table_info({_P}_deliveries)").fetchall()
    }
    if "test" not in delivery_columns:  # a database written before test pings were recorded
        conn.execute(f"ALTER TABLE {_P}_deliveries ADD COLUMN test INTEGER NOT NULL DEFAULT 0")


def _delivery(row: sqlite3.Row | tuple[Any, ...]) -> Delivery:
    keys = [c.strip() for c in _DCOLS.split(",")]
    return Delivery.model_validate(dict(zip(keys, tuple(row)[: len(keys)], strict=True)))


def _event(row: sqlite3.Row | tuple[Any, ...]) -> Event:
    resources = json.loads(row[4]) if row[4] else {}
    return Event(
        id=row[0],
        type=row[1],
        timestamp=row[2],
        data=json.loads(row[3]),
        resources=resources,
        version=row[5] or "1",
    )


def _insert_deliveries(conn: sqlite3.Connection, deliveries: Sequence[Delivery]) -> None:
    conn.executemany(
        f"INSERT INTO {_P}_deliveries ({_DCOLS}, due_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
        [
            (d.id, d.event_id, d.endpoint_id, d.status.value, d.attempts, d.next_attempt_at,
             d.lease_until, d.lease_owner, d.created_at, d.last_error, int(d.test),
             d.lease_until if d.status == DeliveryStatus.DELIVERING else d.next_attempt_at)
            for d in deliveries
        ],
    )  # fmt: skip


def insert_event(conn: sqlite3.Connection, event: Event, deliveries: Sequence[Delivery]) -> bool:
    """Insert an event and its deliveries in ``conn``'s current transaction; False if it exists.

    Args:
        conn: the connection (its transaction is the caller's).
        event: the event.
        deliveries: its deliveries.
    """
    cur = conn.execute(
        f"INSERT OR IGNORE INTO {_P}_events (id, type, timestamp, data, resources, version)"
        " VALUES (?,?,?,?,?,?)",
        (
            event.id,
            event.type,
            event.timestamp,
            json.dumps(event.data, separators=(",", ":")),
            json.dumps(event.resources, separators=(",", ":")) if event.resources else None,
            event.version,
        ),
    )
    if cur.rowcount == 0:
        return False
    _insert_deliveries(conn, deliveries)
    return True


def load_endpoints(conn: sqlite3.Connection) -> list[Endpoint]:
    """Return every endpoint stored in ``conn``'s database.

    Args:
        conn: the connection.
    """
    rows = conn.execute(f"SELECT doc FROM {_P}_endpoints ORDER BY created_at").fetchall()
    return [Endpoint.model_validate_json(r[0]) for r in rows]


def _finish_one(
    c: sqlite3.Connection,
    delivery: Delivery,
    attempt: Attempt | None,
    owner: str,
    status: DeliveryStatus,
    next_attempt_at: float | None,
) -> None:
    """Write one attempt and end its lease (inside the caller's transaction)."""
    bump = 0
    last_error = None
    if attempt is not None:
        bump = 1
        c.execute(
            f"INSERT INTO {_P}_attempts VALUES (?,?,?,?,?,?,?)",
            (attempt.delivery_id, attempt.time, attempt.duration, attempt.status,
             attempt.response_excerpt, attempt.error, int(attempt.manual)),
        )  # fmt: skip
        ok = attempt.status is not None and 200 <= attempt.status < 300
        last_error = attempt.error or (None if ok else str(attempt.status))
    cur = c.execute(
        f"UPDATE {_P}_deliveries SET status = ?, attempts = attempts + ?, last_error ="
        " coalesce(?, CASE WHEN ? THEN last_error END), next_attempt_at ="
        " coalesce(?, next_attempt_at), due_at = coalesce(?, next_attempt_at),"
        " lease_owner = NULL, lease_until = NULL"
        " WHERE id = ? AND status = 'delivering' AND lease_owner = ?",
        (status.value, bump, last_error, attempt is None, next_attempt_at,
         next_attempt_at, delivery.id, owner),
    )  # fmt: skip
    if cur.rowcount == 0 and bump:
        # Lease lost to another worker: count the attempt, leave the state to its owner.
        c.execute(
            f"UPDATE {_P}_deliveries SET attempts = attempts + 1 WHERE id = ?",
            (delivery.id,),
        )


# What one finish() hands to the batch write: delivery, attempt, owner, status, next attempt.
_Finish = tuple[Delivery, Attempt | None, str, DeliveryStatus, float | None]


class SQLiteWebhookStore:
    """A :class:`~extapi_kit.webhooks.store.WebhookStore` in one SQLite file.

    Args:
        path: the database file (the application's own file works).
        busy_timeout: seconds to wait for another process's write lock.
    """

    def __init__(self, path: str, *, busy_timeout: float = 5.0) -> None:
        self._db = SQLiteDatabase(path, busy_timeout=busy_timeout)
        self._ready = False
        self._rr = 0
        self._finishing = FinishBatcher[_Finish](self._write_finishes)

    @classmethod
    def from_url(cls, url: str, **options: Any) -> SQLiteWebhookStore:
        """Create the store from ``sqlite:///relative.db`` or ``sqlite:////abs/path.db``.

        Args:
            url: the URL.
            **options: passed to the constructor.
        """
        return cls(sqlite_path_from_url(url), **options)

    def __repr__(self) -> str:
        return f"SQLiteWebhookStore({self._db.path!r})"

    async def _run(self, fn: Any, *, write: bool = False) -> Any:
        def call(conn: sqlite3.Connection) -> Any:
            if not self._ready:
                ensure_schema(conn)
                self._ready = True
            if not write:
                return fn(conn)
            conn.execute("BEGIN IMMEDIATE")
            try:
                result = fn(conn)
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
            return result

        return await self._db.run(call)

    async def add_endpoint(self, endpoint: Endpoint) -> None:
        await self._run(
            lambda c: c.execute(
                f"INSERT INTO {_P}_endpoints (id, created_at, doc) VALUES (?,?,?)",
                (endpoint.id, endpoint.created_at, endpoint.model_dump_json()),
            )
        )

    async def get_endpoint(self, endpoint_id: str) -> Endpoint:
        row = await self._run(
            lambda c: c.execute(
                f"SELECT doc FROM {_P}_endpoints WHERE id = ?", (endpoint_id,)
            ).fetchone()
        )
        if row is None:
            raise NotFoundError(f"no endpoint {endpoint_id!r}")
        return Endpoint.model_validate_json(row[0])

    async def list_endpoints(self) -> list[Endpoint]:
        result: list[Endpoint] = await self._run(load_endpoints)
        return result

    async def update_endpoint(self, endpoint_id: str, **changes: Any) -> Endpoint:
        def do(c: sqlite3.Connection) -> Endpoint:
            row = c.execute(
                f"SELECT doc FROM {_P}_endpoints WHERE id = ?", (endpoint_id,)
            ).fetchone()
            if row is None:
                raise NotFoundError(f"no endpoint {endpoint_id!r}")
            current = Endpoint.model_validate_json(row[0])
            updated = Endpoint.model_validate({**current.model_dump(), **changes})
            c.execute(
                f"UPDATE {_P}_endpoints SET doc = ? WHERE id = ?",
                (updated.model_dump_json(), endpoint_id),
            )
            return updated

        result: Endpoint = await self._run(do, write=True)
        return result

    async def remove_endpoint(self, endpoint_id: str) -> None:
        def do(c: sqlite3.Connection) -> None:
            if c.execute(f"DELETE FROM {_P}_endpoints WHERE id = ?", (endpoint_id,)).rowcount == 0:
                raise NotFoundError(f"no endpoint {endpoint_id!r}")
            c.execute(
                f"UPDATE {_P}_deliveries SET status = 'cancelled', lease_owner = NULL "
                "WHERE endpoint_id = ? AND status IN ('pending', 'delivering')",
                (endpoint_id,),
            )

        await self._run(do, write=True)

    async def publish(self, event: Event, deliveries: Sequence[Delivery]) -> bool:
        result: bool = await self._run(lambda c: insert_event(c, event, deliveries), write=True)
        return result

    async def add_deliveries(self, deliveries: Sequence[Delivery]) -> None:
        await self._run(lambda c: _insert_deliveries(c, deliveries), write=True)

    async def get_event(self, event_id: str) -> Event:
        row = await self._run(
            lambda c: c.execute(
                f"{_EVENT_SELECT} WHERE id = ?",
                (event_id,),
            ).fetchone()
        )
        if row is None:
            raise NotFoundError(f"no event {event_id!r}")
        return _event(row)

    async def list_events(
        self, *, type: str | None = None, since: float | None = None, limit: int = 1000
    ) -> list[Event]:
        sql, params = listing_sql(
            _EVENT_SELECT,
            since_column="timestamp",
            since=since,
            filters=[("type", type)],
            order="timestamp",
            limit=limit,
        )
        rows = await self._run(lambda c: c.execute(sql, params).fetchall())
        return [_event(r) for r in rows]

    async def claim(
        self,
        *,
        owner: str,
        now: float,
        lease_seconds: float,
        limit: int,
        exclude: Collection[str] = (),
    ) -> list[Claimed]:
        until = now + lease_seconds
        skip = set(exclude)
        # Per endpoint (an index probe each), starting at a rotating offset: a backlog on one
        # endpoint never hides another's due deliveries, and no claim scans the whole backlog.
        sql = (
            f"UPDATE {_P}_deliveries SET status = 'delivering', lease_owner = ?, lease_until = ?,"
            f" due_at = ? WHERE id IN (SELECT id FROM {_P}_deliveries WHERE endpoint_id = ?"
            " AND status IN ('pending', 'delivering') AND due_at <= ? ORDER BY due_at LIMIT ?)"
            f" RETURNING {_DCOLS}"
        )

        def do(c: sqlite3.Connection) -> list[Claimed]:
            eps = [r[0] for r in c.execute(f"SELECT id FROM {_P}_endpoints ORDER BY created_at")]
            eps = [e for e in eps if e not in skip]
            if not eps:
                return []
            self._rr = (self._rr + 1) % len(eps)
            eps = eps[self._rr :] + eps[: self._rr]
            share = limit // len(eps) + 1
            rows: list[sqlite3.Row] = []
            for ep in eps:
                if len(rows) >= limit:
                    break
                take = min(share, limit - len(rows))
                rows += c.execute(sql, [owner, until, until, ep, now, take]).fetchall()
            if not rows:
                return []
            leased = [_delivery(r) for r in rows]
            ids = sorted({d.event_id for d in leased})
            events: dict[str, Event] = {}
            for i in range(0, len(ids), 500):
                chunk = ids[i : i + 500]
                for r in c.execute(
                    f"{_EVENT_SELECT} WHERE id IN ({','.join('?' * len(chunk))})",
                    chunk,
                ):
                    events[r[0]] = _event(r)
            leased.sort(key=lambda d: d.next_attempt_at)
            return [(d, events[d.event_id]) for d in leased]

        result: list[Claimed] = await self._run(do, write=True)
        return result

    async def finish(
        self,
        delivery: Delivery,
        attempt: Attempt | None,
        *,
        owner: str,
        status: DeliveryStatus,
        next_attempt_at: float | None = None,
    ) -> None:
        # Finishes arriving while the database thread is busy are written in one transaction:
        # one thread hop and one commit for a batch instead of one per attempt.
        await self._finishing.submit((delivery, attempt, owner, status, next_attempt_at))

    async def _write_finishes(self, batch: list[_Finish]) -> None:
        def write(c: sqlite3.Connection) -> None:
            for item in batch:
                _finish_one(c, *item)

        await self._run(write, write=True)

    async def release(self, deliveries: Sequence[Delivery], *, owner: str, now: float) -> None:
        await self._run(
            lambda c: c.executemany(
                f"UPDATE {_P}_deliveries SET status = 'pending', lease_owner = NULL,"
                " lease_until = NULL, next_attempt_at = ?, due_at = ?"
                " WHERE id = ? AND status = 'delivering' AND lease_owner = ?",
                [(now, now, d.id, owner) for d in deliveries],
            ),
            write=True,
        )

    async def requeue(self, delivery_id: str, *, at: float) -> Delivery:
        def do(c: sqlite3.Connection) -> Delivery:
            row = c.execute(
                f"UPDATE {_P}_deliveries SET status = 'pending', lease_owner = NULL,"
                " lease_until = NULL, next_attempt_at = ?, due_at = ? WHERE id = ?"
                f" RETURNING {_DCOLS}",
                (at, at, delivery_id),
            ).fetchone()
            if row is None:
                raise NotFoundError(f"no delivery {delivery_id!r}")
            return _delivery(row)

        result: Delivery = await self._run(do, write=True)
        return result

    async def get_delivery(self, delivery_id: str) -> Delivery:
        row = await self._run(
            lambda c: c.execute(
                f"SELECT {_DCOLS} FROM {_P}_deliveries WHERE id = ?", (delivery_id,)
            ).fetchone()
        )
        if row is None:
            raise NotFoundError(f"no delivery {delivery_id!r}")
        return _delivery(row)

    async def list_deliveries(
        self,
        *,
        endpoint_id: str | None = None,
        status: DeliveryStatus | None = None,
        since: float | None = None,
        limit: int = 1000,
    ) -> list[Delivery]:
        sql, params = listing_sql(
            f"SELECT {_DCOLS} FROM {_P}_deliveries",
            since_column="created_at",
            since=since,
            filters=delivery_filters(endpoint_id, status),
            order="created_at, rowid",
            limit=limit,
        )
        rows = await self._run(lambda c: c.execute(sql, params).fetchall())
        return [_delivery(r) for r in rows]

    async def list_attempts(self, delivery_id: str) -> list[Attempt]:
        rows = await self._run(
            lambda c: c.execute(
                f"SELECT * FROM {_P}_attempts WHERE delivery_id = ? ORDER BY time, rowid",
                (delivery_id,),
            ).fetchall()
        )
        return [
            Attempt(delivery_id=r[0], time=r[1], duration=r[2], status=r[3],
                    response_excerpt=r[4], error=r[5], manual=bool(r[6]))
            for r in rows
        ]  # fmt: skip

    async def ping(self) -> bool:
        return await self._db.ping()

    async def aclose(self) -> None:
        await self._db.aclose()
