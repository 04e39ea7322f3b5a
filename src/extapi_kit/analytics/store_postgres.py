"""``postgresql://user@host:5432/db``: activity documents in PostgreSQL.

The statements are the SQLite store's (:mod:`extapi_kit.analytics._sql`); a write is one
``UPDATE ... WHERE version = ?`` (or an ``INSERT ... ON CONFLICT DO NOTHING``), so processes
racing on one key never lose counts: the loser reads again and re-merges.
"""

from __future__ import annotations

from extapi_kit.analytics._sql import ActivitySQL, SQLActivityStoreBase
from extapi_kit.stores._postgres import (
    Migration,
    PostgresConfig,
    PostgresStore,
    register_migrations,
)

__all__ = ["PostgresActivityStore"]

FEATURE = "activity"

register_migrations(
    FEATURE,
    [
        Migration(
            1,
            "per-key activity documents",
            "CREATE TABLE {p}activity_docs (key_id TEXT PRIMARY KEY, version BIGINT NOT NULL, "
            "doc TEXT NOT NULL, updated_at DOUBLE PRECISION NOT NULL);"
            "CREATE INDEX {prefix}activity_docs_updated ON {p}activity_docs (updated_at);",
        )
    ],
)


class PostgresActivityStore(PostgresStore, SQLActivityStoreBase):
    """An :class:`~extapi_kit.analytics.store.ActivityStore` in PostgreSQL.

    Args:
        config: where the table lives and the connection deadlines.
        migrate: create or upgrade the table on first use.
    """

    FEATURE = FEATURE

    def __init__(self, config: PostgresConfig, *, migrate: bool = True) -> None:
        super().__init__(config, migrate=migrate)
        self._q = self._db
        self._sql = ActivitySQL(config.table("activity"))

    async def aclose(self) -> None:
        """Close the pool."""
        await self._db.aclose()
