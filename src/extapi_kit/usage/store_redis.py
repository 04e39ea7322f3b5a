"""Redis usage store: per-day hashes that every worker increments, plus exact quota counters.

Each ``(subject, day)`` is one hash (``<prefix>d:<subject>:<day>``) whose fields are the counters;
a flush is one pipeline of ``HINCRBY`` + ``EXPIRE`` (retention) per touched hash, so N workers add
their batches without ever recomputing anything from the audit log. Quota counters are plain
integers charged by one Lua script that compares and increments every counter of a request
atomically (all or none), so a quota is exact across processes; marks are ``SET NX EX``.

On a Redis Cluster (``redis+cluster://``) the subject is a hash tag
(``<prefix>d:{<subject>}:<day>``) and a flush is one script per subject (each with its own
batch mark, so a retried batch still adds each subject once). Quota counters carry their
subject as a tag already; a request charged to a key's and its owner's quotas (two slots) is
charged slot by slot, and when a later slot refuses, the earlier charges are refunded: no
counter ever ends above its limit, and a refused request costs nothing, as on one server (a
concurrent request may see the refunded units for the length of one round trip and be refused).
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar

from extapi_kit.exceptions import StoreError
from extapi_kit.stores._redis import is_cluster, pop_client_options, redis_call, redis_from_url
from extapi_kit.usage.store import Counts, QuotaCheck

if TYPE_CHECKING:
    from redis.asyncio import Redis

__all__ = ["RedisUsageStore"]

T = TypeVar("T")
BATCH_MEMORY = 2 * 86400

# KEYS: the batch mark, then the day hashes. ARGV: mark ttl, hash ttl, then per hash the number
# of fields followed by field, increment pairs.
_ADD = """
if not redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[1]) then return 0 end
local a = 3
for k = 2, #KEYS do
  local nf = tonumber(ARGV[a])
  a = a + 1
  for j = 1, nf do
    redis.call('HINCRBY', KEYS[k], ARGV[a], ARGV[a + 1])
    a = a + 2
  end
  redis.call('EXPIRE', KEYS[k], ARGV[2])
end
return 1
"""
# KEYS: the counters. ARGV: cost, then each limit, then each ttl.
_CONSUME = """
local cost = tonumber(ARGV[1])
local n = #KEYS
local used = {}
local ok = 1
for i = 1, n do
  local u = tonumber(redis.call('GET', KEYS[i]) or '0')
  used[i] = u
  if u + cost > tonumber(ARGV[1 + i]) then ok = 0 end
end
if ok == 1 then
  for i = 1, n do
    used[i] = redis.call('INCRBY', KEYS[i], cost)
    redis.call('EXPIRE', KEYS[i], ARGV[1 + n + i])
  end
