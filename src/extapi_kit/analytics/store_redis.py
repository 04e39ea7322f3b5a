"""Redis activity store: one hash per key (``<prefix><key id>``: version and document).

A write is one Lua script that compares the version and sets the document (compare-and-set);
every script touches one key, so it runs unchanged on a Redis Cluster. Documents expire
``ttl`` seconds (the window plus a day) after their last write, so Redis prunes itself.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

from extapi_kit.exceptions import StoreError
from extapi_kit.stores._redis import pop_client_options, redis_call, redis_from_url

if TYPE_CHECKING:
    from redis.asyncio import Redis

__all__ = ["RedisActivityStore"]

T = TypeVar("T")

# KEYS: the document hash. ARGV: the version read, the new document, the ttl.
_SAVE = """
local v = tonumber(redis.call('HGET', KEYS[1], 'v') or '0')
if v ~= tonumber(ARGV[1]) then return 0 end
redis.call('HSET', KEYS[1], 'v', v + 1, 'd', ARGV[2])
redis.call('EXPIRE', KEYS[1], ARGV[3])
return 1
"""


class RedisActivityStore:
    """An :class:`~extapi_kit.analytics.store.ActivityStore` in Redis, shared by every worker.

    Args:
        client: a ``redis.asyncio.Redis`` client (create it with timeouts set).
        prefix: prepended to every key.
    """

    def __init__(self, client: Redis, *, prefix: str = "extapi:activity:") -> None:
        self._redis = client
        self._prefix = prefix
        self._save = client.register_script(_SAVE)

    @classmethod
    def from_url(cls, url: str, **options: Any) -> RedisActivityStore:
        """Create the store from ``redis://host:port/db`` (or ``rediss://``, cluster, sentinel).

        Args:
            url: the Redis URL.
            **options: ``prefix``, ``socket_timeout``, ``connect_timeout``.
        """
        return cls(redis_from_url(url, **pop_client_options(options)), **options)

    def __repr__(self) -> str:
        return f"RedisActivityStore(prefix={self._prefix!r})"

    async def _call(self, fn: Callable[[], Awaitable[T]]) -> T:
        return await redis_call(fn, self._redis)

    async def load(self, key_id: str) -> tuple[int, str | None]:
        """Return ``(version, document)``.

        Args:
            key_id: the key id.
        """
        key = self._prefix + key_id
        v, d = await self._call(lambda: self._redis.hmget(key, ["v", "d"]))
        if v is None or d is None:
            return 0, None
        return int(v), d.decode() if isinstance(d, bytes) else str(d)

    async def save(self, key_id: str, version: int, doc: str, *, ttl: int) -> bool:
        """Compare-and-set the document in one script.

        Args:
            key_id: the key id.
            version: the version read.
            doc: the new document.
            ttl: seconds the hash lives after this write.
        """
        key = self._prefix + key_id
        done = await self._call(lambda: self._save(keys=[key], args=[version, doc, ttl]))
        return bool(int(done))

    async def prune(self, before: float) -> int:
        """Nothing to do: documents expire by themselves; returns 0.

        Args:
            before: unused.
        """
        return 0

    async def ping(self) -> bool:
        """Return True when Redis answers."""
        try:
            return bool(await self._call(self._redis.ping))
        except StoreError:
            return False

    async def aclose(self) -> None:
        """Close the client."""
        await self._redis.aclose()
