"""Redis idempotency store: one hash per record, small Lua scripts for the atomic steps.

Each step that reads then writes (begin, complete, release, prune) is one Lua script, so two
workers racing on one key cannot both acquire it. Keys carry a ``PEXPIRE`` equal to the lease (in
flight) or the TTL (completed), so Redis drops them without any pruning job; the logical
``exp`` field (from the caller's clock) is what every decision compares, so behaviour matches the
other backends exactly. redis-py re-loads scripts after a Redis restart (``NOSCRIPT``) by itself.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

from extapi_kit._types import Clock
from extapi_kit.exceptions import StoreError
from extapi_kit.idempotency._base import (
    COMPLETED,
    IN_FLIGHT,
    BeginResult,
    IdempotencyRecord,
    StoredResponse,
    decode_headers,
    encode_headers,
)
from extapi_kit.stores._redis import pop_client_options, redis_call, redis_from_url

if TYPE_CHECKING:
    from redis.asyncio import Redis

__all__ = ["RedisIdempotencyStore"]

T = TypeVar("T")

_BEGIN = """
local exp = redis.call('HGET', KEYS[1], 'exp')
if exp and tonumber(exp) > tonumber(ARGV[1]) then
  return redis.call('HGETALL', KEYS[1])
end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'state', 'in_flight', 'fp', ARGV[2], 'token', ARGV[3],
           'created', ARGV[1], 'exp', ARGV[4])
redis.call('PEXPIRE', KEYS[1], ARGV[5])
return {}
"""
_COMPLETE = """
local cur = redis.call('HMGET', KEYS[1], 'state', 'token')
if cur[1] ~= 'in_flight' or cur[2] ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'state', 'completed', 'exp', ARGV[2], 'status', ARGV[3],
           'headers', ARGV[4], 'body', ARGV[5], 'truncated', ARGV[6])
redis.call('PEXPIRE', KEYS[1], ARGV[7])
return 1
"""
_RELEASE = """
local cur = redis.call('HMGET', KEYS[1], 'state', 'token')
if cur[1] == 'in_flight' and cur[2] == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
"""
_PRUNE = """
local exp = redis.call('HGET', KEYS[1], 'exp')
if exp and tonumber(exp) <= tonumber(ARGV[1]) then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
"""


def _ms(seconds: float) -> int:
    return max(1, int(seconds * 1000))


def _record(fields: dict[bytes, bytes]) -> IdempotencyRecord:
    state = fields[b"state"].decode()
    response = None
    if state == COMPLETED:
        response = StoredResponse(
            status=int(fields[b"status"]),
            headers=decode_headers(fields[b"headers"]),
            body=bytes(fields.get(b"body", b"")),
            truncated=fields.get(b"truncated") == b"1",
        )
    return IdempotencyRecord(
        state=COMPLETED if state == COMPLETED else IN_FLIGHT,
        fingerprint=fields[b"fp"].decode(),
        token=fields[b"token"].decode(),
        created_at=float(fields[b"created"]),
        expires_at=float(fields[b"exp"]),
        response=response,
    )


class RedisIdempotencyStore:
    """Idempotency records in Redis, shared by every worker and host.

    Args:
        client: a ``redis.asyncio.Redis`` client (create it with timeouts set).
        prefix: prepended to every record key.
        clock: returns epoch seconds; used by ``prune()`` without ``now``.
    """

    def __init__(
        self, client: Redis, *, prefix: str = "extapi:idem:", clock: Clock | None = None
    ) -> None:
        self._redis = client
        self._prefix = prefix
        self._clock: Clock = clock or time.time
        self._begin = client.register_script(_BEGIN)
        self._complete = client.register_script(_COMPLETE)
        self._release = client.register_script(_RELEASE)
        self._prune = client.register_script(_PRUNE)

    @classmethod
    def from_url(cls, url: str, **options: Any) -> RedisIdempotencyStore:
        """Create the store from ``redis://host:port/db`` or ``rediss://...``.

        Args:
            url: the Redis URL.
            **options: ``prefix``, ``clock``, ``socket_timeout``, ``connect_timeout``.
        """
        return cls(redis_from_url(url, **pop_client_options(options)), **options)

    def __repr__(self) -> str:
        return f"RedisIdempotencyStore(prefix={self._prefix!r})"

    async def _call(self, fn: Callable[[], Awaitable[T]]) -> T:
        return await redis_call(fn, self._redis)

    async def begin(self, key: str, fingerprint: str, *, now: float, lease: float) -> BeginResult:
        """Create an in-flight record unless a live one exists (one Lua call).

        Args:
            key: the record key.
            fingerprint: the request fingerprint.
            now: the current time.
            lease: lock lease in seconds.
        """
        token = secrets.token_hex(16)
        args: list[str | int | bytes] = [repr(now), fingerprint, token, repr(now + lease)]
        args.append(_ms(lease))
        raw = await self._call(lambda: self._begin(keys=[self._prefix + key], args=args))
        if not raw:
            return BeginResult(acquired=True, token=token)
        fields = dict(zip(raw[::2], raw[1::2], strict=True))
        return BeginResult(acquired=False, existing=_record(fields))

    async def complete(
        self, key: str, token: str, response: StoredResponse, *, now: float, ttl: float
    ) -> bool:
        """Store the response if ``token`` owns the in-flight record.

        Args:
            key: the record key.
            token: the owner token.
            response: the response to keep.
            now: the current time.
            ttl: retention in seconds.
        """
        args: list[str | int | bytes] = [
            token,
            repr(now + ttl),
            response.status,
            encode_headers(response.headers),
            response.body,
            int(response.truncated),
            _ms(ttl),
        ]
        done = await self._call(lambda: self._complete(keys=[self._prefix + key], args=args))
        return bool(done)

    async def release(self, key: str, token: str) -> bool:
        """Delete the in-flight record if ``token`` owns it.

        Args:
            key: the record key.
            token: the owner token.
        """
        done = await self._call(lambda: self._release(keys=[self._prefix + key], args=[token]))
        return bool(done)

    async def get(self, key: str) -> IdempotencyRecord | None:
        """Return the record or None.

        Args:
            key: the record key.
        """
        raw: Any = await self._call(lambda: self._redis.hgetall(self._prefix + key))
        fields: dict[bytes, bytes] = raw
        return _record(fields) if fields else None

    async def prune(self, *, now: float | None = None) -> int:
        """Delete logically expired records now (Redis also expires them on its own).

        Args:
            now: the current time (default: the store clock).
        """
        when = repr(self._clock() if now is None else now)

        async def _scan() -> int:
            deleted = 0
            async for name in self._redis.scan_iter(match=self._prefix + "*", count=500):
                deleted += int(await self._prune(keys=[name], args=[when]))
            return deleted

        return await self._call(_scan)

    async def ping(self) -> bool:
        """Return whether Redis answers PING."""
        try:
            return bool(await self._call(self._redis.ping))
        except StoreError:
            return False

    async def aclose(self) -> None:
        """Close the client's connection pool."""
        await self._redis.aclose()
