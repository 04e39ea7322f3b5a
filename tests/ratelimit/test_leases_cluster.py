"""Local leases on a real Redis Cluster: per-master routing, redirections, exactness (L20, L23).

Every key of a lease carries its principal's hash tag, so each lease lives in one slot and goes
to that slot's master over the master's own pipelined connection. A lease call that a cluster
answers with a redirection (the script did not run) is sent once more through redis-py after the
slot map is read again.
"""

from __future__ import annotations

import asyncio

import pytest

from extapi_kit.ratelimit.leases import LeaseBackend, LeasedRedis
from tests.ratelimit.test_cluster_batch import _slot, tags_on_every_master
from tests.ratelimit.test_leases import build_with_leases_admits_the_limit
from tests.support.redis_cluster import RedisClusterNodes

pytestmark = [pytest.mark.redis, pytest.mark.anyio]


def _backend(url: str, block: int = 20, ttl: float = 5.0) -> LeaseBackend:
    return LeasedRedis(url, block=block, ttl=ttl).backend(deadline=5)


def _charged(cluster: RedisClusterNodes, key: str) -> int:
    """Units the shared counter of ``key``'s window holds, read on the master of its slot."""
    client = cluster.client(cluster.master_of_slot(_slot(key)))
    try:
        return int(client.hget(key + ":lease", "c") or 0)
    finally:
        client.close()


async def test_two_workers_over_three_masters_never_over_admit(
    redis_cluster_url: str, redis_cluster_session: RedisClusterNodes
) -> None:
    """L20 on a cluster: two leasing workers, 12 principals whose slots belong to all three
    masters, 240 concurrent decisions at L=10 each: no principal is admitted more than 10, each
    master's connection carried its own principals' leases, and once the leases end every
    shared counter equals what was admitted (nothing lost, nothing invented)."""
    tags = tags_on_every_master(redis_cluster_session, 4)
    a, b = _backend(redis_cluster_url, block=4), _backend(redis_cluster_url, block=4)
    windows = [(10, 60)]
    try:
        order = [(w, t) for _ in range(10) for t in tags for w in (a, b)]
        results = await asyncio.gather(*(w.hit([t], windows, 1) for w, t in order))
        admitted = {t: 0 for t in tags}
        for (_, t), r in zip(order, results, strict=True):
            admitted[t] += r.allowed
        assert all(n <= 10 for n in admitted.values()), admitted
        assert sum(admitted.values()) >= 12 * 6  # early refusals only while leases are open
        for worker in (a, b):
            assert len(worker._slots.nodes) == 3  # type: ignore[union-attr]
            assert worker.batch_stats[0] >= 3 and worker.redirects == 0
        await a.release()
        await b.release()
        for t, n in admitted.items():
            assert _charged(redis_cluster_session, t) == n, t
    finally:
        await a.aclose()
        await b.aclose()


async def test_a_migrated_slot_redirects_the_lease_and_the_limit_holds(
    redis_cluster_url: str, redis_cluster_session: RedisClusterNodes
) -> None:
    """L23: the slot of a principal moves to another master between two lease calls: the old
    master answers MOVED (the script did not run), the call is sent once more through redis-py
    to the new owner, the slot map is read again, and the principal is still admitted exactly
    its limit in all, with the counter moved along with the slot."""
    tag = "{k:moving-lease}"
    backend = _backend(redis_cluster_url, block=5, ttl=60)
    windows = [(30, 600)]
    try:
        first = [await backend.hit([tag], windows, 1) for _ in range(5)]
        assert all(r.allowed for r in first)
        source, target = await asyncio.to_thread(redis_cluster_session.migrate_slot, _slot(tag), 10)
        assert redis_cluster_session.master_of_slot(_slot(tag)) is target
        rest = [await backend.hit([tag], windows, 1) for _ in range(40)]
        assert backend.redirects >= 1
        assert sum(r.allowed for r in rest) == 25 and not rest[-1].allowed
        await backend.release()
        assert _charged(redis_cluster_session, tag) == 30
        assert source is not target
    finally:
        await backend.aclose()


async def test_scripts_flushed_on_every_master_are_sent_whole_once(
    redis_cluster_url: str, redis_cluster_session: RedisClusterNodes
) -> None:
    """L23 (L18 on a cluster): after SCRIPT FLUSH on every master, each master's next lease call
    gets NOSCRIPT and is sent whole once (the script did not run, so nothing is charged twice)."""
    tags = tags_on_every_master(redis_cluster_session, 1)
    backend = _backend(redis_cluster_url, block=1, ttl=60)
    windows = [(100, 600)]
    try:
        for t in tags:
            assert (await backend.hit([t], windows, 1)).allowed
        for node in redis_cluster_session.masters():
            client = redis_cluster_session.client(node)
            try:
                client.script_flush()
            finally:
                client.close()
        reloads = backend.reloads
        for t in tags:
            assert (await backend.hit([t], windows, 1)).allowed
        assert backend.reloads - reloads == 3
        await backend.release()
        assert [_charged(redis_cluster_session, t) for t in tags] == [2, 2, 2]
    finally:
        await backend.aclose()


async def test_build_wires_leases_on_a_cluster_url(redis_cluster_url: str) -> None:
    """L20: build(rate_limit_storage='redis+cluster://...', rate_limit_leases=N) puts a cluster
    LeaseBackend behind the failover layer and the stack admits exactly the limit."""
    # A generous deadline: under a loaded CI box the cold cluster client's first slot-map read
    # can outlast build()'s 0.1 s, and the fallback would decide instead (the helper checks not).
    _, leases = await build_with_leases_admits_the_limit(redis_cluster_url, deadline=5)
    try:
        assert "cluster" in repr(leases)
        assert await leases.ping()
    finally:
        await leases.aclose()
