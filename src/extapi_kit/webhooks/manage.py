"""The management API: endpoints, secret rotation, the "test" button, deliveries, attempts, replay.

The CLI (``extapi-kit webhooks ...``) and the admin HTTP API call this; it only talks to the store
(and to the endpoint for ``send_test``), so it works from any process while dispatchers run
elsewhere. Replays are paced at the endpoint's ``rate_limit``: the requeued deliveries get due
times ``1/rate`` seconds apart instead of all landing at once.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from extapi_kit.context import Principal
from extapi_kit.exceptions import ConfigurationError, ConflictError
from extapi_kit.keys._validation import check_grants
from extapi_kit.webhooks._validation import (
    MAX_URL_LENGTH,
    check_concurrency,
    check_grace,
    check_rate_limit,
)
from extapi_kit.webhooks.models import (
    Attempt,
    Delivery,
    DeliveryStatus,
    Endpoint,
    EndpointSecret,
    Event,
)
from extapi_kit.webhooks.scoping import audience_allows, covers
from extapi_kit.webhooks.signing import generate_secret, signature_headers
from extapi_kit.webhooks.ssrf import URLGuard
from extapi_kit.webhooks.store import WebhookStore

__all__ = ["TestResult", "WebhookManager"]

TEST_EVENT = "webhook.test"
# How long a recorded test ping is leased between being stored and finished (never reached).
_TEST_LEASE = 300.0
_UNSET: Any = object()


@dataclass(frozen=True)
class TestResult:
    """The outcome of :meth:`WebhookManager.send_test`.

    Args:
        ok: the endpoint answered 2xx.
        status: the HTTP status, or None.
        error: the error class, or None.
        duration: seconds.
        response_excerpt: the start of the response body.
    """

    __test__ = False  # not a pytest test class

    ok: bool
    status: int | None
    error: str | None
    duration: float
    response_excerpt: str


class WebhookManager:
    """Operator actions on a webhook store.

    Args:
        store: the webhook store.
        clock: returns epoch seconds.
        allow_loopback: accept loopback URLs (tests and local demos only).
        allow_private: accept private-network URLs (never link-local, metadata or CGNAT).
        sender: a ``WebhookSender`` for ``send_test`` (default: a new one with the same guard).
    """

    def __init__(
        self,
        store: WebhookStore,
        *,
        clock: Callable[[], float] | None = None,
        allow_loopback: bool = False,
        allow_private: bool = False,
        sender: Any = None,
    ) -> None:
        self.store = store
        self.clock = clock or time.time
        self.guard = URLGuard(allow_loopback=allow_loopback, allow_private=allow_private)
        self._sender = sender

    def __repr__(self) -> str:
        return f"WebhookManager({self.store!r})"

    # -- endpoints ---------------------------------------------------------------------------

    async def add_endpoint(
        self,
        url: str,
        *,
        event_types: Sequence[str] = (),
        description: str = "",
        rate_limit: float | None = None,
        max_concurrency: int | None = None,
        metadata: dict[str, str] | None = None,
        owner: str | None = None,
        grants: Mapping[str, Iterable[str]] | None = None,
        key_id: str | None = None,
        principal: Principal | None = None,
    ) -> Endpoint:
        """Register an endpoint with a new secret (show ``endpoint.secrets[0].value`` once).

        Args:
            url: the receiver URL (checked by the SSRF guard; no DNS at registration).
            event_types: types it receives; empty = all.
            description: free text.
            rate_limit: deliveries per second at most (0.001 to 1000).
            max_concurrency: in-flight cap (1 to 1000).
            metadata: free key/value data.
            owner: an owner (tenant) id, for listing.
            grants: resource grants limiting the events it receives (type -> ids).
            key_id: the API key it belongs to (its current grants apply too when the
                dispatcher has ``key_grants``).
            principal: the verified key registering it (self-service): sets ``key_id`` and
                ``owner`` and copies the key's restricted grants, so the endpoint stays scoped
                even where the dispatcher has no ``key_grants`` (not together with ``grants``).
        """
        _check_url(self.guard, url)
        _check_limits(rate_limit, max_concurrency)
        scoped = _stored_grants(grants)
        if principal is not None:
            if grants is not None:
                raise ConfigurationError("give grants= or principal=, not both")
            key_id = principal.key_id
            owner = owner if owner is not None else principal.owner
            mine = {k: sorted(v) for k, v in principal.grants.items() if "*" not in v}
            scoped = mine or None
        now = self.clock()
        endpoint = Endpoint(
            url=url,
            description=description,
            event_types=list(event_types),
            secrets=[EndpointSecret(value=generate_secret(), created_at=now)],
            rate_limit=rate_limit,
            max_concurrency=max_concurrency,
            metadata=dict(metadata or {}),
            owner=owner,
            grants=scoped,
            key_id=key_id,
            created_at=now,
            allow_loopback=self.guard.allow_loopback,
        )
        await self.store.add_endpoint(endpoint)
        return endpoint

    async def list_endpoints(
        self, *, owner: str | None = None, key_id: str | None = None
    ) -> list[Endpoint]:
        """Return endpoints, oldest first.

        Args:
            owner: only this owner's.
            key_id: only those registered by this key.
        """
        endpoints = await self.store.list_endpoints()
        return [
            e
            for e in endpoints
            if (owner is None or e.owner == owner) and (key_id is None or e.key_id == key_id)
        ]

    async def get_endpoint(self, endpoint_id: str) -> Endpoint:
        """Return one endpoint (NotFoundError if missing).

        Args:
            endpoint_id: its id.
        """
        return await self.store.get_endpoint(endpoint_id)

    async def update_endpoint(
        self,
        endpoint_id: str,
        *,
        url: str | None = None,
        event_types: Sequence[str] | None = None,
        description: str | None = None,
        enabled: bool | None = None,
        rate_limit: float | None = _UNSET,
        max_concurrency: int | None = _UNSET,
        metadata: dict[str, str] | None = None,
        grants: Mapping[str, Iterable[str]] | None = _UNSET,
    ) -> Endpoint:
        """Change an endpoint; enabling it clears the disabled reason and the failure clock.

        Args:
            endpoint_id: its id.
            url: a new URL (checked like at registration).
            event_types: a new filter.
            description: new text.
            enabled: enable or disable (manually).
            rate_limit: new rate (None removes it).
            max_concurrency: new cap (None removes it).
            metadata: new metadata.
            grants: new resource grants (None removes them: unrestricted, apart from the
                owning key's grants).
        """
        changes: dict[str, Any] = {}
        if grants is not _UNSET:
            changes["grants"] = _stored_grants(grants)
        if url is not None:
            _check_url(self.guard, url)
            changes["url"] = url
        if event_types is not None:
            changes["event_types"] = list(event_types)
        if description is not None:
            changes["description"] = description
        if rate_limit is not _UNSET:
            changes["rate_limit"] = rate_limit
        if max_concurrency is not _UNSET:
            changes["max_concurrency"] = max_concurrency
        _check_limits(changes.get("rate_limit"), changes.get("max_concurrency"))
        if metadata is not None:
            changes["metadata"] = dict(metadata)
        if enabled is True:
            changes.update(enabled=True, disabled_reason=None, failing_since=None)
        elif enabled is False:
            changes.update(enabled=False, disabled_reason="disabled by an operator")
        return await self.store.update_endpoint(endpoint_id, **changes)

    async def remove_endpoint(self, endpoint_id: str) -> None:
        """Delete an endpoint; its pending deliveries are cancelled.

        Args:
            endpoint_id: its id.
        """
        await self.store.remove_endpoint(endpoint_id)

    async def rotate_secret(self, endpoint_id: str, *, grace: float = 86400.0) -> str:
        """Add a new secret; the old ones keep signing (both signatures sent) for ``grace`` s.

        Args:
            endpoint_id: its id.
            grace: seconds the previous secrets stay valid (0 = drop them now; at most
                ``MAX_SECRET_GRACE``, 30 days).

        Returns:
            The new secret (show it once).
        """
        # At most MAX_SECRET_GRACE: a grace of 1e308 s kept the old secret signing forever (M10).
        grace = check_grace(grace)
        endpoint = await self.store.get_endpoint(endpoint_id)
        now = self.clock()
        until = now + grace
        kept = [
            s.model_copy(update={"expires_at": min(s.expires_at or until, until)})
            for s in endpoint.secrets
            if s.active(now) and grace > 0
        ]
        new = EndpointSecret(value=generate_secret(), created_at=now)
        await self.store.update_endpoint(endpoint_id, secrets=[new, *kept])
        return new.value

    async def send_test(self, endpoint_id: str) -> TestResult:
        """Send a signed ``webhook.test`` ping now and report what the endpoint answered.

        The ping is recorded as a delivery marked ``test`` (with its one manual attempt), so it
        lists with the endpoint's deliveries; it is never retried or replayed.

        Args:
            endpoint_id: its id.
        """
        from extapi_kit.webhooks.dispatcher import encode_body
        from extapi_kit.webhooks.sender import WebhookSender

        endpoint = await self.store.get_endpoint(endpoint_id)
        now = self.clock()
        event = Event(type=TEST_EVENT, timestamp=now, data={"endpoint_id": endpoint.id})
        body = encode_body(event)
        msg = Delivery(event_id=event.id, endpoint_id=endpoint.id)
        headers = signature_headers(endpoint.signing_secrets(now), msg.id, int(now), body)
        headers["content-type"] = "application/json"
        sender = self._sender or WebhookSender(guard=self.guard)
        try:
            r = await sender.send(endpoint.url, headers, body)
        finally:
            if self._sender is None:
                await sender.aclose()
        result = TestResult(r.ok, r.status, r.error, r.duration, r.response_excerpt or "")
        await self._record_test(event, msg, result, now)
        return result

    async def _record_test(
        self, event: Event, msg: Delivery, result: TestResult, now: float
    ) -> None:
        # "Test ping OK" then "0 deliveries" hid the ping (issue 18 §4). It is written through
        # the protocol's ordinary lease path (added as leased by a private owner, then finished
        # with its attempt), so every backend records it without a method of its own; the lease
        # outlives the two calls, so no dispatcher takes it in between.
        owner = f"test:{msg.id}"
        until = now + _TEST_LEASE
        leased = msg.model_copy(
            update={
                "status": DeliveryStatus.DELIVERING,
                "lease_owner": owner,
                "lease_until": until,
                "next_attempt_at": until,
                "created_at": now,
                "test": True,
            }
        )
        attempt = Attempt(
            delivery_id=msg.id,
            time=now,
            duration=result.duration,
            status=result.status,
            response_excerpt=result.response_excerpt,
            error=result.error,
            manual=True,
        )
        status = DeliveryStatus.SUCCEEDED if result.ok else DeliveryStatus.FAILED
        await self.store.publish(event, [])
        await self.store.add_deliveries([leased])
        await self.store.finish(leased, attempt, owner=owner, status=status)

    # -- deliveries, attempts, replay ----------------------------------------------------------

    async def deliveries(
        self,
        *,
        endpoint_id: str | None = None,
        status: DeliveryStatus | str | None = None,
        since: float | None = None,
        limit: int = 100,
    ) -> list[Delivery]:
        """Return deliveries, oldest first.

        Args:
            endpoint_id: only this endpoint's.
            status: only this status.
            since: only those created at or after this epoch time.
            limit: at most this many.
        """
        st = None if status is None else DeliveryStatus(status)
        return await self.store.list_deliveries(
            endpoint_id=endpoint_id, status=st, since=since, limit=limit
        )

    async def attempts(self, delivery_id: str) -> list[Attempt]:
        """Return a delivery's attempts, oldest first.

        Args:
            delivery_id: its id.
        """
        return await self.store.list_attempts(delivery_id)

    async def _pacing(self, endpoint_id: str) -> float:
        endpoint = await self.store.get_endpoint(endpoint_id)
        if not endpoint.enabled:
            raise ConflictError(f"endpoint {endpoint_id} is disabled; enable it before replaying")
        return 1.0 / endpoint.rate_limit if endpoint.rate_limit else 0.0

    async def replay_delivery(self, delivery_id: str) -> Delivery:
        """Send one delivery again now (same ``webhook-id``).

        Args:
            delivery_id: its id.
        """
        delivery = await self.store.get_delivery(delivery_id)
        if delivery.test:
            raise ConflictError(f"delivery {delivery_id} is a test ping; send a new test instead")
        await self._pacing(delivery.endpoint_id)
        if delivery.status == DeliveryStatus.DELIVERING:
            raise ConflictError(f"delivery {delivery_id} is being delivered right now")
        return await self.store.requeue(delivery_id, at=self.clock())

    async def replay_failed(
        self,
        endpoint_id: str,
        *,
        since: float,
        limit: int = 100_000,
        on_progress: Callable[[int, int], None] | None = None,
    ) -> int:
        """Requeue every failed delivery of an endpoint created since a time, paced at its rate.

        Args:
            endpoint_id: the endpoint.
            since: epoch time.
            limit: at most this many.
            on_progress: called with ``(done, total)`` as deliveries are requeued (the CLI
                draws a progress line from it).

        Returns:
            How many deliveries were requeued.
        """
        step = await self._pacing(endpoint_id)
        failed = await self.store.list_deliveries(
            endpoint_id=endpoint_id, status=DeliveryStatus.FAILED, since=since, limit=limit
        )
        failed = [d for d in failed if not d.test]  # a failed test ping is no event to resend
        now = self.clock()
        for i, d in enumerate(failed):
            await self.store.requeue(d.id, at=now + i * step)
            if on_progress is not None:
                on_progress(i + 1, len(failed))
        return len(failed)

    async def replay_events(
        self,
        event_type: str,
        *,
        since: float,
        to_endpoint: str,
        limit: int = 100_000,
        on_progress: Callable[[int, int], None] | None = None,
    ) -> int:
        """Deliver every event of a type since a time to an endpoint (new deliveries), paced.

        Args:
            event_type: the type.
            since: epoch time.
            to_endpoint: the endpoint (for example one just added).
            limit: at most this many events.
            on_progress: called with ``(done, total)`` after each batch of new deliveries.

        Returns:
            How many deliveries were created.
        """
        step = await self._pacing(to_endpoint)
        endpoint = await self.store.get_endpoint(to_endpoint)
        listed = await self.store.list_events(type=event_type, since=since, limit=limit)
        # The endpoint's own grants here; the owning key's are checked before each attempt.
        events = [
            e
            for e in listed
            if audience_allows(endpoint, e.resources) and covers(endpoint.grants, e.resources)
        ]
        now = self.clock()
        new = [
            Delivery(event_id=e.id, endpoint_id=to_endpoint, next_attempt_at=now + i * step,
                     created_at=now)
            for i, e in enumerate(events)
        ]  # fmt: skip
        for i in range(0, len(new), 500):
            await self.store.add_deliveries(new[i : i + 500])
            if on_progress is not None:
                on_progress(min(i + 500, len(new)), len(new))
        return len(new)


def _stored_grants(grants: Mapping[str, Iterable[str]] | None) -> dict[str, list[str]] | None:
    """Validate grants as keys' are validated, in the form an endpoint stores them."""
    if grants is None:
        return None
    return {k: list(v) for k, v in check_grants(grants).items()}


def _check_url(guard: URLGuard, url: str) -> None:
    if not isinstance(url, str) or not 1 <= len(url) <= MAX_URL_LENGTH:
        raise ConfigurationError(f"url must be 1-{MAX_URL_LENGTH} characters")
    guard.check_syntax(url)  # scheme, host, port (1-65535, W14) and denied literal addresses


def _check_limits(rate_limit: float | None, max_concurrency: int | None) -> None:
    # Bounded, not only positive: inf or 1e308 paced nothing, 1e-300 never sent (M10).
    check_rate_limit(rate_limit)
    check_concurrency(max_concurrency)
