"""Redis Cluster against standalone Redis: the full stack's per-request cost on each (issue 16 §2).

Starts a private standalone redis-server and a private 6-node cluster (3 masters + 3 replicas,
``tests/support/redis_cluster.py``) on loopback, builds the same full stack (``bench.stacks``) on
each, and times requests in process, interleaved in rounds as ``bench.inprocess`` does. A second
table isolates the rate-limit decision itself: the same Lua script through the lean
auto-pipelined client (standalone, and per master on the cluster), redis-py's ``Redis`` and
redis-py's ``RedisCluster``.

``python -m bench.cluster`` runs it alone (``python -m bench cluster`` too).
"""

from __future__ import annotations

import asyncio
import importlib
import statistics
import sys
import time
from typing import Any

from bench.inprocess import ROUNDS, Cell, _warm
from bench.stacks import BenchEnv, Stack, build_stack


def _degraded(app: Any) -> bool:
    layer, seen = app, set()
    while layer is not None and id(layer) not in seen:
        seen.add(id(layer))
        if getattr(getattr(layer, "backend", None), "degraded", False):
            return True
        layer = getattr(layer, "app", None)
    return False


async def _stack(url: str, name: str, leases: bool = False) -> Stack:
    stack = await build_stack("extapi-redis-leases" if leases else "extapi-redis", BenchEnv(url))
    stack.name = name
    return stack


async def _full_stacks(standalone: str, cluster: str) -> list[dict[str, Any]]:
    stacks = [
        await build_stack("starlette", BenchEnv(None)),
        await _stack(standalone, "extapi full stack (redis)"),
        await _stack(cluster, "extapi full stack (redis-cluster)"),
        # Local leases (off by default) on each: decisions from a leased block, renewed ahead.
        await _stack(standalone, "extapi full stack (redis, leases)", leases=True),
        await _stack(cluster, "extapi full stack (redis-cluster, leases)", leases=True),
    ]
    try:
        cells = [Cell(s, m) for s in stacks for m in ("GET", "POST")]
        for cell in cells:
            await _warm(cell)
        # The first cluster call loads the slot map and may miss the rate limiter's deadline
        # (it then decides in process until a probe succeeds): measure only on the cluster.
        deadline = time.monotonic() + 30
        while any(_degraded(s.app) for s in stacks):
            if time.monotonic() > deadline:
                raise RuntimeError("a stack stayed in degraded mode")
            for cell in cells:
                await _warm(cell)
            await asyncio.sleep(0.2)
        degraded_rounds = 0
        for r in range(ROUNDS):
            shift = r % len(cells)
            for cell in cells[shift:] + cells[:shift]:
                await cell.round()
            degraded_rounds += any(_degraded(s.app) for s in stacks)
        if degraded_rounds:
            raise RuntimeError(f"{degraded_rounds} rounds ended in degraded mode")
    finally:
        for stack in stacks:
            await stack.aclose()
    medians = {(c.stack.name, c.method): statistics.median(c.samples) / 1000 for c in cells}
    rows = []
    for cell in cells:
        median = medians[(cell.stack.name, cell.method)]
        base = medians[("starlette", cell.method)]
        row: dict[str, Any] = {
            "name": f"{cell.stack.name} {cell.method}",
            "median_us": median,
            "added_us": median - base,
            "errors": cell.errors,
        }
        if "(redis-cluster" in cell.stack.name:
            ref = medians[(cell.stack.name.replace("redis-cluster", "redis"), cell.method)]
            row["x_standalone_per_request"] = median / ref
            row["x_standalone_added"] = (median - base) / max(ref - base, 1e-9)
            row["target"] = 1.3
            row["met"] = "yes" if row["x_standalone_per_request"] <= 1.3 else "no"
        rows.append(row)
    return rows


async def _decision_round(backend: Any, concurrency: int, n: int) -> float:
    keys = ["bench:rl:{k:bench}"]
    windows = [(10**9, 60)]
    per = n // concurrency

    async def worker() -> None:
        for _ in range(per):
            await backend.hit(keys, windows, 1)

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return (time.perf_counter() - t0) / (per * concurrency) * 1e6


async def _decision_rows(standalone: str, cluster: str) -> list[dict[str, Any]]:
    from extapi_kit.ratelimit.redis import RedisBackend
    from extapi_kit.ratelimit.redis_cluster import ClusterPipelinedBackend
    from extapi_kit.ratelimit.redis_pipeline import PipelinedRedisBackend
    from extapi_kit.stores._redis import redis_from_url
    from extapi_kit.stores._resp import AutoPipeline

    backends: list[tuple[str, Any]] = [
        ("lean client, standalone", PipelinedRedisBackend(AutoPipeline(standalone), 1)),
        ("lean client, cluster", ClusterPipelinedBackend(cluster, 1)),
        ("redis-py Redis, standalone", RedisBackend(redis_from_url(standalone), 1)),
        ("redis-py RedisCluster", RedisBackend(redis_from_url(cluster), 1)),
    ]
    rows = []
    try:
        for concurrency in (1, 64):
            # Interleaved rounds, so load drift on a shared machine hits every client alike.
            samples: dict[str, list[float]] = {name: [] for name, _ in backends}
            for _, backend in backends:
                await _decision_round(backend, concurrency, 256)
            for _ in range(ROUNDS):
                for name, backend in backends:
                    samples[name].append(await _decision_round(backend, concurrency, 512))
            for name, values in samples.items():
                us = statistics.median(values)
                rows.append(
                    {
                        "name": f"{name} c={concurrency}",
                        "us_per_decision": us,
                        "decisions_per_s": int(1e6 / us),
                    }
                )
    finally:
        for _, backend in backends:
            await backend.aclose()
    return rows


def run(names: list[str] | None = None) -> list[dict[str, Any]]:
    """Start a standalone Redis and a 6-node cluster, measure both, stop them.

    Args:
        names: unused (the suite has a fixed set of rows).
    """
    from tests.support.redis_cluster import RedisClusterNodes
    from tests.support.redis_server import RedisServer

    if not RedisClusterNodes.available():
        return [{"name": "redis cluster", "skipped": "redis-server or redis-cli not installed"}]
    try:  # the loop production runs under uvicorn[standard], when installed
        factory: Any = importlib.import_module("uvloop").new_event_loop
    except ImportError:
        factory = None
    server, cluster = RedisServer(), RedisClusterNodes()
    try:
        server.start()
        cluster.start()
        with asyncio.Runner(loop_factory=factory) as runner:
            rows = runner.run(_full_stacks(server.url, cluster.url))
            rows += runner.run(_decision_rows(server.url, cluster.url))
        return rows
    finally:
        cluster.stop()
        server.stop()


if __name__ == "__main__":
    for result in run(sys.argv[1:] or None):
        print(result)
