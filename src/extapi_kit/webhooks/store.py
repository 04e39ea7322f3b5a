"""The :class:`WebhookStore` protocol: endpoints, events, the delivery outbox with leases, attempts.

A delivery moves ``pending -> delivering (leased) -> succeeded | pending (retry) | failed``. A lease
that is not finished before it expires (the worker died) makes the delivery claimable again, so a
crash between send and ack re-delivers with the same ``webhook-id`` (at least once, DESIGN §6).

Built-ins: ``memory://`` (tests, one process), ``sqlite:///file.db`` (embedded; the outbox can live
in the application's own database file) and ``redis://`` (Streams + consumer groups, any number of
dispatcher processes). Create one with :func:`webhook_store_from_url`.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any, Protocol, runtime_checkable

from extapi_kit.webhooks.models import Attempt, Delivery, DeliveryStatus, Endpoint, Event

__all__ = ["Claimed", "WebhookStore", "webhook_store_from_url"]

# A leased delivery with the event it carries.
Claimed = tuple[Delivery, Event]

# Statuses a delivery can be claimed in.
ACTIVE = (DeliveryStatus.PENDING, DeliveryStatus.DELIVERING)


@runtime_checkable
class WebhookStore(Protocol):
    """Durable storage for webhooks; every method is async and safe to call concurrently."""

    async def add_endpoint(self, endpoint: Endpoint) -> None:
        """Store a new endpoint.

        Args:
            endpoint: the endpoint (with its secrets).
        """

    async def get_endpoint(self, endpoint_id: str) -> Endpoint:
        """Return an endpoint or raise NotFoundError.

        Args:
            endpoint_id: its id.
        """

    async def list_endpoints(self) -> list[Endpoint]:
        """Return every endpoint, oldest first."""

    async def update_endpoint(self, endpoint_id: str, **changes: Any) -> Endpoint:
        """Change fields of an endpoint and return the new version (NotFoundError if missing).

        Args:
            endpoint_id: its id.
            **changes: field values to set.
        """

    async def remove_endpoint(self, endpoint_id: str) -> None:
        """Delete an endpoint; its pending deliveries become ``cancelled``.

        Args:
            endpoint_id: its id.
        """

    async def publish(self, event: Event, deliveries: Sequence[Delivery]) -> bool:
        """Store an event and its deliveries atomically; False (and no change) if the id exists.

        Args:
            event: the event.
            deliveries: one per matching endpoint.
        """

    async def add_deliveries(self, deliveries: Sequence[Delivery]) -> None:
        """Store new deliveries of existing events (replay to another endpoint).

        Args:
            deliveries: the deliveries.
        """

    async def get_event(self, event_id: str) -> Event:
        """Return an event or raise NotFoundError.

        Args:
            event_id: its id.
        """

    async def list_events(
        self, *, type: str | None = None, since: float | None = None, limit: int = 1000
    ) -> list[Event]:
        """Return events, oldest first.

        Args:
            type: only this type.
            since: only events at or after this epoch time.
            limit: at most this many.
        """

    async def claim(
        self,
        *,
        owner: str,
        now: float,
        lease_seconds: float,
        limit: int,
        exclude: Collection[str] = (),
    ) -> list[Claimed]:
        """Lease up to ``limit`` due deliveries (expired leases included); each goes to one owner.

        Args:
            owner: the dispatcher's id.
            now: the current epoch time.
            lease_seconds: how long the lease lasts.
            limit: at most this many.
            exclude: endpoint ids whose deliveries the caller cannot take now (saturated).
        """

    async def finish(
        self,
        delivery: Delivery,
        attempt: Attempt | None,
        *,
        owner: str,
        status: DeliveryStatus,
        next_attempt_at: float | None = None,
    ) -> None:
        """Record an attempt and end the lease with a new status (pending = retry at a time).

        Args:
            delivery: the leased delivery.
            attempt: the attempt made (None to end without one, e.g. endpoint disabled).
            owner: the lease holder; a lease taken over by another owner is not overwritten.
            status: the new status.
            next_attempt_at: for ``pending``, when the retry is due.
        """

    async def release(self, deliveries: Sequence[Delivery], *, owner: str, now: float) -> None:
        """Give leases back without an attempt (graceful shutdown); they are due at ``now``.

        Args:
            deliveries: leased deliveries.
            owner: the lease holder.
            now: the current epoch time.
        """

    async def requeue(self, delivery_id: str, *, at: float) -> Delivery:
        """Make a finished delivery pending again, due at ``at`` (replay); returns it.

        Args:
            delivery_id: its id.
            at: when it is due.
        """

    async def get_delivery(self, delivery_id: str) -> Delivery:
        """Return a delivery or raise NotFoundError.

        Args:
            delivery_id: its id.
        """

    async def list_deliveries(
        self,
        *,
        endpoint_id: str | None = None,
        status: DeliveryStatus | None = None,
        since: float | None = None,
        limit: int = 1000,
    ) -> list[Delivery]:
        """Return deliveries, oldest first.

        Args:
            endpoint_id: only this endpoint's.
            status: only this status.
            since: only deliveries created at or after this epoch time.
            limit: at most this many.
        """

    async def list_attempts(self, delivery_id: str) -> list[Attempt]:
        """Return a delivery's attempts, oldest first.

        Args:
            delivery_id: its id.
        """

    async def ping(self) -> bool:
        """Return True when the backend answers."""

    async def aclose(self) -> None:
        """Release connections and threads."""


def webhook_store_from_url(url: str, **options: Any) -> WebhookStore:
    """Create a webhook store from ``memory://``, ``sqlite:///file.db`` or ``redis://...``.

    Args:
        url: the store URL.
        **options: passed to the store's ``from_url``.
    """
    import extapi_kit.webhooks  # noqa: F401  (registers the built-ins)
    from extapi_kit.stores import store_from_url

    store: WebhookStore = store_from_url("webhooks", url, **options)
    return store


def finished_delivery(
    current: Delivery,
    attempt: Attempt | None,
    status: DeliveryStatus,
    next_attempt_at: float | None,
) -> Delivery:
    """Return ``current`` after an attempt ended its lease (shared by the stores).

    Args:
        current: the leased delivery.
        attempt: the attempt made, or None.
        status: the new status.
        next_attempt_at: the retry time, or None to keep the current one.
    """
    changes: dict[str, Any] = {"status": status, "lease_owner": None, "lease_until": None}
    if attempt is not None:
        changes["attempts"] = current.attempts + 1
        changes["last_error"] = attempt.error or (
            None if attempt.status and 200 <= attempt.status < 300 else str(attempt.status)
        )
    if next_attempt_at is not None:
        changes["next_attempt_at"] = next_attempt_at
    return current.model_copy(update=changes)


def released_delivery(current: Delivery, now: float) -> Delivery:
    """Return ``current`` with its lease given back, due at ``now``.

    Args:
        current: the leased delivery.
        now: the current epoch time.
    """
    return current.model_copy(
        update={
            "status": DeliveryStatus.PENDING,
            "lease_owner": None,
            "lease_until": None,
            "next_attempt_at": now,
        }
    )
