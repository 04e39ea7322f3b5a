"""UsageMiddleware: per-key usage counters and quotas (issue 9).

Place it after (inside) ApiKey and RateLimit: it needs ``ctx.principal``, and a quota must be
charged only for requests the per-minute rate limiter admitted. Every request that carries a
principal is counted by UTC day, rate class (``ctx.route.rate_class``, else by method) and outcome
(``served`` when the app answers < 400, ``r:<slug>`` when a layer recorded ``ctx.rejection``,
``errors`` otherwise). Counting is an in-process dict update; a background task flushes about
once a second and on lifespan shutdown. Requests of quota'd keys (or owners) are charged at
decision time with one atomic store call; others never touch the store on the hot path.
"""

from __future__ import annotations

import logging
from math import ceil
from typing import Any

from extapi_kit._asgi import WS_POLICY_VIOLATION, WS_TRY_AGAIN_LATER, close_websocket
from extapi_kit._types import ASGIApp, Clock, Message, Receive, Scope, Send
from extapi_kit.context import SCOPE_KEY, get_context
from extapi_kit.exceptions import ConfigurationError, ExtAPIKitError, StoreError
from extapi_kit.problems import send_problem
from extapi_kit.usage.quota import OwnerQuotas, QuotaDecision
from extapi_kit.usage.store import UsageStore
from extapi_kit.usage.tracker import EventCallback, UsageTracker

__all__ = ["UsageMiddleware"]

logger = logging.getLogger("extapi_kit.usage")

READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_POLICY = b"ratelimit-policy"
_STATE = b"ratelimit"


