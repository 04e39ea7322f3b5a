"""``sqlite:///file.db`` and ``postgresql://...``: the signing key set in one table row.

Table ``<prefix>signing_keys (name, version, data)``: one row per key set (``name`` lets several
issuers share a database). The statements are shared (``?`` placeholders); saving is a
compare-and-set on ``version`` (an ``INSERT`` that does nothing on conflict for the first save,
an ``UPDATE ... WHERE version = ?`` after), so concurrent writers never interleave. The ``data``
column holds sealed private keys (AES-256-GCM) unless the operator configured no secret.
"""

from __future__ import annotations

import re
import sqlite3
from typing import Any

from extapi_kit.exceptions import ConfigurationError
from extapi_kit.stores._postgres import (
    Migration,
    PostgresConfig,
    PostgresStore,
    register_migrations,
)
from extapi_kit.stores._sqlite import SQLiteDatabase, SQLiteStatements, sqlite_path_from_url

__all__ = ["PostgresSigningKeyStore", "SQLiteSigningKeyStore"]

FEATURE = "signing_keys"
_NAME_RE = re.compile(r"[A-Za-z0-9_.:-]{1,64}")

register_migrations(
    FEATURE,
    [
        Migration(
            1,
            "oauth signing keys",
            "CREATE TABLE {p}signing_keys (name TEXT PRIMARY KEY, version BIGINT NOT NULL, "
            "data TEXT NOT NULL);",
        )
    ],
)


def _check_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
        raise ConfigurationError(f"invalid signing key set name {name!r}")
    return name


class _SQLSigningKeys:
    holds_plaintext = False
    _q: Any
    _t: str
    _name: str

    async def load(self) -> tuple[str | None, int]:
        """Return the document and its version."""
        row = await self._q.fetchrow(
            f"SELECT version, data FROM {self._t} WHERE name = ?", self._name
        )
        if row is None:
            return None, 0
        return str(row["data"]), int(row["version"])

    async def save(self, document: str, *, expected: int) -> bool:
        """Compare-and-set the document.

        Args:
            document: the JSON document.
            expected: the version the caller loaded.
        """
        if expected == 0:
            changed = await self._q.execute(
                f"INSERT INTO {self._t} (name, version, data) VALUES (?, 1, ?) "
                "ON CONFLICT (name) DO NOTHING",
                self._name,
                document,
            )
        else:
            changed = await self._q.execute(
                f"UPDATE {self._t} SET version = ?, data = ? WHERE name = ? AND version = ?",
                expected + 1,
                document,
                self._name,
                expected,
            )
        return bool(changed == 1)

    async def ping(self) -> bool:
        """Return True when the database answers."""
        return bool(await self._q.ping())


class SQLiteSigningKeyStore(_SQLSigningKeys):
    """The signing key set in a SQLite file (the key store's file may be reused).

    Args:
        path: the database file (created ``0600`` if missing).
        name: the key set's name (several issuers may share a file).
        table: the table name.
    """

    def __init__(
        self, path: str, *, name: str = "default", table: str = "extapi_signing_keys"
    ) -> None:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,62}", table):
            raise ConfigurationError(f"invalid table name {table!r}")
        self._t = table
        self._name = _check_name(name)
        self._db = SQLiteDatabase(path)
        self._q = SQLiteStatements(self._db, self._schema)

    @classmethod
    def from_url(cls, url: str, **options: Any) -> SQLiteSigningKeyStore:
        """Create a store from ``sqlite:///relative.db`` or ``sqlite:////abs/path.db``.

        Args:
            url: the URL.
            **options: ``name``, ``table``.
        """
        return cls(sqlite_path_from_url(url), **options)

    def __repr__(self) -> str:
        return f"SQLiteSigningKeyStore({self._db.path!r})"

    def _schema(self, conn: sqlite3.Connection) -> None:
        conn.execute(
            f"CREATE TABLE IF NOT EXISTS {self._t} (name TEXT PRIMARY KEY, "
            "version INTEGER NOT NULL, data TEXT NOT NULL)"
        )

    async def aclose(self) -> None:
        """Close the database."""
        await self._db.aclose()


class PostgresSigningKeyStore(PostgresStore, _SQLSigningKeys):
    """The signing key set in PostgreSQL (versioned migration ``signing_keys`` 1).

    Args:
        config: where the table lives and the connection deadlines.
        migrate: create the table on first use.
        name: the key set's name.
    """

    FEATURE = FEATURE
    OWN_OPTIONS = ("migrate", "name")

    def __init__(self, config: PostgresConfig, *, migrate: bool = True, name: str = "default"):
        super().__init__(config, migrate=migrate)
        self._q = self._db
        self._t = config.table("signing_keys")
        self._name = _check_name(name)

    async def aclose(self) -> None:
        """Close the pool."""
        await self._db.aclose()
