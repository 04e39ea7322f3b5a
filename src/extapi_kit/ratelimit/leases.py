"""Optional local leases: a worker takes a block of a key's budget from Redis and spends it locally.

Off by default. With leases on, a worker asks Redis (one small script, atomic, Redis time) for
a *block* of a principal's budget in every window of the request, charges the whole block to
the shared counters at once, and then admits requests from that block without a round trip.
What it did not spend goes back to Redis when the lease ends: when the worker needs a new block
(the leftover rides on that same call), when the lease's time-to-live passes (a timer returns
the leftovers of idle leases), or when the backend closes.

**What holds**: the shared counter of a window counts every unit granted to any lease, so the
units admitted in one window by all workers together never exceed its limit -- leases never
over-admit. A worker that dies keeps its leftover charged until the window ends: budget is lost,
never invented.

**What it costs**: a request can be refused while budget sits unspent in *another* worker's
lease (an early refusal). To keep that small, a grant is ``min(block, free // 2)`` (at least the
request's cost) -- near the end of a window each lease takes at most half of what is left --
and a lease lives at most ``ttl`` seconds, so stranded budget comes back within 1.5 x ``ttl`` (a
timer every ``ttl / 2`` returns the leftovers of ended leases). A
refusal while other leases are open answers ``Retry-After`` no later than ``ttl``.

**Renewing ahead**: when a lease's leftover falls to ``renew_at`` of its grant (a quarter by
default), the worker asks for the next block in the background while it keeps admitting from
what is left; the new block joins the leftover when it arrives (same windows), so under steady
traffic no request waits for Redis. Callers that find the lease empty meanwhile wait for that
one call (never a second). ``renew_at=0`` renews only when a lease is empty.

**Semantics**: leased budgets are counted in fixed windows aligned to Redis time, whatever the
middleware's ``strategy`` (which still shapes the in-process fallback). A lease never outlives
the earliest window it was charged to (its local expiry is measured from *before* the call, so
it ends no later than the window does on Redis). Lease counters live in their own keys (the
window keys with ``:lease`` appended, same hash tag), so switching leases on or off never meets
the other strategies' keys. Quotas are charged by the usage layer, not in the lease script.

Script state per window key (a hash): ``w`` the window index, ``c`` units granted in it (spent
or leased), ``l`` units of leases still open.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import math
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from extapi_kit.exceptions import ConfigurationError, StoreError
from extapi_kit.ratelimit._result import HitResult
from extapi_kit.stores._redis import DEFAULT_REDIS_TIMEOUT
from extapi_kit.stores._resp import (
    CLUSTER_REDIRECTS,
    AutoPipeline,
    ReplyError,
    encode_command,
)

if TYPE_CHECKING:
    from extapi_kit.ratelimit.redis_cluster import SlotMap

__all__ = ["DEFAULT_LEASE_BLOCK", "DEFAULT_LEASE_TTL", "LeaseBackend", "LeasedRedis"]

DEFAULT_LEASE_BLOCK = 20
DEFAULT_LEASE_TTL = 1.0
DEFAULT_RENEW_AT = 0.25
_MAX_BLOCK = 1_000_000
_MAX_TTL = 3600.0
_SUFFIX = ":lease"
_LEASE_SCHEMES = ("redis://", "unix://", "redis+cluster://")

# KEYS: one hash per window. ARGV: give (units of the ending lease not spent), held (units that
# lease was granted), need (units wanted now), ask (1: grant a new lease, 0: only give back),
# block, then per window: limit, length in ms, index the ending lease was charged to (-1: none).
# Returns {grant, then per window: index, granted-in-window after, open-lease units after,
# ms to the window's end}. grant is 0 when some window cannot give ``need`` (nothing charged).
LEASE_LUA = """
local tm = redis.call('TIME')
local now = tonumber(tm[1]) * 1000 + math.floor(tonumber(tm[2]) / 1000)
local give = tonumber(ARGV[1])
local held = tonumber(ARGV[2])
local need = tonumber(ARGV[3])
local ask = tonumber(ARGV[4])
local block = tonumber(ARGV[5])
local grant = block
local st = {}
for i = 1, #KEYS do
  local limit = tonumber(ARGV[3 + 3 * i])
  local exp = tonumber(ARGV[4 + 3 * i])
  local old = tonumber(ARGV[5 + 3 * i])
  local idx = math.floor(now / exp)
  local h = redis.call('HMGET', KEYS[i], 'w', 'c', 'l')
  local c, l = 0, 0
  if tonumber(h[1] or '') == idx then c = tonumber(h[2]) or 0; l = tonumber(h[3]) or 0 end
  if old == idx then c = math.max(c - give, 0); l = math.max(l - held, 0) end
  local free = limit - c
  local g = math.min(free, math.max(need, math.min(block, math.floor(free / 2))))
  if g < grant then grant = g end
  st[i] = {idx, c, l, exp - (now - idx * exp)}
