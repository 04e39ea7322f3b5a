"""Shared fixtures: anyio backend, a private Redis server, and store URLs for every backend."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from hypothesis import HealthCheck, settings

from tests.support.redis_server import RedisServer

settings.register_profile(
    "ci",
    max_examples=200,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
settings.register_profile(
    "dev",
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
settings.load_profile("ci" if os.environ.get("CI") else "dev")

REQUIRE_REDIS = os.environ.get("EXTAPI_KIT_REQUIRE_REDIS") == "1"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _no_redis(reason: str) -> None:
    if REQUIRE_REDIS:
        pytest.fail(f"EXTAPI_KIT_REQUIRE_REDIS=1 but no Redis server: {reason}")
    pytest.skip(f"no Redis server: {reason}")


@pytest.fixture(scope="session")
def redis_server_url() -> Iterator[str]:
    """A Redis URL for the whole session: REDIS_URL if set, else a private redis-server."""
    env_url = os.environ.get("REDIS_URL")
    if env_url:
        yield env_url
        return
    if not RedisServer.available():
        _no_redis("redis-server is not installed and REDIS_URL is not set")
    server = RedisServer()
    try:
        server.start()
    except Exception as exc:  # pragma: no cover - depends on the machine
        server.stop()
        _no_redis(f"could not start redis-server: {exc}")
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture
def redis_url(redis_server_url: str) -> str:
    """The session Redis, flushed before the test (so a disposable database is required)."""
    client = redis.Redis.from_url(redis_server_url, socket_timeout=2)
    try:
        client.flushdb()
    finally:
        client.close()
    return redis_server_url


@pytest.fixture
def private_redis() -> Iterator[RedisServer]:
    """A redis-server owned by this one test, free to be killed, paused or restarted."""
    if not RedisServer.available():
        _no_redis("redis-server is not installed")
    server = RedisServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(params=["memory", "sqlite", "redis"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A store URL for each built-in backend (contract suites parametrize over this)."""
    if request.param == "memory":
        return "memory://"
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/store.db"
    return str(request.getfixturevalue("redis_url"))
