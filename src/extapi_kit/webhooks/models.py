"""The webhook data model: endpoints, events, deliveries and attempts.

Every record is a small pydantic model so stores can serialise it to one JSON document (Redis) or
one row (SQLite) without a hand-written mapping. Endpoint secrets are stored because the dispatcher
needs them to sign (HMAC is symmetric); they are excluded from ``repr`` and never logged.
"""

from __future__ import annotations

import secrets as _secrets
import time
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "Attempt",
    "Delivery",
    "DeliveryStatus",
    "Endpoint",
    "EndpointSecret",
    "Event",
    "new_id",
]

# Cap on the response excerpt kept per attempt (Svix keeps 20,000 bytes; we keep less per row).
RESPONSE_EXCERPT_CAP = 2_000


def new_id(prefix: str) -> str:
    """Return a new random identifier such as ``evt_3kq...`` (128 bits, URL- and header-safe).

    Args:
        prefix: ``"evt"``, ``"msg"``, ``"ep"`` ...
    """
    return f"{prefix}_{_secrets.token_hex(16)}"


class DeliveryStatus(StrEnum):
    """Where a delivery is in its life."""

    PENDING = "pending"
    DELIVERING = "delivering"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


class EndpointSecret(BaseModel):
    """One signing secret of an endpoint (``whsec_...``), valid until ``expires_at`` if set.

    Args:
        value: the ``whsec_`` secret.
        created_at: when it was created (epoch seconds).
        expires_at: when a rotated-out secret stops being used (None = current).
    """

    model_config = ConfigDict(frozen=True)

    value: str = Field(repr=False)
    created_at: float
    expires_at: float | None = None

    def active(self, now: float) -> bool:
        """Return True while the secret should still be used to sign.

        Args:
            now: the current epoch time.
        """
        return self.expires_at is None or now < self.expires_at


class Endpoint(BaseModel):
    """A receiver URL subscribed to some event types.

    Args:
        id: ``ep_...``.
        url: where deliveries are POSTed.
        description: free text for operators.
        event_types: the types it receives; empty means every type.
        enabled: False stops new deliveries (existing ones fail as ``endpoint_disabled``).
        disabled_reason: why it was disabled (410, failing for too long, an operator).
        secrets: signing secrets, newest first; rotated-out ones carry ``expires_at``.
        rate_limit: at most this many deliveries per second (None = unlimited).
        max_concurrency: in-flight cap for this endpoint (None = the dispatcher's default).
        metadata: free key/value data.
        owner: an optional owner (tenant) id, for listing and filtering.
        grants: resource grants limiting which events it receives (type -> ids, ``"*"`` = all;
            None = unrestricted); see :mod:`extapi_kit.webhooks.scoping`.
        key_id: the API key that registered it; with ``key_grants`` on the dispatcher, that
            key's current grants apply too (a revoked key's endpoints receive nothing).
        created_at: epoch seconds.
        failing_since: first failure of the current unbroken run of failures (None = healthy).
        allow_loopback: registered with loopback allowed (tests and local demos only).
    """

    id: str = Field(default_factory=lambda: new_id("ep"))
    url: str
    description: str = ""
    event_types: list[str] = Field(default_factory=list)
    enabled: bool = True
    disabled_reason: str | None = None
    secrets: list[EndpointSecret] = Field(default_factory=list, repr=False)
    rate_limit: float | None = None
    max_concurrency: int | None = None
    metadata: dict[str, str] = Field(default_factory=dict)
    owner: str | None = None
    grants: dict[str, list[str]] | None = None
    key_id: str | None = None
    created_at: float = Field(default_factory=time.time)
    failing_since: float | None = None
    allow_loopback: bool = False

    def accepts(self, event_type: str) -> bool:
        """Return True when this endpoint subscribes to ``event_type``.

        Args:
            event_type: the event's type.
        """
        return not self.event_types or event_type in self.event_types

    def signing_secrets(self, now: float) -> list[str]:
        """Return the secrets to sign with at ``now``: the current one plus any still in grace.

        Args:
            now: the current epoch time.
        """
        return [s.value for s in self.secrets if s.active(now)]


