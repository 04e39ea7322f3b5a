"""A small async front for stdlib ``sqlite3``: one connection, one worker thread, WAL mode.

SQLite calls block, so every statement runs on a dedicated thread and the event loop only awaits a
future. One thread per database serialises writers (what SQLite does anyway) and lets the
connection be reused without locking. WAL mode lets other processes read while we write.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar
from urllib.parse import unquote, urlsplit

from extapi_kit._files import create_private_file, make_private_dirs
from extapi_kit.exceptions import ConfigurationError, StoreError, StoreUnavailableError

__all__ = ["SQLiteDatabase", "SQLiteStatements", "sqlite_path_from_url"]

T = TypeVar("T")


def sqlite_path_from_url(url: str) -> str:
    """Return the file path of a ``sqlite:///relative.db`` or ``sqlite:////abs/path.db`` URL.

    ``sqlite://:memory:`` and ``sqlite:///:memory:`` give an in-memory database.

    Args:
        url: the store URL.
    """
    parts = urlsplit(url)
    if parts.scheme.lower() != "sqlite":
        raise ConfigurationError(f"not a sqlite URL: {url!r}")
    if parts.netloc == ":memory:":
        return ":memory:"
    if parts.netloc:
        raise ConfigurationError(
            f"invalid sqlite URL {url!r}: use sqlite:///relative/path.db or sqlite:////abs/path.db"
        )
    path = unquote(parts.path)
    if path.startswith("/"):
        path = path[1:]
    if not path:
        raise ConfigurationError(f"sqlite URL {url!r} names no file")
    return path


class SQLiteDatabase:
    """One SQLite connection driven from a dedicated thread.

    Args:
        path: the database file (created ``0600``, with its directory ``0700``, if missing) or
            ``":memory:"``.
        busy_timeout: seconds to wait for a lock held by another connection or process.
    """

    def __init__(self, path: str, *, busy_timeout: float = 5.0) -> None:
        self.path = path
        self._busy_timeout = busy_timeout
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="extapi-sqlite")
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.Lock()
        self._closed = False

    def __repr__(self) -> str:
        return f"SQLiteDatabase({self.path!r})"

    def _connect(self) -> sqlite3.Connection:
        if self._conn is None:
            if self.path != ":memory:":
                # Stores hold key hashes and webhook signing secrets: a database we create is
                # 0600 in a 0700 directory whatever the umask, and SQLite gives its -wal/-shm
                # files the database file's mode. An existing file keeps its mode (issue 15 G4).
                make_private_dirs(os.path.dirname(os.path.abspath(self.path)))
                create_private_file(self.path)
            conn = sqlite3.connect(
                self.path,
                timeout=self._busy_timeout,
                isolation_level=None,
                check_same_thread=False,
            )
            conn.row_factory = sqlite3.Row
            if self.path != ":memory:":
                self._enable_wal(conn)
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute(f"PRAGMA busy_timeout={int(self._busy_timeout * 1000)}")
            self._conn = conn
        return self._conn

    def _enable_wal(self, conn: sqlite3.Connection) -> None:
        # Switching a new database to WAL takes an exclusive lock, and SQLite answers "database
        # is locked" at once (no busy handler) when another connection is switching it too: two
        # workers (or stores) opening one fresh file together. Retry within the busy timeout.
        deadline = time.monotonic() + self._busy_timeout
        delay = 0.002
        while True:
            try:
                conn.execute("PRAGMA journal_mode=WAL")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() >= deadline:
                    conn.close()
                    raise
            time.sleep(delay)
            delay = min(delay * 2, 0.05)

    def call_sync(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn(connection)`` on the calling thread (for CLI and shutdown paths).

        Args:
            fn: the function to run.
        """
        with self._lock:
            return fn(self._connect())

    async def run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn(connection)`` on the database thread and return its result.

        Args:
            fn: the function to run; it may use transactions (``BEGIN IMMEDIATE`` ... ``COMMIT``).

        Raises:
            StoreUnavailableError: the database is locked or cannot be opened.
            StoreError: any other SQLite error.
        """
        if self._closed:
            raise StoreError("database is closed")
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, self.call_sync, fn)
        except sqlite3.OperationalError as exc:
            raise StoreUnavailableError(f"sqlite unavailable: {exc}") from exc
        except sqlite3.Error as exc:
            raise StoreError(f"sqlite error: {exc}") from exc

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Execute one statement and return the number of changed rows.

        Args:
            sql: the statement.
            params: its parameters.
        """
        return await self.run(lambda c: c.execute(sql, params).rowcount)

    async def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        """Execute one statement for many parameter rows in a single transaction.

        Args:
            sql: the statement.
            rows: the parameter rows.
        """
        rows = list(rows)

        def _do(c: sqlite3.Connection) -> None:
            c.execute("BEGIN IMMEDIATE")
            try:
                c.executemany(sql, rows)
            except BaseException:
                c.execute("ROLLBACK")
                raise
            c.execute("COMMIT")

        await self.run(_do)

    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        """Run a query and return all rows.

        Args:
            sql: the query.
            params: its parameters.
        """
        return await self.run(lambda c: c.execute(sql, params).fetchall())

    async def fetchone(self, sql: str, params: Sequence[Any] = ()) -> sqlite3.Row | None:
        """Run a query and return the first row, or None.

        Args:
            sql: the query.
            params: its parameters.
        """
        return await self.run(lambda c: c.execute(sql, params).fetchone())

    async def ping(self) -> bool:
        """Return True when the database answers a trivial query."""
        try:
            await self.run(lambda c: c.execute("SELECT 1").fetchone())
        except StoreError:
            return False
        return True

    async def aclose(self) -> None:
        """Close the connection and stop the worker thread."""
        if self._closed:
            return
        self._closed = True

        def _close() -> None:
            with self._lock:
                if self._conn is not None:
                    self._conn.close()
                    self._conn = None

        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, _close)
        self._executor.shutdown(wait=False)

    def close_sync(self) -> None:
        """Close from synchronous code (CLI)."""
        self._closed = True
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
        self._executor.shutdown(wait=False)


