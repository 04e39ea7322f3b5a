"""``redis://`` webhook store: a Redis Stream with one consumer group as the shared work queue.

Any number of dispatcher processes share the work; each due attempt is taken by one of them:

* deliveries due now are ``XADD``-ed to the stream; ``XREADGROUP`` hands each entry to one
  dispatcher, whose lease script (atomic Lua) takes the lease and acks/deletes the entry;
* retries and leases wait in a sorted set scored by due time; any dispatcher moves the due ones to
  the stream with an atomic script, so an expired lease (the worker died) is simply due again;
* ``XAUTOCLAIM`` takes over entries read by a dispatcher that died before leasing them.

On a Redis Cluster (``redis+cluster://``) the prefix must hold a ``{hash tag}`` (one is added
when it has none: ``extapi:wh:`` becomes ``{extapi:wh}:``), so the whole queue lives in one slot and
every script stays atomic; each script names the stream as its key so the client routes it (and
follows ``MOVED``/``ASK``). One queue is one slot: shard by running several stores with different
tags if one master cannot carry the webhook traffic.

Records are hashes (deliveries), JSON strings (events, endpoints) and lists (attempts). Run Redis
with persistence (AOF) and ``maxmemory-policy noeviction`` for durability. A Redis that restarted
without its data anyway answers ``NOGROUP``; the next claim recreates the group and goes on (W13).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Collection, Sequence
from typing import Any

from extapi_kit.exceptions import NotFoundError
from extapi_kit.stores._redis import is_cluster, redis_from_url, wrap_redis_error
from extapi_kit.webhooks.models import Attempt, Delivery, DeliveryStatus, Endpoint, Event
from extapi_kit.webhooks.store import Claimed

__all__ = ["RedisWebhookStore"]

logger = logging.getLogger("extapi_kit.webhooks")

_GROUP = "g"
# A deferred delivery (its endpoint is saturated in the claiming process) comes back this later.
_DEFER_SECONDS = 0.05


_wrap = wrap_redis_error


def _s(value: float | int | str | None) -> str:
    return "" if value is None else repr(value) if isinstance(value, float) else str(value)


def _delivery(flat: list[Any] | dict[Any, Any]) -> Delivery:
    if isinstance(flat, list):
        flat = dict(zip(flat[::2], flat[1::2], strict=True))
    d = {(k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v)
         for k, v in flat.items()}  # fmt: skip
    return Delivery.model_validate({k: (None if v == "" else v) for k, v in d.items()})


class RedisWebhookStore:
    """A :class:`~extapi_kit.webhooks.store.WebhookStore` on Redis (Streams + consumer group).

    Args:
        url: ``redis://host:port/db`` or ``rediss://...``.
        prefix: key prefix (use a ``{hash-tag}`` on a cluster).
        socket_timeout: seconds a Redis command may take.
    """

    # claim() reads excluded endpoints' entries from the stream and defers them (the dispatcher
    # sizes its claims conservatively for such stores).
    excludes_cheaply = False

    def __init__(
        self, url: str, *, prefix: str = "extapi:wh:", socket_timeout: float = 2.0
    ) -> None:
        self._redis = redis_from_url(url, socket_timeout=socket_timeout)
        if is_cluster(self._redis) and "{" not in prefix:
            # One slot for the whole queue: the scripts touch many of its keys at once.
            prefix = "{" + prefix.rstrip(":") + "}:"
        self._cluster = is_cluster(self._redis)
        self._p = prefix
        self._scripts: dict[str, Any] = {}
        self._group_ready = False
        self._finishing: list[tuple[list[str], asyncio.Future[None]]] = []
        self._flusher: asyncio.Task[None] | None = None

    @classmethod
    def from_url(cls, url: str, **options: Any) -> RedisWebhookStore:
        """Create the store from ``redis://...``.

        Args:
            url: the URL.
            **options: passed to the constructor.
        """
        return cls(url, **options)

    def __repr__(self) -> str:
        return f"RedisWebhookStore(prefix={self._p!r})"

    async def _eval(self, name: str, args: Sequence[Any]) -> Any:
        script = self._scripts.get(name)
        if script is None:
            script = self._scripts[name] = self._redis.register_script(_LUA[name])
        try:
            # The stream is named as the key so a cluster client routes the call to its slot.
            return await script(keys=[self._p + "stream"], args=[self._p, *args])
        except Exception as exc:
            raise _wrap(exc, self._redis) from exc

    async def _call(self, coro: Any) -> Any:
        try:
            return await coro
        except Exception as exc:
            raise _wrap(exc, self._redis) from exc

    async def _ensure_group(self) -> None:
        if self._group_ready:
            return
        try:
            await self._redis.xgroup_create(self._p + "stream", _GROUP, id="0", mkstream=True)
        except Exception as exc:
            if "BUSYGROUP" not in str(exc):
                raise _wrap(exc, self._redis) from exc
        self._group_ready = True

    async def _group_call(self, make: Callable[[], Awaitable[Any]]) -> Any:
        """Run a consumer-group command; recreate the group once if Redis lost it (W13)."""
        try:
            return await make()
        except Exception as exc:
            if "NOGROUP" not in str(exc):
                raise _wrap(exc, self._redis) from exc
        # Redis restarted without persistence (or was flushed): the stream and its group are
        # gone, so "group exists" cached for the process is stale. Recreate it and go on;
        # deliveries published since then are in the new stream, read from its start.
        logger.warning(
            "webhook store: the Redis consumer group was missing (Redis lost its data?); "
            "recreated it"
        )
        self._group_ready = False
        await self._ensure_group()
        try:
            return await make()
        except Exception as exc:
            raise _wrap(exc, self._redis) from exc

    # -- endpoints ---------------------------------------------------------------------------

    async def add_endpoint(self, endpoint: Endpoint) -> None:
        pipe = self._redis.pipeline(transaction=True)
        pipe.set(self._p + "ep:" + endpoint.id, endpoint.model_dump_json())
        pipe.zadd(self._p + "eps", {endpoint.id: endpoint.created_at})
        await self._call(pipe.execute())

    async def get_endpoint(self, endpoint_id: str) -> Endpoint:
        raw = await self._call(self._redis.get(self._p + "ep:" + endpoint_id))
        if raw is None:
            raise NotFoundError(f"no endpoint {endpoint_id!r}")
        return Endpoint.model_validate_json(raw)

    async def list_endpoints(self) -> list[Endpoint]:
        ids = await self._call(self._redis.zrange(self._p + "eps", 0, -1))
        if not ids:
            return []
        raws = await self._call(self._redis.mget([self._p + "ep:" + i.decode() for i in ids]))
        return [Endpoint.model_validate_json(r) for r in raws if r is not None]

    async def update_endpoint(self, endpoint_id: str, **changes: Any) -> Endpoint:
        # Read-modify-write: endpoint edits are rare and come from operators or the health check.
        current = await self.get_endpoint(endpoint_id)
        updated = Endpoint.model_validate({**current.model_dump(), **changes})
        await self._call(
            self._redis.set(self._p + "ep:" + endpoint_id, updated.model_dump_json(), xx=True)
        )
        return updated

    async def remove_endpoint(self, endpoint_id: str) -> None:
        removed = await self._call(self._redis.delete(self._p + "ep:" + endpoint_id))
        if not removed:
            raise NotFoundError(f"no endpoint {endpoint_id!r}")
        await self._call(self._redis.zrem(self._p + "eps", endpoint_id))
        await self._eval("cancel", [endpoint_id])

    # -- events and deliveries ---------------------------------------------------------------

    def _delivery_args(self, deliveries: Sequence[Delivery]) -> list[str]:
        args: list[str] = []
        for d in deliveries:
            args += [d.id, d.status.value, d.endpoint_id, _s(d.next_attempt_at), _s(d.created_at)]
        return args

    async def publish(self, event: Event, deliveries: Sequence[Delivery]) -> bool:
        await self._ensure_group()
        doc = event.model_dump_json()
        now = max((d.created_at for d in deliveries), default=event.timestamp)
        args = [event.id, doc, _s(event.timestamp), event.type, _s(now)]
        return bool(await self._eval("publish", [*args, *self._delivery_args(deliveries)]))

    async def add_deliveries(self, deliveries: Sequence[Delivery]) -> None:
        for d in deliveries:
            pipe = self._redis.pipeline(transaction=True)
            pipe.hset(
                self._p + "dl:" + d.id,
                mapping={k: _s(v.value if isinstance(v, DeliveryStatus) else v)
                         for k, v in d.model_dump().items()},
            )  # fmt: skip
            pipe.zadd(self._p + "dl:ep:" + d.endpoint_id, {d.id: d.created_at})
            pipe.zadd(self._p + "dls", {d.id: d.created_at})
            pipe.zadd(self._p + "due", {d.id: d.next_attempt_at})
            await self._call(pipe.execute())

    async def get_event(self, event_id: str) -> Event:
        raw = await self._call(self._redis.get(self._p + "evt:" + event_id))
        if raw is None:
            raise NotFoundError(f"no event {event_id!r}")
        return Event.model_validate_json(raw)

    async def list_events(
        self, *, type: str | None = None, since: float | None = None, limit: int = 1000
    ) -> list[Event]:
        key = self._p + ("evts:" + type if type is not None else "evts")
        low = "-inf" if since is None else _s(since)
        ids = await self._call(self._redis.zrangebyscore(key, low, "+inf", start=0, num=limit))
        if not ids:
            return []
        raws = await self._call(self._redis.mget([self._p + "evt:" + i.decode() for i in ids]))
        return [Event.model_validate_json(r) for r in raws if r is not None]

    async def claim(
        self,
        *,
        owner: str,
        now: float,
        lease_seconds: float,
        limit: int,
        exclude: Collection[str] = (),
    ) -> list[Claimed]:
        await self._ensure_group()
        stream = self._p + "stream"
        await self._eval("promote", [_s(now), max(limit * 4, 100)])
        entries: list[tuple[bytes, dict[bytes, bytes]]] = []
        # Entries read by a dispatcher that died before leasing them (a window of one round trip).
        auto = await self._group_call(
            lambda: self._redis.xautoclaim(
                stream, _GROUP, owner, int(lease_seconds * 1000), "0-0", count=limit
            )
        )
        entries += [e for e in auto[1] if e[1]]
        if len(entries) < limit:
            read = await self._group_call(
                lambda: self._redis.xreadgroup(
                    _GROUP, owner, {stream: ">"}, count=limit - len(entries)
                )
            )
            for _name, items in read or []:
                entries += items
        if not entries:
            return []
        excl = list(exclude)
        args: list[Any] = [owner, _s(now), _s(now + lease_seconds), _s(now + _DEFER_SECONDS)]
        args += [len(excl), *excl]
        for entry_id, fields in entries:
            args += [entry_id, fields[b"d"]]
        leased = [_delivery(flat) for flat in await self._eval("lease", args)]
        if not leased:
            return []
        keys = [self._p + "evt:" + d.event_id for d in leased]
        raws = await self._call(self._redis.mget(keys))
        out: list[Claimed] = []
        for d, raw in zip(leased, raws, strict=True):
            if raw is not None:
                out.append((d, Event.model_validate_json(raw)))
        return out

    async def finish(
        self,
        delivery: Delivery,
        attempt: Attempt | None,
        *,
        owner: str,
        status: DeliveryStatus,
        next_attempt_at: float | None = None,
    ) -> None:
        att = "" if attempt is None else attempt.model_dump_json()
        last_error = ""
        if attempt is not None:
            ok = attempt.status is not None and 200 <= attempt.status < 300
            last_error = attempt.error or ("" if ok else str(attempt.status))
        args = [self._p, delivery.id, owner, status.value, _s(next_attempt_at), att, last_error]
        # Finishes that arrive together go out in one pipeline (one round trip for the batch).
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._finishing.append((args, fut))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush())
        await fut

    async def _flush(self) -> None:
        script = self._scripts.get("finish")
        if script is None:
            script = self._scripts["finish"] = self._redis.register_script(_LUA["finish"])
        keys = [self._p + "stream"]
        while self._finishing:
            batch, self._finishing = self._finishing, []
            try:
                if self._cluster:
                    # redis-py's cluster pipeline does not reload a script on NOSCRIPT (a
                    # promoted replica has an empty script cache), and re-running a partly
                    # executed pipeline would record attempts twice: one self-healing call each.
                    await asyncio.gather(*(script(keys=keys, args=a) for a, _ in batch))
                else:
                    pipe = self._redis.pipeline(transaction=False)
                    for args, _ in batch:
                        await script(keys=keys, args=args, client=pipe)
                    await pipe.execute()
            except Exception as exc:
                err = _wrap(exc, self._redis)
                for _, fut in batch:
                    if not fut.done():
                        fut.set_exception(err)
            else:
                for _, fut in batch:
                    if not fut.done():
                        fut.set_result(None)

    async def release(self, deliveries: Sequence[Delivery], *, owner: str, now: float) -> None:
        for d in deliveries:
            await self._eval("requeue", [d.id, _s(now), owner])

    async def requeue(self, delivery_id: str, *, at: float) -> Delivery:
        flat = await self._eval("requeue", [delivery_id, _s(at), ""])
        if not flat:
            raise NotFoundError(f"no delivery {delivery_id!r}")
        return _delivery(flat)

    async def get_delivery(self, delivery_id: str) -> Delivery:
        flat = await self._call(self._redis.hgetall(self._p + "dl:" + delivery_id))
        if not flat:
            raise NotFoundError(f"no delivery {delivery_id!r}")
        return _delivery(flat)

    async def list_deliveries(
        self,
        *,
        endpoint_id: str | None = None,
        status: DeliveryStatus | None = None,
        since: float | None = None,
        limit: int = 1000,
    ) -> list[Delivery]:
        key = self._p + ("dl:ep:" + endpoint_id if endpoint_id is not None else "dls")
        low = "-inf" if since is None else _s(since)
        want = None if status is None else DeliveryStatus(status)
        out: list[Delivery] = []
        start, page = 0, 500
        while len(out) < limit:
            ids = await self._call(
                self._redis.zrangebyscore(key, low, "+inf", start=start, num=page)
            )
            if not ids:
                break
            pipe = self._redis.pipeline(transaction=False)
            for i in ids:
                pipe.hgetall(self._p + "dl:" + i.decode())
            for flat in await self._call(pipe.execute()):
                if flat:
                    d = _delivery(flat)
                    if want is None or d.status == want:
                        out.append(d)
            start += page
        return out[:limit]

    async def list_attempts(self, delivery_id: str) -> list[Attempt]:
        raws = await self._call(self._redis.lrange(self._p + "att:" + delivery_id, 0, -1))
        return [Attempt.model_validate(json.loads(r)) for r in raws]

    async def ping(self) -> bool:
        try:
            return bool(await self._redis.ping())
        except Exception:
            return False

    async def aclose(self) -> None:
        await self._redis.aclose()


# -- Lua (each script atomic on the server) ---------------------------------------------------
# Keys are built from the prefix passed as ARGV[1], so the store needs a single Redis (or a cluster
# with every key of the prefix in one slot: the prefix holds a {hash-tag}); KEYS[1] is the stream,
# named only so that a cluster client routes the call.

PUBLISH = """
local p = ARGV[1]
local eid = ARGV[2]
if redis.call('EXISTS', p..'evt:'..eid) == 1 then return 0 end
redis.call('SET', p..'evt:'..eid, ARGV[3])
redis.call('ZADD', p..'evts', ARGV[4], eid)
redis.call('ZADD', p..'evts:'..ARGV[5], ARGV[4], eid)
local now = tonumber(ARGV[6])
local i = 7
while i <= #ARGV do
  local did, ep, due, created = ARGV[i], ARGV[i+2], tonumber(ARGV[i+3]), ARGV[i+4]
  redis.call('HSET', p..'dl:'..did, 'id', did, 'event_id', eid, 'endpoint_id', ep,
    'status', ARGV[i+1], 'attempts', '0', 'next_attempt_at', ARGV[i+3],
    'lease_until', '', 'lease_owner', '', 'created_at', created, 'last_error', '')
  redis.call('ZADD', p..'dl:ep:'..ep, created, did)
  redis.call('ZADD', p..'dls', created, did)
  if due <= now then redis.call('XADD', p..'stream', '*', 'd', did)
  else redis.call('ZADD', p..'due', due, did) end
  i = i + 5