class Event(BaseModel):
    """Something that happened, published once and delivered to every matching endpoint.

    Args:
        id: ``evt_...``; publishing the same id twice is a no-op (relay idempotency).
        type: the event type (``"job.completed"``).
        timestamp: when it happened (epoch seconds).
        data: the JSON payload.
        resources: the resources it is about (type -> ids), which decide the scoped endpoints
            that may receive it; not part of the body sent.
        version: the payload version of its type (the catalogue's ``EventType.version``),
            sent as the envelope's ``version`` so receivers can tell payload shapes apart.
    """

    model_config = ConfigDict(frozen=True)

    id: str = Field(default_factory=lambda: new_id("evt"))
    type: str
    timestamp: float = Field(default_factory=time.time)
    data: dict[str, Any] = Field(default_factory=dict)
    resources: dict[str, list[str]] = Field(default_factory=dict)
    version: str = "1"

    def envelope(self) -> dict[str, Any]:
        """Return the JSON body sent to receivers: ``{"id", "type", "version", "timestamp",
        "data"}`` (the version is inside the signed body, unlike a header)."""
        from datetime import UTC, datetime

        ts = datetime.fromtimestamp(self.timestamp, tz=UTC)
        return {
            "id": self.id,
            "type": self.type,
            "version": self.version,
            "timestamp": ts.isoformat().replace("+00:00", "Z"),
            "data": self.data,
        }


class Delivery(BaseModel):
    """One event to one endpoint; its id is the ``webhook-id`` sent on every attempt.

    Args:
        id: ``msg_...``; stable across retries so receivers can deduplicate.
        event_id: the event delivered.
        endpoint_id: the endpoint it goes to.
        status: see :class:`DeliveryStatus`.
        attempts: how many attempts were made.
        next_attempt_at: when the next attempt is due (epoch seconds).
        lease_until: while ``delivering``, when the lease expires and another worker may take it.
        lease_owner: the dispatcher holding the lease.
        created_at: epoch seconds.
        last_error: the last attempt's error class or HTTP status, for listings.
        test: a test ping sent by an operator (``webhook.test``), recorded so it lists with
            the endpoint's deliveries; never retried or replayed.
    """

    id: str = Field(default_factory=lambda: new_id("msg"))
    event_id: str
    endpoint_id: str
    status: DeliveryStatus = DeliveryStatus.PENDING
    attempts: int = 0
    next_attempt_at: float = Field(default_factory=time.time)
    lease_until: float | None = None
    lease_owner: str | None = None
    created_at: float = Field(default_factory=time.time)
    last_error: str | None = None
    test: bool = False


class Attempt(BaseModel):
    """The record of one HTTP attempt.

    Args:
        delivery_id: the delivery attempted.
        time: when the attempt started (epoch seconds).
        duration: seconds until the response (or the error).
        status: the HTTP status, or None when no response arrived.
        response_excerpt: the start of the response body (capped).
        error: the error class (``timeout``, ``connection_refused``, ``dns_error``, ``tls_error``,
            ``ssrf_blocked``, ``invalid_url``, ``redirect``, ``internal_error``, ``http_error``)
            or None on success.
        manual: True for a test ping or a manual attempt (never schedules retries).
    """

    model_config = ConfigDict(frozen=True)

    delivery_id: str
    time: float
    duration: float
    status: int | None = None
    response_excerpt: str = ""
    error: str | None = None
    manual: bool = False

    def model_post_init(self, __context: Any) -> None:
        if len(self.response_excerpt) > RESPONSE_EXCERPT_CAP:
            object.__setattr__(
                self, "response_excerpt", self.response_excerpt[:RESPONSE_EXCERPT_CAP]
            )
