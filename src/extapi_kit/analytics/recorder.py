"""KeyActivity: per-key analytics fed by the audit trail, off the request path.

:class:`KeyActivity` is an audit sink. The audit layer already builds one record per request on
its background writer (DESIGN §6), so the request path pays nothing new: the writer hands each
batch to :meth:`KeyActivity.write_batch`, which folds it into an in-process dict per key; about
once a second (``flush_interval``) each touched key's document is read, merged and written back
compare-and-set (:mod:`extapi_kit.analytics.store`). A record counts for a key when it carries
the key's principal, or when the verify named an *existing* key it refused (revoked, expired,
wrong secret or environment: :func:`~extapi_kit.analytics.model.note_refusal`). Unknown key ids
never create state, and a throttled attempt (its key id unverified) only adds to a key that
already has activity, so spraying invented key ids grows nothing (case K19).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

from extapi_kit._types import Clock
from extapi_kit.analytics.model import (
    DAY,
    DEFAULT_MAX_AGENTS,
    DEFAULT_MAX_IPS,
    DEFAULT_WINDOW_DAYS,
    MAX_AGENT_LENGTH,
    REFUSAL_EXTRA,
    REFUSAL_REASONS,
    Delta,
    day_of,
    iso_utc,
    merge,
    seen,
    view,
)
from extapi_kit.analytics.store import ActivityStore
from extapi_kit.audit.record import AuditRecord
from extapi_kit.exceptions import ConfigurationError, ExtAPIKitError, StoreError
from extapi_kit.stores import store_from_url

__all__ = ["EVENT_NEW_IP", "NEW_IP_METADATA", "KeyActivity"]

logger = logging.getLogger("extapi_kit.analytics")

#: The webhook event type announcing a key used from an address it was not seen from.
EVENT_NEW_IP = "api_key.new_ip"
#: The key metadata member that opts a key in to :data:`EVENT_NEW_IP` (``true``).
NEW_IP_METADATA = "notify_new_ip"
EventCallback = Callable[[str, dict[str, Any]], Awaitable[Any] | Any]
# Bounds of what waits in memory between flushes (a sink must never grow without limit).
MAX_PENDING_KEYS = 10_000
MAX_PENDING_UNVERIFIED = 1_000
_CAS_ATTEMPTS = 16


class KeyActivity:
    """Per-key analytics (addresses, user agents, status classes, refusals) from audit records.

    Pass it to the audit layer as a sink (``AuditMiddleware(sink=[..., activity])``) or to
    ``build(key_activity=activity)``, which does that for you.

    Args:
        store: an :class:`~extapi_kit.analytics.store.ActivityStore` or a URL (``memory://``,
            ``sqlite:///activity.db``, ``redis://host:6379/0``, ``postgresql://...``).
        keys: the :class:`~extapi_kit.keys.KeyService` or ``KeyStore``; needed for the
            ``api_key.new_ip`` event (its opt-in and owner are read from the key).
        on_event: ``(type, data)`` callback (sync or async); ``WebhookDispatcher.publish`` fits.
            Called with :data:`EVENT_NEW_IP` for keys whose metadata has ``notify_new_ip: true``.
        window_days: days of activity kept and shown (1-90).
        max_ips: client addresses kept per key.
        max_agents: user agents kept per key.
        new_ip_events_per_day: at most this many ``api_key.new_ip`` events per key and UTC day
            (per process), so a key used from a botnet cannot flood its owner's endpoint.
        flush_interval: seconds between writes of the pending counts.
        clock: returns epoch seconds (tests pass a FakeClock).
    """

    def __init__(
        self,
        store: ActivityStore | str = "memory://",
        *,
        keys: Any = None,
        on_event: EventCallback | None = None,
        window_days: int = DEFAULT_WINDOW_DAYS,
        max_ips: int = DEFAULT_MAX_IPS,
        max_agents: int = DEFAULT_MAX_AGENTS,
        new_ip_events_per_day: int = 20,
        flush_interval: float = 1.0,
        clock: Clock | None = None,
    ) -> None:
        # bool is an int subclass: True would quietly mean one day.
        if type(window_days) is not int or not 1 <= window_days <= 90:
            raise ConfigurationError(f"window_days must be 1..90: {window_days!r}")
        for name, value in (("max_ips", max_ips), ("max_agents", max_agents)):
            if type(value) is not int or not 1 <= value <= 1000:
                raise ConfigurationError(f"{name} must be 1..1000: {value!r}")
        if not flush_interval > 0:
            raise ConfigurationError(f"flush_interval must be positive: {flush_interval!r}")
        self._owns_store = isinstance(store, str)
        self.store: ActivityStore = (
            store_from_url("activity", store) if isinstance(store, str) else store
        )
        self._keys = getattr(keys, "store", keys)
        self._on_event = on_event
        self.window_days = window_days
        self.max_ips = max_ips
        self.max_agents = max_agents
        self._events_per_day = new_ip_events_per_day
        self._interval = flush_interval
        self.clock: Clock = clock or time.time
        self._ttl = (window_days + 1) * DAY
        self._pending: dict[str, Delta] = {}
        self._unverified = 0
        self.dropped = 0
        self._lock = asyncio.Lock()
        self._timer: asyncio.TimerHandle | None = None
        self._task: asyncio.Task[None] | None = None
        self._announced: dict[tuple[str, str], int] = {}
        self._pruned = ""
        self._day_cache: tuple[int, str] = (-1, "")
        self._closed = False

    def __repr__(self) -> str:
        return f"KeyActivity(store={self.store!r}, window_days={self.window_days})"

    # -- the audit sink face -------------------------------------------------------------------

    async def write_batch(self, records: Sequence[AuditRecord]) -> None:
        """Fold a batch of audit records into the pending counts; never raises.

        Args:
            records: the records, oldest first.
        """
        for rec in records:
            self.observe(rec)
        if self._pending:
            self._schedule()

    def observe(self, rec: AuditRecord) -> None:
        """Fold one audit record into the pending counts (a dict update).

        Args:
            rec: the record.
        """
        key_id = rec.key_id
        reason: str | None = None
        verified = True
        if key_id is None:
            refusal = rec.extra.get(REFUSAL_EXTRA) if rec.extra else None
            if not isinstance(refusal, dict):
                return
            key_id, slug = refusal.get("key_id"), refusal.get("reason")
            if not isinstance(key_id, str) or not isinstance(slug, str) or not key_id:
                return
            reason = REFUSAL_REASONS.get(slug)
            verified = slug != "throttled"
        elif rec.rejection is not None:
            reason = REFUSAL_REASONS.get(rec.rejection)
        delta = self._pending.get(key_id)
        if delta is None:
            if len(self._pending) >= MAX_PENDING_KEYS or (
                not verified and self._unverified >= MAX_PENDING_UNVERIFIED
            ):
                self.dropped += 1
                return
            delta = self._pending[key_id] = Delta(verified=verified)
            if not verified:
                self._unverified += 1
        elif verified:
            delta.verified = True
        ts = rec.timestamp_us / 1_000_000
        day = self._day(ts)
        if rec.status:
            delta.count(day, f"{rec.status // 100}xx")
        if reason is not None:
            delta.count(day, "r:" + reason)
        if rec.key_id is None:
            return  # a refused key's caller is not the key's holder: no address or agent
        if rec.client_ip and (rec.client_ip in delta.ips or len(delta.ips) < 4 * self.max_ips):
            seen(delta.ips, rec.client_ip, ts)
        agent = rec.user_agent
        if agent:
            agent = agent[:MAX_AGENT_LENGTH]
            if agent in delta.agents or len(delta.agents) < 4 * self.max_agents:
                seen(delta.agents, agent, ts)

    def _day(self, ts: float) -> str:
        index = int(ts // DAY)
        if self._day_cache[0] != index:
            self._day_cache = (index, day_of(ts))
        return self._day_cache[1]

    async def query(
        self,
        *,
        key_id: str | None = None,
        route: str | None = None,
        method: str | None = None,
        status: int | None = None,
        since: Any = None,
        until: Any = None,
        limit: int = 100,
        cursor: str | None = None,
    ) -> tuple[list[AuditRecord], str | None]:
        """Not supported: this sink keeps aggregates, not records (use :meth:`get`).

        Args:
            key_id: unused.
            route: unused.
            method: unused.
            status: unused.
            since: unused.
            until: unused.
            limit: unused.
            cursor: unused.
        """
        raise StoreError("KeyActivity keeps aggregates and cannot be queried for records")

    async def prune(self, older_than: datetime | timedelta | float) -> int:
        """Nothing to prune by record age (documents age out by themselves); returns 0.

        Args:
            older_than: unused.
        """
        return 0

    async def ping(self) -> bool:
        """Return whether the activity store answers."""
        return await self.store.ping()

    async def aclose(self) -> None:
        """Write what is pending and close a store this object opened."""
        if self._closed:
            return
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)
        try:
            await self.flush()
        except ExtAPIKitError as exc:
            lost = len(self._pending)
            logger.warning("key activity: last flush failed, %d keys lost: %s", lost, exc)
        finally:
            if self._owns_store:
                await self.store.aclose()

    @property
    def pending_keys(self) -> int:
        """How many keys have counts not written yet."""
        return len(self._pending)

    # -- flushing ------------------------------------------------------------------------------

    def _schedule(self) -> None:
        if self._timer is not None or self._closed:
            return
        with contextlib.suppress(RuntimeError):  # no running loop: flush() is called explicitly
            loop = asyncio.get_running_loop()
            self._timer = loop.call_later(self._interval, self._fire)

    def _fire(self) -> None:
        self._timer = None
        self._task = asyncio.ensure_future(self._timed_flush())

    async def _timed_flush(self) -> None:
        try:
            await self.flush()
        except ExtAPIKitError as exc:
            logger.warning("key activity flush failed, will retry: %s", exc)
        if self._pending:
            self._schedule()

    async def flush(self) -> None:
        """Write the pending counts now (admin reads, tests and shutdown call it).

        Keys whose write failed stay pending (merged with newer counts) and the first error is
        raised after the others were tried.
        """
        async with self._lock:
            pending, self._pending, self._unverified = self._pending, {}, 0
            now = self.clock()
            error: ExtAPIKitError | None = None
            for key_id, delta in pending.items():
                try:
                    new_ips = await self._apply(key_id, delta, now)
                except ExtAPIKitError as exc:
                    error = error or exc
                    self._requeue(key_id, delta)
                    continue
                for ip in new_ips:
                    await self._announce(key_id, ip, delta.ips[ip][1], now)
            today = day_of(now)
            if error is None and today != self._pruned:
                self._pruned = today
                # The stores stamp each write with the wall clock (Redis expires by it too), so
                # idle documents are pruned by it as well: an injected clock set ahead must not
                # delete what was just written.
                await self.store.prune(time.time() - self._ttl)
            if error is not None:
                raise error

    def _requeue(self, key_id: str, delta: Delta) -> None:
        newer = self._pending.get(key_id)
        if newer is not None:
            delta.absorb(newer)
        elif len(self._pending) >= MAX_PENDING_KEYS:
            self.dropped += 1
            return
        self._pending[key_id] = delta

    async def _apply(self, key_id: str, delta: Delta, now: float) -> list[str]:
        for _ in range(_CAS_ATTEMPTS):
            version, raw = await self.store.load(key_id)
            doc = _decode(raw)
            merged, new_ips = merge(
                doc,
                delta,
                now,
                window_days=self.window_days,
                max_ips=self.max_ips,
                max_agents=self.max_agents,
            )
            if merged is None:
                return []
            text = json.dumps(merged, separators=(",", ":"))
            if await self.store.save(key_id, version, text, ttl=self._ttl):
                return new_ips
        raise StoreError(f"key activity of {key_id}: too many concurrent writers, will retry")

    async def _announce(self, key_id: str, ip: str, first_seen: float, now: float) -> None:
        if self._on_event is None or self._keys is None:
            return
        mark = (key_id, day_of(now))
        sent = self._announced.get(mark, 0)
        if sent >= self._events_per_day:
            return
        try:
            record = await self._keys.get(key_id)
            if record is None or record.metadata.get(NEW_IP_METADATA) is not True:
                return
            if len(self._announced) >= 10_000:
                self._announced.clear()
            self._announced[mark] = sent + 1
            data = {
                "key_id": key_id,
                "owner": record.owner,
                "ip": ip,
                "first_seen": iso_utc(first_seen),
            }
            result = self._on_event(EVENT_NEW_IP, data)
            if inspect.isawaitable(result):
                await result
        except Exception:
            logger.exception("key activity: %s event for key %s failed", EVENT_NEW_IP, key_id)

    # -- reading -------------------------------------------------------------------------------

    async def get(self, key_id: str) -> dict[str, Any]:
        """Return the key's analytics over the window (see :func:`~extapi_kit.analytics.view`).

        Counts this process has not written yet are written first (read-your-writes); other
        processes lag by about their ``flush_interval``.

        Args:
            key_id: the key id.

        Raises:
            StoreError: the activity store failed.
        """
        if key_id in self._pending:
            try:
                await self.flush()
            except ExtAPIKitError as exc:
                logger.warning("key activity flush before a read failed: %s", exc)
        _, raw = await self.store.load(key_id)
        return view(
            key_id,
            _decode(raw),
            self.clock(),
            window_days=self.window_days,
            max_ips=self.max_ips,
            max_agents=self.max_agents,
        )


def _decode(raw: str | None) -> dict[str, Any] | None:
    if raw is None:
        return None
    try:
        doc = json.loads(raw)
    except ValueError:
        logger.warning("key activity: unreadable document replaced")
        return {}
    return doc if isinstance(doc, dict) else {}
