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
from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar
from urllib.parse import quote

from extapi_kit.exceptions import StoreError
from extapi_kit.ratelimit._result import HitResult
from extapi_kit.ratelimit.redis import RedisBackend
from extapi_kit.ratelimit.redis_pipeline import PipelinedRedisBackend
from extapi_kit.stores._redis import DEFAULT_REDIS_TIMEOUT, redis_from_url, split_hosts
from extapi_kit.stores._resp import CLUSTER_REDIRECTS, AutoPipeline

__all__ = ["ClusterPipelinedBackend", "SlotMap"]

N = TypeVar("N")

_SLOTS = 16384
# Replies meaning "the script did not run here": safe to send once more elsewhere.
_REDIRECTS = tuple(f"({code})" for code in CLUSTER_REDIRECTS)


class _NoQuotaAddress:
    """Stands where a single-server backend has its pipe: never "the same server" as a store."""

    address = (None, "<redis cluster>", 0, 0)


class SlotMap(Generic[N]):
    """The cluster's slot map with one lean connection per master, read lazily and on demand.

    Each master gets one :class:`~extapi_kit.stores._resp.AutoPipeline`, wrapped by ``wrap``
    into what the caller sends through (a decision backend, or the pipe itself). The map is read
    through redis-py's ``RedisCluster`` (``cluster``, also the callers' slow path for redirected
    commands), once at a time however many callers find it missing; :meth:`invalidate` makes the
    next call read it again (after a redirection or a dead master).

    Args:
        url: ``redis+cluster://[user:pass@]host1:port1,host2:port2/``.
        deadline: seconds a map read (and each pipe's reply) may take.
        wrap: builds the per-master object from its pipe.
        pipe_of: returns the pipe inside such an object (to close it and read its counters).
    """

    def __init__(
        self,
        url: str,
        deadline: float,
        wrap: Callable[[AutoPipeline], N],
        pipe_of: Callable[[N], AutoPipeline],
    ) -> None:
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff

        _, user, password, _, _, _ = split_hosts(url)
        auth = ""
        if password is not None:
            auth = f"{quote(user or '', safe='')}:{quote(password, safe='')}@"
        self._auth = auth
        self.deadline = deadline
        self._wrap = wrap
        self._pipe_of = pipe_of
        self.cluster: Any = redis_from_url(
            url, socket_timeout=None, connect_timeout=deadline, retry=Retry(NoBackoff(), 0)
        )
        self.nodes: dict[str, N] = {}
        self._map: list[N | None] | None = None
        # One slot-map read at a time: a cold burst of concurrent decisions must not each ask the
        # cluster for its map (300 of them at once outlasted the deadline and fell back).
        self._map_lock = asyncio.Lock()

    def _node(self, host: str, port: int) -> N:
        name = f"{host}:{port}"
        node = self.nodes.get(name)
        if node is None:
            pipe = AutoPipeline(
                f"redis://{self._auth}{name}/0",
                connect_timeout=self.deadline,
                deadline=self.deadline,
            )
            node = self.nodes[name] = self._wrap(pipe)
        return node

    async def _refresh(self) -> list[N | None]:
        async with asyncio.timeout(self.deadline):
            manager = self.cluster.nodes_manager
            await manager.initialize()
        slots: dict[int, list[Any]] = manager.slots_cache
        table: list[N | None] = [None] * _SLOTS
        used: set[str] = set()
        for slot, nodes in slots.items():
            if nodes:
                primary = nodes[0]
                table[slot] = self._node(primary.host, int(primary.port))
                used.add(f"{primary.host}:{int(primary.port)}")
        for name in [n for n in self.nodes if n not in used]:
            await self._pipe_of(self.nodes.pop(name)).aclose()
        self._map = table
        return table

    async def node_for(self, key: str) -> N | None:
        """Return the object of the master serving ``key``'s slot; None if no master does.

        Args:
            key: a key (its hash tag decides the slot).
        """
        from redis.crc import key_slot

        table = self._map
        if table is None:
            async with self._map_lock:
                table = self._map if self._map is not None else await self._refresh()
        node = table[key_slot(key.encode())]
        if node is None:  # a slot nobody serves (cluster down): read the map again next time
            self._map = None
        return node

    def invalidate(self) -> None:
        """Read the slot map again before the next call."""
        self._map = None

    @property
    def batch_stats(self) -> tuple[int, int]:
        """``(writes, commands)`` sent so far over every master's connection."""
        pipes = [self._pipe_of(n) for n in self.nodes.values()]
        return sum(p.batches for p in pipes), sum(p.commands for p in pipes)

    async def aclose(self) -> None:
        """Close every master's connection (the cluster client is closed by its user)."""
        for node in self.nodes.values():
            await self._pipe_of(node).aclose()
        self.nodes.clear()


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
        self.strategy = strategy
        self.deadline = deadline
        self.slots: SlotMap[PipelinedRedisBackend] = SlotMap(
            url,
            deadline,
            lambda pipe: PipelinedRedisBackend(pipe, strategy, deadline=deadline),
            lambda backend: backend.pipe,
        )
        self.cluster: Any = self.slots.cluster
        self._slow = RedisBackend(self.cluster, strategy, deadline=deadline)
        self.redirects = 0

    def __repr__(self) -> str:
        return f"ClusterPipelinedBackend(masters={len(self.slots.nodes)}, strategy={self.strategy})"

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
        backend = await self.slots.node_for(keys[0])
        if backend is None:  # a slot nobody serves (cluster down): let redis-py say why
            return await self._redirected(keys, windows, cost)
        try:
            return await backend.hit(keys, windows, cost)
        except StoreError as exc:
            if not str(exc).endswith(_REDIRECTS):
                raise
            self.slots.invalidate()  # re-read the slot map before the next decision
            return await self._redirected(keys, windows, cost)
        except Exception:
            self.slots.invalidate()  # a dead master: the next call (the probe) re-reads the map
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
        return self.slots.batch_stats

    async def ping(self) -> bool:
        """Return whether the cluster answers."""
        return await self._slow.ping()

    async def aclose(self) -> None:
        """Close every connection."""
        await self.slots.aclose()
        await self._slow.aclose()
