"""Redis Cluster and Sentinel URLs for every Redis-backed store: parsing, pub/sub across cluster
nodes, and failovers (R1, R2, R5, R6)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest

from extapi_kit.exceptions import ConfigurationError, StoreUnavailableError
from extapi_kit.keys.models import KeyRecord
from extapi_kit.middleware.rate_limit import RateLimitMiddleware
from extapi_kit.stores import registered_schemes, store_from_url
from extapi_kit.stores._redis import redis_from_url
from tests.ratelimit.helpers import ok_app
from tests.support.redis_cluster import RedisClusterNodes, SentinelGroup, wait_replicated

REDIS_KINDS = ["audit", "keys", "idempotency", "usage", "webhooks"]


def _record(key_id: str) -> KeyRecord:
    return KeyRecord(
        id=key_id,
        display_prefix="xk_test_" + key_id,
        env="test",
        name="n",
        hash="$h$",
        created_at=1.0,
        updated_at=1.0,
    )


@pytest.mark.parametrize("kind", REDIS_KINDS)
def test_every_redis_kind_registers_cluster_and_sentinel_urls(kind: str) -> None:
    """L16: redis+cluster:// and redis+sentinel:// are registered for every Redis-backed kind."""
    schemes = registered_schemes(kind)
    assert {"redis+cluster", "redis+sentinel"} <= set(schemes)


@pytest.mark.parametrize(
    ("url", "needle"),
    [
        ("redis+cluster://127.0.0.1:7000/3", "database 0"),
        ("redis+cluster://127.0.0.1:7000/?bogus=1", "bogus"),
        ("redis+cluster:///", "no host"),
        ("redis+cluster://127.0.0.1/", "host:port"),
        ("redis+sentinel://127.0.0.1:26379/", "service"),
        ("redis+sentinel://127.0.0.1:26379/svc/x", "database"),
        ("redis+sentinel://127.0.0.1:26379/svc?nope=1", "nope"),
    ],
)
def test_bad_cluster_and_sentinel_urls_are_configuration_errors(url: str, needle: str) -> None:
    """L16: a malformed topology URL is a ConfigurationError naming the problem, never a crash."""
    with pytest.raises(ConfigurationError, match=needle):
        redis_from_url(url)


def test_cluster_url_credentials_stay_out_of_repr() -> None:
    """L16: the password of a redis+cluster:// URL reaches the client but no store repr."""
    store = store_from_url("keys", "redis+cluster://user:s3cr3t@127.0.0.1:7000,127.0.0.1:7001/")
    assert "s3cr3t" not in repr(store)


@pytest.mark.redis
@pytest.mark.anyio
async def test_revocation_reaches_another_process_through_the_cluster(
    redis_cluster_url: str,
) -> None:
    """L17 (A6 on a cluster): a change made through one store reaches the watcher of another
    store (its own connections, subscribed on some cluster node) within a second."""
    writer = store_from_url("keys", redis_cluster_url)
    reader = store_from_url("keys", redis_cluster_url)
    seen: list[str] = []
    try:
        await writer.create(_record("kid1"))
        await reader.watch(seen.append)
        rec = await writer.get("kid1")
        assert rec is not None
        await writer.update(rec)
        deadline = time.monotonic() + 1.0
        while "kid1" not in seen:
            assert time.monotonic() < deadline, seen
            await asyncio.sleep(0.02)
    finally:
        await writer.aclose()
        await reader.aclose()


async def _until(fn: Callable[[], Awaitable[Any]]) -> Any:
    """Call ``fn`` until it stops raising StoreUnavailableError (for at most 20 s)."""
    deadline = time.monotonic() + 20.0
    while True:
        try:
            return await fn()
        except StoreUnavailableError:
            assert time.monotonic() < deadline, "the store never recovered"
            await asyncio.sleep(0.1)


