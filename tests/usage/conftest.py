"""Fixtures for usage tests: the backends that outlive a store instance."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(params=["sqlite", "redis", pytest.param("postgresql", marks=pytest.mark.postgres)])
def durable_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A store URL for each backend that outlives a store instance (SQLite, Redis, PostgreSQL)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/usage.db"
    if request.param == "postgresql":
        return str(request.getfixturevalue("pg_url"))
    return str(request.getfixturevalue("redis_url"))
