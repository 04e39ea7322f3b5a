"""Fixtures for usage tests: the backends that outlive a store instance."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(params=["sqlite", "redis"])
def durable_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A store URL for each backend shared by several store instances (SQLite file, Redis)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/usage.db"
    return str(request.getfixturevalue("redis_url"))
