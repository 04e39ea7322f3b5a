"""``redis://host:6379/0``: plans in Redis, shared by any number of processes.

Layout under a key prefix (default ``extapi:plans:``): ``<p>plans`` is a hash of plan name ->
plan JSON, ``<p>owners`` a hash of owner -> plan name (each command touches one key, so a Redis
Cluster needs no hash tags). Every change is published on ``<p>events``, the way the key store
announces a revocation; ``watch()`` subscribes, so every process drops its cached plans and the
key principals built from them well within a second. When the subscription breaks, watchers are
told to drop everything (``"*"``) and the listener reconnects.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

from extapi_kit.exceptions import ConfigurationError, ConflictError, NotFoundError, StoreError
from extapi_kit.plans._sql import plan_data
from extapi_kit.plans.models import Plan
from extapi_kit.plans.store import ChangeCallback, Watchers
from extapi_kit.stores._redis import is_cluster, redis_call, redis_from_url

if TYPE_CHECKING:
    from redis.asyncio import Redis

__all__ = ["RedisPlanStore"]

logger = logging.getLogger("extapi_kit.plans")
T = TypeVar("T")

# Replace only an existing field: an update never resurrects a plan deleted meanwhile.
_UPDATE = """
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return 1
"""


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class RedisPlanStore:
    """A :class:`~extapi_kit.plans.store.PlanStore` in Redis with pub/sub change events.

    Args:
        client: a ``redis.asyncio.Redis`` client (made with timeouts).
        url: the URL, used to open the separate pub/sub connection.
        key_prefix: prefix of every Redis key and of the channel.
    """

    def __init__(self, client: Redis, *, url: str, key_prefix: str = "extapi:plans:") -> None:
        if not key_prefix or any(c.isspace() for c in key_prefix):
            raise ConfigurationError(f"invalid key_prefix {key_prefix!r}")
        self._r = client
        self._url = url
        self._plans = f"{key_prefix}plans"
        self._owners = f"{key_prefix}owners"
        self._cluster = is_cluster(client)
        self.channel = f"{key_prefix}events"
        self._watchers = Watchers()
        self._listener: asyncio.Task[None] | None = None
        self._subscribed: asyncio.Event | None = None
        self._closed = False

    @classmethod
    def from_url(cls, url: str, **options: Any) -> RedisPlanStore:
        """Create a store from ``redis://`` / ``rediss://``.

        Args:
            url: the Redis URL.
            **options: ``key_prefix``; anything else goes to :func:`redis_from_url`.
        """
        key_prefix = options.pop("key_prefix", "extapi:plans:")
        return cls(redis_from_url(url, **options), url=url, key_prefix=key_prefix)

    def __repr__(self) -> str:
        return f"RedisPlanStore(channel={self.channel!r})"

    async def _call(self, fn: Callable[[], Awaitable[T]]) -> T:
        return await redis_call(fn, self._r)

    async def _announce(self, what: str) -> None:
        self._watchers.notify(what)
        await self._call(lambda: self._r.publish(self.channel, what))

    async def create(self, plan: Plan) -> None:
        """Insert a plan.

        Args:
            plan: the plan.
        """
        ok = await self._call(lambda: self._r.hsetnx(self._plans, plan.name, plan_data(plan)))
        if not ok:
            raise ConflictError(f"plan {plan.name!r} already exists")

    async def get(self, name: str) -> Plan | None:
        """Return a plan or None.

        Args:
            name: the plan name.
        """
        raw = await self._call(lambda: self._r.hget(self._plans, name))
        return None if raw is None else Plan.from_dict(json.loads(raw))

    async def list(self) -> list[Plan]:
        """Return every plan by name."""
        raw: dict[Any, Any] = await self._call(lambda: self._r.hgetall(self._plans))
        plans = [Plan.from_dict(json.loads(v)) for v in raw.values()]
        return sorted(plans, key=lambda p: p.name)

    async def update(self, plan: Plan) -> None:
        """Replace a plan and publish the change.

        Args:
            plan: the new state.
        """
        ok = await self._call(
            lambda: self._r.eval(_UPDATE, 1, self._plans, plan.name, plan_data(plan))
        )
        if not ok:
            raise NotFoundError(f"no plan {plan.name!r}")
        await self._announce(plan.name)

    async def delete(self, name: str) -> bool:
        """Delete a plan and publish the change.

        Args:
            name: the plan name.
        """
        found = bool(await self._call(lambda: self._r.hdel(self._plans, name)))
        if found:
            await self._announce(name)
        return found

    async def get_owner(self, owner: str) -> str | None:
        """Return an owner's plan.

        Args:
            owner: the owner id.
        """
        raw = await self._call(lambda: self._r.hget(self._owners, owner))
        return None if raw is None else _text(raw)

    async def set_owner(self, owner: str, plan: str | None) -> None:
        """Assign or clear an owner's plan and publish the change.

        Args:
            owner: the owner id.
            plan: the plan name or None.
        """
        if plan is None:
            await self._call(lambda: self._r.hdel(self._owners, owner))
        else:
            await self._call(lambda: self._r.hset(self._owners, owner, plan))
        await self._announce(f"owner:{owner}")

    async def owners(self, plan: str | None = None) -> dict[str, str]:
        """Return owner -> plan.

        Args:
            plan: only owners on this plan.
        """
        raw: dict[Any, Any] = await self._call(lambda: self._r.hgetall(self._owners))
        found = {_text(o): _text(p) for o, p in raw.items()}
        return {o: found[o] for o in sorted(found) if plan is None or found[o] == plan}

    async def watch(self, callback: ChangeCallback) -> None:
        """Register ``callback`` and make sure this process is subscribed (waits up to ~1 s).

        Args:
            callback: called with what changed, or ``"*"`` after the subscription broke.
        """
        self._watchers.add(callback)
        event = self._subscribed
        if event is None or self._listener is None or self._listener.done():
            event = self._subscribed = asyncio.Event()
            self._listener = asyncio.get_running_loop().create_task(self._listen())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), 1.0)

    async def _listen(self) -> None:
        broken = False
        attempt = 0
        while not self._closed:
            sub: Any = None
            pubsub: Any = None
            try:
                sub = await self._subscriber(attempt)
                attempt += 1
                pubsub = sub.pubsub()
                await pubsub.subscribe(self.channel)
                while True:
                    msg = await pubsub.get_message(timeout=1.0)
                    if msg is None:
                        continue
                    if msg["type"] == "subscribe":
                        if broken:
                            self._watchers.notify("*")
                        broken = False
                        if self._subscribed is not None:
                            self._subscribed.set()
                    elif msg["type"] == "message":
                        self._watchers.notify(_text(msg["data"]))
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                logger.warning("plan change subscription lost (%s); retrying", type(exc).__name__)
                self._watchers.notify("*")
                broken = True
                await asyncio.sleep(0.5)
            finally:
                with contextlib.suppress(Exception):
                    if pubsub is not None:
                        await pubsub.aclose()
                    if sub is not None:
                        await sub.aclose()

    async def _subscriber(self, attempt: int) -> Any:
        if not self._cluster:
            return redis_from_url(self._url, socket_timeout=5.0)
        # Classic PUBLISH reaches every node of a cluster: subscribe on any one, the next after
        # a failure (as the key store does).
        from redis.asyncio import ConnectionPool
        from redis.asyncio import Redis as PlainRedis

        cluster: Any = self._r
        await cluster.initialize()
        nodes = cluster.get_nodes()
        node = nodes[attempt % len(nodes)]
        kwargs = dict(node.connection_kwargs)
        kwargs["socket_timeout"] = 5.0
        pool = ConnectionPool(connection_class=node.connection_class, max_connections=2, **kwargs)
        return PlainRedis(connection_pool=pool)

    async def ping(self) -> bool:
        """Return whether Redis answers."""
        try:
            return bool(await self._call(lambda: self._r.ping()))
        except StoreError:
            return False

    async def aclose(self) -> None:
        """Stop the listener and close the connection pool."""
        self._closed = True
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._listener
            self._listener = None
        with contextlib.suppress(Exception):
            await self._r.aclose()