end
table.insert(used, 1, ok)
return used
"""
# KEYS: counters charged by an earlier step of a cluster consume. ARGV: cost.
_REFUND = """
for i = 1, #KEYS do redis.call('DECRBY', KEYS[i], ARGV[1]) end
return 1
"""


def _tag(key: str) -> str:
    start = key.find("{")
    end = key.find("}", start + 1)
    return key[start + 1 : end] if start >= 0 and end > start + 1 else key


class RedisUsageStore:
    """A :class:`~extapi_kit.usage.store.UsageStore` in Redis, shared by every worker and host.

    Args:
        client: a ``redis.asyncio.Redis`` client (create it with timeouts set).
        prefix: prepended to every key.
    """

    def __init__(self, client: Redis, *, prefix: str = "extapi:usage:") -> None:
        self._redis = client
        self._prefix = prefix
        self._consume = client.register_script(_CONSUME)
        self._add = client.register_script(_ADD)
        self._refund = client.register_script(_REFUND)
        self._cluster = is_cluster(client)

    @classmethod
    def from_url(cls, url: str, **options: Any) -> RedisUsageStore:
        """Create the store from ``redis://host:port/db`` or ``rediss://...``.

        Args:
            url: the Redis URL.
            **options: ``prefix``, ``socket_timeout``, ``connect_timeout``.
        """
        return cls(redis_from_url(url, **pop_client_options(options)), **options)

    def __repr__(self) -> str:
        return f"RedisUsageStore(prefix={self._prefix!r})"

    async def _call(self, fn: Callable[[], Awaitable[T]]) -> T:
        return await redis_call(fn, self._redis)

    def quota_key(self, counter: str) -> str:
        """Return a quota counter's Redis key.

        The subject (``k:<key id>`` / ``o:<owner>``) is a hash tag, the same one the rate
        limiter puts in its window keys, so the rate-limit script can charge the windows and
        the quota of one principal together (one Redis Cluster slot).

        Args:
            counter: the counter name (``<subject>:<period>:<period id>``).
        """
        kind, _, rest = counter.partition(":")
        subject, _, tail = rest.partition(":")
        return f"{self._prefix}q:{{{kind}:{subject}}}:{tail}"

    @property
    def server_address(self) -> tuple[str | None, str, int, int]:
        """``(unix path, host, port, db)`` of the Redis this store writes to."""
        pool: Any = getattr(self._redis, "connection_pool", None)
        if pool is None or getattr(pool, "service_name", None):
            # A cluster or a Sentinel-managed master: never "the same server" as a plain URL.
            return (None, f"<{type(self._redis).__name__} {id(self._redis)}>", 0, 0)
        kw = pool.connection_kwargs
        db = int(kw.get("db") or 0)
        if kw.get("path"):
            return (str(kw["path"]), "localhost", 6379, db)
        return (None, str(kw.get("host") or "localhost"), int(kw.get("port") or 6379), db)

    def _day_key(self, subject: str, day: str) -> str:
        if self._cluster:  # one slot per subject: its day hashes and its batch mark
            return f"{self._prefix}d:{{{subject}}}:{day}"
        return f"{self._prefix}d:{subject}:{day}"

    async def add(self, counts: Counts, *, ttl: int, batch: str | None = None) -> None:
        """Add a batch of increments in one Lua call, at most once per ``batch`` id.

        Args:
            counts: ``(subject, day, field) -> n``.
            ttl: seconds each touched day hash is kept from now.
            batch: a unique id (``SET NX`` inside the script); a known id is skipped.
        """
        if not counts:
            return
        batch_id = batch or secrets.token_hex(12)
        if self._cluster:
            by_subject: dict[str, dict[tuple[str, str, str], int]] = {}
            for (subject, day, name), n in counts.items():
                by_subject.setdefault(subject, {})[(subject, day, name)] = n
            await asyncio.gather(
                *(
                    self._add_one(f"{self._prefix}b:{{{subj}}}:{batch_id}", part, ttl)
                    for subj, part in by_subject.items()
                )
            )
            return
        await self._add_one(f"{self._prefix}b:{batch_id}", counts, ttl)

    async def _add_one(self, mark: str, counts: Counts, ttl: int) -> None:
        grouped: dict[str, list[str | int]] = {}
        for (subject, day, name), n in counts.items():
            grouped.setdefault(self._day_key(subject, day), []).extend((name, n))
        keys = [mark, *grouped]
        args: list[str | int] = [BATCH_MEMORY, ttl]
        for pairs in grouped.values():
            args.append(len(pairs) // 2)
            args.extend(pairs)
        await self._call(lambda: self._add(keys=keys, args=args))

    async def days(self, subject: str, days: Sequence[str]) -> dict[str, dict[str, int]]:
        """Return the counters of ``subject`` for each of ``days`` (one pipeline).

        Args:
            subject: the subject.
            days: UTC dates.
        """
        pipe = self._redis.pipeline(transaction=False)
        for d in days:
            pipe.hgetall(self._day_key(subject, d))
        raw: list[dict[bytes, bytes]] = await self._call(pipe.execute)
        return {
            d: {k.decode(): int(v) for k, v in fields.items()}
            for d, fields in zip(days, raw, strict=True)
        }

    async def consume(self, checks: Sequence[QuotaCheck], cost: int) -> tuple[bool, list[int]]:
        """Charge ``cost`` to every counter if all stay within their limits (one Lua call).

        Args:
            checks: counters and limits.
            cost: units to charge.
        """
        keys = [self.quota_key(c.counter) for c in checks]
        if self._cluster:
            groups: dict[str, list[int]] = {}
            for i, key in enumerate(keys):
                groups.setdefault(_tag(key), []).append(i)
            if len(groups) > 1:
                return await self._consume_slots(checks, keys, list(groups.values()), cost)
        args: list[int] = [cost, *(c.limit for c in checks), *(max(1, c.ttl) for c in checks)]
        raw = await self._call(lambda: self._consume(keys=keys, args=args))
        return bool(raw[0]), [int(u) for u in raw[1:]]

    async def _consume_slots(
        self, checks: Sequence[QuotaCheck], keys: list[str], groups: list[list[int]], cost: int
    ) -> tuple[bool, list[int]]:
        # Charge slot by slot (each step atomic); a refusal refunds the steps already taken.
        used = [0] * len(keys)
        charged: list[str] = []
        for group in groups:
            gkeys = [keys[i] for i in group]
            args = [
                cost,
                *(checks[i].limit for i in group),
                *(max(1, checks[i].ttl) for i in group),
            ]
            try:
                raw = await self._call(partial(self._consume, keys=gkeys, args=args))
            except BaseException:
                await self._refund_all(charged, cost)
                raise
            for i, u in zip(group, raw[1:], strict=True):
                used[i] = int(u)
            if not raw[0]:
                await self._refund_all(charged, cost)
                figures = await self._call(lambda: self._redis.mget_nonatomic(keys))  # type: ignore[attr-defined]
                return False, [int(v) if v else 0 for v in figures]
            charged += gkeys
        return True, used

    async def _refund_all(self, keys: list[str], cost: int) -> None:
        by_tag: dict[str, list[str]] = {}
        for key in keys:
            by_tag.setdefault(_tag(key), []).append(key)
        for group in by_tag.values():
            await self._call(partial(self._refund, keys=group, args=[cost]))

    async def quota_used(self, counter: str) -> int:
        """Return a quota counter's value.

        Args:
            counter: the counter name.
        """
        raw = await self._call(lambda: self._redis.get(self.quota_key(counter)))
        return int(raw) if raw else 0

    async def mark_once(self, mark: str, *, ttl: int) -> bool:
        """Set a mark unless it exists (``SET NX EX``).

        Args:
            mark: the mark name.
            ttl: seconds it lives.
        """
        key = f"{self._prefix}m:{mark}"
        done = await self._call(lambda: self._redis.set(key, b"1", nx=True, ex=max(1, ttl)))
        return bool(done)

    async def prune(self, before_day: str) -> int:
        """Nothing to do: day hashes expire by themselves.

        Args:
            before_day: unused.
        """
        return 0

    async def ping(self) -> bool:
        """Return True when Redis answers."""
        try:
            return bool(await self._call(self._redis.ping))
        except StoreError:
            return False

    async def aclose(self) -> None:
        """Close the client's connections."""
        await self._redis.aclose()
