"""Files the stores create are private whatever the umask (key hashes, webhook secrets: G4)."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from extapi_kit.stores import registered_schemes, store_from_url
from extapi_kit.stores._sqlite import SQLiteDatabase

KINDS = ["audit", "idempotency", "keys", "usage", "webhooks"]


def _mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


@pytest.fixture
def umask_022() -> Iterator[None]:
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def test_every_sqlite_store_kind_is_covered() -> None:
    """G4: the kinds below are every store kind with a sqlite:// backend."""
    assert [k for k in KINDS if "sqlite" in registered_schemes(k)] == KINDS


@pytest.mark.anyio
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.usefixtures("umask_022")
async def test_sqlite_store_files_and_dirs_are_private(kind: str, tmp_path: Path) -> None:
    """G4: under umask 022 a SQLite store creates its database and SQLite's -wal/-shm files 0600
    and every directory it creates 0700."""
    db = tmp_path / "new" / "sub" / f"{kind}.db"
    store = store_from_url(kind, f"sqlite:///{db}")
    try:
        assert await store.ping()
        # A first write makes SQLite create its WAL side files (they live while it is open).
        await store._db.execute("CREATE TABLE IF NOT EXISTS g4_probe (x INTEGER)")
        for name in (db, Path(f"{db}-wal"), Path(f"{db}-shm")):
            assert name.exists(), name
            assert _mode(name) == 0o600, (name, oct(_mode(name)))
        assert _mode(tmp_path / "new") == 0o700
        assert _mode(tmp_path / "new" / "sub") == 0o700
    finally:
        await store.aclose()


@pytest.mark.anyio
@pytest.mark.usefixtures("umask_022")
async def test_existing_database_and_directory_keep_their_modes(tmp_path: Path) -> None:
    """G4: a database file and directory the user made before we opened them keep their modes
    (we never chmod what we did not create)."""
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o755)
    db = shared / "keys.db"
    db.touch(mode=0o640)
    os.chmod(db, 0o640)
    database = SQLiteDatabase(str(db))
    try:
        assert await database.ping()
        assert _mode(db) == 0o640
        assert _mode(shared) == 0o755
    finally:
        await database.aclose()
