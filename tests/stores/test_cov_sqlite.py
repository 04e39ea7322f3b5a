"""The SQLite front: URL forms, in-memory databases, atomic batches, closed-database errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from extapi_kit.exceptions import ConfigurationError, StoreError, StoreUnavailableError
from extapi_kit.stores._sqlite import SQLiteDatabase, sqlite_path_from_url

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize(
    ("url", "path"),
    [
        ("sqlite://:memory:", ":memory:"),
        ("sqlite:///:memory:", ":memory:"),
        ("sqlite:///rel/keys.db", "rel/keys.db"),
        ("sqlite:////abs/keys.db", "/abs/keys.db"),
        ("SQLITE:keys.db", "keys.db"),
        ("sqlite:///with%20space.db", "with space.db"),
    ],
)
def test_sqlite_url_forms(url: str, path: str) -> None:
    """Relative, absolute, in-memory and percent-encoded sqlite URLs name the right file."""
    assert sqlite_path_from_url(url) == path


@pytest.mark.parametrize("url", ["redis://h/0", "sqlite://host/keys.db", "sqlite:///", "sqlite:"])
def test_bad_sqlite_urls_are_configuration_errors(url: str) -> None:
    """A13: a URL that names no usable file is refused at construction, not at first request."""
    with pytest.raises(ConfigurationError):
        sqlite_path_from_url(url)


async def test_in_memory_database_runs_statements() -> None:
    """``:memory:`` works (no WAL, no directory creation) and keeps state on its one connection."""
    db = SQLiteDatabase(":memory:")
    assert repr(db) == "SQLiteDatabase(':memory:')"
    await db.execute("CREATE TABLE t (k TEXT PRIMARY KEY, n INTEGER)")
    assert await db.execute("INSERT INTO t VALUES (?, ?)", ("a", 1)) == 1
    row = await db.fetchone("SELECT n FROM t WHERE k = ?", ("a",))
    assert row is not None and row["n"] == 1
    mode = await db.fetchone("PRAGMA journal_mode")
    assert mode is not None and mode[0] == "memory"
    await db.aclose()


async def test_failed_batch_rolls_back_entirely(tmp_path: Path) -> None:
    """A batch that hits a constraint mid-way stores none of its rows and raises StoreError."""
    db = SQLiteDatabase(str(tmp_path / "nested" / "b.db"))
    await db.execute("CREATE TABLE t (k TEXT PRIMARY KEY)")
    with pytest.raises(StoreError) as info:
        await db.executemany("INSERT INTO t VALUES (?)", [("a",), ("b",), ("a",)])
    assert not isinstance(info.value, StoreUnavailableError)  # a bug, not an outage
    assert await db.fetchall("SELECT k FROM t") == []
    await db.executemany("INSERT INTO t VALUES (?)", [("c",)])
    assert [r["k"] for r in await db.fetchall("SELECT k FROM t")] == ["c"]
    await db.aclose()


async def test_closed_database_fails_ping_and_calls(tmp_path: Path) -> None:
    """After close (async or sync, twice) ping answers False and calls raise StoreError."""
    db = SQLiteDatabase(str(tmp_path / "c.db"))
    assert await db.ping()
    await db.aclose()
    await db.aclose()
    assert not await db.ping()
    with pytest.raises(StoreError, match="closed"):
        await db.fetchall("SELECT 1")
    sync_db = SQLiteDatabase(str(tmp_path / "c.db"))
    assert sync_db.call_sync(lambda c: c.execute("SELECT 1").fetchone()[0]) == 1
    sync_db.close_sync()
    sync_db.close_sync()
    with pytest.raises(StoreError, match="closed"):
        await sync_db.execute("SELECT 1")


async def test_locked_database_is_unavailable_not_a_crash(tmp_path: Path) -> None:
    """A database locked by another writer past busy_timeout is StoreUnavailableError (503)."""
    path = str(tmp_path / "l.db")
    holder = SQLiteDatabase(path)
    await holder.execute("CREATE TABLE t (k TEXT)")
    holder.call_sync(lambda c: c.execute("BEGIN EXCLUSIVE"))
    waiter = SQLiteDatabase(path, busy_timeout=0.01)
    with pytest.raises(StoreUnavailableError):
        await waiter.execute("INSERT INTO t VALUES ('x')")
    holder.call_sync(lambda c: c.execute("ROLLBACK"))
    await waiter.aclose()
    await holder.aclose()


async def test_many_openers_of_one_fresh_file_all_succeed(tmp_path: Path) -> None:
    """M5: stores (or workers) opening one brand-new database file at the same moment and
    writing to it all succeed: switching it to WAL can meet "database is locked" without
    SQLite's busy handler, which each opener now retries within its busy timeout (before, about
    one opening in sixty failed here, and start-up with it)."""
    import asyncio
    import sqlite3

    def write(conn: sqlite3.Connection) -> str:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("CREATE TABLE IF NOT EXISTS t (x INTEGER)")
        conn.execute("INSERT INTO t VALUES (1)")
        conn.execute("COMMIT")
        return str(conn.execute("PRAGMA journal_mode").fetchone()[0])

    for n in range(60):
        dbs = [SQLiteDatabase(str(tmp_path / f"fresh{n}.db")) for _ in range(4)]
        try:
            modes = await asyncio.gather(*(db.run(write) for db in dbs))
            assert modes == ["wal"] * 4
            count = await dbs[0].run(lambda c: c.execute("SELECT COUNT(*) FROM t").fetchone()[0])
            assert count == 4
        finally:
            for db in dbs:
                await db.aclose()
