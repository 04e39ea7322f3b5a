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

import logging

from extapi_kit.exceptions import NotFoundError
from extapi_kit.keys._sql import KeySQL, SQLKeyStoreBase
from extapi_kit.keys.models import KeyRecord
from extapi_kit.keys.store import InvalidationCallback, Watchers
from extapi_kit.stores._pg_listener import PostgresListener
from extapi_kit.stores._postgres import (
    Migration,
    PostgresConfig,
    PostgresStore,
    pg_sql,
    register_migrations,
)

__all__ = ["PostgresKeyStore"]

logger = logging.getLogger("extapi_kit.keys")

FEATURE = "keys"

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


class PostgresKeyStore(PostgresStore, SQLKeyStoreBase):
    """A :class:`~extapi_kit.keys.store.KeyStore` in PostgreSQL with ``LISTEN/NOTIFY`` invalidation.

    Args:
        config: where the table lives and the connection deadlines
            (:func:`~extapi_kit.stores._postgres.parse_postgres_url`).
        migrate: create or upgrade the table on first use (False when ``extapi-kit db migrate``
            runs ahead of deploys).
    """

    FEATURE = FEATURE

    def __init__(self, config: PostgresConfig, *, migrate: bool = True) -> None:
        super().__init__(config, migrate=migrate)
        self._q = self._db
        self._sql = KeySQL(config.table("api_keys"))
        self._update = pg_sql(
            f"WITH u AS ({self._sql.update} RETURNING id) SELECT pg_notify(?, id) FROM u"
        )
        self.channel = f"{config.channel}keys"
        self._watchers = Watchers()
        self._listener = PostgresListener(
            config,
            self.channel,
            on_notify=self._watchers.notify,
            on_connected=self._reconnected,
            on_lost=self._drop_all,
            name="key change listener",
            logger=logger,
        )

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

    async def watch(self, callback: InvalidationCallback) -> None:
        """Register ``callback`` and make sure this process listens for change notifications.

        Waits (at most ~1 s) until ``LISTEN`` is in place, so a revocation committed after this
        returns is never missed.

        Args:
            callback: called with a key id, or ``"*"`` after the listening connection broke.
        """
        self._watchers.add(callback)
        await self._listener.start()

    def _drop_all(self) -> None:
        self._watchers.notify("*")

    def _reconnected(self, after_break: bool) -> None:
        # Changes committed while nobody listened were missed: drop everything once more.
        if after_break:
            self._drop_all()

    async def aclose(self) -> None:
        """Stop the listener and close the pool."""
        await self._listener.aclose()
        await self._db.aclose()
