"""Redis credit store: one hash per metered subject, spent by one Lua script.

A balance is the hash ``<prefix>c:{<subject>}`` with field ``b`` (credits left) and, once the
subject ran dry, field ``x`` (the exhausted mark, cleared by a top-up). The subject is a hash tag,
the same one the rate limiter puts in its window keys (``{k:<key id>}``), so when the rate limiter
and this store share one Redis the rate-limit script spends the credits in the same call (see
docs/credits.md). Every change is logged, in the same script, to a capped list
``<prefix>l:{<subject>}``.

On a Redis Cluster a key's and its owner's balances live in two slots: the spend is made slot by
slot, and when a later slot refuses, the earlier charges are refunded (a concurrent request may
see the refunded credits missing for the length of one round trip and be refused; no balance is
ever spent below zero).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from functools import partial
from typing import TYPE_CHECKING, Any

from extapi_kit.credits._logic import MAX_BALANCE, check_change
from extapi_kit.credits.models import CreditEntry, Spend
from extapi_kit.exceptions import StoreError
from extapi_kit.stores._redis import is_cluster, pop_client_options, redis_call, redis_from_url

if TYPE_CHECKING:
    from redis.asyncio import Redis

__all__ = ["RedisCreditStore"]

_HISTORY = 100

# KEYS: the balances. ARGV[1]: cost. Returns {allowed, balance_1, mark_1, ...}; a balance of -1
# means "not metered". The same rules as credits._logic.decide.
SPEND = """
local cost = tonumber(ARGV[1])
local ok = 1
local bal = {}
for i = 1, #KEYS do
  local b = redis.call('HGET', KEYS[i], 'b')
  if b then
    bal[i] = tonumber(b)
    if bal[i] < cost then ok = 0 end
  else bal[i] = false end
