"""The demo's data directory holds key hashes, webhook secrets and the cursor secret (G4)."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from extapi_kit.examples.studio._runtime import run_lifespan
from extapi_kit.examples.studio.app import create_app, store_urls
from extapi_kit.examples.studio.demo import bootstrap_admin_key


@pytest.fixture
def umask_022() -> Iterator[None]:
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


@pytest.mark.anyio
@pytest.mark.usefixtures("umask_022")
async def test_demo_data_dir_and_every_file_in_it_are_private(tmp_path: Path) -> None:
    """G4: under umask 022 the demo's data dir is 0700 and every file it writes there (SQLite
    stores and their -wal/-shm files, cursor.secret, admin-key.id) is 0600."""
    data = tmp_path / "d"
    app = create_app(data)
    transport = httpx.ASGITransport(app, client=("203.0.113.7", 1234))
    async with run_lifespan(app), httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        key_id, key, _ = await bootstrap_admin_key(data, store_urls(data)["keys"])
        assert (await c.get("/api/v1/projects", headers={"X-API-Key": key})).status_code == 200
        files = sorted(p for p in data.iterdir())
        names = {p.name for p in files}
        assert {"cursor.secret", "admin-key.id", "keys.db", "webhooks.db", "studio.db"} <= names
        assert {"keys.db-wal", "keys.db-shm"} <= names
        modes = {p.name: oct(stat.S_IMODE(p.lstat().st_mode)) for p in files}
        assert set(modes.values()) == {oct(0o600)}, modes
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    assert (data / "admin-key.id").read_text().strip() == key_id


@pytest.mark.anyio
async def test_admin_key_id_is_never_written_through_a_planted_link(tmp_path: Path) -> None:
    """G4: a symlink at admin-key.id is replaced by a private file, its target left untouched."""
    target = tmp_path / "victim"
    target.write_text("keep\n")
    data = tmp_path / "d"
    data.mkdir()
    (data / "admin-key.id").symlink_to(target)
    key_id, _, _ = await bootstrap_admin_key(data, store_urls(data)["keys"])
    assert target.read_text() == "keep\n"
    assert not (data / "admin-key.id").is_symlink()
    assert (data / "admin-key.id").read_text().strip() == key_id
