"""``postgresql://user@host:5432/db`` webhook store: the outbox as tables, for many dispatchers.

- **Claiming** is one statement: per endpoint (an index probe each, so a backlog on one endpoint
  never hides another's due work) the due rows are locked with ``FOR UPDATE SKIP LOCKED``, ranked
  round-robin across endpoints, leased to the caller and returned with their events. Dispatcher
  processes claiming at the same moment skip each other's rows instead of waiting, and each due
  delivery goes to exactly one of them.
- **Leases** live in the row (``due_at`` of a ``delivering`` row is its lease expiry): a dispatcher
  killed with SIGKILL leaves leases that simply fall due again, and the next claim re-delivers them
  with the same ``webhook-id`` (at least once, DESIGN §6).
- **Wake-ups**: a publish sends ``pg_notify`` in its own transaction (delivered at commit, never
  for a rollback). :meth:`PostgresWebhookStore.listen_for_work` keeps one ``LISTEN`` connection per
  process and wakes the dispatcher at once, so publish-to-delivery latency is a few milliseconds
  with no busy polling; the dispatcher's ``poll_interval`` only picks up retries falling due.
- **Transactional outbox**: :func:`~extapi_kit.webhooks.outbox.publish_in_transaction` writes the
  same rows with the application's own asyncpg, psycopg or SQLAlchemy connection.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Collection, Sequence
from typing import Any

from extapi_kit.exceptions import NotFoundError
from extapi_kit.stores._pg_listener import PostgresListener
from extapi_kit.stores._postgres import PostgresConfig, PostgresDatabase, PostgresStore, pg_sql
from extapi_kit.webhooks._finish import FinishBatcher
from extapi_kit.webhooks._pg_sql import (
    DCOLS,
    ECOLS,
    FEATURE,
    WebhookSQL,
    delivery_columns,
    event_params,
    row_delivery,
    row_event,
)
from extapi_kit.webhooks._sql import delivery_filters, listing_sql
from extapi_kit.webhooks.models import Attempt, Delivery, DeliveryStatus, Endpoint, Event
from extapi_kit.webhooks.store import Claimed

__all__ = ["PostgresWebhookStore"]

logger = logging.getLogger("extapi_kit.webhooks")

FINISH_GATHER = 0.002
_D = ", ".join(DCOLS)


# What one finish() hands to the batch write: delivery, attempt, owner, status, next attempt.
_Finish = tuple[Delivery, Attempt | None, str, DeliveryStatus, float | None]


class PostgresWebhookStore(PostgresStore):
    """A :class:`~extapi_kit.webhooks.store.WebhookStore` in PostgreSQL.

    Args:
        config: where the tables live and the connection deadlines
            (:func:`~extapi_kit.stores._postgres.parse_postgres_url`).
        migrate: create or upgrade the tables on first use (False when ``extapi-kit db migrate``
            runs ahead of deploys).
    """

    FEATURE = FEATURE
    excludes_cheaply = True

    def __init__(self, config: PostgresConfig, *, migrate: bool = True) -> None:
        super().__init__(config, migrate=migrate)
        # Claims, finishes and releases commit without waiting for the WAL flush (an fdatasync,
        # ~5 ms on an ordinary disk): losing one in a *server* crash only makes a delivery due
        # again, which re-sends it with the same webhook-id — the at-least-once contract already
        # allows that. Publishes (the application's data) stay fully durable on the main pool.
        self._lease_db = PostgresDatabase(
            config,
            features=[FEATURE],
            migrate_on_start=migrate,
            server_settings={"synchronous_commit": "off"},
        )
        self.sql = WebhookSQL(config)
        self.channel = self.sql.channel
        ep, d, ev = self.sql.t("endpoints"), self.sql.t("deliveries"), self.sql.t("events")
        self._ep, self._d, self._ev, self._at = ep, d, ev, self.sql.t("attempts")
        dcols = ", ".join(f"d.{c}" for c in DCOLS)
        ecols = ", ".join(f"ev.{c}" for c in ECOLS)
        # $1 now, $2 limit, $3 excluded endpoint ids, $4 owner, $5 lease expiry, $6 channel.
        # Each endpoint gives at most its share (limit / endpoints, rounded up); the outer ORDER BY
        # takes every endpoint's first row before anyone's second (round-robin).
        self._claim = (
            f"WITH picked AS (SELECT c.id, c.due_at, row_number() OVER"
            f" (PARTITION BY e.id ORDER BY c.due_at) AS rn FROM {ep} e CROSS JOIN LATERAL"
            f" (SELECT x.id, x.due_at FROM {d} x WHERE x.endpoint_id = e.id"
            " AND x.status IN ('pending', 'delivering') AND x.due_at <= $1 ORDER BY x.due_at"
            f" LIMIT (SELECT $2::int / greatest(count(*), 1) + 1 FROM {ep})"
            " FOR UPDATE OF x SKIP LOCKED) c WHERE e.id <> ALL($3::text[])"
            " ORDER BY rn, c.due_at LIMIT $2)"
            f" UPDATE {d} d SET status = 'delivering', lease_owner = $4, lease_until = $5,"
            # = ANY(ARRAY(...)): a primary-key probe per picked row, never a join that the
            # planner may turn into a scan of the whole (ever-growing) deliveries table.
            f" due_at = $5 FROM {ev} ev WHERE d.id = ANY(ARRAY(SELECT id FROM picked))"
            " AND ev.id = d.event_id"
            f" RETURNING {dcols}, {ecols}"
        )
        owned = "(d.status = 'delivering' AND d.lease_owner = f.owner)"
        # One statement finishes a batch: attempts inserted, leases ended where still ours; a
        # lease lost to another worker only counts the attempt (its state belongs to the owner).
        self._finish = (
            f"WITH a AS (INSERT INTO {self._at} (delivery_id, attempted_at, duration, status,"
            " response_excerpt, error, manual) SELECT * FROM unnest($1::text[], $2::float8[],"
            " $3::float8[], $4::int[], $5::text[], $6::text[], $7::bool[]))"
            f" UPDATE {d} d SET attempts = d.attempts + f.bump,"
            f" status = CASE WHEN {owned} THEN f.status ELSE d.status END,"
            f" last_error = CASE WHEN {owned} THEN coalesce(f.err, CASE WHEN f.bump = 0"
            " THEN d.last_error END) ELSE d.last_error END,"
            f" next_attempt_at = CASE WHEN {owned} THEN coalesce(f.nxt, d.next_attempt_at)"
            " ELSE d.next_attempt_at END,"
            f" due_at = CASE WHEN {owned} THEN coalesce(f.nxt, d.next_attempt_at) ELSE d.due_at"
            " END,"
            f" lease_owner = CASE WHEN {owned} THEN NULL ELSE d.lease_owner END,"
            f" lease_until = CASE WHEN {owned} THEN NULL ELSE d.lease_until END"
            " FROM unnest($8::text[], $9::text[], $10::text[], $11::int[], $12::text[],"
            " $13::float8[]) AS f(id, owner, status, bump, err, nxt)"
            f" WHERE d.id = f.id AND ({owned} OR f.bump = 1)"
        )
        self._publish = pg_sql(
            f"WITH e AS ({self.sql.insert_event}), d AS ({self.sql.insert_deliveries}"
            " WHERE EXISTS (SELECT 1 FROM e) RETURNING 1), n AS (SELECT pg_notify(?, '')"
            " FROM (SELECT 1 FROM d LIMIT 1) AS one) SELECT (SELECT count(*) FROM e)"
            " + 0 * (SELECT count(*) FROM n)"
        )
        self._callbacks: list[Callable[[], object]] = []
        # Woken at every connect too: work committed while nobody listened is claimed at once.
        self._listener = PostgresListener(
            config,
            self.channel,
            on_notify=self._wake,
            on_connected=self._wake,
            name="webhook listener",
            logger=logger,
        )
        self._finishing = FinishBatcher[_Finish](self._write_finishes, gather=FINISH_GATHER)

    @property
    def config(self) -> PostgresConfig:
        """Where the tables live (what ``publish_in_transaction`` needs to find them)."""
        return self._db.config

    # -- endpoints ---------------------------------------------------------------------------

    async def add_endpoint(self, endpoint: Endpoint) -> None:
        await self._db.execute(
            f"INSERT INTO {self._ep} (id, created_at, doc) VALUES (?, ?, ?)",
            endpoint.id,
            endpoint.created_at,
            endpoint.model_dump_json(),
        )

    async def get_endpoint(self, endpoint_id: str) -> Endpoint:
        row = await self._db.fetchrow(f"SELECT doc FROM {self._ep} WHERE id = ?", endpoint_id)
        if row is None:
            raise NotFoundError(f"no endpoint {endpoint_id!r}")
        return Endpoint.model_validate_json(row[0])

    async def list_endpoints(self) -> list[Endpoint]:
        rows = await self._db.fetch(self.sql.endpoints)
        return [Endpoint.model_validate_json(r[0]) for r in rows]

    async def update_endpoint(self, endpoint_id: str, **changes: Any) -> Endpoint:
        async with self._db.transaction() as conn:
            row = await conn.fetchrow(
                f"SELECT doc FROM {self._ep} WHERE id = $1 FOR UPDATE", endpoint_id
            )
            if row is None:
                raise NotFoundError(f"no endpoint {endpoint_id!r}")
            current = Endpoint.model_validate_json(row[0])
            updated = Endpoint.model_validate({**current.model_dump(), **changes})
            await conn.execute(
                f"UPDATE {self._ep} SET doc = $1 WHERE id = $2",
                updated.model_dump_json(),
                endpoint_id,
            )
        return updated

    async def remove_endpoint(self, endpoint_id: str) -> None:
        async with self._db.transaction() as conn:
            status = await conn.execute(f"DELETE FROM {self._ep} WHERE id = $1", endpoint_id)
            if status.endswith(" 0"):
                raise NotFoundError(f"no endpoint {endpoint_id!r}")
            await conn.execute(
                f"UPDATE {self._d} SET status = 'cancelled', lease_owner = NULL, lease_until ="
                " NULL WHERE endpoint_id = $1 AND status IN ('pending', 'delivering')",
                endpoint_id,
            )

    # -- events and deliveries ---------------------------------------------------------------

    async def publish(self, event: Event, deliveries: Sequence[Delivery]) -> bool:
        # One statement, so one round trip and one commit: the event, its deliveries only if the
        # event is new, and the NOTIFY only if deliveries were written.
        async with self._db.connection() as conn:
            inserted = await conn.fetchval(
                self._publish, *event_params(event), *delivery_columns(deliveries), self.channel
            )
        return bool(inserted)

    async def add_deliveries(self, deliveries: Sequence[Delivery]) -> None:
        if not deliveries:
            return
        async with self._db.transaction() as conn:
            await conn.execute(pg_sql(self.sql.insert_deliveries), *delivery_columns(deliveries))
            await conn.execute(pg_sql(self.sql.notify), self.channel)

    async def get_event(self, event_id: str) -> Event:
        row = await self._db.fetchrow(
            f"SELECT {', '.join(ECOLS)} FROM {self._ev} WHERE id = ?", event_id
        )
        if row is None:
            raise NotFoundError(f"no event {event_id!r}")
        return row_event(row)

    async def list_events(
        self, *, type: str | None = None, since: float | None = None, limit: int = 1000
    ) -> list[Event]:
        sql, params = listing_sql(
            f"SELECT {', '.join(ECOLS)} FROM {self._ev}",
            since_column="ts",
            since=since,
            filters=[("type", type)],
            order="ts, id",
            limit=limit,
        )
        return [row_event(r) for r in await self._db.fetch(sql, *params)]

    async def claim(
        self,
        *,
        owner: str,
        now: float,
        lease_seconds: float,
        limit: int,
        exclude: Collection[str] = (),
    ) -> list[Claimed]:
        if limit <= 0:
            return []
        async with self._lease_db.connection() as conn:
            rows = await conn.fetch(
                self._claim, now, limit, list(exclude), owner, now + lease_seconds
            )
        out = [(row_delivery(r), row_event(r, len(DCOLS))) for r in rows]
        out.sort(key=lambda c: c[0].next_attempt_at)
        return out

    async def finish(
        self,
        delivery: Delivery,
        attempt: Attempt | None,
        *,
        owner: str,
        status: DeliveryStatus,
        next_attempt_at: float | None = None,
    ) -> None:
        # Finishes arriving while a write is in flight go together in the next statement: one
        # round trip and one commit for a batch instead of one per attempt. A short pause gathers
        # the finishes of attempts completing together (the receiver already has the request;
        # only the bookkeeping waits).
        await self._finishing.submit((delivery, attempt, owner, status, next_attempt_at))

    async def _write_finishes(self, batch: list[_Finish]) -> None:
        attempts: list[list[Any]] = [[] for _ in range(7)]
        ends: list[list[Any]] = [[] for _ in range(6)]
        for delivery, attempt, owner, status, nxt in batch:
            err = None
            if attempt is not None:
                row = (attempt.delivery_id, attempt.time, attempt.duration, attempt.status,
                       attempt.response_excerpt, attempt.error, attempt.manual)  # fmt: skip
                for col, value in zip(attempts, row, strict=True):
                    col.append(value)
                ok = attempt.status is not None and 200 <= attempt.status < 300
                err = attempt.error or (None if ok else str(attempt.status))
            end = (delivery.id, owner, DeliveryStatus(status).value,
                   int(attempt is not None), err, nxt)  # fmt: skip
            for col, value in zip(ends, end, strict=True):
                col.append(value)
        async with self._lease_db.connection() as conn:
            await conn.execute(self._finish, *attempts, *ends)

    async def release(self, deliveries: Sequence[Delivery], *, owner: str, now: float) -> None:
        if not deliveries:
            return
        async with self._lease_db.transaction() as conn:
            await conn.execute(
                f"UPDATE {self._d} SET status = 'pending', lease_owner = NULL, lease_until = NULL,"
                " next_attempt_at = $1, due_at = $1 WHERE id = ANY($2::text[])"
                " AND status = 'delivering' AND lease_owner = $3",
                now,
                [d.id for d in deliveries],
                owner,
            )
            await conn.execute(pg_sql(self.sql.notify), self.channel)

    async def requeue(self, delivery_id: str, *, at: float) -> Delivery:
        async with self._db.transaction() as conn:
            row = await conn.fetchrow(
                f"UPDATE {self._d} SET status = 'pending', lease_owner = NULL, lease_until = NULL,"
                f" next_attempt_at = $1, due_at = $1 WHERE id = $2 RETURNING {_D}",
                at,
                delivery_id,
            )
            if row is None:
                raise NotFoundError(f"no delivery {delivery_id!r}")
            await conn.execute(pg_sql(self.sql.notify), self.channel)
        return row_delivery(row)

    async def get_delivery(self, delivery_id: str) -> Delivery:
        row = await self._db.fetchrow(f"SELECT {_D} FROM {self._d} WHERE id = ?", delivery_id)
        if row is None:
            raise NotFoundError(f"no delivery {delivery_id!r}")
        return row_delivery(row)

    async def list_deliveries(
        self,
        *,
        endpoint_id: str | None = None,
        status: DeliveryStatus | None = None,
        since: float | None = None,
        limit: int = 1000,
    ) -> list[Delivery]:
        sql, params = listing_sql(
            f"SELECT {_D} FROM {self._d}",
            since_column="created_at",
            since=since,
            filters=delivery_filters(endpoint_id, status),
            order="created_at, seq",
            limit=limit,
        )
        return [row_delivery(r) for r in await self._db.fetch(sql, *params)]

    async def list_attempts(self, delivery_id: str) -> list[Attempt]:
        rows = await self._db.fetch(
            "SELECT delivery_id, attempted_at, duration, status, response_excerpt, error, manual"
            f" FROM {self._at} WHERE delivery_id = ? ORDER BY attempted_at, seq",
            delivery_id,
        )
        return [
            Attempt(delivery_id=r[0], time=r[1], duration=r[2], status=r[3],
                    response_excerpt=r[4], error=r[5], manual=r[6])
            for r in rows
        ]  # fmt: skip

    # -- wake-ups ----------------------------------------------------------------------------

    async def listen_for_work(self, callback: Callable[[], object]) -> None:
        """Call ``callback`` whenever new deliveries are committed (by any process).

        The dispatcher registers its wake-up here. Waits (at most ~1 s) until ``LISTEN`` is in
        place. When the listening connection breaks, ``callback`` is also called after it is back
        (work committed meanwhile is then claimed by the next poll).

        Args:
            callback: a cheap, non-blocking function (e.g. ``asyncio.Event.set``).
        """
        if callback not in self._callbacks:
            self._callbacks.append(callback)
        await self._listener.start()

    def stop_listening(self, callback: Callable[[], object]) -> None:
        """Unregister a callback given to :meth:`listen_for_work`.

        Args:
            callback: the callback.
        """
        with contextlib.suppress(ValueError):
            self._callbacks.remove(callback)

    def _wake(self, *_: object) -> None:
        for cb in list(self._callbacks):
            cb()

    async def ping(self) -> bool:
        return await self._db.ping()

    async def aclose(self) -> None:
        await self._listener.aclose()
        await self._finishing.drain()
        await self._lease_db.aclose()
        await self._db.aclose()
