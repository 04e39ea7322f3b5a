"""Redis backend: every window of a request decided in one Lua call, one round trip.

The script evaluates all windows, charges them only if all admit the hit (the same all-or-nothing
semantics as the in-process storage, see ``_windows.py``) and returns the figures the headers
need, so there is no second "get stats" call (``limits`` needs one). It reads the time from
Redis (``TIME``), never from the app server, so clock skew between app nodes cannot widen any
window (case L6; ``limits`` passes the client's clock to its moving-window script).

redis-py ``Script`` objects re-load themselves on ``NOSCRIPT``, so a Redis restart or failover
heals without restarting the app (fastapi-limiter #19/#32/#68 stayed broken there).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from extapi_kit.ratelimit._result import HitResult
from extapi_kit.stores._redis import DEFAULT_REDIS_TIMEOUT

if TYPE_CHECKING:
    from redis.asyncio import Redis

__all__ = ["RedisBackend"]

# KEYS: one per window, then one per quota counter, then one per credit balance (all of one
# principal share a hash tag).
# ARGV: strategy (1 fixed, 2 sliding, 3 moving), cost, number of windows, then per window limit
# and length in ms, then per quota counter limit and ttl in s, then per credit balance the
# credits to spend (the counts of quota counters and balances follow from #KEYS and #ARGV).
# Returns {status, used_1, reset_ms_1, retry_ms_1, used_2, ..., quota_used_1, ...,
# balance_1, mark_1, ...}; status 1: everything charged, 0: a window refused, 2: the windows
# admit but a quota refused, 3: windows and quotas admit but a credit balance cannot pay.
# Nothing is charged unless everything admits (a request refused by a quota or for credits costs
# no rate-limit budget and vice versa); quota figures and balances are after the charge, or
# unchanged when refused. A balance is a hash (credits/store_redis.py): field b, the credits
# left (-1 returned when the hash is missing: not metered), field x, the exhausted mark; mark_i
# is 1 for the one call that set it (the credits.exhausted notification fires once).
LUA = """
local tm = redis.call('TIME')
local now = tonumber(tm[1]) * 1000 + math.floor(tonumber(tm[2]) / 1000)
local strategy = tonumber(ARGV[1])
local cost = tonumber(ARGV[2])
local nw = tonumber(ARGV[3])
local ok = 1
local out = {0}
local st = {}
for i = 1, nw do
  local key = KEYS[i]
  local limit = tonumber(ARGV[2 + 2 * i])
  local exp = tonumber(ARGV[3 + 2 * i])
  local used, reset, retry = 0, exp, 0
  if strategy == 1 then
    local v = redis.call('GET', key)
    local ttl = redis.call('PTTL', key)
    if v and ttl > 0 then used = tonumber(v); reset = ttl end
    if used + cost > limit then ok = 0; retry = reset end
  elseif strategy == 2 then
    local idx = math.floor(now / exp)
    local elapsed = now - idx * exp
    local h = redis.call('HMGET', key, 'w', 'c', 'p')
    local w = tonumber(h[1] or '') or -10
    local c, p = 0, 0
    if w == idx then c = tonumber(h[2]) or 0; p = tonumber(h[3]) or 0
    elseif w == idx - 1 then p = tonumber(h[2]) or 0 end
    st[i] = {idx, elapsed, c, p}
    used = math.floor(p * (exp - elapsed) / exp) + c
    reset = exp - elapsed
    if used + cost > limit then
      ok = 0
      local need = limit - cost - c
      if cost > limit then retry = exp
      elseif need >= 0 and p > 0 then
        retry = math.max(math.ceil((1 - (need + 1) / p) * exp) - elapsed, 0) + 1
      else
        local lag = 0
        if c > 0 then lag = math.max(0, 1 - (limit - cost + 1) / c) end
        retry = exp - elapsed + math.ceil(lag * exp) + 1
      end
    end
  else
    local cutoff = now - exp
    while true do
      local last = redis.call('LINDEX', key, -1)
      if last and tonumber(last) <= cutoff then redis.call('RPOP', key) else break end
    end
    used = redis.call('LLEN', key)
    local oldest = redis.call('LINDEX', key, -1)
    if oldest then reset = tonumber(oldest) + exp - now end
    if used + cost > limit then
      ok = 0
      if cost > limit or used == 0 then retry = exp
      else retry = tonumber(redis.call('LINDEX', key, -(used + cost - limit))) + exp - now end
    end
  end
  out[#out + 1] = used
  out[#out + 1] = reset
  out[#out + 1] = retry
end
local qa = 3 + 2 * nw
local nq = #ARGV - qa - (#KEYS - nw)
local nc = #KEYS - nw - nq
local quota = {}
for j = 1, nq do
  local u = tonumber(redis.call('GET', KEYS[nw + j]) or '0')
  quota[j] = u
  if ok == 1 and u + cost > tonumber(ARGV[qa + 2 * j - 1]) then ok = 2 end
end
local cb = {}
for j = 1, nc do
  local b = redis.call('HGET', KEYS[nw + nq + j], 'b')
  if b then
    cb[j] = tonumber(b)
    if ok == 1 and cb[j] < tonumber(ARGV[qa + 2 * nq + j]) then ok = 3 end
  else cb[j] = false end
end
if ok == 1 then
  out[1] = 1
  for i = 1, nw do
    local key = KEYS[i]
    local limit = tonumber(ARGV[2 + 2 * i])
    local exp = tonumber(ARGV[3 + 2 * i])
    local base = 3 * (i - 1) + 1
    if strategy == 1 then
      if redis.call('PTTL', key) > 0 then redis.call('INCRBY', key, cost)
      else redis.call('SET', key, cost, 'PX', exp); out[base + 2] = exp end
    elseif strategy == 2 then
      local s = st[i]
      redis.call('HSET', key, 'w', s[1], 'c', s[3] + cost, 'p', s[4])
      redis.call('PEXPIRE', key, 2 * exp - s[2])
    elseif cost > 0 then
      if out[base + 1] == 0 then out[base + 2] = exp end
      for _ = 1, cost do redis.call('LPUSH', key, now) end
      redis.call('LTRIM', key, 0, limit - 1)
      redis.call('PEXPIRE', key, exp)
    end
    out[base + 1] = out[base + 1] + cost
  end
  for j = 1, nq do
    quota[j] = redis.call('INCRBY', KEYS[nw + j], cost)
    redis.call('EXPIRE', KEYS[nw + j], ARGV[qa + 2 * j])
  end
elseif ok >= 2 then
  out[1] = ok
end
for j = 1, #quota do out[#out + 1] = quota[j] end
for j = 1, nc do
  local key = KEYS[nw + nq + j]
  local spend = tonumber(ARGV[qa + 2 * nq + j])
  local mark = 0
  if cb[j] then
    if ok == 1 then
      if spend > 0 then cb[j] = redis.call('HINCRBY', key, 'b', -spend) end
      if cb[j] <= 0 and redis.call('HSETNX', key, 'x', '1') == 1 then mark = 1 end
    elseif ok == 3 and cb[j] < spend and redis.call('HSETNX', key, 'x', '1') == 1 then
      mark = 1
    end
    out[#out + 1] = cb[j]
  else out[#out + 1] = -1 end
  out[#out + 1] = mark
end
return out
"""


class RedisBackend:
    """Decide on Redis with one script call per request.

    Args:
        client: a ``redis.asyncio.Redis`` (create it with ``redis_from_url``). Its socket
            timeout may be None: :meth:`hit` is always called under the failover layer's
            ``asyncio.timeout`` and :meth:`ping` bounds itself with ``deadline``.
        strategy: the strategy code.
        deadline: seconds :meth:`ping` may take.
    """

    def __init__(
        self, client: Redis, strategy: int, *, deadline: float = DEFAULT_REDIS_TIMEOUT
    ) -> None:
        self.client = client
        self.strategy = strategy
        self.deadline = deadline
        self._script: Any = client.register_script(LUA)

    def __repr__(self) -> str:
        return f"RedisBackend(strategy={self.strategy})"

    async def hit(
        self, keys: Sequence[str], windows: Sequence[tuple[int, int]], cost: int
    ) -> HitResult:
        """Run the decision script; errors propagate (the failover layer applies the policy).

        Args:
            keys: one key per window.
            windows: ``(limit, seconds)`` per window.
            cost: units to charge.
        """
        args: list[int] = [self.strategy, cost, len(windows)]
        for limit, seconds in windows:
            args.append(limit)
            args.append(seconds * 1000)
        raw = await self._script(keys=list(keys), args=args)
        states = [
            [int(raw[i]), int(raw[i + 1]) / 1000, int(raw[i + 2]) / 1000]
            for i in range(1, len(raw), 3)
        ]
        return HitResult(int(raw[0]) == 1, states)

    async def ping(self) -> bool:
        """Return whether Redis answers."""
        async with asyncio.timeout(self.deadline):
            return bool(await self.client.ping())

    async def aclose(self) -> None:
        """Close the client's connections."""
        await self.client.aclose()