class UsageMiddleware:
    """Count requests per key and owner, and enforce monthly/daily quotas.

    Args:
        app: the ASGI app.
        store: a :class:`~extapi_kit.usage.store.UsageStore` or URL (``memory://``,
            ``sqlite:///usage.db``, ``redis://host:6379/0``); ignored when ``tracker`` is given.
        owner_quotas: owner -> quota mapping (``{"acme": {"monthly": 100000}}``) or a callable.
        on_event: ``(type, data)`` callback (sync or async) for the 80%/100% notifications;
            ``WebhookDispatcher.publish`` fits.
        retention_months: calendar months of daily counters kept.
        clock: returns epoch seconds (tests pass a FakeClock).
        flush_interval: seconds between background flushes.
        count_anonymous: also count requests without a principal, under the key id
            ``"anonymous"`` (never subject to quotas).
        failure_mode: when the store cannot charge a quota: ``"open"`` admits the request
            (logged), ``"closed"`` answers 503.
        tracker: a ready :class:`UsageTracker` to share (e.g. with an admin API); the
            middleware then flushes it at shutdown but leaves closing it to its owner.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        store: UsageStore | str = "memory://",
        owner_quotas: OwnerQuotas | None = None,
        on_event: EventCallback | None = None,
        retention_months: int = 13,
        clock: Clock | None = None,
        flush_interval: float = 1.0,
        count_anonymous: bool = False,
        failure_mode: str = "open",
        tracker: UsageTracker | None = None,
    ) -> None:
        if failure_mode not in ("open", "closed"):
            raise ConfigurationError(f"failure_mode must be 'open' or 'closed': {failure_mode!r}")
        self.app = app
        self._owns_tracker = tracker is None
        self.tracker = tracker or UsageTracker(
            store,
            owner_quotas=owner_quotas,
            on_event=on_event,
            retention_months=retention_months,
            clock=clock,
            flush_interval=flush_interval,
        )
        self._clock = self.tracker.clock
        self._calendar = self.tracker.calendar
        # (start, end, date) of the current UTC day: one float comparison per request.
        self._today: tuple[float, float, str] = (0.0, 0.0, "")
        self._anonymous = count_anonymous
        self._owner_quotas = owner_quotas is not None or tracker is not None
        self._closed_on_failure = failure_mode == "closed"

    def __repr__(self) -> str:
        return f"UsageMiddleware(tracker={self.tracker!r})"

    async def flush(self) -> None:
        """Write pending counts now (tests and shutdown hooks)."""
        await self.tracker.flush()

    async def aclose(self) -> None:
        """Flush and stop the flusher; close the tracker too if this middleware created it.

        Call it from the app's shutdown (``build()`` does). A tracker passed as ``tracker=`` is
        shared, so it stays open for its owner to close.
        """
        if self._owns_tracker:
            await self.tracker.aclose()
        else:
            await self.tracker.stop()

    async def get_usage(self, key_id: str, days: int = 30) -> list[dict[str, Any]]:
        """Return a key's daily counters; see :meth:`UsageTracker.get_usage`.

        Args:
            key_id: the key id.
            days: how many days.
        """
        return await self.tracker.get_usage(key_id, days)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind != "http" and kind != "websocket":
            if kind == "lifespan":
                await self.app(scope, self._lifespan_receive(receive), send)
            else:
                await self.app(scope, receive, send)
            return
        ctx = scope.get(SCOPE_KEY) or get_context(scope)
        principal = ctx.principal
        if principal is None:
            if not self._anonymous:
                await self.app(scope, receive, send)
                return
            key_id, owner, quota = "anonymous", None, None
        else:
            key_id, owner, quota = principal.key_id, principal.owner, principal.quota
        route = ctx.route
        if route is not None and route.rate_class:
            cls = route.rate_class
        else:
            method = scope.get("method", "GET")
            cls = "read" if method in READ_METHODS else "write"
        now = self._clock()
        today = self._today
        if not today[0] <= now < today[1]:
            info = self._calendar.at(now)
            today = self._today = (info.day_reset - 86400, info.day_reset, info.day)
        day = today[2]
        tracker = self.tracker
        # The rate limiter may have charged the quotas in its own Redis script already.
        decision: QuotaDecision | None = ctx.quota
        if decision is None and (quota or (owner is not None and self._owner_quotas)):
            try:
                plan = tracker.quota_plan(now, key_id, quota, owner)
            except ConfigurationError as exc:
                logger.warning("ignoring invalid quota of key %s: %s", key_id, exc)
                plan = None
            if plan is not None:
                try:
                    decision = await tracker.charge(
                        plan, 1 if route is None else max(route.cost, 0), now, key_id, owner
                    )
                except StoreError as exc:
                    if await self._store_failed(scope, send, kind, exc):
                        tracker.record(key_id, owner, day, cls, "r:service-unavailable")
                        return
        if decision is not None and not decision.allowed:
            await self._reject(
                scope, send, kind, decision, 1 if route is None else max(route.cost, 0)
            )
            tracker.record(key_id, owner, day, cls, "r:quota-exhausted")
            return
        status: list[int] = []
        extra = decision.headers() if decision is not None else None

        async def observe(message: Message) -> None:
            t = message["type"]
            if t == "http.response.start" or t == "websocket.http.response.start":
                status.append(message["status"])
                if extra is not None:
                    message = dict(message)
                    message["headers"] = _merge_headers(message.get("headers", ()), extra)
            elif t == "websocket.accept":
                status.append(101)
            await send(message)

        try:
            await self.app(scope, receive, observe)
        finally:
            # Inlined UsageTracker.record: this is the whole per-request cost of counting.
            if ctx.rejection is not None:
                outcome = "r:" + ctx.rejection
            elif status and status[0] < 400:
                outcome = "served"
            else:
                outcome = "errors"
            k = (key_id, owner, day, cls, outcome)
            pending = tracker.pending
            pending[k] = pending.get(k, 0) + 1
            if tracker.idle:
                tracker.record_started()

    def _lifespan_receive(self, receive: Receive) -> Receive:
        async def wrapped() -> Message:
            message = await receive()
            if message.get("type") == "lifespan.shutdown":
                try:
                    await self.tracker.stop()
                except ExtAPIKitError as exc:
                    logger.warning("usage flush at shutdown failed: %s", exc)
            return message

        return wrapped

    async def _store_failed(self, scope: Scope, send: Send, kind: str, exc: Exception) -> bool:
        if not self._closed_on_failure:
            logger.warning("usage quota store failed, admitting the request: %s", exc)
            return False
        if kind == "websocket":
            await close_websocket(send, WS_TRY_AGAIN_LATER, "quota store unavailable")
            get_context(scope).rejection = "service-unavailable"
            return True
        await send_problem(
            send,
            "service-unavailable",
            "Usage quotas cannot be checked right now; try again shortly.",
            headers=[(b"retry-after", b"1")],
            scope=scope,
        )
        return True

    async def _reject(
        self, scope: Scope, send: Send, kind: str, decision: QuotaDecision, cost: int
    ) -> None:
        if kind == "websocket":
            get_context(scope).rejection = "quota-exhausted"
            await close_websocket(send, WS_POLICY_VIOLATION, "quota exhausted")
            return
        retry = decision.retry_after(cost)
        policy, state = decision.headers()
        names = [line.name for line in decision.violated(cost)]
        periods = ", ".join(sorted({line.rule.period for line in decision.violated(cost)}))
        await send_problem(
            send,
            "quota-exhausted",
            f"The {periods} usage quota is exhausted; it resets in {ceil(retry)} s.",
            headers=[(b"retry-after", str(retry).encode()), (_POLICY, policy), (_STATE, state)],
            scope=scope,
            extensions={"violated-policies": names},
        )


def _merge_headers(headers: Any, extra: tuple[bytes, bytes]) -> list[tuple[bytes, bytes]]:
    # Append the quota items to RateLimit-Policy/RateLimit lists the app already sent; layers
    # outside (RateLimitMiddleware) add their own field lines, which RFC 9110 §5.3 lets a
    # recipient combine into one list.
    policy, state = extra
    out: list[tuple[bytes, bytes]] = []
    seen_policy = seen_state = False
    for name, value in headers:
        lname = name.lower()
        if lname == _POLICY and not seen_policy:
            value, seen_policy = bytes(value) + b", " + policy, True
        elif lname == _STATE and not seen_state:
            value, seen_state = bytes(value) + b", " + state, True
        out.append((name, value))
    if not seen_policy:
        out.append((_POLICY, policy))
    if not seen_state:
        out.append((_STATE, state))
    return out
