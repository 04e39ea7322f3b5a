"""``postgresql://user@host:5432/db``: key records in PostgreSQL, shared by any number of hosts.

The table (``<schema>.<prefix>api_keys``) and its statements are the SQLite store's
(:mod:`extapi_kit.keys._sql`); only hashes are stored, never secrets. Every update announces the
key id with ``pg_notify`` in the same statement, so the notification is sent when (and only if) the
change commits. ``watch()`` keeps one ``LISTEN`` connection per store: every process drops cached
entries of a revoked or changed key well within a second (case A6, like Redis pub/sub). When that
connection drops, watchers are told to drop everything (``"*"``) and it reconnects by itself; while
it is down, the positive-cache TTL bounds how long a revoked key may still pass.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from extapi_kit.exceptions import ConflictError, NotFoundError
from extapi_kit.keys._sql import KeySQL, row_to_record
from extapi_kit.keys.models import KeyRecord
from extapi_kit.keys.store import (
    InvalidationCallback,
    Watchers,
    check_page_args,
    decode_cursor,
    encode_cursor,
    filter_records,
)
from extapi_kit.stores._postgres import (
    Migration,
    PostgresConfig,
    PostgresDatabase,
    import_asyncpg,
    parse_postgres_url,
    pg_sql,
    register_migrations,
)

__all__ = ["PostgresKeyStore"]

logger = logging.getLogger("extapi_kit.keys")

FEATURE = "keys"
HEARTBEAT = 5.0
RECONNECT_DELAY = 0.5

register_migrations(
    FEATURE,
    [
        Migration(
            1,
            "api keys",
            "CREATE TABLE {p}api_keys (id TEXT PRIMARY KEY, owner TEXT, env TEXT NOT NULL, "
            "last_used_at DOUBLE PRECISION, data TEXT NOT NULL);"
            "CREATE INDEX {prefix}api_keys_owner ON {p}api_keys (owner, id);",
        )
    ],
)


class PostgresKeyStore:
    """A :class:`~extapi_kit.keys.store.KeyStore` in PostgreSQL with ``LISTEN/NOTIFY`` invalidation.

    Args:
        config: where the table lives and the connection deadlines
            (:func:`~extapi_kit.stores._postgres.parse_postgres_url`).
        migrate: create or upgrade the table on first use (False when ``extapi-kit db migrate``
            runs ahead of deploys).
    """

    def __init__(self, config: PostgresConfig, *, migrate: bool = True) -> None:
        self._db = PostgresDatabase(config, features=[FEATURE], migrate_on_start=migrate)
        self._sql = KeySQL(config.table("api_keys"))
        self._update = pg_sql(
            f"WITH u AS ({self._sql.update} RETURNING id) SELECT pg_notify(?, id) FROM u"
        )
        self.channel = f"{config.channel}keys"
        self._watchers = Watchers()
        self._listener: asyncio.Task[None] | None = None
        self._subscribed: asyncio.Event | None = None
        self._closed = False

    @classmethod
    def from_url(cls, url: str, **options: Any) -> PostgresKeyStore:
        """Create a store from ``postgresql://`` / ``postgres://`` (``?schema=`` and deadlines).

        Args:
            url: the URL.
            **options: ``migrate``; the rest go to
                :func:`~extapi_kit.stores._postgres.parse_postgres_url`.
        """
        migrate = bool(options.pop("migrate", True))
        return cls(parse_postgres_url(url, **options), migrate=migrate)

    def __repr__(self) -> str:
        return f"PostgresKeyStore({self._db.config!r})"

    async def create(self, record: KeyRecord) -> None:
        """Insert a record.

        Args:
            record: the record.
        """
        if await self._db.execute(self._sql.insert, *KeySQL.row(record)) == 0:
            raise ConflictError(f"key {record.id} already exists")

    async def get(self, key_id: str) -> KeyRecord | None:
        """Return a record or None.

        Args:
            key_id: the key id.
        """
        row = await self._db.fetchrow(self._sql.get, key_id)
        return None if row is None else row_to_record(row)

    async def list(
        self,
        *,
        owner: str | None = None,
        env: str | None = None,
        status: str | None = None,
        now: float = 0.0,
        cursor: str | None = None,
        limit: int = 100,
    ) -> tuple[list[KeyRecord], str | None]:
        """Return one page of records ordered by id.

        Args:
            owner: owner filter.
            env: env filter.
            status: status filter (applied in Python; it depends on ``now``).
            now: time for the status filter.
            cursor: from a previous page.
            limit: page size.
        """
        check_page_args(status, limit)
        last = decode_cursor(cursor)
        found: list[KeyRecord] = []
        while len(found) <= limit:
            sql, params = self._sql.page(last, owner, env)
            rows = await self._db.fetch(sql, *params)
            if not rows:
                break
            batch = [row_to_record(r) for r in rows]
            last = batch[-1].id
            found += filter_records(batch, owner=None, env=None, status=status, now=now)
        page = found[:limit]
        return page, (encode_cursor(page[-1].id) if len(found) > limit else None)

    async def update(self, record: KeyRecord) -> None:
        """Replace a record (not its ``last_used_at``) and notify every listening process.

        Args:
            record: the new state.
        """
        params = (*KeySQL.update_params(record), self.channel)
        rows = await self._db.run(lambda c: c.fetch(self._update, *params))
        if not rows:
            raise NotFoundError(f"no key {record.id}")
        self._watchers.notify(record.id)

    async def touch(self, key_id: str, when: float) -> None:
        """Move ``last_used_at`` forward.

        Args:
            key_id: the key id.
            when: epoch seconds.
        """
        await self._db.execute(self._sql.touch, when, key_id, when)

    async def watch(self, callback: InvalidationCallback) -> None:
        """Register ``callback`` and make sure this process listens for change notifications.

        Waits (at most ~1 s) until ``LISTEN`` is in place, so a revocation committed after this
        returns is never missed.

        Args:
            callback: called with a key id, or ``"*"`` after the listening connection broke.
        """
        self._watchers.add(callback)
        event = self._subscribed
        if event is None or self._listener is None or self._listener.done():
            event = self._subscribed = asyncio.Event()
            self._listener = asyncio.get_running_loop().create_task(self._listen())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), 1.0)

    def _on_notify(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
        self._watchers.notify(payload)

    async def _listen(self) -> None:
        asyncpg = import_asyncpg()
        config = self._db.config
        broken = False
        while not self._closed:
            conn = None
            try:
                conn = await asyncpg.connect(config.dsn, timeout=config.connect_timeout)
                lost = asyncio.Event()
                conn.add_termination_listener(lambda _c, ev=lost: ev.set())
                await conn.add_listener(self.channel, self._on_notify)
                if broken:
                    self._watchers.notify("*")
                    broken = False
                if self._subscribed is not None:
                    self._subscribed.set()
                while not lost.is_set():
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(lost.wait(), HEARTBEAT)
                    if not lost.is_set():
                        # A silently dead network never closes the socket: ask, with a deadline.
                        await conn.fetchval("SELECT 1", timeout=config.statement_timeout)
                raise ConnectionError("the LISTEN connection closed")
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                logger.warning("key change listener lost (%s); reconnecting", type(exc).__name__)
                self._watchers.notify("*")
                broken = True
                await asyncio.sleep(RECONNECT_DELAY)
            finally:
                if conn is not None:
                    conn.terminate()

    async def ping(self) -> bool:
        """Return whether the database answers."""
        return await self._db.ping()

    async def aclose(self) -> None:
        """Stop the listener and close the pool."""
        self._closed = True
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._listener
            self._listener = None
        await self._db.aclose()
