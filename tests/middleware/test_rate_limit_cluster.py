"""Rate limiting on a real Redis Cluster: exactness, master failover, slot migration (L13-L15)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections import Counter
from typing import Any

import httpx
import pytest

from extapi_kit.context import Principal
from extapi_kit.middleware.rate_limit import RateLimitMiddleware
from tests.middleware.test_rate_limit_concurrency import (
    CHILD,
    ROOT,
    STRATEGIES,
    _burst,
    clear_of_minute_boundary,
)
from tests.ratelimit.helpers import ok_app, with_principals
from tests.support.redis_cluster import RedisClusterNodes

pytestmark = pytest.mark.redis


def _slot(tag: str) -> int:
    from redis.crc import key_slot

    return int(key_slot(("{" + tag + "}").encode()))


@pytest.mark.anyio
@pytest.mark.parametrize("strategy", STRATEGIES)
async def test_300_concurrent_at_50_admit_exactly_50_cluster(
    strategy: str, redis_cluster_url: str
) -> None:
    """L13: on a Redis Cluster 300 concurrent requests at L=50 give exactly 50x200 and 250x429."""
    mw = RateLimitMiddleware(
        ok_app,
        storage=redis_cluster_url,
        read="50/minute;1000/hour",
        strategy=strategy,
        deadline=5,
    )
    try:
        codes = await _burst(mw)
    finally:
        await mw.aclose()
    assert codes.count(200) == 50 and codes.count(429) == 250
    assert not mw.backend.degraded


@pytest.mark.anyio
async def test_a_cold_burst_reads_the_slot_map_once(redis_cluster_url: str) -> None:
    """L13: 300 concurrent first decisions on a cluster read its slot map once, not 300 times
    (each read asks a node for CLUSTER SLOTS; under coverage 300 of them outlasted the deadline,
    so part of the burst was decided by the in-process fallback: 100 admitted at L=50)."""
    from extapi_kit.ratelimit.redis_cluster import ClusterPipelinedBackend

    mw = RateLimitMiddleware(
        ok_app, storage=redis_cluster_url, read="50/minute", strategy="moving-window", deadline=5
    )
    cluster = mw.backend.primary
    assert isinstance(cluster, ClusterPipelinedBackend)
    original = cluster.slots._refresh
    reads = 0

    async def counted() -> Any:
        nonlocal reads
        reads += 1
        return await original()

    cluster.slots._refresh = counted  # type: ignore[method-assign]
    try:
        codes = await _burst(mw)
    finally:
        await mw.aclose()
    assert reads == 1
    assert codes.count(200) == 50 and not mw.backend.degraded


def test_two_processes_share_one_limit_on_a_cluster(redis_cluster_url: str) -> None:
    """L13: two OS processes, 150 concurrent requests each, one cluster: exactly 50 admitted."""
    start = clear_of_minute_boundary(time.time() + 2.5)
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", CHILD, redis_cluster_url, str(start)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for _ in range(2)
    ]
    results = []
    for p in procs:
        out, err = p.communicate(timeout=60)
        assert p.returncode == 0, err.decode()
        results.append(json.loads(out))
    for strategy in STRATEGIES:
        assert results[0][strategy] + results[1][strategy] == 50, (strategy, results)


@pytest.mark.anyio
async def test_key_and_owner_windows_share_one_slot(redis_cluster_url: str) -> None:
    """L13: a key's windows and its owner's shared budget are charged in one script on a cluster
    (no CROSSSLOT): the owner budget of 5 holds across two keys of the owner."""
    mw = RateLimitMiddleware(
        ok_app, storage=redis_cluster_url, read="4/minute", per_owner="5/minute", deadline=5
    )
    principals = {
        "a": Principal(key_id="ka", owner="acme"),
        "b": Principal(key_id="kb", owner="acme"),
    }
    app = with_principals(mw, principals)
    transport = httpx.ASGITransport(app, client=("203.0.113.7", 1))
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            codes = [(await c.get("/", headers={"x-test-key": k})).status_code for k in "aaaabbbb"]
    finally:
        await mw.aclose()
    assert codes == [200, 200, 200, 200, 200, 429, 429, 429]
    assert not mw.backend.degraded


async def _traffic(
    mw: RateLimitMiddleware, stop: asyncio.Event, codes: Counter[int], degraded: list[bool]
) -> None:
    transport = httpx.ASGITransport(mw, client=("203.0.113.7", 1))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        while not stop.is_set():
            rs = await asyncio.gather(*(c.get("/") for _ in range(5)))
            codes.update(r.status_code for r in rs)
            degraded.append(mw.backend.degraded)
            await asyncio.sleep(0.01)


@pytest.mark.slow
@pytest.mark.anyio
@pytest.mark.parametrize("leases", [False, True], ids=["script", "leases"])
async def test_master_killed_replica_promoted_no_500_and_recovery(
    private_redis_cluster: RedisClusterNodes, leases: bool
) -> None:
    """L14 (L23 with local leases): a master dies mid-traffic: no 500, the in-process fallback
    decides during the gap (fail open, degraded), and after the replica's promotion decisions
    return to the cluster without a restart."""
    from extapi_kit.ratelimit.leases import LeasedRedis

    cluster = private_redis_cluster
    storage: Any = LeasedRedis(cluster.url, block=20, ttl=0.5) if leases else cluster.url
    mw = RateLimitMiddleware(
        ok_app, storage=storage, read="100000/minute", deadline=0.25, probe_interval=0.2
    )
    codes: Counter[int] = Counter()
    degraded: list[bool] = []
    stop = asyncio.Event()
    try:
        task = asyncio.create_task(_traffic(mw, stop, codes, degraded))
        await asyncio.sleep(0.5)
        await asyncio.to_thread(cluster.kill_master_of, _slot("ip:203.0.113.7"))
        await asyncio.to_thread(cluster.wait_ok, 30)
        # Recovered: a full second of decisions made on the cluster again.
        deadline = time.monotonic() + 20
        healthy_since = None
        while True:
            assert time.monotonic() < deadline, "never left the fallback after the failover"
            if mw.backend.degraded or not degraded or degraded[-1]:
                healthy_since = None
            elif healthy_since is None:
                healthy_since = (time.monotonic(), codes[200])
            elif time.monotonic() - healthy_since[0] > 1.0:
                break
            await asyncio.sleep(0.05)
        before = healthy_since[1]
        stop.set()
        await task
    finally:
        stop.set()
        await mw.aclose()
    assert set(codes) == {200}, codes  # fail open: never a 500 (nor a 503)
    assert any(degraded), "the gap was never seen (the kill came too late?)"
    assert codes[200] > before  # traffic went on after recovery
    assert not mw.backend.degraded


@pytest.mark.slow
@pytest.mark.anyio
async def test_slot_migration_during_traffic_keeps_the_limit_exact(
    private_redis_cluster: RedisClusterNodes,
) -> None:
    """L15: the principal's slot moves to another master mid-traffic (ASK, then MOVED): the
    limit stays exact (50 admitted out of a continuous stream) and no decision falls back."""
    cluster = private_redis_cluster
    mw = RateLimitMiddleware(
        ok_app, storage=cluster.url, read="50/minute", strategy="moving-window", deadline=2
    )
    codes: Counter[int] = Counter()
    degraded: list[bool] = []
    stop = asyncio.Event()
    try:
        task = asyncio.create_task(_traffic(mw, stop, codes, degraded))
        await asyncio.sleep(0.2)
        source, target = await asyncio.to_thread(cluster.migrate_slot, _slot("ip:203.0.113.7"), 1)
        await asyncio.sleep(0.3)
        stop.set()
        await task
    finally:
        stop.set()
        await mw.aclose()
    assert source is not target
    assert cluster.master_of_slot(_slot("ip:203.0.113.7")) is target
    assert codes[200] == 50 and set(codes) == {200, 429}, codes
    assert not any(degraded)
    assert mw.backend.primary.redirects >= 1  # MOVED/ASK seen and followed
