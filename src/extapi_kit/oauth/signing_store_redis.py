"""``redis://...``: the signing key set in one Redis hash (``<prefix>set:{<name>}``).

The hash has two fields, ``version`` and ``data``; a short Lua script compares the version and
writes both, so concurrent writers never interleave. One key: fine on a Redis Cluster. Persist
Redis (AOF/RDB) if you keep signing keys there: a lost key set means new keys and every issued
token failing verification.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from extapi_kit.exceptions import ConfigurationError
from extapi_kit.oauth.signing_store_sql import _check_name
from extapi_kit.stores._redis import redis_call, redis_from_url

if TYPE_CHECKING:
    from redis.asyncio import Redis

__all__ = ["RedisSigningKeyStore"]

_CAS = """
local v = tonumber(redis.call('HGET', KEYS[1], 'version') or '0')
if v ~= tonumber(ARGV[1]) then return 0 end
redis.call('HSET', KEYS[1], 'version', v + 1, 'data', ARGV[2])
return 1
"""


class RedisSigningKeyStore:
    """The signing key set in Redis.

    Args:
        client: a ``redis.asyncio.Redis`` client (made with timeouts).
        key_prefix: prefix of the Redis key.
        name: the key set's name.
    """

    holds_plaintext = False

    def __init__(
        self, client: Redis, *, key_prefix: str = "extapi:signing:", name: str = "default"
    ) -> None:
        if not key_prefix or any(c.isspace() for c in key_prefix):
            raise ConfigurationError(f"invalid key_prefix {key_prefix!r}")
        self._r = client
        self._key = f"{key_prefix}set:{{{_check_name(name)}}}"
        self._cas = client.register_script(_CAS)

    @classmethod
    def from_url(cls, url: str, **options: Any) -> RedisSigningKeyStore:
        """Create a store from a Redis URL.

        Args:
            url: ``redis://``, ``rediss://``, ``redis+cluster://`` or ``redis+sentinel://``.
            **options: ``key_prefix``, ``name``; the rest go to ``redis_from_url``.
        """
        own = {k: options.pop(k) for k in ("key_prefix", "name") if k in options}
        return cls(redis_from_url(url, **options), **own)

    def __repr__(self) -> str:
        return f"RedisSigningKeyStore({self._key!r})"

    async def load(self) -> tuple[str | None, int]:
        """Return the document and its version."""
        version, data = await redis_call(lambda: self._r.hmget(self._key, ["version", "data"]))
        if data is None:
            return None, 0
        text = data.decode() if isinstance(data, bytes) else str(data)
        return text, int(version or 0)

    async def save(self, document: str, *, expected: int) -> bool:
        """Compare-and-set the document.

        Args:
            document: the JSON document.
            expected: the version the caller loaded.
        """
        done = await redis_call(lambda: self._cas(keys=[self._key], args=[expected, document]))
        return bool(int(done))

    async def ping(self) -> bool:
        """Return True when Redis answers."""
        try:
            return bool(await redis_call(self._r.ping))
        except Exception:
            return False

    async def aclose(self) -> None:
        """Close the client."""
        await self._r.aclose()
