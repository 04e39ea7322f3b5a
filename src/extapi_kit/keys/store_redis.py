"""``redis://host:6379/0``: key records in Redis, shared by any number of processes.

Layout under a key prefix (default ``extapi:keys:``): ``<p>key:<id>`` holds the record as JSON
(hash only, never the secret), ``<p>lu:<id>`` its last-used time (written only by ``touch``, so a
touch can never undo a revocation), ``<p>ids`` a sorted set of ids for listing. Every update is
published on ``<p>events``; ``watch()`` subscribes to it so every process drops cached entries of a
revoked or changed key well within a second (case A6). When the subscription breaks, watchers are
told to drop everything (``"*"``) and the listener reconnects.

On a Redis Cluster (``redis+cluster://``) the id is a hash tag (``<p>key:{<id>}``,
``<p>lu:{<id>}``), so a record and its last-used time share a slot (one ``MGET``, one script).
Change events use classic pub/sub, which a cluster forwards to every node: the listener
subscribes on any one node and moves to another when that node fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar

from extapi_kit.exceptions import (
    ConfigurationError,
    ConflictError,
    NotFoundError,
    StoreError,
)
from extapi_kit.keys.models import KeyRecord
from extapi_kit.keys.store import (
    InvalidationCallback,
    Watchers,
    check_page_args,
    decode_cursor,
    encode_cursor,
    filter_records,
)
from extapi_kit.stores._redis import is_cluster, redis_call, redis_from_url

if TYPE_CHECKING:
    from redis.asyncio import Redis

__all__ = ["RedisKeyStore"]

logger = logging.getLogger("extapi_kit.keys")
T = TypeVar("T")

_TOUCH = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local cur = redis.call('GET', KEYS[2])
if (not cur) or tonumber(cur) < tonumber(ARGV[1]) then redis.call('SET', KEYS[2], ARGV[1]) end
return 1
"""


def _load(raw: bytes | str | None, last_used: bytes | str | None) -> KeyRecord | None:
    if raw is None:
        return None
    data = json.loads(raw)
    data["last_used_at"] = float(last_used) if last_used is not None else None
    return KeyRecord.from_dict(data)


def _dump(record: KeyRecord) -> str:
    data = record.to_dict()
    data["last_used_at"] = None
    return json.dumps(data, separators=(",", ":"), sort_keys=True)


