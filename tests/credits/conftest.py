"""Fixtures for credits tests: a credit store URL per backend."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(
    params=[
        "memory",
        "sqlite",
        "redis",
        "redis-cluster",
        pytest.param("postgresql", marks=pytest.mark.postgres),
    ]
)
def credit_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A credit store URL for each built-in backend (the contract suite runs over this)."""
    if request.param == "memory":
        return "memory://"
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/credits.db"
    if request.param == "postgresql":
        return str(request.getfixturevalue("pg_url"))
    if request.param == "redis-cluster":
        return str(request.getfixturevalue("redis_cluster_url"))
    return str(request.getfixturevalue("redis_url"))
