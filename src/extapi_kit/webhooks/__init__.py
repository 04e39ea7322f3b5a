"""Outbound webhooks: signed (Standard Webhooks), durable, retried, replayable.

Publish with :meth:`WebhookDispatcher.publish` (or :func:`publish_in_transaction` inside your own
SQLite transaction); the dispatcher leases due deliveries from a :class:`WebhookStore`
(``memory://``, ``sqlite:///``, ``redis://``), signs, sends through the SSRF guard, records every
attempt and retries on a schedule. Manage endpoints with :class:`WebhookManager` or the
``extapi-kit webhooks`` CLI. Endpoints registered by a resource-scoped key receive only events
about its resources (:mod:`extapi_kit.webhooks.scoping`, :class:`KeyGrants`).
"""

from __future__ import annotations

from extapi_kit.webhooks.catalogue import EventCatalogue, EventType
from extapi_kit.webhooks.dispatcher import WebhookDispatcher
from extapi_kit.webhooks.manage import TestResult, WebhookManager
from extapi_kit.webhooks.models import (
    Attempt,
    Delivery,
    DeliveryStatus,
    Endpoint,
    EndpointSecret,
    Event,
)
from extapi_kit.webhooks.outbox import publish_event, publish_in_transaction
from extapi_kit.webhooks.retry import RetryPolicy
from extapi_kit.webhooks.scoping import KeyGrants
from extapi_kit.webhooks.sender import AttemptResult, WebhookSender
from extapi_kit.webhooks.signing import Webhook, generate_secret, signature_headers, verify
from extapi_kit.webhooks.ssrf import URLGuard
from extapi_kit.webhooks.store import WebhookStore, webhook_store_from_url

__all__ = [
    "Attempt",
    "AttemptResult",
    "Delivery",
    "DeliveryStatus",
    "Endpoint",
    "EndpointSecret",
    "Event",
    "EventCatalogue",
    "EventType",
    "KeyGrants",
    "RetryPolicy",
    "TestResult",
    "URLGuard",
    "Webhook",
    "WebhookDispatcher",
    "WebhookManager",
    "WebhookSender",
    "WebhookStore",
    "generate_secret",
    "publish_event",
    "publish_in_transaction",
    "signature_headers",
    "verify",
    "webhook_store_from_url",
]