class RedisKeyStore:
    """A :class:`~extapi_kit.keys.store.KeyStore` in Redis with pub/sub invalidation.

    Args:
        client: a ``redis.asyncio.Redis`` client (made with timeouts).
        url: the URL, used to open the separate pub/sub connection.
        key_prefix: prefix of every Redis key and of the channel.
    """

    def __init__(self, client: Redis, *, url: str, key_prefix: str = "extapi:keys:") -> None:
        if not key_prefix or any(c.isspace() for c in key_prefix):
            raise ConfigurationError(f"invalid key_prefix {key_prefix!r}")
        self._r = client
        self._url = url
        self._p = key_prefix
        self._cluster = is_cluster(client)
        self.channel = f"{key_prefix}events"
        self._watchers = Watchers()
        self._listener: asyncio.Task[None] | None = None
        self._subscribed: asyncio.Event | None = None
        self._closed = False

    @classmethod
    def from_url(cls, url: str, **options: Any) -> RedisKeyStore:
        """Create a store from ``redis://`` / ``rediss://``.

        Args:
            url: the Redis URL.
            **options: ``key_prefix``; anything else goes to :func:`redis_from_url`.
        """
        key_prefix = options.pop("key_prefix", "extapi:keys:")
        return cls(redis_from_url(url, **options), url=url, key_prefix=key_prefix)

    def __repr__(self) -> str:
        return f"RedisKeyStore(prefix={self._p!r})"

    async def _call(self, fn: Callable[[], Awaitable[T]]) -> T:
        return await redis_call(fn, self._r)

    def _k(self, kind: str, key_id: str) -> str:
        # On a cluster the id is the hash tag: a record and its last-used time share a slot.
        return f"{self._p}{kind}:{{{key_id}}}" if self._cluster else f"{self._p}{kind}:{key_id}"

    async def create(self, record: KeyRecord) -> None:
        """Insert a record.

        Args:
            record: the record.
        """
        ok = await self._call(
            lambda: self._r.set(self._k("key", record.id), _dump(record), nx=True)
        )
        if not ok:
            raise ConflictError(f"key {record.id} already exists")
        await self._call(lambda: self._r.zadd(f"{self._p}ids", {record.id: 0}))

    async def get(self, key_id: str) -> KeyRecord | None:
        """Return a record or None.

        Args:
            key_id: the key id.
        """
        raw, lu = await self._call(
            lambda: self._r.mget([self._k("key", key_id), self._k("lu", key_id)])
        )
        return _load(raw, lu)

    async def list(
        self,
        *,
        owner: str | None = None,
        env: str | None = None,
        status: str | None = None,
        now: float = 0.0,
        cursor: str | None = None,
        limit: int = 100,
    ) -> tuple[list[KeyRecord], str | None]:
        """Return one page of records ordered by id.

        Args:
            owner: owner filter.
            env: env filter.
            status: status filter.
            now: time for the status filter.
            cursor: from a previous page.
            limit: page size.
        """
        check_page_args(status, limit)
        last = decode_cursor(cursor)
        found: list[KeyRecord] = []
        while len(found) <= limit:
            start = f"({last}" if last else "-"
            ids: list[bytes | str] = await self._call(
                partial(self._r.zrangebylex, f"{self._p}ids", start, "+", start=0, num=200)
            )
            if not ids:
                break
            names = [i.decode() if isinstance(i, bytes) else i for i in ids]
            keys = [self._k(kind, i) for i in names for kind in ("key", "lu")]
            # Many slots on a cluster: redis-py splits the MGET per node (not atomic; a listing
            # never needed that).
            mget: Any = self._r.mget_nonatomic if self._cluster else self._r.mget  # type: ignore[attr-defined]
            raws: list[bytes | str | None] = await self._call(partial(mget, keys))
            batch = [_load(raws[2 * n], raws[2 * n + 1]) for n in range(len(names))]
            last = names[-1]
            records = [r for r in batch if r is not None]
            found += filter_records(records, owner=owner, env=env, status=status, now=now)
        page = found[:limit]
        return page, (encode_cursor(page[-1].id) if len(found) > limit else None)

    async def update(self, record: KeyRecord) -> None:
        """Replace a record (not its ``last_used_at``) and publish the change.

        Args:
            record: the new state.
        """
        ok = await self._call(
            lambda: self._r.set(self._k("key", record.id), _dump(record), xx=True)
        )
        if not ok:
            raise NotFoundError(f"no key {record.id}")
        self._watchers.notify(record.id)
        await self._call(lambda: self._r.publish(self.channel, record.id))

    async def touch(self, key_id: str, when: float) -> None:
        """Move ``last_used_at`` forward (atomically, in a Lua script).

        Args:
            key_id: the key id.
            when: epoch seconds.
        """
        keys = [self._k("key", key_id), self._k("lu", key_id)]
        await self._call(lambda: self._r.eval(_TOUCH, 2, *keys, repr(when)))

    async def watch(self, callback: InvalidationCallback) -> None:
        """Register ``callback`` and make sure this process is subscribed to change events.

        Waits (at most ~1 s) until the subscription is confirmed, so a revocation published after
        this returns is never missed.

        Args:
            callback: called with a key id, or ``"*"`` after the subscription broke.
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
            sub: Redis | None = None
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
                        data = msg["data"]
                        self._watchers.notify(data.decode() if isinstance(data, bytes) else data)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                logger.warning("key change subscription lost (%s); retrying", type(exc).__name__)
                self._watchers.notify("*")
                broken = True
                await asyncio.sleep(0.5)
            finally:
                with contextlib.suppress(Exception):
                    if pubsub is not None:
                        await pubsub.aclose()
                    if sub is not None:
                        await sub.aclose()

    async def _subscriber(self, attempt: int) -> Redis:
        if not self._cluster:
            return redis_from_url(self._url, socket_timeout=5.0)
        # Classic PUBLISH reaches every node of a cluster, so any node will do; take the next
        # known one after each failure (the slot map, refreshed after a failover, lists them).
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