end
if ask == 0 or grant < need or grant < 0 then grant = 0 end
local out = {grant}
for i = 1, #KEYS do
  local s = st[i]
  local c, l = s[2] + grant, s[3] + grant
  if c > 0 or l > 0 then
    redis.call('HSET', KEYS[i], 'w', s[1], 'c', c, 'l', l)
    redis.call('PEXPIRE', KEYS[i], s[4] + 1000)
  else
    redis.call('DEL', KEYS[i])
  end
  out[#out + 1] = s[1]
  out[#out + 1] = c
  out[#out + 1] = l
  out[#out + 1] = s[4]
end
return out
"""
_SHA = hashlib.sha1(LEASE_LUA.encode()).hexdigest()  # noqa: S324 - Redis names scripts by SHA-1
_PING = encode_command(b"PING")
logger = logging.getLogger("extapi_kit.ratelimit")


class _Lease:
    """Units one worker holds for one (keys, windows) pair."""

    __slots__ = (
        "expiry",
        "granted",
        "idx",
        "left",
        "limits",
        "low",
        "resets",
        "started",
        "used",
    )

    def __init__(
        self,
        granted: int,
        started: float,
        expiry: float,
        idx: list[int],
        used: list[int],
        resets: list[float],
        limits: list[int],
    ) -> None:
        self.granted = granted
        self.left = granted
        self.started = started
        self.expiry = expiry
        self.idx = idx
        self.used = used  # granted-in-window per window, right after this lease was granted
        self.resets = resets  # seconds to each window's end, from ``started``
        self.limits = limits
        self.low = -1  # renew ahead once ``left`` falls to this (set by the backend)

    def figures(self, now: float) -> list[list[float]]:
        elapsed = now - self.started
        return [
            [max(0, min(limit, used - self.left)), max(reset - elapsed, 0.0), 0.0]
            for used, reset, limit in zip(self.used, self.resets, self.limits, strict=True)
        ]


class LeaseBackend:
    """Decide from locally held blocks of Redis budget; ask Redis only for a new block.

    Args:
        pipe: the auto-pipelined connection (dedicated to this backend).
        block: units a lease takes at most (less near the end of a window: half of what is
            free, at least the request's cost).
        ttl: seconds a lease lives before its leftover goes back to Redis.
        deadline: seconds a call to Redis may take.
        monotonic: the local clock leases expire by (tests pass a fake one).
        renew_at: fraction of a grant (0 to 1) left when the next block is asked for in the
            background; 0 renews only when the lease is empty, in the caller's path.
    """

    # Concurrent callers share one connection and the pipe keeps the deadline.
    multiplexed = True

    def __init__(
        self,
        pipe: AutoPipeline | SlotMap[AutoPipeline],
        *,
        block: int = DEFAULT_LEASE_BLOCK,
        ttl: float = DEFAULT_LEASE_TTL,
        deadline: float = DEFAULT_REDIS_TIMEOUT,
        monotonic: Callable[[], float] = time.monotonic,
        renew_at: float = DEFAULT_RENEW_AT,
    ) -> None:
        _check(block, ttl)
        _check_renew_at(renew_at)
        self.renew_at = float(renew_at)
        # One server (an AutoPipeline), or a Redis Cluster: a slot map with one pipe per master;
        # every key of one lease carries the principal's hash tag, so a lease lives in one slot.
        self._slots: SlotMap[AutoPipeline] | None = None
        if isinstance(pipe, AutoPipeline):
            self._pipe: AutoPipeline | None = pipe
            if pipe.deadline is None:
                pipe.deadline = deadline
        else:
            self._pipe = None
            self._slots = pipe
        self.block = block
        self.ttl = ttl
        self.deadline = deadline
        self._mono = monotonic
        self._leases: dict[tuple[Any, ...], _Lease] = {}
        self._renewing: dict[tuple[Any, ...], asyncio.Future[tuple[int, HitResult | None]]] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closed = False
        #: Round trips to Redis that asked for a lease (``ahead``: of them, those made in the
        #: background before the lease ran out), and those that only gave one back;
        #: ``waits``: decisions that waited for another caller's renewal.
        self.renewals = 0
        self.ahead = 0
        self.waits = 0
        self.returns = 0
        self.reloads = 0
        #: Lease calls a cluster answered with a redirection (re-sent through redis-py).
        self.redirects = 0

    def __repr__(self) -> str:
        where = (
            repr(self._pipe)
            if self._slots is None
            else f"cluster, {len(self._slots.nodes)} masters"
        )
        return f"LeaseBackend({where}, block={self.block}, ttl={self.ttl})"

    @property
    def pipe(self) -> Any:
        """Never "the same server" as a usage store: quotas are not charged in the lease script."""
        return _NoQuotaAddress

    @property
    def leases(self) -> dict[tuple[Any, ...], _Lease]:
        """The leases this worker holds (for tests and diagnostics)."""
        return self._leases

    @property
    def batch_stats(self) -> tuple[int, int]:
        """``(writes, commands)`` sent so far (over every master's connection on a cluster)."""
        if self._slots is not None:
            return self._slots.batch_stats
        pipe = self._one_pipe()
        return pipe.batches, pipe.commands

    def _one_pipe(self) -> AutoPipeline:
        if self._pipe is None:  # an internal invariant, not user input
            raise RuntimeError("only called for a one-server lease backend")
        return self._pipe

    async def hit(
        self,
        keys: Sequence[str],
        windows: Sequence[tuple[int, int]],
        cost: int,
        quota: Any = None,
    ) -> HitResult:
        """Admit from the held lease, or renew it (giving its leftover back in the same call).

        Args:
            keys: one key per window (all with one hash tag).
            windows: ``(limit, seconds)`` per window.
            cost: units to charge.
            quota: unused (quotas are charged by the usage layer in lease mode).

        Raises:
            StoreError, ConnectionError, TimeoutError: Redis failed (the failover layer applies
                the policy); a lease in flight is lost, never double-counted.
        """
        lk = (tuple(keys), tuple(windows))
        shared: HitResult | None = None
        while True:
            lease = self._leases.get(lk)
            now = self._mono()
            if lease is not None and now < lease.expiry and lease.left >= cost:
                lease.left -= cost
                if lease.left <= lease.low and lk not in self._renewing:
                    self._renew_ahead(lk, keys, windows, lease, max(cost, 1))
                return HitResult(True, lease.figures(now))
            if shared is not None:
                return shared
            pending = self._renewing.get(lk)
            if pending is None:
                break
            # Another caller is renewing this lease: share its answer instead of a round trip.
            # (Its future always gets a result: a failed renewal answers (0, None).)
            self.waits += 1
            free, refused = await asyncio.shield(pending)
            if refused is not None and cost > free:
                # Concurrent with that refusal: the same answer holds, without a round trip
                # (unless the leftover it left behind still pays for this call: checked first).
                shared = HitResult(False, [list(w) for w in refused.windows])
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[tuple[int, HitResult | None]] = loop.create_future()
        self._renewing[lk] = fut
        answer: tuple[int, HitResult | None] = (0, None)
        try:
            result, answer = await self._renew(lk, keys, windows, cost)
            return result
        finally:
            del self._renewing[lk]
            fut.set_result(answer)

    def _renew_ahead(
        self,
        lk: tuple[Any, ...],
        keys: Sequence[str],
        windows: Sequence[tuple[int, int]],
        lease: _Lease,
        need: int,
    ) -> None:
        if self._closed:
            return
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[tuple[int, HitResult | None]] = loop.create_future()
        self._renewing[lk] = fut
        task = loop.create_task(self._ahead(lk, list(keys), list(windows), lease, need, fut))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _ahead(
        self,
        lk: tuple[Any, ...],
        keys: Sequence[str],
        windows: Sequence[tuple[int, int]],
        lease: _Lease,
        need: int,
        fut: asyncio.Future[tuple[int, HitResult | None]],
    ) -> None:
        # The next block while the leftover is still being spent: the leftover is kept (give 0)
        # and the lease is closed in the open-lease count (held); the grant joins the leftover.
        answer: tuple[int, HitResult | None] = (0, None)
        try:
            started = self._mono()
            self.renewals += 1
            self.ahead += 1
            raw = await self._call(keys, windows, lease, need=need, ask=True, keep=True)
            lease.granted = 0  # closed on Redis: a later give-back returns only the leftover
            answer, fresh = self._parse(raw, windows, need, started)
            if fresh is not None:
                if self._closed:
                    await self._give_back(lk, fresh)
                else:
                    if fresh.idx == lease.idx and self._leases.get(lk) is lease:
                        fresh.left += lease.left  # same windows: one lease from now on
                    # Otherwise Redis is in the next window: the leftover was the old one's.
                    self._install(lk, fresh)
        except Exception:  # a caller that finds the lease empty renews in its own path
            logger.debug("renewing a lease ahead failed", exc_info=True)
        finally:
            if self._renewing.get(lk) is fut:
                del self._renewing[lk]
            fut.set_result(answer)

    async def _renew(
        self,
        lk: tuple[Any, ...],
        keys: Sequence[str],
        windows: Sequence[tuple[int, int]],
        cost: int,
    ) -> tuple[HitResult, tuple[int, HitResult | None]]:
        old = self._leases.pop(lk, None)
        started = self._mono()
        self.renewals += 1
        raw = await self._call(keys, windows, old, need=cost, ask=True)
        answer, lease = self._parse(raw, windows, cost, started)
        if lease is None:
            refused = answer[1]
            if refused is None:  # an internal invariant, not user input
                raise RuntimeError("a refused lease carries the refusal")
            return refused, answer
        lease.left -= cost
        self._install(lk, lease)
        return HitResult(True, lease.figures(started)), answer

    def _parse(
        self, raw: list[Any], windows: Sequence[tuple[int, int]], need: int, started: float
    ) -> tuple[tuple[int, HitResult | None], _Lease | None]:
        """Read the script's answer: ``((grant, None), lease)`` or ``((free, refusal), None)``."""
        grant = int(raw[0])
        nw = len(windows)
        idx = [int(raw[1 + 4 * i]) for i in range(nw)]
        used = [int(raw[2 + 4 * i]) for i in range(nw)]
        opened = [int(raw[3 + 4 * i]) for i in range(nw)]
        resets = [int(raw[4 + 4 * i]) / 1000 for i in range(nw)]
        limits = [limit for limit, _ in windows]
        if grant < need:
            free = min(limit - u for limit, u in zip(limits, used, strict=True))
            states: list[list[float]] = []
            for limit, u, o, reset in zip(limits, used, opened, resets, strict=True):
                retry = 0.0
                if u + need > limit:
                    # Budget held in open leases comes back within ttl; otherwise at the reset.
                    retry = reset if need > limit or o == 0 else min(reset, self.ttl)
                states.append([min(u, limit), reset, retry])
            return (free, HitResult(False, states)), None
        life = min(self.ttl, min(resets))
        lease = _Lease(grant, started, started + life, idx, used, resets, limits)
        return (grant, None), lease

    def _install(self, lk: tuple[Any, ...], lease: _Lease) -> None:
        lease.low = int(lease.granted * self.renew_at) if self.renew_at else -1
        self._leases[lk] = lease
        self._arm()

    async def _call(
        self,
        keys: Sequence[str],
        windows: Sequence[tuple[int, int]],
        old: _Lease | None,
        *,
        need: int,
        ask: bool,
        keep: bool = False,
    ) -> list[Any]:
        # keep: the old lease's leftover stays with this worker (renewing ahead).
        give = old.left if old is not None and not keep else 0
        held = old.granted if old is not None else 0
        args: list[bytes | str | int] = [len(keys)]
        args.extend(k + _SUFFIX for k in keys)
        args.extend((give, held, need, 1 if ask else 0, self.block))
        for i, (limit, seconds) in enumerate(windows):
            args.extend((limit, seconds * 1000, old.idx[i] if old is not None else -1))
        raw = await self._send(keys[0], args, whole=False)
        if isinstance(raw, ReplyError) and raw.message.startswith("NOSCRIPT"):
            self.reloads += 1  # the script did not run: send it whole once
            raw = await self._send(keys[0], args, whole=True)
        if type(raw) is not list:
            code = raw.message.split(" ", 1)[0] if isinstance(raw, ReplyError) else "reply"
            raise StoreError(f"redis error: lease script failed ({code})")
        return raw

    async def _send(self, key: str, args: list[bytes | str | int], *, whole: bool) -> Any:
        """Send the lease script (by its SHA, or ``whole``) to the server holding ``key``."""
        if whole:
            payload = encode_command(b"EVAL", LEASE_LUA, *args)
        else:
            payload = encode_command(b"EVALSHA", _SHA, *args)
        slots = self._slots
        if slots is None:
            pipe = self._one_pipe()
        else:
            async with asyncio.timeout(self.deadline):
                node = await slots.node_for(key)
            if node is None:  # a slot nobody serves (cluster down): let redis-py say why
                return await self._redirected(args, whole=whole)
            pipe = node
        try:
            if pipe.connected and not whole:  # the pipe's watchdog keeps the deadline
                raw = await pipe.execute(payload)
            else:
                async with asyncio.timeout(self.deadline):
                    raw = await pipe.execute(payload)
        except Exception:
            if slots is not None:
                slots.invalidate()  # a dead master: the next call re-reads the slot map
            raise
        if (
            slots is not None
            and isinstance(raw, ReplyError)
            and raw.message.startswith(CLUSTER_REDIRECTS)
        ):
            # The script did not run on that node: read the map again and send it once more
            # through redis-py, which follows ASK (with ASKING) and MOVED.
            slots.invalidate()
            return await self._redirected(args, whole=whole)
        return raw

    async def _redirected(self, args: list[bytes | str | int], *, whole: bool) -> Any:
        from redis.exceptions import ResponseError

        if self._slots is None:  # an internal invariant, not user input
            raise RuntimeError("only called for a cluster lease backend")
        self.redirects += 1
        cluster = self._slots.cluster
        try:
            async with asyncio.timeout(self.deadline):
                if whole:
                    return await cluster.execute_command("EVAL", LEASE_LUA, *args)
                return await cluster.execute_command("EVALSHA", _SHA, *args)
        except ResponseError as exc:  # NOSCRIPT and script errors: answered like the lean path
            return ReplyError(str(exc))

    def _arm(self) -> None:
        if self._timer is None and not self._closed:
            loop = asyncio.get_running_loop()
            self._timer = loop.call_later(self.ttl / 2, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        task = asyncio.ensure_future(self.return_expired())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def return_expired(self) -> int:
        """Give back the leftovers of leases whose time is up; return how many were closed.

        Runs by itself every ``ttl / 2`` while leases are held (so a leftover is back within
        1.5 x ``ttl`` of its lease's start); a failed give-back leaves those
        units charged until the window ends (budget lost, never invented).
        """
        now = self._mono()
        ended = [
            (lk, lease)
            for lk, lease in self._leases.items()
            if now >= lease.expiry and lk not in self._renewing
        ]
        for lk, _ in ended:
            del self._leases[lk]
        if ended:
            await asyncio.gather(
                *(self._give_back(lk, lease) for lk, lease in ended), return_exceptions=True
            )
        if self._leases:
            self._arm()
        return len(ended)

    async def _give_back(self, lk: tuple[Any, ...], lease: _Lease) -> None:
        self.returns += 1
        await self._call(lk[0], lk[1], lease, need=0, ask=False)

    async def release(self) -> None:
        """End every lease now, giving each leftover back to Redis (errors are swallowed)."""
        held = [(lk, lease) for lk, lease in self._leases.items() if lk not in self._renewing]
        for lk, _ in held:
            del self._leases[lk]
        if held:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(self.deadline):
                    await asyncio.gather(
                        *(self._give_back(lk, lease) for lk, lease in held),
                        return_exceptions=True,
                    )

    async def ping(self) -> bool:
        """Return whether Redis answers (every master, on a cluster)."""
        async with asyncio.timeout(self.deadline):
            if self._slots is not None:
                return bool(await self._slots.cluster.ping())
            return bool(await self._one_pipe().execute(_PING) == b"PONG")

    async def aclose(self) -> None:
        """Give every lease back, stop the timer and close the connection."""
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for task in list(self._tasks):
            task.cancel()
        await self.release()
        if self._slots is not None:
            await self._slots.aclose()
            await self._slots.cluster.aclose()
        else:
            await self._one_pipe().aclose()


class _NoQuotaAddress:
    address = (None, "<leases>", 0, 0)


def _check(block: Any, ttl: Any) -> None:
    if isinstance(block, bool) or not isinstance(block, int) or not 1 <= block <= _MAX_BLOCK:
        raise ConfigurationError(f"lease block must be an int in 1..{_MAX_BLOCK}: {block!r}")
    if (
        isinstance(ttl, bool)
        or not isinstance(ttl, int | float)
        or not math.isfinite(ttl)
        or not 0 < ttl <= _MAX_TTL
    ):
        raise ConfigurationError(f"lease ttl must be seconds in (0, {_MAX_TTL:g}]: {ttl!r}")


def _check_renew_at(renew_at: Any) -> None:
    if isinstance(renew_at, bool) or not isinstance(renew_at, int | float) or not 0 <= renew_at < 1:
        raise ConfigurationError(f"lease renew_at must be a fraction in [0, 1): {renew_at!r}")


class LeasedRedis:
    """A rate-limit storage spec: Redis with local leases (pass as ``storage=``).

    Args:
        url: ``redis://[user:password@]host[:port][/db]``, ``unix:///path?db=N``, or
            ``redis+cluster://[user:password@]host1:port1,host2:port2/`` (a Redis Cluster: one
            connection per master, each lease sent to its principal's slot).
        block: units a lease takes at most.
        ttl: seconds a lease lives before its leftover goes back.
        renew_at: fraction of a grant left when the next block is asked for in the
            background (0: only when the lease is empty).

    Raises:
        ConfigurationError: for another scheme, or a block, ttl or renew_at out of range.
    """

    __slots__ = ("_url", "block", "renew_at", "ttl")

    def __init__(
        self,
        url: str,
        *,
        block: int = DEFAULT_LEASE_BLOCK,
        ttl: float = DEFAULT_LEASE_TTL,
        renew_at: float = DEFAULT_RENEW_AT,
    ) -> None:
        if not isinstance(url, str) or not url.lower().startswith(_LEASE_SCHEMES):
            raise ConfigurationError(
                "local leases need a redis://, unix:// or redis+cluster:// rate-limit storage"
            )
        _check(block, ttl)
        _check_renew_at(renew_at)
        self._url = url
        self.block = block
        self.ttl = float(ttl)
        self.renew_at = float(renew_at)

    @property
    def cluster(self) -> bool:
        """True for a ``redis+cluster://`` URL."""
        return self._url.lower().startswith("redis+cluster://")

    def __repr__(self) -> str:
        # The URL may carry a password: show where it points, never the credentials.
        if self.cluster:
            from extapi_kit.stores._redis import split_hosts

            hosts = ",".join(f"{h}:{p}" for h, p in split_hosts(self._url)[3])
            where = f"redis+cluster://{hosts}"
        else:
            where = repr(AutoPipeline(self._url))
        return f"LeasedRedis({where}, block={self.block}, ttl={self.ttl:g})"

    def backend(self, *, deadline: float) -> LeaseBackend:
        """Return a new lease backend on its own connection.

        Args:
            deadline: seconds a call to Redis may take.
        """
        pipe: AutoPipeline | SlotMap[AutoPipeline]
        if self.cluster:
            from extapi_kit.ratelimit.redis_cluster import SlotMap

            pipe = SlotMap(self._url, deadline, _same, _same)
        else:
            pipe = AutoPipeline(self._url, connect_timeout=deadline, deadline=deadline)
        return LeaseBackend(
            pipe, block=self.block, ttl=self.ttl, deadline=deadline, renew_at=self.renew_at
        )


def _same(pipe: AutoPipeline) -> AutoPipeline:
    return pipe
