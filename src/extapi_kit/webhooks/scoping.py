"""Resource scoping of webhooks: a tenant's endpoint only receives events about its resources.

Route grants (:mod:`extapi_kit.routing.grants`) stop a project-7 key from *reading* project 9;
this module stops the same key's webhook endpoint from being *sent* project 9's events (OWASP
API1 over webhooks, case Z3).

- An event names the resources it is about: ``Event.resources``, e.g. ``{"projects": ["9"]}``,
  given to ``publish(..., resources=...)`` or taken from its payload by declared fields
  (``resource_fields={"project_id": "projects"}`` on the dispatcher or on the catalogue type).
- An endpoint is restricted by its own ``grants`` (set by an operator, or copied from the key
  that registered it) and, when it carries ``key_id`` and the dispatcher has ``key_grants``, by
  that key's *current* grants: a narrowed or revoked key narrows or stops its endpoints within
  the resolver's cache time, rotation follows the successor key.
- The rule (fail closed): an endpoint restricted on some resource types receives an event only
  when the event names at least one resource of those types and every named resource is
  granted. An event that does not say whose data it carries never reaches a scoped endpoint.

Who may receive an event at all comes first (:func:`audience_allows`, case Z8). An endpoint tied
to an API key (``key_id``: every self-service endpoint) is a *tenant* endpoint: it receives an
event only when the event names its owner (the reserved resource type ``"owner"``; the kit's own
``api_key.*`` events name it from their payload's ``owner``) or names some other resource
(which its grants then decide). Another owner's events, and events that name nothing (operator-
wide: ``platform.notice``, ``webhook.endpoint.disabled``, keys without an owner), reach only
endpoints without a key: the ones an operator registered.

The check runs twice: when an event is fanned out (no delivery is created for an endpoint that may
not see it) and again right before each attempt (grants may have changed since, and deliveries
written by :func:`~extapi_kit.webhooks.outbox.publish_event` or a replay were not checked
against the key's live grants).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from extapi_kit import telemetry
from extapi_kit.exceptions import ConfigurationError, NotFoundError
from extapi_kit.webhooks.models import Delivery, DeliveryStatus, Endpoint, Event

if TYPE_CHECKING:
    from extapi_kit.keys.service import KeyService
    from extapi_kit.webhooks.store import WebhookStore

logger = logging.getLogger("extapi_kit.webhooks")

__all__ = [
    "DENY",
    "OWNER_RESOURCE",
    "Grants",
    "GrantsResolver",
    "KeyGrants",
    "audience_allows",
    "check_resources",
    "covers",
    "covers_all",
    "effective_grants",
    "fanout_grants",
    "gate_attempt",
    "owner_resources",
    "resources_from",
]

Grants = Mapping[str, Collection[str]]
GrantsResolver = Callable[[str], Awaitable[Grants | None]]

# Grants that allow nothing: a revoked, expired or unknown owning key.
DENY: Grants = {"": ()}

OWNER_RESOURCE = "owner"
"""The reserved resource type naming the owner (tenant) an event is about (Z8)."""
# The kit's own key, quota and credit events (``api_key.created``, ``api_key.quota_warning``,
# ``credits.low`` ...) carry the key's owner in this payload field; it names their audience when
# a publish names none.
_KIT_EVENT_PREFIX = ("api_key.", "credits.")

# Rotation successors followed at most (a chain longer than this is treated as unknown).
_MAX_ROTATIONS = 8
_MAX_IDS = 100
# When the key store cannot be read before an attempt, the delivery waits this long (no attempt).
GRANTS_RETRY_SECONDS = 30.0


def check_resources(resources: Mapping[str, Iterable[Any]] | None) -> dict[str, list[str]]:
    """Validate and normalise an event's resources to ``{type: [id as str, ...]}``.

    Args:
        resources: resource type -> ids (ints or strings); None means none.

    Raises:
        ConfigurationError: a bad type name, id, or too many ids.
    """
    out: dict[str, list[str]] = {}
    for kind, ids in (resources or {}).items():
        if not isinstance(kind, str) or not kind or len(kind) > 64:
            raise ConfigurationError("resource types are strings of 1-64 characters")
        if isinstance(ids, str | int):
            ids = [ids]
        values = [_id_text(v) for v in ids]
        if len(values) > _MAX_IDS:
            raise ConfigurationError(f"at most {_MAX_IDS} ids per resource type on one event")
        if values:
            out[kind] = sorted(set(values))
    return out


def _id_text(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise ConfigurationError("resource ids are strings or integers")
    text = str(value)
    if not text or len(text) > 200 or text == "*":
        raise ConfigurationError("resource ids are 1-200 characters and never '*'")
    return text


def resources_from(data: Mapping[str, Any], fields: Mapping[str, str]) -> dict[str, list[str]]:
    """Read resource ids out of an event payload by declared fields.

    Args:
        data: the event payload.
        fields: payload field -> resource type; a dotted path reaches into objects
            (``"project.id"``); a list value names several ids. Missing fields are skipped.
    """
    found: dict[str, list[Any]] = {}
    for path, kind in fields.items():
        value: Any = data
        for part in path.split("."):
            value = value.get(part) if isinstance(value, Mapping) else None
        if value is None:
            continue
        values = value if isinstance(value, list | tuple) else [value]
        found.setdefault(kind, []).extend(values)
    return check_resources(found)


def owner_resources(
    type: str, data: Mapping[str, Any], named: dict[str, list[str]]
) -> dict[str, list[str]]:
    """Return ``named`` plus the owner of a kit ``api_key.*``/``credits.*`` event (its payload's).

    Args:
        type: the event type.
        data: its payload.
        named: the resources named so far.
    """
    owner = data.get("owner")
    if not (type.startswith(_KIT_EVENT_PREFIX) and OWNER_RESOURCE not in named and owner):
        return named
    try:
        return {**named, **check_resources({OWNER_RESOURCE: [owner]})}
    except ConfigurationError:  # not an owner id: the event stays operator-only
        return named


def audience_allows(endpoint: Endpoint, resources: Mapping[str, Collection[str]]) -> bool:
    """Return whether an event about ``resources`` may go to ``endpoint`` at all (case Z8).

    An endpoint without ``key_id`` (registered by an operator) may receive anything. A tenant
    endpoint (tied to a key) needs an event that names its owner and no other, or - naming no
    owner - names some resource (its grants decide next, :func:`covers_all`).

    Args:
        endpoint: the endpoint.
        resources: the event's resources.
    """
    if endpoint.key_id is None:
        return True
    owners = resources.get(OWNER_RESOURCE)
    if owners is not None:
        return endpoint.owner is not None and all(o == endpoint.owner for o in owners)
    return any(ids for kind, ids in resources.items() if kind != OWNER_RESOURCE)


def _restricted(grants: Grants) -> dict[str, Collection[str]]:
    return {k: v for k, v in grants.items() if "*" not in v}


def covers(grants: Grants | None, resources: Mapping[str, Collection[str]]) -> bool:
    """Return whether an endpoint with ``grants`` may receive an event about ``resources``.

    Args:
        grants: type -> granted ids (``"*"`` = all; a type absent = unrestricted); None or an
            empty mapping = unrestricted.
        resources: the event's resources.
    """
    if not grants:
        return True
    restricted = _restricted(grants)
    if not restricted:
        return True
    named = False
    for kind, ids in resources.items():
        allowed = restricted.get(kind)
        if allowed is None:
            continue
        named = True
        if not all(i in allowed for i in ids):
            return False
    return named


def covers_all(scopes: Sequence[Grants | None], resources: Mapping[str, Collection[str]]) -> bool:
    """Return whether every set of grants in ``scopes`` allows the event (a logical AND).

    An endpoint's own grants and its key's grants are kept apart and each must allow the event:
    merging them into one mapping would loosen the fail-closed rule (an event naming only a type
    one side restricts would pass for the side that restricts another type).

    Args:
        scopes: the endpoint's grants, then its key's (empty = unrestricted).
        resources: the event's resources.
    """
    return all(covers(g, resources) for g in scopes)


async def effective_grants(
    endpoint: Endpoint, resolver: GrantsResolver | None
) -> tuple[Grants | None, ...]:
    """Return the grants that apply to ``endpoint`` now, each of which must allow an event.

    Args:
        endpoint: the endpoint (its own ``grants`` and its ``key_id``).
        resolver: returns a key's current grants (None for a key that may not act); without
            one, only the endpoint's own grants apply.
    """
    own: Grants | None = endpoint.grants
    if endpoint.key_id is None or resolver is None:
        return (own,)
    key = await resolver(endpoint.key_id)
    return (own, DENY if key is None else key)


async def fanout_grants(
    endpoints: Sequence[Endpoint], resolver: GrantsResolver | None
) -> dict[str, tuple[Grants | None, ...]]:
    """Return endpoint id -> effective grants for the key-owned endpoints of a fan-out.

    An endpoint whose key cannot be read now keeps its own grants here (its delivery is created
    and checked again before the attempt), so a key-store outage never loses an event.

    Args:
        endpoints: the endpoints subscribed to the event.
        resolver: the key grants resolver, or None.
    """
    out: dict[str, tuple[Grants | None, ...]] = {}
    if resolver is None:
        return out
    for e in endpoints:
        if e.key_id is not None:
            try:
                out[e.id] = await effective_grants(e, resolver)
            except Exception:
                logger.warning("webhook endpoint %s: could not read its key's grants", e.id)
    return out


async def gate_attempt(
    store: WebhookStore,
    owner: str,
    delivery: Delivery,
    event: Event,
    endpoint: Endpoint,
    resolver: GrantsResolver | None,
    now: float,
) -> bool:
    """Check an endpoint's grants right before an attempt; end or postpone the delivery if not.

    Returns True when the attempt may go ahead. Otherwise the delivery is cancelled (no longer
    granted) or, when the key store cannot be read, made due again later without an attempt.

    Args:
        store: the webhook store (the delivery is leased by ``owner``).
        owner: the dispatcher's lease-owner id.
        delivery: the leased delivery.
        event: its event.
        endpoint: its endpoint.
        resolver: the key grants resolver, or None.
        now: the current epoch time.
    """
    if not audience_allows(endpoint, event.resources):
        # Z8: written before this rule, or by a replay: never sent to the wrong tenant.
        logger.info("webhook %s cancelled: not for endpoint %s", delivery.id, endpoint.id)
        await store.finish(delivery, None, owner=owner, status=DeliveryStatus.CANCELLED)
        return False
    if endpoint.grants is None and (endpoint.key_id is None or resolver is None):
        return True
    try:
        grants = await effective_grants(endpoint, resolver)
    except Exception:
        logger.warning("webhook %s: could not read the owning key's grants", delivery.id)
        await store.finish(
            delivery,
            None,
            owner=owner,
            status=DeliveryStatus.PENDING,
            next_attempt_at=now + GRANTS_RETRY_SECONDS,
        )
        return False
    if covers_all(grants, event.resources):
        return True
    telemetry.counter("extapi.webhooks.not_granted", "deliveries ended by grants").add(1)
    logger.info("webhook %s cancelled: endpoint %s is not granted", delivery.id, endpoint.id)
    await store.finish(delivery, None, owner=owner, status=DeliveryStatus.CANCELLED)
    return False


class KeyGrants:
    """A :data:`GrantsResolver` over a :class:`~extapi_kit.keys.KeyService`, cached for ``ttl``.

    A key that is revoked, expired or unknown resolves to None (its endpoints receive nothing);
    a rotated key resolves through its successor, so rotating a key keeps its webhooks.

    Args:
        keys: the key service.
        ttl: seconds an answer is reused (a grant change applies within this time).
        clock: returns epoch seconds (key status).
    """

    def __init__(
        self, keys: KeyService, *, ttl: float = 5.0, clock: Callable[[], float] = time.time
    ) -> None:
        if ttl < 0:
            raise ConfigurationError("ttl must not be negative")
        self.keys = keys
        self.ttl = ttl
        self.clock = clock
        self._cache: dict[str, tuple[float, Grants | None]] = {}

    def __repr__(self) -> str:
        return f"KeyGrants(ttl={self.ttl})"

    async def __call__(self, key_id: str) -> Grants | None:
        """Return the key's current grants, or None when it may not act.

        Args:
            key_id: the key that registered the endpoint.
        """
        now = time.monotonic()
        hit = self._cache.get(key_id)
        if hit is not None and hit[0] > now:
            return hit[1]
        grants = await self._resolve(key_id)
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[key_id] = (now + self.ttl, grants)
        return grants

    async def _resolve(self, key_id: str) -> Grants | None:
        now = self.clock()
        current: str | None = key_id
        for _ in range(_MAX_ROTATIONS):
            if current is None:
                return None
            try:
                record = await self.keys.get(current)
            except NotFoundError:
                return None
            status = record.status(now)
            if status in ("active", "rotating"):
                return {k: frozenset(v) for k, v in record.grants.items()}
            if status != "rotated":
                return None
            current = record.rotated_to
        return None

    def forget(self, key_id: str | None = None) -> None:
        """Drop cached answers (one key, or all).

        Args:
            key_id: the key, or None for every key.
        """
        if key_id is None:
            self._cache.clear()
        else:
            self._cache.pop(key_id, None)
