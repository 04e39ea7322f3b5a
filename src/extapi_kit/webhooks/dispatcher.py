"""The webhook dispatcher: lease due deliveries, sign, send, record, retry, fairly across endpoints.

One loop claims due deliveries from the store (leases, so several processes can share one store)
into per-endpoint queues; a round-robin scheduler starts attempts while the global and the
per-endpoint in-flight caps allow, so one slow or dead endpoint holds at most its own cap and never
starves the others (an endpoint already holding a full queue is excluded from the next claim).

Every attempt is recorded; the retry policy picks the next time or gives up (``failed``, kept for
replay); 410 disables the endpoint; an endpoint failing without a break for ``disable_after``
seconds is disabled too, with a log line, a callback and (optionally) an operational event.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import math
import os
import signal
import socket
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from contextlib import asynccontextmanager
from typing import Any

from extapi_kit import telemetry
from extapi_kit._types import ASGIApp, Receive, Scope, Send
from extapi_kit.exceptions import ExtAPIKitError, NotFoundError
from extapi_kit.webhooks._validation import (
    MAX_RATE_LIMIT,
    MIN_RATE_LIMIT,
    check_concurrency,
    check_number,
)
from extapi_kit.webhooks.catalogue import EventCatalogue
from extapi_kit.webhooks.models import Attempt, Delivery, DeliveryStatus, Endpoint, Event
from extapi_kit.webhooks.outbox import EndpointCache, build_event, deliveries_for
from extapi_kit.webhooks.retry import RetryPolicy
from extapi_kit.webhooks.scoping import GrantsResolver, fanout_grants, gate_attempt
from extapi_kit.webhooks.signing import signature_headers
from extapi_kit.webhooks.store import WebhookStore

__all__ = ["WebhookDispatcher"]

logger = logging.getLogger("extapi_kit.webhooks")

DISABLED_EVENT = "webhook.endpoint.disabled"
# A store that fails every poll is logged once per this many seconds, as a warning naming the
# error class, not a traceback per poll (W13).
FAILURE_LOG_INTERVAL = 60.0
MAX_DISPATCH_CONCURRENCY = 10_000


def encode_body(event: Event) -> bytes:
    """Return the exact bytes sent (and signed) for an event.

    Args:
        event: the event.
    """
    return json.dumps(event.envelope(), separators=(",", ":"), ensure_ascii=False).encode()


class WebhookDispatcher:
    """Delivers published events to their endpoints, durably and at least once.

    Args:
        store: a :class:`~extapi_kit.webhooks.store.WebhookStore`.
        sender: a ``WebhookSender`` (default: one with an SSRF guard honouring ``allow_loopback``).
        retry: the retry policy (default schedule: now, 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h).
        concurrency: attempts in flight in this process (1 to 10,000).
        per_endpoint_concurrency: attempts in flight per endpoint (1 to 1000;
            ``Endpoint.max_concurrency`` overrides it).
        lease_seconds: how long a claimed delivery stays ours; longer than the sender's deadline
            (at most a day).
        poll_interval: seconds between store polls when idle (local publishes wake it at once;
            at most an hour).
        disable_after: disable an endpoint failing without a single success for this long (at
            most 365 days).
        clock: returns epoch seconds (inject ``FakeClock`` in tests).
        allow_loopback: let the default sender reach 127.0.0.1 (tests and demos only), for
            endpoints that were registered with loopback allowed too.
        on_endpoint_disabled: called (sync or async) with the endpoint after it is disabled.
        operational_events: also publish ``webhook.endpoint.disabled`` to subscribed endpoints.
        endpoint_cache_ttl: seconds an endpoint read from the store is reused (at most an hour).
        catalogue: if given, every publish is checked against it.
        owner: this dispatcher's lease-owner id (default: host, pid and a random suffix).
        key_grants: resolves an endpoint's ``key_id`` to that key's current grants (for example
            ``KeyGrants(key_service)``); endpoints registered by a resource-scoped key then only
            receive events about its resources (:mod:`extapi_kit.webhooks.scoping`).
        resource_fields: payload field -> resource type (``{"project_id": "projects"}``), read
            into ``Event.resources`` when a publish does not name its resources.
    """

    def __init__(
        self,
        store: WebhookStore,
        *,
        sender: Any = None,
        retry: RetryPolicy | None = None,
        concurrency: int = 32,
        per_endpoint_concurrency: int = 4,
        lease_seconds: float = 60.0,
        poll_interval: float = 0.2,
        disable_after: float = 5 * 86400,
        clock: Callable[[], float] | None = None,
        allow_loopback: bool = False,
        on_endpoint_disabled: Callable[[Endpoint], Awaitable[None] | None] | None = None,
        operational_events: bool = False,
        endpoint_cache_ttl: float = 1.0,
        catalogue: EventCatalogue | None = None,
        owner: str | None = None,
        key_grants: GrantsResolver | None = None,
        resource_fields: Mapping[str, str] | None = None,
    ) -> None:
        # Every knob bounded where it enters: inf or NaN would be accepted and then silently
        # ignored (a poll that never comes, a lease that never expires; M10).
        check_concurrency(concurrency, "concurrency", high=MAX_DISPATCH_CONCURRENCY)
        check_concurrency(per_endpoint_concurrency, "per_endpoint_concurrency")
        check_number(lease_seconds, "lease_seconds", low=0, high=86400, low_open=True, unit=" s")
        check_number(poll_interval, "poll_interval", low=0, high=3600, low_open=True, unit=" s")
        check_number(disable_after, "disable_after", low=0, high=365 * 86400, low_open=True,
                     unit=" s")  # fmt: skip
        check_number(endpoint_cache_ttl, "endpoint_cache_ttl", low=0, high=3600, unit=" s")
        self.store = store
        self._sender = sender
        self._strict: Any = None
        self._own_sender = sender is None
        self.retry = retry or RetryPolicy()
        self.concurrency = concurrency
        self.per_endpoint = per_endpoint_concurrency
        self.lease_seconds = lease_seconds
        self.poll_interval = poll_interval
        self.disable_after = disable_after
        self.clock = clock or time.time
        self.allow_loopback = allow_loopback
        self._on_disabled = on_endpoint_disabled
        self._operational = operational_events
        self.catalogue = catalogue
        self.key_grants = key_grants
        self.resource_fields = dict(resource_fields or {})
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}:{os.urandom(3).hex()}"
        self.endpoints = EndpointCache(store, ttl=endpoint_cache_ttl)
        self._cheap_exclude = bool(getattr(store, "excludes_cheaply", True))
        self._queues: dict[str, deque[tuple[Delivery, Event]]] = {}
        self._inflight: dict[str, int] = {}
        self._rotation: deque[str] = deque()
        self._next_start: dict[str, float] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._leased: dict[str, Delivery] = {}
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._loop_task: asyncio.Task[None] | None = None
        self._stopping = False
        self._starved = False
        self._poll_error: str | None = None
        self._poll_failing_since = 0.0
        self._poll_logged_at = -math.inf

    def __repr__(self) -> str:
        return f"WebhookDispatcher(store={self.store!r}, owner={self.owner!r})"

    # -- publishing --------------------------------------------------------------------------

    async def publish(
        self,
        type: str,
        data: dict[str, Any],
        *,
        event_id: str | None = None,
        resources: Mapping[str, Iterable[Any]] | None = None,
    ) -> Event:
        """Store an event and one delivery per matching enabled endpoint, then return it.

        The write is durable when this returns; publishing an ``event_id`` twice is a no-op that
        returns the stored event.

        Args:
            type: the event type.
            data: the JSON payload.
            event_id: an id of your own (``evt_...`` generated if omitted).
            resources: the resources it is about (``{"projects": [7]}``); default: read from
                ``data`` by the catalogue type's or the dispatcher's ``resource_fields``.
        """
        fields = self.resource_fields
        version = "1"
        if self.catalogue is not None and type != DISABLED_EVENT:
            data = self.catalogue.validate(type, data)
            declared = self.catalogue.get(type)
            if declared is not None:
                version = declared.version
            if declared is not None and declared.resource_fields:
                fields = {**fields, **declared.resource_fields}
        event = build_event(
            type,
            data,
            event_id=event_id,
            now=self.clock(),
            resources=resources,
            resource_fields=fields,
        )
        if version != event.version:
            event = event.model_copy(update={"version": version})
        with telemetry.tracer().start_as_current_span("webhooks.publish") as span:
            span.set_attribute("webhook.event_type", type)
            endpoints = [e for e in await self.endpoints.all() if e.accepts(type)]
            grants = await fanout_grants(endpoints, self.key_grants)
            deliveries = deliveries_for(event, endpoints, now=event.timestamp, grants=grants)
            if not await self.store.publish(event, deliveries):
                return await self.store.get_event(event.id)
        telemetry.counter("extapi.webhooks.published", "events published").add(1, {"type": type})
        self._starved = False
        self._wake.set()
        return event

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the background loop (idempotent)."""
        if self._loop_task is not None:
            return
        self._stopping = False
        self._ensure_sender()
        # A store that can announce commits (PostgreSQL LISTEN/NOTIFY) wakes the loop at once;
        # the poll interval then only picks up retries falling due.
        listen = getattr(self.store, "listen_for_work", None)
        if callable(listen):
            await listen(self._wake.set)
        self._loop_task = asyncio.create_task(self._loop(), name="extapi-webhooks-dispatcher")

    async def stop(self, *, grace: float = 10.0) -> None:
        """Stop claiming, let in-flight attempts finish (up to ``grace``), release the rest.

        Args:
            grace: seconds to wait for in-flight attempts before cancelling them.
        """
        self._stopping = True
        self._wake.set()
        unlisten = getattr(self.store, "stop_listening", None)
        if callable(unlisten):
            unlisten(self._wake.set)
        if self._loop_task is not None:
            await asyncio.gather(self._loop_task, return_exceptions=True)
            self._loop_task = None
        self._queues.clear()
        self._rotation.clear()
        if self._tasks:
            _done, pending = await asyncio.wait(set(self._tasks), timeout=grace)
            for t in pending:
                t.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        # Whatever was leased and not finished goes back, due now, for the next dispatcher.
        queued = list(self._leased.values())
        self._leased.clear()
        if queued:
            await self.store.release(queued, owner=self.owner, now=self.clock())
        if self._own_sender and self._sender is not None:
            await self._sender.aclose()
            self._sender = None
        if self._strict is not None:
            await self._strict.aclose()
            self._strict = None

    async def aclose(self) -> None:
        """Stop the dispatcher and close its store."""
        await self.stop()
        await self.store.aclose()

    async def __aenter__(self) -> WebhookDispatcher:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    @asynccontextmanager
    async def lifespan_context(self, app: object = None) -> AsyncIterator[None]:
        """A Starlette/FastAPI ``lifespan=`` context: runs the dispatcher while the app runs.

        Args:
            app: the application (unused).
        """
        async with self:
            yield

    def lifespan(self, app: ASGIApp) -> ASGIApp:
        """Wrap an ASGI app so its lifespan also starts and stops the dispatcher (one line).

        Args:
            app: the application.
        """

        async def wrapped(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != "lifespan":
                await app(scope, receive, send)
                return

            async def hooked_receive() -> Any:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await self.start()
                elif message["type"] == "lifespan.shutdown":
                    await self.stop()
                return message

            await app(scope, hooked_receive, send)

        return wrapped

    async def run_forever(self) -> None:
        """Run until SIGTERM or SIGINT, then stop gracefully (the ``worker`` command)."""
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        try:
            await self.start()
            await stop.wait()
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)
            await self.stop()

    async def run_until_idle(self, *, max_rounds: int = 1000) -> int:
        """Deliver everything due now (by ``clock``) and return the number of attempts made.

        For tests and scripts driving time with a ``FakeClock``; do not call it while the
        background loop runs.

        Args:
            max_rounds: stop after this many claim rounds.
        """
        self._ensure_sender()
        made = 0
        for _ in range(max_rounds):
            claimed = await self._fill()
            if not claimed and not self._tasks:
                break
            made += claimed
            await self._idle.wait()
        return made

    # -- the loop ----------------------------------------------------------------------------

    def _ensure_sender(self) -> None:
        if self._sender is None:
            from extapi_kit.webhooks.sender import WebhookSender
            from extapi_kit.webhooks.ssrf import URLGuard

            self._sender = WebhookSender(guard=URLGuard(allow_loopback=self.allow_loopback))
            if self.allow_loopback:
                # For endpoints registered without loopback allowed (a partner's self-service
                # registration next to an operator's local test receiver): never 127.0.0.1 (W1).
                self._strict = WebhookSender(guard=URLGuard(allow_loopback=False))

    def _cap(self, endpoint: Endpoint | None) -> int:
        if endpoint is not None and endpoint.max_concurrency:
            return endpoint.max_concurrency
        return self.per_endpoint

    async def _loop(self) -> None:
        while not self._stopping:
            # Cleared before claiming, not after: a wake-up arriving while the claim runs (a
            # commit the claim did not see yet) must start another round, not be lost.
            self._wake.clear()
            try:
                claimed = await self._fill()
            except Exception as exc:
                self._poll_failed(exc)
                claimed = 0
            else:
                self._poll_recovered()
            if claimed and not self._stopping:
                continue
            try:
                await asyncio.wait_for(self._wake.wait(), self.poll_interval)
            except TimeoutError:
                pass

    def _poll_failed(self, exc: Exception) -> None:
        now = time.monotonic()
        if self._poll_error is None:
            self._poll_failing_since = now
        self._poll_error = type(exc).__name__
        if now - self._poll_logged_at >= FAILURE_LOG_INTERVAL:
            self._poll_logged_at = now
            # Our own errors carry safe messages; anything else is named by its class only, so
            # no server address or credential from a client's message reaches the log.
            detail = f": {exc}" if isinstance(exc, ExtAPIKitError) else ""
            logger.warning(
                "webhook dispatcher: polling the store failed (%s%s); retrying every %g s, "
                "logged at most every %g s",
                self._poll_error,
                detail,
                self.poll_interval,
                FAILURE_LOG_INTERVAL,
            )

    def _poll_recovered(self) -> None:
        if self._poll_error is None:
            return
        logger.info(
            "webhook dispatcher: polling the store recovered after %.1f s (%s)",
            time.monotonic() - self._poll_failing_since,
            self._poll_error,
        )
        self._poll_error = None
        self._poll_logged_at = -math.inf

    @property
    def poll_error(self) -> str | None:
        """The error class of the last poll when polling the store is failing, else None."""
        return self._poll_error

    async def ping(self) -> bool:
        """Return True when the store answers and the background loop is polling it.

        A store can answer ``PING`` while every poll fails (a Redis that lost its consumer
        group, say), so a health check should ask the dispatcher, not only the store.
        """
        task = self._loop_task
        if task is not None and task.done():
            return False
        if self._poll_error is not None:
            return False
        return await self.store.ping()

    def _saturated(self) -> tuple[list[str], int]:
        """Endpoints holding a full buffer (2 x their cap), and how many deliveries they hold."""
        saturated, held = [], 0
        for ep, q in self._queues.items():
            n = len(q) + self._inflight.get(ep, 0)
            if n >= 2 * self._cap(self.endpoints.peek(ep)):
                saturated.append(ep)
                held += n
        return saturated, held

    def _buffered(self) -> int:
        # What an endpoint at its cap holds (a hanging receiver, say) is bounded by that cap and
        # is not claimed for again, so it must not shrink the room the other endpoints get.
        return len(self._leased) - self._saturated()[1]

    async def _fill(self) -> int:
        saturated, stuck = self._saturated()
        # A store that skips excluded endpoints in its query (SQLite, memory) can be given the
        # room a stuck endpoint holds; one that must read and defer their entries (Redis Streams)
        # would only churn more of them, so it keeps the conservative bound.
        held = len(self._leased) - (stuck if self._cheap_exclude else 0)
        room = self.concurrency * 2 - held
        if room <= 0:
            return 0
        if saturated:
            enabled = [e for e in await self.endpoints.all() if e.enabled]
            if len(saturated) >= len(enabled):
                return 0  # every endpoint is at its cap: claiming would only defer work
        claimed = await self.store.claim(
            owner=self.owner,
            now=self.clock(),
            lease_seconds=self.lease_seconds,
            limit=room,
            exclude=saturated,
        )
        self._starved = not claimed
        for ep_id in {d.endpoint_id for d, _ in claimed}:
            await self.endpoints.get(ep_id)
        for delivery, event in claimed:
            self._leased[delivery.id] = delivery
            q = self._queues.setdefault(delivery.endpoint_id, deque())
            if not q and delivery.endpoint_id not in self._rotation:
                self._rotation.append(delivery.endpoint_id)
            q.append((delivery, event))
        if claimed:
            self._idle.clear()
            self._schedule()
        return len(claimed)

    def _schedule(self) -> None:
        """Start attempts round-robin across endpoints within the global and per-endpoint caps."""
        loop = asyncio.get_running_loop()
        skipped: list[str] = []
        while self._rotation and len(self._tasks) < self.concurrency:
            ep_id = self._rotation.popleft()
            q = self._queues.get(ep_id)
            if not q:
                continue
            endpoint = self.endpoints.peek(ep_id)
            if self._inflight.get(ep_id, 0) >= self._cap(endpoint):
                skipped.append(ep_id)  # back in rotation when one of its attempts ends
                continue
            rate = endpoint.rate_limit if endpoint is not None else None
            if rate:
                # Clamped for endpoints stored before registration bounded the rate (M10).
                rate = min(rate, MAX_RATE_LIMIT) if rate >= MIN_RATE_LIMIT else MIN_RATE_LIMIT
                now = loop.time()
                start_at = self._next_start.get(ep_id, now)
                if start_at > now:
                    loop.call_later(start_at - now, self._kick, ep_id)
                    continue
                self._next_start[ep_id] = max(start_at, now) + 1.0 / rate
            delivery, event = q.popleft()
            self._inflight[ep_id] = self._inflight.get(ep_id, 0) + 1
            task = asyncio.create_task(self._run_one(delivery, event, endpoint))
            self._tasks.add(task)
            if q:
                self._rotation.append(ep_id)
        for ep_id in skipped:
            self._rotation.append(ep_id)
        self._check_idle()

    def _kick(self, ep_id: str) -> None:
        if self._queues.get(ep_id) and ep_id not in self._rotation and not self._stopping:
            self._rotation.append(ep_id)
            self._schedule()

    def _check_idle(self) -> None:
        if not self._tasks and not any(self._queues.values()):
            self._idle.set()

    async def _run_one(self, delivery: Delivery, event: Event, endpoint: Endpoint | None) -> None:
        try:
            await self._attempt(delivery, event, endpoint)
            self._leased.pop(delivery.id, None)
        except asyncio.CancelledError:
            raise  # stays leased: stop() releases it
        except Exception:
            # The lease expires and another round retries it.
            self._leased.pop(delivery.id, None)
            logger.exception("webhook dispatcher: delivery %s failed internally", delivery.id)
        finally:
            task = asyncio.current_task()
            if task is not None:
                self._tasks.discard(task)
            ep_id = delivery.endpoint_id
            self._inflight[ep_id] = self._inflight.get(ep_id, 1) - 1
            if self._queues.get(ep_id) and ep_id not in self._rotation:
                self._rotation.append(ep_id)
            if not self._stopping:
                self._schedule()
                # Claim again once half the buffer is free, unless the last claim found nothing
                # (then publishes and the poll interval wake the loop, not every finished attempt).
                held = len(self._leased)
                if not self._starved and (
                    held <= self.concurrency or self._buffered() <= self.concurrency
                ):
                    self._wake.set()
            self._check_idle()

    async def _attempt(self, delivery: Delivery, event: Event, endpoint: Endpoint | None) -> None:
        store = self.store
        if endpoint is None:
            await store.finish(delivery, None, owner=self.owner, status=DeliveryStatus.CANCELLED)
            return
        if not endpoint.enabled:
            # Kept as failed so it can be replayed after the endpoint is enabled again.
            await store.finish(delivery, None, owner=self.owner, status=DeliveryStatus.FAILED)
            return
        now = self.clock()
        if not await gate_attempt(
            self.store, self.owner, delivery, event, endpoint, self.key_grants, now
        ):
            return
        body = encode_body(event)
        secrets = endpoint.signing_secrets(now)
        if not secrets:
            # Never send unsigned; record why, keep it replayable after a secret is added.
            missing = Attempt(delivery_id=delivery.id, time=now, duration=0.0, error="no_secret")
            await store.finish(delivery, missing, owner=self.owner, status=DeliveryStatus.FAILED)
            return
        headers = signature_headers(secrets, delivery.id, int(now), body)
        headers["content-type"] = "application/json"
        lag = max(0.0, now - delivery.next_attempt_at)
        telemetry.histogram("extapi.webhooks.queue_lag", "due to attempt start").record(lag)
        with telemetry.tracer().start_as_current_span("webhooks.attempt") as span:
            span.set_attribute("webhook.id", delivery.id)
            span.set_attribute("webhook.event_type", event.type)
            sender = self._sender
            if self._strict is not None and not endpoint.allow_loopback:
                sender = self._strict
            result = await self._send(sender, delivery, endpoint.url, headers, body)
            span.set_attribute("http.response.status_code", result.status or 0)
        attempt = Attempt(
            delivery_id=delivery.id,
            time=now,
            duration=result.duration,
            status=result.status,
            response_excerpt=result.response_excerpt or "",
            error=result.error,
        )
        outcome = "success" if result.ok else (result.error or f"http_{result.status}")
        telemetry.counter("extapi.webhooks.attempts", "attempts by outcome").add(
            1, {"outcome": outcome}
        )
        number = delivery.attempts + 1
        if result.ok:
            status, next_at = DeliveryStatus.SUCCEEDED, None
        elif self.retry.disables_endpoint(result):
            status, next_at = DeliveryStatus.FAILED, None
        else:
            delay = self.retry.next_delay(number, result)
            if delay is None:
                status, next_at = DeliveryStatus.FAILED, None
            else:
                status, next_at = DeliveryStatus.PENDING, now + delay
        await store.finish(
            delivery, attempt, owner=self.owner, status=status, next_attempt_at=next_at
        )
        await self._record_health(endpoint.id, result, now)

    async def _send(
        self, sender: Any, delivery: Delivery, url: str, headers: dict[str, str], body: bytes
    ) -> Any:
        """Send through ``sender``; an exception is a failed attempt, never a silent re-lease.

        A sender that raises would otherwise leave the delivery leased with no attempt recorded,
        taken again every lease period forever and never counted toward disabling (W14).
        """
        from extapi_kit.webhooks.sender import AttemptResult

        start = time.perf_counter()
        try:
            return await sender.send(url, headers, body)
        except Exception as exc:
            logger.warning(
                "webhook delivery %s: the sender raised %s; recorded as a failed attempt",
                delivery.id,
                type(exc).__name__,
            )
            return AttemptResult(
                status=None, duration=time.perf_counter() - start, error="internal_error"
            )

    async def _record_health(self, endpoint_id: str, result: Any, now: float) -> None:
        """Track the endpoint's unbroken run of failures; disable it on 410 or after the window."""
        endpoint = self.endpoints.peek(endpoint_id)
        if endpoint is None or not endpoint.enabled:
            return
        changes: dict[str, Any] | None = None
        if result.ok:
            if endpoint.failing_since is not None:
                changes = {"failing_since": None}
        elif self.retry.disables_endpoint(result):
            changes = {"enabled": False, "disabled_reason": "gone: the endpoint answered 410"}
        elif endpoint.failing_since is None:
            changes = {"failing_since": now}
        elif now - endpoint.failing_since >= self.disable_after:
            since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(endpoint.failing_since))
            changes = {
                "enabled": False,
                "disabled_reason": f"failing without a success since {since}",
            }
        if changes is None:
            return
        try:
            updated = await self.store.update_endpoint(endpoint_id, **changes)
        except NotFoundError:
            self.endpoints.forget(endpoint_id)
            return
        self.endpoints.put(updated)
        if not updated.enabled:
            await self._disabled(updated)

    async def _disabled(self, endpoint: Endpoint) -> None:
        telemetry.counter("extapi.webhooks.endpoints_disabled", "endpoints disabled").add(1)
        logger.warning(
            "webhook endpoint %s disabled: %s", endpoint.id, endpoint.disabled_reason or "?"
        )
        if self._on_disabled is not None:
            try:
                result = self._on_disabled(endpoint)
                if inspect.isawaitable(result):
                    await result
            except Exception:
                logger.exception("on_endpoint_disabled callback failed")
        if self._operational:
            data = {"endpoint_id": endpoint.id, "reason": endpoint.disabled_reason}
            try:
                await self.publish(DISABLED_EVENT, data)
            except NotFoundError:  # pragma: no cover - raced with removal
                pass
