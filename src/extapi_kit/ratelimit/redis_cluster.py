"""Redis Cluster backend: the lean auto-pipelined path, one connection per master, routed by slot.

Every key of one decision shares the principal's hash tag (``{k:<id>}``, ``{o:<owner>}``,
``{ip:<addr>}``), so a decision lives in one slot. This backend keeps the cluster's slot map
(read through redis-py's ``RedisCluster``), one :class:`~extapi_kit.stores._resp.AutoPipeline`
per master, and sends each decision to the master of its slot: the same single ``EVALSHA`` as on
one server, batched with the other decisions bound for that master.

Redirections: a ``MOVED``/``ASK``/``TRYAGAIN``/``CLUSTERDOWN`` reply means the script did not
run, so that one decision is re-sent through redis-py's cluster client (which follows ``ASK``
with ``ASKING`` and ``MOVED`` with a new slot map), and the slot map is re-read before the next
decision. A dead master fails its pending decisions at once (the failover layer then decides in
process); the next probe re-reads the slot map, so the promoted replica is used without a
restart. Nothing that may have run is ever re-sent.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any
from urllib.parse import quote

from extapi_kit.exceptions import StoreError
from extapi_kit.ratelimit._result import HitResult
from extapi_kit.ratelimit.redis import RedisBackend
from extapi_kit.ratelimit.redis_pipeline import PipelinedRedisBackend
from extapi_kit.stores._redis import DEFAULT_REDIS_TIMEOUT, redis_from_url, split_hosts
from extapi_kit.stores._resp import AutoPipeline

__all__ = ["ClusterPipelinedBackend"]

_SLOTS = 16384
# Replies meaning "the script did not run here": safe to send once more elsewhere.
_REDIRECTS = ("(MOVED)", "(ASK)", "(TRYAGAIN)", "(CLUSTERDOWN)")


class _NoQuotaAddress:
    """Stands where a single-server backend has its pipe: never "the same server" as a store."""

    address = (None, "<redis cluster>", 0, 0)


class ClusterPipelinedBackend:
    """Decide on a Redis Cluster with one pipelined script call per request.

    Args:
        url: ``redis+cluster://[user:pass@]host1:port1,host2:port2/``.
        strategy: the strategy code.
        deadline: seconds a decision (or :meth:`ping`) may take.
    """

    # Each master's pipe keeps the deadline with its watchdog; the slow paths bound themselves.
    multiplexed = True
    # Quota counters are not charged in the rate-limit script on a cluster (a key's and its
    # owner's counters live in two slots); the usage layer charges them.
    pipe = _NoQuotaAddress()

    def __init__(self, url: str, strategy: int, *, deadline: float = DEFAULT_REDIS_TIMEOUT) -> None:
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff

        _, user, password, _, _, _ = split_hosts(url)
        auth = ""
        if password is not None:
            auth = f"{quote(user or '', safe='')}:{quote(password, safe='')}@"
        self._auth = auth
        self.strategy = strategy
        self.deadline = deadline
        self.cluster: Any = redis_from_url(
            url, socket_timeout=None, connect_timeout=deadline, retry=Retry(NoBackoff(), 0)
        )
        self._slow = RedisBackend(self.cluster, strategy, deadline=deadline)
        self._nodes: dict[str, PipelinedRedisBackend] = {}
        self._map: list[PipelinedRedisBackend | None] | None = None
        # One slot-map read at a time: a cold burst of concurrent decisions must not each ask the
        # cluster for its map (300 of them at once outlasted the deadline and fell back).
        self._map_lock = asyncio.Lock()
        self.redirects = 0

    def __repr__(self) -> str:
        return f"ClusterPipelinedBackend(masters={len(self._nodes)}, strategy={self.strategy})"

    def _node(self, host: str, port: int) -> PipelinedRedisBackend:
        name = f"{host}:{port}"
        backend = self._nodes.get(name)
        if backend is None:
            pipe = AutoPipeline(
                f"redis://{self._auth}{name}/0",
                connect_timeout=self.deadline,
                deadline=self.deadline,
            )
            backend = self._nodes[name] = PipelinedRedisBackend(
                pipe, self.strategy, deadline=self.deadline
            )
        return backend

    async def _refresh(self) -> list[PipelinedRedisBackend | None]:
        async with asyncio.timeout(self.deadline):
            manager = self.cluster.nodes_manager
            await manager.initialize()
        slots: dict[int, list[Any]] = manager.slots_cache
        table: list[PipelinedRedisBackend | None] = [None] * _SLOTS
        used: set[str] = set()
        for slot, nodes in slots.items():
            if nodes:
                primary = nodes[0]
                table[slot] = self._node(primary.host, int(primary.port))
                used.add(f"{primary.host}:{int(primary.port)}")
        for name in [n for n in self._nodes if n not in used]:
            await self._nodes.pop(name).aclose()
        self._map = table
        return table

    async def hit(
        self,
        keys: Sequence[str],
        windows: Sequence[tuple[int, int]],
        cost: int,
        quota: Any = None,
    ) -> HitResult:
        """Run the decision script on the master of the keys' slot.

        Args:
            keys: one key per window, all with the same hash tag.
            windows: ``(limit, seconds)`` per window.
            cost: units to charge.
            quota: unused (never linked on a cluster).
        """
        from redis.crc import key_slot

        table = self._map
        if table is None:
            async with self._map_lock:
                table = self._map if self._map is not None else await self._refresh()
        backend = table[key_slot(keys[0].encode())]
        if backend is None:  # a slot nobody serves (cluster down): let redis-py say why
            self._map = None
            return await self._redirected(keys, windows, cost)
        try:
            return await backend.hit(keys, windows, cost)
        except StoreError as exc:
            if not str(exc).endswith(_REDIRECTS):
                raise
            self._map = None  # re-read the slot map before the next decision
            return await self._redirected(keys, windows, cost)
        except Exception:
            self._map = None  # a dead master: the next call (the probe) re-reads the map
            raise

    async def _redirected(
        self, keys: Sequence[str], windows: Sequence[tuple[int, int]], cost: int
    ) -> HitResult:
        self.redirects += 1
        async with asyncio.timeout(self.deadline):
            return await self._slow.hit(keys, windows, cost)

    @property
    def batch_stats(self) -> tuple[int, int]:
        """``(writes, commands)`` sent so far over every master's connection."""
        return (
            sum(b.pipe.batches for b in self._nodes.values()),
            sum(b.pipe.commands for b in self._nodes.values()),
        )

    async def ping(self) -> bool:
        """Return whether the cluster answers."""
        return await self._slow.ping()

    async def aclose(self) -> None:
        """Close every connection."""
        for backend in self._nodes.values():
            await backend.aclose()
        self._nodes.clear()
        await self._slow.aclose()
