"""A batch of decisions spread over every slot owner of a real Redis Cluster (L19)."""

from __future__ import annotations

import asyncio
from collections import defaultdict

import pytest

from extapi_kit.exceptions import StoreError
from extapi_kit.ratelimit._result import MOVING, SLIDING
from extapi_kit.ratelimit.redis_cluster import ClusterPipelinedBackend
from tests.support.redis_cluster import RedisClusterNodes

pytestmark = [pytest.mark.redis, pytest.mark.anyio]

LIMIT = 3
PER_KEY = 5


def _slot(key: str) -> int:
    from redis.crc import key_slot

    return int(key_slot(key.encode()))


def tags_on_every_master(cluster: RedisClusterNodes, per_master: int) -> list[str]:
    owners: dict[int, list[str]] = defaultdict(list)
    i = 0
    while len(owners) < 3 or min(len(v) for v in owners.values()) < per_master:
        key = f"{{k:b{i}}}"
        port = cluster.master_of_slot(_slot(key)).port
        if len(owners[port]) < per_master:
            owners[port].append(key)
        i += 1
    return [k for keys in owners.values() for k in keys]


@pytest.mark.parametrize("strategy", [MOVING, SLIDING])
async def test_one_batch_over_three_masters_stays_exact_and_paired(
    redis_cluster_url: str, redis_cluster_session: RedisClusterNodes, strategy: int
) -> None:
    """L19: 150 decisions issued together for 30 keys whose slots belong to all three masters
    (plus one decision whose keys straddle two slots): each master gets its share in a few
    writes, every key admits exactly its limit with each count reported once to its own caller,
    and the cross-slot decision fails alone (CROSSSLOT) without disturbing the pairing."""
    keys = tags_on_every_master(redis_cluster_session, 10)
    backend = ClusterPipelinedBackend(redis_cluster_url, strategy, deadline=5)
    try:
        for key in keys[::10]:  # connect to each master first (a cold burst has its own test)
            await backend.hit([key + "w"], [(100, 60)], 1)
        writes, commands = backend.batch_stats
        order = [k for _ in range(PER_KEY) for k in keys]  # interleaved across the masters
        bad = ["{k:b0}x", "{k:b1}x"]
        assert _slot(bad[0]) != _slot(bad[1])

        async def one(key: str) -> tuple[str, bool, int] | str:
            try:
                if key == "bad":
                    await backend.hit(bad, [(LIMIT, 60), (LIMIT, 60)], 1)
                    return "no error"
                result = await backend.hit([key], [(LIMIT, 60)], 1)
            except StoreError as exc:
                return str(exc)
            return key, result.allowed, int(result.windows[0][0])

        order.insert(len(order) // 2, "bad")
        results = await asyncio.gather(*(one(k) for k in order))
        failed = [r for r in results if isinstance(r, str)]
        assert failed == ["redis error: rate-limit script failed (CROSSSLOT)"]
        per_key: dict[str, list[tuple[bool, int]]] = defaultdict(list)
        for r in results:
            if not isinstance(r, str):
                per_key[r[0]].append((r[1], r[2]))
        assert set(per_key) == set(keys)
        for key, seen in per_key.items():
            admitted = sorted(n for ok, n in seen if ok)
            assert admitted == list(range(1, LIMIT + 1)), key
            assert [n for ok, n in seen if not ok] == [LIMIT] * (PER_KEY - LIMIT), key
        new_writes, new_commands = backend.batch_stats
        assert new_commands - commands == len(order)
        assert new_writes - writes <= 6  # one write per master per loop iteration, not per call
        assert backend.redirects == 0
    finally:
        await backend.aclose()
