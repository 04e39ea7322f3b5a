"""One contract for every WebhookStore backend (memory, sqlite, redis, postgresql): endpoints,
outbox."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from extapi_kit.exceptions import ConfigurationError, NotFoundError
from extapi_kit.stores import registered_schemes
from extapi_kit.webhooks import (
    Attempt,
    Delivery,
    DeliveryStatus,
    Endpoint,
    EndpointSecret,
    Event,
    WebhookStore,
    webhook_store_from_url,
)

pytestmark = pytest.mark.anyio
T0 = 1_700_000_000.0


@pytest.fixture
async def store(any_contract_store_url: str) -> AsyncIterator[WebhookStore]:
    s = webhook_store_from_url(any_contract_store_url)
    yield s
    await s.aclose()


def _endpoint(**kw: object) -> Endpoint:
    secret = EndpointSecret(value="whsec_" + "A" * 32, created_at=T0)
    return Endpoint.model_validate({"url": "https://example.com/hook", "secrets": [secret], **kw})


async def _publish(store: WebhookStore, ep: Endpoint, n: int = 1, at: float = T0) -> list[str]:
    ids = []
    for i in range(n):
        ev = Event(type="job.done", timestamp=at + i, data={"i": i})
        d = Delivery(event_id=ev.id, endpoint_id=ep.id, next_attempt_at=at, created_at=at + i)
        assert await store.publish(ev, [d])
        ids.append(d.id)
    return ids


async def test_registry_names_every_backend() -> None:
    """The webhooks kind is registered for memory, sqlite, redis, rediss and postgresql; others
    are refused."""
    import extapi_kit.webhooks  # noqa: F401

    assert {"memory", "sqlite", "redis", "rediss", "postgresql"} <= set(
        registered_schemes("webhooks")
    )
    with pytest.raises(ConfigurationError):
        webhook_store_from_url("ftp://x")


async def test_endpoint_crud(store: WebhookStore) -> None:
    """Endpoints round-trip with their secrets, update partially, and vanish on remove."""
    ep = _endpoint(event_types=["a", "b"], metadata={"team": "x"})
    await store.add_endpoint(ep)
    got = await store.get_endpoint(ep.id)
    assert got == ep and got.secrets[0].value.startswith("whsec_")
    assert "whsec_" not in repr(got)
    updated = await store.update_endpoint(ep.id, enabled=False, disabled_reason="manual")
    assert not updated.enabled and (await store.get_endpoint(ep.id)).disabled_reason == "manual"
    assert [e.id for e in await store.list_endpoints()] == [ep.id]
    await store.remove_endpoint(ep.id)
    with pytest.raises(NotFoundError):
        await store.get_endpoint(ep.id)
    with pytest.raises(NotFoundError):
        await store.update_endpoint(ep.id, enabled=True)
    with pytest.raises(NotFoundError):
        await store.remove_endpoint(ep.id)


async def test_publish_is_idempotent_by_event_id(store: WebhookStore) -> None:
    """Publishing an event id twice stores it once and adds no second delivery."""
    ep = _endpoint()
    await store.add_endpoint(ep)
    ev = Event(type="t", timestamp=T0, data={"x": 1})
    d1 = Delivery(event_id=ev.id, endpoint_id=ep.id, next_attempt_at=T0, created_at=T0)
    d2 = Delivery(event_id=ev.id, endpoint_id=ep.id, next_attempt_at=T0, created_at=T0)
    assert await store.publish(ev, [d1])
    assert not await store.publish(ev, [d2])
    assert (await store.get_event(ev.id)).data == {"x": 1}
    assert [d.id for d in await store.list_deliveries()] == [d1.id]
    with pytest.raises(NotFoundError):
        await store.get_event("evt_missing")


async def test_claim_leases_each_delivery_once(store: WebhookStore) -> None:
    """A due delivery goes to exactly one claimer; future ones wait for their due time."""
    ep = _endpoint()
    await store.add_endpoint(ep)
    ids = await _publish(store, ep, 3)
    later = Event(type="t", timestamp=T0)
    await store.publish(later, [Delivery(event_id=later.id, endpoint_id=ep.id,
                                         next_attempt_at=T0 + 100, created_at=T0)])  # fmt: skip
    a = await store.claim(owner="a", now=T0, lease_seconds=300, limit=2)
    b = await store.claim(owner="b", now=T0, lease_seconds=300, limit=10)
    got = [d.id for d, _ in a] + [d.id for d, _ in b]
    assert sorted(got) == sorted(ids)
    assert all(d.status == DeliveryStatus.DELIVERING and d.lease_owner == "a" for d, _ in a)
    assert a[0][1].type == "job.done"
    assert await store.claim(owner="c", now=T0 + 1, lease_seconds=30, limit=10) == []
    c = await store.claim(owner="c", now=T0 + 100, lease_seconds=30, limit=10)
    assert [d.event_id for d, _ in c] == [later.id]


async def test_expired_lease_is_claimed_again(store: WebhookStore) -> None:
    """A lease not finished in time (the worker died) is due again for another worker (W8)."""
    ep = _endpoint()
    await store.add_endpoint(ep)
    [did] = await _publish(store, ep)
    [(d, _)] = await store.claim(owner="dead", now=T0, lease_seconds=10, limit=5)
    assert await store.claim(owner="b", now=T0 + 9, lease_seconds=10, limit=5) == []
    [(again, _)] = await store.claim(owner="b", now=T0 + 11, lease_seconds=10, limit=5)
    assert again.id == did and again.lease_owner == "b"
    # The dead worker's late finish does not overwrite the new owner's lease.
    att = Attempt(delivery_id=did, time=T0, duration=0.1, status=200)
    await store.finish(d, att, owner="dead", status=DeliveryStatus.SUCCEEDED)
    assert (await store.get_delivery(did)).status == DeliveryStatus.DELIVERING
    await store.finish(again, att, owner="b", status=DeliveryStatus.SUCCEEDED)
    final = await store.get_delivery(did)
    assert final.status == DeliveryStatus.SUCCEEDED and final.attempts == 2
    assert len(await store.list_attempts(did)) == 2


async def test_finish_retry_and_fail(store: WebhookStore) -> None:
    """A retry is due at its time with attempts counted; a failure stays failed and unclaimable."""
    ep = _endpoint()
    await store.add_endpoint(ep)
    [did] = await _publish(store, ep)
    [(d, _)] = await store.claim(owner="w", now=T0, lease_seconds=10, limit=5)
    att = Attempt(delivery_id=did, time=T0, duration=0.2, status=500, response_excerpt="x" * 9999)
    await store.finish(d, att, owner="w", status=DeliveryStatus.PENDING, next_attempt_at=T0 + 5)
    mid = await store.get_delivery(did)
    assert (mid.status, mid.attempts, mid.last_error) == (DeliveryStatus.PENDING, 1, "500")
    assert await store.claim(owner="w", now=T0 + 4, lease_seconds=10, limit=5) == []
    [(d, _)] = await store.claim(owner="w", now=T0 + 5, lease_seconds=10, limit=5)
    att2 = Attempt(delivery_id=did, time=T0 + 5, duration=0.1, error="timeout")
    await store.finish(d, att2, owner="w", status=DeliveryStatus.FAILED)
    assert await store.claim(owner="w", now=T0 + 1e6, lease_seconds=10, limit=5) == []
    failed = await store.list_deliveries(endpoint_id=ep.id, status=DeliveryStatus.FAILED)
    assert [f.id for f in failed] == [did] and failed[0].last_error == "timeout"
    attempts = await store.list_attempts(did)
    assert [a.status for a in attempts] == [500, None]
    assert len(attempts[0].response_excerpt) <= 2000


async def test_release_and_requeue(store: WebhookStore) -> None:
    """Released leases are due at once; a finished delivery can be requeued for replay."""
    ep = _endpoint()
    await store.add_endpoint(ep)
    [did] = await _publish(store, ep)
    claimed = await store.claim(owner="w", now=T0, lease_seconds=60, limit=5)
    await store.release([d for d, _ in claimed], owner="w", now=T0 + 1)
    [(d, _)] = await store.claim(owner="v", now=T0 + 1, lease_seconds=60, limit=5)
    await store.finish(d, None, owner="v", status=DeliveryStatus.SUCCEEDED)
    again = await store.requeue(did, at=T0 + 50)
    assert again.status == DeliveryStatus.PENDING and again.next_attempt_at == T0 + 50
    assert [x.id for x, _ in await store.claim(owner="v", now=T0 + 50, lease_seconds=9, limit=5)]
    with pytest.raises(NotFoundError):
        await store.requeue("msg_missing", at=T0)


async def test_claim_excludes_saturated_endpoints(store: WebhookStore) -> None:
    """Deliveries of excluded endpoints are left for later so other endpoints are not starved."""
    slow, fast = _endpoint(), _endpoint()
    await store.add_endpoint(slow)
    await store.add_endpoint(fast)
    await _publish(store, slow, 3)
    fast_ids = await _publish(store, fast, 2)
    got = await store.claim(owner="w", now=T0, lease_seconds=9, limit=10, exclude=[slow.id])
    assert sorted(d.id for d, _ in got) == sorted(fast_ids)
    rest = await store.claim(owner="w", now=T0 + 1, lease_seconds=9, limit=10)
    assert len(rest) == 3 and {d.endpoint_id for d, _ in rest} == {slow.id}


async def test_remove_endpoint_cancels_pending(store: WebhookStore) -> None:
    """Removing an endpoint cancels its pending deliveries so nothing is sent to it any more."""
    ep = _endpoint()
    await store.add_endpoint(ep)
    [did] = await _publish(store, ep)
    await store.remove_endpoint(ep.id)
    assert (await store.get_delivery(did)).status == DeliveryStatus.CANCELLED
    assert await store.claim(owner="w", now=T0 + 10, lease_seconds=9, limit=5) == []


async def test_list_events_and_deliveries_filters(store: WebhookStore) -> None:
    """Listings filter by type, time, endpoint and status, oldest first."""
    ep = _endpoint()
    await store.add_endpoint(ep)
    await _publish(store, ep, 4)
    other = Event(type="other", timestamp=T0 + 10)
    await store.publish(other, [])
    evs = await store.list_events(type="job.done", since=T0 + 1)
    assert [e.data["i"] for e in evs] == [1, 2, 3]
    assert len(await store.list_events(limit=2)) == 2
    ds = await store.list_deliveries(endpoint_id=ep.id, since=T0 + 2)
    assert len(ds) == 2
    new = Delivery(event_id=other.id, endpoint_id=ep.id, next_attempt_at=T0, created_at=T0 + 20)
    await store.add_deliveries([new])
    assert (await store.get_delivery(new.id)).event_id == other.id
    assert len(await store.list_deliveries(status=DeliveryStatus.PENDING)) == 5
    assert await store.ping()