@pytest.mark.slow
@pytest.mark.redis
@pytest.mark.anyio
async def test_stores_ride_a_cluster_master_failover(
    private_redis_cluster: RedisClusterNodes,
) -> None:
    """L14: while a killed master's replica is promoted the stores answer StoreUnavailableError
    (never another error), and the same store objects work again afterwards."""
    cluster = private_redis_cluster
    keys = store_from_url("keys", cluster.url)
    idem = store_from_url("idempotency", cluster.url)
    usage = store_from_url("usage", cluster.url)
    try:
        await keys.create(_record("kid2"))
        assert (await idem.begin("r1", "fp", now=1.0, lease=30)).acquired
        from redis.crc import key_slot

        await asyncio.to_thread(cluster.kill_master_of, key_slot(b"{kid2}"))
        errors: list[type[BaseException]] = []
        for _ in range(20):  # the gap: only "unavailable", or already-correct answers
            try:
                await keys.get("kid2")
            except Exception as exc:
                errors.append(type(exc))
            await asyncio.sleep(0.05)
        assert set(errors) <= {StoreUnavailableError}, errors
        await asyncio.to_thread(cluster.wait_ok, 30)
        rec = await _until(lambda: keys.get("kid2"))
        assert rec is not None and rec.id == "kid2"
        result = await _until(lambda: idem.begin("r2", "fp", now=2.0, lease=30))
        assert result.acquired
        from extapi_kit.usage.store import QuotaCheck

        ok, _ = await _until(
            lambda: usage.consume(
                [QuotaCheck("k:kid2:d:1", 5, 60), QuotaCheck("o:x:d:1", 5, 60)], 1
            )
        )
        assert ok
    finally:
        await keys.aclose()
        await idem.aclose()
        await usage.aclose()


@pytest.mark.redis
@pytest.mark.anyio
@pytest.mark.parametrize("kind", ["keys", "idempotency", "usage", "audit", "webhooks"])
async def test_every_kind_answers_through_sentinel(
    kind: str, private_sentinel: SentinelGroup
) -> None:
    """L16: every Redis-backed kind opens from a redis+sentinel:// URL and answers ping."""
    store = store_from_url(kind, private_sentinel.url)
    try:
        assert await store.ping()
    finally:
        await store.aclose()


@pytest.mark.slow
@pytest.mark.redis
@pytest.mark.anyio
async def test_sentinel_failover_is_followed_without_restart(
    private_sentinel: SentinelGroup,
) -> None:
    """L17: the master dies, the sentinels promote the replica; the key store (and its revocation
    listener) and the rate limiter follow the new master without a restart, and requests in the
    gap are decided by the fail-open fallback (no 500)."""
    group = private_sentinel
    keys = store_from_url("keys", group.url)
    watcher = store_from_url("keys", group.url)
    mw = RateLimitMiddleware(
        ok_app, storage=group.url, read="100000/minute", deadline=0.25, probe_interval=0.2
    )
    seen: list[str] = []
    codes: list[int] = []
    transport = httpx.ASGITransport(mw, client=("203.0.113.7", 1))
    try:
        await keys.create(_record("kid3"))
        await watcher.watch(seen.append)
        # Let the replica catch up before the master dies (asynchronous replication).
        await asyncio.to_thread(wait_replicated, group.master)
        old = group.current_master_port()
        group.master.kill()
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            deadline = time.monotonic() + 30
            while group.current_master_port() == old:
                assert time.monotonic() < deadline, "no failover"
                codes.append((await c.get("/")).status_code)
                await asyncio.sleep(0.05)
            rec = await _until(lambda: keys.get("kid3"))
            assert rec is not None
            # The listener re-subscribes on its own (telling watchers "*" meanwhile); an update
            # made once it is back reaches it.
            deadline = time.monotonic() + 15
            while True:
                seen.clear()
                await _until(lambda: keys.update(rec))
                await asyncio.sleep(0.3)
                if "kid3" in seen:
                    break
                assert time.monotonic() < deadline, "the listener did not follow the failover"
            deadline = time.monotonic() + 10
            while True:
                codes.append((await c.get("/")).status_code)
                if not mw.backend.degraded:
                    break
                assert time.monotonic() < deadline, "the rate limiter did not recover"
                await asyncio.sleep(0.05)
    finally:
        await keys.aclose()
        await watcher.aclose()
        await mw.aclose()
    assert set(codes) == {200}, codes
