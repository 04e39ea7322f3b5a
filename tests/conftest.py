"""Shared fixtures: anyio backend, a private Redis server, a private PostgreSQL database, and store
URLs for every backend."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

import pytest
import redis
from hypothesis import HealthCheck, settings

from tests.support import postgres
from tests.support.redis_cluster import SESSION_NODE_TIMEOUT_MS, RedisClusterNodes, SentinelGroup
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


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _no_server(name: str, flag: str, reason: str) -> NoReturn:
    """Skip for want of a server; under ``flag=1`` (as in .ci/run) fail instead."""
    if os.environ.get(flag) == "1":
        pytest.fail(f"{flag}=1 but no {name} server: {reason}")
    pytest.skip(f"no {name} server: {reason}")


def _no_redis(reason: str) -> NoReturn:
    _no_server("Redis", "EXTAPI_KIT_REQUIRE_REDIS", reason)


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


@pytest.fixture(scope="session")
def redis_cluster_session() -> Iterator[RedisClusterNodes]:
    """A private Redis Cluster (3 masters + 3 replicas on loopback) for the whole session."""
    if not RedisClusterNodes.available():
        _no_redis("redis-server or redis-cli is not installed")
    cluster = RedisClusterNodes(node_timeout_ms=SESSION_NODE_TIMEOUT_MS)
    try:
        cluster.start()
    except Exception as exc:  # pragma: no cover - depends on the machine
        cluster.stop()
        _no_redis(f"could not start a Redis Cluster: {exc}")
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def redis_cluster_url(redis_cluster_session: RedisClusterNodes) -> str:
    """A ``redis+cluster://`` URL of the session cluster, flushed before the test."""
    redis_cluster_session.flush()
    return redis_cluster_session.url


@pytest.fixture
def private_redis_cluster() -> Iterator[RedisClusterNodes]:
    """A Redis Cluster owned by this one test, free to lose a master or migrate a slot."""
    if not RedisClusterNodes.available():
        _no_redis("redis-server or redis-cli is not installed")
    cluster = RedisClusterNodes()
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def private_sentinel() -> Iterator[SentinelGroup]:
    """One master, one replica and three sentinels on loopback, owned by this one test."""
    if not RedisServer.available():
        _no_redis("redis-server is not installed")
    group = SentinelGroup()
    try:
        group.start()
        yield group
    finally:
        group.stop()


def _backend_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "postgresql":
        return str(request.getfixturevalue("pg_url"))
    if request.param == "memory":
        return "memory://"
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/store.db"
    if request.param == "redis-cluster":
        return str(request.getfixturevalue("redis_cluster_url"))
    return str(request.getfixturevalue("redis_url"))


@pytest.fixture(params=["memory", "sqlite", "redis", "redis-cluster"])
def contract_store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """``store_url`` plus a Redis Cluster: the store contract suites of Redis-backed kinds."""
    return _backend_url(request, tmp_path)


@pytest.fixture(
    params=[
        "memory",
        "sqlite",
        "redis",
        "redis-cluster",
        pytest.param("postgresql", marks=pytest.mark.postgres),
    ]
)
def any_contract_store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """``any_store_url`` plus a Redis Cluster: the contract suites of kinds with PostgreSQL."""
    return _backend_url(request, tmp_path)


@pytest.fixture(params=["memory", "sqlite", "redis"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A store URL for each built-in backend (contract suites parametrize over this)."""
    return _backend_url(request, tmp_path)


@pytest.fixture(
    params=["memory", "sqlite", "redis", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def any_store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A store URL for each built-in backend, PostgreSQL included (stores that have one)."""
    return _backend_url(request, tmp_path)


def _no_postgres(reason: str) -> NoReturn:
    _no_server("PostgreSQL", "EXTAPI_KIT_REQUIRE_POSTGRES", reason)


@pytest.fixture(scope="session")
def postgres_db_url() -> Iterator[str]:
    """A database for the whole session: DATABASE_URL if set, else a new one dropped afterwards."""
    env_url = os.environ.get("DATABASE_URL")
    if env_url:
        yield env_url
        return
    try:
        import asyncpg  # noqa: F401
    except ImportError:  # pragma: no cover - depends on the environment
        _no_postgres("asyncpg is not installed (pip install 'extapi-kit[postgres]')")
    try:
        url = postgres.create_database()
    except Exception as exc:
        _no_postgres(f"cannot create a database on {postgres.server_url()}: {exc}")
    try:
        yield url
    finally:
        postgres.drop_database(url)


@pytest.fixture
def pg_url(postgres_db_url: str) -> str:
    """A ``postgresql://`` store URL in a schema of its own (fresh tables for this test)."""
    return f"{postgres_db_url}?schema=t_{secrets.token_hex(6)}"