end
local out = {ok}
for i = 1, #KEYS do
  local mark = 0
  if bal[i] then
    if ok == 1 then
      if cost > 0 then bal[i] = redis.call('HINCRBY', KEYS[i], 'b', -cost) end
      if bal[i] <= 0 and redis.call('HSETNX', KEYS[i], 'x', '1') == 1 then mark = 1 end
    elseif bal[i] < cost and redis.call('HSETNX', KEYS[i], 'x', '1') == 1 then mark = 1 end
    out[#out + 1] = bal[i]
  else out[#out + 1] = -1 end
  out[#out + 1] = mark
end
return out
"""
# KEYS: balances charged by an earlier step of a cluster spend; ARGV: cost, then per key 1 when
# that step set the exhausted mark (to lift it again).
_REFUND = """
for i = 1, #KEYS do
  redis.call('HINCRBY', KEYS[i], 'b', ARGV[1])
  if ARGV[1 + i] == '1' then redis.call('HDEL', KEYS[i], 'x') end
end
return 1
"""
# KEYS: balance, log. ARGV: action, amount, max balance, entry JSON (without before/after),
# history length. Returns {before or -1, after or -1}.
_CHANGE = """
local action = ARGV[1]
local amount = tonumber(ARGV[2])
local cap = tonumber(ARGV[3])
local b = redis.call('HGET', KEYS[1], 'b')
local before = -1
if b then before = tonumber(b) end
local after = -1
if action == 'clear' then
  redis.call('DEL', KEYS[1])
else
  if action == 'set' then after = amount
  else after = math.min(cap, math.max(0, math.max(before, 0) + amount)) end
  redis.call('HSET', KEYS[1], 'b', after)
  redis.call('HDEL', KEYS[1], 'x')
end
local entry = cjson.decode(ARGV[4])
if before >= 0 then entry['before'] = before end
if after >= 0 then entry['after'] = after end
redis.call('LPUSH', KEYS[2], cjson.encode(entry))
redis.call('LTRIM', KEYS[2], 0, tonumber(ARGV[5]) - 1)
return {before, after}
"""


def _tag(key: str) -> str:
    start = key.find("{")
    end = key.find("}", start + 1)
    return key[start + 1 : end] if start >= 0 and end > start + 1 else key


class RedisCreditStore:
    """A :class:`~extapi_kit.credits.store.CreditStore` in Redis, shared by every worker and host.

    Args:
        client: a ``redis.asyncio.Redis`` client (create it with timeouts set).
        prefix: prepended to every key.

    Attributes:
        calls: spend calls made (the hot path); a rate limiter that spends the credits in its
            own script leaves it unchanged.
    """

    def __init__(self, client: Redis, *, prefix: str = "extapi:credits:") -> None:
        self._redis = client
        self._prefix = prefix
        self._spend = client.register_script(SPEND)
        self._refund = client.register_script(_REFUND)
        self._change = client.register_script(_CHANGE)
        self._cluster = is_cluster(client)
        self.calls = 0

    @classmethod
    def from_url(cls, url: str, **options: Any) -> RedisCreditStore:
        """Create the store from ``redis://host:port/db``, ``rediss://...`` or a cluster URL.

        Args:
            url: the Redis URL.
            **options: ``prefix``, ``socket_timeout``, ``connect_timeout``.
        """
        return cls(redis_from_url(url, **pop_client_options(options)), **options)

    def __repr__(self) -> str:
        return f"RedisCreditStore(prefix={self._prefix!r})"

    def balance_key(self, subject: str) -> str:
        """Return a balance's Redis key (the subject is its hash tag).

        Args:
            subject: ``"k:<key id>"`` or ``"o:<owner>"``.
        """
        return f"{self._prefix}c:{{{subject}}}"

    def _log_key(self, subject: str) -> str:
        return f"{self._prefix}l:{{{subject}}}"

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

    async def spend(self, subjects: Sequence[str], cost: int) -> Spend:
        """Charge ``cost`` to every metered subject, all or nothing (one Lua call).

        Args:
            subjects: the subjects.
            cost: credits to charge.
        """
        self.calls += 1
        keys = [self.balance_key(s) for s in subjects]
        if self._cluster and len({_tag(k) for k in keys}) > 1:
            return await self._spend_slots(keys, cost)
        raw = await redis_call(partial(self._spend, keys=keys, args=[cost]), self._redis)
        return _spend_result(raw)

    async def _spend_slots(self, keys: list[str], cost: int) -> Spend:
        balances: list[int | None] = []
        marks: list[bool] = []
        done: list[tuple[str, bool]] = []
        for key in keys:
            try:
                raw = await redis_call(partial(self._spend, keys=[key], args=[cost]), self._redis)
            except BaseException:
                await self._refund_all(done, cost)
                raise
            one = _spend_result(raw)
            if not one.allowed:
                await self._refund_all(done, cost)
                rest = [await self._get_key(k) for k in keys]
                marks = [False] * len(keys)
                marks[len(balances)] = one.exhausted[0]
                return Spend(False, rest, marks)
            if one.balances[0] is not None:
                done.append((key, one.exhausted[0]))
            balances.append(one.balances[0])
            marks.append(one.exhausted[0])
        return Spend(True, balances, marks)

    async def _refund_all(self, done: list[tuple[str, bool]], cost: int) -> None:
        for key, marked in done:
            args = [cost, "1" if marked else "0"]
            await redis_call(partial(self._refund, keys=[key], args=args), self._redis)

    async def _get_key(self, key: str) -> int | None:
        raw = await redis_call(partial(self._redis.hget, key, "b"), self._redis)
        return None if raw is None else int(raw)

    async def get(self, subject: str) -> int | None:
        """Return a subject's balance (None: not metered).

        Args:
            subject: the subject.
        """
        return await self._get_key(self.balance_key(subject))

    async def change(
        self,
        subject: str,
        *,
        action: str,
        amount: int,
        actor: str,
        reason: str | None,
        at: float,
    ) -> CreditEntry:
        """Set, add to or clear a balance and log it (one Lua call).

        Args:
            subject: the subject.
            action: ``set``, ``add`` or ``clear``.
            amount: the amount.
            actor: who.
            reason: why.
            at: epoch seconds.
        """
        check_change(action, amount)
        entry: dict[str, object] = {"at": at, "action": action, "amount": amount, "actor": actor}
        if reason is not None:
            entry["reason"] = reason
        keys = [self.balance_key(subject), self._log_key(subject)]
        args: list[str | int] = [action, amount, MAX_BALANCE, json.dumps(entry), _HISTORY]
        raw = await redis_call(partial(self._change, keys=keys, args=args), self._redis)
        before, after = (None if int(v) < 0 else int(v) for v in raw)
        return CreditEntry(at, subject, action, amount, before, after, actor, reason)

    async def history(self, subject: str, limit: int = 20) -> list[CreditEntry]:
        """Return the latest changes, newest first.

        Args:
            subject: the subject.
            limit: how many.
        """
        if limit <= 0:
            return []
        raw = await redis_call(
            partial(self._redis.lrange, self._log_key(subject), 0, limit - 1), self._redis
        )
        out = []
        for item in raw:
            d = json.loads(item)
            out.append(
                CreditEntry(
                    float(d["at"]),
                    subject,
                    str(d["action"]),
                    int(d["amount"]),
                    d.get("before"),
                    d.get("after"),
                    str(d["actor"]),
                    d.get("reason"),
                )
            )
        return out

    async def ping(self) -> bool:
        """Return True when Redis answers."""
        try:
            return bool(await redis_call(self._redis.ping, self._redis))
        except StoreError:
            return False

    async def aclose(self) -> None:
        """Close the client's connections."""
        await self._redis.aclose()


def _spend_result(raw: Sequence[Any]) -> Spend:
    balances: list[int | None] = []
    marks: list[bool] = []
    for i in range(1, len(raw), 2):
        b = int(raw[i])
        balances.append(None if b < 0 else b)
        marks.append(int(raw[i + 1]) == 1)
    return Spend(int(raw[0]) == 1, balances, marks)