end
return 1
"""
# Move deliveries whose time has come (retry due, or lease expired) into the stream.
PROMOTE = """
local p = ARGV[1]
local ids = redis.call('ZRANGEBYSCORE', p..'due', '-inf', ARGV[2], 'LIMIT', 0, tonumber(ARGV[3]))
for _, id in ipairs(ids) do
  redis.call('ZREM', p..'due', id)
  redis.call('XADD', p..'stream', '*', 'd', id)
end
return #ids
"""
# ARGV: prefix, owner, now, until, defer_until, n_excluded, excluded..., (entry, did)...
LEASE = """
local p, owner, now, untl, defer = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4], ARGV[5]
local nx = tonumber(ARGV[6])
local excluded = {}
for j = 1, nx do excluded[ARGV[6 + j]] = true end
local out = {}
local i = 7 + nx
while i <= #ARGV do
  local entry, did = ARGV[i], ARGV[i+1]
  redis.call('XACK', p..'stream', 'g', entry)
  redis.call('XDEL', p..'stream', entry)
  local k = p..'dl:'..did
  local st = redis.call('HGET', k, 'status')
  local ok = st == 'pending' or st == 'delivering'
  if st == 'delivering' then
    local lu = tonumber(redis.call('HGET', k, 'lease_until'))
    if lu and lu > now then ok = false end
  end
  if ok then
    if excluded[redis.call('HGET', k, 'endpoint_id')] then
      redis.call('ZADD', p..'due', defer, did)
    else
      redis.call('HSET', k, 'status', 'delivering', 'lease_owner', owner, 'lease_until', untl)
      redis.call('ZADD', p..'due', untl, did)
      out[#out + 1] = redis.call('HGETALL', k)
    end
  end
  i = i + 2
end
return out
"""
# ARGV: prefix, did, owner, status, next_at ('' = keep), attempt_json ('' = none), last_error
FINISH = """
local p, did, owner, st, nxt, att = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local k = p..'dl:'..did
if redis.call('EXISTS', k) == 0 then return 0 end
if att ~= '' then
  redis.call('RPUSH', p..'att:'..did, att)
  redis.call('HINCRBY', k, 'attempts', 1)
end
if redis.call('HGET', k, 'status') ~= 'delivering' or redis.call('HGET', k, 'lease_owner') ~= owner
then return 0 end
redis.call('HSET', k, 'status', st, 'lease_owner', '', 'lease_until', '')
if att ~= '' then redis.call('HSET', k, 'last_error', ARGV[7]) end
redis.call('ZREM', p..'due', did)
if nxt ~= '' then redis.call('HSET', k, 'next_attempt_at', nxt) end
if st == 'pending' then
  redis.call('ZADD', p..'due', redis.call('HGET', k, 'next_attempt_at'), did)
end
return 1
"""
# ARGV: prefix, did, at, owner ('' = any state: requeue)
REQUEUE = """
local p, did, at, owner = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local k = p..'dl:'..did
if redis.call('EXISTS', k) == 0 then return nil end
if owner ~= '' then
  if redis.call('HGET', k, 'status') ~= 'delivering'
    or redis.call('HGET', k, 'lease_owner') ~= owner then return nil end
end
redis.call('HSET', k, 'status', 'pending', 'lease_owner', '', 'lease_until', '',
  'next_attempt_at', at)
redis.call('ZADD', p..'due', at, did)
return redis.call('HGETALL', k)
"""
# ARGV: prefix, endpoint id: cancel its active deliveries.
CANCEL = """
local p, ep = ARGV[1], ARGV[2]
local ids = redis.call('ZRANGE', p..'dl:ep:'..ep, 0, -1)
for _, did in ipairs(ids) do
  local k = p..'dl:'..did
  local st = redis.call('HGET', k, 'status')
  if st == 'pending' or st == 'delivering' then
    redis.call('HSET', k, 'status', 'cancelled', 'lease_owner', '', 'lease_until', '')
    redis.call('ZREM', p..'due', did)
  end
end
return #ids
"""

_LUA = {
    "publish": PUBLISH,
    "promote": PROMOTE,
    "lease": LEASE,
    "finish": FINISH,
    "requeue": REQUEUE,
    "cancel": CANCEL,
}