class SQLiteStatements:
    """Run a feature's shared SQL on a :class:`SQLiteDatabase`, creating its tables first.

    The :class:`~extapi_kit.stores._sql.SQLStatements` face of a SQLite store: every call is one
    hop to the database thread, and the first one creates the schema in the same hop.

    Args:
        db: the database.
        schema: creates the feature's tables if missing (``CREATE ... IF NOT EXISTS``).
    """

    def __init__(self, db: SQLiteDatabase, schema: Callable[[sqlite3.Connection], object]) -> None:
        self.db = db
        self._schema = schema
        self._ready = False

    async def run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn(connection)`` on the database thread, after the schema exists.

        Args:
            fn: the function to run; it may use transactions (``BEGIN IMMEDIATE`` ... ``COMMIT``).
        """

        def call(conn: sqlite3.Connection) -> T:
            if not self._ready:
                self._schema(conn)
                self._ready = True
            return fn(conn)

        return await self.db.run(call)

    async def execute(self, sql: str, *args: Any) -> int:
        """Execute one statement and return the number of changed rows.

        Args:
            sql: the statement.
            *args: its parameters.
        """
        return await self.run(lambda c: c.execute(sql, args).rowcount)

    async def fetch(self, sql: str, *args: Any) -> list[sqlite3.Row]:
        """Run a query and return all rows.

        Args:
            sql: the query.
            *args: its parameters.
        """
        return await self.run(lambda c: c.execute(sql, args).fetchall())

    async def fetchrow(self, sql: str, *args: Any) -> sqlite3.Row | None:
        """Run a query and return the first row, or None.

        Args:
            sql: the query.
            *args: its parameters.
        """
        return await self.run(lambda c: c.execute(sql, args).fetchone())

    async def ping(self) -> bool:
        """Return True when the database answers a trivial query."""
        return await self.db.ping()
