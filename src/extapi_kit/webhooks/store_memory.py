"""``memory://`` webhook store: dictionaries in one process, for tests and demos.

Nothing survives a restart and nothing is shared between processes; use ``sqlite:///`` or
``redis://`` for anything durable.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

from extapi_kit.exceptions import NotFoundError
from extapi_kit.webhooks.models import Attempt, Delivery, DeliveryStatus, Endpoint, Event
from extapi_kit.webhooks.store import ACTIVE, Claimed, finished_delivery, released_delivery

__all__ = ["MemoryWebhookStore"]


class MemoryWebhookStore:
    """An in-process :class:`~extapi_kit.webhooks.store.WebhookStore`.

    Args:
        url: ignored (``memory://``).
    """

    def __init__(self, url: str = "memory://") -> None:
        self._endpoints: dict[str, Endpoint] = {}
        self._events: dict[str, Event] = {}
        self._deliveries: dict[str, Delivery] = {}
        self._active: set[str] = set()
        self._attempts: dict[str, list[Attempt]] = {}

    @classmethod
    def from_url(cls, url: str, **options: Any) -> MemoryWebhookStore:
        """Create the store from ``memory://``.

        Args:
            url: the URL.
            **options: passed to the constructor.
        """
        return cls(url, **options)

    def __repr__(self) -> str:
        return "MemoryWebhookStore()"

    async def add_endpoint(self, endpoint: Endpoint) -> None:
        self._endpoints[endpoint.id] = endpoint.model_copy(deep=True)

    async def get_endpoint(self, endpoint_id: str) -> Endpoint:
        try:
            return self._endpoints[endpoint_id].model_copy(deep=True)
        except KeyError:
            raise NotFoundError(f"no endpoint {endpoint_id!r}") from None

    async def list_endpoints(self) -> list[Endpoint]:
        return [e.model_copy(deep=True) for e in self._endpoints.values()]

    async def update_endpoint(self, endpoint_id: str, **changes: Any) -> Endpoint:
        current = await self.get_endpoint(endpoint_id)
        updated = Endpoint.model_validate({**current.model_dump(), **changes})
        self._endpoints[endpoint_id] = updated
        return updated.model_copy(deep=True)

    async def remove_endpoint(self, endpoint_id: str) -> None:
        if self._endpoints.pop(endpoint_id, None) is None:
            raise NotFoundError(f"no endpoint {endpoint_id!r}")
        for did in list(self._active):
            d = self._deliveries[did]
            if d.endpoint_id == endpoint_id:
                self._set(d.model_copy(update={"status": DeliveryStatus.CANCELLED}))

    def _set(self, d: Delivery) -> None:
        self._deliveries[d.id] = d
        if d.status in ACTIVE:
            self._active.add(d.id)
        else:
            self._active.discard(d.id)

    async def publish(self, event: Event, deliveries: Sequence[Delivery]) -> bool:
        if event.id in self._events:
            return False
        self._events[event.id] = event
        for d in deliveries:
            self._set(d.model_copy())
        return True

    async def add_deliveries(self, deliveries: Sequence[Delivery]) -> None:
        for d in deliveries:
            self._set(d.model_copy())

    async def get_event(self, event_id: str) -> Event:
        try:
            return self._events[event_id]
        except KeyError:
            raise NotFoundError(f"no event {event_id!r}") from None

    async def list_events(
        self, *, type: str | None = None, since: float | None = None, limit: int = 1000
    ) -> list[Event]:
        found = [
            e
            for e in self._events.values()
            if (type is None or e.type == type) and (since is None or e.timestamp >= since)
        ]
        found.sort(key=lambda e: e.timestamp)
        return found[:limit]

    async def claim(
        self,
        *,
        owner: str,
        now: float,
        lease_seconds: float,
        limit: int,
        exclude: Collection[str] = (),
    ) -> list[Claimed]:
        due: list[Delivery] = []
        for did in self._active:
            d = self._deliveries[did]
            if d.endpoint_id in exclude:
                continue
            if d.status == DeliveryStatus.PENDING and d.next_attempt_at <= now:
                due.append(d)
            elif d.status == DeliveryStatus.DELIVERING and (d.lease_until or 0) <= now:
                due.append(d)
        due.sort(key=lambda d: d.next_attempt_at)
        out: list[Claimed] = []
        for d in due[:limit]:
            leased = d.model_copy(
                update={
                    "status": DeliveryStatus.DELIVERING,
                    "lease_owner": owner,
                    "lease_until": now + lease_seconds,
                }
            )
            self._set(leased)
            out.append((leased, self._events[d.event_id]))
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
        current = self._deliveries.get(delivery.id)
        if attempt is not None:
            self._attempts.setdefault(delivery.id, []).append(attempt)
        if current is None:
            return
        if current.status != DeliveryStatus.DELIVERING or current.lease_owner != owner:
            # The lease expired and another worker took it; it owns the record now.
            if attempt is not None:
                self._set(current.model_copy(update={"attempts": current.attempts + 1}))
            return
        self._set(finished_delivery(current, attempt, status, next_attempt_at))

    async def release(self, deliveries: Sequence[Delivery], *, owner: str, now: float) -> None:
        for d in deliveries:
            current = self._deliveries.get(d.id)
            if current and current.status == DeliveryStatus.DELIVERING:
                if current.lease_owner == owner:
                    self._set(released_delivery(current, now))

    async def requeue(self, delivery_id: str, *, at: float) -> Delivery:
        current = await self.get_delivery(delivery_id)
        d = current.model_copy(
            update={
                "status": DeliveryStatus.PENDING,
                "next_attempt_at": at,
                "lease_owner": None,
                "lease_until": None,
            }
        )
        self._set(d)
        return d

    async def get_delivery(self, delivery_id: str) -> Delivery:
        try:
            return self._deliveries[delivery_id]
        except KeyError:
            raise NotFoundError(f"no delivery {delivery_id!r}") from None

    async def list_deliveries(
        self,
        *,
        endpoint_id: str | None = None,
        status: DeliveryStatus | None = None,
        since: float | None = None,
        limit: int = 1000,
    ) -> list[Delivery]:
        found = [
            d
            for d in self._deliveries.values()
            if (endpoint_id is None or d.endpoint_id == endpoint_id)
            and (status is None or d.status == status)
            and (since is None or d.created_at >= since)
        ]
        found.sort(key=lambda d: d.created_at)
        return found[:limit]

    async def list_attempts(self, delivery_id: str) -> list[Attempt]:
        return list(self._attempts.get(delivery_id, []))

    async def ping(self) -> bool:
        return True

    async def aclose(self) -> None:
        return None
